"""The results file of a folder run: CSV or JSONL, one row per image, appended as results come.

Layout. The results file holds only results, so standard tools read it with default arguments
(`pandas.read_csv("results.csv")`, `csv.DictReader`, `pandas.read_json(path, lines=True)`):

    CSV:    one header row (RFC 4180), then one row per image:
            source,sha256,label,prob_<class>...,decision_rule,threshold,members,lung_fraction,
            lung_components,crop_box,warnings,error,would_be_label,raw_prob_<class>...,
            member_spread,members_disagree,tta,tta_spread,ood_distance,out_of_distribution
    JSONL:  one `PipelineResult.to_dict()` per line, plus "sha256"

Beside it, `<file>.meta.json` (e.g. results.csv.meta.json) says which run wrote it:
{"covidcxr_results": 2, "model_sha256": "...", "class_names": [...], "decision": {...},
"strict": false, "preset": "...", "package_version": "...", ...}.

In CSV, members, crop_box and warnings are JSON strings and empty cells mean None;
decision_rule is "threshold", "majority_vote" or "argmax" and threshold the rule's threshold
(empty for the other rules); label "refer" means the preset's refer rule abstained and
would_be_label holds what it would have said; prob_<class> are calibrated when the preset has a
calibration, raw_prob_<class> are the ensemble's own; out_of_distribution is true/false when the
preset has an out-of-distribution check (ood_distance its feature distance); line breaks inside text (error messages) become spaces, so
that every row is exactly one line.

Resume. Each row holds the sha256 of the file's bytes. Reopening the file checks its
.meta.json (same model, class names, decision rule and settings, or it is refused) and
reads which (source, sha256) pairs are done; a trailing line without its newline (a kill
mid-write) is cut away first. Rows are only appended, each batch with one write and an
fsync; when a source gets a newer row (its content changed, or an error is retried) the
last row wins, and `close()` rewrites the file atomically so that each source has exactly
one row.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "results.jsonl"
    >>> with ResultsFile(path, ["non_covid", "covid"], model_sha256="abc") as results:
    ...     results.append([{"source": "/x/a.png", "sha256": "f00", "error": "/x/a.png: empty file"}])
    >>> with ResultsFile(path, ["non_covid", "covid"], model_sha256="abc") as results:
    ...     results.earlier_row("/x/a.png", "f00")
    'failed'
    >>> sorted(p.name for p in path.parent.iterdir())
    ['results.jsonl', 'results.jsonl.meta.json']
"""

import csv
import io
import json
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

from keras_covidcxr.errors import ConfigError, CovidCXRError
from keras_covidcxr.io.atomic import atomic_write
from keras_covidcxr.settings import setting_differences

FORMAT_VERSION = 2
MARKER = "covidcxr_results"
META_SUFFIX = ".meta.json"
SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def csv_columns(class_names):
    """The CSV header: source, sha256, label, prob_<class>..., decision_rule, threshold, members, ..., error,
    then the uncertainty columns (would_be_label, raw_prob_<class>..., member_spread, ..., out_of_distribution)."""
    return [
        "source",
        "sha256",
        "label",
        *[f"prob_{name}" for name in class_names],
        "decision_rule",
        "threshold",
        "members",
        "lung_fraction",
        "lung_components",
        "crop_box",
        "warnings",
        "error",
        "would_be_label",
        *[f"raw_prob_{name}" for name in class_names],
        "member_spread",
        "members_disagree",
        "tta",
        "tta_spread",
        "ood_distance",
        "out_of_distribution",
    ]


def results_format(path):
    """"csv" or "jsonl", by the suffix of the results file `path`; refuses other suffixes and folders.

    Example:
        >>> results_format("out/results.JSONL")
        'jsonl'
    """
    path = Path(path)
    format = SUFFIXES.get(path.suffix.lower())
    if format is None:
        raise ConfigError(f"{path}: the results file must end in .csv or .jsonl")
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder; give a .csv or .jsonl file to write")
    return format


def meta_path(path):
    """The sidecar that names the run which wrote the results file `path`."""
    path = Path(path)
    return path.with_name(path.name + META_SUFFIX)


class ResultsFile:
    """An append-only CSV or JSONL results file that a rerun resumes.

    Opening it creates the file (CSV header) and its `<file>.meta.json`, or
    checks that an existing one was written by the same model, class names,
    decision rule, `strict` and `check_view` settings and reads its rows;
    anything else is refused with a `ConfigError` and left untouched.

    Args:
        path: where the results go; ".csv" or ".jsonl" decides the format.
        class_names: the pipeline's class names.
        model_sha256: identifies the model (see `batch_prediction.model_sha256`).
        strict: whether the input contract refused what it would only flag.
        untrained: recorded for whoever reads the file.
        check_view: whether the input contract checked views from the lung mask
            (`InputContract.check_view_from_mask`).
        decision: the pipeline's decision rule (`DecisionRule.to_dict()`).
        tta: test-time augmentation views per image (1: none).
        about: more run metadata to record (the preset's folder, the package version); a package
            version recorded on both sides must match: another version may decode or decide differently.
        read_only: only read an existing file (to check what is done): nothing is written, cut or
            compacted, so a finished file the user made read-only can be checked.
    """

    def __init__(self, path, class_names, model_sha256, strict=False, untrained=False, check_view=False,
                 decision=None, tta=1, about=None, read_only=False):
        self.path = Path(path)
        self.format = results_format(self.path)
        self.meta_path = meta_path(self.path)
        self.class_names = list(class_names)
        self.meta = {
            MARKER: FORMAT_VERSION,
            "model_sha256": model_sha256,
            "class_names": self.class_names,
            "decision": decision,
            "strict": bool(strict),
            "check_view": bool(check_view),
            **({"tta": int(tta)} if tta != 1 else {}),  # test-time augmentation views, when used
            "untrained": bool(untrained),
            "format": self.format,
            **(about or {}),
        }
        self.columns = csv_columns(self.class_names)
        self._error_column = self.columns.index("error")
        self._rows = {}  # source -> (sha256, failed, row number of its last row)
        self._by_real_path = {}  # the file a source names (symlinks resolved) -> its source
        self._row_count = 0
        self.superseded = 0  # rows replaced by a later row for the same source
        self.read_only = read_only
        if not (self.path.exists() and self.path.stat().st_size > 0) and not read_only:
            self._start()
        self._file = self._open_locked()
        try:
            self._read_existing()
        except BaseException:
            self._file.close()
            raise

    def earlier_row(self, source, sha256):
        """ "ok" or "failed" when `source` with this content already has a row, else None."""
        previous = self._rows.get(self._key(source)) or self._rows.get(self._by_real_path.get(os.path.realpath(source)))
        if previous is None or previous[0] != sha256:
            return None
        return "failed" if previous[1] else "ok"

    def append(self, rows):
        """Append rows (dicts shaped like a JSONL row) with one write, then flush to disk."""
        if not rows:
            return
        lines = []
        for row in rows:
            lines.append(self._format_row(row))
            self._remember(self._key(row["source"]), row.get("sha256"), bool(row.get("error")))
        data = b"".join(lines)
        try:
            while data:  # a raw write may be partial in principle; a kill meanwhile is mended on resume
                data = data[self._file.write(data) :]
            os.fsync(self._file.fileno())
        except OSError as error:  # a full disk: say which file, and that what it holds is kept
            raise CovidCXRError(f"{self.path}: {error.strerror or error}; the rows written before are kept: make "
                                "room and rerun the same command to go on") from error

    def close(self):
        """Close the file; if some sources got a newer row, keep only the last row of each."""
        if self._file.closed:
            return
        try:
            if self.superseded and not self.read_only:
                self._compact()  # still holding the lock
        finally:
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    # === Writing ===

    def _open_locked(self):
        """The file opened for appending under an exclusive lock: two runs writing one file at once
        would interleave duplicate rows, so the second is refused."""
        handle = open(self.path, "rb" if self.read_only else "ab", buffering=0)
        try:
            if fcntl is not None:  # POSIX; on Windows the file is not locked
                fcntl.flock(handle.fileno(), (fcntl.LOCK_SH if self.read_only else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                if os.fstat(handle.fileno()).st_ino != os.stat(self.path).st_ino:  # replaced meanwhile
                    raise BlockingIOError
        except BlockingIOError:
            handle.close()
            raise ConfigError(f"{self.path}: another covidcxr run is writing this file; wait for it to end "
                              "or choose another output file") from None
        return handle

    def _start(self):
        """Write the sidecar, then the empty results file (with its CSV header)."""
        if self.meta_path.exists():
            self._read_meta()  # refuses a sidecar that is not ours
        with atomic_write(self.meta_path, "w") as handle:
            handle.write(json.dumps(self.meta, indent=2) + "\n")
        with atomic_write(self.path, "wb", overwrite=self.path.exists()) as handle:
            handle.write(_csv_line(self.columns) if self.format == "csv" else b"")

    def _format_row(self, row):
        if self.format == "jsonl":
            return (json.dumps(row) + "\n").encode()
        probabilities = row.get("probabilities") or {}
        raw_probabilities = row.get("raw_probabilities") or {}
        decision = row.get("decision") or {}
        uncertainty = row.get("uncertainty") or {}
        distance = row.get("out_of_distribution") or {}
        values = [
            _csv_name(row["source"]),
            row.get("sha256"),
            row.get("label"),
            *[probabilities.get(name) for name in self.class_names],
            decision.get("rule"),
            decision.get("threshold"),
            _json_or_none(row.get("members")),
            row.get("lung_fraction"),
            row.get("lung_components"),
            _json_or_none(row.get("crop_box")),
            _json_or_none(row.get("warnings")),
            _one_line(row.get("error")),
            row.get("would_be_label"),
            *[raw_probabilities.get(name) for name in self.class_names],
            uncertainty.get("member_spread"),
            _lower(uncertainty.get("members_disagree")),
            uncertainty.get("tta"),
            uncertainty.get("tta_spread"),
            distance.get("distance"),
            _lower(distance.get("flagged")),
        ]
        return _csv_line(["" if value is None else value for value in values])

    def _remember(self, key, sha256, failed):
        if key in self._rows:
            self.superseded += 1
        self._rows[key] = (sha256, failed, self._row_count)
        self._by_real_path[os.path.realpath(key)] = key  # the same folder reached by another path is done too
        self._row_count += 1

    def _compact(self):
        mode = self.path.stat().st_mode
        with open(self.path, "rb") as old, atomic_write(self.path, "wb") as new:
            for _ in range(self._header_line_count()):
                new.write(old.readline())
            for number, line in enumerate(old):
                source, _, _ = self._parse_row(line, number)
                if self._rows[source][2] == number:  # a row's source, as read, is its key
                    new.write(line)
        os.chmod(self.path, mode & 0o7777)  # the user's file keeps the mode they gave it
        self.superseded = 0

    # === Reading ===

    def _read_existing(self):
        self._check_meta(self._read_meta())
        with open(self.path, "rb") as f:
            if self.format == "csv" and _parse_csv(f.readline()) != self.columns:
                raise ConfigError(
                    f"{self.path}: unexpected CSV columns; not overwriting it (choose another output file)"
                )
            end = f.tell()
            for number, line in enumerate(f):
                if not line.endswith(b"\n"):
                    break  # cut short by a kill: dropped below, and that image is predicted again
                self._remember(*self._parse_row(line, number))
                end += len(line)
            size = f.seek(0, os.SEEK_END)
        if end < size and not self.read_only:
            os.truncate(self.path, end)

    def _read_meta(self):
        """The sidecar's dict; refuses a results file without one, or a sidecar that is not ours."""
        not_ours = ConfigError(
            f"{self.path}: exists and is not a covidcxr results file (its {self.meta_path.name} is "
            "missing or not ours); not overwriting it (choose another output file)"
        ) if self.path.exists() else ConfigError(  # only the sidecar's name is taken
            f"{self.meta_path}: exists and is not ours (not the sidecar of a covidcxr results file); not "
            "overwriting it (choose another output file)"
        )
        try:
            meta = json.loads(self.meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            raise not_ours from None
        if not isinstance(meta, dict) or MARKER not in meta:
            raise not_ours
        if meta[MARKER] != FORMAT_VERSION:
            raise ConfigError(f"{self.path}: written by another version of keras-covidcxr (results format "
                              f"{meta[MARKER]!r}, this one writes {FORMAT_VERSION}); not mixing them (choose another "
                              "output file)")
        return meta

    def _check_meta(self, meta):
        for key in ("class_names", "model_sha256", "decision", "strict", "check_view", "tta", "package_version"):
            default = 1 if key == "tta" else None
            there, here = meta.get(key, default), self.meta.get(key, default)
            if key == "package_version" and None in (there, here):
                continue  # not recorded on one side (a check that never writes rows)
            if there != here:
                where, there, here = setting_differences({key: there}, {key: here})[0]  # the first that differs
                raise ConfigError(
                    f"{self.path}: holds results of another run ({where} {_short(there)} there, "
                    f"{_short(here)} here); not mixing them (choose another output file)"
                )

    def _parse_row(self, line, number):
        """(key, sha256, failed) of one row line: its source as written (`_key`'s form)."""
        try:
            if self.format == "jsonl":
                row = json.loads(line)
                return row["source"], row["sha256"], bool(row["error"])
            values = _parse_csv(line)
            if len(values) != len(self.columns):
                raise ValueError(f"{len(values)} columns")
            return values[0], values[1] or None, bool(values[self._error_column])
        except (ValueError, KeyError, TypeError) as error:
            line_number = number + 1 + self._header_line_count()
            raise ConfigError(
                f"{self.path}: line {line_number} is not a results row ({error}); "
                "fix or move the file before resuming"
            ) from None

    def _header_line_count(self):
        return 1 if self.format == "csv" else 0

    def _key(self, source):
        return _csv_name(str(source)) if self.format == "csv" else str(source)


def _csv_line(values):
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return _valid_utf8(buffer.getvalue()).encode("utf-8")


def _csv_name(name):
    """A file name as one line of valid UTF-8 that no other name gives: in a name with a line break, carriage
    return or backslash those are escaped (\\n, \\r, \\\\); bytes that are not UTF-8 read \\udcXX. (Folding line
    breaks into spaces made "a<newline>b.png" and "a b.png" one results row.)"""
    if any(character in name for character in "\\\n\r"):
        name = name.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
    return _valid_utf8(name)


def _valid_utf8(text):
    """A file name's bytes that are not UTF-8 (held as surrogates) written as \\udcXX, so any CSV reader reads the file."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _parse_csv(line):
    return next(csv.reader([line.decode("utf-8", "surrogateescape").rstrip("\n")]), [])


def _one_line(text):
    return None if text is None else text.replace("\r", " ").replace("\n", " ")


def _short(value):
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _lower(flag):
    """true/false (as JSON and pandas' CSV reader spell them), or None."""
    return None if flag is None else str(bool(flag)).lower()


def _json_or_none(value):
    return None if value in (None, [], {}) else json.dumps(value)

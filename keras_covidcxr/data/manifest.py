"""The dataset manifest: one CSV row per image, validated on read.

Columns (unknown extra columns are kept and written back unchanged):

| column | required | values |
|---|---|---|
| `path` | yes | image path: relative to the CSV's folder when the image is below it, else absolute |
| `task` | yes | `cls` (classification) or `seg` (segmentation) |
| `label` | for `cls` rows | `covid`, `normal`, `pneumonia`; may be empty for `seg` rows |
| `mask_path` | for `seg` rows | mask path, relative like `path` |
| `patient_id` | yes | any non-empty text; the unit of every split |
| `view` | no | `PA`, `AP`, `AP Supine`, `L`, `unknown` (empty reads as `unknown`) |
| `age` | no | years (a number) or empty |
| `sex` | no | `M`, `F` or empty |
| `source` | no | short name of the public set the image comes from |
| `split` | no | `train`, `val`, `test` or empty |

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "m.csv").write_text(
    ...     "path,task,label,patient_id\\nimages/a.png,cls,covid,p1\\n")
    >>> manifest = read_manifest(folder / "m.csv")
    >>> manifest[0].label, manifest.resolve(manifest[0]) == folder / "images/a.png"
    ('covid', True)
"""

import csv
import dataclasses
import io
import math
import os
from collections import Counter
from pathlib import Path

from keras_covidcxr.errors import DatasetError, OutputExistsError
from keras_covidcxr.io.atomic import atomic_write

TASKS = ("cls", "seg")
LABELS = ("covid", "normal", "pneumonia")
VIEWS = ("PA", "AP", "AP Supine", "L", "unknown")
SEXES = ("M", "F")
SPLITS = ("train", "val", "test")

# paper: children's films (Kermany et al.) must not train or test a model meant for adults.
ADULT_AGE = 18

REQUIRED_COLUMNS = ("path", "task", "patient_id")
COLUMNS = ("path", "task", "label", "mask_path", "patient_id", "view", "age", "sex", "source", "split")

# Error messages list at most this many bad rows, so the one-line message stays readable.
_MAX_REPORTED_PROBLEMS = 5


@dataclasses.dataclass(frozen=True)
class ManifestRow:
    """One image of a manifest. Empty optional values are `None` (`view` defaults to "unknown").

    Example:
        >>> row = ManifestRow(path="a.png", task="cls", patient_id="p1", label="covid")
        >>> row.validate()
        >>> row.view
        'unknown'
    """

    path: str
    task: str
    patient_id: str
    label: str | None = None
    mask_path: str | None = None
    view: str = "unknown"
    age: float | None = None
    sex: str | None = None
    source: str | None = None
    split: str | None = None
    extra: dict = dataclasses.field(default_factory=dict, compare=False)

    def validate(self):
        """Raise `ValueError` with the reason when a value is outside the schema."""
        if not self.path:
            raise ValueError("path is empty")
        if self.task not in TASKS:
            raise ValueError(f"task {self.task!r} is not one of {', '.join(TASKS)}")
        if not self.patient_id:
            raise ValueError("patient_id is empty")
        if self.label is not None and self.label not in LABELS:
            raise ValueError(f"label {self.label!r} is not one of {', '.join(LABELS)}")
        if self.task == "cls" and self.label is None:
            raise ValueError("a cls row needs a label")
        if self.task == "seg" and not self.mask_path:
            raise ValueError("a seg row needs a mask_path")
        if self.view not in VIEWS:
            raise ValueError(f"view {self.view!r} is not one of {', '.join(VIEWS)}")
        if self.age is not None and not (math.isfinite(self.age) and 0 <= self.age < 150):
            raise ValueError(f"age {self.age!r} is not a number of years between 0 and 150")
        if self.sex is not None and self.sex not in SEXES:
            raise ValueError(f"sex {self.sex!r} is not one of {', '.join(SEXES)} (or empty)")
        if self.split is not None and self.split not in SPLITS:
            raise ValueError(f"split {self.split!r} is not one of {', '.join(SPLITS)} (or empty)")

    def replace(self, **changes):
        """A copy with some fields changed (rows are immutable)."""
        return dataclasses.replace(self, **changes)


class Manifest:
    """A list of `ManifestRow`s plus the folder their relative paths start from.

    Example:
        >>> rows = [ManifestRow("a.png", "cls", "p1", label="covid", split="train"),
        ...         ManifestRow("b.png", "cls", "p2", label="normal", split="test")]
        >>> manifest = Manifest(rows, root="/data")
        >>> [row.path for row in manifest.filter(split="test")]
        ['b.png']
        >>> str(manifest.resolve(rows[0]))
        '/data/a.png'
    """

    def __init__(self, rows, root="."):
        self.rows = list(rows)
        self.root = Path(os.path.abspath(root))

    def __len__(self):
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __getitem__(self, index):
        return self.rows[index]

    def __repr__(self):
        return f"Manifest({len(self.rows)} rows, {len(self.patient_ids())} patients, root={str(self.root)!r})"

    def with_rows(self, rows):
        """A manifest over the same root holding `rows`."""
        return Manifest(rows, self.root)

    def filter(self, task=None, split=None, label=None, **fields):
        """Rows whose fields equal every given value (a tuple/list/set matches any of its items).

        Example: `manifest.filter(task="cls", split=("train", "val"), view="PA")`.
        """
        wanted = {"task": task, "split": split, "label": label, **fields}
        wanted = {name: value for name, value in wanted.items() if value is not None}
        for name in wanted:
            if name not in ManifestRow.__dataclass_fields__:
                raise ValueError(f"unknown manifest field {name!r}")

        def matches(row):
            for name, value in wanted.items():
                have = getattr(row, name)
                if isinstance(value, (tuple, list, set, frozenset)):
                    if have not in value:
                        return False
                elif have != value:
                    return False
            return True

        return self.with_rows(row for row in self.rows if matches(row))

    def split_rows(self, task, split):
        """The rows of `task` in `split`; a `DatasetError` saying how to make the split when there are none."""
        rows = self.filter(task=task, split=split)
        if len(rows) == 0 and not any(row.task == task for row in self.rows):
            what = {"seg": "films with lung masks", "cls": "labelled films"}.get(task, "rows of that task")
            raise DatasetError(f"the manifest has no {task} rows at all ({what}): splitting cannot make them")
        if len(rows) == 0:
            raise DatasetError(f"the manifest has no {task} rows in split {split!r}; split it by patient first "
                               "(`covidcxr data split`)")
        return rows

    def resolve(self, row_or_path):
        """Absolute path of a row's image (or of any manifest-relative path, e.g. a mask_path)."""
        relative = row_or_path.path if isinstance(row_or_path, ManifestRow) else row_or_path
        return Path(os.path.normpath(self.root / relative))  # "a/../b" -> "b"; symlinks are kept

    def resolve_mask(self, row):
        """Absolute path of a seg row's mask (None when the row has none)."""
        return None if row.mask_path is None else self.resolve(row.mask_path)

    def patient_ids(self):
        """Distinct patient ids in order of first appearance."""
        return list(dict.fromkeys(row.patient_id for row in self.rows))

    def counts(self, *fields):
        """How many rows have each combination of `fields`, e.g. `counts("split", "label")`."""
        return Counter(tuple(getattr(row, name) for name in fields) for row in self.rows)

    def rebased(self, new_root):
        """The same images, with paths re-expressed for `new_root` (POSIX separators).

        An image below `new_root` gets a path relative to it; any other image keeps an
        absolute path, never one that climbs out with "../".

        Example:
            >>> manifest = Manifest([ManifestRow("img/a.png", "cls", "p1", label="covid")], root="/data")
            >>> [row.path for row in manifest.rebased("/data")], [row.path for row in manifest.rebased("/runs")]
            (['img/a.png'], ['/data/img/a.png'])
        """
        new_root = Path(os.path.abspath(new_root))

        def re_expressed(path):
            if path is None:
                return None
            absolute = self.resolve(path)
            if absolute.is_relative_to(new_root):
                return absolute.relative_to(new_root).as_posix()
            return absolute.as_posix()

        rows = [row.replace(path=re_expressed(row.path), mask_path=re_expressed(row.mask_path)) for row in self.rows]
        return Manifest(rows, new_root)


def _optional(text):
    text = (text or "").strip()
    return text or None


def _row_from_record(record, extra_columns):
    age_text = _optional(record.get("age"))
    try:
        age = None if age_text is None else float(age_text)
    except ValueError:
        raise ValueError(f"age {age_text!r} is not a number of years") from None
    return ManifestRow(
        path=(record.get("path") or "").strip(),
        task=(record.get("task") or "").strip(),
        patient_id=(record.get("patient_id") or "").strip(),
        label=_optional(record.get("label")),
        mask_path=_optional(record.get("mask_path")),
        view=_optional(record.get("view")) or "unknown",
        age=age,
        sex=_optional(record.get("sex")),
        source=_optional(record.get("source")),
        split=_optional(record.get("split")),
        extra={name: record.get(name) or "" for name in extra_columns},
    )


def _raise_problems(problems):
    shown = "; ".join(problems[:_MAX_REPORTED_PROBLEMS])
    more = len(problems) - _MAX_REPORTED_PROBLEMS
    raise DatasetError(shown + (f" (and {more} more problems)" if more > 0 else ""), problems)


def read_manifest(path):
    """Read and validate a manifest CSV; every bad row is reported as "file:line: reason".

    Raises:
        DatasetError: the file is missing or unreadable, lacks a required column, or has bad rows.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise DatasetError(f"{path}: cannot read the manifest ({error.strerror or error})") from error
    except UnicodeDecodeError as error:
        raise DatasetError(f"{path}: not a UTF-8 text file ({error.reason})") from error
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        columns = [name.strip() for name in (reader.fieldnames or [])]
    except csv.Error as error:
        raise DatasetError(f"{path}:1: not a readable CSV header ({error})") from error
    reader.fieldnames = columns
    refuse_repeated_columns(columns, path)
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        separator = next((name for sep, name in ((";", "semicolons"), ("\t", "tabs")) if sep in "".join(columns)), None)
        hint = f" (its header is separated by {separator}: save it with commas)" if separator else ""
        raise DatasetError(f"{path}:1: missing required column(s) {', '.join(missing)}{hint}")
    extra_columns = [name for name in columns if name not in COLUMNS and name]
    rows, problems, seen = [], [], {}
    line = 1
    try:
        for record in reader:
            start, line = line + 1, reader.line_num
            where = f"{path}:{start}"
            if None in record:
                problems.append(f"{where}: more fields than columns")
                continue
            try:
                row = _row_from_record(record, extra_columns)
                row.validate()
            except ValueError as error:
                problems.append(f"{where}: {error}")
                continue
            key = (os.path.normpath(row.path), row.task)  # "./a.png" is "a.png"
            if key in seen:
                problems.append(f"{where}: {row.task} row for {row.path} repeats line {seen[key]}")
                continue
            seen[key] = start
            rows.append(row)
    except csv.Error as error:
        problems.append(f"{path}:{line + 1}: not readable as CSV ({error})")
    if problems:
        _raise_problems(problems)
    return Manifest(rows, root=path.parent)


def refuse_repeated_columns(columns, path):
    """A DatasetError naming `path` when a CSV header names a column twice: csv.DictReader would keep the last of
    them, silently."""
    repeated = [name for name, count in Counter(name.strip() for name in columns or ()).items() if count > 1 and name]
    if repeated:
        raise DatasetError(f"{path}:1: column(s) {', '.join(repeated)} appear more than once; keep one of each")


def _format_age(age):
    if age is None:
        return ""
    return str(int(age)) if float(age).is_integer() else f"{age:g}"


def refuse_own_file(manifest, path, what):
    """Refuse to write `what` (an output) at `path` when it is one of `manifest`'s images or masks."""
    target = os.path.realpath(path)
    for row in manifest.rows:
        listed = [manifest.resolve(row), *([manifest.resolve_mask(row)] if row.mask_path else [])]
        if target in (os.path.realpath(file) for file in listed):
            raise DatasetError(f"{path}: is one of the manifest's own files ({row.path}); write {what} elsewhere")


def write_manifest(manifest, path, overwrite=True):
    """Write `manifest` as CSV at `path`, atomically, with paths re-expressed for the CSV's folder.

    Images below the CSV's folder get relative paths, all others absolute ones (see `Manifest.rebased`).

    Extra (unknown) columns of the rows are written after the standard ones.

    Raises:
        DatasetError: a row is invalid, `path` is one of its images or masks, or `path` exists and
            `overwrite` is False.
    """
    path = Path(path)
    problems = []
    for index, row in enumerate(manifest.rows):
        try:
            row.validate()
        except ValueError as error:
            problems.append(f"row {index} ({row.path}): {error}")
    if problems:
        _raise_problems(problems)
    refuse_own_file(manifest, path, "the manifest")
    rebased = manifest.rebased(path.parent)
    extra_columns = list(dict.fromkeys(name for row in rebased for name in row.extra))
    try:
        with atomic_write(path, "w", overwrite=overwrite) as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow([*COLUMNS, *extra_columns])
            for row in rebased:
                values = [
                    row.path,
                    row.task,
                    row.label or "",
                    row.mask_path or "",
                    row.patient_id,
                    row.view,
                    _format_age(row.age),
                    row.sex or "",
                    row.source or "",
                    row.split or "",
                ]
                writer.writerow([*values, *(row.extra.get(name, "") for name in extra_columns)])
    except OutputExistsError as error:
        raise DatasetError(f"{path}: already exists; pass overwrite=True (--overwrite) to replace it") from error
    except OSError as error:
        raise DatasetError(f"{path}: cannot write the manifest ({error.strerror or error})") from error
    return path

"""Audit a manifest for the leaks and exclusions the paper insists on, before any training.

Errors (the audit fails): a patient in two splits; the same picture (one file under two patient
ids, or near-duplicate files, see `near_duplicates`) in two splits; a child (age under 18; the
child's rows without an age are flagged too, also under another patient id naming one of its
files) unless allowed; a lateral view; an
image whose smaller side is under `min_size` px (paper: 256); a missing or unreadable image or
mask; a mask whose size differs from its image; one file in two rows of one task (under any spelling of
its path: a symlink or hard link counts as the same file), which would count it twice. Warnings (reported, not failing): the same
picture (one file or near-duplicates) under two patient ids within one split (link them before
re-splitting), rows without a split.

Example:
    >>> report = audit_manifest(read_manifest("manifest.csv"))  # doctest: +SKIP
    >>> print(report.summary())  # doctest: +SKIP
    >>> report.to_json("audit.json")  # doctest: +SKIP
"""

import dataclasses
import json
from collections import defaultdict

from keras_covidcxr.data.image_scan import header_size, patients_sharing_files, scan_images
from keras_covidcxr.data.manifest import ADULT_AGE
from keras_covidcxr.data.near_duplicates import (
    DEFAULT_NEAR_DUPLICATE_THRESHOLD,
    MAX_HASH_DISTANCE,
    duplicate_groups,
)
from keras_covidcxr.data.source_shortcut import source_shortcut
from keras_covidcxr.data.splits import ids_differing_only_in_case, linked_patient_groups
from keras_covidcxr.errors import ConfigError
from keras_covidcxr.io.atomic import atomic_write
from keras_covidcxr.io.file_identity import file_identity
from keras_covidcxr.settings import is_whole_number

MIN_IMAGE_SIDE = 256  # paper: images under 256 px were dropped

# check name -> (severity, what it means), in the order the summary lists them
CHECKS = {
    "no_rows": ("error", "a manifest without rows (nothing to train or evaluate on)"),
    "patient_in_several_splits": ("error", "patients whose images are in more than one split"),
    "near_duplicate_across_splits": (
        "error",
        "the same picture (near-duplicate files) in more than one split",
    ),
    "pediatric": ("error", f"patients under {ADULT_AGE} (children's films must not train an adult model)"),
    "lateral_view": ("error", "lateral views (the models take frontal films only)"),
    "image_too_small": ("error", "images whose smaller side is under the minimum size"),
    "missing_file": ("error", "image or mask files that do not exist"),
    "unreadable_file": ("error", "image or mask files that cannot be decoded"),
    "mask_size_mismatch": ("error", "masks whose size differs from their image"),
    "file_listed_twice": ("error", "one image file in several rows of one task (it would count twice)"),
    "same_picture_several_patients": ("warning", "the same picture under several patient ids (one split)"),
    "no_split": ("warning", "rows without a split"),
}

# check name -> what to do about its findings, printed under them
REMEDIES = {
    "no_rows": "check the manifest's path, or build it again with `covidcxr data build`",
    "patient_in_several_splits": "split again with `covidcxr data split` (it keeps each patient, and ids differing "
                                 "only in letter case, in one split)",
    "near_duplicate_across_splits": "split again with `covidcxr data split` (it keeps patients that share a picture "
                                    "in one split); if they are one person, give them one patient id",
    "pediatric": "drop them (`covidcxr data split --exclude-refused`), or pass --allow-pediatric if the model is "
                 "meant for children",
    "lateral_view": "drop them (`covidcxr data split --exclude-refused`): the models take frontal films only",
    "image_too_small": "drop them (`covidcxr data split --exclude-refused`), or lower --min-size if you accept "
                       "films this small",
    "missing_file": "check these paths (relative paths start at the manifest's folder), or drop the rows "
                    "(`covidcxr data split --exclude-refused`)",
    "unreadable_file": "re-export or convert these files, or drop the rows (`covidcxr data split --exclude-refused`)",
    "mask_size_mismatch": "redraw these masks at their film's size, or drop the pairs "
                          "(`covidcxr data split --exclude-refused`)",
    "file_listed_twice": "keep one row per file and task (a symlink or another spelling of its path is the same "
                         "file); `covidcxr data split --exclude-refused` keeps the first",
    "same_picture_several_patients": "if these are one person, give them one patient id; the split keeps them "
                                     "together either way",
    "no_split": "assign splits with `covidcxr data split` (with --keep-existing where other rows have one: they "
                "keep it, and earlier test films stay in test)",
}


@dataclasses.dataclass(frozen=True)
class AuditFinding:
    """One problem: which check, how bad, a readable message, and the files and patients involved."""

    check: str
    severity: str
    message: str
    paths: tuple = ()
    patient_ids: tuple = ()


@dataclasses.dataclass
class AuditReport:
    """The audit's findings; `passed` is True when there is no error (warnings allowed).

    `source_shortcut` (a `SourceShortcut`, or None when the rows name fewer than two sources) tells how well
    the source column alone predicts each label: not a finding about any row, a caution about the mix.
    """

    findings: list
    settings: dict
    n_rows: int
    n_patients: int
    n_files: int
    source_shortcut: object = None

    @property
    def errors(self):
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self):
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def passed(self):
        return not self.errors

    def counts(self):
        """Findings per check, for every check (zeros included)."""
        counts = dict.fromkeys(CHECKS, 0)
        for finding in self.findings:
            counts[finding.check] += 1
        return counts

    def to_dict(self):
        return {
            "passed": self.passed,
            "n_rows": self.n_rows,
            "n_patients": self.n_patients,
            "n_files": self.n_files,
            "settings": dict(self.settings),
            "counts": self.counts(),
            "findings": [
                dataclasses.asdict(f) | {"paths": list(f.paths), "patient_ids": list(f.patient_ids)}
                for f in self.findings
            ],
            "source_shortcut": self.source_shortcut and self.source_shortcut.to_dict(),
        }

    def to_json(self, path, overwrite=True):
        """Write the report as JSON, atomically; returns the path."""
        with atomic_write(path, "w", overwrite=overwrite) as handle:
            json.dump(self.to_dict(), handle, indent=2)
            handle.write("\n")
        return path

    def summary(self, max_per_check=None):
        """Readable text naming every offending file and patient (or the first `max_per_check`)."""
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [
            (
                f"Audit {verdict}: {len(self.errors)} errors, {len(self.warnings)} warnings "
                f"in {self.n_rows} rows ({self.n_patients} patients, {self.n_files} image files)."
            ),
            "Settings: " + ", ".join(f"{key}={value}" for key, value in self.settings.items()),
        ]
        by_check = defaultdict(list)
        for finding in self.findings:
            by_check[finding.check].append(finding)
        for check, (severity, meaning) in CHECKS.items():
            found = by_check.get(check)
            if not found:
                continue
            lines.append(f"[{severity}] {check} ({len(found)}): {meaning}")
            shown = found if max_per_check is None else found[:max_per_check]
            lines.extend(f"  - {finding.message}" for finding in shown)
            if len(shown) < len(found):
                lines.append(f"  ... and {len(found) - len(shown)} more")
            lines.append(f"  what to do: {REMEDIES[check]}")
        if self.source_shortcut is not None:
            lines.extend(self.source_shortcut.summary_lines())
        return "\n".join(lines)

    def __str__(self):
        return self.summary()


def _patients_in_several_splits(manifest):
    rows_of = defaultdict(list)  # ids differing only in letter case are one patient
    for row in manifest:
        if row.split:
            rows_of[row.patient_id.casefold()].append(row)
    for rows in rows_of.values():
        splits = sorted({row.split for row in rows})
        if len(splits) > 1:
            ids = tuple(dict.fromkeys(row.patient_id for row in rows))
            patient = ids[0] if len(ids) == 1 else f"{' / '.join(ids)} (one id in different letter case)"
            files = "; ".join(f"{row.path} ({row.split})" for row in rows)
            yield AuditFinding(
                "patient_in_several_splits",
                "error",
                f"patient {patient} is in {', '.join(splits)}: {files}",
                tuple(dict.fromkeys(row.path for row in rows)),
                ids,
            )


def _rows_listing_one_file_twice(scans):
    """The rows of each file that name it more than once in one task, per file and task."""
    for scan in scans:
        for task in dict.fromkeys(row.task for row in scan.rows):
            rows = [row for row in scan.rows if row.task == task]
            if len(rows) > 1:
                yield rows


def _listed_twice(rows):
    """The finding about the rows that name one file in one task."""
    listed = "; ".join(f"{row.path} (patient {row.patient_id}, {row.label or 'no label'}, "
                       f"{row.split or 'no split'})" for row in rows)
    return AuditFinding(
        "file_listed_twice",
        "error",
        f"one file in {len(rows)} {rows[0].task} rows: {listed}",
        tuple(dict.fromkeys(row.path for row in rows)),
        tuple(dict.fromkeys(row.patient_id for row in rows)),
    )


def _row_checks(manifest, scans, allow_pediatric):
    # a child's films without an age are a child's too, also under another patient id for one of its files
    group = linked_patient_groups(manifest.patient_ids(),
                                  [*patients_sharing_files(manifest, [scan.rows for scan in scans]),
                                   *ids_differing_only_in_case(manifest.patient_ids())])
    youngest = {}
    for row in manifest:
        if row.age is not None and row.age < ADULT_AGE:
            key = group[row.patient_id]
            youngest[key] = min(row.age, youngest.get(key, row.age))
    unsplit = []
    for row in manifest:
        child_age = youngest.get(group[row.patient_id])
        if not allow_pediatric and child_age is not None and (row.age is None or row.age < ADULT_AGE):
            age = f"age {row.age:g}" if row.age is not None else f"age {child_age:g} in another row"
            yield AuditFinding(
                "pediatric",
                "error",
                f"{row.path} (patient {row.patient_id}): {age}",
                (row.path,),
                (row.patient_id,),
            )
        if row.view == "L":
            yield AuditFinding(
                "lateral_view",
                "error",
                f"{row.path} (patient {row.patient_id}): view L",
                (row.path,),
                (row.patient_id,),
            )
        if not row.split:
            unsplit.append(row)
    if unsplit:
        named = ", ".join(row.path for row in unsplit[:5]) + (", ..." if len(unsplit) > 5 else "")
        yield AuditFinding(
            "no_split",
            "warning",
            f"{len(unsplit)} of {len(manifest)} rows have no split: {named}",
            tuple(row.path for row in unsplit),
            tuple(dict.fromkeys(r.patient_id for r in unsplit)),
        )


def _file_checks(scans, min_size):
    for scan in scans:
        patients = tuple(dict.fromkeys(row.patient_id for row in scan.rows))
        who = f"patient {', '.join(patients)}"
        if scan.missing:
            yield AuditFinding(
                "missing_file",
                "error",
                f"{scan.relative_path} ({who}): image file not found",
                (scan.relative_path,),
                patients,
            )
        elif scan.error:
            yield AuditFinding(
                "unreadable_file",
                "error",
                f"{scan.relative_path} ({who}): {scan.error}",
                (scan.relative_path,),
                patients,
            )
        elif scan.size is not None and min(scan.size) < min_size:
            height, width = scan.size
            yield AuditFinding(
                "image_too_small",
                "error",
                f"{scan.relative_path} ({who}): {width}x{height} px, smaller side under {min_size}",
                (scan.relative_path,),
                patients,
            )


def _mask_checks(manifest, scans, check_images):
    size_of = {file_identity(scan.path): scan.size for scan in scans}
    for row in manifest:
        if row.task != "seg" or not row.mask_path:
            continue
        mask = manifest.resolve_mask(row)
        who = f"patient {row.patient_id}"
        if not mask.is_file():
            yield AuditFinding(
                "missing_file",
                "error",
                f"{row.mask_path} ({who}): mask of {row.path} not found",
                (row.mask_path,),
                (row.patient_id,),
            )
            continue
        if not check_images:
            continue
        mask_size = header_size(mask)
        if mask_size is None:
            yield AuditFinding(
                "unreadable_file",
                "error",
                f"{row.mask_path} ({who}): mask cannot be decoded",
                (row.mask_path,),
                (row.patient_id,),
            )
            continue
        image = size_of.get(file_identity(manifest.resolve(row)))
        if image is not None and (mask_size[1], mask_size[0]) != image:
            yield AuditFinding(
                "mask_size_mismatch",
                "error",
                f"{row.mask_path} ({who}): mask {mask_size[0]}x{mask_size[1]} px, "
                f"image {row.path} {image[1]}x{image[0]} px",
                (row.mask_path, row.path),
                (row.patient_id,),
            )


def _shared_file_checks(scans):
    """One file (any spelling of its path) named by rows of several patients, in several splits or in one (one
    patient's file in two splits is that patient's finding)."""
    for scan in scans:
        splits = tuple(dict.fromkeys(row.split for row in scan.rows if row.split))
        patients = tuple(dict.fromkeys(row.patient_id for row in scan.rows))
        if len(patients) < 2:
            continue
        rows = "; ".join(f"{row.path} ({row.task}, patient {row.patient_id}, {row.split or 'no split'})"
                         for row in scan.rows)
        paths = tuple(dict.fromkeys(row.path for row in scan.rows))
        if len(splits) > 1:
            yield AuditFinding("near_duplicate_across_splits", "error",
                               f"one file in {', '.join(splits)}: {rows}", paths, patients)
        else:
            yield AuditFinding("same_picture_several_patients", "warning",
                               f"one file under patients {', '.join(patients)}: {rows}", paths, patients)


def _duplicate_checks(scans, threshold, max_hash_distance):
    for group in duplicate_groups([scan for scan in scans if scan.fingerprint is not None], threshold,
                                  max_hash_distance):
        patients = ", ".join(group.patient_ids)
        files = "; ".join(group.paths)
        if len(group.splits) > 1:
            yield AuditFinding(
                "near_duplicate_across_splits",
                "error",
                f"same picture in {', '.join(group.splits)} (patients {patients}; similarity >= "
                f"{group.min_similarity}): {files}",
                group.paths,
                group.patient_ids,
            )
        elif len(group.patient_ids) > 1:
            yield AuditFinding(
                "same_picture_several_patients",
                "warning",
                f"same picture under patients {patients} (similarity >= {group.min_similarity}): {files}",
                group.paths,
                group.patient_ids,
            )


def audit_manifest(
    manifest,
    *,
    allow_pediatric=False,
    min_size=MIN_IMAGE_SIDE,
    near_duplicate_threshold=DEFAULT_NEAR_DUPLICATE_THRESHOLD,
    max_hash_distance=MAX_HASH_DISTANCE,
    check_images=True,
    progress=None,
):
    """Run every check on `manifest` and return an `AuditReport`.

    Args:
        manifest: the `Manifest` to audit (splits are read from its `split` column).
        allow_pediatric: do not flag patients under 18.
        min_size: smallest allowed image side in pixels (paper: 256).
        near_duplicate_threshold: thumbnail correlation at or above which two files whose
            perceptual hashes differ in at most `MAX_HASH_DISTANCE` bits count as the same
            picture (default 0.97; see `keras_covidcxr.data.near_duplicates` for why).
        max_hash_distance: the most perceptual-hash bits (of 64) two such files may differ in
            (default 6). Cropped or bordered copies differ in more (12-14), but so do look-alike
            films: see `keras_covidcxr.data.near_duplicates` before loosening it.
        check_images: decode the images (sizes, near-duplicates, unreadable files); when False
            only file existence and the manifest's own columns are checked.
        progress: optional `callable(done, total)` called after each image file is read.
    """
    if min_size < 0 or int(min_size) != min_size:
        raise ConfigError(f"min_size={min_size!r}: need a whole number of pixels >= 0")
    if not -1.0 <= near_duplicate_threshold <= 1.0:
        raise ConfigError(f"near_duplicate_threshold={near_duplicate_threshold!r}: a correlation in [-1, 1]")
    if not is_whole_number(max_hash_distance) or not 0 <= max_hash_distance <= 64:
        raise ConfigError(f"max_hash_distance={max_hash_distance!r}: a number of bits from 0 to 64")
    scans = scan_images(manifest, progress=progress, decode=check_images)
    findings = [
        *([AuditFinding("no_rows", "error", "the manifest has no rows")] if not len(manifest) else []),
        *_patients_in_several_splits(manifest),
        *map(_listed_twice, _rows_listing_one_file_twice(scans)),
        *_shared_file_checks(scans),
        *(_duplicate_checks(scans, near_duplicate_threshold, max_hash_distance) if check_images else ()),
        *_row_checks(manifest, scans, allow_pediatric),
        *_file_checks(scans, min_size),
        *_mask_checks(manifest, scans, check_images),
    ]
    order = list(CHECKS)
    findings.sort(key=lambda finding: order.index(finding.check))
    settings = {
        "min_size": int(min_size),
        "near_duplicate_threshold": near_duplicate_threshold,
        "max_hash_distance": int(max_hash_distance),
        "allow_pediatric": allow_pediatric,
        "check_images": check_images,
    }
    return AuditReport(findings, settings, len(manifest), len(manifest.patient_ids()), len(scans),
                       source_shortcut(manifest))


def exclude_refused(manifest, *, allow_pediatric=False, min_size=MIN_IMAGE_SIDE, progress=None):
    """Drop the rows the audit refuses for themselves (children, laterals, small, missing or
    unreadable files, mismatched masks, a file's second row in one task), so that build -> split -> audit
    passes without hand edits.

    Only the audit's per-image checks run: leaks across splits are what splitting fixes.

    Returns:
        (kept `Manifest`, {check: [AuditFinding, ...]} of what was dropped and why).

    Example:
        >>> kept, dropped = exclude_refused(manifest)  # doctest: +SKIP
        >>> {check: len(findings) for check, findings in dropped.items()}  # doctest: +SKIP
        {'pediatric': 1, 'image_too_small': 10}
    """
    scans = scan_images(manifest, progress=progress)
    def identity(path):
        return file_identity(manifest.resolve(path))

    dropped, refused = {}, set()  # files, masks, (film, mask) pairs and patients whose rows go
    for finding in (*_row_checks(manifest, scans, allow_pediatric), *_file_checks(scans, min_size),
                    *_mask_checks(manifest, scans, True)):
        if finding.severity != "error":
            continue
        dropped.setdefault(finding.check, []).append(finding)
        if finding.check == "pediatric":
            refused.add(("patient", finding.patient_ids[0], finding.paths[0]))
        elif finding.check == "mask_size_mismatch":  # this film's mask only: another film may fit it
            refused.add(("pair", identity(finding.paths[1]), identity(finding.paths[0])))
        elif finding.paths[0] in {row.mask_path for row in manifest}:  # a missing or unreadable mask
            refused.add(("mask", identity(finding.paths[0])))
        else:
            refused.add(("file", identity(finding.paths[0])))

    for rows in _rows_listing_one_file_twice(scans):  # the first row of the file in its task stays
        dropped.setdefault("file_listed_twice", []).append(_listed_twice(rows))
        refused.update(("row", id(row)) for row in rows[1:])

    def is_refused(row):
        film, mask = identity(row.path), row.mask_path and identity(row.mask_path)
        return bool({("patient", row.patient_id, row.path), ("file", film), ("mask", mask),
                     ("pair", film, mask), ("row", id(row))} & refused)

    return manifest.with_rows(row for row in manifest if not is_refused(row)), dropped

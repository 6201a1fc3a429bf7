"""Convert a curated shared CXR folder's `manifest.csv` into a manifest.

Reads both shared folders: `cxr/` (columns `file, task, label, patient_id, view, age,
source_repo, source_path, license`) and `cxr_extra/` (the same plus `sex`, `source` and
`finding_labels`). `label` "unknown" becomes empty; seg rows get `mask_path` by swapping
`images/` for `masks/` (`seg/images/NAME.png` -> `seg/masks/NAME.png`); `source` is the `source`
column or else the patient id's prefix (`ieee8023:12` -> `ieee8023`, also `actualmed`,
`figure1`, `nih`, `radiography`, `hannover`). The licence and NIH's finding labels travel as
extra columns. Merge the two with `covidcxr data merge` (paths stay relative to each CSV).

Example:
    >>> manifest, report = from_shared_cxr_manifest("data/cxr/manifest.csv")  # doctest: +SKIP
    >>> write_manifest(manifest, "/tmp/shared_manifest.csv")  # doctest: +SKIP
"""

import csv
import os
from pathlib import PurePosixPath

from keras_covidcxr.data.build_report import BuildReport, BuiltManifest
from keras_covidcxr.data.builders._files import read_text, require_file, with_progress
from keras_covidcxr.data.manifest import (
    LABELS,
    TASKS,
    DatasetError,
    Manifest,
    ManifestRow,
    refuse_repeated_columns,
)
from keras_covidcxr.data.vocabulary import CT_VIEWS, normalize_sex, normalize_view, parse_age

_REQUIRED = ("file", "task", "label", "patient_id")


def _mask_path(image_path):
    parts = list(PurePosixPath(image_path).parts)
    if "images" not in parts:
        return None
    parts[len(parts) - 1 - parts[::-1].index("images")] = "masks"
    return PurePosixPath(*parts).as_posix()


def _source(patient_id, source_repo, source=None):
    if source:
        return source
    if ":" in patient_id:
        return patient_id.split(":", 1)[0]
    return (source_repo or "").split(" ", 1)[0].split("/")[-1] or None


def _extra_columns(record):
    extra = {"license": (record.get("license") or "").strip()}
    if "finding_labels" in record:
        extra["finding_labels"] = (record.get("finding_labels") or "").strip()
    return extra


def from_shared_cxr_manifest(csv_path, progress=None):
    """Rows for every seg/cls line of the shared manifest whose files exist.

    `progress(done, total)`, when given, is called after each CSV row.
    """
    csv_path = require_file(csv_path, "shared CXR manifest")
    root = csv_path.parent
    report = BuildReport("shared-cxr")
    rows, seen = [], {}
    with read_text(csv_path, "shared CXR manifest") as handle:
        reader = csv.DictReader(handle)
        refuse_repeated_columns(reader.fieldnames, csv_path)
        missing = [name for name in _REQUIRED if name not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(f"{csv_path}:1: missing column(s) {', '.join(missing)}")
        numbered = [(reader.line_num, record) for record in reader]
        for line_number, record in with_progress(numbered, progress):
            path = (record["file"] or "").strip()
            task = (record["task"] or "").strip()
            where = path or f"{csv_path.name}:{line_number}"
            label = (record["label"] or "").strip().lower()
            label = None if label in ("", "unknown") else label
            if task not in TASKS:
                report.drop(where, f"task {task!r} is not seg/cls")
                continue
            if label is not None and label not in LABELS:
                report.drop(where, f"label {label!r} is not covid/normal/pneumonia")
                continue
            if task == "cls" and label is None:
                report.drop(where, "cls row without a known label")
                continue
            view = (record.get("view") or "").strip()
            if view.lower() in CT_VIEWS:  # ieee8023 lists CT slices beside its X-rays
                report.drop(where, f"view {view!r}: a CT slice, not a chest X-ray")
                continue
            key = (os.path.normpath(path), task)  # "./a.png" is "a.png"
            if key in seen:
                conflict = f" (labelled {seen[key]} there, {label} here)" if seen[key] != label else ""
                report.drop(where, f"{task} row listed twice; the first kept{conflict}")
                continue
            if not (root / path).is_file():
                report.drop(where, "image file not found")
                continue
            mask_path = _mask_path(path) if task == "seg" else None
            if task == "seg" and (mask_path is None or not (root / mask_path).is_file()):
                report.drop(where, "mask file not found")
                continue
            patient_id = (record["patient_id"] or "").strip()
            if not patient_id:
                report.drop(where, "no patient id")
                continue
            seen[key] = label
            rows.append(
                ManifestRow(
                    path=path,
                    task=task,
                    patient_id=patient_id,
                    label=label,
                    mask_path=mask_path,
                    view=normalize_view(record.get("view")),
                    age=parse_age(record.get("age")),
                    sex=normalize_sex(record.get("sex")),
                    source=_source(patient_id, record.get("source_repo"), (record.get("source") or "").strip()),
                    extra=_extra_columns(record),
                )
            )
            report.keep(label, task)
    return BuiltManifest(Manifest(rows, root=root), report)

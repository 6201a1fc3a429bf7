"""Build a classification manifest from BIMCV-COVID19+ (all films of COVID-19 positive patients).

Layout (BIDS): `sub-S0001/ses-E0001/mod-rx/sub-S0001_ses-E0001_run-1_bp-chest_vp-ap_cr.png`,
possibly inside `bimcv_covid19_posi_subjects_<n>/` folders, with `participants.tsv` (columns
`participant_id` or `participant`, `age` as "[71]" or "71", `gender`). The patient is the
`sub-` id; the view comes from the file name's `vp-` tag (`vp-pa`, `vp-ap`, `vp-ll` = lateral,
dropped).

Example:
    >>> manifest, report = from_bimcv("BIMCV-COVID19-cIter_1_2")  # doctest: +SKIP
"""

import csv
import re

from keras_covidcxr.data.build_report import BuildReport, BuiltManifest
from keras_covidcxr.data.builders._files import (
    find_images,
    read_text,
    relative_posix,
    require_folder,
    with_progress,
)
from keras_covidcxr.data.manifest import DatasetError, Manifest, ManifestRow
from keras_covidcxr.data.vocabulary import normalize_sex, normalize_view, parse_age

_SUBJECT = re.compile(r"(sub-[A-Za-z0-9]+)")
_VIEW_TAG = re.compile(r"_vp-([A-Za-z]+)")
_BIMCV_VIEWS = {"pa": "PA", "ap": "AP", "ll": "L", "rl": "L", "l": "L", "lat": "L"}


def _subject_id(record):
    """The record's `sub-` id; releases name the column `participant_id` or `participant`."""
    subject = (record.get("participant_id") or record.get("participant") or "").strip()
    if subject and not subject.startswith("sub-"):
        subject = f"sub-{subject}"
    return subject


def _participants(root):
    """sub-id -> (age, sex) from every participants.tsv under `root`."""
    people = {}
    for tsv in sorted(root.rglob("participants.tsv")):
        with read_text(tsv, "participants.tsv") as handle:
            for record in csv.DictReader(handle, delimiter="\t"):
                subject = _subject_id(record)
                if subject:
                    people[subject] = (
                        parse_age(record.get("age")),
                        normalize_sex(record.get("gender") or record.get("sex")),
                    )
    return people


def from_bimcv(root, drop_lateral=True, progress=None):
    """Cls rows (label covid) for the X-ray images under `root`; patient ids `bimcv:sub-...`.

    When no image gets an age from participants.tsv, the report says so: children would go
    unnoticed by the audit. `progress(done, total)`, when given, is called after each image.
    """
    root = require_folder(root, "BIMCV-COVID19+")
    people = _participants(root)
    report = BuildReport("bimcv-covid19+")
    rows = []
    for image in with_progress(find_images(root, extensions=(".png", ".jpg", ".jpeg")), progress):
        relative = relative_posix(image, root)
        subject = _SUBJECT.search(relative)
        if subject is None:
            report.drop(relative, "no sub-<id> in the path")
            continue
        if "/mod-" in relative and "/mod-rx/" not in relative:
            report.drop(relative, "not an X-ray (mod- folder is not mod-rx)")
            continue
        tag = _VIEW_TAG.search(image.name)
        view = _BIMCV_VIEWS.get(tag.group(1).lower(), normalize_view(tag.group(1))) if tag else "unknown"
        if drop_lateral and view == "L":
            report.drop(relative, "lateral view")
            continue
        age, sex = people.get(subject.group(1), (None, None))
        rows.append(
            ManifestRow(
                path=relative,
                task="cls",
                patient_id=f"bimcv:{subject.group(1)}",
                label="covid",
                view=view,
                age=age,
                sex=sex,
                source="bimcv",
            )
        )
        report.keep("covid", "cls")
    if not rows and not report.dropped:
        raise DatasetError(f"{root}: no PNG/JPEG images found")
    if rows and all(row.age is None for row in rows):
        report.note(
            "no image got an age: participants.tsv is missing or its ids do not match the sub- "
            "folders, so the audit cannot detect children"
        )
    return BuiltManifest(Manifest(rows, root=root), report)

"""Build a classification manifest from the ieee8023 COVID-19 image data collection's metadata.csv.

Columns used: `patientid, sex, age, finding, view, modality, folder, filename, license` (others
are ignored). `finding` is hierarchical ("Pneumonia/Viral/COVID-19"): anything naming COVID-19
is covid, "No Finding" is normal, any other pneumonia is pneumonia; the rest (ARDS, "todo",
tuberculosis, ...) is dropped.

Example:
    >>> manifest, report = from_ieee8023_metadata("metadata.csv", "covid-chestxray-dataset/images")  # doctest: +SKIP
"""

import csv

from keras_covidcxr.data.build_report import BuildReport, BuiltManifest
from keras_covidcxr.data.builders._files import read_text, require_file, require_folder, with_progress
from keras_covidcxr.data.manifest import (
    ADULT_AGE,
    DatasetError,
    Manifest,
    ManifestRow,
    refuse_repeated_columns,
)
from keras_covidcxr.data.vocabulary import normalize_label, normalize_sex, normalize_view, parse_age


def from_ieee8023_metadata(metadata_csv, image_dir, drop_lateral=True, drop_pediatric=True, progress=None):
    """Cls rows for the X-ray images of `metadata.csv` found in `image_dir`.

    Dropped, with the reason in the report: modality other than X-ray (CT), a finding that is
    not covid/normal/pneumonia, a lateral view (`drop_lateral`), a known age under 18
    (`drop_pediatric`), an image file that is not there. Patient ids become `ieee8023:<patientid>`.
    `progress(done, total)`, when given, is called after each CSV row.
    """
    metadata_csv = require_file(metadata_csv, "ieee8023 metadata.csv")
    image_dir = require_folder(image_dir, "ieee8023 image")
    report = BuildReport("ieee8023")
    rows, seen = [], set()
    with read_text(metadata_csv, "ieee8023 metadata.csv") as handle:
        reader = csv.DictReader(handle)
        refuse_repeated_columns(reader.fieldnames, metadata_csv)
        missing = {"patientid", "finding", "filename"} - set(reader.fieldnames or [])
        if missing:
            raise DatasetError(f"{metadata_csv}:1: missing column(s) {', '.join(sorted(missing))}")
        numbered = [(reader.line_num, record) for record in reader]
        for line_number, record in with_progress(numbered, progress):
            filename = (record.get("filename") or "").strip()
            where = filename or f"{metadata_csv.name}:{line_number}"
            modality = (record.get("modality") or "X-ray").strip().lower().replace("-", "")
            if modality not in ("xray", "x ray", "cr", "dx"):
                report.drop(where, f"modality {record.get('modality')!r} is not X-ray")
                continue
            label = normalize_label(record.get("finding"))
            if label is None:
                report.drop(where, f"finding {record.get('finding')!r} is not covid/normal/pneumonia")
                continue
            view = normalize_view(record.get("view"))
            if drop_lateral and view == "L":
                report.drop(where, "lateral view")
                continue
            age = parse_age(record.get("age"))
            if drop_pediatric and age is not None and age < ADULT_AGE:
                report.drop(where, f"patient under {ADULT_AGE}")
                continue
            if filename in seen:
                report.drop(where, "image listed twice")
                continue
            patient = (record.get("patientid") or "").strip()
            if not patient:  # a split by patient cannot place it
                report.drop(where, "no patientid")
                continue
            if not filename or not (image_dir / filename).is_file():
                report.drop(where, "image file not found")
                continue
            seen.add(filename)
            rows.append(
                ManifestRow(
                    path=filename,
                    task="cls",
                    patient_id=f"ieee8023:{patient}",
                    label=label,
                    view=view,
                    age=age,
                    sex=normalize_sex(record.get("sex")),
                    source="ieee8023",
                    extra={"finding": record.get("finding") or "", "license": record.get("license") or ""},
                )
            )
            report.keep(label, "cls")
    return BuiltManifest(Manifest(rows, root=image_dir), report)

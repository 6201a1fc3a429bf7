"""Build a classification manifest from MIDRC-RICORD-1C as TCIA distributes it (all COVID-19).

Layout: `MIDRC-RICORD-1C/<patient>/<study>/<series>/*.dcm`. Every film is covid; the patient id
is the patient folder's name. When pydicom is installed the DICOM header adds the view
(ViewPosition), age and sex; laterals are dropped. The annotation CSV/JSON of RICORD (airspace
disease grading) is not needed for the labels and is ignored.

Example:
    >>> manifest, report = from_midrc_ricord("manifest-1612365584013/MIDRC-RICORD-1C")  # doctest: +SKIP
"""

from pathlib import Path

from keras_covidcxr.data.build_report import BuildReport, BuiltManifest
from keras_covidcxr.data.builders._files import find_images, relative_posix, require_folder, with_progress
from keras_covidcxr.data.manifest import DatasetError, Manifest, ManifestRow
from keras_covidcxr.data.vocabulary import normalize_sex, normalize_view, parse_age


def _collection_root(root):
    """Step into a single `MIDRC-RICORD-1C` folder when `root` is the folder above it."""
    inner = [p for p in root.iterdir() if p.is_dir() and p.name.upper().startswith("MIDRC-RICORD")]
    return inner[0] if len(inner) == 1 else root


def _dicom_header(path):
    """(view, age, sex) from the DICOM header; unknowns when pydicom is missing or the file is odd."""
    try:
        import pydicom
    except ImportError:
        return "unknown", None, None
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception:  # noqa: BLE001 - a damaged header only costs metadata; the audit reads the pixels
        return "unknown", None, None
    return (
        normalize_view(getattr(header, "ViewPosition", "")),
        parse_age(getattr(header, "PatientAge", "")),
        normalize_sex(getattr(header, "PatientSex", "")),
    )


def from_midrc_ricord(root, read_headers=True, drop_lateral=True, progress=None):
    """Cls rows (label covid) for every DICOM/PNG film under `root`; patient id `midrc:<folder>`.

    `progress(done, total)`, when given, is called after each file.
    """
    root = _collection_root(require_folder(root, "MIDRC-RICORD-1C"))
    report = BuildReport("midrc-ricord-1c")
    rows = []
    for image in with_progress(find_images(root), progress):
        relative = relative_posix(image, root)
        parts = Path(relative).parts
        if len(parts) < 2:
            report.drop(relative, "file is not inside a patient folder")
            continue
        view, age, sex = (
            _dicom_header(image)
            if read_headers and image.suffix.lower() in (".dcm", ".dicom")
            else ("unknown", None, None)
        )
        if drop_lateral and view == "L":
            report.drop(relative, "lateral view")
            continue
        rows.append(
            ManifestRow(
                path=relative,
                task="cls",
                patient_id=f"midrc:{parts[0]}",
                label="covid",
                view=view,
                age=age,
                sex=sex,
                source="midrc-ricord-1c",
            )
        )
        report.keep("covid", "cls")
    if not rows and not report.dropped:
        raise DatasetError(f"{root}: no DICOM or image files found")
    return BuiltManifest(Manifest(rows, root=root), report)

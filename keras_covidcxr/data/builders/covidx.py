"""Build a manifest from a COVIDx split list (`train_COVIDx5.txt`, `test_COVIDx5.txt`).

Each line reads `patient_id filename label source`, separated by spaces, e.g.
`3 SARS-CoV-2-1.png COVID-19 cohen` (a filename with spaces is tolerated: the first
token is the patient id and the last two the label and source). COVIDx CXR-3/4 lists label
rows `positive` (COVID-19, read as covid) or `negative`, which lumps normal and pneumonia
together: those rows are dropped.

Example:
    >>> manifest, report = from_covidx_list("train_COVIDx5.txt", "covidx/train")  # doctest: +SKIP
    >>> print(report.summary())  # doctest: +SKIP
"""

from pathlib import Path

from keras_covidcxr.data.build_report import BuildReport, BuiltManifest
from keras_covidcxr.data.builders._files import read_text, require_file, require_folder, with_progress
from keras_covidcxr.data.manifest import Manifest, ManifestRow
from keras_covidcxr.data.vocabulary import normalize_label

NEGATIVE_REASON = "COVIDx binary label 'negative' does not say normal or pneumonia"


def from_covidx_list(list_txt, image_dir, split=None, progress=None):
    """Rows for every listed image found in `image_dir`; `split` (e.g. "test") is set on all rows.

    Patient ids are prefixed by the line's source (`cohen:3`), because COVIDx ids are only
    unique within one source. Lines with an unknown label, a malformed layout or a missing
    image are dropped and reported. `progress(done, total)`, when given, is called after each line.
    """
    list_txt = require_file(list_txt, "COVIDx list")
    image_dir = require_folder(image_dir, "COVIDx image")
    report = BuildReport(f"covidx ({list_txt.name})")
    rows, seen = [], set()
    lines = list(enumerate(read_text(list_txt, "COVIDx list").read().splitlines(), start=1))
    for number, line in with_progress(lines, progress):
        tokens = line.split()
        if not tokens:
            continue
        where = f"{list_txt.name}:{number}"
        if len(tokens) < 4:
            report.drop(where, "line is not 'patient_id filename label source'")
            continue
        patient, filename, raw_label, source = tokens[0], " ".join(tokens[1:-2]), tokens[-2], tokens[-1]
        if raw_label.lower() == "negative":
            report.drop(f"{where} {filename}", NEGATIVE_REASON)
            continue
        label = "covid" if raw_label.lower() == "positive" else normalize_label(raw_label.lower())
        if label is None:
            report.drop(f"{where} {filename}", f"label {raw_label!r} is not covid/normal/pneumonia")
            continue
        if filename in seen:
            report.drop(f"{where} {filename}", "image listed twice")
            continue
        if not (image_dir / filename).is_file():
            report.drop(f"{where} {filename}", "image file not found")
            continue
        rows.append(
            ManifestRow(
                path=Path(filename).as_posix(),
                task="cls",
                patient_id=f"{source.lower()}:{patient}",
                label=label,
                source=source.lower(),
                split=split,
            )
        )
        seen.add(filename)
        report.keep(label, "cls")
    return BuiltManifest(Manifest(rows, root=image_dir), report)

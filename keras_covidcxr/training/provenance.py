"""What a trained preset records about its data: which manifest, its checksum, the counts, and (hashed) the
patients its classifiers were fitted on, so that `covidcxr evaluate` can say when a test set shares them."""

import hashlib
import os
from pathlib import Path

# Patient ids may be a hospital's record numbers: presets store a digest of each, never the id itself (a
# digest does not stop someone who can guess an id from checking it; it keeps the list from being read).
FIT_PATIENTS_KEY = "classifier_fit_patients_sha256"
PLAIN_FIT_PATIENTS_KEY = "classifier_fit_patient_ids"  # public collections' ids, as the bundled preset stores them


def patient_digest(patient_id):
    """The first 16 hex digits of the sha256 of a patient id (what presets store of their patients).

    Example:
        >>> patient_digest("ieee8023:1")
        'be8993d2039c64a5'
    """
    return hashlib.sha256(str(patient_id).encode()).hexdigest()[:16]


def _spellings(patient_id):
    """The digests of an id as given, in lower case and in upper case: ids differing only in letter case are one
    patient (`data.ids_differing_only_in_case`), and a digest cannot be case-folded after the fact (a stored
    digest of a mixed-case id matches only that spelling; plain ids are compared case-folded)."""
    text = str(patient_id)
    return {patient_digest(text), patient_digest(text.lower()), patient_digest(text.upper())}


def fitted_patient_digests(metadata):
    """The digests of the patients a preset's classifiers were fitted on (from its metadata's training.data,
    plain ids or digests), or None when it does not record them."""
    data = ((metadata or {}).get("training") or {}).get("data")
    if not isinstance(data, dict) or (FIT_PATIENTS_KEY not in data and PLAIN_FIT_PATIENTS_KEY not in data):
        return None
    return set(data.get(FIT_PATIENTS_KEY) or ()) | {patient_digest(p) for p in data.get(PLAIN_FIT_PATIENTS_KEY) or ()}


def fitted_overlap(metadata, rows):
    """{"images", "patients", "of_images"}: the `rows` whose patient a preset's classifiers were fitted on (from its
    `metadata`), or None when it does not record them. Such films make every metric on them optimistic."""
    fitted = fitted_patient_digests(metadata)
    if fitted is None:
        return None
    plain = {str(p).casefold() for p in metadata["training"]["data"].get(PLAIN_FIT_PATIENTS_KEY) or ()}
    shared = [row for row in rows if str(row.patient_id).casefold() in plain or _spellings(row.patient_id) & fitted]
    patients = {str(row.patient_id).casefold() for row in shared}
    return {"images": len(shared), "patients": len(patients), "of_images": len(rows)}


def rows_sha256(manifest):
    """sha256 of a manifest's rows (path, task, label, mask, patient, view, split): the same whether the
    manifest came as a CSV path or a `Manifest`, unlike the file's checksum."""
    digest = hashlib.sha256()
    for row in manifest:
        fields = (row.path, row.task, row.label, row.mask_path, row.patient_id, row.view, row.split)
        digest.update(("\t".join("" if f is None else str(f) for f in fields) + "\n").encode())
    return digest.hexdigest()


def data_provenance(manifest, manifest_path=None, fitted_splits=None, also_fitted=()):
    """JSON-ready description of the training data (stored in metadata.training.data).

    `sha256` is the manifest CSV's checksum when `manifest_path` is given, else a checksum of
    the rows (path, task, label, mask, patient, view, split; `sha256_of` says which). Counts are
    per split, task and label; images themselves are not hashed (their paths are in the CSV).
    With `fitted_splits` (e.g. ("train", "val"): members trained on one, ensemble and thresholds fitted
    on the other), `FIT_PATIENTS_KEY` lists the digests of those splits' cls patients, plus the digests
    `also_fitted` (a parent preset's).
    """
    rows = rows_sha256(manifest)
    if manifest_path is not None and Path(manifest_path).is_file():
        sha256, sha256_of = hashlib.sha256(Path(manifest_path).read_bytes()).hexdigest(), "manifest file"
    else:
        sha256, sha256_of = rows, "manifest rows"
    counts = {}
    for (split, task, label), count in sorted(
        manifest.counts("split", "task", "label").items(), key=lambda item: tuple(str(v) for v in item[0])
    ):
        counts.setdefault(split or "unsplit", {}).setdefault(task, {})[label or "-"] = count
    return {
        "manifest": None if manifest_path is None else os.path.abspath(manifest_path),  # not relative to a cwd
        "sha256": sha256,
        "sha256_of": sha256_of,
        "rows_sha256": rows,
        "rows": len(manifest),
        "patients": len(manifest.patient_ids()),
        "counts": counts,
        **({} if fitted_splits is None else {FIT_PATIENTS_KEY: sorted(
            {patient_digest(row.patient_id) for row in manifest if row.task == "cls" and row.split in fitted_splits}
            | set(also_fitted))}),
    }

"""What a trained preset records about its data: which manifest, its checksum, and the counts."""

import hashlib
from pathlib import Path


def _rows_digest(manifest):
    digest = hashlib.sha256()
    for row in manifest:
        fields = (row.path, row.task, row.label, row.mask_path, row.patient_id, row.view, row.split)
        digest.update(("\t".join("" if f is None else str(f) for f in fields) + "\n").encode())
    return digest.hexdigest()


def data_provenance(manifest, manifest_path=None):
    """JSON-ready description of the training data (stored in metadata.training.data).

    `sha256` is the manifest CSV's checksum when `manifest_path` is given, else a checksum of
    the rows (path, task, label, mask, patient, view, split; `sha256_of` says which). Counts are
    per split, task and label; images themselves are not hashed (their paths are in the CSV).
    """
    if manifest_path is not None and Path(manifest_path).is_file():
        sha256, sha256_of = hashlib.sha256(Path(manifest_path).read_bytes()).hexdigest(), "manifest file"
    else:
        sha256, sha256_of = _rows_digest(manifest), "manifest rows"
    counts = {}
    for (split, task, label), count in sorted(
        manifest.counts("split", "task", "label").items(), key=lambda item: tuple(str(v) for v in item[0])
    ):
        counts.setdefault(split or "unsplit", {}).setdefault(task, {})[label or "-"] = count
    return {
        "manifest": None if manifest_path is None else str(manifest_path),
        "sha256": sha256,
        "sha256_of": sha256_of,
        "rows": len(manifest),
        "patients": len(manifest.patient_ids()),
        "counts": counts,
    }

"""Read every distinct image of a manifest once: its size, its near-duplicate fingerprint, or why it failed.

Rows that share a file (a film used for seg and for cls, or one file under two spellings of its path, a
symlink or a hard link) share one scan.

Example:
    >>> scans = scan_images(manifest, progress=lambda done, total: None)  # doctest: +SKIP
    >>> [(scan.relative_path, scan.size) for scan in scans if scan.error]  # doctest: +SKIP
"""

import dataclasses
from collections import defaultdict

from keras_covidcxr.data.near_duplicates import ImageFingerprint
from keras_covidcxr.errors import CovidCXRError
from keras_covidcxr.io.file_identity import file_identity


@dataclasses.dataclass
class ImageScan:
    """One image file: the manifest rows that use it, its (height, width), fingerprint, or error."""

    path: object
    relative_path: str
    rows: list
    size: tuple | None = None
    fingerprint: object = None  # an ImageFingerprint
    error: str | None = None
    missing: bool = False


def rows_by_file(manifest):
    """{file identity: [rows]} in manifest order: the rows that name each file, under any spelling of its path."""
    rows = defaultdict(list)
    for row in manifest:
        rows[file_identity(manifest.resolve(row))].append(row)
    return dict(rows)


def patients_sharing_files(manifest, files=None):
    """Tuples of the patient ids whose rows name one file (two builders' ids for one film): one person, or a
    re-used film, so a split keeps them together. `files`: the rows of each file, when already grouped
    (`rows_by_file(manifest).values()`, or the rows of each `ImageScan`)."""
    files = rows_by_file(manifest).values() if files is None else files
    shared = (tuple(dict.fromkeys(row.patient_id for row in rows)) for rows in files)
    return [patients for patients in shared if len(patients) > 1]


def header_size(path):
    """(width, height) from the file header with Pillow, or None when Pillow cannot tell."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, UnidentifiedImageError, ValueError):
        return None


def scan_images(manifest, progress=None, fingerprints=True, decode=True):
    """An `ImageScan` per distinct image file of `manifest`, in manifest order.

    Args:
        manifest: the `Manifest` whose images to read.
        progress: optional `callable(done, total)` called after each file.
        fingerprints: also compute the near-duplicate fingerprint.
        decode: read the images (size, fingerprint, why one fails); False only says which are missing.
    """
    from keras_covidcxr.io.image_loader import load_image

    scans = {identity: ImageScan(path=manifest.resolve(rows[0]), relative_path=rows[0].path, rows=rows)
             for identity, rows in rows_by_file(manifest).items()}
    total = len(scans)
    for done, scan in enumerate(scans.values(), start=1):
        if not scan.path.is_file():
            scan.missing = True
        elif decode:
            try:
                pixels = load_image(scan.path).pixels
                scan.size = tuple(int(side) for side in pixels.shape[:2])
                if fingerprints:
                    scan.fingerprint = ImageFingerprint.of(pixels)
            except (CovidCXRError, OSError, ValueError) as error:
                scan.error = str(error)
        if progress is not None:
            progress(done, total)
    return list(scans.values())

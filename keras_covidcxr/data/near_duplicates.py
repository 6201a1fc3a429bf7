"""Find the same picture under different names: public CXR sets re-upload films as new files.

Two fingerprints per image, both from a small thumbnail, and a pair counts only when both agree:

1. A perceptual hash (pHash): the image shrunk to 32x32, its 2-D DCT, and one bit per
   coefficient of the lowest 8x8 frequencies (above or below their median, DC excluded).
   Two pictures are candidates when at most `MAX_HASH_DISTANCE` = 6 of the 64 bits differ.
2. A thumbnail correlation: the image shrunk to 16x16 (box average, aspect ignored) and
   standardised; two pictures match when the Pearson correlation of their thumbnails is at least
   `DEFAULT_NEAR_DUPLICATE_THRESHOLD` = 0.97. It ignores brightness and contrast changes and
   barely moves under resizing or JPEG re-encoding (> 0.99 in our tests).

Thresholds measured on the shared curated set (783 ieee8023 / Actualmed / Figure 1 films):
identical pictures stored twice: 0 bits, correlation > 0.9999; the three re-uploads under another
name: 2-4 bits, 0.985-0.995; the closest *different* films: 6 bits at best (six pairs, all with
correlation <= 0.93) and correlation 0.976 at best (a patient's next film, 8 bits apart). Either
test alone sits close to a different film; together they keep a clear margin. Mirrored, inverted,
rotated or cropped copies (a 5% crop, a 20 px border, a burned-in marker box: 12-14 bits, correlation
0.74-0.91) are not caught at the defaults, and looser settings soon link different films: on the 3,248
films of both shared folders 0.95 / 8 bits finds about the same pairs as the defaults, 0.93 / 10 chains
12 patients into one group, 0.90 / 12 chains 764. Loosen both only to review the pairs of a small set.

Example:
    >>> import numpy as np
    >>> rows, columns = np.mgrid[0:300, 0:280]
    >>> image = (0.5 + 0.4 * np.sin(rows / 30) * np.cos(columns / 45)).astype("float32")
    >>> a, b = thumbnail_fingerprint(image), thumbnail_fingerprint(image[::2, ::2] * 0.5 + 0.2)
    >>> bool(fingerprint_similarity(a[None], b[None])[0, 0] > 0.97)
    True
    >>> hashes = np.stack([perceptual_hash(image), perceptual_hash(image[::2, ::2] * 0.5 + 0.2)])
    >>> bool(hash_distances(hashes[:1], hashes[1:])[0, 0] <= MAX_HASH_DISTANCE)
    True
"""

import dataclasses

import numpy as np

THUMBNAIL_SIDE = 16
DEFAULT_NEAR_DUPLICATE_THRESHOLD = 0.97
MAX_HASH_DISTANCE = 6  # of the 64 bits of `perceptual_hash`
_HASH_THUMBNAIL_SIDE, _HASH_SIDE = 32, 8

# Rows of the similarity matrix computed at once: bounds memory at _CHUNK * n floats.
_CHUNK = 1024


@dataclasses.dataclass(frozen=True)
class ImageFingerprint:
    """Both near-duplicate fingerprints of one image (see the module docstring)."""

    perceptual_hash: np.ndarray  # (64,) bool
    thumbnail: np.ndarray  # (256,) float32, standardised

    @classmethod
    def of(cls, pixels):
        return cls(perceptual_hash(pixels), thumbnail_fingerprint(pixels))


def thumbnail_fingerprint(pixels):
    """A float32 vector (256,): the 16x16 box-averaged thumbnail, standardised (zeros if flat)."""
    from PIL import Image

    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.ndim != 2 or min(pixels.shape) < 1:
        raise ValueError(f"expected a 2-D gray image, got shape {pixels.shape}")
    thumbnail = Image.fromarray(pixels).resize((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BOX)
    vector = np.asarray(thumbnail, dtype=np.float64).ravel()
    std = vector.std()
    if std < 1e-6:
        return np.zeros(vector.size, np.float32)
    return ((vector - vector.mean()) / std).astype(np.float32)


def perceptual_hash(pixels):
    """The 64-bit DCT perceptual hash (pHash) of a 2-D gray image, as 64 booleans."""
    from PIL import Image

    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.ndim != 2 or min(pixels.shape) < 1:
        raise ValueError(f"expected a 2-D gray image, got shape {pixels.shape}")
    side = _HASH_THUMBNAIL_SIDE
    thumbnail = Image.fromarray(pixels).resize((side, side), Image.Resampling.LANCZOS)
    k = np.arange(side)
    dct = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * side))  # DCT-II basis, rows = frequencies
    low = (dct @ np.asarray(thumbnail, np.float64) @ dct.T)[:_HASH_SIDE, :_HASH_SIDE].ravel()
    return low > np.median(low[1:])


def hash_distances(a, b):
    """Hamming distances (len(a), len(b)) between two stacks of perceptual hashes."""
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    return a @ (1 - b).T + (1 - a) @ b.T


def fingerprint_similarity(a, b):
    """Correlation matrix (len(a), len(b)) between two stacks of fingerprints."""
    return np.asarray(a, np.float32) @ np.asarray(b, np.float32).T / (THUMBNAIL_SIDE * THUMBNAIL_SIDE)


def similar_pairs(fingerprints, threshold=DEFAULT_NEAR_DUPLICATE_THRESHOLD, hashes=None,
                  max_hash_distance=MAX_HASH_DISTANCE):
    """(i, j, similarity) for every i < j whose fingerprints correlate at `threshold` or more
    and, when `hashes` are given, whose perceptual hashes differ in at most `max_hash_distance` bits.

    All pairs are compared, vectorised in chunks of rows: a few thousand images take well
    under a second.
    """
    fingerprints = np.asarray(fingerprints, np.float32)
    pairs = []
    for start in range(0, len(fingerprints), _CHUNK):
        block = fingerprint_similarity(fingerprints[start : start + _CHUNK], fingerprints)
        match = block >= threshold
        if hashes is not None:
            match &= hash_distances(hashes[start : start + _CHUNK], hashes) <= max_hash_distance
        rows, columns = np.nonzero(match)
        for row, column in zip(rows, columns):
            i = start + int(row)
            if i < column:
                pairs.append((i, int(column), float(block[row, column])))
    return pairs


def group_pairs(count, pairs):
    """Connected groups (sorted lists of indices, size >= 2) of `count` items linked by `pairs`."""
    parent = list(range(count))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j, *_ in pairs:
        parent[find(i)] = find(j)
    groups = {}
    for i in range(count):
        groups.setdefault(find(i), []).append(i)
    return sorted((g for g in groups.values() if len(g) > 1), key=lambda g: g[0])


@dataclasses.dataclass(frozen=True)
class DuplicateGroup:
    """Image files that show the same picture, with the patients and splits their rows carry."""

    paths: tuple
    patient_ids: tuple
    splits: tuple
    min_similarity: float


def find_near_duplicates(manifest, threshold=DEFAULT_NEAR_DUPLICATE_THRESHOLD, progress=None,
                         max_hash_distance=MAX_HASH_DISTANCE):
    """Groups of manifest images that show the same picture (files that fail to load are skipped).

    Example:
        >>> groups = find_near_duplicates(manifest)  # doctest: +SKIP
        >>> split_by_patient(manifest, linked_patients=[g.patient_ids for g in groups])  # doctest: +SKIP
    """
    from keras_covidcxr.data.image_scan import scan_images

    scans = [scan for scan in scan_images(manifest, progress=progress) if scan.fingerprint is not None]
    return duplicate_groups(scans, threshold, max_hash_distance)


def duplicate_groups(scans, threshold=DEFAULT_NEAR_DUPLICATE_THRESHOLD, max_hash_distance=MAX_HASH_DISTANCE):
    """`DuplicateGroup`s among `ImageScan`s that have fingerprints."""
    if not scans:
        return []
    fingerprints = np.stack([scan.fingerprint.thumbnail for scan in scans])
    hashes = np.stack([scan.fingerprint.perceptual_hash for scan in scans])
    pairs = similar_pairs(fingerprints, threshold, hashes, max_hash_distance)
    grouped = group_pairs(len(scans), pairs)
    group_of = {index: number for number, members in enumerate(grouped) for index in members}
    lowest = [1.0] * len(grouped)
    for i, _, value in pairs:
        lowest[group_of[i]] = min(lowest[group_of[i]], value)
    groups = []
    for number, members in enumerate(grouped):
        rows = [row for index in members for row in scans[index].rows]
        groups.append(
            DuplicateGroup(
                paths=tuple(scans[index].relative_path for index in members),
                patient_ids=tuple(dict.fromkeys(row.patient_id for row in rows)),
                splits=tuple(dict.fromkeys(row.split for row in rows if row.split)),
                min_similarity=round(lowest[number], 4),
            )
        )
    return groups

"""Masking the image with the predicted lung field, and checking that field."""

import dataclasses

import numpy as np
from scipy import ndimage

from keras_covidcxr.errors import ConfigError

MASKING_MODES = ("hard", "bbox", "lungs_removed")


def lung_bounding_box(mask, margin=0.025):
    """(x0, y0, x1, y1) of the mask's lung pixels plus `margin` of the image size.

    x1 and y1 are exclusive. Returns None for an empty mask. The default margin
    is COVID-SDNet's 2.5%.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    height, width = mask.shape
    dy, dx = round(margin * height), round(margin * width)
    return (
        max(int(cols[0]) - dx, 0),
        max(int(rows[0]) - dy, 0),
        min(int(cols[-1]) + 1 + dx, width),
        min(int(rows[-1]) + 1 + dy, height),
    )


def apply_lung_mask(pixels, mask, mode="hard", margin=0.025):
    """Return (masked image, crop box or None).

    "hard" zeroes everything outside the lungs (the paper); "bbox" crops to the
    lungs' bounding box plus `margin` and keeps what is inside it;
    "lungs_removed" zeroes the lungs and keeps the rest (the shortcut probe: a
    model that still scores well on such images reads something else).

    Example:
        >>> mask = np.zeros((4, 4), bool); mask[1:3, 1:3] = True
        >>> image, box = apply_lung_mask(np.ones((4, 4), "float32"), mask, "bbox", 0.0)
        >>> image.shape, box
        ((2, 2), (1, 1, 3, 3))
    """
    if mode == "hard":
        return np.where(mask, pixels, 0.0).astype("float32"), None
    if mode == "lungs_removed":
        return np.where(mask, 0.0, pixels).astype("float32"), None
    if mode == "bbox":
        box = lung_bounding_box(mask, margin)
        if box is None:
            return np.asarray(pixels, "float32"), None
        x0, y0, x1, y1 = box
        return np.asarray(pixels[y0:y1, x0:x1], "float32"), box
    raise ConfigError(f"masking mode must be one of {MASKING_MODES}, got {mode!r}")


@dataclasses.dataclass(frozen=True, eq=False)
class MaskPieces:
    """A boolean mask with its connected pieces labelled once, for every check made on it.

    On a clinical film (3000 px) labelling and counting the pieces takes about 70 ms, which each check
    below would otherwise spend again. `labels` numbers the pieces (0: background), `sizes[label - 1]`
    is a piece's pixel count and `order` the labels of the pieces in `mask`, largest first (ties
    in label order). A `largest` subset keeps the labelling of the mask it came from.

    Example:
        >>> mask = np.zeros((8, 8), bool); mask[1:6, 1:3] = mask[1:6, 5:7] = True; mask[7, 7] = True
        >>> pieces = MaskPieces.of(mask)
        >>> [int(label) for label in pieces.order], pieces.quality()
        ([1, 2, 3], MaskQuality(lung_fraction=0.328125, components=3))
    """

    mask: np.ndarray
    labels: np.ndarray
    sizes: np.ndarray
    order: np.ndarray

    @classmethod
    def of(cls, mask):
        """The pieces of a boolean mask (a `MaskPieces` is returned as it is)."""
        if isinstance(mask, MaskPieces):
            return mask
        mask = np.asarray(mask, bool)
        labels, _ = ndimage.label(mask)
        sizes = np.bincount(labels.ravel())[1:]
        return cls(mask, labels, sizes, np.argsort(-sizes, kind="stable") + 1)

    def piece_sizes(self):
        """Pixel counts of the pieces, largest first."""
        return self.sizes[self.order - 1]

    def largest(self, count=2):
        """(the `count` largest pieces, fraction of the mask's area removed): `keep_largest_pieces`."""
        if len(self.order) <= count:
            return self, 0.0
        keep = np.zeros(len(self.sizes) + 1, bool)
        keep[self.order[:count]] = True
        kept = dataclasses.replace(self, mask=keep[self.labels], order=self.order[:count])
        return kept, float(1.0 - kept.piece_sizes().sum() / max(self.piece_sizes().sum(), 1))

    def below_lungs(self, min_piece_fraction=0.005):
        """Image fractions of the pieces that lie below the lungs, largest first (`pieces_below_lungs`)."""
        if len(self.order) <= 2:
            return []
        labels, sizes, size = self.labels, self.sizes, self.mask.size
        first, second = self.order[:2]
        lungs = (labels == first) | (labels == second)
        height = lungs.shape[0]
        # per column, the lowest lung row (-1: no lung there); single passes, as on a 7000 px film it counts
        lowest_lung_row = np.where(lungs.any(axis=0), height - 1 - lungs[::-1].argmax(axis=0), -1)
        bottom = lowest_lung_row.max()
        others = [label for label in self.order[2:] if sizes[label - 1] >= min_piece_fraction * size]
        boxes = ndimage.find_objects(labels, max_label=int(max(others, default=0)))
        below = []
        for label in others:
            box = boxes[label - 1]
            piece_rows, piece_cols = np.nonzero(labels[box] == label)  # the centre of mass, within its box
            row, col = piece_rows.mean() + box[0].start, piece_cols.mean() + box[1].start
            floor = lowest_lung_row[round(col)]
            if row > (floor if floor >= 0 else bottom):
                below.append(float(sizes[label - 1] / size))
        return below

    def outline_solidity(self, count=2):
        """Solidity of the `count` largest pieces, largest first (`lung_outline_solidity`)."""
        from scipy.spatial import ConvexHull

        boxes = ndimage.find_objects(self.labels, max_label=int(self.order[:count].max(initial=0)))
        solidity = []
        for label in self.order[:count]:
            box = boxes[label - 1]
            piece = self.labels[box] == label
            # the hull of a piece is the hull of its rows' outer corners
            rows = np.flatnonzero(piece.any(axis=1))
            left = piece[rows].argmax(axis=1)
            right = piece.shape[1] - piece[rows, ::-1].argmax(axis=1)
            corners = [np.stack([r, c], 1) for r in (rows, rows + 1) for c in (left, right)]
            hull = ConvexHull(np.concatenate(corners).astype("float64"))
            solidity.append(float(self.sizes[label - 1] / hull.volume))  # "volume" is the area in 2D
        return solidity

    def quality(self, min_component_fraction=0.005):
        """The mask's `MaskQuality` (`mask_quality`)."""
        sizes = self.piece_sizes()
        return MaskQuality(
            lung_fraction=float(sizes.sum() / self.mask.size),
            components=int(np.sum(sizes >= min_component_fraction * self.mask.size)),
        )


def keep_largest_pieces(mask, count=2):
    """(mask with only its `count` largest connected pieces, fraction of the mask's area removed).

    Two lungs are two pieces; what else the segmenter marks (bowel gas under the diaphragm, a
    speck in the shoulder) is usually a smaller, separate piece.

    Example:
        >>> mask = np.zeros((8, 8), bool); mask[1:6, 1:3] = mask[1:6, 5:7] = True; mask[7, 7] = True
        >>> kept, removed = keep_largest_pieces(mask)
        >>> int(kept.sum()), round(removed, 3)
        (20, 0.048)
    """
    kept, removed = MaskPieces.of(mask).largest(count)
    return kept.mask, removed


def pieces_below_lungs(mask, min_piece_fraction=0.005):
    """Image fractions of the mask's pieces that lie below the lungs, largest first.

    The lungs are the two largest pieces. A further piece (specks under
    `min_piece_fraction` of the image aside) lies below them when its centroid
    is lower than the lowest lung pixel in the centroid's column, or lower
    than the lungs' bottom where no lung pixel is in that column: under the
    diaphragm, where the segmenter takes bowel or stomach gas for lung.

    Example:
        >>> mask = np.zeros((10, 8), bool); mask[1:6, 1:3] = mask[1:6, 5:7] = True
        >>> mask[8:10, 4:7] = True  # gas under the left hemidiaphragm
        >>> [round(f, 3) for f in pieces_below_lungs(mask)]
        [0.075]
    """
    return MaskPieces.of(mask).below_lungs(min_piece_fraction)


def lung_outline_solidity(mask, count=2):
    """Solidity (area / area of the convex hull) of the mask's `count` largest pieces, largest first.

    A lung's outline is close to convex, so a piece far less convex is usually a failed mask: dense,
    consolidated lung left out, or gas below the diaphragm or air outside the chest taken in with the
    lung. Pixels are unit squares: a rectangle has solidity 1.

    Example:
        >>> mask = np.zeros((40, 40), bool); mask[5:35, 5:15] = True  # a convex lung
        >>> mask[5:35, 25:35] = True; mask[10:30, 28:35] = False       # a C: most of its middle missing
        >>> [round(s, 2) for s in lung_outline_solidity(mask)]
        [1.0, 0.53]
    """
    return MaskPieces.of(mask).outline_solidity(count)


@dataclasses.dataclass(frozen=True)
class MaskQuality:
    """Lung-mask statistics: the fraction of the image that is lung, and how many pieces."""

    lung_fraction: float
    components: int


def mask_quality(mask, min_component_fraction=0.005):
    """Measure a boolean lung mask (or its `MaskPieces`); specks under `min_component_fraction` don't count."""
    return MaskPieces.of(mask).quality(min_component_fraction)

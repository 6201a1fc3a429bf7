"""Does a lung mask look like a lateral view? A view check for images without view metadata.

DICOM files state their view (ViewPosition) and `InputContract.check` uses it;
PNG and JPEG files state none. For those, the segmenter's lung mask is a clue:
on a frontal film it finds two lungs side by side, on a lateral film it finds
one overlapping lung field, or lung on one side of the image only.

The rule, on the boolean mask `m` at the segmenter's own resolution
(probabilities >= the pipeline's `mask_threshold`):

- `second_share`: area of the second-largest connected component of `m`
  (`scipy.ndimage.label`, 4-connected, no speck filter) / area of `m`
  (0 when `m` has fewer than two components);
- `half_share`: min(area of `m` in the left half of the columns, area in the
  right half) / area of `m`;
- the image looks lateral when `second_share < 0.25` or `half_share < 0.30`.
  An empty mask does not look lateral: it is already an implausible mask.

Measurement behind the thresholds (by the project lead, with the trained
bundled segmenter, the 128 px ResUnet of `covidcxr_lite`, on the shared
curated data, `examples/measure_view_check.py` reproduces it): 47 lateral
X-rays (`extra/images`, view "L" in `manifest_bad_inputs.csv`) and every 3rd
of the 442 frontal classification images (`cls/images`, 148 images).
Flagged: 43 of 47 laterals (91.5%) and 2 of 148 frontals (1.4%). Frontal 5th
percentiles: second_share 0.40, half_share 0.41; lateral medians: 0.037 and
0.285. The check is a heuristic for one segmenter on one data set: off by
default (`InputContract.check_view_from_mask`), and a flag rather than a
refusal unless `strict`.
"""

import numpy as np
from scipy import ndimage

MIN_SECOND_SHARE = 0.25
MIN_HALF_SHARE = 0.30


def mask_view_geometry(mask):
    """(second_share, half_share) of a boolean (height, width) lung mask; (0.0, 0.0) when it is empty.

    `second_share` is the area of the second-largest connected component over
    the mask's area; `half_share` the smaller of the mask areas in the left and
    right halves of the columns over the mask's area (for an odd width the
    middle column belongs to neither half).

    Example:
        >>> import numpy as np
        >>> mask = np.zeros((128, 128), bool)
        >>> mask[20:100, 15:55] = True   # one lung: 3200 px, all in the left half
        >>> mask[20:100, 70:115] = True  # the other: 3600 px, all in the right half
        >>> [round(share, 2) for share in mask_view_geometry(mask)]
        [0.47, 0.47]
    """
    mask = np.asarray(mask, bool)
    if mask.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {mask.shape}")
    total = int(mask.sum())
    if total == 0:
        return 0.0, 0.0
    labels, count = ndimage.label(mask)
    sizes = np.sort(np.bincount(labels.ravel())[1:])[::-1]
    second_share = float(sizes[1]) / total if count >= 2 else 0.0
    width = mask.shape[1]
    left, right = int(mask[:, : width // 2].sum()), int(mask[:, width - width // 2 :].sum())
    return second_share, min(left, right) / total


def looks_lateral(mask, min_second_share=MIN_SECOND_SHARE, min_half_share=MIN_HALF_SHARE):
    """Whether a boolean lung mask (at the segmenter's resolution) looks like a lateral view.

    True when the second lung component holds under `min_second_share` of the
    lung area, or the smaller half of the image under `min_half_share` of it;
    False for an empty mask. The defaults come from the measurement in this
    module's docstring.

    Example:
        >>> import numpy as np
        >>> frontal = np.zeros((128, 128), bool)
        >>> frontal[20:100, 15:55] = frontal[20:100, 70:115] = True  # two lungs side by side
        >>> lateral = np.zeros((128, 128), bool)
        >>> lateral[20:110, 30:90] = True  # one lung field
        >>> looks_lateral(frontal), looks_lateral(lateral), looks_lateral(np.zeros((128, 128), bool))
        (False, True, False)
    """
    mask = np.asarray(mask, bool)
    if not mask.any():
        return False
    second_share, half_share = mask_view_geometry(mask)
    return second_share < min_second_share or half_share < min_half_share

"""The two model inputs, built by one code path for training and inference alike."""

import numpy as np

from keras_covidcxr.preprocessing.lung_masking import MaskPieces, apply_lung_mask
from keras_covidcxr.preprocessing.resize import resize_image
from keras_covidcxr.preprocessing.standardize import standardize, to_rgb


def segmenter_input(pixels, size):
    """(size, size, 1) standardised input of the ResUnet from a gray [0, 1] image."""
    return standardize(resize_image(pixels, (size, size)))[..., None]


def lung_mask_at(probabilities, shape, threshold):
    """The boolean lung mask at `shape` from the ResUnet's (S, S) probabilities."""
    return resize_image(probabilities, shape) >= threshold


# Removing specks is routine; removing at least this share of the mask's area is worth a warning.
REPORTED_REMOVAL = 0.01
# Removing this much fails the mask: no film of the 447 of `../shared/data/cxr` loses over 8% to the trimming,
# 32 of the 2,465 of `cxr_extra` (1.3%) lose 15% or more: a lung split by dense opacity, its base left out.
MAX_REMOVAL = 0.15
# Every one of the 660 V7 ground-truth lungs of the shared data has solidity >= 0.761; the shipped
# segmenter's masks fall under 0.75 on 1% of the 2,912 shared classification films: failed masks (model card).
MIN_LUNG_SOLIDITY = 0.75


def cleaned_lung_mask(mask, config):
    """(mask, warnings): the predicted mask checked, then trimmed to `config.keep_largest_pieces` pieces if set.

    Pieces below the lungs (`pieces_below_lungs`) are flagged ("mask_below_diaphragm")
    whether or not the trimming removes them: they say the segmenter misread the film. So does one
    of the two largest pieces far from convex ("mask_irregular_outline": `lung_outline_solidity`
    under MIN_LUNG_SOLIDITY), as when the mask spills across the diaphragm in one piece.
    Given the mask's `MaskPieces`, it returns the kept `MaskPieces` (the pieces are labelled once).
    """
    pieces = MaskPieces.of(mask)
    below = pieces.below_lungs()
    warnings = []
    kept, removed = pieces, 0.0
    if config.keep_largest_pieces:
        kept, removed = pieces.largest(config.keep_largest_pieces)
    if removed >= REPORTED_REMOVAL:
        warnings.append((
            "mask_pieces_removed",
            f"lung mask trimmed: {removed:.0%} in pieces beyond the largest {config.keep_largest_pieces}",
        ))
    if removed >= MAX_REMOVAL:
        warnings.append((
            "mask_split",
            f"lung mask in pieces: {removed:.0%} of it was left out, so part of a lung (often a base behind dense "
            "opacity) may be missing from what the classifiers read",
        ))
    if below:
        # the pieces below are never among the two largest: trimming to two or fewer removes them all
        count = config.keep_largest_pieces
        what = "removed" if 0 < count <= 2 or (count and not kept.below_lungs()) else "kept"
        warnings.append((
            "mask_below_diaphragm",
            f"lung mask: {len(below)} piece(s) below the lungs ({sum(below):.1%} of the image; not lung); {what}",
        ))
    solidity = min(kept.outline_solidity(), default=1.0)
    if solidity < MIN_LUNG_SOLIDITY:
        warnings.append((
            "mask_irregular_outline",
            f"lung mask outline irregular (solidity {solidity:.2f}; real lungs >= {MIN_LUNG_SOLIDITY}): part of a "
            "lung may be missing, or gas below the diaphragm or air outside the chest taken in",
        ))
    return (kept if isinstance(mask, MaskPieces) else kept.mask), warnings


def classifier_input(pixels, lung_mask, config, size, channels=3):
    """Mask, check and prepare one image for the classifiers.

    Returns (input (size, size, channels), crop box or None, MaskQuality,
    warnings), where `config` is a `PreprocessingConfig` (standardised or
    gray [0, 1] pixels, see its `standardize`) and `warnings` a list of
    (code, message) pairs. Three channels replicate the gray one. `lung_mask`
    is a boolean mask or its `MaskPieces`.
    """
    pieces = MaskPieces.of(lung_mask)
    quality, lung_mask = pieces.quality(), pieces.mask
    warnings = []
    implausible = (
        not config.min_lung_fraction <= quality.lung_fraction <= config.max_lung_fraction
        or not 1 <= quality.components <= config.max_lung_components
    )
    use_mask = True
    if implausible:
        use_mask = not config.fall_back_to_unmasked
        what = "used anyway" if use_mask else "classified the unmasked image"
        warnings.append((
            "implausible_mask",
            (
                f"lung mask covers {quality.lung_fraction:.1%} of the image in {quality.components} piece(s) "
                f"(plausible: {config.min_lung_fraction:.0%}-{config.max_lung_fraction:.0%} in 1-"
                f"{config.max_lung_components}); {what}"
            ),
        ))
    if use_mask:
        masked, crop_box = apply_lung_mask(pixels, lung_mask, config.masking, config.bbox_margin)
    else:
        masked, crop_box = np.asarray(pixels, "float32"), None
    model_input = resize_image(masked, (size, size))
    if config.standardize:
        model_input = standardize(model_input)
    model_input = to_rgb(model_input) if channels == 3 else np.asarray(model_input, "float32")[..., None]
    return model_input, crop_box, quality, warnings

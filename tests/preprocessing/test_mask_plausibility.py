"""Mask QC: lungs plus gas under the diaphragm, a lung outline far from convex, or a mask larger than any real lung
field, are flagged."""

import numpy as np
import pytest

from keras_covidcxr import PreprocessingConfig
from keras_covidcxr.preprocessing.lung_masking import lung_outline_solidity, pieces_below_lungs
from keras_covidcxr.preprocessing.model_inputs import classifier_input, cleaned_lung_mask

SHAPE = (100, 80)


def lungs():
    """Two plausible lungs, 42% of the film (real masks: median 36%, 99.5th percentile 60%)."""
    mask = np.zeros(SHAPE, bool)
    mask[10:66, 6:36] = True
    mask[10:66, 44:74] = True
    return mask


def qc_codes(mask, config=None):
    """Every mask warning the pipeline would give: the cleaning's, then the classifier input's."""
    config = config or PreprocessingConfig()
    cleaned, warnings = cleaned_lung_mask(mask, config)
    _, _, _, more = classifier_input(np.ones(SHAPE, "float32"), cleaned, config, 16)
    return [code for code, _ in warnings + more]


def test_plausible_lungs_give_no_warning():
    assert pieces_below_lungs(lungs()) == []
    assert qc_codes(lungs()) == []
    assert qc_codes(lungs(), PreprocessingConfig(keep_largest_pieces=2)) == []


def test_lungs_plus_bowel_gas_below_the_diaphragm_are_flagged():
    mask = lungs()
    mask[78:92, 44:66] = True  # the report's case: 46% of the film in 3 pieces
    assert mask.mean() == pytest.approx(0.4585) and np.isclose(pieces_below_lungs(mask), [308 / 8000]).all()
    assert qc_codes(mask) == [
        "mask_below_diaphragm"
    ]  # before: no warning at all (fraction and pieces plausible)
    cleaned, warnings = cleaned_lung_mask(mask, PreprocessingConfig())
    assert "lung mask: 1 piece(s) below the lungs (3.9% of the image; not lung); kept" in warnings[0][1]
    assert cleaned is mask
    assert qc_codes(mask, PreprocessingConfig(keep_largest_pieces=2)) == [
        "mask_pieces_removed",
        "mask_below_diaphragm",
    ]


def test_gas_under_a_dome_above_the_lowest_lung_point_is_flagged():
    mask = lungs()
    mask[66:85, 66:74] = True  # the left lung's costophrenic recess reaches lower, laterally
    mask[70:78, 46:58] = True  # a gastric bubble under the left dome, above the recess's bottom (row 84)
    assert len(pieces_below_lungs(mask)) == 1


def test_pieces_above_beside_or_tiny_are_not_below_the_lungs():
    mask = lungs()
    mask[0:5, 0:20] = True  # above the lungs (a shoulder)
    mask[30:40, 37:43] = True  # between them, at mid height
    mask[90:92, 40:42] = True  # a speck (0.05%) under the lungs
    assert pieces_below_lungs(mask) == []


def test_a_mask_larger_than_any_real_lung_field_is_implausible():
    assert PreprocessingConfig().max_lung_fraction == 0.65  # above the largest real mask (61.5%)
    largest_real = np.zeros(SHAPE, bool)
    largest_real[:62] = True  # 62% of the film
    assert qc_codes(largest_real) == []
    too_large = np.zeros(SHAPE, bool)
    too_large[:70] = True  # 70%: more than any real mask
    config = PreprocessingConfig()
    _, _, _, warnings = classifier_input(np.ones(SHAPE, "float32"), too_large, config, 16)
    assert [code for code, _ in warnings] == ["implausible_mask"]
    assert "covers 70.0% of the image in 1 piece(s) (plausible: 5%-65% in 1-3)" in warnings[0][1]


def test_a_lung_whose_mask_spills_across_the_diaphragm_in_one_piece_is_flagged():
    assert lung_outline_solidity(lungs()) == [1.0, 1.0]
    mask = lungs()
    mask[66:100, 72:80] = True  # the left lung runs on down the flank ...
    mask[90:100, 50:80] = True  # ... and under the dome into the gastric bubble: still two pieces
    assert pieces_below_lungs(mask) == []  # not a separate piece, so this check cannot see it
    solidity = lung_outline_solidity(mask)
    # area 1680 + 272 + 300 - 80; hull (x, y): (44, 10) (74, 10) (80, 66) (80, 100) (50, 100) (44, 66)
    assert solidity[1] == 1.0 and solidity[0] == pytest.approx(2172 / 2970)
    assert solidity[0] < 0.75 and qc_codes(mask) == ["mask_irregular_outline"]
    _, warnings = cleaned_lung_mask(mask, PreprocessingConfig())
    assert warnings[0][1].startswith(f"lung mask outline irregular (solidity {solidity[0]:.2f}; real lungs >= 0.75)")


def test_a_lung_with_its_middle_left_out_is_flagged_and_a_rounded_one_is_not():
    mask = lungs()
    mask[25:55, 48:74] = False  # consolidated lung the segmenter left out: a C-shaped piece
    assert qc_codes(mask) == ["mask_irregular_outline"]
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    rounded = ((yy - 38) / 28) ** 2 + ((xx - 21) / 15) ** 2 <= 1
    rounded |= ((yy - 38) / 28) ** 2 + ((xx - 59) / 15) ** 2 <= 1  # pixelated ellipses: solidity just under 1
    assert qc_codes(rounded) == []

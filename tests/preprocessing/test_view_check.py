import doctest

import numpy as np
import pytest

from keras_covidcxr.preprocessing import view_check
from keras_covidcxr.preprocessing.view_check import looks_lateral, mask_view_geometry


def mask_with(*boxes, size=128):
    """A (size, size) boolean mask with these (rows, cols) slices set."""
    mask = np.zeros((size, size), bool)
    for rows, cols in boxes:
        mask[rows, cols] = True
    return mask


TWO_LUNGS = mask_with((slice(20, 100), slice(15, 55)), (slice(24, 104), slice(70, 115)))


def test_two_lungs_side_by_side_do_not_look_lateral():
    second_share, half_share = mask_view_geometry(TWO_LUNGS)
    assert second_share == pytest.approx(3200 / 6800) and half_share == pytest.approx(3200 / 6800)
    assert not looks_lateral(TWO_LUNGS)


def test_one_central_lung_field_looks_lateral():
    central = mask_with((slice(20, 110), slice(30, 98)))
    second_share, half_share = mask_view_geometry(central)
    assert second_share == 0.0 and half_share == pytest.approx(0.5)  # balanced, but one piece
    assert looks_lateral(central)


def test_one_lung_on_one_side_looks_lateral():
    one_side = mask_with((slice(20, 100), slice(70, 115)))
    assert mask_view_geometry(one_side) == (0.0, 0.0)
    assert looks_lateral(one_side)


def test_two_pieces_on_one_side_look_lateral_by_the_half_rule():
    left_only = mask_with((slice(10, 60), slice(5, 60)), (slice(70, 120), slice(5, 60)))
    second_share, half_share = mask_view_geometry(left_only)
    assert second_share == pytest.approx(0.5) and half_share == 0.0
    assert looks_lateral(left_only)


def test_a_small_second_piece_looks_lateral_by_the_component_rule():
    big_and_speck = mask_with((slice(20, 110), slice(10, 100)), (slice(20, 30), slice(110, 120)))
    second_share, half_share = mask_view_geometry(big_and_speck)
    assert second_share == pytest.approx(100 / 8200) and half_share > 0.30
    assert looks_lateral(big_and_speck)
    assert not looks_lateral(big_and_speck, min_second_share=0.01)  # the thresholds are parameters


def test_an_empty_mask_is_not_called_lateral():
    empty = np.zeros((128, 128), bool)
    assert mask_view_geometry(empty) == (0.0, 0.0)
    assert looks_lateral(empty) is False


def test_the_middle_column_of_an_odd_width_belongs_to_neither_half():
    mask = np.zeros((4, 5), bool)
    mask[:, 1:3] = True  # columns 1 (left half) and 2 (the middle)
    assert mask_view_geometry(mask)[1] == 0.0
    mask[:, 3] = True  # column 3: right half
    assert mask_view_geometry(mask)[1] == pytest.approx(4 / 12)


def test_masks_must_be_2d():
    with pytest.raises(ValueError, match="2-D"):
        mask_view_geometry(np.ones((2, 8, 8), bool))


def test_the_docstring_examples_run():
    failures, attempted = doctest.testmod(view_check)
    assert attempted >= 4 and failures == 0

"""Grad-CAM's coarse maps come up to image size smoothly: no blocks, no creases (the diamonds)."""

import numpy as np

from keras_covidcxr.explain.upsampling import upsample_heatmaps
from keras_covidcxr.preprocessing.resize import resize_image


def test_a_two_pixel_map_rises_monotonically_between_the_centres():
    row = upsample_heatmaps(np.array([[[0.0, 1.0]]], "float32"), (1, 32))[0, 0]
    between = row[8:24]  # the pixel centres of the two coarse cells are at 8 and 24
    assert np.all(np.diff(row) >= -1e-6)  # monotone, no overshoot dip
    assert np.all(np.diff(between) > 0)  # strictly rising: no 2 x 2 (here 16-pixel) blocks
    assert row.min() >= 0.0


def test_peaks_have_no_creases_where_bilinear_has_them():
    coarse = np.full((1, 1, 7), 0.2, "float32")  # above zero: no clipped overshoot
    coarse[0, 0, 3], coarse[0, 0, 4] = 1.0, 0.5
    bicubic = upsample_heatmaps(coarse, (1, 7 * 32))[0, 0]
    bilinear = resize_image(coarse[0], (1, 7 * 32))[0]

    def crease(profile):  # largest change of slope, relative to the largest slope
        return np.abs(np.diff(profile, 2)).max() / np.abs(np.diff(profile)).max()

    assert crease(bilinear) > 0.5  # its slope jumps at every coarse centre: the diamonds' edges
    assert crease(bicubic) < 0.15


def test_maps_stay_non_negative_and_keep_their_shape():
    coarse = np.random.default_rng(0).random((3, 7, 7)).astype("float32")
    coarse[:, 3, 3] = 5.0  # a sharp peak: the cubic overshoots below zero around it
    maps = upsample_heatmaps(coarse, (64, 48))
    assert maps.shape == (3, 64, 48) and maps.dtype == np.float32 and maps.min() >= 0.0


def test_an_edge_cell_s_overshoot_does_not_become_the_hottest_pixel_at_the_border():
    coarse = np.zeros((1, 7, 7), "float32")
    coarse[0, 3, 6], coarse[0, 3, 5] = 1.0, 0.2  # the hottest cell on the right edge, rising towards it
    maps = upsample_heatmaps(coarse, (224, 224))[0]
    centre_line = 224 - 1 - 224 // 14  # the pixel on the outer cells' centres; beyond it the cubic extrapolates
    assert maps[:, centre_line + 1:].max() <= maps[:, centre_line].max() <= 1.0  # it rose to about 1.1 at the border
    assert np.unravel_index(maps.argmax(), maps.shape)[1] <= centre_line

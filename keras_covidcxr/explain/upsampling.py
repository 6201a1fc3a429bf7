"""Bringing a coarse Grad-CAM map (the backbone's 7 x 7 grid) up to image size.

Bilinear interpolation of so coarse a grid draws each peak as a diamond (its level
lines are the grid's straight segments); bicubic interpolation keeps the same peaks
with round level lines. Pillow does it in NumPy, so every Keras backend gets the same map.
"""

import numpy as np
from PIL import Image

from keras_covidcxr.preprocessing.resize import resize_image


def upsample_heatmaps(maps, size):
    """(batch, height, width) bicubic upsamples of (batch, h, w) maps, clipped at 0.

    The cubic's overshoot is clipped so that a map stays non-negative, and beyond the outer cells'
    centres (half a cell from each border), where it extrapolates, a map never rises above its value
    on that outer centre line: an edge cell's overshoot would otherwise make the map's hottest pixel
    the input's border. `size` is (height, width).

    Example:
        >>> coarse = np.array([[[0.0, 1.0]]], "float32")
        >>> row = upsample_heatmaps(coarse, (1, 8))[0, 0]
        >>> bool(np.all(np.diff(row) >= 0)), row.shape
        (True, (8,))
    """
    maps = np.asarray(maps, "float32")
    upsampled = np.asarray([resize_image(m, size, resample=Image.BICUBIC) for m in maps], "float32")
    upsampled = np.maximum(upsampled.reshape(len(maps), *size), 0.0)
    for axis, cells in ((1, maps.shape[1]), (2, maps.shape[2])):
        upsampled = np.moveaxis(upsampled, axis, 0)  # this axis first: its border rows are upsampled[:first] ...
        first = int(upsampled.shape[0] / (2 * cells))  # the pixel on the first cell's centre
        last = upsampled.shape[0] - 1 - first
        upsampled[:first] = np.minimum(upsampled[:first], upsampled[first])
        upsampled[last + 1:] = np.minimum(upsampled[last + 1:], upsampled[last])
        upsampled = np.moveaxis(upsampled, 0, axis)
    return np.ascontiguousarray(upsampled)

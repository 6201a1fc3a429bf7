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

    The cubic's overshoot is clipped so that a map stays non-negative; `size`
    is (height, width).

    Example:
        >>> coarse = np.array([[[0.0, 1.0]]], "float32")
        >>> row = upsample_heatmaps(coarse, (1, 8))[0, 0]
        >>> bool(np.all(np.diff(row) >= 0)), row.shape
        (True, (8,))
    """
    maps = np.asarray(maps, "float32")
    upsampled = [resize_image(m, size, resample=Image.BICUBIC) for m in maps]
    return np.maximum(np.asarray(upsampled, "float32").reshape(len(maps), *size), 0.0)

"""Per-image standardisation (paper: every image scaled to mean 0, std 1)."""

import numpy as np


def standardize(pixels, epsilon=1e-6):
    """Return (pixels - mean) / std of this image alone; a flat image becomes zeros.

    Example:
        >>> out = standardize(np.array([[0.0, 1.0]], "float32"))
        >>> out.tolist()
        [[-1.0, 1.0]]
    """
    pixels = np.asarray(pixels, "float32")
    std = pixels.std()
    return ((pixels - pixels.mean()) / max(std, epsilon)).astype("float32")


def to_rgb(pixels):
    """Replicate a (height, width) gray image into 3 channels for ImageNet backbones."""
    return np.repeat(np.asarray(pixels, "float32")[..., None], 3, axis=-1)

"""Resizing policy: stretch to the model's square input, as the paper does.

The paper resizes every image straight to the network input (256x256 for the
ResUnet, 224x224 for the classifiers) without keeping the aspect ratio; we do
the same so published weights see what they were trained on. Masks go back to
the original size through their probabilities (bilinear), then a threshold.
"""

import numpy as np
from PIL import Image


def resize_image(pixels, size, resample=Image.BILINEAR):
    """Resize a float32 (height, width) image to `size` = (height, width).

    Example:
        >>> resize_image(np.zeros((10, 20), "float32"), (4, 4)).shape
        (4, 4)
    """
    height, width = size
    image = Image.fromarray(np.asarray(pixels, "float32"), mode="F")
    return np.asarray(image.resize((width, height), resample), "float32")

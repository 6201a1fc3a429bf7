"""Arrays handed to the pipeline directly, turned into the loader's gray [0, 1] form."""

import numpy as np

from keras_covidcxr.errors import InputError


def pixels_from_array(array, name="array"):
    """Return a float32 (height, width) image in [0, 1] from a 2-D or 3-D array.

    uint8 and uint16 arrays are scaled by their type's maximum; float arrays
    must already lie in [0, 1]; 3- or 4-channel images are converted to gray
    (ITU-R 601 luma, alpha dropped).

    Example:
        >>> pixels_from_array(np.full((2, 2), 255, np.uint8)).max()
        1.0
    """
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        luma = np.array([0.299, 0.587, 0.114])
        array = (array[..., :3].astype("float64") @ luma).astype(array.dtype)
    if array.ndim != 2:
        raise InputError(f"{name}: expected a gray (H, W) or colour (H, W, 3|4) image, got shape {array.shape}")
    if array.dtype == np.uint8:
        return (array / 255.0).astype("float32")
    if array.dtype == np.uint16:
        return (array / 65535.0).astype("float32")
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"{name}: unsupported pixel type {array.dtype}; use uint8, uint16 or float in [0, 1]")
    if not np.all(np.isfinite(array)) or array.min() < 0.0 or array.max() > 1.0:
        raise InputError(f"{name}: float pixels must be finite and lie in [0, 1]")
    return array.astype("float32")

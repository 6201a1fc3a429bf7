"""Arrays handed to the pipeline directly, turned into the loader's gray [0, 1] form."""

import numpy as np

from keras_covidcxr.errors import InputError


def scale_by_bits_used(values):
    """(float32 in [0, 1], bits): non-negative integer pixels scaled by the bits their largest value needs.

    Detectors give 10, 12 or 14 bits, often stored in 16: scaled by 65535, a 12-bit film would come out
    at most 1/16 bright, nearly black. At least 8 bits, so a dark 8-bit picture is not stretched.

    Example:
        >>> scale_by_bits_used(np.array([[0, 2048, 4095]], np.uint16))[1]
        12
    """
    values = np.asarray(values)
    bits = max(8, int(values.max()).bit_length()) if values.size else 8
    return (values / float(2**bits - 1)).astype("float32"), bits


def pixels_from_array(array, name="array"):
    """Return a float32 (height, width) image in [0, 1] from a 2-D or 3-D array.

    uint8 arrays are scaled by 255, uint16 arrays by the bits they use (4095
    for 12-bit data; `scale_by_bits_used`), as image files are; float arrays
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
        return scale_by_bits_used(array)[0]
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"{name}: unsupported pixel type {array.dtype}; use uint8, uint16 or float in [0, 1]")
    if not np.all(np.isfinite(array)) or array.min() < 0.0 or array.max() > 1.0:
        raise InputError(f"{name}: float pixels must be finite and lie in [0, 1]")
    return array.astype("float32")

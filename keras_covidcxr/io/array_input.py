"""Arrays handed to the pipeline directly, turned into the loader's gray [0, 1] form."""

import numpy as np

from keras_covidcxr.errors import InputError, UnsupportedImageError

DEFAULT_MAX_PIXELS = 50_000_000  # files and arrays alike: larger films are refused before any work


# Detector depths; rounding up to one of them keeps a film's scale from hanging on its brightest pixel.
STANDARD_BIT_DEPTHS = (8, 10, 12, 14, 16)


def scale_by_bits_used(values):
    """(float32 in [0, 1], bits): non-negative integer pixels scaled by the detector depth their values need.

    Detectors give 10, 12 or 14 bits, often stored in 16: scaled by 65535, a 12-bit film would come out
    at most 1/16 bright, nearly black. The depth is the smallest of `STANDARD_BIT_DEPTHS` that holds the
    film's 99.5th-percentile value, not its brightest pixel's own bit count: a 12-bit film whose
    brightest pixel is 2047 is still read as 12-bit (by its own count, one pixel more at 2048 would halve
    the whole film's brightness), and a burned-in label at 65535 on a 12-bit film is clipped to white
    instead of darkening the film 16 times. At least 8 bits, so a dark 8-bit picture is not stretched.

    Example:
        >>> [scale_by_bits_used(np.array([[0, top]], np.uint16))[1] for top in (255, 2047, 2048, 4095, 4096)]
        [8, 12, 12, 12, 14]
    """
    values = np.asarray(values)
    reference = int(np.percentile(values, 99.5, method="higher")) if values.size else 0
    bits = next((depth for depth in STANDARD_BIT_DEPTHS if depth >= reference.bit_length()), 16)
    return np.minimum(values / float(2**bits - 1), 1.0).astype("float32"), bits


def pixels_from_array(array, name="array", max_pixels=DEFAULT_MAX_PIXELS):
    """Return a float32 (height, width) image in [0, 1] from a 2-D or 3-D array.

    uint8 arrays are scaled by 255, uint16 arrays by the bits they use (4095
    for 12-bit data; `scale_by_bits_used`), as image files are; float arrays
    must already lie in [0, 1]; 3- or 4-channel images are converted to gray
    as Pillow converts their files (ITU-R 601 luma, alpha dropped), and a
    2-channel one is gray and alpha. More than `max_pixels` pixels are refused,
    as they are from a file.

    Example:
        >>> float(pixels_from_array(np.full((2, 2), 255, np.uint8)).max())
        1.0
    """
    array = np.asarray(array)
    if array.size == 0:
        raise InputError(f"{name}: empty image (shape {array.shape})")
    if array.ndim == 3 and array.shape[-1] in (1, 2):
        array = array[..., 0]  # gray, or gray and alpha
    if array.ndim in (2, 3) and array.shape[0] * array.shape[1] > max_pixels:
        height, width = array.shape[:2]
        raise UnsupportedImageError(f"{name}: image of {width}x{height} pixels exceeds the limit of {max_pixels} pixels")
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        array = _luma(array[..., :3])
    if array.ndim != 2:
        raise InputError(f"{name}: expected a gray (H, W) or colour (H, W, 3|4) image, got shape {array.shape}")
    if array.dtype == np.uint8:
        return (array / 255.0).astype("float32")
    if array.dtype == np.uint16:
        return scale_by_bits_used(array)[0]
    if array.dtype.name == "bfloat16":  # JAX's and Keras' half type, which numpy does not count as a float
        array = array.astype("float32")
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"{name}: unsupported pixel type {array.dtype}; use uint8, uint16 or float in [0, 1]")
    check_unit_range(array, name)
    return array.astype("float32")


def check_unit_range(pixels, name):
    """Refuse (InputError) float pixels that are not finite or lie outside [0, 1], saying what was found."""
    finite = np.isfinite(pixels)
    if not finite.all():
        raise InputError(f"{name}: float pixels must be finite and lie in [0, 1]; {np.sum(~finite)} are NaN or infinite")
    low, high = float(pixels.min()), float(pixels.max())
    if low < 0.0 or high > 1.0:
        raise InputError(f"{name}: float pixels must be finite and lie in [0, 1]; found {_shown(low)} to "
                         f"{_shown(high)} ({_range_hint(low, high)})")


def _range_hint(low, high):
    """What a float film outside [0, 1] most likely holds, and what to do about it."""
    if low >= -0.1 and high <= 1.1:
        return "a resize or filter may overshoot [0, 1]: clip the array to [0, 1]"
    if low >= -0.1 and 2.0 < high <= 255.5:
        return "0-255 values? divide by 255, or pass uint8"
    if low >= -1.1 and high <= 1.1:
        return "values in [-1, 1]? map them to [0, 1] with (x + 1) / 2"
    return "rescale them to [0, 1], e.g. (x - x.min()) / (x.max() - x.min())"


def _shown(value):
    """`value` with the digits that tell it from 0 or 1 (1.0000001 is not shown as 1)."""
    value += 0.0  # -0.0 is shown as 0
    for digits in range(4, 10):
        text = f"{value:.{digits}g}"
        if float(text) != round(value) or value == round(value):
            return text
    return repr(value)


def _luma(rgb):
    """Gray from colour as Pillow's `convert("L")` computes it, so an array and its file give the same film.

    Integers: ITU-R 601 weights in 16-bit fixed point, rounded to the nearest level (Pillow's formula,
    exact for uint8). Floats: the same weights, unrounded.
    """
    if np.issubdtype(rgb.dtype, np.floating):
        return rgb.astype("float64") @ np.array([0.299, 0.587, 0.114])
    if rgb.dtype not in (np.uint8, np.uint16):
        return rgb[..., 0]  # refused below for its type, whatever its channels
    channels = rgb.astype("uint64")
    gray = (channels[..., 0] * 19595 + channels[..., 1] * 38470 + channels[..., 2] * 7471 + 0x8000) >> 16
    return gray.astype(rgb.dtype)

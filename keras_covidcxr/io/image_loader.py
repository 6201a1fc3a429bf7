"""The one image loader: any supported CXR file to a float32 gray image in [0, 1].

PNG, JPEG, BMP, TIFF, GIF, WebP and PGM/PPM go through Pillow; DICOM through
pydicom (the `dicom` extra). Every failure is a `CovidCXRError` subclass whose
message starts with the file's path and says the reason. Only numpy, Pillow and
(lazily) pydicom are imported; no Keras backend.
"""

import contextlib
import dataclasses
import os
import re
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from keras_covidcxr.errors import (
    ConfigError,
    CovidCXRError,
    ImageDecodeError,
    InputError,
    UnsupportedImageError,
)
from keras_covidcxr.io import dicom_reader
from keras_covidcxr.io.array_input import DEFAULT_MAX_PIXELS, scale_by_bits_used

METADATA_KEYS = (
    "path",
    "format",
    "original_size",
    "bits",
    "modality",
    "view",
    "age",
    "patient_id_hash",
    "photometric",
    "voi",
)

# Never EPS/PDF-style formats that shell out to other programs.
_PILLOW_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "GIF", "WEBP", "PPM")
_DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "PNG",
    b"\xff\xd8\xff": "JPEG",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"BM": "BMP",
}
# JPEG 2000 as a file (a .jp2 box file or a bare codestream); in DICOM it is read with [dicom-compressed]
_JPEG_2000_SIGNATURES = (b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51")
# JPEG frame markers of lossless coding (SOF3, 7, 11, 15), which Pillow cannot decode
_LOSSLESS_JPEG_MARKERS = (0xC3, 0xC7, 0xCB, 0xCF)
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
NUL_HINT = "PIL.Image.open(io.BytesIO(contents))"


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class LoadedImage:
    """A decoded image: `pixels` (float32, (height, width), in [0, 1]) and `metadata`.

    `metadata` always holds the keys in `METADATA_KEYS`; a value is None where
    the file does not say (plain images carry no modality, view, age or patient).
    `original_size` is (height, width) as loaded, after EXIF orientation.
    `bits`: for PNG, JPEG and other Pillow files the bit depth the pixels were scaled by: 8 for 8-bit
    files; for 16-bit files (and 32-bit ones holding integer levels within 16 bits, float TIFFs included) the
    standard depth their 99.5th-percentile value needs (12 for 12-bit data stored in 16; `scale_by_bits_used`), so
    such a film is not read 16 times too dark. For DICOM it is BitsAllocated as the file states it;
    DICOM pixels are scaled by their window or their own range (`voi` says which), not by `bits`.
    """

    pixels: np.ndarray
    metadata: dict

    def __repr__(self):
        return f"LoadedImage(pixels=<{self.pixels.dtype} {self.pixels.shape}>, metadata={self.metadata!r})"


def load_image(path, *, max_pixels=DEFAULT_MAX_PIXELS, patient_id_key=None):
    """Load a chest X-ray file as a float32 gray image in [0, 1].

    Args:
        path: a `str` or `Path` to a PNG, JPEG, BMP, TIFF, GIF, WebP, PGM/PPM
            or DICOM file (DICOM is recognised by its "DICM" marker, or by a
            .dcm suffix for files without one; a PNG or JPEG named .dcm is read
            by its signature).
        max_pixels: images with more than this many pixels are refused, from
            the header, before any pixel is decoded. (Pillow's own
            decompression-bomb limit, `2 * PIL.Image.MAX_IMAGE_PIXELS`, also
            applies to non-DICOM files.)
        patient_id_key: bytes or str key for the patient id hash (DICOM). Fix it
            when hashes must match across runs; by default a random key is made
            once per process. The raw PatientID is never kept.

    Returns:
        A `LoadedImage`.

    Raises:
        ImageDecodeError: missing, empty, truncated, corrupt or unrecognised file.
        UnsupportedImageError: too many pixels, several frames or pages, no
            pixel data, an unsupported pixel mode or transfer syntax.
        MissingDependencyError: DICOM without pydicom, or compressed DICOM
            without a decoder plugin.

    Example:
        >>> import tempfile
        >>> from PIL import Image
        >>> path = Path(tempfile.mkdtemp()) / "cxr.png"
        >>> Image.new("L", (4, 3), 255).save(path)
        >>> image = load_image(path)
        >>> image.pixels.shape, float(image.pixels.max()), image.metadata["format"]
        ((3, 4), 1.0, 'PNG')
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"load_image expects a str or Path, got {type(path).__name__}")
    if not isinstance(max_pixels, int) or max_pixels <= 0:
        raise ConfigError(f"max_pixels must be a positive int, got {max_pixels!r}")
    if "\0" in os.fsdecode(path):
        shown = repr(os.fsdecode(path))
        raise InputError(f"{shown if len(shown) <= 80 else shown[:77] + '...'}: not a file name: it holds a NUL byte "
                         f"(for an image file's contents, pass {NUL_HINT})")
    path = Path(path)
    name = str(path)
    head = _read_head(path, name)
    has_preamble = head[128:132] == b"DICM"  # DICOM's marker after its 128-byte preamble
    with _decode_errors(name):
        # a PNG or JPEG named .dcm is read as what it is
        named_dicom = path.suffix.lower() in _DICOM_SUFFIXES and not head.startswith(tuple(_SIGNATURES))
        if has_preamble or named_dicom:
            pixels, metadata = dicom_reader.read_dicom(
                path,
                name,
                max_pixels=max_pixels,
                patient_id_key=patient_id_key,
                has_preamble=has_preamble,
            )
        else:
            pixels, metadata = _read_with_pillow(path, name, max_pixels, head)
    metadata = {key: None for key in METADATA_KEYS} | metadata
    metadata.update(path=name, original_size=tuple(pixels.shape))
    return LoadedImage(pixels=pixels, metadata=metadata)


def load_pil_image(image, name="image", *, max_pixels=DEFAULT_MAX_PIXELS):
    """A `LoadedImage` from a PIL image already open, read as its file would be (`load_image`).

    Example:
        >>> load_pil_image(Image.new("L", (4, 3), 255)).pixels.shape
        (3, 4)
    """
    width, height = image.size
    if width * height > max_pixels:
        raise UnsupportedImageError(f"{name}: image of {width}x{height} pixels exceeds the limit of {max_pixels} pixels")
    with _decode_errors(name):
        pixels, bits = _gray_pixels(image, name)
    metadata = {key: None for key in METADATA_KEYS} | {"format": image.format, "bits": bits}
    metadata.update(path=name, original_size=tuple(pixels.shape))
    return LoadedImage(pixels=pixels, metadata=metadata)


def check_regular_file(path, name=None):
    """Refuse a folder, pipe, socket or device given as an image: reading a pipe would wait forever."""
    path = Path(path)
    name = str(path) if name is None else name
    if path.is_dir():
        if not os.access(path, os.R_OK | os.X_OK):  # what a folder walk hands on when it cannot list a folder
            raise ImageDecodeError(f"{name}: a folder that cannot be opened (permission denied): its images were "
                                   "not read")
        raise ImageDecodeError(f"{name}: is a directory, not an image file")
    if path.exists() and not path.is_file():
        raise ImageDecodeError(f"{name}: not a regular file (a pipe, socket or device); copy the image to a file")


def _read_head(path, name):
    """The first 132 bytes, after refusing a missing, unreadable, empty or not regular file."""
    try:
        check_regular_file(path, name)
        with open(path, "rb") as f:
            head = f.read(132)
    except FileNotFoundError as exc:
        raise ImageDecodeError(f"{name}: no such file") from exc
    except PermissionError as exc:
        raise ImageDecodeError(f"{name}: permission denied") from exc
    except OSError as exc:
        raise ImageDecodeError(f"{name}: cannot read the file ({exc.strerror or exc})") from exc
    if not head:
        raise ImageDecodeError(f"{name}: empty file (0 bytes)")
    return head


_DECODING = threading.local()  # the file each thread is decoding: decoders warn without naming it


def file_being_decoded():
    """The name of the image file this thread is decoding, or None, for a warnings hook to name the file a
    decoder's warning is about (pydicom's and Pillow's do not; the reader threads decode several at once).

    Example:
        >>> file_being_decoded() is None
        True
    """
    return getattr(_DECODING, "name", None)


@contextlib.contextmanager
def _decode_errors(name):
    """Turn whatever a decoder raises into a typed error naming the file; `file_being_decoded` names it meanwhile."""
    outer, _DECODING.name = file_being_decoded(), name
    try:
        yield
    except CovidCXRError:
        raise
    except FileNotFoundError as exc:
        raise ImageDecodeError(f"{name}: no such file") from exc
    except PermissionError as exc:
        raise ImageDecodeError(f"{name}: permission denied") from exc
    except Image.DecompressionBombError as exc:
        raise UnsupportedImageError(f"{name}: image too large ({exc})") from exc
    except MemoryError as exc:
        raise UnsupportedImageError(f"{name}: not enough memory to decode the image") from exc
    except Exception as exc:
        # Decoders raise OSError, SyntaxError, struct.error, IndexError, ... on bad data; their text may span
        # lines and name Python objects ("<_io.BytesIO object at 0x...>"): one line, without them
        detail = re.sub(r"\s+", " ", re.sub(r"<[^<>]* at 0x[0-9a-fA-F]+>", "", str(exc))).strip()
        raise ImageDecodeError(f"{name}: truncated or corrupt image ({type(exc).__name__}: {detail})") from exc
    finally:
        _DECODING.name = outer


def _read_with_pillow(path, name, max_pixels, head):
    try:
        with warnings.catch_warnings():
            # We apply our own size limit; Pillow's bomb *error* (far above it) is still caught.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path, formats=_PILLOW_FORMATS)
    except Image.DecompressionBombError as exc:
        # Pillow refuses far above our limit before it gives the size; its message has the pixel count.
        size = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = f"{int(size.group(1))} pixels" if size else "pixels"
        raise UnsupportedImageError(f"{name}: image too large ({pixels}; the limit is {max_pixels})") from exc
    except UnidentifiedImageError as exc:
        _refuse_undecodable(path, head, name)
        kind = next((k for sig, k in _SIGNATURES.items() if head.startswith(sig)), None)
        if kind is None:
            # DICOM data elements of group 0002 or 0008 at the start: a DICOM file without its preamble
            hint = (" (it starts like a DICOM file without its preamble: name it .dcm)"
                    if dicom_reader.starts_like_dicom_without_preamble(head) else "")
            raise ImageDecodeError(f"{name}: not a recognised image format{hint}") from exc
        raise ImageDecodeError(
            f"{name}: truncated or corrupt image (a {kind} signature but an unreadable header)"
        ) from exc
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise UnsupportedImageError(
                f"{name}: image of {width}x{height} pixels exceeds the limit of {max_pixels} pixels"
            )
        frames = getattr(image, "n_frames", 1)
        # MPO (camera JPEG) keeps previews as extra frames; its first frame is the image.
        if frames > 1 and image.format != "MPO":
            raise UnsupportedImageError(
                f"{name}: {frames} frames or pages; only single 2-D images are supported"
            )
        file_format = image.format
        try:
            pixels, bits = _gray_pixels(image, name)
        except OSError:  # a lossless JPEG opens, then fails to decode
            _refuse_undecodable(path, head, name)
            raise
    if file_format == "PNG" and _is_16_bit_colour_png(head) and np.percentile(pixels, 99.5) < 0.5:
        raise UnsupportedImageError(
            f"{name}: a 16-bit colour or gray+alpha PNG whose values use fewer than 16 bits (e.g. a 12-bit film): "
            "Pillow reads only their high byte, so the film would come out nearly black; save it as a 16-bit "
            "grayscale PNG"
        )
    return pixels, {"format": file_format, "bits": bits}


def _gray_pixels(image, name):
    """(gray float32 pixels in [0, 1], bits) of an open Pillow image: decoded (lazily: so truncation is caught
    here), turned upright by its EXIF orientation, and a white-is-zero TIFF Pillow leaves as stored inverted."""
    inverted = _stored_inverted(image)
    _decode_tiff_at_its_stored_size(image)
    image.load()
    pixels, bits = _to_gray(ImageOps.exif_transpose(image), name)
    return (1.0 - pixels if inverted else pixels), bits


def _refuse_undecodable(path, head, name):
    """After Pillow failed: refuse, naming it, an image of a kind Pillow cannot decode (`_undecodable_kind`)."""
    kind = _undecodable_kind(path, head)
    if kind:
        raise UnsupportedImageError(f"{name}: {kind}, which is not read here: convert it to a (16-bit) PNG")


def _undecodable_kind(path, head):
    """What kind of image this is when it is one Pillow cannot decode (JPEG 2000, a 12-bit or lossless JPEG,
    which it would call corrupt), else None. Reads a JPEG's markers up to its frame header."""
    if head.startswith(_JPEG_2000_SIGNATURES):
        return "a JPEG 2000 file"
    if not head.startswith(b"\xff\xd8\xff"):
        return None
    with open(path, "rb") as file:
        data = file.read(1 << 20)  # the frame header follows the APP segments (EXIF, ICC) within a few hundred KB
    at = 2
    while at + 9 <= len(data) and data[at] == 0xFF:
        marker, length = data[at + 1], int.from_bytes(data[at + 2 : at + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # a frame header (SOFn)
            if marker in _LOSSLESS_JPEG_MARKERS:
                return "a lossless JPEG"
            return None if data[at + 4] == 8 else f"a {data[at + 4]}-bit JPEG"
        at += 2 + length
    return None


def _stored_inverted(image):
    """Whether a TIFF stores its film white-is-zero (PhotometricInterpretation 0, MinIsWhite) and Pillow will not
    invert it: Pillow does only for uncompressed 8-bit data (its "L;I" raw mode), not for 16-bit, float or
    compressed data, which would be read as a negative. Asked before the pixels are decoded (the tiles say how)."""
    if image.format != "TIFF" or getattr(image, "tag_v2", {}).get(262) != 0 or not image.tile:
        return False
    return not all(tile[0] == "raw" and str(tile[3][0]).endswith(";I") for tile in image.tile)


def _decode_tiff_at_its_stored_size(image):
    """Work around Pillow 13.0: it gives a TIFF whose orientation tag turns it by 90 degrees (5-8) the turned
    size before decoding, and its own (not libtiff's) decoders then read the rows at the wrong width: stripes.
    Decoded at the stored size, the film comes out right, turned by Pillow as it loads."""
    stored = getattr(image, "_tile_size", None)  # Pillow 13's stored size; older versions turn after loading
    if (image.format == "TIFF" and stored and tuple(image.size) != tuple(stored) and image.tile
            and image.tile[0][0] != "libtiff"):
        image._size = stored


def _is_16_bit_colour_png(head):
    """A PNG whose header says 16 bits per sample in RGB, gray+alpha or RGBA (Pillow keeps 8 of them)."""
    # the IHDR chunk follows the 8-byte signature: length, type, width, height, bit depth, colour type
    return head[12:16] == b"IHDR" and len(head) > 25 and head[24] == 16 and head[25] in (2, 4, 6)


def _to_gray(image, name):
    """Gray float32 in [0, 1] and the bit depth it was scaled by (ITU-R 601 luma, as Pillow's 'L')."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES:
        return scale_by_bits_used(np.asarray(image))
    if mode == "I":
        return _levels_or_min_max(np.asarray(image, dtype=np.int64))
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if not np.isfinite(values).all():
            raise ImageDecodeError(f"{name}: floating-point image holds NaN or infinite values")
        if values.min() >= 0.0 and values.max() <= 1.0:
            return values.astype(np.float32), 32
        return _levels_or_min_max(values)
    if mode in ("P", "PA"):
        # Via RGBA so that palette transparency is dropped without Pillow's warning.
        image = image.convert("RGBA")
    try:
        gray = image.convert("L")  # alpha bands are ignored by this conversion
    except ValueError as exc:
        raise UnsupportedImageError(f"{name}: pixel mode {mode!r} is not supported") from exc
    return np.asarray(gray).astype(np.float32) / 255.0, 8


def _levels_or_min_max(values):
    """32-bit pixels (integers, or floats holding integers as `Image.convert("F")` of an 8-bit film gives)
    within 16 bits scaled by the bits they use, as 16-bit files are; any others stretched to their own range."""
    if values.min() >= 0 and values.max() <= 65535 and np.array_equal(values, np.round(values)):
        return scale_by_bits_used(values.astype(np.uint16))
    return _min_max(values), 32


def _min_max(values):
    values = values.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, np.float32)
    return ((values - low) / (high - low)).astype(np.float32)

"""DICOM decoding for `load_image`: pixels to [0, 1] gray, plus the few tags we keep.

pydicom is an optional extra (`pip install "keras-covidcxr[dicom]"`), imported only
when a DICOM file is read. The raw PatientID never leaves this module: it is reduced
to a keyed hash (`hash_patient_id`) and is redacted from any error message.
"""

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence

import numpy as np

from keras_covidcxr.errors import (
    ConfigError,
    CovidCXRError,
    ImageDecodeError,
    MissingDependencyError,
    UnsupportedImageError,
)

DICOM_INSTALL_HINT = 'pip install "keras-covidcxr[dicom]"'

# Hashes made with the default key can be compared within one process only.
_PROCESS_KEY = secrets.token_bytes(32)

_LATERAL_VIEWS = {"LL", "RL", "LATERAL", "LAT", "L"}
_AGE_UNIT_IN_YEARS = {"Y": 1.0, "M": 1.0 / 12.0, "W": 7.0 / 365.25, "D": 1.0 / 365.25}
_COLOR_PHOTOMETRICS = {
    "RGB",
    "YBR_FULL",
    "YBR_FULL_422",
    "YBR_PARTIAL_420",
    "YBR_ICT",
    "YBR_RCT",
}


def hash_patient_id(patient_id, key=None):
    """HMAC-SHA256 of a patient id, as 16 hex characters; None for a blank id.

    `key` (bytes or str) should be fixed by the caller when hashes must match
    across runs; without one, a random key made once per process is used.

    Example:
        >>> a = hash_patient_id("PAT-001", key="site-secret")
        >>> a == hash_patient_id("PAT-001", key="site-secret"), len(a)
        (True, 16)
    """
    if isinstance(patient_id, str):
        patient_id = patient_id.encode("utf-8")
    patient_id = bytes(patient_id).strip(b" \x00")
    if not patient_id:
        return None
    return hmac.new(_key_bytes(key), patient_id, hashlib.sha256).hexdigest()[:16]


def _key_bytes(key):
    if key is None:
        return _PROCESS_KEY
    if isinstance(key, str):
        key = key.encode("utf-8")
    if not isinstance(key, (bytes, bytearray)) or not key:
        raise ConfigError("patient_id_key must be a non-empty bytes or str value")
    return bytes(key)


def parse_age(value):
    """DICOM PatientAge ("045Y", "006M", "010W", "003D") in years; None if unreadable.

    Example:
        >>> parse_age("045Y"), parse_age("006M"), parse_age("")
        (45.0, 0.5, None)
    """
    match = re.fullmatch(r"\s*(\d{1,3})\s*([DWMY]?)\s*", str(value or "").upper())
    if match is None:
        return None
    return int(match.group(1)) * _AGE_UNIT_IN_YEARS[match.group(2) or "Y"]


def normalise_view(value):
    """ViewPosition as "PA", "AP", "L" (any lateral) or the raw string; None if blank.

    Example:
        >>> normalise_view("LL"), normalise_view(" pa "), normalise_view("LLD")
        ('L', 'PA', 'LLD')
    """
    view = str(value or "").strip().upper()
    if not view:
        return None
    return "L" if view in _LATERAL_VIEWS else view


def _view_of(ds):
    """ViewPosition, normalised; without it, the coded view (View Code Sequence, e.g. SNOMED "lateral"), which some
    writers fill instead. The view is metadata: a malformed sequence gives None, never a failed film."""
    view = normalise_view(ds.get("ViewPosition"))
    if view is not None:
        return view
    try:
        meaning = str(ds.ViewCodeSequence[0].CodeMeaning).lower().replace("-", "")
    except Exception:  # absent, empty, or not a sequence of coded items
        return None
    if "oblique" in meaning:
        return "OBLIQUE"
    if "decubitus" in meaning:  # lying on one side a frontal projection (LLD / RLD); on the back or front a lateral
        return "LLD" if "left" in meaning else "RLD" if "right" in meaning else "L"
    if "lateral" in meaning:
        return "L"
    return next((view for word, view in (("posteroanterior", "PA"), ("anteroposterior", "AP")) if word in meaning),
                None)


def starts_like_dicom_without_preamble(head):
    """Whether a file's first bytes are a DICOM data element of group 0002 or 0008 (a DICOM file without its
    128-byte preamble and "DICM" marker): in explicit VR little endian, a VR's two letters follow the tag; in
    implicit VR (old ACR-NEMA style), a short length follows one of the elements a dataset starts with."""
    if head[:2] not in (b"\x02\x00", b"\x08\x00") or len(head) < 8:
        return False
    implicit = (head[:2] == b"\x08\x00" and int.from_bytes(head[2:4], "little") in _FIRST_ELEMENTS
                and int.from_bytes(head[4:8], "little") < 256)
    return head[4:6] in _EXPLICIT_VRS or implicit


_EXPLICIT_VRS = frozenset(vr.encode() for vr in (
    "AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL UN UR US UT UV".split()))
_FIRST_ELEMENTS = (0x0000, 0x0005, 0x0008, 0x0012, 0x0016, 0x0018)  # group length, character set, image type, ...


def _import_pydicom(name):
    try:
        import pydicom
    except ImportError as exc:
        raise MissingDependencyError(
            f"{name}: reading DICOM needs pydicom; install it with {DICOM_INSTALL_HINT}"
        ) from exc
    try:
        import pydicom.pixels
    except ImportError as exc:  # pydicom 2.x has no pydicom.pixels
        raise MissingDependencyError(
            f"{name}: reading DICOM needs pydicom 3.0 or later, found {pydicom.__version__}; upgrade it with "
            f"pip install --upgrade \"pydicom>=3.0\""
        ) from exc
    return pydicom


MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # a DICOMDIR's SOP class


def read_dicom(path, name, *, max_pixels, patient_id_key, has_preamble):
    """Decode a single-frame DICOM file; returns (float32 pixels in [0, 1], metadata).

    `name` is how the file is named in error messages. Errors from pydicom are
    wrapped by the caller; this function raises the typed refusals itself.
    """
    pydicom = _import_pydicom(name)
    try:
        ds = pydicom.dcmread(path, force=not has_preamble)
    except pydicom.errors.InvalidDicomError as exc:
        raise ImageDecodeError(f"{name}: not a valid DICOM file ({exc})") from exc
    if str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "")) == MEDIA_STORAGE_DIRECTORY:
        raise UnsupportedImageError(f"{name}: a DICOMDIR (the index of a DICOM disc or export), not an image: "
                                    "name its folder to predict the films in it")
    if not any(keyword in ds for keyword in ("SOPClassUID", "Rows", "PixelData")):
        if has_preamble:
            raise ImageDecodeError(f"{name}: truncated or corrupt DICOM (no image elements found)")
        raise ImageDecodeError(
            f"{name}: not a recognised image format (no DICOM preamble and no image elements)"
        )
    # Read the ID from the raw element so that pydicom's value checks never echo it.
    raw_id = ds.get_item(0x00100020)
    raw_id = raw_id.value if raw_id is not None else None
    redacted = None
    try:
        pixels, voi = _decode_pixels(pydicom, ds, name, max_pixels)
        metadata = {
            "format": "DICOM",
            "bits": int(ds.BitsAllocated),
            "modality": str(ds.get("Modality") or "").strip().upper() or None,  # some writers say "cr"
            "view": _view_of(ds),
            "age": parse_age(ds.get("PatientAge")),
            "patient_id_hash": hash_patient_id(raw_id, patient_id_key) if raw_id else None,
            "photometric": str(ds.PhotometricInterpretation).strip(),
            "voi": voi,
        }
    except Exception as exc:
        redacted = _redacted(exc, raw_id, name)
        if redacted is exc:
            raise
    if redacted is not None:
        raise redacted  # outside the except block, so the original is not chained to it
    return pixels, metadata


def _redacted(exc, raw_id, name):
    """`exc`, or a copy without the raw patient id if it or an exception it chains names it."""
    if not raw_id:
        return exc
    patient_id = raw_id.decode("utf-8", "replace") if isinstance(raw_id, bytes) else str(raw_id)
    patient_id = patient_id.strip(" \x00")
    chain, link = [], exc
    while link is not None and link not in chain:
        chain.append(link)
        link = link.__cause__ or link.__context__
    if not patient_id or not any(patient_id in str(link) for link in chain):
        return exc
    text = str(exc).replace(patient_id, "<patient id>")
    if isinstance(exc, CovidCXRError):
        return type(exc)(text)
    return ImageDecodeError(f"{name}: truncated or corrupt DICOM ({type(exc).__name__}: {text})")


def _decode_pixels(pydicom, ds, name, max_pixels):
    from pydicom.pixels import apply_modality_lut

    floats = [keyword for keyword in ("FloatPixelData", "DoubleFloatPixelData") if keyword in ds]
    if "PixelData" not in ds and floats:
        raise UnsupportedImageError(f"{name}: DICOM with floating-point pixel data ({floats[0]}) is not supported; "
                                    "X-ray films store integer PixelData")
    if "PixelData" not in ds:
        raise UnsupportedImageError(f"{name}: DICOM without pixel data (no PixelData element)")
    for keyword in ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation"):
        if ds.get(keyword) in (None, ""):
            raise ImageDecodeError(f"{name}: DICOM is missing the required element {keyword}")
    frames = int(ds.get("NumberOfFrames") or 1)
    if frames > 1:
        raise UnsupportedImageError(
            f"{name}: multi-frame DICOM ({frames} frames); only single 2-D images are supported"
        )
    rows, cols = int(ds.Rows), int(ds.Columns)
    if rows * cols > max_pixels:
        raise UnsupportedImageError(
            f"{name}: image of {cols}x{rows} pixels exceeds the limit of {max_pixels} pixels"
        )
    photometric = str(ds.PhotometricInterpretation).strip().upper()
    if photometric not in {"MONOCHROME1", "MONOCHROME2"} | _COLOR_PHOTOMETRICS:
        raise UnsupportedImageError(f"{name}: photometric interpretation {photometric!r} is not supported")
    stored, high_bit = ds.get("BitsStored"), ds.get("HighBit")
    if stored not in (None, "") and high_bit not in (None, "") and int(high_bit) != int(stored) - 1:
        raise UnsupportedImageError(f"{name}: HighBit {high_bit} with BitsStored {stored}: pixel data not aligned to "
                                    "bit 0 is not supported")
    for keyword in ("RescaleSlope", "RescaleIntercept"):
        if ds.get(keyword) not in (None, "") and _number(ds.get(keyword)) is None:
            raise UnsupportedImageError(f"{name}: {keyword} {str(ds.get(keyword))!r} is not a number")
    other_decoders = _check_decoder(pydicom, ds, name)
    try:
        arr = ds.pixel_array
    except Exception as exc:
        if not other_decoders:
            raise
        syntax = ds.file_meta.TransferSyntaxUID
        raise ImageDecodeError(
            f"{name}: could not decode the {syntax.name} pixel data "
            f"({type(exc).__name__}: {exc}); if the file is intact, a decoder that is not "
            f"installed may handle it: {other_decoders}"
        ) from exc
    color = photometric in _COLOR_PHOTOMETRICS
    if arr.shape != ((rows, cols, 3) if color else (rows, cols)):
        raise UnsupportedImageError(f"{name}: pixel data of shape {arr.shape} is not a single 2-D image")
    if color:
        # pydicom returns YBR data converted to RGB; modality and VOI LUTs are for gray only.
        luma = arr.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
        return _to_float32(luma / (2 ** int(ds.get("BitsStored") or 8) - 1)), None

    values = apply_modality_lut(arr, ds)
    padding = _padding(arr, ds)
    if _has_voi_lut(ds):
        out, voi = _apply_voi_lut_sequence(values, ds), "VOI LUT"
    elif (window := _window(ds)) is not None:
        out, voi = _apply_window(values, *window), "window"
    else:
        out, voi = _min_max(values, ignore=padding), "min-max"
    # MONOCHROME1, or a Presentation LUT Shape of INVERSE (some CR writers say MONOCHROME2 and INVERSE): the
    # lowest value is shown white. Both together mean one inversion (the DX rule pairs them).
    if photometric == "MONOCHROME1" or str(ds.get("PresentationLUTShape") or "").strip().upper() == "INVERSE":
        out = 1.0 - out
    if padding is not None:
        out = np.where(padding, 0.0, out)  # outside the exposed field: shown black, never part of the film's range
    return _to_float32(out), voi


def _padding(stored, ds):
    """Where the stored values are Pixel Padding Value (up to Pixel Padding Range Limit), or None."""
    if ds.get("PixelPaddingValue") is None:
        return None
    low = _as_stored(int(ds.PixelPaddingValue), ds)
    high = _as_stored(int(ds.PixelPaddingRangeLimit), ds) if ds.get("PixelPaddingRangeLimit") is not None else low
    low, high = min(low, high), max(low, high)
    padding = (stored >= low) & (stored <= high)
    return padding if padding.any() else None


def _as_stored(value, ds):
    """A padding value as the stored pixels hold it: written as US (implicit VR cannot say SS), a signed film's
    -32768 reads 32768."""
    bits = int(ds.get("BitsAllocated") or 16)
    if int(ds.get("PixelRepresentation") or 0) == 1 and 2 ** (bits - 1) <= value < 2**bits:
        return value - 2**bits
    return value


def _check_decoder(pydicom, ds, name):
    """Refuse pixel data no installed plugin can decode, naming what to install.

    Returns the uninstalled decoder options for compressed data (to hint at when
    the installed ones fail), else "".
    """
    file_meta = getattr(ds, "file_meta", None)
    if file_meta is None or "TransferSyntaxUID" not in file_meta:
        # Files without a file meta header: take the encoding pydicom read them with.
        implicit, little = ds.original_encoding
        if implicit:
            syntax = pydicom.uid.ImplicitVRLittleEndian
        elif little:
            syntax = pydicom.uid.ExplicitVRLittleEndian
        else:
            syntax = pydicom.uid.ExplicitVRBigEndian
        ds.file_meta = file_meta if file_meta is not None else pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = syntax
    syntax = ds.file_meta.TransferSyntaxUID
    if not syntax.is_transfer_syntax:
        raise UnsupportedImageError(f"{name}: unknown transfer syntax {str(syntax)!r}")
    if not syntax.is_compressed:
        return ""
    try:
        decoder = pydicom.pixels.get_decoder(syntax)
    except NotImplementedError as exc:
        raise UnsupportedImageError(
            f"{name}: transfer syntax {syntax.name} ({syntax}) is not supported"
        ) from exc
    # Entries read like "pylibjpeg - requires pylibjpeg>=2.0 and pylibjpeg-libjpeg>=2.1".
    options = " | ".join(dep.split(" - requires ", 1)[-1] for dep in decoder.missing_dependencies)
    if not decoder.is_available:
        raise MissingDependencyError(
            f"{name}: pixel data is compressed as {syntax.name} and no installed decoder "
            f"handles it; install one of: {options}"
        )
    return options


def _has_voi_lut(ds):
    seq = ds.get("VOILUTSequence")
    return bool(seq) and "LUTDescriptor" in seq[0] and "LUTData" in seq[0]


def _apply_voi_lut_sequence(values, ds):
    """Apply the first VOI LUT, then scale the LUT's own output range to [0, 1]."""
    from pydicom.pixels import apply_voi

    if not np.issubdtype(values.dtype, np.integer):
        values = np.rint(values).astype(np.int64)  # LUT inputs are integers
    item = ds.VOILUTSequence[0]
    count, first, bits = (int(v) for v in item.LUTDescriptor)
    if first >= 2**15 and values.min() < 0:
        # the first input value is SS where the LUT's inputs can be negative; written as US (implicit VR cannot say
        # which), -2048 reads 63488 and every pixel would fall below the LUT's first entry: a black film
        first -= 2**16
        item.LUTDescriptor = [count, first, bits]  # our own copy of the file's dataset
    entries = count or 2**16
    # pydicom (3.0) indexes the LUT in 16 bits, or in 8 for 8-bit entries, where indices past 255 wrap: clip the
    # inputs to the LUT's range (as the standard maps them) and index in 16 bits; the entries are the same.
    values = np.clip(values.astype(np.int64), first, first + entries - 1)
    if bits == 8:
        item.LUTDescriptor = [count, first, 16]  # our own copy of the file's dataset
    table = apply_voi(np.arange(first, first + entries), ds)
    low, high = float(table.min()), float(table.max())
    if high <= low:
        return np.zeros(values.shape)
    return (apply_voi(values, ds).astype(np.float64) - low) / (high - low)


def _window(ds):
    """(center, width, function) of the first window, or None when there is no usable one."""
    if ds.get("WindowCenter") is None or ds.get("WindowWidth") is None:
        return None
    center, width = _first(ds.WindowCenter), _first(ds.WindowWidth)
    if center is None or width is None:  # not a number ("2047,5", "N/A"): as a degenerate window, min-max
        return None
    function = str(ds.get("VOILUTFunction") or "LINEAR").strip().upper()
    # A degenerate window is common in the wild; fall back to min-max rather than fail.
    if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID") or width <= 0:
        return None
    if function == "LINEAR" and width < 1:
        return None
    return center, width, function


def _first(value):
    """The first of a multi-valued element (several windows may be listed), as a float; None if not a number."""
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        value = value[0] if len(value) else None
    return _number(value)


def _number(value):
    """A DICOM decimal string (or number) as a finite float, or None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def _apply_window(values, center, width, function):
    """DICOM PS3.3 C.11.2.1.2-3 window, mapped straight to [0, 1]."""
    values = values.astype(np.float64)
    if function == "SIGMOID":
        with np.errstate(over="ignore"):
            return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR":
        center, width = center - 0.5, width - 1.0
    if width == 0:  # LINEAR with width 1: a hard threshold
        return (values > center).astype(np.float64)
    return np.clip((values - center) / width + 0.5, 0.0, 1.0)


# Below this many pixels (no film is this small) every value counts for the range.
MIN_PIXELS_FOR_STRAY_VALUES = 10_000


def _min_max(values, ignore=None):
    """Scaled to [0, 1] by the range of the values not ignored, leaving out stray extremes: a few values
    (under 0.5%, as for image files' bit depth: `scale_by_bits_used`) further beyond the 0.5 / 99.5th
    percentiles than that central range is wide, such as a hot pixel or a burned-in label at the maximum, are
    clipped instead of darkening the whole film."""
    values = values.astype(np.float64)
    counted = values if ignore is None else values[~ignore]
    if counted.size == 0:
        return np.zeros(values.shape)
    low, high = float(counted.min()), float(counted.max())
    if counted.size >= MIN_PIXELS_FOR_STRAY_VALUES:
        # a strided sample keeps this cheap on 9-megapixel films
        central_low, central_high = np.percentile(counted.ravel()[:: max(1, counted.size // 1_000_000)],
                                                  [0.5, 99.5])
        width = central_high - central_low
        if width > 0 and high > central_high + width:
            high = float(counted[counted <= central_high + width].max())  # the film's own brightest value
        if width > 0 and low < central_low - width:
            low = float(counted[counted >= central_low - width].min())
    if high <= low:
        return np.zeros(values.shape)
    return (values - low) / (high - low)


def _to_float32(values):
    return np.clip(values, 0.0, 1.0).astype(np.float32)

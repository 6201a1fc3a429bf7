"""load_image on DICOM: LUTs and windows to exact values, the tags we keep, and refusals."""

import sys
import traceback

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder
from pydicom.uid import JPEGLSLossless, RLELossless

from keras_covidcxr.errors import (
    ConfigError,
    CovidCXRError,
    ImageDecodeError,
    MissingDependencyError,
    UnsupportedImageError,
)
from keras_covidcxr.io.dicom_reader import (
    _redacted,
    hash_patient_id,
    normalise_view,
    parse_age,
)
from keras_covidcxr.io.image_loader import load_image

# Stored values that, with slope 2 and intercept -1000, become -1000, 2000, 3000, 4000, 5000, 7190;
# the window centre 3000.5 / width 4001 (LINEAR) maps [1000, 5000] linearly onto [0, 1].
STORED = np.array([[0, 1500, 2000], [2500, 3000, 4095]])
RESCALE = {"RescaleSlope": 2, "RescaleIntercept": -1000}
WINDOWED = np.array([[0.0, 0.25, 0.5], [0.75, 1.0, 1.0]], np.float32)


def _error(path, **kwargs):
    with pytest.raises(CovidCXRError) as info:
        load_image(path, **kwargs)
    return info.value


# ---- intensities ------------------------------------------------------------


def test_monochrome2_rescale_and_window(corpus):
    image = load_image(corpus.dicom(pixels=STORED, WindowCenter=3000.5, WindowWidth=4001, **RESCALE))
    np.testing.assert_array_equal(image.pixels, WINDOWED)
    assert image.pixels.dtype == np.float32
    assert (image.metadata["photometric"], image.metadata["voi"]) == ("MONOCHROME2", "window")


def test_monochrome1_is_inverted_after_windowing(corpus):
    path = corpus.dicom(
        pixels=STORED, photometric="MONOCHROME1", WindowCenter=3000.5, WindowWidth=4001, **RESCALE
    )
    image = load_image(path)
    np.testing.assert_array_equal(image.pixels, 1.0 - WINDOWED)
    assert image.metadata["photometric"] == "MONOCHROME1"


def test_first_of_several_windows_is_used(corpus):
    path = corpus.dicom(pixels=STORED, WindowCenter=[3000.5, 40], WindowWidth=[4001, 400], **RESCALE)
    np.testing.assert_array_equal(load_image(path).pixels, WINDOWED)


def test_linear_exact_window(corpus):
    path = corpus.dicom(
        pixels=STORED, WindowCenter=3000, WindowWidth=4000, VOILUTFunction="LINEAR_EXACT", **RESCALE
    )
    np.testing.assert_array_equal(load_image(path).pixels, WINDOWED)


def test_sigmoid_window(corpus):
    path = corpus.dicom(
        pixels=STORED, WindowCenter=3000, WindowWidth=4000, VOILUTFunction="SIGMOID", **RESCALE
    )
    values = STORED * 2.0 - 1000
    expected = 1.0 / (1.0 + np.exp(-4.0 * (values - 3000) / 4000))
    np.testing.assert_allclose(load_image(path).pixels, expected, rtol=1e-6)
    assert load_image(path).pixels[0, 2] == 0.5


def test_voi_lut_sequence_is_preferred_over_the_window(corpus):
    path = corpus.dicom(
        pixels=[[999, 1000, 1001], [1002, 1003, 4000]],
        VOILUTSequence=corpus.voi_lut_sequence([0, 100, 200, 300], first_mapped=1000),
        WindowCenter=10,
        WindowWidth=2,
        RescaleSlope=1,
        RescaleIntercept=0,
    )
    image = load_image(path)
    np.testing.assert_allclose(image.pixels, [[0, 0, 1 / 3], [2 / 3, 1, 1]], rtol=1e-6)
    assert image.metadata["voi"] == "VOI LUT"


def test_a_voi_lut_with_8_bit_entries_maps_every_input_not_modulo_256(corpus):
    # pydicom 3.0 indexes an 8-bit LUT with 8-bit indices: inputs past 255 entries wrapped around
    stored = np.array([[0, 255, 256], [1000, 2000, 4095]])
    entries = np.arange(4096) * 255 // 4095  # a linear 12-bit -> 8-bit LUT
    image = load_image(corpus.dicom(pixels=stored, VOILUTSequence=corpus.voi_lut_sequence(entries, bits=8)))
    expected = entries[stored] / 255
    np.testing.assert_allclose(image.pixels, expected, atol=1e-6)


def test_pixel_padding_is_black_and_outside_the_data_range(corpus):
    stored = np.array([[0, 0, 1000], [1500, 2000, 3000]])  # 0: padding around the exposed field
    image = load_image(corpus.dicom(pixels=stored, PixelPaddingValue=0))
    np.testing.assert_allclose(image.pixels, [[0, 0, 0], [0.25, 0.5, 1]], atol=1e-6)
    inverted = load_image(corpus.dicom(pixels=stored, photometric="MONOCHROME1", PixelPaddingValue=0))
    np.testing.assert_allclose(inverted.pixels, [[0, 0, 1], [0.75, 0.5, 0]], atol=1e-6)
    ranged = load_image(corpus.dicom(pixels=stored, PixelPaddingValue=0, PixelPaddingRangeLimit=1000))
    np.testing.assert_allclose(ranged.pixels, [[0, 0, 0], [0, 1 / 3, 1]], atol=1e-6)


def test_without_window_the_data_range_is_used(corpus):
    image = load_image(corpus.dicom(pixels=STORED))
    np.testing.assert_allclose(image.pixels, STORED / 4095, rtol=1e-6)
    assert image.metadata["voi"] == "min-max"


def test_a_stray_extreme_value_does_not_set_the_films_range(corpus):
    # a 12-bit film (values 1000-3000) with one hot pixel at 65535: the film keeps its own range, the pixel clips
    film = np.random.default_rng(0).integers(1000, 3001, size=(120, 120))
    film[0, 0] = 65535
    image = load_image(corpus.dicom(pixels=film, bits_stored=16))
    np.testing.assert_allclose(image.pixels[1:], (film[1:] - 1000) / 2000, atol=1e-6)
    assert image.pixels[0, 0] == 1.0 and 0.45 < image.pixels.mean() < 0.55
    film = film + 39000
    film[0, 0] = 0  # and at the low end (a dead pixel far below a film stored high in 16 bits)
    image = load_image(corpus.dicom(name="dark.dcm", pixels=film, bits_stored=16))
    assert image.pixels[0, 0] == 0.0 and 0.45 < image.pixels.mean() < 0.55
    labelled = np.random.default_rng(1).integers(1000, 3001, size=(200, 200))
    labelled[:10, :12] = 65535  # a burned-in label, 0.3% of the film
    image = load_image(corpus.dicom(name="label.dcm", pixels=labelled, bits_stored=16))
    np.testing.assert_allclose(image.pixels[10:], (labelled[10:] - 1000) / 2000, atol=1e-6)
    ramp = np.linspace(0, 4095, 150 * 150).reshape(150, 150).round()  # a wide spread is the film's own range
    np.testing.assert_allclose(load_image(corpus.dicom(name="ramp.dcm", pixels=ramp)).pixels, ramp / 4095, atol=1e-6)


def test_presentation_lut_shape_inverse_is_shown_inverted(corpus):
    plain = load_image(corpus.dicom(pixels=STORED, WindowCenter=3000.5, WindowWidth=4001, **RESCALE))
    inverse = load_image(corpus.dicom(name="inverse.dcm", pixels=STORED, WindowCenter=3000.5, WindowWidth=4001,
                                      PresentationLUTShape="INVERSE", **RESCALE))
    np.testing.assert_array_equal(inverse.pixels, 1.0 - plain.pixels)
    # MONOCHROME1 with INVERSE (the DX rule pairs them) is inverted once
    both = load_image(corpus.dicom(name="both.dcm", pixels=STORED, photometric="MONOCHROME1",
                                   PresentationLUTShape="INVERSE", WindowCenter=3000.5, WindowWidth=4001, **RESCALE))
    np.testing.assert_array_equal(both.pixels, 1.0 - plain.pixels)
    identity = load_image(corpus.dicom(name="identity.dcm", pixels=STORED, PresentationLUTShape="IDENTITY",
                                       WindowCenter=3000.5, WindowWidth=4001, **RESCALE))
    np.testing.assert_array_equal(identity.pixels, plain.pixels)


def test_degenerate_window_falls_back_to_min_max(corpus):
    image = load_image(corpus.dicom(pixels=STORED, WindowCenter=100, WindowWidth=0))
    np.testing.assert_allclose(image.pixels, STORED / 4095, rtol=1e-6)


def test_constant_image_is_all_zero(corpus):
    image = load_image(corpus.dicom(pixels=np.full((2, 2), 700)))
    np.testing.assert_array_equal(image.pixels, np.zeros((2, 2), np.float32))


def test_bits_stored_masks_the_unused_high_bits(corpus):
    image = load_image(corpus.dicom(pixels=[[0xF000 | 1000, 0], [4095, 0]], bits_stored=12))
    np.testing.assert_allclose(image.pixels, [[1000 / 4095, 0], [1, 0]], rtol=1e-6)


def test_ct_modality_loads_with_signed_values(corpus):
    path = corpus.dicom(
        pixels=[[-2000, 0], [1000, 3071]],
        bits_stored=16,
        signed=True,
        Modality="CT",
        RescaleSlope=1,
        RescaleIntercept=-1024,
        WindowCenter=40,
        WindowWidth=400,
    )
    image = load_image(path)
    hu = np.array([[-3024, -1024], [-24, 2047]])
    np.testing.assert_allclose(image.pixels, np.clip((hu - 39.5) / 399 + 0.5, 0, 1), rtol=1e-6)
    assert image.metadata["modality"] == "CT"


def test_rgb_dicom_is_converted_to_luma(corpus):
    path = corpus.dicom(pixels=[[[255, 0, 0], [255, 255, 255]]], photometric="RGB", bits_stored=8)
    image = load_image(path)
    np.testing.assert_allclose(image.pixels, [[0.299, 1.0]], rtol=1e-6)
    assert (image.metadata["bits"], image.metadata["voi"]) == (8, None)


def test_rle_compressed_dicom_matches_the_uncompressed_one(corpus):
    plain = load_image(corpus.dicom("plain.dcm", pixels=STORED)).pixels
    np.testing.assert_array_equal(
        load_image(corpus.dicom("rle.dcm", pixels=STORED, compress=RLELossless)).pixels, plain
    )


def test_jpeg_baseline_dicom_decodes_with_pillow(corpus):
    ramp = np.tile(np.arange(0, 256, 16, dtype=np.uint8), (16, 1))
    image = load_image(corpus.jpeg_dicom(pixels=ramp))
    assert image.pixels.shape == (16, 16)
    np.testing.assert_allclose(image.pixels, (ramp - 0.0) / 240, atol=0.03)


def test_dicom_without_preamble_is_read_by_suffix(corpus):
    path = corpus.dicom("bare.dcm", pixels=STORED, preamble=False, ViewPosition="PA")
    assert path.read_bytes()[128:132] != b"DICM"
    image = load_image(path)
    np.testing.assert_allclose(image.pixels, STORED / 4095, rtol=1e-6)
    assert (image.metadata["format"], image.metadata["view"]) == ("DICOM", "PA")
    unnamed = path.rename(path.with_name("bare"))  # no suffix and no marker: not read, but the way is said
    assert str(_error(unnamed)) == (f"{unnamed}: not a recognised image format (it starts like a DICOM file without "
                                    "its preamble: name it .dcm)")


def test_a_dicomdir_is_named_as_the_index_it_is(corpus, tmp_path):
    from pydicom.fileset import FileSet

    fileset = FileSet()
    fileset.add(corpus.dicom("film.dcm", pixels=STORED, PatientID="p1", StudyDate="20200101", StudyTime="120000",
                             StudyID="1", StudyInstanceUID="1.2.3.4", SeriesInstanceUID="1.2.3.4.5", SeriesNumber=1,
                             InstanceNumber=1))
    fileset.write(tmp_path / "disc")
    error = _error(tmp_path / "disc" / "DICOMDIR")
    assert isinstance(error, UnsupportedImageError)
    assert str(error) == (f"{tmp_path / 'disc' / 'DICOMDIR'}: a DICOMDIR (the index of a DICOM disc or export), not "
                          "an image: name its folder to predict the films in it")


def test_a_png_or_jpeg_named_dcm_is_read_by_its_signature(corpus, tmp_path):
    from PIL import Image

    pixels = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (16, 1))
    for suffix, kind in ((".dcm", "PNG"), (".dicom", "JPEG")):
        path = tmp_path / f"film{suffix}"
        Image.fromarray(pixels).save(path, format=kind, **({"quality": 100} if kind == "JPEG" else {}))
        image = load_image(path)
        assert image.metadata["format"] == kind
        np.testing.assert_allclose(image.pixels, pixels / 255, atol=0.02)


# ---- tags -------------------------------------------------------------------


def test_metadata_from_tags(corpus):
    path = corpus.dicom(PatientAge="045Y", ViewPosition="LL", Modality="CR")
    metadata = load_image(path).metadata
    assert (metadata["age"], metadata["view"], metadata["modality"], metadata["bits"]) == (
        45.0,
        "L",
        "CR",
        16,
    )
    assert metadata["format"] == "DICOM" and metadata["original_size"] == (2, 3)


def test_missing_tags_are_none(corpus):
    metadata = load_image(corpus.dicom(Modality="")).metadata
    assert [metadata[k] for k in ("modality", "view", "age", "patient_id_hash")] == [None] * 4


@pytest.mark.parametrize(
    "raw, years",
    [
        ("045Y", 45.0),
        ("006M", 0.5),
        ("026W", 26 * 7 / 365.25),
        ("010D", 10 / 365.25),
        ("45", 45.0),
        ("", None),
        (None, None),
        ("abc", None),
        ("045X", None),
    ],
)
def test_parse_age(raw, years):
    assert parse_age(raw) == pytest.approx(years) if years is not None else parse_age(raw) is None


@pytest.mark.parametrize(
    "raw, view",
    [
        ("PA", "PA"),
        ("AP", "AP"),
        ("LL", "L"),
        ("RL", "L"),
        ("LATERAL", "L"),
        (" pa ", "PA"),
        ("LLD", "LLD"),
        ("", None),
        (None, None),
    ],
)
def test_normalise_view(raw, view):
    assert normalise_view(raw) == view


@pytest.mark.parametrize(("meaning", "view"), [("lateral", "L"), ("right lateral", "L"), ("postero-anterior", "PA"),
                                               ("antero-posterior", "AP"), ("left lateral decubitus", "LLD"),
                                               ("dorsal decubitus", "L"), ("postero-anterior oblique", "OBLIQUE"),
                                               ("caudal", None)])
def test_without_view_position_the_coded_view_is_read(corpus, meaning, view):
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "399198007", "SCT", meaning
    path = corpus.dicom(pixels=STORED, ViewCodeSequence=[code])
    assert load_image(path).metadata["view"] == view
    stated = corpus.dicom("stated.dcm", pixels=STORED, ViewPosition="PA", ViewCodeSequence=[code])
    assert load_image(stated).metadata["view"] == "PA"  # ViewPosition, when there, is what counts


def test_a_malformed_view_code_sequence_leaves_the_view_unknown(corpus):
    from pydicom.dataelem import DataElement

    path = corpus.dicom(pixels=STORED)
    ds = pydicom.dcmread(path)
    ds.add(DataElement(0x00540220, "LO", "lateral"))  # the sequence's tag holding text
    ds.save_as(path)
    image = load_image(path)
    assert image.metadata["view"] is None
    np.testing.assert_allclose(image.pixels, STORED / 4095, rtol=1e-6)


# ---- patient id: only a keyed hash ------------------------------------------


def test_patient_id_is_only_kept_as_a_keyed_hash(corpus):
    secret = corpus.SECRET_PATIENT_ID
    image = load_image(corpus.dicom(PatientID=secret), patient_id_key=b"site-key")
    digest = image.metadata["patient_id_hash"]
    assert len(digest) == 16 and int(digest, 16) >= 0
    assert digest == hash_patient_id(secret, key=b"site-key") == hash_patient_id(secret, "site-key")
    assert secret not in repr(image) and secret not in str(image.metadata)


def test_same_key_same_hash_other_key_other_hash(corpus):
    secret = corpus.SECRET_PATIENT_ID
    a = corpus.dicom("a.dcm", PatientID=secret)
    b = corpus.dicom("b.dcm", PatientID=secret)
    hash_of = lambda path, key=None: load_image(path, patient_id_key=key).metadata["patient_id_hash"]
    assert hash_of(a, "k1") == hash_of(b, "k1")
    assert hash_of(a, "k1") != hash_of(a, "k2")
    assert hash_of(a) == hash_of(b)  # the per-process default key is made once
    assert hash_of(a) not in (hash_of(a, "k1"), hash_of(a, "k2"))
    other = corpus.dicom("c.dcm", PatientID="SOMEONE-ELSE")
    assert hash_of(other, "k1") != hash_of(a, "k1")


@pytest.mark.parametrize("key", [b"", "", 123])
def test_invalid_patient_id_key(corpus, key):
    with pytest.raises(ConfigError):
        load_image(corpus.dicom(PatientID="X"), patient_id_key=key)


@pytest.mark.parametrize(
    "kwargs, error_type",
    [
        ({"pixel_data": False}, UnsupportedImageError),
        ({"NumberOfFrames": 2}, UnsupportedImageError),
        ({"photometric": "PALETTE COLOR"}, UnsupportedImageError),
        ({"transfer_syntax": RLELossless}, ImageDecodeError),
    ],
)
def test_patient_id_never_appears_in_errors_or_warnings(corpus, recwarn, kwargs, error_type):
    secret = corpus.SECRET_PATIENT_ID
    error = _error(corpus.dicom(PatientID=secret, **kwargs))
    assert type(error) is error_type
    report = "".join(traceback.format_exception(error))
    assert secret not in report
    assert all(secret not in str(w.message) for w in recwarn)


def test_redaction_of_an_id_that_a_decoder_echoes():
    error = _redacted(ValueError("bad value 'SECRET-1' in element"), b"SECRET-1 ", "scan.dcm")
    assert type(error) is ImageDecodeError
    assert (
        str(error) == "scan.dcm: truncated or corrupt DICOM (ValueError: bad value '<patient id>' in element)"
    )
    try:
        try:
            raise KeyError("SECRET-1")
        except KeyError as inner:
            raise RuntimeError("decoder failed") from inner
    except RuntimeError as outer:
        chained = outer
    error = _redacted(chained, b"SECRET-1", "scan.dcm")
    assert type(error) is ImageDecodeError and "SECRET-1" not in "".join(traceback.format_exception(error))
    unrelated = ValueError("something else")
    assert _redacted(unrelated, b"SECRET-1", "scan.dcm") is unrelated


# ---- refusals ---------------------------------------------------------------


def test_dicom_without_pixel_data(corpus):
    path = corpus.dicom(pixel_data=False)
    error = _error(path)
    assert type(error) is UnsupportedImageError
    assert str(error) == f"{path}: DICOM without pixel data (no PixelData element)"


def test_float_pixel_data_is_named_as_unsupported(corpus):
    floats = np.array([[0.0, 0.5], [1.0, 0.25]], "<f4").tobytes()
    path = corpus.dicom(pixel_data=False, FloatPixelData=floats, BitsAllocated=32)
    error = _error(path)
    assert type(error) is UnsupportedImageError
    assert "floating-point pixel data (FloatPixelData) is not supported" in str(error)


def test_a_lowercase_modality_is_read_as_the_standard_upper_case_code(corpus):
    assert load_image(corpus.dicom(Modality="cr")).metadata["modality"] == "CR"


def test_multi_frame_dicom_is_refused(corpus):
    path = corpus.dicom(pixels=np.zeros((2, 3)), NumberOfFrames=3)
    error = _error(path)
    assert type(error) is UnsupportedImageError
    assert str(error) == f"{path}: multi-frame DICOM (3 frames); only single 2-D images are supported"


def test_pixel_guard_runs_before_decoding(corpus, monkeypatch):
    def no_decoding(self, *args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(Dataset, "convert_pixel_data", no_decoding)
    path = corpus.dicom(pixels=STORED)
    error = _error(path, max_pixels=5)
    assert type(error) is UnsupportedImageError
    assert str(error) == f"{path}: image of 3x2 pixels exceeds the limit of 5 pixels"


def test_compressed_without_a_decoder_names_what_to_install(corpus):
    path = corpus.dicom(transfer_syntax=JPEGLSLossless)
    error = _error(path)
    if get_decoder(JPEGLSLossless).is_available:  # a plugin is installed: the fake stream fails
        assert type(error) is ImageDecodeError and str(error).startswith(f"{path}: ")
    else:
        assert type(error) is MissingDependencyError
        assert str(error).startswith(
            f"{path}: pixel data is compressed as JPEG-LS Lossless Image Compression and no "
            "installed decoder handles it; install one of: "
        )
        assert "pylibjpeg" in str(error) and "gdcm" in str(error)


def test_undecodable_compressed_stream_is_a_decode_error(corpus):
    from pydicom.uid import JPEGBaseline8Bit

    path = corpus.dicom(transfer_syntax=JPEGBaseline8Bit)
    error = _error(path)
    assert type(error) is ImageDecodeError
    assert str(error).startswith(f"{path}: ")
    assert "JPEG Baseline" in str(error) or "corrupt" in str(error)


def test_unknown_transfer_syntax(corpus):
    path = corpus.dicom(transfer_syntax="1.2.3.4.5")
    error = _error(path)
    assert type(error) is UnsupportedImageError
    assert str(error) == f"{path}: unknown transfer syntax '1.2.3.4.5'"


def test_truncated_pixel_data(corpus):
    source = corpus.dicom("full.dcm", pixels=np.arange(4096).reshape(64, 64))
    path = corpus.truncated(source, "cut.dcm", size=len(source.read_bytes()) - 100)
    error = _error(path)
    assert type(error) is ImageDecodeError
    assert str(error).startswith(f"{path}: truncated or corrupt image (ValueError: The number of bytes")


def test_garbage_after_the_dicm_marker(corpus):
    path = corpus.raw("garbage.dcm", b"\0" * 128 + b"DICM" + bytes(range(256)) * 3)
    error = _error(path)
    assert type(error) is ImageDecodeError
    assert str(error) == f"{path}: truncated or corrupt DICOM (no image elements found)"


def test_text_named_dcm(corpus):
    path = corpus.raw("notes.dcm", b"not a dicom file at all\n")
    error = _error(path)
    assert type(error) is ImageDecodeError
    assert str(error) == f"{path}: not a recognised image format (no DICOM preamble and no image elements)"


def test_missing_pydicom_names_the_extra(corpus, monkeypatch):
    path = corpus.dicom()
    monkeypatch.setitem(sys.modules, "pydicom", None)
    error = _error(path)
    assert type(error) is MissingDependencyError
    assert (
        str(error)
        == f'{path}: reading DICOM needs pydicom; install it with pip install "keras-covidcxr[dicom]"'
    )


def test_pydicom_2_is_named_as_too_old(corpus, monkeypatch):
    path = corpus.dicom()
    monkeypatch.setitem(sys.modules, "pydicom.pixels", None)  # as on pydicom 2.x
    monkeypatch.setattr(pydicom, "__version__", "2.4.4")
    error = _error(path)
    assert type(error) is MissingDependencyError
    assert str(error) == (f'{path}: reading DICOM needs pydicom 3.0 or later, found 2.4.4; upgrade it with '
                          'pip install --upgrade "pydicom>=3.0"')


def test_an_error_that_would_echo_the_id_is_redacted(corpus):
    path = corpus.dicom(photometric="MONOCHROME3", PatientID="MONOCHROME3")
    error = _error(path)
    assert type(error) is UnsupportedImageError
    assert str(error) == f"{path}: photometric interpretation '<patient id>' is not supported"
    assert error.__cause__ is None and error.__context__ is None


def _rewrite(path, edit):
    """`path` read, edited by `edit(ds)` and saved again (an element written as some writers do)."""
    import pydicom

    ds = pydicom.dcmread(path)
    edit(ds)
    ds.save_as(path, enforce_file_format=True)
    return path


def test_values_of_signed_data_written_as_us_are_read_as_signed(corpus):
    # implicit VR cannot say SS: a VOI LUT's first input -2048 reads 63488, a padding value -32768 reads 32768
    lut = corpus.voi_lut_sequence(np.arange(4096), first_mapped=2**16 - 2048)
    image = load_image(corpus.dicom("lut.dcm", pixels=STORED, VOILUTSequence=lut, RescaleSlope=1,
                                    RescaleIntercept=-2048))
    np.testing.assert_allclose(image.pixels, STORED / 4095, atol=1e-6)  # was black: every input below 63488

    stored = np.array([[-32768, -32768, 0], [500, 1000, 2000]])

    def padding_as_us(ds):
        ds.PixelPaddingValue = 32768
        ds["PixelPaddingValue"].VR = "US"

    path = _rewrite(corpus.dicom("pad.dcm", pixels=stored, bits_stored=16, signed=True), padding_as_us)
    np.testing.assert_allclose(load_image(path).pixels, [[0, 0, 0], [0.25, 0.5, 1]], atol=1e-6)


def test_unreadable_numbers_in_window_and_rescale_elements(corpus):
    def raw(tag, text):
        def edit(ds):
            from pydicom.dataelem import RawDataElement

            ds[tag] = RawDataElement(tag, "DS", len(text), text.encode(), 0, False, True)
        return edit

    for text in ("2047,5", "N/A\\2047.5"):  # a window that is not one: the film's own range, as a degenerate window
        path = _rewrite(corpus.dicom("w.dcm", pixels=STORED, WindowWidth=4096), raw(0x00281050, text))
        image = load_image(path)
        assert image.metadata["voi"] == "min-max"
        np.testing.assert_allclose(image.pixels, STORED / 4095, atol=1e-6)
    path = _rewrite(corpus.dicom("s.dcm", pixels=STORED, RescaleIntercept=0), raw(0x00281053, "1,0"))
    with pytest.raises(UnsupportedImageError, match=r"s.dcm: RescaleSlope '1,0' is not a number"):
        load_image(path)


def test_pixel_data_not_aligned_to_bit_0_is_refused(corpus):
    with pytest.raises(UnsupportedImageError, match="HighBit 15 with BitsStored 12: pixel data not aligned to bit 0"):
        load_image(corpus.dicom(pixels=STORED, HighBit=15))

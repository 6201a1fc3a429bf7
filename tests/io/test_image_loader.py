"""load_image on plain image files: what loads, with which values, and every refusal."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from keras_covidcxr.errors import (
    ConfigError,
    CovidCXRError,
    ImageDecodeError,
    InputError,
    UnsupportedImageError,
)
from keras_covidcxr.io.image_loader import (
    DEFAULT_MAX_PIXELS,
    METADATA_KEYS,
    LoadedImage,
    load_image,
    load_pil_image,
)


def _luma(r, g, b):
    """Pillow's 8-bit 'L' conversion (ITU-R 601-2, rounded)."""
    return Image.new("RGB", (1, 1), (r, g, b)).convert("L").getpixel((0, 0)) / 255.0


def _error(path, **kwargs):
    with pytest.raises(CovidCXRError) as info:
        load_image(path, **kwargs)
    return info.value


# ---- images that load -------------------------------------------------------


def test_tiny_gray_png_loads_with_full_metadata(corpus):
    path = corpus.gray_png(shape=(8, 8), value=51)
    image = load_image(path)
    assert isinstance(image, LoadedImage)
    assert image.pixels.dtype == np.float32 and image.pixels.shape == (8, 8)
    np.testing.assert_array_equal(image.pixels, np.float32(51 / 255))
    assert list(image.metadata) == list(METADATA_KEYS)
    assert image.metadata == {
        "path": str(path),
        "format": "PNG",
        "original_size": (8, 8),
        "bits": 8,
        "modality": None,
        "view": None,
        "age": None,
        "patient_id_hash": None,
        "photometric": None,
        "voi": None,
    }


def test_str_path_is_accepted(corpus):
    assert load_image(str(corpus.gray_png())).metadata["format"] == "PNG"


def test_16_bit_png_keeps_16_bit_precision(corpus):
    image = load_image(corpus.png16())
    np.testing.assert_array_equal(image.pixels, np.array([[0, 32768], [65535, 1000]], np.float32) / 65535)
    assert image.pixels[1, 0] == 1.0 and abs(image.pixels[0, 1] - 0.5) < 1e-4
    assert image.metadata["bits"] == 16


def test_16_bit_tiff(corpus):
    image = load_image(corpus.tiff16())
    np.testing.assert_array_equal(image.pixels, np.array([[0, 65535, 32768]], np.float32) / 65535)
    assert (image.metadata["format"], image.metadata["bits"]) == ("TIFF", 16)


def test_12_bit_data_in_a_16_bit_png_is_scaled_by_4095(tmp_path):
    # Detector data of 10-14 bits is often stored in 16-bit PNGs; by 65535 the film would be nearly black.
    film = np.linspace(0, 255, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(film).save(tmp_path / "film8.png")
    for bits in (10, 12, 14):
        Image.fromarray(film * (2 ** (bits - 8))).save(tmp_path / f"film{bits}.png")
        image = load_image(tmp_path / f"film{bits}.png")
        assert image.metadata["bits"] == bits
        np.testing.assert_allclose(image.pixels, load_image(tmp_path / "film8.png").pixels, atol=1.0 / 255)
    dark = tmp_path / "dark.png"
    Image.fromarray(np.full((4, 4), 100, np.uint16)).save(dark)
    assert load_image(dark).metadata["bits"] == 8  # never stretched beyond 8 bits


def test_one_bright_pixel_does_not_change_how_a_12_bit_film_is_read(tmp_path):
    # by the brightest value's own bit count, 2047 read as 11-bit and 2048 as 12-bit: the film's brightness halved
    film = (np.linspace(0, 255, 64 * 64).reshape(64, 64) * 2047 / 255).astype(np.uint16)
    Image.fromarray(film).save(tmp_path / "max2047.png")
    film[0, 0] = 2048
    Image.fromarray(film).save(tmp_path / "max2048.png")
    darker, brighter = load_image(tmp_path / "max2047.png"), load_image(tmp_path / "max2048.png")
    assert darker.metadata["bits"] == brighter.metadata["bits"] == 12
    np.testing.assert_array_equal(darker.pixels[1:], brighter.pixels[1:])


def test_a_burned_in_white_label_does_not_set_a_12_bit_film_s_scale(tmp_path):
    film = (np.linspace(0, 255, 512 * 512).reshape(512, 512) * 4095 / 255).astype(np.uint16)
    Image.fromarray(film).save(tmp_path / "film.png")
    film[2:12, 2:37] = 65535  # a 10 x 35 px marker at full 16-bit white (0.13% of the film)
    Image.fromarray(film).save(tmp_path / "marked.png")
    plain, marked = load_image(tmp_path / "film.png"), load_image(tmp_path / "marked.png")
    assert plain.metadata["bits"] == marked.metadata["bits"] == 12  # not 16: the film is not darkened 16 times
    np.testing.assert_array_equal(marked.pixels[20:], plain.pixels[20:])
    assert marked.pixels[5, 5] == 1.0  # the label clipped to white


def _png_16_bit(path, channels, color_type):
    """A 16-bit PNG of (height, width, samples) uint16 `channels`, written by hand: Pillow writes none in colour."""
    import struct
    import zlib

    height, width = channels.shape[:2]
    rows = b"".join(b"\0" + channels[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
                     + chunk(b"IEND", b""))
    return path


def test_a_16_bit_colour_png_of_12_bit_values_is_refused_not_read_nearly_black(tmp_path):
    gray = np.linspace(0, 1, 32 * 32).reshape(32, 32)
    twelve, full = (gray * 4095).astype(np.uint16), (gray * 65535).astype(np.uint16)
    for name, color_type, samples in (("rgb", 2, 3), ("gray_alpha", 4, 2), ("rgba", 6, 4)):
        opaque = [np.full_like(twelve, 65535)] * (samples % 2 == 0)
        path = _png_16_bit(tmp_path / f"{name}12.png", np.dstack([twelve] * (samples - len(opaque)) + opaque), color_type)
        with pytest.raises(UnsupportedImageError, match=f"{name}12.png: a 16-bit colour or gray\\+alpha PNG whose values"):
            load_image(path)
    # filling all 16 bits, Pillow's high byte is the film at 8-bit precision
    image = load_image(_png_16_bit(tmp_path / "rgb16.png", np.dstack([full] * 3), 2))
    np.testing.assert_allclose(image.pixels, gray, atol=1 / 255)


def test_a_name_holding_a_nul_byte_is_an_input_error():
    with pytest.raises(InputError, match=r"^'film\\x00.png': not a file name: it holds a NUL byte"):
        load_image("film\0.png")


def test_32_bit_int_tiff_in_16_bit_range_scales_by_65535(corpus):
    image = load_image(corpus.int32_tiff())
    np.testing.assert_allclose(image.pixels, np.array([[0, 4095], [65535, 100]]) / 65535, rtol=1e-6)
    assert image.metadata["bits"] == 16


def test_32_bit_int_tiff_beyond_16_bits_is_min_max_scaled(corpus):
    image = load_image(corpus.int32_tiff(values=((-100, 0), (100, 100_000))))
    np.testing.assert_allclose(image.pixels, np.array([[0, 100], [200, 100_100]]) / 100_100, rtol=1e-6)
    assert image.metadata["bits"] == 32


def test_float_tiffs_holding_integer_levels_read_as_those_levels(corpus, tmp_path):
    levels = np.array([[0, 4095], [3000, 100]], np.float32)
    as_float = load_image(corpus.image("levels.tif", Image.fromarray(levels, mode="F")))
    as_int = load_image(corpus.int32_tiff(values=levels.astype(np.int32)))
    np.testing.assert_array_equal(as_float.pixels, as_int.pixels)  # 12-bit levels, scaled by 4095 both ways
    assert as_float.metadata["bits"] == 12
    eight_bit = np.array([[30, 200], [90, 120]], np.uint8)  # Image.convert("F") of an 8-bit film is not stretched
    loaded = load_image(corpus.image("eight.tif", Image.fromarray(eight_bit).convert("F")))
    np.testing.assert_allclose(loaded.pixels, eight_bit / 255, rtol=1e-6)
    measured = np.array([[0.5, 2.25], [1.0, 4.5]], np.float32)  # no integer levels: the film's own range
    np.testing.assert_allclose(load_image(corpus.image("measured.tif", Image.fromarray(measured, mode="F"))).pixels,
                               (measured - 0.5) / 4.0, rtol=1e-6)


def test_rgba_drops_alpha_but_keeps_the_rgb_of_transparent_pixels(corpus):
    image = load_image(corpus.rgba_png())
    np.testing.assert_allclose(image.pixels, [[_luma(255, 0, 0), 1.0]], rtol=1e-6)
    assert image.pixels[0, 0] > 0.25  # red, not black or white from the alpha


def test_palette_png_with_transparency(corpus):
    image = load_image(corpus.palette_png())
    np.testing.assert_allclose(image.pixels, [[0.0, _luma(0, 255, 0), 200 / 255]], rtol=1e-6)


def test_la_png_uses_the_luminance_band(corpus):
    np.testing.assert_allclose(load_image(corpus.la_png()).pixels, [[10 / 255, 250 / 255]], rtol=1e-6)


def test_cmyk_jpeg(corpus):
    image = load_image(corpus.cmyk_jpeg())
    assert image.metadata["format"] == "JPEG" and image.pixels.shape == (8, 16)
    assert image.pixels[:, :6].min() > 0.9  # no ink: white
    assert image.pixels[:, 10:].max() < 0.1  # full black ink


def test_exif_orientation_is_applied(corpus):
    image = load_image(corpus.exif_rotated_jpeg())
    assert image.pixels.shape == (40, 16)  # stored 16 high x 40 wide, rotated 90 degrees
    assert image.metadata["original_size"] == (40, 16)
    assert image.pixels[1:7, -7:-1].min() > 0.9  # the marker is now top-right
    assert image.pixels[1:7, 1:7].max() < 0.1
    assert image.pixels[-8:, :].max() < 0.1


@pytest.mark.parametrize("orientation", [3, 5, 6, 7, 8])
@pytest.mark.parametrize("compression", [None, "tiff_lzw"])
def test_a_tiffs_orientation_is_applied_once(tmp_path, orientation, compression):
    # Pillow 13 turns an uncompressed TIFF itself while loading; compressed ones it leaves to exif_transpose
    from PIL import Image, TiffImagePlugin

    upright = np.zeros((30, 50), np.uint8)
    upright[2:8, 2:8] = 255  # a marker top-left on a wide film
    upright[20:, 10:40] = np.arange(30, dtype=np.uint8)[None] * 8
    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[274] = orientation
    # stored so that applying `orientation` gives the upright film back
    inverse = {3: Image.Transpose.ROTATE_180, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90,
               7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}[orientation]
    stored = Image.fromarray(upright).transpose(inverse)
    path = tmp_path / "film.tif"
    stored.save(path, tiffinfo=tags, **({"compression": compression} if compression else {}))
    with Image.open(path) as check:  # the file says what the test means
        assert check.getexif().get(274) == orientation
    np.testing.assert_allclose(load_image(path).pixels, upright / 255, atol=1e-6)
    with Image.open(path) as opened:
        np.testing.assert_allclose(load_pil_image(opened).pixels, upright / 255, atol=1e-6)
    deep = tmp_path / "film16.tif"  # 16-bit too
    Image.fromarray(np.asarray(stored).astype(np.uint16) * 257).save(
        deep, tiffinfo=tags, **({"compression": compression} if compression else {}))
    np.testing.assert_allclose(load_image(deep).pixels, upright / 255, atol=1e-6)


def test_bmp(corpus):
    image = load_image(corpus.bmp())
    np.testing.assert_allclose(image.pixels, np.full((4, 5), 60 / 255), rtol=1e-6)
    assert (image.metadata["format"], image.metadata["bits"]) == ("BMP", 8)


def test_loaded_image_is_frozen_and_has_a_short_repr(corpus):
    image = load_image(corpus.gray_png(shape=(300, 300)))
    with pytest.raises(AttributeError):
        image.pixels = None
    assert len(repr(image)) < 400 and "(300, 300)" in repr(image)


# ---- refusals: the exact error for each broken input ------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "absent.png"
    error = _error(path)
    assert type(error) is ImageDecodeError and str(error) == f"{path}: no such file"


def test_directory(tmp_path):
    error = _error(tmp_path)
    assert type(error) is ImageDecodeError
    assert str(error) == f"{tmp_path}: is a directory, not an image file"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_is_refused_instead_of_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "chest.png"
    os.mkfifo(fifo)
    error = _error(fifo)
    assert type(error) is ImageDecodeError and str(error).startswith(f"{fifo}: not a regular file (a pipe")


def test_zero_byte_file(corpus):
    path = corpus.raw("empty.png", b"")
    error = _error(path)
    assert type(error) is ImageDecodeError and str(error) == f"{path}: empty file (0 bytes)"


def test_text_named_png(corpus):
    path = corpus.raw("notes.png", b"patient looked fine\n")
    error = _error(path)
    assert type(error) is ImageDecodeError
    assert str(error) == f"{path}: not a recognised image format"


@pytest.mark.parametrize("writer", ["truncated_png", "truncated_jpeg"])
def test_truncated_image_is_a_decode_error(corpus, writer):
    path = getattr(corpus, writer)()
    error = _error(path)
    assert type(error) is ImageDecodeError
    assert str(error).startswith(f"{path}: truncated or corrupt image (OSError: image file is truncated")
    assert isinstance(error.__cause__, OSError)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize(
    "size, reason",
    [
        (20, "OSError: Truncated File Read"),  # inside the IHDR chunk
        (40, "a PNG signature but an unreadable header"),  # the chunk after IHDR is cut
    ],
)
def test_png_cut_inside_its_header(corpus, size, reason):
    path = corpus.truncated(corpus.gray_png(), "header_cut.png", size=size)
    error = _error(path)
    assert type(error) is ImageDecodeError
    assert str(error) == f"{path}: truncated or corrupt image ({reason})"


def test_multipage_tiff_is_refused(corpus):
    path = corpus.multipage_tiff(pages=3)
    error = _error(path)
    assert type(error) is UnsupportedImageError
    assert str(error) == f"{path}: 3 frames or pages; only single 2-D images are supported"


def test_animated_gif_is_refused(corpus):
    path = corpus.animated_gif()
    error = _error(path)
    assert type(error) is UnsupportedImageError and "2 frames or pages" in str(error)


def test_header_claiming_a_huge_size_is_refused(corpus):
    path = corpus.huge_header_png(width=100_000, height=100_000)
    error = _error(path)
    assert type(error) is UnsupportedImageError
    # Our limit is named, not Pillow's (which refuses such headers before we see the size).
    assert str(error) == f"{path}: image too large (10000000000 pixels; the limit is {DEFAULT_MAX_PIXELS})"


def test_size_guard_runs_before_any_pixel_is_decoded(corpus, monkeypatch):
    def no_decoding(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    path = corpus.huge_header_png(width=9000, height=9000)  # under Pillow's own bomb limit
    error = _error(path)
    assert type(error) is UnsupportedImageError
    assert str(error) == f"{path}: image of 9000x9000 pixels exceeds the limit of 50000000 pixels"


def test_max_pixels_is_configurable(corpus):
    path = corpus.gray_png(shape=(8, 8))
    assert load_image(path, max_pixels=64).pixels.shape == (8, 8)
    error = _error(path, max_pixels=63)
    assert str(error) == f"{path}: image of 8x8 pixels exceeds the limit of 63 pixels"


@pytest.mark.parametrize("bad", [0, -1, 1.5, "big"])
def test_invalid_max_pixels(corpus, bad):
    with pytest.raises(ConfigError):
        load_image(corpus.gray_png(), max_pixels=bad)


def test_non_path_argument(corpus):
    with pytest.raises(ConfigError, match="str or Path"):
        load_image(corpus.gray_png().read_bytes())


def test_unsupported_pixel_mode(corpus):
    path = corpus.image("lab.tif", Image.new("LAB", (2, 2)))
    error = _error(path)
    assert type(error) is UnsupportedImageError
    assert str(error) == f"{path}: pixel mode 'LAB' is not supported"


def test_loader_imports_no_keras_backend():
    code = (
        "import sys, keras_covidcxr.io.image_loader\n"
        "bad = {'keras', 'tensorflow', 'jax', 'torch'} & set(sys.modules)\n"
        "assert not bad, bad\n"
        "assert 'pydicom' not in sys.modules  # imported only for DICOM files\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=_repo_root())


def _repo_root():
    import keras_covidcxr

    return str(Path(keras_covidcxr.__file__).parents[1])


def test_a_decoders_message_is_one_line_without_python_object_addresses(corpus, monkeypatch):
    import io

    import keras_covidcxr.io.image_loader as loader

    def fails(path, name, max_pixels, head):
        raise ValueError(f"cannot decode\n  the stream {io.BytesIO(b'')!r}\n")

    monkeypatch.setattr(loader, "_read_with_pillow", fails)
    path = corpus.gray_png()
    assert str(_error(path)) == f"{path}: truncated or corrupt image (ValueError: cannot decode the stream)"


@pytest.mark.parametrize("dtype,compression", [("uint16", None), ("uint16", "tiff_lzw"), ("uint8", "tiff_lzw"),
                                               ("float32", None)])
def test_a_white_is_zero_tiff_is_not_read_as_a_negative(corpus, dtype, compression):
    # (uncompressed 8-bit data Pillow inverts itself, reading and writing: it was read right before)
    from PIL import TiffImagePlugin

    film = np.linspace(0, 1, 64 * 48).reshape(64, 48)
    top = {"uint8": 255, "uint16": 4095, "float32": 1}[dtype]
    stored = ((1 - film) * top).round().astype(dtype) if top > 1 else (1 - film).astype(dtype)
    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[262] = 0  # PhotometricInterpretation: MinIsWhite
    path = corpus.image(f"white_is_zero_{dtype}_{compression}.tif", Image.fromarray(stored), tiffinfo=tags,
                        **({"compression": compression} if compression else {}))
    np.testing.assert_allclose(load_image(path).pixels, film, atol=1 / top if top > 1 else 1e-6)


@pytest.mark.parametrize("frame,kind", [(b"\xff\xc1\x00\x0b\x0c", "a 12-bit JPEG"),
                                        (b"\xff\xc3\x00\x0b\x08", "a lossless JPEG"), (None, "a JPEG 2000 file")])
def test_images_pillow_cannot_decode_are_named_not_called_corrupt(corpus, frame, kind):
    if frame is None:
        data = b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00" * 40
    else:
        app0 = b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
        data = b"\xff\xd8" + app0 + frame + b"\x00\x10\x00\x10\x01\x01\x11\x00" + b"\xff\xd9"
    with pytest.raises(UnsupportedImageError, match=f"film.img: {kind}, which is not read here: convert it to a"):
        load_image(corpus.raw("film.img", data))

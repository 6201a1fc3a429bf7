import numpy as np
import pytest
from PIL import Image

from keras_covidcxr import InputError
from keras_covidcxr.io.array_input import pixels_from_array
from keras_covidcxr.io.atomic import atomic_directory, atomic_write
from keras_covidcxr.io.overlays import heatmap_overlay, mask_overlay, save_overlay_png


def test_arrays_of_every_usual_type():
    assert pixels_from_array(np.array([[0, 65535]], np.uint16)).tolist() == [[0.0, 1.0]]
    assert pixels_from_array(np.array([[0, 4095]], np.uint16)).tolist() == [[0.0, 1.0]]  # 12-bit data, as files
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., :3] = 255
    assert np.allclose(pixels_from_array(rgba), 1.0)  # alpha dropped
    assert pixels_from_array(np.zeros((3, 3, 1), "float32")).shape == (3, 3)
    gray_alpha = np.dstack([np.full((2, 2), 51, np.uint8), np.zeros((2, 2), np.uint8)])
    assert pixels_from_array(gray_alpha).max() == pytest.approx(0.2)  # alpha dropped, as a file's
    for bad in (np.zeros((2, 2, 5)), np.zeros((2, 0)), np.full((2, 2), 2.0), np.zeros((2, 2), np.int64), np.zeros(5)):
        with pytest.raises(InputError):
            pixels_from_array(bad, "x")


def test_atomic_write_leaves_nothing_behind_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target, "w") as f:
        f.write("half")
        raise RuntimeError("killed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    with pytest.raises(FileExistsError), atomic_write(target, "w", overwrite=False):
        pass


def test_atomic_directory_refuses_unless_allowed(tmp_path):
    folder = tmp_path / "d"
    with atomic_directory(folder) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(FileExistsError), atomic_directory(folder):
        pass
    with atomic_directory(folder, replace_if=lambda p: True) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in folder.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_overlays(tmp_path):
    image = np.linspace(0, 1, 64 * 48, dtype="float32").reshape(64, 48)
    mask = np.zeros((64, 48), bool)
    mask[10:30, 5:20] = True
    rgb = mask_overlay(image, mask)
    assert rgb.shape == (64, 48, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0, 0] == rgb[0, 0, 2] and rgb[15, 10, 0] != rgb[15, 10, 2]
    heat = heatmap_overlay(image, np.ones((64, 48), "float32"))
    path = save_overlay_png(tmp_path / "x.png", heat)
    with Image.open(path) as written:
        assert written.size == (48, 64)
    save_overlay_png(path, rgb)  # our own overlay may be replaced
    (tmp_path / "mine.png").write_bytes(b"user data")
    with pytest.raises(FileExistsError):
        save_overlay_png(tmp_path / "mine.png", rgb)

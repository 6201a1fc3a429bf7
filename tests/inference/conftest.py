"""Fixtures for folder prediction: the CLI running the shared loaded preset, and a mixed folder."""

import numpy as np
import pytest
from PIL import Image


def _write_png(path, seed=0, size=(96, 80)):
    """A small chest-like gray PNG whose bytes depend on `seed`."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : size[0], 0 : size[1]]
    body = np.exp(
        -(((xx - size[1] / 2) / (0.4 * size[1])) ** 2 + ((yy - size[0] / 2) / (0.5 * size[0])) ** 2)
    )
    image = np.clip(0.8 * body + 0.1 * rng.random(size), 0, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((image * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="session")
def write_png():
    """`write_png(path, seed=0)`: a small chest-like gray PNG whose bytes depend on `seed`."""
    return _write_png


@pytest.fixture
def mixed_folder(tmp_path):
    """Good and broken files: (folder, {absolute path: True if it should predict, False if it fails})."""
    folder = tmp_path / "scans"
    good = [
        _write_png(folder / "good1.png", 1),
        _write_png(folder / "good2.png", 2),
        _write_png(folder / "sub" / "good3.png", 3),
    ]
    truncated = folder / "truncated.png"
    truncated.write_bytes(_write_png(tmp_path / "whole.png", 4).read_bytes()[:200])
    empty = folder / "empty.png"
    empty.write_bytes(b"")
    text = folder / "sub" / "text.png"
    text.write_text("this is not an image\n")
    _write_png(folder / ".hidden.png", 5)  # hidden: ignored
    _write_png(folder / ".cache" / "thumb.png", 6)  # in a hidden folder: ignored
    (folder / "notes.txt").write_text("not an image suffix: ignored\n")
    expected = {str(path.absolute()): True for path in good}
    expected.update({str(path.absolute()): False for path in (truncated, empty, text)})
    return folder, expected

"""Helpers for the data tests: tiny synthetic chest-like PNGs and manifests written to tmp folders."""

import numpy as np
import pytest
from PIL import Image

from keras_covidcxr.data import Manifest, ManifestRow


def _chest_like(seed, height=288, width=272):
    """A uint8 gray image with smooth random structure: distinct seeds give unrelated pictures."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((6, 6)).astype(np.float32)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC))
    yy, xx = np.mgrid[0:height, 0:width]
    body = np.exp(-(((xx - width / 2) / (0.45 * width)) ** 2 + ((yy - height / 2) / (0.55 * height)) ** 2))
    image = 0.35 * body + 0.6 * (smooth - smooth.min()) / (np.ptp(smooth) + 1e-6)
    return np.clip(image * 255, 0, 255).astype(np.uint8)


def _write_png(path, pixels):
    """Save a uint8 gray array as an 8-bit grayscale PNG (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(pixels, np.uint8)).save(path)
    return path


@pytest.fixture
def chest_like():
    """`chest_like(seed, height=288, width=272)` -> uint8 image; distinct seeds, unrelated pictures."""
    return _chest_like


@pytest.fixture
def write_png():
    """`write_png(path, pixels)` -> path of an 8-bit grayscale PNG."""
    return _write_png


@pytest.fixture
def clean_manifest(tmp_path):
    """A leak-free manifest: 12 patients, 2 films each, one split per patient, all images distinct."""
    rows = []
    splits = ["train"] * 8 + ["val"] * 2 + ["test"] * 2
    for patient, split in enumerate(splits):
        for film in range(2):
            name = f"images/p{patient}_{film}.png"
            _write_png(tmp_path / name, _chest_like(seed=100 * patient + film))
            rows.append(
                ManifestRow(
                    name,
                    "cls",
                    f"p{patient}",
                    label=("covid", "normal")[patient % 2],
                    view="PA",
                    age=40.0,
                    split=split,
                )
            )
    return Manifest(rows, root=tmp_path)

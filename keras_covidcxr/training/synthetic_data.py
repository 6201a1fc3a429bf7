"""Tiny synthetic chest X-ray datasets for smoke runs and tests (no real data needed).

Each image is a bright body with two dark lung fields (the ground-truth mask) and a class sign
inside the lungs: "covid" bilateral peripheral patchy opacities, "pneumonia" one dense lobar
consolidation, "normal" none. Positions, sizes and noise vary per image, so a classifier must
look inside the lungs to tell the classes apart. Not a substitute for real data.
"""

from pathlib import Path

import numpy as np
from PIL import Image

from keras_covidcxr.data.manifest import Manifest, ManifestRow, write_manifest
from keras_covidcxr.errors import ConfigError

LABELS = ("covid", "normal", "pneumonia")


def synthetic_chest(label, size=64, rng=None):
    """(image float32 (size, size) in [0, 1], lung mask bool) of one synthetic film."""
    rng = rng or np.random.default_rng()
    yy, xx = np.mgrid[0:size, 0:size] / size
    body = np.exp(-(((xx - 0.5) / 0.42) ** 2 + ((yy - 0.5) / 0.55) ** 2) ** 2)
    image = 0.25 + 0.6 * body
    mask = np.zeros((size, size), bool)
    lungs = []
    for side in (-1, 1):
        cx = 0.5 + side * rng.uniform(0.16, 0.2)
        cy, rx, ry = rng.uniform(0.42, 0.48), rng.uniform(0.1, 0.13), rng.uniform(0.2, 0.25)
        lung = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
        mask |= lung
        lungs.append((cx, cy, rx, ry))
    image = np.where(mask, image - 0.45, image)
    if label == "covid":  # patchy peripheral opacities, both lungs, lower zones
        for cx, cy, rx, ry in lungs:
            for _ in range(4):
                bx = cx + rng.uniform(-0.7, 0.7) * rx
                by = cy + rng.uniform(0.0, 0.7) * ry
                r = rng.uniform(0.025, 0.045)
                image += 0.35 * np.exp(-(((xx - bx) ** 2 + (yy - by) ** 2) / r**2)) * mask
    elif label == "pneumonia":  # one dense lobar consolidation
        cx, cy, rx, ry = lungs[rng.integers(2)]
        consolidation = ((xx - cx) / (0.8 * rx)) ** 2 + ((yy - cy - 0.35 * ry) / (0.45 * ry)) ** 2 <= 1.0
        image = np.where(consolidation & mask, image + 0.4, image)
    elif label != "normal":
        raise ConfigError(f"unknown synthetic label {label!r}")
    image = image + rng.normal(0, 0.03, image.shape)
    return np.clip(image, 0, 1).astype("float32"), mask


def write_synthetic_dataset(folder, patients_per_class=10, size=64, labels=LABELS, seg=True, seed=0,
                            fractions=(0.6, 0.2, 0.2)):
    """Write PNG images (+ lung masks) and a split manifest.csv under `folder`; return its path.

    Every patient has one film: a cls row and, with `seg`, a seg row with its mask. Patients of
    each class are split train/val/test by `fractions`, so every split holds every class.

    Example:
        >>> import tempfile
        >>> from keras_covidcxr.data import read_manifest
        >>> path = write_synthetic_dataset(tempfile.mkdtemp(), patients_per_class=5, size=32)
        >>> sorted(read_manifest(path).counts("task"))
        [('cls',), ('seg',)]
    """
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(exist_ok=True)
    rng = np.random.default_rng(seed)
    bounds = np.cumsum(fractions)
    rows = []
    for label in labels:
        for i in range(patients_per_class):
            where = (i + 0.5) / patients_per_class
            split = "train" if where < bounds[0] else "val" if where < bounds[1] else "test"
            image, mask = synthetic_chest(label, size, rng)
            name = f"{label}_{i:03d}.png"
            Image.fromarray((image * 255).round().astype("uint8")).save(folder / "images" / name)
            Image.fromarray(mask.astype("uint8") * 255).save(folder / "masks" / name)
            patient = f"synthetic:{label}:{i}"
            common = {"patient_id": patient, "view": "PA", "source": "synthetic", "split": split}
            rows.append(ManifestRow(f"images/{name}", "cls", label=label, **common))
            if seg:
                rows.append(ManifestRow(f"images/{name}", "seg", mask_path=f"masks/{name}", **common))
    return write_manifest(Manifest(rows, root=folder), folder / "manifest.csv")

"""Lung-mask and Grad-CAM overlays written as PNG files, never over a user's file."""

from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from keras_covidcxr.errors import OutputExistsError
from keras_covidcxr.io.atomic import atomic_write

OVERLAY_TAG = "keras-covidcxr overlay"


def mask_overlay(image, mask, color=(0, 200, 255), alpha=0.35):
    """RGB uint8 picture of a gray [0, 1] image with the lung mask tinted."""
    rgb = np.repeat(np.asarray(image, "float32")[..., None], 3, axis=-1)
    tint = np.asarray(color, "float32") / 255.0
    rgb = np.where(mask[..., None], (1 - alpha) * rgb + alpha * tint, rgb)
    return (np.clip(rgb, 0, 1) * 255).round().astype("uint8")


def heatmap_overlay(image, heatmap, alpha=0.4):
    """RGB uint8 picture of a gray [0, 1] image under a jet-coloured heatmap in [0, 1]."""
    from matplotlib import colormaps

    colors = colormaps["jet"](np.clip(heatmap, 0, 1))[..., :3]
    rgb = np.repeat(np.asarray(image, "float32")[..., None], 3, axis=-1)
    weight = alpha * np.asarray(heatmap, "float32")[..., None]
    return (np.clip((1 - weight) * rgb + weight * colors, 0, 1) * 255).round().astype("uint8")


def save_overlay_png(path, rgb):
    """Write an overlay atomically; an existing file is replaced only if it is one of ours."""
    path = Path(path)
    if path.exists() and not _is_our_overlay(path):
        raise OutputExistsError(f"{path}: exists and is not a keras-covidcxr overlay; not overwriting it")
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", OVERLAY_TAG)
    with atomic_write(path, "wb") as f:
        Image.fromarray(rgb, mode="RGB").save(f, format="PNG", pnginfo=info)
    return path


def save_overlays(result, folder, stem):
    """Write `<stem>_mask.png` (and `<stem>_gradcam.png` when the result has a heatmap).

    Example:
        >>> result = pipeline.predict(["chest.png"], explain=True)[0]  # doctest: +SKIP
        >>> save_overlays(result, "overlays", "chest")  # doctest: +SKIP
    """
    folder = Path(folder)
    paths = [save_overlay_png(folder / f"{stem}_mask.png", mask_overlay(result.image, result.mask))]
    if result.heatmap is not None:
        paths.append(
            save_overlay_png(folder / f"{stem}_gradcam.png", heatmap_overlay(result.image, result.heatmap))
        )
    return paths


def _is_our_overlay(path):
    try:
        with Image.open(path) as image:
            return image.info.get("Software") == OVERLAY_TAG
    except OSError:
        return False

"""Lung-mask and Grad-CAM overlays written as PNG files, never over a user's file.

Each overlay is the film (aspect kept, see `panel_size`) with the lung mask's edge
drawn on it and a caption saying what it shows; the Grad-CAM overlay adds a colour
bar. Captions come from `overlay_captions`, the layout from `overlay_figure`.
"""

import os
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin
from scipy import ndimage

from keras_covidcxr.errors import CovidCXRError, OutputExistsError
from keras_covidcxr.io.atomic import atomic_write
from keras_covidcxr.io.overlay_captions import colorbar_label, gradcam_caption, mask_caption, printable_text
from keras_covidcxr.io.overlay_figure import panel_size, render_overlay
from keras_covidcxr.io.overlay_files import OVERLAY_TAG, fitting_stem, is_overlay_file
from keras_covidcxr.preprocessing.resize import resize_image
from keras_covidcxr.presets.checksums import sha256_of_file

HEATMAP_COLORMAP = "jet"
FILM_PATH_KEY, FILM_SHA256_KEY = "Source", "Source-SHA256"  # PNG texts: the film an overlay shows
EDGE_COLOR = (255, 0, 255)  # magenta: in neither the gray film nor the jet colour map


def mask_overlay(image, mask, color=(0, 200, 255), alpha=0.35):
    """RGB uint8 picture of a gray [0, 1] image with the lung mask tinted."""
    rgb = np.repeat(np.asarray(image, "float32")[..., None], 3, axis=-1)
    tint = np.asarray(color, "float32") / 255.0
    rgb = np.where(mask[..., None], (1 - alpha) * rgb + alpha * tint, rgb)
    return (np.clip(rgb, 0, 1) * 255).round().astype("uint8")


def heatmap_overlay(image, heatmap, alpha=0.4):
    """RGB uint8 picture of a gray [0, 1] image under a jet-coloured heatmap in [0, 1]."""
    from matplotlib import colormaps

    colors = colormaps[HEATMAP_COLORMAP](np.clip(heatmap, 0, 1))[..., :3]
    rgb = np.repeat(np.asarray(image, "float32")[..., None], 3, axis=-1)
    weight = alpha * np.asarray(heatmap, "float32")[..., None]
    return (np.clip((1 - weight) * rgb + weight * colors, 0, 1) * 255).round().astype("uint8")


def mask_edge(mask, width=2):
    """Boolean edge of a mask: its pixels within `width` of the outside (the image border is not outside).

    Example:
        >>> mask = np.zeros((6, 6), bool); mask[1:5, 1:5] = True
        >>> mask_edge(mask, 1).sum(), mask_edge(mask, 1)[2, 2]
        (np.int64(12), np.False_)
    """
    inner = ndimage.binary_erosion(mask, iterations=width, border_value=1)
    return mask & ~inner


def film_overlays(result):
    """(mask picture, Grad-CAM picture or None): RGB uint8 overlays with captions, at `panel_size`."""
    size = panel_size(result.image.shape)
    image = resize_image(result.image, size)
    mask = resize_image(np.asarray(result.mask, "float32"), size) >= 0.5
    edge = mask_edge(mask, width=max(2, round(max(size) / 400)))
    tinted = mask_overlay(image, mask)
    tinted[edge] = EDGE_COLOR
    pictures = [render_overlay(tinted, mask_caption(result))]
    if result.heatmap is None:
        return pictures[0], None
    heat = heatmap_overlay(image, np.clip(resize_image(result.heatmap, size), 0, 1))
    heat[edge] = EDGE_COLOR
    label = colorbar_label(result)
    return pictures[0], render_overlay(heat, gradcam_caption(result), label, HEATMAP_COLORMAP)


def save_overlay_png(path, rgb, film=None):
    """Write an overlay atomically. An existing file is replaced only if it is one of ours, and, with `film`
    ({"path", "sha256"} of the film, recorded in the PNG), only if it shows the same film (the same content,
    by whatever path): the overlays of another film that happened to have the same name are kept."""
    path = Path(path)
    if path.exists():
        if not is_overlay_file(path):
            raise OutputExistsError(f"{path}: exists and is not a keras-covidcxr overlay; not overwriting it")
        shown = overlay_film(path)
        if film is not None and shown.get("sha256") not in (None, film["sha256"]):
            raise OutputExistsError(f"{path}: exists and shows another film ({shown.get('path')}); not overwriting "
                                    "it: choose another overlays folder")
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", OVERLAY_TAG)
    if film is not None:
        info.add_itxt(FILM_PATH_KEY, film["path"])
        info.add_text(FILM_SHA256_KEY, film["sha256"])
    with atomic_write(path, "wb") as f:
        Image.fromarray(rgb, mode="RGB").save(f, format="PNG", pnginfo=info)
    return path


def overlay_film(path):
    """{"path", "sha256"} of the film an overlay PNG records (None where it records none)."""
    with Image.open(path) as image:
        return {"path": image.info.get(FILM_PATH_KEY), "sha256": image.info.get(FILM_SHA256_KEY)}


def save_overlays(result, folder, stem, film_sha256=None):
    """Write `<stem>_mask.png` (and `<stem>_gradcam.png` when the result has a heatmap).

    The PNGs record the film's path and sha256 (`film_sha256` when the caller has hashed it already).

    Raises `CovidCXRError` naming the file when one cannot be written (a user's file in the way), or for a result
    that records an error (`on_error="record"`: nothing to draw).

    Example:
        >>> result = pipeline.predict(["chest.png"], explain=True)[0]  # doctest: +SKIP
        >>> save_overlays(result, "overlays", "chest")  # doctest: +SKIP
    """
    if getattr(result, "error", None):  # nothing was read: no film, no mask to draw
        raise CovidCXRError(f"{result.source}: no overlays for a film that failed ({result.error})")
    folder = Path(folder)
    stem = fitting_stem(stem)
    mask_picture, gradcam_picture = film_overlays(result)
    try:
        film = _film(result.source, film_sha256)
        paths = [save_overlay_png(folder / f"{stem}_mask.png", mask_picture, film)]
        if gradcam_picture is not None:
            paths.append(save_overlay_png(folder / f"{stem}_gradcam.png", gradcam_picture, film))
    except CovidCXRError:  # a user's file in the way (an OutputExistsError, also an OSError)
        raise
    except OSError as error:  # a full disk, a read-only folder: one error type for callers to report
        raise CovidCXRError(f"{error.filename or folder}: {error.strerror or error}") from error
    return paths


def _film(source, sha256=None):
    """{"path", "sha256"} of a result's film file, or None for an array or a file gone meanwhile."""
    try:
        return {"path": printable_text(os.path.abspath(source)), "sha256": sha256 or sha256_of_file(source)}
    except (OSError, TypeError, ValueError):
        return None

"""Overlay files on disk: the mark every overlay PNG carries, and names that fit the file system.

`save_overlay_png` replaces only files that carry the mark, and folder walks (`find_images`) skip them:
overlays written inside an input folder are not read back as chest X-rays on the next run.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> path = Path(tempfile.mkdtemp()) / "film.png"
    >>> Image.new("L", (4, 4)).save(path)
    >>> is_overlay_file(path)
    False
"""

import hashlib
import os

from PIL import Image

OVERLAY_TAG = "keras-covidcxr overlay"  # the PNG "Software" text of every overlay


def is_overlay_file(path):
    """Whether `path` is an overlay PNG this package wrote (its "Software" text is `OVERLAY_TAG`)."""
    try:
        with Image.open(path) as image:
            return image.format == "PNG" and image.info.get("Software") == OVERLAY_TAG
    except (OSError, ValueError, Image.DecompressionBombError):
        return False


def fitting_stem(stem, longest_ending="_gradcam.png", name_max=255):
    """`stem`, or where `<stem>_gradcam.png` would pass the file system's 255-byte name limit, its start and
    a hash of the whole (two long names that start alike stay apart).

    Example:
        >>> fitting_stem("chest")
        'chest'
        >>> len(fitting_stem("x" * 300) + "_gradcam.png")
        255
    """
    if len(os.fsencode(stem + longest_ending)) <= name_max:
        return stem
    digest = hashlib.sha256(os.fsencode(stem)).hexdigest()[:8]
    room = name_max - len(longest_ending) - len(digest) - 1
    return os.fsencode(stem)[:room].decode("utf-8", "ignore") + "~" + digest

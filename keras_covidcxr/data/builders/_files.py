"""Small file helpers the builders share: checking inputs exist and finding image files."""

import os
from pathlib import Path, PurePosixPath

from keras_covidcxr.data.manifest import DatasetError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom")


def require_folder(path, what):
    """`path` as a Path, or a DatasetError naming it when it is not a folder."""
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(f"{path}: {what} folder not found")
    return path


def require_file(path, what):
    """`path` as a Path, or a DatasetError naming it when it is not a file."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: {what} not found")
    return path


def find_images(folder, extensions=IMAGE_EXTENSIONS):
    """Image files under `folder` (recursively), sorted, hidden files skipped."""
    found = []
    for directory, subdirectories, files in os.walk(folder):
        subdirectories[:] = sorted(name for name in subdirectories if not name.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and name.lower().endswith(extensions):
                found.append(Path(directory) / name)
    return found


def relative_posix(path, root):
    """`path` relative to `root`, with forward slashes (as manifests store it)."""
    return PurePosixPath(Path(os.path.relpath(path, root))).as_posix()

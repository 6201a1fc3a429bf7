"""Small file helpers the builders share: checking inputs exist, finding image files, progress."""

import io
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


def read_text(path, what):
    """The text of a metadata file (UTF-8, a byte-order mark dropped) for csv readers, or a DatasetError
    naming the file when it cannot be read or is not UTF-8 (e.g. a Latin-1 export)."""
    try:
        return io.StringIO(Path(path).read_text(encoding="utf-8-sig"), newline="")
    except OSError as error:
        raise DatasetError(f"{path}: cannot read the {what} ({error.strerror or error})") from error
    except UnicodeDecodeError as error:
        raise DatasetError(f"{path}: the {what} is not UTF-8 text (byte {error.start}: {error.reason}); "
                           "save it as UTF-8") from error


def find_images(folder, extensions=IMAGE_EXTENSIONS, skip_folders=()):
    """Image files under `folder` (recursively), sorted, hidden files skipped.

    Folders whose name is in `skip_folders` (compared lower-cased) are not walked into.
    """
    skip = {name.lower() for name in skip_folders}
    found = []
    for directory, subdirectories, files in os.walk(folder):
        subdirectories[:] = sorted(
            name for name in subdirectories if not name.startswith(".") and name.lower() not in skip
        )
        for name in sorted(files):
            if not name.startswith(".") and name.lower().endswith(extensions):
                found.append(Path(directory) / name)
    return found


def relative_posix(path, root):
    """`path` relative to `root`, with forward slashes (as manifests store it)."""
    return PurePosixPath(Path(os.path.relpath(path, root))).as_posix()


def with_progress(items, progress=None):
    """Yield `items`; `progress(done, total)` is called first with 0, then after each item."""
    items = list(items)
    if progress is not None:
        progress(0, len(items))
    for done, item in enumerate(items, start=1):
        yield item  # resumes when the caller's loop body is finished (or `continue`d)
        if progress is not None:
            progress(done, len(items))

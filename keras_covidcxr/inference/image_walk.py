"""Turn the files and folders a user names into the list of image files to predict.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("b.png", "a.dcm", ".hidden.png", "notes.txt", "1.2.840.5", "sub/c.jpg"):
    ...     (root / name).parent.mkdir(exist_ok=True)
    ...     _ = (root / name).write_bytes(b"x")
    >>> [p.relative_to(root).as_posix() for p in find_images([root])]
    ['a.dcm', 'b.png', 'sub/c.jpg']
"""

import os
from pathlib import Path

from keras_covidcxr.errors import InputError
from keras_covidcxr.io.dicom_reader import starts_like_dicom_without_preamble
from keras_covidcxr.io.file_identity import file_identity
from keras_covidcxr.io.overlay_files import is_overlay_file

IMAGE_SUFFIXES = frozenset(".png .jpg .jpeg .bmp .tif .tiff .gif .webp .pgm .ppm .dcm .dicom .dic".split())


def find_images(inputs, same_files=None):
    """The image files named by `inputs`, each once, in a deterministic order.

    A file named directly is always kept (the loader then says what is wrong
    with it, if anything: a missing file becomes an error, not a silent skip).
    A folder is walked recursively in sorted name order, skipping hidden files
    and folders (names starting with "."), symlinked folders, anything that
    is not a regular file, a DICOM disc's index (DICOMDIR) and the overlay
    pictures this package writes (`is_overlay_file`: `--overlays` inside an
    input folder); it keeps files with an image or DICOM suffix
    (`IMAGE_SUFFIXES`) and any other file that starts like a PNG, a JPEG or a
    DICOM file, with or without its preamble (DICOM files are often named by
    UID, "1.2.840.113619.2.5", or have no suffix). A folder it cannot list,
    and an image-named file it cannot reach (a broken or looping symlink, a
    folder that can be listed but not entered), are listed too, so that the
    loader says what is wrong instead of a silent skip.

    Args:
        inputs: a path or a list of paths (`str` or `Path`), files and folders.
        same_files: a list to which each (path, path kept) left out as the same file is appended.

    Returns:
        A list of `Path`s, in the order the inputs were given; a file reached
        twice (named and inside a named folder, through a symlink or as a hard
        link) is listed once, first time.

    Raises:
        InputError: an input is the empty string (`Path("")` would be the
            current folder: an unset shell variable must not predict it).
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    found, seen = [], {}
    for item in inputs:
        if not os.fspath(item):
            raise InputError("an input path is empty (an unset variable?); name the current folder as '.'")
        item = Path(item)
        for path in _walk(item) if _is_folder(item) else [item]:
            key = file_identity(path)
            if key not in seen:
                seen[key] = path
                found.append(path)
            elif same_files is not None:
                same_files.append((path, seen[key]))
    return found


def path_is_there(path):
    """Whether something is at `path`, counting a path in a folder that cannot be entered (it cannot be told: the
    loader then says why it cannot read it)."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        pass
    return True


def _is_folder(path):
    try:
        return path.is_dir()
    except OSError:  # in a folder that cannot be entered: the loader says so
        return False


def _walk(folder):
    """The image files under `folder`; also, so that the loader names the problem instead of a silent skip, each
    folder that cannot be listed and each image-named file that cannot be reached (a folder that can be listed
    but not entered, a broken or looping symlink)."""
    unlisted = []
    for parent, folders, files in os.walk(folder, onerror=unlisted.append):
        yield from (Path(error.filename) for error in unlisted)
        unlisted.clear()
        folders[:] = sorted(
            name for name in folders if not name.startswith(".")
        )  # os.walk descends in this order
        for name in sorted(files):
            path = Path(parent, name)
            if name.startswith(".") or name.upper() == "DICOMDIR":  # a DICOM disc's index, not an image
                continue
            try:
                regular = path.is_file()
            except OSError:  # the folder can be listed but not entered
                regular = None
            if not regular:
                if (regular is None or path.is_symlink()) and path.suffix.lower() in IMAGE_SUFFIXES:
                    yield path
            elif _looks_like_an_image(path):
                if not (name.lower().endswith(OVERLAY_NAME_ENDINGS) and is_overlay_file(path)):
                    yield path
    yield from (Path(error.filename) for error in unlisted)


OVERLAY_NAME_ENDINGS = ("_mask.png", "_gradcam.png")  # only these are opened to look for the overlay mark


def _looks_like_an_image(path):
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            start = f.read(132)
    except OSError:
        return False  # an unreadable file with no image suffix is not known to be an image
    # PNG's and JPEG's signatures, or DICOM's marker after its 128-byte preamble, or a DICOM file without its
    # preamble (it starts with an element of group 0002 or 0008): the loader says what to do with it
    return (start.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")) or start[128:] == b"DICM"
            or starts_like_dicom_without_preamble(start))

"""Atomic file and folder writes: a reader never sees a half-written output."""

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from keras_covidcxr.errors import OutputExistsError


@contextlib.contextmanager
def atomic_write(path, mode="wb", overwrite=True):
    """Open a temporary file beside `path`; move it over `path` only on success.

    With `overwrite=False` an existing `path` raises `OutputExistsError` and is
    left untouched.

    Example:
        >>> with atomic_write("/tmp/example.txt", "w") as f:
        ...     _ = f.write("done")
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise OutputExistsError(f"{path}: already exists; not overwriting it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_directory(path, replace_if=None):
    """Build a folder under a temporary name; rename it to `path` on success.

    An existing `path` is replaced only when `replace_if(path)` says it may be
    (e.g. it is an older preset); otherwise `OutputExistsError` is raised before
    anything is written.
    """
    path = Path(path)
    if path.exists() and not (replace_if and replace_if(path)):
        raise OutputExistsError(f"{path}: already exists and is not safe to replace")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "replaced")
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

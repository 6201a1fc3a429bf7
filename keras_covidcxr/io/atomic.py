"""Atomic file and folder writes: a reader never sees a half-written output.

Outputs end with the mode a plain `open()` or `mkdir()` would give them under the
user's umask (0644 files and 0755 folders under umask 022), so they can be shared;
only the temporary stays private while it is being written.
"""

import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path

from keras_covidcxr.errors import OutputExistsError


def current_umask():
    """The process's umask, e.g. 0o022.

    Linux reports it in /proc/self/status; elsewhere it is read by setting and
    restoring it, which briefly changes it for every thread of the process.

    Example:
        >>> 0 <= current_umask() <= 0o777
        True
    """
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o077)  # the brief window is private, never world-writable
    os.umask(mask)
    return mask


def shareable_file_mode():
    """0o666 less the umask: the mode `open(path, "w")` gives a new file."""
    return 0o666 & ~current_umask()


def _make_tree_shareable(root):
    """Give `root`, every folder and every file below it the umask's mode (symlinks are left alone).

    Writers such as safetensors' `save_file` leave their own temporaries' private 0600 mode.
    """
    umask = current_umask()
    os.chmod(root, 0o777 & ~umask)
    for folder, subfolders, files in os.walk(root):
        for name in subfolders + files:
            path = os.path.join(folder, name)
            status = os.lstat(path)
            if stat.S_ISLNK(status.st_mode):
                continue
            executable = stat.S_ISDIR(status.st_mode) or status.st_mode & stat.S_IXUSR
            os.chmod(path, (0o777 if executable else 0o666) & ~umask)


@contextlib.contextmanager
def atomic_write(path, mode="wb", overwrite=True):
    """Open a temporary file beside `path`; move it over `path` only on success.

    With `overwrite=False` an existing `path` raises `OutputExistsError` and is
    left untouched. The file ends with the umask's mode (`shareable_file_mode`).
    A symlink stays: its target is written, as `open(path, "w")` would.

    Example:
        >>> with atomic_write("/tmp/example.txt", "w") as f:
        ...     _ = f.write("done")
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise OutputExistsError(f"{path}: already exists; not overwriting it")
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, shareable_file_mode())
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
    anything is written. The folder, and every folder and file inside it, ends
    with the mode `mkdir` / `open` give under the umask (0755 / 0644 under 022).

    Example:
        >>> import tempfile
        >>> with atomic_directory(Path(tempfile.mkdtemp()) / "report") as folder:
        ...     _ = (folder / "report.md").write_text("done")
    """
    path = Path(path)
    if path.exists() and not (replace_if and replace_if(path)):
        raise OutputExistsError(f"{path}: already exists and is not safe to replace")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_temporary_prefix(path), suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        _make_tree_shareable(tmp)
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=_temporary_prefix(path), suffix=".old", dir=path.parent))
            os.replace(path, old / "replaced")
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _temporary_prefix(path):
    """A hidden temporary's name start: the output's name, cut so that the temporary's whole name (about 14
    characters more) stays within the 255 bytes file systems allow where the output's own name fits."""
    name = os.fsencode(path.name)[:200].decode("utf-8", "ignore") or "output"
    return f".{name}."

"""One key for every name of a file, so that a file reached twice is known as one.

Example:
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with open(os.path.join(folder, "a.png"), "wb"):
    ...     pass
    >>> os.link(os.path.join(folder, "a.png"), os.path.join(folder, "b.png"))
    >>> file_identity(os.path.join(folder, "a.png")) == file_identity(os.path.join(folder, "./b.png"))
    True
"""

import os


def file_identity(path):
    """The same value for every name of one file (spellings, symlinks, hard links): its device and inode, or its
    real path when it cannot be read (missing or unreadable: whoever opens it names the problem)."""
    try:
        status = os.stat(path)
    except OSError:
        return os.path.realpath(path)
    return status.st_dev, status.st_ino

"""sha256 of the files of a preset folder."""

import hashlib
from pathlib import Path


def sha256_of_file(path, chunk_size=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checksum_tree(folder, exclude=("metadata.json",)):
    """{relative posix path: sha256} of every file under `folder` but `exclude`."""
    folder = Path(folder)
    return {
        path.relative_to(folder).as_posix(): sha256_of_file(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.relative_to(folder).as_posix() not in exclude
    }

"""Where a new preset may be written, checked before any training: a wrong `--out` costs a second, not an hour.

Example:
    >>> import tempfile
    >>> check_preset_destination(Path(tempfile.mkdtemp()) / "new_preset")  # a new folder: fine
"""

from pathlib import Path

from keras_covidcxr.errors import PresetError
from keras_covidcxr.presets.preset_format import is_preset_folder
from keras_covidcxr.presets.resolve import HF_PREFIX


def check_preset_destination(out, overwrite=False, parent=None):
    """Refuse `out` for a new preset: a file, a folder holding anything but an older preset (or any folder
    without `overwrite`), or the `parent` preset's own folder (a handle or a folder; fine-tuning never
    writes over its parent)."""
    out = Path(out)
    parent_folder = local_preset_folder(parent) if parent is not None else None
    if parent_folder is not None and out.exists() and out.resolve() == parent_folder.resolve():
        raise PresetError(f"{out}: is the parent preset's folder; the fine-tuned preset is a new one (the parent "
                          "is never modified): choose another folder")
    if out.exists() and not out.is_dir():
        raise PresetError(f"{out}: is a file, not a folder for a preset")
    if out.is_dir() and not replaceable_preset_folder(out, overwrite):
        hint = "" if overwrite else "; overwrite=True (--overwrite) replaces an older preset"
        raise PresetError(f"{out}: exists and is not an empty folder{' or a preset' if overwrite else ''}{hint}")


def replaceable_preset_folder(path, overwrite=False):
    """An empty folder, or with `overwrite` an older preset."""
    path = Path(path)
    return path.is_dir() and (not any(path.iterdir()) or (overwrite and is_preset_folder(path)))


def local_preset_folder(handle):
    """The folder a preset handle names on this machine, found without downloading anything; None for
    hf:// handles and unknown names."""
    from keras_covidcxr.presets.registry import registered_entry

    entry = registered_entry(str(handle))
    path = str(entry["handle"] if entry is not None else handle)
    if path.startswith(HF_PREFIX) or not Path(path).is_dir():
        return None
    return Path(path)

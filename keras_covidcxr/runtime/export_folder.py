"""What an export folder is, shared by its writer (`Pipeline.export`) and the light runtime: export.json's
name and version, the formats, where an export may be written, and the fingerprint of its settings.

Example:
    >>> import tempfile
    >>> check_export_destination(Path(tempfile.mkdtemp()) / "covidcxr_lite_onnx", "onnx")  # new: fine
"""

import hashlib
import json
from pathlib import Path

from keras_covidcxr.errors import ConfigError

EXPORT_FILE = "export.json"
EXPORT_VERSION = 2  # 2: the ensemble graph gives the out-of-distribution features (1: a graph of its own)
FORMATS = {"onnx": ".onnx", "litert": ".tflite", "tf_saved_model": ""}  # format -> graph file suffix


def replaceable_export_folder(path, overwrite=False):
    """An empty folder, or with `overwrite` an earlier export."""
    path = Path(path)
    return path.is_dir() and (not any(path.iterdir()) or (overwrite and (path / EXPORT_FILE).is_file()))


def check_export_destination(out, format, overwrite=False):
    """Refuse an unknown format or a folder that is not ours to replace, before anything is exported."""
    if format not in FORMATS:
        raise ConfigError(f"cannot export to {format!r}: choose one of {', '.join(FORMATS)}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: is a file, not a folder for an export")
    if out.exists() and not replaceable_export_folder(out, overwrite):
        hint = "" if overwrite else " (overwrite=True, --overwrite, replaces an earlier export)"
        raise ConfigError(f"{out}: exists and is not an empty folder{hint}")


def settings_sha256(manifest):
    """sha256 of export.json's settings (all but the file checksums and this fingerprint): an edited
    threshold or graph name is found, as a preset's checksummed config.json would be."""
    settings = {key: value for key, value in manifest.items() if key not in ("files", "settings_sha256")}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()

"""What an export folder is, shared by its writer (`Pipeline.export`) and the light runtime: export.json's
name and version, the formats, where an export may be written, and the fingerprint of its settings.

Example:
    >>> import tempfile
    >>> check_export_destination(Path(tempfile.mkdtemp()) / "covidcxr_lite_onnx", "onnx")  # new: fine
"""

import hashlib
import importlib.util
import json
from pathlib import Path

from keras_covidcxr.errors import ConfigError, MissingDependencyError
from keras_covidcxr.quiet_import import configured_backend

EXPORT_FILE = "export.json"
EXPORT_VERSION = 2  # 2: the ensemble graph gives the out-of-distribution features (1: a graph of its own)
FORMATS = {"onnx": ".onnx", "litert": ".tflite", "tf_saved_model": ""}  # format -> graph file suffix


# The backends whose Keras exporter writes each format as this package reads it: a variable batch size and, for
# ONNX, the graph outputs named (Keras writes ONNX from JAX with jax2onnx, whose outputs are "v_0", "convert_out_0",
# ..., and LiteRT from PyTorch with a fixed batch size). TensorFlow itself writes every format: it must be installed.
BACKENDS = {"onnx": ("tensorflow",), "litert": ("tensorflow",), "tf_saved_model": ("tensorflow", "jax", "torch")}


def check_export_writer(format, backend=None):
    """Refuse a format that cannot be written here: TensorFlow missing, or a Keras `backend` (by default the one
    Keras will load, `configured_backend`) that does not write it as this package reads it. Needs no Keras."""
    backend = backend or configured_backend()
    install = "pip install \"keras-covidcxr[export,tensorflow-cpu]\""
    if importlib.util.find_spec("tensorflow") is None:
        run = ("and run the export with KERAS_BACKEND=tensorflow" if backend not in BACKENDS.get(format, ())
               else f"(the {backend} backend can stay)")
        raise MissingDependencyError(
            f"exporting {format} needs TensorFlow, which writes every format from any backend: install it with "
            f"{install} {run}")
    if format in BACKENDS and backend not in BACKENDS[format]:
        working = " or ".join(f"KERAS_BACKEND={name}" for name in BACKENDS[format])
        others = [name for name, backends in BACKENDS.items() if backend in backends]
        raise ConfigError(f"this package cannot export {format} from the {backend} backend: run the export with "
                          f"{working} ({install})" + (f", or export {' or '.join(others)}" if others else ""))


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

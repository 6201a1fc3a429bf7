"""The preset folder: config.json, metadata.json and one sub-folder per component.

```
preset/
  config.json      the pipeline graph: components, ensemble, class names,
                   preprocessing, input contract; carries "format_version"
  metadata.json    versions, date, parameter counts, sha256 of every other
                   file, training provenance (data, recipe, metrics) or null
  segmenter/       config.json (Keras config) + model.safetensors
  members/NAME/    the same, one per ensemble member
```
This module reads and checks the JSON files without importing Keras, so that
`covidcxr info` stays fast; `component_io` handles the weights.
"""

import json
from pathlib import Path

from keras_covidcxr.errors import PresetError
from keras_covidcxr.presets.checksums import checksum_tree, sha256_of_file

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
METADATA_FILE = "metadata.json"


def is_preset_folder(path):
    """True when `path` holds a preset: a config.json with a format_version, a metadata.json listing files."""
    path = Path(path)
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
        metadata = json.loads((path / METADATA_FILE).read_text())
    except (OSError, ValueError):
        return False
    return (
        isinstance(config, dict)
        and "format_version" in config
        and isinstance(metadata, dict)
        and isinstance(metadata.get("files"), dict)
    )


def read_json(path):
    """A preset's JSON file, which holds one object."""
    try:
        document = json.loads(Path(path).read_text())
    except FileNotFoundError as error:
        raise PresetError(f"{path}: missing file") from error
    except (OSError, ValueError) as error:
        raise PresetError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(document, dict):
        raise PresetError(f"{path}: expected a JSON object, got a {type(document).__name__}")
    return document


def write_json(path, document):
    Path(path).write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")


def read_preset_metadata(handle, verify_checksums=False):
    """The metadata.json of a preset (local folder, registered name or hf:// handle).

    Two keys are added: "config" (config.json) and "input", the input contract
    with the sizes the models run at (see `input_summary`). With `verify_checksums`,
    a changed, missing or misplaced file is a `PresetError` first, as when loading it.

    Example:
        >>> read_preset_metadata("./my_preset")["input"]["channels"]  # doctest: +SKIP
        1
    """
    from keras_covidcxr.presets.resolve import resolve_preset

    folder = resolve_preset(handle)
    _check_is_preset(folder)
    if verify_checksums:
        read_verified_config(folder)
    metadata = read_json(folder / METADATA_FILE)
    metadata["config"] = read_json(folder / CONFIG_FILE)
    metadata["input"] = input_summary(folder, metadata["config"])
    return metadata


def input_summary(folder, config):
    """What a preset accepts, in one dict: config.json's input contract (channels, value range,
    minimum size, views, modalities, minimum age) plus the segmenter's and classifiers' input sizes,
    read from the components' JSON configs (no Keras needed). Sizes that cannot be read are None."""
    summary = dict(config.get("input_contract") or {})

    def component_config(relative):
        try:
            return read_json(Path(folder) / relative / CONFIG_FILE).get("config", {})
        except (PresetError, AttributeError):
            return {}

    summary["segmenter_input_size"] = component_config(config.get("segmenter", "segmenter")).get("input_size")
    members = config.get("members", [])
    member_sizes = {(component_config(path).get("input_shape") or [None])[0] for path in members}
    summary["classifier_input_size"] = member_sizes.pop() if len(member_sizes) == 1 else None
    return summary


def _check_is_preset(folder):
    """A folder without metadata.json is not a preset; an export folder is run with --exported."""
    from keras_covidcxr.runtime.export_folder import EXPORT_FILE

    if not (Path(folder) / METADATA_FILE).exists():
        export = " but an export: run it with --exported (ExportedPipeline)" if (Path(folder) / EXPORT_FILE).exists() else ""
        raise PresetError(f"{folder}: not a keras-covidcxr preset (no {METADATA_FILE}){export}")


def read_verified_config(folder):
    """Check every checksum and the format version; return (config, metadata)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PresetError(f"{folder}: preset folder not found")
    _check_is_preset(folder)
    metadata = read_json(folder / METADATA_FILE)
    files = metadata.get("files")
    if not isinstance(files, dict) or CONFIG_FILE not in files:
        raise PresetError(f"{folder / METADATA_FILE}: no checksum list; not a keras-covidcxr preset")
    for relative, expected in files.items():
        path = folder / relative
        if Path(relative).is_absolute() or ".." in Path(relative).parts:
            # what a preset reads is inside its folder, or `upload` would publish a preset that cannot load
            raise PresetError(f"{folder / METADATA_FILE}: lists {relative!r}, a file outside the preset folder; "
                              "refusing to read it")
        if not path.is_file():
            raise PresetError(f"{path}: missing file (listed in metadata.json)")
        if sha256_of_file(path) != expected:
            raise PresetError(f"{path}: checksum mismatch; the file was changed or corrupted")
    config = read_json(folder / CONFIG_FILE)
    version = config.get("format_version")
    if version != FORMAT_VERSION:
        raise PresetError(
            f"{folder / CONFIG_FILE}: preset format_version {version!r}; "
            f"this keras-covidcxr reads version {FORMAT_VERSION}"
        )
    return config, metadata


def unlisted_files(folder, metadata):
    """Files in a preset folder that metadata.json does not list (never read; never uploaded), except
    metadata.json itself, a README.md model card and hidden files (a Hub download's .gitattributes)."""
    folder = Path(folder)
    listed = set(metadata.get("files") or {}) | {METADATA_FILE, "README.md"}
    found = (path.relative_to(folder) for path in folder.rglob("*") if path.is_file())
    return sorted(p.as_posix() for p in found if p.as_posix() not in listed
                  and not any(part.startswith(".") for part in p.parts))


def require_listed(folder, metadata, relative):
    """Refuse to read a file that metadata.json does not vouch for."""
    if relative not in metadata["files"]:
        raise PresetError(f"{Path(folder) / relative}: not listed in metadata.json; refusing to read it")


def finish_metadata(folder, metadata):
    """Add the checksum of every file in `folder` to `metadata` and write it."""
    write_json(Path(folder) / METADATA_FILE, {**metadata, "files": checksum_tree(folder)})

"""Turn a preset handle into a local folder: a path, a registered name or hf://owner/repo[@revision]."""

import difflib
import os
import re
from pathlib import Path

from keras_covidcxr.errors import PresetError

HF_PREFIX = "hf://"


def parse_hf_handle(handle):
    """"hf://owner/repo@rev" -> ("owner/repo", "rev" or None)."""
    repo_id, at, revision = handle[len(HF_PREFIX):].partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")) or (at and not revision):
        raise PresetError(f"{handle}: expected hf://owner/repo or hf://owner/repo@revision")
    return repo_id, revision or None


def resolve_preset(handle):
    """Return the local folder of a preset handle, downloading hf:// ones into the HF cache.

    A handle is tried in this order: a registered preset name, an hf:// handle,
    a local folder. A registered name whose trained weights are not published
    (or whose bundled folder is missing) raises a `PresetError` saying so,
    before any network access.

    Example:
        >>> resolve_preset("hf://owner/repo@main")  # doctest: +SKIP
    """
    from keras_covidcxr.presets.registry import registered_entry

    if not isinstance(handle, (str, os.PathLike)):
        raise PresetError(f"a preset handle is a folder, a registered name or hf://owner/repo (a str or Path), "
                          f"not {type(handle).__name__} {handle!r:.60}")
    if not str(handle).strip():
        raise PresetError("an empty preset handle; give a preset folder, a registered name or hf://owner/repo")
    entry = registered_entry(str(handle))
    if entry is not None:
        return _resolve_registered(str(handle), entry)
    return _resolve_handle(str(handle))


def _resolve_registered(name, entry):
    metadata, handle = entry["metadata"], entry["handle"]
    if metadata.get("trained") is False:
        raise PresetError(
            f"{name}: no trained weights are published yet (it will load from {handle} once they are); "
            "train it yourself on a GPU from the public datasets with the commands that "
            f"`covidcxr info {name}` lists (also in {metadata.get('model_card', 'its model card')}), "
            "then load the preset folder that `covidcxr train ensemble` writes"
        )
    if metadata.get("weights") == "bundled" and not Path(handle).is_dir():
        rebuild = " && ".join(metadata.get("training_commands", ()))
        raise PresetError(
            f"{name}: the bundled preset folder {handle} is missing from this installation "
            "(a source checkout before its weights were trained?); "
            + (f"rebuild it with `{rebuild}` " if rebuild else "")
            + "or install a released keras-covidcxr"
        )
    return _resolve_handle(handle)


def _resolve_handle(handle):
    if handle.startswith(HF_PREFIX):
        return _download_from_hub(handle)
    folder = Path(os.path.expanduser(handle))
    if _is_folder(folder):
        return folder
    from keras_covidcxr.presets.registry import list_presets

    names = list(list_presets())
    close = difflib.get_close_matches(handle.lower().replace("-", "_"), names, n=1)
    raise PresetError(
        f"{handle}: no such preset (not a folder, a registered name or an hf://owner/repo handle); "
        + (f"did you mean {close[0]}? " if close else "")
        + f"registered names: {', '.join(names)} (`covidcxr presets` says which have weights)"
    )


def _is_folder(path):
    try:
        return path.is_dir()
    except OSError:  # a name too long to be a path: some Python versions raise instead of answering False
        return False


def _download_from_hub(handle):
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    repo_id, revision = parse_hf_handle(handle)
    try:
        return Path(huggingface_hub.snapshot_download(repo_id, revision=revision))
    except LocalEntryNotFoundError as error:
        # huggingface_hub >= 1.x: IncompleteSnapshotError, a subclass, when the cached copy lacks files
        missing = re.search(r"\d+ file\(s\) are missing \(.*?\)\.", str(error))
        if hasattr(error, "snapshot_path") and missing:
            raise PresetError(
                f"{handle}: the Hub cannot be reached (offline) and the cached copy is incomplete: "
                f"{missing.group(0)[:-1]}; download it again with network access"
            ) from error
        raise PresetError(
            f"{handle}: the Hub cannot be reached (offline) and no copy is cached locally"
        ) from error
    except (HfHubHTTPError, OSError, ValueError) as error:
        raise PresetError(f"{handle}: download failed ({type(error).__name__}: {error})") from error

"""Publishing a preset folder to the Hugging Face Hub."""

from pathlib import Path

from keras_covidcxr.errors import PresetError
from keras_covidcxr.presets.preset_format import read_verified_config
from keras_covidcxr.presets.resolve import HF_PREFIX, parse_hf_handle


def upload_preset(folder, handle, private=False, token=None, commit_message=None):
    """Upload a checked preset folder to `hf://owner/repo`, creating the repo if needed.

    Returns the pinned handle `hf://owner/repo@<commit>` of what was uploaded.

    Example:
        >>> upload_preset("./my_preset", "hf://me/covidcxr-lite")  # doctest: +SKIP
        'hf://me/covidcxr-lite@3f2a...'
    """
    import huggingface_hub
    from huggingface_hub.errors import HfHubHTTPError

    folder = Path(folder)
    if not handle.startswith(HF_PREFIX):
        raise PresetError(f"{handle}: uploads go to hf://owner/repo handles")
    repo_id, revision = parse_hf_handle(handle)
    read_verified_config(folder)  # never publish a broken or tampered preset
    api = huggingface_hub.HfApi(token=token)
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        commit = api.upload_folder(
            folder_path=str(folder),
            repo_id=repo_id,
            repo_type="model",
            revision=revision,
            commit_message=commit_message or f"Upload keras-covidcxr preset {folder.name}",
        )
    except (HfHubHTTPError, OSError, ValueError) as error:
        raise PresetError(f"{handle}: upload failed ({type(error).__name__}: {error})") from error
    return f"{HF_PREFIX}{repo_id}@{commit.oid}"

"""Publishing a preset folder (and its model card) to the Hugging Face Hub."""

import os
import re
import shutil
import sysconfig
import tempfile
from pathlib import Path

from keras_covidcxr.errors import PresetError
from keras_covidcxr.presets.preset_format import METADATA_FILE, read_verified_config
from keras_covidcxr.presets.resolve import HF_PREFIX, parse_hf_handle, resolve_preset

CARD_FILE = "README.md"  # the Hub shows a repository's README.md as its model card
# the registered presets' cards: model_cards/ of the source tree, else the wheel's data files (share/keras-covidcxr)
MODEL_CARD_FOLDERS = (
    Path(__file__).resolve().parent.parent.parent / "model_cards",
    *(Path(sysconfig.get_path("data", scheme)) / "share" / "keras-covidcxr" / "model_cards"
      for scheme in dict.fromkeys((sysconfig.get_default_scheme(), f"{os.name}_user"))),
)
_PLACEHOLDER = re.compile(r"\{\{.*?\}\}")


def preset_folder(preset):
    """The folder to publish: `preset` itself, or a registered name's bundled folder.

    A registered name whose weights are not here (not yet trained) is a
    `PresetError`, as when loading it.
    """
    from keras_covidcxr.presets.registry import registered_entry

    return resolve_preset(str(preset)) if registered_entry(str(preset)) is not None else Path(preset)


def find_model_card(folder):
    """The model card that goes with a preset folder (or registered name), or None.

    The folder's own README.md, else `model_cards/<folder name>.md` (the
    registered presets' cards, installed with the package).
    """
    folder = preset_folder(folder)
    for card in (folder / CARD_FILE, *(cards / f"{folder.name}.md" for cards in MODEL_CARD_FOLDERS)):
        if card.is_file():
            return card
    return None


def upload_preset(folder, handle, private=False, token=None, commit_message=None, model_card=None):
    """Upload a checked preset folder and its model card to `hf://owner/repo`, creating the repo if needed.

    Args:
        folder: a preset folder, or a registered name with a bundled folder
            (`"covidcxr_lite"`).
        model_card: a Markdown file published as the repository's README.md;
            None finds it with `find_model_card`, False uploads no card.
            A card with unfilled `{{...}}` placeholders is refused.

    Returns the pinned handle `hf://owner/repo@<commit>` of what was uploaded.

    Example:
        >>> upload_preset("./my_preset", "hf://me/covidcxr-lite")  # doctest: +SKIP
        'hf://me/covidcxr-lite@3f2a...'
    """
    import huggingface_hub

    folder = preset_folder(folder)
    if not handle.startswith(HF_PREFIX):
        raise PresetError(f"{handle}: uploads go to hf://owner/repo handles")
    repo_id, revision = parse_hf_handle(handle)
    _, metadata = read_verified_config(folder)  # never publish a broken or tampered preset
    card = find_model_card(folder) if model_card is None else (Path(model_card) if model_card else None)
    if card is not None:
        _check_card(card)
    api = huggingface_hub.HfApi(token=token)
    with tempfile.TemporaryDirectory(prefix="covidcxr-upload-") as staging:
        source = folder
        if card is not None and card.resolve() != (folder / CARD_FILE).resolve():
            source = Path(staging) / folder.name  # the preset plus the card, without touching the preset
            shutil.copytree(folder, source, copy_function=_link_or_copy)
            (source / CARD_FILE).unlink(missing_ok=True)
            shutil.copyfile(card, source / CARD_FILE)
        try:
            api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
            commit = api.upload_folder(
                folder_path=str(source),
                repo_id=repo_id,
                repo_type="model",
                revision=revision,
                allow_patterns=sorted([*metadata["files"], METADATA_FILE, CARD_FILE]),  # nothing unlisted
                commit_message=commit_message or f"Upload keras-covidcxr preset {folder.name}",
            )
        except Exception as error:  # the Hub client's transport has its own errors (offline: a ConnectError)
            raise PresetError(f"{handle}: upload failed ({type(error).__name__}: {error})") from error
    return f"{HF_PREFIX}{repo_id}@{commit.oid}"


def _check_card(card):
    try:
        text = card.read_text(encoding="utf-8")
    except OSError as error:
        raise PresetError(f"{card}: cannot read the model card ({error})") from error
    left = sorted(set(_PLACEHOLDER.findall(text)))
    if left:
        raise PresetError(f"{card}: the model card still has unfilled placeholders: {', '.join(left)}")


def _link_or_copy(source, destination):
    try:
        os.link(source, destination)  # large weights: no copy when staging is on the same disk
    except OSError:
        shutil.copy2(source, destination)

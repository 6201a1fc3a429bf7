"""hf:// handles resolved from a pre-populated Hugging Face cache, offline (HF_HUB_OFFLINE=1, set in conftest)."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from keras_covidcxr import Pipeline, PresetError, read_preset_metadata
from keras_covidcxr.presets.resolve import parse_hf_handle, resolve_preset

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hf_cache(preset_dir, tmp_path, monkeypatch):
    """A Hugging Face cache holding owner/tiny-covidcxr at COMMIT, with refs/main pointing to it."""
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    repo = cache / "models--owner--tiny-covidcxr"
    shutil.copytree(preset_dir, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    # huggingface_hub reads HF_HUB_CACHE once at import; point both at our folder.
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    assert huggingface_hub.constants.HF_HUB_OFFLINE
    return cache


@pytest.mark.parametrize("suffix", ["", "@main", f"@{COMMIT}"])
def test_hf_handles_resolve_from_the_cache_offline(hf_cache, suffix):
    folder = resolve_preset(f"hf://owner/tiny-covidcxr{suffix}")
    assert folder == hf_cache / "models--owner--tiny-covidcxr" / "snapshots" / COMMIT


def test_pipeline_loads_from_an_hf_handle(hf_cache, chest_images):
    pipeline = Pipeline.from_preset("hf://owner/tiny-covidcxr@main")
    assert pipeline.predict(chest_images[:1])[0].label in pipeline.class_names
    assert read_preset_metadata("hf://owner/tiny-covidcxr")["training"]["data"] == "synthetic test images"


@pytest.mark.slow  # a fresh process loads Keras and predicts
def test_a_fresh_process_resolves_hf_from_the_environment_alone(hf_cache, tmp_path, chest_images):
    # Nothing patched: a new process reads HF_HUB_CACHE and HF_HUB_OFFLINE as a user's shell sets them.
    from PIL import Image

    image = tmp_path / "chest.png"
    Image.fromarray((chest_images[0] * 255).astype("uint8")).save(image)
    run_cli = "import sys; from covidcxr_cli.app import main; sys.argv[0] = 'covidcxr'; main()"
    env = {**os.environ, "HF_HUB_CACHE": str(hf_cache), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-c", run_cli, "predict", str(image), "--preset", "hf://owner/tiny-covidcxr", "--json"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)
    assert row["label"] in ("covid", "non_covid") and row["error"] is None


def test_offline_without_a_cached_copy_is_a_clear_error(hf_cache):
    with pytest.raises(PresetError, match="hf://owner/absent: the Hub cannot be reached.*no copy is cached"):
        resolve_preset("hf://owner/absent")
    with pytest.raises(PresetError, match="no copy is cached"):
        resolve_preset("hf://owner/tiny-covidcxr@v2")


def test_a_handle_that_is_no_name_or_path_is_named():
    with pytest.raises(PresetError, match=r"a str or Path\), not dict \{'preset'"):
        resolve_preset({"preset": "covidcxr_lite"})
    with pytest.raises(PresetError, match="no such preset"):  # too long to be a file name: no OSError
        resolve_preset("x" * 300)


@pytest.mark.parametrize("handle", ["hf://noslash", "hf://a/b/c", "hf:///repo"])
def test_malformed_hf_handles(handle):
    with pytest.raises(PresetError, match="expected hf://owner/repo"):
        parse_hf_handle(handle)


def test_registered_names_resolve_to_their_handle(monkeypatch, preset_dir):
    from keras_covidcxr.models.pipeline import pipeline_presets

    monkeypatch.setitem(
        pipeline_presets.PIPELINE_PRESETS, "tiny_test", {"metadata": {"description": "t"}, "handle": str(preset_dir)}
    )
    assert resolve_preset("tiny_test") == preset_dir


def test_an_incomplete_cached_copy_is_not_called_absent(hf_cache, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    class IncompleteSnapshotError(LocalEntryNotFoundError):  # as huggingface_hub >= 1.x raises it
        def __init__(self, message, snapshot_path):
            super().__init__(message)
            self.snapshot_path = snapshot_path

    def incomplete(repo_id, revision=None):
        raise IncompleteSnapshotError(
            f"The cached snapshot for '{repo_id}' (revision 'main', commit {COMMIT}) is incomplete: 1 file(s) are "
            "missing (members/b/model.safetensors). Outgoing traffic is disabled ('local_files_only=True'). Re-run "
            "the download with network access to complete the snapshot.", snapshot_path=str(hf_cache))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", incomplete)
    with pytest.raises(PresetError, match=r"cached copy is incomplete: 1 file\(s\) are missing "
                                          r"\(members/b/model.safetensors\); download it again"):
        resolve_preset("hf://owner/tiny-covidcxr")
    with pytest.raises(PresetError, match="expected hf://owner/repo"):
        parse_hf_handle("hf://owner/repo@")

import json
import shutil
from types import SimpleNamespace

import pytest

from keras_covidcxr import PresetError, upload_preset, verify_preset


def test_a_fresh_preset_verifies(preset_dir):
    verification = verify_preset(preset_dir)
    assert verification.passed and verification.checked_samples == 1


def test_changed_golden_outputs_are_reported(preset_dir, tmp_path):
    folder = tmp_path / "p"
    shutil.copytree(preset_dir, folder)
    metadata = json.loads((folder / "metadata.json").read_text())
    golden = metadata["golden_outputs"]["chest_xray_covid_pa.png"]
    golden["probabilities"]["covid"] += 0.01
    golden["lung_fraction"] = 0.0
    (folder / "metadata.json").write_text(json.dumps(metadata))
    problems = verify_preset(folder).problems
    assert len(problems) == 2
    assert problems[0].startswith("chest_xray_covid_pa.png: p(covid) =")
    assert problems[1].startswith("chest_xray_covid_pa.png: lung fraction")


class FakeHubApi:
    """Records what would be sent to the Hub (nothing here reaches the network)."""

    calls = []

    def __init__(self, token=None):
        self.token = token

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs["repo_id"], kwargs))
        return SimpleNamespace(oid="abc123")


def test_upload_creates_the_repo_and_pins_the_commit(preset_dir, monkeypatch):
    import huggingface_hub

    FakeHubApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHubApi)
    assert upload_preset(preset_dir, "hf://me/tiny") == "hf://me/tiny@abc123"
    (create, repo, create_kwargs), (upload, _, upload_kwargs) = FakeHubApi.calls
    assert (create, repo, create_kwargs["exist_ok"]) == ("create_repo", "me/tiny", True)
    assert upload == "upload_folder" and upload_kwargs["folder_path"] == str(preset_dir)


def test_a_tampered_preset_is_never_uploaded(preset_dir, tmp_path, monkeypatch):
    import huggingface_hub

    FakeHubApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHubApi)
    folder = tmp_path / "p"
    shutil.copytree(preset_dir, folder)
    (folder / "config.json").write_text("{}")
    with pytest.raises(PresetError, match="checksum mismatch"):
        upload_preset(folder, "hf://me/tiny")
    with pytest.raises(PresetError, match="hf://owner/repo"):
        upload_preset(preset_dir, "me/tiny")
    assert FakeHubApi.calls == []

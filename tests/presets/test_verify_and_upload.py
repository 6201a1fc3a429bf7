import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from keras_covidcxr import PresetError, sample_images, upload_preset, verify_preset


def test_a_fresh_preset_verifies(preset_dir, fast_cli):
    verification = verify_preset(preset_dir)
    assert verification.passed and verification.checked_samples == len(sample_images()) == 2


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
        import fnmatch

        card = Path(kwargs["folder_path"]) / "README.md"
        allowed = kwargs.get("allow_patterns") or ["*"]  # as the Hub client filters the folder's files
        uploaded = sorted(
            name for name in (p.relative_to(kwargs["folder_path"]).as_posix()
                              for p in Path(kwargs["folder_path"]).rglob("*") if p.is_file())
            if any(fnmatch.fnmatch(name, pattern) for pattern in allowed)
        )
        self.calls.append(("upload_folder", kwargs["repo_id"], {
            **kwargs, "card": card.read_text() if card.is_file() else None, "files": uploaded,
        }))
        return SimpleNamespace(oid="abc123")


def test_upload_creates_the_repo_and_pins_the_commit(preset_dir, monkeypatch):
    import huggingface_hub

    FakeHubApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHubApi)
    assert upload_preset(preset_dir, "hf://me/tiny") == "hf://me/tiny@abc123"
    (create, repo, create_kwargs), (upload, _, upload_kwargs) = FakeHubApi.calls
    assert (create, repo, create_kwargs["exist_ok"]) == ("create_repo", "me/tiny", True)
    assert upload == "upload_folder" and upload_kwargs["folder_path"] == str(preset_dir)


def test_files_the_preset_does_not_list_fail_verify_and_are_never_uploaded(preset_dir, tmp_path, monkeypatch,
                                                                          fast_cli):
    import huggingface_hub

    FakeHubApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHubApi)
    folder = tmp_path / "p"
    shutil.copytree(preset_dir, folder)
    (folder / "notes.txt").write_text("private notes")
    (folder / "segmenter" / "extra.bin").write_bytes(b"x")
    problems = verify_preset(folder).problems
    assert [problem.split(":")[0] for problem in problems] == [str(folder / "notes.txt"),
                                                                str(folder / "segmenter" / "extra.bin")]
    upload_preset(folder, "hf://me/tiny", model_card=False)
    uploaded = FakeHubApi.calls[-1][2]["files"]
    assert "notes.txt" not in uploaded and "segmenter/extra.bin" not in uploaded
    assert {"config.json", "metadata.json", "segmenter/model.safetensors"} <= set(uploaded)


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


CARD = """---
library_name: keras
license: other
---

# tiny
"""


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    import huggingface_hub

    from keras_covidcxr.presets import upload

    FakeHubApi.calls = []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHubApi)
    cards = tmp_path / "model_cards"
    cards.mkdir()
    monkeypatch.setattr(upload, "MODEL_CARD_FOLDERS", (cards,))
    return cards


def test_upload_publishes_the_model_card_from_model_cards_as_readme(preset_dir, fake_hub, fast_cli):
    (fake_hub / f"{preset_dir.name}.md").write_text(CARD)
    assert upload_preset(preset_dir, "hf://me/tiny") == "hf://me/tiny@abc123"
    (_, _, _), (_, _, uploaded) = FakeHubApi.calls
    assert uploaded["card"] == CARD
    assert set(uploaded["files"]) >= {"README.md", "config.json", "metadata.json", "segmenter/model.safetensors"}
    assert not (preset_dir / "README.md").exists()  # the preset itself is never changed
    verify_preset(preset_dir)


def test_an_explicit_card_wins_and_false_uploads_none(preset_dir, fake_hub, tmp_path):
    (fake_hub / f"{preset_dir.name}.md").write_text(CARD)
    mine = tmp_path / "mine.md"
    mine.write_text(CARD.replace("# tiny", "# mine"))
    upload_preset(preset_dir, "hf://me/tiny", model_card=mine)
    assert FakeHubApi.calls[-1][2]["card"].endswith("# mine\n")
    upload_preset(preset_dir, "hf://me/tiny", model_card=False)
    assert FakeHubApi.calls[-1][2]["card"] is None
    assert FakeHubApi.calls[-1][2]["folder_path"] == str(preset_dir)


def test_a_card_with_unfilled_placeholders_is_never_uploaded(preset_dir, fake_hub):
    (fake_hub / f"{preset_dir.name}.md").write_text(CARD + "AUC {{CV_AUC}}\n")
    with pytest.raises(PresetError, match=r"unfilled placeholders: \{\{CV_AUC\}\}"):
        upload_preset(preset_dir, "hf://me/tiny")
    assert FakeHubApi.calls == []


def test_upload_command_names_the_card_it_published(preset_dir, fake_hub):
    from covidcxr_cli.app import app
    from typer.testing import CliRunner

    (fake_hub / f"{preset_dir.name}.md").write_text(CARD)
    result = CliRunner().invoke(app, ["upload", str(preset_dir), "hf://me/tiny"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert f"with the model card {fake_hub / (preset_dir.name + '.md')}" in text and "hf://me/tiny@abc123" in text
    (fake_hub / f"{preset_dir.name}.md").unlink()
    bare = CliRunner().invoke(app, ["upload", str(preset_dir), "hf://me/tiny"])
    assert bare.exit_code == 0 and "no model card found" in bare.stderr
    assert "uploading without one" in " ".join(bare.stderr.split())


def test_a_missing_card_is_said_before_the_upload(preset_dir, fake_hub, monkeypatch):
    from covidcxr_cli.app import app
    from typer.testing import CliRunner

    def stopped(self, repo_id, **kwargs):
        raise KeyboardInterrupt  # the user stops it on reading the warning
    monkeypatch.setattr(FakeHubApi, "create_repo", stopped)
    result = CliRunner().invoke(app, ["upload", str(preset_dir), "hf://me/tiny"])
    assert result.exit_code != 0 and "no model card found" in result.stderr


def test_registered_presets_find_their_card_in_model_cards():
    from keras_covidcxr.models.pipeline.pipeline_presets import PIPELINE_PRESETS
    from keras_covidcxr.presets.upload import find_model_card

    for name in PIPELINE_PRESETS:  # from the source tree here, from the data files of an installed wheel
        card = find_model_card(Path("somewhere") / name)
        assert card.is_file() and card.name == f"{name}.md" and card.parent.name == "model_cards", card


def test_a_registered_name_uploads_its_bundled_folder_and_an_untrained_one_is_refused(fake_hub):
    (fake_hub / "covidcxr_lite.md").write_text(CARD)
    assert upload_preset("covidcxr_lite", "hf://me/lite") == "hf://me/lite@abc123"
    (_, _, _), (_, _, uploaded) = FakeHubApi.calls
    assert uploaded["card"] == CARD and {"config.json", "out_of_distribution.npz"} <= set(uploaded["files"])
    assert uploaded["commit_message"] == "Upload keras-covidcxr preset covidcxr_lite"
    with pytest.raises(PresetError, match="no trained weights are published"):
        upload_preset("covidcxr_paper_binary_weighted_average", "hf://me/paper")
    assert len(FakeHubApi.calls) == 2


def test_an_unreachable_hub_is_a_preset_error_naming_the_handle(preset_dir, fake_hub, monkeypatch):
    class ConnectError(Exception):  # what the Hub client's transport raises offline: not an OSError
        pass

    def offline(self, repo_id, **kwargs):
        raise ConnectError("[Errno -2] Name or service not known")

    monkeypatch.setattr(FakeHubApi, "create_repo", offline)
    with pytest.raises(PresetError, match=r"hf://me/tiny: upload failed \(ConnectError: .*not known\)"):
        upload_preset(preset_dir, "hf://me/tiny", model_card=False)

import json
import shutil
import warnings

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from keras_covidcxr import (
    ConfigError,
    Pipeline,
    PresetError,
    ProbabilityCalibration,
    ReferRule,
    UntrainedPresetWarning,
    verify_preset,
)
from keras_covidcxr.presets.checksums import checksum_tree


def rewrite_checksums(folder):
    """Make a tampered preset self-consistent again, as a careful attacker would."""
    metadata = json.loads((folder / "metadata.json").read_text())
    metadata["files"] = checksum_tree(folder)
    (folder / "metadata.json").write_text(json.dumps(metadata))


@pytest.fixture
def preset_copy(preset_dir, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(preset_dir, folder)
    return folder


def test_layout_and_metadata(preset_dir, pipeline):
    files = sorted(p.relative_to(preset_dir).as_posix() for p in preset_dir.rglob("*") if p.is_file())
    assert files == [
        "config.json",
        "members/alpha/config.json",
        "members/alpha/model.safetensors",
        "members/beta/config.json",
        "members/beta/model.safetensors",
        "metadata.json",
        "segmenter/config.json",
        "segmenter/model.safetensors",
    ]
    metadata = json.loads((preset_dir / "metadata.json").read_text())
    assert set(metadata["files"]) == set(files) - {"metadata.json"}
    assert metadata["parameter_counts"]["segmenter"] == pipeline.segmenter.count_params()
    assert metadata["training"] == {"data": "synthetic test images", "recipe": "none"}
    config = json.loads((preset_dir / "config.json").read_text())
    assert config["format_version"] == 1
    assert config["class_names"] == ["non_covid", "covid"]
    assert config["input_contract"]["min_size"] == 64
    weights = load_file(str(preset_dir / "segmenter" / "model.safetensors"))
    assert "encoder1_conv1/kernel" in weights and "encoder1_bn2/moving_mean" in weights


@pytest.mark.parametrize(
    "kind,num_classes", [("weighted_average", 2), pytest.param("majority_vote", 3, marks=pytest.mark.slow)]
)
def test_round_trip_gives_identical_outputs(make_pipeline, chest_images, tmp_path, kind, num_classes):
    # a keras.applications member (a nested model, "/" in its layer names) next to a tiny default one
    original = make_pipeline(ensemble=kind, num_classes=num_classes, backbone=("densenet121", "resunet_encoder"))
    original.save_to_preset(tmp_path / "preset", training={"data": "test"})
    loaded = Pipeline.from_preset(str(tmp_path / "preset"))
    assert type(loaded.ensemble) is type(original.ensemble)
    assert loaded.get_config() == original.get_config()
    for a, b in zip(original.predict(chest_images), loaded.predict(chest_images)):
        assert a.label == b.label
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-6)
        np.testing.assert_array_equal(a.mask, b.mask)
    assert loaded.is_trained


def test_a_threshold_given_by_the_user_is_saved_with_the_preset(loaded_pipeline, make_pipeline, chest_images,
                                                                 tmp_path):
    calibrated = loaded_pipeline._sharing_models(calibration=ProbabilityCalibration("platt", slope=2.0, intercept=0.5),
                                                 refer_rule=ReferRule(0.4, 0.6, input_checks=True))
    chosen = calibrated.with_decision_threshold(0.3)
    chosen.save_to_preset(tmp_path / "chosen", training={"data": "test"})
    loaded = Pipeline.from_preset(str(tmp_path / "chosen"))
    assert loaded.decision_rule.threshold == pytest.approx(0.3) and loaded.decision_rule.origin == "preset"
    assert loaded.refer_rule == ReferRule(0.0, 0.0, input_checks=True)  # the band belonged to the old threshold
    assert [r.label for r in loaded.predict(chest_images)] == [r.label for r in chosen.predict(chest_images)]
    assert verify_preset(tmp_path / "chosen").problems == []
    changed = loaded.metadata["training"]["threshold_set_after_training"]  # the record's figures are the old rule's
    assert changed["rule"].startswith("covid if p(covid) >= 0.300") and changed["replaces"] == calibrated.decision_rule.describe()
    assert loaded.metadata["training"]["data"] == "test"
    from covidcxr_cli.app import app
    from typer.testing import CliRunner

    info = " ".join(CliRunner().invoke(app, ["info", str(tmp_path / "chosen")]).stdout.split())
    assert "threshold set after training: covid if p(covid) >= 0.300" in info and "at which the figures below" in info
    vote = make_pipeline(ensemble="majority_vote").with_decision_threshold(0.3)
    with pytest.raises(ConfigError, match="MajorityVoteEnsemble stores no threshold"):
        vote.save_to_preset(tmp_path / "vote")
    assert not (tmp_path / "vote").exists()


def test_tampered_weights_fail_the_checksum(preset_copy):
    path = preset_copy / "members" / "alpha" / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(PresetError, match="alpha/model.safetensors: checksum mismatch"):
        Pipeline.from_preset(preset_copy)


def test_weights_with_the_wrong_shape_are_refused(preset_copy):
    path = preset_copy / "segmenter" / "model.safetensors"
    weights = load_file(str(path))
    weights["mask/kernel"] = np.zeros((1, 1, 4, 2), "float32")
    save_file(weights, str(path))
    rewrite_checksums(preset_copy)
    with pytest.raises(PresetError, match=r"weight mask/kernel has shape \(1, 1, 4, 2\)"):
        Pipeline.from_preset(preset_copy)


def test_missing_or_extra_weights_are_refused(preset_copy):
    path = preset_copy / "segmenter" / "model.safetensors"
    weights = load_file(str(path))
    del weights["mask/bias"]
    weights["backdoor/kernel"] = np.zeros(3, "float32")
    save_file(weights, str(path))
    rewrite_checksums(preset_copy)
    with pytest.raises(PresetError, match=r"missing \['mask/bias'\].*unexpected \['backdoor/kernel'\]"):
        Pipeline.from_preset(preset_copy)


def test_unknown_classes_are_never_built(preset_copy):
    path = preset_copy / "members" / "beta" / "config.json"
    document = json.loads(path.read_text())
    document["registered_name"] = "builtins>eval"
    path.write_text(json.dumps(document))
    rewrite_checksums(preset_copy)
    with pytest.raises(PresetError, match="unknown class 'builtins>eval'"):
        Pipeline.from_preset(preset_copy)


def test_unknown_ensemble_is_refused(preset_copy):
    config = json.loads((preset_copy / "config.json").read_text())
    config["ensemble"]["class_name"] = "Lambda"
    (preset_copy / "config.json").write_text(json.dumps(config))
    rewrite_checksums(preset_copy)
    with pytest.raises(PresetError, match="unknown ensemble class 'Lambda'"):
        Pipeline.from_preset(preset_copy)


def test_a_config_may_not_load_weights_from_outside_the_preset(preset_copy, tmp_path):
    outside = tmp_path / "elsewhere.weights.h5"
    outside.write_bytes(b"anything")
    path = preset_copy / "members" / "beta" / "config.json"
    for value in (str(outside), "imagenet"):
        document = json.loads(path.read_text())
        document["config"]["backbone_weights"] = value
        path.write_text(json.dumps(document))
        rewrite_checksums(preset_copy)
        with pytest.raises(PresetError, match="backbone_weights must be null"):
            Pipeline.from_preset(preset_copy)


def test_an_input_contract_the_loader_cannot_meet_is_refused(preset_copy):
    for change in ({"channels": 3}, {"value_range": [0, 255]}):
        config = json.loads((preset_copy / "config.json").read_text())
        config["input_contract"] = {**config["input_contract"], "channels": 1, "value_range": [0.0, 1.0], **change}
        (preset_copy / "config.json").write_text(json.dumps(config))
        rewrite_checksums(preset_copy)
        with pytest.raises(PresetError, match="decodes every image to 1-channel gray in \\[0, 1\\]"):
            Pipeline.from_preset(preset_copy)


def _edit_config(folder, edit):
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))
    rewrite_checksums(folder)


@pytest.mark.parametrize("edit, reason", [
    (lambda c: c["preprocessing"].update(bbox_margin=-1), r"bbox_margin must lie in \[0, 0.5\)"),
    (lambda c: c["input_contract"].update(min_size="big"), "min_size must be a whole number, got 'big'"),
    (lambda c: c["input_contract"].update(min_size=-5), "need min_size >= 1"),
    (lambda c: c["preprocessing"].update(standardize="yes"), "standardize must be true or false"),
    (lambda c: c["ensemble"].update(class_name="MajorityVoteEnsemble"), "invalid pipeline config"),
    (lambda c: c.clear() or c.update(format_version=1), "invalid pipeline config"),
])
def test_edited_settings_are_refused_as_preset_errors(preset_copy, edit, reason):
    _edit_config(preset_copy, edit)
    with pytest.raises(PresetError, match=f"config.json: .*{reason}"):
        Pipeline.from_preset(preset_copy)


def test_a_json_file_that_is_not_an_object_is_named(preset_copy):
    (preset_copy / "metadata.json").write_text("[1, 2]")
    with pytest.raises(PresetError, match="metadata.json: expected a JSON object, got a list"):
        Pipeline.from_preset(preset_copy)


def test_missing_file_is_named(preset_copy):
    (preset_copy / "members" / "beta" / "model.safetensors").unlink()
    with pytest.raises(PresetError, match="beta/model.safetensors: missing file"):
        Pipeline.from_preset(preset_copy)


def test_unlisted_component_files_are_not_read(preset_copy):
    metadata = json.loads((preset_copy / "metadata.json").read_text())
    del metadata["files"]["segmenter/model.safetensors"]
    (preset_copy / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(PresetError, match="segmenter/model.safetensors: not listed in metadata.json"):
        Pipeline.from_preset(preset_copy)


def test_a_component_outside_the_preset_folder_is_refused(preset_copy):
    # it would load and verify here, then be published without it: a preset nobody else can load
    shutil.move(preset_copy / "segmenter", preset_copy.parent / "segmenter_elsewhere")
    config = json.loads((preset_copy / "config.json").read_text())
    config["segmenter"] = "../segmenter_elsewhere"
    (preset_copy / "config.json").write_text(json.dumps(config))
    metadata = json.loads((preset_copy / "metadata.json").read_text())
    metadata["files"] = {**checksum_tree(preset_copy), **{f"../segmenter_elsewhere/{name}": digest for name, digest
                                                           in checksum_tree(preset_copy.parent / "segmenter_elsewhere").items()}}
    (preset_copy / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(PresetError, match="lists '../segmenter_elsewhere/.*', a file outside the preset folder"):
        Pipeline.from_preset(preset_copy)
    with pytest.raises(PresetError, match="a file outside the preset folder"):
        verify_preset(preset_copy)


def test_other_format_versions_are_refused(preset_copy):
    config = json.loads((preset_copy / "config.json").read_text())
    config["format_version"] = 99
    (preset_copy / "config.json").write_text(json.dumps(config))
    rewrite_checksums(preset_copy)
    with pytest.raises(PresetError, match="format_version 99"):
        Pipeline.from_preset(preset_copy)


def test_not_a_preset(tmp_path):
    with pytest.raises(PresetError, match="no such preset"):
        Pipeline.from_preset(tmp_path / "nothing")
    with pytest.raises(PresetError, match=f"{tmp_path}: not a keras-covidcxr preset \\(no metadata.json\\)"):
        Pipeline.from_preset(tmp_path)
    (tmp_path / "an_export").mkdir()
    (tmp_path / "an_export" / "export.json").write_text("{}")
    with pytest.raises(PresetError, match="no metadata.json\\) but an export: run it with --exported"):
        Pipeline.from_preset(tmp_path / "an_export")
    with pytest.raises(PresetError, match="an empty preset handle"):
        Pipeline.from_preset("")
    for misspelled in ("covidcxr_litee", "covidcxr-lite", "Covidcxr_Lite"):
        with pytest.raises(PresetError, match="did you mean covidcxr_lite\\? registered names: .*covidcxr_lite"):
            Pipeline.from_preset(misspelled)
    (tmp_path / "metadata.json").write_text("{oops")
    with pytest.raises(PresetError, match="not valid JSON"):
        Pipeline.from_preset(tmp_path)


def test_saving_never_replaces_what_is_not_a_preset(pipeline, preset_copy, tmp_path):
    user_folder = tmp_path / "my_results"
    user_folder.mkdir()
    (user_folder / "notes.txt").write_text("precious")
    with pytest.raises(PresetError, match="exists and is not an empty folder"):
        pipeline.save_to_preset(user_folder, overwrite=True)
    assert (user_folder / "notes.txt").read_text() == "precious"
    # files that merely share a preset's names are not a preset either
    (user_folder / "config.json").write_text('{"my": "settings"}')
    (user_folder / "metadata.json").write_text('{"author": "me"}')
    with pytest.raises(PresetError, match="exists and is not an empty folder"):
        pipeline.save_to_preset(user_folder, overwrite=True)
    assert json.loads((user_folder / "config.json").read_text()) == {"my": "settings"}
    with pytest.raises(PresetError, match="overwrite=True"):
        pipeline.save_to_preset(preset_copy)
    pipeline.save_to_preset(preset_copy, overwrite=True)
    with pytest.warns(UntrainedPresetWarning):  # saved without training provenance
        Pipeline.from_preset(preset_copy)
    empty = tmp_path / "empty"
    empty.mkdir()
    pipeline.save_to_preset(empty)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_a_save_that_fails_midway_leaves_nothing(pipeline, tmp_path, monkeypatch):
    from keras_covidcxr.presets import component_io

    def fail(model, folder):
        raise OSError(28, "No space left on device", str(folder / "model.safetensors"))

    monkeypatch.setattr(component_io, "write_component", fail)
    with pytest.raises(OSError, match="No space left"):
        pipeline.save_to_preset(tmp_path / "preset")
    assert list(tmp_path.iterdir()) == []  # neither the preset nor its temporary folder


def test_an_untrained_preset_loads_with_a_warning(preset_dir, untrained_preset_dir):
    with pytest.warns(UntrainedPresetWarning, match="records no training"):
        assert not Pipeline.from_preset(untrained_preset_dir).is_trained
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainedPresetWarning)
        assert Pipeline.from_preset(preset_dir).is_trained


def test_a_saved_preset_is_shareable_under_the_users_umask(pipeline, set_umask, tmp_path):
    set_umask(0o027)
    folder = pipeline.save_to_preset(tmp_path / "preset")
    written = [folder, *folder.rglob("*")]
    assert len([path for path in written if path.name == "model.safetensors"]) == 3
    for path in written:
        assert path.stat().st_mode & 0o777 == (0o750 if path.is_dir() else 0o640), path


def test_a_destination_that_cannot_be_a_preset_is_named(pipeline, tmp_path):
    for folder in (None, 42, ""):
        with pytest.raises(PresetError, match="save_to_preset needs a folder path"):
            pipeline.save_to_preset(folder)
    blocked = tmp_path / "a_file"
    blocked.write_text("not a folder")
    with pytest.raises(OSError, match=r"cannot write the preset there: .*: '.*a_file/preset'") as error:
        pipeline.save_to_preset(blocked / "preset")  # its parent is a file: the folder cannot be made
    assert ".tmp" not in str(error.value) and blocked.read_text() == "not a folder"

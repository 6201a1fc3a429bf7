"""What a training step accepts as its folders: its own runs only, finished before they are built upon."""

import json
from types import SimpleNamespace

import pytest

from keras_covidcxr import ConfigError, PresetError
from keras_covidcxr.training.checkpoints import RUN_FILE, TrainingCheckpoint, load_checkpoint


def test_an_unfinished_run_is_refused_where_a_finished_one_is_needed(tmp_path):
    run = tmp_path / "clf"
    run.mkdir()
    (run / RUN_FILE).write_text("{}")  # started: best/ may exist, summary.json not yet
    with pytest.raises(ConfigError, match="its classifier training has not finished .* rerun its `covidcxr train "
                                          "classifier` command to finish it"):
        TrainingCheckpoint(run).require_finished("classifier")
    with pytest.raises(ConfigError, match="has not finished"):  # nor by naming its best/ folder
        TrainingCheckpoint.of(run / "best").require_finished("classifier")
    TrainingCheckpoint(run).write_summary({"component": "classifier"})
    TrainingCheckpoint.of(run / "best").require_finished("classifier")
    assert TrainingCheckpoint.of(run / "best").read_summary() == {"component": "classifier"}
    component = tmp_path / "best"  # a component folder of no run has neither file
    component.mkdir()
    (component / "config.json").write_text("{}")
    TrainingCheckpoint.of(component).require_finished("classifier")


def test_training_never_starts_in_a_folder_of_something_else(tmp_path):
    mine = tmp_path / "mine"
    (mine / "best").mkdir(parents=True)  # a folder of the user's named like a run's: still the user's
    (mine / "best" / "my_model.txt").write_text("keep")
    (mine / "summary.json").write_text("")
    with pytest.raises(ConfigError, match="exists and is not a training run folder"):
        TrainingCheckpoint(mine).refuse_foreign_folder()
    preset = tmp_path / "preset"
    preset.mkdir()
    (preset / "metadata.json").write_text("{}")
    with pytest.raises(ConfigError, match="is a preset"):
        TrainingCheckpoint(preset).refuse_foreign_folder()
    with pytest.raises(PresetError, match="is a preset, not a training run folder"):
        load_checkpoint(preset)  # given as --segmenter or --member
    (tmp_path / "empty").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / RUN_FILE).write_text(json.dumps({"component": "segmenter"}))
    for fine in (tmp_path / "absent", tmp_path / "empty", tmp_path / "run"):
        TrainingCheckpoint(fine).refuse_foreign_folder()
    assert (mine / "best" / "my_model.txt").read_text() == "keep"


def test_members_that_disagree_are_named_with_what_differs():
    from keras_covidcxr.training.recipes import _agreeing, _refuse_different_inputs

    members = [SimpleNamespace(image_shape=(96, 96, 1)), SimpleNamespace(image_shape=(96, 96, 3))]
    with pytest.raises(ConfigError, match=r"different inputs \(a: 96 px, 1 channel \(--imagenet-normalization\); "
                                          r"b: 96 px, 3 channels\)"):
        _refuse_different_inputs(["a", "b"], members)
    summaries = [{"class_names": ["non_covid", "covid"], "preprocessing": {"masking": "bbox", "bbox_margin": 0.025}},
                 {"class_names": ["covid", "normal", "pneumonia"],
                  "preprocessing": {"masking": "hard", "bbox_margin": 0.025}}]
    with pytest.raises(ConfigError, match=r"different class_names: a: \['non_covid', 'covid'\]; b: \['covid', "):
        _agreeing(["a", "b"], summaries, "class_names", None)
    with pytest.raises(ConfigError, match=r"different preprocessing: a: \{'masking': 'bbox'\}; b: \{'masking': 'hard'\}$"):
        _agreeing(["a", "b"], summaries, "preprocessing", None)
    assert _agreeing(["a", "b"], [summaries[0], None], "class_names", None) == ["non_covid", "covid"]

"""Checkpoint folders a user can share: the umask's modes, not the atomic temporary's private ones."""

import pytest

from keras_covidcxr import PresetError, ResUnet
from keras_covidcxr.training.checkpoints import TrainingCheckpoint


def test_checkpoint_files_and_folders_follow_the_umask(set_umask, tmp_path):
    set_umask(0o022)
    model = ResUnet(input_size=32, filters=(2, 4))
    model.compile(optimizer="adam", loss="binary_crossentropy")
    checkpoint = TrainingCheckpoint(tmp_path / "run")
    checkpoint.save_best(model)
    checkpoint.save_state(model, epoch=1, state={"monitored": 0.5}, with_optimizer=False)
    checkpoint.write_summary({"epochs": 1})
    written = sorted((tmp_path / "run").rglob("*"))
    assert [path.relative_to(tmp_path).as_posix() for path in written if path.is_file()] == [
        "run/best/config.json",
        "run/best/model.safetensors",
        "run/state/epoch-0001/state.json",
        "run/state/epoch-0001/weights.safetensors",
        "run/summary.json",
    ]
    for path in written:
        assert path.stat().st_mode & 0o777 == (0o755 if path.is_dir() else 0o644), path


def test_loading_from_a_folder_that_is_not_a_run_says_what_is_expected(tmp_path):
    with pytest.raises(PresetError, match=r"covidcxr_lite: no such training run folder \(the --out folder"):
        TrainingCheckpoint(tmp_path / "covidcxr_lite").load_best()
    (tmp_path / "started").mkdir()
    with pytest.raises(PresetError, match="no best checkpoint"):
        TrainingCheckpoint(tmp_path / "started").load_best()

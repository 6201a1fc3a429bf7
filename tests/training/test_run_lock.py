"""Two training runs into one checkpoint folder: the second is refused while the first trains."""

import subprocess
import sys
import textwrap

import pytest

from keras_covidcxr import ConfigError
from keras_covidcxr.training import TrainingConfig, run_segmenter_recipe
from keras_covidcxr.training.checkpoints import TrainingCheckpoint

pytest.importorskip("fcntl", reason="advisory file locks are POSIX only")

HOLD = textwrap.dedent("""
    import sys
    from keras_covidcxr.training.checkpoints import TrainingCheckpoint
    TrainingCheckpoint(sys.argv[1]).lock()
    print("locked", flush=True)
    sys.stdin.read()  # hold the lock until the test closes stdin
""")


def config():
    return TrainingConfig(epochs=1, batch_size=4, workers=1, run_eagerly=True, augment=False)


def test_a_second_run_into_a_folder_in_use_is_refused_until_the_first_ends(synthetic_manifest, tmp_path):
    folder = tmp_path / "seg"
    other = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "locked"
        with pytest.raises(ConfigError, match=rf"seg: another training run \(pid {other.pid}\) is writing to this"):
            run_segmenter_recipe(synthetic_manifest, folder, input_size=32, filters=(4, 8), config=config())
        assert not (folder / "best").exists()
    finally:
        other.communicate("", timeout=60)
    result = run_segmenter_recipe(synthetic_manifest, folder, input_size=32, filters=(4, 8), config=config())
    assert result.best_epoch == 1


def test_a_finished_or_refused_run_lets_the_next_one_in(synthetic_manifest, tmp_path):
    folder = tmp_path / "seg"
    run_segmenter_recipe(synthetic_manifest, folder, input_size=32, filters=(4, 8), config=config())
    with pytest.raises(ConfigError, match="holds a run on other data or settings"):
        run_segmenter_recipe(synthetic_manifest, folder, input_size=32, filters=(4, 8),
                             config=TrainingConfig(epochs=1, batch_size=2, workers=1, run_eagerly=True, augment=False))
    probe = subprocess.run([sys.executable, "-c", HOLD, str(folder)], input="", capture_output=True, text=True,
                           timeout=120)
    assert probe.returncode == 0 and probe.stdout.strip() == "locked", probe.stderr[-2000:]
    assert TrainingCheckpoint(folder).latest_state()["epoch"] == 1

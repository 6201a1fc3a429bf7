"""Test-time augmentation: reproducible small variants, and tta=1 is plain prediction."""

import numpy as np
import pytest

from keras_covidcxr import ConfigError
from keras_covidcxr.preprocessing.test_time_augmentation import test_time_variants as variants_of


def test_variants_are_small_reproducible_changes_of_the_batch():
    rng = np.random.default_rng(0)
    batch = rng.random((3, 40, 40, 1)).astype("float32")
    first, second = variants_of(batch, 4), variants_of(batch, 4)
    assert len(first) == 4 and first[0] is batch
    for a, b in zip(first[1:], second[1:]):
        np.testing.assert_array_equal(a, b)
        assert a.shape == batch.shape and a.dtype == batch.dtype
        assert 0 < np.abs(a - batch).mean() < 0.5
        assert a.min() >= batch.min() and a.max() <= batch.max()
    # the same image gets the same variant whatever else is in the batch
    np.testing.assert_array_equal(variants_of(batch[:1], 3)[2], first[2][:1])


@pytest.mark.parametrize("count", [0, -1, 1.5, True])
def test_bad_counts_are_refused(count):
    with pytest.raises(ConfigError, match="tta"):
        variants_of(np.zeros((1, 8, 8, 1)), count)


def test_tta_of_one_is_plain_prediction_and_more_reports_a_spread(loaded_pipeline, chest_images):
    plain = loaded_pipeline.predict(chest_images)
    same = loaded_pipeline.predict(chest_images, tta=1)
    augmented = loaded_pipeline.predict(chest_images, tta=3)
    for a, b, c in zip(plain, same, augmented):
        assert a.probabilities == b.probabilities and a.label == b.label
        assert a.uncertainty["tta"] == 1 and a.uncertainty["tta_spread"] is None
        assert c.uncertainty["tta"] == 3 and c.uncertainty["tta_spread"] >= 0
        assert sum(c.probabilities.values()) == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="tta"):
        loaded_pipeline.predict(chest_images[:1], tta=0)


def test_the_public_name_is_not_collected_as_a_test_in_users_test_modules(tmp_path):
    import subprocess
    import sys

    (tmp_path / "test_users.py").write_text("from keras_covidcxr import test_time_variants\n\n\n"
                                            "def test_mine():\n    assert test_time_variants\n")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0 and "1 passed" in run.stdout, run.stdout[-2000:]

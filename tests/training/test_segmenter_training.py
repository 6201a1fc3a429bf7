"""Segmenter training: the loss goes down, the best checkpoint is kept, a killed run resumes."""

import json

import keras
import numpy as np
import pytest

from keras_covidcxr import ResUnet
from keras_covidcxr.training import (
    SEGMENTER_AUGMENTATION,
    Augmenter,
    SegmentationDataset,
    TrainingCheckpoint,
    TrainingConfig,
    load_checkpoint,
    train_segmenter,
)


def tiny_segmenter():
    return ResUnet(input_size=32, filters=(4, 8, 16))


def datasets(manifest, augment=False, batch_size=6):
    train = SegmentationDataset(
        manifest.filter(split="train"),
        32,
        batch_size=batch_size,
        augmenter=Augmenter(SEGMENTER_AUGMENTATION, seed=1) if augment else None,
        shuffle=True,
    )
    val = SegmentationDataset(manifest.filter(split="val"), 32, batch_size=batch_size)
    return train, val


def test_segmentation_batches_are_model_ready(synthetic_manifest):
    train, _ = datasets(synthetic_manifest, augment=True)
    images, masks = train[0]
    assert images.shape == (6, 32, 32, 1) and masks.shape == (6, 32, 32, 1)
    assert set(np.unique(masks)) <= {0.0, 1.0}
    np.testing.assert_allclose(images.mean(axis=(1, 2, 3)), 0.0, atol=1e-4)
    np.testing.assert_allclose(images.std(axis=(1, 2, 3)), 1.0, atol=1e-3)


def test_loss_goes_down_and_best_checkpoint_is_written(synthetic_manifest, tmp_path):
    keras.utils.set_random_seed(0)
    train, val = datasets(synthetic_manifest)
    config = TrainingConfig(epochs=6, learning_rate=3e-3, batch_size=6, patience=0, workers=1, run_eagerly=True)
    result = train_segmenter(tiny_segmenter(), train, val, config, checkpoint_dir=tmp_path / "run")
    losses = [epoch["loss"] for epoch in result.history]
    assert losses[-1] < losses[0]
    assert result.monitor == "val_dice" and result.best_value == max(e["val_dice"] for e in result.history)
    best = load_checkpoint(tmp_path / "run")
    for saved, kept in zip(best.get_weights(), result.model.get_weights()):
        np.testing.assert_array_equal(saved, kept)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["best_epoch"] == result.best_epoch


class KillAfterEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise KeyboardInterrupt("simulated kill")


class RecordStart(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.weights = [np.array(w) for w in self.model.get_weights()]
        self.iterations = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        self.first_epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.first_epoch is None:
            self.first_epoch = epoch


def test_a_mask_of_another_size_than_its_image_is_refused_naming_both(tmp_path):
    from PIL import Image

    from keras_covidcxr.data import DatasetError, read_manifest
    from keras_covidcxr.training import write_synthetic_dataset

    manifest = read_manifest(write_synthetic_dataset(tmp_path, patients_per_class=1, size=64))
    row = next(row for row in manifest if row.task == "seg")
    mask_file = manifest.resolve_mask(row)
    Image.open(mask_file).resize((64, 48)).save(mask_file)  # stretched to the square input, it would miss the lungs
    dataset = SegmentationDataset(manifest, 32)
    index = dataset.masks.index(mask_file)
    with pytest.raises(DatasetError, match=rf"{row.mask_path}: mask 64x48 px, its image .*{row.path} 64x64 px"):
        dataset.pair(index)


def test_killed_run_resumes_from_its_checkpoint(synthetic_manifest, tmp_path):
    keras.utils.set_random_seed(0)
    config = TrainingConfig(epochs=3, batch_size=6, patience=0, workers=1, run_eagerly=True)
    run = tmp_path / "run"
    killed = tiny_segmenter()
    train, val = datasets(synthetic_manifest)
    with pytest.raises(KeyboardInterrupt):
        train_segmenter(killed, train, val, config, checkpoint_dir=run, callbacks=[KillAfterEpoch(1)])
    state = TrainingCheckpoint(run).latest_state()
    assert state["epoch"] == 1 and len(state["history"]) == 1
    steps_per_epoch = len(train)

    fresh, start = tiny_segmenter(), RecordStart()
    train, val = datasets(synthetic_manifest)
    result = train_segmenter(fresh, train, val, config, checkpoint_dir=run, callbacks=[start])
    assert start.first_epoch == 1  # 0-based: the second epoch
    assert start.iterations == steps_per_epoch  # Adam's step count came back too
    for resumed, at_kill in zip(start.weights, killed.get_weights()):
        np.testing.assert_array_equal(resumed, at_kill)
    assert [e["epoch"] for e in result.history] == [1, 2, 3]
    assert result.resumed_from_epoch == 1


def test_the_recipe_seed_fixes_the_initial_weights_too(synthetic_manifest, tmp_path):
    from safetensors.numpy import load_file

    from keras_covidcxr import run_segmenter_recipe

    def run(folder, seed):
        config = TrainingConfig(epochs=1, batch_size=4, workers=1, run_eagerly=True, augment=False, seed=seed)
        run_segmenter_recipe(synthetic_manifest, tmp_path / folder, input_size=32, filters=(4, 8), config=config)
        return load_file(str(tmp_path / folder / "best" / "model.safetensors"))

    keras.utils.set_random_seed(123)  # whatever the process did before
    first = run("a", seed=0)
    keras.utils.set_random_seed(456)
    second, other = run("b", seed=0), run("c", seed=1)
    assert all(np.array_equal(first[key], second[key]) for key in first)
    assert not all(np.array_equal(first[key], other[key]) for key in first)


def test_a_run_resumes_whether_its_manifest_comes_as_a_path_or_as_rows(synthetic_manifest_path, tmp_path):
    from keras_covidcxr import run_segmenter_recipe
    from keras_covidcxr.data import read_manifest

    def config(epochs):
        return TrainingConfig(epochs=epochs, batch_size=4, workers=1, run_eagerly=True, augment=False)

    run_segmenter_recipe(read_manifest(synthetic_manifest_path), tmp_path / "seg", input_size=32, filters=(4, 8),
                         config=config(1))
    result = run_segmenter_recipe(synthetic_manifest_path, tmp_path / "seg", input_size=32, filters=(4, 8),
                                  config=config(2))
    assert result.resumed_from_epoch == 1

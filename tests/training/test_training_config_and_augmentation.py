"""TrainingConfig checks, mixed precision rebuilds, and paired augmentation."""

import numpy as np
import pytest

from keras_covidcxr import ConfigError, ResUnet, TrainingConfig
from keras_covidcxr.training import (
    CLASSIFIER_AUGMENTATION,
    SEGMENTER_AUGMENTATION,
    Augmenter,
    DiceBCELoss,
    DiceCoefficient,
)
from keras_covidcxr.training.config import under_dtype_policy


def test_config_defaults_are_the_papers_and_round_trip():
    config = TrainingConfig()
    assert (config.batch_size, config.head_epochs, config.finetune_learning_rate, config.epochs) == (32, 5, 1e-5, 45)
    assert TrainingConfig.from_dict(config.to_dict()) == config
    for bad in ({"mixed_precision": "float8"}, {"unfreeze_schedule": (0.5, 0.25)}, {"jit_compile": "yes"},
                {"batch_size": 0}, {"learning_rate": -1.0}, {"head_learning_rate": 0.0},
                {"finetune_learning_rate": float("nan")}):
        with pytest.raises(ConfigError):
            TrainingConfig(**bad)
    assert TrainingConfig(jit_compile=True, steps_per_execution=8).compile_options() == {
        "jit_compile": True, "steps_per_execution": 8, "run_eagerly": False}


def test_mixed_precision_rebuilds_the_model_with_the_same_weights():
    model = ResUnet(input_size=32, filters=(4, 8, 16))
    mixed = under_dtype_policy(model, "mixed_bfloat16")
    assert mixed is not model and mixed.dtype_policy.name == "mixed_bfloat16"
    assert mixed.get_layer("encoder1_conv1").compute_dtype == "bfloat16"
    for a, b in zip(model.get_weights(), mixed.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert under_dtype_policy(model, None) is model
    assert model.get_config() == mixed.get_config()  # the preset stores no dtype


def test_paper_augmentation_settings():
    assert CLASSIFIER_AUGMENTATION.to_dict() == {"rotation_degrees": 15.0, "shift": 0.15, "shear": 0.15,
                                                 "zoom": 0.15, "horizontal_flip": True}
    assert SEGMENTER_AUGMENTATION.to_dict() == {"rotation_degrees": 180.0, "shift": 0.30, "shear": 0.20,
                                                "zoom": 0.20, "horizontal_flip": True}
    layers = [type(layer).__name__ for layer in Augmenter(SEGMENTER_AUGMENTATION).layers]
    assert layers == ["RandomRotation", "RandomTranslation", "RandomShear", "RandomZoom", "RandomFlip"]


def test_image_and_mask_get_the_same_transform():
    masks = np.zeros((4, 48, 48, 1), "float32")
    masks[:, 8:30, 10:22] = 1.0
    masks[:, 12:40, 28:40] = 1.0
    images = masks * 0.9 + 0.05  # the image shows exactly the mask
    out_images, out_masks = Augmenter(SEGMENTER_AUGMENTATION, seed=3).augment_pairs(images, masks)
    assert set(np.unique(out_masks)) <= {0.0, 1.0}
    assert not np.array_equal(out_masks, masks)  # something moved
    agreement = np.mean((out_images >= 0.5) == (out_masks >= 0.5))
    assert agreement > 0.99


def test_dice_loss_and_metric_on_known_masks():
    truth = np.zeros((2, 8, 8, 1), "float32")
    truth[:, :4] = 1
    assert float(DiceBCELoss()(truth, np.clip(truth, 0.001, 0.999))) < 0.02
    assert float(DiceBCELoss()(truth, 1 - truth)) > 1.0
    metric = DiceCoefficient()
    half = truth.copy()
    half[:, :2] = 0  # predicts half of the lung
    metric.update_state(truth, half)
    assert float(metric.result()) == pytest.approx(2 * 16 / (32 + 16))
    metric.reset_state()
    metric.update_state(np.zeros_like(truth), np.zeros_like(truth))
    assert float(metric.result()) == 1.0

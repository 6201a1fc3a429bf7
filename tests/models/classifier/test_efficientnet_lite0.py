"""EfficientNet-Lite0: the architecture, the PyTorch name table, and the converted ImageNet weights."""

from pathlib import Path

import numpy as np
import pytest

from keras_covidcxr import ConfigError
from keras_covidcxr.models.classifier.convert_efficientnet_lite0 import (
    convert_efficientnet_lite0,
    efficientnet_lite0_name_table,
)
from keras_covidcxr.models.classifier.efficientnet_lite import EfficientNetLite0

SHARED_WEIGHTS = Path(__file__).resolve().parents[4] / "shared" / "weights"
CHECKPOINT = SHARED_WEIGHTS / "efficientnet_lite0_imagenet.safetensors"
REFERENCE = SHARED_WEIGHTS / "efficientnet_lite0_reference.npz"


@pytest.fixture(scope="module")
def lite0_with_top():
    return EfficientNetLite0(include_top=True)


def random_torch_checkpoint(model, seed=0):
    """A state dict in PyTorch layout with the shapes the name table expects (and step counters)."""
    rng = np.random.default_rng(seed)
    to_torch = {"conv": (3, 2, 0, 1), "depthwise": (2, 3, 0, 1), "dense": (1, 0)}
    checkpoint = {}
    for layer, variable, torch_name, layout in efficientnet_lite0_name_table(include_top=True):
        shape = next(v.shape for v in model.get_layer(layer).weights if v.path.endswith("/" + variable))
        value = rng.uniform(0.5, 1.5, size=shape).astype("float32")
        checkpoint[torch_name] = np.transpose(value, to_torch[layout]) if layout in to_torch else value
        if torch_name.endswith("running_var"):
            checkpoint[torch_name.replace("running_var", "num_batches_tracked")] = np.zeros((), "int64")
    return checkpoint


def test_lite0_has_the_published_size(lite0_with_top):
    trainable = sum(int(np.prod(v.shape)) for v in lite0_with_top.trainable_weights)
    assert trainable == 4_652_008  # the original's learnable parameters
    assert lite0_with_top.output_shape == (None, 1000)
    no_top = EfficientNetLite0(input_shape=(224, 224, 3))
    assert no_top.output_shape == (None, 7, 7, 1280)
    assert sum(int(np.prod(v.shape)) for v in no_top.trainable_weights) == 3_371_008


def test_every_variable_comes_from_its_tensor_in_keras_layout(lite0_with_top):
    checkpoint = random_torch_checkpoint(lite0_with_top)
    read = convert_efficientnet_lite0(checkpoint, lite0_with_top)
    assert read == len(checkpoint) == 296
    table = efficientnet_lite0_name_table(include_top=True)
    assert len({(layer, variable) for layer, variable, _, _ in table}) == len(lite0_with_top.weights)
    stem = lite0_with_top.get_layer("stem_conv").kernel
    np.testing.assert_array_equal(np.asarray(stem), np.transpose(checkpoint["_conv_stem.weight"], (2, 3, 1, 0)))
    depthwise = lite0_with_top.get_layer("block5_dwconv").kernel
    np.testing.assert_array_equal(
        np.asarray(depthwise), np.transpose(checkpoint["_blocks.5._depthwise_conv.weight"], (2, 3, 0, 1))
    )
    moving_variance = lite0_with_top.get_layer("top_bn").moving_variance
    np.testing.assert_array_equal(np.asarray(moving_variance), checkpoint["_bn1.running_var"])
    np.testing.assert_array_equal(np.asarray(lite0_with_top.get_layer("predictions").kernel),
                                  checkpoint["_fc.weight"].T)


def test_a_missing_or_foreign_tensor_is_refused(lite0_with_top):
    checkpoint = random_torch_checkpoint(lite0_with_top)
    incomplete = {k: v for k, v in checkpoint.items() if k != "_blocks.3._bn1.running_mean"}
    with pytest.raises(ConfigError, match="missing.*_blocks.3._bn1.running_mean"):
        convert_efficientnet_lite0(incomplete, lite0_with_top)
    with pytest.raises(ConfigError, match="unused.*_blocks.16"):
        convert_efficientnet_lite0({**checkpoint, "_blocks.16._bn0.weight": np.ones(3, "float32")}, lite0_with_top)
    wrong = {**checkpoint, "_bn0.weight": np.ones(7, "float32")}
    with pytest.raises(ConfigError, match="_bn0.weight: shape"):
        convert_efficientnet_lite0(wrong, lite0_with_top)


@pytest.mark.skipif(not (CHECKPOINT.is_file() and REFERENCE.is_file()),
                    reason="the shared EfficientNet-Lite0 checkpoint (../shared/weights) is not on this machine")
def test_converted_imagenet_weights_reproduce_the_pytorch_reference(lite0_with_top):
    import keras

    convert_efficientnet_lite0(CHECKPOINT, lite0_with_top)
    reference = np.load(REFERENCE)
    images = np.transpose(reference["input"], (0, 2, 3, 1))  # NCHW -> NHWC
    logits = keras.ops.convert_to_numpy(lite0_with_top(images, training=False))
    np.testing.assert_allclose(logits, reference["logits"], atol=1e-4, rtol=1e-4)
    features = keras.Model(lite0_with_top.input, lite0_with_top.get_layer("top_relu6").output)(images)
    pooled = keras.ops.convert_to_numpy(features).mean(axis=(1, 2))
    np.testing.assert_allclose(pooled, reference["features"], atol=1e-4, rtol=1e-4)

"""Grad-CAM against its closed form: with a pooling -> dense head it equals CAM.

CI runs this file on TensorFlow and on JAX (see .ci/run).
"""

import numpy as np
import pytest
from keras import ops

from keras_covidcxr import ConfigError, CXRClassifier, GradCAM, WeightedAverageEnsemble

SIZE = 64


def cam_closed_form(model, images, class_index):
    """relu(A . W[:, c]) upsampled and scaled to [0, 1] (Zhou et al.'s CAM)."""
    features = ops.convert_to_numpy(model.feature_extractor(images))
    kernel = ops.convert_to_numpy(model.head.get_layer("head_logits").kernel)
    weights = kernel[:, class_index] if model.num_classes > 2 else (kernel[:, 0] if class_index else -kernel[:, 0])
    cam = np.maximum(features @ weights, 0)[..., None]
    cam = ops.convert_to_numpy(ops.image.resize(cam, (SIZE, SIZE), interpolation="bilinear"))[..., 0]
    peaks = cam.reshape(len(cam), -1).max(axis=1)[:, None, None]
    return np.where(peaks > 0, cam / np.where(peaks > 0, peaks, 1), 0)  # an all-negative map stays zero


def lean_towards_class(model, class_index, seed):
    """Random logit weights whose mean leans towards `class_index`, so its map is never all zero."""
    kernel = model.head.get_layer("head_logits").kernel
    lean = -0.5 if (model.num_classes == 2 and class_index == 0) else 0.5
    column = class_index if model.num_classes > 2 else 0
    values = np.random.default_rng(seed).normal(size=kernel.shape).astype("float32")
    values[:, column] += lean
    kernel.assign(values)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(3).normal(size=(2, SIZE, SIZE, 3)).astype("float32")


@pytest.mark.parametrize("num_classes,class_index", [(3, 0), (3, 2), (2, 1), (2, 0)])
def test_grad_cam_equals_cam_for_a_pooling_dense_head(images, num_classes, class_index):
    model = CXRClassifier("densenet121", num_classes=num_classes, head_units=0, input_shape=(SIZE, SIZE, 3))
    lean_towards_class(model, class_index, seed=5)
    expected = cam_closed_form(model, images, class_index)
    assert expected.max() == 1.0 and np.ptp(expected) > 0.01  # a map with structure
    heatmaps = GradCAM(model)(images, class_index)
    assert heatmaps.shape == (2, SIZE, SIZE)
    np.testing.assert_allclose(heatmaps, expected, atol=1e-4)


def test_ensemble_map_is_the_weighted_sum_of_member_maps(images):
    members = [
        CXRClassifier("densenet121", num_classes=3, head_units=0, input_shape=(SIZE, SIZE, 3), name=n)
        for n in ("a", "b")
    ]
    for seed, member in enumerate(members):
        lean_towards_class(member, class_index=1, seed=seed)
    grad_cam = GradCAM(WeightedAverageEnsemble(members, weights=[3, 1]))
    per_member = grad_cam.member_heatmaps(images, 1)
    assert all(np.ptp(m) > 0.01 for m in per_member.values())
    combined = 0.75 * per_member["a"] + 0.25 * per_member["b"]
    combined /= combined.reshape(2, -1).max(axis=1)[:, None, None]
    np.testing.assert_allclose(grad_cam(images, 1), combined, atol=1e-5)
    assert grad_cam(images, 1).min() >= 0 and grad_cam(images, 1).max() == pytest.approx(1.0)


def test_a_hidden_dense_head_still_gives_unit_scaled_maps(images):
    model = CXRClassifier("densenet121", num_classes=2, head_units=16, input_shape=(SIZE, SIZE, 3))
    heatmaps = GradCAM(model)(images, 1)
    assert heatmaps.shape == (2, SIZE, SIZE) and heatmaps.dtype == np.float32
    assert np.all((heatmaps >= 0) & (heatmaps <= 1))


def test_bad_targets_are_refused(images):
    model = CXRClassifier("densenet121", num_classes=3, head_units=0, input_shape=(SIZE, SIZE, 3))
    with pytest.raises(ConfigError):
        GradCAM(model)(images, 3)
    with pytest.raises(ConfigError):
        GradCAM(object())

"""Grad-CAM against its closed form: with a pooling -> dense head it equals CAM.

CI runs this file on TensorFlow and on JAX (see .ci/run).
"""

import keras
import numpy as np
import pytest
from keras import ops

from keras_covidcxr import ConfigError, CXRClassifier, GradCAM, InputError, WeightedAverageEnsemble
from keras_covidcxr.explain.upsampling import upsample_heatmaps
from keras_covidcxr.preprocessing.resize import resize_image

SIZE = 64
IMAGENET_BACKBONE = "densenet121"  # a nested keras.applications model with a 2x2 map at SIZE


def classifier(num_classes, head_units=0, backbone="resunet_encoder", name=None, mirror_average=False):
    """A classifier at SIZE: by default a small ResUnet encoder (a 16x16x16 feature map), which builds and
    traces its gradients ~10x faster than IMAGENET_BACKBONE; Grad-CAM reads any backbone's map the same way."""
    return CXRClassifier(backbone, num_classes=num_classes, head_units=head_units, input_shape=(SIZE, SIZE, 3),
                         encoder_filters=(4, 8, 16), name=name, mirror_average=mirror_average)


def cam_closed_form(model, images, class_index):
    """relu(A . W[:, c]) upsampled and scaled to [0, 1] (Zhou et al.'s CAM)."""
    features = ops.convert_to_numpy(model.feature_extractor(images))
    kernel = ops.convert_to_numpy(model.head.get_layer("head_logits").kernel)
    weights = kernel[:, class_index] if model.num_classes > 2 else (kernel[:, 0] if class_index else -kernel[:, 0])
    cam = upsample_heatmaps(np.maximum(features @ weights, 0), (SIZE, SIZE))
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


def split_predictions(model, images):
    """Set the logit biases so that the two images are predicted as different classes; return them."""
    logits_layer = model.head.get_layer("head_logits")
    logits_layer.bias.assign(np.zeros(logits_layer.bias.shape, "float32"))
    logits = ops.convert_to_numpy(model.head(model.feature_extractor(images)))
    if model.num_classes == 2:  # the sigmoid's 0.5 sits between the two images' logits
        bias, classes = [-logits[:, 0].mean()], (logits[:, 0] > logits[:, 0].mean()).astype(int)
    else:  # only classes c0 and c1 can win; image 0 picks c0, image 1 picks c1
        gap = logits[1] - logits[0]
        c0, c1 = int(gap.argmin()), int(gap.argmax())
        bias = np.full(model.num_classes, -1e3)
        bias[c0] = 0.0
        bias[c1] = 0.5 * ((logits[1, c0] - logits[1, c1]) + (logits[0, c0] - logits[0, c1]))
        classes = np.asarray([c0, c1])
    logits_layer.bias.assign(np.asarray(bias, "float32"))
    return classes


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(3).normal(size=(2, SIZE, SIZE, 3)).astype("float32")


@pytest.mark.parametrize("num_classes,class_index,backbone", [(3, 0, "resunet_encoder"), (3, 2, IMAGENET_BACKBONE),
                                                              (2, 1, "resunet_encoder"), (2, 0, "resunet_encoder"),
                                                              (2, 1, "mirror_averaged")])
def test_grad_cam_equals_cam_for_a_pooling_dense_head(images, num_classes, class_index, backbone):
    # "mirror_averaged": the bundled preset's members' map (the image's and its mirror image's, averaged)
    mirror = backbone == "mirror_averaged"
    model = classifier(num_classes, backbone="resunet_encoder" if mirror else backbone, mirror_average=mirror)
    lean_towards_class(model, class_index, seed=5)
    expected = cam_closed_form(model, images, class_index)
    assert expected.max() == 1.0 and np.ptp(expected) > 0.01  # a map with structure
    heatmaps = GradCAM(model)(images, class_index)
    assert heatmaps.shape == (2, SIZE, SIZE)
    np.testing.assert_allclose(heatmaps, expected, atol=1e-4)


def test_ensemble_map_is_the_weighted_sum_of_member_maps(images):
    members = [classifier(3, name=n) for n in ("a", "b")]
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
    model = classifier(2, head_units=16)
    heatmaps = GradCAM(model)(images, 1)
    assert heatmaps.shape == (2, SIZE, SIZE) and heatmaps.dtype == np.float32
    assert np.all((heatmaps >= 0) & (heatmaps <= 1))


def test_bad_targets_are_refused(images):
    model = classifier(3)
    with pytest.raises(ConfigError):
        GradCAM(model)(images, 3)
    with pytest.raises(ConfigError):
        GradCAM(object())


def test_images_not_shaped_as_the_members_inputs_are_named(images):
    explain = GradCAM(classifier(2))
    for wrong in (images[0], images[..., :1], images[:, :-8, :-8]):
        for class_index in (None, 1):
            with pytest.raises(InputError, match=rf"\(N, {SIZE}, {SIZE}, 3\); got an array of shape"):
                explain(wrong, class_index)


@pytest.mark.parametrize("num_classes", [pytest.param(3, marks=pytest.mark.slow), 2])
def test_the_default_class_is_each_images_predicted_class(images, num_classes):
    model = classifier(num_classes)
    for class_index in range(1, num_classes):  # every class map has structure (a sigmoid's class 0: none)
        kernel = model.head.get_layer("head_logits").kernel
        previous = ops.convert_to_numpy(kernel)
        lean_towards_class(model, class_index, seed=5 + class_index)
        column = class_index if num_classes > 2 else 0
        kernel.assign(np.where(np.arange(kernel.shape[1]) == column, ops.convert_to_numpy(kernel), previous))
    classes = split_predictions(model, images)
    probabilities = ops.convert_to_numpy(model(images))
    predicted = (probabilities[:, 0] >= 0.5).astype(int) if num_classes == 2 else probabilities.argmax(axis=1)
    np.testing.assert_array_equal(predicted, classes)
    assert len(set(classes.tolist())) == 2  # both images, two different classes
    grad_cam = GradCAM(model)
    np.testing.assert_array_equal(grad_cam.predicted_classes(images), classes)
    heatmaps = grad_cam(images)
    assert heatmaps.shape == (2, SIZE, SIZE)
    explicit = {c: grad_cam(images, c) for c in range(num_classes)}
    for row, class_index in enumerate(classes):
        np.testing.assert_allclose(heatmaps[row], explicit[class_index][row], atol=1e-5)
        others = [c for c in range(num_classes) if c != class_index]
        assert all(np.abs(heatmaps[row] - explicit[c][row]).max() > 0.01 for c in others)


@pytest.mark.slow  # two DenseNet members, four Grad-CAM passes
def test_an_ensembles_default_class_is_the_ensembles_label(images):
    members = [
        CXRClassifier("densenet121", num_classes=2, head_units=0, input_shape=(SIZE, SIZE, 3), name=n)
        for n in ("a", "b")
    ]
    for seed, member in enumerate(members):  # every member votes positive for both images
        lean_towards_class(member, class_index=1, seed=seed)
        logits_layer = member.head.get_layer("head_logits")
        logits = ops.convert_to_numpy(member.head(member.feature_extractor(images)))[:, 0]
        logits_layer.bias.assign(np.asarray([1.0 - logits.min()], "float32"))
    probabilities = ops.convert_to_numpy(WeightedAverageEnsemble(members, weights=[3, 1])(images)["probabilities"])
    positive = probabilities[:, 1]
    assert np.all(positive > 0.5) and np.ptp(positive) > 1e-3
    # the threshold between the two images makes the ensemble call one of them negative
    ensemble = WeightedAverageEnsemble(members, weights=[3, 1], threshold=float(positive.mean()))
    labels = ops.convert_to_numpy(ensemble(images)["label"])
    assert sorted(labels.tolist()) == [0, 1]
    grad_cam = GradCAM(ensemble)
    np.testing.assert_array_equal(grad_cam.predicted_classes(images), labels)
    heatmaps = grad_cam(images)
    for row, label in enumerate(labels):
        np.testing.assert_allclose(heatmaps[row], grad_cam(images, int(label))[row], atol=1e-5)
        assert np.abs(heatmaps[row] - grad_cam(images, 1 - int(label))[row]).max() > 0.01


@pytest.mark.parametrize("class_index", [1, None])
def test_output_size_resizes_the_input_size_maps_like_the_pipeline(images, class_index):
    model = classifier(3)
    lean_towards_class(model, 1, seed=5)
    grad_cam = GradCAM(model)
    at_input = grad_cam(images, class_index)
    at_original = grad_cam(images, class_index, output_size=(300, 260))
    assert at_original.shape == (2, 300, 260) and at_original.dtype == np.float32
    expected = np.stack([resize_image(m, (300, 260)) for m in at_input])  # Pipeline._heatmap_at_original's method
    np.testing.assert_array_equal(at_original, expected)
    assert np.all((at_original >= 0) & (at_original <= 1))
    with pytest.raises(ConfigError):
        grad_cam(images, class_index, output_size=(0, 260))


def test_the_gradients_are_traced_once_for_every_class_and_batch_size(images):
    """Retracing per class or batch size put TensorFlow's "triggered tf.function retracing" warnings on the
    CLI's stderr (a folder run with --overlays)."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("counts TensorFlow traces")
    model = classifier(3)
    lean_towards_class(model, 1, seed=7)
    grad_cam = GradCAM(model)
    batch = np.concatenate([images, images[:1]])
    maps = {(n, c): grad_cam(batch[:n], c) for n in (1, 2, 3) for c in (0, 1, 2)}
    grad_cam(batch)  # each image's predicted class
    assert grad_cam._gradients.tf_function.experimental_get_tracing_count() == 1
    for c in (0, 1, 2):  # the first image's map does not depend on the batch around it
        np.testing.assert_allclose(maps[(1, c)][0], maps[(3, c)][0], atol=1e-5)
        np.testing.assert_allclose(maps[(3, c)], cam_closed_form(model, batch, c), atol=1e-4)

import warnings

import keras
import numpy as np
import pytest

from keras_covidcxr import ConfigError, CXRClassifier

# Parameter counts of the paper's classifiers (224x224x3 input, paper head widths).
PAPER_COUNTS = {
    ("densenet201", 2): 18_568_001,
    ("densenet201", 3): 18_568_259,
    ("resnet152", 2): 60_470_145,
    ("resnet152", 3): 60_472_195,
    ("vgg19", 2): 22_129_729,
    ("vgg19", 3): 22_137_923,
}


# Every backbone's count and head width is checked in the default run with two classes; a three-class head
# (three logits on the same dense layer) with vgg19, the fastest to build. The other three-class builds: -m slow.
THREE_CLASS_SLOW = {("densenet201", 3), ("resnet152", 3)}


@pytest.mark.parametrize(
    "backbone,num_classes",
    [pytest.param(*key, marks=pytest.mark.slow) if key in THREE_CLASS_SLOW else key for key in sorted(PAPER_COUNTS)],
)
def test_paper_configurations_parameter_counts(backbone, num_classes):
    model = CXRClassifier(backbone, num_classes=num_classes)
    assert model.count_params() == PAPER_COUNTS[(backbone, num_classes)]
    expected_units = {"densenet201": 128, "resnet152": 1024, "vgg19": 4096}[backbone]
    assert model.head.get_layer("head_dense").units == expected_units
    assert model.output_shape == (None, 1 if num_classes == 2 else num_classes)


def test_binary_is_one_sigmoid_and_multiclass_a_softmax():
    # the head decides this, whatever the backbone: a small ResUnet encoder traces ~10x faster than densenet121
    x = np.random.default_rng(0).normal(size=(3, 32, 32, 3)).astype("float32")
    small = dict(head_units=8, input_shape=(32, 32, 3), encoder_filters=(4, 8, 16))
    binary = CXRClassifier("resunet_encoder", num_classes=2, **small)
    p = np.asarray(binary.predict_on_batch(x))
    assert p.shape == (3, 1) and np.all((p > 0) & (p < 1))
    multi = CXRClassifier("resunet_encoder", num_classes=3, **small)
    q = np.asarray(multi.predict_on_batch(x))
    np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=1e-5)


def test_feature_extractor_and_head_compose_to_the_model():
    from keras import ops

    model = CXRClassifier("densenet121", num_classes=3, head_units=8, input_shape=(32, 32, 3))
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype("float32")
    features = model.feature_extractor(x)
    assert tuple(features.shape) == (2, 1, 1, 1024)
    logits = model.head(features)
    np.testing.assert_allclose(
        ops.convert_to_numpy(ops.softmax(logits)), ops.convert_to_numpy(model(x)), atol=1e-5
    )


def test_config_round_trip_and_weight_paths_are_stable():
    model = CXRClassifier("densenet121", num_classes=3, head_units=8, input_shape=(32, 32, 3), name="dn")
    clone = CXRClassifier.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    paths = [v.path for v in model.weights]
    assert paths == [v.path for v in clone.weights]
    assert len(set(paths)) == len(paths)
    assert "head_logits/kernel" in paths


def test_no_hidden_head_layer():
    model = CXRClassifier("densenet121", num_classes=2, head_units=0, input_shape=(32, 32, 3))
    assert [layer.name for layer in model.head.layers] == ["features", "head_pool", "head_dropout", "head_logits"]


def test_backbone_weights_from_a_local_file(tmp_path):
    source = CXRClassifier("densenet121", input_shape=(32, 32, 3), head_units=8)
    path = tmp_path / "backbone.weights.h5"
    source.backbone.save_weights(path)
    model = CXRClassifier("densenet121", input_shape=(32, 32, 3), head_units=8, backbone_weights=str(path))
    for a, b in zip(source.backbone.weights, model.backbone.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize(
    "kwargs",
    [{"backbone": "alexnet"}, {"num_classes": 1}, {"backbone_weights": "/no/such/file.weights.h5"}],
)
def test_invalid_configurations_are_refused(kwargs):
    with pytest.raises(ConfigError):
        CXRClassifier(**{"input_shape": (32, 32, 3), **kwargs})


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"num_classes": "2"}, "num_classes must be a whole number >= 2, got '2'"),
    ({"input_shape": (224, 224)}, r"input_shape must be \(height, width, channels\).*got \(224, 224\)"),
    ({"input_shape": (16, 16, 3)}, r"cannot build mobilenet_v2 for input_shape \(16, 16, 3\)"),
])
def test_wrong_settings_are_named_not_taken_for_a_failed_download(kwargs, reason):
    with pytest.raises(ConfigError, match=reason) as error:
        CXRClassifier(**{"backbone": "mobilenet_v2", "input_shape": (32, 32, 3), **kwargs})
    assert "download" not in str(error.value)


def test_resunet_encoder_backbone_round_trip_and_grad_cam():
    from keras_covidcxr import GradCAM

    model = CXRClassifier("resunet_encoder", input_shape=(32, 32, 3), encoder_filters=(4, 8, 16), name="enc")
    assert model.head_units == 0 and model.backbone.output_shape == (None, 8, 8, 16)
    clone = CXRClassifier.from_config(model.get_config())
    assert clone.get_config() == model.get_config() and clone.encoder_filters == (4, 8, 16)
    assert [v.path for v in clone.weights] == [v.path for v in model.weights]
    x = np.random.default_rng(2).normal(size=(2, 32, 32, 3)).astype("float32")
    heatmaps = np.asarray(GradCAM(model)(x, 1))
    assert heatmaps.shape[0] == 2 and np.all(np.isfinite(heatmaps)) and heatmaps.max() > 0
    with pytest.raises(ConfigError, match="no ImageNet weights"):
        CXRClassifier("resunet_encoder", input_shape=(32, 32, 3), backbone_weights="imagenet")


def test_segmenter_encoder_seeds_the_classifier_exactly():
    import keras

    from keras_covidcxr import ResUnet
    from keras_covidcxr.models.classifier.encoder_transfer import copy_segmenter_encoder

    keras.utils.set_random_seed(3)
    segmenter = ResUnet(input_size=32, filters=(4, 8, 16))
    classifier = CXRClassifier("resunet_encoder", input_shape=(32, 32, 3), encoder_filters=(4, 8, 16))
    assert copy_segmenter_encoder(segmenter, classifier) == 17
    gray = np.random.default_rng(4).normal(size=(2, 32, 32, 1)).astype("float32")
    bridge = keras.Model(segmenter.input, segmenter.get_layer("bridge_add").output)
    np.testing.assert_allclose(
        np.asarray(classifier.backbone.predict_on_batch(np.repeat(gray, 3, axis=-1))),
        np.asarray(bridge.predict_on_batch(gray)), rtol=1e-4, atol=1e-4,
    )
    with pytest.raises(ConfigError, match="filters"):
        copy_segmenter_encoder(ResUnet(input_size=32, filters=(8, 16, 32)), classifier)
    with pytest.raises(ConfigError, match="is not 'resunet_encoder'"):
        copy_segmenter_encoder(segmenter, CXRClassifier("densenet121", input_shape=(32, 32, 3), head_units=8))


def test_imagenet_normalisation_happens_inside_the_model():
    """A gray [0, 1] input is replicated to RGB and normalised as the backbone's ImageNet weights expect."""
    import keras

    from keras_covidcxr.models.classifier.backbones import imagenet_mean_and_variance

    gray = np.random.default_rng(2).uniform(size=(2, 32, 32, 1)).astype("float32")
    for backbone, expected in (
        ("mobilenet_v2", lambda rgb: 2.0 * rgb - 1.0),
        ("densenet121", lambda rgb: (rgb - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]),
        ("resnet50", lambda rgb: 255.0 * rgb - [103.939, 116.779, 123.68]),
    ):
        model = CXRClassifier(backbone, input_shape=(32, 32, 1), input_normalization="imagenet", head_units=4)
        rgb = np.repeat(gray, 3, axis=-1)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(model.feature_extractor(gray)),
            keras.ops.convert_to_numpy(model.backbone(expected(rgb).astype("float32"))),
            atol=1e-4, rtol=1e-4,
        )
        assert model.output_shape == (None, 1)
    mean, variance = imagenet_mean_and_variance("tf")
    assert mean.tolist() == [0.5] * 3 and variance.tolist() == [0.25] * 3


def test_imagenet_normalisation_needs_a_gray_input_and_an_imagenet_backbone():
    with pytest.raises(ConfigError, match="gray input"):
        CXRClassifier("mobilenet_v2", input_shape=(32, 32, 3), input_normalization="imagenet")
    with pytest.raises(ConfigError, match="ImageNet backbone"):
        CXRClassifier("resunet_encoder", input_shape=(32, 32, 1), input_normalization="imagenet")
    with pytest.raises(ConfigError, match="input_normalization"):
        CXRClassifier("mobilenet_v2", input_shape=(32, 32, 1), input_normalization="per_image")


def test_backbones_start_from_a_local_weights_file(tmp_path):
    """`backbone_weights=PATH`: a Keras weights file for keras.applications, PyTorch safetensors for Lite0."""
    from safetensors.numpy import save_file

    from keras_covidcxr.models.classifier.efficientnet_lite import EfficientNetLite0

    donor = CXRClassifier("mobilenet_v2", input_shape=(32, 32, 1), input_normalization="imagenet").backbone
    donor.get_layer("Conv1").kernel.assign(np.full(donor.get_layer("Conv1").kernel.shape, 0.25, "float32"))
    keras_file = tmp_path / "mobilenet_v2.weights.h5"
    donor.save_weights(keras_file)
    loaded = CXRClassifier("mobilenet_v2", input_shape=(32, 32, 1), input_normalization="imagenet",
                           backbone_weights=str(keras_file))
    np.testing.assert_array_equal(np.asarray(loaded.backbone.get_layer("Conv1").kernel), 0.25)

    lite0 = EfficientNetLite0()
    checkpoint = {}
    from keras_covidcxr.models.classifier.convert_efficientnet_lite0 import efficientnet_lite0_name_table

    for layer, variable, torch_name, layout in efficientnet_lite0_name_table():
        shape = next(v.shape for v in lite0.get_layer(layer).weights if v.path.endswith("/" + variable))
        value = np.full(shape, 0.5, "float32")
        checkpoint[torch_name] = np.transpose(value, {"conv": (3, 2, 0, 1), "depthwise": (2, 3, 0, 1)}.get(layout, None))
    torch_file = tmp_path / "lite0.safetensors"
    save_file(checkpoint, str(torch_file))
    model = CXRClassifier("efficientnet_lite0", input_shape=(32, 32, 1), input_normalization="imagenet",
                          backbone_weights=str(torch_file))
    np.testing.assert_array_equal(np.asarray(model.backbone.get_layer("stem_conv").kernel), 0.5)
    assert model.get_config()["backbone_weights"] == str(torch_file)
    # a saved model opens without its weights source (moved, or "imagenet" offline): the file holds the weights
    model.save(tmp_path / "lite0.keras")
    torch_file.rename(tmp_path / "moved.safetensors")
    reopened = keras.saving.load_model(tmp_path / "lite0.keras")
    (tmp_path / "moved.safetensors").rename(torch_file)
    np.testing.assert_array_equal(np.asarray(reopened.backbone.get_layer("stem_conv").kernel), 0.5)
    offline = CXRClassifier.from_config({**model.get_config(), "backbone_weights": "imagenet"})
    assert offline.backbone_weights is None  # built without a download, and claims no source for its weights
    with pytest.raises(ConfigError, match="no download source"):
        CXRClassifier("efficientnet_lite0", backbone_weights="imagenet")
    with pytest.raises(ConfigError, match="not found"):
        CXRClassifier("mobilenet_v2", backbone_weights=str(tmp_path / "absent.weights.h5"))
    # another net's weights, a truncated file, text: one error naming the file, no warning per layer
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(torch_file.read_bytes()[:1000])
    notes = tmp_path / "notes.weights.h5"
    notes.write_text("not weights")
    for backbone, path in (("mobilenet_v2", torch_file), ("efficientnet_lite0", keras_file),
                           ("efficientnet_lite0", truncated), ("mobilenet_v2", notes)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(ConfigError, match=f"{path}: cannot load it as {backbone} weights"):
                CXRClassifier(backbone, input_shape=(32, 32, 1), input_normalization="imagenet",
                              backbone_weights=str(path))
        assert not caught


def test_feature_layer_cuts_the_backbone_after_its_weights_are_loaded(tmp_path):
    """`feature_layer`: the head pools an intermediate layer; weights files of the whole backbone still load,
    and the cut model saves and reloads with its config."""
    import keras

    full = CXRClassifier("mobilenet_v2", input_shape=(32, 32, 1), input_normalization="imagenet").backbone
    rng = np.random.default_rng(0)
    for variable in full.weights:
        variable.assign(rng.normal(0, 0.1, variable.shape).astype("float32"))
    weights_file = tmp_path / "mobilenet_v2.weights.h5"
    full.save_weights(weights_file)
    model = CXRClassifier("mobilenet_v2", input_shape=(32, 32, 1), input_normalization="imagenet", head_units=0,
                          backbone_weights=str(weights_file), feature_layer="block_13_expand_relu")
    images = rng.random((2, 32, 32, 1)).astype("float32")
    expected = keras.Model(full.input, full.get_layer("block_13_expand_relu").output)(np.repeat(images, 3, -1) * 2 - 1)  # "tf" mode
    np.testing.assert_allclose(np.asarray(model.feature_extractor(images)), np.asarray(expected), atol=1e-5)
    assert model.feature_extractor.output_shape[-1] == 576 and model.count_params() < full.count_params()
    restored = CXRClassifier.from_config(model.get_config())
    restored.set_weights(model.get_weights())
    assert restored.feature_layer == "block_13_expand_relu"
    np.testing.assert_allclose(np.asarray(restored(images)), np.asarray(model(images)), atol=1e-6)
    with pytest.raises(ConfigError, match="no layer named"):
        CXRClassifier("mobilenet_v2", input_shape=(32, 32, 1), feature_layer="block_99")


def test_mirror_average_reads_the_image_and_its_mirror_image_with_one_backbone():
    """The feature map is the mean of the image's map and the mirror image's map mirrored back: aligned with
    the image, the same weights, and a mirrored film gets the same probability."""
    kwargs = dict(input_shape=(32, 32, 1), input_normalization="imagenet", head_units=0,
                  feature_layer="block_13_expand_relu")
    model = CXRClassifier("mobilenet_v2", mirror_average=True, **kwargs)
    plain = CXRClassifier("mobilenet_v2", **kwargs)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.1, w.shape).astype("float32") for w in model.get_weights()])
    plain.set_weights(model.get_weights())
    assert model.count_params() == plain.count_params()
    images = rng.random((2, 32, 32, 1)).astype("float32")
    mirrored = images[:, :, ::-1]
    expected = (np.asarray(plain.feature_extractor(images)) + np.asarray(plain.feature_extractor(mirrored))[:, :, ::-1]) / 2
    np.testing.assert_allclose(np.asarray(model.feature_extractor(images)), expected, atol=1e-5)
    np.testing.assert_allclose(np.asarray(model(mirrored)), np.asarray(model(images)), atol=1e-5)
    assert not np.allclose(np.asarray(plain(mirrored)), np.asarray(plain(images)), atol=1e-5)
    restored = CXRClassifier.from_config(model.get_config())
    restored.set_weights(model.get_weights())
    assert restored.mirror_average is True
    np.testing.assert_allclose(np.asarray(restored(images)), np.asarray(model(images)), atol=1e-6)


def test_imagenet_weights_that_cannot_be_downloaded_are_a_config_error_saying_what_to_do(monkeypatch):
    import keras

    def offline(**kwargs):  # what keras.utils.get_file raises without internet
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- Name or service not known")

    monkeypatch.setattr(keras.applications, "MobileNetV2", offline)
    with pytest.raises(ConfigError, match=r"ImageNet weights of mobilenet_v2 could not be downloaded \(URL fetch"
                                          r".*--backbone-weights PATH.*--backbone-weights none"):
        CXRClassifier("mobilenet_v2", input_shape=(32, 32, 1), backbone_weights="imagenet")

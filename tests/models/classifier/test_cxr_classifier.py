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


@pytest.mark.parametrize("backbone,num_classes", sorted(PAPER_COUNTS))
def test_paper_configurations_parameter_counts(backbone, num_classes):
    model = CXRClassifier(backbone, num_classes=num_classes)
    assert model.count_params() == PAPER_COUNTS[(backbone, num_classes)]
    expected_units = {"densenet201": 128, "resnet152": 1024, "vgg19": 4096}[backbone]
    assert model.head.get_layer("head_dense").units == expected_units
    assert model.output_shape == (None, 1 if num_classes == 2 else num_classes)


def test_binary_is_one_sigmoid_and_multiclass_a_softmax():
    x = np.random.default_rng(0).normal(size=(3, 32, 32, 3)).astype("float32")
    binary = CXRClassifier("densenet121", num_classes=2, head_units=8, input_shape=(32, 32, 3))
    p = np.asarray(binary.predict_on_batch(x))
    assert p.shape == (3, 1) and np.all((p > 0) & (p < 1))
    multi = CXRClassifier("densenet121", num_classes=3, head_units=8, input_shape=(32, 32, 3))
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

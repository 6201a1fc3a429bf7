"""Shared fixtures: tiny untrained components and a saved preset built from them."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach the network

import numpy as np
import pytest

IMAGENET_BACKBONE = "densenet121"  # keras.applications' smallest net whose random init gives non-trivial outputs
TINY_BACKBONE = "resunet_encoder"  # builds, traces, saves and loads ~10x faster than IMAGENET_BACKBONE


def tiny_pipeline(ensemble="weighted_average", num_classes=2, member_names=("alpha", "beta"), backbone=TINY_BACKBONE):
    """An untrained pipeline small enough to build and run in a second or two.

    Its members take 3-channel 32x32 inputs (the small_pipeline's take 1-channel gray). `backbone` is one
    name for every member, or one per member. The default is a small ResUnet encoder: nothing that uses
    the tiny pipeline depends on a member being a keras.applications net, except what asks for
    IMAGENET_BACKBONE by name (a preset round trip, a new head on a backbone) and what builds one
    directly (tests/models/classifier, tests/explain).
    """
    import keras

    from keras_covidcxr import CXRClassifier, MajorityVoteEnsemble, Pipeline, ResUnet, WeightedAverageEnsemble

    keras.utils.set_random_seed(0)  # untrained, but the same weights (and outputs) on every run
    backbones = [backbone] * len(member_names) if isinstance(backbone, str) else list(backbone)
    segmenter = ResUnet(input_size=64, filters=(4, 8, 16))
    members = [
        CXRClassifier(member_backbone, num_classes=num_classes, head_units=8, input_shape=(32, 32, 3),
                      encoder_filters=(4, 8, 16), name=name)
        for name, member_backbone in zip(member_names, backbones, strict=True)
    ]
    if ensemble == "weighted_average":
        ensemble = WeightedAverageEnsemble(members, weights=range(1, len(members) + 1))
    else:
        ensemble = MajorityVoteEnsemble(members)
    return Pipeline(segmenter, ensemble)


@pytest.fixture(scope="session")
def make_pipeline():
    """The `tiny_pipeline` factory, for tests that need a fresh or different pipeline."""
    return tiny_pipeline


@pytest.fixture(scope="session")
def pipeline():
    return tiny_pipeline()


@pytest.fixture(scope="session")
def preset_dir(pipeline, tmp_path_factory):
    folder = tmp_path_factory.mktemp("presets") / "tiny"
    pipeline.save_to_preset(folder, training={"data": "synthetic test images", "recipe": "none"})
    return folder


@pytest.fixture(scope="session")
def loaded_pipeline(preset_dir):
    """`preset_dir` loaded once: tests that only read from it share its models and their traces."""
    from keras_covidcxr import Pipeline

    return Pipeline.from_preset(preset_dir)


@pytest.fixture
def fast_cli(monkeypatch, loaded_pipeline, preset_dir):
    """`Pipeline.from_preset(preset_dir)` gives `loaded_pipeline`: a CLI call or `verify_preset` skips ~10 s of
    loading and tracing (the checksums were checked when `loaded_pipeline` loaded)."""
    from keras_covidcxr import Pipeline

    real = Pipeline.from_preset

    def from_preset(handle):
        return loaded_pipeline if str(handle) == str(preset_dir) else real(handle)

    monkeypatch.setattr(Pipeline, "from_preset", from_preset)


@pytest.fixture(scope="session")
def small_pipeline():
    """Untrained, with a calibration, a refer band and an out-of-distribution check; its members
    (ResUnet encoders) build, save and export in seconds."""
    import keras

    from keras_covidcxr import (
        CXRClassifier,
        FeatureDistanceCheck,
        Pipeline,
        ProbabilityCalibration,
        ReferRule,
        ResUnet,
        WeightedAverageEnsemble,
    )

    keras.utils.set_random_seed(1)
    segmenter = ResUnet(input_size=64, filters=(4, 8, 16))
    members = [CXRClassifier("resunet_encoder", input_shape=(32, 32, 1), encoder_filters=(4, 8, 16), head_units=8,
                             name=name) for name in ("alpha", "beta")]
    rng = np.random.default_rng(0)
    features = np.asarray(members[1].feature_extractor.predict_on_batch(rng.random((10, 32, 32, 1)))).mean(axis=(1, 2))
    return Pipeline(
        segmenter, WeightedAverageEnsemble(members, weights=[1, 2]),
        calibration=ProbabilityCalibration("platt", slope=3.0, intercept=0.1),
        refer_rule=ReferRule(0.5, 0.52),
        out_of_distribution=FeatureDistanceCheck("beta", features, threshold=0.001, neighbours=3),
    )


@pytest.fixture(scope="session")
def small_preset(small_pipeline, tmp_path_factory):
    return small_pipeline.save_to_preset(tmp_path_factory.mktemp("runtime") / "small",
                                         training={"data": "synthetic test images"})


@pytest.fixture(scope="session")
def untrained_preset_dir(pipeline, tmp_path_factory):
    folder = tmp_path_factory.mktemp("presets") / "untrained"
    pipeline.save_to_preset(folder)
    return folder


@pytest.fixture
def set_umask():
    """`set_umask(0o027)` applies a umask for the rest of the test; the previous one is restored after."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield os.umask
    os.umask(previous)


@pytest.fixture
def chest_images():
    """Three synthetic chest-like gray images of different sizes, in [0, 1]."""
    rng = np.random.default_rng(7)
    images = []
    for height, width in [(300, 260), (256, 256), (400, 330)]:
        yy, xx = np.mgrid[0:height, 0:width]
        body = np.exp(-(((xx - width / 2) / (0.4 * width)) ** 2 + ((yy - height / 2) / (0.5 * height)) ** 2))
        lungs = sum(
            np.exp(-(((xx - cx * width) / (0.12 * width)) ** 2 + ((yy - 0.45 * height) / (0.25 * height)) ** 2))
            for cx in (0.33, 0.67)
        )
        image = np.clip(0.8 * body - 0.5 * lungs + 0.05 * rng.random((height, width)), 0, 1)
        images.append(image.astype("float32"))
    return images

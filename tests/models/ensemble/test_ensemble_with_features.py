import keras
import numpy as np
import pytest

from keras_covidcxr import ConfigError, CXRClassifier, WeightedAverageEnsemble
from keras_covidcxr.models.ensemble.ensemble_with_features import EnsembleWithFeatures


@pytest.fixture(scope="module")
def ensemble():
    keras.utils.set_random_seed(0)
    members = [
        CXRClassifier("mobilenet_v2", head_units=0, input_shape=(32, 32, 1), input_normalization="imagenet",
                      mirror_average=True, name="mirrored"),
        CXRClassifier("mobilenet_v2", head_units=8, input_shape=(32, 32, 1), input_normalization="imagenet",
                      name="plain"),
    ]
    return WeightedAverageEnsemble(members, weights=[0.3, 0.7], threshold=0.4, member_thresholds=[0.45, 0.55])


@pytest.mark.parametrize("member", ["mirrored", "plain"])
def test_outputs_are_the_ensembles_and_features_the_members_pooled_map(ensemble, member):
    images = np.random.default_rng(0).uniform(size=(3, 32, 32, 1)).astype("float32")
    expected = {k: keras.ops.convert_to_numpy(v) for k, v in ensemble(images).items()}
    outputs = {k: keras.ops.convert_to_numpy(v) for k, v in EnsembleWithFeatures(ensemble, member)(images).items()}
    assert set(outputs) == {*expected, "features"}
    for key, value in expected.items():
        np.testing.assert_allclose(outputs[key], value, atol=1e-6, err_msg=key)
    extractor = ensemble.members[ensemble.member_names.index(member)].feature_extractor
    pooled = keras.ops.convert_to_numpy(extractor(images)).mean(axis=(1, 2))
    np.testing.assert_allclose(outputs["features"], pooled, atol=1e-6)


def test_an_unknown_member_is_refused(ensemble):
    with pytest.raises(ConfigError, match="no member named 'gamma'"):
        EnsembleWithFeatures(ensemble, "gamma")

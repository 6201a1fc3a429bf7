"""A frozen backbone with a logistic-regression head, and the assembly's refusal of thresholds that cannot hold."""

import numpy as np
import pytest

from keras_covidcxr import ConfigError, CXRClassifier, ResUnet
from keras_covidcxr.training.assembly import assemble_pipeline, check_operating_threshold
from keras_covidcxr.training.linear_head import fit_linear_head, pooled_features, write_linear_head


@pytest.fixture(scope="module")
def gray_members():
    return [CXRClassifier("mobilenet_v2", head_units=0, input_shape=(32, 32, 1), input_normalization="imagenet",
                          name=name) for name in ("first", "second")]


def test_the_linear_head_gives_the_regressions_probabilities(gray_members):
    import keras

    model = gray_members[0]
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(24, 32, 32)).astype("float32")
    labels = np.array([0, 1] * 12)
    images[labels == 1] *= 0.5  # a learnable difference
    features = pooled_features(model, images, batch_size=16)
    assert features.shape == (24, 1280)
    regression = fit_linear_head(model, features, labels, regularization=1.0)
    expected = regression.predict_proba(features)[:, 1]
    predicted = keras.ops.convert_to_numpy(model.predict_on_batch(images[..., None]))[:, 0]
    np.testing.assert_allclose(predicted, expected, atol=1e-4)
    with pytest.raises(ConfigError, match="head_units=0"):
        fit_linear_head(CXRClassifier("mobilenet_v2", head_units=4, input_shape=(32, 32, 3)), features, labels)
    with pytest.raises(ConfigError, match="every class"):
        fit_linear_head(model, features, np.ones(24, int))


def test_a_batch_larger_than_the_films_is_not_padded_up_to_its_size(gray_members):
    # padded, 18 films at --batch-size 1000 sent 1,000 224 px images through the backbone and ran out of memory
    from keras_covidcxr.training.linear_head import padded_batches

    images = np.zeros((3, 32, 32), "float32")
    assert [(batch.shape[0], count) for batch, count in padded_batches(images, 1000)] == [(3, 3)]
    assert pooled_features(gray_members[0], images, batch_size=1000).shape == (3, 1280)


def test_a_three_class_linear_head_gives_the_multinomial_regressions_probabilities():
    import keras

    model = CXRClassifier("mobilenet_v2", num_classes=3, head_units=0, input_shape=(32, 32, 1),
                          input_normalization="imagenet")
    rng = np.random.default_rng(1)
    labels = np.array([0, 1, 2] * 8)
    images = rng.uniform(size=(24, 32, 32)).astype("float32") * (1.0 - 0.3 * labels[:, None, None])
    features = pooled_features(model, images, batch_size=16)
    regression = fit_linear_head(model, features, labels, regularization=1.0)
    predicted = keras.ops.convert_to_numpy(model.predict_on_batch(images[..., None]))
    np.testing.assert_allclose(predicted, regression.predict_proba(features), atol=1e-4)
    with pytest.raises(ConfigError, match=r"every class .* got \[0, 2\]"):
        fit_linear_head(model, features, np.array([0, 2] * 12))


def test_a_head_fitted_elsewhere_is_written_into_the_logits(gray_members):
    """E.g. the mean kernel and bias of cross-fitted regressions (bagging in logit space)."""
    import keras

    model = gray_members[1]
    images = np.random.default_rng(1).uniform(size=(4, 32, 32)).astype("float32")
    features = pooled_features(model, images, batch_size=4)
    kernel = np.random.default_rng(2).normal(0, 0.05, features.shape[1])
    write_linear_head(model, kernel, -0.3)
    predicted = keras.ops.convert_to_numpy(model.predict_on_batch(images[..., None]))[:, 0]
    np.testing.assert_allclose(predicted, 1 / (1 + np.exp(-(features @ kernel - 0.3))), atol=1e-5)
    with pytest.raises(ConfigError, match="head_units=0"):
        write_linear_head(CXRClassifier("mobilenet_v2", head_units=4, input_shape=(32, 32, 3)), kernel, 0.0)


@pytest.mark.parametrize("scores,threshold,message", [
    ([0.44, 0.52, 0.60, 0.66], 0.670, "outside its validation scores"),
    ([0.44, 0.52, 0.60, 0.66], 0.300, "outside its validation scores"),
    (np.r_[np.full(97, 0.8), [0.1, 0.2, 0.3]], 0.5, "puts 97.0% of its 100 validation images in one class"),
])
def test_a_threshold_that_answers_one_class_is_refused(scores, threshold, message):
    with pytest.raises(ConfigError, match=message):
        check_operating_threshold(scores, threshold)


def test_assembly_checks_the_ensemble_and_every_member_threshold(gray_members):
    segmenter = ResUnet(input_size=64, filters=(4, 8, 16))
    scores = np.stack([np.linspace(0.1, 0.9, 20), np.linspace(0.3, 0.7, 20)], axis=1)
    pipeline = assemble_pipeline(segmenter, gray_members, weights=[1, 1], threshold=0.5,
                                 member_thresholds=[0.4, 0.6], validation_scores=scores,
                                 preprocessing=_unit_range())
    assert pipeline.ensemble.member_thresholds == [0.4, 0.6]
    with pytest.raises(ConfigError, match="member 'second'"):
        assemble_pipeline(segmenter, gray_members, weights=[1, 1], threshold=0.5, member_thresholds=[0.4, 0.75],
                          validation_scores=scores, preprocessing=_unit_range())
    with pytest.raises(ConfigError, match="of the ensemble"):
        assemble_pipeline(segmenter, gray_members, weights=[1, 1], threshold=0.85, validation_scores=scores,
                          member_thresholds=[0.4, 0.6], preprocessing=_unit_range())


def test_members_voting_at_one_half_are_checked_only_where_their_votes_decide(gray_members):
    segmenter = ResUnet(input_size=64, filters=(4, 8, 16))
    scores = np.stack([np.linspace(0.1, 0.9, 20), np.linspace(0.55, 0.7, 20)], axis=1)  # second: always >= 0.5
    # a weighted average labels by its own threshold: the members' default votes decide nothing
    assemble_pipeline(segmenter, gray_members, weights=[1, 1], threshold=0.5, validation_scores=scores,
                      preprocessing=_unit_range())
    with pytest.raises(ConfigError, match="threshold 0.500 of member 'second' lies outside"):
        assemble_pipeline(segmenter, gray_members, ensemble="majority_vote", validation_scores=scores,
                          preprocessing=_unit_range())


def test_members_that_normalise_their_input_need_unit_range_preprocessing(gray_members):
    with pytest.raises(ConfigError, match="standardize=False"):
        assemble_pipeline(ResUnet(input_size=64, filters=(4, 8, 16)), gray_members)


def _unit_range():
    from keras_covidcxr import PreprocessingConfig

    return PreprocessingConfig(standardize=False)


def test_validation_figures_decide_each_member_at_its_own_vote_threshold(gray_members, monkeypatch):
    from keras_covidcxr import WeightedAverageEnsemble
    from keras_covidcxr.training import assembly

    labels = np.array([0, 0, 1, 1])
    scores = np.array([[0.55, 0.1], [0.60, 0.2], [0.80, 0.35], [0.90, 0.40]])  # (films, members) p(covid)
    monkeypatch.setattr(assembly, "member_probabilities",
                        lambda members, inputs, batch_size: np.stack([1 - scores, scores], axis=-1))
    ensemble = WeightedAverageEnsemble(gray_members, threshold=0.5, member_thresholds=[0.7, 0.3])
    report = assembly.validation_report(ensemble, np.zeros((4, 32, 32, 1), "float32"), labels,
                                        ["non_covid", "covid"])
    # at 0.5 the first would call both non-COVID films covid and the second miss both covid films
    assert (report["first"]["sensitivity"], report["first"]["specificity"]) == (1.0, 1.0)
    assert (report["second"]["sensitivity"], report["second"]["specificity"]) == (1.0, 1.0)

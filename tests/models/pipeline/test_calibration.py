"""Calibration of the ensemble's probabilities: Platt and temperature scaling, and their use in the pipeline."""

import numpy as np
import pytest

from keras_covidcxr import ConfigError
from keras_covidcxr.metrics.calibration import brier_score, expected_calibration_error
from keras_covidcxr.models.pipeline.calibration import ProbabilityCalibration, fit_calibration


def overconfident(n=2000, seed=0):
    """Two-class scores whose true frequency is sigmoid(logit / 3): far too sure of themselves."""
    rng = np.random.default_rng(seed)
    logit = rng.normal(0, 4, n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-logit / 3))).astype(int)
    positive = 1 / (1 + np.exp(-logit))
    return np.stack([1 - positive, positive], axis=1), labels


@pytest.mark.parametrize("method", ["platt", "temperature"])
def test_calibration_lowers_ece_and_brier_of_a_miscalibrated_model(method):
    probabilities, labels = overconfident()
    names = ["non_covid", "covid"]
    calibration = fit_calibration(probabilities[:1000], labels[:1000], method=method)
    before, after = probabilities[1000:], calibration.apply(probabilities[1000:])
    held_out = labels[1000:]
    assert expected_calibration_error(held_out, after, names) < 0.5 * expected_calibration_error(held_out, before, names)
    assert brier_score(held_out, after, names) < brier_score(held_out, before, names)
    if method == "temperature":
        assert calibration.temperature == pytest.approx(3.0, rel=0.2)
    else:
        assert calibration.slope == pytest.approx(1 / 3, rel=0.2)


def test_temperature_scaling_handles_three_classes():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, (600, 3))
    sharp = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    true = np.exp(logits / 2) / np.exp(logits / 2).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(3, p=p) for p in true])
    calibration = fit_calibration(sharp, labels)
    assert calibration.method == "temperature" and calibration.temperature == pytest.approx(2.0, rel=0.25)
    np.testing.assert_allclose(calibration.apply(sharp).sum(axis=1), 1.0)


def test_the_map_is_monotone_invertible_and_round_trips_through_its_config():
    calibration = ProbabilityCalibration("platt", slope=0.6, intercept=-0.4, fitted_on=90)
    raw = np.linspace(0.01, 0.99, 50)
    calibrated = calibration.apply_to_positive(raw)
    assert np.all(np.diff(calibrated) > 0)
    np.testing.assert_allclose(calibration.invert_positive(calibrated), raw, atol=1e-9)
    np.testing.assert_allclose(calibration.apply(np.stack([1 - raw, raw], 1))[:, 1], calibrated)
    assert ProbabilityCalibration.from_dict(calibration.to_dict()) == calibration


def test_the_calibration_records_its_images_share_of_each_class():
    platt = fit_calibration([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8], [0.1, 0.9]], [0, 1, 0, 1, 1])
    assert platt.fitted_on == 5 and platt.class_shares == [0.4, 0.6]
    assert platt.shares_text(("non_covid", "covid")) == "60% of them covid"
    assert ProbabilityCalibration.from_dict(platt.to_dict()) == platt
    three = fit_calibration([[0.6, 0.2, 0.2], [0.2, 0.6, 0.2], [0.2, 0.2, 0.6], [0.5, 0.3, 0.2]], [0, 1, 2, 0])
    assert three.shares_text(("normal", "covid", "pneumonia")) == "of them normal 50%, covid 25%, pneumonia 25%"
    assert ProbabilityCalibration("platt").shares_text(("non_covid", "covid")) is None  # older presets: not recorded
    for shares in ([0.5], [0.7, 0.7], ["a", "b"], 0.5):
        with pytest.raises(ConfigError, match="class_shares"):
            ProbabilityCalibration("platt", class_shares=shares)


def test_bad_calibrations_are_refused():
    with pytest.raises(ConfigError, match="positive slope"):
        ProbabilityCalibration("platt", slope=-1.0)
    with pytest.raises(ConfigError, match="method"):
        ProbabilityCalibration("isotonic")
    with pytest.raises(ConfigError, match="unknown calibration settings"):
        ProbabilityCalibration.from_dict({"method": "platt", "bias": 1})
    with pytest.raises(ConfigError, match="both classes"):
        fit_calibration([[0.2, 0.8], [0.3, 0.7]], [1, 1])
    with pytest.raises(ConfigError, match="backwards"):  # high scores on the negatives
        fit_calibration([[0.1, 0.9], [0.2, 0.8], [0.8, 0.2], [0.9, 0.1]] * 5, [0, 0, 1, 1] * 5)


def test_a_calibrated_pipeline_shows_calibrated_probabilities_and_labels_as_before(loaded_pipeline, chest_images):
    plain = loaded_pipeline.predict(chest_images)
    calibration = ProbabilityCalibration("platt", slope=3.0, intercept=0.2)
    calibrated = loaded_pipeline._sharing_models(calibration=calibration)
    rule = calibrated.decision_rule
    assert rule.calibrated and rule.threshold == pytest.approx(calibration.apply_to_positive(0.5))
    for before, after in zip(plain, calibrated.predict(chest_images)):
        assert after.raw_probabilities == pytest.approx(before.probabilities)
        assert after.probabilities["covid"] == pytest.approx(
            float(calibration.apply_to_positive(before.probabilities["covid"])))
        assert after.label == before.label  # a monotone map keeps the preset's decisions
        assert (after.probabilities["covid"] >= rule.threshold) == (after.label == "covid")


def test_calibration_is_saved_in_the_preset(small_pipeline, small_preset):
    from keras_covidcxr import Pipeline

    assert Pipeline.from_preset(small_preset).calibration == small_pipeline.calibration

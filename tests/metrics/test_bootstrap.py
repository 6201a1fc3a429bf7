"""Patient-level bootstrap confidence intervals."""

import numpy as np
import pytest

from keras_covidcxr import ConfigError
from keras_covidcxr.metrics import (
    bootstrap_metrics,
    classification_metrics,
    percentile_interval,
    resample_patients,
)
from keras_covidcxr.metrics.bootstrap import wilson_interval


def noisy_predictions(n_patients=80, images_per_patient=3, seed=0):
    rng = np.random.default_rng(seed)
    patients = np.repeat(np.arange(n_patients), images_per_patient)
    y = (patients % 2).astype(int)
    p = np.clip(0.35 * y + 0.65 * rng.random(len(y)), 0, 1)
    return y, p, patients


def test_interval_covers_the_point_estimate_and_is_seeded():
    y, p, patients = noisy_predictions()
    names = ["normal", "covid"]
    point = classification_metrics(y, p, names)
    intervals = bootstrap_metrics(y, p, names, groups=patients, n_resamples=300, seed=0)
    for metric, value in point.overall.items():
        low, high = intervals["overall"][metric]
        assert low <= value <= high, metric
        assert high - low > 0
    for name in names:
        low, high = intervals["per_class"][name]["auc"]
        assert low <= point.per_class[name]["auc"] <= high
    assert intervals == bootstrap_metrics(y, p, names, groups=patients, n_resamples=300, seed=0)
    assert intervals != bootstrap_metrics(y, p, names, groups=patients, n_resamples=300, seed=1)


def test_resampling_takes_whole_patients():
    patients = np.array(["a", "a", "a", "b", "c", "c"])
    for index in resample_patients(patients, 50, seed=0):
        drawn = patients[index]
        counts = {patient: int((drawn == patient).sum()) for patient in "abc"}
        assert counts["a"] % 3 == 0 and counts["c"] % 2 == 0
        assert sum(1 for _ in set(drawn)) <= 3
        # as many patients drawn as there are: total draws = 3
        assert counts["a"] // 3 + counts["b"] + counts["c"] // 2 == 3


def test_patient_level_intervals_are_wider_when_images_repeat_a_patient():
    # 10 identical images per patient: resampling images pretends to have 10x the evidence
    rng = np.random.default_rng(5)
    y_patient = rng.integers(0, 2, 40)
    p_patient = np.clip(0.3 * y_patient + 0.7 * rng.random(40), 0, 1)
    y, p = np.repeat(y_patient, 10), np.repeat(p_patient, 10)
    patients = np.repeat(np.arange(40), 10)
    by_patient = bootstrap_metrics(y, p, ["n", "c"], groups=patients, n_resamples=400, seed=0)
    by_image = bootstrap_metrics(y, p, ["n", "c"], groups=None, n_resamples=400, seed=0)
    width = lambda intervals: intervals["overall"]["accuracy"][1] - intervals["overall"]["accuracy"][0]
    assert width(by_patient) > 2 * width(by_image)


def test_undefined_resamples_are_left_out_and_bad_arguments_raise():
    assert percentile_interval([np.nan, 0.2, 0.4, np.nan], 0.5) == pytest.approx((0.25, 0.35))
    low, high = percentile_interval([np.nan])
    assert np.isnan(low) and np.isnan(high)
    y, p, patients = noisy_predictions(10, 1)
    with pytest.raises(ConfigError, match="confidence"):
        bootstrap_metrics(y, p, ["a", "b"], patients, confidence=95)
    with pytest.raises(ConfigError, match="groups has shape"):
        bootstrap_metrics(y, p, ["a", "b"], patients[:3])


def test_a_resample_without_a_class_is_left_out_of_macro_averages_and_that_class_s_ppv():
    # covid (class 0) from 2 patients of 5 films each, 80 other patients: about 1 resample in 7 draws no covid
    rng = np.random.default_rng(1)
    labels = np.r_[np.zeros(10, int), rng.integers(1, 3, 80)]
    groups = np.r_[np.repeat([0, 1], 5), np.arange(2, 82)]
    probs = rng.dirichlet([1, 1, 1], 90) + np.eye(3)[labels] * 0.3
    probs /= probs.sum(axis=1, keepdims=True)
    names = ["covid", "normal", "pneumonia"]
    intervals = bootstrap_metrics(labels, probs, names, groups=groups, n_resamples=300, seed=0)
    kept, ppv = [], []  # the reference: resamples that drew every class
    for index in resample_patients(groups, 300, seed=0):
        result = classification_metrics(labels[index], probs[index], names)
        if len(set(labels[index])) == 3:
            kept.append(result.overall["auc"])
            ppv.append(result.per_class["covid"]["ppv"])
    assert len(kept) < 290  # some resamples did miss covid
    assert intervals["overall"]["auc"] == pytest.approx(percentile_interval(kept))
    assert intervals["per_class"]["covid"]["ppv"] == pytest.approx(percentile_interval(ppv))


def test_a_wilson_interval_ends_exactly_at_0_and_1():
    assert wilson_interval(15, 15)[1] == 1.0 and wilson_interval(0, 15)[0] == 0.0
    assert wilson_interval(1, 1) == pytest.approx([0.2065, 1.0], abs=1e-4)

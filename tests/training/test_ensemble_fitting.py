"""Ensemble weights fitted on validation predictions: hand-made cases with known answers."""

import numpy as np
import pytest

from keras_covidcxr import ConfigError
from keras_covidcxr.training import fit_ensemble_weights


def labels_and_perfect(n=200, classes=2, seed=0):
    labels = np.random.default_rng(seed).integers(classes, size=n)
    perfect = np.eye(classes)[labels] * 0.96 + 0.04 / classes
    return labels, perfect


def test_perfect_member_takes_all_the_weight():
    labels, perfect = labels_and_perfect()
    random = np.random.default_rng(1).dirichlet([1, 1], size=len(labels))
    fit = fit_ensemble_weights(np.stack([random, perfect], axis=1), labels, ["random", "perfect"])
    assert fit.weights == pytest.approx((0.0, 1.0), abs=1e-3)
    assert fit.candidates["log_loss"]["log_loss"] < fit.candidates["uniform"]["log_loss"]
    # the accuracy heuristic spreads weight over the random member too
    accuracy_weights = fit.candidates["accuracy"]["weights"]
    assert 0.25 < accuracy_weights["random"] < 0.45
    assert fit.member_accuracies[1] == 1.0


def test_identical_members_keep_uniform_weights_and_three_classes_work():
    labels, perfect = labels_and_perfect(classes=3)
    fit = fit_ensemble_weights(np.stack([perfect, perfect, perfect], axis=1), labels)
    assert fit.weights == pytest.approx((1 / 3,) * 3, abs=1e-6)
    assert fit.threshold is None  # thresholds are for two classes


def test_complementary_members_share_the_weight():
    labels, perfect = labels_and_perfect()
    rng = np.random.default_rng(2)
    # each member is right on one half of the samples and uninformative on the other
    half = rng.random(len(labels)) < 0.5
    a = np.where(half[:, None], perfect, 0.5)
    b = np.where(half[:, None], 0.5, perfect)
    fit = fit_ensemble_weights(np.stack([a, b], axis=1), labels)
    assert fit.weights[0] == pytest.approx(half.mean(), abs=0.05)


def test_binary_threshold_is_youden_on_the_ensemble():
    labels = np.array([0] * 50 + [1] * 50)
    scores = np.concatenate([np.linspace(0.0, 0.3, 50), np.linspace(0.25, 0.6, 50)])
    fit = fit_ensemble_weights(scores[:, None], labels)  # one member, positive-class probabilities
    assert fit.weights == (1.0,)
    is_positive = scores >= fit.threshold
    j = is_positive[labels == 1].mean() + (~is_positive[labels == 0]).mean() - 1
    for t in np.unique(scores):
        other = scores >= t
        assert j >= other[labels == 1].mean() + (~other[labels == 0]).mean() - 1 - 1e-12
    assert fit.threshold_point["sensitivity"] == pytest.approx(is_positive[labels == 1].mean())


def test_bad_inputs_are_refused():
    with pytest.raises(ConfigError):
        fit_ensemble_weights(np.zeros((4, 2, 2)), [0, 1, 2, 0])
    with pytest.raises(ConfigError):
        fit_ensemble_weights(np.full((4, 2, 2), 0.5), [0, 1], method="best")

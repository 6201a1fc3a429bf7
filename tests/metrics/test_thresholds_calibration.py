"""Operating thresholds (Youden, target sensitivity) and calibration (ECE, reliability curve)."""

import numpy as np
import pytest

from keras_covidcxr import ConfigError
from keras_covidcxr.metrics import (
    expected_calibration_error,
    one_vs_rest,
    reliability_curve,
    threshold_for_sensitivity,
    threshold_for_targets,
    top_label_reliability,
    youden_threshold,
)


def brute_force(is_positive, scores):
    """(threshold, sensitivity, specificity) for every candidate threshold."""
    is_positive = np.asarray(is_positive, bool)
    points = []
    for threshold in sorted(set(scores), reverse=True):
        called = np.asarray(scores) >= threshold
        points.append((threshold, called[is_positive].mean(), (~called[~is_positive]).mean()))
    return points


def test_youden_by_hand_and_by_brute_force():
    point = youden_threshold([0, 0, 1, 1, 1], [0.1, 0.5, 0.4, 0.7, 0.9])
    # >=0.7: sens 2/3 spec 1 (J .667); >=0.4: sens 1 spec .5 (J .5)
    assert (point.threshold, point.sensitivity, point.specificity) == pytest.approx((0.7, 2 / 3, 1.0))
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 200).astype(bool)
    scores = np.round(rng.random(200) * 0.7 + y * 0.3, 2)
    best = max(brute_force(y, scores), key=lambda t: (t[1] + t[2], t[0]))
    point = youden_threshold(y, scores)
    assert (point.threshold, point.sensitivity, point.specificity) == pytest.approx(best)


def test_threshold_for_target_sensitivity():
    point = threshold_for_sensitivity([0, 0, 1, 1, 1], [0.1, 0.5, 0.4, 0.7, 0.9], target=0.9)
    assert (point.threshold, point.sensitivity, point.specificity) == pytest.approx((0.4, 1.0, 0.5))
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 300).astype(bool)
    scores = rng.random(300) * 0.6 + y * 0.4
    point = threshold_for_sensitivity(y, scores, target=0.95)
    candidates = [t for t in brute_force(y, scores) if t[1] >= 0.95]
    assert point.threshold == pytest.approx(max(t[0] for t in candidates))
    assert point.sensitivity >= 0.95
    with pytest.raises(ConfigError, match="both positive and negative"):
        youden_threshold([1, 1], [0.2, 0.3])


def test_threshold_for_targets_shares_the_shortfall_or_keeps_the_most_room():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 300).astype(bool)
    scores = np.round(rng.random(300) * 0.7 + y * 0.3, 2)
    for sensitivity, specificity in ((0.95, 0.95), (0.6, 0.6)):  # out of reach / reachable
        point = threshold_for_targets(y, scores, sensitivity, specificity)
        best = max(brute_force(y, scores), key=lambda t: (min(t[1] - sensitivity, t[2] - specificity), t[0]))
        assert (point.threshold, point.sensitivity, point.specificity) == pytest.approx(best)
    reachable = threshold_for_targets(y, scores, 0.6, 0.6)
    assert reachable.sensitivity >= 0.6 and reachable.specificity >= 0.6
    with pytest.raises(ConfigError, match="target specificity"):
        threshold_for_targets(y, scores, 0.8, 1.5)


def test_one_vs_rest_picks_the_class_column():
    is_positive, scores = one_vs_rest(
        ["a", "b", "c"], [[0.2, 0.5, 0.3], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]], ["a", "b", "c"], "c"
    )
    assert is_positive.tolist() == [False, False, True] and scores.tolist() == [0.3, 0.8, 0.4]


def test_reliability_curve_and_ece_by_hand():
    outcomes = [1, 0, 1, 1, 0]
    confidences = [0.95, 0.85, 0.15, 0.55, 0.5]
    curve = reliability_curve(outcomes, confidences, n_bins=4)  # bins [0,.25) [.25,.5) [.5,.75) [.75,1]
    assert curve.counts.tolist() == [1, 0, 2, 2]
    assert curve.mean_confidence[[0, 2, 3]] == pytest.approx([0.15, 0.525, 0.9])
    assert curve.observed_frequency[[0, 2, 3]] == pytest.approx([1.0, 0.5, 0.5])
    assert np.isnan(curve.mean_confidence[1])
    expected = 1 / 5 * 0.85 + 2 / 5 * 0.025 + 2 / 5 * 0.4
    assert curve.expected_calibration_error == pytest.approx(expected)
    assert curve.to_dict()["mean_confidence"][1] is None


def test_a_confidence_on_a_bin_edge_falls_in_the_bin_it_starts():
    edges = [i / 10 for i in range(10)] + [1.0]  # 0.3, 0.6 and 0.7 among them, which linspace misplaces
    bins = [int(np.flatnonzero(reliability_curve([1], [edge], 10).counts)[0]) for edge in edges]
    assert bins == [*range(10), 9]  # [i/10, (i+1)/10); 1.0 in the last bin


def test_top_label_ece_is_zero_when_confidence_matches_accuracy():
    # 10 predictions at confidence 0.7, 7 right: perfectly calibrated
    probs = np.tile([0.7, 0.3], (10, 1))
    y = ["a"] * 7 + ["b"] * 3
    assert expected_calibration_error(y, probs, ["a", "b"]) == pytest.approx(0.0)
    # all right at 0.7: ECE 0.3
    assert expected_calibration_error(["a"] * 10, probs, ["a", "b"]) == pytest.approx(0.3)
    curve = top_label_reliability(["a"] * 10, probs, ["a", "b"], n_bins=5)
    assert curve.counts.tolist() == [0, 0, 0, 10, 0]
    with pytest.raises(ConfigError, match="n_bins"):
        reliability_curve([1], [0.5], n_bins=0)

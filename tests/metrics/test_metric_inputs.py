"""Metrics at the edges: exact ties, 0.5 itself, and inputs that would otherwise give a silent wrong number."""

import numpy as np
import pytest

from keras_covidcxr import ConfigError
from keras_covidcxr.metrics import (
    binary_auc,
    bootstrap_metrics,
    classification_metrics,
    confusion_matrix,
    patient_kfold_indices,
    reliability_curve,
    threshold_for_targets,
    youden_threshold,
)
from keras_covidcxr.metrics.risk_coverage import area_under_risk_coverage, risk_coverage_curve
from keras_covidcxr.models.pipeline.calibration import fit_calibration
from keras_covidcxr.models.pipeline.refer_rule import answered_metrics


def test_thresholds_tied_but_for_rounding_pick_the_highest():
    # 0.55, 0.25 and 0.15 all give Youden's J = 1/3 exactly; in floats the first reads 0.333...33, the last 0.333...37
    point = youden_threshold(np.array([0, 0, 1, 1, 1, 0], bool), [0.35, 0.05, 0.55, 0.15, 0.25, 0.45])
    assert (point.threshold, point.sensitivity, point.specificity) == (0.55, pytest.approx(1 / 3), 1.0)
    # both margins are exactly -0.2 at 0.45 and at 0.25
    point = threshold_for_targets([1, 0, 0, 1, 1, 1, 1], [0.25, 0.15, 0.35, 0.65, 0.55, 0.05, 0.45], 0.8, 0.7)
    assert point.threshold == 0.45


def test_an_even_half_is_called_positive_by_default_as_by_a_threshold_of_half():
    default = classification_metrics([1], [0.5], ["non_covid", "covid"]).confusion_matrix
    explicit = classification_metrics([1], [0.5], ["non_covid", "covid"], threshold=0.5).confusion_matrix
    assert default.tolist() == explicit.tolist() == [[0, 0], [0, 1]]


def test_risk_coverage_answers_tied_images_together_whatever_their_order():
    scores, truth = np.array([0.7, 0.7, 0.95]), np.array([0, 1, 1])
    curve = risk_coverage_curve(scores, truth, 0.5)
    flipped = risk_coverage_curve(scores[::-1], truth[::-1], 0.5)
    assert curve["coverage"].tolist() == pytest.approx([1 / 3, 1, 1])
    assert curve["risk"].tolist() == pytest.approx([0, 1 / 3, 1 / 3])
    assert area_under_risk_coverage(curve) == pytest.approx(area_under_risk_coverage(flipped))
    assert risk_coverage_curve([1.0], [1], 0.99999999999)["risk"].tolist() == [0.0]  # decided before clipping
    for low, high in ((0.3, 0.7), (0.2, 0.8)):  # equally far on either side of 0.5
        assert risk_coverage_curve([low, high], [1, 1], 0.5)["risk"].tolist() == [0.5, 0.5]
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        risk_coverage_curve([0.2, 0.9], [0, 1], 1.0)


@pytest.mark.parametrize("call", [
    lambda labels, scores: risk_coverage_curve(scores, labels, 0.5),
    lambda labels, scores: answered_metrics(scores, labels, 0.5, [False, False]),
    lambda labels, scores: binary_auc(labels, scores),
])
def test_binary_metrics_refuse_class_names_and_missing_scores(call):
    with pytest.raises(ConfigError, match="labels must be True/False or 1/0"):
        call(["normal", "covid"], [0.2, 0.9])  # every non-empty string would read True
    with pytest.raises(ConfigError, match="1 scores are NaN or infinite"):
        call([0, 1], [np.nan, 0.9])
    assert call(np.array([False, True]), [0.2, 0.9]) is not None


def test_a_confusion_matrix_refuses_classes_outside_its_range():
    with pytest.raises(ConfigError, match="prediction 2 is outside 0..1"):
        confusion_matrix([0, 1], [2, 0], 2)
    with pytest.raises(ConfigError, match="label 3 is outside 0..1"):
        confusion_matrix([3, 1], [0, 0], 2)
    for labels, predictions in (([0, 1], [0, np.nan]), (["a", "b"], [0, 1]), ([0.5, 1], [0, 1.7])):
        with pytest.raises(ConfigError, match="must be whole class indices"):
            confusion_matrix(labels, predictions, 2)


def test_reliability_bins_follow_their_edges_and_refuse_what_is_not_a_probability_or_an_outcome():
    curve = reliability_curve([1, 0], [5 / 7, 0.1], n_bins=7)  # 5/7 is edge 5: the bin [5/7, 6/7)
    assert curve.counts.tolist() == [1, 0, 0, 0, 0, 1, 0]
    assert reliability_curve([1], [1.0], n_bins=4).counts.tolist() == [0, 0, 0, 1]  # the last bin includes 1
    with pytest.raises(ConfigError, match=r"confidences must be numbers in \[0, 1\]"):
        reliability_curve([1, 0], [np.nan, 0.3])
    with pytest.raises(ConfigError, match="outcomes must be 0 or 1"):
        reliability_curve([2, 0], [0.9, 0.3])


@pytest.mark.parametrize("missing", [None, np.nan])
def test_images_without_a_patient_id_are_refused_not_merged_into_one_patient(missing):
    labels, probabilities = [0, 1, 0, 1], [0.1, 0.8, 0.3, 0.7]
    with pytest.raises(ConfigError, match="2 samples have no group id"):
        bootstrap_metrics(labels, probabilities, ["a", "b"], groups=np.array(["p1", missing, "p3", missing], object),
                          n_resamples=10)
    with pytest.raises(ConfigError, match="no group id"):
        patient_kfold_indices(labels, np.array([1.0, 2.0, missing, 4.0], object), 2)
    with pytest.raises(ConfigError, match="1 samples have no group id"):  # a plain list: numpy would make "nan"
        patient_kfold_indices(labels, ["a", "b", missing, "d"], 2)


def test_folds_that_no_class_can_fill_are_a_config_error():
    with pytest.raises(ConfigError, match="k=4: cannot stratify 4 samples into 4 folds"):
        patient_kfold_indices([0, 1, 0, 1], [1, 2, 3, 4], 4)


def test_calibration_refuses_labels_that_are_not_class_indices():
    probabilities = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8]])
    with pytest.raises(ConfigError, match=r"labels must be class indices 0..1, got \[0, 2\]"):
        fit_calibration(probabilities, [0, 2, 0, 2])
    with pytest.raises(ConfigError, match="labels must be class indices"):
        fit_calibration(probabilities, ["non_covid", "covid", "non_covid", "covid"])
    assert fit_calibration(probabilities, np.array([False, True, False, True])).slope > 0
    assert fit_calibration(probabilities, [0.0, 1.0, 0.0, 1.0]).slope > 0  # whole numbers as floats are indices

"""Metric values against hand-computed cases and scikit-learn."""

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from keras_covidcxr import ConfigError
from keras_covidcxr.metrics import (
    binary_auc,
    classification_metrics,
    confusion_matrix,
    cross_validate,
    metrics_by_group,
    patient_kfold_indices,
)

CLASSES = ["covid", "normal", "pneumonia"]
# 10 images; argmax predictions:  covid, covid, normal | normal, normal, covid | pneumonia x3, normal
Y_TRUE = ["covid"] * 3 + ["normal"] * 3 + ["pneumonia"] * 4
Y_PROB = np.array(
    [
        [0.8, 0.1, 0.1],
        [0.6, 0.3, 0.1],
        [0.3, 0.5, 0.2],
        [0.1, 0.8, 0.1],
        [0.2, 0.7, 0.1],
        [0.5, 0.4, 0.1],
        [0.1, 0.2, 0.7],
        [0.2, 0.1, 0.7],
        [0.3, 0.1, 0.6],
        [0.2, 0.5, 0.3],
    ]
)


def test_three_class_values_by_hand():
    result = classification_metrics(Y_TRUE, Y_PROB, CLASSES)
    # confusion matrix (rows true, columns predicted)
    assert result.confusion_matrix.tolist() == [[2, 1, 0], [1, 2, 0], [0, 1, 3]]
    covid = result.per_class["covid"]  # TP 2, FN 1, FP 1, TN 6
    assert covid["sensitivity"] == pytest.approx(2 / 3)
    assert covid["specificity"] == pytest.approx(6 / 7)
    assert covid["ppv"] == pytest.approx(2 / 3)
    assert covid["npv"] == pytest.approx(6 / 7)
    assert covid["f1"] == pytest.approx(2 / 3)
    normal = result.per_class["normal"]  # TP 2, FN 1, FP 2, TN 5
    assert (normal["sensitivity"], normal["specificity"], normal["ppv"], normal["npv"]) == pytest.approx(
        (2 / 3, 5 / 7, 1 / 2, 5 / 6)
    )
    assert normal["f1"] == pytest.approx(4 / 7)
    pneumonia = result.per_class["pneumonia"]  # TP 3, FN 1, FP 0, TN 6
    assert (
        pneumonia["sensitivity"],
        pneumonia["specificity"],
        pneumonia["ppv"],
        pneumonia["npv"],
    ) == pytest.approx((3 / 4, 1.0, 1.0, 6 / 7))
    # covid AUC by hand: positives' scores .8 .6 .3 vs the 7 negatives' .1 .2 .5 .1 .2 .3 .2
    # wins: .8 -> 7, .6 -> 7, .3 -> 5 plus one tie counted half  => 19.5 / 21
    assert covid["auc"] == pytest.approx(19.5 / 21)
    assert result.overall["accuracy"] == pytest.approx(0.7)
    assert result.averaging == "macro"
    assert result.overall["sensitivity"] == pytest.approx((2 / 3 + 2 / 3 + 3 / 4) / 3)
    assert result.support == {"covid": 3, "normal": 3, "pneumonia": 4}


def test_three_class_values_match_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    probs = rng.dirichlet([1, 1, 1], 400) * 0.6 + np.eye(3)[y] * 0.4
    result = classification_metrics(y, probs, CLASSES)
    pred = probs.argmax(1)
    assert result.confusion_matrix.tolist() == skm.confusion_matrix(y, pred).tolist()
    assert result.overall["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    recall = skm.recall_score(y, pred, average=None)
    precision = skm.precision_score(y, pred, average=None)
    f1 = skm.f1_score(y, pred, average=None)
    for c, name in enumerate(CLASSES):
        assert result.per_class[name]["sensitivity"] == pytest.approx(recall[c])
        assert result.per_class[name]["ppv"] == pytest.approx(precision[c])
        assert result.per_class[name]["f1"] == pytest.approx(f1[c])
        # specificity and NPV are recall and precision of the negative class in one-vs-rest
        assert result.per_class[name]["specificity"] == pytest.approx(skm.recall_score(y != c, pred != c))
        assert result.per_class[name]["npv"] == pytest.approx(skm.precision_score(y != c, pred != c))
        assert result.per_class[name]["auc"] == pytest.approx(skm.roc_auc_score(y == c, probs[:, c]))
    assert result.overall["auc"] == pytest.approx(
        skm.roc_auc_score(y, probs, multi_class="ovr", average="macro")
    )
    assert result.overall["sensitivity"] == pytest.approx(skm.recall_score(y, pred, average="macro"))
    assert result.overall["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))


def test_binary_uses_positive_class_and_accepts_sigmoid_scores():
    y = ["covid", "covid", "covid", "other", "other"]
    p_covid = [0.9, 0.6, 0.3, 0.4, 0.7]
    result = classification_metrics(y, p_covid, ["other", "covid"])
    assert result.averaging == "positive class covid"
    # TP 2 (.9 .6), FN 1 (.3), FP 1 (.7), TN 1 (.4); AUC: .9 beats 2, .6 beats 1, .3 none -> 3 / 6
    assert result.overall == pytest.approx(
        {
            "accuracy": 0.6,
            "sensitivity": 2 / 3,
            "specificity": 0.5,
            "ppv": 2 / 3,
            "npv": 0.5,
            "f1": 2 / 3,
            "auc": 3 / 6,
        }
    )
    stricter = classification_metrics(y, p_covid, ["other", "covid"], threshold=0.8)
    assert stricter.overall["sensitivity"] == pytest.approx(1 / 3)
    assert stricter.overall["specificity"] == 1.0
    column = classification_metrics(y, np.asarray(p_covid)[:, None], ["other", "covid"])
    assert column.overall == result.overall
    other_view = classification_metrics(y, p_covid, ["other", "covid"], positive_class="other")
    assert other_view.overall["sensitivity"] == pytest.approx(0.5)


def test_undefined_ratios_are_nan_and_none_in_json():
    result = classification_metrics(
        ["covid", "covid"], [[0.9, 0.1], [0.8, 0.2]], ["covid", "normal"], positive_class="normal"
    )
    assert math.isnan(result.per_class["normal"]["sensitivity"])  # no normal image
    assert math.isnan(result.per_class["normal"]["ppv"])  # nothing predicted normal
    assert math.isnan(result.per_class["covid"]["auc"])  # one class only
    as_json = result.to_dict()
    assert as_json["per_class"]["normal"]["sensitivity"] is None
    assert as_json["per_class"]["covid"]["sensitivity"] == 1.0


def test_binary_auc_handles_ties_like_sklearn():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300).astype(bool)
    scores = np.round(rng.random(300) + y * 0.3, 1)  # many ties
    assert binary_auc(y, scores) == pytest.approx(skm.roc_auc_score(y, scores))
    assert math.isnan(binary_auc([True, True], [0.2, 0.3]))


def test_confusion_matrix_counts():
    assert confusion_matrix([0, 1, 1, 2], [0, 2, 1, 2], 3).tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]


@pytest.mark.parametrize(
    ("y_true", "y_prob", "message"),
    [
        (["covid", "flu"], [[0.5, 0.5, 0.0]] * 2, "label 'flu' is not one of the class names"),
        ([0, 3], [[0.5, 0.5, 0.0]] * 2, "label index 3 is outside"),
        (["covid"], [[0.5, 0.5]], r"expected \(n, 3\)"),
        (["covid", "normal"], [[0.5, 0.5, 0.0]], "2 labels but y_prob has 1 rows"),
        (["covid"], [[1.5, 0.0, 0.0]], "finite probabilities in"),
    ],
)
def test_bad_inputs_raise_config_errors(y_true, y_prob, message):
    with pytest.raises(ConfigError, match=message):
        classification_metrics(y_true, y_prob, CLASSES)


def test_breakdown_by_source_and_view():
    sources = ["ieee8023"] * 5 + ["bimcv"] * 5
    by_source = metrics_by_group(Y_TRUE, Y_PROB, CLASSES, sources)
    assert list(by_source) == ["bimcv", "ieee8023"]
    assert by_source["ieee8023"].n == 5
    assert by_source["ieee8023"].overall["accuracy"] == pytest.approx(
        classification_metrics(Y_TRUE[:5], Y_PROB[:5], CLASSES).overall["accuracy"]
    )
    by_view = metrics_by_group(Y_TRUE, Y_PROB, CLASSES, ["PA", None] * 5)
    assert set(by_view) == {"PA", "unknown"}


def test_patient_grouped_cross_validation():
    rng = np.random.default_rng(1)
    patients = np.repeat(np.arange(40), 3)
    y = np.asarray(CLASSES)[patients % 3]
    folds = patient_kfold_indices(y, patients, k=4, seed=0)
    assert len(folds) == 4
    assert sorted(np.concatenate([test for _, test in folds]).tolist()) == list(range(120))
    for train, test in folds:
        assert not set(patients[train]) & set(patients[test])

    def fit_predict(train_index, test_index):
        labels = patients[test_index] % 3
        return np.eye(3)[labels] * 0.7 + rng.dirichlet([1, 1, 1], len(test_index)) * 0.3

    result = cross_validate(fit_predict, y, CLASSES, patients, k=4)
    assert len(result.folds) == 4 and not np.isnan(result.out_of_fold_prob).any()
    assert result.pooled.overall["accuracy"] == 1.0
    mean, std = result.mean_and_std()["accuracy"]
    assert mean == 1.0 and std == 0.0
    with pytest.raises(ConfigError, match="fewer than the folds"):
        patient_kfold_indices(y[:6], patients[:6], k=5)

"""The paper's metric suite: accuracy, sensitivity, specificity, PPV, NPV, F1, AUC-ROC, confusion matrix.

Per class, one-vs-rest, from the confusion matrix (TP, FP, TN, FN of that class):

| metric | formula | also called |
|---|---|---|
| sensitivity | TP / (TP + FN) | recall, true positive rate |
| specificity | TN / (TN + FP) | true negative rate |
| ppv | TP / (TP + FP) | precision, positive predictive value |
| npv | TN / (TN + FN) | negative predictive value |
| f1 | 2 TP / (2 TP + FP + FN) | |
| auc | area under the ROC curve of that class's probability | AUC-ROC |

A ratio with a zero denominator is NaN (undefined), never a silent 0. `overall` holds accuracy
and, for two classes, the positive class's values (`class_names[1]` unless `positive_class` says
otherwise: "COVID-19 sensitivity" as the paper reports it); for three or more classes the macro
average over classes (AUC: macro one-vs-rest, as scikit-learn's `roc_auc_score(multi_class="ovr")`).
A macro average leaves out the classes where a value is undefined (no image of the class, or none
predicted for PPV), as scikit-learn's `zero_division=np.nan` does, where scikit-learn's AUC refuses.

The values are computed with numpy (fast enough for 1,000 bootstrap resamples); the tests check
each against scikit-learn.

Example:
    >>> result = classification_metrics(
    ...     ["covid", "covid", "normal", "normal"], [[0.2, 0.8], [0.6, 0.4], [0.9, 0.1], [0.3, 0.7]],
    ...     class_names=["normal", "covid"])
    >>> result.overall["sensitivity"], result.overall["specificity"], result.overall["accuracy"]
    (0.5, 0.5, 0.5)
    >>> result.confusion_matrix.tolist()
    [[1, 1], [1, 1]]
"""

import dataclasses

import numpy as np

from keras_covidcxr.errors import ConfigError
from keras_covidcxr.metrics.inputs import check_binary, check_class_names, check_inputs

PER_CLASS_METRICS = ("sensitivity", "specificity", "ppv", "npv", "f1", "auc")
OVERALL_METRICS = ("accuracy", *PER_CLASS_METRICS)
METRIC_TITLES = {
    "accuracy": "Accuracy",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "ppv": "PPV",
    "npv": "NPV",
    "f1": "F1",
    "auc": "AUC",
}


def _ratio(numerator, denominator):
    numerator = np.asarray(numerator, np.float64)
    denominator = np.asarray(denominator, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)


def confusion_matrix(labels, predictions, n_classes):
    """(n_classes, n_classes) counts; row = true class, column = predicted class (as scikit-learn)."""
    labels, predictions = _class_indices(labels, "label"), _class_indices(predictions, "prediction")
    if labels.ndim != 1 or predictions.shape != labels.shape:
        raise ConfigError(f"need 1-D labels and predictions of one length, got shapes {labels.shape} and "
                          f"{predictions.shape}")
    for name, values in (("label", labels), ("prediction", predictions)):
        outside = values[(values < 0) | (values >= n_classes)]
        if outside.size:
            raise ConfigError(f"{name} {outside[0]} is outside 0..{n_classes - 1}")
    return np.bincount(labels * n_classes + predictions, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    )


def _class_indices(values, what):
    """`values` as int64 class indices; refused unless they are whole numbers (not NaN, 0.5 or names)."""
    values = np.asarray(values)
    whole = values.dtype.kind in "biu" or (values.dtype.kind == "f" and np.all(np.isfinite(values))
                                           and np.all(values == np.round(values)))
    if not whole:
        raise ConfigError(f"{what}s must be whole class indices, got {values.reshape(-1)[:3].tolist()}...")
    return values.astype(np.int64)


def binary_auc(is_positive, scores):
    """Area under the ROC curve (Mann-Whitney U / (n_pos * n_neg), ties count half); NaN if one class."""
    is_positive, scores = check_binary(is_positive, scores)
    n_pos = int(is_positive.sum())
    n_neg = is_positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(scores.size, np.float64)
    # average rank of tied scores
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]
    ends = np.r_[starts[1:], scores.size]
    average = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(average, ends - starts)
    return float((ranks[is_positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def predict_labels(probs, threshold=None):
    """Predicted class indices: for two classes `probs[:, 1] >= threshold` (default 0.5, so an even 0.5
    calls class 1, as every threshold here is inclusive), otherwise the argmax."""
    probs = np.asarray(probs, np.float64)
    if threshold is None and probs.shape[1] == 2:
        threshold = 0.5
    if threshold is None:
        return probs.argmax(axis=1)
    if probs.shape[1] != 2:
        raise ConfigError("a decision threshold applies to two-class problems only")
    return (probs[:, 1] >= threshold).astype(np.int64)


@dataclasses.dataclass
class ClassificationMetrics:
    """Metric values of one set of predictions.

    `overall`: metric -> value (see the module doc for binary vs macro); `per_class`: class ->
    metric -> value; `confusion_matrix`: rows true, columns predicted; `support`: class -> count.
    """

    class_names: tuple
    averaging: str
    overall: dict
    per_class: dict
    confusion_matrix: np.ndarray
    support: dict
    n: int

    def to_dict(self):
        """JSON-ready: NaN (undefined) becomes None."""

        def clean(value):
            return None if value is None or (isinstance(value, float) and np.isnan(value)) else value

        return {
            "class_names": list(self.class_names),
            "averaging": self.averaging,
            "n": self.n,
            "overall": {k: clean(v) for k, v in self.overall.items()},
            "per_class": {c: {k: clean(v) for k, v in m.items()} for c, m in self.per_class.items()},
            "confusion_matrix": self.confusion_matrix.tolist(),
            "support": dict(self.support),
        }


def positive_index(class_names, positive_class):
    """The column whose one-vs-rest values are `overall` (default: the second of two classes); None: macro."""
    if positive_class is None:
        return 1 if len(class_names) == 2 else None
    if positive_class not in class_names:
        raise ConfigError(f"positive_class {positive_class!r} is not one of {', '.join(class_names)}")
    return class_names.index(positive_class)


def metrics_from_indices(labels, probs, class_names, positive_class=None, threshold=None):
    """`ClassificationMetrics` from already-checked int labels and (n, k) probabilities (fast path)."""
    k = len(class_names)
    predictions = predict_labels(probs, threshold)
    matrix = confusion_matrix(labels, predictions, k)
    tp = np.diag(matrix).astype(np.float64)
    fn = matrix.sum(axis=1) - tp
    fp = matrix.sum(axis=0) - tp
    tn = matrix.sum() - tp - fn - fp
    values = {
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "ppv": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "auc": np.asarray([binary_auc(labels == c, probs[:, c]) for c in range(k)]),
    }
    per_class = {
        name: {metric: float(values[metric][c]) for metric in PER_CLASS_METRICS}
        for c, name in enumerate(class_names)
    }
    accuracy = float(tp.sum() / matrix.sum())
    positive = positive_index(class_names, positive_class)
    if positive is not None:
        averaging = f"positive class {class_names[positive]}"
        overall = {"accuracy": accuracy, **per_class[class_names[positive]]}
    else:
        averaging = "macro"
        overall = {"accuracy": accuracy}
        for metric in PER_CLASS_METRICS:
            defined = values[metric][~np.isnan(values[metric])]
            overall[metric] = float(defined.mean()) if defined.size else float("nan")
    support = {name: int(count) for name, count in zip(class_names, matrix.sum(axis=1))}
    return ClassificationMetrics(
        tuple(class_names), averaging, overall, per_class, matrix, support, len(labels)
    )


def classification_metrics(y_true, y_prob, class_names, positive_class=None, threshold=None):
    """Every metric of the paper, overall and per class, for one model's probabilities.

    Args:
        y_true: true labels, as class names or indices into `class_names`.
        y_prob: probabilities, (n, n_classes); with two classes also (n,) = P(class_names[1]).
        class_names: the classes, in the order of `y_prob`'s columns.
        positive_class: for `overall`, report this class's one-vs-rest values instead of the
            macro average (the default for two classes is `class_names[1]`).
        threshold: two classes only: predict `class_names[1]` when its probability is at least
            this (default 0.5: the most probable class, a tie at 0.5 going to `class_names[1]`).

    Returns:
        `ClassificationMetrics`.
    """
    names = check_class_names(class_names)
    labels, probs = check_inputs(y_true, y_prob, names)
    return metrics_from_indices(labels, probs, names, positive_class, threshold)

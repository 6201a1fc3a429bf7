"""Operating thresholds for a two-class decision (e.g. COVID vs rest) from ROC analysis.

`youden_threshold` maximises Youden's J = sensitivity + specificity - 1; `threshold_for_sensitivity`
finds the highest threshold that still reaches a target sensitivity (a screening setting);
`threshold_for_targets` comes closest to a (sensitivity, specificity) target pair.
A sample is called positive when its score is at least the threshold.

Example:
    >>> point = youden_threshold([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    >>> point.threshold, point.sensitivity, point.specificity
    (0.8, 0.5, 1.0)
    >>> threshold_for_sensitivity([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], target=1.0).threshold
    0.35
    >>> threshold_for_targets([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], sensitivity=0.8, specificity=0.5).threshold
    0.35
"""

import dataclasses

import numpy as np

from keras_covidcxr.errors import ConfigError
from keras_covidcxr.metrics.inputs import check_binary, check_class_names, check_inputs


@dataclasses.dataclass(frozen=True)
class OperatingPoint:
    """A decision threshold and the sensitivity and specificity it gives on the data it came from."""

    threshold: float
    sensitivity: float
    specificity: float

    def to_dict(self):
        return dataclasses.asdict(self)


def one_vs_rest(y_true, y_prob, class_names, positive_class):
    """(is_positive bool array, positive-class scores) for one class against the others."""
    names = check_class_names(class_names)
    if positive_class not in names:
        raise ConfigError(f"positive_class {positive_class!r} is not one of {', '.join(names)}")
    labels, probs = check_inputs(y_true, y_prob, names)
    column = names.index(positive_class)
    return labels == column, probs[:, column]


def _roc(is_positive, scores):
    from sklearn.metrics import roc_curve

    is_positive, scores = check_binary(is_positive, scores)
    if is_positive.all() or not is_positive.any():
        raise ConfigError("an operating threshold needs both positive and negative samples")
    fpr, tpr, thresholds = roc_curve(is_positive, scores, drop_intermediate=False)
    keep = np.isfinite(thresholds)  # the first point (threshold = inf) calls nothing positive
    return fpr[keep], tpr[keep], thresholds[keep]


def youden_threshold(is_positive, scores):
    """The threshold maximising sensitivity + specificity - 1 (the highest one among ties)."""
    fpr, tpr, thresholds = _roc(is_positive, scores)
    best = _first_best(tpr - fpr)
    return OperatingPoint(float(thresholds[best]), float(tpr[best]), float(1.0 - fpr[best]))


def threshold_for_sensitivity(is_positive, scores, target=0.95):
    """The highest threshold whose sensitivity is at least `target` (so specificity is highest)."""
    if not 0 < target <= 1:
        raise ConfigError(f"target sensitivity {target!r} must be in (0, 1]")
    fpr, tpr, thresholds = _roc(is_positive, scores)
    reached = np.flatnonzero(tpr >= target - 1e-12)
    best = int(reached[0])
    return OperatingPoint(float(thresholds[best]), float(tpr[best]), float(1.0 - fpr[best]))


def threshold_for_targets(is_positive, scores, sensitivity=0.80, specificity=0.70):
    """The threshold whose smaller margin over the two targets is largest: both targets met with the most
    room where some threshold meets them, otherwise the shortfall shared as evenly as the curve allows
    (the highest such threshold among ties)."""
    for name, target in (("sensitivity", sensitivity), ("specificity", specificity)):
        if not 0 < target <= 1:
            raise ConfigError(f"target {name} {target!r} must be in (0, 1]")
    fpr, tpr, thresholds = _roc(is_positive, scores)
    best = _first_best(np.minimum(tpr - sensitivity, (1.0 - fpr) - specificity))
    return OperatingPoint(float(thresholds[best]), float(tpr[best]), float(1.0 - fpr[best]))


def _first_best(values):
    """The first index whose value is the largest; values equal but for rounding (1/3 as 0.333...33 and
    0.333...37) count as tied. Thresholds decrease along the curve, so the first is the highest."""
    return int(np.flatnonzero(values >= values.max() - 1e-9)[0])

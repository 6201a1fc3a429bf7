"""Calibration: do predicted probabilities match observed frequencies?

Equal-width bins over [0, 1] (the last bin includes 1.0). For each bin: the mean confidence, the
observed frequency of the outcome, and the count. Expected calibration error (ECE, Guo et al.
2017) = sum over bins of (count / n) * |frequency - confidence|. For a classifier the default
is top-label calibration: confidence = the highest class probability, outcome = that class is
right. Empty bins are kept (count 0, NaN values) so curves of several models line up.

Example:
    >>> curve = reliability_curve([1, 0, 1, 1], [0.9, 0.2, 0.7, 0.95], n_bins=2)
    >>> curve.counts.tolist(), curve.observed_frequency.tolist()
    ([1, 3], [0.0, 1.0])
    >>> round(expected_calibration_error(["a", "b"], [[0.8, 0.2], [0.3, 0.7]], ["a", "b"], n_bins=10), 3)
    0.25
"""

import dataclasses

import numpy as np

from keras_covidcxr.errors import ConfigError
from keras_covidcxr.metrics.inputs import check_inputs


@dataclasses.dataclass
class ReliabilityCurve:
    """Per-bin mean confidence, observed outcome frequency and count, plus the bin edges."""

    bin_edges: np.ndarray
    mean_confidence: np.ndarray
    observed_frequency: np.ndarray
    counts: np.ndarray

    @property
    def expected_calibration_error(self):
        filled = self.counts > 0
        if not filled.any():
            return float("nan")
        gaps = np.abs(self.observed_frequency[filled] - self.mean_confidence[filled])
        return float(np.sum(self.counts[filled] / self.counts.sum() * gaps))

    def to_dict(self):
        def clean(values):
            return [None if np.isnan(v) else float(v) for v in values]

        return {
            "bin_edges": self.bin_edges.tolist(),
            "mean_confidence": clean(self.mean_confidence),
            "observed_frequency": clean(self.observed_frequency),
            "counts": self.counts.tolist(),
            "expected_calibration_error": self.expected_calibration_error,
        }


def reliability_curve(outcomes, confidences, n_bins=10):
    """A `ReliabilityCurve` of binary `outcomes` (0/1) against `confidences` in [0, 1]."""
    if int(n_bins) != n_bins or n_bins < 1:
        raise ConfigError(f"n_bins={n_bins!r}: need a positive whole number")
    outcomes = np.asarray(outcomes, np.float64).reshape(-1)
    confidences = np.asarray(confidences, np.float64).reshape(-1)
    if outcomes.shape != confidences.shape:
        raise ConfigError(f"{outcomes.size} outcomes but {confidences.size} confidences")
    if not np.all((confidences >= 0) & (confidences <= 1)):  # NaN fails too
        raise ConfigError("confidences must be numbers in [0, 1]")
    if not np.isin(outcomes, (0, 1)).all():
        raise ConfigError("outcomes must be 0 or 1 (the event happened or not)")
    edges = np.linspace(0.0, 1.0, int(n_bins) + 1)
    # [i / n, (i + 1) / n), computed exactly: linspace's edge 0.30000000000000004 put a confidence of 0.3 below it
    bins = np.clip(np.floor(confidences * n_bins).astype(int), 0, int(n_bins) - 1)
    counts = np.bincount(bins, minlength=n_bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_confidence = np.bincount(bins, confidences, minlength=n_bins) / counts
        observed = np.bincount(bins, outcomes, minlength=n_bins) / counts
    return ReliabilityCurve(edges, mean_confidence, observed, counts)


def top_label_reliability(y_true, y_prob, class_names, n_bins=10):
    """Reliability of the predicted class: confidence = max probability, outcome = prediction right."""
    labels, probs = check_inputs(y_true, y_prob, class_names)
    return reliability_curve(probs.argmax(axis=1) == labels, probs.max(axis=1), n_bins)


def expected_calibration_error(y_true, y_prob, class_names, n_bins=10):
    """Top-label ECE with `n_bins` equal-width bins (0 = perfectly calibrated)."""
    return top_label_reliability(y_true, y_prob, class_names, n_bins).expected_calibration_error


def brier_score(y_true, y_prob, class_names):
    """Brier score (0 is perfect): two classes, the mean of (p(class 1) - outcome)^2; more classes,
    the mean over images of the squared distance between the probabilities and the one-hot truth.

    Example:
        >>> round(brier_score(["a", "b"], [[0.8, 0.2], [0.4, 0.6]], ["a", "b"]), 3)
        0.1
    """
    labels, probs = check_inputs(y_true, y_prob, class_names)
    if probs.shape[1] == 2:
        return float(np.mean((probs[:, 1] - (labels == 1)) ** 2))
    one_hot = np.eye(probs.shape[1])[labels]
    return float(np.mean(np.sum((probs - one_hot) ** 2, axis=1)))

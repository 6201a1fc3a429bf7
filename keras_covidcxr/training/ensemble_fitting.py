"""Fitting the weighted-average ensemble on the validation split: weights and operating threshold.

Method (ours; the paper does not say how its weights were chosen): the weights w minimise the
validation log-loss of the averaged probabilities,

    L(w) = -mean_i log( sum_m w_m * p_m(y_i | x_i) ),   subject to w_m >= 0, sum_m w_m = 1,

solved with scipy's SLSQP from uniform weights (L is convex in w, so the optimum is global up to
ties). Log-loss rather than accuracy because it is smooth, uses the whole probability, and does
not overfit a small validation set to a few borderline images. For comparison `EnsembleFit`
also reports weights proportional to each member's validation accuracy (the common heuristic)
and the uniform average, each with its validation log-loss and accuracy.

For two classes the operating threshold is then fitted on the ensemble's validation
probabilities of the positive class (class index 1, "covid") by Youden's J (sensitivity +
specificity - 1, `metrics.youden_threshold`); the preset stores weights and threshold.
"""

import dataclasses

import numpy as np
from scipy.optimize import minimize

from keras_covidcxr.errors import ConfigError
from keras_covidcxr.metrics.thresholds import youden_threshold

_EPSILON = 1e-12
METHODS = ("log_loss", "accuracy", "uniform")


@dataclasses.dataclass(frozen=True)
class EnsembleFit:
    """Fitted ensemble weights (normalised), their comparison, and the operating threshold.

    `weights` are the ones of `method`; `candidates` maps each method to its weights and
    validation log-loss / accuracy; `threshold` is Youden's threshold for two classes (None
    otherwise), `threshold_point` its sensitivity and specificity on the validation split.
    """

    method: str
    weights: tuple
    member_names: tuple
    member_accuracies: tuple
    candidates: dict
    threshold: float | None
    threshold_point: dict | None
    n_samples: int

    def to_dict(self):
        return {
            "method": self.method,
            "weights": dict(zip(self.member_names, self.weights)),
            "member_accuracies": dict(zip(self.member_names, self.member_accuracies)),
            "candidates": self.candidates,
            "threshold": self.threshold,
            "threshold_point": self.threshold_point,
            "n_samples": self.n_samples,
        }


def _as_member_probabilities(member_probabilities):
    probs = np.asarray(member_probabilities, dtype=np.float64)
    if probs.ndim == 2:  # (n, members) positive-class probabilities of binary members
        probs = np.stack([1.0 - probs, probs], axis=-1)
    if probs.ndim != 3 or probs.shape[-1] < 2 or probs.shape[1] < 1:
        raise ConfigError(f"member probabilities must be (n, members, classes), got shape {probs.shape}")
    if not np.all(np.isfinite(probs)) or probs.min() < 0 or probs.max() > 1:
        raise ConfigError("member probabilities must be finite and within [0, 1]")
    return probs


def _log_loss(weights, true_class_probs):
    return float(-np.mean(np.log(true_class_probs @ weights + _EPSILON)))


def _accuracy(probs, weights, labels):
    return float(np.mean(np.argmax(np.einsum("nmc,m->nc", probs, weights), axis=-1) == labels))


def _fit_log_loss(true_class_probs):
    members = true_class_probs.shape[1]
    start = np.full(members, 1.0 / members)

    def loss_and_gradient(w):
        mixture = true_class_probs @ w + _EPSILON
        return -np.mean(np.log(mixture)), -np.mean(true_class_probs / mixture[:, None], axis=0)

    result = minimize(
        loss_and_gradient, start, jac=True, method="SLSQP", bounds=[(0.0, 1.0)] * members,
        constraints=[{"type": "eq", "fun": lambda w: np.sum(w) - 1.0, "jac": lambda w: np.ones_like(w)}],
        options={"maxiter": 500, "ftol": 1e-12},
    )
    weights = np.clip(result.x, 0.0, None)
    weights[weights < 1e-6] = 0.0
    if weights.sum() <= 0 or _log_loss(weights / weights.sum(), true_class_probs) > _log_loss(start, true_class_probs):
        return start  # never worse than the uniform average
    return weights / weights.sum()


def fit_ensemble_weights(member_probabilities, labels, member_names=None, method="log_loss"):
    """Fit the weighted-average ensemble on validation predictions.

    Args:
        member_probabilities: (n, members, classes) validation probabilities (e.g.
            `member_probabilities(members, inputs)`), or (n, members) positive-class
            probabilities of binary members.
        labels: (n,) true class indices.
        member_names: names for the report (default "member0", ...).
        method: which weights to return: "log_loss" (default), "accuracy" or "uniform".

    Example:
        >>> labels = np.array([0, 1] * 50)
        >>> perfect = np.eye(2)[labels] * 0.98 + 0.01
        >>> noise = np.random.default_rng(0).dirichlet([1, 1], size=100)
        >>> fit = fit_ensemble_weights(np.stack([perfect, noise], axis=1), labels)
        >>> [round(w, 3) for w in fit.weights]
        [1.0, 0.0]
    """
    if method not in METHODS:
        raise ConfigError(f"method must be one of {METHODS}, got {method!r}")
    probs = _as_member_probabilities(member_probabilities)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    n, members, classes = probs.shape
    if len(labels) != n or n == 0:
        raise ConfigError(f"{len(labels)} labels for {n} validation samples")
    if labels.min() < 0 or labels.max() >= classes:
        raise ConfigError(f"labels must lie in 0..{classes - 1}")
    names = tuple(member_names or (f"member{m}" for m in range(members)))
    if len(names) != members:
        raise ConfigError(f"{len(names)} member names for {members} members")

    true_class_probs = probs[np.arange(n), :, labels]  # (n, members)
    accuracies = np.mean(np.argmax(probs, axis=-1) == labels[:, None], axis=0)
    uniform = np.full(members, 1.0 / members)
    by_accuracy = accuracies / accuracies.sum() if accuracies.sum() > 0 else uniform
    candidates = {}
    for name, weights in (("log_loss", _fit_log_loss(true_class_probs)), ("accuracy", by_accuracy),
                          ("uniform", uniform)):
        candidates[name] = {
            "weights": dict(zip(names, (float(w) for w in weights))),
            "log_loss": _log_loss(weights, true_class_probs),
            "accuracy": _accuracy(probs, weights, labels),
        }
    chosen = np.asarray(list(candidates[method]["weights"].values()))

    threshold, point = None, None
    if classes == 2 and 0 < labels.sum() < n:
        ensemble_scores = np.einsum("nm,m->n", probs[..., 1], chosen)
        operating = youden_threshold(labels == 1, ensemble_scores)
        threshold = _strictly_inside(operating.threshold)
        point = operating.to_dict()
    return EnsembleFit(
        method=method,
        weights=tuple(float(w) for w in chosen),
        member_names=names,
        member_accuracies=tuple(float(a) for a in accuracies),
        candidates=candidates,
        threshold=threshold,
        threshold_point=point,
        n_samples=n,
    )


def fit_member_thresholds(member_scores, labels):
    """Each two-class member's own vote threshold: Youden's J on its validation p(positive).

    Args:
        member_scores: (n, members) positive-class probabilities on the validation split.
        labels: (n,) true class indices (0 or 1).

    Example:
        >>> labels = np.array([0, 0, 1, 1])
        >>> fit_member_thresholds(np.array([[0.1, 0.6], [0.2, 0.7], [0.3, 0.8], [0.4, 0.9]]), labels)
        [0.3, 0.8]
    """
    is_positive = np.asarray(labels).reshape(-1) == 1
    scores = np.asarray(member_scores, np.float64)
    return [_strictly_inside(youden_threshold(is_positive, s).threshold) for s in scores.T]


def _strictly_inside(threshold):
    """Ensembles need thresholds strictly inside (0, 1)."""
    return float(np.clip(threshold, 1e-6, 1.0 - 1e-6))

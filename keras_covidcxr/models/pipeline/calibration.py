"""Probability calibration of the ensemble: Platt scaling (two classes) or temperature scaling.

A small, fitted-on-validation map from the ensemble's raw probabilities to probabilities that match
observed frequencies. Both maps are monotone in p(positive), so a threshold on raw scores becomes
the same decision at `apply_to_positive(threshold)` on calibrated ones. Numpy only: presets are
read and described without Keras.

- Platt (Platt 1999): p' = sigmoid(slope * logit(p) + intercept), two classes only, fitted as a
  plain (unpenalised) logistic regression on logit(p), without Platt's smoothed targets
  ((N+ + 1) / (N+ + 2)), so on a few dozen images it differs from scikit-learn's
  `CalibratedClassifierCV(method="sigmoid")`.
- Temperature (Guo et al. 2017): p' = softmax(log(p) / T), any number of classes; T is searched
  in [e^-4, e^4] (0.018 to 55).

Example:
    >>> calibration = fit_calibration([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]], [0, 1, 0, 1])
    >>> calibration.method
    'platt'
    >>> probabilities = calibration.apply([[0.5, 0.5]])
    >>> bool(abs(probabilities.sum() - 1.0) < 1e-9)
    True
"""

import dataclasses

import numpy as np

from keras_covidcxr.errors import ConfigError
from keras_covidcxr.settings import settings_from_dict

METHODS = ("platt", "temperature")
_EPSILON = 1e-7


@dataclasses.dataclass(frozen=True)
class ProbabilityCalibration:
    """A fitted calibration map (see the module docstring).

    Attributes:
        method: "platt" or "temperature".
        slope, intercept: Platt's parameters on the logit of p(positive).
        temperature: the temperature T (> 0) of temperature scaling.
        fitted_on: how many images it was fitted on (provenance only).
        class_shares: each class's share of those images, in class order: the calibrated
            probabilities hold at these shares (at another prevalence they would read differently).
    """

    method: str
    slope: float = 1.0
    intercept: float = 0.0
    temperature: float = 1.0
    fitted_on: int = None
    class_shares: list = None

    def __post_init__(self):
        shares = self.class_shares
        if shares is not None and not (isinstance(shares, (list, tuple)) and len(shares) >= 2
                                       and all(isinstance(x, (int, float)) and 0 <= x <= 1 for x in shares)
                                       and abs(sum(shares) - 1) < 1e-3):
            raise ConfigError(f"class_shares must be each class's share of the calibration images, got {shares!r}")
        if self.method not in METHODS:
            raise ConfigError(f"calibration method must be one of {METHODS}, got {self.method!r}")
        if self.method == "platt" and not (np.isfinite(self.slope) and self.slope > 0 and np.isfinite(self.intercept)):
            raise ConfigError(f"Platt scaling needs a finite positive slope, got {self.slope} (intercept {self.intercept})")
        if self.method == "temperature" and not (np.isfinite(self.temperature) and self.temperature > 0):
            raise ConfigError(f"temperature must be finite and positive, got {self.temperature}")

    def apply(self, probabilities):
        """(n, classes) raw probabilities -> (n, classes) calibrated ones."""
        probabilities = np.clip(np.asarray(probabilities, "float64"), _EPSILON, 1.0 - _EPSILON)
        if self.method == "platt":
            if probabilities.shape[-1] != 2:
                raise ConfigError(f"Platt scaling is for two classes, got {probabilities.shape[-1]}")
            positive = self.apply_to_positive(probabilities[..., 1])
            return np.stack([1.0 - positive, positive], axis=-1)
        logits = np.log(probabilities) / self.temperature
        logits -= logits.max(axis=-1, keepdims=True)
        exponentials = np.exp(logits)
        return exponentials / exponentials.sum(axis=-1, keepdims=True)

    def apply_to_positive(self, positive):
        """Two classes: calibrated p(positive) of raw p(positive) (scalar or array)."""
        positive = np.clip(np.asarray(positive, "float64"), _EPSILON, 1.0 - _EPSILON)
        logit = np.log(positive) - np.log1p(-positive)
        if self.method == "platt":
            logit = self.slope * logit + self.intercept
        else:
            logit = logit / self.temperature
        return 1.0 / (1.0 + np.exp(-logit))

    def invert_positive(self, calibrated):
        """Two classes: the raw p(positive) whose calibrated value is `calibrated`."""
        calibrated = np.clip(np.asarray(calibrated, "float64"), _EPSILON, 1.0 - _EPSILON)
        logit = np.log(calibrated) - np.log1p(-calibrated)
        logit = (logit - self.intercept) / self.slope if self.method == "platt" else logit * self.temperature
        return 1.0 / (1.0 + np.exp(-logit))

    def describe(self):
        if self.method == "platt":
            return f"Platt scaling (slope {self.slope:.3f}, intercept {self.intercept:+.3f})"
        return f"temperature scaling (T = {self.temperature:.3f})"

    def shares_text(self, class_names):
        """The calibration images' classes in words ("80% of them covid"), or None when not recorded."""
        if self.class_shares is None or len(self.class_shares) != len(class_names):
            return None
        if len(class_names) == 2:
            return f"{self.class_shares[1]:.0%} of them {class_names[1]}"
        return "of them " + ", ".join(f"{name} {share:.0%}" for name, share in zip(class_names, self.class_shares))

    def to_dict(self):
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}

    @classmethod
    def from_dict(cls, config):
        return settings_from_dict(cls, config, "calibration settings")


def fit_calibration(probabilities, labels, method=None):
    """Fit a `ProbabilityCalibration` to raw (n, classes) probabilities and true class indices.

    `method` defaults to "platt" for two classes and "temperature" otherwise. Fit it on data the
    ensemble was not trained on (a calibration split or out-of-fold scores).

    Raises:
        ConfigError: too few images, a single class, or Platt scores that rank the classes
            backwards (a negative slope).
    """
    probabilities = np.clip(np.asarray(probabilities, "float64"), _EPSILON, 1.0 - _EPSILON)
    labels = np.asarray(labels).reshape(-1)
    if probabilities.ndim != 2 or len(probabilities) != len(labels):
        raise ConfigError(f"need (n, classes) probabilities and n labels, got {probabilities.shape} and {labels.shape}")
    if labels.dtype.kind not in "biuf" or not np.isin(labels, np.arange(probabilities.shape[1])).all():
        raise ConfigError(f"labels must be class indices 0..{probabilities.shape[1] - 1}, got "
                          f"{sorted(set(labels.tolist()), key=str)[:5]}")
    labels = labels.astype(int)
    if len(np.unique(labels)) < 2:
        raise ConfigError(f"calibration needs both classes among its {len(labels)} images")
    recorded = {"fitted_on": len(labels),
                "class_shares": [round(float(np.mean(labels == k)), 4) for k in range(probabilities.shape[1])]}
    method = method or ("platt" if probabilities.shape[1] == 2 else "temperature")
    if method == "platt":
        from sklearn.linear_model import LogisticRegression

        positive = probabilities[:, 1]
        logit = (np.log(positive) - np.log1p(-positive)).reshape(-1, 1)
        model = LogisticRegression(C=1e6, max_iter=1000).fit(logit, labels)
        slope, intercept = float(model.coef_[0, 0]), float(model.intercept_[0])
        if slope <= 0:
            raise ConfigError(
                f"Platt scaling fitted a slope of {slope:.3f}: on these {len(labels)} images the scores rank the "
                "classes backwards or not at all"
            )
        return ProbabilityCalibration("platt", slope=slope, intercept=intercept, **recorded)
    if method != "temperature":
        raise ConfigError(f"calibration method must be one of {METHODS}, got {method!r}")
    from scipy.optimize import minimize_scalar

    log_probabilities = np.log(probabilities)

    def negative_log_likelihood(log_temperature):
        logits = log_probabilities / np.exp(log_temperature)
        logits -= logits.max(axis=1, keepdims=True)
        log_normaliser = np.log(np.exp(logits).sum(axis=1))
        return float(np.mean(log_normaliser - logits[np.arange(len(labels)), labels]))

    best = minimize_scalar(negative_log_likelihood, bounds=(-4.0, 4.0), method="bounded")
    return ProbabilityCalibration("temperature", temperature=float(np.exp(best.x)), **recorded)


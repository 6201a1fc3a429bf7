"""When not to answer: a band of calibrated p(positive) (and optionally member disagreement, an
out-of-distribution film or a failed input check) to refer.

A pipeline with a `ReferRule` labels an image "refer" instead of answering when (two classes only)
its calibrated p(positive) lies in [low, high) or its members' p(positive) spread (standard
deviation) exceeds `max_member_spread`, with `out_of_distribution` when the pipeline's
out-of-distribution check flags it, or with `input_checks` when one of its input checks
(`INPUT_CHECK_CODES`) flags it; the label it would have given is kept
(`PipelineResult.would_be_label`). `fit_refer_rule` picks the band on validation scores so that the
answered images keep a target sensitivity (and specificity) while as many images as possible are
answered. Numpy only.

Example:
    >>> rule = ReferRule(low=0.3, high=0.6)
    >>> rule.refers([0.1, 0.45, 0.7]).tolist()
    [False, True, False]
"""

import dataclasses

import numpy as np

from keras_covidcxr.errors import ConfigError
from keras_covidcxr.metrics.inputs import check_binary
from keras_covidcxr.settings import settings_from_dict

# Warnings that say the film or its lung mask is not what the classifiers were built for: a mask of
# implausible size or pieces (or split, a large part trimmed away), pieces below the diaphragm, an
# irregular outline (as on an inverted, rotated or upside-down film), a lateral-looking mask or stated
# view, a child, an image far from a film's shape.
INPUT_CHECK_CODES = ("implausible_mask", "mask_below_diaphragm", "mask_irregular_outline", "view", "age", "aspect",
                     "inverted", "mask_split")
# how a refer reason names each check (the warning itself says more)
INPUT_CHECK_WORDS = {"implausible_mask": "implausible lung mask", "mask_below_diaphragm": "lung mask below the diaphragm",
                     "mask_irregular_outline": "irregular lung-mask outline", "aspect": "aspect ratio",
                     "inverted": "film looks inverted (a negative)", "mask_split": "lung mask in pieces"}


def failed_input_checks(warnings):
    """The codes of `INPUT_CHECK_CODES` among a result's (code, message) warnings, in their order, once each."""
    return list(dict.fromkeys(code for code, _ in warnings if code in INPUT_CHECK_CODES))


def fails_input_checks(warnings):
    """Whether a result's (code, message) warnings include one of `INPUT_CHECK_CODES`."""
    return bool(failed_input_checks(warnings))


@dataclasses.dataclass(frozen=True)
class ReferRule:
    """Refer (abstain) when low <= p(positive) < high, when the members' spread exceeds a limit, when
    the film is out of distribution, or when it fails an input check.

    Attributes:
        low, high: the band on calibrated p(positive); low <= high (equal: no band).
        max_member_spread: refer when the standard deviation of the members' p(positive)
            exceeds this (None: not used).
        out_of_distribution: True: also refer the films the pipeline's out-of-distribution check
            flags (unlike every training film: a CT slice, a blank image), whatever their score.
        input_checks: True: also refer the films an input check flags (`INPUT_CHECK_CODES`: a failed
            lung mask, a lateral-looking mask or view, a child, an image far from a film's shape),
            whatever their score.
        target_sensitivity, target_specificity: what the band was fitted to keep on the
            answered validation images (provenance).
        validation: coverage, sensitivity and specificity on the answered validation images.
    """

    low: float
    high: float
    max_member_spread: float = None
    out_of_distribution: bool = None
    input_checks: bool = None
    target_sensitivity: float = None
    target_specificity: float = None
    validation: dict = None

    def __post_init__(self):
        if not 0.0 <= self.low <= self.high <= 1.0:
            raise ConfigError(f"a refer band needs 0 <= low <= high <= 1, got [{self.low}, {self.high})")
        if self.max_member_spread is not None and not self.max_member_spread > 0:
            raise ConfigError(f"max_member_spread must be positive, got {self.max_member_spread}")
        for name in ("out_of_distribution", "input_checks"):
            if getattr(self, name) not in (None, True, False):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")

    def refers(self, positive, member_spread=None, out_of_distribution=None, failed_input_checks=None):
        """Boolean array: which calibrated p(positive) values (and member spreads, out-of-distribution
        flags and input-check failures) are referred."""
        positive = np.asarray(positive, "float64")
        referred = (positive >= self.low) & (positive < self.high)
        if self.max_member_spread is not None and member_spread is not None:
            referred |= np.asarray(member_spread, "float64") > self.max_member_spread
        if self.out_of_distribution and out_of_distribution is not None:
            referred |= np.asarray(out_of_distribution, bool)
        if self.input_checks and failed_input_checks is not None:
            referred |= np.asarray(failed_input_checks, bool)
        return referred

    def reasons(self, positive=None, member_spread=None, out_of_distribution=False, failed_checks=(),
                positive_class="positive"):
        """Why one film is referred: {code: words} for each part of the rule it meets (empty: answered).

        Codes: "refer_band", "member_spread", "out_of_distribution" and "input_checks" (naming the
        warning codes of the failed checks, `failed_checks`).

        Example:
            >>> ReferRule(0.3, 0.6, input_checks=True).reasons(0.45, failed_checks=["view"], positive_class="covid")
            {'refer_band': 'p(covid) 0.450 in the refer band [0.300, 0.600)', 'input_checks': 'input check failed: view'}
        """
        found = {}
        if positive is not None and self.low <= positive < self.high:
            found["refer_band"] = f"p({positive_class}) {positive:.3f} in the refer band [{self.low:.3f}, {self.high:.3f})"
        if self.max_member_spread is not None and member_spread is not None and member_spread > self.max_member_spread:
            found["member_spread"] = f"the members' spread {member_spread:.3f} exceeds {self.max_member_spread:.3f}"
        if self.out_of_distribution and out_of_distribution:
            found["out_of_distribution"] = "out of distribution"
        if self.input_checks and failed_checks:
            named = ", ".join(INPUT_CHECK_WORDS.get(code, code) for code in failed_checks)
            found["input_checks"] = f"input check{'s' * (len(failed_checks) > 1)} failed: {named}"
        return found

    @property
    def has_band(self):
        """Whether it reads p(positive) (a band or a members' spread limit), which needs two classes and a threshold;
        without, it refers only the films its checks flag, in any pipeline."""
        return self.high > self.low or self.max_member_spread is not None

    def describe(self, positive_class="positive"):
        parts = []
        if self.high > self.low:
            parts.append(f"{self.low:.3f} <= p({positive_class}) < {self.high:.3f}")
        if self.max_member_spread is not None:
            parts.append(f"the members' spread exceeds {self.max_member_spread:.3f}")
        if self.out_of_distribution:
            parts.append("the film is out of distribution")
        if self.input_checks:
            parts.append("an input check fails")
        return "refer if " + " or ".join(parts) if parts else "never refer"

    def without_band(self):
        """The rule's film checks (out of distribution, input checks, members' spread) without its band,
        which belongs to the preset's own threshold; None when nothing is left."""
        rule = dataclasses.replace(self, low=0.0, high=0.0, target_sensitivity=None, target_specificity=None,
                                   validation=None)
        return None if rule.describe() == "never refer" else rule

    def band(self):
        """{"low", "high"[, "max_member_spread", "out_of_distribution", "input_checks"]}: the rule without its
        provenance."""
        provenance = ("target_sensitivity", "target_specificity", "validation")
        return {key: value for key, value in self.to_dict().items() if key not in provenance}

    def to_dict(self):
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}

    @classmethod
    def from_dict(cls, config):
        return settings_from_dict(cls, config, "refer-rule settings")


def answered_metrics(positive, labels, threshold, referred):
    """{"coverage", "sensitivity", "specificity", "accuracy", "answered"} of the images not referred.

    `positive` are scores, `labels` 0/1 truths, `threshold` the decision threshold on the same
    scores, `referred` a boolean mask. Sensitivity or specificity is NaN without answered images
    of that class.
    """
    labels, positive = check_binary(labels, positive)
    answered = ~np.asarray(referred, bool)
    predicted = positive >= threshold
    with np.errstate(invalid="ignore"):
        sensitivity = np.sum(predicted & labels & answered) / np.sum(labels & answered)
        specificity = np.sum(~predicted & ~labels & answered) / np.sum(~labels & answered)
        accuracy = np.sum((predicted == labels) & answered) / np.sum(answered)
    return {"coverage": float(np.mean(answered)) if answered.size else float("nan"),
            "sensitivity": float(sensitivity), "specificity": float(specificity), "accuracy": float(accuracy),
            "answered": int(answered.sum())}


def fit_refer_rule(positive, labels, threshold, target_sensitivity=0.85, target_specificity=None, min_coverage=0.5,
                   max_candidates=60, out_of_distribution=None, input_checks=None):
    """The band [low, high) around `threshold` that answers the most validation images at the targets.

    Candidates for low are `threshold` and validation scores below it, for high `threshold` and scores
    above it (at most `max_candidates` quantiles each). Among the bands whose answered images reach
    `target_sensitivity` (and `target_specificity`, when given) and cover at least `min_coverage`
    of the images, the one with the highest coverage wins (ties: the narrower band). `out_of_distribution`
    and `input_checks` are stored in the rule as given (True: also refer the films the out-of-distribution
    check, or an input check, flags).

    Returns:
        A `ReferRule` with its validation coverage, sensitivity and specificity.

    Raises:
        ConfigError: when no band reaches the targets at `min_coverage`.
    """
    positive, labels = np.asarray(positive, "float64"), np.asarray(labels).astype(bool)
    if positive.shape != labels.shape or labels.all() or not labels.any():
        raise ConfigError("fitting a refer band needs scores and 0/1 labels of both classes, one per image")

    def candidates(values, include):
        values = np.unique(values)
        if len(values) > max_candidates:
            values = np.unique(np.quantile(values, np.linspace(0, 1, max_candidates)))
        return np.unique(np.append(values, include))

    lows = candidates(positive[positive < threshold], threshold)
    highs = candidates(positive[positive >= threshold], threshold)
    highs = np.append(highs, np.nextafter(highs.max(), 2.0))  # also refer the top score
    best = None
    for low in lows:
        for high in highs:
            metrics = answered_metrics(positive, labels, threshold, (positive >= low) & (positive < high))
            if metrics["coverage"] < min_coverage or not metrics["sensitivity"] >= target_sensitivity:
                continue
            if target_specificity is not None and not metrics["specificity"] >= target_specificity:
                continue
            key = (metrics["coverage"], -(high - low))
            if best is None or key > best[0]:
                best = (key, float(low), float(high), metrics)
    if best is None:
        wanted = f"sensitivity {target_sensitivity}" + (
            f" and specificity {target_specificity}" if target_specificity is not None else "")
        raise ConfigError(
            f"no refer band around threshold {threshold:.3f} keeps {wanted} on the answered images while answering "
            f"at least {min_coverage:.0%} of the {labels.size} validation images"
        )
    _, low, high, metrics = best
    return ReferRule(low, min(high, 1.0), out_of_distribution=out_of_distribution, input_checks=input_checks,
                     target_sensitivity=target_sensitivity, target_specificity=target_specificity, validation=metrics)

"""How a pipeline turns class probabilities into a label: one rule, stated in every output.

Two-class weighted averages label the positive class when its probability reaches the preset's
operating threshold (fitted on validation data), not when it passes 0.5; majority votes count
the members' votes, each member voting at its own threshold. A threshold given by the user
(`Pipeline.with_decision_threshold`, `--threshold`) replaces either rule by "p(positive) >= T".

Example:
    >>> rule = DecisionRule("threshold", positive_class="covid", threshold=0.714)
    >>> rule.describe()
    "covid if p(covid) >= 0.714 (the preset's operating threshold)"
    >>> rule.label_index([0.3, 0.7])
    0
"""

import dataclasses

from keras_covidcxr.errors import ConfigError
from keras_covidcxr.models.pipeline.calibration import ProbabilityCalibration
from keras_covidcxr.models.pipeline.refer_rule import ReferRule
from keras_covidcxr.settings import is_finite_number


@dataclasses.dataclass(frozen=True)
class DecisionRule:
    """A pipeline's decision rule.

    Attributes:
        rule: "threshold" (two classes: the positive class when its probability reaches
            `threshold`), "majority_vote" (the members' votes) or "argmax".
        positive_class: the class a threshold is for.
        threshold: the threshold of a "threshold" rule.
        origin: "preset" (stored with the model) or "user" (given at prediction time).
        member_thresholds: {member: threshold} at which each member votes for the positive class.
        calibrated: whether `threshold` applies to calibrated probabilities (the preset's raw
            operating threshold mapped through its calibration).
        refer: the preset's refer rule (`ReferRule.band()`), when it has one and it is on.
    """

    rule: str
    positive_class: str = None
    threshold: float = None
    origin: str = "preset"
    member_thresholds: dict = None
    calibrated: bool = None
    refer: dict = None

    def describe(self):
        """The rule in one sentence, for table footers and reports."""
        text = self._describe_label()
        if self.refer:
            text += f"; {ReferRule.from_dict(self.refer).describe(self.positive_class)} (the preset's refer rule)"
        return text

    def _describe_label(self):
        if self.rule == "threshold":
            whose = "the preset's operating threshold" if self.origin == "preset" else "threshold given by the user"
            return f"{self.positive_class} if p({self.positive_class}) >= {self.threshold:.3f} ({whose})"
        if self.rule == "majority_vote":
            votes = ", ".join(f"{name} at {t:.3f}" for name, t in (self.member_thresholds or {}).items())
            return "majority vote of the members" + (f" (each votes {self.positive_class} at its own threshold: "
                                                     f"{votes})" if votes else "")
        return "the most probable class"

    def label_index(self, probabilities):
        """The class index this rule gives one image's probabilities (not for majority votes)."""
        if self.rule == "threshold":
            return int(probabilities[1] >= self.threshold)
        if self.rule == "argmax":
            return max(range(len(probabilities)), key=lambda i: probabilities[i])
        raise ConfigError("a majority vote needs the members' votes, not the ensemble's probabilities")

    def to_dict(self):
        return {key: value for key, value in dataclasses.asdict(self).items() if value is not None}


def decision_rule_of(ensemble, class_names, threshold=None, calibration=None, refer_rule=None):
    """The `DecisionRule` of an ensemble, or the user's `threshold` rule when one is given.

    With a `calibration`, the ensemble's raw operating threshold is stated on the calibrated
    probabilities (the ones results show); the user's `threshold` is read on those too. A
    `refer_rule`'s band belongs to the preset's own threshold: with a user's threshold only its film
    checks (out of distribution, input checks) still refer.
    """
    return _rule(class_names, getattr(ensemble, "threshold", None), ensemble.member_names,
                 ensemble.vote_thresholds if len(class_names) == 2 else None, threshold, calibration, refer_rule)


def decision_rule_from_config(config, threshold=None, refer=True):
    """The `DecisionRule` of a preset's config.json (read without Keras), as `decision_rule_of` gives it."""
    ensemble = config["ensemble"]["config"]
    names = [str(path).rsplit("/", 1)[-1] for path in config["members"]]
    weighted = config["ensemble"]["class_name"] == "WeightedAverageEnsemble"
    ensemble_threshold = ensemble.get("threshold", 0.5) if weighted else None
    if ensemble_threshold is not None and not 0.0 < ensemble_threshold < 1.0:  # as the Keras ensemble checks it
        raise ConfigError(f"threshold must lie strictly between 0 and 1, got {ensemble_threshold}")
    votes = ensemble.get("member_thresholds") or [0.5] * len(names)
    calibration = config.get("calibration")
    refer_rule = config.get("refer_rule") if refer else None
    return _rule(config["class_names"], ensemble_threshold, names, votes, threshold,
                 calibration and ProbabilityCalibration.from_dict(calibration),
                 refer_rule and ReferRule.from_dict(refer_rule))


def _rule(class_names, ensemble_threshold, member_names, vote_thresholds, threshold, calibration=None,
          refer_rule=None):
    two_classes = len(class_names) == 2
    calibrated = True if calibration is not None else None
    if threshold is not None:
        if not two_classes:
            raise ConfigError(f"a decision threshold needs two classes, this pipeline has {list(class_names)}")
        if not is_finite_number(threshold) or not 0.0 < threshold < 1.0:
            raise ConfigError(f"the decision threshold must be a number strictly between 0 and 1, got {threshold!r}")
        checks = refer_rule.without_band() if refer_rule is not None else None
        return DecisionRule("threshold", class_names[1], float(threshold), origin="user", calibrated=calibrated,
                            refer=checks and checks.band())
    if refer_rule is not None and refer_rule.has_band and (not two_classes or ensemble_threshold is None):
        raise ConfigError("a refer band or member-spread limit needs a two-class weighted-average ensemble")
    refer = refer_rule.band() if refer_rule is not None else None
    if ensemble_threshold is None:  # a majority vote
        if not two_classes:
            return DecisionRule("majority_vote", refer=refer)
        return DecisionRule("majority_vote", class_names[1],
                            member_thresholds={n: float(t) for n, t in zip(member_names, vote_thresholds)},
                            refer=refer)
    if two_classes:
        if calibration is not None:
            ensemble_threshold = float(calibration.apply_to_positive(ensemble_threshold))
        return DecisionRule("threshold", class_names[1], float(ensemble_threshold), calibrated=calibrated,
                            refer=refer)
    return DecisionRule("argmax", refer=refer)

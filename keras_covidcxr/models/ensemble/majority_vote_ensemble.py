"""Majority vote of the members' hard labels."""

import keras
from keras import ops

from keras_covidcxr.errors import ConfigError
from keras_covidcxr.models.ensemble.ensemble import Ensemble, first_max_index

TIE_BREAKS = ("mean_probability", "lowest_index")


@keras.saving.register_keras_serializable(package="keras_covidcxr")
class MajorityVoteEnsemble(Ensemble):
    """Each member votes for its most probable class; the most votes win.

    Tie rule (`tie_break`), applied only among the classes that share the
    most votes:
      - "mean_probability" (default): the tied class with the highest mean
        member probability wins; if that is tied too, the lowest class index.
        Two members that disagree on two classes are therefore decided by
        their mean probability, and three members voting for three different
        classes by the class they believe in most on average.
      - "lowest_index": the tied class that comes first in the class order.
      - an int: that class wins every tie it is part of (e.g. the COVID-19
        class, to favour sensitivity); other ties fall back to
        "mean_probability".

    `probabilities` is the mean of the members' probabilities; `label` is
    the vote's winner, so it may differ from the argmax of `probabilities`.

    Example:
        >>> from keras_covidcxr import CXRClassifier
        >>> members = [CXRClassifier("mobilenet_v2", input_shape=(32, 32, 3), name=n)
        ...            for n in ("a", "b", "c")]
        >>> MajorityVoteEnsemble(members).tie_break
        'mean_probability'
    """

    def __init__(self, members, tie_break="mean_probability", name="majority_vote", **kwargs):
        super().__init__(members, name=name, **kwargs)
        is_class_index = isinstance(tie_break, int) and not isinstance(tie_break, bool)
        if is_class_index and not 0 <= tie_break < self.num_classes:
            raise ConfigError(f"tie_break class {tie_break} is not in 0..{self.num_classes - 1}")
        if not is_class_index and tie_break not in TIE_BREAKS:
            raise ConfigError(f"tie_break must be one of {TIE_BREAKS} or a class index, got {tie_break!r}")
        self.tie_break = tie_break

    def combine(self, member_probabilities):
        probabilities = ops.mean(member_probabilities, axis=1)
        member_labels = self.member_labels(member_probabilities)
        counts = ops.sum(ops.one_hot(member_labels, self.num_classes, dtype="float32"), axis=1)
        tied = counts == ops.max(counts, axis=-1, keepdims=True)
        # Rank the tied classes; the small descending ramp resolves equal scores to the lowest index.
        ramp = -ops.arange(self.num_classes, dtype="float32") * 1e-6
        if self.tie_break == "lowest_index":
            score = ramp
        else:
            score = ops.cast(probabilities, "float32") + ramp
            if isinstance(self.tie_break, int):
                score = score + 10.0 * ops.one_hot(self.tie_break, self.num_classes, dtype="float32")
        label = first_max_index(ops.where(tied, score, -1e9))
        return {
            "probabilities": probabilities,
            "label": ops.cast(label, "int32"),
            "member_probabilities": member_probabilities,
            "member_labels": member_labels,
        }

    def get_config(self):
        return {**super().get_config(), "tie_break": self.tie_break}

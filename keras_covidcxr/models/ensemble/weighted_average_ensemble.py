"""Weighted average of the members' class probabilities."""

import keras
import numpy as np
from keras import ops

from keras_covidcxr.errors import ConfigError
from keras_covidcxr.models.ensemble.ensemble import Ensemble, first_max_index


@keras.saving.register_keras_serializable(package="keras_covidcxr")
class WeightedAverageEnsemble(Ensemble):
    """Averages the members' class probabilities with fixed weights.

    Weights must be non-negative, one per member, not all zero; they are
    normalised to sum to 1. The label is the most probable class, except for
    two classes, where it is class 1 (the positive class) when its
    probability reaches `threshold` (the operating point fitted on
    validation data; 0.5 by default).

    Example:
        >>> from keras_covidcxr import CXRClassifier
        >>> members = [CXRClassifier("mobilenet_v2", input_shape=(32, 32, 3), name=n)
        ...            for n in ("a", "b")]
        >>> ensemble = WeightedAverageEnsemble(members, weights=[3, 1])
        >>> ensemble.weights_normalised
        [0.75, 0.25]
    """

    def __init__(self, members, weights=None, threshold=0.5, name="weighted_average", **kwargs):
        super().__init__(members, name=name, **kwargs)
        weights = np.ones(len(self.members)) if weights is None else np.asarray(weights, "float64")
        if weights.shape != (len(self.members),):
            raise ConfigError(
                f"need one weight per member ({len(self.members)}), got {weights.tolist()}"
            )
        if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
            raise ConfigError(
                f"ensemble weights must be finite, non-negative and not all zero: {weights.tolist()}"
            )
        if not 0.0 < threshold < 1.0:
            raise ConfigError(f"threshold must lie strictly between 0 and 1, got {threshold}")
        self.weights_normalised = (weights / weights.sum()).tolist()
        self.threshold = float(threshold)

    def combine(self, member_probabilities):
        weights = ops.convert_to_tensor(self.weights_normalised, dtype=member_probabilities.dtype)
        probabilities = ops.einsum("bmc,m->bc", member_probabilities, weights)
        if self.num_classes == 2:
            label = ops.cast(probabilities[:, 1] >= self.threshold, "int32")
        else:
            label = first_max_index(probabilities)
        return {
            "probabilities": probabilities,
            "label": label,
            "member_probabilities": member_probabilities,
            "member_labels": self.member_labels(member_probabilities),
        }

    def get_config(self):
        return {
            **super().get_config(),
            "weights": self.weights_normalised,
            "threshold": self.threshold,
        }

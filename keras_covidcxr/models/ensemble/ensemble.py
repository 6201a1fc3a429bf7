"""What both ensembles share: their members and the members' class probabilities."""

import keras
from keras import ops

from keras_covidcxr.errors import ConfigError


class Ensemble(keras.Model):
    """Base of the ensembles: runs every member on the same batch.

    `call(images)` returns a dict of tensors: `probabilities` (batch,
    classes), `label` (batch,) int32, `member_probabilities` (batch,
    members, classes) and `member_labels` (batch, members) int32. A two-class
    member's sigmoid output p becomes the pair (1 - p, p), and it votes for
    class 1 when p reaches its own threshold (`member_thresholds`, fitted on
    validation data with the member; 0.5 when not given).
    """

    def __init__(self, members, member_thresholds=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        members = list(members)
        if not members:
            raise ConfigError("an ensemble needs at least one member")
        num_classes = {m.num_classes for m in members}
        if len(num_classes) != 1:
            raise ConfigError(f"ensemble members disagree on the number of classes: {num_classes}")
        names = [m.name for m in members]
        if len(set(names)) != len(names):
            raise ConfigError(f"ensemble member names must be unique, got {names}")
        self.members = members
        self.num_classes = num_classes.pop()
        if member_thresholds is not None:
            member_thresholds = [float(t) for t in member_thresholds]
            if self.num_classes != 2 or len(member_thresholds) != len(members):
                raise ConfigError(
                    f"member_thresholds needs two classes and one threshold per member ({len(members)}), "
                    f"got {member_thresholds}"
                )
            if not all(0.0 < t < 1.0 for t in member_thresholds):
                raise ConfigError(f"member thresholds must lie strictly between 0 and 1, got {member_thresholds}")
        self.member_thresholds = member_thresholds

    def call(self, images, training=False):
        return self.combine(self.member_probabilities(images, training=training))

    def combine(self, member_probabilities):
        """The output dict from (batch, members, classes) member probabilities (tensors or arrays).

        Test-time augmentation averages the members' probabilities over variants and combines
        them with this, the same rule the ensemble applies to one pass.
        """
        raise NotImplementedError

    @property
    def vote_thresholds(self):
        """Two classes: the threshold at which each member votes for class 1 (0.5 unless fitted)."""
        return self.member_thresholds or [0.5] * len(self.members)

    @property
    def member_names(self):
        return [m.name for m in self.members]

    def member_probabilities(self, images, training=False):
        """(batch, members, classes) class probabilities of every member."""
        return self.stack_member_outputs([member(images, training=training) for member in self.members])

    def stack_member_outputs(self, outputs):
        """(batch, members, classes) from the members' outputs (a two-class sigmoid p becomes (1 - p, p))."""
        if self.num_classes == 2:
            outputs = [ops.concatenate([1.0 - p, p], axis=-1) for p in outputs]
        return ops.stack(outputs, axis=1)

    def member_labels(self, member_probabilities):
        """(batch, members) int32 vote of every member."""
        if self.num_classes == 2:
            thresholds = ops.convert_to_tensor(self.vote_thresholds, dtype=member_probabilities.dtype)
            return ops.cast(member_probabilities[..., 1] >= thresholds, "int32")
        return first_max_index(member_probabilities)

    def get_config(self):
        return {
            "name": self.name,
            "members": [keras.saving.serialize_keras_object(m) for m in self.members],
            "member_thresholds": self.member_thresholds,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["members"] = [keras.saving.deserialize_keras_object(m) for m in config["members"]]
        return cls(**config)


def first_max_index(values):
    """int32 index of the largest value along the last axis, the lowest index on ties: `argmax` in ops that
    every export runs (Keras' TensorFlow `argmax` adds Bitcast and BitwiseAnd ops, to order -0.0 before 0.0,
    which ONNX Runtime and LiteRT's built-in ops lack).

    Example:
        >>> import numpy as np
        >>> keras.ops.convert_to_numpy(first_max_index(np.array([[0.2, 0.5, 0.5], [0.7, 0.1, 0.2]]))).tolist()
        [1, 0]
    """
    count = values.shape[-1]
    largest = ops.max(values, axis=-1, keepdims=True)
    index = ops.min(ops.where(values >= largest, ops.arange(count, dtype="int32"), count), axis=-1)
    return ops.cast(ops.minimum(index, count - 1), "int32")  # NaN rows: the last class, not an index past it

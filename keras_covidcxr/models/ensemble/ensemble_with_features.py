"""An ensemble's outputs plus one member's pooled features, from a single pass of that member's backbone."""

import keras
from keras import ops

from keras_covidcxr.errors import ConfigError


class EnsembleWithFeatures(keras.Model):
    """`ensemble`'s output dict plus "features": the globally pooled feature map of member `member_name`.

    The out-of-distribution check reads that member's pooled features; computing them here, in the
    pass that gives the member's probabilities, saves running its backbone a second time. Pipelines
    build it for inference and export (it is not part of a preset). Inference mode only.

    Example:
        >>> import numpy as np
        >>> from keras_covidcxr import CXRClassifier, WeightedAverageEnsemble
        >>> member = CXRClassifier("mobilenet_v2", head_units=0, input_shape=(32, 32, 3), name="m")
        >>> model = EnsembleWithFeatures(WeightedAverageEnsemble([member]), "m")
        >>> tuple(model(np.zeros((2, 32, 32, 3), "float32"))["features"].shape)
        (2, 1280)
    """

    def __init__(self, ensemble, member_name, **kwargs):
        super().__init__(name=f"{ensemble.name}_with_features", **kwargs)
        if member_name not in ensemble.member_names:
            raise ConfigError(f"no member named {member_name!r}; members are {ensemble.member_names}")
        self.ensemble = ensemble
        self.member_name = member_name

    def build(self, input_shape):
        self.ensemble.build(input_shape)  # it has no weights of its own: its members are built models

    def call(self, images):
        outputs, features = [], None
        for member in self.ensemble.members:
            if member.name == self.member_name:
                feature_map = member.feature_extractor(images, training=False)
                features = ops.mean(feature_map, axis=(1, 2))
                outputs.append(member.probabilities_from_feature_map(feature_map))
            else:
                outputs.append(member(images, training=False))
        return {**self.ensemble.combine(self.ensemble.stack_member_outputs(outputs)), "features": features}

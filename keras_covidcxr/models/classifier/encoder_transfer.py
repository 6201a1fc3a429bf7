"""Seed a `resunet_encoder` classifier with the encoder of a trained segmenter."""

import numpy as np

from keras_covidcxr.errors import ConfigError
from keras_covidcxr.models.classifier.backbones import RESUNET_ENCODER


def copy_segmenter_encoder(segmenter, classifier):
    """Copy the encoder and bridge weights of a `ResUnet` into a `resunet_encoder` `CXRClassifier`.

    Layers are matched by name (both are built by `encoder_path`). The segmenter reads one gray
    channel and the classifier three identical ones, so the first convolutions' kernels are
    split evenly over the three channels: the classifier then computes what the segmenter did.

    Returns:
        The number of layers copied.

    Example:
        >>> from keras_covidcxr import CXRClassifier, ResUnet
        >>> segmenter = ResUnet(input_size=64, filters=(8, 16, 32))
        >>> classifier = CXRClassifier("resunet_encoder", input_shape=(64, 64, 3), encoder_filters=(8, 16, 32))
        >>> copy_segmenter_encoder(segmenter, classifier)
        17
    """
    if classifier.backbone_name != RESUNET_ENCODER:
        raise ConfigError(f"{classifier.name}: backbone {classifier.backbone_name!r} is not {RESUNET_ENCODER!r}")
    if tuple(segmenter.filters) != tuple(classifier.encoder_filters):
        raise ConfigError(
            f"segmenter filters {list(segmenter.filters)} differ from the classifier's encoder_filters "
            f"{list(classifier.encoder_filters)}"
        )
    copied = 0
    for layer in classifier.backbone.layers:
        if not layer.weights:
            continue
        source = segmenter.get_layer(layer.name)
        weights = []
        for target, value in zip(layer.get_weights(), source.get_weights()):
            if target.shape != value.shape:  # first convs: 1 input channel -> 3 equal ones
                value = np.repeat(value, target.shape[-2], axis=-2) / target.shape[-2]
            weights.append(value)
        layer.set_weights(weights)
        copied += 1
    return copied

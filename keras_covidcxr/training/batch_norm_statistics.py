"""Recomputing batch-norm moving statistics from data ("precise BN").

A BatchNormalization layer normalises with the batch's statistics in training and with its
moving averages (momentum 0.99) at inference. A small training set gives few steps per epoch:
the bundled ResUnet sees 17 batches per epoch, so after 9 epochs a fifth of each moving average was
still its initial value (mean 0, variance 1) and the rest trailed weights that had moved on. Its
validation Dice in inference mode fell from 0.83 to 0.33 while the same weights with batch
statistics scored 0.93. Recomputing the averages over un-augmented training batches before each
validation fixes the inference model without touching training (batch statistics are used there).

Example:
    >>> import keras, numpy as np
    >>> model = keras.Sequential([keras.Input((4,)), keras.layers.BatchNormalization()])
    >>> batches = [np.full((8, 4), 3.0, "float32"), np.full((8, 4), 5.0, "float32")]
    >>> recompute_batch_norm_statistics(model, batches)
    >>> float(model.layers[0].moving_mean.numpy()[0])
    4.0
"""

import keras


def batch_norm_layers(model):
    return [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]


def recompute_batch_norm_statistics(model, batches, max_batches=None):
    """Set every BatchNormalization layer's moving mean and variance to their average over `batches`.

    Args:
        model: a Keras model.
        batches: an iterable (or indexable dataset) of input batches, or of (inputs, targets) pairs.
        max_batches: use at most this many batches.

    Each batch's mean and variance get equal weight (a running average with momentum k / (k + 1)
    at batch k); the weights themselves are not changed.
    """
    layers = batch_norm_layers(model)
    if not layers:
        return
    momenta = [layer.momentum for layer in layers]
    count = len(batches) if hasattr(batches, "__len__") else None
    if max_batches is not None:
        count = max_batches if count is None else min(count, max_batches)
    try:
        for k, batch in enumerate(batches if count is None else (batches[i] for i in range(count))):
            inputs = batch[0] if isinstance(batch, tuple) else batch
            for layer in layers:
                layer.momentum = k / (k + 1)
            model(inputs, training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum


class BatchNormStatisticsCallback(keras.callbacks.Callback):
    """Recomputes the model's batch-norm statistics from `batches` before each validation.

    `fit` validates before the epoch-end callbacks run, so the checkpoint that keeps the best
    validation epoch saves the recomputed statistics with the weights. Without validation data
    the statistics are recomputed at each epoch end instead.
    """

    def __init__(self, batches, max_batches=None):
        super().__init__()
        self.batches = batches
        self.max_batches = max_batches
        self._validating = False

    def on_test_begin(self, logs=None):
        self._validating = True
        recompute_batch_norm_statistics(self.model, self.batches, self.max_batches)

    def on_epoch_end(self, epoch, logs=None):
        if not self._validating:
            recompute_batch_norm_statistics(self.model, self.batches, self.max_batches)

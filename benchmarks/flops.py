"""Multiply-add FLOPs of a Keras model's convolutions and dense layers, per image."""

import math

import keras


def _spatial(shape):
    return math.prod(d for d in shape[1:-1])


def count_flops(model):
    """2 x multiply-adds of every Conv/DepthwiseConv/Dense layer, nested models included (per call)."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            # a mirror-averaging classifier runs its backbone twice (the image and its mirror image)
            calls = 2 if getattr(model, "mirror_average", False) and layer is getattr(model, "backbone", None) else 1
            total += calls * count_flops(layer)
        elif isinstance(layer, keras.layers.DepthwiseConv2D):
            kh, kw = layer.kernel_size
            total += 2 * _spatial(layer.output.shape) * kh * kw * layer.output.shape[-1]
        elif isinstance(layer, keras.layers.Conv2D):
            kh, kw = layer.kernel_size
            c_in = layer.input.shape[-1] // layer.groups
            total += 2 * _spatial(layer.output.shape) * kh * kw * c_in * layer.filters
        elif isinstance(layer, keras.layers.Dense):
            total += 2 * layer.input.shape[-1] * layer.units
    return total

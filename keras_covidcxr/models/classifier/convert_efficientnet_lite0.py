"""Load PyTorch EfficientNet-Lite0 tensors (lukemelas-style names) into `EfficientNetLite0`.

One explicit name table (`efficientnet_lite0_name_table`) maps every Keras variable to its PyTorch
tensor and layout change, KerasHub-style: conversion fails loudly on a missing, unused or
mis-shaped tensor instead of leaving a variable at its random value.

Example:
    >>> from keras_covidcxr.models.classifier.efficientnet_lite import EfficientNetLite0
    >>> model = EfficientNetLite0(include_top=True)  # doctest: +SKIP
    >>> convert_efficientnet_lite0("efficientnet_lite0_imagenet.safetensors", model)  # doctest: +SKIP
    296
"""

import numpy as np

from keras_covidcxr.errors import ConfigError
from keras_covidcxr.models.classifier.efficientnet_lite import lite0_blocks

# Layout changes from PyTorch to Keras.
CONV = "conv"  # (out, in, kh, kw) -> (kh, kw, in, out)
DEPTHWISE = "depthwise"  # (channels, 1, kh, kw) -> (kh, kw, channels, 1)
DENSE = "dense"  # (out, in) -> (in, out)
SAME = "same"

_BN_VARIABLES = (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"),
                 ("moving_variance", "running_var"))


def _conv_bn_rows(keras_name, torch_conv, torch_bn, kind=CONV):
    kernel_layer = f"{keras_name}_dwconv" if kind == DEPTHWISE else f"{keras_name}_conv"
    bn_layer = f"{keras_name}_dw_bn" if kind == DEPTHWISE else f"{keras_name}_bn"
    rows = [(kernel_layer, "kernel", f"{torch_conv}.weight", kind)]
    rows += [(bn_layer, k, f"{torch_bn}.{t}", SAME) for k, t in _BN_VARIABLES]
    return rows


def efficientnet_lite0_name_table(include_top=False):
    """[(Keras layer, variable name, PyTorch tensor name, layout change)] for every variable."""
    rows = _conv_bn_rows("stem", "_conv_stem", "_bn0")
    for index, (_, _, expand, _, _) in enumerate(lite0_blocks()):
        block, torch_block = f"block{index}", f"_blocks.{index}"
        if expand != 1:
            rows += _conv_bn_rows(f"{block}_expand", f"{torch_block}._expand_conv", f"{torch_block}._bn0")
        rows += _conv_bn_rows(block, f"{torch_block}._depthwise_conv", f"{torch_block}._bn1", DEPTHWISE)
        rows += _conv_bn_rows(f"{block}_project", f"{torch_block}._project_conv", f"{torch_block}._bn2")
    rows += _conv_bn_rows("top", "_conv_head", "_bn1")
    if include_top:
        rows += [("predictions", "kernel", "_fc.weight", DENSE), ("predictions", "bias", "_fc.bias", SAME)]
    return rows


def _to_keras(value, layout):
    if layout == CONV:
        return np.transpose(value, (2, 3, 1, 0))
    if layout == DEPTHWISE:
        return np.transpose(value, (2, 3, 0, 1))
    if layout == DENSE:
        return np.transpose(value)
    return value


def _variable(layer, name):
    for variable in layer.weights:
        if variable.path.split("/")[-1] == name:
            return variable
    raise ConfigError(f"layer {layer.name!r} has no variable {name!r}")


def convert_efficientnet_lite0(checkpoint, model):
    """Assign a PyTorch EfficientNet-Lite0 state dict to an `EfficientNetLite0` model, in place.

    Args:
        checkpoint: the path of a .safetensors file or a dict of numpy arrays keyed by PyTorch name.
        model: an `EfficientNetLite0` (with or without its top; without it, `_fc.*` is ignored).

    Returns:
        The number of PyTorch tensors read (batch-norm step counters are skipped).
    """
    where = ""  # the file's name, when given one
    if not isinstance(checkpoint, dict):
        from safetensors.numpy import load_file

        where, checkpoint = f"{checkpoint}: ", load_file(str(checkpoint))
    include_top = any(layer.name == "predictions" for layer in model.layers)
    table = efficientnet_lite0_name_table(include_top)
    used = {torch_name for _, _, torch_name, _ in table}
    ignored = {"_fc.weight", "_fc.bias"} if not include_top else set()
    unused = sorted(k for k in checkpoint if k not in used | ignored and not k.endswith("num_batches_tracked"))
    missing = sorted(used - set(checkpoint))
    if missing or unused:
        raise ConfigError(
            f"{where}not an EfficientNet-Lite0 checkpoint: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unused {unused[:5]}{'...' if len(unused) > 5 else ''}"
        )
    for layer_name, variable_name, torch_name, layout in table:
        variable = _variable(model.get_layer(layer_name), variable_name)
        value = _to_keras(np.asarray(checkpoint[torch_name], "float32"), layout)
        if tuple(value.shape) != tuple(variable.shape):
            raise ConfigError(
                f"{where}{torch_name}: shape {tuple(value.shape)} does not fit {variable.path} "
                f"{tuple(variable.shape)}"
            )
        variable.assign(value)
    return len(used) + sum(k.endswith("num_batches_tracked") for k in checkpoint)

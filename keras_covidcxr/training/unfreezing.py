"""Which backbone layers train when: blocks, progressive unfreezing, and frozen batch norm.

A backbone is cut into **blocks**: runs of consecutive layers that share a block prefix in their
Keras names - `conv5_block16` (DenseNet, ResNet), `block5` (VGG), `block_16` (MobileNetV2),
`pool4` (a DenseNet transition), `conv1` (a stem); any other layer is its own block. Only blocks
holding weights other than batch norm's count. Phase 2 of the classifier recipe unfreezes the
top `fraction` of these blocks, `ceil(fraction * n_blocks)` of them (at least one), for each
fraction of `TrainingConfig.unfreeze_schedule` in turn (default 10%, 25%, 50%, 100%).

Batch norm stays in inference mode throughout (paper: "we froze the moving mean and moving
variance ... to keep these parameters fixed to their pretrained ImageNet weights"): every
`BatchNormalization` layer gets `trainable = False`, which in Keras 3 also makes it normalise
with its moving statistics and never update them. Its gamma and beta stay fixed too.
"""

import dataclasses
import math
import re

import keras

from keras_covidcxr.errors import ConfigError

_BLOCK_PATTERNS = (
    re.compile(r"^(conv\d+_block\d+)_"),
    re.compile(r"^(block_?\d+)_"),
    re.compile(r"^(pool\d+)_"),
    re.compile(r"^(conv\d+)_"),
)


@dataclasses.dataclass(frozen=True)
class Block:
    """A run of consecutive backbone layers sharing a block name."""

    name: str
    layers: tuple


def _block_key(layer_name):
    for pattern in _BLOCK_PATTERNS:
        match = pattern.match(layer_name)
        if match:
            return match.group(1)
    return layer_name.split("_")[0]


def _is_batch_norm(layer):
    return isinstance(layer, keras.layers.BatchNormalization)


def all_layers(model):
    """Every layer of `model`, nested models' layers included, in order."""
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from all_layers(layer)


def batch_norm_layers(model):
    return [layer for layer in all_layers(model) if _is_batch_norm(layer)]


def freeze_batch_norm(model):
    """Put every batch-norm layer of `model` in inference mode (`trainable = False`)."""
    for layer in batch_norm_layers(model):
        layer.trainable = False


def backbone_blocks(backbone):
    """The backbone's `Block`s from input to output, only those with non-batch-norm weights."""
    blocks, key, run = [], None, []
    for layer in backbone.layers:
        layer_key = _block_key(layer.name)
        if run and layer_key != key:
            blocks.append(Block(key, tuple(run)))
            run = []
        key = layer_key
        run.append(layer)
    if run:
        blocks.append(Block(key, tuple(run)))
    return [b for b in blocks if any(layer.weights and not _is_batch_norm(layer) for layer in b.layers)]


def blocks_for_fraction(n_blocks, fraction):
    """How many top blocks `fraction` unfreezes: ceil(fraction * n_blocks), at least 1."""
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"an unfreezing fraction must lie in (0, 1], got {fraction}")
    return max(1, math.ceil(fraction * n_blocks - 1e-9))


def freeze_backbone(classifier):
    """Phase 1: only the head trains; the whole backbone (and every batch norm) is frozen."""
    classifier.trainable = True
    classifier.backbone.trainable = False
    freeze_batch_norm(classifier)


def unfreeze_top_blocks(classifier, fraction):
    """Phase 2 stage: the head and the top `fraction` of the backbone's blocks train.

    Everything below stays frozen and every batch-norm layer stays in inference mode.
    Returns the names of the trainable blocks, top first.
    """
    classifier.trainable = True
    backbone = classifier.backbone
    blocks = backbone_blocks(backbone)
    count = blocks_for_fraction(len(blocks), fraction)
    trainable = blocks[len(blocks) - count :]
    trainable_layers = {id(layer) for block in trainable for layer in block.layers}
    for layer in backbone.layers:
        layer.trainable = id(layer) in trainable_layers
    freeze_batch_norm(classifier)
    return [block.name for block in reversed(trainable)]

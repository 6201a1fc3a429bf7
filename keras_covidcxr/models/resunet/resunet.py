"""The residual U-Net (Zhang, Liu & Wang 2018) that segments the lungs."""

import keras

from keras_covidcxr.errors import ConfigError
from keras_covidcxr.models.serializable_model import SerializableModel


@keras.saving.register_keras_serializable(package="keras_covidcxr")
class ResUnet(SerializableModel):
    """Deep residual U-Net for lung segmentation (Hertel & Benlamri 2022, Table 5).

    With the defaults it is the paper's 7-level network: three encoder levels
    (64, 128, 256 filters), a bridge (512) and three decoder levels, each a
    pre-activation residual unit (BN-ReLU-conv twice; the first unit starts
    with a plain conv) with a 1x1-conv + BN shortcut, and a 1x1 sigmoid output.

    The paper quotes "about 7.8 M" parameters without a per-layer count; this
    build, with a batch-normalised 1x1 shortcut in every unit as Zhang et al.
    draw it, has 8,231,745 (pinned in the tests). The shortcuts hold 437,184
    of them; without them the count is 7,794,561, the paper's 7.8 M, so the
    paper most likely left them out of its count. Every unit changes the
    number of channels, so an identity shortcut is impossible: we keep them.

    Its input is a film standardised per image (mean 0, standard deviation 1),
    not gray [0, 1]: `keras_covidcxr.preprocessing.model_inputs.segmenter_input`
    makes it from a gray [0, 1] film (a [0, 1] film fed directly gives masks
    that miss most of the lungs). Its output is each pixel's lung probability.

    Args:
        input_size: side of the square input, divisible by 2**(len(filters)-1).
        input_channels: 1 for gray X-rays.
        filters: filters per level from the top encoder level to the bridge;
            its length sets the depth (4 -> 7 levels).
        name: model name; layer names are fixed so weight paths are stable.

    Example:
        >>> model = ResUnet(input_size=64, filters=(8, 16, 32))
        >>> model.output_shape
        (None, 64, 64, 1)
    """

    def __init__(
        self,
        input_size=256,
        input_channels=1,
        filters=(64, 128, 256, 512),
        name="res_unet",
        **kwargs,
    ):
        filters = tuple(int(f) for f in filters)
        if len(filters) < 2:
            raise ConfigError(f"ResUnet needs at least 2 levels of filters, got {filters}")
        if input_size < 2 ** (len(filters) - 1) or min(filters) < 1:
            raise ConfigError(f"ResUnet input_size {input_size} and filters {filters} must be positive, the size at "
                              f"least 2**{len(filters) - 1} (one halving per level below the top)")
        if input_size % 2 ** (len(filters) - 1):
            raise ConfigError(
                f"ResUnet input_size {input_size} is not divisible by "
                f"2**{len(filters) - 1} (one halving per level below the top)"
            )

        # === Layers and graph ===
        inputs = keras.Input((input_size, input_size, input_channels), name="image")
        x, skips = encoder_path(inputs, filters)
        for level, (skip, level_filters) in enumerate(
            zip(reversed(skips), reversed(filters[:-1])), start=1
        ):
            prefix = f"decoder{level}"
            x = keras.layers.UpSampling2D(2, name=f"{prefix}_upsample")(x)
            x = keras.layers.Concatenate(name=f"{prefix}_concat")([x, skip])
            x = _residual_unit(x, level_filters, strides=1, first=False, prefix=prefix)
        outputs = keras.layers.Conv2D(1, 1, activation="sigmoid", name="mask")(x)
        super().__init__(inputs, outputs, name=name, **kwargs)

        # === Config ===
        self.input_size = input_size
        self.input_channels = input_channels
        self.filters = filters

    def get_config(self):
        return {
            **super().get_config(),
            "input_size": self.input_size,
            "input_channels": self.input_channels,
            "filters": list(self.filters),
        }


def encoder_path(inputs, filters):
    """The encoder levels and the bridge: (bridge output, [skip tensor per encoder level]).

    Layer names (`encoder1_conv1`, ..., `bridge_conv2`) are shared by the ResUnet and by the
    classifier backbone `resunet_encoder`, so trained segmenter weights can seed a classifier.
    """
    x, skips = inputs, []
    for level, level_filters in enumerate(filters, start=1):
        is_bridge = level == len(filters)
        prefix = "bridge" if is_bridge else f"encoder{level}"
        x = _residual_unit(x, level_filters, strides=1 if level == 1 else 2, first=level == 1, prefix=prefix)
        if not is_bridge:
            skips.append(x)
    return x, skips


def _residual_unit(x, filters, strides, first, prefix):
    """Pre-activation residual unit with a batch-normalised 1x1 shortcut."""
    shortcut = keras.layers.Conv2D(filters, 1, strides=strides, name=f"{prefix}_shortcut_conv")(x)
    shortcut = keras.layers.BatchNormalization(name=f"{prefix}_shortcut_bn")(shortcut)
    if not first:
        x = keras.layers.BatchNormalization(name=f"{prefix}_bn1")(x)
        x = keras.layers.Activation("relu", name=f"{prefix}_relu1")(x)
    x = keras.layers.Conv2D(filters, 3, strides=strides, padding="same", name=f"{prefix}_conv1")(x)
    x = keras.layers.BatchNormalization(name=f"{prefix}_bn2")(x)
    x = keras.layers.Activation("relu", name=f"{prefix}_relu2")(x)
    x = keras.layers.Conv2D(filters, 3, padding="same", name=f"{prefix}_conv2")(x)
    return keras.layers.Add(name=f"{prefix}_add")([x, shortcut])

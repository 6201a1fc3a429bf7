"""EfficientNet-Lite0 in Keras 3 (Tan & Le 2019; the "Lite" variant for mobile accelerators).

Lite0 is EfficientNet-B0 without squeeze-and-excitation, with ReLU6 instead of swish, and a stem
(32 channels) and head (1280 channels) that are not scaled. Layer names follow the blocks of the
original TensorFlow model, so `convert_efficientnet_lite0.py` can map its checkpoint by name.
Convolutions use `padding="same"`, which is TensorFlow's static SAME padding of the original.
"""

import keras

# Stages of the original model: (repeats, kernel, first stride, expand ratio, input, output filters)
# ("r1_k3_s11_e1_i32_o16", "r2_k3_s22_e6_i16_o24", ...).
LITE0_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
STEM_FILTERS = 32
HEAD_FILTERS = 1280
BATCH_NORM_EPSILON = 1e-3


def lite0_blocks():
    """(kernel, stride, expand ratio, input filters, output filters) of the 16 MBConv blocks, in order."""
    blocks = []
    for repeats, kernel, stride, expand, filters_in, filters_out in LITE0_STAGES:
        for repeat in range(repeats):
            blocks.append((kernel, stride if repeat == 0 else 1, expand, filters_in if repeat == 0 else filters_out,
                           filters_out))
    return blocks


def _conv_bn(x, filters, kernel, stride, name, activation=True):
    x = keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = keras.layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name=f"{name}_bn")(x)
    return keras.layers.ReLU(6.0, name=f"{name}_relu6")(x) if activation else x


def _mbconv(x, index, kernel, stride, expand, filters_in, filters_out):
    name = f"block{index}"
    inputs = x
    if expand != 1:
        x = _conv_bn(x, filters_in * expand, 1, 1, f"{name}_expand")
    x = keras.layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                                     name=f"{name}_dwconv")(x)
    x = keras.layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name=f"{name}_dw_bn")(x)
    x = keras.layers.ReLU(6.0, name=f"{name}_dw_relu6")(x)
    x = _conv_bn(x, filters_out, 1, 1, f"{name}_project", activation=False)
    if stride == 1 and filters_in == filters_out:
        # The original drops whole blocks at random in training (drop connect); at inference the
        # residual sum is exact, which is all a frozen or fine-tuned backbone needs.
        x = keras.layers.Add(name=f"{name}_add")([x, inputs])
    return x


def EfficientNetLite0(include_top=False, input_shape=(224, 224, 3), dropout=0.2, classes=1000, name="efficientnet_lite0"):
    """A functional EfficientNet-Lite0 (random weights; see `convert_efficientnet_lite0`).

    Args:
        include_top: add global pooling, dropout and the 1000-class ImageNet logits.
        input_shape: (height, width, 3), normalised as the checkpoint expects.
        dropout: dropout before the logits (original: 0.2).
        classes: number of logits of the top.

    Example:
        >>> model = EfficientNetLite0(input_shape=(64, 64, 3))
        >>> model.output_shape
        (None, 2, 2, 1280)
    """
    image = keras.Input(input_shape, name="image")
    x = _conv_bn(image, STEM_FILTERS, 3, 2, "stem")
    for index, block in enumerate(lite0_blocks()):
        x = _mbconv(x, index, *block)
    x = _conv_bn(x, HEAD_FILTERS, 1, 1, "top")
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = keras.layers.Dropout(dropout, name="top_dropout")(x)
        x = keras.layers.Dense(classes, name="predictions")(x)
    return keras.Model(image, x, name=name)

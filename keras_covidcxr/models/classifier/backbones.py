"""The backbones a `CXRClassifier` can use.

Each entry names the constructor (a `keras.applications` attribute, or ours), the width of the
extra dense layer the paper puts on top of it (paper: DenseNet-201 128, ResNet-152 1024, VGG-19
4096; the small ones follow their family) and the ImageNet input normalisation of its weights,
which `CXRClassifier(input_normalization="imagenet")` applies inside the model:

| normalisation | input in [0, 1] becomes | backbones |
|---|---|---|
| `"tf"` | 2x - 1 | MobileNet, MobileNetV2, EfficientNet-Lite0 |
| `"torch"` | (x - mean) / std, ImageNet RGB mean and std | DenseNet |
| `"caffe"` | 255 x - ImageNet BGR mean | ResNet, VGG |

(EfficientNet-Lite0: Google trained it on (x - 127) / 128 of 0-255 pixels, i.e. "tf"; its PyTorch
port documents "torch"; we keep Google's.)

`resunet_encoder` is ours, not the paper's: the encoder and bridge of a `ResUnet` (filters set by
the classifier's `encoder_filters`), trained from scratch or seeded with a trained segmenter's
encoder (`copy_segmenter_encoder`). It has no ImageNet weights and its default head has no extra
dense layer.
"""

import numpy as np

from keras_covidcxr.errors import ConfigError
from keras_covidcxr.models.classifier.efficientnet_lite import EfficientNetLite0

RESUNET_ENCODER = "resunet_encoder"
EFFICIENTNET_LITE0 = "efficientnet_lite0"

BACKBONES = {
    # name: (keras.applications attribute or constructor, default head units, ImageNet normalisation)
    "densenet121": ("DenseNet121", 128, "torch"),
    "densenet169": ("DenseNet169", 128, "torch"),
    "densenet201": ("DenseNet201", 128, "torch"),
    "resnet50": ("ResNet50", 1024, "caffe"),
    "resnet101": ("ResNet101", 1024, "caffe"),
    "resnet152": ("ResNet152", 1024, "caffe"),
    "vgg16": ("VGG16", 4096, "caffe"),
    "vgg19": ("VGG19", 4096, "caffe"),
    "mobilenet": ("MobileNet", 128, "tf"),
    "mobilenet_v2": ("MobileNetV2", 128, "tf"),
    EFFICIENTNET_LITE0: (EfficientNetLite0, 128, "tf"),
    RESUNET_ENCODER: (None, 0, None),
}

_IMAGENET_RGB_MEAN = np.array([0.485, 0.456, 0.406])
_IMAGENET_RGB_STD = np.array([0.229, 0.224, 0.225])
_IMAGENET_BGR_MEAN_255 = np.array([103.939, 116.779, 123.68])


def check_backbone_name(backbone):
    """A `ConfigError` naming the choices unless `backbone` is one of `BACKBONES`."""
    if backbone not in BACKBONES:
        raise ConfigError(f"unknown backbone {backbone!r}; choose one of {sorted(BACKBONES)}")


def imagenet_mean_and_variance(normalisation):
    """(mean, variance) per channel, on [0, 1] inputs, of a `keras.layers.Normalization` that does it.

    Gray images are replicated to three equal channels first, so the BGR order of "caffe" needs
    no channel swap.
    """
    if normalisation == "tf":
        return np.full(3, 0.5), np.full(3, 0.25)
    if normalisation == "torch":
        return _IMAGENET_RGB_MEAN, _IMAGENET_RGB_STD**2
    if normalisation == "caffe":
        return _IMAGENET_BGR_MEAN_255 / 255.0, np.full(3, (1.0 / 255.0) ** 2)
    raise ValueError(f"unknown ImageNet normalisation {normalisation!r}")

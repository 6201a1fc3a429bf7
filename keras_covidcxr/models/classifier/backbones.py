"""The `keras.applications` backbones a `CXRClassifier` can use.

Each entry names the application constructor and the width of the extra dense
layer the paper puts on top of it (paper: DenseNet-201 128, ResNet-152 1024,
VGG-19 4096). The small ones are for tests and CPU training; their head width
follows the family.

`resunet_encoder` is ours, not the paper's: the encoder and bridge of a `ResUnet`
(filters set by the classifier's `encoder_filters`), trained from scratch or seeded with
a trained segmenter's encoder (`copy_segmenter_encoder`). Small enough to train on a CPU
without ImageNet weights; its default head has no extra dense layer.
"""

RESUNET_ENCODER = "resunet_encoder"

BACKBONES = {
    # name: (keras.applications attribute, default head units)
    "densenet121": ("DenseNet121", 128),
    "densenet169": ("DenseNet169", 128),
    "densenet201": ("DenseNet201", 128),
    "resnet50": ("ResNet50", 1024),
    "resnet101": ("ResNet101", 1024),
    "resnet152": ("ResNet152", 1024),
    "vgg16": ("VGG16", 4096),
    "vgg19": ("VGG19", 4096),
    "mobilenet": ("MobileNet", 128),
    "mobilenet_v2": ("MobileNetV2", 128),
    RESUNET_ENCODER: (None, 0),
}

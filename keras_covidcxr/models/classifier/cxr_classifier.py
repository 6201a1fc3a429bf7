"""An ImageNet backbone with the paper's classification head."""

import contextlib
import os
import warnings

import keras
import numpy as np

from keras_covidcxr.errors import ConfigError
from keras_covidcxr.models.classifier.backbones import (
    BACKBONES,
    EFFICIENTNET_LITE0,
    RESUNET_ENCODER,
    check_backbone_name,
    imagenet_mean_and_variance,
)
from keras_covidcxr.models.classifier.convert_efficientnet_lite0 import convert_efficientnet_lite0
from keras_covidcxr.models.classifier.mirror_average import mirror_averaged
from keras_covidcxr.models.resunet.resunet import encoder_path
from keras_covidcxr.models.serializable_model import SerializableModel
from keras_covidcxr.settings import is_whole_number


@keras.saving.register_keras_serializable(package="keras_covidcxr")
class CXRClassifier(SerializableModel):
    """A `keras.applications` backbone + the paper's head.

    The head is global average pooling, an extra dense layer with ReLU
    (paper: 128 / 1024 / 4096 units for DenseNet-201 / ResNet-152 / VGG-19),
    dropout 0.1 and a linear layer whose logits go through a sigmoid (one
    unit, for two classes) or a softmax (N units, for N >= 3 classes).

    The backbone's feature map and the head are exposed separately
    (`feature_extractor`: image -> last feature map; `head`: feature map ->
    logits) because Grad-CAM differentiates the logits w.r.t. that map.

    Args:
        backbone: a name from `BACKBONES` ("densenet201", "resnet152",
            "vgg19", or a small one such as "densenet121" for CPU work).
        num_classes: 2 (sigmoid) or more (softmax).
        head_units: width of the extra dense layer; None takes the paper's
            width for the backbone family; 0 removes the layer (a pure CAM
            head, pooled features straight to the logits).
        dropout: dropout rate before the logits (paper: 0.1).
        input_shape: (height, width, channels): 3 channels of an already
            normalised image (the paper: per-image standardised, gray
            replicated), or 1 gray channel in [0, 1] with
            `input_normalization="imagenet"`.
        input_normalization: None (the input is used as it is) or
            "imagenet": the model replicates the gray channel and applies
            its backbone's own ImageNet normalisation (`backbones.py`), so
            callers never need to know which one.
        backbone_weights: None, "imagenet" (downloaded by Keras) or the path
            of a local weights file for the backbone: a Keras weights file
            (`.weights.h5`), or for `efficientnet_lite0` also the PyTorch
            tensors as `.safetensors` (converted by
            `convert_efficientnet_lite0`). Used at construction only; a
            preset stores the trained weights and `backbone_weights=None`.
            `get_config` records it; `from_config` (and so
            `keras.saving.load_model`) builds the architecture without
            it, as Keras configs do (the weights come from the `.keras`
            file, the preset or `set_weights`).
        encoder_filters: filters per level of the `resunet_encoder` backbone
            (ignored by the others).
        feature_layer: None (the backbone's last feature map) or the name of
            one of its layers: the backbone ends there (after its weights are
            loaded), and the head pools that layer's output. On a few hundred
            chest films the pooled 14x14-stage features of ImageNet backbones
            (e.g. MobileNetV2's "block_13_expand_relu") separate COVID-19
            better than the last layer's, which are the most ImageNet-specific.
        mirror_average: False, or True: the backbone also reads the
            left-right mirror image, and the feature map is the mean of the
            image's map and the mirror image's map mirrored back (aligned
            with the image, so Grad-CAM reads it as usual); twice the
            backbone's compute, the same weights. The pooled features then
            ignore which side the heart is on (bilateral findings such as
            COVID-19 pneumonia stay where they are).

    Example:
        >>> model = CXRClassifier("mobilenet_v2", num_classes=3, input_shape=(64, 64, 3))
        >>> model.output_shape
        (None, 3)
        >>> gray = CXRClassifier("efficientnet_lite0", input_shape=(64, 64, 1), input_normalization="imagenet")
        >>> gray.output_shape
        (None, 1)
    """

    def __init__(
        self,
        backbone="densenet201",
        num_classes=2,
        head_units=None,
        dropout=0.1,
        input_shape=(224, 224, 3),
        backbone_weights=None,
        encoder_filters=(16, 32, 64, 128),
        input_normalization=None,
        feature_layer=None,
        mirror_average=False,
        name=None,
        **kwargs,
    ):
        check_backbone_name(backbone)
        if not is_whole_number(num_classes) or num_classes < 2:
            raise ConfigError(f"num_classes must be a whole number >= 2, got {num_classes!r}")
        num_classes = int(num_classes)
        if (isinstance(input_shape, (str, bytes)) or not hasattr(input_shape, "__len__") or len(input_shape) != 3
                or not all(is_whole_number(d) and d > 0 for d in input_shape)):
            raise ConfigError(f"input_shape must be (height, width, channels), three positive whole numbers; got "
                              f"{input_shape!r}")
        if backbone_weights not in (None, "imagenet") and not os.path.isfile(backbone_weights):
            raise ConfigError(f"{backbone_weights}: backbone weights file not found")
        if backbone == RESUNET_ENCODER and backbone_weights == "imagenet":
            raise ConfigError("resunet_encoder has no ImageNet weights; use None or copy_segmenter_encoder")
        if backbone == EFFICIENTNET_LITE0 and backbone_weights == "imagenet":
            raise ConfigError(
                "efficientnet_lite0 has no download source: give the path of its weights file "
                "(PyTorch .safetensors or Keras .weights.h5)"
            )
        application, default_units, normalisation = BACKBONES[backbone]
        head_units = default_units if head_units is None else int(head_units)
        input_shape = tuple(int(d) for d in input_shape)
        if input_normalization not in (None, "imagenet"):
            raise ConfigError(f"input_normalization must be None or 'imagenet', got {input_normalization!r}")
        if input_normalization == "imagenet" and (normalisation is None or input_shape[-1] != 1):
            raise ConfigError(
                f"input_normalization='imagenet' needs an ImageNet backbone and a gray input (H, W, 1); "
                f"got {backbone!r} with input_shape {input_shape}"
            )
        backbone_shape = (*input_shape[:2], 3) if input_normalization else input_shape

        # === Layers ===
        encoder_filters = tuple(int(f) for f in encoder_filters)
        if backbone == RESUNET_ENCODER:
            image = keras.Input(input_shape, name="encoder_image")
            backbone_model = keras.Model(image, encoder_path(image, encoder_filters)[0], name=RESUNET_ENCODER)
            if backbone_weights is not None:
                with _named_weights_errors(backbone_weights, backbone):
                    backbone_model.load_weights(backbone_weights)
        elif backbone == EFFICIENTNET_LITE0:
            backbone_model = application(include_top=False, input_shape=backbone_shape)
            with _named_weights_errors(backbone_weights, backbone):
                if backbone_weights is not None and str(backbone_weights).endswith(".safetensors"):
                    convert_efficientnet_lite0(backbone_weights, backbone_model)
                elif backbone_weights is not None:
                    backbone_model.load_weights(backbone_weights)
        else:
            try:
                with _named_weights_errors(backbone_weights if backbone_weights != "imagenet" else None, backbone):
                    backbone_model = getattr(keras.applications, application)(
                        include_top=False, weights=backbone_weights, input_shape=backbone_shape
                    )
            except ConfigError:
                raise
            except Exception as error:
                if backbone_weights != "imagenet":  # nothing was downloaded: Keras refused the settings
                    raise ConfigError(f"cannot build {backbone} for input_shape {backbone_shape}: {error}") from error
                # Keras raises a bare Exception when the download fails
                raise ConfigError(
                    f"the ImageNet weights of {backbone} could not be downloaded ({error}); without internet, "
                    "give a local weights file (backbone_weights=PATH; --backbone-weights PATH) or start from scratch "
                    "(backbone_weights=None; --backbone-weights none)"
                ) from error
        if feature_layer is not None:
            try:
                cut = backbone_model.get_layer(feature_layer)
            except ValueError:
                raise ConfigError(f"{backbone!r} has no layer named {feature_layer!r}") from None
            backbone_model = keras.Model(backbone_model.input, cut.output, name=f"{backbone_model.name}_to_{feature_layer}")
        if input_normalization:
            mean, variance = imagenet_mean_and_variance(normalisation)
            to_rgb = keras.layers.Concatenate(axis=-1, name="gray_to_rgb")
            # (x - mean) / std as x * scale + offset: constants inside the graph, so exporters keep them
            std = np.sqrt(variance)
            normalise = keras.layers.Rescaling(
                scale=(1.0 / std).tolist(), offset=(-mean / std).tolist(), name="imagenet_normalization"
            )
        feature_shape = backbone_model.output_shape[1:]
        features = keras.Input(feature_shape, name="features")
        x = keras.layers.GlobalAveragePooling2D(name="head_pool")(features)
        if head_units:
            x = keras.layers.Dense(head_units, activation="relu", name="head_dense")(x)
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
        logits = keras.layers.Dense(
            1 if num_classes == 2 else num_classes, name="head_logits"
        )(x)
        head = keras.Model(features, logits, name="head")

        # === Graph ===
        inputs = keras.Input(input_shape, name="image")
        x = normalise(to_rgb([inputs, inputs, inputs])) if input_normalization else inputs
        feature_map = mirror_averaged(backbone_model, x) if mirror_average else backbone_model(x)
        activation = "sigmoid" if num_classes == 2 else "softmax"
        outputs = keras.layers.Activation(activation, name="predictions")(head(feature_map))
        super().__init__(inputs, outputs, name=name or f"{backbone}_classifier", **kwargs)

        # === Config ===
        self.backbone = backbone_model
        self.head = head
        wrapped = input_normalization or mirror_average
        self._feature_extractor = keras.Model(inputs, feature_map) if wrapped else backbone_model
        self.backbone_name = backbone
        self.num_classes = int(num_classes)
        self.head_units = head_units
        self.dropout = dropout
        self.image_shape = input_shape
        self.backbone_weights = backbone_weights
        self.encoder_filters = encoder_filters
        self.input_normalization = input_normalization
        self.feature_layer = feature_layer
        self.mirror_average = bool(mirror_average)

    @property
    def feature_extractor(self):
        """Image -> the backbone's last feature map (Grad-CAM's target layer), normalisation included."""
        return self._feature_extractor

    def probabilities_from_feature_map(self, feature_map, training=False):
        """The model's output from `feature_extractor`'s feature map: the head and its activation."""
        return self.get_layer("predictions")(self.head(feature_map, training=training))

    @classmethod
    def from_config(cls, config):
        # a model saved where its ImageNet file was must open where it is not (or offline); what the rebuilt model
        # holds is not known here (the .keras file's weights, or none yet), so it claims no source
        return cls(**{**config, "backbone_weights": None})

    def get_config(self):
        return {
            **super().get_config(),
            "backbone": self.backbone_name,
            "num_classes": self.num_classes,
            "head_units": self.head_units,
            "dropout": self.dropout,
            "input_shape": list(self.image_shape),
            "backbone_weights": self.backbone_weights,
            "encoder_filters": list(self.encoder_filters),
            "input_normalization": self.input_normalization,
            "feature_layer": self.feature_layer,
            "mirror_average": self.mirror_average,
        }


@contextlib.contextmanager
def _named_weights_errors(path, backbone):
    """A local weights file that does not fit the backbone (another net's, truncated, not weights at all) is a
    ConfigError naming the file, not a traceback with a warning per layer."""
    if path is None:
        yield
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        except ConfigError:
            raise
        except Exception as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            raise ConfigError(f"{path}: cannot load it as {backbone} weights ({type(error).__name__}: {reason})") from None
    for warning in caught:  # it loaded: pass Keras's notes on
        warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)

"""Grad-CAM (Selvaraju et al. 2017) for classifiers and ensembles."""

import numpy as np
from keras import ops

from keras_covidcxr.errors import ConfigError, InputError
from keras_covidcxr.explain.gradients import feature_gradient_function
from keras_covidcxr.explain.upsampling import upsample_heatmaps
from keras_covidcxr.preprocessing.resize import resize_image


class GradCAM:
    """Class-activation heatmaps on the backbone's last feature map.

    For a `CXRClassifier` the map is relu(sum_k alpha_k A_k) with
    alpha_k the spatial mean of d(class logit)/dA_k. For an ensemble it is
    the weighted sum of the members' maps (the weighted average's weights,
    or equal weights for a majority vote). Maps are scaled to [0, 1] per
    image and upsampled bicubically to the model input (`upsample_heatmaps`:
    no diamond-shaped artefacts from the coarse grid).

    The class explained is `class_index`, or by default each image's
    predicted class: the model's label, as the pipeline reports it (argmax
    of the softmax; for a single sigmoid unit class 1 when p >= 0.5, else
    class 0; for an ensemble the ensemble's `label`, its threshold included).

    `output_size=(height, width)` resizes the input-size maps once more
    with `resize_image` (Pillow bilinear), the method `Pipeline` uses to
    bring heatmaps to the original image, so the two agree; the resized maps
    are not rescaled. A map of a lung crop covers the crop only (the
    pipeline pastes it into the crop box).

    GradCAM is a plain class that wraps live models, not a Keras component:
    it has no `get_config` and is never serialized. Presets store the
    models; rebuild GradCAM from the loaded model or ensemble.

    Example:
        >>> import numpy as np
        >>> from keras_covidcxr import CXRClassifier, GradCAM
        >>> model = CXRClassifier("mobilenet_v2", input_shape=(64, 64, 3))
        >>> images = np.zeros((1, 64, 64, 3), "float32")
        >>> GradCAM(model)(images, class_index=1).shape
        (1, 64, 64)
        >>> GradCAM(model)(images, output_size=(300, 260)).shape  # the predicted class, at 300 x 260
        (1, 300, 260)
    """

    def __init__(self, model):
        self.model = model
        if hasattr(model, "members"):
            self.members = list(model.members)
            self.member_weights = list(
                getattr(model, "weights_normalised", [1.0 / len(self.members)] * len(self.members))
            )
        elif hasattr(model, "feature_extractor") and hasattr(model, "head"):
            self.members, self.member_weights = [model], [1.0]
        else:
            raise ConfigError(
                f"GradCAM needs a CXRClassifier or an ensemble of them, got {type(model).__name__}"
            )
        self._gradients = None  # the members' compiled gradient function, made on first use

    def check_images(self, images):
        """Refuse (InputError) images that are not a batch of the members' input shape."""
        expected = tuple(self.members[0].input_shape[1:])
        shape = tuple(int(d) for d in ops.shape(images))
        if shape[1:] != expected:
            raise InputError(f"GradCAM needs a batch of the members' inputs, (N, {', '.join(map(str, expected))}); "
                              f"got an array of shape {shape}")

    def predicted_classes(self, images):
        """(batch,) int class index the model predicts for every image."""
        self.check_images(images)
        outputs = self.model(ops.convert_to_tensor(images), training=False)
        if isinstance(outputs, dict):  # an ensemble: its own label (argmax, or p >= threshold)
            return ops.convert_to_numpy(outputs["label"]).astype("int64")
        probabilities = ops.convert_to_numpy(outputs)
        if self.model.num_classes == 2:  # one sigmoid unit: class 1 when p >= 0.5
            return (probabilities[:, 0] >= 0.5).astype("int64")
        return probabilities.argmax(axis=-1).astype("int64")

    def member_heatmaps(self, images, class_index):
        """{member name: (batch, height, width) heatmaps in [0, 1]} for one class."""
        self.check_images(images)
        for member in self.members:
            if not 0 <= class_index < member.num_classes:
                raise ConfigError(f"class_index {class_index} is not in 0..{member.num_classes - 1}")
        if self._gradients is None:
            self._gradients = feature_gradient_function(self.members)
        pairs = self._gradients(ops.convert_to_tensor(images), class_index)
        height, width = (int(d) for d in ops.shape(images)[1:3])
        return {member.name: _heatmaps(features, gradients, (height, width))
                for member, (features, gradients) in zip(self.members, pairs)}

    def __call__(self, images, class_index=None, output_size=None):
        """(batch, height, width) heatmaps in [0, 1].

        Args:
            images: (batch, height, width, channels) model inputs: the members' own input (gray or colour).
            class_index: the class to explain; None explains each image's
                predicted class (`predicted_classes`).
            output_size: None for maps at the model input size, or
                (height, width) to resize them with `resize_image`.
        """
        if output_size is not None:
            output_size = tuple(int(d) for d in output_size)
            if len(output_size) != 2 or min(output_size) < 1:
                raise ConfigError(f"output_size must be a positive (height, width), got {output_size}")
        if class_index is None:
            images = ops.convert_to_numpy(images)
            classes = self.predicted_classes(images)
            maps = np.zeros(images.shape[:3], "float32")
            for target in np.unique(classes):
                rows = np.flatnonzero(classes == target)
                maps[rows] = self._combined(images[rows], int(target))
        else:
            maps = self._combined(images, class_index)
        if output_size is None:
            return maps
        height, width = output_size
        resized = [resize_image(m, (height, width)) for m in maps]
        return np.asarray(resized, "float32").reshape(len(maps), height, width)

    def _combined(self, images, class_index):
        maps = self.member_heatmaps(images, class_index).values()
        combined = sum(w * m for w, m in zip(self.member_weights, maps))
        return _scale_to_unit(combined)


def _heatmaps(features, gradients, size):
    """Grad-CAM maps from a feature map and its gradients, upsampled to `size` and scaled to [0, 1]."""
    alphas = ops.mean(gradients, axis=(1, 2), keepdims=True)
    cam = ops.relu(ops.sum(alphas * features, axis=-1))
    return _scale_to_unit(upsample_heatmaps(ops.convert_to_numpy(cam), size))


def _scale_to_unit(maps):
    maps = np.maximum(np.asarray(maps, "float32"), 0.0)
    peaks = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, 1, 1)
    return np.where(peaks > 0, maps / np.where(peaks > 0, peaks, 1.0), 0.0).astype("float32")

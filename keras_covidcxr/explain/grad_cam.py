"""Grad-CAM (Selvaraju et al. 2017) for classifiers and ensembles."""

import numpy as np
from keras import ops

from keras_covidcxr.errors import ConfigError
from keras_covidcxr.explain.gradients import feature_gradient_function


class GradCAM:
    """Class-activation heatmaps on the backbone's last feature map.

    For a `CXRClassifier` the map is relu(sum_k alpha_k A_k) with
    alpha_k the spatial mean of d(class logit)/dA_k. For an ensemble it is
    the weighted sum of the members' maps (the weighted average's weights,
    or equal weights for a majority vote). Maps are scaled to [0, 1] per
    image and upsampled bilinearly to the model input.

    Example:
        >>> import numpy as np
        >>> from keras_covidcxr import CXRClassifier
        >>> model = CXRClassifier("mobilenet_v2", input_shape=(64, 64, 3))
        >>> heatmaps = GradCAM(model)(np.zeros((1, 64, 64, 3), "float32"), class_index=1)
        >>> heatmaps.shape
        (1, 64, 64)
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
        self._gradient_functions = {}  # (member name, class) -> compiled gradient function

    def member_heatmaps(self, images, class_index):
        """{member name: (batch, height, width) heatmaps in [0, 1]} for one class."""
        return {m.name: self._heatmaps(m, images, class_index) for m in self.members}

    def __call__(self, images, class_index):
        """(batch, height, width) heatmaps in [0, 1] for `class_index`."""
        maps = self.member_heatmaps(images, class_index).values()
        combined = sum(w * m for w, m in zip(self.member_weights, maps))
        return _scale_to_unit(combined)

    def _heatmaps(self, member, images, class_index):
        if not 0 <= class_index < member.num_classes:
            raise ConfigError(f"class_index {class_index} is not in 0..{member.num_classes - 1}")
        key = (member.name, class_index)
        if key not in self._gradient_functions:
            self._gradient_functions[key] = feature_gradient_function(
                member.feature_extractor, member.head, class_index, member.num_classes
            )
        features, gradients = self._gradient_functions[key](ops.convert_to_tensor(images))
        alphas = ops.mean(gradients, axis=(1, 2), keepdims=True)
        cam = ops.relu(ops.sum(alphas * features, axis=-1, keepdims=True))
        height, width = ops.shape(images)[1:3]
        cam = ops.image.resize(cam, (height, width), interpolation="bilinear")
        return _scale_to_unit(ops.convert_to_numpy(cam)[..., 0])


def _scale_to_unit(maps):
    maps = np.maximum(np.asarray(maps, "float32"), 0.0)
    peaks = maps.reshape(len(maps), -1).max(axis=1).reshape(-1, 1, 1)
    return np.where(peaks > 0, maps / np.where(peaks > 0, peaks, 1.0), 0.0).astype("float32")

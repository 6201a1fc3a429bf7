"""Left-right mirror averaging of a backbone's feature map."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_covidcxr")
class MirrorLeftRight(keras.layers.Layer):
    """Mirror a (n, H, W, C) batch left-right (along W), in every mode (not an augmentation).

    Example:
        >>> import numpy as np
        >>> x = np.arange(6, dtype="float32").reshape(1, 1, 3, 2)
        >>> ops.convert_to_numpy(MirrorLeftRight()(x))[0, 0, :, 0].tolist()
        [4.0, 2.0, 0.0]
    """

    def call(self, inputs):
        return ops.flip(inputs, axis=2)

    def compute_output_shape(self, input_shape):
        return input_shape


def mirror_averaged(backbone, image):
    """The mean of `backbone(image)` and the re-mirrored `backbone(mirrored image)`.

    The result is aligned with `image` (so Grad-CAM reads it like any feature map), and its global
    average pool is the mean of the image's and its mirror image's pooled features.
    """
    mirrored = MirrorLeftRight(name="mirror_input")(image)
    mirrored_features = MirrorLeftRight(name="mirror_features")(backbone(mirrored))
    return keras.layers.Average(name="mirror_average")([backbone(image), mirrored_features])

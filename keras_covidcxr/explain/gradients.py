"""The one backend-specific seam of Grad-CAM: d(class score) / d(feature map)."""

import keras
from keras import ops


def class_score(logits, class_index, num_classes):
    """The pre-activation score of `class_index` for every image.

    A two-class model has one sigmoid logit z for class 1, so class 0 scores -z.
    """
    if num_classes == 2:
        return logits[:, 0] if class_index == 1 else -logits[:, 0]
    return logits[:, class_index]


def feature_map_and_gradients(feature_extractor, head, images, class_index, num_classes):
    """Return the feature map A and d score / d A, for a batch of images.

    `feature_extractor` maps images to A, `head` maps A to logits. The head is
    run in inference mode (dropout off, batch norm frozen), so each image's
    gradient depends on that image alone and the batch score is their sum.
    """
    features = feature_extractor(images, training=False)

    def total_score(a):
        return ops.sum(class_score(head(a, training=False), class_index, num_classes))

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(features)
            score = total_score(features)
        return features, tape.gradient(score, features)
    if backend == "jax":
        import jax

        return features, jax.grad(total_score)(features)
    if backend == "torch":
        features = features.detach().requires_grad_(True)
        total_score(features).backward()
        return features.detach(), features.grad
    raise NotImplementedError(f"Grad-CAM has no gradient seam for the {backend!r} backend")

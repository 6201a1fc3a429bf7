"""The one backend-specific seam of Grad-CAM: d(class score) / d(feature map)."""

import keras
from keras import ops

from keras_covidcxr.errors import ConfigError


def class_score(logits, class_index, num_classes):
    """The pre-activation score of `class_index` for every image.

    A two-class model has one sigmoid logit z for class 1, so class 0 scores -z.
    """
    if num_classes == 2:
        return logits[:, 0] if class_index == 1 else -logits[:, 0]
    return logits[:, class_index]


def feature_gradient_function(feature_extractor, head, class_index, num_classes):
    """A compiled `images -> (A, d score / d A)` for one member and one class.

    `feature_extractor` maps images to the feature map A, `head` maps A to
    logits; both run in inference mode (dropout off, batch norm frozen), so
    each image's gradient depends on that image alone and the batch score is
    their sum. TensorFlow uses a GradientTape inside `tf.function`, JAX
    `jax.grad` inside `jax.jit` (over the models' stateless calls), PyTorch
    autograd.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function(reduce_retracing=True)
        def tensorflow_gradients(images):
            features = feature_extractor(images, training=False)
            with tf.GradientTape() as tape:
                tape.watch(features)
                score = ops.sum(class_score(head(features, training=False), class_index, num_classes))
            return features, tape.gradient(score, features)

        return tensorflow_gradients
    if backend == "jax":
        import jax

        def jax_gradients(extractor_variables, head_variables, images):
            features, _ = feature_extractor.stateless_call(*extractor_variables, images, training=False)

            def score(a):
                logits, _ = head.stateless_call(*head_variables, a, training=False)
                return ops.sum(class_score(logits, class_index, num_classes))

            return features, jax.grad(score)(features)

        compiled = jax.jit(jax_gradients)

        def values(model):
            return (
                [v.value for v in model.trainable_variables],
                [v.value for v in model.non_trainable_variables],
            )

        return lambda images: compiled(values(feature_extractor), values(head), images)
    if backend == "torch":

        def torch_gradients(images):
            features = feature_extractor(images, training=False).detach().requires_grad_(True)
            ops.sum(class_score(head(features, training=False), class_index, num_classes)).backward()
            return features.detach(), features.grad

        return torch_gradients
    raise ConfigError(f"Grad-CAM has no gradient seam for the {backend!r} backend (use tensorflow, jax or torch)")

"""The one backend-specific seam of Grad-CAM: d(class score) / d(feature map)."""

import keras
from keras import ops

from keras_covidcxr.errors import ConfigError


def class_score(logits, class_index, num_classes):
    """The pre-activation score of `class_index` (an int or an int tensor) for every image.

    A two-class model has one sigmoid logit z for class 1, so class 0 scores -z.
    """
    if num_classes == 2:
        return ops.where(ops.equal(class_index, 1), logits[:, 0], -logits[:, 0])
    return ops.sum(logits * ops.one_hot(class_index, num_classes, dtype=logits.dtype), axis=-1)


def feature_gradient_function(feature_extractor, head, num_classes):
    """A compiled `(images, class_index) -> (A, d score / d A)` for one member, any class and batch size.

    `feature_extractor` maps images to the feature map A, `head` maps A to
    logits; both run in inference mode (dropout off, batch norm frozen), so
    each image's gradient depends on that image alone and the batch score is
    their sum. TensorFlow uses a GradientTape inside `tf.function`, JAX
    `jax.grad` inside `jax.jit` (over the models' stateless calls), PyTorch
    autograd. The class is an argument, not a constant, and TensorFlow's
    signature leaves the batch size open, so a member's function is traced
    once however many classes and batch sizes a run explains.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        signature = [tf.TensorSpec((None, *feature_extractor.input_shape[1:]), "float32"), tf.TensorSpec((), "int32")]

        @tf.function(input_signature=signature)
        def tensorflow_gradients(images, class_index):
            features = feature_extractor(images, training=False)
            with tf.GradientTape() as tape:
                tape.watch(features)
                score = ops.sum(class_score(head(features, training=False), class_index, num_classes))
            return features, tape.gradient(score, features)

        def gradients(images, class_index):
            return tensorflow_gradients(ops.cast(images, "float32"), ops.convert_to_tensor(class_index, "int32"))

        gradients.tf_function = tensorflow_gradients  # tests read its tracing count
        return gradients
    if backend == "jax":
        import jax

        def jax_gradients(extractor_variables, head_variables, images, class_index):
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

        return lambda images, class_index: compiled(values(feature_extractor), values(head), images, class_index)
    if backend == "torch":

        def torch_gradients(images, class_index):
            features = feature_extractor(images, training=False).detach().requires_grad_(True)
            ops.sum(class_score(head(features, training=False), class_index, num_classes)).backward()
            return features.detach(), features.grad

        return torch_gradients
    raise ConfigError(f"Grad-CAM has no gradient seam for the {backend!r} backend (use tensorflow, jax or torch)")

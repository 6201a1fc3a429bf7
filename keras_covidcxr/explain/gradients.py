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


def feature_gradient_function(members):
    """A compiled `(images, class_index) -> [(A, d score / d A) per member]` for any class and batch size.

    Each member's `feature_extractor` maps the images to its feature map A,
    its `head` maps A to logits; both run in inference mode (dropout off,
    batch norm frozen), so each image's gradient depends on that image alone
    and the batch score is their sum. TensorFlow uses a GradientTape inside
    `tf.function`, JAX `jax.grad` inside `jax.jit` (over the models'
    stateless calls), PyTorch autograd. All members share one function, the
    class is an argument rather than a constant, and TensorFlow's signature
    leaves the batch size open: an ensemble is traced once however many
    classes and batch sizes a run explains (TensorFlow warns about functions
    traced again and again).
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        shape = (None, *members[0].feature_extractor.input_shape[1:])

        @tf.function(input_signature=[tf.TensorSpec(shape, "float32"), tf.TensorSpec((), "int32")])
        def tensorflow_gradients(images, class_index):
            pairs = []
            for member in members:
                features = member.feature_extractor(images, training=False)
                with tf.GradientTape() as tape:
                    tape.watch(features)
                    logits = member.head(features, training=False)
                    score = ops.sum(class_score(logits, class_index, member.num_classes))
                pairs.append((features, tape.gradient(score, features)))
            return pairs

        def gradients(images, class_index):
            return tensorflow_gradients(ops.cast(images, "float32"), ops.convert_to_tensor(class_index, "int32"))

        gradients.tf_function = tensorflow_gradients  # tests read its tracing count
        return gradients
    if backend == "jax":
        import jax

        def jax_gradients(variables, images, class_index):
            pairs = []
            for member, (extractor_variables, head_variables) in zip(members, variables):
                features, _ = member.feature_extractor.stateless_call(*extractor_variables, images, training=False)

                def score(a, member=member, head_variables=head_variables):
                    logits, _ = member.head.stateless_call(*head_variables, a, training=False)
                    return ops.sum(class_score(logits, class_index, member.num_classes))

                pairs.append((features, jax.grad(score)(features)))
            return pairs

        compiled = jax.jit(jax_gradients)

        def values(model):
            return (
                [v.value for v in model.trainable_variables],
                [v.value for v in model.non_trainable_variables],
            )

        def gradients(images, class_index):
            variables = [(values(m.feature_extractor), values(m.head)) for m in members]
            return compiled(variables, images, class_index)

        return gradients
    if backend == "torch":

        def torch_gradients(images, class_index):
            pairs = []
            for member in members:
                features = member.feature_extractor(images, training=False).detach().requires_grad_(True)
                logits = member.head(features, training=False)
                ops.sum(class_score(logits, class_index, member.num_classes)).backward()
                pairs.append((features.detach(), features.grad))
            return pairs

        return torch_gradients
    raise ConfigError(f"Grad-CAM has no gradient seam for the {backend!r} backend (use tensorflow, jax or torch)")

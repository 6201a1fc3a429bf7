"""A model's inference on a numpy batch, traced once per model whatever the batch size.

`model.predict_on_batch` traces a new TensorFlow graph for every batch size it meets, and
TensorFlow counts the traces of all Keras models together (they share one step function,
tensorflow#42441), so a pipeline of 3-4 models warned about "excessive retracing" as soon as a
second batch size came by. On TensorFlow each model here gets one `tf.function` with an open batch
dimension; other backends keep `predict_on_batch` (JAX compiles each new shape silently). TensorFlow
still counts the first traces of all these functions together (they share one Python function), so
a process that loads a few pipelines heard of "retracing" too: that notice, about these functions
only, is dropped (`_OwnTracingNotice`).

Example:
    >>> import keras
    >>> import numpy as np
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    >>> run_padded(model, np.ones((5, 3), "float32"), batch_size=4).shape
    (5, 2)
"""

import logging
import weakref

import keras
import numpy as np

_TRACED = weakref.WeakKeyDictionary()  # model -> {(item shape, dtype): tf.function}
_COMPILED_SIZES = weakref.WeakKeyDictionary()  # model -> the batch sizes it ran at (backends other than TensorFlow)


class _OwnTracingNotice(logging.Filter):
    """Drops TensorFlow's "triggered tf.function retracing" notice about this module's inference functions:
    each model's is traced once per item shape, as intended."""

    def filter(self, record):
        message = record.getMessage()
        return not ("tf.function retracing" in message and "traced_inference" in message)


_OWN_TRACING_NOTICE = _OwnTracingNotice()


def run_padded(model, batch, batch_size):
    """Run `model` on `batch`; outputs cut back to the batch.

    On TensorFlow the traced function takes any batch size: nothing is padded (a single film padded to
    a batch of 8 cost the work of 8). Other backends compile each new shape (JAX: seconds each), so a
    batch is padded to the smallest size this model already ran at that holds it, else to a multiple of
    `batch_size`, and one shape serves a whole run; a model's first batch shorter than `batch_size` (a
    single film) runs as it is.
    """
    count = len(batch)
    padded = 0 if keras.backend.backend() == "tensorflow" else _compiled_size(model, count, batch_size) - count
    if padded:
        batch = np.concatenate([batch, np.zeros((padded, *batch.shape[1:]), batch.dtype)])
    return keras.tree.map_structure(lambda x: np.asarray(x)[:count], _inference(model, batch))


def _compiled_size(model, count, batch_size):
    """The batch size to run `count` items at on a backend that compiles each new shape."""
    sizes = _COMPILED_SIZES.setdefault(model, set())
    whole_batches = -(-count // batch_size) * batch_size
    fitting = [size for size in sizes if count <= size <= whole_batches]
    size = min(fitting) if fitting else count if not sizes and count < batch_size else whole_batches
    sizes.add(size)
    return size


def _inference(model, batch):
    if keras.backend.backend() != "tensorflow":
        return model.predict_on_batch(batch)
    import tensorflow as tf

    logging.getLogger("tensorflow").addFilter(_OWN_TRACING_NOTICE)  # once: the same filter is not added twice
    functions = _TRACED.setdefault(model, {})
    key = (batch.shape[1:], str(batch.dtype))
    if key not in functions:
        model_ref = weakref.ref(model)  # a strong reference here would keep every model alive

        def traced_inference(x):
            return model_ref()(x, training=False)

        signature = [tf.TensorSpec((None, *batch.shape[1:]), batch.dtype)]
        functions[key] = tf.function(traced_inference, input_signature=signature)
    return functions[key](batch)

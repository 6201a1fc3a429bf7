import keras
import numpy as np

from keras_covidcxr.training.batch_norm_statistics import (
    BatchNormStatisticsCallback,
    recompute_batch_norm_statistics,
)


def _model():
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(3, use_bias=False), keras.layers.BatchNormalization()])


def test_the_moving_statistics_become_the_average_over_the_batches():
    model = _model()
    dense, norm = model.layers
    dense.set_weights([np.eye(3, dtype="float32")])
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc, 2.0, (64, 3)).astype("float32") for loc in (1.0, 3.0, 5.0)]
    recompute_batch_norm_statistics(model, [(batch, None) for batch in batches])
    np.testing.assert_allclose(norm.moving_mean.numpy(), np.mean([b.mean(0) for b in batches], 0), rtol=1e-5)
    np.testing.assert_allclose(norm.moving_variance.numpy(), np.mean([b.var(0) for b in batches], 0), rtol=1e-4)
    assert norm.momentum == 0.99  # restored
    np.testing.assert_array_equal(dense.get_weights()[0], np.eye(3))  # weights untouched


def test_max_batches_limits_the_pass():
    model = _model()
    model.layers[0].set_weights([np.eye(3, dtype="float32")])
    batches = [np.full((4, 3), value, "float32") for value in (2.0, 4.0, 100.0)]
    recompute_batch_norm_statistics(model, batches, max_batches=2)
    np.testing.assert_allclose(model.layers[1].moving_mean.numpy(), [3.0, 3.0, 3.0], rtol=1e-5)


def test_validation_during_fit_sees_the_recomputed_statistics():
    # Three steps of training leave the moving mean far from the data's (momentum 0.99);
    # validation in inference mode must see the data's mean instead.
    model = _model()
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    x = np.full((32, 3), 7.0, "float32")
    seen = []

    class Record(keras.callbacks.Callback):
        def on_test_begin(self, logs=None):
            seen.append(model.layers[1].moving_mean.numpy().copy())

    batches = [x[:16], x[16:]]
    model.fit(x, x, batch_size=16, epochs=1, validation_data=(x, x), verbose=0,
              callbacks=[BatchNormStatisticsCallback(batches), Record()])
    dense_output = x[:1] @ model.layers[0].get_weights()[0]
    np.testing.assert_allclose(seen[0], dense_output[0], rtol=1e-4)

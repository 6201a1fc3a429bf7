"""Model calls on padded numpy batches: one trace per model whatever the batch size, and no model kept alive."""

import gc
import logging
import weakref

import keras
import numpy as np
import pytest

from keras_covidcxr.models.pipeline import batch_inference
from keras_covidcxr.models.pipeline.batch_inference import run_padded


def dense_model():
    return keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])


def test_outputs_are_the_models_cut_back_to_the_batch_and_traced_once():
    model = dense_model()
    x = np.random.default_rng(0).random((7, 3)).astype("float32")
    for batch_size in (1, 4, 8):
        out = run_padded(model, x, batch_size)
        assert isinstance(out, np.ndarray) and out.shape == (7, 2)
        np.testing.assert_allclose(out, np.asarray(model(x)), atol=1e-6)
    if keras.backend.backend() == "tensorflow":
        (function,) = batch_inference._TRACED[model].values()
        assert function.experimental_get_tracing_count() == 1  # batch sizes 1, 4 and 8 share one graph


def test_a_model_is_not_kept_alive_by_its_traced_function():
    model = dense_model()
    run_padded(model, np.ones((2, 3), "float32"), 2)
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None


def test_a_process_that_loads_several_pipelines_hears_of_no_retracing(make_pipeline, chest_images):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("TensorFlow's retracing notice")
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("tensorflow")
    logger.addHandler(handler)
    try:
        for _ in range(4):  # each model traced once, but TensorFlow counts the traces of one Python function
            make_pipeline().predict(chest_images[:1])
    finally:
        logger.removeHandler(handler)
    assert [record.getMessage() for record in records if "retracing" in record.getMessage()] == []


def test_a_short_batch_is_padded_only_where_a_new_shape_costs_a_compilation(monkeypatch):
    # on TensorFlow one film at batch size 8 ran the models on eight (seven blank): the work of eight films
    seen = []
    monkeypatch.setattr(batch_inference, "_inference", lambda m, batch: seen.append(len(batch)) or m(batch))
    runs = {}
    for counts in ((1, 3, 8, 11), (8, 3, 1, 11, 5)):
        model, seen[:] = dense_model(), []
        for count in counts:
            out = run_padded(model, np.ones((count, 3), "float32"), 8)
            assert np.asarray(out).shape == (count, 2)
        runs[counts] = list(seen)
    if keras.backend.backend() == "tensorflow":  # the traced function takes any batch size
        assert runs == {(1, 3, 8, 11): [1, 3, 8, 11], (8, 3, 1, 11, 5): [8, 3, 1, 11, 5]}
    else:  # JAX compiles each new shape: sizes already run at are reused; a first single film runs alone
        assert runs == {(1, 3, 8, 11): [1, 8, 8, 16], (8, 3, 1, 11, 5): [8, 8, 8, 16, 8]}

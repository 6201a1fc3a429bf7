"""The small preset (tests/conftest.py), exported once per format."""

import keras
import pytest


@pytest.fixture(scope="session")
def onnx_export(small_pipeline, tmp_path_factory):
    pytest.importorskip("onnxruntime", reason="the light runtime's tests need onnxruntime (the onnx extra)")
    pytest.importorskip("tf2onnx", reason="ONNX export with the TensorFlow backend needs tf2onnx (the export extra)")
    return small_pipeline.export(tmp_path_factory.mktemp("runtime") / "onnx", format="onnx")


@pytest.fixture(scope="session")
def litert_available():
    """Skips unless this backend can write LiteRT and ai-edge-litert can run it."""
    from keras_covidcxr.models.pipeline.export import BACKENDS

    pytest.importorskip("ai_edge_litert", reason="running LiteRT exports needs ai-edge-litert (the litert extra)")
    if keras.backend.backend() not in BACKENDS["litert"]:
        pytest.skip(f"Keras writes LiteRT with a variable batch size from the {' or '.join(BACKENDS['litert'])} backend only")


@pytest.fixture(scope="session")
def litert_export(small_pipeline, tmp_path_factory, litert_available):
    return small_pipeline.export(tmp_path_factory.mktemp("runtime") / "litert", format="litert")


@pytest.fixture(params=["onnx", "litert"])
def exported_folder(request):
    """The small preset's ONNX export, then its LiteRT export."""
    return request.getfixturevalue(f"{request.param}_export")

"""The small preset (tests/conftest.py), exported once."""

import pytest


@pytest.fixture(scope="session")
def onnx_export(small_pipeline, tmp_path_factory):
    pytest.importorskip("onnxruntime", reason="the light runtime's tests need onnxruntime (the onnx extra)")
    pytest.importorskip("tf2onnx", reason="ONNX export with the TensorFlow backend needs tf2onnx (the export extra)")
    return small_pipeline.export(tmp_path_factory.mktemp("runtime") / "onnx", format="onnx")

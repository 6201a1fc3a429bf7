"""The light runtime: run an exported pipeline with ONNX Runtime, numpy and Pillow; no Keras, no TensorFlow.

Example:
    >>> from keras_covidcxr.runtime import ExportedPipeline
    >>> pipeline = ExportedPipeline("covidcxr_lite_onnx")  # doctest: +SKIP
    >>> pipeline.predict(["chest.png"])[0].label  # doctest: +SKIP
"""

from keras_covidcxr.runtime.exported_pipeline import ExportedPipeline

__all__ = ["ExportedPipeline"]

"""One exported graph, run by ONNX Runtime or by LiteRT: `batch -> {output name: array}`.

Neither engine imports Keras or TensorFlow: ONNX Runtime (`pip install "keras-covidcxr[onnx]"`) and
the LiteRT interpreter (`ai-edge-litert`, `pip install "keras-covidcxr[litert]"`) need only numpy.

Example:
    >>> graph = OnnxGraph("covidcxr_lite_onnx/segmenter.onnx")  # doctest: +SKIP
    >>> graph.run(np.zeros((1, 128, 128, 1), "float32"))  # doctest: +SKIP
"""

import os

import numpy as np

from keras_covidcxr.errors import MissingDependencyError, PresetError
from keras_covidcxr.quiet_import import captured_native_stderr


class OnnxGraph:
    """An `.onnx` graph in an ONNX Runtime session (default: the CPU)."""

    def __init__(self, path, providers=("CPUExecutionProvider",)):
        try:
            import onnxruntime
        except ImportError as error:
            raise MissingDependencyError(
                'running an ONNX export needs onnxruntime: pip install "keras-covidcxr[onnx]"'
            ) from error
        options = onnxruntime.SessionOptions()
        # ORT's threads spin after each run by default, taking the cores from the numpy steps between the graphs
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._path = path
            self._session = onnxruntime.InferenceSession(str(path), options, providers=list(providers))
        except Exception as error:  # onnxruntime raises its own exception types
            raise PresetError(f"{path}: cannot load the ONNX graph ({str(error).splitlines()[0]})") from error
        self._input = self._session.get_inputs()[0].name
        self._outputs = [output.name for output in self._session.get_outputs()]

    def run(self, batch):
        try:
            values = self._session.run(None, {self._input: np.asarray(batch, "float32")})
        except Exception as error:  # onnxruntime raises its own exception types
            raise PresetError(f"{self._path}: cannot run the ONNX graph ({str(error).splitlines()[0]})") from error
        return dict(zip(self._outputs, values))


class LiteRTGraph:
    """A `.tflite` graph (Keras' LiteRT export) in the LiteRT interpreter, on all CPU cores."""

    def __init__(self, path, num_threads=None):
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as error:
            raise MissingDependencyError(
                'running a LiteRT export needs ai-edge-litert: pip install "keras-covidcxr[litert]"'
            ) from error
        try:
            interpreter = Interpreter(model_path=str(path), num_threads=num_threads or os.cpu_count() or 1)
            signature = interpreter.get_signature_list()["serving_default"]
        except (ValueError, RuntimeError, KeyError) as error:
            raise PresetError(f"{path}: cannot load the LiteRT graph ({str(error).splitlines()[0]})") from error
        self._path = path
        self._runner = interpreter.get_signature_runner("serving_default")
        self._input = signature["inputs"][0]
        self._warmed_up = False

    def run(self, batch):
        batch = np.asarray(batch, "float32")
        try:
            if self._warmed_up:
                return self._runner(**{self._input: batch})
            # the first run sets up XNNPACK, which announces itself on the native stderr: keep the terminal clean
            with captured_native_stderr():
                outputs = self._runner(**{self._input: batch})
        except (RuntimeError, ValueError) as error:  # e.g. an op this interpreter lacks
            raise PresetError(f"{self._path}: cannot run the LiteRT graph ({str(error).splitlines()[0]})") from error
        self._warmed_up = True
        return outputs


GRAPH_ENGINES = {"onnx": OnnxGraph, "litert": LiteRTGraph}

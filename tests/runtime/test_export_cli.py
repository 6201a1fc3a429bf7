"""`covidcxr export` and `covidcxr predict --exported`: the light runtime from the command line."""

import json
import subprocess
import sys

import numpy as np
import pytest
from covidcxr_cli.app import app
from PIL import Image
from typer.testing import CliRunner

pytest.importorskip("onnxruntime", reason="the light runtime's tests need onnxruntime (the onnx extra)")
pytest.importorskip("tf2onnx", reason="ONNX export with the TensorFlow backend needs tf2onnx (the export extra)")

runner = CliRunner()


@pytest.fixture(scope="module")
def cli_onnx_export(small_preset, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli_export") / "small_onnx"
    result = runner.invoke(app, ["export", str(small_preset), str(folder)])
    assert result.exit_code == 0, result.output
    assert f"--exported {folder}" in " ".join(result.stdout.split())
    return folder


@pytest.fixture
def image(chest_images, tmp_path):
    path = tmp_path / "chest.png"
    Image.fromarray((chest_images[0] * 255).astype(np.uint8)).save(path)
    return str(path)


def test_predict_exported_matches_the_preset_and_loads_no_keras(cli_onnx_export, small_preset, image):
    code = (
        "import json, sys\n"
        "from typer.testing import CliRunner\n"
        "from covidcxr_cli.app import app\n"
        f"result = CliRunner().invoke(app, ['predict', {image!r}, '--exported', {str(cli_onnx_export)!r}, '--json'])\n"
        "assert result.exit_code == 0, result.output\n"
        "heavy = [m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "print(result.stdout)\n"
    )
    row = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                    text=True).stdout.splitlines()[0])
    keras_row = json.loads(runner.invoke(app, ["predict", image, "--preset", str(small_preset), "--json"]).stdout)
    assert row["label"] == keras_row["label"]
    assert row["probabilities"]["covid"] == pytest.approx(keras_row["probabilities"]["covid"], abs=1e-4)


# The packages of the [keras] extra and the backends, blocked as if only the base install and [onnx] were there.
BLOCK_FULL_INSTALL = (
    "import sys\n"
    "class Blocked:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in ('keras', 'tensorflow', 'jax', 'torch', 'sklearn', 'matplotlib',\n"
    "                                  'huggingface_hub', 'safetensors'):\n"
    "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
    "sys.meta_path.insert(0, Blocked())\n"
)


def test_the_base_install_predicts_exported_models_and_says_what_the_keras_path_needs(cli_onnx_export, image):
    code = BLOCK_FULL_INSTALL + (
        "from typer.testing import CliRunner\n"
        "from covidcxr_cli.app import app\n"
        f"light = CliRunner().invoke(app, ['predict', {image!r}, '--exported', {str(cli_onnx_export)!r}])\n"
        "assert light.exit_code == 0, light.output\n"
        f"full = CliRunner().invoke(app, ['predict', {image!r}])\n"
        "print(full.exit_code)\n"
        "print(full.output)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    exit_code, output = run.stdout.split("\n", 1)
    assert exit_code == "2" and "Traceback" not in output, output
    assert "keras is missing" in output and "keras-covidcxr[tensorflow-cpu]" in output and "--exported" in output


def test_export_and_exported_usage_errors(cli_onnx_export, small_preset, image, tmp_path):
    refused = runner.invoke(app, ["export", str(small_preset), str(tmp_path / "x"), "--format", "png"])
    assert refused.exit_code == 2 and "'png'" in refused.output and "litert" in refused.output
    assert not (tmp_path / "x").exists()
    again = runner.invoke(app, ["export", str(small_preset), str(cli_onnx_export)])
    assert again.exit_code == 2 and "--overwrite" in again.output
    both = runner.invoke(app, ["predict", image, "--exported", str(cli_onnx_export), "--preset", str(small_preset)])
    assert both.exit_code == 2 and "--exported" in both.output
    missing = runner.invoke(app, ["predict", image, "--exported", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "export.json" in missing.output


def test_a_litert_export_from_the_command_line_predicts_as_the_preset(small_preset, image, tmp_path, litert_available):
    folder = tmp_path / "small_litert"
    written = runner.invoke(app, ["export", str(small_preset), str(folder), "--format", "litert"])
    assert written.exit_code == 0, written.output
    assert f"--exported {folder}" in " ".join(written.stdout.split())
    assert sorted(p.name for p in folder.glob("*.tflite")) == ["ensemble.tflite", "segmenter.tflite"]
    row = json.loads(runner.invoke(app, ["predict", image, "--exported", str(folder), "--json"]).stdout)
    keras_row = json.loads(runner.invoke(app, ["predict", image, "--preset", str(small_preset), "--json"]).stdout)
    assert row["label"] == keras_row["label"]
    assert row["probabilities"]["covid"] == pytest.approx(keras_row["probabilities"]["covid"], abs=1e-4)


def test_an_untrained_export_is_refused_as_its_preset_is(onnx_export, image):
    refused = runner.invoke(app, ["predict", image, "--exported", str(onnx_export)])
    assert refused.exit_code == 2 and "records no training" in refused.output and "--allow-untrained" in refused.output
    allowed = runner.invoke(app, ["predict", image, "--exported", str(onnx_export), "--allow-untrained", "--json"])
    assert allowed.exit_code == 0 and json.loads(allowed.stdout)["label"]
    assert "Research use only" in allowed.stderr


def test_a_missing_exporter_under_another_backend_names_tensorflow_in_the_extra(monkeypatch):
    import keras

    from keras_covidcxr import MissingDependencyError
    from keras_covidcxr.models.pipeline import export

    class NeedsTensorFlow(keras.layers.Layer):
        def call(self, inputs):
            return inputs

        def export(self, *args, **kwargs):
            raise ImportError("This requires the tensorflow module")

    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(MissingDependencyError, match=r"\(This requires the tensorflow module\); install them with: "
                                                     r'pip install "keras-covidcxr\[export,tensorflow-cpu\]"'):
        export._export_graph(NeedsTensorFlow(), (4,), "graph", "tf_saved_model")

"""The example recipes' --smoke settings run on a CPU (synthetic data, tiny networks)."""

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_segmenter_recipe_smoke(tmp_path, monkeypatch):
    import tempfile

    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    result = load_example("train_paper_segmenter").main(["--smoke", "--out", str(tmp_path / "seg")])
    assert (tmp_path / "seg" / "best" / "model.safetensors").is_file()
    assert result.best_value is not None and len(result.history) == 8
    assert list((tmp_path / "tmp").iterdir()) == []  # the synthetic data is removed after the run


@pytest.mark.slow  # trains a classifier recipe end to end
def test_classifier_recipe_smoke_writes_a_loadable_preset(tmp_path):
    from keras_covidcxr import Pipeline

    preset = tmp_path / "preset"
    built = load_example("train_paper_classifiers").main(
        ["--smoke", "--out", str(tmp_path / "runs"), "--preset", str(preset)]
    )
    pipeline = Pipeline.from_preset(preset)
    assert pipeline.class_names == ("covid", "normal", "pneumonia")
    assert pipeline.ensemble.member_names == ["densenet121", "mobilenet_v2", "vgg16"]
    assert set(built.training["validation"]) == {"densenet121", "mobilenet_v2", "vgg16", "ensemble"}


@pytest.mark.parametrize("name", ["train_paper_segmenter", "train_paper_classifiers"])
def test_recipes_refuse_to_run_without_data(name):
    with pytest.raises(SystemExit):
        load_example(name).parse(["--out", "x", "--preset", "y"] if "classifiers" in name else ["--out", "x"])

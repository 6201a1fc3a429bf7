"""`covidcxr predict --check-view`: the lung-mask view check, with and without --strict and --out."""

import json

import keras
import numpy as np
import pytest
from covidcxr_cli.app import app
from PIL import Image
from typer.testing import CliRunner

runner = CliRunner()
LATERAL_MESSAGE = "lung mask looks like a lateral view"


class ThresholdSegmenter(keras.Model):
    """A stand-in segmenter whose 'lungs' are the brighter-than-average pixels of its input (at 64 px)."""

    input_size, input_channels = 64, 1

    def call(self, x):
        return keras.ops.cast(keras.ops.greater(x, 0.0), "float32")


@pytest.fixture(scope="module")
def stub_pipeline(pipeline):
    """A 'trained' pipeline whose lung masks are the bright boxes drawn in the images."""
    from keras_covidcxr import Pipeline

    metadata = {"training": {"data": "none", "recipe": "stub"}}
    return Pipeline(ThresholdSegmenter(), pipeline.ensemble, metadata=metadata)


@pytest.fixture
def cli(monkeypatch, stub_pipeline):
    """`covidcxr predict ARGS... --preset stub`, running `stub_pipeline`."""
    from keras_covidcxr import Pipeline

    monkeypatch.setattr(Pipeline, "from_preset", lambda handle: stub_pipeline)
    return lambda *args: runner.invoke(app, ["predict", *map(str, args), "--preset", "stub"])


@pytest.fixture
def images(tmp_path):
    """(frontal-looking PNG: two bright boxes, lateral-looking PNG: one central box)."""
    frontal = np.zeros((256, 256), np.uint8)
    frontal[40:200, 24:112] = frontal[40:200, 144:232] = 255
    lateral = np.zeros((256, 256), np.uint8)
    lateral[40:220, 60:200] = 255
    paths = tmp_path / "frontal.png", tmp_path / "lateral.png"
    for path, image in zip(paths, (frontal, lateral)):
        Image.fromarray(image).save(path)
    return paths


def json_rows(result):
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_without_the_flag_nothing_is_checked(cli, images):
    result = cli(*images, "--json", "--strict")
    assert result.exit_code == 0, result.output
    assert all(row["warnings"] == [] and row["error"] is None for row in json_rows(result))


def test_check_view_flags_a_lateral_looking_image(cli, images):
    result = cli(*images, "--check-view", "--json")
    assert result.exit_code == 0, result.output
    frontal, lateral = json_rows(result)
    assert frontal["warnings"] == [] and lateral["error"] is None and lateral["label"] is not None
    assert [w["code"] for w in lateral["warnings"]] == ["view"]
    assert lateral["warnings"][0]["message"].startswith(LATERAL_MESSAGE)
    table = cli(*images, "--check-view")
    assert table.exit_code == 0 and "lateral" in table.stdout  # the table wraps the note into its cell


def test_check_view_with_strict_refuses_it_with_exit_1(cli, images):
    result = cli(*images, "--check-view", "--strict", "--json")
    assert result.exit_code == 1, result.output
    frontal, lateral = json_rows(result)
    assert frontal["error"] is None and frontal["label"] is not None
    assert lateral["label"] is None and lateral["probabilities"] is None
    assert lateral["error"].startswith(f"{images[1]}: {LATERAL_MESSAGE}") and "\n" not in lateral["error"]
    table = cli(*images, "--check-view", "--strict")
    assert table.exit_code == 1 and "Traceback" not in table.output
    assert "error" in table.stdout and "lateral" in table.stdout


def test_check_view_into_a_results_file_is_recorded_and_not_mixed(cli, images, tmp_path):
    out = tmp_path / "results.jsonl"
    result = cli(*images, "--check-view", "--strict", "--out", out)
    assert result.exit_code == 1, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    meta = json.loads((tmp_path / "results.jsonl.meta.json").read_text())
    assert meta["check_view"] is True and meta["strict"] is True
    assert [LATERAL_MESSAGE in (row["error"] or "") for row in rows] == [False, True]
    before = out.read_bytes()
    mixed = cli(*images, "--strict", "--out", out)  # the same file without --check-view
    assert mixed.exit_code == 2 and "check_view" in mixed.stderr
    assert out.read_bytes() == before


def test_a_preset_saved_with_the_check_keeps_it_and_info_says_so(pipeline, tmp_path):
    from keras_covidcxr import Pipeline

    folder = tmp_path / "checking"
    pipeline.with_input_contract(check_view_from_mask=True).save_to_preset(folder, training={"data": "none"})
    config = json.loads((folder / "config.json").read_text())
    assert config["input_contract"]["check_view_from_mask"] is True
    assert Pipeline.from_preset(folder).input_contract.check_view_from_mask is True
    info = runner.invoke(app, ["info", str(folder)])
    assert info.exit_code == 0 and "views are checked from the lung mask" in " ".join(info.stdout.split())

"""Usage errors arrive before the Keras backend loads: each checked in a fresh process via sys.modules."""

import json
import os
import subprocess
import sys

import pytest

# Runs the CLI in-process, then reports its exit code, stderr and whether a backend was imported.
CHILD = """
import contextlib, io, json, sys
from typer.testing import CliRunner
from covidcxr_cli.app import app
result = CliRunner().invoke(app, sys.argv[1:])
heavy = [m for m in ("keras", "tensorflow", "jax", "torch") if m in sys.modules]
print(json.dumps({"code": result.exit_code, "stderr": result.stderr, "heavy": heavy}))
"""


def run_cli(*args):
    done = subprocess.run([sys.executable, "-c", CHILD, *map(str, args)], capture_output=True, text=True,
                          check=True, timeout=120)
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture
def image(tmp_path):
    from PIL import Image

    path = tmp_path / "chest.png"
    Image.new("L", (256, 256), 128).save(path)
    return path


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing file", "no such file or folder"),
        ("an empty input (an unset variable)", "an input path is empty"),
        ("unknown preset", "preset"),
        ("wrong --out suffix", "must end in .csv or .jsonl"),
        ("--out is a folder", "is a folder"),
        ("--out in an unwritable folder", "is not writable"),
        ("--overlays in an unwritable folder", "cannot write overlays"),
        ("--out below a file", "is not a folder"),
        ("--out where no file can be made", "/proc is not writable"),  # even by root
        ("empty folder", "no image files"),
        ("missing manifest", "cannot read the manifest"),
        ("report folder not empty", "not an empty folder or an earlier report"),
        ("a split with no rows", "no cls rows in split 'val'"),
        ("finetune on an unsplit manifest", "no cls rows in split 'train'; split it by patient first"),
        ("--out is a user's file", "is not a covidcxr results file"),
        ("export into a user's folder", "exists and is not an empty folder"),
        ("export to an unknown format", "cannot export to 'pt'"),
        ("train segmenter, missing manifest", "cannot read the manifest"),
        ("train segmenter, no seg rows", "no seg rows at all (films with lung masks)"),
        ("train classifier, missing segmenter", "no such training run folder (--segmenter"),
    ],
)
def test_usage_errors_arrive_before_the_backend_loads(case, message, tmp_path, image, preset_dir):
    if os.geteuid() == 0 and "unwritable" in case:
        pytest.skip("root writes into read-only folders")
    if "no file can be made" in case and not os.path.isdir("/proc/self"):
        pytest.skip("no /proc file system here")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    (tmp_path / "empty").mkdir()
    (tmp_path / "folder.csv").mkdir()
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "notes.txt").write_text("mine")
    (tmp_path / "mine.csv").write_text("patient,label\n1,covid\n")
    predict = ["predict", image, "--preset", preset_dir]
    args = {
        "missing file": ["predict", tmp_path / "nope.png", "--preset", preset_dir],
        "an empty input (an unset variable)": ["predict", "", image, "--preset", preset_dir],  # not the cwd
        "unknown preset": ["predict", image, "--preset", "no_such_preset"],
        "wrong --out suffix": [*predict, "--out", tmp_path / "results.txt"],
        "--out is a folder": [*predict, "--out", tmp_path / "folder.csv"],
        "--out in an unwritable folder": [*predict, "--out", locked / "results.csv"],
        "--overlays in an unwritable folder": [*predict, "--overlays", locked / "overlays"],
        "--out below a file": [*predict, "--out", image / "results.csv"],
        "--out where no file can be made": [*predict, "--out", "/proc/results.csv"],
        "empty folder": ["predict", tmp_path / "empty", "--preset", preset_dir],
        "missing manifest": ["evaluate", preset_dir, tmp_path / "nope.csv", "--out", tmp_path / "new"],
        "report folder not empty": ["evaluate", preset_dir, tmp_path / "nope.csv", "--out", tmp_path / "report"],
        "--out is a user's file": [*predict, "--out", tmp_path / "mine.csv"],
        "export into a user's folder": ["export", preset_dir, tmp_path / "report"],
        "export to an unknown format": ["export", preset_dir, tmp_path / "new", "--format", "pt"],
        "a split with no rows": ["evaluate", preset_dir, tmp_path / "nope.csv", "--out", tmp_path / "new", "--split",
                                 "val"],
        "finetune on an unsplit manifest": ["finetune", preset_dir, tmp_path / "nope.csv", "--out", tmp_path / "new"],
        "train segmenter, missing manifest": ["train", "segmenter", tmp_path / "nope.csv", "--out", tmp_path / "seg"],
        "train segmenter, no seg rows": ["train", "segmenter", tmp_path / "nope.csv", "--out", tmp_path / "seg"],
        "train classifier, missing segmenter": ["train", "classifier", tmp_path / "nope.csv", "--segmenter",
                                                tmp_path / "seg", "--out", tmp_path / "clf"],
    }[case]
    if case in ("train segmenter, no seg rows", "train classifier, missing segmenter"):
        (tmp_path / "nope.csv").write_text("path,task,label,patient_id,split\na.png,cls,covid,p1,train\n"
                                           "b.png,cls,normal,p2,val\n")
        args[2] = tmp_path / "nope.csv"
    if case in ("report folder not empty", "a split with no rows", "finetune on an unsplit manifest"):
        manifest = tmp_path / "manifest.csv"  # a readable manifest
        manifest.write_text("path,task,label,patient_id,split\nchest.png,cls,covid,p1,"
                            + ("\n" if "unsplit" in case else "test\n"))
        args[2] = manifest
    result = run_cli(*args)
    assert result["code"] == 2, result
    assert message in result["stderr"] and result["stderr"].startswith("error:"), result
    assert len(result["stderr"].strip().splitlines()) == 1, result
    assert result["heavy"] == [], result


def test_a_resume_with_nothing_left_to_do_does_not_load_the_model(tmp_path, image, preset_dir, loaded_pipeline):
    from keras_covidcxr import predict_to_file

    out = tmp_path / "results.jsonl"
    assert predict_to_file(loaded_pipeline, [image], out).done == 1
    again = run_cli("predict", image, "--preset", preset_dir, "--out", out, "--json")
    assert again["code"] == 0 and again["heavy"] == [], again
    assert len(out.read_text().splitlines()) == 1
    # asking for overlays that were never written leaves work to do: that run loads the model
    from keras_covidcxr import finished_run

    assert finished_run(preset_dir, [image], out, overlays=tmp_path / "overlays") is None


@pytest.mark.parametrize("threshold", ["0", "1", "nan"])
def test_a_threshold_that_would_label_one_class_is_a_usage_error(threshold, image, preset_dir):
    result = run_cli("predict", image, "--preset", preset_dir, "--threshold", threshold)
    assert result["code"] == 2 and not result["heavy"], result
    assert "is not strictly between 0 and 1" in result["stderr"], result


@pytest.mark.parametrize(
    "case, message",
    [
        ("--out is the parent", "is the parent preset's folder"),
        ("--out is a file", "is a file, not a folder for a preset"),
        ("one class", "name two or more different classes, each once"),
        ("covid first of two", "name covid second: ['non_covid', 'covid']"),
        ("missing manifest", "cannot read the manifest"),
    ],
)
def test_finetune_usage_errors_arrive_before_the_backend_loads(case, message, tmp_path, preset_dir):
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,task,label,patient_id,split\nchest.png,cls,covid,p1,train\n")
    (tmp_path / "file").write_text("mine")
    out, extra = {
        "--out is the parent": (preset_dir, ["--overwrite"]),
        "--out is a file": (tmp_path / "file", []),
        "one class": (tmp_path / "new", ["--classes", "covid,covid"]),
        "covid first of two": (tmp_path / "new", ["--classes", "covid,non_covid"]),
        "missing manifest": (tmp_path / "new", []),
    }[case]
    if case == "missing manifest":
        manifest = tmp_path / "nope.csv"
    before = sorted(path.stat().st_mtime_ns for path in preset_dir.rglob("*"))
    result = run_cli("finetune", preset_dir, manifest, "--out", out, *extra)
    assert result["code"] == 2 and not result["heavy"], result
    assert message in " ".join(result["stderr"].split()) and result["stderr"].startswith("error:"), result
    assert sorted(path.stat().st_mtime_ns for path in preset_dir.rglob("*")) == before  # the parent untouched


def test_an_export_the_backend_cannot_write_is_refused_before_it_loads(tmp_path, preset_dir, monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    result = run_cli("export", preset_dir, tmp_path / "new", "--format", "onnx")
    assert result["code"] == 2 and result["heavy"] == [], result
    assert result["stderr"].startswith("error: this package cannot export onnx from the jax backend"), result


def test_a_missing_sample_path_says_where_the_installed_sample_is(tmp_path, monkeypatch):
    from keras_covidcxr.samples import SAMPLES_DIR

    monkeypatch.chdir(tmp_path)  # outside a source checkout, where the README's relative path does not exist
    result = run_cli("predict", "keras_covidcxr/samples/chest_xray_covid_pa.png")
    assert result["code"] == 2 and result["heavy"] == [], result
    installed = SAMPLES_DIR / "chest_xray_covid_pa.png"
    assert f"the bundled sample of that name is installed at {installed}" in result["stderr"]

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from covidcxr_cli.app import _progress_fields, app
from typer.testing import CliRunner

from keras_covidcxr import ConfigError
from keras_covidcxr.inference.batch_prediction import PredictionSummary

BATCH_SIZE = "4"  # the same in every tests/inference module: one traced shape per session
runner = CliRunner()


def predict(*args):
    return runner.invoke(app, ["predict", *map(str, args), "--batch-size", BATCH_SIZE])


def csv_sources(path):
    return [row["source"] for row in csv.DictReader(path.read_text().splitlines())]


def test_a_folder_streams_into_a_csv_with_exit_1_and_a_rerun_adds_nothing(
    fast_cli, preset_dir, mixed_folder, tmp_path
):
    folder, expected = mixed_folder
    out = tmp_path / "results.csv"
    result = predict(folder, "--preset", preset_dir, "--out", out)
    assert result.exit_code == 1, result.output
    assert "3 predicted, 3 failed, 0 already done" in result.stdout
    footer = [line.split(":")[0] for line in result.stdout.splitlines() if not line.startswith(" ")]
    assert footer[-3:] == ["Label", "Probabilities", "Spread"]  # what the CSV's columns mean
    assert "predicting" in result.stderr and "6/6" in result.stderr  # the progress bar
    assert sorted(csv_sources(out)) == sorted(expected)
    failed_rows = [row for row in csv.DictReader(out.open()) if row["error"]]
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 3 and all(Path(row["source"]).name in result.stderr for row in failed_rows)

    before = out.read_bytes()
    again = predict(folder, "--preset", preset_dir, "--out", out, "--json")
    assert again.exit_code == 1  # the broken files still have error rows
    assert json.loads(again.stdout) | {"out": None} == {
        "total": 6,
        "done": 0,
        "failed": 0,
        "skipped": 6,
        "skipped_failed": 3,
        "out": None,
        "untrained": False,
    }
    assert out.read_bytes() == before


def test_good_files_exit_0_into_jsonl(fast_cli, preset_dir, tmp_path, write_png):
    images = [write_png(tmp_path / "in" / f"{i}.png", seed=i) for i in range(2)]
    out = tmp_path / "results.jsonl"
    result = predict(images[0], tmp_path / "in", "--preset", preset_dir, "--out", out)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["source"] for row in rows] == [str(image.absolute()) for image in images]


@pytest.mark.parametrize(
    "content, meta, message",
    [
        ("patient,label\n1,covid\n", None, "is not a covidcxr results file"),
        (
            "source,sha256\n",
            '{"covidcxr_results": 2, "model_sha256": "x", "class_names": ["covid", "normal", "other"]}',
            "another run",
        ),
    ],
)
def test_an_out_file_that_is_not_a_run_of_this_preset_is_refused_with_exit_2(
    preset_dir, tmp_path, write_png, content, meta, message
):
    out = tmp_path / "results.csv"
    out.write_text(content)
    if meta:
        (tmp_path / "results.csv.meta.json").write_text(meta)
    result = predict(write_png(tmp_path / "a.png"), "--preset", preset_dir, "--out", out)
    assert result.exit_code == 2
    assert message in " ".join(result.stderr.split()) and "Traceback" not in result.output
    assert result.stderr.startswith("error:")  # one line; no progress bar was started
    assert out.read_text() == content


def test_folders_work_without_out_and_an_empty_one_exits_2(fast_cli, preset_dir, tmp_path, write_png):
    write_png(tmp_path / "scans" / "deep" / "chest.png")
    result = predict(tmp_path / "scans", "--preset", preset_dir, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["source"] == str(tmp_path / "scans" / "deep" / "chest.png")
    (tmp_path / "empty").mkdir()
    empty = predict(tmp_path / "empty", "--preset", preset_dir)
    assert empty.exit_code == 2 and "no image files" in empty.stderr


def test_overlays_and_out_combine_and_a_resume_writes_no_overlay_twice(fast_cli, preset_dir, tmp_path, write_png):
    for name in ("a", "b"):  # the same file name in two folders: overlays must not collide
        write_png(tmp_path / "in" / name / "chest.png", seed=ord(name))
    out, overlays = tmp_path / "results.csv", tmp_path / "overlays"
    result = predict(tmp_path / "in", "--preset", preset_dir, "--out", out, "--overlays", overlays)
    assert result.exit_code == 0, result.output
    written = sorted(path.name for path in overlays.iterdir())
    assert len(written) == 4 and all(name.startswith("chest_") for name in written)  # mask + Grad-CAM each
    times = {path: path.stat().st_mtime_ns for path in overlays.iterdir()}
    again = predict(tmp_path / "in", "--preset", preset_dir, "--out", out, "--overlays", overlays)
    assert again.exit_code == 0 and "0 predicted" in again.stdout
    assert {path: path.stat().st_mtime_ns for path in overlays.iterdir()} == times


def test_a_film_whose_overlays_cannot_be_written_is_a_failed_row_and_the_batch_carries_on(
        fast_cli, preset_dir, tmp_path, write_png):
    from keras_covidcxr.inference.batch_prediction import overlay_stem
    from keras_covidcxr.presets.checksums import sha256_of_file

    first, second = write_png(tmp_path / "in" / "a.png", seed=1), write_png(tmp_path / "in" / "b.png", seed=2)
    overlays = tmp_path / "overlays"
    overlays.mkdir()
    in_the_way = overlays / f"{overlay_stem(first, sha256_of_file(first))}_mask.png"
    in_the_way.write_bytes(b"user's file")
    out = tmp_path / "results.csv"
    result = predict(tmp_path / "in", "--preset", preset_dir, "--out", out, "--overlays", overlays)
    assert result.exit_code == 1, result.output
    rows = {os.path.basename(row["source"]): row for row in csv.DictReader(out.open())}
    assert "overlays not written" in rows["a.png"]["error"] and "not overwriting" in rows["a.png"]["error"]
    assert rows["b.png"]["error"] == "" and rows["b.png"]["label"]
    assert in_the_way.read_bytes() == b"user's file"
    assert (overlays / f"{overlay_stem(second, sha256_of_file(second))}_gradcam.png").is_file()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_given_as_an_image_is_a_failed_row_not_a_hang(fast_cli, preset_dir, tmp_path, write_png):
    image, fifo = write_png(tmp_path / "chest.png"), tmp_path / "pipe.png"
    os.mkfifo(fifo)
    out = tmp_path / "results.csv"
    result = predict(image, fifo, "--preset", preset_dir, "--out", out)
    assert result.exit_code == 1, result.output
    rows = {os.path.basename(row["source"]): row["error"] for row in csv.DictReader(out.open())}
    assert rows["chest.png"] == "" and "not a regular file" in rows["pipe.png"]
    # a rerun neither hangs on the pipe nor redoes it (nor a missing file): their error rows stand, and with
    # nothing left to do the model is not loaded (`finished_run`)
    missing = tmp_path / "missing.png"
    assert predict(image, fifo, missing, "--preset", preset_dir, "--out", out).exit_code == 1
    again = predict(image, fifo, missing, "--preset", preset_dir, "--out", out)
    assert "0 predicted, 0 failed, 3 already done (2 of them failed)" in again.stdout, again.output
    from keras_covidcxr import finished_run

    done = finished_run(preset_dir, [image, fifo, missing], out)
    assert (done.total, done.skipped, done.skipped_failed) == (3, 3, 2)
    assert finished_run(preset_dir, [image, fifo, missing], out, retry_failed=True) is None
    before = out.read_bytes()
    meta = out.with_name(out.name + ".meta.json")
    meta.write_text(meta.read_text().replace('"package_version": "', '"package_version": "0.0.'))
    with pytest.raises(ConfigError, match="another run \\(package_version"):  # as a run with work left says
        finished_run(preset_dir, [image, fifo, missing], out)
    assert out.read_bytes() == before


def test_threshold_decides_the_label_and_every_output_says_which_rule(fast_cli, preset_dir, tmp_path, write_png):
    image = write_png(tmp_path / "chest.png")
    rows = {}
    for threshold in ("0.001", "0.999"):
        result = predict(image, "--preset", preset_dir, "--json", "--threshold", threshold)
        assert result.exit_code == 0, result.output
        rows[threshold] = json.loads(result.stdout)
    assert rows["0.001"]["label"] == "covid" and rows["0.999"]["label"] == "non_covid"
    assert rows["0.001"]["decision"] == {
        "rule": "threshold", "positive_class": "covid", "threshold": 0.001, "origin": "user"
    }
    table = predict(image, "--preset", preset_dir, "--threshold", "0.25")
    assert "covid if p(covid) >= 0.250 (threshold given by the user)" in " ".join(table.stdout.split())
    out = tmp_path / "results.csv"
    assert predict(image, "--preset", preset_dir, "--out", out, "--threshold", "0.25").exit_code == 0
    assert [(r["decision_rule"], r["threshold"]) for r in csv.DictReader(out.open())] == [("threshold", "0.25")]
    # a rerun at another threshold would mix two rules in one file: refused
    other = predict(image, "--preset", preset_dir, "--out", out)
    assert other.exit_code == 2 and "another run (decision.threshold 0.25 there" in " ".join(other.stderr.split())


def test_errors_go_to_stderr_one_line_each_and_the_table_keeps_a_marker(
    fast_cli, preset_dir, tmp_path, write_png
):
    good = write_png(tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    result = predict(good, tmp_path / "broken.png", "--preset", preset_dir)
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "broken.png" in errors[0]
    assert "broken.png" in result.stdout and "error" in result.stdout  # the marker row
    assert "not really" not in result.stdout


# The real command in a child process, each batch slowed down so that the kill lands mid-run.
KILLABLE_CLI = """
import sys, time
import keras_covidcxr.inference.batch_prediction as batch_prediction
predict_rows = batch_prediction._predict_rows
def slow_predict_rows(*args):
    time.sleep(0.25)
    return predict_rows(*args)
batch_prediction._predict_rows = slow_predict_rows
from covidcxr_cli.app import main
sys.argv[0] = "covidcxr"
main()
"""


@pytest.mark.slow  # a child process loads the model and is killed mid-run
def test_a_killed_run_resumes_and_every_file_appears_exactly_once(fast_cli, preset_dir, tmp_path, write_png):
    folder = tmp_path / "scans"
    images = [write_png(folder / f"{i:02d}.png", seed=i) for i in range(12)]
    out = tmp_path / "results.csv"
    command = [sys.executable, "-c", KILLABLE_CLI, "predict", str(folder), "--preset", str(preset_dir)]
    command += ["--out", str(out), "--batch-size", "1"]
    with open(tmp_path / "child.log", "wb") as log:
        child = subprocess.Popen(
            command, stdout=log, stderr=log, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        )
    try:
        deadline = time.monotonic() + 180
        while not (out.exists() and len(out.read_text().splitlines()) >= 1 + 2):  # header + 2 rows
            assert child.poll() is None, (tmp_path / "child.log").read_text()
            assert time.monotonic() < deadline, "the child wrote no rows in time"
            time.sleep(0.02)
        assert child.poll() is None
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    done_before = csv_sources(out)
    assert 2 <= len(done_before) < len(images) and len(set(done_before)) == len(done_before)

    result = predict(folder, "--preset", preset_dir, "--out", out)
    assert result.exit_code == 0, result.output
    assert f"{len(images) - len(done_before)} predicted" in result.stdout
    assert sorted(csv_sources(out)) == sorted(str(image.absolute()) for image in images)


def test_the_progress_rate_is_the_runs_average_and_leaves_out_skipped_files():
    at_start = _progress_fields(PredictionSummary(total=12, skipped=2), elapsed=0.0)
    assert at_start == {"total": 10, "completed": 0, "rate": "", "eta": ""}
    # 4 of 10 after 8 s, whatever the spacing of the batches: 0.5 img/s, 12 s left
    midway = _progress_fields(PredictionSummary(total=12, skipped=2, done=3, failed=1), elapsed=8.0)
    assert midway == {"total": 10, "completed": 4, "rate": "0.5 img/s", "eta": "0:00:12 left"}
    slow = _progress_fields(PredictionSummary(total=10_000, done=2), elapsed=4.0)
    assert slow["eta"] == "5:33:16 left"

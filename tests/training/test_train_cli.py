"""`covidcxr train segmenter | classifier | ensemble` end to end on tiny synthetic data, and errors."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import typer
from covidcxr_cli.train_commands import finetune, train_app
from typer.testing import CliRunner


@pytest.fixture(scope="module")
def cli():
    app = typer.Typer(pretty_exceptions_enable=False)
    app.add_typer(train_app, name="train")  # mounted like the `covidcxr` app mounts it
    app.command("finetune")(finetune)
    return app


@pytest.mark.slow  # trains a segmenter, a classifier and fine-tunes them
def test_segmenter_classifier_ensemble_make_a_preset(cli, synthetic_manifest_path, tmp_path, chest_images,
                                                     monkeypatch):
    from keras_covidcxr import Pipeline

    # Tiny members trained for an epoch may answer one class for all 3 validation films; the assembly would
    # refuse them (tested on its own in test_linear_head_and_assembly): here the commands' plumbing is tested.
    monkeypatch.setattr("keras_covidcxr.training.assembly.MAX_ONE_CLASS_FRACTION", 1.0)

    runner = CliRunner()
    manifest = str(synthetic_manifest_path)
    seg, member, preset = tmp_path / "seg", tmp_path / "tiny", tmp_path / "preset"
    result = runner.invoke(cli, ["train", "segmenter", manifest, "--out", str(seg), "--input-size", "32",
                                 "--filters", "4,8,16", "--epochs", "2", "--batch-size", "8", "--workers", "1",
                                 "--eager"])
    assert result.exit_code == 0, result.output
    assert "best val Dice" in result.output and (seg / "best" / "model.safetensors").is_file()

    result = runner.invoke(cli, ["train", "classifier", manifest, "--segmenter", str(seg), "--out", str(member),
                                 "--backbone", "mobilenet_v2", "--name", "tiny", "--input-size", "32",
                                 "--head-units", "8", "--backbone-weights", "none", "--head-epochs", "1",
                                 "--unfreeze-schedule", "0.5", "--max-epochs-per-stage", "1", "--batch-size", "8",
                                 "--workers", "1", "--eager"])
    assert result.exit_code == 0, result.output
    assert "best val accuracy" in result.output
    summary = json.loads((member / "summary.json").read_text())
    assert summary["class_names"] == ["non_covid", "covid"] and summary["preprocessing"]["masking"] == "hard"

    result = runner.invoke(cli, ["train", "ensemble", manifest, "--segmenter", str(seg), "--member", str(member),
                                 "--out", str(preset), "--batch-size", "8", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "val accuracy" in result.output and "ensemble" in result.output
    resplit = tmp_path / "resplit.csv"  # another manifest: its val split may hold the member's training patients
    lines = synthetic_manifest_path.read_text().splitlines()
    resplit.write_text("\n".join([lines[0], *reversed(lines[1:])]) + "\n")
    other = runner.invoke(cli, ["train", "ensemble", str(resplit), "--segmenter", str(seg), "--member", str(member),
                                "--out", str(tmp_path / "other"), "--batch-size", "8", "--workers", "1"])
    assert other.exit_code == 2 and "was trained on another manifest" in " ".join(other.output.split())
    pipeline = Pipeline.from_preset(preset)
    assert pipeline.is_trained and pipeline.ensemble.member_names == ["tiny"]
    training = pipeline.metadata["training"]
    assert training["recipe"]["segmenter"]["architecture"] == {"input_size": 32, "filters": [4, 8, 16]}
    assert training["data"]["sha256"] == summary["data"]["sha256"]
    # the patients of train and val (members and ensemble fitted there), hashed, so evaluate can spot them
    from keras_covidcxr.data import read_manifest
    from keras_covidcxr.training.provenance import FIT_PATIENTS_KEY, patient_digest

    fitted = {row.patient_id for row in read_manifest(manifest) if row.task == "cls" and row.split != "test"}
    assert training["data"][FIT_PATIENTS_KEY] == sorted(patient_digest(p) for p in fitted)
    assert len(pipeline.predict(chest_images[:1])) == 1

    tuned = tmp_path / "tuned"
    result = runner.invoke(cli, ["finetune", str(preset), manifest, "--out", str(tuned), "--epochs", "1",
                                 "--learning-rate", "0.01", "--unfreeze-schedule", "0.5", "--batch-size", "8",
                                 "--workers", "1", "--eager"])
    assert result.exit_code == 0, result.output
    config = Pipeline.from_preset(tuned).metadata["training"]["recipe"]["config"]
    assert (config["head_epochs"], config["max_epochs_per_stage"], config["head_learning_rate"]) == (1, 1, 0.01)
    assert "same classes, trained on from the preset's weights" in " ".join(result.stdout.split())
    assert "warning: the ensemble weights and threshold are fitted on" in " ".join(result.stderr.split())
    # the member has a dense head (--head-units 8): no linear probe; said in one line, nothing written
    result = runner.invoke(cli, ["finetune", str(preset), manifest, "--out", str(tmp_path / "probe"),
                                 "--recipe", "linear-probe"])
    assert result.exit_code == 2 and "logistic-regression heads" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "probe").exists()

    # the segmenter trained anew under the same name: the member read the old one's crops
    result = runner.invoke(cli, ["train", "segmenter", manifest, "--out", str(seg), "--input-size", "32",
                                 "--filters", "4,8,16", "--epochs", "1", "--batch-size", "8", "--workers", "1",
                                 "--eager", "--restart", "--seed", "7"])
    assert result.exit_code == 0, result.output
    stale = runner.invoke(cli, ["train", "ensemble", manifest, "--segmenter", str(seg), "--member", str(member),
                                "--out", str(tmp_path / "stale"), "--batch-size", "8", "--workers", "1"])
    assert stale.exit_code == 2 and "before its weights changed (retrained or resumed since); train the " \
        "classifier again with it" in " ".join(stale.output.split())


def test_errors_are_one_line_with_exit_code_2(cli, tmp_path):
    result = CliRunner().invoke(cli, ["train", "segmenter", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "error:" in result.output and "missing.csv" in result.output and "Traceback" not in result.output


def test_training_into_a_folder_of_the_users_is_refused_and_leaves_it_alone(cli, tmp_path, synthetic_manifest_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "summary.txt").write_text("keep")
    result = CliRunner().invoke(cli, ["train", "segmenter", str(synthetic_manifest_path), "--out", str(mine),
                                      "--input-size", "32", "--filters", "4,8", "--epochs", "1"])
    assert result.exit_code == 2 and "exists and is not a training run folder" in " ".join(result.output.split())
    assert [p.name for p in mine.iterdir()] == ["summary.txt"]


def test_a_manifest_without_splits_is_refused(cli, tmp_path, synthetic_manifest):
    from keras_covidcxr.data import write_manifest

    unsplit = synthetic_manifest.with_rows(row.replace(split=None) for row in synthetic_manifest)
    path = write_manifest(unsplit, tmp_path / "unsplit.csv")
    result = CliRunner().invoke(cli, ["train", "segmenter", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "covidcxr data split" in result.output


def test_a_resume_with_another_architecture_and_a_file_as_out_are_refused(cli, synthetic_manifest_path, tmp_path):
    args = ["train", "segmenter", str(synthetic_manifest_path), "--epochs", "1", "--input-size", "32", "--eager",
            "--batch-size", "4"]
    out = tmp_path / "seg"
    assert CliRunner().invoke(cli, [*args, "--out", str(out), "--filters", "4,8"]).exit_code == 0
    other = CliRunner().invoke(cli, [*args, "--out", str(out), "--filters", "8,16"])
    assert other.exit_code == 2 and "Traceback" not in other.output
    assert "another architecture (filters (4, 8) there, (8, 16) asked)" in " ".join(other.output.split())
    # other settings or data: refused, not mixed into one record; a longer run of the same is a resume
    lr = CliRunner().invoke(cli, [*args, "--out", str(out), "--filters", "4,8", "--learning-rate", "0.05"])
    assert lr.exit_code == 2 and "holds a run on other data or settings (config.learning_rate: 0.001 there, " \
        "0.05 here)" in " ".join(lr.output.split())
    longer = CliRunner().invoke(cli, [*args[:3], "--epochs", "2", *args[5:], "--out", str(out), "--filters", "4,8"])
    assert longer.exit_code == 0, longer.output
    assert [p.name for p in (out / "state").iterdir()] == ["epoch-0002"]
    # a restart starts from nothing: its first epoch is what a later resume continues, not the old second
    restart = CliRunner().invoke(cli, [*args, "--out", str(out), "--filters", "4,8", "--restart",
                                       "--learning-rate", "0.05"])
    assert restart.exit_code == 0, restart.output
    assert [p.name for p in (out / "state").iterdir()] == ["epoch-0001"]
    # a segmenter run is not a classifier run
    wrong = CliRunner().invoke(cli, ["train", "ensemble", str(synthetic_manifest_path), "--segmenter", str(out),
                                     "--member", str(out), "--out", str(tmp_path / "preset")])
    assert wrong.exit_code == 2 and "holds a ResUnet checkpoint, not a classifier" in " ".join(wrong.output.split())
    (tmp_path / "file").write_text("mine")
    in_the_way = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "file"), "--filters", "4,8"])
    assert in_the_way.exit_code == 2 and "is a file, not a checkpoint folder" in in_the_way.output
    assert (tmp_path / "file").read_text() == "mine"


def test_the_linear_probes_unused_settings_are_named_by_their_options():
    from covidcxr_cli.train_commands import unused_options_message

    assert unused_options_message(("head_epochs", "max_epochs_per_stage", "augment")) == (
        "the linear probe fits each head in closed form and does not use --head-epochs/--epochs, "
        "--max-epochs-per-stage/--epochs, --augment/--no-augment (options of --recipe train)")


@pytest.mark.slow  # a fresh process: the setting must come before TensorFlow loads
def test_training_a_small_segmenter_from_the_command_line_does_not_crash_in_onednn(synthetic_manifest_path, tmp_path):
    # With TensorFlow's oneDNN kernels on, this run died with "free(): invalid next size" (exit 134).
    env = {key: value for key, value in os.environ.items() if key != "TF_ENABLE_ONEDNN_OPTS"}
    run = subprocess.run([sys.executable, "-c", "from covidcxr_cli.app import main; main()", "train", "segmenter",
                          str(synthetic_manifest_path),
                          "--out", str(tmp_path / "seg"), "--input-size", "64", "--filters", "4,8,16", "--epochs",
                          "1", "--batch-size", "4", "--workers", "1"], capture_output=True, text=True, env=env,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "seg" / "best" / "model.safetensors").is_file()


@pytest.mark.slow  # trains in a fresh process until its first epoch is saved, then kills it
def test_a_training_run_killed_with_sigterm_says_how_to_resume(synthetic_manifest_path, tmp_path):
    out = tmp_path / "seg"
    run = subprocess.Popen([sys.executable, "-c", "from covidcxr_cli.app import main; main()", "train", "segmenter",
                            str(synthetic_manifest_path), "--out", str(out), "--input-size", "32", "--filters",
                            "4,8", "--epochs", "500", "--batch-size", "4", "--workers", "1"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # epoch lines: not read
    deadline = time.monotonic() + 240
    # each saved epoch replaces the one before: wait for any
    while not list((out / "state").glob("epoch-*/state.json")) and time.monotonic() < deadline:
        assert run.poll() is None, run.communicate()[1][-2000:]
        time.sleep(0.2)
    run.send_signal(signal.SIGTERM)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 143, stderr[-2000:]
    assert "Traceback" not in stderr
    assert (f"terminated (SIGTERM); {out} keeps the last finished epoch, if one finished: rerun the same command to "
            "resume from it") in " ".join(stderr.split())


def test_an_interrupted_finetune_says_what_is_kept(cli, preset_dir, synthetic_manifest_path, tmp_path, monkeypatch):
    import keras_covidcxr

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(keras_covidcxr, "finetune", interrupted)
    out, checkpoints = tmp_path / "tuned", tmp_path / "checkpoints"
    result = CliRunner().invoke(cli, ["finetune", str(preset_dir), str(synthetic_manifest_path), "--out", str(out),
                                      "--checkpoints", str(checkpoints)])
    assert result.exit_code == 130
    assert (f"interrupted; {out} is not written (the parent preset is unchanged); {checkpoints} keeps the train "
            "recipe's last finished phase or unfreezing stage (head only, then each stage), if one finished: rerun "
            "the same command to resume") in " ".join(result.output.split())
    probe = CliRunner().invoke(cli, ["finetune", str(preset_dir), str(synthetic_manifest_path), "--out", str(out),
                                     "--checkpoints", str(checkpoints), "--recipe", "linear-probe"])
    assert probe.exit_code == 130 and "keeps" not in probe.output  # no epochs to keep


def test_finetune_prints_a_warning_when_it_is_raised_not_after_the_run(cli, preset_dir, synthetic_manifest_path,
                                                                     tmp_path, monkeypatch):
    import warnings

    import keras_covidcxr

    def warns_then_trains(*args, progress, **kwargs):
        warnings.warn_explicit("the films overlap the parent's", UserWarning, "keras_covidcxr/training/finetune.py", 1)
        progress("training the members")
        raise KeyboardInterrupt

    monkeypatch.setattr(keras_covidcxr, "finetune", warns_then_trains)
    result = CliRunner().invoke(cli, ["finetune", str(preset_dir), str(synthetic_manifest_path), "--out",
                                      str(tmp_path / "tuned")])
    assert result.exit_code == 130
    output = " ".join(result.output.split())
    assert output.index("warning: the films overlap the parent's") < output.index("training the members")

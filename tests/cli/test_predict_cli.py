import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from covidcxr_cli.app import app
from PIL import Image
from typer.testing import CliRunner

from keras_covidcxr.io.overlay_figure import panel_size

runner = CliRunner()


@pytest.fixture
def images(chest_images, tmp_path):
    paths = []
    for i, image in enumerate(chest_images[:2]):
        path = tmp_path / f"chest{i}.png"
        Image.fromarray((image * 255).astype(np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_help_and_presets_do_not_import_a_backend():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from covidcxr_cli.app import app\n"
        "for args in (['--help'], ['presets']):\n"
        "    assert CliRunner().invoke(app, args).exit_code == 0, args\n"
        "heavy = [m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_predict_prints_a_table(preset_dir, images, monkeypatch, fast_cli, tmp_path):
    # Not a terminal (as when piped to a file): the table takes the width it needs, so long file names and
    # the notes an untrained segmenter adds do not fold the names over several lines.
    monkeypatch.delenv("COLUMNS", raising=False)
    long_name = tmp_path / "chest_xray_exported_from_pacs_study_0001_series_2.png"
    long_name.write_bytes(open(images[0], "rb").read())
    result = runner.invoke(app, ["predict", *images, str(long_name), "--preset", str(preset_dir)])
    assert result.exit_code == 0, result.output
    for name in ("chest0.png", "chest1.png", long_name.name, "non_covid", "covid", "alpha:", "beta:",
                 "Research use only", "Probabilities: the ensemble's outputs, not calibrated"):
        assert name in result.output


def test_predict_json_one_object_per_image(preset_dir, images, fast_cli):
    result = runner.invoke(app, ["predict", *images, "--preset", str(preset_dir), "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["source"] for row in rows] == images
    for row in rows:
        assert row["label"] in ("covid", "non_covid") and row["error"] is None
        assert sum(row["probabilities"].values()) == pytest.approx(1.0)
        assert set(row["members"]) == {"alpha", "beta"} and 0 <= row["lung_fraction"] <= 1
        assert row["untrained"] is False


def test_an_empty_folder_among_the_inputs_is_said(preset_dir, images, tmp_path, fast_cli):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no films here")
    result = runner.invoke(app, ["predict", images[0], str(tmp_path / "empty"), str(tmp_path / "notes"),
                                 "--preset", str(preset_dir), "--json"])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 1  # the film was predicted
    for folder in ("empty", "notes"):
        assert f"note: no image files in {tmp_path / folder}" in result.stderr


def test_a_film_named_twice_or_hard_linked_is_predicted_once_and_said(preset_dir, images, tmp_path, fast_cli):
    import os

    os.link(images[0], tmp_path / "copy.png")
    result = runner.invoke(app, ["predict", images[0], str(tmp_path / "copy.png"), images[0],
                                 "--preset", str(preset_dir), "--json"])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 1
    assert (f"note: 2 input(s) name a file already listed (a link or a repeat), predicted once: {tmp_path / 'copy.png'}"
            f" (= {images[0]}); {images[0]} (= {images[0]})") in " ".join(result.stderr.split())


def test_control_characters_in_file_names_reach_the_terminal_escaped(preset_dir, images, tmp_path, fast_cli):
    folder = tmp_path / "names"
    folder.mkdir()
    (folder / "good\x1b[31mred.png").write_bytes(Path(images[0]).read_bytes())
    (folder / "clear\x1b[2J\nscreen.png").write_bytes(b"")  # empty: an error line naming it
    named = str(folder / "good\x1b[31mred.png")
    result = runner.invoke(app, ["predict", str(folder), named, "--preset", str(preset_dir)])
    assert result.exit_code == 1 and "\x1b" not in result.output
    assert "good\\x1b[31mred.png" in result.stdout and "good\\x1b[31mred.png (= " in result.stderr  # the repeat's note
    assert f"error: {folder}/clear\\x1b[2J\\nscreen.png: empty file (0 bytes)" in result.stderr
    into = runner.invoke(app, ["predict", named, "--preset", str(preset_dir), "--out", str(folder / "r\x1b[2J.csv")])
    assert into.exit_code == 0 and "\x1b" not in into.output and "\\x1b[2J" in into.stdout  # the summary's name


def test_a_file_the_user_cannot_read_is_a_row_of_its_own_not_a_usage_error(preset_dir, images, monkeypatch, fast_cli):
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: os.fspath(path) != images[0] and access(path, mode))
    result = runner.invoke(app, ["predict", *images, "--preset", str(preset_dir), "--json"])
    assert result.exit_code == 0, result.output  # the command line's parser no longer refuses it up front
    assert [json.loads(line)["error"] for line in result.stdout.splitlines()] == [None, None]


def test_a_bad_file_gives_exit_code_1_and_the_rest_still_run(preset_dir, images, tmp_path, fast_cli):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = runner.invoke(app, ["predict", images[0], str(broken), "--preset", str(preset_dir), "--json"])
    assert result.exit_code == 1
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows[0]["error"] is None and "broken.png" in rows[1]["error"]
    assert "Traceback" not in result.output


def test_preset_errors_are_one_line_and_exit_code_2(images, tmp_path):
    result = runner.invoke(app, ["predict", images[0], "--preset", str(tmp_path / "missing")])
    assert result.exit_code == 2
    assert "error:" in result.stderr and "no such preset" in result.stderr
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) <= 2  # one logical line, maybe soft-wrapped


def test_every_input_failing_gives_exit_code_2(preset_dir, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    result = runner.invoke(app, ["predict", str(broken), str(tmp_path / "absent.png"), "--preset", str(preset_dir)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "broken.png" in result.stdout and "absent.png" in result.stdout


def test_output_problems_are_one_line_exit_2_and_debug_shows_the_traceback(preset_dir, images, tmp_path):
    a_file = tmp_path / "overlays.png"
    a_file.write_bytes(b"user's file")
    impossible = a_file / "results.csv"  # a folder that is a file: no write can succeed, even as root
    result = runner.invoke(app, ["predict", images[0], "--preset", str(preset_dir), "--out", str(impossible)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "error:" in result.stderr and "overlays.png" in result.stderr
    debug = runner.invoke(app, ["predict", images[0], "--preset", str(preset_dir), "--out", str(impossible), "--debug"])
    assert debug.exit_code == 2 and "Traceback" in debug.stderr
    refused = runner.invoke(app, ["predict", images[0], "--preset", str(preset_dir), "--overlays", str(a_file)])
    assert refused.exit_code == 2 and "needs a folder" in refused.stderr and refused.stdout == ""
    assert a_file.read_bytes() == b"user's file"
    out = tmp_path / "r.csv"
    (tmp_path / "link.csv").symlink_to(out)
    for results, overlays in ((out, out), (out, tmp_path / "r.csv.meta.json"), (tmp_path / "link.csv", out)):
        same = runner.invoke(app, ["predict", images[0], "--preset", str(preset_dir), "--out", str(results),
                                   "--overlays", str(overlays)])  # refused before anything is predicted
        assert same.exit_code == 2 and "--overlays needs a folder of its own, not the results file" in same.stderr
        assert not out.exists()


def test_a_missing_backend_is_one_line_naming_what_to_install(images, tmp_path):
    code = (
        "import sys\n"
        "sys.modules['tensorflow'] = None  # as if TensorFlow were not installed\n"
        "from typer.testing import CliRunner\n"
        "from covidcxr_cli.app import app\n"
        f"result = CliRunner().invoke(app, ['predict', {images[0]!r}])\n"
        "print(result.exit_code, repr(result.stderr))\n"
    )
    env = {**__import__("os").environ, "KERAS_BACKEND": "tensorflow"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.startswith("2 ") and "keras-covidcxr[tensorflow-cpu]" in out and "Traceback" not in out


def test_usage_errors_exit_2(preset_dir):
    assert runner.invoke(app, ["predict", "--preset", str(preset_dir)]).exit_code == 2
    assert runner.invoke(app, ["no-such-command"]).exit_code == 2


@pytest.mark.slow  # loads the untrained preset three times
def test_untrained_presets_are_refused_unless_allowed(untrained_preset_dir, images):
    refused = runner.invoke(app, ["predict", images[0], "--preset", str(untrained_preset_dir)])
    assert refused.exit_code == 2 and "--allow-untrained" in refused.stderr
    allowed = runner.invoke(app, ["predict", images[0], "--preset", str(untrained_preset_dir), "--allow-untrained"])
    assert allowed.exit_code == 0 and "UNTRAINED" in allowed.output
    as_json = runner.invoke(
        app, ["predict", images[0], "--preset", str(untrained_preset_dir), "--allow-untrained", "--json"]
    )
    assert json.loads(as_json.stdout)["untrained"] is True


def test_overlays_are_written_and_user_files_kept(preset_dir, images, tmp_path, fast_cli):
    out = tmp_path / "overlays"
    result = runner.invoke(app, ["predict", *images, "--preset", str(preset_dir), "--overlays", str(out)])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in out.iterdir())
    assert written == ["chest0_gradcam.png", "chest0_mask.png", "chest1_gradcam.png", "chest1_mask.png"]
    with Image.open(out / "chest0_mask.png") as overlay, Image.open(images[0]) as original:
        height, width = panel_size(original.size[::-1])  # the film, aspect kept, with a caption below
        assert overlay.mode == "RGB" and overlay.width == width and overlay.height > height
    # a rerun replaces our own overlays, but never a file of the user's
    assert runner.invoke(app, ["predict", images[0], "--preset", str(preset_dir), "--overlays", str(out)]).exit_code == 0
    (out / "chest1_mask.png").write_bytes(b"user's file")
    clash = runner.invoke(app, ["predict", images[1], "--preset", str(preset_dir), "--overlays", str(out)])
    assert clash.exit_code == 2 and "not overwriting" in clash.stderr
    assert (out / "chest1_mask.png").read_bytes() == b"user's file"


def test_overlays_of_a_film_that_cannot_have_them_are_reported_and_the_others_written(
        preset_dir, images, tmp_path, fast_cli):
    # A name that is not UTF-8 (a Latin-1 file system) is drawn with escapes; a user's file in the way of
    # one film's overlay is kept, that film reported, and the films after it still get theirs.
    latin1 = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9.png"))
    latin1.write_bytes(Path(images[0]).read_bytes())
    out = tmp_path / "overlays"
    out.mkdir()
    (out / "chest0_mask.png").write_bytes(b"user's file")
    result = runner.invoke(app, ["predict", images[0], str(latin1), images[1], "--preset", str(preset_dir),
                                 "--overlays", str(out)])
    assert result.exit_code == 1, result.output
    assert "chest0.png: overlays not written" in result.stderr and "not overwriting" in result.stderr
    assert (out / "chest0_mask.png").read_bytes() == b"user's file"
    assert {"caf\\xe9_mask.png", "chest1_mask.png", "chest1_gradcam.png"} <= {p.name for p in out.iterdir()}
    assert "caf\\xe9.png" in result.stdout
    as_json = runner.invoke(app, ["predict", str(latin1), "--preset", str(preset_dir), "--json"])
    row = json.loads(as_json.stdout_bytes.decode("utf-8"))  # valid UTF-8: the name's odd bytes are escaped
    assert row["source"] == str(latin1)


def test_info_summarises_a_preset_for_people(preset_dir):
    result = runner.invoke(app, ["info", str(preset_dir)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) < 25 and not result.stdout.lstrip().startswith("{")
    text = " ".join(result.stdout.split())
    assert "task: non_covid vs covid" in text and "members: alpha (" in text and "beta (" in text
    assert "label: covid if p(covid) >= 0.500 (the preset's operating threshold)" in text
    assert "data: synthetic test images" in text and f"covidcxr info {preset_dir} --json" in text


def test_info_refuses_a_tampered_preset_instead_of_showing_its_values(preset_dir, tmp_path):
    import shutil

    folder = tmp_path / "edited"
    shutil.copytree(preset_dir, folder)
    config = (folder / "config.json").read_text()
    assert '"threshold": 0.5' in config
    (folder / "config.json").write_text(config.replace('"threshold": 0.5', '"threshold": 0.2'))
    result = runner.invoke(app, ["info", str(folder)])
    assert result.exit_code == 2 and "label: covid if" not in result.stdout
    assert "config.json: checksum mismatch" in " ".join(result.output.split())


def test_info_names_a_validation_split_its_counts_per_split_and_a_source_shortcut():
    """As for a fine-tuned preset: metrics of the validation split, counts per split, a hospital shortcut."""
    from covidcxr_cli.app import preset_summary

    shortcut = {"counts": {"hannover": {"covid": 54}, "nih": {"normal": 44}}, "source_only_auc": {"covid": 1.0,
                "normal": 0.854}, "threshold": 0.8, "risky_labels": ["covid", "normal"]}  # as recorded
    metadata = {"config": {"class_names": ["non_covid", "covid"]}, "training": {
        "data": {"counts": {"train": {"cls": {"covid": 114, "normal": 44}}, "val": {"cls": {"covid": 35}}},
                 "patients": 257, "classifier_inputs": {"source_shortcut": shortcut}},
        "validation": {"alpha": {"auc": {"value": 0.97, "ci95": [0.9, 1.0]}, "sensitivity": 0.9,
                                 "specificity": 0.8}}}}
    text = "\n".join(preset_summary("tuned", metadata))
    assert "data: train: cls/covid 114, cls/normal 44; val: cls/covid 35; 257 patients" in text
    assert ("validation split (the ensemble fitted there: optimistic) / alpha: auc 0.970 (0.900-1.000), "
            "sensitivity 0.900, specificity 0.800") in text
    assert ("caution: in its training split the source alone tells apart covid (AUC 1.00), normal (AUC 0.85): "
            "these figures may measure the hospitals, not the lungs") in text
    # a `train ensemble` preset records it with each member's summary
    data = metadata["training"]["data"]
    metadata["training"]["recipe"] = {"members": {"alpha": {"classifier_inputs": data.pop("classifier_inputs")}}}
    assert "caution: in its training split the source alone tells apart covid" in "\n".join(
        preset_summary("assembled", metadata))
    # a fine-tuned preset says so, from what and on what, whatever its description
    metadata["description"] = "hospital test"
    metadata["training"].update(parent={"handle": "covidcxr_lite"}, recipe={"name": "finetune",
                                                                            "members_recipe": "linear_probe"})
    data.update(manifest="/data/own/split.csv", sha256="ab" * 32)
    assert "fine-tuned from covidcxr_lite (linear_probe) on /data/own/split.csv (sha256 abababababab)" in "\n".join(
        preset_summary("tuned", metadata))


def test_info_json_shows_metadata_without_checksums(preset_dir, untrained_preset_dir):
    result = runner.invoke(app, ["info", str(preset_dir), "--json"])
    assert result.exit_code == 0
    info = json.loads(result.stdout)
    assert info["training"]["data"] == "synthetic test images"
    assert info["config"]["input_contract"]["min_size"] == 64 and "files" not in info
    assert "untrained" in runner.invoke(app, ["info", str(untrained_preset_dir)]).output


def test_presets_lists_every_preset_and_says_which_have_no_weights(monkeypatch, preset_dir):
    import keras_covidcxr
    from keras_covidcxr.models.pipeline import pipeline_presets

    entry = pipeline_presets.PIPELINE_PRESETS["covidcxr_lite"]
    monkeypatch.setitem(pipeline_presets.PIPELINE_PRESETS, "covidcxr_lite", {**entry, "handle": str(preset_dir)})
    result = runner.invoke(app, ["presets"])
    assert result.exit_code == 0
    blocks = {}
    for line in result.stdout.splitlines():
        if line and not line.startswith(" "):
            current = blocks.setdefault(line.split()[0], [])
        else:
            current.append(line.strip())
    for name, metadata in keras_covidcxr.list_presets().items():
        status = next(line for line in blocks[name] if line.startswith("trained weights:"))
        if metadata["trained"]:
            assert status == "trained weights: yes, bundled with the package (no download)"
        else:
            assert status.startswith("trained weights: none published yet") and f"covidcxr info {name}" in status
    assert "covidcxr_lite  (default)" in result.stdout


def test_presets_says_when_the_bundled_folder_is_missing(monkeypatch, tmp_path):
    from keras_covidcxr.models.pipeline import pipeline_presets

    entry = pipeline_presets.PIPELINE_PRESETS["covidcxr_lite"]
    monkeypatch.setitem(pipeline_presets.PIPELINE_PRESETS, "covidcxr_lite", {**entry, "handle": str(tmp_path / "gone")})
    result = runner.invoke(app, ["presets"])
    assert result.exit_code == 0 and "bundled, but its folder is missing from this installation" in result.stdout


def _default_preset_at(monkeypatch, folder):
    import keras_covidcxr
    from keras_covidcxr.models.pipeline import pipeline_presets

    name = keras_covidcxr.DEFAULT_PRESET
    monkeypatch.setitem(
        pipeline_presets.PIPELINE_PRESETS, name, {**pipeline_presets.PIPELINE_PRESETS[name], "handle": str(folder)}
    )
    return name


def test_predict_without_preset_uses_the_default_and_says_so_on_stderr(monkeypatch, preset_dir, images, fast_cli):
    name = _default_preset_at(monkeypatch, preset_dir)
    result = runner.invoke(app, ["predict", *images, "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]  # stdout stays pure JSON
    assert [row["source"] for row in rows] == images and all(row["error"] is None for row in rows)
    notice = " ".join(result.stderr.split())
    assert f"default preset {name}" in notice and "Research use only, not for diagnosis" in notice
    assert name not in result.stdout
    # an explicit --preset prints no notice
    explicit = runner.invoke(app, ["predict", images[0], "--preset", str(preset_dir), "--json"])
    assert explicit.exit_code == 0 and "default preset" not in explicit.stderr


def test_predict_without_preset_and_no_bundled_folder_is_a_clean_error(monkeypatch, images, tmp_path):
    missing = tmp_path / "bundled" / "covidcxr_lite"
    name = _default_preset_at(monkeypatch, missing)
    result = runner.invoke(app, ["predict", images[0]])
    assert result.exit_code == 2
    error = " ".join(result.stderr.split())
    assert f"error: {name}: the bundled preset folder {missing} is missing" in error
    assert "Traceback" not in result.output and result.stdout == ""


def test_predicting_with_an_unpublished_paper_preset_is_a_clean_error(images):
    result = runner.invoke(app, ["predict", images[0], "--preset", "covidcxr_paper_3class_majority_vote"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "no trained weights are published yet" in " ".join(result.stderr.split())


def test_info_shows_the_input_contract(preset_dir):
    result = runner.invoke(app, ["info", str(preset_dir), "--json"])
    assert result.exit_code == 0
    contract = json.loads(result.stdout)["input"]
    assert contract["channels"] == 1 and contract["value_range"] == [0.0, 1.0] and contract["min_size"] == 64
    assert contract["views"] == ["PA", "AP", "AP Supine"] and contract["min_age"] == 18
    assert contract["segmenter_input_size"] == 64 and contract["classifier_input_size"] == 32
    summary = " ".join(result.stderr.split())
    assert "input contract: 1-channel (gray) images, pixel values in [0, 1]" in summary
    assert "at least 64x64 px (the segmenter sees 64x64 px, the classifiers see 32x32 px)" in summary
    assert "views PA, AP, AP Supine; patients aged 18 or over" in summary
    plain = runner.invoke(app, ["info", str(preset_dir)])  # for people: on stdout, with the rest of the summary
    assert "input contract: 1-channel (gray) images" in plain.stdout and "input contract" not in plain.stderr


def test_info_on_an_unpublished_paper_preset_shows_how_to_train_it():
    name = "covidcxr_paper_binary_majority_vote"
    result = runner.invoke(app, ["info", name, "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["name"] == name and shown["trained"] is False and shown["handle"].startswith("hf://")
    assert any(command.startswith("covidcxr train ensemble") for command in shown["training_commands"])
    assert "no trained weights are published yet" in result.stderr


def test_verify_command(preset_dir, tmp_path, fast_cli):
    assert runner.invoke(app, ["verify", str(preset_dir)]).exit_code == 0
    assert runner.invoke(app, ["verify", str(tmp_path / "nothing")]).exit_code == 2


def test_predict_with_tta_shows_the_spreads(preset_dir, images, fast_cli):
    result = runner.invoke(app, ["predict", images[0], "--preset", str(preset_dir), "--tta", "2", "--no-refer"])
    assert "TTA: each probability is the mean over 2 views of the film" in " ".join(result.stdout.split())
    assert result.exit_code == 0, result.output
    assert "spread" in result.output and "TTA " in result.output
    rows = runner.invoke(app, ["predict", images[0], "--preset", str(preset_dir), "--tta", "2", "--json"]).stdout
    uncertainty = json.loads(rows.splitlines()[0])["uncertainty"]
    assert uncertainty["tta"] == 2 and uncertainty["tta_spread"] >= 0 and uncertainty["member_spread"] >= 0
    assert runner.invoke(app, ["predict", images[0], "--preset", str(preset_dir), "--tta", "0"]).exit_code == 2


def test_refer_labels_and_no_refer(preset_dir, images, monkeypatch, loaded_pipeline):
    from keras_covidcxr import Pipeline, ReferRule

    referring = loaded_pipeline._sharing_models(refer_rule=ReferRule(0.0, 1.0))  # refers everything
    monkeypatch.setattr(Pipeline, "from_preset", lambda handle: referring)
    rows = runner.invoke(app, ["predict", images[0], "--preset", str(preset_dir), "--json"]).stdout
    row = json.loads(rows.splitlines()[0])
    assert row["label"] == "refer" and row["would_be_label"] in ("covid", "non_covid")
    assert row["decision"]["refer"] == {"low": 0.0, "high": 1.0}
    answered = runner.invoke(app, ["predict", images[0], "--preset", str(preset_dir), "--json", "--no-refer"]).stdout
    assert json.loads(answered.splitlines()[0])["label"] == row["would_be_label"]
    table = runner.invoke(app, ["predict", images[0], "--preset", str(preset_dir)])
    assert "refer" in table.output and "would be" in table.output


def test_files_that_share_a_name_are_told_apart_in_the_table(tmp_path):
    from covidcxr_cli.app import _display_names

    assert _display_names(["/data/a.png", "/data/b.png"]) == ["a.png", "b.png"]  # names alone where unique
    folder = tmp_path / "study"
    shared = [folder / "patient1" / "image1.png", folder / "patient2" / "image1.png", folder / "other.png"]
    assert _display_names([str(p) for p in shared]) == [
        str(Path("patient1", "image1.png")), str(Path("patient2", "image1.png")), "other.png"
    ]


def test_overlays_of_files_that_share_a_name_are_named_by_their_folder(tmp_path):
    from covidcxr_cli.app import _overlay_stems

    sources = [tmp_path / "p1" / "image1.png", tmp_path / "p2" / "image1.png", tmp_path / "p2" / "image1.png"]
    stems = _overlay_stems(sources)
    assert stems == ["p1__image1", "p2__image1", "p2__image1_2"]  # the same file twice still gets two names


def test_without_out_films_are_predicted_in_chunks_whose_overlays_come_before_the_next(
        preset_dir, images, tmp_path, fast_cli, monkeypatch):
    import covidcxr_cli.app as cli_app

    from keras_covidcxr import Pipeline

    monkeypatch.setattr(cli_app, "PRINT_CHUNK", 1)
    chunks, real_predict = [], Pipeline.predict

    def predict(self, paths, **kwargs):
        chunks.append([Path(p).name for p in paths])
        written = sorted(p.name for p in (tmp_path / "overlays").glob("*.png"))
        assert written == [f"chest{i}_{kind}.png" for i in range(len(chunks) - 1) for kind in ("gradcam", "mask")]
        return real_predict(self, paths, **kwargs)

    monkeypatch.setattr(Pipeline, "predict", predict)
    result = runner.invoke(app, ["predict", *images, "--preset", str(preset_dir), "--json", "--overlays",
                                 str(tmp_path / "overlays"), "--batch-size", "1"])  # chunks hold whole batches
    assert result.exit_code == 0, result.output
    assert chunks == [["chest0.png"], ["chest1.png"]]
    assert [json.loads(line)["source"] for line in result.stdout.splitlines()] == images
    assert len(list((tmp_path / "overlays").glob("*.png"))) == 4


def test_a_decoders_warning_names_the_file_it_is_about_each_time(preset_dir, tmp_path, monkeypatch):
    # pydicom warns "... 600 bytes of excess padding ..." without the file, once per run: which of a folder's films?
    import warnings

    pydicom = pytest.importorskip("pydicom")
    from covidcxr_cli import app as cli_app
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    for name in ("a.dcm", "b.dcm"):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID = SecondaryCaptureImageStorage, ExplicitVRLittleEndian
        meta.MediaStorageSOPInstanceUID = generate_uid()
        ds = Dataset()
        ds.file_meta, ds.SOPClassUID, ds.SOPInstanceUID = meta, meta.MediaStorageSOPClassUID, generate_uid()
        ds.Modality, ds.ViewPosition, ds.Rows, ds.Columns = "DX", "PA", 256, 256
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        film = (np.random.default_rng(0).random((256, 256)) * 4095).astype(np.uint16)
        ds.PixelData = film.tobytes() + bytes(600)
        ds.save_as(tmp_path / name, enforce_file_format=True)
    assert pydicom.dcmread(tmp_path / "a.dcm").Rows == 256
    with warnings.catch_warnings():  # as `main` sets them up
        warnings.filterwarnings("always", category=UserWarning, module=r"(pydicom|PIL)(\.|$)")
        monkeypatch.setattr(warnings, "showwarning", cli_app._show_decoder_warning)
        result = runner.invoke(app, ["predict", str(tmp_path / "a.dcm"), str(tmp_path / "b.dcm"), "--preset",
                                     str(preset_dir), "--workers", "1"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if "excess padding" in line]
    assert len(lines) == 2 and lines[0].startswith(f"warning: {tmp_path / 'a.dcm'}: The pixel data is")
    assert lines[1].startswith(f"warning: {tmp_path / 'b.dcm'}: ")

import csv
import dataclasses
import json

import numpy as np
import pytest
from covidcxr_cli.app import app
from PIL import Image
from typer.testing import CliRunner

import keras_covidcxr.evaluation.evaluate_pipeline as evaluate_module
from keras_covidcxr import ConfigError, evaluate_pipeline
from keras_covidcxr.data import read_manifest
from keras_covidcxr.metrics import binary_auc


@pytest.fixture
def manifest_path(chest_images, tmp_path):
    """Twelve test-split cls rows (six patients), one of them a broken file."""
    (tmp_path / "images").mkdir()
    lines = ["path,task,label,patient_id,view,source,split"]
    labels = ["covid", "normal", "pneumonia"]
    for i in range(12):
        image = np.clip(chest_images[i % 3] + 0.02 * i, 0, 1)
        Image.fromarray((image * 255).astype(np.uint8)).save(tmp_path / "images" / f"{i}.png")
        lines.append(f"images/{i}.png,cls,{labels[i % 3]},p{i // 2},{'PA' if i % 2 else 'AP'},src{i % 2},test")
    (tmp_path / "images" / "broken.png").write_text("no image")
    lines.append("images/broken.png,cls,covid,p9,PA,src0,test")
    Image.fromarray((chest_images[0] * 200).astype(np.uint8)).save(tmp_path / "images" / "train.png")
    lines.append("images/train.png,cls,covid,p7,PA,src0,train")  # other splits are not scored
    (tmp_path / "manifest.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "manifest.csv"


def test_every_member_both_ensembles_and_the_probe_are_scored(loaded_pipeline, manifest_path, tmp_path):
    pipeline = loaded_pipeline
    evaluation = evaluate_pipeline(pipeline, read_manifest(manifest_path), tmp_path / "report", n_resamples=20)
    assert evaluation.n_images == 12
    assert [error for _, error in evaluation.failed] and "broken.png" in evaluation.failed[0][1]
    expected_sets = {"alpha", "beta", "weighted_average", "majority_vote"}
    assert set(evaluation.auc) == expected_sets
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert set(report["models"]) == expected_sets
    assert report["n_images"] == 12 and report["support"] == {"non_covid": 8, "covid": 4}
    assert report["resampling_unit"] == "patient"
    assert report["not_scored"]["images"] == 1 and report["not_scored"]["of_images"] == 13  # the broken file
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "(1 of its 13 images not scored" in markdown.splitlines()[0] and "broken.png" in markdown
    not_scored = next(line for line in markdown.splitlines() if line.startswith("- ") and "broken.png" in line)
    assert not_scored.count("broken.png") == 1  # the error names the file already
    assert set(report["models"]["alpha"]["by_view"]) == {"PA", "AP"}
    by_label = report["by_label"]  # normal and pneumonia apart, though both are non_covid here
    assert {label: sum(answers.values()) for label, answers in by_label.items()} == {"covid": 4, "normal": 4,
                                                                                      "pneumonia": 4}
    with open(tmp_path / "report" / "scores.csv") as handle:
        scored = list(csv.DictReader(handle))
    for label, answers in by_label.items():
        assert answers == {answer: sum(r["label"] == label and r["predicted_label"] == answer for r in scored)
                           for answer in answers}
    assert "| manifest label | images | labelled non_covid | labelled covid" in markdown
    probe = report["shortcut_probe"]
    assert probe == evaluation.shortcut_probe and set(probe["score_sets"]) == expected_sets
    for entry in probe["score_sets"].values():
        assert 0 <= entry["auc_lungs_removed"] <= 1
        assert entry["shortcut_suspected"] == (entry["auc_lungs_removed"] >= probe["threshold_auc"])
    assert evaluation.shortcut_suspected == probe["score_sets"]["weighted_average"]["shortcut_suspected"]
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "## Shortcut probe" in markdown and markdown.count("weighted_average") >= 3
    # the majority vote's "scores" are shares of votes: no calibration figures, no thresholds between vote counts
    assert report["models"]["majority_vote"]["scores_are_votes"] and "operating_points" not in report["models"]["majority_vote"]
    assert "| majority_vote | n/a (shares of votes, not probabilities) | n/a |" in markdown
    assert "| majority_vote | n/a (votes) |" in markdown and "| weighted_average | n/a (votes)" not in markdown


def test_a_model_below_the_threshold_but_above_chance_without_lungs_is_reported_with_its_interval(
        loaded_pipeline, preset_dir, manifest_path, tmp_path, monkeypatch, fast_cli):
    # Without lungs the covid images score as high as one other image and above the rest (AUC 0.9375 on 4
    # covid, 8 not), below a strict verdict threshold: the interval says it still reads something there.
    real_score = evaluate_module._score
    manifest = read_manifest(manifest_path)
    covid = [row.label == "covid" for row in manifest.filter(task="cls", split="test")]
    scored_high = {i for i, is_covid in enumerate(covid) if is_covid} | {covid.index(False)}
    monkeypatch.setattr(evaluate_module, "SHORTCUT_AUC", 0.99)

    def score(pipeline, paths, batch_size):
        kept, scores, failed = real_score(pipeline, paths, batch_size)
        signal = np.array([0.9 if i in scored_high else 0.1 for i in kept])
        if pipeline.preprocessing.masking == "lungs_removed":
            scores = {name: np.stack([1 - signal, signal], axis=1) for name in scores}
        return kept, scores, failed

    monkeypatch.setattr(evaluate_module, "_score", score)
    evaluation = evaluate_pipeline(loaded_pipeline, manifest, tmp_path / "r", n_resamples=200)
    entry = evaluation.shortcut_probe["score_sets"]["weighted_average"]
    assert not entry["shortcut_suspected"] and entry["above_chance_without_lungs"] and evaluation.shortcut_possible
    low, high = entry["auc_lungs_removed_ci"]
    assert 0.5 < low <= entry["auc_lungs_removed"] == 0.9375 <= high <= 1.0
    markdown = " ".join((tmp_path / "r" / "report.md").read_text().split())
    assert f"| 0.938 [{low:.3f}, {high:.3f}] | possible: above chance |" in markdown
    assert "still rank the films above chance without the lungs** (the interval excludes 0.5)" in markdown
    assert "This includes the preset's own ensemble (weighted_average)." in markdown
    result = CliRunner().invoke(app, ["evaluate", str(preset_dir), str(manifest_path), "--out", str(tmp_path / "cli"),
                                      "--resamples", "200"])
    assert "Possible shortcut: with the lungs blacked out the ensemble still ranks the films above chance (AUC " \
        "0.938, 95% CI" in " ".join(result.stdout.split())


def test_the_report_says_when_a_model_scores_well_without_lungs(loaded_pipeline, manifest_path, tmp_path, monkeypatch):
    # A stand-in for a model that reads a shortcut: with the lungs blacked out its scores still
    # rank every covid image first; with the lungs only they carry no signal.
    real_score = evaluate_module._score
    manifest = read_manifest(manifest_path)
    covid = [row.label == "covid" for row in manifest.filter(task="cls", split="test")]

    def score(pipeline, paths, batch_size):
        kept, scores, failed = real_score(pipeline, paths, batch_size)
        signal = np.array([0.9 if covid[i] else 0.1 for i in kept])
        if pipeline.preprocessing.masking == "lungs_removed":
            scores = {name: np.stack([1 - signal, signal], axis=1) for name in scores}
        return kept, scores, failed

    monkeypatch.setattr(evaluate_module, "_score", score)
    evaluation = evaluate_pipeline(loaded_pipeline, manifest, tmp_path / "r", n_resamples=10)
    assert evaluation.shortcut_suspected
    assert all(entry["auc_lungs_removed"] == 1.0 for entry in evaluation.shortcut_probe["score_sets"].values())
    markdown = (tmp_path / "r" / "report.md").read_text()
    assert "**Shortcut suspected for alpha, beta, weighted_average, majority_vote.**" in markdown
    # twelve films: the verdict stands, hedged, whatever the resampled interval (here none) says
    assert evaluation.too_few_to_probe and "only 12 images were probed: too few images to be sure" in markdown
    assert "This includes the preset's own ensemble (weighted_average)." in markdown
    assert "| 1.000 [no interval: the same on every resample, as for a perfect score or a class from one patient] | **yes** |" in markdown  # not [1.000, 1.000]


def test_weighted_average_scores_match_the_pipeline(loaded_pipeline, manifest_path, tmp_path):
    # Compared score by score: a tiny random preset gives near-tied scores, so an AUC
    # comparison would hinge on float rounding between batch sizes.
    pipeline = loaded_pipeline
    manifest = read_manifest(manifest_path)
    evaluation = evaluate_pipeline(pipeline, manifest_path, tmp_path / "r", shortcut_probe=False, n_resamples=10)
    rows = [r for r in manifest.filter(task="cls", split="test") if "broken" not in r.path]  # read from its path
    assert evaluation.paths == [manifest.resolve(r) for r in rows]
    results = pipeline.predict(evaluation.paths)
    expected = [x.probabilities["covid"] for x in results]
    np.testing.assert_allclose(evaluation.scores["weighted_average"], expected, atol=1e-5)
    assert not any("lungs removed" in name for name in evaluation.auc)
    with open(tmp_path / "r" / "scores.csv") as handle:
        written = list(csv.DictReader(handle))
    assert [row["path"] for row in written] == [str(p) for p in evaluation.paths]
    np.testing.assert_allclose([float(row["weighted_average"]) for row in written], expected, atol=1e-5)
    assert [row["predicted_label"] for row in written] == [x.label for x in results]
    is_covid = [row["label"] == "covid" for row in written]
    for name, auc in evaluation.auc.items():  # a reader of scores.csv gets the report's AUCs
        assert binary_auc(is_covid, [float(row[name]) for row in written]) == pytest.approx(auc, abs=1e-9)


def test_a_preset_handle_is_evaluated_like_its_pipeline(loaded_pipeline, preset_dir, manifest_path, tmp_path):
    by_handle = evaluate_pipeline(str(preset_dir), manifest_path, tmp_path / "a", shortcut_probe=False, n_resamples=5)
    by_object = evaluate_pipeline(loaded_pipeline, manifest_path, tmp_path / "b", shortcut_probe=False, n_resamples=5)
    assert by_handle.auc == by_object.auc and by_handle.n_images == by_object.n_images == 12


def test_the_report_names_the_preset_the_manifest_and_the_split(loaded_pipeline, manifest_path, tmp_path):
    import hashlib

    from keras_covidcxr.inference.batch_prediction import model_sha256

    evaluation = evaluate_pipeline(loaded_pipeline, manifest_path, tmp_path / "r", shortcut_probe=False, n_resamples=10)
    evaluated = json.loads((evaluation.out_dir / "report.json").read_text())["evaluated"]
    assert evaluated["preset"] == loaded_pipeline.metadata["loaded_from"] and evaluated["split"] == "test"
    assert evaluated["preset_sha256"] == model_sha256(loaded_pipeline)
    assert evaluated["manifest"] == str(manifest_path.resolve())
    assert evaluated["manifest_sha256"] == hashlib.sha256(manifest_path.read_bytes()).hexdigest()
    report = (evaluation.out_dir / "report.md").read_text()
    assert f"the test split of {manifest_path.resolve()} (sha256 {evaluated['manifest_sha256'][:12]})" in report


def test_evaluate_command(preset_dir, manifest_path, tmp_path, fast_cli):
    result = CliRunner().invoke(
        app, ["evaluate", str(preset_dir), str(manifest_path), "--out", str(tmp_path / "cli_report"), "--resamples", "10"]
    )
    assert result.exit_code == 1  # the broken file
    assert "weighted_average" in result.stdout and "broken.png" in result.stderr
    assert (tmp_path / "cli_report" / "report.md").is_file()
    evaluated = json.loads((tmp_path / "cli_report" / "report.json").read_text())["evaluated"]  # the CLI's too
    assert evaluated["manifest"] == str(manifest_path.resolve()) and evaluated["manifest_sha256"]
    refer = json.loads((tmp_path / "cli_report" / "report.json").read_text()).get("refer")
    assert ("Referred: " in result.stdout) == (refer is not None)


def test_evaluate_warns_when_the_source_alone_tells_the_labels_apart(loaded_pipeline, preset_dir, manifest_path,
                                                                      tmp_path, fast_cli):
    mixed = evaluate_pipeline(loaded_pipeline, read_manifest(manifest_path), tmp_path / "mixed", n_resamples=10,
                              shortcut_probe=False).source_shortcut
    assert mixed.risky_labels == [] and set(mixed.counts) == {"src0", "src1"}  # both sources hold every label
    lines = manifest_path.read_text().splitlines()
    confounded = [lines[0]] + [line.replace(",src0,", ",covid_hospital,").replace(",src1,", ",covid_hospital,")
                               if ",covid," in line else line.replace(",src0,", ",other,").replace(",src1,", ",other,")
                               for line in lines[1:]]
    (tmp_path / "confounded.csv").write_text("\n".join(confounded) + "\n")
    result = CliRunner().invoke(app, ["evaluate", str(preset_dir), str(manifest_path.parent / "confounded.csv"),
                                      "--out", str(tmp_path / "report"), "--resamples", "10", "--no-shortcut-probe"])
    assert "warning: the source alone tells apart covid (AUC 1.00)" in " ".join(result.stderr.split())
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "the source alone tells apart covid (AUC 1.00)" in markdown.splitlines()[0]
    assert "## Sources and labels" in markdown and "| covid_hospital | 4 | 0 | 0 |" in markdown
    assert "(AUC 1.00)" not in (tmp_path / "mixed" / "report.md").read_text()


def test_a_split_of_one_class_gives_valid_json_and_says_what_is_undefined(preset_dir, manifest_path, tmp_path,
                                                                          fast_cli):
    text = manifest_path.read_text().splitlines()
    covid_only = [text[0]] + [line for line in text[1:] if ",covid," in line and "broken" not in line]
    (tmp_path / "covid.csv").write_text("\n".join(covid_only) + "\n")
    out = tmp_path / "one_class"
    result = CliRunner().invoke(app, ["evaluate", str(preset_dir), str(tmp_path / "covid.csv"), "--out", str(out),
                                      "--resamples", "10"])
    assert result.exit_code == 0, result.output
    assert "n/a" in result.stdout and "holds one class only" in " ".join(result.stderr.split())
    report = json.loads((out / "report.json").read_text(), parse_constant=lambda name: pytest.fail(name))
    assert report["models"]["weighted_average"]["overall"]["auc"]["value"] is None
    assert report["shortcut_probe"]["score_sets"]["weighted_average"]["shortcut_suspected"] is None
    markdown = (out / "report.md").read_text()
    assert "**No non_covid images here:**" in markdown
    # PPV and NPV are 100% or 0% by construction with one class: n/a, like AUC
    summary = next(line for line in markdown.split("## Summary")[1].splitlines()
                   if line.startswith("| weighted_average |"))
    assert [cell.strip() for cell in summary.split("|")[5:9]] == ["n/a"] * 4  # PPV, NPV, F1, AUC
    assert "AUC is undefined here (the images hold one class only): the probe cannot tell." in markdown
    assert "No score set reaches" not in markdown


def test_a_lungs_only_pipeline_is_not_scored_twice(loaded_pipeline, manifest_path, tmp_path, monkeypatch):
    real_score, maskings = evaluate_module._score, []

    def score(pipeline, paths, batch_size):
        maskings.append(pipeline.preprocessing.masking)
        return real_score(pipeline, paths, batch_size)

    monkeypatch.setattr(evaluate_module, "_score", score)
    pipeline = loaded_pipeline.with_preprocessing(masking="hard", fall_back_to_unmasked=False)
    evaluation = evaluate_pipeline(pipeline, read_manifest(manifest_path), tmp_path / "r", n_resamples=10)
    assert maskings == ["hard", "lungs_removed"]
    lungs_only = evaluation.shortcut_probe["score_sets"]["weighted_average"]["auc_lungs_only"]
    assert lungs_only == pytest.approx(evaluation.auc["weighted_average"])


def test_evaluate_says_how_much_of_the_data_the_preset_was_trained_on(loaded_pipeline, manifest_path, tmp_path):
    """A preset that records its training patients: the report and stderr name the shared images."""
    pipeline = loaded_pipeline.with_preprocessing()  # a copy sharing the models: its metadata may change
    pipeline.metadata = {**pipeline.metadata, "training": {"data": {"classifier_fit_patient_ids": ["p0", "p1", "x"]}}}
    evaluation = evaluate_pipeline(pipeline, read_manifest(manifest_path), tmp_path / "r", n_resamples=10,
                                   shortcut_probe=False)
    assert evaluation.training_overlap == {"images": 4, "patients": 2, "of_images": 12}
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["training_overlap"] == evaluation.training_overlap
    markdown = (tmp_path / "r" / "report.md").read_text()
    assert "these metrics are optimistic" in markdown
    assert ("4 of 12 scored images from patients the preset was trained on: optimistic, see 'Overlap with the "
            "training data'") in markdown.splitlines()[0]  # where the report is read first
    assert "| PA | 6 (4 non_covid, 2 covid) |" in markdown  # the groups' classes beside their rates
    unrecorded = loaded_pipeline
    assert evaluate_pipeline(unrecorded, read_manifest(manifest_path), tmp_path / "s", n_resamples=10,
                             shortcut_probe=False).training_overlap is None


def test_evaluate_finds_the_overlap_from_hashed_patient_ids(loaded_pipeline, manifest_path, tmp_path):
    """Trained and fine-tuned presets store digests of their patients (the ids may be a hospital's)."""
    from keras_covidcxr.training.provenance import FIT_PATIENTS_KEY, patient_digest

    pipeline = loaded_pipeline.with_preprocessing()
    pipeline.metadata = {**pipeline.metadata,
                         "training": {"data": {FIT_PATIENTS_KEY: [patient_digest("p0"), patient_digest("x")]}}}
    evaluation = evaluate_pipeline(pipeline, read_manifest(manifest_path), tmp_path / "r", n_resamples=10,
                                   shortcut_probe=False)
    assert evaluation.training_overlap == {"images": 2, "patients": 1, "of_images": 12}


def test_a_split_none_of_whose_images_can_be_read_names_them(loaded_pipeline, manifest_path, tmp_path):
    from keras_covidcxr import InputError

    broken = manifest_path.read_text().replace(",test\n", ",train\n").replace("p9,PA,src0,train", "p9,PA,src0,test")
    (manifest_path.parent / "broken.csv").write_text(broken)
    with pytest.raises(InputError, match=r"none of the 1 images of the test split could be scored: .*broken.png: "):
        evaluate_pipeline(loaded_pipeline, manifest_path.parent / "broken.csv", tmp_path / "r", n_resamples=5)
    assert not (tmp_path / "r").exists()


def test_the_overlap_ignores_letter_case_in_patient_ids():
    import types

    from keras_covidcxr.training.provenance import (
        FIT_PATIENTS_KEY,
        PLAIN_FIT_PATIENTS_KEY,
        fitted_overlap,
        patient_digest,
    )

    metadata = {"training": {"data": {FIT_PATIENTS_KEY: [patient_digest("ieee8023:263"), patient_digest("NIH:7")]}}}
    rows = [types.SimpleNamespace(patient_id=pid) for pid in ("IEEE8023:263", "Ieee8023:263", "nih:7", "nih:8")]
    assert fitted_overlap(metadata, rows) == {"images": 3, "patients": 2, "of_images": 4}
    plain = {"training": {"data": {PLAIN_FIT_PATIENTS_KEY: ["actualmed:ANON1"]}}}  # mixed case, stored as given
    rows = [types.SimpleNamespace(patient_id=pid) for pid in ("ACTUALMED:anon1", "actualmed:anon1", "actualmed:2")]
    assert fitted_overlap(plain, rows) == {"images": 2, "patients": 1, "of_images": 3}


@pytest.mark.parametrize("threshold", [None, 0.3])
def test_the_ensemble_is_scored_by_the_labels_the_pipeline_gives(loaded_pipeline, manifest_path, tmp_path, threshold):
    pipeline = loaded_pipeline
    if threshold is not None:
        pipeline = pipeline.with_decision_threshold(threshold)
    manifest = read_manifest(manifest_path)
    evaluation = evaluate_pipeline(pipeline, manifest, tmp_path / "r", shortcut_probe=False, n_resamples=10)
    truth = {manifest.resolve(row): row.label == "covid" for row in manifest.filter(task="cls", split="test")}
    results = pipeline.predict(evaluation.paths)
    expected = np.zeros((2, 2), int)
    for path, result in zip(evaluation.paths, results):
        expected[int(truth[path]), int(result.label == "covid")] += 1
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    entry = report["models"]["weighted_average"]
    assert entry["confusion_matrix"] == expected.tolist()
    assert entry["decision_rule"]["threshold"] == (threshold or pipeline.ensemble.threshold)
    assert report["decision_rule"] == pipeline.decision_rule.to_dict()
    member_thresholds = dict(zip(pipeline.ensemble.member_names, pipeline.ensemble.vote_thresholds))
    for member in ("alpha", "beta"):
        votes = np.zeros((2, 2), int)
        for path, result in zip(evaluation.paths, results):
            votes[int(truth[path]), int(result.members[member]["label"] == "covid")] += 1
        assert report["models"][member]["confusion_matrix"] == votes.tolist()
        assert report["models"][member]["decision_rule"]["threshold"] == member_thresholds[member]
    markdown = " ".join((tmp_path / "r" / "report.md").read_text().split())
    assert "## Decision rules" in markdown and pipeline.decision_rule.describe() in markdown


def test_evaluate_command_takes_a_threshold(preset_dir, manifest_path, tmp_path, fast_cli):
    result = CliRunner().invoke(app, ["evaluate", str(preset_dir), str(manifest_path), "--out", str(tmp_path / "r"),
                                      "--resamples", "10", "--no-shortcut-probe", "--threshold", "0.2"])
    assert result.exit_code == 1, result.output  # the broken file
    assert "covid if p(covid) >= 0.200 (threshold given by the user)" in " ".join(result.stdout.split())
    assert "broken.png" in result.stderr and "broken.png" not in result.stdout
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["models"]["weighted_average"]["decision_rule"]["threshold"] == 0.2


def test_calibration_and_the_refer_rule_are_reported(loaded_pipeline, manifest_path, tmp_path, monkeypatch):
    from keras_covidcxr import ProbabilityCalibration, ReferRule

    raw = evaluate_pipeline(loaded_pipeline, read_manifest(manifest_path), tmp_path / "raw", shortcut_probe=False,
                            n_resamples=10)
    p = np.sort(raw.scores["weighted_average"])
    calibration = ProbabilityCalibration("platt", slope=3.0, intercept=0.0)
    low, high = calibration.apply_to_positive([(p[2] + p[3]) / 2, (p[7] + p[8]) / 2])  # between images
    pipeline = loaded_pipeline._sharing_models(calibration=calibration, refer_rule=ReferRule(float(low), float(high)))
    import keras_covidcxr.metrics.plots as plots

    notes, save = {}, plots.save_figure
    monkeypatch.setattr(plots, "save_figure", lambda figure, path: notes.update(
        {path.name: " ".join(figure._supxlabel.get_text().split())}) or save(figure, path))
    evaluation = evaluate_pipeline(pipeline, read_manifest(manifest_path), tmp_path / "r", shortcut_probe=False,
                                   n_resamples=10)
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    title = (tmp_path / "r" / "report.md").read_text().splitlines()[0].removeprefix("# ")
    assert set(notes) >= {"risk_coverage.png", "roc_covid.png", "reliability.png", "confusion_calibrated.png"}
    assert set(notes.values()) == {f"{title}: 12 images (non_covid 8, covid 4)."}  # every figure, the same caveats
    calibrated = report["models"]["calibrated"]
    assert calibrated["decision_rule"]["threshold"] == pytest.approx(pipeline.decision_rule.threshold)
    assert "brier_score" in calibrated["calibration"] and "brier_score" in report["models"]["weighted_average"]["calibration"]
    refer = report["refer"]
    calibrated = evaluation.scores["calibrated"]
    referred = int(np.sum((calibrated >= low) & (calibrated < high)))  # the stored rule, on the scores it scored
    np.testing.assert_equal(refer, evaluation.refer)  # nan (no answered positive) equals nan here
    assert refer["referred"] == referred and 0 < referred < 12
    assert refer["answered"]["answered"] == 12 - referred and refer["all"]["answered"] == 12
    assert refer["answered"]["coverage"] == pytest.approx((12 - referred) / 12)
    assert (tmp_path / "r" / "risk_coverage.png").stat().st_size > 1000
    is_covid = np.array([row.label == "covid" for row in read_manifest(manifest_path).filter(task="cls", split="test")
                         if "broken" not in row.path])
    in_band = (calibrated >= low) & (calibrated < high)
    assert (refer["referred_positive"], refer["referred_negative"]) == (np.sum(in_band & is_covid),
                                                                        np.sum(in_band & ~is_covid))
    markdown = (tmp_path / "r" / "report.md").read_text()
    assert "## Refer rule" in markdown and "| Model | ECE | Brier |" in markdown
    flat = " ".join(markdown.split())
    assert (f"Stored rule: {pipeline.decision_rule.describe()}. {referred} images referred "
            f"({refer['referred_positive']} covid, {refer['referred_negative']} other)") in flat
    # how the tables count a referred film is said beside the decision rule and in the refer section
    assert flat.count("a referred image is counted by the label it would have had without the refer rule") == 2


def test_the_refer_summary_counts_the_films_referred_as_out_of_distribution(small_pipeline, manifest_path, tmp_path):
    from keras_covidcxr import ReferRule

    manifest = read_manifest(manifest_path)
    paths = [manifest.resolve(row) for row in manifest.filter(task="cls", split="test")][:-1]  # not the broken one
    distances = [r.out_of_distribution["distance"] for r in small_pipeline.predict(paths)]
    check = dataclasses.replace(small_pipeline.out_of_distribution, threshold=float(np.median(distances)))
    pipeline = small_pipeline._sharing_models(out_of_distribution=check,
                                              refer_rule=ReferRule(0.0, 0.0, out_of_distribution=True))
    evaluation = evaluate_pipeline(pipeline, manifest, tmp_path / "r", shortcut_probe=False, n_resamples=10)
    flagged = int(np.sum(np.asarray(distances) > check.threshold))
    assert 0 < flagged < 12 and evaluation.refer["referred"] == flagged  # what predict labels "refer"
    assert evaluation.refer["answered"]["answered"] == 12 - flagged


def test_a_three_class_pipeline_that_refers_failed_films_is_evaluated(make_pipeline, manifest_path, tmp_path):
    from keras_covidcxr import ReferRule
    from keras_covidcxr.models.pipeline.refer_rule import fails_input_checks

    pipeline = make_pipeline(num_classes=3)._sharing_models(refer_rule=ReferRule(0.0, 0.0, input_checks=True))
    manifest = read_manifest(manifest_path)
    rows = manifest.filter(task="cls", split="test")[:-1]  # not the broken one
    results = pipeline.predict([manifest.resolve(row) for row in rows])
    failed = [fails_input_checks(r.warnings) for r in results]
    evaluation = evaluate_pipeline(pipeline, manifest, tmp_path / "r", shortcut_probe=False, n_resamples=10)
    assert evaluation.refer["referred"] == sum(failed) == sum(r.label == "refer" for r in results)
    answered = [r.label == row.label for r, row, refer in zip(results, rows, failed) if not refer]
    assert evaluation.refer["answered"]["answered"] == len(answered)
    if answered:
        assert evaluation.refer["answered"]["accuracy"] == pytest.approx(np.mean(answered))
    report = (evaluation.out_dir / "report.md").read_text()
    assert f"{sum(failed)} of the 12 images referred" in report and not (evaluation.out_dir / "risk_coverage.png").exists()
    assert "| Model | label a class when |" in report and "| weighted_average | it is the most probable class |" in report
    assert "| majority_vote | most of the members' votes go to it" in report  # a vote, three classes too
    with open(evaluation.out_dir / "scores.csv") as handle:  # every class's scores, not only covid's
        table = list(csv.DictReader(handle))
    for row, result in zip(table, results):
        total = sum(float(row[f"weighted_average:{name}"]) for name in ("covid", "normal", "pneumonia"))
        assert total == pytest.approx(1.0, abs=1e-6)
        assert float(row["weighted_average:normal"]) == pytest.approx(result.raw_probabilities["normal"], abs=1e-6)


def test_a_majority_vote_is_scored_as_a_voter():
    # Two members: (covid, covid), (covid, non_covid) twice with different mean probabilities, (non, non).
    member_probabilities = np.array([
        [[0.1, 0.9], [0.2, 0.8]],
        [[0.4, 0.6], [0.9, 0.1]],  # tie, mean p(covid) 0.35: non_covid wins
        [[0.1, 0.9], [0.6, 0.4]],  # tie, mean p(covid) 0.65: covid wins
        [[0.7, 0.3], [0.8, 0.2]],
        [[0.95, 0.05], [0.99, 0.01]],
    ])
    votes = member_probabilities.argmax(axis=2)
    shares = evaluate_module._vote_shares(votes, member_probabilities)[:, 1]
    assert shares[0] == pytest.approx(1.0) and shares[3] == pytest.approx(0.0)
    assert shares[3] == shares[4]  # same votes, same score: the members' confidence does not reorder them
    assert shares[1] < 0.5 <= shares[2]  # a tie goes to the higher mean probability, and only just
    assert shares[2] == pytest.approx(0.5, abs=1e-5)
    own = evaluate_module._vote_shares(votes, member_probabilities, winners=np.array([1, 1, 0, 0, 0]))[:, 1]
    assert own[1] >= 0.5 > own[2]  # the ensemble's own tie rule wins over the default


def test_a_split_without_rows_is_named_with_the_splits_there_are(loaded_pipeline, manifest_path, tmp_path):
    manifest = read_manifest(manifest_path)
    with pytest.raises(ConfigError, match=r"no cls rows in split 'val' \(its cls rows: 13 in 'test', 1 in 'train'\)$"):
        evaluate_pipeline(loaded_pipeline, manifest, tmp_path / "r", split="val")
    unsplit = manifest.with_rows(dataclasses.replace(row, split=None) for row in manifest.rows)
    with pytest.raises(ConfigError, match=r"without a split\); give every row a split with `covidcxr data split`"):
        evaluate_pipeline(loaded_pipeline, unsplit, tmp_path / "r")


def test_a_fine_tuned_preset_is_named_with_its_parent(loaded_pipeline, manifest_path, tmp_path):
    pipeline = loaded_pipeline._sharing_models()
    pipeline.metadata = {**loaded_pipeline.metadata, "training": {
        "parent": {"handle": "covidcxr_lite"}, "recipe": {"name": "finetune", "members_recipe": "linear_probe"}}}
    evaluate_pipeline(pipeline, read_manifest(manifest_path), tmp_path / "r", shortcut_probe=False, n_resamples=10)
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["evaluated"]["fine_tuned_from"] == {"handle": "covidcxr_lite", "recipe": "linear_probe"}
    assert "; fine-tuned from covidcxr_lite, linear_probe recipe)" in (tmp_path / "r" / "report.md").read_text()

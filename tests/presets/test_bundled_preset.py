"""The preset shipped inside the package (`DEFAULT_PRESET`): it loads offline, matches its recorded
outputs on the bundled sample, records how it was trained and measured, and stays small."""

import json
from pathlib import Path

import numpy as np
import pytest
from covidcxr_cli.app import app
from typer.testing import CliRunner

import keras_covidcxr
from keras_covidcxr import Pipeline, sample_images, verify_preset
from keras_covidcxr.presets.registry import registered_handle

BUNDLED = Path(registered_handle(keras_covidcxr.DEFAULT_PRESET))
MAX_BYTES = 40 * 2**20  # the size budget of the bundled preset


@pytest.fixture(scope="module")
def bundled():
    return Pipeline.from_preset(keras_covidcxr.DEFAULT_PRESET)


@pytest.fixture
def loads_once(monkeypatch, bundled):
    """`Pipeline.from_preset(DEFAULT_PRESET)` returns the module's `bundled` (loading it again adds ~15 s)."""
    real = Pipeline.from_preset

    def from_preset(handle):
        return bundled if handle == keras_covidcxr.DEFAULT_PRESET else real(handle)

    monkeypatch.setattr(Pipeline, "from_preset", from_preset)


def test_bundled_preset_is_trained_and_small(bundled):
    assert bundled.is_trained
    assert bundled.class_names == ("non_covid", "covid")
    size = sum(path.stat().st_size for path in BUNDLED.rglob("*") if path.is_file())
    assert size <= MAX_BYTES, f"{size / 2**20:.1f} MiB"


def test_bundled_preset_reproduces_its_recorded_outputs(loads_once):
    verification = verify_preset(keras_covidcxr.DEFAULT_PRESET)
    assert verification.passed, verification.problems


def test_bundled_preset_records_data_recipe_and_cross_validated_metrics(bundled):
    training = bundled.metadata["training"]
    assert len(training["data"]["manifest_sha256"]) == 64 and training["seed"] == 0
    assert training["command"].startswith("python examples/train_bundled_preset.py")
    cv = training["validation"]["cross_validation"]
    for subset in ("all", "pa_only"):
        for model, metrics in (("ensemble", ("auc", "sensitivity", "specificity")),
                               ("shortcut_baseline", ("auc", "ensemble_minus_baseline_auc")),
                               ("source_baseline", ("auc", "ensemble_minus_baseline_auc"))):
            for metric in metrics:
                entry = cv[model][subset][metric]
                low, high = entry["ci95"]
                assert low <= entry["value"] <= high
    dice = training["validation"]["segmenter"]["test_dice"]
    assert 0.5 < dice["value"] <= 1 and dice["ci95"][0] <= dice["value"] <= dice["ci95"][1]
    weights = training["recipe"]["ensemble"]["weights"]
    assert list(weights) == list(bundled.ensemble.member_names)
    np.testing.assert_allclose(list(weights.values()), bundled.ensemble.weights_normalised, atol=1e-6)
    assert bundled.ensemble.threshold == pytest.approx(training["recipe"]["ensemble"]["threshold"])


def test_the_threshold_belongs_to_the_shipped_model(bundled):
    """Fitted on the shipped model's own scores on patients its heads never saw, and not one-class."""
    ensemble = bundled.metadata["training"]["recipe"]["ensemble"]
    low, high = ensemble["calibration_scores_range"]
    assert low <= bundled.ensemble.threshold <= high
    assert 0.05 <= ensemble["calibration_fraction_called_covid"] <= 0.95
    member_thresholds = ensemble["member_thresholds"]
    assert bundled.ensemble.member_thresholds == pytest.approx([member_thresholds[n] for n in bundled.ensemble.member_names])
    fitted = set(bundled.metadata["training"]["data"]["classifier_fit_patient_ids"])
    assert fitted and ensemble["calibration_patients"] > 0


def test_the_bundled_members_are_imagenet_backbones_of_two_families(bundled):
    backbones = {member.backbone_name for member in bundled.ensemble.members}
    assert backbones == {"mobilenet_v2", "efficientnet_lite0"}
    assert all(member.input_normalization == "imagenet" for member in bundled.ensemble.members)
    assert bundled.preprocessing.standardize is False


def test_the_samples_get_their_own_labels(bundled):
    """The README's COVID-19 film is labelled covid and its normal film non_covid."""
    covid, normal = bundled.predict(sample_images())
    assert covid.label == "covid", covid.probabilities
    assert normal.label == "non_covid", normal.probabilities


def test_a_negative_of_a_sample_is_referred_as_inverted_and_the_samples_are_not(bundled):
    # before 0.4.16, 38 of 597 shared films, inverted, passed every check and were all labelled covid
    from PIL import Image

    films = [np.asarray(Image.open(path).convert("L"), np.float32) / 255 for path in sample_images()]
    results = bundled.predict([*films, *(1.0 - film for film in films)])
    codes = [{code for code, _ in result.warnings} for result in results]
    assert ["inverted" in found for found in codes] == [False, False, True, True]
    assert [result.label for result in results[2:]] == ["refer", "refer"]
    assert all("film looks inverted" in result.refer_reasons["input_checks"] for result in results[2:])


def test_predict_without_preset_uses_the_bundled_one(loads_once):
    sample = str(sample_images()[0])
    result = CliRunner().invoke(app, ["predict", sample, "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert set(record["probabilities"]) == {"non_covid", "covid"}
    assert abs(sum(record["probabilities"].values()) - 1) < 1e-5
    notice = " ".join(result.stderr.split())
    assert "not for diagnosis" in notice and keras_covidcxr.DEFAULT_PRESET in notice


def test_the_table_states_the_operating_threshold(bundled, loads_once):
    result = CliRunner().invoke(app, ["predict", str(sample_images()[0])])
    assert result.exit_code == 0, result.output
    # stated on the calibrated probabilities the table prints: the raw operating threshold, mapped
    threshold = float(bundled.calibration.apply_to_positive(bundled.ensemble.threshold))
    assert bundled.decision_rule.threshold == threshold
    text = " ".join(result.stdout.split())
    assert f"Label: covid if p(covid) >= {threshold:.3f} (the preset's operating threshold); refer if" in text
    counts = bundled.metadata["training"]["data"]["counts"]  # its calibration images are all its films
    covid_share = counts["cls/covid"] / sum(n for key, n in counts.items() if key.startswith("cls/"))
    assert bundled.calibration.class_shares == pytest.approx([1 - covid_share, covid_share], abs=1e-4)
    assert (f"Probabilities: calibrated on held-out scores of the preset's own films, {covid_share:.0%} of them covid, "
            "by Platt scaling (slope ") in text and "where covid is rarer, a film's chance of covid is lower" in text
    assert "Spread: the standard deviation of the members' p(covid) before calibration." in text


def test_info_gives_the_ensemble_weights_and_the_calibration(bundled):
    text = " ".join(CliRunner().invoke(app, ["info", keras_covidcxr.DEFAULT_PRESET]).stdout.split())
    weights = ", ".join(f"{name} {float(w):.2f}" for name, w in zip(bundled.ensemble.member_names,
                                                                   bundled.ensemble.get_config()["weights"]))
    assert f"ensemble: WeightedAverageEnsemble (weights {weights}); label: covid if p(covid) >= " in text
    assert (f"probabilities: calibrated by {bundled.calibration.describe()} on {bundled.calibration.fitted_on} held-out "
            f"films ({bundled.calibration.shares_text(bundled.class_names)})") in text


def test_the_bundled_preset_knows_how_sure_it_is(bundled):
    """Calibrated, with a refer band around its threshold and an out-of-distribution check, all fitted on its
    calibration split and recorded with their out-of-fold measurements."""
    assert bundled.calibration.method == "platt" and bundled.calibration.fitted_on >= 50
    refer = bundled.refer_rule
    assert refer.low <= bundled.decision_rule.threshold <= refer.high
    assert refer.validation["sensitivity"] >= refer.target_sensitivity
    assert bundled.out_of_distribution.member in bundled.ensemble.member_names
    uncertainty = bundled.metadata["training"]["validation"]["uncertainty"]
    before, after = uncertainty["calibration"]["before"], uncertainty["calibration"]["after"]
    assert after["ece"] < before["ece"] and after["brier"] < before["brier"]
    ct = uncertainty["ood_flag_rates_of_the_shipped_preset"]["ct"]
    assert ct["flagged"] == ct["scored"] > 0
    for result in bundled.predict(sample_images()):  # the README's films are answered and in distribution
        assert result.would_be_label is None and not result.out_of_distribution["flagged"]
        assert result.probabilities != result.raw_probabilities

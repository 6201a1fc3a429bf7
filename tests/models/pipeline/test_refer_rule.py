"""The refer rule: abstain where the calibrated p(positive) is in the band, keep the would-be label."""

import numpy as np
import pytest

from keras_covidcxr import ConfigError
from keras_covidcxr.models.pipeline.refer_rule import (
    INPUT_CHECK_WORDS,
    ReferRule,
    answered_metrics,
    failed_input_checks,
    fails_input_checks,
    fit_refer_rule,
)


def test_refers_inside_the_band_and_above_the_member_spread():
    rule = ReferRule(0.3, 0.6, max_member_spread=0.2)
    assert rule.refers([0.29, 0.3, 0.59, 0.6]).tolist() == [False, True, True, False]
    assert rule.refers([0.1, 0.1], member_spread=[0.1, 0.25]).tolist() == [False, True]
    assert ReferRule.from_dict(rule.to_dict()) == rule
    assert rule.band() == {"low": 0.3, "high": 0.6, "max_member_spread": 0.2}
    with pytest.raises(ConfigError):
        ReferRule(0.6, 0.3)


def test_the_reasons_name_each_part_of_the_rule_a_film_meets_and_agree_with_refers():
    rule = ReferRule(0.3, 0.6, max_member_spread=0.2, out_of_distribution=True, input_checks=True)
    cases = [(0.1, 0.1, False, []), (0.45, 0.1, False, []), (0.9, 0.3, False, []), (0.9, 0.1, True, []),
             (0.9, 0.1, False, ["view", "age"]), (0.45, 0.3, True, ["view"])]
    for positive, spread, flagged, checks in cases:
        reasons = rule.reasons(positive, spread, flagged, checks, "covid")
        assert bool(reasons) == rule.refers([positive], [spread], [flagged], [bool(checks)])[0]
        assert ("refer_band" in reasons) == (0.3 <= positive < 0.6)
        assert ("member_spread" in reasons) == (spread > 0.2) and ("out_of_distribution" in reasons) == flagged
        assert ("input_checks" in reasons) == bool(checks)
    assert rule.reasons(0.45, 0.3, True, ["view"], "covid") == {
        "refer_band": "p(covid) 0.450 in the refer band [0.300, 0.600)",
        "member_spread": "the members' spread 0.300 exceeds 0.200",
        "out_of_distribution": "out of distribution",
        "input_checks": "input check failed: view",
    }
    assert rule.reasons(0.9, failed_checks=["view", "age"])["input_checks"] == "input checks failed: view, age"
    assert rule.reasons(0.9, failed_checks=["mask_below_diaphragm"])["input_checks"] == (
        "input check failed: lung mask below the diaphragm")  # words, not the warning's code
    assert ReferRule(0.3, 0.6).reasons(0.9, 0.5, True, ["view"]) == {}  # a rule that does not say so ignores them
    assert failed_input_checks([("view", "a"), ("mask_pieces_removed", "b"), ("view", "c"), ("age", "d")]) == [
        "view", "age"]


def test_out_of_distribution_films_are_referred_only_by_a_rule_that_says_so():
    rule = ReferRule(0.3, 0.6, out_of_distribution=True)
    flags = [True, False, False, True]
    assert rule.refers([0.1, 0.9, 0.45, 0.95], out_of_distribution=flags).tolist() == [True, False, True, True]
    assert rule.refers([0.1, 0.9]).tolist() == [False, False]  # no flags given: the band alone
    assert ReferRule(0.3, 0.6).refers([0.1, 0.9], out_of_distribution=[True, True]).tolist() == [False, False]
    assert rule.band() == {"low": 0.3, "high": 0.6, "out_of_distribution": True}
    assert rule.describe("covid") == "refer if 0.300 <= p(covid) < 0.600 or the film is out of distribution"
    assert ReferRule.from_dict(rule.to_dict()) == rule
    assert "out_of_distribution" not in ReferRule(0.3, 0.6).to_dict()  # older presets' rules read back unchanged
    with pytest.raises(ConfigError, match="out_of_distribution"):
        ReferRule(0.3, 0.6, out_of_distribution="yes")


def test_the_fitted_band_keeps_the_target_sensitivity_on_the_answered_images():
    rng = np.random.default_rng(0)
    labels = rng.random(400) < 0.5
    scores = np.clip(0.5 + 0.25 * (labels - 0.5) + rng.normal(0, 0.15, 400), 0.001, 0.999)
    threshold = 0.5
    assert answered_metrics(scores, labels, threshold, np.zeros(400, bool))["sensitivity"] < 0.85
    rule = fit_refer_rule(scores, labels, threshold, target_sensitivity=0.9, target_specificity=0.8)
    assert rule.low <= threshold <= rule.high and rule.out_of_distribution is None
    assert fit_refer_rule(scores, labels, threshold, 0.9, 0.8, out_of_distribution=True).out_of_distribution
    metrics = answered_metrics(scores, labels, threshold, rule.refers(scores))
    assert metrics["sensitivity"] >= 0.9 and metrics["specificity"] >= 0.8
    assert metrics == rule.validation and 0.5 <= metrics["coverage"] < 1.0


def test_no_band_reaching_the_targets_is_an_error():
    scores = np.linspace(0, 1, 40)
    labels = np.arange(40) % 2 == 0  # no signal at all
    with pytest.raises(ConfigError, match="no refer band"):
        fit_refer_rule(scores, labels, 0.5, target_sensitivity=0.95, min_coverage=0.9)


def test_pipeline_refer_decisions_follow_the_stored_rule_exactly(loaded_pipeline, chest_images):
    images = [np.clip(image + shift, 0, 1) for image in chest_images for shift in (0.0, 0.1, -0.1)]
    plain = loaded_pipeline.predict(images)
    p = np.array([r.probabilities["covid"] for r in plain])
    spreads = np.array([r.uncertainty["member_spread"] for r in plain])
    rule = ReferRule(float(np.median(p)), float(p.max()))  # the upper half, bar the top, is referred
    referring = loaded_pipeline._sharing_models(refer_rule=rule)
    assert referring.decision_rule.refer == rule.band()
    assert "refer if" in referring.decision_rule.describe()
    results = referring.predict(images)
    expected = rule.refers(p, spreads)
    assert 0 < expected.sum() < len(images)
    for result, before, refer in zip(results, plain, expected):
        assert result.label == ("refer" if refer else before.label)
        assert result.would_be_label == (before.label if refer else None)
        assert any(code == "refer" for code, _ in result.warnings) == refer
    assert [r.label for r in referring.without_refer().predict(images)] == [r.label for r in plain]
    assert referring.with_decision_threshold(0.5).decision_rule.refer is None  # a band only: nothing left


def test_a_refer_band_needs_a_two_class_weighted_average_the_film_checks_do_not(make_pipeline, chest_images):
    blank = np.full((256, 256), 0.5, "float32")  # its lung mask fails an input check
    for pipeline in (make_pipeline(ensemble="majority_vote"), make_pipeline(num_classes=3)):
        for band in (ReferRule(0.4, 0.6), ReferRule(0.0, 0.0, max_member_spread=0.1)):
            with pytest.raises(ConfigError, match="refer band or member-spread limit needs a two-class weighted"):
                pipeline._sharing_models(refer_rule=band)
        checked = pipeline._sharing_models(refer_rule=ReferRule(0.0, 0.0, input_checks=True))
        assert checked.decision_rule.describe().endswith("; refer if an input check fails (the preset's refer rule)")
        images = [*chest_images, blank]
        plain, results = pipeline.predict(images), checked.predict(images)
        for before, result in zip(plain, results):  # referred exactly when an input check fails
            assert result.label == ("refer" if fails_input_checks(before.warnings) else before.label)
        failed = results[-1]
        assert failed.label == "refer" and failed.would_be_label in pipeline.class_names
        message, failed_codes = dict(failed.warnings)["refer"], failed_input_checks(failed.warnings)
        assert failed_codes and list(failed.refer_reasons) == ["input_checks"]  # no band: only the checks refer
        assert message.startswith("referred: input check")
        assert ", ".join(INPUT_CHECK_WORDS.get(code, code) for code in failed_codes) in message
        assert "spread" not in message


def test_films_that_fail_an_input_check_are_referred_only_by_a_rule_that_says_so():
    rule = ReferRule(0.3, 0.6, out_of_distribution=True, input_checks=True)
    assert rule.refers([0.1, 0.9, 0.9], failed_input_checks=[False, True, False]).tolist() == [False, True, False]
    assert ReferRule(0.3, 0.6).refers([0.9], failed_input_checks=[True]).tolist() == [False]
    assert rule.band() == {"low": 0.3, "high": 0.6, "out_of_distribution": True, "input_checks": True}
    assert rule.describe("covid").endswith("or the film is out of distribution or an input check fails")
    assert ReferRule.from_dict(rule.to_dict()) == rule
    with pytest.raises(ConfigError, match="input_checks"):
        ReferRule(0.3, 0.6, input_checks=1.5)
    assert fails_input_checks([("mask_irregular_outline", "...")]) and fails_input_checks([("view", "...")])
    assert fails_input_checks([("aspect", "image is 5000x256 px, one side 19.5 times the other ...")])
    assert not fails_input_checks([("mask_pieces_removed", "lung mask trimmed: 2% ..."), ("refer", "...")])


def test_the_pipeline_refers_the_films_its_input_checks_flag(loaded_pipeline, chest_images):
    images = [*chest_images, np.full((256, 256), 0.5, "float32")]  # a blank image: its lung mask fails
    plain = loaded_pipeline.predict(images)
    failed = [fails_input_checks(r.warnings) for r in plain]
    assert any(failed)
    rule = ReferRule(1.0, 1.0, input_checks=True)  # no band: only the checks refer
    results = loaded_pipeline._sharing_models(refer_rule=rule).predict(images)
    for result, before, refer in zip(results, plain, failed):
        assert result.label == ("refer" if refer else before.label)
        assert any("input check" in message for code, message in result.warnings if code == "refer") == refer
        assert (result.refer_reasons is not None) == refer and result.to_dict()["refer_reasons"] == result.refer_reasons


def test_a_user_threshold_drops_the_band_and_keeps_the_film_checks(loaded_pipeline, chest_images):
    images = [*chest_images, np.full((256, 256), 0.5, "float32")]  # a blank image: its lung mask fails
    failed = [fails_input_checks(r.warnings) for r in loaded_pipeline.predict(images)]
    rule = ReferRule(0.0, 1.0, input_checks=True, target_sensitivity=0.85)  # the band takes every film
    assert rule.without_band() == ReferRule(0.0, 0.0, input_checks=True)
    assert ReferRule(0.2, 0.3, out_of_distribution=True).without_band() == ReferRule(0.0, 0.0, out_of_distribution=True)
    user = loaded_pipeline._sharing_models(refer_rule=rule).with_decision_threshold(0.5)
    assert user.decision_rule.refer == {"low": 0.0, "high": 0.0, "input_checks": True}
    assert user.decision_rule.describe() == ("covid if p(covid) >= 0.500 (threshold given by the user); refer if "
                                             "an input check fails (the preset's refer rule)")
    labels = [r.label for r in user.predict(images)]
    assert [label == "refer" for label in labels] == failed and any(failed)

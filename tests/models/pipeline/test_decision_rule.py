import numpy as np
import pytest

from keras_covidcxr import ConfigError, DecisionRule, decision_rule_from_config


def test_a_threshold_rule_labels_and_describes_itself():
    rule = DecisionRule("threshold", positive_class="covid", threshold=0.7)
    assert [rule.label_index(p) for p in ([0.31, 0.69], [0.3, 0.7], [0.2, 0.8])] == [0, 1, 1]
    assert rule.describe() == "covid if p(covid) >= 0.700 (the preset's operating threshold)"
    assert rule.to_dict() == {"rule": "threshold", "positive_class": "covid", "threshold": 0.7, "origin": "preset"}
    assert DecisionRule("argmax").label_index([0.2, 0.5, 0.3]) == 1
    with pytest.raises(ConfigError, match="votes"):
        DecisionRule("majority_vote").label_index([0.5, 0.5])


@pytest.mark.parametrize("kind, classes", [("weighted_average", 2), ("majority_vote", 2), ("weighted_average", 3),
                                           ("majority_vote", 3)])
def test_the_rule_read_from_a_saved_config_is_the_pipelines(make_pipeline, kind, classes):
    pipeline = make_pipeline(kind, classes)
    assert decision_rule_from_config(pipeline.get_config()) == pipeline.decision_rule
    if classes == 2:
        given = pipeline.with_decision_threshold(0.25).decision_rule
        assert decision_rule_from_config(pipeline.get_config(), 0.25) == given
        assert given == DecisionRule("threshold", "covid", 0.25, origin="user")
    expected = {("weighted_average", 2): "threshold", ("majority_vote", 2): "majority_vote",
                ("weighted_average", 3): "argmax", ("majority_vote", 3): "majority_vote"}[kind, classes]
    assert pipeline.decision_rule.rule == expected


def test_a_given_threshold_decides_every_label_and_each_result_says_so(pipeline, chest_images):
    images = [np.clip(image, 0, 1) for image in chest_images[:3]]
    scores = [r.probabilities["covid"] for r in pipeline.predict(images)]
    cut = float(np.median(scores))
    results = pipeline.with_decision_threshold(cut).predict(images)
    assert [r.label for r in results] == ["covid" if s >= cut else "non_covid" for s in scores]
    assert all(r.decision == {"rule": "threshold", "positive_class": "covid", "threshold": cut, "origin": "user"}
               for r in results)
    assert pipeline.predict(images[:1])[0].decision["origin"] == "preset"
    assert pipeline.with_decision_threshold(cut).with_preprocessing(masking="hard").decision_threshold == cut


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.2, 1.5])
def test_thresholds_outside_the_open_unit_interval_are_refused(pipeline, threshold):
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        pipeline.with_decision_threshold(threshold)


def test_a_threshold_needs_two_classes(make_pipeline):
    with pytest.raises(ConfigError, match="two classes"):
        make_pipeline("weighted_average", 3).with_decision_threshold(0.5)

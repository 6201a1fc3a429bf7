"""Out-of-distribution hints: k-NN feature distance to the training images."""

import numpy as np
import pytest

from keras_covidcxr import ConfigError
from keras_covidcxr.models.pipeline.out_of_distribution import (
    FeatureDistanceCheck,
    fit_feature_distance_check,
)


def test_far_features_are_flagged_and_validation_ones_mostly_not():
    rng = np.random.default_rng(0)
    centre = rng.normal(size=64)
    train = centre + 0.3 * rng.normal(size=(200, 64))
    validation = centre + 0.3 * rng.normal(size=(100, 64))
    check = fit_feature_distance_check("alpha", train, validation, neighbours=5, quantile=0.95)
    assert np.mean(check.flags(validation)) == pytest.approx(0.05, abs=0.011)
    far = rng.normal(size=(20, 64))  # unrelated directions
    assert check.flags(far).all()
    assert check.distances(train[:3]) == pytest.approx(check.distances(train[:3]))


def test_too_few_reference_rows_or_a_wrong_width_are_refused():
    with pytest.raises(ConfigError, match="reference"):
        FeatureDistanceCheck("alpha", np.ones((3, 4)), threshold=0.1, neighbours=5)
    for neighbours in (0, 2.5, True):
        with pytest.raises(ConfigError, match=f"neighbours must be a whole number >= 1, got {neighbours!r}"):
            FeatureDistanceCheck("alpha", np.eye(8), threshold=0.1, neighbours=neighbours)
    with pytest.raises(ConfigError, match="reference features hold NaN or infinite values"):
        FeatureDistanceCheck("alpha", np.full((8, 8), np.nan), threshold=0.1, neighbours=2)
    check = FeatureDistanceCheck("alpha", np.eye(8), threshold=0.1, neighbours=2)
    with pytest.raises(ConfigError, match="channels"):
        check.distances(np.ones((1, 4)))


def test_the_pipeline_warns_and_the_preset_keeps_the_check(small_pipeline, small_preset, chest_images):
    import dataclasses

    from keras_covidcxr import Pipeline

    check = small_pipeline.out_of_distribution
    everything = small_pipeline._sharing_models(out_of_distribution=dataclasses.replace(check, threshold=-1.0))
    flagged = everything.predict(chest_images[:1])[0]
    assert flagged.out_of_distribution["flagged"]
    assert any(code == "out_of_distribution" for code, _ in flagged.warnings)
    nothing = small_pipeline._sharing_models(out_of_distribution=dataclasses.replace(check, threshold=2.0))
    result = nothing.predict(chest_images[:1])[0]  # cosine distances are at most 2
    assert not result.out_of_distribution["flagged"]
    assert not any(code == "out_of_distribution" for code, _ in result.warnings)
    loaded = Pipeline.from_preset(small_preset)
    assert loaded.out_of_distribution.threshold == pytest.approx(check.threshold)
    assert loaded.predict(chest_images[:1])[0].out_of_distribution["distance"] == pytest.approx(
        result.out_of_distribution["distance"], abs=1e-3)  # the preset stores the reference as float16
    with pytest.raises(ConfigError, match="member"):
        small_pipeline._sharing_models(out_of_distribution=dataclasses.replace(check, member="gamma"))


def test_a_preset_whose_reference_features_are_not_finite_is_refused(small_preset, tmp_path):
    import json
    import shutil

    from keras_covidcxr import Pipeline
    from keras_covidcxr.errors import PresetError
    from keras_covidcxr.models.pipeline.out_of_distribution import FEATURES_FILE
    from keras_covidcxr.presets.checksums import checksum_tree

    tampered = shutil.copytree(small_preset, tmp_path / "tampered")
    features = np.load(tampered / FEATURES_FILE)["reference"]
    np.savez(tampered / FEATURES_FILE, reference=np.full_like(features, np.nan))
    metadata = json.loads((tampered / "metadata.json").read_text())
    metadata["files"] = checksum_tree(tampered)  # signed again, as a careful attacker would
    (tampered / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(PresetError, match=f"{FEATURES_FILE}: the out-of-distribution check's reference features hold"):
        Pipeline.from_preset(tampered)

    def signed_again():
        metadata["files"] = checksum_tree(tampered)
        (tampered / "metadata.json").write_text(json.dumps(metadata))

    # cut short (not a zip any more), then of the wrong width: one error naming the preset, no traceback
    (tampered / FEATURES_FILE).write_bytes((small_preset / FEATURES_FILE).read_bytes()[:200])
    signed_again()
    with pytest.raises(PresetError, match=f"{FEATURES_FILE}: cannot read the out-of-distribution features"):
        Pipeline.from_preset(tampered)
    np.savez(tampered / FEATURES_FILE, reference=features[:, :3])
    signed_again()
    with pytest.raises(PresetError, match=f"reference features have 3 channels, member 'beta'.s features "
                                          f"{features.shape[1]}"):
        Pipeline.from_preset(tampered)


def test_the_check_reads_the_features_of_the_ensembles_own_pass(small_pipeline):
    size, channels = small_pipeline.classifier_size, small_pipeline.classifier_channels
    batch = np.random.default_rng(0).uniform(size=(3, size, size, channels)).astype("float32")
    outputs = small_pipeline._run_ensemble(batch, batch_size=2)
    names = small_pipeline.member_names
    member = small_pipeline.ensemble.members[names.index(small_pipeline.out_of_distribution.member)]
    pooled = np.asarray(member.feature_extractor(batch)).mean(axis=(1, 2))
    np.testing.assert_allclose(outputs["features"], pooled, atol=1e-5)
    # pipelines derived from it share its inference model (one traced function, not one per pipeline)
    assert small_pipeline.with_preprocessing(bbox_margin=0.05).inference_model is small_pipeline.inference_model


def test_a_rule_that_refers_out_of_distribution_films_labels_them_refer(small_pipeline, chest_images, tmp_path):
    import dataclasses

    from keras_covidcxr import Pipeline, ReferRule

    no_band = ReferRule(0.0, 0.0, out_of_distribution=True)  # refers nothing but out-of-distribution films
    check = small_pipeline.out_of_distribution
    flag_all = small_pipeline._sharing_models(out_of_distribution=dataclasses.replace(check, threshold=-1.0),
                                              refer_rule=no_band)
    answered = flag_all.without_refer().predict(chest_images[:2])
    referred = flag_all.predict(chest_images[:2])
    for result, plain in zip(referred, answered):
        assert result.out_of_distribution["flagged"]
        assert (result.label, result.would_be_label) == ("refer", plain.label)
        message = dict(result.warnings)["refer"]
        assert "out of distribution" in message and "have a person read this film" in message
    assert "refer if the film is out of distribution" in flag_all.decision_rule.describe()
    flag_none = flag_all._sharing_models(out_of_distribution=dataclasses.replace(check, threshold=2.0))
    assert [r.label for r in flag_none.predict(chest_images[:2])] == [r.label for r in answered]
    band_only = flag_all._sharing_models(refer_rule=ReferRule(0.0, 0.0))  # flagged, but the rule does not say so
    assert [r.label for r in band_only.predict(chest_images[:2])] == [r.label for r in answered]
    with pytest.raises(ConfigError, match="no out-of-distribution check"):
        flag_all._sharing_models(out_of_distribution=None)
    loaded = Pipeline.from_preset(flag_all.save_to_preset(tmp_path / "preset", training={"data": "synthetic"}))
    assert loaded.refer_rule == no_band
    assert [r.label for r in loaded.predict(chest_images[:2])] == ["refer", "refer"]

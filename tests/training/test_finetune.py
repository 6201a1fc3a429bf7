"""Fine-tuning a preset: new heads for three classes, saved as a new preset that reloads and predicts."""

import dataclasses
import hashlib
import json

import numpy as np
import pytest

from keras_covidcxr import Pipeline, read_preset_metadata
from keras_covidcxr.data import read_manifest
from keras_covidcxr.training import TrainingConfig, finetune
from keras_covidcxr.training.finetune import with_new_head


def test_new_head_keeps_backbone_and_dense_weights(make_pipeline):
    member = make_pipeline(backbone=("densenet121", "resunet_encoder")).ensemble.members[0]  # keras.applications
    replaced = with_new_head(member, 3)
    assert replaced.num_classes == 3 and replaced.name == member.name
    for old, new in zip(member.backbone.get_weights(), replaced.backbone.get_weights()):
        np.testing.assert_array_equal(old, new)
    np.testing.assert_array_equal(
        member.head.get_layer("head_dense").get_weights()[0], replaced.head.get_layer("head_dense").get_weights()[0]
    )


def test_a_new_head_keeps_the_members_whole_configuration():
    """Non-default encoder filters, a feature layer and mirror averaging survive the new head."""
    from keras_covidcxr import CXRClassifier

    for member in (CXRClassifier("resunet_encoder", input_shape=(32, 32, 1), encoder_filters=(4, 8), head_units=4,
                                 mirror_average=True, name="small"),
                   CXRClassifier("mobilenet_v2", input_shape=(32, 32, 1), input_normalization="imagenet",
                                 head_units=0, feature_layer="block_6_expand_relu", name="cut")):
        replaced = with_new_head(member, 3)
        for key in ("backbone", "encoder_filters", "feature_layer", "mirror_average", "input_normalization"):
            assert replaced.get_config()[key] == member.get_config()[key], key
        for old, new in zip(member.backbone.get_weights(), replaced.backbone.get_weights(), strict=True):
            np.testing.assert_array_equal(old, new)


def small_preset(folder):
    """A binary preset with two small MobileNetV2 members (quick to train on a CPU)."""
    from keras_covidcxr import CXRClassifier, ResUnet, WeightedAverageEnsemble

    members = [CXRClassifier("mobilenet_v2", head_units=8, input_shape=(32, 32, 3), name=name)
               for name in ("alpha", "beta")]
    pipeline = Pipeline(ResUnet(input_size=64, filters=(4, 8, 16)), WeightedAverageEnsemble(members))
    pipeline.save_to_preset(folder, training={"recipe": "untrained test parent", "data": "none"})
    return folder


@pytest.mark.slow  # trains two members; test_train_cli covers the CLI path
def test_finetuned_preset_records_its_parent_data_and_recipe_and_predicts(
    synthetic_manifest_path, tmp_path, chest_images
):
    preset_dir = small_preset(tmp_path / "parent")
    parent_checksum = hashlib.sha256((preset_dir / "metadata.json").read_bytes()).hexdigest()
    config = TrainingConfig(batch_size=8, head_epochs=1, unfreeze_schedule=(0.1,), max_epochs_per_stage=1,
                            workers=1, run_eagerly=True)
    out = tmp_path / "finetuned"
    with pytest.warns(UserWarning, match=r"fitted on \d+ validation images \(fewer than 50\)"):
        result = finetune(str(preset_dir), str(synthetic_manifest_path), out=out,
                          class_names=("covid", "normal", "pneumonia"), config=config)
    assert result.mode == "replace_head" and result.preset == out

    reloaded = Pipeline.from_preset(out)
    assert reloaded.class_names == ("covid", "normal", "pneumonia") and reloaded.is_trained
    predictions = reloaded.predict(chest_images)
    assert all(set(p.probabilities) == set(reloaded.class_names) for p in predictions)
    assert all(abs(sum(p.probabilities.values()) - 1) < 1e-4 for p in predictions)
    ensemble_config = json.loads((out / "config.json").read_text())["ensemble"]["config"]
    assert ensemble_config["weights"] == list(result.training["ensemble_fit"]["weights"].values())

    training = read_preset_metadata(out)["training"]
    assert training["parent"]["handle"] == str(preset_dir)
    assert training["recipe"]["mode"] == "replace_head"
    assert training["recipe"]["config"]["unfreeze_schedule"] == [0.1]
    data = training["data"]
    assert data["sha256"] == hashlib.sha256(synthetic_manifest_path.read_bytes()).hexdigest()
    assert data["counts"]["train"]["cls"] == {"covid": 4, "normal": 4, "pneumonia": 4}
    assert data["classifier_inputs"]["class_weights"] == {"covid": 1.0, "normal": 1.0, "pneumonia": 1.0}
    assert set(training["members"]) == {"alpha", "beta"}
    assert set(training["validation"]) == {"alpha", "beta", "ensemble"}
    # the parent preset is untouched
    assert hashlib.sha256((preset_dir / "metadata.json").read_bytes()).hexdigest() == parent_checksum


def test_the_out_of_distribution_check_is_refitted_on_the_finetuned_features(synthetic_manifest_path, tmp_path):
    from keras_covidcxr import CXRClassifier, FeatureDistanceCheck, ResUnet, WeightedAverageEnsemble
    from keras_covidcxr.models.pipeline.refer_rule import ReferRule
    from keras_covidcxr.training.linear_head import pooled_features

    members = [CXRClassifier("resunet_encoder", head_units=0, input_shape=(32, 32, 1), encoder_filters=(4, 8),
                             name="alpha")]  # tiny: the refit, not the training, is under test
    stale = FeatureDistanceCheck("alpha", np.random.default_rng(0).normal(size=(20, 8)), 0.5, neighbours=3,
                                 quantile=0.9)
    parent = Pipeline(ResUnet(input_size=64, filters=(4, 8, 16)), WeightedAverageEnsemble(members),
                      out_of_distribution=stale,
                      refer_rule=ReferRule(0.4, 0.6, out_of_distribution=True, input_checks=True))
    parent.save_to_preset(tmp_path / "parent", training={"recipe": "untrained test parent", "data": "none"})
    config = TrainingConfig(batch_size=4, workers=1)  # a linear-head member: the linear probe
    # the parent's threshold is kept: refitted on the 3 validation films it would be refused (one class)
    with pytest.warns(UserWarning, match="out-of-distribution threshold is the 90% quantile of 3 validation films"):
        result = finetune(str(tmp_path / "parent"), str(synthetic_manifest_path), out=tmp_path / "child",
                          config=config, refit_ensemble=False)

    check = result.pipeline.out_of_distribution
    assert (check.member, check.neighbours, check.quantile) == ("alpha", 3, 0.9)
    assert check.reference.shape == (12, 8)  # the 12 training films, not the parent's 20 rows
    from keras_covidcxr.training.classifier_training import classifier_datasets

    fine_tuned = result.pipeline.ensemble.members[0]
    train, val, _ = classifier_datasets(read_manifest(synthetic_manifest_path), result.pipeline.segmenter,
                                        result.pipeline.class_names, 32, result.pipeline.preprocessing, config)
    assert check.threshold == pytest.approx(np.quantile(check.distances(pooled_features(fine_tuned, val.inputs)), 0.9))
    # the parent referred out-of-distribution films and failed input checks: the child still does, without the band
    assert result.pipeline.refer_rule.describe("covid") == (
        "refer if the film is out of distribution or an input check fails")
    assert result.training["out_of_distribution"]["member"] == "alpha"
    reloaded = Pipeline.from_preset(tmp_path / "child")
    np.testing.assert_allclose(reloaded.out_of_distribution.reference, check.reference, atol=1e-3)
    # a check comparing with more neighbours than there are training films cannot be refitted; the linear probe
    # leaves the backbone as it was, so the parent's check is kept (said), not dropped (CT slices were answered)
    wide = parent._sharing_models(out_of_distribution=dataclasses.replace(stale, neighbours=20))
    with pytest.warns(UserWarning, match=r"check is the parent's, not refitted on your films \(it compares a film "
                                         r"with its 20 nearest training films, and the training split has 12\)"):
        kept = finetune(wide, str(synthetic_manifest_path), config=config, refit_ensemble=False)
    assert kept.pipeline.out_of_distribution is wide.out_of_distribution
    assert kept.training["out_of_distribution"]["fitted_on"].startswith("the parent preset's films")
    assert kept.pipeline.refer_rule.describe("covid") == "refer if the film is out of distribution or an input check fails"


def test_a_finetuned_preset_records_digests_of_its_and_its_parents_patients(synthetic_manifest_path, tmp_path):
    from keras_covidcxr import CXRClassifier, ResUnet, WeightedAverageEnsemble
    from keras_covidcxr.training.provenance import FIT_PATIENTS_KEY, fitted_patient_digests, patient_digest

    member = CXRClassifier("resunet_encoder", head_units=0, input_shape=(32, 32, 1), encoder_filters=(4, 8),
                           name="alpha")
    Pipeline(ResUnet(input_size=64, filters=(4, 8, 16)), WeightedAverageEnsemble([member])).save_to_preset(
        tmp_path / "parent", training={"recipe": "test parent", "data": {"classifier_fit_patient_ids": ["old:1"]}})
    config = TrainingConfig(batch_size=4, workers=1)
    result = finetune(str(tmp_path / "parent"), str(synthetic_manifest_path), config=config, refit_ensemble=False)
    manifest = read_manifest(synthetic_manifest_path)
    fitted = {row.patient_id for row in manifest if row.task == "cls" and row.split in ("train", "val")}
    recorded = result.training["data"][FIT_PATIENTS_KEY]
    assert set(recorded) == {patient_digest(p) for p in fitted | {"old:1"}}
    assert not any(p in json.dumps(result.training["data"]) for p in fitted)  # no id in the clear
    tested = {row.patient_id for row in manifest if row.split == "test"}
    assert tested and not {patient_digest(p) for p in tested} & fitted_patient_digests(result.pipeline.metadata)


def test_finetune_refits_the_members_vote_thresholds_and_refuses_a_one_class_threshold(
    synthetic_manifest_path, tmp_path, monkeypatch
):
    """A parent whose members vote at their own thresholds (covidcxr_lite) gets them refitted on the validation
    split; a refitted threshold that answers one class for every validation film is refused, nothing saved."""
    import importlib

    from keras_covidcxr import CXRClassifier, ResUnet, WeightedAverageEnsemble
    from keras_covidcxr.errors import ConfigError

    members = [CXRClassifier("resunet_encoder", head_units=0, input_shape=(32, 32, 1), encoder_filters=(4, 8),
                             name=name) for name in ("alpha", "beta")]
    parent = Pipeline(ResUnet(input_size=64, filters=(4, 8, 16)),
                      WeightedAverageEnsemble(members, member_thresholds=[0.7, 0.7]))
    parent.save_to_preset(tmp_path / "parent", training={"recipe": "test parent", "data": "none"})
    config = TrainingConfig(batch_size=4, workers=1)
    finetune_module = importlib.import_module("keras_covidcxr.training.finetune")  # the package exports the function

    def scores_of(covid, other):  # stands in for the members' validation probabilities: the refit is under test
        def member_probabilities(members, val):
            p = np.where(val.labels == 1, covid, other)[:, None] * np.array([1.0, 0.5])  # beta: half of alpha
            return np.stack([1.0 - p, p], axis=-1)
        return member_probabilities

    monkeypatch.setattr(finetune_module, "member_probabilities", scores_of(0.8, 0.2))
    with pytest.warns(UserWarning, match="fewer than 50"):
        result = finetune(str(tmp_path / "parent"), str(synthetic_manifest_path), out=tmp_path / "child",
                          config=config)
    assert result.pipeline.ensemble.member_thresholds == pytest.approx([0.8, 0.4])
    assert result.training["member_thresholds"]["thresholds"] == pytest.approx({"alpha": 0.8, "beta": 0.4})
    assert Pipeline.from_preset(tmp_path / "child").ensemble.member_thresholds == pytest.approx([0.8, 0.4])

    monkeypatch.setattr(finetune_module, "member_probabilities", scores_of(0.2, 0.8))  # ranks backwards
    with pytest.warns(UserWarning, match="fewer than 50"), pytest.raises(ConfigError, match="in one class"):
        finetune(str(tmp_path / "parent"), str(synthetic_manifest_path), out=tmp_path / "refused", config=config)
    assert not (tmp_path / "refused").exists()


def linear_head_member(name="alpha"):
    from keras_covidcxr import CXRClassifier

    return CXRClassifier("resunet_encoder", head_units=0, input_shape=(32, 32, 1), encoder_filters=(4, 8), name=name)


def test_auto_recipe_is_the_linear_probe_for_logistic_regression_heads():
    from keras_covidcxr import CXRClassifier
    from keras_covidcxr.errors import ConfigError
    from keras_covidcxr.training.finetune import finetune_recipe

    linear = [linear_head_member()]
    dense = [CXRClassifier("resunet_encoder", head_units=4, input_shape=(32, 32, 1), encoder_filters=(4, 8))]
    assert finetune_recipe("auto", linear) == "linear_probe"
    assert finetune_recipe("auto", dense) == "train"
    assert finetune_recipe("train", linear) == "train"
    with pytest.raises(ConfigError, match="head_units=0"):
        finetune_recipe("linear_probe", dense)
    with pytest.raises(ConfigError, match="recipe must be one of"):
        finetune_recipe("probe", linear)


def test_the_linear_probe_refits_the_head_on_frozen_features_of_a_copy(synthetic_manifest_path, tmp_path):
    from keras_covidcxr import ResUnet, WeightedAverageEnsemble
    from keras_covidcxr.training.linear_head import fit_logistic_regression, pooled_features

    member = linear_head_member()
    parent = Pipeline(ResUnet(input_size=64, filters=(4, 8, 16)), WeightedAverageEnsemble([member]))
    before = [w.copy() for w in member.get_weights()]
    config = TrainingConfig(batch_size=4, workers=1)
    result = finetune(parent, str(synthetic_manifest_path), config=config, refit_ensemble=False)

    assert result.training["recipe"]["members_recipe"] == "linear_probe"
    assert result.training["members"]["alpha"] == {"recipe": "linear_probe", "regularization": 0.05, "fitted_on": 12}
    recorded = result.training["recipe"]["config"]  # the probe's settings, not the gradient recipe's it never read
    assert recorded["batch_size"] == 4 and "epochs" not in recorded and "unfreeze_schedule" not in recorded
    assert config.augment and result.training["data"]["classifier_inputs"]["augmentation"] is None  # none applied
    assert result.training["data"]["manifest"] == str(synthetic_manifest_path.resolve())
    # settings of the gradient recipe are named as unused, not silently dropped
    with pytest.warns(UserWarning, match=r"does not use head_epochs \(settings of recipe 'train'\)"):
        finetune(parent, str(synthetic_manifest_path), config=config.replace(head_epochs=9), refit_ensemble=False)
    with pytest.warns(UserWarning, match="keeps no checkpoints: .*kept is not used"):
        finetune(parent, str(synthetic_manifest_path), config=config, refit_ensemble=False,
                 checkpoint_dir=tmp_path / "kept")
    assert not (tmp_path / "kept").exists()
    for old, kept in zip(before, member.get_weights(), strict=True):  # the caller's pipeline is not modified
        np.testing.assert_array_equal(old, kept)
    refitted = result.pipeline.ensemble.members[0]
    for old, new in zip(member.backbone.get_weights(), refitted.backbone.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)  # frozen backbone
    from keras_covidcxr.training.classifier_training import classifier_datasets

    train, _, _ = classifier_datasets(read_manifest(synthetic_manifest_path), parent.segmenter, parent.class_names,
                                      32, parent.preprocessing, config)
    features = pooled_features(refitted, train.inputs)
    regression, _, _ = fit_logistic_regression(features, train.labels, 0.05)
    np.testing.assert_allclose(np.asarray(refitted.predict(train.inputs[..., None], verbose=0)).ravel(),
                               regression.predict_proba(features)[:, 1], atol=1e-4)


def test_the_linear_probe_fits_a_multinomial_head_for_new_classes(synthetic_manifest_path, tmp_path):
    from keras_covidcxr import ResUnet, WeightedAverageEnsemble
    from keras_covidcxr.models.pipeline.refer_rule import ReferRule

    # the parent refers the films that fail an input check: three classes have no band, but keep that check
    parent = Pipeline(ResUnet(input_size=64, filters=(4, 8, 16)), WeightedAverageEnsemble([linear_head_member()]),
                      refer_rule=ReferRule(0.4, 0.6, input_checks=True))
    config = TrainingConfig(batch_size=4, workers=1)
    with pytest.warns(UserWarning, match="fewer than 50"):
        result = finetune(parent, str(synthetic_manifest_path), out=tmp_path / "three",
                          class_names=("covid", "normal", "pneumonia"), config=config)
    assert (result.mode, result.training["recipe"]["members_recipe"]) == ("replace_head", "linear_probe")
    reloaded = Pipeline.from_preset(tmp_path / "three")
    assert reloaded.class_names == ("covid", "normal", "pneumonia")
    assert reloaded.ensemble.members[0].head.get_layer("head_logits").kernel.shape[-1] == 3
    assert reloaded.decision_rule.describe() == ("the most probable class; refer if an input check fails (the "
                                                 "preset's refer rule)")


def test_training_a_pipeline_object_leaves_it_as_it_was(synthetic_manifest_path):
    """Compare parent and child in one session: `finetune` trains copies of the members."""
    from keras_covidcxr import ResUnet, WeightedAverageEnsemble

    member = linear_head_member()
    parent = Pipeline(ResUnet(input_size=64, filters=(4, 8, 16)), WeightedAverageEnsemble([member]))
    before = [w.copy() for w in member.get_weights()]
    config = TrainingConfig(batch_size=4, head_epochs=1, head_learning_rate=0.1, unfreeze_schedule=(), workers=1,
                            augment=False, run_eagerly=True)
    result = finetune(parent, str(synthetic_manifest_path), config=config, recipe="train", refit_ensemble=False)
    trained = result.pipeline.ensemble.members[0]
    assert trained is not member and parent.ensemble.members[0] is member
    assert any(not np.array_equal(a, b) for a, b in zip(before, trained.get_weights(), strict=True))
    for old, kept in zip(before, member.get_weights(), strict=True):
        np.testing.assert_array_equal(old, kept)


def test_a_pipeline_is_never_finetuned_into_the_folder_it_was_loaded_from(synthetic_manifest_path, tmp_path):
    from keras_covidcxr import PresetError

    preset_dir = small_preset(tmp_path / "parent")
    before = {path: path.read_bytes() for path in preset_dir.rglob("*") if path.is_file()}
    for parent in (str(preset_dir), Pipeline.from_preset(preset_dir)):  # a handle, or a pipeline loaded from it
        with pytest.raises(PresetError, match="is the parent preset's folder"):
            finetune(parent, str(synthetic_manifest_path), out=preset_dir, overwrite=True)
    assert {path: path.read_bytes() for path in preset_dir.rglob("*") if path.is_file()} == before


def test_finetuning_on_the_parents_own_patients_warns_and_is_recorded(synthetic_manifest_path, tmp_path):
    from keras_covidcxr import CXRClassifier, ResUnet, WeightedAverageEnsemble

    manifest = read_manifest(synthetic_manifest_path)
    val = sorted({row.patient_id for row in manifest if row.task == "cls" and row.split == "val"})
    member = CXRClassifier("resunet_encoder", head_units=0, input_shape=(32, 32, 1), encoder_filters=(4, 8),
                           name="alpha")
    Pipeline(ResUnet(input_size=64, filters=(4, 8, 16)), WeightedAverageEnsemble([member])).save_to_preset(
        tmp_path / "parent", training={"recipe": "test parent", "data": {"classifier_fit_patient_ids": val[:1]}})
    config = TrainingConfig(batch_size=4, workers=1)
    with pytest.warns(UserWarning, match=r"of the \d+ val films \(1 patients\) belong to patients the parent preset "
                                         "was trained on") as caught:
        result = finetune(Pipeline.from_preset(tmp_path / "parent"), str(synthetic_manifest_path), config=config,
                          refit_ensemble=False)
    # the package's warnings name the caller's line, not its plumbing (the CLI prints only those naming it)
    assert [w.filename for w in caught if "belong to patients" in str(w.message)] == [__file__]
    assert not [w.filename for w in caught if w.filename.endswith("contextlib.py")]
    overlap = result.training["data"]["parent_training_overlap"]
    assert list(overlap) == ["val"] and overlap["val"]["patients"] == 1
    assert result.training["parent"]["handle"] == str((tmp_path / "parent").resolve())  # a loaded pipeline's folder


@pytest.mark.parametrize("class_names, message", [
    ("covid,normal", "give a list of names"),
    (("covid", "non_covid"), "name covid second"),
    (("covid", "normal", "covid"), "each once"),
])
def test_class_names_that_would_mislabel_are_refused_before_any_work(class_names, message, synthetic_manifest_path):
    from keras_covidcxr import ConfigError

    with pytest.raises(ConfigError, match=message):
        finetune("no_such_preset_is_loaded", str(synthetic_manifest_path), class_names=class_names)


def test_finetune_keeps_tensorflows_retracing_notice_quiet_for_python_callers(synthetic_manifest_path, monkeypatch):
    # it predicts with each member and feature extractor in turn: TensorFlow would call that retracing
    import logging
    import sys

    from keras_covidcxr.training.classifier_training import _StageRetracingNotice

    finetune_module = sys.modules["keras_covidcxr.training.finetune"]  # the package's `finetune` is the function

    seen = []

    def stop_at_the_data(*args, **kwargs):
        seen.extend(type(f) for f in logging.getLogger("tensorflow").filters)
        raise KeyboardInterrupt

    monkeypatch.setattr(finetune_module, "classifier_datasets", stop_at_the_data)
    from keras_covidcxr import ResUnet, WeightedAverageEnsemble

    parent = Pipeline(ResUnet(input_size=64, filters=(4, 8, 16)), WeightedAverageEnsemble([linear_head_member()]))
    with pytest.raises(KeyboardInterrupt):
        finetune(parent, str(synthetic_manifest_path), recipe="train")
    assert _StageRetracingNotice in seen
    assert _StageRetracingNotice not in [type(f) for f in logging.getLogger("tensorflow").filters]  # removed after

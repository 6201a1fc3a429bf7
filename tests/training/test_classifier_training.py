"""The two-phase classifier recipe: frozen backbone, progressive unfreezing, frozen batch norm,
class weights, masked inputs that match the Pipeline's."""

import warnings

import keras
import numpy as np
import pytest

from keras_covidcxr import (
    ConfigError,
    CXRClassifier,
    InputContract,
    Pipeline,
    ResUnet,
    WeightedAverageEnsemble,
)
from keras_covidcxr.training import (
    TrainingCheckpoint,
    TrainingConfig,
    backbone_blocks,
    balanced_class_weights,
    classifier_datasets,
    train_classifier,
)
from keras_covidcxr.training.unfreezing import batch_norm_layers

BINARY = ("non_covid", "covid")
FAST = {"batch_size": 8, "workers": 1, "run_eagerly": True, "augment": True}


@pytest.fixture(scope="module")
def segmenter():
    keras.utils.set_random_seed(0)
    return ResUnet(input_size=32, filters=(4, 8, 16))


@pytest.fixture(scope="module")
def binary_data(synthetic_manifest, segmenter):
    return classifier_datasets(synthetic_manifest, segmenter, BINARY, 32, config=TrainingConfig(**FAST))


def tiny_classifier(name="tiny"):
    keras.utils.set_random_seed(1)
    return CXRClassifier("mobilenet_v2", num_classes=2, head_units=8, input_shape=(32, 32, 3), name=name)


def weights_of(layers):
    return {v.path: np.array(keras.ops.convert_to_numpy(v)) for layer in layers for v in layer.weights}


def bn_statistics(model):
    return {
        v.path: np.array(keras.ops.convert_to_numpy(v))
        for layer in batch_norm_layers(model)
        for v in (layer.moving_mean, layer.moving_variance)
    }


class Snapshot(keras.callbacks.Callback):
    """Weights at the end of each fit (before the recipe restores the best ones)."""

    def __init__(self):
        super().__init__()
        self.at_end, self.trainable = [], []

    def on_train_begin(self, logs=None):
        self.trainable.append({v.path for v in self.model.trainable_weights})

    def on_train_end(self, logs=None):
        self.at_end.append(weights_of(self.model.backbone.layers))


def test_class_weights_follow_the_balanced_rule():
    weights = balanced_class_weights([0, 0, 0, 1, 1, 2], 3)
    assert weights == pytest.approx({0: 6 / 9, 1: 6 / 6, 2: 6 / 3})
    # each class contributes the same total weight
    assert 3 * weights[0] == pytest.approx(2 * weights[1]) == pytest.approx(1 * weights[2])
    assert balanced_class_weights([0, 0], 2)[1] == 0.0


def test_datasets_are_class_weighted_and_masked_like_the_pipeline(binary_data, synthetic_manifest, segmenter):
    train, val, info = binary_data
    counts = info["counts"]["train"]
    n = sum(counts.values())
    assert info["class_weights"] == pytest.approx({c: n / (2 * counts[c]) for c in BINARY})
    x, y, sample_weights = train[0]
    assert x.shape[1:] == (32, 32, 3) and y.shape[1:] == (1,)
    expected = [info["class_weights"][BINARY[int(label)]] for label in y[:, 0]]
    np.testing.assert_allclose(sample_weights, expected)
    # un-augmented validation inputs are exactly what the Pipeline feeds its classifiers
    member = CXRClassifier("mobilenet_v2", head_units=8, input_shape=(32, 32, 3), name="m")
    pipeline = Pipeline(segmenter, WeightedAverageEnsemble([member]), input_contract=InputContract(min_size=16))
    captured = []
    run_ensemble = pipeline._run_ensemble  # what the ensemble is given

    def capture(batch, batch_size):
        captured.append(np.array(batch))
        return run_ensemble(batch, batch_size)

    pipeline._run_ensemble = capture
    val_rows = synthetic_manifest.filter(task="cls", split="val")
    pipeline.predict([val_rows.resolve(row) for row in val_rows[:2]], batch_size=2)
    np.testing.assert_allclose(captured[0], val.images(np.array([0, 1])), atol=1e-6)


def test_phase_one_trains_the_head_only(binary_data):
    train, val, _ = binary_data
    model = tiny_classifier()
    backbone_before, head_before = weights_of(model.backbone.layers), weights_of(model.head.layers)
    config = TrainingConfig(head_epochs=2, max_epochs_per_stage=0, **FAST)
    result = train_classifier(model, train, val, config)
    assert [step["step"] for step in result.details["steps"]] == ["head"]
    after = weights_of(result.model.backbone.layers)
    for path, value in backbone_before.items():
        np.testing.assert_array_equal(after[path], value, err_msg=path)
    head_after = weights_of(result.model.head.layers)
    assert any(not np.array_equal(head_after[p], v) for p, v in head_before.items())


def test_phase_two_changes_only_the_unfrozen_blocks_and_never_batch_norm(binary_data):
    train, val, _ = binary_data
    model = tiny_classifier()
    before, bn_before = weights_of(model.backbone.layers), bn_statistics(model)
    snapshot = Snapshot()
    config = TrainingConfig(head_epochs=1, unfreeze_schedule=(0.2,), max_epochs_per_stage=2,
                            finetune_learning_rate=1e-3, **FAST)
    result = train_classifier(model, train, val, config, callbacks=[snapshot])
    _, stage = result.details["steps"]
    blocks = backbone_blocks(result.model.backbone)
    top = blocks[-len(stage["trainable_blocks"]):]
    assert [b.name for b in reversed(top)] == stage["trainable_blocks"] and len(top) == 4  # ceil(0.2 * 19)
    unfrozen_by_block = {
        b.name: {v.path for layer in b.layers for v in layer.weights
                 if not isinstance(layer, keras.layers.BatchNormalization)}
        for b in top
    }
    unfrozen = set().union(*unfrozen_by_block.values())
    phase_one_end, phase_two_end = snapshot.at_end
    for path, value in before.items():
        np.testing.assert_array_equal(phase_one_end[path], value, err_msg=path)  # phase 1: untouched
        if path in unfrozen:
            continue
        np.testing.assert_array_equal(phase_two_end[path], value, err_msg=path)  # frozen below the cut
    # exactly the unfrozen blocks (minus batch norm) and the head train in phase 2 ...
    head = {v.path for v in result.model.head.weights}
    assert snapshot.trainable == [head, unfrozen | head]
    # ... and they do change (the top block at least: random-init ReLU6 nets have dead paths)
    assert any(not np.array_equal(phase_two_end[p], before[p]) for p in unfrozen_by_block[top[-1].name])
    # batch norm: in inference mode and its ImageNet (here: initial) statistics untouched
    assert all(not layer.trainable for layer in batch_norm_layers(result.model))
    bn_after = bn_statistics(result.model)
    for path, value in bn_before.items():
        np.testing.assert_array_equal(bn_after[path], value, err_msg=path)


class KillInStep(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.fits = 0

    def on_train_begin(self, logs=None):
        self.fits += 1
        if self.fits == 2:
            raise KeyboardInterrupt("simulated kill in phase 2")


def test_killed_classifier_run_resumes_after_its_last_finished_step(binary_data, tmp_path):
    train, val, _ = binary_data
    config = TrainingConfig(head_epochs=1, unfreeze_schedule=(0.2,), max_epochs_per_stage=1, **FAST)
    with pytest.raises(KeyboardInterrupt):
        train_classifier(tiny_classifier(), train, val, config, checkpoint_dir=tmp_path, callbacks=[KillInStep()])
    state = TrainingCheckpoint(tmp_path).latest_state()
    assert state["epoch"] == 1 and [s["step"] for s in state["steps"]] == ["head"]
    best_after_head = TrainingCheckpoint(tmp_path).load_best().get_weights()
    result = train_classifier(tiny_classifier(), train, val, config, checkpoint_dir=tmp_path)
    assert result.resumed_from_epoch == 1
    assert [s["step"] for s in result.details["steps"]] == ["head", "unfreeze"]
    assert len(result.history) == 2
    assert TrainingCheckpoint(tmp_path).read_summary()["component"] == "classifier"
    assert best_after_head  # best/ existed after the first step


def test_end_to_end_recipe_trains_every_layer_and_batch_norm(binary_data):
    train, val, _ = binary_data
    keras.utils.set_random_seed(2)
    model = CXRClassifier("resunet_encoder", input_shape=(32, 32, 3), encoder_filters=(4, 8, 16), name="e2e")
    before_bn, before = bn_statistics(model), weights_of(model.backbone.layers)
    snapshot = Snapshot()
    config = TrainingConfig(**FAST, classifier_recipe="end_to_end", epochs=2, patience=0)
    result = train_classifier(model, train, val, config, callbacks=[snapshot])
    assert result.monitor == "val_loss" and len(result.history) == 2
    assert result.details["steps"] == [{"step": "end_to_end", "fraction": None, "trainable_blocks": ["all"],
                                        "epochs": 2, "best_after": result.best_value, "improved": True}]
    # everything trained in the single step, batch-norm statistics included
    assert snapshot.trainable[0] == {v.path for v in model.weights if v.trainable or "moving" not in v.path}
    after = weights_of(result.model.backbone.layers)
    assert all(not np.allclose(before[p], after[p]) for p in before if "moving" not in p)
    assert any(not np.allclose(before_bn[p], bn_statistics(result.model)[p]) for p in before_bn)


def test_end_to_end_without_validation_keeps_the_lowest_training_loss(binary_data):
    train, _, _ = binary_data
    model = CXRClassifier("resunet_encoder", input_shape=(32, 32, 3), encoder_filters=(4, 8, 16), name="e2e")
    config = TrainingConfig(**FAST, classifier_recipe="end_to_end", epochs=2, patience=1)
    result = train_classifier(model, train, None, config)
    losses = [epoch["loss"] for epoch in result.history]
    assert result.monitor == "loss" and len(losses) == 2  # no early stop without validation
    assert result.best_epoch == int(np.argmin(losses)) + 1
    with pytest.raises(Exception, match="needs validation data"):
        train_classifier(model, train, None, TrainingConfig(**FAST))
    with pytest.raises(ConfigError, match="nothing to train: head_epochs and max_epochs_per_stage are both 0"):
        train_classifier(model, train, train, TrainingConfig(**FAST, head_epochs=0, max_epochs_per_stage=0))


def test_datasets_warn_when_the_source_alone_tells_the_labels_apart(synthetic_manifest, segmenter):
    def with_sources(source_of):
        return synthetic_manifest.with_rows(row.replace(source=source_of(row)) for row in synthetic_manifest)

    confounded = with_sources(lambda row: "hospital_a" if row.label == "covid" else "hospital_b")
    with pytest.warns(UserWarning, match=r"source alone tells apart covid \(AUC 1.00\)"):
        _, _, info = classifier_datasets(confounded, segmenter, BINARY, 32, config=TrainingConfig(**FAST))
    assert info["source_shortcut"]["risky_labels"] == ["covid"]  # normal: 0.75, it shares hospital_b
    mixed = with_sources(lambda row: ("hospital_a", "hospital_b")[int(row.patient_id[-1], 16) % 2])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        _, _, info = classifier_datasets(mixed, segmenter, BINARY, 32, config=TrainingConfig(**FAST))
    assert info["source_shortcut"]["risky_labels"] == []


def test_a_validation_split_missing_a_class_or_sharing_patients_with_training_is_refused(synthetic_manifest,
                                                                                          segmenter):
    from keras_covidcxr import DatasetError

    no_covid = synthetic_manifest.with_rows(row for row in synthetic_manifest
                                            if not (row.split == "val" and row.label == "covid"))
    with pytest.raises(DatasetError, match=r"the 'val' split has no image of class\(es\) \['covid'\]"):
        classifier_datasets(no_covid, segmenter, BINARY, 32, config=TrainingConfig(**FAST))
    train_patient = next(row.patient_id for row in synthetic_manifest if row.split == "train" and row.task == "cls")
    val_rows = [row for row in synthetic_manifest if row.split == "val" and row.task == "cls"]
    leaked = synthetic_manifest.with_rows(row.replace(patient_id=train_patient) if row is val_rows[0] else row
                                          for row in synthetic_manifest)
    with pytest.raises(DatasetError, match=f"patients in both the 'train' and 'val' splits \\({train_patient}\\)"):
        classifier_datasets(leaked, segmenter, BINARY, 32, config=TrainingConfig(**FAST))

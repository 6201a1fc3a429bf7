"""The paper's two-phase classifier recipe, on images masked by the segmenter.

Paper, section 3.3:
1. **Phase 1, the head.** The backbone (ImageNet weights) is frozen; only the new head (extra
   dense layer, dropout 0.1, output layer) trains, for 5 epochs, with Adam at its defaults.
2. **Phase 2, progressive unfreezing.** The backbone is unfrozen from the top in stages
   (`TrainingConfig.unfreeze_schedule`, by default the top 10%, 25%, 50%, then 100% of its
   blocks; see `unfreezing.py`), each stage with a fresh Adam at 1e-5, "until each model hit its
   highest possible validation accuracy": a stage ends after `patience` epochs without a better
   validation accuracy (or after `max_epochs_per_stage`), and phase 2 ends early when a whole
   stage brings no improvement (unfreezing more is then unlikely to help). The weights with the
   best validation accuracy over the whole run are kept (and restored at every stage boundary).

Throughout, every batch-norm layer is in inference mode with its ImageNet moving statistics.

`TrainingConfig(classifier_recipe="end_to_end")` is ours, for backbones without ImageNet weights
(trained from scratch, or seeded from the segmenter's encoder, as the bundled `covidcxr_lite`):
one step in which every layer trains, batch norm included (there are no ImageNet statistics to
protect), with Adam at `learning_rate` for up to `epochs`, keeping the epoch with the lowest
validation loss (accuracy is too coarse on a few dozen validation images) and stopping after
`patience` epochs without a lower one. Without validation data it trains all `epochs` and keeps
the epoch with the lowest training loss.
The loss is class-weighted with weights from the training split's counts
(`class_weights.balanced_class_weights`: n_samples / (n_classes * count_c)), applied as per-sample
weights by `ClassificationDataset`. Binary classifiers (sigmoid) use binary cross-entropy;
three-class ones (softmax) sparse categorical cross-entropy.

With a `checkpoint_dir`, best/ holds the best weights so far and a resume state is written
after every finished step (phase 1 or a phase-2 stage); a killed run resumes with the first
unfinished step, from the best weights.

Example:
    >>> train, val, info = classifier_datasets(manifest, segmenter, ("non_covid", "covid"), 224)  # doctest: +SKIP
    >>> result = train_classifier(CXRClassifier("densenet201", backbone_weights="imagenet"),
    ...                           train, val, TrainingConfig(), checkpoint_dir="runs/densenet201")  # doctest: +SKIP
"""

import contextlib
import logging
import time
import warnings

import keras
import numpy as np

from keras_covidcxr.data.class_names import check_class_names
from keras_covidcxr.data.manifest import DatasetError
from keras_covidcxr.data.source_shortcut import source_shortcut
from keras_covidcxr.data.splits import refuse_shared_patients
from keras_covidcxr.errors import ConfigError
from keras_covidcxr.preprocessing.preprocessing_config import PreprocessingConfig
from keras_covidcxr.training.augmentation import CLASSIFIER_AUGMENTATION, Augmenter
from keras_covidcxr.training.checkpoints import BestEpochCallback, TrainingCheckpoint
from keras_covidcxr.training.class_weights import balanced_class_weights, missing_classes
from keras_covidcxr.training.config import TrainingConfig, under_dtype_policy
from keras_covidcxr.training.datasets import ClassificationDataset, masked_classifier_inputs
from keras_covidcxr.training.labels import label_indices
from keras_covidcxr.training.results import TrainingResult
from keras_covidcxr.training.unfreezing import all_layers, freeze_backbone, unfreeze_top_blocks

MONITOR = "val_accuracy"


def monitored(config, has_validation=True):
    """(metric, mode) that chooses the best epoch for `config.classifier_recipe`."""
    if config.classifier_recipe == "two_phase":
        return MONITOR, "max"
    return ("val_loss" if has_validation else "loss"), "min"


def classifier_datasets(manifest, segmenter, class_names, input_size, preprocessing=None, config=None,
                        train_split="train", val_split="val", progress=None, channels=3):
    """(train, val, info) `ClassificationDataset`s of a split manifest's cls rows.

    Inputs are masked by `segmenter` exactly as the `Pipeline` masks them (`preprocessing` is the
    pipeline's `PreprocessingConfig`); the training split is shuffled, augmented with the paper's
    classifier settings (if `config.augment`) and class-weighted from its own counts. `info`
    records the counts, class weights and mask warnings. `channels` is the classifier's input
    channels (3, or 1 for gray-input classifiers).
    """
    config = config or TrainingConfig()
    preprocessing = preprocessing or PreprocessingConfig()
    class_names = check_class_names(class_names)
    train_rows, val_rows = manifest.split_rows("cls", train_split), manifest.split_rows("cls", val_split)
    train_labels = label_indices(train_rows, class_names)
    val_labels = label_indices(val_rows, class_names)
    weights = balanced_class_weights(train_labels, len(class_names))
    if missing_classes(weights):
        absent = [class_names[c] for c in missing_classes(weights)]
        raise DatasetError(f"the {train_split!r} split has no image of class(es) {absent}")
    absent = [name for index, name in enumerate(class_names) if index not in set(val_labels.tolist())]
    if absent:  # the best epoch would be picked, and the ensemble fitted, without them
        raise DatasetError(f"the {val_split!r} split has no image of class(es) {absent}; split by patient with "
                           "every label in each split (`covidcxr data split`, which stratifies by label)")
    refuse_shared_patients({train_split: train_rows, val_split: val_rows})
    shortcut = source_shortcut(train_rows)
    if shortcut is not None and shortcut.risky_labels:
        warnings.warn(
            f"in the {train_split!r} split the image's source alone tells apart {shortcut.describe_risky()}: the "
            "model can learn the collection instead of the lungs, and validation images of the same sources will "
            "not show it (`covidcxr data audit` prints the labels by source)",
            stacklevel=2,
        )
    options = {"batch_size": config.batch_size, "workers": config.workers}
    layout = {"channels": channels, "standardized": preprocessing.standardize}

    def report(split):
        return None if progress is None else (lambda done, total: progress(split, done, total))

    train_inputs, train_warnings = masked_classifier_inputs(
        train_rows, segmenter, input_size, preprocessing, progress=report(train_split), **options
    )
    val_inputs, val_warnings = masked_classifier_inputs(
        val_rows, segmenter, input_size, preprocessing, progress=report(val_split), **options
    )
    augmenter = Augmenter(CLASSIFIER_AUGMENTATION, seed=config.seed) if config.augment else None
    num_classes = len(class_names)
    train = ClassificationDataset(
        train_inputs, train_labels, num_classes, config.batch_size, augmenter=augmenter, shuffle=True,
        class_weights=weights, seed=config.seed, workers=config.workers, drop_remainder=True, **layout,
    )
    val = ClassificationDataset(val_inputs, val_labels, num_classes, config.batch_size, workers=config.workers,
                                **layout)

    def counts(labels):
        return {name: int(np.sum(labels == c)) for c, name in enumerate(class_names)}

    info = {
        "class_names": list(class_names),
        "counts": {train_split: counts(train_labels), val_split: counts(val_labels)},
        "class_weights": {class_names[c]: w for c, w in weights.items()},
        "class_weight_rule": "n_samples / (n_classes * count_c) on the training split",
        "mask_warnings": {train_split: train_warnings, val_split: val_warnings},
        "augmentation": CLASSIFIER_AUGMENTATION.to_dict() if config.augment else None,
        "source_shortcut": shortcut and shortcut.to_dict(),
    }
    return train, val, info


def compile_classifier(model, learning_rate, config):
    binary = model.num_classes == 2
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.BinaryCrossentropy() if binary else keras.losses.SparseCategoricalCrossentropy(),
        metrics=[keras.metrics.BinaryAccuracy(name="accuracy")]
        if binary
        else [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        **config.compile_options(),
    )


def recipe_steps(config):
    """The steps of the recipe: ("head", None) then ("unfreeze", fraction) per stage (two-phase),
    or the single ("end_to_end", None)."""
    if config.classifier_recipe == "end_to_end":
        return [("end_to_end", None)]
    steps = [("head", None)] if config.head_epochs else []
    if config.max_epochs_per_stage:
        steps += [("unfreeze", fraction) for fraction in config.unfreeze_schedule]
    return steps


class _StageRetracingNotice(logging.Filter):
    """Drops TensorFlow's "triggered tf.function retracing" notice: each step of the recipe compiles a new
    train step (its trainable weights differ), and fine-tuning predicts with several new models, which
    TensorFlow counts as retracing; here it is expected."""

    def filter(self, record):
        return "tf.function retracing" not in record.getMessage()


@contextlib.contextmanager
def expected_retracing():
    """Inside (or on a decorated function): TensorFlow's retracing notice is dropped (`_StageRetracingNotice`)."""
    logger, notice = logging.getLogger("tensorflow"), _StageRetracingNotice()
    logger.addFilter(notice)
    try:
        yield
    finally:
        logger.removeFilter(notice)


def train_classifier(classifier, train_data, val_data, config=None, checkpoint_dir=None, resume=True,
                     callbacks=()):
    """Train a `CXRClassifier` with the paper's two-phase recipe or end to end (see the module doc).

    Args:
        classifier: a `CXRClassifier` (ImageNet-initialised for the paper's recipe).
        train_data, val_data: `ClassificationDataset`s, e.g. from `classifier_datasets`; val_data
            may be None for the end-to-end recipe only.
        config: a `TrainingConfig` (head_epochs, unfreeze_schedule, learning rates, patience...).
        checkpoint_dir: folder for best/ and the per-step resume state.
        resume: continue a killed run from its newest state in `checkpoint_dir`.
        callbacks: extra Keras callbacks for every `fit` call.

    Returns:
        `TrainingResult` (monitor from `monitored(config)`) whose model holds the best weights;
        `details["steps"]` lists each step with its epochs, unfrozen blocks and best value.
    """
    config = config or TrainingConfig()
    if val_data is None and config.classifier_recipe == "two_phase":
        raise ConfigError("the two-phase recipe needs validation data to decide when to stop")
    if config.classifier_recipe == "two_phase" and config.head_epochs == 0 and config.max_epochs_per_stage == 0:
        raise ConfigError("nothing to train: head_epochs and max_epochs_per_stage are both 0 (--head-epochs, "
                          "--max-epochs-per-stage, --epochs)")
    if config.classifier_recipe == "end_to_end" and config.epochs == 0:
        raise ConfigError("nothing to train: epochs is 0")
    monitor, mode = monitored(config, val_data is not None)
    started = time.monotonic()
    model = under_dtype_policy(classifier, config.mixed_precision)
    checkpoint = TrainingCheckpoint(checkpoint_dir) if checkpoint_dir is not None else None
    if checkpoint is not None and not resume:
        checkpoint.clear()  # a restart: an earlier run's newer steps would win a later resume
    state = {}
    if checkpoint is not None and resume and checkpoint.latest_state() is not None:
        freeze_backbone(model)
        compile_classifier(model, config.head_learning_rate, config)
        state = checkpoint.restore_state(model)
    steps_done = int(state.get("epoch", 0))
    best, best_epoch = state.get("best"), state.get("best_epoch")
    history, step_log = list(state.get("history", [])), list(state.get("steps", []))
    stopped = bool(state.get("stopped", False))
    best_weights = [np.array(w) for w in model.get_weights()] if steps_done else None

    for index, (kind, fraction) in enumerate(recipe_steps(config)):
        if index < steps_done or stopped:
            continue
        if kind == "head":
            freeze_backbone(model)
            learning_rate, epochs, patience, blocks = config.head_learning_rate, config.head_epochs, 0, []
        elif kind == "end_to_end":
            model.trainable = True
            for layer in all_layers(model):
                layer.trainable = True
            learning_rate, epochs, patience, blocks = config.learning_rate, config.epochs, config.patience, ["all"]
        else:
            blocks = unfreeze_top_blocks(model, fraction)
            learning_rate, epochs, patience = config.finetune_learning_rate, config.max_epochs_per_stage, config.patience
        compile_classifier(model, learning_rate, config)
        epochs_before, best_before = len(history), best
        if hasattr(train_data, "set_epoch"):
            train_data.set_epoch(epochs_before)
        keeper = BestEpochCallback(
            monitor, mode, patience=patience if val_data is not None else 0, checkpoint=checkpoint, best=best, best_epoch=best_epoch,
            history=history, patience_from=epochs_before, save_states=False,
        )
        with expected_retracing():
            model.fit(
                train_data,
                validation_data=val_data,
                initial_epoch=epochs_before,
                epochs=epochs_before + epochs,
                callbacks=[keeper, *callbacks],
                verbose=config.verbose,
            )
        history, best, best_epoch = keeper.history, keeper.best, keeper.best_epoch
        if keeper.best_weights is not None:
            best_weights = keeper.best_weights
        if best_weights is not None:
            model.set_weights(best_weights)  # every step starts from the best weights so far
        step_log.append({
            "step": kind,
            "fraction": fraction,
            "trainable_blocks": blocks,
            "epochs": len(history) - epochs_before,
            "best_after": best,
            "improved": keeper.improved,
        })
        # paper: unfreeze "until each model hit its highest possible validation accuracy"
        stopped = kind == "unfreeze" and best_before is not None and not keeper.improved
        if checkpoint is not None:
            checkpoint.save_state(
                model,
                index + 1,
                {"monitor": monitor, "best": best, "best_epoch": best_epoch, "history": history,
                 "steps": step_log, "stopped": stopped, "config": config.to_dict()},
                with_optimizer=False,
            )
    # Leave the backbone frozen and batch norm in inference mode, so a later fit() on the returned
    # model cannot disturb the ImageNet statistics by accident.
    freeze_backbone(model)
    result = TrainingResult(
        model=model,
        monitor=monitor,
        best_value=best,
        best_epoch=best_epoch,
        history=history,
        resumed_from_epoch=steps_done,
        seconds=time.monotonic() - started,
        details={"steps": step_log},
    )
    if checkpoint is not None:
        checkpoint.write_summary({"component": "classifier", "backbone": model.backbone_name,
                                  **result.summary(), "config": config.to_dict()})
    return result

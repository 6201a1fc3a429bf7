"""The end-to-end recipes behind `covidcxr train ...` and the examples: manifest in, checkpoint or
preset out, with the data and the settings recorded next to the weights.

1. `run_segmenter_recipe(manifest, "runs/seg")` -> runs/seg/best (the ResUnet) + summary.json.
2. `run_classifier_recipe(manifest, "runs/seg", "runs/densenet201", backbone="densenet201")`, once
   per backbone -> runs/NAME/best + summary.json (class names and masking settings included).
3. `assemble_preset(manifest, "runs/seg", ["runs/densenet201", ...], "my_preset")`: fits the
   ensemble on the validation split and writes the `Pipeline` preset.
"""

import dataclasses
from pathlib import Path

import keras

from keras_covidcxr.data.manifest import Manifest, read_manifest
from keras_covidcxr.data.splits import refuse_shared_patients
from keras_covidcxr.errors import ConfigError
from keras_covidcxr.models.classifier.backbones import check_backbone_name
from keras_covidcxr.models.classifier.cxr_classifier import CXRClassifier
from keras_covidcxr.models.resunet.resunet import ResUnet
from keras_covidcxr.preprocessing.preprocessing_config import PreprocessingConfig
from keras_covidcxr.presets import component_io
from keras_covidcxr.presets.checksums import sha256_of_file
from keras_covidcxr.training.assembly import assemble_pipeline, member_probabilities, validation_report
from keras_covidcxr.training.augmentation import SEGMENTER_AUGMENTATION, Augmenter
from keras_covidcxr.training.checkpoints import TrainingCheckpoint, load_checkpoint
from keras_covidcxr.training.classifier_training import classifier_datasets, train_classifier
from keras_covidcxr.training.config import TrainingConfig
from keras_covidcxr.training.datasets import (
    ClassificationDataset,
    SegmentationDataset,
    masked_classifier_inputs,
)
from keras_covidcxr.training.ensemble_fitting import fit_ensemble_weights
from keras_covidcxr.training.labels import default_class_names, label_indices
from keras_covidcxr.training.provenance import data_provenance, rows_sha256
from keras_covidcxr.training.segmenter_training import train_segmenter

PAPER = "Hertel & Benlamri 2022, section 3.3"


def _manifest(manifest):
    """(Manifest, path or None) from a Manifest or a CSV path."""
    if isinstance(manifest, Manifest):
        return manifest, None
    return read_manifest(manifest), Path(manifest)


def run_segmenter_recipe(manifest, out, input_size=256, filters=(64, 128, 256, 512), config=None, resume=True,
                         callbacks=(), augmentation=SEGMENTER_AUGMENTATION):
    """Train a ResUnet on the manifest's seg rows (train split; val split monitored).

    `augmentation` defaults to the paper's (`SEGMENTER_AUGMENTATION`); `MILD_SEGMENTER_AUGMENTATION`
    suits small models.

    Resuming continues the checkpoint in `out`; one of another architecture is refused (resume=False
    trains anew).
    """
    manifest, manifest_path = _manifest(manifest)
    config = config or TrainingConfig()
    checkpoint = TrainingCheckpoint(out)
    checkpoint.refuse_foreign_folder()
    pairs = {split: manifest.split_rows("seg", split) for split in ("train", "val")}  # before the folder is written
    refuse_shared_patients(pairs)
    if resume and checkpoint.has_best():
        segmenter = _load_component(checkpoint.folder, ResUnet, "segmenter")
        _check_resumed(out, "segmenter", {"input size": segmenter.input_size, "filters": tuple(segmenter.filters)},
                       {"input size": input_size, "filters": tuple(filters)})
    run = {"component": "segmenter", "data": rows_sha256(manifest),
           "augmentation": augmentation.to_dict() if config.augment else None, "config": config.to_dict()}
    with checkpoint.started(run, resume):
        if not (resume and checkpoint.has_best()):
            keras.utils.set_random_seed(config.seed)  # the initial weights too, so a rerun reproduces the run
            segmenter = ResUnet(input_size=input_size, filters=tuple(filters))
        size = segmenter.input_size
        augmenter = Augmenter(augmentation, seed=config.seed) if config.augment else None
        train = SegmentationDataset(pairs["train"], size, config.batch_size, augmenter,
                                    shuffle=True, seed=config.seed, workers=config.workers, drop_remainder=True)
        val = SegmentationDataset(pairs["val"], size, config.batch_size, workers=config.workers)
        statistics = SegmentationDataset(pairs["train"], size, config.batch_size, workers=config.workers)
        result = train_segmenter(segmenter, train, val, config, checkpoint_dir=out, resume=resume, callbacks=callbacks,
                                 batch_norm_data=statistics)
        summary = {
            "component": "segmenter",
            "recipe": "ResUnet, Dice + BCE, Adam" + (
                f"; augmentation of the paper ({PAPER})" if augmentation == SEGMENTER_AUGMENTATION else ""
            ),
            "architecture": {"input_size": size, "filters": list(segmenter.filters)},
            "augmentation": augmentation.to_dict() if config.augment else None,
            "data": data_provenance(manifest, manifest_path),
            "pairs": {"train": train.n, "val": val.n},
            **result.summary(),
            "config": config.to_dict(),
        }
        checkpoint.write_summary(summary)
        result.details.update(pairs=summary["pairs"])
        return result


def _weights_sha256(folder):
    """sha256 of the weights of a checkpoint folder's best model (or of a component folder's)."""
    folder = Path(folder)
    weights = folder / component_io.WEIGHTS_FILE
    return sha256_of_file(weights if weights.is_file() else TrainingCheckpoint(folder).best_dir / component_io.WEIGHTS_FILE)


def _load_component(folder, cls, what):
    """The best model of a checkpoint folder, refused when it is not a `cls` (a classifier run given as the
    segmenter, a segmenter run as a member)."""
    model = load_checkpoint(folder)
    if not isinstance(model, cls):
        raise ConfigError(f"{folder}: holds a {type(model).__name__} checkpoint, not a {what} ({cls.__name__})")
    return model


def _check_resumed(out, what, saved, asked):
    """Refuse to resume a checkpoint of another architecture than the one asked for (it would be kept silently)."""
    differ = [f"{key} {saved[key]} there, {asked[key]} asked" for key in saved if saved[key] != asked[key]]
    if differ:
        raise ConfigError(f"{out}: holds a {what} checkpoint of another architecture ({'; '.join(differ)}); rerun "
                          "with its settings to resume, or restart it (--restart, resume=False) to train anew")


def run_classifier_recipe(manifest, segmenter_checkpoint, out, backbone="densenet201", class_names=None,
                          num_classes=2, input_size=224, head_units=None, backbone_weights="imagenet",
                          preprocessing=None, name=None, config=None, resume=True, callbacks=(), progress=None,
                          input_normalization=None):
    """Train one classifier with the two-phase recipe on images masked by the trained segmenter.

    `backbone_weights` is "imagenet" (downloaded by Keras), None, or a local weights file (see
    `CXRClassifier`). With `input_normalization="imagenet"` the classifier reads gray [0, 1]
    masked images and normalises them itself (the preprocessing then does not standardise).
    """
    manifest, manifest_path = _manifest(manifest)
    config = config or TrainingConfig()
    class_names = tuple(class_names or default_class_names(num_classes))
    if len(set(class_names)) != len(class_names) or len(class_names) < 2:
        raise ConfigError(f"class names {list(class_names)}: need at least two, each named once")
    preprocessing = preprocessing or PreprocessingConfig()
    if input_normalization is not None:
        preprocessing = dataclasses.replace(preprocessing, standardize=False)
    channels = 1 if input_normalization is not None else 3
    check_backbone_name(backbone)
    # before the run folder is written
    refuse_shared_patients({split: manifest.split_rows("cls", split) for split in ("train", "val")})
    TrainingCheckpoint.of(segmenter_checkpoint).require_finished("segmenter")
    segmenter = _load_component(segmenter_checkpoint, ResUnet, "segmenter")
    checkpoint = TrainingCheckpoint(out)
    checkpoint.refuse_foreign_folder()
    resuming = resume and checkpoint.latest_state() is not None and checkpoint.has_best()
    if resuming:
        classifier = _load_component(checkpoint.folder, CXRClassifier, "classifier")
        _check_resumed(out, "classifier",
                       {"backbone": classifier.backbone_name, "input size": classifier.image_shape[0],
                        "classes": classifier.num_classes},
                       {"backbone": backbone, "input size": input_size, "classes": len(class_names)})
    segmenter_sha256 = _weights_sha256(segmenter_checkpoint)
    run = {"component": "classifier", "data": rows_sha256(manifest), "segmenter_sha256": segmenter_sha256,
           "class_names": list(class_names), "preprocessing": preprocessing.to_dict(),
           "backbone_weights": None if backbone_weights is None else str(backbone_weights), "config": config.to_dict()}
    with checkpoint.started(run, resume):
        if not resuming:
            keras.utils.set_random_seed(config.seed)  # the new head's initial weights too
            classifier = CXRClassifier(backbone, num_classes=len(class_names), head_units=head_units,
                                       input_shape=(input_size, input_size, channels), backbone_weights=backbone_weights,
                                       input_normalization=input_normalization, name=name or backbone)
        train, val, info = classifier_datasets(manifest, segmenter, class_names, classifier.image_shape[0],
                                               preprocessing, config, progress=progress,
                                               channels=classifier.image_shape[-1])
        result = train_classifier(classifier, train, val, config, checkpoint_dir=out, resume=resume, callbacks=callbacks)
        summary = {
            "component": "classifier",
            "name": result.model.name,
            "backbone": result.model.backbone_name,
            "backbone_weights": None if backbone_weights is None else str(backbone_weights),
            "recipe": f"two-phase: head only, then progressive unfreezing; batch norm frozen ({PAPER})",
            "class_names": list(class_names),
            "preprocessing": preprocessing.to_dict(),
            "segmenter": str(segmenter_checkpoint),
            "segmenter_sha256": segmenter_sha256,
            "data": data_provenance(manifest, manifest_path),
            "classifier_inputs": info,
            **result.summary(),
            "config": config.to_dict(),
        }
        checkpoint.write_summary(summary)
        result.details["classifier_inputs"] = info
        return result


@dataclasses.dataclass
class AssembledPreset:
    """What `assemble_preset` built: the pipeline, where it went, and its training record."""

    pipeline: object
    preset: Path | None
    training: dict


def _check_members_trained_here(member_checkpoints, summaries, segmenter_checkpoint, manifest_rows_sha256):
    """Refuse members trained with another segmenter (their crops) or on another manifest (its validation
    split may hold their training patients, and the preset would record the wrong ones)."""
    segmenter_sha256 = _weights_sha256(segmenter_checkpoint)
    for folder, summary in zip(member_checkpoints, summaries):
        if not summary:
            continue
        trained_with = summary.get("segmenter_sha256")  # absent from summaries written before 0.4.11
        if trained_with is not None and trained_with != segmenter_sha256:
            named = summary.get("segmenter")
            if named and Path(named).resolve() == Path(segmenter_checkpoint).resolve():
                raise ConfigError(f"{folder}: was trained on crops of {segmenter_checkpoint} before its weights changed "
                                  "(retrained or resumed since); train the classifier again with it")
            raise ConfigError(f"{folder}: was trained on crops of another segmenter ({named}), "
                              f"not {segmenter_checkpoint}'s; assemble it with that segmenter")
        trained_on = (summary.get("data") or {}).get("rows_sha256")  # absent before 0.4.11
        if trained_on is not None and trained_on != manifest_rows_sha256:
            raise ConfigError(f"{folder}: was trained on another manifest ({(summary.get('data') or {}).get('manifest')}, "
                              f"sha256 {trained_on[:12]}...); fit the ensemble on the same manifest, so that its "
                              "validation split holds none of the member's training patients")


def _refuse_different_inputs(folders, members):
    """An ensemble feeds its members one crop: refuse members of different input sizes or channels, naming each."""
    shapes = [member.image_shape for member in members]
    if len(set(shapes)) > 1:
        described = "; ".join(
            f"{folder}: {shape[0]} px, {shape[-1]} channel{'s' if shape[-1] > 1 else ''}"
            + (" (--imagenet-normalization)" if shape[-1] == 1 else "")
            for folder, shape in zip(folders, shapes)
        )
        raise ConfigError(f"the members take different inputs ({described}); an ensemble feeds them one crop: train "
                          "them at one --input-size, all with or all without --imagenet-normalization")


def _agreeing(folders, summaries, key, default):
    """The `key` of the members' summaries, which must agree (a `ConfigError` names each member's value)."""
    found = [(folder, s[key]) for folder, s in zip(folders, summaries) if s and s.get(key) is not None]
    if len({repr(value) for _, value in found}) > 1:
        if all(isinstance(value, dict) for _, value in found):  # name the settings that differ, not whole dicts
            keys = sorted({k for _, value in found for k in value if len({repr(v.get(k)) for _, v in found}) > 1})
            found = [(folder, {k: value.get(k) for k in keys}) for folder, value in found]
        raise ConfigError(f"the members were trained with different {key}: "
                          + "; ".join(f"{folder}: {value}" for folder, value in found))
    return found[0][1] if found else default


def assemble_preset(manifest, segmenter_checkpoint, member_checkpoints, out=None, ensemble="weighted_average",
                    method="log_loss", tie_break="mean_probability", description=None, overwrite=False,
                    config=None):
    """Build the Pipeline preset from trained checkpoints, fitting the ensemble on the val split.

    Class names and masking settings come from the members' summary.json (they must agree).
    The weighted-average weights are fitted with `fit_ensemble_weights(method=...)` and, for two
    classes, the Youden threshold; a majority vote only records its validation accuracy. Two-class
    thresholds that decide (the weighted average's, the majority vote's members') are checked on the
    validation scores: a preset answering one class for nearly every validation film is refused. The
    preset's metadata.training records the data, each component's recipe and the fit.
    """
    manifest, manifest_path = _manifest(manifest)
    config = config or TrainingConfig()
    if not member_checkpoints:
        raise ConfigError("give at least one member checkpoint")
    TrainingCheckpoint.of(segmenter_checkpoint).require_finished("segmenter")
    for folder in member_checkpoints:  # an unfinished member's summary would be missing: no leak check, no record
        TrainingCheckpoint.of(folder).require_finished("classifier")
    segmenter = _load_component(segmenter_checkpoint, ResUnet, "segmenter")
    members = [_load_component(folder, CXRClassifier, "classifier") for folder in member_checkpoints]
    _refuse_different_inputs(member_checkpoints, members)
    summaries = [TrainingCheckpoint.of(folder).read_summary() for folder in member_checkpoints]
    _check_members_trained_here(member_checkpoints, summaries, segmenter_checkpoint, rows_sha256(manifest))
    class_names = tuple(_agreeing(member_checkpoints, summaries, "class_names",
                                  default_class_names(members[0].num_classes)))
    preprocessing = PreprocessingConfig.from_dict(_agreeing(member_checkpoints, summaries, "preprocessing",
                                                            PreprocessingConfig().to_dict()))
    val_rows = manifest.split_rows("cls", "val")
    size = members[0].image_shape[0]
    inputs, warnings = masked_classifier_inputs(val_rows, segmenter, size, preprocessing, config.batch_size, config.workers)
    labels = label_indices(val_rows, class_names)
    val = ClassificationDataset(inputs, labels, len(class_names), config.batch_size)
    fit = None
    val_probabilities = member_probabilities(members, val, config.batch_size)
    # Two classes: refuse thresholds that put nearly every validation film in one class.
    val_scores = val_probabilities[..., 1] if len(class_names) == 2 else None
    if ensemble == "weighted_average":
        fit = fit_ensemble_weights(val_probabilities, labels, [m.name for m in members], method=method)
        pipeline = assemble_pipeline(segmenter, members, class_names, ensemble, fit.weights, fit.threshold,
                                     preprocessing=preprocessing, validation_scores=val_scores)
    else:
        pipeline = assemble_pipeline(segmenter, members, class_names, ensemble, tie_break=tie_break,
                                     preprocessing=preprocessing, validation_scores=val_scores)
    segmenter_summary = TrainingCheckpoint.of(segmenter_checkpoint).read_summary()
    training = {
        "recipe": {
            "paper": PAPER,
            "segmenter": segmenter_summary,
            "members": dict(zip((m.name for m in members), summaries)),
            "ensemble": ensemble,
            "ensemble_fit_method": method if fit is not None else None,
        },
        "data": {**data_provenance(manifest, manifest_path, fitted_splits=("train", "val")),
                 "val_mask_warnings": warnings},
        "ensemble_fit": None if fit is None else fit.to_dict(),
        "validation": validation_report(pipeline.ensemble, val, labels, class_names, config.batch_size),
    }
    pipeline.metadata = {"description": description, "training": training}
    preset = None
    if out is not None:
        preset = pipeline.save_to_preset(out, training=training, description=description, overwrite=overwrite)
    return AssembledPreset(pipeline, preset, training)

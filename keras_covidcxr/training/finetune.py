"""Fine-tuning a preset on new data: continue training, or new heads for other classes.

`finetune(preset, manifest)` loads the pipeline, masks the manifest's cls images with the
preset's own segmenter and preprocessing (exactly as at inference), and trains every member
from its current weights with one of two recipes:

- **linear_probe** (the default for presets built that way, like covidcxr_lite): each member keeps
  its frozen backbone and gets a new logistic-regression head (multinomial for new classes) fitted
  on its pooled features of the training split, as the parent's heads were fitted on the parent's
  films.
- **train**: the paper's two-phase recipe (`classifier_training`), head first, then progressive
  unfreezing.

and in one of two modes:

- **continue** (same class names): the members go on from their heads (the linear probe fits them
  anew).
- **replace_head** (other class names, e.g. 3 classes from a binary preset): each member gets a
  fresh output layer for the new classes; the backbone and the extra dense layer keep their
  trained weights. Phase 1 (head only) then matters most.

The segmenter is kept as it is. A weighted-average ensemble's weights and (two classes)
operating threshold are refitted on the validation split; a majority vote keeps its rule; members
that voted at their own thresholds get new ones (Youden's J on the validation split), and every
two-class threshold is checked against the validation scores (`check_operating_threshold`: the
fine-tuned preset is refused if one would put nearly every film in one class). The
parent's out-of-distribution check is refitted on the fine-tuned member's features (reference: the
training split; threshold: the same quantile of the validation split's distances), and a parent that
referred out-of-distribution films, or films failing an input check, still does; the parent's
calibration and refer band, fitted on its own scores, are not carried over. The result is saved as
a NEW preset (the parent is never modified) whose metadata.training records the parent preset, the
data (manifest checksum, counts, digests of the patients fitted on, the parent's included) and the
recipe (all settings).
"""

import contextlib
import dataclasses
import os
import warnings
from pathlib import Path

import keras

from keras_covidcxr.data.class_names import check_class_names
from keras_covidcxr.data.manifest import Manifest, read_manifest
from keras_covidcxr.errors import ConfigError
from keras_covidcxr.models.classifier.cxr_classifier import CXRClassifier
from keras_covidcxr.models.ensemble.weighted_average_ensemble import WeightedAverageEnsemble
from keras_covidcxr.models.pipeline.out_of_distribution import fit_feature_distance_check
from keras_covidcxr.models.pipeline.pipeline import Pipeline
from keras_covidcxr.models.pipeline.refer_rule import ReferRule
from keras_covidcxr.presets.destination import check_preset_destination
from keras_covidcxr.training.assembly import assemble_pipeline, member_probabilities, validation_report
from keras_covidcxr.training.checkpoints import TrainingCheckpoint
from keras_covidcxr.training.classifier_training import (
    classifier_datasets,
    expected_retracing,
    train_classifier,
)
from keras_covidcxr.training.config import TrainingConfig
from keras_covidcxr.training.ensemble_fitting import fit_ensemble_weights, fit_member_thresholds
from keras_covidcxr.training.linear_head import fit_linear_head, pooled_features
from keras_covidcxr.training.provenance import (
    data_provenance,
    fitted_overlap,
    fitted_patient_digests,
    rows_sha256,
)


@dataclasses.dataclass
class FinetuneResult:
    """The fine-tuned `pipeline`, where it was saved (`preset`, or None), and what happened."""

    pipeline: Pipeline
    preset: Path | None
    mode: str
    training: dict


def with_new_head(member, num_classes):
    """A copy of a `CXRClassifier` with a fresh output layer for `num_classes` classes.

    Backbone and extra dense layer keep their weights; only `head_logits` starts anew.
    """
    replacement = CXRClassifier(
        backbone=member.backbone_name,
        num_classes=num_classes,
        head_units=member.head_units,
        dropout=member.dropout,
        input_shape=member.image_shape,
        backbone_weights=None,
        input_normalization=member.input_normalization,
        encoder_filters=member.encoder_filters,
        feature_layer=member.feature_layer,
        mirror_average=member.mirror_average,
        name=member.name,
    )
    replacement.backbone.set_weights(member.backbone.get_weights())
    for layer in member.head.layers:
        if layer.weights and layer.name != "head_logits":
            replacement.head.get_layer(layer.name).set_weights(layer.get_weights())
    return replacement


FINETUNE_RECIPES = ("auto", "linear_probe", "train")
LINEAR_PROBE_REGULARIZATION = 0.05  # logistic-regression C, as the bundled preset's heads


def finetune_recipe(recipe, members):
    """The recipe `finetune` runs: "auto" is "linear_probe" when every member is a frozen backbone with a
    logistic-regression head (`head_units=0`, as covidcxr_lite's), else "train"."""
    if recipe not in FINETUNE_RECIPES:
        raise ConfigError(f"recipe must be one of {FINETUNE_RECIPES}, got {recipe!r}")
    probe_fits = all(not m.head_units for m in members)
    if recipe == "linear_probe" and not probe_fits:
        raise ConfigError("the linear-probe recipe needs members with logistic-regression heads (head_units=0); "
                          "use recipe 'train'")
    if recipe == "auto":
        return "linear_probe" if probe_fits else "train"
    return recipe


# The settings only the gradient recipe reads; the linear probe fits its heads in closed form.
GRADIENT_SETTINGS = ("classifier_recipe", "epochs", "learning_rate", "head_epochs", "head_learning_rate",
                     "finetune_learning_rate", "unfreeze_schedule", "max_epochs_per_stage", "patience", "augment")


class UnusedSettingsWarning(UserWarning):
    """Settings given to the linear probe that only recipe 'train' reads; `settings` names them."""

    def __init__(self, settings):
        self.settings = tuple(settings)
        super().__init__(f"the linear probe fits each head in closed form and does not use {', '.join(settings)} "
                         "(settings of recipe 'train')")


def unused_settings(config):
    """The gradient recipe's settings that `config` changes from their defaults (unused by the linear probe)."""
    default = TrainingConfig()
    return [name for name in GRADIENT_SETTINGS if getattr(config, name) != getattr(default, name)]


def copied(member):
    """A new `CXRClassifier` with `member`'s configuration and weights: fine-tuning trains the copy, so a
    `Pipeline` passed to `finetune` stays as it was."""
    copy = CXRClassifier.from_config(member.get_config())
    copy.set_weights(member.get_weights())
    return copy


def fit_head_on_frozen_features(member, train):
    """Give a linear-head member a new logistic-regression head (class-balanced, C 0.05; multinomial for more
    than two classes) on its frozen, pooled features of the training split. Returns the summary recorded.

    Why not gradient steps: the head's weights act on raw features (a fitted regression's coefficients divided
    by the features' spread), so Adam's steps of 1e-3 barely move them in a few epochs.
    """
    fit_linear_head(member, pooled_features(member, train.inputs), train.labels, LINEAR_PROBE_REGULARIZATION)
    return {"recipe": "linear_probe", "regularization": LINEAR_PROBE_REGULARIZATION, "fitted_on": train.n}


def refitted_out_of_distribution(check, members, train, val):
    """The parent's `FeatureDistanceCheck` refitted on its member's fine-tuned features: reference the
    training split, threshold the same quantile of the validation split's distances. None when there was
    no check (or too few training images for its neighbours): fine-tuning changes the backbone, so the
    parent's reference features no longer describe it."""
    if check is None:
        return None
    member = next((m for m in members if m.name == check.member), None)
    if member is None or train.n < check.neighbours:
        return None
    return fit_feature_distance_check(check.member, pooled_features(member, train.inputs),
                                      pooled_features(member, val.inputs), check.neighbours, check.quantile or 0.99)


def parent_training_overlap(metadata, manifest):
    """{split: {"images", "patients", "of_images"}} of the train and val cls films whose patients the parent preset
    (its `metadata`) was fitted on, for the splits that have any; None when the parent records no patients."""
    overlap = {split: fitted_overlap(metadata, manifest.filter(task="cls", split=split)) for split in ("train", "val")}
    if overlap["train"] is None:  # the parent records no patients
        return None
    return {split: counts for split, counts in overlap.items() if counts["images"]}


# Below this, weights and a threshold fitted on the validation split are mostly noise: with 10 positives a
# threshold moves sensitivity in steps of 10 points.
MIN_VALIDATION_IMAGES = 50


def finetune(pipeline, manifest, out=None, class_names=None, config=None, manifest_path=None, parent=None,
             recipe="auto", refit_ensemble=True, checkpoint_dir=None, callbacks=(), description=None, overwrite=False,
             progress=None, resume=True):
    """Fine-tune a pipeline's classifiers on a split manifest; optionally save a new preset.

    Args:
        pipeline: a `Pipeline`, or a preset handle (folder, registered name, hf://...).
        manifest: a `Manifest` with train and val splits, or the path of its CSV.
        out: folder of the new preset (None: do not save).
        class_names: the new classes (default: the pipeline's; different names replace heads).
        config: a `TrainingConfig` (the classifier recipe's settings).
        manifest_path: the CSV the manifest came from (for its checksum in the provenance).
        parent: how to name the parent preset in the provenance (default: the handle, if one
            was given).
        recipe: "linear_probe" (refit each member's logistic head on its frozen features of the
            training split: minutes on a CPU), "train" (`config`'s classifier recipe, from the
            members' weights) or "auto" (the linear probe for presets built that way, e.g.
            covidcxr_lite; else "train").
        refit_ensemble: refit weighted-average weights and thresholds on the validation split (and
            check them there); False keeps the parent's.
        checkpoint_dir: per-member checkpoint folders go under it (resumable).
        resume: continue the runs kept in `checkpoint_dir`; False removes them and trains anew.
        callbacks: extra Keras callbacks for every fit.
        description: the new preset's description.
        overwrite: replace an existing preset at `out`.
        progress: callable(message) told what is happening.

    Returns:
        `FinetuneResult`.

    Example:
        >>> result = finetune("./binary_preset", "hospital_manifest.csv", out="./hospital_preset")  # doctest: +SKIP
        >>> Pipeline.from_preset("./hospital_preset").predict(["chest.png"])  # doctest: +SKIP
    """
    say = progress or (lambda message: None)
    if class_names is not None:
        class_names = check_class_names(class_names)
    if not isinstance(pipeline, Pipeline):
        parent = parent or (os.path.abspath(pipeline) if os.path.isdir(pipeline) else str(pipeline))
        if out is not None:  # before loading anything: a wrong --out costs a second
            check_preset_destination(out, overwrite, parent=pipeline)
        pipeline = Pipeline.from_preset(pipeline)
    elif out is not None:
        check_preset_destination(out, overwrite, parent=pipeline.preset_folder)
    parent = parent or (pipeline.preset_folder and str(pipeline.preset_folder))
    if not isinstance(manifest, Manifest):
        manifest_path = manifest_path or manifest
        manifest = read_manifest(manifest)
    config = config or TrainingConfig()
    class_names = class_names or tuple(pipeline.class_names)
    overlap = parent_training_overlap(pipeline.metadata, manifest)
    if overlap:
        shown = "; ".join(f"{n['images']} of the {n['of_images']} {split} films ({n['patients']} patients)"
                          for split, n in overlap.items())
        warnings.warn(f"{shown} belong to patients the parent preset was trained on: the validation figures, and the "
                      "weights and threshold fitted on them, are optimistic; fine-tune and validate on other "
                      "patients' films", stacklevel=2)
    mode = "continue" if class_names == tuple(pipeline.class_names) else "replace_head"
    recipe = finetune_recipe(recipe, pipeline.ensemble.members)
    unused = unused_settings(config) if recipe == "linear_probe" else []
    if unused:
        warnings.warn(UnusedSettingsWarning(unused), stacklevel=2)
    if recipe == "linear_probe" and checkpoint_dir is not None:
        warnings.warn(f"the linear probe fits in one step and keeps no checkpoints: {checkpoint_dir} is not used",
                      stacklevel=2)

    if recipe == "train":
        say("same classes: the members keep training from the preset's weights" if mode == "continue" else
            f"new classes {list(class_names)}: each member gets a new head")
    # it predicts with each new member and feature extractor in turn, which TensorFlow counts as retracing; a
    # block, not a decorator, so that the warnings below still name the caller's line (stacklevel=2)
    with expected_retracing():
        say("masking the images with the preset's segmenter")
        # the linear probe reads each training film once, un-augmented: its record must not list an augmentation
        inputs_config = config.replace(augment=False) if recipe == "linear_probe" else config
        train, val, data_info = classifier_datasets(
            manifest, pipeline.segmenter, class_names, pipeline.classifier_size, pipeline.preprocessing, inputs_config,
            channels=pipeline.classifier_channels,
        )
        members, member_results = [], {}
        if recipe == "train":  # new heads' initial weights and the shuffles, as the train recipes seed them
            keras.utils.set_random_seed(config.seed)
        for member in pipeline.ensemble.members:
            member = with_new_head(member, len(class_names)) if mode == "replace_head" else copied(member)
            if recipe == "linear_probe":
                say(f"fitting {member.name}'s logistic head on its frozen features of the training split")
                member_results[member.name] = fit_head_on_frozen_features(member, train)
                members.append(member)
                continue
            say(f"training {member.name}")
            folder = None if checkpoint_dir is None else Path(checkpoint_dir) / member.name
            run = {"component": "finetune", "data": rows_sha256(manifest), "parent_files": pipeline.metadata.get("files"),
                   "class_names": list(class_names), "config": config.to_dict()}
            # a folder of another fine-tuning (data, parent, classes) is not resumed
            with contextlib.nullcontext() if folder is None else TrainingCheckpoint(folder).started(run, resume):
                result = train_classifier(member, train, val, config, checkpoint_dir=folder, resume=resume,
                                          callbacks=callbacks)
            members.append(result.model)
            member_results[member.name] = result.summary()

        out_of_distribution = refitted_out_of_distribution(pipeline.out_of_distribution, members, train, val)
        if out_of_distribution is not None:
            say(f"refitted the out-of-distribution check on {out_of_distribution.member}'s fine-tuned features")
            if val.n < MIN_VALIDATION_IMAGES:
                warnings.warn(
                    f"the out-of-distribution threshold is the {out_of_distribution.quantile:.0%} quantile of {val.n} "
                    f"validation films' distances (fewer than {MIN_VALIDATION_IMAGES}): expect films like the training "
                    "ones to be flagged out of distribution, and referred",
                    stacklevel=2,
                )
        elif (parent_check := pipeline.out_of_distribution) is not None:
            missing = parent_check.member not in {m.name for m in members}
            why = (f"its member {parent_check.member!r} is not in the fine-tuned ensemble" if missing else
                   f"it compares a film with its {parent_check.neighbours} nearest training films, and the training "
                   f"split has {train.n}")
            if recipe == "linear_probe" and not missing:  # frozen backbones: the parent's reference still fits
                out_of_distribution = parent_check
                warnings.warn(f"the out-of-distribution check is the parent's, not refitted on your films ({why}): "
                              "films unlike the parent's training films are flagged, and referred", stacklevel=2)
            else:
                warnings.warn(f"the parent's out-of-distribution check is dropped: {why}", stacklevel=2)
        old = pipeline.ensemble
        fit = None
        val_probabilities = member_probabilities(members, val) if refit_ensemble else None
        member_thresholds = old.member_thresholds if mode == "continue" else None
        # Two classes, refitted: the assembly refuses thresholds that put nearly every validation film in one class.
        val_scores = val_probabilities[..., 1] if val_probabilities is not None and len(class_names) == 2 else None
        if val_scores is not None and old.member_thresholds is not None:  # the parent's members voted at their own
            member_thresholds = fit_member_thresholds(val_scores, val.labels)
            say("refitting each member's vote threshold on the validation split (Youden)")
        # the parent's film checks carry over (the segmenter, which they read, is kept); its band, fitted around the
        # parent's threshold, does not
        parent_rule = pipeline.refer_rule
        ood = bool(parent_rule and parent_rule.out_of_distribution and out_of_distribution is not None)
        checks = bool(parent_rule and parent_rule.input_checks)
        refer_rule = ReferRule(0.0, 0.0, out_of_distribution=ood or None, input_checks=checks or None) if (
            ood or checks) else None
        if isinstance(old, WeightedAverageEnsemble):
            weights, threshold = old.weights_normalised, old.threshold if mode == "continue" else 0.5
            if refit_ensemble:
                say("fitting the ensemble weights on the validation split")
                if val.n < MIN_VALIDATION_IMAGES:
                    warnings.warn(
                        f"the ensemble weights and threshold are fitted on {val.n} validation images (fewer than "
                        f"{MIN_VALIDATION_IMAGES}): expect them to move a lot with other data",
                        stacklevel=2,
                    )
                fit = fit_ensemble_weights(val_probabilities, val.labels, [m.name for m in members])
                weights, threshold = fit.weights, fit.threshold
            new = assemble_pipeline(pipeline.segmenter, members, class_names, "weighted_average", weights, threshold,
                                    preprocessing=pipeline.preprocessing, input_contract=pipeline.input_contract,
                                    refer_rule=refer_rule, out_of_distribution=out_of_distribution,
                                    member_thresholds=member_thresholds, validation_scores=val_scores)
        else:
            tie_break = old.tie_break if mode == "continue" or isinstance(old.tie_break, str) else "mean_probability"
            new = assemble_pipeline(pipeline.segmenter, members, class_names, "majority_vote", tie_break=tie_break,
                                    preprocessing=pipeline.preprocessing, input_contract=pipeline.input_contract,
                                    refer_rule=refer_rule, out_of_distribution=out_of_distribution,
                                    member_thresholds=member_thresholds, validation_scores=val_scores)

        parent_metadata = pipeline.metadata
        training = {
            "recipe": {
                "name": "finetune",
                "mode": mode,
                "members_recipe": recipe,
                "classifiers": (f"linear probe: frozen backbones, class-balanced logistic regression (C "
                                f"{LINEAR_PROBE_REGULARIZATION}) on the training split's pooled features"
                                if recipe == "linear_probe" else
                                "two-phase: head only, then progressive unfreezing (Hertel & Benlamri 2022, 3.3)"),
                "segmenter": "kept from the parent preset",
                "ensemble": "weights refitted on validation log-loss, Youden threshold"
                if fit is not None
                else "kept from the parent preset",
                # the linear probe reads none of the gradient recipe's settings: recording them would say they were used
                "config": {name: value for name, value in config.to_dict().items()
                           if recipe != "linear_probe" or name not in GRADIENT_SETTINGS},
            },
            "parent": {
                "handle": parent,
                "description": parent_metadata.get("description"),
                "created": parent_metadata.get("created"),
                "config_sha256": (parent_metadata.get("files") or {}).get("config.json"),
                "class_names": list(pipeline.class_names),
                "training_recipe": (parent_metadata.get("training") or {}).get("recipe"),
            },
            "data": {**data_provenance(manifest, manifest_path, fitted_splits=("train", "val"),
                                       also_fitted=fitted_patient_digests(parent_metadata) or ()),
                     "classifier_inputs": data_info, "parent_training_overlap": overlap},
            "members": member_results,
            "ensemble_fit": None if fit is None else fit.to_dict(),
            "member_thresholds": None if member_thresholds is None else {
                "thresholds": dict(zip((m.name for m in members), member_thresholds)),
                "rule": "Youden's J on each member's validation scores"},
            "out_of_distribution": None if out_of_distribution is None else {
                **out_of_distribution.to_config(),
                "fitted_on": "the parent preset's films (kept: too few training films to refit it)"
                if out_of_distribution is pipeline.out_of_distribution else
                "training split (reference), validation split (threshold)"},
            "validation": validation_report(new.ensemble, val, val.labels, class_names, config.batch_size),
        }
        new.metadata = {"description": description or f"fine-tuned from {parent or 'a preset'}", "training": training}
        preset = None
        if out is not None:
            say(f"saving the preset to {out}")
            preset = new.save_to_preset(out, training=training, description=new.metadata["description"],
                                        overwrite=overwrite)
        return FinetuneResult(new, preset, mode, training)

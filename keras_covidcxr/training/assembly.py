"""From trained components to one `Pipeline`: member predictions, assembly, validation report."""

import keras
import numpy as np

from keras_covidcxr.errors import ConfigError
from keras_covidcxr.metrics.classification import classification_metrics
from keras_covidcxr.models.ensemble.majority_vote_ensemble import MajorityVoteEnsemble
from keras_covidcxr.models.ensemble.weighted_average_ensemble import WeightedAverageEnsemble
from keras_covidcxr.models.pipeline.pipeline import Pipeline
from keras_covidcxr.training.linear_head import padded_batches

ENSEMBLES = ("weighted_average", "majority_vote")
MAX_ONE_CLASS_FRACTION = 0.95


def check_operating_threshold(validation_scores, threshold, what="the ensemble"):
    """Refuse a two-class threshold that cannot be an operating point on its own validation scores.

    A threshold outside the range of the validation scores, or one that puts more than 95% of the
    validation images in one class, makes a model that answers one class for (nearly) everything.

    Raises:
        ConfigError: naming `what`, the threshold and the score range or class fraction.

    Example:
        >>> check_operating_threshold([0.2, 0.4, 0.6, 0.8], 0.5)
        >>> check_operating_threshold([0.44, 0.5, 0.66], 0.67)
        Traceback (most recent call last):
        ...
        keras_covidcxr.errors.ConfigError: threshold 0.670 of the ensemble lies outside its validation scores [0.440, 0.660]
    """
    scores = np.asarray(validation_scores, "float64").reshape(-1)
    if scores.size == 0:
        raise ConfigError(f"no validation scores to check the threshold of {what}")
    low, high = float(scores.min()), float(scores.max())
    if not low <= threshold <= high:
        raise ConfigError(
            f"threshold {threshold:.3f} of {what} lies outside its validation scores [{low:.3f}, {high:.3f}]"
        )
    positive = float(np.mean(scores >= threshold))
    if max(positive, 1.0 - positive) > MAX_ONE_CLASS_FRACTION:
        raise ConfigError(
            f"threshold {threshold:.3f} of {what} puts {max(positive, 1.0 - positive):.1%} of its "
            f"{scores.size} validation images in one class (at most {MAX_ONE_CLASS_FRACTION:.0%} allowed)"
        )


def member_probabilities(members, inputs, batch_size=32):
    """(n, members, classes) class probabilities of every member on un-augmented inputs.

    `inputs` is a `ClassificationDataset` (its stored inputs are used, never augmented) or an
    array of gray (n, S, S) / (n, S, S, channels) classifier inputs; gray ones get the channels
    each member takes. A binary member's sigmoid p
    becomes (1 - p, p), as in the ensembles.
    """
    columns = []
    for member in members:
        outputs = []
        for batch, count in padded_batches(inputs, batch_size, member.image_shape[-1]):
            outputs.append(np.asarray(keras.ops.convert_to_numpy(member.predict_on_batch(batch)))[:count])
        probs = np.concatenate(outputs).astype("float64")
        if member.num_classes == 2:
            probs = np.concatenate([1.0 - probs, probs], axis=-1)
        columns.append(probs)
    return np.stack(columns, axis=1)


def assemble_pipeline(segmenter, members, class_names=None, ensemble="weighted_average", weights=None,
                      threshold=0.5, tie_break="mean_probability", preprocessing=None, input_contract=None,
                      metadata=None, member_thresholds=None, validation_scores=None, calibration=None,
                      refer_rule=None, out_of_distribution=None):
    """A `Pipeline` from a trained segmenter and trained classifiers.

    Args:
        segmenter: the trained `ResUnet`.
        members: trained `CXRClassifier`s with unique names and one input shape.
        class_names: the classes in output order (default: the pipeline's defaults).
        ensemble: "weighted_average" (with `weights` and `threshold`, e.g. from
            `fit_ensemble_weights`) or "majority_vote" (with `tie_break`).
        preprocessing, input_contract, metadata: passed to `Pipeline`.
        member_thresholds: two classes: each member's own operating threshold (its vote).
        validation_scores: two classes: (n, members) positive-class probabilities of the members
            on the validation images the thresholds were fitted on. When given, every threshold
            that decides something (the weighted average's; the members' when given or when
            they vote) is checked against them (`check_operating_threshold`): a preset that
            would answer one class for nearly every validation image is refused.
        calibration, refer_rule, out_of_distribution: a `ProbabilityCalibration`, `ReferRule`
            and `FeatureDistanceCheck` fitted on validation data (`fit_calibration`,
            `fit_refer_rule`, `fit_feature_distance_check`), passed to `Pipeline`.

    Example:
        >>> fit = fit_ensemble_weights(member_probabilities(members, val), val.labels)  # doctest: +SKIP
        >>> pipeline = assemble_pipeline(segmenter, members, weights=fit.weights, threshold=fit.threshold)  # doctest: +SKIP
        >>> pipeline.save_to_preset("my_preset", training={...})  # doctest: +SKIP
    """
    members = list(members)
    names = [m.name for m in members]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(
            f"ensemble members need unique names; {duplicates} appear more than once "
            "(train each backbone under its own name)"
        )
    threshold = 0.5 if threshold is None else threshold
    if ensemble == "weighted_average":
        combined = WeightedAverageEnsemble(members, weights=weights, threshold=threshold,
                                           member_thresholds=member_thresholds)
    elif ensemble == "majority_vote":
        combined = MajorityVoteEnsemble(members, tie_break=tie_break, member_thresholds=member_thresholds)
    else:
        raise ConfigError(f"ensemble must be one of {ENSEMBLES}, got {ensemble!r}")
    if validation_scores is not None and combined.num_classes == 2:
        scores = np.asarray(validation_scores, "float64").reshape(len(validation_scores), len(members))
        try:
            if member_thresholds is not None or isinstance(combined, MajorityVoteEnsemble):  # else votes decide nothing
                for name, member_scores, member_threshold in zip(names, scores.T, combined.vote_thresholds):
                    check_operating_threshold(member_scores, member_threshold, f"member {name!r}")
            if isinstance(combined, WeightedAverageEnsemble):
                ensemble_scores = scores @ np.asarray(combined.weights_normalised)
                check_operating_threshold(ensemble_scores, combined.threshold)
        except ConfigError as error:
            raise ConfigError(f"{error}: the preset would answer one class for (nearly) every validation film, so "
                              "it is not assembled (the members do not tell the classes apart there)") from None
    return Pipeline(segmenter, combined, class_names=class_names, preprocessing=preprocessing,
                    input_contract=input_contract, metadata=metadata, calibration=calibration,
                    refer_rule=refer_rule, out_of_distribution=out_of_distribution)


def validation_report(ensemble, inputs, labels, class_names, batch_size=32):
    """Metrics of the ensemble and of each member on un-augmented inputs (JSON-ready).

    Per model: accuracy, AUC, sensitivity, specificity (positive class for two classes, macro
    averages otherwise; `metrics.classification_metrics`). Two-class decisions are each model's own:
    a member's at its vote threshold (`ensemble.vote_thresholds`), the ensemble's at its threshold.
    """
    probs = member_probabilities(ensemble.members, inputs, batch_size)
    labels = np.asarray(labels, np.int64)
    report = {}
    vote_at = ensemble.vote_thresholds if len(class_names) == 2 else [None] * len(ensemble.members)
    for name, member_probs, threshold in zip(ensemble.member_names, np.moveaxis(probs, 1, 0), vote_at):
        report[name] = _summary(classification_metrics(labels, member_probs, class_names, threshold=threshold))
    if isinstance(ensemble, WeightedAverageEnsemble):
        combined = np.einsum("nmc,m->nc", probs, np.asarray(ensemble.weights_normalised))
        threshold = ensemble.threshold if len(class_names) == 2 else None
        report["ensemble"] = _summary(classification_metrics(labels, combined, class_names, threshold=threshold))
    else:
        channels = ensemble.members[0].image_shape[-1]
        outputs = [ensemble.predict_on_batch(batch) for batch, _ in padded_batches(inputs, batch_size, channels)]
        voted = np.concatenate([np.asarray(o["label"]) for o in outputs])[: len(labels)]
        report["ensemble"] = {"accuracy": float(np.mean(voted == labels)), "n": len(labels)}
    return report


def _summary(metrics):
    overall = metrics.to_dict()["overall"]
    keep = ("accuracy", "auc", "sensitivity", "specificity")
    return {**{k: overall.get(k) for k in keep}, "n": metrics.n}

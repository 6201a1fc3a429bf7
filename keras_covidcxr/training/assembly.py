"""From trained components to one `Pipeline`: member predictions, assembly, validation report."""

import keras
import numpy as np

from keras_covidcxr.errors import ConfigError
from keras_covidcxr.metrics.classification import classification_metrics
from keras_covidcxr.models.ensemble.majority_vote_ensemble import MajorityVoteEnsemble
from keras_covidcxr.models.ensemble.weighted_average_ensemble import WeightedAverageEnsemble
from keras_covidcxr.models.pipeline.pipeline import Pipeline
from keras_covidcxr.preprocessing.standardize import to_rgb

ENSEMBLES = ("weighted_average", "majority_vote")


def _rgb_batches(inputs, batch_size):
    """Yield (RGB batch padded to batch_size, real count) from a dataset or an array."""
    images = getattr(inputs, "inputs", inputs)  # a ClassificationDataset holds gray arrays
    images = np.asarray(images, "float32")
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        if chunk.ndim == 3:
            chunk = np.stack([to_rgb(image) for image in chunk])
        count = len(chunk)
        if count < batch_size:
            chunk = np.concatenate([chunk, np.zeros((batch_size - count, *chunk.shape[1:]), "float32")])
        yield chunk, count


def member_probabilities(members, inputs, batch_size=32):
    """(n, members, classes) class probabilities of every member on un-augmented inputs.

    `inputs` is a `ClassificationDataset` (its stored inputs are used, never augmented) or an
    array of gray (n, S, S) / RGB (n, S, S, 3) classifier inputs. A binary member's sigmoid p
    becomes (1 - p, p), as in the ensembles.
    """
    columns = []
    for member in members:
        outputs = []
        for batch, count in _rgb_batches(inputs, batch_size):
            outputs.append(np.asarray(keras.ops.convert_to_numpy(member.predict_on_batch(batch)))[:count])
        probs = np.concatenate(outputs).astype("float64")
        if member.num_classes == 2:
            probs = np.concatenate([1.0 - probs, probs], axis=-1)
        columns.append(probs)
    return np.stack(columns, axis=1)


def assemble_pipeline(segmenter, members, class_names=None, ensemble="weighted_average", weights=None,
                      threshold=0.5, tie_break="mean_probability", preprocessing=None, input_contract=None,
                      metadata=None):
    """A `Pipeline` from a trained segmenter and trained classifiers.

    Args:
        segmenter: the trained `ResUnet`.
        members: trained `CXRClassifier`s with unique names and one input shape.
        class_names: the classes in output order (default: the pipeline's defaults).
        ensemble: "weighted_average" (with `weights` and `threshold`, e.g. from
            `fit_ensemble_weights`) or "majority_vote" (with `tie_break`).
        preprocessing, input_contract, metadata: passed to `Pipeline`.

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
    if ensemble == "weighted_average":
        combined = WeightedAverageEnsemble(members, weights=weights, threshold=0.5 if threshold is None else threshold)
    elif ensemble == "majority_vote":
        combined = MajorityVoteEnsemble(members, tie_break=tie_break)
    else:
        raise ConfigError(f"ensemble must be one of {ENSEMBLES}, got {ensemble!r}")
    return Pipeline(segmenter, combined, class_names=class_names, preprocessing=preprocessing,
                    input_contract=input_contract, metadata=metadata)


def validation_report(ensemble, inputs, labels, class_names, batch_size=32):
    """Metrics of the ensemble and of each member on un-augmented inputs (JSON-ready).

    Per model: accuracy, AUC, sensitivity, specificity (positive class for two classes, macro
    averages otherwise; `metrics.classification_metrics`). The ensemble's two-class decision
    uses its threshold.
    """
    probs = member_probabilities(ensemble.members, inputs, batch_size)
    labels = np.asarray(labels, np.int64)
    report = {}
    for name, member_probs in zip(ensemble.member_names, np.moveaxis(probs, 1, 0)):
        report[name] = _summary(classification_metrics(labels, member_probs, class_names))
    if isinstance(ensemble, WeightedAverageEnsemble):
        combined = np.einsum("nmc,m->nc", probs, np.asarray(ensemble.weights_normalised))
        threshold = ensemble.threshold if len(class_names) == 2 else None
        report["ensemble"] = _summary(classification_metrics(labels, combined, class_names, threshold=threshold))
    else:
        outputs = [ensemble.predict_on_batch(batch) for batch, _ in _rgb_batches(inputs, batch_size)]
        voted = np.concatenate([np.asarray(o["label"]) for o in outputs])[: len(labels)]
        report["ensemble"] = {"accuracy": float(np.mean(voted == labels)), "n": len(labels)}
    return report


def _summary(metrics):
    overall = metrics.to_dict()["overall"]
    keep = ("accuracy", "auc", "sensitivity", "specificity")
    return {**{k: overall.get(k) for k in keep}, "n": metrics.n}

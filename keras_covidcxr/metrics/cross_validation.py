"""Patient-grouped, label-stratified k-fold cross-validation.

`patient_kfold_indices` gives the folds (no patient in two folds); `cross_validate` runs your
fit-and-predict function on each and scores the out-of-fold predictions.

Example:
    >>> import numpy as np
    >>> y = np.array(["covid", "normal"] * 20)
    >>> patients = np.arange(40) // 2
    >>> def fit_predict(train_index, test_index):  # a model that knows nothing
    ...     return np.full((len(test_index), 2), 0.5)
    >>> result = cross_validate(fit_predict, y, ["normal", "covid"], patients, k=4)
    >>> len(result.folds), result.pooled.n
    (4, 40)
"""

import dataclasses
import warnings

import numpy as np

from keras_covidcxr.errors import ConfigError
from keras_covidcxr.metrics.classification import OVERALL_METRICS, metrics_from_indices
from keras_covidcxr.metrics.inputs import check_class_names, check_groups, check_probabilities, encode_labels


def patient_kfold_indices(y_true, groups, k=5, seed=0):
    """`k` (train_index, test_index) pairs; patients stay whole, labels stay balanced (seeded).

    Uses scikit-learn's StratifiedGroupKFold.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    y_true = np.asarray(y_true)
    groups = check_groups(groups, len(y_true))
    if int(k) != k or k < 2:
        raise ConfigError(f"k={k!r}: need an integer number of folds >= 2")
    if len(np.unique(groups)) < k:
        raise ConfigError(f"k={k}: only {len(np.unique(groups))} patients, fewer than the folds")
    splitter = StratifiedGroupKFold(n_splits=int(k), shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a rare class cannot fill every fold
        try:
            return [(train, test) for train, test in splitter.split(np.zeros(len(y_true)), y_true, groups)]
        except ValueError as error:  # every class smaller than k
            raise ConfigError(f"k={k}: cannot stratify {len(y_true)} samples into {k} folds ({error}); use fewer "
                              "folds") from None


@dataclasses.dataclass
class CrossValidationResult:
    """Per-fold metrics, the out-of-fold probabilities, and the metrics of all of them pooled."""

    folds: list
    out_of_fold_prob: np.ndarray
    pooled: object

    def mean_and_std(self):
        """metric -> (mean, standard deviation) of the folds' overall values."""
        summary = {}
        for metric in OVERALL_METRICS:
            values = np.asarray([fold.overall[metric] for fold in self.folds], np.float64)
            values = values[np.isfinite(values)]
            summary[metric] = (
                (float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0)
                if values.size
                else (float("nan"), float("nan"))
            )
        return summary


def cross_validate(fit_predict, y_true, class_names, groups, k=5, seed=0, positive_class=None):
    """Run `fit_predict(train_index, test_index) -> (len(test_index), n_classes) probabilities` per fold.

    Returns:
        `CrossValidationResult`.
    """
    names = check_class_names(class_names)
    labels = encode_labels(y_true, names)
    out_of_fold = np.full((len(labels), len(names)), np.nan)
    folds = []
    for train_index, test_index in patient_kfold_indices(labels, groups, k, seed):
        probs = check_probabilities(fit_predict(train_index, test_index), len(names))
        if len(probs) != len(test_index):
            raise ConfigError(f"fit_predict returned {len(probs)} rows for {len(test_index)} test samples")
        out_of_fold[test_index] = probs
        folds.append(metrics_from_indices(labels[test_index], probs, names, positive_class))
    pooled = metrics_from_indices(labels, out_of_fold, names, positive_class)
    return CrossValidationResult(folds, out_of_fold, pooled)

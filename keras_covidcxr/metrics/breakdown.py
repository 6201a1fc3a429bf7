"""Metrics per subgroup (by source, by view, ...): where does a model do well, and where not?

A model that scores well overall but only on one source (or only on PA films) has probably
learned a shortcut; the paper's public sets mix sources with labels.

Example:
    >>> by_view = metrics_by_group(
    ...     ["covid", "normal", "covid", "normal"], [0.9, 0.2, 0.4, 0.1], ["normal", "covid"],
    ...     group_values=["AP", "PA", "PA", "AP"])
    >>> {view: result.overall["accuracy"] for view, result in by_view.items()}
    {'AP': 1.0, 'PA': 0.5}
"""

import numpy as np

from keras_covidcxr.errors import ConfigError
from keras_covidcxr.metrics.classification import metrics_from_indices
from keras_covidcxr.metrics.inputs import check_class_names, check_inputs


def metrics_by_group(y_true, y_prob, class_names, group_values, positive_class=None, threshold=None):
    """`{group value: ClassificationMetrics}` for the samples of each value, sorted by value.

    Args:
        y_true, y_prob, class_names, positive_class, threshold: as `classification_metrics`.
        group_values: one value per sample (e.g. each image's source or view); None counts as
            "unknown".
    """
    names = check_class_names(class_names)
    labels, probs = check_inputs(y_true, y_prob, names)
    values = np.asarray(["unknown" if v is None else str(v) for v in group_values])
    if values.shape != (len(labels),):
        raise ConfigError(f"group_values has {values.size} entries for {len(labels)} samples")
    return {
        value: metrics_from_indices(
            labels[values == value], probs[values == value], names, positive_class, threshold
        )
        for value in sorted(set(values.tolist()))
    }

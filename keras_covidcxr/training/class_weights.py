"""Class weights for the class-weighted loss (paper: "we weighed the loss functions of our
classifiers to correct for this imbalance"), computed from the training split's counts.

    weight_c = n_samples / (n_classes * count_c)

scikit-learn's "balanced" rule: every class contributes the same total weight to the loss, and a
perfectly balanced set gets weight 1 everywhere. A class absent from the training split gets
weight 0 (it cannot contribute) and is reported by `missing_classes`.
"""

import numpy as np

from keras_covidcxr.errors import ConfigError


def balanced_class_weights(labels, num_classes):
    """{class index: weight} from integer training labels.

    Example:
        >>> balanced_class_weights([0, 0, 0, 1], 2)
        {0: 0.6666666666666666, 1: 2.0}
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if labels.size == 0:
        raise ConfigError("class weights need at least one training label")
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ConfigError(f"labels must lie in 0..{num_classes - 1}")
    counts = np.bincount(labels, minlength=num_classes)
    return {
        c: (float(labels.size / (num_classes * counts[c])) if counts[c] else 0.0)
        for c in range(num_classes)
    }


def missing_classes(class_weights):
    """Class indices with no training sample (weight 0)."""
    return [c for c, weight in class_weights.items() if weight == 0.0]

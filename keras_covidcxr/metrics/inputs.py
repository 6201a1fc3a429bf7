"""Check and normalise what every metric takes: true labels, class probabilities, class names.

`y_true` holds class names (`"covid"`) or class indices; `y_prob` is (n, n_classes). With two
classes a 1-D (or (n, 1)) `y_prob` is read as the probability of `class_names[1]` (a sigmoid
output), so `["non-covid", "covid"]` with sigmoid scores just works.

Example:
    >>> labels, probs = check_inputs(["covid", "normal"], [0.9, 0.2], ["normal", "covid"])
    >>> labels.tolist(), probs.round(2).tolist()
    ([1, 0], [[0.1, 0.9], [0.8, 0.2]])
"""

import numpy as np

from keras_covidcxr.errors import ConfigError


def check_class_names(class_names):
    """`class_names` as a tuple of distinct strings (at least two)."""
    names = tuple(str(name) for name in class_names)
    if len(names) < 2 or len(set(names)) != len(names):
        raise ConfigError(f"class_names {list(names)}: need at least two distinct names")
    return names


def encode_labels(y_true, class_names):
    """Class indices (int64) for labels given as names or as indices."""
    names = check_class_names(class_names)
    values = np.asarray(y_true)
    if values.ndim != 1:
        raise ConfigError(f"y_true must be 1-D labels, got shape {values.shape}")
    if values.dtype.kind in "iu":
        bad = values[(values < 0) | (values >= len(names))]
        if bad.size:
            raise ConfigError(f"label index {bad[0]} is outside 0..{len(names) - 1} ({', '.join(names)})")
        return values.astype(np.int64)
    index = {name: i for i, name in enumerate(names)}
    try:
        return np.asarray([index[str(value)] for value in values], dtype=np.int64)
    except KeyError as error:
        raise ConfigError(
            f"label {error.args[0]!r} is not one of the class names {', '.join(names)}"
        ) from None


def check_probabilities(y_prob, n_classes):
    """`y_prob` as float64 (n, n_classes), finite and within [0, 1]."""
    probs = np.asarray(y_prob, dtype=np.float64)
    if n_classes == 2 and (probs.ndim == 1 or (probs.ndim == 2 and probs.shape[1] == 1)):
        positive = probs.reshape(-1)
        probs = np.stack([1.0 - positive, positive], axis=1)
    if probs.ndim != 2 or probs.shape[1] != n_classes:
        raise ConfigError(
            f"y_prob has shape {probs.shape}; expected (n, {n_classes}) for {n_classes} classes"
        )
    if not np.all(np.isfinite(probs)) or probs.min(initial=0) < 0 or probs.max(initial=0) > 1:
        raise ConfigError("y_prob must hold finite probabilities in [0, 1]")
    return probs


def check_inputs(y_true, y_prob, class_names):
    """(labels as int64 indices, probabilities as (n, k) float64) after checking they agree."""
    names = check_class_names(class_names)
    labels = encode_labels(y_true, names)
    probs = check_probabilities(y_prob, len(names))
    if len(labels) != len(probs):
        raise ConfigError(f"y_true has {len(labels)} labels but y_prob has {len(probs)} rows")
    if len(labels) == 0:
        raise ConfigError("no samples to score")
    return labels, probs


def check_binary(is_positive, scores):
    """(is_positive as bool, scores as float64) of a two-class metric, 1-D and of one length.

    `is_positive` holds booleans or 0/1 (class names would all read as True: map them first,
    e.g. with `one_vs_rest`); `scores` are finite.
    """
    truth = np.asarray(is_positive)
    scores = np.asarray(scores, np.float64)
    if truth.ndim != 1 or scores.shape != truth.shape:
        raise ConfigError(f"need 1-D labels and scores of one length, got shapes {truth.shape} and {scores.shape}")
    if truth.dtype.kind not in "biuf" or not np.isin(truth, (0, 1)).all():
        raise ConfigError(f"labels must be True/False or 1/0 (the positive class or not), got {truth[:3].tolist()}...; "
                          "map class names first (`one_vs_rest`)")
    if not np.isfinite(scores).all():
        raise ConfigError(f"{int((~np.isfinite(scores)).sum())} scores are NaN or infinite")
    return truth.astype(bool), scores


def check_groups(groups, n):
    """Per-sample group ids (e.g. patient ids) as an array; None means every sample is its own group."""
    if groups is None:
        return np.arange(n)
    given = groups.tolist() if isinstance(groups, np.ndarray) else list(groups)  # before numpy turns NaN into "nan"
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ConfigError(f"groups has shape {groups.shape}; expected ({n},), one id per sample")
    missing = [i for i, group in enumerate(given) if group is None or group != group]  # None or NaN
    if missing:
        raise ConfigError(f"{len(missing)} samples have no group id (None or NaN), the first at position "
                          f"{missing[0]}; give each its patient's id")
    return groups

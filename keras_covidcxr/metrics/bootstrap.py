"""95% confidence intervals by bootstrapping patients, not images.

Images of one patient are correlated, so resampling images would make intervals too narrow.
Each resample draws as many patients as there are, with replacement, and takes all images of
each drawn patient. The interval is the percentile interval of the metric over resamples
(resamples where a metric is undefined, e.g. no positive patient drawn, are left out of it). A
resample that draws no patient of a class the data has is left out of that class's PPV and F1
(0 there only because the class was not drawn) and of every macro average (an average over fewer
classes).

Example:
    >>> import numpy as np
    >>> from keras_covidcxr.metrics import classification_metrics
    >>> rng = np.random.default_rng(0)
    >>> y_true = rng.integers(0, 2, 200)
    >>> y_prob = np.clip(y_true * 0.6 + rng.random(200) * 0.4, 0, 1)
    >>> intervals = bootstrap_metrics(y_true, y_prob, ["normal", "covid"],
    ...                               groups=np.arange(200) // 2, n_resamples=200, seed=0)
    >>> low, high = intervals["overall"]["accuracy"]
    >>> point = classification_metrics(y_true, y_prob, ["normal", "covid"]).overall["accuracy"]
    >>> bool(low <= point <= high)
    True
"""

import math
import statistics

import numpy as np

from keras_covidcxr.errors import ConfigError
from keras_covidcxr.metrics.classification import OVERALL_METRICS, PER_CLASS_METRICS, metrics_from_indices
from keras_covidcxr.metrics.inputs import check_class_names, check_groups, check_inputs


def resample_patients(groups, n_resamples, seed=0):
    """Yield `n_resamples` index arrays, each all images of patients drawn with replacement."""
    groups = np.asarray(groups)
    _, group_of = np.unique(groups, return_inverse=True)
    order = np.argsort(group_of, kind="mergesort")  # image indices, grouped by patient
    counts = np.bincount(group_of)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    rng = np.random.default_rng(seed)
    n_groups = len(counts)
    for _ in range(n_resamples):
        chosen = rng.integers(0, n_groups, n_groups)
        lengths = counts[chosen]
        # position inside the chosen patient's run + where that run starts
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        yield order[np.repeat(starts[chosen], lengths) + offsets]


def percentile_interval(samples, confidence=0.95):
    """(low, high) percentile interval of the finite `samples`; (nan, nan) if none."""
    samples = np.asarray(samples, np.float64)
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return (float("nan"), float("nan"))
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return (float(low), float(high))


def wilson_interval(successes, n, confidence=0.95):
    """Wilson score interval of a proportion `successes / n`; (None, None) when n is 0.

    Unlike a percentile bootstrap it does not collapse at 0 or 1: 15 of 15 gives about [0.80, 1.00].

    Example:
        >>> [round(x, 3) for x in wilson_interval(15, 15)]
        [0.796, 1.0]
    """
    if n <= 0:
        return [None, None]
    z = statistics.NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # exactly 0 and 1 at the ends (rounding gave 0.9999999999999999, so 1.0 lay outside its own interval)
    return [0.0 if successes == 0 else max(0.0, centre - half), 1.0 if successes == n else min(1.0, centre + half)]


def bootstrap_metrics(
    y_true,
    y_prob,
    class_names,
    groups=None,
    n_resamples=1000,
    confidence=0.95,
    seed=0,
    positive_class=None,
    threshold=None,
):
    """Patient-level bootstrap intervals for every metric of `classification_metrics`.

    Args:
        y_true, y_prob, class_names, positive_class, threshold: as `classification_metrics`.
        groups: one patient id per image (None: each image is its own patient).
        n_resamples: bootstrap resamples (1,000 is customary; fewer for quick looks).
        confidence: interval coverage, e.g. 0.95.
        seed: the resampling seed; the same inputs and seed give the same intervals.

    Returns:
        `{"overall": {metric: (low, high)}, "per_class": {class: {metric: (low, high)}}}`.
    """
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence={confidence!r}: must be between 0 and 1, e.g. 0.95")
    if int(n_resamples) != n_resamples or n_resamples < 1:
        raise ConfigError(f"n_resamples={n_resamples!r}: need a positive whole number")
    names = check_class_names(class_names)
    labels, probs = check_inputs(y_true, y_prob, names)
    groups = check_groups(groups, len(labels))
    overall = {metric: [] for metric in OVERALL_METRICS}
    per_class = {name: {metric: [] for metric in PER_CLASS_METRICS} for name in names}
    present = np.bincount(labels, minlength=len(names)) > 0
    for index in resample_patients(groups, int(n_resamples), seed):
        result = metrics_from_indices(labels[index], probs[index], names, positive_class, threshold)
        _leave_out_undrawn(result, present & (np.bincount(labels[index], minlength=len(names)) == 0))
        for metric in OVERALL_METRICS:
            overall[metric].append(result.overall[metric])
        for name in names:
            for metric in PER_CLASS_METRICS:
                per_class[name][metric].append(result.per_class[name][metric])
    return {
        "overall": {metric: percentile_interval(values, confidence) for metric, values in overall.items()},
        "per_class": {
            name: {metric: percentile_interval(values, confidence) for metric, values in metrics.items()}
            for name, metrics in per_class.items()
        },
    }


def _leave_out_undrawn(result, undrawn):
    """Mark as undefined (NaN) in one resample's `ClassificationMetrics` what only the classes it did not draw
    (`undrawn`, a boolean per class) decide: their PPV and F1, and macro averages."""
    nan = float("nan")
    for c in np.flatnonzero(undrawn):
        result.per_class[result.class_names[c]].update(ppv=nan, f1=nan)
    if not undrawn.any():
        return
    if result.averaging == "macro":
        result.overall.update({metric: nan for metric in PER_CLASS_METRICS})
    else:  # the positive class's own rates
        positive = result.averaging.removeprefix("positive class ")
        if undrawn[result.class_names.index(positive)]:
            result.overall.update(ppv=nan, f1=nan)

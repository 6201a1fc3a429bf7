"""Selective prediction: how accuracy on the answered images grows as a model abstains on more of them.

The images are ranked by how far their p(positive) lies from the decision threshold (in logit units,
so 0.51 vs 0.5 counts as close and 0.99 as far); answering only the most confident fraction c of
them (the coverage) leaves a risk, the error rate among the answered at the same threshold. A
useful abstention makes the risk fall as the coverage falls (Geifman & El-Yaniv 2017).

Example:
    >>> curve = risk_coverage_curve([0.9, 0.6, 0.45, 0.2], [1, 0, 1, 0], threshold=0.5)
    >>> curve["coverage"].tolist(), curve["risk"].round(3).tolist()
    ([0.25, 0.5, 0.75, 1.0], [0.0, 0.0, 0.333, 0.5])
"""

import numpy as np

from keras_covidcxr.errors import ConfigError
from keras_covidcxr.metrics.inputs import check_binary


def risk_coverage_curve(positive, labels, threshold):
    """{"coverage", "risk"} arrays, one point per image, from the most confident image alone to all.

    `labels` are True/False or 1/0 (the positive class or not). Images equally far from the threshold
    are answered together (their points share the group's coverage and risk), so the curve does not
    depend on the images' order.
    """
    labels, positive = check_binary(labels, positive)
    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"threshold {threshold!r} must lie strictly between 0 and 1")
    clipped = np.clip(positive, 1e-7, 1 - 1e-7)  # finite logits for 0 and 1
    # rounded: 0.3 and 0.7 lie equally far from 0.5, though their logits' rounding differs in the last bits
    distance = np.round(np.abs(np.log(clipped / (1 - clipped)) - np.log(threshold / (1 - threshold))), 9)
    order = np.argsort(-distance, kind="stable")
    wrong = ((positive >= threshold) != labels)[order]
    group_end = np.searchsorted(-distance[order], -distance[order], side="right")  # answered with its ties
    return {"coverage": group_end / len(order), "risk": np.cumsum(wrong)[group_end - 1] / group_end}


def area_under_risk_coverage(curve):
    """The mean risk over the coverages (lower is better; the risk at full coverage when nothing helps)."""
    return float(np.mean(curve["risk"]))

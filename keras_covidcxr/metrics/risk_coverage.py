"""Selective prediction: how accuracy on the answered images grows as a model abstains on more of them.

The images are ranked by how far their p(positive) lies from the decision threshold (in logit units,
so 0.51 vs 0.5 counts as close and 0.99 as far); answering only the most confident fraction c of
them (the coverage) leaves a risk, the error rate among the answered at the same threshold. A
useful abstention makes the risk fall as the coverage falls (Geifman & El-Yaniv 2017).

Example:
    >>> curve = risk_coverage_curve([0.9, 0.6, 0.45, 0.1], [1, 0, 1, 0], threshold=0.5)
    >>> curve["coverage"].tolist(), curve["risk"].round(3).tolist()
    ([0.25, 0.5, 0.75, 1.0], [0.0, 0.0, 0.333, 0.5])
"""

import numpy as np


def risk_coverage_curve(positive, labels, threshold):
    """{"coverage", "risk"} arrays, from the most confident image alone to all images."""
    positive = np.clip(np.asarray(positive, "float64"), 1e-7, 1 - 1e-7)
    labels = np.asarray(labels).astype(bool)
    logit = np.log(positive / (1 - positive))
    centre = np.log(threshold / (1 - threshold))
    order = np.argsort(-np.abs(logit - centre), kind="stable")
    wrong = ((positive >= threshold) != labels)[order]
    answered = np.arange(1, len(order) + 1)
    return {"coverage": answered / len(order), "risk": np.cumsum(wrong) / answered}


def area_under_risk_coverage(curve):
    """The mean risk over the coverages (lower is better; the risk at full coverage when nothing helps)."""
    return float(np.mean(curve["risk"]))

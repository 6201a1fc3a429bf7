"""How well the `source` column alone predicts each label: the shortcut that mixing collections invites.

When each label comes from its own hospitals (COVID-19 films from one collection, normal films from
another), a classifier can score well by recognising the hospital (its scanner, processing, text
markers) instead of the lungs, and a random split cannot show it: both splits share the shortcut.
This measures the risk before any training, from the manifest alone.

Example:
    >>> from keras_covidcxr.data import Manifest, ManifestRow
    >>> rows = [ManifestRow(f"{s}{i}.png", "cls", f"{s}{i}", label=label, source=s)
    ...         for s, label in (("a", "covid"), ("b", "normal")) for i in range(3)]
    >>> shortcut = source_shortcut(Manifest(rows, "."))
    >>> shortcut.auc["covid"], shortcut.risky_labels
    (1.0, ['covid', 'normal'])
"""

import dataclasses

from keras_covidcxr.metrics.classification import binary_auc

# A source-only score at or above this one-vs-rest AUC means the collection alone tells that label apart.
SOURCE_SHORTCUT_AUC = 0.8
UNKNOWN_SOURCE = "unknown"


@dataclasses.dataclass(frozen=True)
class SourceShortcut:
    """Labels by source among the cls rows, and how well the source alone separates each label.

    `auc[label]` is the one-vs-rest AUC of scoring every image by that label's share of its source's
    images: in-sample, so the most any source-only model can reach (0.5: the source says nothing).
    """

    counts: dict
    auc: dict
    threshold: float = SOURCE_SHORTCUT_AUC

    @property
    def labels(self):
        return list(self.auc)  # every label, sorted

    @property
    def risky_labels(self):
        return [label for label, value in self.auc.items() if value >= self.threshold]

    def describe_risky(self):
        """e.g. "covid (AUC 1.00), normal (AUC 0.82)": the labels the source alone tells apart."""
        return ", ".join(f"{label} (AUC {self.auc[label]:.2f})" for label in self.risky_labels)

    def to_dict(self):
        return {"counts": self.counts, "source_only_auc": self.auc, "threshold": self.threshold,
                "risky_labels": self.risky_labels}

    @classmethod
    def from_dict(cls, record):
        """The inverse of `to_dict` (e.g. a preset's recorded `classifier_inputs.source_shortcut`)."""
        return cls(record["counts"], record["source_only_auc"], record.get("threshold", SOURCE_SHORTCUT_AUC))

    def summary_lines(self):
        labels = self.labels
        width = max(len(source) for source in self.counts)
        aucs = ", ".join(f"{label} {value:.3f}" for label, value in self.auc.items())
        lines = [f"Labels by source (cls rows); source-only AUC, in-sample (0.5: the source says nothing): {aucs}",
                 "  " + " " * width + "".join(f"  {label:>9}" for label in labels)]
        lines += ["  " + f"{source:<{width}}" + "".join(f"  {by_label.get(label, 0):>9}" for label in labels)
                  for source, by_label in self.counts.items()]
        if self.risky_labels:
            lines.append(
                f"[caution] the source alone tells apart {self.describe_risky()}: a model trained on these rows "
                "can learn the collection instead of the lungs, and a random split keeps the shortcut on both "
                "sides. Prefer sources that hold several labels, and read results per source (`covidcxr "
                "evaluate` reports them by source)."
            )
        return lines


def source_shortcut(manifest, threshold=SOURCE_SHORTCUT_AUC):
    """`SourceShortcut` of a manifest's labelled cls rows, or None when no row names its source or only one
    source or one label is present (nothing to compare)."""
    rows = [row for row in manifest if row.task == "cls" and row.label]
    if not any(row.source for row in rows):
        return None
    counts = {}
    for row in rows:
        by_label = counts.setdefault(row.source or UNKNOWN_SOURCE, {})
        by_label[row.label] = by_label.get(row.label, 0) + 1
    counts = dict(sorted(counts.items()))
    labels = sorted({row.label for row in rows})
    if len(counts) < 2 or len(labels) < 2:
        return None
    auc = {}
    for label in labels:
        share = {source: by_label.get(label, 0) / sum(by_label.values()) for source, by_label in counts.items()}
        scores = [share[row.source or UNKNOWN_SOURCE] for row in rows]
        auc[label] = round(binary_auc([row.label == label for row in rows], scores), 4)
    return SourceShortcut(counts, auc, threshold)

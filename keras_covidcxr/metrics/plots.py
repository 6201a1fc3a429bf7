"""Report figures: ROC curves, confusion matrices, reliability diagrams (matplotlib, imported lazily).

Figures are built with `matplotlib.figure.Figure` directly (no pyplot, no global backend
change), so they render headless and never open windows.

Example:
    >>> figure = plot_confusion_matrix([[5, 1], [2, 7]], ["normal", "covid"], "densenet201")  # doctest: +SKIP
    >>> save_figure(figure, "confusion.png")  # doctest: +SKIP
"""

import numpy as np

from keras_covidcxr.io.atomic import atomic_write


def _figure(width=5.0, height=4.5):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


# One dash pattern per curve, so that curves which coincide (a calibration keeps the ranking of the
# scores it calibrates) stay visible under one another.
LINE_STYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (1, 1)), (0, (3, 1, 1, 1, 1, 1)))


def _line_style(index):
    return LINE_STYLES[index % len(LINE_STYLES)]


def plot_roc_curves(curves, title):
    """ROC curves of several models for one class: `curves` = {model: (is_positive, scores)}."""
    from sklearn.metrics import roc_curve

    from keras_covidcxr.metrics.classification import binary_auc

    figure = _figure()
    axes = figure.add_subplot()
    for index, (name, (is_positive, scores)) in enumerate(curves.items()):
        is_positive = np.asarray(is_positive, bool)
        if is_positive.all() or not is_positive.any():
            continue  # no ROC curve without both classes
        fpr, tpr, _ = roc_curve(is_positive, scores)
        axes.plot(fpr, tpr, linestyle=_line_style(index), label=f"{name} (AUC {binary_auc(is_positive, scores):.3f})")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8, label="chance")
    axes.set(
        xlabel="1 - specificity (false positive rate)",
        ylabel="sensitivity (true positive rate)",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title=title,
    )
    axes.legend(loc="lower right", fontsize="small")
    return figure


def plot_confusion_matrix(matrix, class_names, title):
    """A confusion matrix (rows true, columns predicted) with counts and row percentages."""
    matrix = np.asarray(matrix)
    figure = _figure(1.6 + 1.1 * len(class_names), 1.2 + 1.0 * len(class_names))
    axes = figure.add_subplot()
    with np.errstate(divide="ignore", invalid="ignore"):
        rates = matrix / matrix.sum(axis=1, keepdims=True)
    axes.imshow(np.nan_to_num(rates), cmap="Blues", vmin=0, vmax=1)
    for (row, column), count in np.ndenumerate(matrix):
        rate = rates[row, column]
        text = f"{count}\n{rate:.0%}" if np.isfinite(rate) else str(count)
        axes.text(
            column,
            row,
            text,
            ha="center",
            va="center",
            color="white" if np.isfinite(rate) and rate > 0.5 else "black",
            fontsize="small",
        )
    ticks = range(len(class_names))
    axes.set_xticks(ticks, class_names)
    axes.set_yticks(ticks, class_names)
    axes.set(xlabel="predicted", ylabel="true", title=title)
    return figure


def plot_reliability(curves, title="Reliability (top-label)"):
    """Reliability diagram of several models: `curves` = {model: ReliabilityCurve}."""
    figure = _figure()
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8, label="perfect calibration")
    for name, curve in curves.items():
        filled = curve.counts > 0
        axes.plot(
            curve.mean_confidence[filled],
            curve.observed_frequency[filled],
            marker="o",
            label=f"{name} (ECE {curve.expected_calibration_error:.3f})",
        )
    axes.set(
        xlabel="mean predicted confidence",
        ylabel="observed frequency",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title=title,
    )
    axes.legend(loc="lower right", fontsize="small")
    return figure


def plot_risk_coverage(curves, operating_point=None):
    """Risk (error rate of the answered images) against coverage: `curves` = {model: {"coverage", "risk"}};
    `operating_point` = (coverage, risk, label) marks a stored abstain rule."""
    figure = _figure()
    axes = figure.add_subplot()
    for index, (name, curve) in enumerate(curves.items()):
        axes.plot(curve["coverage"], curve["risk"], linestyle=_line_style(index), label=name)
    if operating_point is not None:
        coverage, risk, label = operating_point
        axes.plot([coverage], [risk], marker="o", color="black", linestyle="none", label=label)
    axes.set(xlabel="coverage (fraction of images answered)", ylabel="risk (error rate of the answered images)",
             xlim=(0, 1.01), ylim=(0, None), title="Risk-coverage\n(abstaining on the least sure images first)")
    axes.legend(loc="upper left", fontsize="small")
    return figure


def save_figure(figure, path):
    """Write `figure` as PNG at `path`, atomically."""
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format="png")
    return path

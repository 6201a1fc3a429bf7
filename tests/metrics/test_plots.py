"""Report figures: curves that coincide stay visible under one another."""

import numpy as np

from keras_covidcxr.metrics.plots import plot_risk_coverage, plot_roc_curves


def test_coinciding_curves_are_drawn_with_different_dashes():
    is_positive = np.array([0, 0, 1, 1, 0, 1], bool)
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    calibrated = 1 / (1 + np.exp(-(3 * scores - 1)))  # monotone: the same ROC curve
    figure = plot_roc_curves({"weighted_average": (is_positive, scores), "calibrated": (is_positive, calibrated)},
                             "ROC")
    first, second, chance = figure.axes[0].get_lines()
    np.testing.assert_array_equal(first.get_xydata(), second.get_xydata())
    assert first.get_linestyle() != second.get_linestyle()
    assert [text.get_text() for text in figure.axes[0].get_legend().get_texts()][:2] == [
        "weighted_average (AUC 0.889)", "calibrated (AUC 0.889)"]
    curve = {"coverage": np.array([0.5, 1.0]), "risk": np.array([0.0, 0.2])}
    lines = plot_risk_coverage({"a": curve, "b": curve}).axes[0].get_lines()
    assert lines[0].get_linestyle() != lines[1].get_linestyle()

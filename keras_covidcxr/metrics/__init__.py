"""The paper's metric suite, with patient-level confidence intervals, calibration and reports.

Example:
    >>> from keras_covidcxr.metrics import classification_metrics, bootstrap_metrics, write_report
    >>> result = classification_metrics(["covid", "normal"], [[0.7, 0.3], [0.4, 0.6]], ["covid", "normal"])
    >>> result.overall["accuracy"]
    1.0
"""

from keras_covidcxr.metrics.bootstrap import bootstrap_metrics, percentile_interval, resample_patients
from keras_covidcxr.metrics.breakdown import metrics_by_group
from keras_covidcxr.metrics.calibration import (
    ReliabilityCurve,
    expected_calibration_error,
    reliability_curve,
    top_label_reliability,
)
from keras_covidcxr.metrics.classification import (
    METRIC_TITLES,
    OVERALL_METRICS,
    PER_CLASS_METRICS,
    ClassificationMetrics,
    binary_auc,
    classification_metrics,
    confusion_matrix,
    predict_labels,
)
from keras_covidcxr.metrics.cross_validation import (
    CrossValidationResult,
    cross_validate,
    patient_kfold_indices,
)
from keras_covidcxr.metrics.report import (
    ReportSection,
    WrittenReport,
    check_report_folder,
    evaluate_models,
    render_markdown,
    write_report,
)
from keras_covidcxr.metrics.thresholds import (
    OperatingPoint,
    one_vs_rest,
    threshold_for_sensitivity,
    threshold_for_targets,
    youden_threshold,
)

__all__ = [
    "METRIC_TITLES",
    "OVERALL_METRICS",
    "PER_CLASS_METRICS",
    "ClassificationMetrics",
    "CrossValidationResult",
    "OperatingPoint",
    "ReliabilityCurve",
    "ReportSection",
    "WrittenReport",
    "binary_auc",
    "bootstrap_metrics",
    "check_report_folder",
    "classification_metrics",
    "confusion_matrix",
    "cross_validate",
    "evaluate_models",
    "expected_calibration_error",
    "metrics_by_group",
    "one_vs_rest",
    "patient_kfold_indices",
    "percentile_interval",
    "predict_labels",
    "reliability_curve",
    "render_markdown",
    "resample_patients",
    "threshold_for_sensitivity",
    "threshold_for_targets",
    "top_label_reliability",
    "write_report",
    "youden_threshold",
]

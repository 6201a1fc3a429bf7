"""Manifest labels -> a model's class names (binary models merge normal and pneumonia)."""

from keras_covidcxr.data.manifest import DatasetError

BINARY_CLASS_NAMES = ("non_covid", "covid")
MULTICLASS_CLASS_NAMES = ("covid", "normal", "pneumonia")


def class_name_for(label, class_names):
    """The class a manifest label counts as, for a model with `class_names`.

    Example:
        >>> class_name_for("pneumonia", ("non_covid", "covid"))
        'non_covid'
    """
    if label in class_names:
        return label
    if "non_covid" in class_names and label in MULTICLASS_CLASS_NAMES and label != "covid":
        return "non_covid"
    raise DatasetError(f"label {label!r} has no class among {list(class_names)}")

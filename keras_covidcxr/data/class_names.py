"""Manifest labels -> a model's class names (binary models merge normal and pneumonia)."""

from keras_covidcxr.data.manifest import DatasetError
from keras_covidcxr.errors import ConfigError

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


def check_class_names(class_names, remedy=None):
    """`class_names` as a tuple, refused with a `ConfigError` unless they are two or more different names and, with
    two that include "covid", covid comes second: a two-class model's second class is its positive one (its
    threshold, sensitivity and AUC are the second class's). `remedy` replaces the advice after "name covid
    second: " (default: the names swapped).

    Example:
        >>> check_class_names(["non_covid", "covid"])
        ('non_covid', 'covid')
        >>> check_class_names(["covid", "non_covid"])
        Traceback (most recent call last):
        ...
        keras_covidcxr.errors.ConfigError: class names ['covid', 'non_covid']: a two-class model's second class is the positive one (its threshold, sensitivity and AUC); name covid second: ['non_covid', 'covid']
    """
    if isinstance(class_names, str) or not all(isinstance(name, str) and name for name in class_names):
        raise ConfigError(f"class names {class_names!r}: give a list of names, e.g. ['non_covid', 'covid']")
    class_names = tuple(class_names)
    if len(set(class_names)) != len(class_names) or len(class_names) < 2:
        raise ConfigError(f"class names {list(class_names)}: name two or more different classes, each once")
    if len(class_names) == 2 and class_names[0] == "covid":
        raise ConfigError(f"class names {list(class_names)}: a two-class model's second class is the positive one "
                          f"(its threshold, sensitivity and AUC); name covid second: "
                          f"{remedy or list(class_names[::-1])}")
    return class_names

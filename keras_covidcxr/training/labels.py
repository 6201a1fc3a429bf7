"""Manifest labels (covid / normal / pneumonia) as class indices of a pipeline's class names."""

import numpy as np

from keras_covidcxr.data.class_names import BINARY_CLASS_NAMES, MULTICLASS_CLASS_NAMES, class_name_for
from keras_covidcxr.data.manifest import DatasetError


def default_class_names(num_classes):
    """("non_covid", "covid") for 2 classes, ("covid", "normal", "pneumonia") for 3."""
    if num_classes == 2:
        return BINARY_CLASS_NAMES
    if num_classes == 3:
        return MULTICLASS_CLASS_NAMES
    raise DatasetError(f"no default class names for {num_classes} classes; pass class_names")


def label_indices(manifest, class_names):
    """int64 class index of every row of `manifest` (cls rows).

    A label names its class directly; in a binary task whose classes include
    "non_covid", every label other than "covid" (normal, pneumonia) maps to it.

    Example:
        >>> from keras_covidcxr.data import Manifest, ManifestRow
        >>> rows = [ManifestRow(f"{l}.png", "cls", "p", label=l) for l in ("covid", "normal", "pneumonia")]
        >>> label_indices(Manifest(rows), ("non_covid", "covid")).tolist()
        [1, 0, 0]
    """
    class_names = tuple(class_names)
    indices, problems = [], []
    for row in manifest:
        try:
            indices.append(class_names.index(class_name_for(row.label, class_names)))
        except DatasetError as error:
            problems.append(f"{row.path}: {error}")
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise DatasetError("; ".join(problems[:3]) + more, problems)
    return np.asarray(indices, dtype=np.int64)

"""Explanations of the classifiers' decisions.

Example:
    >>> import numpy as np
    >>> from keras_covidcxr import CXRClassifier
    >>> from keras_covidcxr.explain import GradCAM
    >>> model = CXRClassifier("mobilenet_v2", num_classes=3, input_shape=(64, 64, 3))
    >>> GradCAM(model)(np.zeros((2, 64, 64, 3), "float32")).shape  # each image's predicted class
    (2, 64, 64)
"""

from keras_covidcxr.explain.grad_cam import GradCAM

__all__ = ["GradCAM"]

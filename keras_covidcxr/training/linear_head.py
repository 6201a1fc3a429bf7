"""A frozen ImageNet backbone + a logistic-regression head: the CPU recipe for small data.

With a few hundred images, fine-tuning millions of backbone weights overfits and costs hours on a
CPU. Instead the backbone's pooled features are computed once and a class-weighted, L2-regularised
logistic regression (scikit-learn) is fitted on them; its coefficients become the classifier's
`head_logits` layer (a `CXRClassifier` with `head_units=0`: pooled features straight to the logit),
so the result is an ordinary Keras model that gives exactly the regression's probabilities.

Example:
    >>> from keras_covidcxr import CXRClassifier  # doctest: +SKIP
    >>> model = CXRClassifier("mobilenet_v2", head_units=0, input_shape=(224, 224, 1),
    ...                       input_normalization="imagenet", backbone_weights="mobilenetv2.weights.h5")  # doctest: +SKIP
    >>> features = pooled_features(model, gray_images)  # doctest: +SKIP
    >>> fit_linear_head(model, features, labels)  # doctest: +SKIP
"""

import keras
import numpy as np

from keras_covidcxr.errors import ConfigError


def pooled_features(classifier, images, batch_size=32):
    """(n, channels) global-average-pooled last feature maps of a classifier's backbone.

    `images` are classifier inputs (n, S, S) or (n, S, S, channels); batches are padded to one
    shape so the backbone is traced once.
    """
    pooled = []
    for batch, count in padded_batches(images, batch_size, classifier.image_shape[-1]):
        maps = keras.ops.convert_to_numpy(classifier.feature_extractor.predict_on_batch(batch))
        pooled.append(maps[:count].mean(axis=(1, 2)))
    return np.concatenate(pooled).astype("float64")


def padded_batches(inputs, batch_size, channels=3):
    """Yield (batch of `channels`-channel images padded to one size, its real count) from a
    `ClassificationDataset` (its stored, never augmented inputs) or an array (n, S, S[, c]).

    Padding gives the model one batch shape to trace; the batch is never larger than the images
    (18 films padded to a batch of 1,000 exhausted memory).
    """
    images = np.asarray(getattr(inputs, "inputs", inputs), "float32")
    if images.ndim == 3:
        images = images[..., None]
    if images.shape[-1] != channels:
        images = np.repeat(images, channels, axis=-1)
    batch_size = max(1, min(batch_size, len(images)))
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        count = len(batch)
        if count < batch_size:
            batch = np.concatenate([batch, np.zeros((batch_size - count, *batch.shape[1:]), "float32")])
        yield batch, count


def fit_logistic_regression(features, labels, regularization=0.05):
    """A class-balanced, L2-regularised logistic regression on standardised features.

    Two classes (labels 0/1): returns (scikit-learn pipeline, kernel (channels,), bias) where kernel
    and bias act on the raw (unstandardised) features: logit = features @ kernel + bias. More classes
    (labels 0..K-1, a multinomial regression): kernel (channels, K) and bias (K,), the softmax's logits.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    labels = np.asarray(labels).reshape(-1)
    present = set(np.unique(labels).tolist())
    if len(present) < 2 or present != set(range(len(present))):
        raise ConfigError(f"a linear head needs every class (0, 1, ...) among its training labels, got {sorted(present)}")
    model = make_pipeline(
        StandardScaler(), LogisticRegression(C=regularization, class_weight="balanced", max_iter=5000)
    )
    model.fit(features, labels)
    scaler, regression = model[0], model[1]
    kernel = (regression.coef_ / scaler.scale_).T  # (channels, 1) or (channels, K)
    bias = regression.intercept_ - regression.coef_ @ (scaler.mean_ / scaler.scale_)
    if len(present) == 2:
        return model, kernel[:, 0], float(bias[0])
    return model, kernel, bias


def fit_linear_head(classifier, features, labels, regularization=0.05):
    """Fit `fit_logistic_regression` and write it into a `head_units=0` classifier's logits layer.

    Args:
        classifier: a `CXRClassifier` with `head_units=0` (two classes: sigmoid; more: softmax).
        features: (n, channels) from `pooled_features(classifier, ...)`.
        labels: (n,) class indices (two classes: 1 = the positive class, e.g. COVID-19).
        regularization: the inverse L2 strength `C` of scikit-learn.

    Returns:
        The fitted scikit-learn pipeline (its `predict_proba` equals the classifier's output).
    """
    _check_linear_head(classifier)
    model, kernel, bias = fit_logistic_regression(features, labels, regularization)
    write_linear_head(classifier, kernel, bias)
    return model


def write_linear_head(classifier, kernel, bias):
    """Set a `head_units=0` classifier's logits to `pooled features @ kernel + bias`.

    For heads fitted elsewhere, e.g. the mean kernel and bias of cross-fitted logistic regressions
    (bagging in logit space).
    """
    _check_linear_head(classifier)
    logits = classifier.head.get_layer("head_logits")
    units = logits.kernel.shape[-1]
    logits.kernel.assign(np.asarray(kernel, "float32").reshape(-1, units))
    logits.bias.assign(np.asarray(bias, "float32").reshape(units))


def _check_linear_head(classifier):
    if classifier.head_units:
        raise ConfigError(f"{classifier.name}: a linear head needs a classifier with head_units=0")

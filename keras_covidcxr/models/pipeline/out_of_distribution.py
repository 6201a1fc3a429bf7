"""Out-of-distribution hints: how far an image's features lie from the images the preset was trained on.

`FeatureDistanceCheck` keeps the L2-normalised, globally pooled backbone features of one member on
the training images and measures a new image by the cosine distance to its k-th nearest training
neighbour (deep nearest neighbours, Sun et al. 2022). The threshold is a high quantile of the same
distance on validation images, so about 1 - quantile of in-distribution films are flagged by
mistake; lateral views, CT slices and photographs lie much farther. A flag is a warning, never a
refusal. Numpy only; the reference features live in the preset's `out_of_distribution.npz`.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> train, validation = rng.normal(1, 0.1, (50, 8)), rng.normal(1, 0.1, (20, 8))
    >>> check = fit_feature_distance_check("member", train, validation, neighbours=3, quantile=0.95)
    >>> check.flags(np.vstack([validation[:1], -np.ones((1, 8))])).tolist()
    [False, True]
"""

import dataclasses
import zipfile

import numpy as np

from keras_covidcxr.errors import ConfigError, PresetError
from keras_covidcxr.settings import is_whole_number

FEATURES_FILE = "out_of_distribution.npz"


@dataclasses.dataclass
class FeatureDistanceCheck:
    """k-NN cosine distance of a member's pooled features to the training images' features.

    Attributes:
        member: the ensemble member whose backbone gives the features.
        reference: (n, d) L2-normalised training features.
        threshold: distances above it are flagged.
        neighbours: k, the neighbour whose distance counts.
        quantile: the validation quantile `threshold` was taken at (provenance).
    """

    member: str
    reference: np.ndarray
    threshold: float
    neighbours: int = 5
    quantile: float = None

    def __post_init__(self):
        if not is_whole_number(self.neighbours) or self.neighbours < 1:
            raise ConfigError(f"the out-of-distribution check's neighbours must be a whole number >= 1, "
                              f"got {self.neighbours!r}")
        if not np.isfinite(np.asarray(self.reference, "float32")).all():
            raise ConfigError("the out-of-distribution check's reference features hold NaN or infinite values")
        self.reference = _normalised(self.reference)
        if self.reference.ndim != 2 or len(self.reference) < self.neighbours:
            raise ConfigError(
                f"the out-of-distribution check needs at least {self.neighbours} reference feature rows, "
                f"got shape {self.reference.shape}"
            )

    def distances(self, features):
        """(n,) cosine distance of each feature row to its k-th nearest reference row."""
        features = _normalised(features)
        if features.shape[-1] != self.reference.shape[1]:
            raise ConfigError(f"features have {features.shape[-1]} channels, the reference {self.reference.shape[1]}")
        similarities = features @ self.reference.T
        kth = np.partition(similarities, -self.neighbours, axis=1)[:, -self.neighbours]
        return 1.0 - kth

    def flags(self, features):
        return self.distances(features) > self.threshold

    def to_config(self):
        """The config.json entry; the reference rows go to `FEATURES_FILE`."""
        config = {"member": self.member, "threshold": float(self.threshold), "neighbours": int(self.neighbours),
                  "features": FEATURES_FILE}
        if self.quantile is not None:
            config["quantile"] = float(self.quantile)
        return config

    def save_features(self, folder):
        np.savez(f"{folder}/{FEATURES_FILE}", reference=self.reference.astype("float16"))

    @classmethod
    def from_config(cls, config, folder):
        path = f"{folder}/{config.get('features', FEATURES_FILE)}"
        try:
            with np.load(path, allow_pickle=False) as stored:
                reference = stored["reference"].astype("float32")
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise PresetError(f"{path}: cannot read the out-of-distribution features ({error})") from error
        settings = {key: config[key] for key in ("member", "threshold", "neighbours", "quantile") if key in config}
        try:
            return cls(reference=reference, **settings)
        except ConfigError as error:
            raise PresetError(f"{path}: {error}") from error


def fit_feature_distance_check(member, training_features, validation_features, neighbours=5, quantile=0.99):
    """A `FeatureDistanceCheck` on training features, its threshold the `quantile` of validation distances.

    The validation images must not be among the training ones (their distance would be 0).
    """
    if not 0.5 <= quantile < 1.0:
        raise ConfigError(f"quantile must lie in [0.5, 1), got {quantile}")
    check = FeatureDistanceCheck(member, training_features, threshold=np.inf, neighbours=neighbours, quantile=quantile)
    check.threshold = float(np.quantile(check.distances(validation_features), quantile))
    return check


def _normalised(features):
    features = np.asarray(features, "float32")
    norms = np.linalg.norm(features, axis=-1, keepdims=True)
    return features / np.maximum(norms, 1e-12)

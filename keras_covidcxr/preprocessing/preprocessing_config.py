"""The preprocessing settings a preset carries (config.json's "preprocessing")."""

import dataclasses

from keras_covidcxr.errors import ConfigError
from keras_covidcxr.preprocessing.lung_masking import MASKING_MODES
from keras_covidcxr.settings import check_field_types, settings_from_dict


@dataclasses.dataclass(frozen=True)
class PreprocessingConfig:
    """How the pipeline turns a segmented X-ray into a classifier input.

    Args:
        mask_threshold: lung probability at or above which a pixel is lung.
        masking: "hard" (zero outside the lungs, the paper), "bbox" (crop
            to the lungs' bounding box plus `bbox_margin`) or "lungs_removed"
            (zero the lungs: the evaluation's shortcut probe).
        bbox_margin: margin around the box, as a fraction of the image size.
        min_lung_fraction, max_lung_fraction, max_lung_components: bounds of
            a plausible lung mask (a frontal CXR's lungs cover roughly a fifth
            to three fifths of the film, in one or two pieces). Pieces below
            the lungs are flagged separately (`cleaned_lung_mask`).
        fall_back_to_unmasked: classify the whole image, with a warning, when
            the mask is implausible; otherwise use the mask anyway, with a
            warning.
        keep_largest_pieces: keep only this many largest connected pieces
            of the lung mask (2: the two lungs), with a warning naming the
            area removed; 0 keeps the mask as predicted.
        standardize: scale each classifier input to mean 0, std 1 (the
            paper). False keeps the gray [0, 1] pixels, for classifiers that
            apply their backbone's ImageNet normalisation themselves
            (`CXRClassifier(input_normalization="imagenet")`).
    """

    mask_threshold: float = 0.5
    masking: str = "hard"
    bbox_margin: float = 0.025
    min_lung_fraction: float = 0.05
    # Above every real mask: the 336 human-drawn masks of ../shared/data/cxr cover 18.0% (0.5th
    # percentile), 36.0% (median), 59.8% (99.5th) and at most 61.5% of the film; covidcxr_lite's
    # segmenter, on all 783 films there, 57.7% (99.5th) and at most 63.0%.
    max_lung_fraction: float = 0.65
    max_lung_components: int = 3
    fall_back_to_unmasked: bool = True
    keep_largest_pieces: int = 0
    standardize: bool = True

    def __post_init__(self):
        check_field_types(self, "preprocessing settings")
        if self.masking not in MASKING_MODES:
            raise ConfigError(f"masking must be one of {MASKING_MODES}, got {self.masking!r}")
        if not 0.0 < self.mask_threshold < 1.0:
            raise ConfigError(f"mask_threshold must lie in (0, 1), got {self.mask_threshold}")
        if not 0.0 <= self.bbox_margin < 0.5:
            raise ConfigError(f"bbox_margin must lie in [0, 0.5) (a fraction of the film), got {self.bbox_margin}")
        if not 0.0 <= self.min_lung_fraction < self.max_lung_fraction <= 1.0:
            raise ConfigError(f"need 0 <= min_lung_fraction < max_lung_fraction <= 1, got {self.min_lung_fraction} "
                              f"and {self.max_lung_fraction}")
        if self.max_lung_components < 1 or self.keep_largest_pieces < 0:
            raise ConfigError(f"need max_lung_components >= 1 and keep_largest_pieces >= 0, got "
                              f"{self.max_lung_components} and {self.keep_largest_pieces}")

    @classmethod
    def from_dict(cls, config):
        return settings_from_dict(cls, config, "preprocessing settings")

    def to_dict(self):
        return dataclasses.asdict(self)

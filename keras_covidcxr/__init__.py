"""keras-covidcxr: lung segmentation and COVID-19 classification of chest X-rays.

Public names are resolved lazily so that `import keras_covidcxr` (and the
CLI's fast paths such as `covidcxr --help`) never import a Keras backend.

Example:
    >>> import keras_covidcxr
    >>> pipeline = keras_covidcxr.Pipeline.from_preset(keras_covidcxr.DEFAULT_PRESET)  # doctest: +SKIP
    >>> result = pipeline.predict(["chest.png"])[0]  # doctest: +SKIP
    >>> result.label, result.probabilities  # doctest: +SKIP
"""

import importlib

from keras_covidcxr._lazy_exports import lazy_exports
from keras_covidcxr.errors import (
    ConfigError,
    CovidCXRError,
    DatasetError,
    ImageDecodeError,
    InputContractError,
    InputError,
    MissingDependencyError,
    OutputExistsError,
    PresetError,
    UnsupportedImageError,
    UntrainedPresetWarning,
)
from keras_covidcxr.version import __version__

# The preset `covidcxr predict` uses without --preset: trained on real public images, bundled in the
# package (keras_covidcxr/presets/bundled/), loads with no network. Research use only, not for diagnosis.
DEFAULT_PRESET = "covidcxr_lite"

# Registers the pipeline presets with keras_covidcxr.presets.registry (plain data, no Keras), so a
# preset name resolves however the package is entered.
importlib.import_module("keras_covidcxr.models.pipeline")

# public name -> module that defines it (imported on first attribute access)
_LAZY = {
    "ResUnet": "keras_covidcxr.models.resunet.resunet",
    "CXRClassifier": "keras_covidcxr.models.classifier.cxr_classifier",
    "EfficientNetLite0": "keras_covidcxr.models.classifier.efficientnet_lite",
    "convert_efficientnet_lite0": "keras_covidcxr.models.classifier.convert_efficientnet_lite0",
    "WeightedAverageEnsemble": "keras_covidcxr.models.ensemble.weighted_average_ensemble",
    "MajorityVoteEnsemble": "keras_covidcxr.models.ensemble.majority_vote_ensemble",
    "Pipeline": "keras_covidcxr.models.pipeline.pipeline",
    "PipelineResult": "keras_covidcxr.models.pipeline.pipeline_result",
    "GradCAM": "keras_covidcxr.explain.grad_cam",
    "list_presets": "keras_covidcxr.presets.registry",
    "read_preset_metadata": "keras_covidcxr.presets.preset_format",
    "load_image": "keras_covidcxr.io.image_loader",
    "LoadedImage": "keras_covidcxr.io.image_loader",
    "save_overlays": "keras_covidcxr.io.overlays",
    "verify_preset": "keras_covidcxr.models.pipeline.verification",
    "upload_preset": "keras_covidcxr.presets.upload",
    "find_model_card": "keras_covidcxr.presets.upload",
    "sample_images": "keras_covidcxr.samples",
    "evaluate_pipeline": "keras_covidcxr.evaluation.evaluate_pipeline",
    "Evaluation": "keras_covidcxr.evaluation.evaluate_pipeline",
    "InputContract": "keras_covidcxr.preprocessing.input_contract",
    "PreprocessingConfig": "keras_covidcxr.preprocessing.preprocessing_config",
    # training (keras_covidcxr.training holds the rest of its API)
    "TrainingConfig": "keras_covidcxr.training.config",
    "train_segmenter": "keras_covidcxr.training.segmenter_training",
    "train_classifier": "keras_covidcxr.training.classifier_training",
    "fit_ensemble_weights": "keras_covidcxr.training.ensemble_fitting",
    "assemble_pipeline": "keras_covidcxr.training.assembly",
    "finetune": "keras_covidcxr.training.finetune",
    "UnusedSettingsWarning": "keras_covidcxr.training.finetune",
    "run_segmenter_recipe": "keras_covidcxr.training.recipes",
    "run_classifier_recipe": "keras_covidcxr.training.recipes",
    "assemble_preset": "keras_covidcxr.training.recipes",
    "write_synthetic_dataset": "keras_covidcxr.training.synthetic_data",
    "predict_to_file": "keras_covidcxr.inference.batch_prediction",
    "PredictionSummary": "keras_covidcxr.inference.batch_prediction",
    "finished_run": "keras_covidcxr.inference.batch_prediction",
    "results_format": "keras_covidcxr.inference.results_file",
    "DecisionRule": "keras_covidcxr.models.pipeline.decision_rule",
    "decision_rule_from_config": "keras_covidcxr.models.pipeline.decision_rule",
    "find_images": "keras_covidcxr.inference.image_walk",
    "ProbabilityCalibration": "keras_covidcxr.models.pipeline.calibration",
    "fit_calibration": "keras_covidcxr.models.pipeline.calibration",
    "ReferRule": "keras_covidcxr.models.pipeline.refer_rule",
    "fit_refer_rule": "keras_covidcxr.models.pipeline.refer_rule",
    "fails_input_checks": "keras_covidcxr.models.pipeline.refer_rule",
    "FeatureDistanceCheck": "keras_covidcxr.models.pipeline.out_of_distribution",
    "fit_feature_distance_check": "keras_covidcxr.models.pipeline.out_of_distribution",
    "test_time_variants": "keras_covidcxr.preprocessing.test_time_augmentation",
}

__all__ = [
    "DEFAULT_PRESET",
    "ConfigError",
    "CovidCXRError",
    "DatasetError",
    "ImageDecodeError",
    "InputContractError",
    "InputError",
    "MissingDependencyError",
    "OutputExistsError",
    "PresetError",
    "UnsupportedImageError",
    "UntrainedPresetWarning",
    "__version__",
    *_LAZY,
]


__getattr__, __dir__ = lazy_exports(globals(), _LAZY, subpackages=("data", "metrics"))

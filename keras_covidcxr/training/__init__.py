"""Training: the paper's recipes for the segmenter, the classifiers and the ensemble, and fine-tuning.

How trained components become one preset:

1. `train_segmenter` -> a checkpoint folder whose best/ is the ResUnet
   (`covidcxr train segmenter MANIFEST --out runs/seg`).
2. `train_classifier`, once per backbone, on images masked by that segmenter
   (`covidcxr train classifier MANIFEST --segmenter runs/seg --backbone densenet201 --out runs/densenet201`).
3. `fit_ensemble_weights` on the validation split + `assemble_pipeline` -> a `Pipeline`, saved as a
   preset whose metadata records data and recipe (`covidcxr train ensemble MANIFEST --segmenter runs/seg
   --member runs/densenet201 --member runs/resnet152 --member runs/vgg19 --out my_preset`).
4. `finetune(preset, manifest)` adapts a preset to new data or new classes
   (`covidcxr finetune PRESET MANIFEST --out NEW_PRESET`).

For a few hundred images on a CPU, `pooled_features` + `fit_linear_head` give a frozen ImageNet
backbone a logistic-regression head (the bundled preset's recipe, examples/train_bundled_preset.py).

Everything runs on any Keras backend (TensorFlow, JAX, PyTorch): batches come from
`keras.utils.PyDataset`s and augmentation from Keras core layers.
"""

from keras_covidcxr.training.assembly import (
    assemble_pipeline,
    check_operating_threshold,
    member_probabilities,
    validation_report,
)
from keras_covidcxr.training.augmentation import (
    CLASSIFIER_AUGMENTATION,
    MILD_SEGMENTER_AUGMENTATION,
    SEGMENTER_AUGMENTATION,
    AugmentationSettings,
    Augmenter,
)
from keras_covidcxr.training.checkpoints import TrainingCheckpoint, load_checkpoint
from keras_covidcxr.training.class_weights import balanced_class_weights
from keras_covidcxr.training.classifier_training import classifier_datasets, train_classifier
from keras_covidcxr.training.config import TrainingConfig
from keras_covidcxr.training.datasets import (
    ClassificationDataset,
    SegmentationDataset,
    masked_classifier_inputs,
)
from keras_covidcxr.training.ensemble_fitting import EnsembleFit, fit_ensemble_weights
from keras_covidcxr.training.finetune import FinetuneResult, finetune
from keras_covidcxr.training.labels import default_class_names, label_indices
from keras_covidcxr.training.linear_head import (
    fit_linear_head,
    fit_logistic_regression,
    pooled_features,
    write_linear_head,
)
from keras_covidcxr.training.losses import DiceBCELoss, DiceCoefficient
from keras_covidcxr.training.provenance import data_provenance
from keras_covidcxr.training.recipes import (
    AssembledPreset,
    assemble_preset,
    run_classifier_recipe,
    run_segmenter_recipe,
)
from keras_covidcxr.training.results import TrainingResult
from keras_covidcxr.training.segmenter_training import train_segmenter
from keras_covidcxr.training.synthetic_data import write_synthetic_dataset
from keras_covidcxr.training.unfreezing import backbone_blocks, freeze_batch_norm, unfreeze_top_blocks

__all__ = [
    "CLASSIFIER_AUGMENTATION",
    "MILD_SEGMENTER_AUGMENTATION",
    "SEGMENTER_AUGMENTATION",
    "AssembledPreset",
    "AugmentationSettings",
    "Augmenter",
    "ClassificationDataset",
    "DiceBCELoss",
    "DiceCoefficient",
    "EnsembleFit",
    "FinetuneResult",
    "SegmentationDataset",
    "TrainingCheckpoint",
    "TrainingConfig",
    "TrainingResult",
    "assemble_pipeline",
    "assemble_preset",
    "backbone_blocks",
    "balanced_class_weights",
    "check_operating_threshold",
    "classifier_datasets",
    "data_provenance",
    "default_class_names",
    "finetune",
    "fit_ensemble_weights",
    "fit_linear_head",
    "write_linear_head",
    "fit_logistic_regression",
    "freeze_batch_norm",
    "label_indices",
    "load_checkpoint",
    "masked_classifier_inputs",
    "member_probabilities",
    "pooled_features",
    "run_classifier_recipe",
    "run_segmenter_recipe",
    "train_classifier",
    "train_segmenter",
    "unfreeze_top_blocks",
    "validation_report",
    "write_synthetic_dataset",
]

"""The knobs of every training recipe, in one serialisable dataclass."""

import dataclasses

import keras

from keras_covidcxr.errors import ConfigError
from keras_covidcxr.settings import settings_from_dict

DTYPE_POLICIES = ("mixed_bfloat16", "mixed_float16")
CLASSIFIER_RECIPES = ("two_phase", "end_to_end")


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Settings shared by the segmenter, classifier and fine-tuning recipes.

    The defaults are the paper's (section 3.3) where it gives them; the rest
    are ours and say so.

    Args:
        batch_size: images per step (paper: 32).
        epochs: segmenter epochs (paper: 45 epochs for Dice 95.04%); also the
            cap of the end-to-end classifier recipe.
        learning_rate: the segmenter's Adam learning rate (ours: Adam's 1e-3);
            also that of the end-to-end classifier recipe.
        classifier_recipe: "two_phase" (the paper's, for ImageNet backbones) or
            "end_to_end" (ours, for backbones trained from scratch or seeded
            from the segmenter; see `classifier_training`).
        head_epochs: classifier phase 1, head only, backbone frozen (paper: 5).
        head_learning_rate: phase-1 Adam learning rate (paper: Adam's
            defaults, i.e. 1e-3).
        finetune_learning_rate: phase-2 Adam learning rate (paper: 1e-5).
        unfreeze_schedule: phase 2's stages, each the fraction of the
            backbone's blocks, counted from the top, that are trainable in
            that stage (ours: 10%, 25%, 50%, then all; the paper says only
            "progressively"). See `unfreezing.backbone_blocks` for what a
            block is.
        max_epochs_per_stage: cap on each phase-2 stage (and on continued
            training in `finetune`).
        patience: a stage ends after this many epochs without a better
            validation accuracy (segmenter: validation Dice); 0 disables early
            stopping of the segmenter.
        augment: on-the-fly augmentation of the training split (the paper's
            settings, `augmentation.py`).
        mixed_precision: None (float32), "mixed_bfloat16" (TPU, Ampere+ GPU)
            or "mixed_float16" (older GPUs; Keras adds loss scaling).
        jit_compile: XLA compilation of the train step: True, False or "auto"
            (Keras decides; XLA on the JAX backend).
        steps_per_execution: train steps per compiled call (fewer host round
            trips on a GPU/TPU).
        workers: threads that decode and augment batches
            (`keras.utils.PyDataset`); 1 runs them in the training thread.
        seed: shuffling seed (the order of epoch e is a function of seed and
            e, so a resumed run sees the same batches in the same order as an
            uninterrupted one); the recipes (`run_segmenter_recipe`,
            `run_classifier_recipe`) also seed the initial weights with it
            (`keras.utils.set_random_seed`). Two runs with one seed match at
            workers=1; with more workers, or resumed after an interruption
            (augmentation and dropout draws are not restored), the weights
            differ slightly, as two training runs on a GPU do.
        run_eagerly: debug/tiny-data switch: no graph compilation at all.
        verbose: Keras' own progress output (0 silent, 1 bar, 2 one line per
            epoch).
    """

    batch_size: int = 32
    epochs: int = 45
    learning_rate: float = 1e-3
    classifier_recipe: str = "two_phase"
    head_epochs: int = 5
    head_learning_rate: float = 1e-3
    finetune_learning_rate: float = 1e-5
    unfreeze_schedule: tuple = (0.1, 0.25, 0.5, 1.0)
    max_epochs_per_stage: int = 20
    patience: int = 3
    augment: bool = True
    mixed_precision: str | None = None
    jit_compile: bool | str = "auto"
    steps_per_execution: int = 1
    workers: int = 4
    seed: int = 0
    run_eagerly: bool = False
    verbose: int = 0

    def __post_init__(self):
        object.__setattr__(self, "unfreeze_schedule", tuple(float(f) for f in self.unfreeze_schedule))
        if self.batch_size < 1 or self.epochs < 0 or self.head_epochs < 0 or self.max_epochs_per_stage < 0:
            raise ConfigError("batch_size must be >= 1 and epoch counts >= 0")
        if self.patience < 0:
            raise ConfigError(f"patience must be >= 0, got {self.patience}")
        for name in ("learning_rate", "head_learning_rate", "finetune_learning_rate"):
            rate = getattr(self, name)
            if not 0 < rate < float("inf"):  # also refuses nan; a negative rate climbs the loss
                raise ConfigError(f"{name} must be a positive number, got {rate}")
        if self.steps_per_execution < 1 or self.workers < 1:
            raise ConfigError("steps_per_execution and workers must be >= 1")
        schedule = self.unfreeze_schedule
        if any(not 0.0 < f <= 1.0 for f in schedule) or list(schedule) != sorted(schedule):
            raise ConfigError(
                f"unfreeze_schedule {list(schedule)} must be increasing fractions in (0, 1]"
            )
        if self.mixed_precision not in (None, *DTYPE_POLICIES):
            raise ConfigError(
                f"mixed_precision must be None or one of {DTYPE_POLICIES}, got {self.mixed_precision!r}"
            )
        if self.classifier_recipe not in CLASSIFIER_RECIPES:
            raise ConfigError(
                f"classifier_recipe must be one of {CLASSIFIER_RECIPES}, got {self.classifier_recipe!r}"
            )
        if self.jit_compile not in (True, False, "auto"):
            raise ConfigError(f"jit_compile must be True, False or 'auto', got {self.jit_compile!r}")

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def to_dict(self):
        """JSON-ready settings (recorded as the recipe in a preset's metadata)."""
        settings = dataclasses.asdict(self)
        settings["unfreeze_schedule"] = list(self.unfreeze_schedule)
        return settings

    @classmethod
    def from_dict(cls, settings):
        return settings_from_dict(cls, settings, "training settings")

    @property
    def dtype_policy(self):
        return self.mixed_precision or "float32"

    def compile_options(self):
        """Keyword arguments for `model.compile` (XLA, steps per execution, eager)."""
        return {
            "jit_compile": False if self.run_eagerly else self.jit_compile,
            "steps_per_execution": self.steps_per_execution,
            "run_eagerly": self.run_eagerly,
        }


def under_dtype_policy(model, policy):
    """`model` itself when it already computes in `policy`; else a rebuilt copy with its weights.

    Mixed precision is chosen when layers are built, so a model loaded or
    built in float32 is rebuilt from its config under the policy (variables
    stay float32; only the computation changes). The preset config stores no
    dtype, so a model trained in mixed precision loads back in float32.
    """
    policy = policy or "float32"
    if model.dtype_policy.name == policy:
        return model
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        clone = type(model).from_config(model.get_config())
    finally:
        keras.config.set_dtype_policy(previous)
    clone.set_weights(model.get_weights())
    return clone

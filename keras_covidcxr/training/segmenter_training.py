"""Training the lung segmenter (ResUnet): Dice + BCE, validation Dice, best checkpoint, resume.

Recipe (paper, section 3.3): augmentation with rotation 180 degrees, shift 30%, shear 20%, zoom
20% and horizontal flips (`SEGMENTER_AUGMENTATION`); 45 epochs; the paper reached Dice 95.04% on
the V7 Labs lung masks. Loss and optimiser are ours (the paper names neither): Dice + binary
cross-entropy (see `losses.py` for why) and Adam at `config.learning_rate`.

Example:
    >>> from keras_covidcxr import ResUnet, TrainingConfig, train_segmenter  # doctest: +SKIP
    >>> from keras_covidcxr.training import SegmentationDataset, Augmenter, SEGMENTER_AUGMENTATION  # doctest: +SKIP
    >>> train = SegmentationDataset(manifest.filter(split="train"), 256, augmenter=Augmenter(SEGMENTER_AUGMENTATION), shuffle=True)  # doctest: +SKIP
    >>> val = SegmentationDataset(manifest.filter(split="val"), 256)  # doctest: +SKIP
    >>> result = train_segmenter(ResUnet(), train, val, TrainingConfig(), checkpoint_dir="runs/seg")  # doctest: +SKIP
    >>> result.best_value  # best validation Dice  # doctest: +SKIP
"""

import time

import keras

from keras_covidcxr.training.batch_norm_statistics import BatchNormStatisticsCallback
from keras_covidcxr.training.checkpoints import BestEpochCallback, TrainingCheckpoint
from keras_covidcxr.training.config import TrainingConfig, under_dtype_policy
from keras_covidcxr.training.losses import DiceBCELoss, DiceCoefficient
from keras_covidcxr.training.results import TrainingResult


def compile_segmenter(model, config):
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss=DiceBCELoss(),
        metrics=[DiceCoefficient()],
        **config.compile_options(),
    )


def train_segmenter(segmenter, train_data, val_data=None, config=None, checkpoint_dir=None, resume=True,
                    callbacks=(), batch_norm_data=None):
    """Train a `ResUnet` with Dice + BCE, keeping the best validation-Dice weights.

    Args:
        segmenter: a `ResUnet`.
        train_data: a `SegmentationDataset` (or anything `fit` takes) of training pairs.
        val_data: validation pairs; the run monitors `val_dice` (training `dice` without them).
        config: a `TrainingConfig` (epochs, learning_rate, patience, precision, XLA, ...).
        checkpoint_dir: folder for best/ and the per-epoch resume state (see `checkpoints.py`).
        resume: continue from the newest state in `checkpoint_dir` if there is one: weights,
            optimizer state, epoch counter, best value and history are restored, and training
            goes on with the next epoch.
        callbacks: extra Keras callbacks (run after the checkpointing one).
        batch_norm_data: un-augmented training batches; the batch-norm moving statistics are
            recomputed from them before each validation (see `batch_norm_statistics.py`: with few
            steps per epoch the moving averages trail the weights and the inference model fails).

    Returns:
        `TrainingResult` whose model holds the best weights.
    """
    config = config or TrainingConfig()
    started = time.monotonic()
    model = under_dtype_policy(segmenter, config.mixed_precision)
    compile_segmenter(model, config)
    monitor = "val_dice" if val_data is not None else "dice"
    checkpoint = TrainingCheckpoint(checkpoint_dir) if checkpoint_dir is not None else None
    if checkpoint is not None and not resume:
        checkpoint.clear()  # a restart: an earlier run's newer epochs would win a later resume
    state = checkpoint.restore_state(model) if checkpoint is not None and resume else None
    state = state or {}
    initial_epoch = int(state.get("epoch", 0))
    if hasattr(train_data, "set_epoch"):
        train_data.set_epoch(initial_epoch)
    keeper = BestEpochCallback(
        monitor,
        "max",
        patience=config.patience,
        checkpoint=checkpoint,
        best=state.get("best"),
        best_epoch=state.get("best_epoch"),
        history=state.get("history"),
        extra_state={"config": config.to_dict()},
    )
    statistics = [BatchNormStatisticsCallback(batch_norm_data)] if batch_norm_data is not None else []
    stopped_already = keeper.patience and keeper.best_epoch is not None and initial_epoch - keeper.best_epoch >= keeper.patience
    if initial_epoch < config.epochs and not stopped_already:
        model.fit(
            train_data,
            validation_data=val_data,
            epochs=config.epochs,
            initial_epoch=initial_epoch,
            callbacks=[*statistics, keeper, *callbacks],
            verbose=config.verbose,
        )
    if keeper.best_weights is not None:
        model.set_weights(keeper.best_weights)
    elif checkpoint is not None and checkpoint.has_best():
        checkpoint.restore_best_weights(model)
    result = TrainingResult(
        model=model,
        monitor=monitor,
        best_value=keeper.best,
        best_epoch=keeper.best_epoch,
        history=keeper.history,
        resumed_from_epoch=initial_epoch,
        seconds=time.monotonic() - started,
    )
    if checkpoint is not None:
        checkpoint.write_summary({"component": "segmenter", **result.summary(), "config": config.to_dict()})
    return result

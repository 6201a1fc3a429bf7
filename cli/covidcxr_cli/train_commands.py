"""`covidcxr train segmenter | classifier | ensemble` and `covidcxr finetune`.

A thin layer over the public training API (`keras_covidcxr.run_segmenter_recipe`, ...):
parse the options, show rich progress, print a summary. Model code is imported inside the
commands, so `covidcxr --help` stays fast. A `CovidCXRError` becomes one `error: ...` line on
stderr and exit code 2.

How the pieces become one preset:
    covidcxr train segmenter split.csv --out runs/seg
    covidcxr train classifier split.csv --segmenter runs/seg --backbone densenet201 --out runs/densenet201
    covidcxr train classifier split.csv --segmenter runs/seg --backbone resnet152 --out runs/resnet152
    covidcxr train classifier split.csv --segmenter runs/seg --backbone vgg19 --out runs/vgg19
    covidcxr train ensemble split.csv --segmenter runs/seg \\
        --member runs/densenet201 --member runs/resnet152 --member runs/vgg19 --out my_preset
    covidcxr finetune my_preset hospital.csv --out hospital_preset
"""

import contextlib
import enum
import os
import sys
import warnings
from pathlib import Path

import typer
from rich.table import Table

from covidcxr_cli.errors import DEBUG, StdoutConsole, reported_errors, stderr

train_app = typer.Typer(
    name="train",
    help="Train the segmenter, the classifiers and the ensemble (the paper's recipes).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = StdoutConsole(highlight=False)


class Precision(str, enum.Enum):
    float32 = "float32"
    mixed_bfloat16 = "mixed_bfloat16"
    mixed_float16 = "mixed_float16"


class FinetuneRecipe(str, enum.Enum):
    auto = "auto"
    linear_probe = "linear-probe"
    train = "train"


class EnsembleKind(str, enum.Enum):
    weighted_average = "weighted_average"
    majority_vote = "majority_vote"


class WeightMethod(str, enum.Enum):
    log_loss = "log_loss"
    accuracy = "accuracy"
    uniform = "uniform"


class Masking(str, enum.Enum):
    hard = "hard"
    bbox = "bbox"


MANIFEST = typer.Argument(..., help="Manifest CSV with train and val splits (`covidcxr data split`).", show_default=False)
BATCH = typer.Option(32, "--batch-size", min=1, help="Images per step (paper: 32).")
PRECISION = typer.Option(Precision.float32, "--precision", help="Mixed precision on a GPU/TPU.")
XLA = typer.Option(None, "--jit-compile/--no-jit-compile", help="XLA-compile the train step (default: Keras decides).")
STEPS = typer.Option(1, "--steps-per-execution", min=1, help="Train steps per compiled call (GPU/TPU throughput).")
WORKERS = typer.Option(4, "--workers", min=1, help="Threads decoding and augmenting batches.")
SEED = typer.Option(0, "--seed", help="Shuffling and augmentation seed.")
RESUME = typer.Option(True, "--resume/--restart",
                      help="Continue from the checkpoint in --out if there is one; --restart deletes it and trains anew.")
AUGMENT = typer.Option(True, "--augment/--no-augment", help="The paper's on-the-fly augmentation.")
EAGER = typer.Option(False, "--eager", help="No graph compilation (debugging; quicker for tiny smoke runs).")


def _floats(text, what):
    import keras_covidcxr

    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise keras_covidcxr.ConfigError(f"{what} must be comma-separated numbers, got {text!r}") from None


def _check_before_the_backend(manifest, task, segmenter_dir=None):
    """Usage errors that need no Keras (a missing or unsplit manifest, a missing segmenter folder), in well
    under a second rather than after the backend loads."""
    import keras_covidcxr.data

    rows = keras_covidcxr.data.read_manifest(manifest)
    for split in ("train", "val"):
        rows.split_rows(task, split)
    if segmenter_dir is not None and not segmenter_dir.is_dir():
        raise keras_covidcxr.ConfigError(f"{segmenter_dir}: no such training run folder (--segmenter: the --out "
                                         "folder of `covidcxr train segmenter`)")


def _config(**settings):
    import keras_covidcxr

    precision = settings.pop("precision")
    jit = settings.pop("jit_compile")
    return keras_covidcxr.TrainingConfig(
        mixed_precision=None if precision == Precision.float32 else precision.value,
        jit_compile="auto" if jit is None else jit,
        **settings,
    )


def _without_onednn():
    """Turn TensorFlow's oneDNN CPU kernels off for training, unless the user set TF_ENABLE_ONEDNN_OPTS:
    training a small ResUnet (64 px, filters 4,8,16, batch 4) with them on corrupts memory and kills the
    process ("free(): invalid next size") on a 2-core x86 CPU, whatever the batch size's parity."""
    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def _resume_hint(out, unit="epoch", restarted=False):
    if restarted:  # rerunning the same command would restart again
        return (f"--restart removed the earlier run in {out}; it keeps this run's last finished {unit}, if one "
                "finished: rerun the command without --restart to resume from it")
    return f"{out} keeps the last finished {unit}, if one finished: rerun the same command to resume from it"


# the classifier recipe keeps its state after each phase (head only) and unfreezing stage, not each epoch
_CLASSIFIER_UNIT = "phase or unfreezing stage (head only, then each stage)"


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    )


def _epoch_callback(progress, label):
    """A Keras callback: a progress bar while an epoch runs, then one full line with its metrics."""
    import keras

    class RichEpochs(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.task = progress.add_task(f"{label} epoch {epoch + 1}", total=self.params.get("steps"))

        def on_train_batch_end(self, batch, logs=None):
            progress.update(self.task, completed=batch + 1)

        def on_epoch_end(self, epoch, logs=None):
            shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted((logs or {}).items()) if "loss" in k or "dice" in k or "acc" in k)
            progress.remove_task(self.task)  # a finished bar would cut the metrics at the terminal's width
            progress.console.print(f"{label} {self.model.name} epoch {epoch + 1}: {shown}", soft_wrap=True,
                                   markup=False)

    return RichEpochs()


def _summary_table(title, rows):
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows:
        table.add_row(key, "-" if value is None else str(value))
    return table


def _fmt(value, digits=4):
    return None if value is None else f"{value:.{digits}f}"


@train_app.command("segmenter")
def segmenter(
    manifest: Path = MANIFEST,
    out: Path = typer.Option(..., "--out", help="Checkpoint folder (best/, state/, summary.json)."),
    input_size: int = typer.Option(256, "--input-size", help="ResUnet input side (paper: 256)."),
    filters: str = typer.Option("64,128,256,512", "--filters", help="Filters per level (paper: 64,128,256,512)."),
    epochs: int = typer.Option(45, "--epochs", min=1, help="Epochs (paper: 45)."),
    learning_rate: float = typer.Option(1e-3, "--learning-rate", help="Adam learning rate."),
    patience: int = typer.Option(0, "--patience", min=0, help="Stop after this many epochs without a better val Dice (0: never)."),
    batch_size: int = BATCH, augment: bool = AUGMENT, precision: Precision = PRECISION, jit_compile: bool | None = XLA,
    steps_per_execution: int = STEPS, workers: int = WORKERS, seed: int = SEED, resume: bool = RESUME, eager: bool = EAGER,
    debug: bool = DEBUG,
):
    """Train the lung segmenter (ResUnet, Dice + BCE) on the manifest's seg rows."""
    _without_onednn()
    with reported_errors(debug):
        _check_before_the_backend(manifest, "seg")
        _floats(filters, "--filters")
    with reported_errors(debug, needs_keras=True, interrupted_hint=_resume_hint(out, restarted=not resume)):
        import keras_covidcxr

        config = _config(epochs=epochs, learning_rate=learning_rate, patience=patience, batch_size=batch_size,
                         augment=augment, precision=precision, jit_compile=jit_compile,
                         steps_per_execution=steps_per_execution, workers=workers, seed=seed, run_eagerly=eager)
        sizes = tuple(int(f) for f in _floats(filters, "--filters"))
        with _progress() as progress:
            result = keras_covidcxr.run_segmenter_recipe(
                manifest, out, input_size=input_size, filters=sizes, config=config, resume=resume,
                callbacks=[_epoch_callback(progress, "segmenter")],
            )
        console.print(_summary_table(f"segmenter -> {out}", [
            ("best val Dice", _fmt(result.best_value)),
            ("best epoch", result.best_epoch),
            ("epochs run", f"{len(result.history)} (resumed after {result.resumed_from_epoch})"),
            ("pairs train / val", f"{result.details['pairs']['train']} / {result.details['pairs']['val']}"),
            ("wall time", f"{result.seconds:.0f} s"),
            ("best weights", out / "best"),
        ]))


@train_app.command("classifier")
def classifier(
    manifest: Path = MANIFEST,
    segmenter_dir: Path = typer.Option(..., "--segmenter", help="The trained segmenter's checkpoint folder."),
    out: Path = typer.Option(..., "--out", help="Checkpoint folder (best/, state/, summary.json)."),
    backbone: str = typer.Option(
        "densenet201", "--backbone",
        help="densenet201, resnet152, vgg19 (paper) or a smaller one: mobilenet_v2, efficientnet_lite0, densenet121, ...",
    ),
    name: str | None = typer.Option(None, "--name", help="Member name in the ensemble (default: the backbone)."),
    classes: str | None = typer.Option(None, "--classes", help="Class names in output order (default: non_covid,covid or covid,normal,pneumonia)."),
    num_classes: int | None = typer.Option(
        None, "--num-classes", min=2, show_default=False,
        help="2 (COVID vs rest) or 3 (covid, normal, pneumonia); default: as many as --classes names, else 2."),
    input_size: int = typer.Option(224, "--input-size", help="Classifier input side (paper: 224)."),
    head_units: int | None = typer.Option(None, "--head-units", help="Extra dense layer width (default: the paper's for the backbone)."),
    backbone_weights: str = typer.Option(
        "imagenet", "--backbone-weights",
        help="'imagenet' (downloaded by Keras), 'none', or a local weights file: Keras .weights.h5, or PyTorch "
        ".safetensors for efficientnet_lite0.",
    ),
    imagenet_normalization: bool = typer.Option(
        False, "--imagenet-normalization",
        help="The classifier reads gray [0, 1] images and applies its backbone's ImageNet normalisation itself "
        "(instead of the paper's per-image standardisation).",
    ),
    masking: Masking = typer.Option(Masking.hard, "--masking", help="How the lung mask is applied (must match the preset)."),
    head_epochs: int = typer.Option(5, "--head-epochs", min=0, help="Phase 1 epochs, head only (paper: 5)."),
    schedule: str = typer.Option("0.1,0.25,0.5,1.0", "--unfreeze-schedule", help="Phase 2: fractions of backbone blocks unfrozen per stage."),
    max_epochs_per_stage: int = typer.Option(20, "--max-epochs-per-stage", min=0),
    patience: int = typer.Option(3, "--patience", min=0, help="Epochs without a better val accuracy that end a stage."),
    head_lr: float = typer.Option(1e-3, "--head-learning-rate", help="Phase 1 Adam (paper: defaults)."),
    finetune_lr: float = typer.Option(1e-5, "--finetune-learning-rate", help="Phase 2 Adam (paper: 1e-5)."),
    batch_size: int = BATCH, augment: bool = AUGMENT, precision: Precision = PRECISION, jit_compile: bool | None = XLA,
    steps_per_execution: int = STEPS, workers: int = WORKERS, seed: int = SEED, resume: bool = RESUME, eager: bool = EAGER,
    debug: bool = DEBUG,
):
    """Train one classifier (two-phase recipe) on images masked by the trained segmenter."""
    _without_onednn()
    with reported_errors(debug):
        _check_before_the_backend(manifest, "cls", segmenter_dir)
        _floats(schedule, "--unfreeze-schedule")
    with reported_errors(debug, needs_keras=True, interrupted_hint=_resume_hint(out, _CLASSIFIER_UNIT, not resume)), \
            _our_warnings_as_lines():
        import keras_covidcxr

        config = _config(head_epochs=head_epochs, unfreeze_schedule=_floats(schedule, "--unfreeze-schedule"),
                         max_epochs_per_stage=max_epochs_per_stage, patience=patience, head_learning_rate=head_lr,
                         finetune_learning_rate=finetune_lr, batch_size=batch_size, augment=augment,
                         precision=precision, jit_compile=jit_compile, steps_per_execution=steps_per_execution,
                         workers=workers, seed=seed, run_eagerly=eager)
        class_names = tuple(c.strip() for c in classes.split(",") if c.strip()) if classes else None
        if class_names is not None and num_classes not in (None, len(class_names)):
            raise keras_covidcxr.ConfigError(f"--num-classes {num_classes} but --classes names {len(class_names)}: "
                                             f"{list(class_names)}")
        num_classes = num_classes or len(class_names or ()) or 2
        weights = None if backbone_weights.lower() == "none" else backbone_weights
        with _progress() as progress:
            masking_task = progress.add_task("masking images", total=None)

            def masked(split, done, total):
                progress.update(masking_task, description=f"masking {split} images", completed=done, total=total)

            result = keras_covidcxr.run_classifier_recipe(
                manifest, segmenter_dir, out, backbone=backbone, class_names=class_names, num_classes=num_classes,
                input_size=input_size, head_units=head_units, backbone_weights=weights,
                preprocessing=keras_covidcxr.PreprocessingConfig(masking=masking.value), name=name, config=config,
                resume=resume, callbacks=[_epoch_callback(progress, backbone)], progress=masked,
                input_normalization="imagenet" if imagenet_normalization else None,
            )
        info = result.details["classifier_inputs"]
        steps = "; ".join(
            f"{s['step']}{'' if s['fraction'] is None else ' ' + format(s['fraction'], 'g')}: {s['epochs']} ep"
            for s in result.details["steps"]
        )
        console.print(_summary_table(f"classifier {result.model.name} -> {out}", [
            ("best val accuracy", _fmt(result.best_value)),
            ("best epoch", result.best_epoch),
            ("steps", steps),
            ("train counts", info["counts"]["train"]),
            ("class weights", {k: round(v, 3) for k, v in info["class_weights"].items()}),
            ("wall time", f"{result.seconds:.0f} s"),
            ("best weights", out / "best"),
        ]))


@train_app.command("ensemble")
def ensemble(
    manifest: Path = MANIFEST,
    segmenter_dir: Path = typer.Option(..., "--segmenter", help="The trained segmenter's checkpoint folder."),
    members: list[Path] = typer.Option(..., "--member", help="A trained classifier's checkpoint folder (repeat)."),
    out: Path = typer.Option(..., "--out", help="The preset folder to write (must not exist, unless --overwrite)."),
    kind: EnsembleKind = typer.Option(EnsembleKind.weighted_average, "--ensemble"),
    method: WeightMethod = typer.Option(WeightMethod.log_loss, "--weights", help="How weighted-average weights are fitted on val."),
    description: str | None = typer.Option(None, "--description"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing preset at --out."),
    batch_size: int = BATCH, workers: int = WORKERS, debug: bool = DEBUG,
):
    """Fit the ensemble on the val split and write the Pipeline preset from the checkpoints."""
    with reported_errors(debug):  # before the backend loads
        from keras_covidcxr.presets import check_preset_destination

        check_preset_destination(out, overwrite)
    with reported_errors(debug, needs_keras=True):
        import keras_covidcxr

        config = keras_covidcxr.TrainingConfig(batch_size=batch_size, workers=workers)
        with console.status("masking the validation images and fitting the ensemble"):
            built = keras_covidcxr.assemble_preset(
                manifest, segmenter_dir, members, out, ensemble=kind.value, method=method.value,
                description=description, overwrite=overwrite, config=config,
            )
        _print_validation(built.training, f"preset -> {out}", built.pipeline.class_names)


def _print_validation(training, title, class_names):
    table = Table("model", "val accuracy", "val AUC", "sensitivity", "specificity", "weight", title=title,
                  title_justify="left")
    fit = training.get("ensemble_fit") or {}
    weights = fit.get("weights", {})
    for name, values in training["validation"].items():
        weight = "" if name == "ensemble" else _fmt(weights.get(name), 3) or ""
        table.add_row(name, _fmt(values.get("accuracy")) or "-", _fmt(values.get("auc")) or "-",
                      _fmt(values.get("sensitivity")) or "-", _fmt(values.get("specificity")) or "-", weight)
    console.print(table)
    console.print("On the validation split, which the fitting used (epochs, weights, thresholds): optimistic."
                  + (f" Sensitivity and specificity: macro averages over the {len(class_names)} classes."
                     if len(class_names) > 2 else ""), soft_wrap=True)
    if fit.get("threshold") is not None:
        console.print(f"operating threshold (Youden, val): {fit['threshold']:.4f}")


# TrainingConfig's names -> the finetune options that set them
FINETUNE_OPTIONS = {"head_epochs": "--head-epochs/--epochs", "max_epochs_per_stage": "--max-epochs-per-stage/--epochs",
                    "head_learning_rate": "--learning-rate", "finetune_learning_rate": "--finetune-learning-rate",
                    "unfreeze_schedule": "--unfreeze-schedule", "patience": "--patience", "augment": "--augment/--no-augment"}


def unused_options_message(settings):
    """The linear probe's unused-settings warning, named by the options the user typed."""
    flags = ", ".join(dict.fromkeys(FINETUNE_OPTIONS.get(name, name) for name in settings))
    return f"the linear probe fits each head in closed form and does not use {flags} (options of --recipe train)"


def finetune(
    preset: str = typer.Argument(..., help="Parent preset: folder, registered name or hf://owner/repo[@rev]."),
    manifest: Path = MANIFEST,
    out: Path = typer.Option(..., "--out", help="The new preset folder (the parent is never modified)."),
    classes: str | None = typer.Option(None, "--classes", help="New class names in output order (replaces the heads)."),
    recipe: FinetuneRecipe = typer.Option(
        FinetuneRecipe.auto, "--recipe",
        help="linear-probe: fit each member's logistic-regression head anew on its frozen features (minutes on a "
        "CPU); train: the paper's two-phase recipe, the options below; auto: the linear probe for presets built "
        "that way (covidcxr_lite), else train.",
    ),
    epochs: int | None = typer.Option(
        None, "--epochs", min=0, show_default=False,
        help="At most this many epochs in each phase (head only, then each unfreezing stage); "
        "sets --head-epochs and --max-epochs-per-stage.",
    ),
    learning_rate: float = typer.Option(1e-3, "--learning-rate", help="Phase 1 (head only) learning rate."),
    head_epochs: int = typer.Option(5, "--head-epochs", min=0, help="Phase 1 epochs, head only."),
    schedule: str = typer.Option("0.1,0.25,0.5,1.0", "--unfreeze-schedule", help="Phase 2 stages (fractions of blocks)."),
    max_epochs_per_stage: int = typer.Option(20, "--max-epochs-per-stage", min=0),
    patience: int = typer.Option(3, "--patience", min=0),
    finetune_lr: float = typer.Option(1e-5, "--finetune-learning-rate"),
    checkpoints: Path | None = typer.Option(None, "--checkpoints", help="Keep resumable per-member checkpoints here."),
    resume: bool = typer.Option(True, "--resume/--restart",
                                help="Continue the runs kept in --checkpoints; --restart removes them and trains anew."),
    description: str | None = typer.Option(None, "--description"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing preset at --out."),
    batch_size: int = BATCH, augment: bool = AUGMENT, precision: Precision = PRECISION, jit_compile: bool | None = XLA,
    steps_per_execution: int = STEPS, workers: int = WORKERS, seed: int = SEED, eager: bool = EAGER, debug: bool = DEBUG,
):
    """Fine-tune a preset's classifiers on your data and save a NEW preset recording parent, data and recipe."""
    if epochs is not None:
        head_epochs = max_epochs_per_stage = epochs
    class_names = tuple(c.strip() for c in classes.split(",") if c.strip()) if classes else None
    with reported_errors(debug):  # what can be checked before the backend loads
        import keras_covidcxr
        from keras_covidcxr.presets import check_preset_destination

        rows = keras_covidcxr.data.read_manifest(manifest)
        keras_covidcxr.read_preset_metadata(preset)
        check_preset_destination(out, overwrite, parent=preset)
        if class_names is not None:
            from keras_covidcxr.data.class_names import check_class_names

            check_class_names(class_names)
        for split in ("train", "val"):  # refused here, not after the backend's seconds of loading
            rows.split_rows("cls", split)
    if recipe is not FinetuneRecipe.linear_probe:
        # a linear probe trains no network: with predict's kernels its scores (thresholds sit on them) are predict's
        _without_onednn()
    trains = checkpoints and recipe is not FinetuneRecipe.linear_probe  # a linear probe has no epochs to keep
    kept = f"{out} is not written (the parent preset is unchanged)" + (
        f"; {checkpoints} keeps the train recipe's last finished {_CLASSIFIER_UNIT}, if one finished: rerun the same "
        "command to resume" if trains else "")
    with reported_errors(debug, needs_keras=True, interrupted_hint=kept), _our_warnings_as_lines():
        import keras_covidcxr

        config = _config(head_epochs=head_epochs, unfreeze_schedule=_floats(schedule, "--unfreeze-schedule"),
                         max_epochs_per_stage=max_epochs_per_stage, patience=patience,
                         head_learning_rate=learning_rate, finetune_learning_rate=finetune_lr, batch_size=batch_size, augment=augment,
                         precision=precision, jit_compile=jit_compile, steps_per_execution=steps_per_execution,
                         workers=workers, seed=seed, run_eagerly=eager)
        with _progress() as progress:
            result = keras_covidcxr.finetune(
                preset, manifest, out=out, class_names=class_names, config=config, checkpoint_dir=checkpoints,
                resume=resume,
                recipe=recipe.value.replace("-", "_"),
                description=description, overwrite=overwrite, callbacks=[_epoch_callback(progress, "finetune")],
                progress=lambda message: progress.console.print(f"[dim]{message}[/]"),
            )
        probe = result.training["recipe"]["members_recipe"] == "linear_probe"
        how = ("logistic-regression heads fitted on frozen features" if probe
               else "same classes, trained on from the preset's weights" if result.mode == "continue" else "new heads")
        _print_validation(result.training, f"fine-tuned ({how}) -> {out}", result.pipeline.class_names)


@contextlib.contextmanager
def _our_warnings_as_lines():
    """Print each of the package's warnings during a training command as one "warning:" line when it is raised
    (a warning about the data comes before the hours of training, not after them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("always", UserWarning)
        warnings.showwarning = _print_our_warning
        yield


def _print_our_warning(message, category, filename, lineno, file=None, line=None):
    import keras_covidcxr

    if isinstance(message, keras_covidcxr.UnusedSettingsWarning):
        message = unused_options_message(message.settings)
    if "covidcxr" in filename:  # ours; the backend's own notes are left out of the output
        stderr.print(f"warning: {message}", markup=False, soft_wrap=True)

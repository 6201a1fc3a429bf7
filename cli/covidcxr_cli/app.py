"""`covidcxr`: predict, list presets, show a preset's metadata.

`covidcxr --help` and `covidcxr presets` never import a Keras backend: model
code is imported inside the commands that need it.
"""

import json
import os
import warnings
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import keras_covidcxr
from covidcxr_cli.data_commands import data_app
from covidcxr_cli.errors import DEBUG, EXIT_OK, EXIT_SOME_FAILED, exit_code, reported_errors, stderr
from covidcxr_cli.train_commands import finetune, train_app

app = typer.Typer(
    name="covidcxr",
    help="Lung segmentation and COVID-19 classification of chest X-rays (research use only, not for diagnosis).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(highlight=False)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter is not for CLI users



@app.command()
def predict(
    images: List[Path] = typer.Argument(..., help="Image files (PNG, JPEG, BMP, TIFF, DICOM) and folders (walked recursively).", show_default=False),
    preset: Optional[str] = typer.Option(
        None, "--preset", "-p", show_default=False,
        help=f"Preset folder, registered name or hf://owner/repo[@rev] (default: {keras_covidcxr.DEFAULT_PRESET}, bundled).",
    ),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object per image instead of a table."),
    overlays: Optional[Path] = typer.Option(None, "--overlays", help="Write <name>_mask.png and <name>_gradcam.png here."),
    allow_untrained: bool = typer.Option(False, "--allow-untrained", help="Run a preset that records no training."),
    strict: bool = typer.Option(False, "--strict", help="Refuse lateral views and children instead of flagging them."),
    check_view: bool = typer.Option(
        False, "--check-view",
        help="Also check the view of images that state none (PNG, JPEG) from the lung mask: "
        "flag lateral-looking ones (refuse them with --strict).",
    ),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Images per model call."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Stream one row per image into this .csv or .jsonl file; rerun to resume."),
    workers: int = typer.Option(2, "--workers", min=1, help="With --out: threads decoding images while the model runs."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="With --out: predict again files whose earlier row is an error."),
    debug: bool = DEBUG,
):
    """Classify chest X-rays: label, class probabilities, member votes and lung area.

    With --out, any number of images stream into a results file; rerunning the same command resumes it.
    """
    with reported_errors(debug, needs_keras=True):
        if out is not None and overlays is not None:
            raise keras_covidcxr.ConfigError("--overlays cannot be combined with --out yet; run them separately")
        if overlays is not None and overlays.exists() and not overlays.is_dir():
            raise keras_covidcxr.ConfigError(f"{overlays}: --overlays needs a folder, and this is a file")
        if preset is None:
            preset = keras_covidcxr.DEFAULT_PRESET
            stderr.print(
                f"Using the default preset {preset} (--preset chooses another). "
                "Research use only, not for diagnosis.",
                soft_wrap=True,
            )
        pipeline = _load_pipeline(preset, allow_untrained)
        if check_view:
            pipeline = pipeline.with_input_contract(check_view_from_mask=True)
        if out is not None:
            code = _predict_into_file(pipeline, images, out, batch_size, workers, strict, retry_failed, json_output)
        else:
            code = _predict_and_print(pipeline, images, batch_size, strict, json_output, overlays)
    raise typer.Exit(code)


def _predict_into_file(pipeline, images, out, batch_size, workers, strict, retry_failed, json_output):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("predicting"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"), TimeRemainingColumn())
    progress = Progress(*columns, console=stderr)
    task = progress.add_task("predict", total=None, rate="")

    def show(summary):  # skipped files are left out of the count, so rate and ETA are real work
        progress.start()  # only once --out is accepted (a no-op after the first call)
        progress.update(task, total=summary.total - summary.skipped, completed=summary.done + summary.failed)
        speed = progress.tasks[0].speed
        progress.update(task, rate=f"{speed:.1f} img/s" if speed else "")

    try:
        summary = keras_covidcxr.predict_to_file(
            pipeline, images, out, batch_size=batch_size, workers=workers, strict=strict,
            retry_failed=retry_failed, progress=show,
        )
    finally:
        if progress.live.is_started:
            progress.stop()
    untrained = not pipeline.is_trained
    if json_output:
        console.print_json(json.dumps({**vars(summary), "out": str(out), "untrained": untrained}), indent=None)
    else:
        console.print(
            f"{summary.done} predicted, {summary.failed} failed, {summary.skipped} already done "
            f"({summary.skipped_failed} of them failed) -> {escape(str(out))}"
            + (" [bold yellow](UNTRAINED preset: these outputs mean nothing)[/]" if untrained else "")
        )
    failed = summary.failed + summary.skipped_failed
    return exit_code(summary.done + summary.skipped - summary.skipped_failed, failed)


def _predict_and_print(pipeline, images, batch_size, strict, json_output, overlays):
    paths = keras_covidcxr.find_images(images)
    if not paths:
        raise keras_covidcxr.InputError(f"no image files in {', '.join(str(image) for image in images)}")
    results = pipeline.predict(paths, batch_size=batch_size, on_error="record", explain=overlays is not None, strict=strict)
    untrained = not pipeline.is_trained
    if json_output:
        for result in results:
            console.print_json(json.dumps({**result.to_dict(), "untrained": untrained}), indent=None)
    else:
        console.print(_results_table(results, pipeline.class_names, untrained))
        _print_operating_threshold(pipeline)
    if overlays is not None:
        _write_overlays([r for r in results if not r.error], overlays)
    failed = sum(bool(r.error) for r in results)
    return exit_code(len(results) - failed, failed)



@app.command()
def evaluate(
    preset: str = typer.Argument(..., help="Preset folder, registered name or hf://owner/repo[@rev]."),
    manifest: Path = typer.Argument(..., help="Manifest CSV (see `covidcxr data build`)."),
    split: str = typer.Option("test", "--split", help="Which split's cls rows to score."),
    out: Path = typer.Option(..., "--out", help="Report folder to write (report.json, report.md, plots)."),
    shortcut_probe: bool = typer.Option(True, "--shortcut-probe/--no-shortcut-probe", help="Also score with the lungs only and with the lungs blacked out."),
    resamples: int = typer.Option(1000, "--resamples", min=10, help="Bootstrap resamples for the CIs."),
    allow_untrained: bool = typer.Option(False, "--allow-untrained", help="Evaluate a preset that records no training."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier report in --out."),
    debug: bool = DEBUG,
):
    """Score every member and both ensembles on a manifest split, like the paper's tables."""
    with reported_errors(debug, needs_keras=True):
        pipeline = _load_pipeline(preset, allow_untrained)
        evaluation = keras_covidcxr.evaluate_pipeline(
            pipeline, keras_covidcxr.data.read_manifest(manifest), out, split=split,
            shortcut_probe=shortcut_probe, n_resamples=resamples, overwrite=overwrite,
        )
    probe = evaluation.shortcut_probe.get("score_sets", {})
    caption = f"{evaluation.n_images} images; report in {evaluation.out_dir}"
    table = Table("scores", "AUC (covid)", *(["AUC, lungs removed"] if probe else []), caption=caption)
    for name, auc in evaluation.auc.items():
        table.add_row(escape(name), f"{auc:.3f}", *([f"{probe[name]['auc_lungs_removed']:.3f}"] if probe else []))
    console.print(table)
    if evaluation.shortcut_suspected:
        console.print("[bold red]Shortcut suspected:[/] the ensemble still scores well with the lungs blacked out.")
    overlap = evaluation.training_overlap
    if overlap and overlap["images"]:
        stderr.print(
            f"warning: {overlap['images']} of the {overlap['of_images']} images ({overlap['patients']} patients) "
            "belong to patients the preset was trained on; these metrics are optimistic.",
            markup=False, soft_wrap=True,
        )
    for path, error in evaluation.failed:
        console.print(f"[red]failed:[/] {escape(error)}")
    raise typer.Exit(exit_code(evaluation.n_images, len(evaluation.failed)))


@app.command()
def presets(debug: bool = DEBUG):
    """List the registered presets and whether trained weights exist for each."""
    with reported_errors(debug):
        registered = keras_covidcxr.list_presets()
    for name, metadata in registered.items():
        default = "  (default)" if name == keras_covidcxr.DEFAULT_PRESET else ""
        console.print(f"[bold]{name}[/]{default}", soft_wrap=True)
        console.print(f"  trained weights: {_weights_status(name, metadata)}", soft_wrap=True)
        console.print(f"  {escape(metadata.get('description', ''))}", soft_wrap=True)
    console.print(
        "Any preset folder or hf://owner/repo[@rev] handle works too. Research use only, not for diagnosis.",
        soft_wrap=True,
        markup=False,
    )


def _weights_status(name, metadata):
    if metadata.get("trained") is False:
        return f"[yellow]none published yet[/] (`covidcxr info {name}` shows how to train them)"
    if metadata.get("weights") == "bundled":
        if not Path(metadata["handle"]).is_dir():
            return f"[red]bundled, but its folder is missing from this installation[/] (`covidcxr info {name}` says why)"
        return "yes, bundled with the package (no download)"
    return escape(str(metadata.get("weights", "unknown")))


@app.command()
def info(handle: str = typer.Argument(..., help="Preset folder, registered name or hf://owner/repo[@rev]."), debug: bool = DEBUG):
    """Show a preset's metadata: versions, parameters, input contract, training provenance.

    For a registered preset whose weights are not published yet, show its registry entry and the commands that train it.
    """
    registered = keras_covidcxr.list_presets().get(handle)
    if registered is not None and registered.get("trained") is False:
        console.print_json(json.dumps({"name": handle, **registered}))
        stderr.print(
            f"{handle}: no trained weights are published yet; the training_commands above produce them on a GPU.",
            soft_wrap=True,
        )
        return
    with reported_errors(debug):
        metadata = keras_covidcxr.read_preset_metadata(handle)
    metadata.pop("files", None)
    console.print_json(json.dumps(metadata))
    stderr.print(_describe_input(metadata.get("input") or {}), soft_wrap=True, markup=False)
    if not metadata.get("training"):
        stderr.print("[bold yellow]This preset records no training: its weights are untrained.[/]")


def _describe_input(contract):
    """The input contract in one sentence, for people (the JSON above is for programs)."""
    if not contract:
        return "input contract: not recorded"
    low, high = (f"{v:g}" if isinstance(v, (int, float)) else str(v) for v in contract.get("value_range", ("?", "?")))
    channels = contract.get("channels")
    sizes = [
        f"{part} {size}x{size} px"
        for part, size in (
            ("the segmenter sees", contract.get("segmenter_input_size")),
            ("the classifiers see", contract.get("classifier_input_size")),
        )
        if size
    ]
    age = contract.get("min_age")
    return (
        f"input contract: {channels}-channel{' (gray)' if channels == 1 else ''} images, pixel values in [{low}, {high}] "
        f"after decoding, at least {contract.get('min_size')}x{contract.get('min_size')} px"
        + (f" ({', '.join(sizes)})" if sizes else "")
        + f"; modalities {', '.join(contract.get('modalities', ()))} (others refused)"
        + f"; views {', '.join(contract.get('views', ()))}"
        + (f"; patients aged {age:g} or over" if age is not None else "")
        + " (other views and ages are flagged, or refused with --strict)"
        + ("; plain images' views are checked from the lung mask" if contract.get("check_view_from_mask") else "")
    )


@app.command()
def verify(handle: str = typer.Argument(..., help="Preset folder, registered name or hf://owner/repo[@rev]."), debug: bool = DEBUG):
    """Check a preset: every checksum, then its outputs on the bundled samples against the recorded ones."""
    with reported_errors(debug, needs_keras=True):
        verification = keras_covidcxr.verify_preset(handle)
    for problem in verification.problems:
        console.print(f"[red]mismatch:[/] {escape(problem)}")
    if verification.passed:
        console.print(f"{handle}: checksums and {verification.checked_samples} golden output(s) match")
    raise typer.Exit(EXIT_OK if verification.passed else EXIT_SOME_FAILED)


@app.command()
def upload(
    preset: Path = typer.Argument(..., help="Preset folder to publish."),
    handle: str = typer.Argument(..., help="Destination hf://owner/repo."),
    card: Optional[Path] = typer.Option(
        None, "--card", show_default=False,
        help="Model card to publish as the repository's README.md (default: the folder's README.md, "
        "else model_cards/<folder name>.md of this source tree).",
    ),
    private: bool = typer.Option(False, "--private", help="Create the repository as private."),
    debug: bool = DEBUG,
):
    """Publish a preset folder and its model card to the Hugging Face Hub."""
    with reported_errors(debug):
        card = card if card is not None else keras_covidcxr.find_model_card(preset)
        pinned = keras_covidcxr.upload_preset(preset, handle, private=private, model_card=card or False)
    if card is None:
        stderr.print("[yellow]no model card found:[/] uploaded without one (pass --card FILE)")
    console.print(
        f"uploaded{'' if card is None else f' with the model card {escape(str(card))}'}; load it with --preset {pinned}",
        soft_wrap=True,
    )


def _load_pipeline(preset, allow_untrained):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", keras_covidcxr.UntrainedPresetWarning)  # refused or marked below
        pipeline = keras_covidcxr.Pipeline.from_preset(preset)
    if not pipeline.is_trained and not allow_untrained:
        raise keras_covidcxr.PresetError(
            f"{preset}: records no training (untrained weights); its outputs mean nothing. "
            "Pass --allow-untrained to run it anyway"
        )
    return pipeline


def _print_operating_threshold(pipeline):
    """Say how a two-class label is decided: by the preset's threshold, not the larger probability."""
    threshold = getattr(pipeline.ensemble, "threshold", None)
    if len(pipeline.class_names) == 2 and threshold is not None:
        positive = pipeline.class_names[1]
        console.print(f"Label {positive} if p({positive}) >= {threshold:.3f} (the preset's operating threshold).")


def _results_table(results, class_names, untrained):
    caption = "Research use only, not for diagnosis."
    if untrained:
        caption = "[bold yellow]UNTRAINED preset: these outputs mean nothing.[/] " + caption
    with_notes = any(result.error or result.warnings for result in results)
    table = Table(caption=caption)
    # Every column folds long words, so the table fits an 80-column terminal instead of losing its last columns.
    for header in ("image", "label", *class_names, "member votes", "lung area", *(["notes"] if with_notes else [])):
        table.add_column(header, overflow="fold")
    for result in results:
        if result.error:
            table.add_row(Path(result.source).name, "[red]error[/]", *[""] * len(class_names), "", "", escape(result.error))
            continue
        votes = "\n".join(f"{name}: {member['label']}" for name, member in result.members.items())
        notes = [escape("; ".join(message for _, message in result.warnings))] if with_notes else []
        table.add_row(
            Path(result.source).name,
            result.label,
            *[f"{result.probabilities[c]:.3f}" for c in class_names],
            votes,
            f"{result.lung_fraction:.1%}",
            *notes,
        )
    return table


def _write_overlays(results, folder):
    used = set()
    for result in results:
        stem = Path(result.source).stem
        unique, n = stem, 1
        while unique in used:
            n += 1
            unique = f"{stem}_{n}"
        used.add(unique)
        keras_covidcxr.save_overlays(result, folder, unique)


app.add_typer(data_app, name="data", help="Build, split and audit dataset manifests.")
app.add_typer(train_app, name="train", help="Train the segmenter, the classifiers, and assemble the ensemble preset.")
app.command("finetune")(finetune)


def main():
    app()

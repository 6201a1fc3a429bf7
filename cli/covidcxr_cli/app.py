"""`covidcxr`: predict, list presets, show a preset's metadata.

`covidcxr --help` and `covidcxr presets` never import a Keras backend: model
code is imported inside the commands that need it.
"""

import dataclasses
import json
import math
import os
import sys
import warnings
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

import keras_covidcxr
from covidcxr_cli.data_commands import data_app
from covidcxr_cli.errors import (
    DEBUG,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    EXIT_TERMINATED,
    StdoutConsole,
    exit_code,
    print_error,
    reported_errors,
    stderr,
)
from covidcxr_cli.output_folders import check_writable_folder
from covidcxr_cli.train_commands import finetune, train_app
from keras_covidcxr.evaluation import rows_to_score
from keras_covidcxr.inference.image_walk import path_is_there
from keras_covidcxr.inference.results_file import meta_path
from keras_covidcxr.io import printable_text
from keras_covidcxr.samples import sample_images

app = typer.Typer(
    name="covidcxr",
    help="Lung segmentation and COVID-19 classification of chest X-rays (research use only, not for diagnosis).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = StdoutConsole(highlight=False)
PIPED_WIDTH = 200  # columns of the results table when stdout is not a terminal
MAX_INFO_FIGURES = 20  # metric lines `covidcxr info` prints (the bundled preset records 14)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter is not for CLI users


def _print_version(value: bool):
    if value:
        console.print(f"keras-covidcxr {keras_covidcxr.__version__}", markup=False)
        raise typer.Exit(EXIT_OK)


@app.callback()
def _options(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="Print the package version and exit."),
):
    pass


def _open_unit_interval(value):
    """--threshold: refused before any model loads unless strictly between 0 and 1 (0 and 1 label one class)."""
    if value is not None and not 0.0 < value < 1.0:  # also refuses nan
        raise typer.BadParameter(f"{value} is not strictly between 0 and 1")
    return value


@app.command()
def predict(
    # str, not Path: click would turn an empty argument (an unset "$VAR") into ".", the current folder
    images: list[str] = typer.Argument(..., help="Image files (PNG, JPEG, BMP, TIFF, DICOM) and folders (walked recursively).", show_default=False),
    preset: str | None = typer.Option(
        None, "--preset", "-p", show_default=False,
        help=f"Preset folder, registered name or hf://owner/repo[@rev] (default: {keras_covidcxr.DEFAULT_PRESET}, bundled).",
    ),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object per image instead of a table."),
    overlays: Path | None = typer.Option(None, "--overlays", metavar="FOLDER", help="Write <name>_mask.png and <name>_gradcam.png here."),
    allow_untrained: bool = typer.Option(False, "--allow-untrained", help="Run a preset that records no training."),
    strict: bool = typer.Option(False, "--strict", help="Refuse lateral views and children instead of flagging them."),
    check_view: bool = typer.Option(
        False, "--check-view",
        help="Also check the view of images that state none (PNG, JPEG) from the lung mask: "
        "flag lateral-looking ones (refuse them with --strict). On already where the preset's input contract "
        "says so (covidcxr_lite's does).",
    ),
    threshold: float | None = typer.Option(
        None, "--threshold", callback=_open_unit_interval, show_default=False, metavar="T",
        help="Label the positive class when its probability (calibrated, where the preset calibrates) reaches T "
        "(0 < T < 1), instead of the preset's decision rule.",
    ),
    tta: int = typer.Option(
        1, "--tta", min=1, metavar="N",
        help="Test-time augmentation: average over the image and N-1 slightly shifted, zoomed and re-contrasted "
        "copies, and report their spread (1: off).",
    ),
    refer: bool = typer.Option(
        True, "--refer/--no-refer",
        help="Label 'refer' (with the would-be label kept) where the preset's refer rule abstains; "
        "--no-refer always answers. With --threshold the band is off (it belongs to the preset's threshold); "
        "films out of distribution or failing an input check are still referred.",
    ),
    exported: Path | None = typer.Option(
        None, "--exported", metavar="FOLDER",
        help="Run an ONNX or LiteRT export (`covidcxr export`) instead of a Keras preset (no TensorFlow).",
    ),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Images per model call."),
    out: Path | None = typer.Option(None, "--out", "-o", metavar="FILE", help="Stream one row per image into this .csv or .jsonl file; rerun to resume."),
    workers: int = typer.Option(2, "--workers", min=1, help="With --out: threads decoding images while the model runs."),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="With --out: predict again files whose earlier row is an error."),
    debug: bool = DEBUG,
):
    """Classify chest X-rays: label, class probabilities, member votes and lung area.

    With --out, any number of images stream into a results file; rerunning the same command resumes it.
    """
    hint = None if out is None else f"{out} keeps the results so far: rerun the same command to go on"
    with reported_errors(debug, interrupted_hint=hint):  # what can be checked before the backend loads
        _check_outputs(out, overlays)
        paths = _existing_images(images)
        for folder in _folders_without_images(images, paths):
            stderr.print(f"note: no image files in {printable_text(str(folder))}", soft_wrap=True, markup=False)
        if exported is not None:
            if preset is not None:
                raise keras_covidcxr.ConfigError("--exported runs an export: it takes no --preset")
            if overlays is not None:
                raise keras_covidcxr.ConfigError("--overlays draws Grad-CAM, which needs the Keras pipeline "
                                                 "(--preset), not an export")
            from keras_covidcxr.runtime import ExportedPipeline

            pipeline = ExportedPipeline(exported, decision_threshold=threshold, refer=refer, check_view=check_view)
            _refuse_untrained(pipeline, exported, allow_untrained)
            stderr.print(f"Running the export {exported} (no Keras). Research use only, not for diagnosis.",
                         soft_wrap=True, markup=False)
            raise typer.Exit(_run_predictions(pipeline, paths, out, batch_size, workers, strict, retry_failed,
                                              json_output, None, tta))
        if preset is None:
            preset = keras_covidcxr.DEFAULT_PRESET
            stderr.print(
                f"Using the default preset {preset} (--preset chooses another). "
                "Research use only, not for diagnosis.",
                soft_wrap=True,
            )
        if _backend_not_loaded_yet():
            keras_covidcxr.read_preset_metadata(preset)  # an unknown or broken preset fails here
            if out is not None:
                done = keras_covidcxr.finished_run(preset, paths, out, strict, retry_failed, threshold, check_view,
                                                   overlays, tta, refer)
                if done is not None:
                    raise typer.Exit(_print_file_summary(done, out, json_output, untrained=False))
    with reported_errors(debug, needs_keras=True, interrupted_hint=hint):
        pipeline = _load_pipeline(preset, allow_untrained)
        if check_view:
            pipeline = pipeline.with_input_contract(check_view_from_mask=True)
        if threshold is not None:
            pipeline = pipeline.with_decision_threshold(threshold)
        if not refer:
            pipeline = pipeline.without_refer()
        code = _run_predictions(pipeline, paths, out, batch_size, workers, strict, retry_failed, json_output,
                                overlays, tta)
    raise typer.Exit(code)


def _run_predictions(pipeline, paths, out, batch_size, workers, strict, retry_failed, json_output, overlays, tta):
    """Predict into the results file `out`, or print the results; return the exit code."""
    if out is not None:
        return _predict_into_file(pipeline, paths, out, batch_size, workers, strict, retry_failed, json_output,
                                  overlays, tta)
    return _predict_and_print(pipeline, paths, batch_size, strict, json_output, overlays, tta)


def _backend_not_loaded_yet():
    """Whether checking the preset without Keras saves the backend's start-up (seconds).

    Called in a process that already imported Keras (the Python API, tests), the same
    checks come from `Pipeline.from_preset` just as fast, so they are left to it.
    """
    return "keras" not in sys.modules


def _check_outputs(out, overlays):
    """Refuse output targets that cannot be written, before anything is predicted."""
    if out is not None:
        keras_covidcxr.results_format(out)
        check_writable_folder(out.absolute().parent, f"{out}: cannot write the results file")
    if overlays is not None:
        if out is not None and os.path.realpath(overlays) in {os.path.realpath(out), os.path.realpath(meta_path(out))}:
            raise keras_covidcxr.ConfigError(f"{overlays}: --overlays needs a folder of its own, not the results file")
        if overlays.exists() and not overlays.is_dir():
            raise keras_covidcxr.ConfigError(f"{overlays}: --overlays needs a folder, and this is a file")
        check_writable_folder(overlays.absolute(), f"{overlays}: cannot write overlays")


def _existing_images(images):
    """The image files under `images`; refuses inputs of which none exists, or folders with no image."""
    same = []
    paths = keras_covidcxr.find_images(images, same_files=same)  # first: it refuses an empty name
    missing = [image for image in images if not path_is_there(image)]
    if len(missing) == len(images):
        installed = {path.name: path for path in sample_images()}.get(Path(missing[0]).name)
        raise keras_covidcxr.InputError(
            f"{missing[0]}: no such file or folder" + (f" (nor {len(missing) - 1} more)" if len(missing) > 1 else "")
            + (f"; the bundled sample of that name is installed at {installed}" if installed else "")
        )
    if not [path for path in paths if path_is_there(path)]:
        raise keras_covidcxr.InputError(f"no image files in {', '.join(str(image) for image in images)}")
    if same:
        shown = "; ".join(printable_text(f"{path} (= {kept})") for path, kept in same[:3]) + (
            "; ..." if len(same) > 3 else "")
        stderr.print(f"note: {len(same)} input(s) name a file already listed (a link or a repeat), predicted once: "
                     f"{shown}", soft_wrap=True, markup=False)
    return paths


def _folders_without_images(images, paths):
    """The folders named among `images` that hold none of the image files found."""
    found = [Path(os.path.abspath(path)) for path in paths]
    return [image for image in images if os.path.isdir(image) and not any(
        path.is_relative_to(os.path.abspath(image)) for path in found)]


def _predict_into_file(pipeline, paths, out, batch_size, workers, strict, retry_failed, json_output, overlays, tta):
    import time

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    columns = (TextColumn("predicting"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
               TextColumn("{task.fields[eta]}"))
    progress = Progress(*columns, console=stderr)
    task = progress.add_task("predict", total=None, rate="", eta="")
    started = time.monotonic()

    def show(summary):
        progress.start()  # only once --out is accepted (a no-op after the first call)
        progress.update(task, **_progress_fields(summary, time.monotonic() - started))

    try:
        summary = keras_covidcxr.predict_to_file(
            pipeline, paths, out, batch_size=batch_size, workers=workers, strict=strict,
            retry_failed=retry_failed, progress=show, overlays=overlays, tta=tta,
        )
    finally:
        if progress.live.is_started:
            progress.stop()
    return _print_file_summary(summary, out, json_output, untrained=not pipeline.is_trained, pipeline=pipeline,
                               tta=tta)


def _progress_fields(summary, elapsed):
    """The progress bar's count, rate and time left, `elapsed` seconds into a folder run.

    The rate is the run's average: rows come a batch at a time, so rich's own
    estimate, taken between the last few updates, swings from a fraction of an
    image per second to thousands. Skipped files (done in an earlier run) are
    left out, so rate and time left are real work.
    """
    total = summary.total - summary.skipped
    finished = summary.done + summary.failed
    rate = finished / elapsed if finished and elapsed > 0 else None
    if rate is None:
        return {"total": total, "completed": finished, "rate": "", "eta": ""}
    left = round((total - finished) / rate)
    return {"total": total, "completed": finished, "rate": f"{rate:.1f} img/s",
            "eta": f"{left // 3600}:{left // 60 % 60:02d}:{left % 60:02d} left"}


def _print_file_summary(summary, out, json_output, untrained, pipeline=None, tta=1):
    """Print what a folder run did (and, on stderr, one line per file that failed in it); return its exit code."""
    for error in summary.errors:
        print_error(error)
    counts = {key: value for key, value in vars(summary).items() if key != "errors"}  # the errors are on stderr
    if json_output:
        console.print_json(json.dumps({**counts, "out": str(out), "untrained": untrained}), indent=None,
                           ensure_ascii=True)
    else:
        console.print(
            f"{summary.done} predicted, {summary.failed} failed, {summary.skipped} already done "
            f"({summary.skipped_failed} of them failed) -> {escape(printable_text(str(out)))}"
            + (" [bold yellow](UNTRAINED preset: these outputs mean nothing)[/]" if untrained else "")
        )
        if pipeline is not None:
            _print_rules(pipeline, tta)
    failed = summary.failed + summary.skipped_failed
    return exit_code(summary.done + summary.skipped - summary.skipped_failed, failed)


PRINT_CHUNK = 8  # files predicted at a time without --out (then printed, their overlays written, images freed):
# a 4000 px 16-bit film holds about 125 MB until then (pixels, mask, heatmap), a 7000 px one about 0.5 GB


def _predict_and_print(pipeline, paths, batch_size, strict, json_output, overlays, tta):
    """Predict `paths` PRINT_CHUNK at a time and print them. Each chunk's error lines and overlays are written,
    and its images, masks and heatmaps dropped, before the next, so memory does not grow with the number of files
    and a reader that stops early (`| head`) loses nothing already predicted."""
    untrained = not pipeline.is_trained
    stems = _overlay_stems(paths) if overlays is not None else None
    results, failed = [], 0
    size = max(PRINT_CHUNK, batch_size)  # whole model batches
    for start in range(0, len(paths), size):
        chunk = pipeline.predict(paths[start : start + size], batch_size=batch_size, on_error="record",
                                 explain=overlays is not None, strict=strict, tta=tta)
        for result in chunk:  # one line each, on stderr, whatever the output format
            if result.error:
                print_error(result.error)
        failed += sum(bool(r.error) for r in chunk)
        if overlays is not None:
            # a film without its overlays counts as failed, as its row does in a --out run
            failed += _write_overlays([(r, stems[start + i]) for i, r in enumerate(chunk) if not r.error], overlays)
        if json_output:
            for result in chunk:
                console.print_json(json.dumps({**result.to_dict(), "untrained": untrained}), indent=None,
                                   ensure_ascii=True)
        results += [dataclasses.replace(r, image=None, mask=None, heatmap=None) for r in chunk]
    if not json_output:
        # In a terminal the table folds to its width; written to a file or a pipe it keeps names unbroken.
        piped = not console.is_terminal and not os.environ.get("COLUMNS")
        (StdoutConsole(highlight=False, width=PIPED_WIDTH) if piped else console).print(
            _results_table(results, pipeline.class_names, untrained))
        _print_rules(pipeline, tta)
    return exit_code(len(results) - failed, failed)


def _print_rules(pipeline, tta=1):
    """The footer under predictions: how labels are decided, what the probabilities and the spread are."""
    console.print(f"Label: {escape(pipeline.decision_rule.describe())}.", soft_wrap=True)
    calibration, names = pipeline.calibration, pipeline.class_names
    if calibration is None:
        console.print("Probabilities: the ensemble's outputs, not calibrated: they rank films, they are not "
                      "the chance of each class.", soft_wrap=True)
    else:
        console.print(f"Probabilities: {_calibration_text(calibration, names)}.", soft_wrap=True)
    positive = f"p({names[1]})" if len(names) == 2 else "p of the labelled class"
    console.print(f"Spread: the standard deviation of the members' {positive}"
                  + (" before calibration." if calibration is not None else "."), soft_wrap=True)
    if tta > 1:
        console.print(f"TTA: each probability is the mean over {tta} views of the film (shifted, zoomed, "
                      "re-contrasted), and 'TTA' under the spread is theirs; the threshold was fitted on single views.",
                      soft_wrap=True)


def _calibration_text(calibration, names):
    shares = calibration.shares_text(names)
    if shares is None:
        prevalence = "they hold at those films' share of each class, not at another prevalence"
    elif len(names) == 2:
        prevalence = f"where {names[1]} is rarer, a film's chance of {names[1]} is lower than shown"
    else:
        prevalence = "at other shares of the classes they would read differently"
    return (f"calibrated on held-out scores of the preset's own films{', ' + shares if shares else ''}, "
            f"by {escape(calibration.describe())}: {prevalence}")


@app.command()
def evaluate(
    preset: str = typer.Argument(..., help="Preset folder, registered name or hf://owner/repo[@rev]."),
    manifest: Path = typer.Argument(..., help="Manifest CSV (see `covidcxr data build`)."),
    split: str = typer.Option("test", "--split", help="Which split's cls rows to score."),
    out: Path = typer.Option(..., "--out", metavar="FOLDER", help="Report folder to write (report.json, report.md, plots)."),
    shortcut_probe: bool = typer.Option(True, "--shortcut-probe/--no-shortcut-probe", help="Also score with the lungs only and with the lungs blacked out."),
    threshold: float | None = typer.Option(
        None, "--threshold", callback=_open_unit_interval, show_default=False, metavar="T",
        help="Score the ensemble's labels at p(positive) >= T (0 < T < 1; calibrated, where the preset calibrates) "
        "instead of the preset's decision rule.",
    ),
    resamples: int = typer.Option(1000, "--resamples", min=10, help="Bootstrap resamples for the CIs."),
    allow_untrained: bool = typer.Option(False, "--allow-untrained", help="Evaluate a preset that records no training."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier report in --out."),
    debug: bool = DEBUG,
):
    """Score every member and both ensembles on a manifest split, like the paper's tables.

    Hard labels follow the preset's decision rule (its operating threshold) unless --threshold is given.
    """
    with reported_errors(debug):  # everything that can be checked before the backend loads
        rows = keras_covidcxr.data.read_manifest(manifest)
        rows_to_score(rows, split)
        keras_covidcxr.metrics.check_report_folder(out, overwrite)
        check_writable_folder(out.absolute(), f"{out}: cannot write the report")
        keras_covidcxr.read_preset_metadata(preset)
    with reported_errors(debug, needs_keras=True):
        pipeline = _load_pipeline(preset, allow_untrained)
        if threshold is not None:
            pipeline = pipeline.with_decision_threshold(threshold)
        evaluation = keras_covidcxr.evaluate_pipeline(
            pipeline, rows, out, split=split, shortcut_probe=shortcut_probe, n_resamples=resamples, overwrite=overwrite,
            manifest_path=manifest,
        )
    probe = evaluation.shortcut_probe.get("score_sets", {})
    caption = f"{evaluation.n_images} images; report in {evaluation.out_dir}"
    table = Table("scores", "AUC (covid)", *(["AUC, lungs removed"] if probe else []), caption=caption)
    for name, auc in evaluation.auc.items():
        table.add_row(escape(name), _auc_text(auc), *([_auc_text(probe[name]["auc_lungs_removed"])] if probe else []))
    console.print(table)
    if not all(math.isfinite(auc) for auc in evaluation.auc.values()):
        stderr.print(f"warning: the {split} split holds one class only: AUC is undefined (n/a) and the rates in "
                     "the report cover that class alone.", markup=False, soft_wrap=True)
    if evaluation.shortcut_suspected:
        console.print("[bold red]Shortcut suspected:[/] the ensemble still scores well with the lungs blacked out"
                      + (f" (only {evaluation.shortcut_probe['n_images']} images: too few to be sure)."
                         if evaluation.too_few_to_probe else "."))
    elif evaluation.shortcut_possible:
        own = probe[evaluation.ensemble_key]
        low, high = own["auc_lungs_removed_ci"]
        console.print(f"[bold]Possible shortcut:[/] with the lungs blacked out the ensemble still ranks the films above "
                      f"chance (AUC {own['auc_lungs_removed']:.3f}, 95% CI {low:.3f}-{high:.3f}).", soft_wrap=True)
    overlap = evaluation.training_overlap
    if overlap and overlap["images"]:
        stderr.print(
            f"warning: {overlap['images']} of the {overlap['of_images']} images ({overlap['patients']} patients) "
            "belong to patients the preset was trained on; these metrics are optimistic.",
            markup=False, soft_wrap=True,
        )
    if evaluation.source_shortcut is not None and evaluation.source_shortcut.risky_labels:
        stderr.print(f"warning: the source alone tells apart {evaluation.source_shortcut.describe_risky()} among these "
                     "images: the figures may measure the hospital, not the lungs (report: 'Sources and labels').",
                     markup=False, soft_wrap=True)
    console.print(f"Labels: {escape(pipeline.decision_rule.describe())}.", soft_wrap=True)
    if evaluation.refer is not None:
        refer = evaluation.refer
        console.print(f"Referred: {refer['referred']} of the {evaluation.n_images} images; the report's metric "
                      "tables count a referred image by the label it would have had ('Refer rule' has the answered "
                      "images' figures).", soft_wrap=True)
    for path, error in evaluation.failed:
        print_error(error)
    raise typer.Exit(exit_code(evaluation.n_images, len(evaluation.failed)))


def _auc_text(auc):
    return "n/a" if auc is None or not math.isfinite(auc) else f"{auc:.3f}"


@app.command()
def export(
    preset: str = typer.Argument(..., help="Preset folder, registered name or hf://owner/repo[@rev]."),
    out: Path = typer.Argument(..., metavar="FOLDER", help="The export folder to write."),
    export_format: str = typer.Option(
        "onnx", "--format", metavar="FORMAT",
        help="onnx or litert (both run with `covidcxr predict --exported FOLDER`, without TensorFlow; both are "
             "written with the TensorFlow backend) or tf_saved_model.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier export in FOLDER."),
    allow_untrained: bool = typer.Option(False, "--allow-untrained", help="Export a preset that records no training."),
    debug: bool = DEBUG,
):
    """Export a preset's graphs (segmenter, ensemble, feature check) with the settings needed to run them."""
    with reported_errors(debug):
        from keras_covidcxr.runtime.export_folder import check_export_destination, check_export_writer

        check_export_destination(out, export_format, overwrite)
        keras_covidcxr.read_preset_metadata(preset)
        check_writable_folder(out.absolute(), f"{out}: cannot write the export")
        check_export_writer(export_format)  # before the backend's and the model's seconds of loading
    with reported_errors(debug, needs_keras=True):
        pipeline = _load_pipeline(preset, allow_untrained)
        pipeline.export(out, format=export_format, overwrite=overwrite)
    hint = f"; run it with: covidcxr predict IMAGE --exported {out}" if export_format in ("onnx", "litert") else ""
    console.print(f"exported {preset} ({export_format}) to {out}{hint}", markup=False, soft_wrap=True)


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
        if metadata.get("license"):
            console.print(f"  weights licence: {escape(metadata['license'])}", soft_wrap=True)
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
def info(
    handle: str = typer.Argument(..., metavar="PRESET", help="Preset folder, registered name or hf://owner/repo[@rev]."),
    json_output: bool = typer.Option(False, "--json", help="Print the whole metadata as JSON instead of a summary."),
    debug: bool = DEBUG,
):
    """Summarise a preset: task, classes, members, decision rule, input contract, training data and metrics.

    For a registered preset whose weights are not published yet, show its registry entry and the commands that train it.
    """
    registered = keras_covidcxr.list_presets().get(handle)
    if registered is not None and registered.get("trained") is False:
        entry = {"name": handle, **registered}
        if json_output:
            console.print_json(json.dumps(entry))
        else:
            console.print(f"{handle}: {entry.get('description', '')}", markup=False, soft_wrap=True)
            console.print("  train it with:", markup=False)
            for command in entry.get("training_commands", ()):
                console.print(f"    {command}", markup=False, soft_wrap=True)
        stderr.print(
            f"{handle}: no trained weights are published yet; the training commands above produce them on a GPU.",
            soft_wrap=True,
        )
        return
    with reported_errors(debug):  # a tampered preset's values are not shown as the preset's
        metadata = keras_covidcxr.read_preset_metadata(handle, verify_checksums=True)
    metadata.pop("files", None)
    if json_output:
        console.print_json(json.dumps(metadata))
        stderr.print(_describe_input(metadata.get("input") or {}), soft_wrap=True, markup=False)
    else:
        for line in preset_summary(handle, metadata):
            console.print(line, markup=False, soft_wrap=True)
    if not metadata.get("training"):
        stderr.print("[bold yellow]This preset records no training: its weights are untrained.[/]")


def preset_summary(handle, metadata):
    """The lines `covidcxr info` prints: what a person needs before trusting a preset."""
    config, training = metadata.get("config") or {}, metadata.get("training") or {}
    classes = config.get("class_names") or []
    counts = metadata.get("parameter_counts") or {}
    ensemble = config.get("ensemble") or {}
    members = ", ".join(f"{path.rsplit('/', 1)[-1]} ({counts.get(path, 0) / 1e6:.2f} M parameters)"
                        for path in config.get("members", ()))
    description = metadata.get("description") or "no description"
    lines = [
        description if description.startswith(f"{handle}:") else f"{handle}: {description}",
        f"  task: {' vs '.join(classes)} from frontal chest X-rays (research use only, not for diagnosis)",
        f"  segmenter: ResUnet, {counts.get('segmenter', 0) / 1e6:.2f} M parameters, "
        f"{(metadata.get('input') or {}).get('segmenter_input_size')} px",
        f"  members: {members}",
    ]
    if config.get("ensemble"):
        rule = keras_covidcxr.decision_rule_from_config(config)
        weights = (ensemble.get("config") or {}).get("weights")
        names = [path.rsplit("/", 1)[-1] for path in config.get("members", ())]
        weights_text = (" (weights " + ", ".join(f"{name} {w:.2f}" for name, w in zip(names, weights)) + ")"
                        if weights and len(weights) == len(names) else "")
        lines.append(f"  ensemble: {ensemble.get('class_name')}{weights_text}; label: {rule.describe()}")
    if config.get("calibration"):
        calibration = keras_covidcxr.ProbabilityCalibration.from_dict(config["calibration"])
        shares = calibration.shares_text(classes)
        lines.append(f"  probabilities: calibrated by {calibration.describe()} on {calibration.fitted_on or 'its'} "
                     f"held-out films{' (' + shares + ')' if shares else ''}"
                     + ("; the thresholds above are on that scale" if len(classes) == 2 else ""))
    changed = training.get("threshold_set_after_training")
    if isinstance(changed, dict):
        lines.append(f"  threshold set after training: {changed.get('rule')}; it replaces {changed.get('replaces')}, "
                     "at which the figures below were measured")
    if training.get("summary"):
        lines.append(f"  training: {training['summary']}")
    parent, recipe = training.get("parent"), training.get("recipe")
    if isinstance(parent, dict) and isinstance(recipe, dict) and recipe.get("name") == "finetune":
        data = training.get("data") if isinstance(training.get("data"), dict) else {}
        lines.append(f"  fine-tuned from {parent.get('handle') or 'a preset'} ({recipe.get('members_recipe')}) on "
                     f"{data.get('manifest') or 'a manifest built in Python'}"
                     + (f" (sha256 {data['sha256'][:12]})" if data.get("sha256") else ""))
    data = training.get("data")
    if isinstance(data, dict) and data.get("counts"):
        counts = data["counts"]
        counts_text = ("; ".join(f"{split}: {_flat_counts(value)}" for split, value in counts.items())
                       if all(isinstance(value, dict) for value in counts.values()) else _flat_counts(counts))
        lines.append(f"  data: {counts_text}" + (f"; {data['patients']} patients" if data.get("patients") else ""))
    elif data:
        lines.append(f"  data: {data}")
    validation = training.get("validation")
    # a record of a validation split names only the members; one of cross-validation says so in its keys
    said = isinstance(validation, dict) and any("validation" in str(key) for key in validation)
    # a record without cross-validation was measured on the split the ensemble and threshold were fitted on
    figures = _headline_metrics(validation, () if said else ("validation split (the ensemble fitted there: optimistic)",))
    lines += [f"  {line}" for line in figures[:MAX_INFO_FIGURES]]
    if figures and len(classes) > 2:
        lines.append(f"  (sensitivity and specificity above: macro averages over the {len(classes)} classes)")
    if len(figures) > MAX_INFO_FIGURES:
        lines.append(f"  ... and {len(figures) - MAX_INFO_FIGURES} more figures (--json has them all)")
    recorded = _recorded_source_shortcut(training)
    shortcut = recorded and keras_covidcxr.data.SourceShortcut.from_dict(recorded)
    if shortcut and shortcut.risky_labels:
        lines.append(f"  caution: in its training split the source alone tells apart {shortcut.describe_risky()}: "
                     "these figures may measure the hospitals, not the lungs")
    overlap = data.get("parent_training_overlap") if isinstance(data, dict) else None
    if isinstance(overlap, dict) and overlap:
        shown = "; ".join(f"{n.get('images')} of {n.get('of_images')} {split} films" for split, n in overlap.items()
                          if isinstance(n, dict))
        lines.append(f"  caution: {shown} belong to patients the parent was trained on: these figures are optimistic")
    lines.append(f"  {_describe_input(metadata.get('input') or {})}")
    licence = (keras_covidcxr.list_presets().get(handle) or {}).get("license")
    if licence:  # a registered preset's weights have their own terms (THIRD_PARTY_NOTICES.md)
        lines.append(f"  weights licence: {licence}")
    lines.append(
        f"  made with keras-covidcxr {metadata.get('package_version')}, Keras {metadata.get('keras_version')} "
        f"({metadata.get('backend')}), {metadata.get('created')}"
    )
    lines.append(f"  everything: covidcxr info {handle} --json")
    return lines


def _recorded_source_shortcut(training):
    """The source-shortcut record of a preset's training split: a fine-tuning's data, or a `train ensemble`
    member's summary."""
    data, recipe = training.get("data"), training.get("recipe")
    records = [data.get("classifier_inputs") if isinstance(data, dict) else None]
    members = recipe.get("members") if isinstance(recipe, dict) else None
    records += [summary.get("classifier_inputs") for summary in (members or {}).values() if isinstance(summary, dict)]
    return next((r["source_shortcut"] for r in records if isinstance(r, dict) and r.get("source_shortcut")), None)


def _flat_counts(counts, path=()):
    """{"cls": {"covid": 3}} -> "cls/covid 3"."""
    return ", ".join(_flat_counts(value, (*path, key)) if isinstance(value, dict) else f"{'/'.join((*path, key))} {value}"
                     for key, value in counts.items())


def _headline_metrics(validation, path=()):
    """The "where: auc a (low-high), sensitivity s, specificity p" lines found in a validation record."""
    if not isinstance(validation, dict):
        return []
    if "auc" in validation or "test_dice" in validation:
        parts = []
        for key in ("auc", "sensitivity", "specificity", "test_dice"):
            value = validation.get(key)
            interval = value.get("ci95") if isinstance(value, dict) else None
            value = value.get("value") if isinstance(value, dict) else value
            if isinstance(value, (int, float)):
                parts.append(f"{key.replace('_', ' ')} {value:.3f}"
                             + (f" ({interval[0]:.3f}-{interval[1]:.3f})" if interval and None not in interval else ""))
        return [f"{' / '.join(path)}: {', '.join(parts)}"] if parts else []
    return [line for key, value in validation.items() for line in _headline_metrics(value, (*path, str(key)))]


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
        console.print(f"[red]mismatch:[/] {escape(problem)}", soft_wrap=True)
    if verification.passed:
        console.print(f"{handle}: checksums and {verification.checked_samples} golden output(s) match")
    raise typer.Exit(EXIT_OK if verification.passed else EXIT_SOME_FAILED)


@app.command()
def upload(
    preset: str = typer.Argument(..., help="Preset folder to publish, or a registered name with bundled weights."),
    handle: str = typer.Argument(..., help="Destination hf://owner/repo."),
    card: Path | None = typer.Option(
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
        if card is None:  # said before the upload, while it can still be stopped
            stderr.print("[yellow]no model card found:[/] uploading without one, so the Hub page will show no "
                         "licence, intended use or metrics (pass --card FILE)")
        pinned = keras_covidcxr.upload_preset(preset, handle, private=private, model_card=card or False)
    console.print(
        f"uploaded{'' if card is None else f' with the model card {escape(str(card))}'}; load it with --preset {pinned}",
        soft_wrap=True,
    )


def _load_pipeline(preset, allow_untrained):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", keras_covidcxr.UntrainedPresetWarning)  # refused or marked below
        pipeline = keras_covidcxr.Pipeline.from_preset(preset)
    _refuse_untrained(pipeline, preset, allow_untrained)
    return pipeline


def _refuse_untrained(pipeline, handle, allow_untrained):
    if not pipeline.is_trained and not allow_untrained:
        raise keras_covidcxr.PresetError(
            f"{handle}: records no training (untrained weights); its outputs mean nothing. "
            "Pass --allow-untrained to run it anyway"
        )


def _results_table(results, class_names, untrained):
    caption = "Research use only, not for diagnosis."
    if untrained:
        caption = "[bold yellow]UNTRAINED preset: these outputs mean nothing.[/] " + caption
    with_notes = any(result.warnings for result in results)
    table = Table(caption=caption)
    # Every column folds long words, so the table fits an 80-column terminal instead of losing its last columns.
    headers = ("image", "label", *class_names, "member votes", "spread", "lung area", *(["notes"] if with_notes else []))
    for header in headers:
        table.add_column(header, overflow="fold")
    for result, name in zip(results, _display_names([result.source for result in results])):
        if result.error:  # the reason goes to stderr, one line per file
            table.add_row(escape(name), "[red]error[/]", *[""] * (len(headers) - 2))
            continue
        votes = "\n".join(f"{name}: {member['label']}" for name, member in result.members.items())
        notes = [escape("; ".join(message for _, message in result.warnings))] if with_notes else []
        label = result.label
        if result.would_be_label:
            label = f"[bold yellow]refer[/]\n(would be {result.would_be_label})"
        table.add_row(
            escape(name),
            label,
            *[f"{result.probabilities[c]:.3f}" for c in class_names],
            votes,
            _spread_text(result.uncertainty),
            f"{result.lung_fraction:.1%}",
            *notes,
        )
    return table


def _display_names(sources):
    """File names, or where two files share a name (patient1/image1.png, patient2/image1.png), the paths
    below the folder all the files are in."""
    names = [Path(source).name for source in sources]
    if len(set(names)) != len(names):
        paths = [os.path.abspath(source) for source in sources]
        root = os.path.commonpath([os.path.dirname(path) for path in paths])
        names = [os.path.relpath(path, root) for path in paths]
    return [printable_text(name) for name in names]  # a Latin-1 name's bytes as escapes


def _spread_text(uncertainty):
    """The members' spread of p (and the TTA views' spread), e.g. "0.041\nTTA 0.012"."""
    if not uncertainty:
        return ""
    text = f"{uncertainty['member_spread']:.3f}" + (" (votes differ)" if uncertainty["members_disagree"] else "")
    if uncertainty.get("tta_spread") is not None:
        text += f"\nTTA {uncertainty['tta_spread']:.3f}"
    return text


def _overlay_stems(paths):
    """A distinct overlay file stem per path: its display name without suffix (patient2/image1.png ->
    patient2__image1), numbered where two still clash."""
    used, stems = set(), []
    for name in _display_names([str(path) for path in paths]):
        stem = str(Path(name).with_suffix("")).replace(os.sep, "__")
        unique, n = stem, 1
        while unique in used:
            n += 1
            unique = f"{stem}_{n}"
        used.add(unique)
        stems.append(unique)
    return stems


def _write_overlays(results_and_stems, folder):
    """Write each film's overlays; report those that cannot be written (a user's file in the way, a full
    disk) on stderr and carry on. Returns how many films have no overlays."""
    failed = 0
    for result, stem in results_and_stems:
        try:
            keras_covidcxr.save_overlays(result, folder, stem)
        except keras_covidcxr.CovidCXRError as error:
            name = printable_text(Path(result.source).name)
            print_error(f"{name}: overlays not written ({error})")
            failed += 1
    return failed


app.add_typer(data_app, name="data", help="Build, split and audit dataset manifests.")
app.add_typer(train_app, name="train", help="Train the segmenter, the classifiers, and assemble the ensemble preset.")
app.command("finetune")(finetune)


def _show_decoder_warning(message, category, filename, lineno, file=None, line=None, shown=warnings.showwarning):
    """A warning raised while a file is decoded (pydicom's, Pillow's) is one line naming that file; others as usual."""
    name = sys.modules.get("keras_covidcxr.io.image_loader") and keras_covidcxr.io.file_being_decoded()
    if name is None:
        return shown(message, category, filename, lineno, file, line)
    stderr.print(f"[yellow]warning:[/] {escape(printable_text(f'{name}: ' + ' '.join(str(message).split())))}",
                 soft_wrap=True)


def main():
    # pydicom's notes on nonstandard header values ("Invalid value for VR CS: 'cr'") are for DICOM
    # developers; the reader normalises what it uses and refuses what it cannot read, by file name.
    warnings.filterwarnings("ignore", message="Invalid value for VR", category=UserWarning)
    # the decoders' other notes, once for each file they concern, named by _show_decoder_warning
    warnings.filterwarnings("always", category=UserWarning, module=r"(pydicom|PIL)(\.|$)")
    warnings.showwarning = _show_decoder_warning
    try:
        app()
    except SystemExit as exiting:
        if exiting.code in (EXIT_INTERRUPTED, EXIT_TERMINATED):
            # Interrupted mid-run, a data loader's worker thread may wait forever for its next batch, and Python
            # joins such threads before it exits: leave without them (every output is already written, atomically).
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(exiting.code)
        raise

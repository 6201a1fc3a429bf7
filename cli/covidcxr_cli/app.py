"""`covidcxr`: predict, list presets, show a preset's metadata.

`covidcxr --help` and `covidcxr presets` never import a Keras backend: model
code is imported inside the commands that need it.
"""

import json
import os
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import keras_covidcxr
from covidcxr_cli.data_commands import data_app
from covidcxr_cli.errors import EXIT_OK, EXIT_SOME_FAILED, reported_errors

app = typer.Typer(
    name="covidcxr",
    help="Lung segmentation and COVID-19 classification of chest X-rays (research use only, not for diagnosis).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(highlight=False)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter is not for CLI users

DEBUG = typer.Option(False, "--debug", help="Show full tracebacks.")


@app.command()
def predict(
    images: List[Path] = typer.Argument(..., help="Image files (PNG, JPEG, BMP, TIFF, DICOM).", show_default=False),
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help="Preset folder, registered name or hf://owner/repo[@rev]."),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object per image instead of a table."),
    overlays: Optional[Path] = typer.Option(None, "--overlays", help="Write <name>_mask.png and <name>_gradcam.png here."),
    allow_untrained: bool = typer.Option(False, "--allow-untrained", help="Run a preset that records no training."),
    strict: bool = typer.Option(False, "--strict", help="Refuse lateral views and children instead of flagging them."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Images per model call."),
    debug: bool = DEBUG,
):
    """Classify chest X-rays: label, class probabilities, member votes and lung area."""
    with reported_errors(debug):
        if preset is None:
            raise keras_covidcxr.ConfigError("no preset given: pass --preset (see `covidcxr presets`)")
        pipeline = keras_covidcxr.Pipeline.from_preset(preset)
        if not pipeline.is_trained and not allow_untrained:
            raise keras_covidcxr.PresetError(
                f"{preset}: records no training (untrained weights); its outputs mean nothing. "
                "Pass --allow-untrained to run it anyway"
            )
        results = pipeline.predict(
            images, batch_size=batch_size, on_error="record", explain=overlays is not None, strict=strict
        )
        untrained = not pipeline.is_trained
        if json_output:
            for result in results:
                console.print_json(json.dumps({**result.to_dict(), "untrained": untrained}), indent=None)
        else:
            console.print(_results_table(results, pipeline.class_names, untrained))
        failed = [r for r in results if r.error]
        if overlays is not None:
            _write_overlays([r for r in results if not r.error], overlays)
    raise typer.Exit(EXIT_SOME_FAILED if failed else EXIT_OK)


@app.command()
def presets():
    """List the registered presets (and whether trained weights exist for each)."""
    registered = keras_covidcxr.list_presets()
    if not registered:
        console.print("No registered presets yet. Pass a preset folder or hf://owner/repo to --preset.")
        return
    table = Table("name", "description", "weights")
    for name, metadata in registered.items():
        table.add_row(name, metadata.get("description", ""), metadata.get("weights", "unknown"))
    console.print(table)


@app.command()
def info(handle: str = typer.Argument(..., help="Preset folder, registered name or hf://owner/repo[@rev]."), debug: bool = DEBUG):
    """Show a preset's metadata: versions, parameters, input contract, training provenance."""
    with reported_errors(debug):
        metadata = keras_covidcxr.read_preset_metadata(handle)
    metadata.pop("files", None)
    console.print_json(json.dumps(metadata))
    if not metadata.get("training"):
        console.print("[bold yellow]This preset records no training: its weights are untrained.[/]")


def _results_table(results, class_names, untrained):
    caption = "Research use only, not for diagnosis."
    if untrained:
        caption = "[bold yellow]UNTRAINED preset: these outputs mean nothing.[/] " + caption
    table = Table("image", "label", *class_names, "member votes", "lung area", "notes", caption=caption)
    table.columns[0].overflow = "fold"
    for result in results:
        if result.error:
            table.add_row(Path(result.source).name, "[red]error[/]", *[""] * len(class_names), "", "", escape(result.error))
            continue
        votes = ", ".join(f"{name}: {member['label']}" for name, member in result.members.items())
        table.add_row(
            Path(result.source).name,
            result.label,
            *[f"{result.probabilities[c]:.3f}" for c in class_names],
            votes,
            f"{result.lung_fraction:.1%}",
            escape("; ".join(message for _, message in result.warnings)),
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
        try:
            keras_covidcxr.save_overlays(result, folder, unique)
        except FileExistsError as error:
            raise keras_covidcxr.CovidCXRError(str(error)) from error


app.add_typer(data_app, name="data", help="Build, split and audit dataset manifests.")


def main():
    app()

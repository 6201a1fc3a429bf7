"""The registered presets: the bundled default, the paper presets without published weights, and how they resolve."""

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer

import keras_covidcxr
from keras_covidcxr import Pipeline, PresetError, list_presets
from keras_covidcxr.models.pipeline import pipeline_presets
from keras_covidcxr.presets.preset_format import input_summary, read_verified_config
from keras_covidcxr.presets.resolve import parse_hf_handle, resolve_preset

PAPER_PRESETS = [
    "covidcxr_paper_binary_weighted_average",
    "covidcxr_paper_binary_majority_vote",
    "covidcxr_paper_3class_weighted_average",
    "covidcxr_paper_3class_majority_vote",
]


def test_the_default_is_the_bundled_lite_preset_inside_the_package():
    assert keras_covidcxr.DEFAULT_PRESET == "covidcxr_lite"
    entry = pipeline_presets.PIPELINE_PRESETS[keras_covidcxr.DEFAULT_PRESET]
    package = Path(keras_covidcxr.__file__).resolve().parent
    assert Path(entry["handle"]) == package / "presets" / "bundled" / "covidcxr_lite"
    metadata = entry["metadata"]
    assert metadata["weights"] == "bundled" and metadata["trained"] is True
    assert "not for diagnosis" in metadata["intended_use"]
    # the registry's summary must describe the preset that is bundled, not an earlier one
    config, _ = read_verified_config(entry["handle"])
    sizes = input_summary(entry["handle"], config)
    assert metadata["class_names"] == config["class_names"]
    assert metadata["input_size"] == {"segmenter": sizes["segmenter_input_size"],
                                      "classifiers": sizes["classifier_input_size"]}
    for member in config["members"]:
        backbone = {"mobilenet_v2": "MobileNetV2", "efficientnet_lite0": "EfficientNet-Lite0"}[Path(member).name]
        assert backbone in metadata["description"]
    assert f"{sizes['classifier_input_size']} px" in metadata["description"]
    assert "non-commercial" in metadata["license"]
    for credit in ("ieee8023", "Actualmed", "Figure 1", "V7 Labs", "CC BY 4.0"):
        assert credit in metadata["license"]
    assert metadata["training_commands"] == [
        "python examples/train_bundled_preset.py ../shared/data/cxr --weights ../shared/weights --work runs/lite"
    ]


def test_import_stays_light_and_exports_the_default():
    code = (
        "import sys, keras_covidcxr\n"
        "assert keras_covidcxr.DEFAULT_PRESET in keras_covidcxr.list_presets()\n"
        "heavy = [m for m in ('keras', 'tensorflow', 'jax', 'torch') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", PAPER_PRESETS)
def test_paper_presets_say_no_weights_are_published(name):
    entry = pipeline_presets.PIPELINE_PRESETS[name]
    metadata = entry["metadata"]
    assert metadata["trained"] is False and metadata["weights"] == "not published"
    assert "not for diagnosis" in metadata["intended_use"]
    assert parse_hf_handle(entry["handle"]) == (f"keras-covidcxr/{name}", "main")
    assert metadata["ensemble"] in name
    assert metadata["class_names"] == (["non_covid", "covid"] if "_binary_" in name else ["covid", "normal", "pneumonia"])
    assert metadata["architecture"]["segmenter"]["input_size"] == 256
    assert metadata["architecture"]["members"] == {"densenet201": 128, "resnet152": 1024, "vgg19": 4096}
    assert metadata["paper_results"] and metadata["model_card"] == f"model_cards/{name}.md"
    commands = "\n".join(metadata["training_commands"])
    assert f"--num-classes {2 if '_binary_' in name else 3}" in commands
    assert f"--ensemble {metadata['ensemble']}" in commands
    for backbone in ("densenet201", "resnet152", "vgg19"):
        assert f"--backbone {backbone}" in commands


def _cli_command(words):
    """The click command a `covidcxr ...` word list names, and the words after its name."""
    from covidcxr_cli.app import app

    command = typer.main.get_command(app)
    words = list(words)
    while hasattr(command, "commands") and words and words[0] in command.commands:  # a group
        command = command.commands[words.pop(0)]
    return command, words


@pytest.mark.parametrize("name", [keras_covidcxr.DEFAULT_PRESET, *PAPER_PRESETS])
def test_training_commands_use_only_commands_and_options_that_exist(name):
    for line in pipeline_presets.PIPELINE_PRESETS[name]["metadata"]["training_commands"]:
        words = shlex.split(line, comments=True)
        if not words or words[0] != "covidcxr":
            continue
        command, rest = _cli_command(words[1:])
        assert not hasattr(command, "commands"), line
        options = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
        used = {word for word in rest if word.startswith("--")}
        assert used <= options, (line, used - options)
        context = command.make_context(command.name, rest)
        assert context.params  # the arguments parse


@pytest.mark.parametrize("name", PAPER_PRESETS)
def test_loading_an_unpublished_paper_preset_says_so_without_the_network(name, monkeypatch):
    import huggingface_hub

    def no_network(*args, **kwargs):
        raise AssertionError("an unpublished preset must not reach the Hub")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    with pytest.raises(PresetError) as raised:
        Pipeline.from_preset(name)
    message = str(raised.value)
    assert message.startswith(f"{name}: no trained weights are published yet")
    assert f"covidcxr info {name}" in message and "train" in message and "GPU" in message
    assert f"model_cards/{name}.md" in message


def test_a_published_registered_hf_preset_still_downloads_through_huggingface_hub(monkeypatch, preset_dir):
    import huggingface_hub

    calls = []

    def snapshot_download(repo_id, revision=None):
        calls.append((repo_id, revision))
        return str(preset_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    entry = pipeline_presets.PIPELINE_PRESETS[PAPER_PRESETS[0]]
    published = {"metadata": {**entry["metadata"], "trained": True, "weights": "published"}, "handle": entry["handle"]}
    monkeypatch.setitem(pipeline_presets.PIPELINE_PRESETS, PAPER_PRESETS[0], published)
    assert resolve_preset(PAPER_PRESETS[0]) == preset_dir
    assert calls == [(f"keras-covidcxr/{PAPER_PRESETS[0]}", "main")]


def test_a_missing_bundled_folder_is_a_clear_preset_error(monkeypatch, tmp_path):
    missing = tmp_path / "bundled" / "covidcxr_lite"
    entry = pipeline_presets.PIPELINE_PRESETS["covidcxr_lite"]
    monkeypatch.setitem(pipeline_presets.PIPELINE_PRESETS, "covidcxr_lite", {**entry, "handle": str(missing)})
    with pytest.raises(PresetError) as raised:
        resolve_preset("covidcxr_lite")
    message = str(raised.value)
    assert f"the bundled preset folder {missing} is missing" in message
    assert "examples/train_bundled_preset.py" in message


def test_the_bundled_preset_resolves_to_its_folder_when_present(monkeypatch, preset_dir):
    entry = pipeline_presets.PIPELINE_PRESETS["covidcxr_lite"]
    monkeypatch.setitem(pipeline_presets.PIPELINE_PRESETS, "covidcxr_lite", {**entry, "handle": str(preset_dir)})
    assert resolve_preset(keras_covidcxr.DEFAULT_PRESET) == preset_dir


def test_list_presets_returns_copies():
    presets = list_presets()
    assert set(presets) == {"covidcxr_lite", *PAPER_PRESETS}
    presets["covidcxr_lite"]["weights"] = "changed"
    assert list_presets()["covidcxr_lite"]["weights"] == "bundled"

"""model_cards/: one Hugging Face card per registered preset, honest about what exists."""

import re
from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from keras_covidcxr.models.pipeline.pipeline_presets import PIPELINE_PRESETS

CARDS = Path(__file__).resolve().parents[2] / "model_cards"
SECTIONS = (
    "## Intended use",
    "## Not for diagnosis",
    "## Data and known biases",
    "## Training recipe",
    "## Metrics",
    "## Grad-CAM examples",
    "## How to load",
    "## Licence",
)
PLACEHOLDER = re.compile(r"\{\{.*?\}\}")


def _sections(text):
    """{"## Title": body} of the card's second-level sections."""
    parts = re.split(r"^(## .+)$", text, flags=re.MULTILINE)
    return {title.strip(): body for title, body in zip(parts[1::2], parts[2::2])}


@pytest.mark.parametrize("name", sorted(PIPELINE_PRESETS))
def test_every_registered_preset_has_a_card_with_hub_metadata_and_the_sections(name):
    path = CARDS / f"{name}.md"
    assert path.is_file(), f"no model card for {name}"
    assert PIPELINE_PRESETS[name]["metadata"]["model_card"] == f"model_cards/{name}.md"
    card = ModelCard.load(path)  # the Hub's own parser
    data = card.data.to_dict()
    assert data["library_name"] == "keras" and data["pipeline_tag"] == "image-classification"
    assert data["license"] and data["datasets"] and data["metrics"]
    assert {"keras-covidcxr", "chest-x-ray", "covid-19"} <= set(data["tags"])
    sections = _sections(card.text)
    for title in SECTIONS:
        assert title in sections, f"{name}: no section {title!r}"
    assert "not a medical device" in sections["## Not for diagnosis"]
    biases = " ".join(sections["## Data and known biases"].split())
    for bias in ("Source confounding", "Mixed views", "AP-supine"):
        assert bias in biases, f"{name}: {bias!r} not discussed"
    assert f'Pipeline.from_preset("{name}")' in sections["## How to load"]
    assert "covidcxr predict" in sections["## How to load"]
    assert "Apache-2.0" in sections["## Licence"]


@pytest.mark.parametrize("name", [n for n, e in PIPELINE_PRESETS.items() if not e["metadata"]["trained"]])
def test_paper_cards_say_no_weights_are_published_and_label_the_papers_numbers(name):
    text = (CARDS / f"{name}.md").read_text()
    assert "No trained weights are published yet" in text.split("## Intended use")[0]
    metrics = " ".join(_sections(text)["## Metrics"].split())
    assert "No weights are published yet" in metrics and "The paper's numbers" in metrics
    assert "95.04%" in metrics and "gives no confidence intervals" in metrics
    assert not PLACEHOLDER.search(text)
    for command in PIPELINE_PRESETS[name]["metadata"]["training_commands"]:
        assert command in text  # the card shows the registry's exact commands


def test_the_lite_card_has_no_placeholders_and_credits_its_data():
    text = (CARDS / "covidcxr_lite.md").read_text()
    sections = _sections(text)
    outside = text.replace(sections["## Metrics"], "")
    assert not PLACEHOLDER.search(outside)
    assert not PLACEHOLDER.search(sections["## Metrics"])
    licence = " ".join(sections["## Licence"].split())
    for credit in ("non-commercial", "ieee8023", "Cohen", "Actualmed", "Figure 1", "V7 Labs", "CC BY 4.0"):
        assert credit in licence
    assert "chest_xray_covid_pa.png" in licence  # the bundled sample image's licence
    assert "examples/train_bundled_preset.py" in sections["## Training recipe"]


def test_the_lite_card_reports_the_bundled_preset_s_measured_metrics():
    import json

    from keras_covidcxr.presets.registry import registered_handle

    metadata = json.loads((Path(registered_handle("covidcxr_lite")) / "metadata.json").read_text())
    validation = metadata["training"]["validation"]
    metrics = " ".join(_sections((CARDS / "covidcxr_lite.md").read_text())["## Metrics"].split())
    assert f"Dice {validation['segmenter']['test_dice']['value']:.3f}" in metrics
    for model, entry in validation["cross_validation"].items():
        for subset in ("all", "pa_only"):
            auc = entry[subset]["auc"]
            low, high = auc["ci95"]
            assert f"{auc['value']:.3f} ({low:.3f}-{high:.3f})" in metrics, (model, subset)
    assert f"threshold {metadata['training']['recipe']['ensemble']['threshold']:.3f}" in metrics

"""Registered pipeline presets: name -> {"metadata": {...}, "handle": ...}.

A handle is a local folder or "hf://owner/repo@revision". Each metadata says
whether trained weights exist behind the handle ("trained", "weights"), so
nothing pretends: loading a preset whose weights are not published fails with
a `PresetError` that says how to train them, never with a network error.

Plain data: importing this module builds no model and imports no backend.
"""

from pathlib import Path

HF_ORG = "keras-covidcxr"
MODEL_CARDS = "model_cards"  # one <name>.md per preset, in the source repository

# keras_covidcxr/presets/bundled/, found from this file (never from the working directory).
BUNDLED_PRESETS_DIR = Path(__file__).resolve().parent.parent.parent / "presets" / "bundled"

WEIGHTS_LICENCE = (
    "research, non-commercial use (trained on images under research-only and non-commercial terms); "
    "attribution: ieee8023 COVID-19 image data collection (Cohen et al.), Actualmed COVID-19 Chest X-ray "
    "Dataset, Figure 1 COVID-19 Chest X-ray Dataset (agchung), V7 Labs lung masks (CC BY 4.0)"
)

INTENDED_USE = "research on adult frontal chest X-rays only; not a medical device, not for diagnosis"

LITE_TRAINING_COMMAND = (
    "python examples/train_bundled_preset.py ../shared/data/cxr --weights ../shared/weights --work runs/lite"
)

# The paper's data: COVIDx5 + MIDRC-RICORD-1C + BIMCV-COVID19+ (classifiers), V7 Labs lung masks (segmenter).
PAPER_DATA_COMMANDS = (
    "covidcxr data build darwin v7/annotations --images v7/images --masks-out v7/masks --out data/v7.csv",
    "covidcxr data split data/v7.csv --out data/v7_split.csv --fractions 0.8,0.2,0",
    "covidcxr data build covidx covidx5/train_COVIDx5.txt --images covidx5/train --out data/covidx_train.csv",
    "covidcxr data build covidx covidx5/test_COVIDx5.txt --images covidx5/test --out data/covidx_test.csv",
    "covidcxr data build midrc-ricord MIDRC-RICORD-1C --out data/ricord.csv",
    "covidcxr data build bimcv BIMCV-COVID19 --out data/bimcv.csv",
    (
        "covidcxr data merge data/covidx_train.csv data/covidx_test.csv data/ricord.csv data/bimcv.csv "
        "--out data/cls.csv"
    ),
    "covidcxr data split data/cls.csv --out data/cls_split.csv --fractions 0.8,0.1,0.1 --seed 0",
    "covidcxr data audit data/cls_split.csv",
)
# paper: ResUnet 256 px, 7 levels, 45 epochs -> val Dice 95.04% (one segmenter serves all four presets).
PAPER_SEGMENTER_COMMAND = (
    "covidcxr train segmenter data/v7_split.csv --out runs/seg --input-size 256 --filters 64,128,256,512 "
    "--epochs 45 --batch-size 32 --precision mixed_bfloat16"
)
PAPER_BACKBONES = ("densenet201", "resnet152", "vgg19")

PAPER_RESULTS = {  # the paper's own numbers (Hertel & Benlamri 2022), not measured by this package
    2: {
        "weighted_average": {
            "test_accuracy": 0.91,
            "test_covid_sensitivity": 0.92,
            "covid_gr_1_0_accuracy": 0.77,
            "covid_gr_1_0_covid_sensitivity": 0.78,
        },
        "majority_vote": {"note": "reported in the paper's Table 11; the values are not in its text"},
    },
    3: {
        "weighted_average": {"val_accuracy": 0.8740, "test_accuracy": 0.8407},
        "majority_vote": {"val_accuracy": 0.8714, "test_accuracy": 0.8400},
    },
}


def paper_training_commands(num_classes, ensemble):
    """The commands that train one paper preset on a GPU from the public datasets."""
    runs = f"runs/{'binary' if num_classes == 2 else '3class'}"
    name = paper_preset_name(num_classes, ensemble)
    classifiers = tuple(
        f"covidcxr train classifier data/cls_split.csv --segmenter runs/seg --backbone {backbone} "
        f"--num-classes {num_classes} --input-size 224 --batch-size 32 --precision mixed_bfloat16 "
        f"--out {runs}/{backbone}"
        for backbone in PAPER_BACKBONES
    )
    members = " ".join(f"--member {runs}/{backbone}" for backbone in PAPER_BACKBONES)
    return [
        *PAPER_DATA_COMMANDS,
        PAPER_SEGMENTER_COMMAND,
        *classifiers,
        (
            f"covidcxr train ensemble data/cls_split.csv --segmenter runs/seg {members} "
            f"--ensemble {ensemble} --out presets/{name}"
        ),
        f"covidcxr evaluate presets/{name} data/cls_split.csv --split test --out reports/{name}",
        f"# replace the paper's numbers in {MODEL_CARDS}/{name}.md by the measured ones, then publish:",
        f"covidcxr upload presets/{name} hf://{HF_ORG}/{name} --card {MODEL_CARDS}/{name}.md",
    ]


def paper_preset_name(num_classes, ensemble):
    return f"covidcxr_paper_{'binary' if num_classes == 2 else '3class'}_{ensemble}"


def _paper_preset(num_classes, ensemble):
    name = paper_preset_name(num_classes, ensemble)
    task = "COVID-19 vs non-COVID" if num_classes == 2 else "COVID-19 / normal / pneumonia"
    combine = "weighted average of probabilities"
    if ensemble == "majority_vote":
        combine = "majority vote of labels"
    return name, {
        "metadata": {
            "description": (
                f"The paper's full pipeline, {task}: ResUnet 256 px lung segmenter + DenseNet-201, "
                f"ResNet-152 and VGG-19 on the masked 224 px image, {combine}."
            ),
            "trained": False,
            "weights": "not published",
            "intended_use": INTENDED_USE,
            "class_names": ["non_covid", "covid"] if num_classes == 2 else ["covid", "normal", "pneumonia"],
            "ensemble": ensemble,
            "architecture": {
                "segmenter": {"class": "ResUnet", "input_size": 256, "filters": [64, 128, 256, 512]},
                "members": {"densenet201": 128, "resnet152": 1024, "vgg19": 4096},  # extra dense units
                "classifier_input_size": 224,
            },
            "data": (
                "COVIDx5 + MIDRC-RICORD-1C + BIMCV-COVID19+ (classifiers; the paper: 4,013 COVID-19 / "
                "8,066 normal / 5,445 pneumonia), V7 Labs lung masks (segmenter), split by patient 80/10/10"
            ),
            "paper_results": PAPER_RESULTS[num_classes][ensemble],
            "training_commands": paper_training_commands(num_classes, ensemble),
            "model_card": f"{MODEL_CARDS}/{name}.md",
            "license": "Apache-2.0 (code); the weights, once trained, inherit the datasets' terms",
        },
        "handle": f"hf://{HF_ORG}/{name}@main",
    }


PIPELINE_PRESETS = {
    "covidcxr_lite": {
        "metadata": {
            "description": (
                "Small CPU-trained pipeline bundled with the package: ResUnet 128 px lung segmenter + frozen "
                "ImageNet MobileNetV2 and EfficientNet-Lite0 with logistic-regression heads on 224 px lung "
                "crops (weighted average), COVID-19 vs non-COVID, trained on the public images of the "
                "ieee8023, Actualmed and Figure 1 collections with the V7 Labs lung masks."
            ),
            "trained": True,
            "weights": "bundled",
            "intended_use": INTENDED_USE,
            "class_names": ["non_covid", "covid"],
            "input_size": {"segmenter": 128, "classifiers": 224},
            "data": (
                "ieee8023 covid-chestxray-dataset, Actualmed COVID-19 Chest X-ray Dataset, Figure 1 COVID-19 "
                "Chest X-ray Dataset, V7 Labs lung masks (../shared/data/cxr), split by patient"
            ),
            "training_commands": [LITE_TRAINING_COMMAND],
            "model_card": f"{MODEL_CARDS}/covidcxr_lite.md",
            "license": WEIGHTS_LICENCE,
        },
        "handle": str(BUNDLED_PRESETS_DIR / "covidcxr_lite"),
    },
    **dict(
        _paper_preset(num_classes, ensemble)
        for num_classes in (2, 3)
        for ensemble in ("weighted_average", "majority_vote")
    ),
}

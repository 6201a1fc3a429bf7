"""Reproduce the paper's classifiers and ensemble, and assemble the Pipeline preset.

Paper (Hertel & Benlamri 2022, section 3.3): DenseNet-201, ResNet-152 and VGG-19 from ImageNet
weights, each with an extra dense layer (128 / 1024 / 4096 units) and dropout 0.1, trained on
lung-masked 224 px images with class-weighted loss and augmentation (rotation 15 degrees, shift /
shear / zoom 15%, horizontal flips), batch 32: phase 1 the head alone for 5 epochs (Adam
defaults), phase 2 progressive unfreezing at 1e-5 until validation accuracy stops improving,
batch norm frozen. Then a weighted-average ensemble (3-class test accuracy 84.07%).

Data: COVIDx5 + MIDRC-RICORD-1C + BIMCV (3 classes), or their binary version; COVID-GR-1.0 for
the comparison with COVID-SDNet (binary, 80/20). Build and split the manifest by patient first:

    covidcxr data build covidx ... --out covidx.csv   (and the other builders; concatenate)
    covidcxr data split all.csv --out split.csv --fractions 0.8,0.1,0.1

On a GPU machine, after examples/train_paper_segmenter.py:

    KERAS_BACKEND=jax python examples/train_paper_classifiers.py split.csv --segmenter runs/seg \\
        --out runs --preset my_preset --num-classes 3 --precision mixed_bfloat16

This trains runs/densenet201, runs/resnet152 and runs/vgg19 (each resumable), then fits the
ensemble weights and threshold on the validation split and writes the preset `my_preset` - the
same as `covidcxr train ensemble split.csv --segmenter runs/seg --member runs/densenet201
--member runs/resnet152 --member runs/vgg19 --out my_preset`. Evaluate it on the test split with
`covidcxr evaluate`.

On this CPU, in a few minutes, with synthetic data, a tiny segmenter and small backbones:

    python examples/train_paper_classifiers.py --smoke --out /tmp/smoke_runs --preset /tmp/smoke_preset
"""

import argparse
import tempfile
from pathlib import Path

from keras_covidcxr import (
    Pipeline,
    TrainingConfig,
    assemble_preset,
    run_classifier_recipe,
    run_segmenter_recipe,
    write_synthetic_dataset,
)

PAPER_BACKBONES = ("densenet201", "resnet152", "vgg19")
SMOKE_BACKBONES = ("densenet121", "mobilenet_v2", "vgg16")


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest", nargs="?", help="split manifest with cls rows (train/val/test)")
    parser.add_argument("--segmenter", help="trained segmenter checkpoint (examples/train_paper_segmenter.py)")
    parser.add_argument("--out", required=True, help="folder for one checkpoint folder per backbone")
    parser.add_argument("--preset", required=True, help="the preset folder to write")
    parser.add_argument("--smoke", action="store_true", help="tiny synthetic run for a CPU")
    parser.add_argument("--num-classes", type=int, choices=(2, 3), default=3)
    parser.add_argument("--backbones", default=",".join(PAPER_BACKBONES))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--precision", choices=("mixed_bfloat16", "mixed_float16"), default=None)
    parser.add_argument("--jit-compile", action="store_true")
    parser.add_argument("--steps-per-execution", type=int, default=1)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args(argv)
    if not args.smoke and not (args.manifest and args.segmenter):
        parser.error("give a manifest and --segmenter, or --smoke")
    return args


def main(argv=None):
    args = parse(argv)
    with tempfile.TemporaryDirectory(prefix="covidcxr-smoke-") as scratch:  # --smoke's synthetic data, removed after
        return train(args, Path(scratch))


def train(args, scratch):
    out = Path(args.out)
    if args.smoke:
        manifest = write_synthetic_dataset(scratch, patients_per_class=8, size=64)
        segmenter = out / "segmenter"
        run_segmenter_recipe(manifest, segmenter, input_size=32, filters=(4, 8, 16),
                             config=TrainingConfig(epochs=3, batch_size=8, learning_rate=3e-3, workers=2,
                                                   patience=0, run_eagerly=True))
        backbones, input_size, head_units, weights = SMOKE_BACKBONES, 32, 8, None
        config = TrainingConfig(batch_size=8, head_epochs=1, unfreeze_schedule=(0.25,), max_epochs_per_stage=1,
                                workers=2, run_eagerly=True)
    else:
        manifest, segmenter = args.manifest, args.segmenter
        backbones, input_size, head_units, weights = args.backbones.split(","), 224, None, "imagenet"
        config = TrainingConfig(
            batch_size=args.batch_size, workers=args.workers, mixed_precision=args.precision,
            jit_compile=True if args.jit_compile else "auto", steps_per_execution=args.steps_per_execution, verbose=2,
        )
    members = []
    for backbone in backbones:
        result = run_classifier_recipe(manifest, segmenter, out / backbone, backbone=backbone,
                                       num_classes=args.num_classes, input_size=input_size, head_units=head_units,
                                       backbone_weights=weights, config=config)
        print(f"{backbone}: best validation accuracy {result.best_value:.4f} ({result.seconds:.0f} s)")
        members.append(out / backbone)
    built = assemble_preset(manifest, segmenter, members, args.preset, description="trained with "
                            "examples/train_paper_classifiers.py" + (" --smoke (synthetic data)" if args.smoke else ""),
                            config=config)
    for name, values in built.training["validation"].items():
        print(f"{name}: validation accuracy {values['accuracy']:.4f}")
    Pipeline.from_preset(args.preset)  # the preset loads back
    print(f"preset written to {args.preset}")
    return built


if __name__ == "__main__":
    main()

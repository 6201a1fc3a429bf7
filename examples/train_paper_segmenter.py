"""Reproduce the paper's lung segmenter: a ResUnet (256 px, 7 levels) trained on the V7 Labs lung masks.

Paper (Hertel & Benlamri 2022, section 3.3): 6,377 PA image/mask pairs (laterals and images under
256 px dropped), split 80/20, augmentation rotation 180 degrees / shift 30% / shear 20% / zoom 20% /
horizontal flips, 45 epochs -> validation Dice 95.04%. Loss (ours): Dice + binary cross-entropy.

On a GPU machine (any Keras backend; JAX needs no TensorFlow):

    covidcxr data build darwin v7/annotations --images v7/images --masks-out v7/masks --out v7.csv
    covidcxr data split v7.csv --out v7_split.csv --fractions 0.8,0.2,0
    KERAS_BACKEND=jax python examples/train_paper_segmenter.py v7_split.csv --out runs/seg \\
        --precision mixed_bfloat16 --jit-compile --steps-per-execution 8

A killed run continues where it stopped when started again with the same --out.

On this CPU, in a minute or two, with synthetic data and a tiny network:

    python examples/train_paper_segmenter.py --smoke --out /tmp/smoke_seg

Next: examples/train_paper_classifiers.py trains the classifiers on images masked by this
segmenter (--segmenter runs/seg) and assembles everything into one Pipeline preset (as
`covidcxr train ensemble MANIFEST --segmenter runs/seg --member ... --out PRESET` does).
"""

import argparse
import tempfile
from pathlib import Path

from keras_covidcxr import TrainingConfig, run_segmenter_recipe, write_synthetic_dataset


def parse(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest", nargs="?", help="split manifest with seg rows (train/val)")
    parser.add_argument("--out", required=True, help="checkpoint folder (best/, state/, summary.json)")
    parser.add_argument("--smoke", action="store_true", help="tiny synthetic run for a CPU")
    parser.add_argument("--epochs", type=int, default=45)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--input-size", type=int, default=256)
    parser.add_argument("--precision", choices=("mixed_bfloat16", "mixed_float16"), default=None)
    parser.add_argument("--jit-compile", action="store_true")
    parser.add_argument("--steps-per-execution", type=int, default=1)
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args(argv)
    if not args.smoke and not args.manifest:
        parser.error("give a manifest, or --smoke")
    return args


def main(argv=None):
    args = parse(argv)
    with tempfile.TemporaryDirectory(prefix="covidcxr-smoke-") as scratch:  # --smoke's synthetic data, removed after
        return train(args, Path(scratch))


def train(args, scratch):
    if args.smoke:
        manifest = write_synthetic_dataset(scratch, patients_per_class=8, size=64)
        filters, config = (4, 8, 16), TrainingConfig(epochs=8, batch_size=8, learning_rate=3e-3, workers=2,
                                                     patience=0, run_eagerly=True)
        input_size = 32
    else:
        manifest, filters, input_size = args.manifest, (64, 128, 256, 512), args.input_size
        config = TrainingConfig(
            epochs=args.epochs, batch_size=args.batch_size, patience=0, workers=args.workers,
            mixed_precision=args.precision, jit_compile=True if args.jit_compile else "auto",
            steps_per_execution=args.steps_per_execution, verbose=2,
        )
    result = run_segmenter_recipe(manifest, args.out, input_size=input_size, filters=filters, config=config)
    print(f"best validation Dice {result.best_value:.4f} at epoch {result.best_epoch}; "
          f"{len(result.history)} epochs in {result.seconds:.0f} s; best weights in {Path(args.out) / 'best'}")
    return result


if __name__ == "__main__":
    main()

"""Measure the lung-mask view check (`keras_covidcxr.preprocessing.view_check`) on the shared data.

Reproduces the measurement recorded in `view_check`'s docstring: the preset's
segmenter runs at its own resolution on the lateral X-rays (view "L" in
`manifest_bad_inputs.csv`) and on every 3rd frontal classification image
(`task` cls in `manifest.csv`, at least 256 px on each side: 442 of the 447),
and the script prints how many of each `looks_lateral` flags, with the
percentiles of the two shares the rule thresholds.

    python examples/measure_view_check.py                          # ../shared/data/cxr, the default preset
    python examples/measure_view_check.py --preset ./my_preset --details shares.csv
    python examples/measure_view_check.py --through-pipeline       # also count Pipeline.predict's warnings

The numbers mean something only for a trained segmenter (an untrained preset
from examples/build_untrained_preset.py runs, but its masks are noise).
"""

import argparse
import csv
from pathlib import Path

import numpy as np
from PIL import Image

import keras_covidcxr
from keras_covidcxr import Pipeline
from keras_covidcxr.io.image_loader import load_image
from keras_covidcxr.preprocessing.model_inputs import segmenter_input
from keras_covidcxr.preprocessing.view_check import (
    MIN_HALF_SHARE,
    MIN_SECOND_SHARE,
    looks_lateral,
    mask_view_geometry,
)


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def image_groups(data, every, min_size):
    """{"lateral": [paths], "frontal": [paths]} from the shared data folder's manifests."""
    bad_inputs = read_rows(data / "manifest_bad_inputs.csv")
    laterals = [data / row["file"] for row in bad_inputs if row["view"] == "L"]
    frontals = []
    for row in read_rows(data / "manifest.csv"):
        if row["task"] == "cls":
            with Image.open(data / row["file"]) as image:  # the header only: no decoding
                if min(image.size) >= min_size:
                    frontals.append(data / row["file"])
    return {"lateral": laterals, "frontal": frontals[::every]}


def masks(pipeline, paths, batch_size):
    """Yield each image's boolean lung mask at the segmenter's resolution, as the pipeline thresholds it."""
    size, threshold = pipeline.segmenter.input_size, pipeline.preprocessing.mask_threshold
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        batch = np.stack([segmenter_input(load_image(path).pixels, size) for path in chunk])
        probabilities = np.asarray(pipeline.segmenter.predict_on_batch(batch))[..., 0]
        yield from (p >= threshold for p in probabilities)


def pipeline_flags(pipeline, paths, batch_size):
    """How many images the pipeline itself (check_view_from_mask=True) gives the mask's "view" warning."""
    checking = pipeline.with_input_contract(check_view_from_mask=True)
    results = checking.predict(paths, batch_size=batch_size, on_error="record")
    flagged = sum(
        any(message.startswith("lung mask looks like") for _, message in r.warnings) for r in results
    )
    return flagged, sum(r.error is not None for r in results)


def main():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data/cxr"), help="shared data folder")
    parser.add_argument("--preset", default=keras_covidcxr.DEFAULT_PRESET, help="a Pipeline preset handle")
    parser.add_argument("--every", type=int, default=3, help="use every n-th frontal image")
    parser.add_argument("--min-size", type=int, default=256, help="leave out smaller frontal images")
    parser.add_argument("--min-second-share", type=float, default=MIN_SECOND_SHARE)
    parser.add_argument("--min-half-share", type=float, default=MIN_HALF_SHARE)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--details", type=Path, help="write one CSV row per image (shares, flagged)")
    parser.add_argument(
        "--through-pipeline", action="store_true", help="also run Pipeline.predict and count its warnings"
    )
    args = parser.parse_args()

    pipeline = Pipeline.from_preset(args.preset)
    if not pipeline.is_trained:
        print(f"warning: {args.preset} records no training; its masks (and these numbers) mean nothing")
    print(
        f"preset {args.preset}: {pipeline.segmenter.input_size} px segmenter, mask threshold "
        f"{pipeline.preprocessing.mask_threshold:g}; rule: second_share < {args.min_second_share:g} "
        f"or half_share < {args.min_half_share:g}"
    )
    details = []
    for group, paths in image_groups(args.data, args.every, args.min_size).items():
        shares, flagged, empty = [], 0, 0
        for path, mask in zip(paths, masks(pipeline, paths, args.batch_size)):
            second_share, half_share = mask_view_geometry(mask)
            lateral = looks_lateral(mask, args.min_second_share, args.min_half_share)
            flagged += lateral
            empty += not mask.any()
            shares.append((second_share, half_share))
            details.append((path.relative_to(args.data), group, second_share, half_share, lateral))
        shares = np.array(shares).reshape(-1, 2)
        p5, p50 = (np.percentile(shares, q, axis=0) if len(shares) else (np.nan, np.nan) for q in (5, 50))
        print(
            f"{group}: {flagged} of {len(paths)} flagged ({flagged / max(len(paths), 1):.1%}); "
            f"empty masks {empty}; second_share p5 {p5[0]:.3f} median {p50[0]:.3f}; "
            f"half_share p5 {p5[1]:.3f} median {p50[1]:.3f}"
        )
        if args.through_pipeline:
            by_pipeline, refused = pipeline_flags(pipeline, paths, args.batch_size)
            print(f"  through Pipeline.predict: {by_pipeline} flagged, {refused} refused for other reasons")
    if args.details:
        with open(args.details, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["file", "group", "second_share", "half_share", "flagged"])
            for file, group, second_share, half_share, flagged in details:
                writer.writerow([file, group, f"{second_share:.4f}", f"{half_share:.4f}", int(flagged)])
        print(f"per-image shares in {args.details}")


if __name__ == "__main__":
    main()

"""The light runtime against the Keras pipeline: throughput and cold start, side by side in one run.

    python benchmarks/benchmark_runtime.py [--preset covidcxr_lite] [--images 32] [--runs 3]

Exports the preset to ONNX and, where ai-edge-litert is installed and the backend is TensorFlow, to
LiteRT (in a temporary folder), then prints:
  - images/s of `Pipeline.predict` (Keras, this backend) and of `ExportedPipeline.predict` (ONNX
    Runtime, LiteRT) on the same decoded images at batch 1 and 16: the engines run in turn within each
    of --runs rounds (a shared machine drifts between blocks of one engine), medians, and each engine's
    ratio to Keras as the median (and range) of the rounds' ratios, with the matmul yardstick measured
    around every round and the load average;
  - cold start of `covidcxr predict IMAGE` on each path (median of --runs subprocesses).
Both paths share the same numpy steps (decode, segmenter resize, mask QC, crop): the difference is
only the model engine and what the process imports.
"""

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from benchmark_inference import MatmulYardstick, alternating_times, load_average, median_and_range, wall  # noqa: E402

BATCH = 16


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="covidcxr_lite")
    parser.add_argument("--images", type=int, default=32, help=f"a multiple of {BATCH}, so every engine sees full "
                        "batches (Keras pads a short one)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error(f"--runs {args.runs}: need at least one run to take a median of")
    if args.images < BATCH or args.images % BATCH:
        parser.error(f"--images {args.images}: use a multiple of {BATCH}")

    import importlib.util
    import os

    import keras

    from keras_covidcxr import Pipeline, load_image, sample_images
    from keras_covidcxr.models.pipeline.export import BACKENDS
    from keras_covidcxr.runtime import ExportedPipeline

    keras_pipeline = Pipeline.from_preset(args.preset)
    pipelines, folders = {"Keras": keras_pipeline}, {}
    formats = {"ONNX Runtime": "onnx"}
    if not importlib.util.find_spec("ai_edge_litert"):
        print("LiteRT left out: ai-edge-litert is not installed (the litert extra)")
    elif keras.backend.backend() not in BACKENDS["litert"]:
        print(f"LiteRT left out: Keras writes it from the {' or '.join(BACKENDS['litert'])} backend only")
    else:
        formats["LiteRT"] = "litert"
    with tempfile.TemporaryDirectory() as exports:
        for name, export_format in formats.items():
            folders[name] = Path(exports) / export_format
            keras_pipeline.export(folders[name], format=export_format)
            pipelines[name] = ExportedPipeline(folders[name])
        samples = [load_image(path) for path in sample_images()]
        images = [samples[i % len(samples)] for i in range(args.images)]
        yardstick = MatmulYardstick()
        print(f"preset {args.preset}; {args.images} decoded images per figure; {load_average()}")
        print(f"\n== throughput (images/s, median of {args.runs} rounds, engines in turn; x Keras: median "
              "(range) of the rounds' ratios)")
        print("          " + "".join(f"{name:>30}" for name in pipelines))
        for batch in (1, BATCH):
            times = {name: [] for name in pipelines}
            for _ in range(args.runs):
                round_times, _ = yardstick.around(lambda batch=batch: alternating_times(
                    {name: lambda p=p: p.predict(images, batch_size=batch) for name, p in pipelines.items()}, 1))
                for name, seconds in round_times.items():
                    times[name] += seconds
            cells = []
            for name in pipelines:
                ratios = [keras_s / s for keras_s, s in zip(times["Keras"], times[name])]
                cells.append(f"{args.images / statistics.median(times[name]):7.1f} {median_and_range(ratios)}")
            print(f"batch {batch:2d}  " + "".join(f"{cell:>30}" for cell in cells))
        print(yardstick.spread() + "; " + load_average())

        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        cli = [sys.executable, "-c", "import sys; from covidcxr_cli.app import main; sys.argv[0] = 'covidcxr'; main()"]
        sample = str(sample_images()[0])
        untrained = [] if keras_pipeline.is_trained else ["--allow-untrained"]
        commands = {"Keras": ["--preset", args.preset, *untrained],
                    **{name: ["--exported", str(f), *untrained] for name, f in folders.items()}}
        cold = {name: [] for name in commands}
        for _ in range(args.runs):  # in turn, as the throughput
            for name, options in commands.items():
                cold[name].append(wall(cli + ["predict", sample, *options], env))
        print(f"\n== cold start of `covidcxr predict` on one image (median of {args.runs}, in turn; target >= 1.5x "
              "faster): " + ", ".join(f"{name} {statistics.median(seconds):.2f} s "
                                      f"({statistics.median(cold['Keras']) / statistics.median(seconds):.1f}x)"
                                      for name, seconds in cold.items()))


if __name__ == "__main__":
    main()

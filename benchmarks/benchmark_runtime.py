"""The light runtime against the Keras pipeline: throughput and cold start, side by side in one run.

    python benchmarks/benchmark_runtime.py [--preset covidcxr_lite] [--images 32] [--runs 3]

Exports the preset to ONNX and, where ai-edge-litert is installed and the backend is TensorFlow, to
LiteRT (in a temporary folder), then prints:
  - images/s of `Pipeline.predict` (Keras, this backend) and of `ExportedPipeline.predict` (ONNX
    Runtime, LiteRT) on the same decoded images at batch 1 and 16, best of --runs, with the ratio to
    Keras, the matmul yardstick measured around each figure and the load average (a shared machine
    drifts);
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
from benchmark_inference import MatmulYardstick, best_time, load_average, wall  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="covidcxr_lite")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    import importlib.util
    import os

    import keras

    from keras_covidcxr import Pipeline, load_image, sample_images
    from keras_covidcxr.models.pipeline.export import BACKENDS
    from keras_covidcxr.runtime import ExportedPipeline

    keras_pipeline = Pipeline.from_preset(args.preset)
    pipelines, folders = {"Keras": keras_pipeline}, {}
    formats = {"ONNX Runtime": "onnx"}
    if importlib.util.find_spec("ai_edge_litert") and keras.backend.backend() in BACKENDS["litert"]:
        formats["LiteRT"] = "litert"
    for name, export_format in formats.items():
        folders[name] = Path(tempfile.mkdtemp()) / export_format
        keras_pipeline.export(folders[name], format=export_format)
        pipelines[name] = ExportedPipeline(folders[name])
    samples = [load_image(path) for path in sample_images()]
    images = [samples[i % len(samples)] for i in range(args.images)]
    yardstick = MatmulYardstick()
    print(f"preset {args.preset}; {args.images} decoded images per figure; {load_average()}")
    print("\n== throughput (images/s, best of runs; x Keras; matmul GFLOP/s around each figure)")
    print("          " + "".join(f"{name:>26}" for name in pipelines))
    for batch in (1, 16):
        rates = {}
        for name, pipeline in pipelines.items():
            seconds, peak = yardstick.around(
                lambda p=pipeline: best_time(lambda: p.predict(images, batch_size=batch), args.runs))
            rates[name] = (args.images / seconds, peak)
        cells = [f"{rate:7.1f} {rate / rates['Keras'][0]:5.2f}x ({peak:4.0f})" for rate, peak in rates.values()]
        print(f"batch {batch:2d}  " + "".join(f"{cell:>26}" for cell in cells))
    print(yardstick.spread() + "; " + load_average())

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    cli = [sys.executable, "-c", "import sys; from covidcxr_cli.app import main; sys.argv[0] = 'covidcxr'; main()"]
    sample = str(sample_images()[0])
    commands = {"Keras": ["--preset", args.preset], **{name: ["--exported", str(f)] for name, f in folders.items()}}
    cold = {name: statistics.median(wall(cli + ["predict", sample, *options], env) for _ in range(args.runs))
            for name, options in commands.items()}
    print(f"\n== cold start of `covidcxr predict` on one image (median of {args.runs}; target >= 1.5x faster): "
          + ", ".join(f"{name} {seconds:.2f} s ({cold['Keras'] / seconds:.1f}x)" for name, seconds in cold.items()))


if __name__ == "__main__":
    main()

"""The light runtime against the Keras pipeline: throughput and cold start, side by side in one run.

    python benchmarks/benchmark_runtime.py [--preset covidcxr_lite] [--images 32] [--runs 3]

Exports the preset to ONNX (in a temporary folder), then prints:
  - images/s of `Pipeline.predict` (Keras, this backend) and of `ExportedPipeline.predict` (ONNX
    Runtime) on the same decoded images at batch 1 and 16, best of --runs, each beside the matmul
    yardstick measured around it and the load average (a shared machine drifts);
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

    import os

    from keras_covidcxr import Pipeline, load_image, sample_images
    from keras_covidcxr.runtime import ExportedPipeline

    keras_pipeline = Pipeline.from_preset(args.preset)
    folder = Path(tempfile.mkdtemp()) / "onnx"
    keras_pipeline.export(folder, format="onnx")
    onnx_pipeline = ExportedPipeline(folder)
    samples = [load_image(path) for path in sample_images()]
    images = [samples[i % len(samples)] for i in range(args.images)]
    yardstick = MatmulYardstick()
    print(f"preset {args.preset}; {args.images} decoded images per figure; {load_average()}")
    print("\n== throughput (images/s, best of runs)   Keras          ONNX Runtime   ratio   (matmul GFLOP/s around)")
    for batch in (1, 16):
        rates = {}
        for name, pipeline in (("keras", keras_pipeline), ("onnx", onnx_pipeline)):
            seconds, peak = yardstick.around(
                lambda p=pipeline: best_time(lambda: p.predict(images, batch_size=batch), args.runs))
            rates[name] = (args.images / seconds, peak)
        print(f"batch {batch:2d}                                {rates['keras'][0]:6.1f}         "
              f"{rates['onnx'][0]:6.1f}        {rates['onnx'][0] / rates['keras'][0]:5.2f}x  "
              f"({rates['keras'][1]:.0f} / {rates['onnx'][1]:.0f})")
    print(yardstick.spread() + "; " + load_average())

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    cli = [sys.executable, "-c", "import sys; from covidcxr_cli.app import main; sys.argv[0] = 'covidcxr'; main()"]
    sample = str(sample_images()[0])
    keras_cold = statistics.median(wall(cli + ["predict", sample, "--preset", args.preset], env)
                                   for _ in range(args.runs))
    onnx_cold = statistics.median(wall(cli + ["predict", sample, "--exported", str(folder)], env)
                                  for _ in range(args.runs))
    print(f"\n== cold start of `covidcxr predict` on one image (median of {args.runs}): Keras {keras_cold:.2f} s, "
          f"ONNX Runtime {onnx_cold:.2f} s, {keras_cold / onnx_cold:.1f}x faster (target >= 1.5x)")


if __name__ == "__main__":
    main()

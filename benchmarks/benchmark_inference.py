"""Inference speed and memory of keras-covidcxr, every figure beside its baseline, in one run.

    python benchmarks/benchmark_inference.py                 # bundled preset + paper config
    python benchmarks/benchmark_inference.py --configs bundled --quick

Prints, per configuration (`bundled`: the trained preset shipped in the package, `covidcxr_lite`;
`paper`: the paper's ResUnet 256 + DenseNet-201 + ResNet-152 + VGG-19 with random weights; `small`:
the untrained small CPU configuration of examples/build_untrained_preset.py):
  - images/s of Pipeline.predict at batch 1, 8, 16 against a naive loop calling each model's
    model.predict once per image (what the field's reference scripts do), and the ratio;
  - achieved GFLOP/s (conv + dense FLOPs per image) as a fraction of this machine's float32 matmul
    rate, measured with the backend's matmul right before and right after each figure (best of
    several, at the size where its matmul plateaus), beside the load average: on a shared machine a
    peak measured once, minutes earlier, is no yardstick (it read 66 to 124 GFLOP/s across runs);
  - the share of predict's time in the numpy steps between the model calls (what one fused graph of all
    the models could at most save), on the 512 px sample and on it upsampled to clinical films' 2048 and
    3000 px: the steps at the film's own resolution grow with it;
  - Grad-CAM for all members against one ensemble forward, and predict(explain=True) against predict(),
    alternating, medians of 5 rounds;
and, once: cold start of `covidcxr --help`, `covidcxr presets` and `covidcxr predict` on one image
against a minimal script that imports the backend, loads the same preset and runs one forward pass;
peak resident memory of folder prediction over 20 and over 500 images.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from flops import count_flops  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BUILD_UNTRAINED = ROOT / "examples" / "build_untrained_preset.py"  # the source tree's, for --configs paper, small
FILM_SIDES = (512, 2048, 3000)  # the bundled sample's side, and clinical films' (upsampled from it)
CONFIGS, SECTIONS = ("bundled", "paper", "small"), ("speed", "cold", "memory")


def alternating_times(fns, rounds):
    """{name: [seconds per round]} of each of `fns` ({name: callable}), run in turn within every round (after
    one warm-up each), so that a drifting shared machine weighs on all of them alike."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def median_and_range(values):
    """"median (min-max)" of a list of numbers, two decimals."""
    return f"{np.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def best_time(fn, repeats):
    fn()  # warm-up (tracing, compilation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


class MatmulYardstick:
    """This machine's float32 matmul GFLOP/s, measured again around every workload figure.

    The size is picked once, among `sizes`, where the backend's matmul runs fastest (its plateau);
    each measurement is the best of `repeats`. Every measurement is kept, so the run can print
    the yardstick's spread, and each figure is compared with the larger of the two taken around it.
    """

    def __init__(self, sizes=(1024, 2048, 3072), repeats=3):
        self.repeats = repeats
        rates = {n: self._gflops(n) for n in sizes}
        self.size = max(rates, key=rates.get)
        self.samples = [rates[self.size]]

    def _gflops(self, n):
        import keras

        a = keras.random.normal((n, n), seed=1)
        b = keras.random.normal((n, n), seed=2)

        def run():
            keras.ops.convert_to_numpy(keras.ops.matmul(a, b)[0, 0])

        return 2 * n**3 / best_time(run, self.repeats) / 1e9

    def measure(self):
        self.samples.append(self._gflops(self.size))
        return self.samples[-1]

    def around(self, workload):
        """(workload(), the higher of the matmul rates measured just before and just after it)."""
        before = self.measure()
        result = workload()
        return result, max(before, self.measure())

    def spread(self):
        samples = sorted(self.samples)
        return (f"matmul yardstick {self.size}^2: median {samples[len(samples) // 2]:.1f} GFLOP/s, "
                f"min {samples[0]:.1f}, max {samples[-1]:.1f} over {len(samples)} measurements")


def load_average(label="load average "):
    return label + " ".join(f"{value:.2f}" for value in os.getloadavg())


def sample_film():
    """The bundled COVID-19 sample film (installed with the package, wherever this script runs from)."""
    from keras_covidcxr import sample_images

    return next(path for path in sample_images() if "covid" in path.name)


def build_preset(kind, folder):
    if kind == "bundled":
        from keras_covidcxr import DEFAULT_PRESET

        return DEFAULT_PRESET
    args = [sys.executable, str(BUILD_UNTRAINED), str(folder)]
    subprocess.run(args + (["--paper"] if kind == "paper" else []), check=True, capture_output=True)
    return folder


def bench_config(kind, preset, yardstick, batches, repeats):
    from keras_covidcxr import GradCAM, Pipeline
    from keras_covidcxr.io.image_loader import load_image

    pipeline = Pipeline.from_preset(preset)
    image = load_image(sample_film()).pixels
    segmenter_passes = 2 if pipeline.input_contract.check_inverted else 1  # the film, then its negative
    flops = segmenter_passes * count_flops(pipeline.segmenter) + sum(count_flops(m) for m in pipeline.ensemble.members)
    seg_size, cls_size = pipeline.segmenter.input_size, pipeline.classifier_size
    channels = pipeline.classifier_channels
    print(f"\n== {kind}: {flops / 1e9:.1f} GFLOP per image (conv + dense; the segmenter {segmenter_passes}x), "
          f"{sum(p for p in pipeline.metadata['parameter_counts'].values()) / 1e6:.1f} M parameters")

    # The naive loop gets its own copy of the models: Keras traces `predict` (an iterator) and
    # `predict_on_batch` (a batch) as different inputs, so sharing one model retraces on every switch.
    naive_copy = Pipeline.from_preset(preset)

    def naive(n):
        for _ in range(n * segmenter_passes):
            naive_copy.segmenter.predict(np.zeros((1, seg_size, seg_size, 1), "float32"), verbose=0)
        for _ in range(n):
            for member in naive_copy.ensemble.members:
                member.predict(np.zeros((1, cls_size, cls_size, channels), "float32"), verbose=0)

    naive_seconds, naive_peak = yardstick.around(lambda: best_time(lambda: naive(4), 1))
    naive_rate = 4 / naive_seconds
    print(f"naive loop: {naive_rate:.2f} img/s, {naive_rate * flops / 1e9 / naive_peak:.1%} of the matmul rate "
          f"around it ({naive_peak:.1f} GFLOP/s); {load_average()}")
    print(f"{'batch':>6} {'pipeline img/s':>15} {'naive img/s':>12} {'ratio':>6} {'GFLOP/s':>8} {'matmul':>8}"
          f" {'of matmul':>10}  load (1, 5, 15 min)")
    for batch in batches:
        images = [image] * batch
        seconds, peak = yardstick.around(
            lambda images=images, batch=batch: best_time(lambda: pipeline.predict(images, batch_size=batch), repeats)
        )
        rate = batch / seconds
        print(f"{batch:>6} {rate:>15.2f} {naive_rate:>12.2f} {rate / naive_rate:>6.2f}"
              f" {rate * flops / 1e9:>8.1f} {peak:>8.1f} {rate * flops / 1e9 / peak:>10.1%}  {load_average('')}")

    batch = batches[-1]
    print(f"where predict's time goes at batch {batch} (median of 3; the numpy steps between the model calls: "
          "resizing, mask QC, crop, rules; a fused graph of all the models could at most remove them):")
    from PIL import Image

    for side in FILM_SIDES:
        film = image if side == image.shape[0] else np.clip(np.asarray(
            Image.fromarray(image).resize((side, side), Image.BICUBIC), "float32"), 0, 1)
        shares = [time_in_model_calls(pipeline, [film] * batch, batch) for _ in range(3)]
        seconds = [total for total, _ in shares]
        numpy_share = [1 - sum(spent.values()) / total for total, spent in shares]
        print(f"  {side}x{side} px film: {np.median(seconds) / batch * 1e3:.0f} ms per image, numpy steps "
              f"{np.median(numpy_share):.0%} ({min(numpy_share):.0%}-{max(numpy_share):.0%}), so at most "
              f"{1 / (1 - np.median(numpy_share)):.2f}x from a fused graph")

    x = np.random.default_rng(0).uniform(size=(1, cls_size, cls_size, channels)).astype("float32")
    grad_cam = GradCAM(pipeline.ensemble)
    times = alternating_times({"forward": lambda: pipeline.ensemble.predict_on_batch(x),
                               "grad_cam": lambda: grad_cam(x, 1),
                               "predict": lambda: pipeline.predict([image]),
                               "explain": lambda: pipeline.predict([image], explain=True)}, rounds=5)
    ratio = [g / f for g, f in zip(times["grad_cam"], times["forward"])]
    cost = [e / p for e, p in zip(times["explain"], times["predict"])]
    print(f"Grad-CAM of all members {np.median(times['grad_cam']) * 1e3:.0f} ms vs one ensemble forward "
          f"{np.median(times['forward']) * 1e3:.0f} ms: ratio {median_and_range(ratio)}; predict(explain=True) vs "
          f"predict() on the {image.shape[1]} px film, batch 1: {median_and_range(cost)} (medians of 5 rounds, "
          "alternating)")


def time_in_model_calls(pipeline, images, batch):
    """(seconds of one warm `predict`, {"segmenter": s, "ensemble": s} spent inside the model calls)."""
    spent = {}

    def timed(name, call):
        def wrapper(*args):
            start = time.perf_counter()
            outputs = call(*args)
            spent[name] += time.perf_counter() - start
            return outputs
        return wrapper

    pipeline._segment = timed("segmenter", pipeline._segment)  # instance attributes shadow the methods
    pipeline._run_ensemble = timed("ensemble", pipeline._run_ensemble)
    try:
        totals = []
        for _ in range(2):  # the first call warms up
            spent.update(segmenter=0.0, ensemble=0.0)
            start = time.perf_counter()
            pipeline.predict(images, batch_size=batch)
            totals.append(time.perf_counter() - start)
    finally:
        del pipeline._segment, pipeline._run_ensemble
    return totals[-1], spent


def wall(args, env=None):
    """Seconds a command takes; a failing one stops the benchmark with its own last lines, not a traceback."""
    start = time.perf_counter()
    run = subprocess.run(args, capture_output=True, env=env, text=True)
    if run.returncode:
        sys.exit(f"{' '.join(args[3:])} failed (exit {run.returncode}): {run.stderr.strip()[-500:]}")
    return time.perf_counter() - start


def bench_cold_start(preset):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    cli = [sys.executable, "-c", "import sys; from covidcxr_cli.app import main; sys.argv[0] = 'covidcxr'; main()"]
    minimal = (
        "import numpy as np\n"
        "from keras_covidcxr import Pipeline\n"
        f"p = Pipeline.from_preset({str(preset)!r})\n"
        "s = p.segmenter.input_size; c = p.classifier_size; k = p.classifier_channels\n"
        "p.segmenter.predict_on_batch(np.zeros((1, s, s, 1), 'float32'))\n"
        "p.ensemble.predict_on_batch(np.zeros((1, c, c, k), 'float32'))\n"
    )
    print("\n== cold start (wall seconds, best of 2)")
    help_s = min(wall(cli + ["--help"], env) for _ in range(2))
    presets_s = min(wall(cli + ["presets"], env) for _ in range(2))
    predict_s = min(wall(cli + ["predict", str(sample_film()), "--preset", str(preset), "--allow-untrained"], env) for _ in range(2))
    minimal_s = min(wall([sys.executable, "-c", minimal], env) for _ in range(2))
    print(f"covidcxr --help {help_s:.2f} s; covidcxr presets {presets_s:.2f} s (target < 0.3 s)")
    print(f"covidcxr predict, one image {predict_s:.2f} s vs minimal script {minimal_s:.2f} s:"
          f" ratio {predict_s / minimal_s:.2f} (target <= 1.5)")


def peak_memory_mb(args, env):
    """Peak resident memory of a child process, from its VmHWM (its own high-water mark).

    getrusage/wait4's ru_maxrss would not do: Linux carries the parent's RSS at fork into the child's maxrss.
    """
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    peak_kb = 0
    while process.poll() is None:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text()
            peak_kb = max(peak_kb, int(status.split("VmHWM:")[1].split()[0]))
        except (OSError, IndexError):
            pass
        time.sleep(0.1)
    return peak_kb / 1024, process.returncode


def bench_memory(preset, counts=(20, 500)):
    from PIL import Image

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    cli = [sys.executable, "-c", "import sys; from covidcxr_cli.app import main; sys.argv[0] = 'covidcxr'; main()"]
    print("\n== peak resident memory of folder prediction")
    film = np.asarray(Image.open(sample_film()))
    peaks = {}
    for count in counts:
        with tempfile.TemporaryDirectory() as folder:
            for i in range(count):
                Image.fromarray(np.roll(film, i, axis=1)).save(Path(folder) / f"{i:04d}.png")
            out = Path(folder) / "results" / "results.csv"
            out.parent.mkdir()
            peaks[count], code = peak_memory_mb(
                cli + ["predict", folder, "--preset", str(preset), "--allow-untrained", "--out", str(out)], env
            )
            print(f"{count:>4} images: peak {peaks[count]:.0f} MB (exit code {code})")
    print(f"ratio {peaks[counts[1]] / peaks[counts[0]]:.2f} (target <= 1.15)")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="bundled,paper", help="any of bundled, paper, small")
    parser.add_argument("--quick", action="store_true", help="batches 1 and 8, one repeat, no memory run")
    parser.add_argument("--sections", default="speed,cold,memory", help="any of speed, cold, memory")
    args = parser.parse_args()
    for option, given, allowed in (("--configs", args.configs, CONFIGS), ("--sections", args.sections, SECTIONS)):
        unknown = sorted(set(given.split(",")) - set(allowed))
        if unknown:
            parser.error(f"{option}: unknown {', '.join(unknown)}; choose from {', '.join(allowed)}")
    if set(args.configs.split(",")) - {"bundled"} and not BUILD_UNTRAINED.is_file():
        parser.error(f"--configs paper and small build their presets with {BUILD_UNTRAINED}: run this script from "
                     "a checkout of the source, or with --configs bundled")
    import keras

    batches, repeats = ((1, 8), 1) if args.quick else ((1, 8, 16), 2)
    print(f"keras {keras.__version__}, backend {keras.backend.backend()}, {os.cpu_count()} CPU cores")
    yardstick = MatmulYardstick()
    print(f"float32 matmul yardstick: {yardstick.size}^2 ({keras.backend.backend()}), where its rate plateaus; "
          f"{load_average()}")
    sections = args.sections.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        presets = {kind: build_preset(kind, Path(tmp) / kind) for kind in args.configs.split(",")}
        if "speed" in sections:
            for kind, preset in presets.items():
                bench_config(kind, preset, yardstick, batches, repeats)
            print(yardstick.spread())
        cli_preset = presets.get("bundled") or presets.get("small") or next(iter(presets.values()))
        if "cold" in sections:
            bench_cold_start(cli_preset)
        if "memory" in sections and not args.quick:
            bench_memory(cli_preset)


if __name__ == "__main__":
    main()

"""Wall time of `covidcxr presets` and `covidcxr --help`, beside `python -c pass`, in one run.

    python benchmarks/benchmark_cli_startup.py            # 15 runs of each
    python benchmarks/benchmark_cli_startup.py --runs 30

Each command runs in a fresh subprocess, the three interleaved so that a busy machine slows
them alike; prints the median and the spread (min, max) in seconds, and the load average. The issue's
target: both commands under 0.3 s, judged on the best run (the one the machine disturbed least: on a
shared machine the median moves by 0.1-0.2 s with the load). `python -c pass` is the floor no Python CLI
can beat.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_S = 0.3


def covidcxr_command():
    """The installed `covidcxr` script beside this Python, else the same entry point through -c."""
    script = Path(sys.executable).with_name("covidcxr")
    if script.is_file():
        return [str(script)]
    found = shutil.which("covidcxr")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from covidcxr_cli.app import main; sys.argv[0] = 'covidcxr'; main()"]


def wall_seconds(args, env):
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="runs of each command")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error(f"--runs {args.runs}: need at least one run to take a median of")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    cli = covidcxr_command()
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "covidcxr --help": [*cli, "--help"],
        "covidcxr presets": [*cli, "presets"],
    }
    for command in commands.values():  # warm the file cache and .pyc files
        wall_seconds(command, env)
    times = {name: [] for name in commands}
    for _ in range(args.runs):
        for name, command in commands.items():
            times[name].append(wall_seconds(command, env))
    load = " ".join(f"{value:.2f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    print(f"== CLI start-up, wall seconds over {args.runs} runs each (target < {TARGET_S} s on the best run; "
          f"load average {load})")
    floor = statistics.median(times["python -c pass"])
    for name, values in times.items():
        median = statistics.median(values)
        verdict = "" if name == "python -c pass" else ("  ok" if min(values) < TARGET_S else "  OVER TARGET")
        print(
            f"{name:18s} median {median:.3f}  min {min(values):.3f}  max {max(values):.3f}  "
            f"({median - floor:+.3f} over python -c pass){verdict}"
        )


if __name__ == "__main__":
    main()

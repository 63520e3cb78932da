"""Speed and memory of the measured stage on many pairs (the goal: 1,000,000 pairs in under 2 minutes
and 4 GB on a 2-core machine).

Run:  python benchmarks/bench_measured.py [--pairs 1000000]

The pairs repeat the bundled demo data's responses. A fresh process runs the measured stage on a run
folder holding them (batches of 100,000 pairs, one spawned worker per core) and reports the stage's
time, its own peak resident memory, and the largest worker's.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGE = """
import resource, sys, time
from preflens.pipeline import RunContext, Runner
from preflens.stages import measured_stage
with Runner(RunContext(sys.argv[1])) as runner:
    runner.context.pairs  # read before the clock: the stage alone is timed
    start = time.perf_counter()
    runner.run(measured_stage(["all"]))
    seconds = time.perf_counter() - start
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2
workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 ** 2
print(f"{seconds:.1f} {own:.2f} {workers:.2f}")
"""


def main() -> None:
    import os

    import pandas as pd

    from preflens.demo import demo_data_path
    from preflens.measured import CATALOGUE

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=1_000_000)
    args = parser.parse_args()
    demo = pd.read_json(demo_data_path(), lines=True)
    repeats = -(-args.pairs // len(demo))
    pairs = pd.concat([demo[["domain", "prompt", "response_a", "response_b"]]] * repeats,
                      ignore_index=True).iloc[:args.pairs]
    pairs.insert(0, "id", [f"p{i}" for i in range(len(pairs))])
    words = pairs["response_a"].str.split().str.len()
    folder = Path(tempfile.mkdtemp(prefix="preflens-bench-measured-"))
    pairs.to_parquet(folder / "pairs.parquet", index=False)
    print(f"{len(pairs):,} pairs, {len(CATALOGUE)} measured concepts, median {int(words.median())} words a "
          f"response, {os.cpu_count()} cores")
    sample = pairs.iloc[:20_000]
    del pairs
    out = subprocess.run([sys.executable, "-c", STAGE, str(folder)], capture_output=True, text=True, check=True)
    seconds, own, workers = (float(v) for v in out.stdout.split())
    print(f"measured stage: {seconds:.1f} s ({args.pairs / seconds:,.0f} pairs/s); peak memory {own:.2f} GB in "
          f"the stage's process, {workers:.2f} GB in the largest worker")
    per_concept = {}
    for concept in CATALOGUE:  # where the time goes, on a 20,000-pair sample, one core
        start = time.perf_counter()
        concept.pair_feature(sample["response_a"], sample["response_b"])
        per_concept[concept.name] = time.perf_counter() - start
    total = sum(per_concept.values())
    print("time per concept (share): " + ", ".join(
        f"{name} {100 * t / total:.0f}%" for name, t in sorted(per_concept.items(), key=lambda kv: -kv[1])))


if __name__ == "__main__":
    main()

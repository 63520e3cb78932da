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
import os, sys, threading, time
from pathlib import Path
from preflens.pipeline import RunContext, Runner
from preflens.stages import measured_stage

def status(pid, key):  # kB -> GB; VmHWM is a process's peak since it started its own program
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:  # gone meanwhile
        return 0.0
    return next((int(line.split()[1]) for line in lines if line.startswith(key + ":")), 0) / 1024 ** 2

def parent(pid):
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    return next((line.split()[1] for line in lines if line.startswith("PPid:")), None)

workers = {}
def watch():  # the spawned workers' own peaks, read while they live
    me = str(os.getpid())
    while True:
        for pid in (p.name for p in Path("/proc").iterdir() if p.name.isdigit()):
            if parent(pid) == me:
                workers[pid] = max(workers.get(pid, 0.0), status(pid, "VmHWM"))
        time.sleep(0.1)

if __name__ == "__main__":
    with Runner(RunContext(sys.argv[1])) as runner:
        runner.context.pairs  # read before the clock: the stage alone is timed
        loaded = status("self", "VmRSS")
        threading.Thread(target=watch, daemon=True).start()
        start = time.perf_counter()
        runner.run(measured_stage(["all"]))
        seconds = time.perf_counter() - start
    print(f"{seconds:.1f} {status('self', 'VmHWM'):.2f} {max(workers.values(), default=0.0):.2f} {loaded:.2f}")
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
    seconds, own, workers, loaded = (float(v) for v in out.stdout.split())
    print(f"measured stage: {seconds:.1f} s ({args.pairs / seconds:,.0f} pairs/s); peak memory {own:.2f} GB in "
          f"the stage's process, of which {loaded:.2f} GB is the pairs the run holds before the stage starts; "
          f"{workers:.2f} GB in the largest worker (peaks read from /proc VmHWM)")
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

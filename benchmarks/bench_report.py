"""How long the report takes, and how big it gets, as the number of pairs grows.

Builds run folders from demo data with its true features (no LLM), fits HMDR, runs the evaluation at
2 splits, then times ``preflens.report.write_report``. Prints a table; asserts nothing.

    python benchmarks/bench_report.py                 # 1,000 / 10,000 / 100,000 pairs
    python benchmarks/bench_report.py --pairs 400
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from click.testing import CliRunner

from preflens.cli import cli
from preflens.report import write_report


def run(*args: object) -> None:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    if result.exit_code != 0:
        raise SystemExit(result.output)


def one(pairs: int, folder: Path) -> dict[str, float]:
    data, target = folder / "data", folder / "run"
    start = time.perf_counter()
    run("demo-data", "--out", data, "--pairs-per-domain", pairs // 4, "--oracle")
    run("validate", data / "pairs.jsonl", "--out", target)
    shutil.copy(data / "concepts.json", target / "concepts.json")
    shutil.copy(data / "oracle_features.parquet", target / "features.parquet")
    run("fit", target)
    run("evaluate", target, "--splits", 2, "--method", "HMDR", "--method", "Length")
    prepared = time.perf_counter() - start
    start = time.perf_counter()
    files = write_report(target, truth=None)
    seconds = time.perf_counter() - start
    return {"pairs": pairs, "prepare_s": prepared, "report_s": seconds,
            "html_mb": files.html.stat().st_size / 1e6, "json_mb": files.data.stat().st_size / 1e6,
            "viewer_pairs": len(files.content["pairs"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    args = parser.parse_args()
    print("| pairs | report | report.html | report.json | pairs in the viewer | (setup: data, fit, evaluate) |")
    print("|---|---|---|---|---|---|")
    for pairs in args.pairs:
        with tempfile.TemporaryDirectory() as folder:
            r = one(pairs, Path(folder))
        print(f"| {r['pairs']:,} | {r['report_s']:.1f} s | {r['html_mb']:.1f} MB | {r['json_mb']:.1f} MB | "
              f"{r['viewer_pairs']:,} | {r['prepare_s']:.0f} s |", flush=True)


if __name__ == "__main__":
    main()

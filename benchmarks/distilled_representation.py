"""Distilled representation against full LLM labels, on the bundled demo data with the embedded model.

Runs ``preflens demo`` with the demo's concept list twice, with ``--labeler llm`` (every
(response, concept) cell asked) and ``--labeler distilled`` (a sample asked, the rest predicted),
and prints: LLM answers used, agreement of the distilled pair features with the full LLM ones
where the full LLM feature differs from zero (|P_A - P_B| >= 0.2), the correlation with the LLM on
the predicted cells, and the weight recovery of both runs.

Both runs share the LLM cache. The distilled run goes first (it takes answers already in the cache
for free, and after the llm run every answer would be); the llm run's cells that the distilled run
asked are then cache hits: compare the *answers used* (the calls a fresh cache would make), not wall
time.

    python benchmarks/distilled_representation.py --out /tmp/distill-bench [--pairs-per-domain 30]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd


DIFFERS = 0.2  # the report's "fires" threshold


def run_demo(folder: Path, labeler: str, pairs_per_domain: int) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "preflens", "demo", "--out", str(folder), "--pairs-per-domain",
                    str(pairs_per_domain), "--given-concepts", "--splits", "0", "--bootstrap", "0", "--labeler", labeler],
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--pairs-per-domain", type=int, default=30)
    args = parser.parse_args()
    seconds = {}
    # distilled first: it uses answers already in the cache for free, and after the llm run every answer is
    for labeler in ("distilled", "llm"):
        seconds[labeler] = run_demo(args.out / labeler, labeler, args.pairs_per_domain)
    full = pd.read_parquet(args.out / "llm" / "representation_details.parquet")
    distilled = pd.read_parquet(args.out / "distilled" / "representation_details.parquet")
    keys = ["id", "part", "concept"]
    both = full.merge(distilled, on=keys, suffixes=("_llm", "_distilled"))
    predicted = both[both["source_distilled"] == "predicted"]
    response_correlation = float(np.corrcoef(predicted["value_llm"], predicted["value_distilled"])[0, 1])

    wide = both.pivot_table(index=["id", "concept"], columns="part", values=["value_llm", "value_distilled"])
    differs = (wide[("value_llm", "a")] - wide[("value_llm", "b")]).abs() >= DIFFERS
    full_sign = np.sign(wide[("value_llm", "a")] - wide[("value_llm", "b")])[differs]
    distilled_sign = np.sign(wide[("value_distilled", "a")] - wide[("value_distilled", "b")])[differs]
    feature_agreement = float(np.mean(full_sign == distilled_sign))
    per_concept = (pd.DataFrame({"concept": full_sign.index.get_level_values("concept"),
                                 "agree": (full_sign == distilled_sign).to_numpy()})
                   .groupby("concept")["agree"].agg(["mean", "size"]))

    asked = int((distilled["source"] == "llm").sum())
    total = len(distilled)
    summary = json.loads((args.out / "distilled" / "representation.json").read_text())
    print(f"demo data: {args.pairs_per_domain * 4} pairs, {total} (response, concept) cells")
    print(f"LLM answers used: llm {len(full)}, distilled {asked} ({total / max(asked, 1):.1f}x fewer)")
    print(f"pair features where the full LLM's differ from zero (|P_A - P_B| >= {DIFFERS}; {int(differs.sum())} cells): "
          f"distilled has the same sign in {feature_agreement:.1%}")
    print(f"correlation with the LLM's P(Yes) on the {len(predicted)} predicted cells: {response_correlation:.2f}")
    print("per concept (same sign where the LLM labels differ; cells):")
    for concept, row in per_concept.iterrows():
        fallback = next((d["fallback"] for d in summary.get("distillation", []) if d["concept"] == concept), None)
        print(f"  {concept:24} {row['mean']:.0%} of {int(row['size'])}" + (f"  (fell back: {fallback})" if fallback else ""))
    for labeler in ("llm", "distilled"):
        recovery = json.loads((args.out / labeler / "recovery.json").read_text())
        w = recovery["weights"]
        print(f"{labeler:9}: {seconds[labeler]:.0f} s; sign accuracy vs planted {recovery['sign_accuracy']:.1%}; "
              f"weights non-zero {w['fitted_nonzero']} of {w['cells']}, support recall "
              f"{w['recall'] or 0:.0%}, precision {w['precision'] or 0:.0%}, sign right on "
              f"{w['sign_agreement'] or 0:.0%} of {w['both_nonzero']}")


if __name__ == "__main__":
    main()

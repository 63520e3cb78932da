"""The embedded model as an LLM judge on the demo data, and how well HMDR explains its labels.

Run:  python benchmarks/bench_judge.py [--pairs-per-domain 10] [--shots 2 --ensemble 3 --few-shot-pairs 4]

Reports the judge's tie rate, position bias and accuracy against the planted labels (ties count 0.5),
then the cross-validated accuracy of HMDR at explaining (a) the planted labels and (b) the judge's
labels, on the demo's true concept features (so that representation errors do not enter).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from preflens import load_pairs
from preflens.data import PairDataset
from preflens.demo import demo_concepts, demo_data_path, load_truth, oracle_features
from preflens.evaluate import label_accuracy
from preflens.fit import FitSettings, fit_mechanism, model_inputs
from preflens.judge import JudgeSettings, judge
from preflens.llm import LLMCache, LLMClient, get_llm


def explain_accuracy(pairs: PairDataset, labels, truth) -> tuple[float, int]:
    inputs = model_inputs(pairs, oracle_features(truth), demo_concepts(truth))
    result = fit_mechanism(inputs, labels, "m", FitSettings(cv=5))
    return max(r["mean_accuracy"] for r in result.cv_results), result.n_pairs


def report(name: str, pairs: PairDataset, result, truth, seconds: float, calls: int) -> None:
    planted = pairs.labels("human")
    accuracy = label_accuracy(list(result.labels), list(planted))
    print(f"{name}: {len(pairs)} pairs, {calls} calls, {seconds:.0f} s; tie rate {result.tie_rate():.1%}, "
          f"first-shown response picked {result.position_bias():.1%}, accuracy against the planted labels "
          f"{accuracy:.1%} (a tie counts 0.5)")
    human_cv, n_human = explain_accuracy(pairs, planted, truth)
    decided = result.labels.isin(["a", "b"])
    if decided.sum() >= 10 and result.labels[decided].nunique() == 2:
        judge_cv, n_judge = explain_accuracy(pairs, result.labels, truth)
        judge_text = f"explaining the judge's labels {judge_cv:.1%} ({n_judge} non-tie pairs)"
    else:
        judge_text = f"the judge's labels cannot be explained ({int(decided.sum())} non-tie pairs)"
    print(f"  HMDR 5-fold CV accuracy on true features: explaining the planted labels {human_cv:.1%} "
          f"({n_human} pairs); {judge_text}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs-per-domain", type=int, default=10)
    parser.add_argument("--shots", type=int, default=2)
    parser.add_argument("--ensemble", type=int, default=3)
    parser.add_argument("--few-shot-pairs", type=int, default=4, help="pairs per domain for the few-shot run")
    parser.add_argument("--llm", default="local")
    parser.add_argument("--cache")
    args = parser.parse_args()
    everything = load_pairs(demo_data_path())
    truth = load_truth(demo_data_path())
    client = LLMClient(get_llm(args.llm), cache=LLMCache(args.cache or Path(tempfile.mkdtemp()) / "cache.sqlite"))

    subset = PairDataset(everything.frame.groupby("domain", sort=False).head(args.pairs_per_domain).reset_index(drop=True))
    start, calls = time.perf_counter(), client.stats.calls
    zero = judge(subset, client, JudgeSettings())
    report("zero-shot", subset, zero, truth, time.perf_counter() - start, client.stats.calls - calls)
    start, calls = time.perf_counter(), client.stats.calls
    calibrated = judge(subset, client, JudgeSettings(calibrated=True))  # the same calls, read differently
    report("zero-shot, calibrated", subset, calibrated, truth, time.perf_counter() - start, client.stats.calls - calls)

    if args.shots:
        few_pairs = PairDataset(everything.frame.groupby("domain", sort=False).head(args.few_shot_pairs)
                                .reset_index(drop=True))
        start, calls = time.perf_counter(), client.stats.calls
        # demonstrations come from all demo pairs' planted labels, never the pair being judged
        few = judge(few_pairs, client, JudgeSettings(shots=args.shots, ensemble=args.ensemble),
                    demonstrations=everything)
        report(f"{args.shots}-shot x {args.ensemble}", few_pairs, few, truth, time.perf_counter() - start,
               client.stats.calls - calls)
        few_calibrated = judge(few_pairs, client, JudgeSettings(shots=args.shots, ensemble=args.ensemble,
                                                                calibrated=True), demonstrations=everything)
        report(f"{args.shots}-shot x {args.ensemble}, calibrated", few_pairs, few_calibrated, truth, 0.0, 0)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()

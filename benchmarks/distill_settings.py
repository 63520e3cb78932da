"""Distilled representation's settings, replayed against full LLM labels, over several random seeds.

Takes a run folder represented with ``--labeler llm`` (Presence-rep: every (response, concept) cell
asked) whose answers are in the LLM cache, and runs the distilled labeler on the same pairs and
concepts with each setting and random seed. Every answer it asks for is a cache hit (the same
request as the full run's), so this makes no LLM call and takes seconds per run. For each run it
prints the LLM answers used (a fresh cache's calls), the distinct responses read (what a local
runtime pays most for: each response's tokens once, then about 0.3 s per concept), the agreement of
the pair features with the full LLM ones where those differ from zero (|P_A - P_B| >= 0.2), the
correlation with the LLM's P(Yes) on the predicted cells, and the concepts that fell back.

    python benchmarks/distilled_representation.py --out /tmp/distill-bench   # makes /tmp/distill-bench/llm
    python benchmarks/distill_settings.py /tmp/distill-bench/llm --seeds 5 \
        --setting '{}' --setting '{"budget_share": 0.15}'
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from preflens.concepts import ConceptSet
from preflens.distill import DistillSettings, distill_values, response_features
from preflens.llm import LLMClient
from preflens.llm.cache import LLMCache
from preflens.llm.registry import get_llm

from distilled_representation import DIFFERS  # noqa: E402  (this folder is on the path when run as a script)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a run folder represented with --labeler llm")
    parser.add_argument("--cache", type=Path, help="the LLM cache of that run (default: preflens's default cache)")
    parser.add_argument("--llm", default="local", help="the LLM of that run (its answers are looked up by it)")
    parser.add_argument("--seeds", type=int, default=5, help="random seeds per setting")
    parser.add_argument("--setting", action="append", default=[],
                        help="DistillSettings fields as JSON (repeatable; default: the defaults)")
    args = parser.parse_args()

    pairs = pd.read_parquet(args.run / "pairs.parquet")
    concepts = ConceptSet.load(args.run / "concepts.json")
    full = pd.read_parquet(args.run / "representation_details.parquet")
    full_value = {(r.id, r.part, r.concept): r.value for r in full.itertuples(index=False)}
    n = len(pairs)
    texts = [str(t) for t in pairs["response_a"]] + [str(t) for t in pairs["response_b"]]
    items = [f"{i}:a" for i in pairs["id"]] + [f"{i}:b" for i in pairs["id"]]
    domains = np.array(list(pairs["domain"]) * 2, dtype=object)
    prompts = [str(p) for p in pairs["prompt"]] * 2
    features = response_features(texts)
    cache = LLMCache(args.cache) if args.cache else LLMCache()
    client = LLMClient(get_llm(args.llm), cache=cache)
    cells = sum(len([c for c in concepts.concepts if c.belongs_to(str(d))]) for d in domains)
    print(f"{n} pairs, {len(concepts.concepts)} concepts, {cells} (response, concept) cells; "
          f"agreement on the pair features where the full LLM's differ by >= {DIFFERS}")
    print(f"{'setting':42} {'seed':>4} {'answers':>7} {'fewer':>6} {'responses':>9} {'agree':>6} {'cells':>5} "
          f"{'r pred':>6}  fell back")
    for text in args.setting or ["{}"]:
        fields = json.loads(text)
        for seed in range(args.seeds):
            # every cell is in the cache here: none may count as already paid for
            settings = DistillSettings(**{**fields, "random_state": seed, "use_cached": False})
            before = client.stats.calls
            frame, summaries = client.run(distill_values(texts, items, domains, concepts, client, settings,
                                                         features=features, prompts=prompts))
            if client.stats.calls != before:
                print(f"  warning: {client.stats.calls - before} answers were not in the cache (asked the LLM)")
            value = {(int(r.response), r.concept): (r.value, r.source) for r in frame.itertuples(index=False)}
            asked = sum(source == "llm" for _, source in value.values())
            responses = len({i for (i, _), (_, source) in value.items() if source == "llm"})
            agree, total, predicted, truth = 0, 0, [], []
            for (i, name), (v, source) in value.items():
                pid, part = pairs["id"].iloc[i % n], "a" if i < n else "b"
                if source == "predicted":
                    predicted.append(v)
                    truth.append(full_value[(pid, part, name)])
                if i < n:
                    fa, fb = full_value[(pid, "a", name)], full_value[(pid, "b", name)]
                    if abs(fa - fb) >= DIFFERS:
                        total += 1
                        agree += np.sign(fa - fb) == np.sign(v - value[(n + i, name)][0])
            r = float(np.corrcoef(predicted, truth)[0, 1]) if len(predicted) > 2 else float("nan")
            fell = [s.concept for s in summaries if s.fallback]
            print(f"{json.dumps(fields)[:42]:42} {seed:>4} {asked:>7} {cells / asked:>5.2f}x {responses:>9} "
                  f"{agree / max(total, 1):>6.1%} {total:>5} {r:>6.2f}  {', '.join(fell) or '-'}")


if __name__ == "__main__":
    main()

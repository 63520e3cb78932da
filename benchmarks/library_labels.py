"""Can the embedded model measure a library behaviour? Its presence answers on every demo response,
against the planted concepts.

For each named entry of the discovery library (``preflens/library/concepts.yaml``), asks the LLM the
representation's presence question on all 240 responses of the bundled demo data, and prints the
correlation of logit P(Yes) with each planted concept's presence, per response, over the responses of
that concept's domains (the best three). This is the ceiling of discovery from evidence for a planted
concept: a name the model cannot measure is rejected by verification, whatever evidence it was chosen for.

    python benchmarks/library_labels.py "Repetitive filler" "Cites sources" "Cost estimate" --cache FILE

With the embedded model on 2 cores: about 2 s to read a response the first time, then about 0.3 s per entry.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from preflens import load_pairs
from preflens.demo import demo_data_path, llm_concepts, load_truth
from preflens.discover_evidence import library
from preflens.distill import logit
from preflens.llm import LLMCache, LLMClient, get_llm
from preflens.represent import presence_probability, presence_request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("entries", nargs="+", help="library entry names")
    parser.add_argument("--llm", default="local")
    parser.add_argument("--cache", help="LLM cache file (default: preflens's default cache)")
    args = parser.parse_args()
    entries = {c.name: c for c in library()}
    unknown = [name for name in args.entries if name not in entries]
    if unknown:
        parser.error(f"not in the library: {', '.join(unknown)}; choose from: {', '.join(entries)}")
    pairs = load_pairs(demo_data_path()).frame
    truth = load_truth(demo_data_path())
    texts = [str(t) for t in pairs["response_a"]] + [str(t) for t in pairs["response_b"]]
    items = [f"{i}:a" for i in pairs["id"]] + [f"{i}:b" for i in pairs["id"]]
    domains = np.array(list(pairs["domain"]) * 2, dtype=object)
    client = LLMClient(get_llm(args.llm), cache=LLMCache(args.cache) if args.cache else LLMCache())
    # response-major, so that a local runtime reads each response once for all entries
    cells = [(i, name) for i in range(len(texts)) for name in args.entries]
    start = time.perf_counter()
    answers = client.run(client.amap([presence_request(entries[name], texts[i], items[i]) for i, name in cells]))
    seconds = time.perf_counter() - start
    values = {name: np.full(len(texts), np.nan) for name in args.entries}
    for (i, name), answer in zip(cells, answers, strict=True):
        values[name][i] = presence_probability(answer)
    print(f"{len(cells)} presence answers ({client.stats.calls} LLM calls, {client.stats.cache_hits} cached), "
          f"{seconds:.0f} s")
    planted = llm_concepts(truth)
    for name in args.entries:
        scores = []
        for concept in planted:
            present = np.array([concept["name"] in truth["pairs"][pid][f"concepts_{side}"]
                                for side in "ab" for pid in pairs["id"]], float)
            rows = np.isin(domains, concept["domains"]) & ~np.isnan(values[name])
            if present[rows].std() > 0 and values[name][rows].std() > 0:
                scores.append((float(np.corrcoef(logit(values[name][rows]), present[rows])[0, 1]), concept["name"]))
        best = ", ".join(f"{planted_name} {r:+.2f}" for r, planted_name in sorted(scores, reverse=True)[:3])
        print(f"  {name:24} mean P(Yes) {np.nanmean(values[name]):.2f}; follows {best}")


if __name__ == "__main__":
    main()

"""Concept discovery on the demo data: which planted concepts are found, at what cost.

Run:  python benchmarks/bench_discover.py [--llm local] [--batches-per-domain 2] [--concepts-per-batch 5]

The demo data was generated from 11 planted concepts (7 shared, 1 per domain). A planted concept counts
as found when a discovered concept's name and definition are close to the planted description:
cosine similarity of all-MiniLM-L6-v2 embeddings >= --match (0.5), best match reported, so the
reader can judge the matches. Needs the 'embed' extra for the matching.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from preflens import load_pairs
from preflens.demo import demo_data_path, load_truth
from preflens.discover import DiscoverySettings, discover
from preflens.embeddings import embed
from preflens.llm import LLMCache, LLMClient, get_llm


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--llm", default="local")
    parser.add_argument("--base-url")
    parser.add_argument("--batches-per-domain", type=int, default=2)
    parser.add_argument("--concepts-per-batch", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=3)
    parser.add_argument("--match", type=float, default=0.5)
    parser.add_argument("--cache")
    args = parser.parse_args()
    pairs = load_pairs(demo_data_path())
    truth = load_truth(demo_data_path())
    options = {"base_url": args.base_url} if args.base_url else {}
    client = LLMClient(get_llm(args.llm, **options),
                       cache=LLMCache(args.cache or Path(tempfile.mkdtemp()) / "cache.sqlite"))
    settings = DiscoverySettings(batches_per_domain=args.batches_per_domain, concepts_per_batch=args.concepts_per_batch,
                                 batch_size=args.batch_size)
    start = time.perf_counter()
    result = discover(pairs, client, settings)
    seconds = time.perf_counter() - start
    stats = client.stats
    found = [c for c in result.concepts.concepts if "fixed" not in c.provenance]
    print(f"{args.llm}: {stats.calls} calls, {stats.prompt_tokens} prompt + {stats.completion_tokens} completion tokens, "
          f"{seconds:.0f} s; {len(found)} concepts discovered (+10 fixed), {result.report['shared']} shared in all")
    print(f"  taxonomy: {result.report['taxonomy']}")
    print(f"  deduplication: {result.report['deduplication']}")
    for concept in found:
        print(f"  - {concept.name} ({'shared' if concept.shared else ', '.join(concept.domains)}): {concept.definition}")
    candidates = result.concepts.concepts
    texts = [f"{c.name}: {c.definition}" for c in candidates]
    planted = truth["concepts"]
    similarity = embed([p["description"] for p in planted]) @ embed(texts).T
    hits = 0
    print(f"  planted concept -> best match (cosine); found when >= {args.match}")
    for i, concept in enumerate(planted):
        j = int(np.argmax(similarity[i]))
        hit = similarity[i, j] >= args.match
        hits += int(hit)
        print(f"    {concept['name']:<24} -> {candidates[j].name} ({similarity[i, j]:.2f}){'  FOUND' if hit else ''}")
    print(f"  planted concepts found: {hits}/{len(planted)}")


if __name__ == "__main__":
    main()

"""Evidence mining (discovery step 1, no LLM) on the demo data: which planted concepts it surfaces.

For each planted concept, the best evidence item by the correlation of its carriers (which
responses carry the phrase or sentence group) with the planted presence, over the responses of the
concept's domains (and of the item's domain, if it was mined in one). A planted concept counts as
surfaced at r >= 0.5. Also prints every item. Needs the embedding model for sentence groups.

    python benchmarks/bench_evidence.py [--no-sentences]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from preflens.demo import demo_data_path, load_truth
from preflens.evidence import EvidenceSettings, mine_evidence


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--no-sentences", action="store_true", help="phrases only")
    args = parser.parse_args()
    path = demo_data_path()
    truth = load_truth(path)
    pairs = pd.read_json(path, lines=True)
    start = time.perf_counter()
    items = mine_evidence(pairs, list(pairs["label"]), EvidenceSettings(sentences=not args.no_sentences))
    print(f"{len(pairs)} pairs: {len(items)} pieces of evidence in {time.perf_counter() - start:.1f} s")
    for item in items:
        print(f"  {item.source:9} {item.domain or 'all':8} z={item.z:+.2f} pairs={item.pairs:3} | {item.examples[:2]}")
    ids = list(pairs["id"])
    domains = np.concatenate([pairs["domain"].to_numpy()] * 2)
    surfaced = 0
    for planted in truth["concepts"]:
        present = np.array([planted["name"] in truth["pairs"][i]["concepts_a"] for i in ids]
                           + [planted["name"] in truth["pairs"][i]["concepts_b"] for i in ids], float)
        in_scope = np.isin(domains, planted["domains"])
        best, best_item = 0.0, None
        for item in items:
            scope = in_scope if item.domain is None else in_scope & (domains == item.domain)
            a, b = present[scope], item.carriers[scope].astype(float)
            if scope.sum() >= 4 and a.std() > 0 and b.std() > 0:
                r = float(np.corrcoef(a, b)[0, 1])
                if r > best:
                    best, best_item = r, item
        surfaced += best >= 0.5
        shown = f"{best_item.source} {best_item.examples[0][:60]!r}" if best_item else "-"
        print(f"{planted['name']:24} r={best:.2f}  {shown}")
    print(f"surfaced (r >= 0.5): {surfaced} of {len(truth['concepts'])}")


if __name__ == "__main__":
    main()

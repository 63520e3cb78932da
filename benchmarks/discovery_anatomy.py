"""What a discovery from evidence spent its calls and time on, and how firm its choices were.

Replays a run's discovery from the LLM cache it was made with (no LLM call: a request missing from
the cache is an error) and prints three tables.

1. **Choices.** Per piece of evidence named with the library: the model's probabilities for the
   option numbers, its choice read as it comes and read net of its preference for positions
   (``debiased_choices``), and what verification made of each name. First, the mean probability
   per position (the prior the debiasing divides by).
2. **Verification's firmness.** Each candidate was checked on 4 responses that carry its evidence
   and 4 that do not. Per candidate: how often the verify rule (``passes``) holds on the sub-samples
   of 3 + 3 of those answers (``firmness``, which the rule now requires) and of 2 + 2.
3. **Time.** The discovery calls in the cache (all runs that used it), by kind: naming calls, and
   presence checks on a response read for the first time in the process (``fresh``), read earlier
   but not by the call before (``again``: the runtime restores it from its prompt cache in RAM), or
   read by the call before (``reuse``: only the question is new).

    python benchmarks/discovery_anatomy.py RUN --cache CACHE.sqlite
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sqlite3
from collections import Counter
from pathlib import Path

import numpy as np

from preflens import discover_evidence as de
from preflens.data import PairDataset
from preflens.engine import ClientSpec
from preflens.evidence import EvidenceSettings


def replay(run: Path, cache: str) -> tuple[list, list, dict]:
    """The run's discovery again, from the cache: (naming rows, verified candidates, report)."""
    # concepts.json keeps discovery's report (discovery.json is rewritten by a run given the concepts)
    settings_json = json.loads((run / "concepts.json").read_text())["meta"]["report"]["settings"]
    evidence = EvidenceSettings(**settings_json.pop("evidence"))
    # runs made before these settings existed read choices raw and kept a pass however firm
    settings_json.setdefault("debias_positions", False)
    settings_json.setdefault("min_firmness", 0.0)
    settings = de.EvidenceDiscoverySettings(**settings_json, evidence=evidence)
    pairs = PairDataset.read_parquet(run / "pairs.parquet")
    naming: list = []
    verified: list = []
    probabilities, judge = de._option_probabilities, de._judge

    def recording_probabilities(answer, n_options):
        p = probabilities(answer, n_options)
        naming.append(p)
        return p

    def recording_judge(k, candidates, sample, values, kept, s):
        judge(k, candidates, sample, values, kept, s)
        verified.append((candidates[k], sample, values[k]))

    de._option_probabilities, de._judge = recording_probabilities, recording_judge
    try:
        client = ClientSpec(llm="local", cache=cache, max_calls=0).build()
        _, report = asyncio.run(de.adiscover_from_evidence(pairs, client, settings))
    finally:
        de._option_probabilities, de._judge = probabilities, judge
    last = {id(candidate): (candidate, sample, values) for candidate, sample, values in verified}  # a recheck judges again
    return naming, list(last.values()), report


def time_split(cache: str) -> dict[str, tuple[int, float, int]]:
    db = sqlite3.connect(cache)
    requests = {key: json.loads(body) for key, body in db.execute("SELECT key, request_json FROM responses")}
    rows = db.execute("SELECT key, prompt_tokens, duration_ms FROM calls WHERE stage = 'discover' "
                      "AND status = 'ok' ORDER BY id").fetchall()
    split: dict[str, tuple[int, float, int]] = {}
    seen: set[str] = set()
    previous = None
    for key, tokens, ms in rows:
        request = requests.get(key)
        if request is None:
            continue
        if request["template_version"].startswith("presence"):
            response = request["messages"][-1]["content"].split("</response>")[0]
            kind = "reuse" if response == previous else "again" if response in seen else "fresh"
            seen.add(response)
            previous = response
        else:
            kind, previous = "naming", None
        n, seconds, total = split.get(kind, (0, 0.0, 0))
        split[kind] = (n + 1, seconds + ms / 1000, total + tokens)
    return split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--cache", required=True, help="the LLM cache the run's discovery used")
    args = parser.parse_args()
    naming, verified, report = replay(args.run, args.cache)
    settings = de.EvidenceDiscoverySettings()  # the current rule, to show what it would say

    usable = [p for p in naming if p is not None]
    print(f"1. Choices ({len(naming)} naming calls)")
    if usable:
        prior = np.mean(usable, axis=0)
        print("   mean probability per option number (last = none of these):",
              " ".join(f"{i + 1}:{p:.2f}" for i, p in enumerate(prior)))
        raw = [None if p is None else int(np.argmax(p)) + 1 for p in naming]
        debiased, _ = de.debiased_choices(naming)
        n = len(usable[0])
        print(f"   raw choices by position: {dict(sorted(Counter(raw).items(), key=str))}")
        print(f"   debiased choices by position: {dict(sorted(Counter(debiased).items(), key=str))}")
        changed = sum(r != d for r, d in zip(raw, debiased, strict=True))
        print(f"   changed by the debiasing: {changed} of {len(naming)}; last description chosen raw: "
              f"{raw.count(n - 1)}, debiased: {debiased.count(n - 1)}")
    status = Counter("kept" if c.status == "kept" else "rejected" for c, _, _ in verified)
    print(f"   verified candidates: {dict(status)}; report: {report['naming']}")

    print("\n2. Verification's firmness (the verify rule on sub-samples of 3 + 3 and of 2 + 2 of each candidate's "
          "answers: 8, or 16 when rechecked)")
    for candidate, sample, values in verified:
        carriers = [values[i] for i, c in sample if c and i in values]
        others = [values[i] for i, c in sample if not c and i in values]
        held = {m: np.mean([de.passes(list(a), list(b), settings)
                            for a in itertools.combinations(carriers, m) for b in itertools.combinations(others, m)])
                for m in (3, 2) if len(carriers) >= m and len(others) >= m}
        print(f"   {candidate.name[:24]:24s} {len(sample):2d} answers, AUC {candidate.verify.get('auc')!s:5s} separation "
              f"{candidate.verify.get('separation')!s:6s} passes on 3 + 3: {held.get(3, 0):.2f}, on 2 + 2: "
              f"{held.get(2, 0):.2f}  {candidate.status[:60]}")

    print("\n3. Time of the discovery calls in the cache, by kind")
    for kind, (n, seconds, tokens) in sorted(time_split(args.cache).items()):
        print(f"   {kind:7s} {n:4d} calls {seconds:7.1f} s ({1000 * seconds / n:5.0f} ms a call, {tokens / n:4.0f} tokens)")


if __name__ == "__main__":
    main()

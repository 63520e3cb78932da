"""The confounder panel on labels that are "the longer response" with some flipped, with no LLM at all.

Run:  python benchmarks/confounders_length.py [--pairs-per-domain 100] [--flip 0.1]

It takes the bundled demo data, relabels every pair by length (flipping a share at random), measures
the measured concepts, fits HMDR on them alone (with and without length as a control) and prints
the confounder panel's sentence, the panel, and the length weight.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from pathlib import Path

from preflens.demo import write_demo_data
from preflens.fit import FitSettings
from preflens.pipeline import RunContext, Runner
from preflens.stages import confounders_stage, fit_stage, ingest_stage, measured_stage

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--pairs-per-domain", type=int, default=100)
parser.add_argument("--flip", type=float, default=0.1)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

folder = Path(tempfile.mkdtemp(prefix="preflens-confounders-"))
source = write_demo_data(folder / "demo", args.pairs_per_domain, seed=args.seed)
rng = random.Random(args.seed)
records = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines()]
for record in records:
    longer = "a" if len(record["response_a"].split()) > len(record["response_b"].split()) else "b"
    record["label"] = longer if rng.random() >= args.flip else {"a": "b", "b": "a"}[longer]
data = folder / "judged.jsonl"
data.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")

for controls in (None, ["length"]):
    run_dir = folder / ("controlled" if controls else "plain")
    with Runner(RunContext(run_dir)) as runner:
        runner.run(ingest_stage(str(data), {}))
        runner.run(measured_stage(["all"]))
        result = runner.run(fit_stage("human", FitSettings(controls=controls))).result.value
        panel = runner.run(confounders_stage(["human"])).result.value["mechanisms"]["human"]
    names = list(result.model.feature_names_in_)
    print(f"\n== {len(records)} pairs, labels = the longer response with {args.flip:.0%} flipped; "
          f"controls: {controls or 'none'}")
    print(panel["sentence"])
    for row in panel["measured"][:4]:
        print(f"  {row['concept']:<14} alone {100 * row['accuracy']:.1f}%  (differs in {100 * row['coverage']:.0f}%)")
    j = names.index("length")
    model = result.model
    print(f"  length: b = {model.shared_coef_[j]:+.3f}, s_d = "
          + ", ".join(f"{d} {w:+.3f}" for d, w in zip(model.domains_, model.domain_coef_[:, j], strict=True))
          + f"; non-zero weights: {int((model.shared_coef_ != 0).sum())} shared, "
          f"{int((model.domain_coef_ != 0).sum())} domain")
print(f"\nrun folders under {folder}")

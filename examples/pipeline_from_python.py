"""The whole pipeline from Python: ingest, concepts, represent, judge, fit, explain, evaluate, report.

Run:  python examples/pipeline_from_python.py [--out FOLDER] [--llm openai/MODEL --base-url URL]

With no --llm it uses the embedded local model (a few minutes on a laptop for the 16 demo pairs it
takes). It runs the same stages as ``preflens run``, in the same run folder layout, so running it
again skips every stage that is up to date, and ``preflens report FOLDER`` works on its folder.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from preflens import Run, demo_data_path
from preflens.demo import demo_concepts, load_truth

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", default=None, help="Run folder (default: a new temporary folder).")
parser.add_argument("--llm", default="local")
parser.add_argument("--base-url", default=None)
parser.add_argument("--pairs-per-domain", type=int, default=4)
args = parser.parse_args()
folder = Path(args.out or tempfile.mkdtemp(prefix="preflens-example-"))

# %% A small slice of the bundled demo data, and the demo's concept list (discovery is run.discover())
folder.mkdir(parents=True, exist_ok=True)
lines, per_domain = [], {}
for line in demo_data_path().read_text(encoding="utf-8").splitlines():
    domain = json.loads(line)["domain"]
    if per_domain.get(domain, 0) < args.pairs_per_domain:
        per_domain[domain] = per_domain.get(domain, 0) + 1
        lines.append(line)
data = folder / "source.jsonl"
data.write_text("\n".join(lines) + "\n", encoding="utf-8")
concepts_file = folder / "given_concepts.json"
demo_concepts(load_truth(demo_data_path())).save(concepts_file)

# %% Every stage, in one locked run folder
with Run(folder, llm=args.llm, base_url=args.base_url) as run:
    pairs = run.ingest(data)
    print(f"{len(pairs)} pairs in {len(set(pairs.frame['domain']))} domains; mechanisms: {pairs.mechanisms}")
    concepts = run.use_concepts(concepts_file)
    features = run.represent(scheme="presence" if args.llm == "local" else "comp")
    print(f"features: {features.shape[0]} pairs x {features.shape[1] - 1} concepts, "
          f"{int(features.isna().sum().sum())} missing cells")
    judged = run.judge("llm_judge")  # a second mechanism: the LLM as a judge
    print(f"llm_judge labels: {judged.value_counts(dropna=False).to_dict()}")
    models = run.fit()
    for name, model in models.items():
        explanation = run.explain(name, bootstrap=10)
        top = explanation.top("shared", 3)
        print(f"{name}: top shared concepts "
              + ", ".join(f"{r.concept} {r.effect:+.1f}%" for r in top.itertuples()))
    run.evaluate(splits=2, methods=["HMDR", "Length"])
    files = run.report()

# %% What each stage did (run it again: everything is up to date)
for outcome in run.outcomes:
    print(f"{outcome.stage:<22} {outcome.status}")
print(f"report: {files.html}")

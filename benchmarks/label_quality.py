"""Where a demo run's Presence-rep values come from, and how good each source is, against the planted truth.

Takes run folders made on the bundled demo data (``preflens demo --out RUN``, or ``preflens run`` on
its ``data/pairs.jsonl`` with a ``truth.json`` beside the run) and prints three tables. No LLM call.

1. **Label sources.** Per LLM concept, the planted concept its per-response values follow best (over
   the responses of that planted concept's domains, as the recovery matches), and the correlation of
   those values with that planted presence separately on the cells the LLM answered and on the cells
   distilled representation predicted. Says whether the
   model's labels or the light model that stands in for them limit what a discovered concept matches.
2. **Evidence marks.** Per discovered concept, the light model of distilled representation refitted
   on the run's LLM answers with and without the phrases and sentences of the concept's evidence
   (``phrases``, ``examples``; taken from ``meta.candidates`` for a run made before discovery
   recorded them): its cross-validated correlation with the LLM, and the correlation of its
   predictions on the other responses with the planted concept of the first table.
3. **Calibration.** The fit and the weight recovery with the per-response values as they are
   (``raw``), replaced per concept by their rank among the concept's responses (``rank``, in 0-1),
   or by their logit standardised per concept and put back through the sigmoid (``logit_z``): the
   per-concept calibrations the issue suggested for a small model that leans to "Yes".

    python benchmarks/label_quality.py RUN [RUN ...] [--mechanism human]
"""

from __future__ import annotations

import argparse
import json
import warnings
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from preflens.concepts import ConceptSet
from preflens.demo import llm_concepts, recovery
from preflens.distill import logit
from preflens.fit import FitSettings, ModelInputs, fit_mechanism
from preflens.pipeline import RunContext


def presence(truth: dict, ids: list[str], parts: list[str], planted: str) -> np.ndarray:
    return np.array([planted in truth["pairs"][i]["concepts_" + p] for i, p in zip(ids, parts, strict=True)], float)


def label_sources(details: pd.DataFrame, truth: dict, domain_of: dict[str, str]) -> list[dict]:
    """Per concept: the planted concept its values follow best, over the responses of that planted
    concept's domains (as the recovery matches), and r there on LLM-answered and on predicted cells."""
    rows = []
    planted = llm_concepts(truth)
    for concept, group in details.groupby("concept", sort=False):
        group = group.assign(domain=group["id"].map(domain_of))
        best = None
        for candidate in planted:
            cells = group[group["domain"].isin(candidate["domains"])]
            x = presence(truth, list(cells["id"]), list(cells["part"]), candidate["name"])
            if len(cells) < 4 or x.std() == 0 or cells["value"].std() == 0:
                continue
            r = float(np.corrcoef(cells["value"], x)[0, 1])
            if best is None or r > best[0]:
                best = (r, candidate, cells)
        if best is None:
            continue
        r, candidate, cells = best
        scope = "all" if len(candidate["domains"]) == len(set(domain_of.values())) else ", ".join(candidate["domains"])
        row = {"concept": concept, "planted": candidate["name"], "scope": scope, "r_all": round(r, 2)}
        for source in ("llm", "predicted"):
            part = cells[cells["source"] == source]
            x = presence(truth, list(part["id"]), list(part["part"]), candidate["name"])
            row[f"n_{source}"] = len(part)
            row[f"r_{source}"] = (round(float(np.corrcoef(part["value"], x)[0, 1]), 2)
                                  if len(part) > 3 and x.std() > 0 and part["value"].std() > 0 else None)
        rows.append(row)
    return rows


def evidence_marks(concepts: ConceptSet, details: pd.DataFrame, truth: dict, frame: pd.DataFrame,
                   follows: dict[str, str]) -> list[dict]:
    """Per discovered concept: (cv correlation with the LLM, r of the predictions with the planted presence)
    for the light model without and with the concept's evidence marks."""
    from preflens.discover_evidence import _marks
    from preflens.distill import _cv_correlation, _regressor, response_features

    texts = [str(t) for t in frame["response_a"]] + [str(t) for t in frame["response_b"]]
    keys = [(i, "a") for i in frame["id"]] + [(i, "b") for i in frame["id"]]
    index = {key: k for k, key in enumerate(keys)}
    domains = np.array(list(frame["domain"]) * 2, dtype=object)
    features = response_features(texts)
    candidates = {c["name"]: c for c in concepts.meta.get("candidates", [])}
    planted = {c["name"]: c for c in llm_concepts(truth)}
    rows = []
    for concept in concepts.concepts:
        candidate = candidates.get(concept.name)
        if candidate is None or concept.name not in follows:
            continue
        phrases, examples = (concept.phrases, concept.examples) if concept.phrases or concept.examples else _marks(
            SimpleNamespace(evidence=[SimpleNamespace(**e) for e in candidate["evidence"]]))
        cells = details[details["concept"] == concept.name]
        answered = cells[cells["source"] == "llm"]
        asked = np.array([index[key] for key in zip(answered["id"], answered["part"], strict=True)])
        every = np.array([index[key] for key in zip(cells["id"], cells["part"], strict=True)])
        name = follows[concept.name]
        other = ~np.isin(every, asked) & np.isin(domains[every], planted[name]["domains"])
        x = presence(truth, [keys[i][0] for i in every[other]], [keys[i][1] for i in every[other]], name)
        row = {"concept": concept.name, "planted": name, "phrases": len(phrases), "sentences": len(examples)}
        for label, chosen in (("without", replace(concept, phrases=[], examples=[])),
                              ("with", replace(concept, phrases=phrases, examples=examples))):
            X = features.for_concept(chosen)
            target = logit(answered["value"].to_numpy(float))
            predicted = _regressor(X[asked], target).predict(X[every[other]])
            row[label] = (_cv_correlation(X[asked], target, 0), float(np.corrcoef(predicted, x)[0, 1]))
        rows.append(row)
    return rows


def calibrated(details: pd.DataFrame, ids: np.ndarray, X: pd.DataFrame, mode: str) -> pd.DataFrame:
    """The pair features rebuilt from per-response values transformed per concept."""
    X = X.copy()
    for concept, group in details.groupby("concept", sort=False):
        v = group["value"].to_numpy(float)
        if mode == "rank":
            t = (rankdata(v) - 0.5) / len(v)
        elif mode == "logit_z":
            z = logit(v)
            t = 1.0 / (1.0 + np.exp(-(z - z.mean()) / (z.std() or 1.0)))
        else:
            t = v
        value = dict(zip(zip(group["id"], group["part"]), t, strict=True))
        X[concept] = [value[(i, "a")] - value[(i, "b")] if (i, "a") in value else 0.0 for i in ids]
    return X


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders on the demo data, with truth.json")
    parser.add_argument("--mechanism", default="human")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    for run in args.runs:
        context = RunContext(run)
        truth = json.loads((run / "truth.json").read_text())
        details = pd.read_parquet(run / "representation_details.parquet")
        frame = context.pairs.frame
        domain_of = dict(zip(frame["id"], frame["domain"], strict=True))
        print(f"\n{run}: label sources (r with the planted presence, per response)")
        print(f"{'concept':24} {'follows':28} {'r all':>6} {'LLM':>12} {'predicted':>12}")
        for row in label_sources(details, truth, domain_of):
            print(f"{row['concept'][:24]:24} {(row['planted'] + ' (' + row['scope'] + ')')[:28]:28} {row['r_all']:>6} "
                  f"{str(row['r_llm']) + ' of ' + str(row['n_llm']):>12} "
                  f"{str(row['r_predicted']) + ' of ' + str(row['n_predicted']):>12}")
        follows = {row["concept"]: row["planted"] for row in label_sources(details, truth, domain_of)}
        marks = evidence_marks(context.concepts, details, truth, frame, follows)
        if marks:
            print(f"{run}: the light model without / with the evidence marks (cv r with the LLM; r of the "
                  "predicted values with the planted presence)")
            for row in marks:
                (cv0, r0), (cv1, r1) = row["without"], row["with"]
                print(f"  {row['concept'][:24]:24} {row['planted'][:24]:24} {row['phrases']:>2} phrases "
                      f"{row['sentences']:>2} sentences   cv {cv0:.2f} -> {cv1:.2f}   truth {r0:.2f} -> {r1:.2f}")
        print(f"{run}: calibration (CV accuracy; weights non-zero in both / right sign; support recall)")
        inputs = context.inputs
        for mode in ("raw", "rank", "logit_z"):
            X = calibrated(details, frame["id"].to_numpy(), inputs.X, mode)
            chosen = ModelInputs(X, inputs.domains, inputs.shared, inputs.membership, inputs.missing_cells)
            fitted = fit_mechanism(chosen, context.pairs.labels(args.mechanism), args.mechanism, FitSettings())
            result = recovery(truth, context.pairs, chosen, context.concepts, {args.mechanism: fitted.model},
                              args.mechanism)
            w = result["weights"]
            right = round((w["sign_agreement"] or 0) * w["both_nonzero"])
            print(f"  {mode:8} CV {fitted.evidence['cv_accuracy']:.1%}  signs {right} of {w['both_nonzero']}  "
                  f"recall {w['recall']:.0%}  matched {result['concepts_found']} of {result['concepts_planted']}")


if __name__ == "__main__":
    main()

"""Tie Break (paper section 4.2): re-judge a judge's ties with a few concepts to consider.

A tie is a pair whose two verdicts (one per order) disagree. Two HMDRs are fitted, leaving the tie
pairs out: one on the judge's non-tie labels and one on a reference mechanism's labels (usually
human). Each tie is judged again, in both orders, with a prompt asking the judge to consider only k
concepts chosen as: random, the judge's top concepts, the reference's top concepts, or "diff" (the
largest reference weight minus judge weight). The result is the agreement with the reference labels
on the tie subset for each choice, against the judge's original verdict (a tie, which counts 0.5).

A concept chosen from a fitted model is written as the rubric's principle for it (the text of
``preflens export-rubric``: "Prefer/Avoid the response where: <definition> (<name>)", with its
strength), in the direction of that model's weight in the domain ("diff" takes the reference's
direction). Random concepts have no direction and are listed as name and definition, as in the
paper's Box E.11.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .concepts import Concept, ConceptSet
from .data import PairDataset
from .evaluate import label_accuracy
from .explain import typical_differences, unit_of
from .fit import FitSettings, ModelInputs, fit_mechanism
from .judge import DEFAULT_TEMPLATE, JudgeSettings, judge
from .llm.client import LLMClient
from .model import HMDR
from .rubric import Principle, strength

CHOICES = ("random", "judge", "reference", "diff")


def _top(weights: np.ndarray, names: list[str], k: int) -> list[str]:
    """The k largest values (whatever their sign, so that every choice names k concepts)."""
    return [names[j] for j in np.argsort(-weights, kind="stable")[:k]]


def concept_choices(judge_model: HMDR, reference_model: HMDR, concepts: ConceptSet, domain: str, k: int,
                    rng: random.Random, units: Mapping[str, float] | None = None
                    ) -> dict[str, list[tuple[Concept, float | None]]]:
    """The k concepts of each choice for one domain, each with the weight that gives its direction.

    The judge's and the reference's choices carry their own weight in the domain; "diff" carries the
    reference's (the direction the judge should move to); random concepts carry none. Each weight comes
    times the concept's typical difference (``units``, as the explanations' headline and the rubric read
    it: :func:`preflens.explain.typical_differences`; 1 where not given); the choices rank by weight.
    """
    names = [str(n) for n in judge_model.feature_names_in_]
    by_name = {c.name: c for c in concepts.concepts}
    judge_w, reference_w = judge_model.coef_for(domain), reference_model.coef_for(domain)
    weight_of = {"judge": judge_w, "reference": reference_w, "diff": reference_w}
    in_domain = [c.name for c in concepts.concepts if c.belongs_to(domain)]
    chosen = {
        "random": rng.sample(in_domain, min(k, len(in_domain))),
        "judge": _top(judge_w, names, k),
        "reference": _top(reference_w, names, k),
        "diff": _top(reference_w - judge_w, names, k),
    }
    return {choice: [(by_name[n], float(weight_of[choice][names.index(n)]) * unit_of(units, n)
                      if choice in weight_of else None)
                     for n in picked if n in by_name] for choice, picked in chosen.items()}


def concept_line(concept: Concept, weight: float | None, domain: str = "") -> str:
    """One concept as the judge reads it: the rubric's principle text (as ``export-rubric`` writes it) when a
    weight gives its direction, else its name and definition (Box E.11)."""
    if not weight:
        return f"- {concept.name}: {concept.definition}"
    p = 1.0 / (1.0 + math.exp(-weight))
    principle = Principle(scope=domain, concept=concept.name, direction="prefer" if weight > 0 else "avoid",
                          strength=strength(p), p_preferred=p, definition=concept.definition)
    return f"- {principle.text} ({principle.strength.capitalize()})"


def focused_template(concepts: list[tuple[Concept, float | None]], base: str = DEFAULT_TEMPLATE,
                     domain: str = "") -> str:
    """The judge template with "consider only these concepts" (Box E.11), each line a rubric principle where
    a weight gives it a direction."""
    listed = "\n".join(concept_line(c, w, domain) for c, w in concepts).replace("{", "{{").replace("}", "}}")
    return base.replace("Answer with", f"Consider only the following concepts:\n{listed}\n\nAnswer with", 1)


@dataclass
class TieBreakResult:
    """Agreement with the reference on the tie subset, per concept choice."""

    table: pd.DataFrame  # choice, ties, agreement, gain
    labels: pd.DataFrame  # id, domain, reference_label, and the new label for each choice

    def to_markdown(self) -> str:
        lines = ["| concepts | ties | agreement with reference % | gain over the tie (points) |", "|---|---|---|---|"]
        for _, r in self.table.iterrows():
            lines.append(f"| {r['choice']} | {r['ties']} | {100 * r['agreement']:.1f} | {100 * r['gain']:+.1f} |")
        return "\n".join(lines) + "\n"


def tiebreak(pairs: PairDataset, inputs: ModelInputs, concepts: ConceptSet, client: LLMClient, *, judge_name: str,
             reference: str = "human", settings: JudgeSettings | None = None, k: int = 4, seed: int = 0,
             fit_settings: FitSettings | None = None, progress: Any = None) -> TieBreakResult:
    """Re-judge the ties of ``judge_name`` with each concept choice and score them against ``reference``."""
    settings = settings or JudgeSettings()
    judge_labels, reference_labels = pairs.labels(judge_name), pairs.labels(reference)
    ties = (judge_labels == "tie") & reference_labels.isin(["a", "b"])
    if not ties.any():
        raise ValueError(f"'{judge_name}' has no ties on pairs that '{reference}' labelled")
    fit_settings = fit_settings or FitSettings()
    held_out = judge_labels.where(~ties, None)
    judge_model = fit_mechanism(inputs, held_out, judge_name, fit_settings).model
    reference_model = fit_mechanism(inputs, reference_labels.where(~ties, None), reference, fit_settings).model
    rng = random.Random(seed)
    tie_frame = pairs.frame[ties.to_numpy()]
    results = pd.DataFrame({"id": tie_frame["id"].to_numpy(), "domain": tie_frame["domain"].to_numpy(),
                            "reference_label": reference_labels[ties].to_numpy()})
    units = typical_differences(inputs.X)
    chosen_by_domain = {str(domain): concept_choices(judge_model, reference_model, concepts, str(domain), k, rng,
                                                     units)
                        for domain in dict.fromkeys(tie_frame["domain"])}
    for choice in CHOICES:
        column = []
        for domain, group in tie_frame.groupby("domain", sort=False):
            picked = chosen_by_domain[str(domain)][choice]
            template = focused_template(picked, settings.template, str(domain))
            version = "tiebreak/2:" + hashlib.sha256(template.encode()).hexdigest()[:12]
            focused = JudgeSettings(variant=settings.variant, template=template, template_version=version,
                                    seed=settings.seed, calibrated=settings.calibrated, tie_margin=settings.tie_margin)
            labels = judge(PairDataset(group), client, focused, progress).labels
            column += list(zip(group["id"], labels, strict=True))
        by_id = dict(column)
        results[choice] = [by_id[i] for i in results["id"]]
    rows = [{"choice": "none (the original tie)", "ties": len(results), "agreement": 0.5, "gain": 0.0}]
    for choice in CHOICES:
        agreement = label_accuracy(list(results[choice]), list(results["reference_label"]))
        rows.append({"choice": choice, "ties": len(results), "agreement": agreement, "gain": agreement - 0.5})
    return TieBreakResult(pd.DataFrame(rows), results)

"""Judge Hack (paper section 4.1): use a judge's explanation to write responses it prefers.

For each query, a generator LLM writes three responses:

- **vanilla**: the plain answer;
- **guided**: an answer told to consider the judge's top-k concepts for the query's domain (by weight
  b + s_d, with their definitions);
- **random**: an answer told to consider k random concepts of the domain (the control).

The judge then compares guided vs vanilla and random vs vanilla, each in both orders (a tie when the
two verdicts differ). Results are win / tie / loss, the win rate (win + tie/2), and a two-sided sign
test of wins against losses with a Bonferroni correction across all comparisons, as the paper's Table 2.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .concepts import Concept, ConceptSet
from .data import PairDataset
from .llm.base import LLMRequest, LLMResponse, Message
from .llm.client import LLMClient
from .model import HMDR
from .prompts import fence

STAGE = "steer"
VANILLA_VERSION = "generate-vanilla/1"
GUIDED_VERSION = "generate-guided/1"

Comparer = Callable[[PairDataset], pd.Series]  # labels a/b/tie for pairs (response_a = candidate)


def top_concepts(model: HMDR, concepts: ConceptSet, domain: str, k: int) -> list[Concept]:
    """The k concepts with the largest positive weight b + s_d in a domain (what the judge rewards)."""
    weights = model.coef_for(domain)
    by_name = {c.name: c for c in concepts.concepts}
    order = np.argsort(-weights)
    chosen = [str(model.feature_names_in_[j]) for j in order if weights[j] > 0][:k]
    return [by_name[name] for name in chosen if name in by_name]


def random_concepts(concepts: ConceptSet, domain: str, k: int, rng: random.Random,
                    exclude: frozenset[str] | set[str] = frozenset()) -> list[Concept]:
    """k random concepts specific to the domain (shared ones when there are too few), not in ``exclude``."""
    specific = [c for c in concepts.concepts if not c.shared and domain in c.domains and c.name not in exclude]
    pool = specific if len(specific) >= k else specific + [c for c in concepts.concepts
                                                         if c.shared and c.name not in exclude]
    return rng.sample(pool, min(k, len(pool)))


def generation_request(query: str, concepts: list[Concept] | None, max_tokens: int, seed: int) -> LLMRequest:
    if concepts:
        listed = "\n".join(f"- {c.name}: {c.definition}" for c in concepts)
        user = (f"{fence('query', query)}\n\nWrite a helpful response to the query. Consider the following concepts "
                f"while writing it:\n{listed}")
        version = GUIDED_VERSION
    else:
        user = f"{fence('query', query)}\n\nWrite a helpful response to the query."
        version = VANILLA_VERSION
    return LLMRequest(messages=(Message(role="user", content=user),), max_tokens=max_tokens, temperature=0.0,
                      seed=seed, template_version=version, stage=STAGE)


@dataclass
class SteerResult:
    """Per query: the three responses and both verdicts; and the summary table."""

    responses: pd.DataFrame  # domain, prompt, vanilla, guided, random, guided_concepts, random_concepts
    outcomes: pd.DataFrame  # domain, prompt, condition (guided/random), label (a = candidate wins)
    table: pd.DataFrame  # domain, condition, n, win, tie, loss, win_rate, p_value, p_bonferroni

    def to_markdown(self) -> str:
        lines = ["| domain | condition | n | win % | tie % | loss % | win rate % | p (Bonferroni) |",
                 "|---|---|---|---|---|---|---|---|"]
        for _, r in self.table.iterrows():
            lines.append(f"| {r['domain']} | {r['condition']} | {r['n']} | {100 * r['win']:.1f} | {100 * r['tie']:.1f} | "
                         f"{100 * r['loss']:.1f} | {100 * r['win_rate']:.1f} | {r['p_bonferroni']:.3g} |")
        return "\n".join(lines) + "\n"


def sign_test(wins: int, losses: int) -> float:
    """Two-sided sign test of wins against losses (ties left out)."""
    from scipy.stats import binomtest

    n = wins + losses
    return float(binomtest(wins, n, 0.5).pvalue) if n else 1.0


def summarise(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Win/tie/loss per domain and condition, and overall, with Bonferroni-corrected sign tests."""
    rows = []
    groups = [(d, c, g) for (d, c), g in outcomes.groupby(["domain", "condition"], sort=False)]
    groups += [("all", c, g) for c, g in outcomes.groupby("condition", sort=False)]
    for domain, condition, group in groups:
        labels = group["label"].dropna()
        n = len(labels)
        win, tie, loss = (int((labels == v).sum()) for v in ("a", "tie", "b"))
        rows.append({"domain": domain, "condition": condition, "n": n, "win": win / n if n else math.nan,
                     "tie": tie / n if n else math.nan, "loss": loss / n if n else math.nan,
                     "win_rate": (win + tie / 2) / n if n else math.nan, "p_value": sign_test(win, loss)})
    table = pd.DataFrame(rows)
    table["p_bonferroni"] = np.minimum(1.0, table["p_value"] * max(len(table), 1))
    return table


def steer(queries: pd.DataFrame, model: HMDR, concepts: ConceptSet, generator: LLMClient, compare: Comparer, *,
          k: int = 4, max_tokens: int = 400, seed: int = 0,
          progress: Callable[[LLMResponse], None] | None = None) -> SteerResult:
    """Run Judge Hack for ``queries`` (columns ``domain``, ``prompt``)."""
    rng = random.Random(seed)
    plans = []
    for row in queries.itertuples(index=False):
        guided = top_concepts(model, concepts, row.domain, k)
        control = random_concepts(concepts, row.domain, k, rng, exclude={c.name for c in guided})
        plans.append((row.domain, row.prompt, guided, control))
    requests = []
    for _, prompt, guided, control in plans:
        requests += [generation_request(prompt, None, max_tokens, seed), generation_request(prompt, guided, max_tokens, seed),
                     generation_request(prompt, control, max_tokens, seed)]
    answers = generator.map(requests, None, progress)
    records = []
    for i, (domain, prompt, guided, control) in enumerate(plans):
        vanilla, guided_text, random_text = (a.text if a.ok else None for a in answers[3 * i:3 * i + 3])
        records.append({"domain": domain, "prompt": prompt, "vanilla": vanilla, "guided": guided_text,
                        "random": random_text, "guided_concepts": [c.name for c in guided],
                        "random_concepts": [c.name for c in control]})
    responses = pd.DataFrame(records)
    outcomes = []
    for condition in ("guided", "random"):
        usable = responses[responses[condition].notna() & responses["vanilla"].notna()
                           & (responses[condition] != responses["vanilla"])].reset_index(drop=True)
        if not len(usable):
            continue
        frame = pd.DataFrame({"id": [f"{condition}-{i}" for i in range(len(usable))], "domain": usable["domain"],
                              "prompt": usable["prompt"], "response_a": usable[condition],
                              "response_b": usable["vanilla"]})
        labels = compare(PairDataset(frame))
        outcomes += [{"domain": d, "prompt": p, "condition": condition, "label": label}
                     for d, p, label in zip(usable["domain"], usable["prompt"], labels, strict=True)]
    outcome_frame = pd.DataFrame(outcomes, columns=["domain", "prompt", "condition", "label"])
    return SteerResult(responses, outcome_frame, summarise(outcome_frame))


def llm_comparer(client: LLMClient, settings: Any) -> Comparer:
    """Compare with an LLM judge (both orders; a tie when they disagree)."""
    from .judge import judge

    def compare(pairs: PairDataset) -> pd.Series:
        return judge(pairs, client, settings).labels

    return compare


def reward_comparer(model_path: str, *, margin: float = 0.0, device: str = "cpu") -> Comparer:
    """Compare with a reward model (the higher reward wins)."""
    from .reward import reward_labels

    def compare(pairs: PairDataset) -> pd.Series:
        return pd.Series(list(reward_labels(model_path, pairs.frame, margin=margin, device=device).frame["label"]),
                         index=pairs.frame.index, dtype=object)

    return compare


def held_out_queries(pairs: PairDataset, per_domain: int, seed: int = 0) -> pd.DataFrame:
    """Distinct prompts per domain from the pairs, sampled with a seed."""
    frame = pairs.frame.drop_duplicates(["domain", "prompt"]).sample(frac=1.0, random_state=seed)
    return frame.groupby("domain", sort=False).head(per_domain)[["domain", "prompt"]].reset_index(drop=True)

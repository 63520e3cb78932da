"""Mechanisms that produce labels: a pairwise LLM judge and a reward model.

**LLM judge** (paper Box E.10 protocol): each pair is judged in both orders; when the two verdicts
differ, the label is a tie. Variants: zero-shot, chain-of-thought (``cot``), and few-shot with ``shots``
demonstrations drawn from labelled pairs, as an ensemble of ``ensemble`` draws decided by majority
vote over all their verdicts (the paper: 10 shots x 8). The prompt is a versioned template; a user
can replace it with a text file using the placeholders ``{query}``, ``{response_1}``,
``{response_2}`` and ``{examples}``, whose content hash becomes its version (and so enters the cache key).

Zero-shot and few-shot verdicts are read from the log-probabilities of "1" and "2" when the backend
returns them (one output token), else from the text; CoT asks for JSON ``{"reasoning", "better"}``.
With ``calibrated=True`` (for small models that lean to one position), the two orders' probabilities
are averaged instead: P(A) = (P(1 | A first) + P(2 | B first)) / 2, a tie within ``tie_margin`` of 0.5.

**Reward model**: see :mod:`preflens.reward`.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel

from .data import LABEL_PREFIX, PairDataset
from .errors import ConfigError
from .llm.base import LLMRequest, LLMResponse, Message, strict_schema
from .llm.client import LLMClient
from .prompts import DATA_RULE, fence

STAGE = "judge"
JUDGE_VERSION = "judge/1"

DEFAULT_TEMPLATE = (
    "{examples}Which response answers the user's query better?\n\n{query}\n{response_1}\n{response_2}\n\n"
    "Answer with 1 if response 1 is better or 2 if response 2 is better."
)


class CotVerdict(BaseModel):
    reasoning: str
    better: Literal[1, 2]


@dataclass
class JudgeSettings:
    """How the LLM judge works."""

    variant: Literal["zero", "cot"] = "zero"
    shots: int = 0
    ensemble: int = 1
    template: str = DEFAULT_TEMPLATE
    template_version: str = JUDGE_VERSION
    reference: str | None = "human"  # labels the few-shot demonstrations come from
    seed: int = 0
    calibrated: bool = False  # combine both orders' P(first) instead of requiring the verdicts to agree
    tie_margin: float = 0.0  # calibrated: |P(A) - 0.5| at most this is a tie

    @classmethod
    def from_template_file(cls, path: str | Path, **kwargs: Any) -> JudgeSettings:
        text = Path(path).read_text(encoding="utf-8")
        missing = [p for p in ("{query}", "{response_1}", "{response_2}") if p not in text]
        if missing:
            raise ConfigError(f"{path}: the judge template needs the placeholders {', '.join(missing)}")
        version = "custom:" + hashlib.sha256(text.encode()).hexdigest()[:16]
        return cls(template=text, template_version=version, **kwargs)


@dataclass
class Judgments:
    """Labels (a/b/tie per pair) and every verdict behind them."""

    labels: pd.Series  # indexed like the pairs
    verdicts: pd.DataFrame  # id, draw, order, first_wins (1.0 / 0.0 / NaN), p_first

    def position_bias(self) -> float:
        """How often a verdict picked the response shown first (0.5 = no bias)."""
        values = self.verdicts["first_wins"].dropna()
        return float(values.mean()) if len(values) else math.nan

    def tie_rate(self) -> float:
        return float((self.labels == "tie").mean())


def _examples_text(demos: list[tuple[str, str, str, str]]) -> str:
    if not demos:
        return ""
    blocks = []
    for i, (query, first, second, answer) in enumerate(demos, 1):
        blocks.append(f"Example {i}:\n{fence('query', query, 1500)}\n{fence('response_1', first, 1500)}\n"
                      f"{fence('response_2', second, 1500)}\nBetter: {answer}")
    return "Here are judged examples.\n\n" + "\n\n".join(blocks) + "\n\nNow the pair to judge.\n"


def _messages(settings: JudgeSettings, query: str, first: str, second: str, examples: str) -> tuple[Message, ...]:
    user = settings.template.format(query=fence("query", query), response_1=fence("response_1", first),
                                    response_2=fence("response_2", second), examples=examples)
    if settings.variant == "cot":
        user += " First explain your reasoning briefly, then give the answer."
    return (Message(role="system", content="You are an impartial judge of response quality. " + DATA_RULE),
            Message(role="user", content=user))


def _verdict(response: LLMResponse, variant: str) -> tuple[float, float]:
    """(1.0 when response 1 wins, 0.0 when response 2 wins, NaN when unusable; P(first))."""
    if not response.ok:
        return math.nan, math.nan
    if variant == "cot":
        better = response.parsed.better if response.parsed is not None else None
        return (1.0 if better == 1 else 0.0 if better == 2 else math.nan), math.nan
    p_first = response.option_probability({"1"}, {"2"})
    if not math.isnan(p_first):
        return (1.0 if p_first > 0.5 else 0.0), p_first
    text = (response.text or "").strip()
    return (1.0 if text.startswith("1") else 0.0 if text.startswith("2") else math.nan), math.nan


def judge(pairs: PairDataset, client: LLMClient, settings: JudgeSettings,
          progress: Callable[[LLMResponse], None] | None = None, *,
          demonstrations: PairDataset | None = None) -> Judgments:
    """Judge every pair in both orders (and every ensemble draw); ties where verdicts disagree.

    Few-shot demonstrations are drawn from ``demonstrations`` (default: the pairs themselves),
    using the ``settings.reference`` labels, never the pair being judged.
    """
    frame = pairs.frame
    pool = demonstrations if demonstrations is not None else pairs
    if settings.shots:
        if settings.reference is None or settings.reference not in pool.mechanisms:
            raise ConfigError(f"few-shot judging needs reference labels; '{settings.reference}' is not in the data "
                              f"(it has: {', '.join(pool.mechanisms) or 'none'})")
        reference_labels = pool.labels(settings.reference)
        labelled = [i for i, v in enumerate(reference_labels) if v in ("a", "b")]
        if len(labelled) <= settings.shots:
            raise ConfigError(f"{settings.shots}-shot judging needs more than {settings.shots} labelled pairs")
    requests, keys = [], []
    draws = max(1, settings.ensemble)
    for row in frame.itertuples(index=False):
        for draw in range(draws):
            demos: list[tuple[str, str, str, str]] = []
            if settings.shots:
                rng = random.Random(f"{settings.seed}:{row.id}:{draw}")
                candidates = [i for i in labelled if pool.frame["id"].iat[i] != row.id]
                for j in rng.sample(candidates, settings.shots):
                    other = pool.frame.iloc[j]
                    label = reference_labels.iloc[j]
                    swap = rng.random() < 0.5  # show the better response first or second at random
                    first, second = (other.response_b, other.response_a) if swap else (other.response_a, other.response_b)
                    winner = ("2" if label == "a" else "1") if swap else ("1" if label == "a" else "2")
                    demos.append((other.prompt, first, second, winner))
            examples = _examples_text(demos)
            for order in ("ab", "ba"):
                first, second = (row.response_a, row.response_b) if order == "ab" else (row.response_b, row.response_a)
                messages = _messages(settings, row.prompt, first, second, examples)
                if settings.variant == "cot":
                    request = LLMRequest(messages=messages, json_schema=strict_schema(CotVerdict.model_json_schema()),
                                         schema_name="CotVerdict", max_tokens=400, template_version=settings.template_version,
                                         seed=settings.seed, stage=STAGE, item=f"{row.id}:{draw}:{order}")
                else:
                    request = LLMRequest(messages=messages, max_tokens=1, logprobs=True, top_logprobs=10,
                                         template_version=settings.template_version, seed=settings.seed,
                                         stage=STAGE, item=f"{row.id}:{draw}:{order}")
                requests.append(request)
                keys.append((row.id, draw, order))
    output_types = [CotVerdict if settings.variant == "cot" else None] * len(requests)
    answers = client.run(client.amap_each(requests, output_types, progress))
    records = []
    for (pair_id, draw, order), answer in zip(keys, answers, strict=True):
        first_wins, p_first = _verdict(answer, settings.variant)
        records.append({"id": pair_id, "draw": draw, "order": order, "first_wins": first_wins, "p_first": p_first})
    verdicts = pd.DataFrame(records, columns=["id", "draw", "order", "first_wins", "p_first"])
    labels = [_label(group, settings) for _, group in verdicts.groupby("id", sort=False)]
    by_id = dict(zip(verdicts["id"].drop_duplicates(), labels, strict=True))
    return Judgments(pd.Series([by_id[i] for i in frame["id"]], index=frame.index, dtype=object), verdicts)


def judge_records(pairs: pd.DataFrame, client: LLMClient, settings: JudgeSettings,
                  demonstrations: PairDataset | None = None) -> pd.DataFrame:
    """:func:`judge` on a batch of pairs as one record per pair (``id``, ``label``, ``verdicts`` as JSON),
    for an engine that maps batches (Ray Data). Few-shot examples come from ``demonstrations`` (the
    whole data set): a pair's examples depend on its id only, so the labels are those of one ``judge``
    over all pairs."""
    import json

    result = judge(PairDataset(pairs), client, settings, demonstrations=demonstrations)
    by_id: dict[str, list[list[Any]]] = {}
    for row in result.verdicts.itertuples(index=False):
        by_id.setdefault(row.id, []).append([int(row.draw), row.order, None if math.isnan(row.first_wins)
                                             else row.first_wins, None if math.isnan(row.p_first) else row.p_first])
    return pd.DataFrame({"id": pairs["id"].to_numpy(), "label": result.labels.to_numpy(dtype=object),
                         "verdicts": [json.dumps(by_id.get(i, [])) for i in pairs["id"]]})


def judgments_from_records(records: pd.DataFrame) -> Judgments:
    """The :class:`Judgments` that :func:`judge_records` batches make together, in their order."""
    import json

    rows = [{"id": pair_id, "draw": draw, "order": order, "first_wins": math.nan if first is None else first,
             "p_first": math.nan if p_first is None else p_first}
            for pair_id, text in zip(records["id"], records["verdicts"], strict=True)
            for draw, order, first, p_first in json.loads(text)]
    labels = pd.Series([None if label is None or label != label else label for label in records["label"]],
                       dtype=object)
    return Judgments(labels, pd.DataFrame(rows, columns=["id", "draw", "order", "first_wins", "p_first"]))


def _label(group: pd.DataFrame, settings: JudgeSettings | None = None) -> str | None:
    """Majority over all verdicts of a pair; each draw's two orders must agree to count for a side.

    Calibrated: P(A) = (P(first | A first) + 1 - P(first | B first)) / 2 per draw, which cancels a
    constant lean towards the first position; a tie when |P(A) - 0.5| <= tie_margin.
    """
    votes: Counter[str] = Counter()
    for _, draw in group.groupby("draw"):
        by_order = draw.set_index("order")
        if settings is not None and settings.calibrated and "p_first" in draw:
            p_ab, p_ba = by_order.at["ab", "p_first"], by_order.at["ba", "p_first"]
            if not (math.isnan(p_ab) or math.isnan(p_ba)):
                p_a = (p_ab + 1.0 - p_ba) / 2.0
                votes["tie" if abs(p_a - 0.5) <= settings.tie_margin else "a" if p_a > 0.5 else "b"] += 1
                continue
        ab, ba = by_order.at["ab", "first_wins"], by_order.at["ba", "first_wins"]
        if math.isnan(ab) or math.isnan(ba):
            continue
        a_wins_ab, a_wins_ba = ab == 1.0, ba == 0.0  # in order "ba", A is shown second
        votes["a" if a_wins_ab and a_wins_ba else "b" if not a_wins_ab and not a_wins_ba else "tie"] += 1
    if not votes:
        return None
    (top, count), *rest = votes.most_common()
    if rest and rest[0][1] == count:
        return "tie"
    return top


def add_labels(pairs: PairDataset, name: str, labels: pd.Series) -> PairDataset:
    """A copy of the pairs with a new (or replaced) label column for mechanism ``name``."""
    frame = pairs.frame.copy()
    frame[LABEL_PREFIX + name] = labels.to_numpy()
    return PairDataset(frame, pairs.report)

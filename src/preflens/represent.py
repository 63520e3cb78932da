"""Concept representation: turn each pair into one value per concept, with an LLM.

Three schemes, all through the one cached client:

- **Comp-rep** (paper Box E.8): the LLM sees the query and both responses and says, per concept,
  which response shows it more (1, 2, or 0 for equal or not applicable), at most
  ``concepts_per_call`` concepts per call. It is asked in both orders; when the two answers disagree
  the value is 0 (and the disagreement is counted). Feature in {-1, 0, 1}.
- **Score-rep** (Box E.9): each response alone is scored 1-7 per concept (0 = not applicable);
  feature = (score(A) - score(B)) / 6, in [-1, 1].
- **Presence-rep** (for small local models, the default with the embedded model): each response
  alone, one concept per call, "does the response show this quality?", read from the
  log-probabilities of Yes and No: present = P(Yes) / (P(Yes) + P(No)); feature = present(A) -
  present(B) in [-1, 1]. A constant lean towards "Yes" cancels in the difference.

An optional relevance filter (Box E.7, default on for Comp-rep and Score-rep) first asks which of
a pair's concepts are relevant; the others get 0. A concept that does not belong to a pair's domain
is 0. A cell with no usable answer after the client's retries is missing (NaN): counted in the
coverage report, never filled with a value that looks like an answer.

:func:`represent_batch` is a pure function of (pairs, concepts, settings) and the client, whose
cache is the only state, so that it can run as a map over batches on a cluster.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, create_model

from .concepts import Concept, ConceptSet
from .distill import DistillSettings
from .llm.base import LLMRequest, LLMResponse
from .llm.client import LLMClient
from .prompts import (
    COMP_VERSION,
    PRESENCE_VERSION,
    RELEVANCE_VERSION,
    SCORE_VERSION,
    comp_messages,
    presence_messages,
    relevance_messages,
    score_messages,
)

Scheme = Literal["presence", "comp", "score"]
Labeler = Literal["llm", "distilled"]
STAGE = "represent"


@dataclass
class RepresentSettings:
    """How to represent pairs."""

    scheme: Scheme = "presence"
    relevance: bool | None = None  # None: on for comp and score, off for presence
    concepts_per_call: int = 20
    seed: int = 0
    explanations: bool = False  # Comp-rep as in the paper: an explanation before each answer (many more tokens)
    labeler: Labeler = "llm"  # distilled: the LLM labels a sample, a ridge model the rest (Presence-rep only)
    # distilled: share of each concept's responses asked of the LLM (fallback aside); distill's own default
    distill_budget: float = DistillSettings.budget_share

    def __post_init__(self) -> None:
        if self.labeler == "distilled" and self.scheme != "presence":
            from .errors import DataError

            raise DataError(f"--labeler distilled works with --scheme presence, not {self.scheme}")

    @property
    def use_relevance(self) -> bool:
        return self.scheme != "presence" if self.relevance is None else self.relevance


@dataclass
class Coverage:
    """How complete the feature matrix is."""

    pairs: int = 0
    cells: int = 0  # (pair, concept) cells for concepts that belong to the pair's domain
    missing: int = 0
    irrelevant: int = 0
    order_disagreements: int = 0
    relevance_missing: int = 0

    def add(self, other: Coverage) -> None:
        for name in COVERAGE_FIELDS:  # not asdict: it deep-copies, once per pair
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["missing_rate"] = round(self.missing / self.cells, 4) if self.cells else 0.0
        return data


@dataclass
class Representation:
    """The feature matrix (``id`` plus one column per concept) and its coverage."""

    features: pd.DataFrame
    coverage: Coverage
    details: pd.DataFrame = field(default_factory=pd.DataFrame)  # per (id, side, concept) raw values
    distillation: list[dict[str, Any]] | None = None  # --labeler distilled: per concept, LLM and predicted cells
    pair_coverage: pd.DataFrame | None = None  # per pair: id and the Coverage fields (sums to ``coverage``)


class ExplainedComparison(BaseModel):
    """The paper's Comp-rep answer: a short explanation, then the final answer."""

    explanation: str
    answer: Literal[0, 1, 2]


@functools.lru_cache(maxsize=256)
def _schema(kind: str, n: int) -> type[BaseModel]:
    """A pydantic model with fields c1..cn of the answer type."""
    answer: Any = {"relevance": bool, "comp": Literal[0, 1, 2], "score": Literal[0, 1, 2, 3, 4, 5, 6, 7],
                   "comp_explained": ExplainedComparison}[kind]
    return create_model(f"{kind.capitalize()}Answer{n}", **{f"c{i}": (answer, ...) for i in range(1, n + 1)})  # type: ignore[call-overload]


def _request(messages: list[tuple[str, str]], template: str, item: str, settings: RepresentSettings, *,
             json_schema: dict[str, Any] | None = None, schema_name: str = "answer", max_tokens: int,
             logprobs: bool = False) -> LLMRequest:
    return LLMRequest.chat(messages, json_schema=json_schema, schema_name=schema_name, max_tokens=max_tokens,
                      temperature=0.0, seed=settings.seed, logprobs=logprobs, top_logprobs=10 if logprobs else None,
                      template_version=template, stage=STAGE, item=item)


def presence_request(concept: Concept, response: str, item: str, seed: int = 0, stage: str = STAGE,
                     prompt: str | None = None) -> LLMRequest:
    """Presence-rep's one question (one response, one concept; the user's request too when the concept
    ``needs_prompt``); discovery's verify step asks the same."""
    return _request(presence_messages(concept, response, prompt), PRESENCE_VERSION, item, RepresentSettings(seed=seed),
                    max_tokens=1, logprobs=True).model_copy(update={"stage": stage})


def _chunks(items: Sequence[Concept], size: int) -> list[list[Concept]]:
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def _structured(kind: str, messages: list[tuple[str, str]], template: str, item: str, n: int,
                settings: RepresentSettings) -> tuple[LLMRequest, type[BaseModel]]:
    model = _schema(kind, n)
    per_concept = 60 if kind == "comp_explained" else 8
    return (_request(messages, template, item, settings, json_schema=_json_schema(kind, n),
                     schema_name=model.__name__, max_tokens=per_concept * n + 24), model)


@functools.lru_cache(maxsize=256)
def _json_schema(kind: str, n: int) -> dict[str, Any]:
    from .llm.base import strict_schema

    return strict_schema(_schema(kind, n).model_json_schema())


def presence_probability(response: LLMResponse) -> float:
    """P(Yes) / (P(Yes) + P(No)) from the first token's log-probabilities; the text when none; else NaN."""
    if not response.ok:
        return math.nan
    p_yes = response.option_probability({"yes", "y"}, {"no", "n"})
    if not math.isnan(p_yes):
        return p_yes
    word = (response.text or "").strip().lower().rstrip(".!")
    return {"yes": 1.0, "no": 0.0}.get(word.split()[0] if word else "", math.nan)


def candidate_concepts(concepts: ConceptSet, domain: str) -> list[Concept]:
    """The concepts a pair in ``domain`` is represented on (shared ones and the domain's own)."""
    return [c for c in concepts.concepts if c.belongs_to(domain)]


def plan_requests(pairs: pd.DataFrame, concepts: ConceptSet, settings: RepresentSettings) -> list[LLMRequest]:
    """Every request a run would make (the relevance filter taken as keeping all concepts)."""
    requests: list[LLMRequest] = []
    for row in pairs.itertuples(index=False):
        candidates = candidate_concepts(concepts, row.domain)
        if settings.use_relevance and settings.scheme != "presence":
            requests.append(_structured("relevance", relevance_messages(candidates, row.prompt, row.response_a,
                                                                        row.response_b), RELEVANCE_VERSION,
                                        row.id, len(candidates), settings)[0])
        requests.extend(_scheme_requests(row, candidates, settings)[0])
    return requests


def _scheme_requests(row: Any, concepts: Sequence[Concept], settings: RepresentSettings) -> tuple[list[LLMRequest], list[Any]]:
    """Requests for one pair over the given concepts, and what each answers (for assembly)."""
    requests: list[LLMRequest] = []
    keys: list[Any] = []
    if settings.scheme == "presence":
        for side, text in (("a", row.response_a), ("b", row.response_b)):
            for concept in concepts:
                requests.append(presence_request(concept, text, f"{row.id}:{side}", settings.seed,
                                                 prompt=str(row.prompt)))
                keys.append(("presence", side, [concept], None))
        return requests, keys
    for chunk in _chunks(concepts, settings.concepts_per_call):
        if settings.scheme == "comp":
            for order in ("ab", "ba"):
                first, second = (row.response_a, row.response_b) if order == "ab" else (row.response_b, row.response_a)
                kind = "comp_explained" if settings.explanations else "comp"
                request, model = _structured(kind, comp_messages(chunk, row.prompt, first, second, settings.explanations),
                                             COMP_VERSION, f"{row.id}:{order}", len(chunk), settings)
                requests.append(request)
                keys.append(("comp", order, chunk, model))
        else:
            for side, text in (("a", row.response_a), ("b", row.response_b)):
                request, model = _structured("score", score_messages(chunk, row.prompt, text), SCORE_VERSION,
                                             f"{row.id}:{side}", len(chunk), settings)
                requests.append(request)
                keys.append(("score", side, chunk, model))
    return requests, keys


async def represent_batch(pairs: pd.DataFrame, concepts: ConceptSet, client: LLMClient,
                          settings: RepresentSettings,
                          progress: Callable[[LLMResponse], None] | None = None) -> Representation:
    """Represent a batch of pairs (``id, domain, prompt, response_a, response_b``)."""
    rows = list(pairs.itertuples(index=False))
    candidates = {row.id: candidate_concepts(concepts, row.domain) for row in rows}
    relevant: dict[str, set[str] | None] = {row.id: None for row in rows}
    relevance_failed: set[str] = set()
    if settings.use_relevance and settings.scheme != "presence":
        plans = [_structured("relevance", relevance_messages(candidates[row.id], row.prompt, row.response_a,
                                                             row.response_b), RELEVANCE_VERSION, row.id,
                             len(candidates[row.id]), settings) for row in rows if candidates[row.id]]
        answered = await client.amap_each([p[0] for p in plans], [p[1] for p in plans], progress)
        for row, response in zip([r for r in rows if candidates[r.id]], answered, strict=True):
            if response.ok:
                flags = response.parsed.model_dump()
                relevant[row.id] = {c.name for i, c in enumerate(candidates[row.id], 1) if flags[f"c{i}"]}
            else:
                relevance_failed.add(row.id)  # keep every concept rather than guess

    requests: list[LLMRequest] = []
    keys: list[tuple[str, Any]] = []
    for number, row in enumerate(rows, 1):
        if number % _ROWS_PER_TURN == 0:
            await asyncio.sleep(0)  # let the replies of calls in flight (an earlier batch's) be read
        kept = relevant[row.id]
        chosen = [c for c in candidates[row.id] if kept is None or c.name in kept]
        pair_requests, pair_keys = _scheme_requests(row, chosen, settings)
        requests += pair_requests
        keys += [(row.id, key) for key in pair_keys]
    answered = await client.amap_each(requests, [k[1][3] for k in keys], progress)

    values: dict[str, dict[str, dict[str, float]]] = {row.id: {} for row in rows}  # id -> part -> concept -> value
    for (pair_id, (kind, part, chunk, _model)), response in zip(keys, answered, strict=True):
        store = values[pair_id].setdefault(part, {})
        if kind == "presence":
            store[chunk[0].name] = presence_probability(response)
            continue
        answer = response.parsed.model_dump() if response.ok else {}
        for i, concept in enumerate(chunk, 1):
            value = answer.get(f"c{i}")
            if isinstance(value, dict):  # an explained comparison
                value = value["answer"]
            store[concept.name] = float(value) if value is not None else math.nan

    names = concepts.names
    coverage = Coverage()
    records, details, per_pair = [], [], []
    for number, row in enumerate(rows, 1):
        if number % _ROWS_PER_TURN == 0:
            await asyncio.sleep(0)
        record: dict[str, Any] = {"id": row.id, **dict.fromkeys(names, 0.0)}
        parts = values[row.id]
        kept = relevant[row.id]
        pair = Coverage(pairs=1, cells=len(candidates[row.id]), relevance_missing=int(row.id in relevance_failed))
        for concept in candidates[row.id]:
            name = concept.name
            if kept is not None and name not in kept:
                pair.irrelevant += 1
                continue
            record[name] = _feature(settings.scheme, parts, name, pair)
            for part, store in parts.items():
                if name in store:
                    details.append({"id": row.id, "part": part, "concept": name, "value": store[name],
                                    "source": "llm"})
        records.append(record)
        coverage.add(pair)
        per_pair.append({"id": row.id, **{name: getattr(pair, name) for name in COVERAGE_FIELDS}})
    return Representation(pd.DataFrame(records, columns=["id", *names]), coverage,
                          pd.DataFrame(details, columns=DETAIL_COLUMNS),
                          pair_coverage=pd.DataFrame(per_pair, columns=["id", *COVERAGE_FIELDS]))


# Pairs handled between two yields to the event loop when a batch builds its requests or its features: the
# next batch is built while the current one's calls are in flight, and a batch of 500 pairs built in one go
# held their replies back for tens of milliseconds (benchmarks/bench_concurrency.py)
_ROWS_PER_TURN = 4

DETAIL_COLUMNS = ["id", "part", "concept", "value", "source"]
COVERAGE_FIELDS = [f.name for f in dataclasses.fields(Coverage)]


def represent_records(pairs: pd.DataFrame, concepts: ConceptSet, client: LLMClient,
                      settings: RepresentSettings) -> pd.DataFrame:
    """:func:`represent_batch` as one record per pair, for an engine that maps batches (Ray Data).

    Columns: ``id``, ``f:NAME`` per concept (the feature), ``c:FIELD`` per :class:`Coverage` field
    (this pair's counts) and ``details`` (the per-response values as JSON). A pure function of the
    batch, the concepts and the settings; the client's cache is its only state.
    """
    import json

    result = client.run(represent_batch(pairs, concepts, client, settings))
    assert result.pair_coverage is not None
    records = pd.DataFrame({"id": result.features["id"].to_numpy()})
    for name in concepts.names:
        records["f:" + name] = result.features[name].to_numpy(float)
    for name in COVERAGE_FIELDS:
        records["c:" + name] = result.pair_coverage[name].to_numpy("int64")
    by_id: dict[str, list[Any]] = {}
    for row in result.details.itertuples(index=False):
        by_id.setdefault(row.id, []).append([row.part, row.concept, None if math.isnan(row.value) else row.value,
                                             row.source])
    records["details"] = [json.dumps(by_id.get(i, [])) for i in records["id"]]
    return records


def representation_from_records(records: pd.DataFrame, concepts: ConceptSet) -> Representation:
    """The :class:`Representation` that :func:`represent_records` batches make together, in their order."""
    import json

    features = pd.DataFrame({"id": records["id"].to_numpy()})
    for name in concepts.names:
        features[name] = records["f:" + name].to_numpy(float)
    coverage = Coverage(**{name: int(records["c:" + name].sum()) for name in COVERAGE_FIELDS})
    pair_coverage = pd.DataFrame({"id": records["id"].to_numpy(),
                                  **{name: records["c:" + name].to_numpy("int64") for name in COVERAGE_FIELDS}})
    details = [{"id": pair_id, "part": part, "concept": concept, "value": math.nan if value is None else value,
                "source": source}
               for pair_id, text in zip(records["id"], records["details"], strict=True)
               for part, concept, value, source in json.loads(text)]
    return Representation(features, coverage, pd.DataFrame(details, columns=DETAIL_COLUMNS),
                          pair_coverage=pair_coverage)


async def represent_distilled(pairs: pd.DataFrame, concepts: ConceptSet, client: LLMClient,
                              settings: RepresentSettings,
                              progress: Callable[[LLMResponse], None] | None = None) -> Representation:
    """Presence-rep where the LLM labels a sample and a ridge model the rest (:mod:`preflens.distill`)."""
    from .distill import distill_values

    rows = list(pairs.itertuples(index=False))
    n = len(rows)
    texts = [str(r.response_a) for r in rows] + [str(r.response_b) for r in rows]
    items = [f"{r.id}:a" for r in rows] + [f"{r.id}:b" for r in rows]
    domains = np.array([r.domain for r in rows] * 2, dtype=object)
    prompts = [str(r.prompt) for r in rows] * 2
    distill = DistillSettings(budget_share=settings.distill_budget, random_state=settings.seed)
    values, summaries = await distill_values(texts, items, domains, concepts, client, distill, seed=settings.seed,
                                             progress=progress, prompts=prompts)
    table = {(int(r.response), r.concept): (r.value, r.source) for r in values.itertuples(index=False)}
    coverage = Coverage(pairs=n)
    records, details = [], []
    for k, row in enumerate(rows):
        record: dict[str, Any] = {"id": row.id, **dict.fromkeys(concepts.names, 0.0)}
        for concept in candidate_concepts(concepts, row.domain):
            coverage.cells += 1
            (a, source_a), (b, source_b) = table[(k, concept.name)], table[(n + k, concept.name)]
            record[concept.name] = _feature("presence", {"a": {concept.name: a}, "b": {concept.name: b}},
                                            concept.name, coverage)
            details += [{"id": row.id, "part": "a", "concept": concept.name, "value": a, "source": source_a},
                        {"id": row.id, "part": "b", "concept": concept.name, "value": b, "source": source_b}]
        records.append(record)
    return Representation(pd.DataFrame(records, columns=["id", *concepts.names]), coverage,
                          pd.DataFrame(details, columns=DETAIL_COLUMNS), [s.to_dict() for s in summaries])


def _feature(scheme: str, parts: dict[str, dict[str, float]], name: str, coverage: Coverage) -> float:
    """Combine the per-part answers into one feature value (NaN when an answer is missing)."""
    if scheme == "comp":
        first, second = parts.get("ab", {}).get(name, math.nan), parts.get("ba", {}).get(name, math.nan)
        if math.isnan(first) or math.isnan(second):
            coverage.missing += 1
            return math.nan
        # 1 means "response 1 shows it more": A in order ab, B in order ba.
        as_a = {1.0: 1.0, 2.0: -1.0, 0.0: 0.0}[first]
        as_a_swapped = {1.0: -1.0, 2.0: 1.0, 0.0: 0.0}[second]
        if as_a != as_a_swapped:
            coverage.order_disagreements += 1
            return 0.0
        return as_a
    a, b = parts.get("a", {}).get(name, math.nan), parts.get("b", {}).get(name, math.nan)
    if math.isnan(a) or math.isnan(b):
        coverage.missing += 1
        return math.nan
    if scheme == "score":
        if a == 0 or b == 0:  # not applicable to one of them: no difference to explain
            return 0.0
        return (a - b) / 6.0
    return a - b


def represent(pairs: pd.DataFrame, concepts: ConceptSet, client: LLMClient, settings: RepresentSettings, *,
              batch_size: int = 256, progress: Callable[[LLMResponse], None] | None = None) -> Representation:
    """Represent all pairs, batch by batch (each batch answered concurrently).

    The distilled labeler takes all pairs as one batch: its model learns from a sample of them.
    """
    if settings.labeler == "distilled":
        return client.run(represent_distilled(pairs, concepts, client, settings, progress))  # type: ignore[no-any-return]
    features, details = [], []
    coverage = Coverage()
    for result in client.run(_overlapping_batches(pairs, concepts, client, settings, batch_size, progress)):
        features.append(result.features)
        details.append(result.details)
        coverage.add(result.coverage)
    frame = pd.concat(features, ignore_index=True) if features else pd.DataFrame(columns=["id", *concepts.names])
    detail = pd.concat(details, ignore_index=True) if details else pd.DataFrame()
    return Representation(frame, coverage, detail)


async def _overlapping_batches(pairs: pd.DataFrame, concepts: ConceptSet, client: LLMClient,
                               settings: RepresentSettings, batch_size: int,
                               progress: Callable[[LLMResponse], None] | None) -> list[Representation]:
    """:func:`represent_batch` on each batch in one event loop, the next batch queued while one drains.

    Batch by batch, the requests in flight fell to zero at the end of each batch, and each batch
    opened new connections in a new event loop; with at least a batch's worth of pairs queued behind
    the one draining, the client's limit stays busy (with :func:`batch_bounds`' small first and last
    batches, several are queued at once). The client's semaphore still bounds the requests in flight;
    results come in batch order.
    """
    pending: collections.deque[tuple[int, asyncio.Future[Representation]]] = collections.deque()
    queued = 0  # pairs in the pending batches
    results: list[Representation] = []
    try:
        for start, stop in batch_bounds(len(pairs), batch_size):
            batch = pairs.iloc[start:stop]
            pending.append((stop - start, asyncio.ensure_future(
                represent_batch(batch, concepts, client, settings, progress))))
            queued += stop - start
            while queued - pending[0][0] >= batch_size:  # a batch's worth queued behind the oldest
                size, oldest = pending.popleft()
                results.append(await oldest)
                queued -= size
        while pending:
            results.append(await pending.popleft()[1])
    except BaseException:
        for _, task in pending:
            task.cancel()
        await asyncio.gather(*(task for _, task in pending), return_exceptions=True)
        raise
    return results


def batch_bounds(n: int, size: int, smallest: int = 8) -> list[tuple[int, int]]:
    """(start, stop) of the batches of ``n`` pairs: ``size`` pairs each, with sizes doubling from
    ``smallest`` at the start and halving down to it at the end.

    Calls start only once their batch is built, and the run ends only once the last batch's features
    are assembled; small first and last batches keep both waits short (building 256 pairs' requests
    took about 35 ms and assembling their features about 12 ms, 8 pairs about 1 ms each;
    benchmarks/bench_concurrency.py), while the middle keeps the size asked for.
    """
    ramp: list[int] = []
    step = max(1, smallest)
    while step < size:
        ramp.append(step)
        step *= 2
    left = n
    head: list[int] = []
    tail: list[int] = []
    for part in (head, tail):
        for step in ramp:
            if left <= 0:
                break
            part.append(min(step, left))
            left -= part[-1]
    middle = [size] * (left // size) + ([left % size] if left % size else [])
    bounds, start = [], 0
    for length in head + middle + tail[::-1]:
        bounds.append((start, start + length))
        start += length
    return bounds


def estimate_tokens(requests: Sequence[LLMRequest]) -> dict[str, int]:
    """Calls and a rough token estimate (4 characters a token) for a list of requests."""
    prompt = sum(sum(len(m.content) for m in r.messages) for r in requests) // 4
    completion = sum(r.max_tokens for r in requests)
    return {"calls": len(requests), "prompt_tokens_est": int(prompt), "completion_tokens_max": int(completion)}


def agreement_with_truth(details: pd.DataFrame, truth_presence: dict[str, dict[str, set[str]]]) -> pd.DataFrame:
    """Per concept, how often presence answers (p >= 0.5) match known presence; for the demo data."""
    rows = []
    for (concept,), group in details.groupby(["concept"]):
        hits, total = 0, 0
        for record in group.itertuples(index=False):
            if record.part not in ("a", "b") or np.isnan(record.value):
                continue
            truly = concept in truth_presence[record.id][record.part]
            hits += int((record.value >= 0.5) == truly)
            total += 1
        rows.append({"concept": concept, "checks": total, "accuracy": hits / total if total else math.nan})
    return pd.DataFrame(rows)


def concept_statistics(details: pd.DataFrame, pairs: pd.DataFrame) -> list[dict[str, Any]]:
    """Per concept, from per-response values (Presence-rep and Score-rep): how often it is present,
    how much it varies, how much of it is response length (correlation with log word count), and
    which measured concept (lists, code, refusals, ...; length aside) its values follow most.

    A concept whose values follow length closely (|r| >= 0.5) is flagged: its weight may be
    length's weight in disguise; fit with ``--control length`` to read it net of length. The
    closest measured concept checks the LLM's reading where a rule measures the same thing (an LLM
    "uses a numbered list" against the count of list items), and shows a concept that duplicates one.
    """
    from .measured import closest, correlation, response_table

    if details.empty or not details["part"].isin(["a", "b"]).all():
        return []
    index = {key: k for k, key in enumerate([(i, part) for part in "ab" for i in pairs["id"].tolist()])}
    sides = [response_table(pairs[column]) for column in ("response_a", "response_b")]  # a side at a time
    measured = {name: np.concatenate([side[name] for side in sides]) for name in sides[0]}
    length = measured.pop("length")  # log words (CJK characters count one each)
    out = []
    for concept, group in details.groupby("concept", sort=False):
        values = group["value"].to_numpy(float)
        rows = np.array([index.get(key, -1) for key in zip(group["id"], group["part"], strict=True)])
        ok = ~np.isnan(values) & (rows >= 0)
        enough = ok.sum() > 2
        r = correlation(values[ok], length[rows[ok]]) if enough else None
        name, r_measured = (closest(values[ok], {n: feature[rows[ok]] for n, feature in measured.items()})
                            if enough else (None, None))
        present = values[~np.isnan(values)]
        out.append({"concept": concept, "responses": int(len(values)),
                    "base_rate": round(float(np.mean(present >= 0.5)), 3) if len(present) else None,
                    "spread": round(float(np.std(present)), 3) if len(present) else None,
                    "length_correlation": None if r is None else round(r, 3),
                    "mostly_length": bool(r is not None and abs(r) >= 0.5),
                    "closest_measured": name,
                    "measured_correlation": None if r_measured is None else round(r_measured, 3),
                    "llm_answers": int((group["source"] == "llm").sum())})
    return out

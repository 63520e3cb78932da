"""Distilled representation: the LLM labels a sample, a light model labels the rest.

For each concept (Presence-rep: one response, one concept, P(Yes)):

1. **Seed**: the LLM answers for a random sample of the responses, stratified by domain
   (``seed_share`` of them, at least ``seed_min``); the same responses for every concept, so that a
   local runtime reuses each response's prompt cache across concepts. Answers already in the LLM
   cache join it at no call (``use_cached``): discovery's checks of a concept, half of them on
   responses that carry its evidence, are what a rare concept's seed lacks most.
2. **Learn**: a ridge regression on the responses' sentence embeddings (all-MiniLM-L6-v2), their
   log length and the measured concepts' values (list items, code, questions, ...) predicts logit
   P(Yes). A small model's P(Yes) leans to "Yes" (on the demo data most answers are above 0.5),
   so the *ranking* carries the information: the model learns the value, not a Yes/No threshold.
   Its agreement with the LLM is the cross-validated correlation on the seed (a random sample, so
   the estimate is unbiased, but for the cached answers that joined it).
3. **Ask again where unsure**: a committee of ridge fits on bootstrap resamples of the answered
   cells predicts every open cell; over ``rounds`` rounds the cells where the committee disagrees
   most go to the LLM, until ``budget_share`` of the concept's responses have an LLM answer. The
   responses unsure for the most concepts (spreads summed, each on its concept's scale) go first,
   asked about every concept unsure on them, so that a local runtime reads each response once.
4. **Fall back**: a concept whose cross-validated correlation is below ``min_correlation`` after the
   seed first gets a second random sample of the same size (a correlation from a few dozen answers
   is noisy: on the demo data the concepts that fell back changed with the random seed); if it is
   still below on both samples, the LLM answers it on every response, as ``--labeler llm`` does.

A response's value is the LLM's P(Yes) where it was asked, else the model's prediction (on the same
0-1 scale); the pair feature is value(A) - value(B) as in Presence-rep. Every value's source
(``llm`` or ``predicted``) is kept in ``representation_details.parquet``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .concepts import Concept, ConceptSet
from .llm.base import LLMRequest, LLMResponse
from .llm.client import LLMClient


@dataclass
class DistillSettings:
    """How much to ask the LLM, and when to trust the model that predicts the rest."""

    seed_share: float = 0.15
    seed_min: int = 20
    budget_share: float = 0.15  # at most this share of a concept's responses asked, fallback aside
    rounds: int = 2
    committee: int = 5  # bootstrap ridge fits whose disagreement marks an unsure cell
    min_correlation: float = 0.4  # cross-validated correlation with the LLM below which a concept falls back
    second_sample: bool = True  # below it after the seed: first a second random sample of the seed's size
    use_cached: bool = True  # answers already in the cache (discovery's checks) join the seed, at no call
    random_state: int = 0


UNCERTAIN_BELOW = 0.7
"""A concept whose values are mostly predicted, by a model whose cross-validated correlation with the
LLM's answers is below this, has uncertain labels: the model reproduces less than half (r^2 < 0.49) of
how the LLM's answers vary, so its weight rests on values the LLM might not give. Reports mark it."""


def uncertain_labels(entry: dict[str, Any]) -> bool:
    """Whether a concept's distillation summary (:meth:`ConceptDistillation.to_dict`, as in
    ``representation.json``) leaves its values uncertain: most of them predicted (not asked), by a
    model whose cross-validated correlation with the LLM is below :data:`UNCERTAIN_BELOW` or unknown."""
    asked, predicted = int(entry.get("llm") or 0), int(entry.get("predicted") or 0)
    if entry.get("fallback") or predicted <= asked:
        return False
    r = entry.get("cv_correlation")
    return r is None or float(r) < UNCERTAIN_BELOW


@dataclass
class ConceptDistillation:
    """What happened to one concept."""

    concept: str
    responses: int
    asked: int = 0
    predicted: int = 0
    cv_correlation: float | None = None
    second_sample: int = 0  # responses of a second random sample, when the seed alone fell short
    fallback: str | None = None  # why every response was asked, if it was

    def to_dict(self) -> dict[str, Any]:
        entry = {"concept": self.concept, "responses": self.responses, "llm": self.asked, "predicted": self.predicted,
                 "cv_correlation": None if self.cv_correlation is None else round(self.cv_correlation, 3),
                 "second_sample": self.second_sample, "fallback": self.fallback}
        return {**entry, "uncertain": uncertain_labels(entry)}


@dataclass
class ResponseFeatures:
    """What the light model sees of each response, computed once for all concepts."""

    base: np.ndarray  # (responses, k): the leading principal components of the response embedding, the measured values
    sentences: list[np.ndarray]  # per response: its sentences' embeddings (rows)
    embedding: np.ndarray  # (responses, 384)
    lowered: list[str]  # the texts in lower case (for a concept's phrases)

    def for_concept(self, concept: Concept) -> np.ndarray:
        """``base`` plus the concept's similarity to the response: to its closest sentence, the mean of
        the two closest, and to the whole response (all-MiniLM-L6-v2 cosine with the definition).
        A concept usually lives in one sentence, so the closest sentence says most; with a few dozen
        LLM answers per concept, a few such features learn far better than 384 raw dimensions.

        A concept with ``phrases`` also gets whether the response contains one (words in order,
        anything but letters and digits between them, case-insensitive); one with ``examples``, the
        cosine of the response's closest sentence with its closest example. Discovery records both
        from the evidence it found the concept by: a generic definition ("Cost estimate") embeds far
        from the sentences that carry it on the data, its evidence does not."""
        from .embeddings import embed

        target = embed([f"{concept.name}: {concept.definition or concept.name}"])[0]
        closest, two = np.zeros(len(self.sentences)), np.zeros(len(self.sentences))
        for i, vectors in enumerate(self.sentences):
            if len(vectors):
                similarity = np.sort(vectors @ target)[::-1]
                closest[i], two[i] = similarity[0], similarity[:2].mean()
        columns = [closest, two, self.embedding @ target]
        if concept.phrases:
            columns.append(contains_phrase(self.lowered, concept.phrases))
        if concept.examples:
            examples = embed(concept.examples)
            columns.append(np.array([float((vectors @ examples.T).max()) if len(vectors) else 0.0
                                     for vectors in self.sentences]))
        return np.hstack([self.base, np.column_stack(columns)])


def contains_phrase(lowered: list[str], phrases: list[str]) -> np.ndarray:
    """1.0 where a (lower-cased) text contains one of ``phrases`` as whole words, else 0.0."""
    import re

    words = [re.findall(r"\w+", p.lower()) for p in phrases]
    pattern = re.compile("|".join(r"\b" + r"\W+".join(map(re.escape, w)) + r"\b" for w in words if w) or r"(?!)")
    return np.array([pattern.search(text) is not None for text in lowered], float)


def response_features(texts: list[str], components: int = 16) -> ResponseFeatures:
    """Sentence embeddings of every response and of its sentences (each unique text embedded once)."""
    from .embeddings import embed
    from .evidence import sentences
    from .measured import response_table

    split = [sentences(t) or [t] for t in texts]
    unique = list(dict.fromkeys([*texts, *(s for parts in split for s in parts)]))
    vectors = dict(zip(unique, embed(unique), strict=True))
    embedding = np.stack([vectors[t] for t in texts])
    centred = embedding - embedding.mean(axis=0)
    k = max(1, min(components, len(texts) - 1, embedding.shape[1]))
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    # log length as the measured length concept counts words, and every other measured concept's value
    # (list items, code, questions, numbers, hedging words, ...): what a rule reads, the model need not learn
    measured = response_table(texts)
    base = np.hstack([centred @ vt[:k].T, np.column_stack(list(measured.values()))])
    return ResponseFeatures(base, [np.stack([vectors[s] for s in parts]) for parts in split], embedding,
                            [t.lower() for t in texts])


def seed_responses(domains: np.ndarray, share: float | None = None, random_state: int = 0,
                   eligible: np.ndarray | None = None) -> np.ndarray:
    """The seed: a random sample of ``share`` of the ``eligible`` responses (default all), stratified by
    domain, as sorted response indices. Discovery's verify step prefers these responses, so that in
    one run the LLM has read them (a local runtime keeps them in its prompt cache) before
    representation asks about them."""
    eligible = np.arange(len(domains)) if eligible is None else eligible
    share = DistillSettings.seed_share if share is None else share
    rng = np.random.default_rng(random_state)
    return _seed(eligible, domains, math.ceil(share * len(eligible)), rng)


def _seed(eligible: np.ndarray, domains: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random sample of ``eligible`` response indices, stratified by domain."""
    chosen = []
    for domain in sorted(set(domains[eligible])):
        members = eligible[domains[eligible] == domain]
        take = max(1, round(size * len(members) / len(eligible)))
        chosen.append(rng.choice(members, size=min(take, len(members)), replace=False))
    return np.sort(np.concatenate(chosen)) if chosen else eligible[:0]


_ALPHAS = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
_PROBE_CHUNK = 10_000  # requests built at once when looking for answers already in the cache


def logit(p: np.ndarray | float) -> np.ndarray:
    """P(Yes) on the logit scale, clipped to [0.01, 0.99] first (a small model answers 0.999 often)."""
    p = np.clip(p, 0.01, 0.99)
    return np.log(p / (1 - p))


def _ridge() -> Any:
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), RidgeCV(alphas=_ALPHAS))


def _regressor(X: np.ndarray, t: np.ndarray) -> Any:
    return _ridge().fit(X, t)


def _cv_correlation(X: np.ndarray, t: np.ndarray, random_state: int) -> float | None:
    """Correlation of 5-fold cross-validated predictions with the LLM's logit P(Yes); None when t is constant."""
    from sklearn.model_selection import KFold, cross_val_predict

    if len(t) < 10 or np.std(t) < 1e-6:
        return None
    predicted = cross_val_predict(_ridge(), X, t,
                                  cv=KFold(n_splits=5, shuffle=True, random_state=random_state))
    if np.std(predicted) < 1e-9:
        return 0.0
    return float(np.corrcoef(predicted, t)[0, 1])


def _committee_spread(X: np.ndarray, t: np.ndarray, X_open: np.ndarray, size: int,
                      rng: np.random.Generator) -> np.ndarray:
    """Standard deviation, over ridge fits on bootstrap resamples, of each open cell's prediction."""
    predictions = []
    for _ in range(size):
        rows = rng.integers(0, len(t), len(t))
        predictions.append(_regressor(X[rows], t[rows]).predict(X_open))
    return np.std(predictions, axis=0)


async def distill_values(texts: list[str], items: list[str], domains: np.ndarray, concepts: ConceptSet,
                         client: LLMClient, settings: DistillSettings, *, seed: int = 0,
                         progress: Callable[[LLMResponse], None] | None = None,
                         features: np.ndarray | ResponseFeatures | None = None,
                         prompts: list[str] | None = None) -> tuple[pd.DataFrame, list[ConceptDistillation]]:
    """Presence values for every (response, concept) whose concept belongs to the response's domain.

    ``texts``, ``items`` (cache labels such as ``ID:a``), ``domains`` and ``prompts`` (the user's
    request, shown for a concept that ``needs_prompt``) are per response. Returns
    rows ``response, concept, value, source`` and a summary per concept.
    """
    from .represent import presence_probability, presence_request

    rng = np.random.default_rng(settings.random_state)
    seen = response_features(texts) if features is None else features
    inputs = {c.name: (seen.for_concept(c) if isinstance(seen, ResponseFeatures) else seen)
              for c in concepts.concepts}
    values = {c.name: np.full(len(texts), np.nan) for c in concepts.concepts}
    source = {c.name: np.array([""] * len(texts), dtype=object) for c in concepts.concepts}
    eligible = {c.name: np.flatnonzero([c.belongs_to(str(d)) for d in domains]) for c in concepts.concepts}
    summaries = {c.name: ConceptDistillation(c.name, len(eligible[c.name])) for c in concepts.concepts}

    def request(concept: Concept, i: int) -> LLMRequest:
        return presence_request(concept, texts[i], items[i], seed, prompt=prompts[i] if prompts else None)

    async def ask(pending: list[tuple[Concept, int]]) -> None:
        """LLM answers for (concept, response) cells, response-major so a response's prompt cache is reused."""
        pending = sorted(pending, key=lambda cell: (cell[1], cell[0].name))
        requests = [request(concept, i) for concept, i in pending]
        answers = await client.amap(requests, None, progress)
        for (concept, i), answer in zip(pending, answers, strict=True):
            values[concept.name][i] = presence_probability(answer)
            source[concept.name][i] = "llm"

    # 1. the seed: the same responses for every concept (within its domains), topped up to seed_min
    #    for a concept of few domains from the extra responses drawn for another such concept
    all_eligible = np.unique(np.concatenate(list(eligible.values()))) if eligible else np.array([], int)
    seed_rows = set(seed_responses(domains, settings.seed_share, settings.random_state, all_eligible).tolist())
    cells = []
    for concept in concepts.concepts:
        rows = eligible[concept.name]
        chosen = [int(i) for i in rows if i in seed_rows]
        if len(chosen) < min(settings.seed_min, len(rows)):
            extra = [int(i) for i in rows if i not in seed_rows]
            added = rng.choice(extra, size=min(len(extra), settings.seed_min - len(chosen)), replace=False)
            seed_rows.update(int(i) for i in added)
            chosen += [int(i) for i in added]
        cells += [(concept, i) for i in chosen]
    if settings.use_cached:  # answers paid for already (discovery's checks of a concept): free, so used
        chosen_cells = set((c.name, i) for c, i in cells)
        others = [(c, int(i)) for c in concepts.concepts for i in eligible[c.name] if (c.name, int(i)) not in chosen_cells]
        for start in range(0, len(others), _PROBE_CHUNK):  # a chunk of requests in memory at a time
            chunk = others[start:start + _PROBE_CHUNK]
            known = client.cached([request(c, i) for c, i in chunk])
            cells += [cell for cell, hit in zip(chunk, known, strict=True) if hit]
    await ask(cells)

    def answered_cells(name: str) -> tuple[np.ndarray, np.ndarray]:
        rows = eligible[name]
        answered = rows[(source[name][rows] == "llm") & ~np.isnan(values[name][rows])]
        return answered, logit(values[name][answered])

    # 1b. a concept the seed could not learn gets a second random sample of the same size (its
    #     cross-validated correlation from a few dozen answers is noisy), then is judged on both
    def learnable(concept: Concept) -> tuple[float | None, str | None]:
        answered, t = answered_cells(concept.name)
        r = _cv_correlation(inputs[concept.name][answered], t, settings.random_state)
        if r is None and len(answered) < 10:
            return r, f"only {len(answered)} seed answers"
        if r is not None and r < settings.min_correlation:
            return r, f"cross-validated correlation with the LLM {r:.2f} < {settings.min_correlation}"
        return r, None

    verdicts = {c.name: learnable(c) for c in concepts.concepts}
    second = []
    order = rng.permutation(len(texts))  # one random order, so that such concepts share their responses
    for concept in concepts.concepts:
        if verdicts[concept.name][1] is not None and settings.second_sample:
            rows = eligible[concept.name]
            size = int(np.sum(source[concept.name][rows] == "llm"))
            open_rows = set(rows[source[concept.name][rows] != "llm"].tolist())
            drawn = [int(i) for i in order if int(i) in open_rows][:size]
            second += [(concept, i) for i in drawn]
            summaries[concept.name].second_sample = len(drawn)
    if second:
        await ask(second)
        retried = {c.name for c, _ in second}
        verdicts.update({c.name: learnable(c) for c in concepts.concepts if c.name in retried})

    fallback: list[tuple[Concept, int]] = []
    models: dict[str, Any] = {}
    for concept in concepts.concepts:
        rows, summary = eligible[concept.name], summaries[concept.name]
        summary.cv_correlation, summary.fallback = verdicts[concept.name]
        if summary.fallback:
            fallback += [(concept, int(i)) for i in rows if source[concept.name][i] != "llm"]
        else:
            answered, t = answered_cells(concept.name)
            models[concept.name] = _regressor(inputs[concept.name][answered], t)

    # 2. ask again where the committee disagrees most, then refit; a response unsure for several
    #    concepts is asked about all of them first, so that a local runtime reads it once (its prompt cache)
    for round_left in range(settings.rounds, 0, -1):
        takes: dict[str, int] = {}
        unsure: dict[str, dict[int, float]] = {}
        for concept in concepts.concepts:
            if concept.name not in models:
                continue
            rows = eligible[concept.name]
            open_rows = rows[source[concept.name][rows] != "llm"]
            budget = int(settings.budget_share * len(rows)) - int(np.sum(source[concept.name][rows] == "llm"))
            take = max(0, math.ceil(budget / round_left))
            if not len(open_rows) or not take:
                continue
            answered, t = answered_cells(concept.name)
            spread = _committee_spread(inputs[concept.name][answered], t, inputs[concept.name][open_rows],
                                       settings.committee, rng)
            scale = float(np.std(t)) or 1.0  # spreads of different concepts on one scale
            takes[concept.name] = take
            unsure[concept.name] = {int(i): float(v) / scale for i, v in zip(open_rows, spread, strict=True)}
        total: dict[int, float] = {}
        for spreads in unsure.values():
            for i, v in spreads.items():
                total[i] = total.get(i, 0.0) + v
        pending: list[tuple[Concept, int]] = []
        for i in sorted(total, key=lambda i: (-total[i], i)):
            for concept in concepts.concepts:
                if takes.get(concept.name, 0) > 0 and i in unsure[concept.name]:
                    pending.append((concept, i))
                    takes[concept.name] -= 1
            if not any(takes.values()):
                break
        if not pending:
            break
        await ask(pending)
        for name in {c.name for c, _ in pending}:
            answered, t = answered_cells(name)
            models[name] = _regressor(inputs[name][answered], t)

    # 3. fallback concepts: the LLM everywhere
    if fallback:
        await ask(fallback)

    records = []
    for concept in concepts.concepts:
        rows, summary = eligible[concept.name], summaries[concept.name]
        if concept.name in models:
            open_rows = rows[source[concept.name][rows] != "llm"]
            if len(open_rows):
                predicted = models[concept.name].predict(inputs[concept.name][open_rows])
                values[concept.name][open_rows] = 1.0 / (1.0 + np.exp(-predicted))
                source[concept.name][open_rows] = "predicted"
        summary.asked = int(np.sum(source[concept.name][rows] == "llm"))
        summary.predicted = int(np.sum(source[concept.name][rows] == "predicted"))
        records += [{"response": int(i), "concept": concept.name, "value": float(values[concept.name][i]),
                     "source": source[concept.name][i]} for i in rows]
    frame = pd.DataFrame(records, columns=["response", "concept", "value", "source"])
    return frame, [summaries[c.name] for c in concepts.concepts]

"""Concept discovery (paper section 1.1), per domain, every LLM call through the cached client.

1. **Subdomains and tasks**: propose from a sample of each domain's queries in batches, keep the
   most frequent; then tag every discovery query with them ('None' allowed).
2. **Batches**: draw a (subdomain, task) pair in proportion to its frequency, then ``batch_size``
   triplets (query, chosen, rejected) that carry it.
3. **Proposals**: ``concepts_per_batch`` concepts per batch, each with a one-sentence description,
   with one of three framings at random (pair, chosen only, rejected only), and in a share of the
   batches the instruction to avoid the ten fixed concepts.
4. **Deduplication**: candidate pairs by overlapping Snowball-stemmed name words (and, optionally,
   by embedding similarity, which catches synonyms); the LLM decides; the more frequent concept
   survives (by number of domains, then of batches). Within domains first, then across them.
5. **Shared or specific**: shared when found in at least ``shared_threshold`` of the domains.
6. **Definitions**: "A high score indicates ...; a low score indicates ...", several per call.
7. **Verify** (``verify_pairs`` > 0; off by default, so that the paper's discovery gives its own
   results): every discovered concept is asked the representation's presence question on both
   responses of up to ``verify_pairs`` labelled pairs of its domains. It is dropped when its answers
   do not vary (P(Yes) spans less than ``verify_min_spread``), or when, on the pairs where the two
   responses' P(Yes) differ by at least 0.2, the response it fires more on wins no more or less often
   than chance (sign test ``|z| < verify_min_z``, the ``z`` of the evidence step). The ten fixed concepts
   are kept (they are asked for). The answers are Presence-rep's requests, so a presence
   representation reads them from the cache.

Counts scale with the data by default (the paper's 300 batches per domain are for 400 discovery
pairs and a strong API model). Discovery labels come from one mechanism (default ``human``).
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, create_model

from .concepts import Concept, ConceptSet
from .data import PairDataset
from .errors import DataError
from .llm.base import LLMRequest, LLMResponse
from .llm.client import LLMClient, structured_request
from .prompts import (
    DEDUP_VERSION,
    DEFINE_VERSION,
    FIXED_CONCEPTS,
    FRAMINGS,
    PROPOSE_VERSION,
    TAG_VERSION,
    TAXONOMY_VERSION,
    dedup_messages,
    define_messages,
    propose_messages,
    tag_messages,
    taxonomy_messages,
)

STAGE = "discover"
NONE = "None"
_STOPWORDS = {"and", "or", "of", "the", "a", "an", "to", "in", "for", "with", "on", "response", "responses"}


@dataclass
class DiscoverySettings:
    """Every count of discovery; ``None`` means "scale with the data"."""

    mechanism: str = "human"
    query_sample: float = 0.1
    query_batch_size: int = 5
    max_subdomains: int = 10
    max_tasks: int = 10
    batches_per_domain: int | None = None
    batch_size: int = 5
    concepts_per_batch: int = 10
    avoid_fixed_share: float = 0.5
    shared_threshold: float = 0.5
    definitions_per_call: int = 5
    dedup: Literal["stem", "embedding", "both"] = "stem"
    embedding_threshold: float = 0.75
    include_fixed: bool = True
    seed: int = 0
    verify_pairs: int = 0  # 0: no verification (the paper's discovery)
    verify_min_spread: float = 0.05
    verify_min_z: float = 1.0

    def batches_for(self, n_triplets: int) -> int:
        """Default: 3.75 draws per triplet as in the paper (300 batches of 5 for 400), 2 to 300."""
        if self.batches_per_domain is not None:
            return self.batches_per_domain
        return int(min(300, max(2, math.ceil(3.75 * n_triplets / self.batch_size))))


class Taxonomy(BaseModel):
    domains: list[str] = Field(description="subdomains (topics)")
    tasks: list[str]


class ProposedConcept(BaseModel):
    name: str
    description: str


class Proposals(BaseModel):
    concepts: list[ProposedConcept]


@dataclass
class _Found:
    """A discovered concept while it is being collected and merged."""

    name: str
    descriptions: list[str] = field(default_factory=list)
    domains: set[str] = field(default_factory=set)
    batches: set[str] = field(default_factory=set)

    def frequency(self) -> tuple[int, int]:
        return len(self.domains), len(self.batches)

    def absorb(self, other: _Found) -> None:
        self.descriptions += [d for d in other.descriptions if d not in self.descriptions]
        self.domains |= other.domains
        self.batches |= other.batches


@dataclass
class DiscoveryResult:
    concepts: ConceptSet
    report: dict[str, Any]


def _request(messages: list[tuple[str, str]], template: str, item: str, model: type[BaseModel],
             max_tokens: int, seed: int) -> LLMRequest:
    return structured_request(messages, model, max_tokens=max_tokens, temperature=0.0, seed=seed,
                              template_version=template, stage=STAGE, item=item)


def _clean_name(name: str) -> str:
    name = re.sub(r"\s+", " ", name.strip().strip(".:-*\"'")).strip()
    return name[:60]


def _stems(name: str) -> set[str]:
    import snowballstemmer

    stemmer = snowballstemmer.stemmer("english")
    words = [w for w in re.findall(r"[a-z]+", name.lower()) if w not in _STOPWORDS]
    return set(stemmer.stemWords(words))


def triplets_by_domain(pairs: PairDataset, mechanism: str) -> dict[str, list[tuple[str, str, str, str]]]:
    """Per domain: (id, query, chosen, rejected) for pairs the mechanism did not call a tie."""
    labels = pairs.labels(mechanism)
    out: dict[str, list[tuple[str, str, str, str]]] = {}
    for row, label in zip(pairs.frame.itertuples(index=False), labels, strict=True):
        if label not in ("a", "b"):
            continue
        chosen, rejected = (row.response_a, row.response_b) if label == "a" else (row.response_b, row.response_a)
        out.setdefault(row.domain, []).append((row.id, row.prompt, chosen, rejected))
    return out


async def _taxonomies(client: LLMClient, triplets: dict[str, list[tuple[str, str, str, str]]],
                      settings: DiscoverySettings, rng: random.Random,
                      progress: Callable[[LLMResponse], None] | None) -> dict[str, dict[str, list[str]]]:
    requests, owners = [], []
    for domain, items in triplets.items():
        queries = list(dict.fromkeys(q for _, q, _, _ in items))
        size = min(len(queries), max(settings.query_batch_size, math.ceil(settings.query_sample * len(queries))))
        sample = rng.sample(queries, size)
        for start in range(0, len(sample), settings.query_batch_size):
            chunk = sample[start:start + settings.query_batch_size]
            requests.append(_request(taxonomy_messages(domain, chunk), TAXONOMY_VERSION, f"{domain}:{start}",
                                     Taxonomy, 200, settings.seed))
            owners.append(domain)
    answers = await client.amap(requests, Taxonomy, progress)
    counts: dict[str, tuple[Counter[str], Counter[str]]] = {d: (Counter(), Counter()) for d in triplets}
    for domain, answer in zip(owners, answers, strict=True):
        if answer.ok:
            # ordered de-duplication (not a set): ties in most_common keep this order in every process
            counts[domain][0].update(list(dict.fromkeys(_clean_name(s).title() for s in answer.parsed.domains
                                                        if _clean_name(s))))
            counts[domain][1].update(list(dict.fromkeys(_clean_name(t).lower() for t in answer.parsed.tasks
                                                        if _clean_name(t))))
    return {d: {"subdomains": [s for s, _ in subs.most_common(settings.max_subdomains)],
                "tasks": [t for t, _ in tasks.most_common(settings.max_tasks)]}
            for d, (subs, tasks) in counts.items()}


async def _tags(client: LLMClient, triplets: dict[str, list[tuple[str, str, str, str]]],
                taxonomy: dict[str, dict[str, list[str]]], settings: DiscoverySettings,
                progress: Callable[[LLMResponse], None] | None) -> dict[str, dict[str, tuple[list[str], list[str]]]]:
    requests, models, owners = [], [], []
    for domain, items in triplets.items():
        subs, tasks = taxonomy[domain]["subdomains"], taxonomy[domain]["tasks"]
        sub_enum = Literal[tuple([*subs, NONE])]  # type: ignore[misc,valid-type]
        task_enum = Literal[tuple([*tasks, NONE])]  # type: ignore[misc,valid-type]
        model = create_model("Tags", subdomains=(list[sub_enum], ...),  # type: ignore[valid-type]
                             tasks=(list[task_enum], ...))  # type: ignore[valid-type]
        for query in dict.fromkeys(q for _, q, _, _ in items):
            requests.append(_request(tag_messages(domain, query, subs, tasks), TAG_VERSION, domain, model, 80,
                                     settings.seed))
            models.append(model)
            owners.append((domain, query))
    answers = await client.amap_each(requests, models, progress)
    tags: dict[str, dict[str, tuple[list[str], list[str]]]] = {d: {} for d in triplets}
    for (domain, query), answer in zip(owners, answers, strict=True):
        if answer.ok:
            tags[domain][query] = (list(dict.fromkeys(answer.parsed.subdomains)), list(dict.fromkeys(answer.parsed.tasks)))
        else:
            tags[domain][query] = ([], [])
    return tags


def make_batches(items: list[tuple[str, str, str, str]], tags: dict[str, tuple[list[str], list[str]]],
                 settings: DiscoverySettings, rng: random.Random) -> list[dict[str, Any]]:
    """Batches of triplets sharing a (subdomain, task), drawn in proportion to frequency."""
    carriers: dict[tuple[str, str], list[int]] = {}
    for index, (_, query, _, _) in enumerate(items):
        subs, tasks = tags.get(query, ([], []))
        for sub in dict.fromkeys([*subs, NONE]):
            for task in dict.fromkeys([*tasks, NONE]):
                carriers.setdefault((sub, task), []).append(index)
    combos = sorted(carriers)
    weights = [len(carriers[c]) for c in combos]
    batches = []
    for _ in range(settings.batches_for(len(items))):
        sub, task = rng.choices(combos, weights=weights)[0]
        pool = carriers[(sub, task)]
        chosen = rng.sample(pool, min(settings.batch_size, len(pool)))
        batches.append({"subdomain": sub, "task": task, "triplets": chosen, "framing": rng.choice(FRAMINGS),
                        "avoid_fixed": rng.random() < settings.avoid_fixed_share})
    return batches


def _merge_duplicates(found: list[_Found], verdicts: dict[tuple[int, int], bool]) -> list[_Found]:
    """Union-find over confirmed duplicate pairs; the most frequent concept of each group survives."""
    parent = list(range(len(found)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for (i, j), same in verdicts.items():
        if same:
            parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(found)):
        groups.setdefault(root(i), []).append(i)
    merged = []
    for members in groups.values():
        members.sort(key=lambda i: (found[i].frequency(), -i), reverse=True)
        keeper = found[members[0]]
        for other in members[1:]:
            keeper.absorb(found[other])
        merged.append(keeper)
    return merged


def candidate_pairs(found: list[_Found], mode: str, threshold: float) -> set[tuple[int, int]]:
    """Pairs of concepts that might be duplicates: shared name stems and/or similar embeddings."""
    pairs: set[tuple[int, int]] = set()
    if mode in ("stem", "both"):
        stems = [_stems(f.name) for f in found]
        for i in range(len(found)):
            for j in range(i + 1, len(found)):
                if stems[i] & stems[j]:
                    pairs.add((i, j))
    if mode in ("embedding", "both") and len(found) > 1:
        from .embeddings import embed

        vectors = embed([f"{f.name}: {f.descriptions[0] if f.descriptions else ''}" for f in found])
        similarity = vectors @ vectors.T
        for i, j in zip(*np.nonzero(np.triu(similarity, 1) >= threshold), strict=True):
            pairs.add((int(i), int(j)))
    return pairs


async def _deduplicate(client: LLMClient, found: list[_Found], settings: DiscoverySettings, scope: str,
                       progress: Callable[[LLMResponse], None] | None) -> tuple[list[_Found], dict[str, int]]:
    pairs = sorted(candidate_pairs(found, settings.dedup, settings.embedding_threshold))
    chunk_size = 10
    requests, models, chunks = [], [], []
    for start in range(0, len(pairs), chunk_size):
        chunk = pairs[start:start + chunk_size]
        model = create_model(f"Same{len(chunk)}", **{f"p{k}": (bool, ...) for k in range(1, len(chunk) + 1)})  # type: ignore[call-overload]
        listed = [(f"p{k}", found[i].name, (found[i].descriptions or [""])[0], found[j].name,
                   (found[j].descriptions or [""])[0]) for k, (i, j) in enumerate(chunk, 1)]
        requests.append(_request(dedup_messages(listed), DEDUP_VERSION, scope, model, 12 * len(chunk) + 20,
                                 settings.seed))
        models.append(model)
        chunks.append(chunk)
    answers = await client.amap_each(requests, models, progress)
    verdicts: dict[tuple[int, int], bool] = {}
    for chunk, answer in zip(chunks, answers, strict=True):
        if answer.ok:
            flags = answer.parsed.model_dump()
            for k, pair in enumerate(chunk, 1):
                verdicts[pair] = bool(flags[f"p{k}"])
    merged = _merge_duplicates(found, verdicts)
    return merged, {"candidates": len(pairs), "judged": len(verdicts), "duplicates": sum(verdicts.values()),
                    "before": len(found), "after": len(merged)}


async def _definitions(client: LLMClient, found: list[_Found], settings: DiscoverySettings,
                       progress: Callable[[LLMResponse], None] | None) -> dict[str, str]:
    requests, models, chunks = [], [], []
    for start in range(0, len(found), settings.definitions_per_call):
        chunk = found[start:start + settings.definitions_per_call]
        model = create_model(f"Definitions{len(chunk)}", **{f"c{k}": (str, ...) for k in range(1, len(chunk) + 1)})  # type: ignore[call-overload]
        messages = define_messages([(f"c{k}. {f.name}", f.descriptions) for k, f in enumerate(chunk, 1)])
        requests.append(_request(messages, DEFINE_VERSION, "definitions", model, 70 * len(chunk) + 20, settings.seed))
        models.append(model)
        chunks.append(chunk)
    answers = await client.amap_each(requests, models, progress)
    definitions = {}
    for chunk, answer in zip(chunks, answers, strict=True):
        for k, concept in enumerate(chunk, 1):
            text = answer.parsed.model_dump()[f"c{k}"].strip() if answer.ok else ""
            definitions[concept.name] = text or (concept.descriptions[0] if concept.descriptions else concept.name)
    return definitions


def discovery_labels(pairs: PairDataset, mechanism: str) -> list[str]:
    """The mechanism's labels, checked: the mechanism exists and has at least one non-tie label."""
    if mechanism not in pairs.mechanisms:
        raise DataError(f"discovery needs labels: no mechanism '{mechanism}' in the data "
                        f"(it has: {', '.join(pairs.mechanisms) or 'none'}); choose the one to learn from with "
                        "'discover --mechanism NAME' (in 'run': --discover-mechanism NAME)")
    labels = [str(v) for v in pairs.labels(mechanism)]
    if not any(v in ("a", "b") for v in labels):
        raise DataError(f"mechanism '{mechanism}' has no non-tie labels to learn concepts from")
    return labels


def _discovery_triplets(pairs: PairDataset, mechanism: str) -> dict[str, list[tuple[str, str, str, str]]]:
    discovery_labels(pairs, mechanism)
    return triplets_by_domain(pairs, mechanism)


async def adiscover(pairs: PairDataset, client: LLMClient, settings: DiscoverySettings,
                    progress: Callable[[LLMResponse], None] | None = None) -> DiscoveryResult:
    """Discover concepts from the pairs, per domain, then merge across domains."""
    triplets = _discovery_triplets(pairs, settings.mechanism)
    rng = random.Random(settings.seed)
    taxonomy = await _taxonomies(client, triplets, settings, rng, progress)
    tags = await _tags(client, triplets, taxonomy, settings, progress)

    requests, owners = [], []
    for domain, items in triplets.items():
        for number, batch in enumerate(make_batches(items, tags[domain], settings, rng)):
            chosen = [items[i] for i in batch["triplets"]]
            messages = propose_messages(domain, batch["subdomain"], batch["task"], [t[1:] for t in chosen],
                                        batch["framing"], settings.concepts_per_batch, batch["avoid_fixed"])
            requests.append(_request(messages, PROPOSE_VERSION, f"{domain}:{number}", Proposals,
                                     60 * settings.concepts_per_batch + 40, settings.seed))
            owners.append((domain, f"{domain}:{number}", batch))
    answers = await client.amap(requests, Proposals, progress)
    per_domain: dict[str, dict[str, _Found]] = {d: {} for d in triplets}
    failed_batches = 0
    for (domain, batch_id, _), answer in zip(owners, answers, strict=True):
        if not answer.ok:
            failed_batches += 1
            continue
        for item in answer.parsed.concepts[:settings.concepts_per_batch]:
            name = _clean_name(item.name)
            if not name:
                continue
            entry = per_domain[domain].setdefault(name.lower(), _Found(name))
            description = item.description.strip()
            if description and description not in entry.descriptions:
                entry.descriptions.append(description)
            entry.domains.add(domain)
            entry.batches.add(batch_id)

    dedup_report: dict[str, Any] = {}
    survivors: list[_Found] = []
    for domain, found in per_domain.items():
        merged, dedup_report[domain] = await _deduplicate(client, list(found.values()), settings, domain, progress)
        survivors += merged
    by_name: dict[str, _Found] = {}
    for concept in survivors:  # the same name found in several domains is one concept
        key = concept.name.lower()
        if key in by_name:
            by_name[key].absorb(concept)
        else:
            by_name[key] = concept
    final, dedup_report["across domains"] = await _deduplicate(client, list(by_name.values()), settings, "all", progress)
    fixed_names = {c.name.lower() for c in FIXED_CONCEPTS} if settings.include_fixed else set()
    fixed_hits = {f.name.lower(): f for f in final if f.name.lower() in fixed_names}
    final = [f for f in final if f.name.lower() not in fixed_names]
    final.sort(key=lambda f: (f.frequency(), f.name), reverse=True)
    definitions = await _definitions(client, final, settings, progress)

    n_domains = len(triplets)
    concepts = []
    if settings.include_fixed:
        for fixed in FIXED_CONCEPTS:
            hit = fixed_hits.get(fixed.name.lower())
            concepts.append(Concept(fixed.name, fixed.definition, shared=True, counts={
                "domains": len(hit.domains) if hit else 0, "batches": len(hit.batches) if hit else 0},
                provenance=["fixed", *sorted(hit.batches)] if hit else ["fixed"]))
    for item in final:
        shared = len(item.domains) >= settings.shared_threshold * n_domains
        concepts.append(Concept(item.name, definitions[item.name], shared=shared,
                                domains=[] if shared else sorted(item.domains),
                                counts={"domains": len(item.domains), "batches": len(item.batches)},
                                provenance=sorted(item.batches)))
    verified: list[dict[str, Any]] = []
    candidates: list[dict[str, Any]] = []  # the checked concepts, for the report's list of rejected ones
    if settings.verify_pairs:
        checked = [c for c in concepts if "fixed" not in c.provenance]
        verified = await _verify(client, pairs, checked, settings, progress)
        candidates = [{"name": c.name, "definition": c.definition, "status": v["status"], "verify": v}
                      for c, v in zip(checked, verified, strict=True)]
        dropped = {v["name"] for v in verified if v["status"] != "kept"}
        concepts = [c for c in concepts if c.name not in dropped]
    report = {
        "settings": asdict(settings),
        "verify": verified,
        "taxonomy": taxonomy,
        "batches": {d: sum(1 for o in owners if o[0] == d) for d in triplets},
        "failed_batches": failed_batches,
        "proposed": {d: len(f) for d, f in per_domain.items()},
        "deduplication": dedup_report,
        "concepts": len(concepts),
        "shared": sum(c.shared for c in concepts),
    }
    meta = {"stage": STAGE, "mechanism": settings.mechanism, "domains": sorted(triplets), "report": report}
    if candidates:
        meta["candidates"] = candidates
    return DiscoveryResult(ConceptSet(concepts, meta), report)


async def _verify(client: LLMClient, pairs: PairDataset, concepts: list[Concept], settings: DiscoverySettings,
                  progress: Callable[[LLMResponse], None] | None) -> list[dict[str, Any]]:
    """Step 7: each concept's presence answers on both responses of a random sample of labelled pairs."""
    from .evidence import EvidenceSettings, _sign_test
    from .report import FIRED_THRESHOLD  # a pair differs in a concept where the report says it "fires"
    from .represent import presence_probability, presence_request

    frame = pairs.frame
    labels = np.array(discovery_labels(pairs, settings.mechanism), dtype=object)
    decided = np.flatnonzero((labels == "a") | (labels == "b"))
    # one random order of the labelled pairs: each concept takes the first verify_pairs of its domains, so
    # that concepts share pairs
    order = np.random.default_rng(settings.seed).permutation(decided)
    domains = frame["domain"].astype(str).to_numpy()
    samples = [[int(i) for i in order if concept.belongs_to(domains[i])][:settings.verify_pairs]
               for concept in concepts]
    # response-major, so that a local runtime reads each response once for all concepts
    cells = sorted(((k, i, side) for k, sample in enumerate(samples) for i in sample for side in "ab"),
                   key=lambda cell: (cell[1], cell[2], cell[0]))
    requests = [presence_request(concepts[k], str(frame[f"response_{side}"].iloc[i]), f"{frame['id'].iloc[i]}:{side}",
                                 settings.seed, STAGE, prompt=str(frame["prompt"].iloc[i])) for k, i, side in cells]
    answers = await client.amap(requests, None, progress)
    values = {cell: presence_probability(answer) for cell, answer in zip(cells, answers, strict=True)}
    records = []
    for k, concept in enumerate(concepts):
        answered = [values[(k, i, side)] for i in samples[k] for side in "ab"
                    if not np.isnan(values[(k, i, side)])]
        differences = np.array([values[(k, i, "a")] - values[(k, i, "b")] for i in samples[k]])
        fired = np.where(np.abs(np.nan_to_num(differences)) >= FIRED_THRESHOLD, np.sign(differences), 0.0)
        y = np.array([1.0 if labels[i] == "a" else -1.0 for i in samples[k]])
        # the evidence step's sign test, with its prior
        differing, carrier_won, z_values = _sign_test(fired[:, None], y, EvidenceSettings().prior)
        n_differing, wins, z = int(differing[0]), int(carrier_won[0]), float(z_values[0])
        spread = max(answered) - min(answered) if answered else 0.0
        if not answered:
            status = "rejected: no usable answer"
        elif spread < settings.verify_min_spread:
            status = "rejected: the answers do not vary"
        elif abs(z) < settings.verify_min_z:
            status = (f"rejected: unrelated to the label on the sample (z = {z:+.2f} over {n_differing} pairs "
                      f"that differ in it, needs |z| >= {settings.verify_min_z})")
        else:
            status = "kept"
        records.append({"name": concept.name, "status": status, "pairs": len(differences),
                        "differing": n_differing, "carrier_won": wins, "z": round(z, 3),
                        "spread": round(float(spread), 3)})
    return records


def discover(pairs: PairDataset, client: LLMClient, settings: DiscoverySettings,
             progress: Callable[[LLMResponse], None] | None = None) -> DiscoveryResult:
    """Synchronous :func:`adiscover`."""
    return client.run(adiscover(pairs, client, settings, progress))  # type: ignore[no-any-return]


def plan_calls(pairs: PairDataset, settings: DiscoverySettings) -> dict[str, Any]:
    """Calls discovery will make before deduplication and definitions (which depend on answers)."""
    triplets = _discovery_triplets(pairs, settings.mechanism)
    taxonomy = tags = proposals = 0
    for items in triplets.values():
        queries = len(dict.fromkeys(q for _, q, _, _ in items))
        sampled = min(queries, max(settings.query_batch_size, math.ceil(settings.query_sample * queries)))
        taxonomy += math.ceil(sampled / settings.query_batch_size)
        tags += queries
        proposals += settings.batches_for(len(items))
    verify = (f", then at most {2 * settings.verify_pairs} presence checks per discovered concept to verify it"
              if settings.verify_pairs else "")
    return {"taxonomy": taxonomy, "tagging": tags, "proposals": proposals,
            "then": "deduplication (one call per 10 candidate pairs) and definitions (one per "
                    f"{settings.definitions_per_call} concepts){verify}"}

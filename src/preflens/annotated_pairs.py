"""AnnotatedPairs: the JSON format that Inverse Constitutional AI (ICAI) writes and Feedback Forensics reads.

Format 2.0 (``inverse_cai.data.annotated_pairs_format``, read by ``feedback_forensics.data.loader``)::

    {"metadata": {"version": "2.0", "dataset_name": ..., "default_annotator": ANNOTATOR_ID,
                  "available_metadata_keys_per_comparison": [...]},
     "annotators": {ANNOTATOR_ID: {"name": ..., "description": ..., "type": "principle" | "human" | ...}},
     "comparisons": [{"id": ..., "prompt": ..., "response_a": {"text": ..., "model": ...}, "response_b": {...},
                      "annotations": {ANNOTATOR_ID: {"pref": "a" | "b" | null, "no_pref_reason": ...}},
                      "metadata": {KEY: VALUE}}]}

Format 1.0 has ``text_a`` and ``text_b`` strings instead of the response objects; it is read too.

How the two models of the data map onto each other:

- an annotator of type ``principle`` (ICAI's "Select the response that ...") is a **concept**, and
  its votes are the concept's pair features: ``a`` → +1, ``b`` → -1, no preference → 0, an
  ``invalid`` vote → missing. So a fit can run on votes already paid for, with no LLM call.
- every other annotator (the dataset's own preference, humans, models) is a **mechanism**; its
  ``pref`` is the label (``text_a``/``text_b`` are read as ``a``/``b``; ``"tie"`` is a tie; no
  preference is a missing label).
- ``non_preference_principle`` annotators (values, not preferences) have no place in preflens and
  are left out, with a note.
- the domain is a comparison metadata key (``--domain-key``, default ``domain`` when present).

What preflens writes that AnnotatedPairs cannot carry as such: a feature's magnitude (Score-rep
and measured concepts are continuous; a vote is a side), a concept's scope (shared or which
domains) and provenance. They are kept in extra keys that ICAI and Feedback Forensics ignore: the
exact feature value as ``"value"`` beside ``"pref"``, and a ``"preflens"`` object on each
annotator; reading a file preflens wrote restores them, so an exported run re-imported fits the
same model. Ties are written as ``{"pref": null, "no_pref_reason": "tie"}``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .concepts import Concept, ConceptSet
from .errors import DataError
from .names import MAX_NAME_CHARS, RESERVED_CONCEPT_NAMES, strip_control

FORMAT_VERSION = "2.0"
PRINCIPLE_PREFIX = "Select the response that"
PROVENANCE = "annotated-pairs"
_PREF = {"a": "a", "b": "b", "text_a": "a", "text_b": "b", "tie": "tie"}


def hash_string(text: str) -> str:
    """ICAI's annotator and comparison ids: the first 8 hex digits of the MD5 of the text."""
    return hashlib.md5(text.encode("utf-8")).hexdigest()[:8]


@dataclass
class ImportedPairs:
    """What an AnnotatedPairs file holds, in preflens's terms."""

    records: list[dict[str, Any]]
    """One per comparison: ``id, domain, prompt, response_a, response_b`` and ``label_<i>`` per mechanism."""
    mechanisms: dict[str, str]
    """Mechanism name -> its label field in ``records``."""
    concepts: ConceptSet
    features: pd.DataFrame
    """``id`` plus one column per concept (the principle votes)."""
    annotator_of: dict[str, str] = field(default_factory=dict)
    """Mechanism or concept name -> the annotator id it came from."""
    notes: list[str] = field(default_factory=list)
    """What was left out or changed, and why."""


def _fail(path: Path, where: str, problem: str) -> DataError:
    return DataError(f"{path}: {where}: {problem} (an AnnotatedPairs file, format 1.0 or 2.0, as ICAI and "
                     "Feedback Forensics write it)")


def _unique(name: str, taken: set[str]) -> str:
    candidate, n = name, 2
    while candidate.lower() in taken:
        candidate, n = f"{name} ({n})", n + 1
    taken.add(candidate.lower())
    return candidate


def _mechanism_name(annotator_id: str, info: dict[str, Any], default_id: str | None, taken: set[str]) -> str:
    if annotator_id == default_id and "human" not in taken and not info.get("preflens"):
        return _unique("human", taken)  # the dataset's own preference is preflens's default mechanism
    raw = strip_control(str(info.get("name") or annotator_id))
    safe = re.sub(r"[^\w .+@=,()-]", "_", raw).strip(" .")[:MAX_NAME_CHARS] or annotator_id
    return _unique(safe if re.match(r"^\w", safe) else f"m_{safe}", taken)


def _concept_from(annotator_id: str, info: dict[str, Any], taken: set[str]) -> Concept:
    own = info.get("preflens") if isinstance(info.get("preflens"), dict) else None
    description = strip_control(str(info.get("description") or ""))
    short = description[len(PRINCIPLE_PREFIX):] if description.startswith(PRINCIPLE_PREFIX) else description
    short = short.strip(" .") or annotator_id
    if own:
        name = str(info.get("name") or short)
        return Concept(name=_unique(name, taken), definition=str(own.get("definition", "")),
                       shared=bool(own.get("shared", True)), domains=[str(d) for d in own.get("domains", [])],
                       provenance=[str(p) for p in own.get("provenance", [])] or [PROVENANCE])
    name = strip_control(str(info.get("name") or short)).replace(":", " -")[:MAX_NAME_CHARS].strip()
    if name.lower() in RESERVED_CONCEPT_NAMES:
        name = f"{name} (principle)"
    return Concept(name=_unique(name, taken), definition=f"The response {short}.", provenance=[PROVENANCE])


def _label(annotation: Any) -> str | None:
    if not isinstance(annotation, dict):
        return None
    pref = annotation.get("pref")
    if pref is None:
        return "tie" if annotation.get("no_pref_reason") == "tie" else None
    return _PREF.get(str(pref).strip().lower())


def _vote(annotation: Any) -> float:
    """A principle's vote as a pair feature: the exact value preflens wrote, else +1 / -1 / 0 / missing."""
    if not isinstance(annotation, dict):
        return 0.0  # no annotation: the principle did not apply
    value = annotation.get("value")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    side = _label(annotation)
    if side in ("a", "b"):
        return 1.0 if side == "a" else -1.0
    return math.nan if annotation.get("no_pref_reason") == "invalid" else 0.0


def read_annotated_pairs(path: str | Path, *, domain_key: str | None = None,
                         default_domain: str = "default") -> ImportedPairs:
    """Read an AnnotatedPairs JSON file into pairs, mechanisms' labels, and principle votes as concepts."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read it: {error}") from error
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: line {error.lineno}: not valid JSON ({error.msg})") from error
    if not isinstance(data, dict) or not isinstance(data.get("comparisons"), list):
        raise _fail(path, "top level", "expected an object with a 'comparisons' list")
    annotators = data.get("annotators") or {}
    if not isinstance(annotators, dict):
        raise _fail(path, "annotators", "expected an object of annotator id -> {name, description, type}")
    metadata = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    version = str(metadata.get("version", "1.0"))
    if version.split(".")[0] not in ("1", "2"):
        raise _fail(path, "metadata.version", f"version {version} is not one preflens reads (1.x or 2.x)")
    v2 = version.startswith("2")
    default_id = metadata.get("default_annotator")
    notes: list[str] = []

    taken_mechanisms: set[str] = set()
    taken_concepts: set[str] = set()
    mechanisms: dict[str, str] = {}  # annotator id -> mechanism name
    concepts: dict[str, Concept] = {}  # annotator id -> concept
    skipped_types: dict[str, int] = {}
    order = sorted(annotators, key=lambda a: a != default_id)  # the default annotator first
    for annotator_id in order:
        info = annotators[annotator_id] if isinstance(annotators[annotator_id], dict) else {}
        kind = str(info.get("type", "unknown"))
        if kind == "principle":
            concepts[annotator_id] = _concept_from(annotator_id, info, taken_concepts)
        elif kind == "non_preference_principle":
            skipped_types[kind] = skipped_types.get(kind, 0) + 1
        else:
            mechanisms[annotator_id] = _mechanism_name(annotator_id, info, default_id, taken_mechanisms)
    for kind, n in skipped_types.items():
        notes.append(f"{n} annotator(s) of type '{kind}' left out: they record values, not preferences")

    comparisons = data["comparisons"]
    if domain_key is None:
        keys = {k for c in comparisons[:1000] if isinstance(c, dict) for k in (c.get("metadata") or {})}
        domain_key = "domain" if "domain" in keys else None
    records: list[dict[str, Any]] = []
    votes: dict[str, list[float]] = {a: [] for a in concepts}
    seen: set[str] = set()
    dropped = {"duplicate id": 0, "no response text": 0}
    label_field = {a: f"label_{i}" for i, a in enumerate(mechanisms)}
    for index, comparison in enumerate(comparisons):
        if not isinstance(comparison, dict):
            raise _fail(path, f"comparisons[{index}]", "expected an object")
        if v2:
            response_a, response_b = comparison.get("response_a"), comparison.get("response_b")
            text_a = response_a.get("text") if isinstance(response_a, dict) else response_a
            text_b = response_b.get("text") if isinstance(response_b, dict) else response_b
        else:
            text_a, text_b = comparison.get("text_a"), comparison.get("text_b")
        if not isinstance(text_a, str) or not isinstance(text_b, str) or not text_a.strip() or not text_b.strip():
            dropped["no response text"] += 1
            continue
        prompt = comparison.get("prompt")
        pair_id = str(comparison.get("id") or hash_string(f"{prompt}|{text_a}|{text_b}"))
        if pair_id in seen:
            dropped["duplicate id"] += 1
            continue
        seen.add(pair_id)
        meta = comparison.get("metadata") if isinstance(comparison.get("metadata"), dict) else {}
        domain = meta.get(domain_key) if domain_key else None
        record: dict[str, Any] = {"id": pair_id, "domain": str(domain) if domain not in (None, "") else default_domain,
                                  "prompt": prompt if isinstance(prompt, str) else "",
                                  "response_a": text_a, "response_b": text_b}
        annotations = comparison.get("annotations") if isinstance(comparison.get("annotations"), dict) else {}
        for annotator_id in mechanisms:
            record[label_field[annotator_id]] = _label(annotations.get(annotator_id))
        for annotator_id in concepts:
            votes[annotator_id].append(_vote(annotations.get(annotator_id)))
        records.append(record)
    for reason, n in dropped.items():
        if n:
            notes.append(f"{n} comparison(s) left out: {reason}")
    unknown = {a for c in comparisons if isinstance(c, dict) for a in (c.get("annotations") or {})} - set(annotators)
    if unknown:
        notes.append(f"{len(unknown)} annotator id(s) used in annotations but not declared in 'annotators' were left "
                     f"out: {', '.join(sorted(unknown)[:5])}")
    if not records:
        raise _fail(path, "comparisons", "no comparison with two response texts")

    concept_set = ConceptSet(list(concepts.values()), {"source": f"principle votes in {path.name}",
                                                       "stage": "import-ap"})
    features = pd.DataFrame({"id": [r["id"] for r in records],
                             **{concepts[a].name: np.array(v, float) for a, v in votes.items()}})
    annotator_of = {name: a for a, name in mechanisms.items()} | {c.name: a for a, c in concepts.items()}
    return ImportedPairs(records, {name: label_field[a] for a, name in mechanisms.items()}, concept_set, features,
                         annotator_of, notes)


def _principle_text(concept: Concept) -> str:
    definition = concept.definition.strip()
    if definition.lower().startswith("the response "):
        return f"{PRINCIPLE_PREFIX} {definition[len('the response '):].rstrip('.')}."
    return f"{PRINCIPLE_PREFIX} shows '{concept.name}'" + (f": {definition.rstrip('.')}." if definition else ".")


def annotated_pairs(frame: pd.DataFrame, mechanisms: list[str], concepts: ConceptSet | None,
                    features: pd.DataFrame | None, *, dataset_name: str, default: str | None = None,
                    judges: set[str] | None = None) -> dict[str, Any]:
    """A run's pairs, labels and concept features as an AnnotatedPairs 2.0 document (a dict to dump as JSON)."""
    from .data import LABEL_PREFIX

    default = default if default in mechanisms else ("human" if "human" in mechanisms else
                                                     (mechanisms[0] if mechanisms else None))
    annotators: dict[str, dict[str, Any]] = {}
    mechanism_ids: dict[str, str] = {}
    for mechanism in mechanisms:
        annotator_id = hash_string(f"preflens mechanism {mechanism}")
        kind = "human" if mechanism == "human" else ("llm_judge" if mechanism in (judges or set()) else "unknown")
        annotators[annotator_id] = {"name": mechanism, "description": f"preflens mechanism '{mechanism}'",
                                    "type": kind, "preflens": {"mechanism": mechanism}}
        mechanism_ids[mechanism] = annotator_id
    concept_ids: dict[str, str] = {}
    for concept in (concepts.concepts if concepts is not None else []):
        text = _principle_text(concept)
        annotator_id = hash_string(text)
        while annotator_id in annotators:  # two concepts with one text: keep both
            annotator_id = hash_string(annotator_id + text)
        annotators[annotator_id] = {"name": concept.name, "description": text, "type": "principle",
                                    "preflens": {"definition": concept.definition, "shared": concept.shared,
                                                 "domains": list(concept.domains),
                                                 "provenance": list(concept.provenance)}}
        concept_ids[concept.name] = annotator_id
    values = (features.set_index("id").reindex(frame["id"]) if features is not None and concept_ids else None)
    comparisons = []
    for row_index, row in enumerate(frame.itertuples(index=False)):
        record = row._asdict()
        annotations: dict[str, dict[str, Any]] = {}
        for mechanism, annotator_id in mechanism_ids.items():
            label = frame[LABEL_PREFIX + mechanism].iat[row_index]
            if label in ("a", "b"):
                annotations[annotator_id] = {"pref": label}
            elif label == "tie":
                annotations[annotator_id] = {"pref": None, "no_pref_reason": "tie"}
        for name, annotator_id in concept_ids.items():
            value = float(values[name].iat[row_index]) if values is not None and name in values else math.nan
            if math.isnan(value):
                annotations[annotator_id] = {"pref": None, "no_pref_reason": "invalid"}
            elif value == 0:
                annotations[annotator_id] = {"pref": None, "no_pref_reason": "not_applicable", "value": 0.0}
            else:
                annotations[annotator_id] = {"pref": "a" if value > 0 else "b", "value": value}
        prompt = record.get("prompt")
        comparisons.append({"id": str(record["id"]), "prompt": prompt if isinstance(prompt, str) and prompt else None,
                            "response_a": {"text": record["response_a"]}, "response_b": {"text": record["response_b"]},
                            "annotations": annotations, "metadata": {"domain": str(record["domain"])}})
    return {"metadata": {"version": FORMAT_VERSION, "dataset_name": dataset_name,
                         "description": "Written by preflens: mechanisms as annotators, concepts as principles",
                         "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                         "default_annotator": mechanism_ids.get(default) if default else None,
                         "available_metadata_keys_per_comparison": ["domain"]},
            "annotators": annotators, "comparisons": comparisons}

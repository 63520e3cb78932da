"""Concept sets: what the concepts are, their definitions, and which domains they belong to.

Saved as ``concepts.json`` (``{"format": "preflens-concepts/1", "concepts": [...]}``); a user can
also write one by hand in JSON or YAML with at least ``name`` and ``definition`` per concept, and
``shared: true`` or a list of ``domains`` (default: shared). ``needs_prompt: true`` marks a concept
that can only be judged with the user's request in view ("answers what was asked"). ``phrases`` (words
that mark it) and ``examples`` (sentences that show it) help distilled representation predict it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError, DataError

CONCEPTS_FORMAT = "preflens-concepts/1"


@dataclass
class Concept:
    """One concept: a short name and a "high score / low score" definition."""

    name: str
    definition: str = ""
    shared: bool = True
    domains: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    provenance: list[str] = field(default_factory=list)
    needs_prompt: bool = False
    """Whether judging it needs the user's request ("answers the question asked"): Presence-rep then shows it."""
    phrases: list[str] = field(default_factory=list)
    """Words or short phrases that mark it (discovery from evidence records its evidence's phrases). Distilled
    representation gives its light model whether a response contains one."""
    examples: list[str] = field(default_factory=list)
    """Sentences that show it (discovery from evidence records its evidence's sentences). Distilled
    representation gives its light model how close a response's closest sentence is to one of them."""

    def belongs_to(self, domain: str) -> bool:
        return self.shared or domain in self.domains


@dataclass
class ConceptSet:
    """An ordered list of concepts (the feature order of every matrix built from it)."""

    concepts: list[Concept]
    meta: dict[str, Any] = field(default_factory=dict)
    lines_: dict[str, int] = field(default_factory=dict, repr=False, compare=False)
    """Line of each concept in the YAML file it was read from (for error messages; not saved)."""

    def __len__(self) -> int:
        return len(self.concepts)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.concepts]

    def shared_mask(self) -> np.ndarray:
        return np.array([c.shared for c in self.concepts], bool)

    def membership(self, domains: list[str]) -> np.ndarray:
        """Boolean (domains x concepts): which concepts belong to which domain."""
        return np.array([[c.belongs_to(d) for c in self.concepts] for d in domains], bool).reshape(len(domains), len(self))

    def to_dict(self) -> dict[str, Any]:
        return {"format": CONCEPTS_FORMAT, "meta": self.meta, "concepts": [asdict(c) for c in self.concepts]}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, ensure_ascii=False, allow_nan=False) + "\n",
                              encoding="utf-8")

    def check_domains(self, domains: list[str], source: str = "concepts") -> None:
        """Raise when a concept lists a domain the data does not have (a typo would silently drop it)."""
        known = set(domains)
        for concept in self.concepts:
            unknown = [d for d in concept.domains if d not in known]
            if unknown:
                where = f"{source} line {self.lines_[concept.name]}" if concept.name in self.lines_ else source
                raise DataError(
                    f"{where}: concept '{concept.name}' lists the domain(s) {', '.join(map(repr, unknown))}, which "
                    f"the data does not have (its domains: {', '.join(domains[:20])}); fix the spelling or "
                    "remove them")

    @classmethod
    def load(cls, path: str | Path, *, allow_empty: bool = False) -> ConceptSet:
        """Read a concepts file (JSON, or YAML for hand-written lists), checking every field.

        An empty list is an error unless ``allow_empty`` (an artifact such as ``measured.json`` may be empty).
        """
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: no such concepts file" if not path.exists() else f"{path}: is not a file")
        if path.stat().st_size > MAX_CONCEPTS_FILE_BYTES:
            raise DataError(f"{path}: {path.stat().st_size:,} bytes is too large for a concepts file "
                            f"(at most {MAX_CONCEPTS_FILE_BYTES:,})")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); re-save it as UTF-8") from None
        lines: list[tuple[int, dict[str, int]]] = []
        if path.suffix.lower() in (".yaml", ".yml"):
            data, node = parse_yaml(text, str(path))
            lines = _item_lines(node)
        else:
            try:
                data = json.loads(text)
            except (ValueError, RecursionError) as exc:
                raise DataError(f"{path}: cannot parse the concepts file as JSON: {exc}"[:400]) from None
        if isinstance(data, dict):
            unknown = sorted(set(map(str, data)) - {"format", "meta", "concepts"})
            if unknown or "concepts" not in data:
                raise DataError(f"{path}: expected a list of concepts, or a mapping with the key 'concepts'; "
                                f"found the key(s) {', '.join(map(repr, unknown or list(map(str, data))))}")
            items = data["concepts"]
        else:
            items = data
        if not isinstance(items, list):
            raise DataError(f"{path}: expected a list of concepts (or {{'concepts': [...]}})")
        if not items and not allow_empty:
            raise DataError(f"{path}: the concept list is empty; give at least one concept with a name and a "
                            "definition")
        concepts, seen, item_lines = [], set(), {}
        for index, item in enumerate(items):
            line, key_lines = lines[index] if index < len(lines) else (0, {})
            where = f"{path} line {line}" if line else f"{path} concept {index + 1}"
            concept = _concept(item, where, key_lines, path)
            if concept.name in seen:
                raise DataError(f"{where}: concept '{concept.name}' appears twice; keep one")
            seen.add(concept.name)
            concepts.append(concept)
            if line:
                item_lines[concept.name] = line
        meta = data.get("meta", {}) if isinstance(data, dict) else {}
        result = cls(concepts, dict(meta) if isinstance(meta, dict) else {})
        result.lines_ = item_lines
        return result


MAX_CONCEPTS_FILE_BYTES = 5_000_000
MAX_YAML_NODES = 200_000
CONCEPT_KEYS = {"name": str, "definition": str, "shared": bool, "domains": list, "counts": dict,
                "provenance": list, "needs_prompt": bool, "phrases": list, "examples": list}


def parse_yaml(text: str, source: str) -> tuple[Any, Any]:
    """Parse YAML safely and boundedly: no tags, no anchors or aliases (a "billion laughs" file), a
    cap on nodes. Returns the data and the composed node tree (for line numbers)."""
    import yaml

    try:
        events = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):  # linear in the text, before anything is built
            events += 1
            if events > MAX_YAML_NODES:
                raise DataError(f"{source}: more than {MAX_YAML_NODES:,} YAML nodes; this is not a hand-written "
                                "list")
            if getattr(event, "anchor", None) is not None:
                raise DataError(f"{source} line {event.start_mark.line + 1}: YAML anchors and aliases (&name, "
                                "*name) are not supported here; write the value out")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise DataError(f"{source}: not valid YAML: {' '.join(str(exc).split())}"[:400]) from None
    try:
        return yaml.safe_load(text), node
    except yaml.YAMLError as exc:  # a tag the safe loader refuses, for example
        raise DataError(f"{source}: not valid YAML: {' '.join(str(exc).split())}"[:400]) from None


def _item_lines(node: Any) -> list[tuple[int, dict[str, int]]]:
    """Per concept of a composed YAML list: its line and the line of each of its keys."""
    import yaml

    if isinstance(node, yaml.MappingNode):
        node = next((value for key, value in node.value if key.value == "concepts"), None)
    if not isinstance(node, yaml.SequenceNode):
        return []
    lines = []
    for item in node.value:
        keys = {str(k.value): k.start_mark.line + 1 for k, _ in item.value} if isinstance(item, yaml.MappingNode) else {}
        lines.append((item.start_mark.line + 1, keys))
    return lines


def _concept(item: Any, where: str, key_lines: dict[str, int], path: Path) -> Concept:
    """One concept from a hand-written item, every key and type checked."""
    import difflib

    from .names import check_concept

    if not isinstance(item, dict):
        raise DataError(f"{where}: each concept must be a mapping with at least 'name' and 'definition'; "
                        f"got {type(item).__name__}")
    for key in item:
        if str(key) not in CONCEPT_KEYS:
            close = difflib.get_close_matches(str(key), CONCEPT_KEYS, n=1) or (
                ["definition"] if str(key) in ("description", "desc", "explanation") else [])
            hint = f"; did you mean '{close[0]}'?" if close else f"; the keys are {', '.join(CONCEPT_KEYS)}"
            line = f"{path} line {key_lines[str(key)]}" if str(key) in key_lines else where
            raise DataError(f"{line}: unknown key '{key}' in a concept{hint}")
    for key, kind in CONCEPT_KEYS.items():
        if key in item and item[key] is not None and not isinstance(item[key], kind):
            line = f"{path} line {key_lines[key]}" if key in key_lines else where
            raise DataError(f"{line}: '{key}' must be {kind.__name__}; got {type(item[key]).__name__}")
    if "name" not in item:
        raise DataError(f"{where}: a concept needs a 'name'")
    try:
        name = check_concept(item["name"], where)
    except ConfigError as exc:
        raise DataError(str(exc)) from None
    definition = (item.get("definition") or "").strip()
    domains = item.get("domains") or []
    if not all(isinstance(d, str) and d.strip() for d in domains):
        raise DataError(f"{where}: 'domains' of '{name}' must be a list of domain names")
    domains = [d.strip() for d in domains]
    shared = item.get("shared")
    if shared is None:
        shared = not domains
    if shared and domains:
        raise DataError(f"{where}: concept '{name}' is 'shared: true' and lists 'domains'; give one of the two")
    counts = item.get("counts") or {}
    provenance = [str(p) for p in item.get("provenance") or []]
    texts = {}
    for key in ("phrases", "examples"):
        values = item.get(key) or []
        if not all(isinstance(v, str) and v.strip() for v in values):
            line = f"{path} line {key_lines[key]}" if key in key_lines else where
            raise DataError(f"{line}: '{key}' of '{name}' must be a list of non-empty strings")
        texts[key] = [v.strip() for v in values]
    return Concept(name=name, definition=definition, shared=bool(shared), domains=domains, counts=dict(counts),
                   provenance=provenance, needs_prompt=bool(item.get("needs_prompt", False)), **texts)

"""Concept sets: what the concepts are, their definitions, and which domains they belong to.

Saved as ``concepts.json`` (``{"format": "preflens-concepts/1", "concepts": [...]}``); a user can
also write one by hand in JSON or YAML with at least ``name`` and ``definition`` per concept, and
``shared: true`` or a list of ``domains`` (default: shared). ``needs_prompt: true`` marks a concept
that can only be judged with the user's request in view ("answers what was asked").
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError

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

    def belongs_to(self, domain: str) -> bool:
        return self.shared or domain in self.domains


@dataclass
class ConceptSet:
    """An ordered list of concepts (the feature order of every matrix built from it)."""

    concepts: list[Concept]
    meta: dict[str, Any] = field(default_factory=dict)

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

    @classmethod
    def load(cls, path: str | Path) -> ConceptSet:
        """Read a concepts file (JSON, or YAML for hand-written lists)."""
        path = Path(path)
        if not path.exists():
            raise DataError(f"{path}: no such concepts file")
        text = path.read_text(encoding="utf-8")
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
        except Exception as exc:  # json and yaml raise their own error types
            raise DataError(f"{path}: cannot parse the concepts file: {exc}") from None
        items = data.get("concepts") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise DataError(f"{path}: expected a list of concepts (or {{'concepts': [...]}})")
        concepts, seen = [], set()
        for index, item in enumerate(items):
            if not isinstance(item, dict) or not str(item.get("name", "")).strip():
                raise DataError(f"{path}: concept {index + 1} needs a 'name'")
            name = str(item["name"]).strip()
            if name in seen:
                raise DataError(f"{path}: concept '{name}' appears twice")
            seen.add(name)
            domains = [str(d) for d in item.get("domains", [])]
            shared = bool(item.get("shared", not domains))
            concepts.append(Concept(name=name, definition=str(item.get("definition", "")), shared=shared,
                                    domains=domains, counts=dict(item.get("counts", {})),
                                    provenance=list(item.get("provenance", [])),
                                    needs_prompt=bool(item.get("needs_prompt", False))))
        return cls(concepts, dict(data.get("meta", {})) if isinstance(data, dict) else {})

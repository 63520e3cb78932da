"""A fitted explanation as a short judge rubric (an ICAI-style constitution): what a mechanism rewards and
penalises, with direction and strength, across domains and per domain.

Each principle is one concept with a non-zero effect: "Prefer the response where: <definition>" (or
"Avoid ..." for a negative effect), with its strength read from P(preferred when the pair differs only in
the concept): slight under 60% (or over 40%), moderate under 70%, strong from 70%. The shared principles
come first; a domain lists only what its own weight changes (the concepts whose domain part is non-zero),
with the concept's whole effect in that domain.
The rubric can be pasted into a judge prompt, or compared with another mechanism's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .concepts import ConceptSet
from .explain import SHARED_SCOPE, GlobalExplanation

RUBRIC_FORMAT = "preflens-rubric/1"


def strength(p_preferred: float) -> str:
    """slight, moderate or strong, by how far P(preferred) is from 50%."""
    gap = abs(p_preferred - 0.5)
    return "strong" if gap >= 0.2 else "moderate" if gap >= 0.1 else "slight"


@dataclass
class Principle:
    """One line of the rubric."""

    scope: str
    concept: str
    direction: str  # "prefer" or "avoid"
    strength: str
    p_preferred: float
    definition: str
    interval: tuple[float, float] | None = None

    @property
    def text(self) -> str:
        verb = "Prefer" if self.direction == "prefer" else "Avoid"
        definition = self.definition.rstrip(".") or self.concept
        return f"{verb} the response where: {definition} ({self.concept})."

    def line(self) -> str:
        interval = f", 95% interval {_pct(self.interval[0])} to {_pct(self.interval[1])}" if self.interval else ""
        return (f"- {self.text} *{self.strength.capitalize()}: the response showing it is preferred "
                f"{_pct(self.p_preferred)} of the time when only it differs{interval}.*")


def _pct(p: float) -> str:
    """A probability in percent that never rounds to a certainty it is not: <1% and >99% at the ends."""
    return "<1%" if p < 0.005 else ">99%" if p > 0.995 else f"{p:.0%}"


@dataclass
class Rubric:
    """The principles of one mechanism, shared first, then per domain."""

    mechanism: str
    pairs: int | None
    principles: list[Principle] = field(default_factory=list)

    def scopes(self) -> list[str]:
        return list(dict.fromkeys(p.scope for p in self.principles))

    def to_markdown(self) -> str:
        about = f" from {self.pairs} pairs" if self.pairs else ""
        lines = [f"# What {self.mechanism} prefers", "",
                 f"A rubric learned by preflens{about}. When comparing two responses:", ""]
        if not self.principles:
            return "\n".join(lines + ["No concept has a non-zero weight: the fit found no reliable preference to "
                                      "write down.", ""])
        for scope in self.scopes():
            lines += ["## In every domain" if scope == SHARED_SCOPE
                      else f"## In {scope}, where it differs from every domain", ""]
            lines += [p.line() for p in self.principles if p.scope == scope] + [""]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """Plain data; ``constitution`` is the principles' texts alone, as ICAI lists them."""
        return {"format": RUBRIC_FORMAT, "mechanism": self.mechanism, "pairs": self.pairs,
                "constitution": [p.text for p in self.principles],
                "principles": [{"scope": p.scope, "concept": p.concept, "direction": p.direction,
                                "strength": p.strength, "p_preferred": round(p.p_preferred, 4),
                                "interval": list(p.interval) if p.interval else None, "text": p.text}
                               for p in self.principles]}


def make_rubric(explanation: GlobalExplanation, concepts: ConceptSet, *, mechanism: str, top: int = 5,
                pairs: int | None = None) -> Rubric:
    """The rubric of a global explanation: per scope, its ``top`` concepts by effect (non-zero only).

    A domain lists the concepts whose domain part is non-zero (what differs from the shared rubric).
    """
    definitions = {c.name: c.definition for c in concepts.concepts}
    frame = explanation.frame
    principles = []
    for scope in explanation.scopes():
        rows = frame[frame["scope"] == scope]
        rows = rows[rows["effect"].abs() > 1e-9]
        if scope != SHARED_SCOPE:
            rows = rows[rows["domain_effect"].abs() > 1e-9]
        for _, row in rows.nsmallest(top, "rank").iterrows():
            interval = ((float(row["p_low"]), float(row["p_high"])) if "p_low" in row and row["p_low"] == row["p_low"]
                        else None)
            p = float(row["p_preferred"])
            principles.append(Principle(scope=str(scope), concept=str(row["concept"]),
                                        direction="prefer" if p > 0.5 else "avoid", strength=strength(p),
                                        p_preferred=p, definition=definitions.get(str(row["concept"]), ""),
                                        interval=interval))
    return Rubric(mechanism, pairs, principles)

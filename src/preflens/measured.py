"""Measured concepts: properties computed from a response's text by a fixed rule, with no LLM.

Length, lists, headings, code, emphasis, links, questions asked back, numbers, refusals, apologies,
hedging, "as an AI" disclaimers, exclamation marks and second-person address: the properties that
judges and annotators are known to reward or punish whatever the content. Each is a
:class:`MeasuredConcept` with a name, a definition, its exact rule, and how the pair feature is made:

- ``count`` concepts: ``tanh(log((1 + n_A) / (1 + n_B)))``, signed and bounded in (-1, 1). The log
  ratio makes the feature scale-free (100 vs 200 words weighs as much as 1,000 vs 2,000), the +1
  keeps zero counts finite, and tanh bounds it so one extreme pair cannot dominate a fit. It is 0
  when the counts are equal and antisymmetric in A and B.
- ``presence`` concepts: ``[A has it] - [B has it]``, in {-1, 0, 1}; for rare phrases (refusals,
  disclaimers) where the count carries no more than the presence.

Every rule is a vectorised pandas string operation, so a batch of pairs is one pass per concept.
The lexicons (refusal, apology, hedging, disclaimer) are text files in ``preflens/lexicons/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

import numpy as np
import pandas as pd

from .concepts import Concept, ConceptSet
from .errors import ConfigError

PROVENANCE = "measured"


@dataclass(frozen=True)
class MeasuredConcept:
    """One measured concept: ``pattern`` is counted in each response (a regex, or a lexicon file)."""

    name: str
    definition: str
    rule: str
    pattern: str
    kind: Literal["count", "presence", "constant"] = "count"
    flags: int = re.MULTILINE
    caseless: bool = False
    """Match the lower-cased text (faster than a case-insensitive regex); the pattern is lower case."""
    minus: str = ""
    """A pattern whose matches are subtracted (list markers from numbers)."""

    def counts(self, texts: pd.Series) -> np.ndarray:
        """How many times the rule matches in each text."""
        texts = texts.fillna("").astype(str)
        if self.name == "length":
            return _word_counts(texts)
        if self.caseless:
            texts = texts.str.lower()
        n = texts.str.count(re.compile(self.pattern, self.flags)).to_numpy(dtype=float)
        if self.minus:
            n -= texts.str.count(re.compile(self.minus, self.flags)).to_numpy(dtype=float)
        return n

    def pair_feature(self, a: pd.Series, b: pd.Series) -> np.ndarray:
        """The pair feature of responses A and B (see the module docstring)."""
        if self.kind == "constant":
            return np.ones(len(a))
        n_a, n_b = self.counts(a), self.counts(b)
        if self.kind == "presence":
            return (n_a > 0).astype(float) - (n_b > 0).astype(float)
        return np.tanh(np.log1p(n_a) - np.log1p(n_b))

    def concept(self) -> Concept:
        how = {"count": "tanh(log((1 + n_A) / (1 + n_B)))", "presence": "[A has it] - [B has it]",
               "constant": "1"}[self.kind]
        return Concept(name=self.name, definition=f"{self.definition} Rule: {self.rule} Pair feature: {how}.",
                       shared=True, provenance=[PROVENANCE])


@cache
def lexicon(name: str) -> tuple[str, ...]:
    """The phrases of a lexicon file (``preflens/lexicons/NAME.txt``), lower case, comments dropped."""
    text = resources.files("preflens").joinpath("lexicons", f"{name}.txt").read_text(encoding="utf-8")
    phrases = (line.split("#", 1)[0].strip().lower() for line in text.splitlines())
    return tuple(p for p in phrases if p)


def _lexicon_pattern(name: str) -> str:
    alternatives = "|".join(re.escape(p).replace("'", "['’]") for p in sorted(lexicon(name), key=len, reverse=True))
    return rf"\b(?:{alternatives})\b"


_UNSPACED = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\u0e00-\u0e7f]")
"""Scripts written without spaces between words (Japanese kana, CJK ideographs, Hangul, Thai)."""
_UNSPACED_TOKEN = re.compile(_UNSPACED.pattern + r"\S*")


def _word_counts(texts: pd.Series) -> np.ndarray:
    """Words: whitespace-separated tokens, plus one per character of a script written without spaces."""
    tokens = texts.map(lambda text: len(text.split())).to_numpy(dtype=float)
    if not texts.str.contains(_UNSPACED).any():
        return tokens
    unspaced_tokens = texts.str.count(_UNSPACED_TOKEN).to_numpy(dtype=float)
    return tokens - unspaced_tokens + texts.str.count(_UNSPACED).to_numpy(dtype=float)

CATALOGUE: tuple[MeasuredConcept, ...] = (
    MeasuredConcept("length", "The response is longer.", "words: whitespace-separated tokens, except that in a "
                    "script written without spaces (CJK, kana, Hangul, Thai) each character is a word; no tokenizer.",
                    ""),
    MeasuredConcept("list_items", "The response uses more list items.",
                    "lines starting with -, *, + or • (bulleted) or a number followed by . or ) (numbered).",
                    r"^[ \t]*(?:[-*+•]|\d{1,3}[.)])[ \t]+\S"),
    MeasuredConcept("headings", "The response has more headings.",
                    "Markdown headings (# to ######) and lines that are a whole bold phrase ending in ':' or not.",
                    r"^[ \t]*(?:#{1,6}[ \t]+\S|\*\*[^*\n]+\*\*:?[ \t]*$)"),
    MeasuredConcept("code_blocks", "The response contains code blocks.",
                    "a fenced code block: a line starting with ``` or ~~~.", r"^[ \t]*(?:```|~~~)", kind="presence"),
    MeasuredConcept("emphasis", "The response uses more bold emphasis.",
                    "**bold** or __bold__ spans within a line and <b>, <strong> or <em> tags; single-star "
                    "italics are left out, as a star is also a bullet and a product sign.",
                    r"\*\*[^*\n]+\*\*|__[^_\n]+__|<(?:b|strong|em)>"),
    MeasuredConcept("links", "The response gives more links.", "http://, https:// or www. (a www. inside an http address counts too).",
                    r"https?://|www\.", caseless=True),
    MeasuredConcept("questions", "The response asks more questions back.", "sentences ending in '?' (or '？').",
                    r"[?？](?=\s|$)"),
    MeasuredConcept("numbers", "The response gives more numbers and quantities.",
                    "numbers, a decimal or thousands separator inside one (1, 2.5, 1,000, 30%), less the numbered "
                    "list markers at the start of a line (1. or 2)).",
                    r"\d+(?:[.,]\d+)*", minus=r"^[ \t]*\d{1,3}[.)][ \t]+\S"),
    MeasuredConcept("refusal", "The response refuses the request.",
                    "a phrase of the refusal lexicon (lexicons/refusal.txt), case-insensitive.",
                    _lexicon_pattern("refusal"), kind="presence", caseless=True),
    MeasuredConcept("apology", "The response apologises.",
                    "a phrase of the apology lexicon (lexicons/apology.txt), case-insensitive.",
                    _lexicon_pattern("apology"), kind="presence", caseless=True),
    MeasuredConcept("hedging", "The response hedges more.",
                    "words and phrases of the hedging lexicon (lexicons/hedging.txt), case-insensitive.",
                    _lexicon_pattern("hedging"), caseless=True),
    MeasuredConcept("ai_disclaimer", "The response has an 'as an AI' disclaimer or defers to a professional.",
                    "a phrase of the disclaimer lexicon (lexicons/disclaimer.txt), case-insensitive.",
                    _lexicon_pattern("disclaimer"), kind="presence", caseless=True),
    MeasuredConcept("exclamations", "The response uses more exclamation marks.", "'!' and '！' characters.",
                    r"[!！]"),
    MeasuredConcept("second_person", "The response addresses the reader more directly.",
                    "the words you, your, yours, yourself, yourselves, case-insensitive.",
                    r"\byour?(?:s|self|selves)?\b", caseless=True),
)
POSITION = MeasuredConcept(
    "position", "Response A is preferred, whatever either says.",
    "a constant 1 on every pair. Not in 'all': chosen by name or as a control (--control position), where it "
    "is HMDR's intercept for the side, read net of every concept.", "", kind="constant")
"""The side: a mechanism that leans to A (or B) whatever the responses say shows a weight here."""
BY_NAME = {m.name: m for m in (*CATALOGUE, POSITION)}


def choose(names: str | list[str] | tuple[str, ...] | None) -> list[MeasuredConcept]:
    """``all`` (or None), ``none``, or a list of names (or one comma-separated string)."""
    if names is None:
        return list(CATALOGUE)
    if isinstance(names, str):
        names = [names]
    names = [n.strip() for item in names for n in item.split(",") if n.strip()]
    if names == ["all"]:
        return list(CATALOGUE)
    if names in ([], ["none"]):
        return []
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        raise ConfigError(f"unknown measured concept(s) {', '.join(unknown)}; choose from: all, none, "
                          + ", ".join(BY_NAME))
    return [BY_NAME[n] for n in dict.fromkeys(names)]


def measure(pairs: pd.DataFrame, concepts: list[MeasuredConcept]) -> pd.DataFrame:
    """The pair features of ``concepts`` for a batch of pairs: ``id`` plus one column per concept."""
    frame = pd.DataFrame({"id": pairs["id"].to_numpy()})
    for concept in concepts:
        frame[concept.name] = concept.pair_feature(pairs["response_a"], pairs["response_b"])
    return frame


def measured_concept_set(concepts: list[MeasuredConcept]) -> ConceptSet:
    return ConceptSet([c.concept() for c in concepts], {"source": "measured"})

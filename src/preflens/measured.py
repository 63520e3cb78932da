r"""Measured concepts: properties computed from a response's text by a fixed rule, with no LLM.

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

Every rule is a vectorised Arrow string kernel (``pyarrow.compute``: RE2 regular expressions and
Unicode whitespace splitting), so a batch of pairs is one pass in C++ per concept; the texts are
converted to Arrow once per batch and lower-cased once for the case-insensitive rules. RE2's ``\b``
and ``\d`` are ASCII-only: a lexicon phrase glued to a non-ASCII letter ("maybeé") still counts.
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
import pyarrow as pa
import pyarrow.compute as pc

from .concepts import Concept, ConceptSet
from .errors import ConfigError

PROVENANCE = "measured"


class Texts:
    """A batch of response texts as an Arrow array, with its lower-cased copy made once when first asked."""

    def __init__(self, texts: pd.Series | list[str] | pa.Array | Texts) -> None:
        if isinstance(texts, Texts):
            self.array, self._lower = texts.array, texts._lower
            return
        if isinstance(texts, pa.Array):
            array = texts.cast(pa.large_string())
        else:
            values = pd.Series(texts, dtype=object) if not isinstance(texts, pd.Series) else texts
            try:
                array = pa.array(values.to_numpy(dtype=object), type=pa.large_string(), from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError):  # not all strings: as pandas would print them
                array = pa.array([v if isinstance(v, str) else "" if pd.isna(v) else str(v) for v in values],
                                 type=pa.large_string())
        # every text starts with a newline: a rule anchored at a line's start begins with \n, not ^, because
        # Arrow's regex count restarts its search after each match as if at the text's start (^ would match there)
        empty, newline = pa.scalar("", pa.large_string()), pa.scalar("\n", pa.large_string())
        self.array: pa.Array = pc.binary_join_element_wise(empty, pc.fill_null(array, ""), newline)
        self._lower: pa.Array | None = None

    def __len__(self) -> int:
        return len(self.array)

    @property
    def lower(self) -> pa.Array:
        if self._lower is None:
            self._lower = pc.utf8_lower(self.array)
        return self._lower


@dataclass(frozen=True)
class MeasuredConcept:
    """One measured concept: ``pattern`` (RE2 syntax) is counted in each response (a regex, or a lexicon file)."""

    name: str
    definition: str
    rule: str
    pattern: str
    kind: Literal["count", "presence", "constant"] = "count"
    caseless: bool = False
    """Match the lower-cased text (made once per batch, shared by every such rule); the pattern is lower case."""
    minus: str = ""
    """A pattern whose matches are subtracted (list markers from numbers)."""

    def counts(self, texts: pd.Series | list[str] | Texts) -> np.ndarray:
        """How many times the rule matches in each text."""
        texts = Texts(texts)
        if self.name == "length":
            return _word_counts(texts.array)
        array = texts.lower if self.caseless else texts.array
        n = _count(array, self.pattern)
        if self.minus:
            n -= _count(array, self.minus)
        return n

    def response_values(self, texts: pd.Series | list[str] | Texts) -> np.ndarray:
        """Each response's value: 1 or 0 for a presence rule, log(1 + n) for a count."""
        n = self.counts(texts)
        return (n > 0).astype(float) if self.kind == "presence" else np.log1p(n)

    def pair_feature(self, a: pd.Series | list[str] | Texts, b: pd.Series | list[str] | Texts) -> np.ndarray:
        """The pair feature of responses A and B (see the module docstring)."""
        if self.kind == "constant":
            return np.ones(len(a))
        difference = self.response_values(a) - self.response_values(b)
        return difference if self.kind == "presence" else np.tanh(difference)

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


_UNSPACED = "[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\u0e00-\u0e7f]"
"""Scripts written without spaces between words (Japanese kana, CJK ideographs, Hangul, Thai)."""
_SPACE = r"[\s\x{85}\x{a0}\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]"
"""Unicode whitespace, as Python's str.split() knows it (RE2's \\s is ASCII only)."""
_UNSPACED_TOKEN = rf"{_SPACE}{_UNSPACED}"
"""A whitespace-separated token that starts with such a character (each text starts with a newline)."""


def _count(array: pa.Array, pattern: str) -> np.ndarray:
    """Non-overlapping matches of ``pattern`` (RE2; ``$`` matches at each line's end) in each text."""
    return pc.count_substring_regex(array, "(?m)" + pattern).to_numpy(zero_copy_only=False).astype(float)


def _word_counts(array: pa.Array) -> np.ndarray:
    """Words: whitespace-separated tokens, plus one per character of a script written without spaces."""
    trimmed = pc.utf8_trim_whitespace(array)
    tokens = pc.list_value_length(pc.utf8_split_whitespace(trimmed)).to_numpy(zero_copy_only=False).astype(float)
    tokens[pc.equal(pc.binary_length(trimmed), 0).to_numpy(zero_copy_only=False)] = 0.0  # "" splits into [""]
    unspaced = _count(array, _UNSPACED)
    if not unspaced.any():
        return tokens
    return tokens - _count(array, _UNSPACED_TOKEN) + unspaced

CATALOGUE: tuple[MeasuredConcept, ...] = (
    MeasuredConcept("length", "The response is longer.", "words: whitespace-separated tokens, except that in a "
                    "script written without spaces (CJK, kana, Hangul, Thai) each character is a word; no tokenizer.",
                    ""),
    MeasuredConcept("list_items", "The response uses more list items.",
                    "lines starting with -, *, + or • (bulleted) or a number followed by . or ) (numbered).",
                    r"\n[ \t]*(?:[-*+•]|\d{1,3}[.)])[ \t]+\S"),
    MeasuredConcept("headings", "The response has more headings.",
                    "Markdown headings (# to ######) and lines that are a whole bold phrase ending in ':' or not.",
                    r"\n[ \t]*(?:#{1,6}[ \t]+\S|\*\*[^*\n]+\*\*:?[ \t]*$)"),
    MeasuredConcept("code_blocks", "The response contains code blocks.",
                    "a fenced code block: a line starting with ``` or ~~~.", r"\n[ \t]*(?:```|~~~)", kind="presence"),
    MeasuredConcept("emphasis", "The response uses more bold emphasis.",
                    "**bold** or __bold__ spans within a line and <b>, <strong> or <em> tags; single-star "
                    "italics are left out, as a star is also a bullet and a product sign.",
                    r"\*\*[^*\n]+\*\*|__[^_\n]+__|<(?:b|strong|em)>"),
    MeasuredConcept("links", "The response gives more links.", "http://, https:// or www. (a www. inside an http address counts too).",
                    r"https?://|www\.", caseless=True),
    MeasuredConcept("questions", "The response asks more questions back.", "sentences ending in '?' (or '？').",
                    r"[?？](?:\s|$)"),
    MeasuredConcept("numbers", "The response gives more numbers and quantities.",
                    "numbers, a decimal or thousands separator inside one (1, 2.5, 1,000, 30%), less the numbered "
                    "list markers at the start of a line (1. or 2)).",
                    r"\d+(?:[.,]\d+)*", minus=r"\n[ \t]*\d{1,3}[.)][ \t]+\S"),
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


def response_table(texts: pd.Series | list[str] | Texts) -> dict[str, np.ndarray]:
    """Every catalogue concept's per-response values (:meth:`MeasuredConcept.response_values`), by name;
    the texts are read once (their lower-cased copy made once for all caseless rules)."""
    shown = Texts(texts)
    return {m.name: m.response_values(shown) for m in CATALOGUE}


def correlation(x: np.ndarray, y: np.ndarray) -> float | None:
    """Pearson's r of two value arrays, or None when either is constant."""
    if np.std(x) == 0 or np.std(y) == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


def closest(values: np.ndarray, features: dict[str, np.ndarray]) -> tuple[str | None, float | None]:
    """(name, r) of the feature whose correlation with ``values`` is largest in size (the first on a tie);
    (None, None) when ``values`` or every feature is constant."""
    best: tuple[str | None, float | None] = (None, None)
    for name, feature in features.items():
        r = correlation(values, feature)
        if r is not None and (best[1] is None or abs(r) > abs(best[1])):
            best = (name, r)
    return best


def measure(pairs: pd.DataFrame, concepts: list[MeasuredConcept]) -> pd.DataFrame:
    """The pair features of ``concepts`` for a batch of pairs: ``id`` plus one column per concept."""
    frame = pd.DataFrame({"id": pairs["id"].to_numpy()})
    side_a, side_b = Texts(pairs["response_a"]), Texts(pairs["response_b"])  # converted once for every concept
    for concept in concepts:
        frame[concept.name] = concept.pair_feature(side_a, side_b)
    return frame


def measured_concept_set(concepts: list[MeasuredConcept]) -> ConceptSet:
    return ConceptSet([c.concept() for c in concepts], {"source": "measured"})

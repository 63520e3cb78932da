"""What separates preferred from rejected responses, found without an LLM (discovery step 1).

Two kinds of evidence, each scored the same way on the labelled pairs:

- **Phrases**: word n-grams (1 to 3 words). A response *carries* a phrase when it contains it.
- **Sentence groups**: the sentences that one response of a pair has and the other lacks (the
  pair's *differential* sentences; what both responses share says nothing about the choice),
  embedded with all-MiniLM-L6-v2, the prompt's topic taken out (each sentence minus the mean of the
  differential sentences under the same prompt), and grouped by agglomerative clustering on cosine
  distance. A
  response carries a group when one of its differential sentences falls in it. This finds what a
  phrase cannot: the safety caveats of different topics share no words but sit close together.

Items are kept when ``|z| >= min_z``; sentence groups that differ in at least ``frequent_share``
of the pairs are kept whatever their z (what varies often is worth naming; the fit decides its
weight). For a carrier set, a pair's feature is carries(A) - carries(B) in {-1, 0, 1}. Among the ``n`` pairs
where exactly one response carries it, ``k`` chose the carrier; the score is the sign test's
``z = (2k - n) / sqrt(n + prior)`` (``prior`` pseudo-pairs shrink small counts towards 0, as an
informative Dirichlet prior does for log-odds). Positive z: the carrier tends to be preferred.
By default an item is scored net of response length (``control_length``): z is the signed root of
the likelihood-ratio test for adding the item to a logistic model of the label on length alone
(see ``_net_of``), close to the sign test's z when length says nothing. Any added sentence makes a
response longer, so where labels follow length (they often do: judges and annotators favour longer
answers) every neutral sentence would otherwise look like evidence, and the concepts that go against
length would look weaker than they are. A deciding phrase that adds words keeps a large z as long as
response lengths also vary for other reasons; where the phrase is the only thing that changes the
length, the labels cannot tell the two apart and its z is small.
Evidence is mined per domain and over all domains; items whose pair values agree (correlation,
either sign) are one item, the stronger kept. Everything here is deterministic given the data.
Discovery mines a sample of the pairs (``EvidenceDiscoverySettings.max_pairs``): the clustering is
quadratic in the number of differential sentences.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

Source = Literal["phrase", "sentences"]
_WORD = r"(?u)\b[^\W\d_][\w'-]*\b|\b\d[\d.,]*\b"
_SENTENCE_END = re.compile(r"(?<=[.!?])(?<!\d\.)\s+|\n+")  # not after a list number such as "1."


@dataclass
class EvidenceSettings:
    """How evidence is mined and scored."""

    ngram_max: int = 3
    min_pairs: int = 4  # a phrase or group must differ between the responses of at least this many pairs
    prior: float = 4.0  # pseudo-pairs in the z denominator
    min_z: float = 1.0
    max_items: int = 24  # evidence items with |z| >= min_z kept (the strongest first)
    sentences: bool = True  # also sentence groups (needs the embedding model)
    cluster_distance: float = 0.8  # cosine distance within a sentence group (average linkage)
    same_evidence: float = 0.7  # |correlation| of pair values above which two items are one
    frequent_share: float = 0.15  # sentence groups differing in this share of pairs are kept whatever their z
    max_frequent: int = 8  # of those, at most this many (the most frequent first)
    control_length: bool = True  # score each item net of response length (a likelihood-ratio test)


@dataclass
class Evidence:
    """One piece of evidence: a carrier set of responses and how it relates to the label."""

    source: Source
    domain: str | None  # None: mined over all domains
    examples: list[str]  # the phrases, or sentences of the group, strongest first
    z: float
    pairs: int  # pairs whose responses differ in carrying it
    wins: int  # of those, pairs the carrier won
    carriers: np.ndarray = field(repr=False)  # bool per response (2 per pair: A rows then B rows)

    @property
    def win_rate(self) -> float:
        return self.wins / self.pairs if self.pairs else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "domain": self.domain, "examples": self.examples[:5],
                "z": round(self.z, 3), "pairs": self.pairs, "carrier_won": self.wins,
                "win_rate": round(self.win_rate, 3), "responses": int(self.carriers.sum())}


def sentences(text: str) -> list[str]:
    """Split a response into sentences and lines (list items, headings and code lines stay whole)."""
    return [s.strip() for s in _SENTENCE_END.split(text) if len(s.strip()) >= 3]


def _ngrams(text: str, n_max: int) -> list[str]:
    """The word n-grams (1 to ``n_max`` words, lower case) within each sentence of a text: an n-gram
    across a sentence end ("holds up well. Keeping notes" -> "well keeping") is an accident of which
    sentences happen to follow each other, not a phrase."""
    grams: list[str] = []
    for sentence in _SENTENCE_END.split(text.lower()):
        words = re.findall(_WORD, sentence)
        for n in range(1, n_max + 1):
            grams += [" ".join(words[i:i + n]) for i in range(len(words) - n + 1)]
    return grams


def _sign_test(features: Any, y: np.ndarray, prior: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of pair features in {-1, 0, 1}: pairs differing, carrier wins, and z."""
    differing = np.asarray(abs(features).sum(axis=0)).ravel()
    signed = np.asarray(features.T @ y).ravel()  # wins - losses
    wins = (differing + signed) / 2
    z = signed / np.sqrt(differing + prior)
    return differing, wins, z


def _length_feature(texts_a: Sequence[str], texts_b: Sequence[str], rows: np.ndarray) -> np.ndarray | None:
    """The measured length concept's pair feature for ``rows``; None when it does not vary."""
    from .measured import BY_NAME

    x = BY_NAME["length"].pair_feature([texts_a[i] for i in rows], [texts_b[i] for i in rows])
    return x if len(rows) >= 4 and np.std(x) > 0 else None


def _net_of(x: np.ndarray, features: Any, y: np.ndarray, columns: np.ndarray, item_penalty: float = 1.0,
            x_penalty: float = 0.01, iterations: int = 12, chunk: int = 512) -> np.ndarray:
    """Signed root of the likelihood-ratio statistic for adding each column to a logistic model of the
    label on ``x`` alone (no intercept: the order of A and B carries nothing), per column in ``columns``.

    Both models are fitted by Newton's method, all columns at once, with a ridge penalty on the column's
    weight (``item_penalty``: a column that decides every pair it touches gets a finite weight) and a
    small one on x's. Close to the sign test's z when x says nothing about the label; about 0 for a
    column that says nothing beyond x (a neutral sentence that only makes a response longer), while
    a column that explains x's apparent effect (a deciding phrase that adds words, where x also varies
    apart from it) keeps a large z. Memory: pairs x ``chunk`` floats at a time.
    """
    from scipy.special import expit

    y01 = (y + 1) / 2

    def loglik(eta: np.ndarray) -> np.ndarray:
        return np.sum(y01[:, None] * eta - np.logaddexp(0, eta), axis=0)

    b0 = 0.0  # x alone
    for _ in range(iterations):
        p = expit(x * b0)
        b0 += (x @ (y01 - p) - x_penalty * b0) / (float(np.sum(x * x * p * (1 - p))) + x_penalty)
    base = float(loglik((x * b0)[:, None])[0]) - x_penalty * b0 * b0 / 2
    z = np.zeros(len(columns))
    for start in range(0, len(columns), chunk):
        block = columns[start:start + chunk]
        f = features[:, block]
        f = np.asarray(f.toarray() if hasattr(f, "toarray") else f, float)
        bx, bf = np.full(len(block), b0), np.zeros(len(block))
        for _ in range(iterations):
            eta = x[:, None] * bx + f * bf
            p = expit(eta)
            r, w = y01[:, None] - p, p * (1 - p)
            gx, gf = x @ r - x_penalty * bx, np.sum(f * r, axis=0) - item_penalty * bf
            hxx, hff = (x * x) @ w + x_penalty, np.sum(f * f * w, axis=0) + item_penalty
            hxf = np.sum(x[:, None] * f * w, axis=0)
            det = hxx * hff - hxf * hxf
            bx, bf = bx + (hff * gx - hxf * gf) / det, bf + (hxx * gf - hxf * gx) / det
        full = loglik(x[:, None] * bx + f * bf) - (x_penalty * bx * bx + item_penalty * bf * bf) / 2
        z[start:start + len(block)] = np.sign(bf) * np.sqrt(np.maximum(2 * (full - base), 0.0))
    return z


def _pair_features(carriers: Any, n_pairs: int) -> Any:
    """carriers: (2n, k) responses x items, A rows then B rows -> (n, k) features A - B."""
    return carriers[:n_pairs] - carriers[n_pairs:]


def _phrases(texts: Sequence[str], rows: np.ndarray, y: np.ndarray, n_pairs: int, domain: str | None,
             settings: EvidenceSettings, length: np.ndarray | None) -> list[Evidence]:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

    subset = [texts[i] for i in rows]
    vectorizer = CountVectorizer(analyzer=lambda text: _ngrams(text, settings.ngram_max), binary=True,
                                 min_df=2, dtype=np.int8)
    try:
        carriers = vectorizer.fit_transform(subset).tocsc().astype(np.int16)
    except ValueError:  # no phrase occurs twice
        return []
    m = len(rows) // 2
    features = (carriers[:m] - carriers[m:]).tocsc()  # sparse: a large vocabulary never becomes dense
    differing, wins, z = _sign_test(features, y, settings.prior)
    vocabulary = vectorizer.get_feature_names_out()
    content = np.array([not set(v.split()) <= ENGLISH_STOP_WORDS for v in vocabulary])
    candidates = content & (differing >= settings.min_pairs)
    if length is not None:
        columns = np.flatnonzero(candidates)
        z = np.zeros_like(z)
        z[columns] = _net_of(length, features, y, columns)
    keep = np.flatnonzero(candidates & (np.abs(z) >= settings.min_z))
    items = []
    for j in keep[np.argsort(-np.abs(z[keep]), kind="stable")]:
        full = np.zeros(2 * n_pairs, bool)
        full[rows] = carriers[:, j].toarray().ravel() > 0
        items.append(Evidence("phrase", domain, [str(vocabulary[j])], float(z[j]), int(differing[j]),
                              int(wins[j]), full))
    return items


def _differential_sentences(texts_a: Sequence[str], texts_b: Sequence[str]) -> list[tuple[int, str, str]]:
    """(pair index, side, sentence) for sentences one response has and the other lacks (exact, lowercased)."""
    out = []
    for i, (a, b) in enumerate(zip(texts_a, texts_b, strict=True)):
        sa, sb = sentences(a), sentences(b)
        la, lb = {s.lower() for s in sa}, {s.lower() for s in sb}
        out += [(i, "a", s) for s in dict.fromkeys(sa) if s.lower() not in lb]
        out += [(i, "b", s) for s in dict.fromkeys(sb) if s.lower() not in la]
    return out


def _without_topic(found: list[tuple[int, str, str]], prompts: Sequence[str], unique: list[str],
                   vectors: dict[str, np.ndarray]) -> np.ndarray:
    """Each sentence's embedding minus the mean of the differential sentences under the same prompt.

    Responses to one prompt share its topic; what is left is closer to what the sentence *does*
    (warns, asks back, hedges), so sentences of the same kind on different topics fall together.
    """
    by_prompt: dict[str, list[str]] = {}
    prompt_of: dict[str, str] = {}
    for i, _, s in found:
        by_prompt.setdefault(prompts[i], []).append(s)
        prompt_of.setdefault(s, prompts[i])
    means = {p: np.mean([vectors[s] for s in dict.fromkeys(group)], axis=0) for p, group in by_prompt.items()}
    matrix = np.stack([vectors[s] - means[prompt_of[s]] for s in unique])
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def _sentence_groups(texts_a: Sequence[str], texts_b: Sequence[str], prompts: Sequence[str], pair_rows: np.ndarray,
                     y: np.ndarray, n_pairs: int, domain: str | None, settings: EvidenceSettings,
                     vectors: dict[str, np.ndarray], length: np.ndarray | None) -> list[Evidence]:
    from sklearn.cluster import AgglomerativeClustering

    found = _differential_sentences([texts_a[i] for i in pair_rows], [texts_b[i] for i in pair_rows])
    unique = list(dict.fromkeys(s for _, _, s in found))
    if len(unique) < 3:
        return []
    matrix = _without_topic(found, [prompts[i] for i in pair_rows], unique, vectors)
    labels = AgglomerativeClustering(n_clusters=None, metric="cosine", linkage="average",
                                     distance_threshold=settings.cluster_distance).fit_predict(matrix)
    group_of = dict(zip(unique, labels, strict=True))
    n_groups = int(labels.max()) + 1
    m = len(pair_rows)
    carriers = np.zeros((2 * m, n_groups), np.int8)
    for i, side, s in found:
        carriers[i if side == "a" else m + i, group_of[s]] = 1
    features = _pair_features(carriers, m).astype(float)
    differing, wins, z = _sign_test(features, y, settings.prior)
    if length is not None:
        z = _net_of(length, features, y, np.arange(features.shape[1]))
    frequent = differing >= max(settings.min_pairs, settings.frequent_share * m)
    keep = np.flatnonzero((differing >= settings.min_pairs) & ((np.abs(z) >= settings.min_z) | frequent))
    items = []
    for g in keep[np.argsort(-np.abs(z[keep]), kind="stable")]:
        members = [s for s in unique if group_of[s] == g]
        centre = matrix[labels == g].mean(axis=0)
        members.sort(key=lambda s: -float(vectors[s] @ centre))  # most typical first
        full = np.zeros(2 * n_pairs, bool)
        full[pair_rows] = carriers[:m, g] > 0
        full[n_pairs + pair_rows] = carriers[m:, g] > 0
        items.append(Evidence("sentences", domain, members[:6], float(z[g]), int(differing[g]), int(wins[g]),
                              full))
    return items


def pair_values(item: Evidence) -> np.ndarray:
    """carries(A) - carries(B) per pair, in {-1, 0, 1}."""
    n = len(item.carriers) // 2
    return item.carriers[:n].astype(float) - item.carriers[n:].astype(float)


def merge_same_evidence(items: list[Evidence], threshold: float,
                        pair_domains: np.ndarray | None = None) -> list[Evidence]:
    """Greedy, strongest first: an item whose pair values correlate with a kept one's (either sign:
    "has a numbered list" and "writes 'and finally'" are one difference seen from both sides) at
    ``|r| >= threshold`` joins it.

    With ``pair_domains``, an item mined in one domain is compared with an item mined over all domains
    on that domain's pairs only, and joins it: the same phrase mined in one domain and over all domains
    is one piece of evidence (over all pairs the domain's copy is zero elsewhere, so its correlation is
    diluted, and copies of one phrase would fill the list). The item over all domains is the one kept,
    also when the domain's copy scores higher: it has the carriers of every domain."""
    values = {id(item): pair_values(item) for item in items}  # once per item, not per comparison

    def same(item: Evidence, other: Evidence) -> bool:
        rows: Any = slice(None)
        if pair_domains is not None and item.domain != other.domain:
            if item.domain is not None and other.domain is not None:
                return False  # different domains: different pairs
            rows = pair_domains == (item.domain if item.domain is not None else other.domain)
        mine, theirs = values[id(item)][rows], values[id(other)][rows]
        return bool(mine.std() > 0 and theirs.std() > 0
                    and abs(float(np.corrcoef(mine, theirs)[0, 1])) >= threshold)

    def join(item: Evidence, into: Evidence) -> None:
        if item.source == into.source and np.sign(item.z) == np.sign(into.z):
            into.examples += [e for e in item.examples if e not in into.examples][:3]

    kept: list[Evidence] = []
    for item in sorted(items, key=lambda e: -abs(e.z)):
        # an item over all domains does not join a domain's copy of itself: that copy is dropped below
        home = next((other for other in kept if not (item.domain is None and other.domain is not None)
                     and same(item, other)), None)
        if home is None:
            kept.append(item)
        else:
            join(item, home)
    overall = [item for item in kept if item.domain is None]
    merged = []
    for item in kept:
        home = next((other for other in overall if item.domain is not None and same(item, other)), None)
        if home is None:
            merged.append(item)
        else:
            join(item, home)
    return merged


def mine_evidence(pairs: pd.DataFrame, labels: Sequence[str], settings: EvidenceSettings | None = None) -> list[Evidence]:
    """Evidence from pairs (``domain, response_a, response_b``) and their labels (``a``, ``b``, else ignored).

    Returns the strongest ``settings.max_items`` items, merged by carriers, strongest first; each
    item's ``carriers`` indexes responses as ``[A of every pair..., B of every pair...]``.
    """
    settings = settings or EvidenceSettings()
    label = np.asarray(labels, dtype=object)
    decided = np.flatnonzero((label == "a") | (label == "b"))
    n = len(pairs)
    texts_a = [str(t) for t in pairs["response_a"]]
    texts_b = [str(t) for t in pairs["response_b"]]
    texts = texts_a + texts_b
    domains = pairs["domain"].to_numpy()
    prompts = [str(t) for t in pairs["prompt"]]
    scopes: list[tuple[str | None, np.ndarray]] = [(None, decided)]
    if len(set(domains[decided])) > 1:
        scopes += [(str(d), decided[domains[decided] == d]) for d in sorted(set(domains[decided]))]
    vectors: dict[str, np.ndarray] = {}
    if settings.sentences:
        from .embeddings import embed, embeddings_available

        if embeddings_available():
            unique = list(dict.fromkeys(s for _, _, s in _differential_sentences([texts_a[i] for i in decided],
                                                                                 [texts_b[i] for i in decided])))
            vectors = dict(zip(unique, embed(unique), strict=True)) if unique else {}
    items: list[Evidence] = []
    for domain, rows in scopes:
        if len(rows) < settings.min_pairs:
            continue
        y = np.where(label[rows] == "a", 1, -1)
        length = _length_feature(texts_a, texts_b, rows) if settings.control_length else None
        response_rows = np.concatenate([rows, n + rows])
        items += _phrases(texts, response_rows, y, n, domain, settings, length)
        if vectors:
            items += _sentence_groups(texts_a, texts_b, prompts, rows, y, n, domain, settings, vectors, length)
    merged = merge_same_evidence(items, settings.same_evidence, domains)
    strong = [e for e in merged if abs(e.z) >= settings.min_z][:settings.max_items]
    frequent = sorted((e for e in merged if abs(e.z) < settings.min_z), key=lambda e: -e.pairs)[:settings.max_frequent]
    return strong + frequent


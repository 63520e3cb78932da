"""Evidence mining (discovery step 1, no LLM) on handmade pairs whose deciding part is known."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from preflens.embeddings import embeddings_available
from preflens.evidence import EvidenceSettings, mine_evidence, sentences

FILLER = ["the weather is mild today", "you could try it later", "there are several options here",
          "it depends on what you prefer", "many people ask about this", "that is a common question"]


def phrase_pairs(n: int = 60, seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """Pairs where the response with 'double check the wiring' wins, else a coin flip; the responses'
    lengths vary apart from it (1 to 5 filler sentences), as real responses' do."""
    rng = random.Random(seed)
    rows, labels = [], []
    for i in range(n):
        a = ". ".join(rng.sample(FILLER, rng.randint(1, 5))) + "."
        b = ". ".join(rng.sample(FILLER, rng.randint(1, 5))) + "."
        winner = rng.choice("ab")
        if i % 3:  # two thirds of the pairs: the phrase decides
            if winner == "a":
                a += " Always double check the wiring first."
            else:
                b += " Always double check the wiring first."
        rows.append({"id": f"p{i}", "domain": "diy" if i % 2 else "home", "prompt": f"q{i % 5}",
                     "response_a": a, "response_b": b})
        labels.append(winner)
    return pd.DataFrame(rows), labels


def test_the_phrase_that_decides_the_label_is_the_strongest_evidence():
    pairs, labels = phrase_pairs()
    items = mine_evidence(pairs, labels, EvidenceSettings(sentences=False))
    top = items[0]
    assert top.source == "phrase" and top.domain is None
    assert any("wiring" in e or "double check" in e for e in top.examples), top.examples
    assert top.z > 3 and top.wins == top.pairs == 40  # 40 pairs differ in it, and its carrier won each
    # its carriers are exactly the responses with the phrase
    texts = list(pairs["response_a"]) + list(pairs["response_b"])
    assert np.array_equal(top.carriers, np.array(["wiring" in t for t in texts]))
    # the same difference seen through other n-grams of the phrase is merged into this one item
    assert sum(any("wiring" in e for e in item.examples) for item in items) == 1


def test_no_evidence_from_labels_that_follow_nothing():
    pairs, _ = phrase_pairs()
    rng = random.Random(1)
    noise = [rng.choice("ab") for _ in range(len(pairs))]
    items = mine_evidence(pairs, noise, EvidenceSettings(sentences=False, min_z=3.0))
    assert items == []


def test_ties_and_unlabelled_pairs_are_ignored():
    pairs, labels = phrase_pairs()
    labels = ["tie" if i < 30 else y for i, y in enumerate(labels)]
    top = mine_evidence(pairs, labels, EvidenceSettings(sentences=False))[0]
    assert top.pairs == 20  # of the 30 decided pairs, those where the phrase differs


def test_sentences_split_lines_and_sentences():
    assert sentences("Hi there! Here is how:\n1. Stir it.\n2. Bake it? Yes.") == \
        ["Hi there!", "Here is how:", "1. Stir it.", "2. Bake it?", "Yes."]


@pytest.mark.skipif(not embeddings_available(), reason="needs sentence-transformers and the packaged model")
def test_sentence_groups_join_the_same_kind_of_sentence_on_different_topics():
    rng = random.Random(0)
    warnings = ["Be careful, the oil is hot and can burn you.", "Watch out: the blade is sharp and can cut you.",
                "Take care, the ladder can slip and you could fall."]
    topics = ["frying", "knives", "ladders"]
    rows, labels = [], []
    for i in range(60):
        k = i % 3
        base = f"Here is how to handle {topics[k]} at home. Start slowly and follow the steps."
        a, b = base, base + " It is easy once you practise."
        winner = rng.choice("ab")
        if i % 4:  # the response with the warning wins
            a, b = (a + " " + warnings[k], b) if winner == "a" else (a, b + " " + warnings[k])
        rows.append({"id": f"p{i}", "domain": "home", "prompt": topics[k], "response_a": a, "response_b": b})
        labels.append(winner)
    items = mine_evidence(pd.DataFrame(rows), labels, EvidenceSettings())
    groups = [e for e in items if e.source == "sentences" and e.z > 0]
    assert groups, [(e.source, e.examples) for e in items]
    best = max(groups, key=lambda e: e.z)
    assert set(warnings) <= set(best.examples)  # one group holds the warnings of all three topics


def length_pairs(n: int = 200, seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """Labels drawn from a model that prefers the longer response (weight 3 on the measured length
    feature) and dislikes 'As mentioned above, all of this matters.' (weight -1.5); the responses are
    otherwise 1 to 6 neutral sentences."""
    import math

    rng = random.Random(seed)
    rows, labels = [], []
    padding = " As mentioned above, all of this matters."
    for i in range(n):
        a = ". ".join(rng.choices(FILLER, k=rng.randint(1, 6))) + "."
        b = ". ".join(rng.choices(FILLER, k=rng.randint(1, 6))) + "."
        padded = rng.choice("ab-") if i % 2 else "-"
        a, b = a + padding * (padded == "a"), b + padding * (padded == "b")
        words_a, words_b = len(a.split()), len(b.split())
        score = 3 * math.tanh(math.log((1 + words_a) / (1 + words_b))) - 1.5 * ((padded == "a") - (padded == "b"))
        labels.append("a" if rng.random() < 1 / (1 + math.exp(-score)) else "b")
        rows.append({"id": f"p{i}", "domain": "d", "prompt": "q", "response_a": a, "response_b": b})
    return pd.DataFrame(rows), labels


def test_evidence_is_scored_net_of_length():
    pairs, labels = length_pairs()
    net = mine_evidence(pairs, labels, EvidenceSettings(sentences=False))
    # the padding makes a response longer, which the labels favour, yet it loses: net of length it is the
    # strongest evidence, with the sign of its planted weight; neutral sentences score less
    assert "as mentioned" in net[0].examples[0] and net[0].z < -3, [(e.examples[0], e.z) for e in net[:5]]
    assert all(abs(e.z) < abs(net[0].z) for e in net[1:])
    # scored as a plain sign test, a neutral sentence that only adds words comes first
    plain = mine_evidence(pairs, labels, EvidenceSettings(sentences=False, control_length=False))
    assert plain[0].z > 3 and not any("mentioned" in e for e in plain[0].examples)


def test_phrases_do_not_run_across_sentence_ends():
    from preflens.evidence import _ngrams

    grams = _ngrams("It holds up well. Keeping notes helps!\n1. Dry it", 3)
    assert "holds up well" in grams and "keeping notes helps" in grams and "1 dry it" in grams
    assert not [g for g in grams if "well keeping" in g or "helps 1" in g]


def test_a_phrase_mined_in_one_domain_and_overall_is_one_item():
    """The deciding phrase of phrase_pairs is found over all pairs and in each of 4 domains. Over all pairs a
    domain's copy correlates with the overall item at about 0.5 (it is 0 on the other domains' pairs); on
    its own domain's pairs the two agree, so the copies are merged into the overall item."""
    pairs, labels = phrase_pairs(120)
    pairs["domain"] = [("home", "diy", "garden", "car")[i % 4] for i in range(len(pairs))]
    items = mine_evidence(pairs, labels, EvidenceSettings(sentences=False, min_z=0.5))
    wiring = [item for item in items if any("wiring" in e for e in item.examples)]
    assert len(wiring) == 1 and wiring[0].domain is None

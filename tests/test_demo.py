"""The demo data generator: deterministic, shipped as generated, and labels really follow the plant."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from preflens import demo_data_path, load_pairs, make_demo_pairs
from preflens.demo import CONCEPTS, DOMAINS, PROPERTIES, demo_concepts, load_truth, oracle_features
from preflens.measured import BY_NAME


def test_generation_is_deterministic_and_seeded():
    pairs, truth = make_demo_pairs(5, seed=3)
    again, _ = make_demo_pairs(5, seed=3)
    other, _ = make_demo_pairs(5, seed=4)
    assert pairs == again and pairs != other
    assert len(pairs) == 5 * len(DOMAINS) and len({p["id"] for p in pairs}) == len(pairs)


def test_shipped_demo_set_is_what_the_generator_makes():
    path = demo_data_path()
    shipped = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    pairs, truth = make_demo_pairs(30, seed=0)
    assert shipped == pairs
    assert load_truth(path) == json.loads(json.dumps(truth))
    dataset = load_pairs(path)
    assert dataset.domains == list(DOMAINS) and len(dataset) == 120
    assert dataset.report.problems == []


def test_responses_carry_exactly_their_planted_concepts():
    pairs, truth = make_demo_pairs(8, seed=1)
    markers = {"numbered_list": "\n1. ", "code_block": "```", "polite_opener": ("Great question", "Hi there")}
    for pair in pairs:
        info = truth["pairs"][pair["id"]]
        for side in ("a", "b"):
            text, present = pair[f"response_{side}"], set(info[f"concepts_{side}"])
            for concept, marker in markers.items():
                found = any(m in text for m in (marker if isinstance(marker, tuple) else (marker,)))
                assert found == (concept in present), (concept, text)
        features = {n: int(n in info["concepts_a"]) - int(n in info["concepts_b"])
                    for n in set(info["concepts_a"]) | set(info["concepts_b"])}
        properties = {p.name for p in PROPERTIES}
        assert {n: x for n, x in features.items() if x} == {n: x for n, x in info["features"].items()
                                                             if n not in properties}
        # the planted properties are preflens's measured concepts of the same names, on the final texts
        for name in properties:
            measured = BY_NAME[name].pair_feature(pd.Series([pair["response_a"]]), pd.Series([pair["response_b"]]))
            assert info["features"].get(name, 0.0) == pytest.approx(float(measured[0]), abs=1e-6)
        # bold steps are what the emphasis feature sees (code blocks, where ** is an operator, left out)
        bold = [("**" in "".join(pair[f"response_{s}"].split("```")[0::2])) for s in ("a", "b")]
        assert (bold[0] != bold[1]) == ("emphasis" in info["features"])


def test_properties_vary_apart_from_the_concepts():
    """Length and bold vary on their own: neither is a function of the concepts a response carries."""
    pairs, truth = make_demo_pairs(30, seed=0)
    length = np.array([truth["pairs"][p["id"]]["features"].get("length", 0.0) for p in pairs])
    filler = np.array([truth["pairs"][p["id"]]["features"].get("filler", 0) for p in pairs], float)
    same_concepts = [i for i, p in enumerate(pairs)
                     if truth["pairs"][p["id"]]["concepts_a"] == truth["pairs"][p["id"]]["concepts_b"]]
    assert np.std(length) > 0.2 and abs(np.corrcoef(length, filler)[0, 1]) < 0.8
    assert not same_concepts  # every pair differs in some concept (the generator redraws equal ones)
    assert {c.name for c in demo_concepts(truth).concepts} == {c.name for c in CONCEPTS}
    assert set(oracle_features(truth).columns) == {"id", *(c.name for c in CONCEPTS)}
    assert set(oracle_features(truth, properties=True).columns) == {"id", *(c.name for c in CONCEPTS),
                                                                   *(p.name for p in PROPERTIES)}


def test_labels_follow_the_planted_weights():
    """On many pairs, a plain logistic fit on the true features recovers the planted weights."""
    pairs, truth = make_demo_pairs(1500, seed=7, domains=("software",))
    names = [c.name for c in CONCEPTS if c.domains is None or "software" in c.domains] + [p.name for p in PROPERTIES]
    planted = np.array([c.shared_weight + c.domain_weights.get("software", 0.0) for c in CONCEPTS
                        if c.domains is None or "software" in c.domains] + [p.weight for p in PROPERTIES])
    x = np.array([[truth["pairs"][p["id"]]["features"].get(n, 0) for n in names] for p in pairs], float)
    y = np.array([p["label"] == "a" for p in pairs], float)
    w = np.zeros(len(names))
    for _ in range(500):  # plain gradient ascent on the log-likelihood
        p = 1 / (1 + np.exp(-x @ w))
        w += 0.5 * x.T @ (y - p) / len(y)
    assert np.corrcoef(w, planted)[0, 1] > 0.95
    assert np.max(np.abs(w - planted)) < 0.5
    assert 0.6 < truth["bayes_accuracy"] < 0.95


def test_unknown_domain_is_refused():
    with pytest.raises(ValueError, match="unknown demo domain"):
        make_demo_pairs(2, domains=("astrology",))

"""Judge Hack (steer) and Tie Break with fake generators and judges whose rules are known."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from preflens.concepts import Concept, ConceptSet
from preflens.data import PairDataset
from preflens.fit import FitSettings, model_inputs
from preflens.judge import JudgeSettings
from preflens.llm import LLMCache, LLMClient
from preflens.model import HMDR
from preflens.steer import (
    held_out_queries,
    llm_comparer,
    random_concepts,
    steer,
    summarise,
    top_concepts,
)
from preflens.testing import FakeLLM
from preflens.tiebreak import tiebreak

CONCEPTS = ConceptSet([
    Concept("Numbers", "The response gives numbers."),
    Concept("Greeting", "The response greets."),
    Concept("Rhyme", "The response rhymes.", shared=False, domains=["cooking"]),
    Concept("Emoji", "The response uses emoji.", shared=False, domains=["cooking"]),
])


def judge_model():
    """An HMDR whose weights say: Numbers good, Greeting good, Rhyme and Emoji bad (in cooking)."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.choice([-1.0, 0.0, 1.0], size=(600, 4)), columns=CONCEPTS.names)
    logit = 2.0 * X["Numbers"] + 1.0 * X["Greeting"] - 1.5 * X["Rhyme"] - 1.5 * X["Emoji"]
    y = (rng.random(600) < 1 / (1 + np.exp(-logit))).astype(float)
    return HMDR(lambda_shared=0.01, lambda_domain=0.01).fit(X, y, domains=["cooking"] * 600,
                                                           shared=CONCEPTS.shared_mask(),
                                                           membership=CONCEPTS.membership(["cooking"]))


def generator(request):
    listed = re.findall(r"^- ([^:]+):", request.messages[-1].content, re.M)
    return "An answer" + "".join(f" with {name.lower()}" for name in listed) + "."


def numbers_judge(request):
    user = request.messages[-1].content
    first, second = re.findall(r"<response_[12]>\n(.*?)\n</response_[12]>", user, re.S)[-2:]
    score = lambda text: ("numbers" in text) - ("rhyme" in text) - ("emoji" in text)  # noqa: E731
    if score(first) == score(second):
        return "1"  # position bias on equal responses: gives a tie over both orders
    return "1" if score(first) > score(second) else "2"


def test_top_and_random_concepts():
    model = judge_model()
    assert [c.name for c in top_concepts(model, CONCEPTS, "cooking", 2)] == ["Numbers", "Greeting"]
    import random

    picked = random_concepts(CONCEPTS, "cooking", 2, random.Random(0), exclude={"Numbers", "Greeting"})
    assert {c.name for c in picked} == {"Rhyme", "Emoji"}


def test_steer_guided_beats_random(tmp_path):
    model = judge_model()
    queries = pd.DataFrame({"domain": ["cooking"] * 6, "prompt": [f"How do I cook dish {i}?" for i in range(6)]})
    gen = LLMClient(FakeLLM(generator), cache=LLMCache(tmp_path / "g.sqlite"))
    judge_client = LLMClient(FakeLLM(numbers_judge), cache=LLMCache(tmp_path / "j.sqlite"))
    result = steer(queries, model, CONCEPTS, gen, llm_comparer(judge_client, JudgeSettings()), k=2)
    assert len(gen.provider.history) == 18  # vanilla, guided, random per query
    assert len(judge_client.provider.history) == 2 * 6 * 2  # two conditions x six queries x both orders
    table = result.table.set_index(["domain", "condition"])
    assert table.loc[("all", "guided"), "win"] == 1.0 and table.loc[("all", "random"), "loss"] == 1.0
    assert table.loc[("all", "guided"), "p_bonferroni"] == pytest.approx(min(1.0, 0.03125 * len(table)))
    assert "| all | guided | 6 | 100.0 |" in result.to_markdown()


def test_summarise_counts_ties_as_half():
    outcomes = pd.DataFrame({"domain": ["d"] * 4, "prompt": list("wxyz"), "condition": ["guided"] * 4,
                             "label": ["a", "a", "tie", "b"]})
    row = summarise(outcomes).iloc[0]
    assert row["win_rate"] == pytest.approx((2 + 0.5) / 4) and row["n"] == 4


def test_held_out_queries_are_distinct_prompts():
    frame = pd.DataFrame({"id": list("abcd"), "domain": ["x", "x", "x", "y"], "prompt": ["p", "p", "q", "r"],
                          "response_a": list("1234"), "response_b": list("5678")})
    queries = held_out_queries(PairDataset(frame), 5)
    assert sorted(queries["prompt"]) == ["p", "q", "r"]


def test_tiebreak_with_the_reference_concepts_resolves_ties(tmp_path):
    rng = np.random.default_rng(1)
    rows, features = [], []
    for i in range(80):
        numbers_in_a = i % 2 == 0
        a = "An answer with numbers." if numbers_in_a else "An answer."
        b = "An answer." if numbers_in_a else "An answer with numbers."
        human = "a" if numbers_in_a else "b"
        judged = "tie" if i < 16 else human if rng.random() < 0.9 else ("b" if human == "a" else "a")
        rows.append({"id": f"p{i}", "domain": "cooking", "prompt": f"q{i}", "response_a": a, "response_b": b,
                     "label:human": human, "label:judge": judged})
        features.append({"id": f"p{i}", "Numbers": 1.0 if numbers_in_a else -1.0, "Greeting": 0.0, "Rhyme": 0.0,
                         "Emoji": 0.0})
    pairs = PairDataset(pd.DataFrame(rows))
    inputs = model_inputs(pairs, pd.DataFrame(features), CONCEPTS)

    asked = []

    def focused_judge(request):
        user = request.messages[-1].content
        asked.append(user)
        if "Consider only" in user and ("- Numbers:" in user or "(Numbers)" in user):
            return numbers_judge(request)
        return "1"  # without the right concept the judge stays position-biased: a tie again

    client = LLMClient(FakeLLM(focused_judge), cache=LLMCache(tmp_path / "c.sqlite"))
    result = tiebreak(pairs, inputs, CONCEPTS, client, judge_name="judge", reference="human", k=1,
                      fit_settings=FitSettings(cv=3))
    table = result.table.set_index("choice")
    assert table.loc["none (the original tie)", "agreement"] == 0.5 and table.loc["reference", "ties"] == 16
    assert table.loc["reference", "agreement"] == 1.0 and table.loc["judge", "agreement"] == 1.0
    assert "| reference | 16 | 100.0 | +50.0 |" in result.to_markdown()
    # a chosen concept with a fitted direction reads as the rubric's principle (export-rubric's text); a random
    # one as its name and definition
    numbers = next(c for c in CONCEPTS.concepts if c.name == "Numbers")
    rubric_line = f"- Prefer the response where: {numbers.definition.rstrip('.')} (Numbers). (Strong)"
    assert any(rubric_line in user for user in asked), asked[-1]
    assert any("Consider only" in user and "(Numbers)" not in user and "Prefer the response" not in user
               for user in asked)


def test_tiebreak_principles_read_a_weight_at_its_concepts_typical_difference():
    """The focused template's principles read a weight as the rubric does: times the concept's unit."""
    import random

    from preflens.tiebreak import concept_choices

    rng = np.random.default_rng(0)
    X = np.zeros((80, 4))
    X[:, 0] = rng.choice([-0.2, 0.2], 80)  # a concept whose differences are small
    X[:, 1] = rng.choice([-1.0, 1.0], 80)
    y = ((X[:, 0] > 0) ^ (rng.random(80) < 0.2)).astype(int)  # follows the first concept, 80% of the time
    model = HMDR(lambda_shared=1e-4, lambda_domain=1e-4).fit(
        pd.DataFrame(X, columns=CONCEPTS.names), y, domains=["cooking"] * 80)
    at_one = concept_choices(model, model, CONCEPTS, "cooking", 2, random.Random(0))
    at_unit = concept_choices(model, model, CONCEPTS, "cooking", 2, random.Random(0), units={CONCEPTS.names[0]: 0.2})
    first = CONCEPTS.names[0]
    w_one = dict((c.name, w) for c, w in at_one["reference"])
    w_unit = dict((c.name, w) for c, w in at_unit["reference"])
    assert w_unit[first] == pytest.approx(0.2 * w_one[first]) and w_one[first] != 0
    others = [n for n in w_one if n != first]
    assert others and all(w_unit[n] == w_one[n] for n in others)
    # read at its typical difference the weight says what the labels do (about 80%), not 99.9%
    assert 1 / (1 + np.exp(-w_one[first])) > 0.99 and 0.7 < 1 / (1 + np.exp(-w_unit[first])) < 0.9

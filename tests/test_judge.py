"""The LLM judge protocol (both orders, ties, few-shot ensembles), reward models, and comparisons."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from preflens.compare import agreement_matrix, bootstrap_differences, pair_agreement, weight_differences
from preflens.data import PairDataset
from preflens.judge import JudgeSettings, add_labels, judge
from preflens.llm import LLMCache, LLMClient
from preflens.model import HMDR
from preflens.testing import FakeLLM


def pairs(n=8):
    rows = []
    for i in range(n):
        good_first = i % 2 == 0
        good, bad = f"good answer {i}", f"poor answer {i}"
        rows.append({"id": f"p{i}", "domain": "d", "prompt": f"question {i}",
                     "response_a": good if good_first else bad, "response_b": bad if good_first else good,
                     "label:human": "a" if good_first else "b"})
    return PairDataset(pd.DataFrame(rows))


def shown(request, tag):
    user = request.messages[-1].content
    # the pair to judge is the last one shown (few-shot examples come first)
    return re.findall(rf"<{tag}>\n(.*?)\n</{tag}>", user, re.S)[-1]


def content_judge(request):
    return "1" if "good" in shown(request, "response_1") else "2"


def client_for(rule, tmp_path):
    return LLMClient(FakeLLM(rule), cache=LLMCache(tmp_path / "c.sqlite"))


def test_a_consistent_judge_reproduces_the_labels(tmp_path):
    data = pairs()
    result = judge(data, client_for(content_judge, tmp_path), JudgeSettings())
    assert list(result.labels) == list(data.labels("human"))
    assert result.tie_rate() == 0 and result.position_bias() == 0.5
    assert len(result.verdicts) == 16  # both orders


def test_a_position_biased_judge_gives_ties(tmp_path):
    result = judge(pairs(), client_for(lambda r: "1", tmp_path), JudgeSettings())
    assert set(result.labels) == {"tie"} and result.position_bias() == 1.0


def test_few_shot_ensemble_shows_labelled_examples_and_votes(tmp_path):
    client = client_for(content_judge, tmp_path)
    data = pairs()
    result = judge(data, client, JudgeSettings(shots=3, ensemble=4))
    assert list(result.labels) == list(data.labels("human"))
    prompts = [r.messages[-1].content for r in client.provider.history]
    assert len(prompts) == 8 * 4 * 2
    assert all(p.count("Example ") == 3 and "Better: " in p for p in prompts)
    own = [p for r, p in zip(client.provider.history, prompts) if r.item.startswith("p0:")]
    assert all("question 0" not in p.split("Now the pair to judge")[0] for p in own)  # never its own label
    with pytest.raises(Exception, match="reference labels"):
        judge(data, client, JudgeSettings(shots=2, reference="nobody"))


def test_majority_vote_over_draws():
    from preflens.judge import _label

    rows = [(0, "ab", 1.0), (0, "ba", 0.0), (1, "ab", 1.0), (1, "ba", 0.0), (2, "ab", 1.0), (2, "ba", 1.0)]
    verdicts = pd.DataFrame([{"id": "x", "draw": d, "order": o, "first_wins": w} for d, o, w in rows])
    assert _label(verdicts) == "a"  # a, a, tie
    rows[2:4] = [(1, "ab", 0.0), (1, "ba", 1.0)]
    verdicts = pd.DataFrame([{"id": "x", "draw": d, "order": o, "first_wins": w} for d, o, w in rows])
    assert _label(verdicts) == "tie"  # a, b, tie: no majority


def test_cot_variant_and_a_custom_template(tmp_path):
    template = tmp_path / "judge.txt"
    template.write_text("Compare.\n{query}\n{response_1}\n{response_2}\nWhich is better?")
    settings = JudgeSettings.from_template_file(template, variant="cot")
    assert settings.template_version.startswith("custom:")

    def cot(request):
        return json.dumps({"reasoning": "it is good", "better": int(content_judge(request))})

    client = client_for(cot, tmp_path)
    result = judge(pairs(), client, settings)
    assert list(result.labels) == list(pairs().labels("human"))
    assert client.provider.history[0].json_schema["properties"]["better"]["enum"] == [1, 2]
    bad = tmp_path / "bad.txt"
    bad.write_text("no placeholders")
    with pytest.raises(Exception, match="placeholders"):
        JudgeSettings.from_template_file(bad)


def test_unusable_verdicts_leave_the_label_missing(tmp_path):
    result = judge(pairs(2), client_for(lambda r: "maybe", tmp_path), JudgeSettings())
    assert result.labels.isna().all()


def test_add_labels_and_agreement(tmp_path):
    data = pairs()
    judged = judge(data, client_for(lambda r: "1", tmp_path), JudgeSettings())
    both = add_labels(data, "biased", judged.labels)
    assert both.mechanisms == ["human", "biased"]
    matrix = agreement_matrix({m: both.labels(m) for m in both.mechanisms})
    assert matrix.loc["human", "human"] == 1.0 and matrix.loc["human", "biased"] == 0.5
    assert pair_agreement(pd.Series(["a", "b", None]), pd.Series(["b", "b", "a"])) == 0.5


def test_weight_differences_between_two_models():
    rng = np.random.default_rng(0)
    X = rng.choice([-1.0, 0.0, 1.0], size=(400, 4))
    y1 = (X[:, 0] + 0.1 * rng.normal(size=400) > 0).astype(float)
    y2 = (X[:, 1] + 0.1 * rng.normal(size=400) > 0).astype(float)
    frame = pd.DataFrame(X, columns=["w", "x", "y", "z"])
    first, second = HMDR().fit(frame, y1), HMDR().fit(frame, y2)
    diff = weight_differences(first, second, top=2)
    shared = diff[diff["scope"] == "shared"]
    assert set(shared["concept"]) == {"w", "x"}
    assert shared.set_index("concept").loc["w", "difference"] > 0 > shared.set_index("concept").loc["x", "difference"]
    assert diff["difference_pts"].abs().le(100).all() and diff[["p_first", "p_second"]].stack().between(0, 1).all()
    assert (np.sign(diff["difference_pts"]) == np.sign(diff["difference"])).all()


def test_paired_bootstrap_intervals_of_differences():
    """A real difference gets an interval away from 0; two draws of the same labelling model get intervals
    around 0 (a difference that is noise says so)."""
    rng = np.random.default_rng(1)
    X = rng.choice([-1.0, 0.0, 1.0], size=(300, 3))
    frame = pd.DataFrame(X, columns=["w", "x", "z"])
    domains = np.where(np.arange(300) % 2, "d1", "d2")

    def draw(weights):
        return (rng.random(300) < 1 / (1 + np.exp(-(X @ np.array(weights))))).astype(float)

    y1, y2, y3 = draw([2.0, 0.0, 0.0]), draw([0.0, 0.0, 0.0]), draw([2.0, 0.0, 0.0])
    fit = lambda y: HMDR(lambda_shared=0.01, lambda_domain=0.05).fit(frame, y, domains=domains)  # noqa: E731
    first, second, same = fit(y1), fit(y2), fit(y3)
    intervals = bootstrap_differences(first, second, frame, y1, y2, domains=domains, n_boot=30)
    diff = weight_differences(first, second, intervals=intervals).set_index(["scope", "concept"])
    low, high = diff.loc[("shared", "w"), ["ci_low_pts", "ci_high_pts"]]
    assert 0 < low <= diff.loc[("shared", "w"), "difference_pts"] <= high  # sigmoid(2) - 0.5 = 38 points
    noise = bootstrap_differences(first, same, frame, y1, y3, domains=domains, n_boot=30)
    assert noise[("shared", "w")][0] < 0 < noise[("shared", "w")][1]
    assert set(noise) == {(scope, c) for scope in ("shared", "d1", "d2") for c in ("w", "x", "z")}


def test_demonstrations_can_come_from_another_pool(tmp_path):
    client = client_for(content_judge, tmp_path)
    pool = pairs(8)
    subset = PairDataset(pool.frame.head(2).drop(columns="label:human"))
    result = judge(subset, client, JudgeSettings(shots=2), demonstrations=pool)
    assert list(result.labels) == ["a", "b"]
    assert all("Example 2" in r.messages[-1].content for r in client.provider.history)


def test_calibrated_verdicts_cancel_a_position_lean():
    from preflens.judge import _label

    # P(first) is 0.7 / 0.6 with A first and B first: a lean to the first slot, but A still does better
    verdicts = pd.DataFrame([{"id": "x", "draw": 0, "order": "ab", "first_wins": 1.0, "p_first": 0.7},
                             {"id": "x", "draw": 0, "order": "ba", "first_wins": 1.0, "p_first": 0.6}])
    assert _label(verdicts) == "tie"  # the paper's protocol: the verdicts disagree
    assert _label(verdicts, JudgeSettings(calibrated=True)) == "a"  # (0.7 + 0.4) / 2 = 0.55
    assert _label(verdicts, JudgeSettings(calibrated=True, tie_margin=0.1)) == "tie"

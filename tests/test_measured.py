"""Measured concepts: each rule on handmade texts, the pair feature, and the confounder panel on length-judged data."""

from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from preflens.cli import cli
from preflens.measured import BY_NAME, CATALOGUE, choose, lexicon, measure
from preflens.testing import FakeOpenAIServer, example_from_schema


def count(name, text):
    return int(BY_NAME[name].counts(pd.Series([text]))[0])


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("length", "Three small words", 3),
    ("length", "", 0),
    ("length", "naïve café, déjà vu", 4),
    ("length", "我喜欢猫 and dogs", 6),  # a script without spaces: a word per character
    ("list_items", "Steps:\n- one\n* two\n+ three\n• four\n1. five\n2) six\n-not a list", 6),
    ("list_items", "A sentence - with a dash.", 0),
    ("headings", "# Title\n## Part\n**Ingredients:**\nText with **bold** inside.", 3),
    ("code_blocks", "Run:\n```python\nprint(1)\n```\nand\n~~~\nx\n~~~", 4),
    ("emphasis", "This is **very** important, __really__, and *quite* so, not 2*3*4 or a*b. <b>Yes</b>", 3),
    ("links", "See https://example.org/a?b=1, www.python.org and [docs](http://x.y/z).", 3),
    ("questions", "Is it hot? Which one？ Not this.", 2),
    ("numbers", "Add 2.5 cups, 1,000 g and 30% more.\n1. first step\n2) second", 3),
    ("refusal", "I'm sorry, but I can't help with that.", 1),
    ("refusal", "I can’t assist with this request.", 1),  # a typographic apostrophe
    ("refusal", "Here is how I can help with that.", 0),
    ("apology", "Unfortunately the shop is closed. My apologies.", 2),
    ("hedging", "It might work, but perhaps not; it depends.", 3),
    ("hedging", "Mighty mayors", 0),  # whole words only
    ("ai_disclaimer", "As an AI language model, I think you should consult a professional.", 2),
    ("exclamations", "Wow! Great！", 2),
    ("second_person", "You should ask your doctor yourself. Youth is not 'you'.", 4),
    # a rule anchored at a line's start does not match again mid-line after an earlier match
    ("list_items", "1. a - b * c", 1),
    ("code_blocks", "```x``` and ``` more", 1),
    ("numbers", "1. Step 2 of 3", 2),
    ("headings", "## A # B", 1),
    # Unicode whitespace, as Python's str.split() knows it
    ("length", "  two\u00a0words\u3000here  ", 3),
    ("length", "\n\t ", 0),
    ("length", "猫 猫", 2),
    ("questions", "Why?\nReally?", 2),
    ("questions", "Why?No", 0),
])
def test_each_rule_on_handmade_text(name, text, expected):
    assert count(name, text) == expected


def test_arrow_rules_agree_with_python_rules_on_varied_text():
    """The Arrow (RE2) rules count what Python's str.split and re count, on texts that mix the cases."""
    import re

    texts = ["", "One.\n\n- a\n- b\n1. c", "  spaced\u2003out\u00a0words ", "Ünïcödé wörds, 12 and 3.5",
             "## Head\n**Bold:**\ntext **x** y", "x" * 3 + " " + "y\n" * 3, "日本語のテキスト and more"]
    words = [len(t.split()) for t in texts]
    words[-1] = 8 + 2  # 8 characters of a script written without spaces, and two words
    assert list(BY_NAME["length"].counts(pd.Series(texts))) == words
    python_lists = [len(re.findall(r"^[ \t]*(?:[-*+•]|\d{1,3}[.)])[ \t]+\S", t, re.M)) for t in texts]
    assert list(BY_NAME["list_items"].counts(pd.Series(texts))) == python_lists
    assert list(BY_NAME["length"].counts(pd.Series([None, 3]))) == [0, 1]  # missing and non-text values


def test_the_pair_feature_is_bounded_antisymmetric_and_zero_on_equal_counts():
    a = pd.Series(["one two three four", "", "- a\n- b", "I'm sorry, I can't help with that", "same words here"])
    b = pd.Series(["one", "word", "text", "fine", "same words here"])
    for concept in CATALOGUE:
        forward, backward = concept.pair_feature(a, b), concept.pair_feature(b, a)
        assert np.all(np.abs(forward) <= 1) and np.allclose(forward, -backward)
        assert forward[4] == 0
    assert BY_NAME["length"].pair_feature(a, b)[0] == pytest.approx(np.tanh(np.log(5 / 2)))
    assert BY_NAME["refusal"].pair_feature(a, b)[3] == BY_NAME["apology"].pair_feature(a, b)[3] == 1.0


def test_lexicons_and_choosing():
    assert "as an ai" in lexicon("disclaimer") and all(p == p.lower() for p in lexicon("refusal"))
    assert [c.name for c in choose("length, list_items")] == ["length", "list_items"]
    assert choose("all") == list(CATALOGUE) and choose("none") == [] and len(choose(None)) == len(CATALOGUE) >= 13
    with pytest.raises(Exception, match="unknown measured concept"):
        choose(["lenght"])
    frame = measure(pd.DataFrame({"id": ["p"], "response_a": ["a b"], "response_b": ["c"]}), choose("length"))
    assert list(frame.columns) == ["id", "length"] and frame["length"].iloc[0] > 0


def responder(body):
    schema = body["response_format"]["json_schema"]
    if schema["name"].startswith("CompAnswer"):
        return json.dumps({f"c{i}": 0 for i in range(1, len(schema["schema"]["properties"]) + 1)})
    return json.dumps(example_from_schema(schema["schema"]))


def test_length_judged_data_is_explained_by_length_first(tmp_path):
    """Labels = the longer response, 10% flipped: the report's first sentence says length explains them,
    and HMDR with the measured concepts reaches the length rule within 2 points."""
    assert CliRunner().invoke(cli, ["demo-data", "--out", str(tmp_path / "d"), "--pairs-per-domain", 40,
                                    "--oracle"]).exit_code == 0
    rng = random.Random(0)
    records = [json.loads(line) for line in (tmp_path / "d" / "pairs.jsonl").read_text().splitlines()]
    for record in records:
        longer = "a" if len(record["response_a"].split()) > len(record["response_b"].split()) else "b"
        record["label"] = longer if rng.random() > 0.1 else {"a": "b", "b": "a"}[longer]
    data = tmp_path / "judged.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    with FakeOpenAIServer(responder) as server:  # the LLM concepts carry nothing here: every answer is "no difference"
        result = CliRunner().invoke(cli, [
            "run", str(data), "--out", str(tmp_path / "run"), "--concepts", str(tmp_path / "d" / "concepts.json"),
            "--scheme", "comp", "--splits", 2, "--bootstrap", 0, "--llm", "openai/m", "--base-url", server.base_url,
            "--cache", str(tmp_path / "c.sqlite")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    panel = report["confounders"]["mechanisms"]["human"]
    assert panel["measured"][0]["concept"] == "length" and panel["measured"][0]["direction"] == 1
    assert panel["sentence"].startswith("Length alone predicts human")
    assert 100 * panel["model_cv_accuracy"] >= 100 * panel["measured"][0]["accuracy"] - 2
    summary = [line for line in result.output.split("preflens: summary")[1].splitlines() if line.strip("─ ")]
    assert summary[0].startswith("human: Length alone predicts human"), summary  # said first
    markdown = (tmp_path / "run" / "report.md").read_text()
    assert markdown.index("Confounders first") < markdown.index("## Fit")

    # length and the side as controls: unpenalised, so length keeps its weight; the LLM is not asked again
    with FakeOpenAIServer(responder) as server:
        controlled = CliRunner().invoke(cli, [
            "run", str(data), "--out", str(tmp_path / "run"), "--concepts", str(tmp_path / "d" / "concepts.json"),
            "--scheme", "comp", "--splits", 2, "--bootstrap", 0, "--control", "length", "--control", "position",
            "--llm", "openai/m", "--base-url", server.base_url, "--cache", str(tmp_path / "c.sqlite")])
        assert controlled.exit_code == 0, controlled.output
        assert not server.requests
    model = json.loads((tmp_path / "run" / "models" / "human.json").read_text())
    names = model["feature_names_in_"]
    controls = [n for n, c in zip(names, model["control_mask_"], strict=True) if c]
    assert controls == ["length", "position"] and model["shared_coef_"][names.index("length")] > 1.0
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["fits"][0]["controls"] == controls
    table = (tmp_path / "run" / "evaluation.md").read_text()  # the controls alone, and HMDR with them
    assert "HMDR+controls in" in table and "| Controls in |" in table
    summary = pd.DataFrame(json.loads((tmp_path / "run" / "evaluation.json").read_text())["summary"])
    alone = summary[(summary["method"] == "Controls") & (summary["setting"] == "in")]["mean"].iloc[0]
    assert alone > 0.8  # length (and the side) alone predict length-judged labels


def test_the_confounder_sentence():
    from preflens.stages.confounders import sentence, sign_accuracy

    accuracy, direction, coverage = sign_accuracy(np.array([1.0, -1.0, 0.0, 1.0]), np.array([0.0, 1.0, 1.0, 0.0]))
    assert (accuracy, direction, coverage) == (0.875, -1, 0.75)  # 3.5 of 4 right the other way round
    side = sentence("judge", [{"concept": "position", "accuracy": 0.61, "direction": -1}], 0.62)
    assert side.startswith("Position alone predicts judge 61.0% of the time (the second (B) response wins)")
    assert "add 1.0 points" in side
    none = sentence("judge", [{"concept": "list_items", "accuracy": 0.71, "direction": 1}], 0.8)
    assert none.startswith("No single measured property explains judge: the best, list items, predicts it 71.0%")
    assert sentence("judge", [], 0.8) == ""

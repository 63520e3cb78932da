"""fit, explain and evaluate on a run folder built from demo data with its true (oracle) features."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from preflens.cli import cli
from preflens.model import HMDR
from preflens.runs import RunRecord


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def demo_run(make_oracle_run):
    folder, data = make_oracle_run(60)
    return folder, json.loads((data / "truth.json").read_text())


@pytest.fixture
def concepts_only_run(make_oracle_run):
    """The LLM concepts alone, no measured length: the length-driven fake judges below must then be
    explained through the concepts that make responses long (filler, lists), which is what these tests
    look at. With measured length the judges are explained by length alone, as they should be."""
    folder, data = make_oracle_run(60, measured=False)
    return folder, json.loads((data / "truth.json").read_text())


def test_fit_then_explain_recovers_the_planted_signs(demo_run):
    folder, truth = demo_run
    result = run("fit", folder)
    assert result.exit_code == 0, result.output
    assert "human: 240 pairs" in result.output
    model = HMDR.from_json(folder / "models" / "human.json")
    planted = {c["name"]: c["shared_weight"] for c in truth["concepts"] if c["shared"]}
    fitted = dict(zip(model.feature_names_in_, model.shared_coef_))
    strong = [n for n, w in planted.items() if abs(w) >= 0.8]
    assert all(fitted[n] * planted[n] > 0 for n in strong), (fitted, planted)
    record = RunRecord.model_validate_json((folder / "run.json").read_text())
    assert record.stages["fit:human"].status == "done" and record.stages["fit:human"].counts["pairs"] == 240

    again = run("fit", folder)
    assert "fit (human): up to date" in again.output  # nothing changed: no refit

    shown = run("explain", folder, "--top", 3)
    assert shown.exit_code == 0 and "concrete_quantities" in shown.output and "software" in shown.output


def test_explain_one_pair_and_bootstrap(demo_run):
    folder, truth = demo_run
    assert run("fit", folder).exit_code == 0
    pair_id = next(iter(truth["pairs"]))
    local = json.loads(run("explain", folder, "--pair", pair_id, "--json").output)
    assert local["pair"] == pair_id and 0 <= local["p_a"] <= 1
    boot = run("explain", folder, "--bootstrap", 5, "--top", 2)
    assert boot.exit_code == 0, boot.output
    assert "95% CI" in boot.output
    stored = json.loads((folder / "explanations" / "human.json").read_text())
    assert stored["meta"]["bootstrap"]["n_boot"] == 5


def test_evaluate_writes_the_table(demo_run):
    folder, _ = demo_run
    result = run("evaluate", folder, "--splits", 2, "--cv", 3, "--method", "HMDR", "--method", "Length")
    assert result.exit_code == 0, result.output
    header = next(line for line in result.stdout.splitlines() if "mechanism" in line)
    assert "held-out pairs" in header and "leave-one-domain-out" in header  # compact: settings as columns
    assert sum(line.startswith(("│ human", "| human", "  human")) or " HMDR " in line
               for line in result.stdout.splitlines()) >= 1
    assert "| mechanism | HMDR in | HMDR out | Length in | Length out |" in (folder / "evaluation.md").read_text()
    assert (folder / "evaluation.md").exists() and json.loads((folder / "evaluation.json").read_text())["summary"]


def test_missing_inputs_say_what_to_run(tmp_path):
    result = run("fit", tmp_path / "empty")
    assert result.exit_code == 1 and "preflens validate DATA --out" in result.output
    result = run("explain", tmp_path / "empty")
    assert result.exit_code == 1 and "preflens fit" in result.output


def test_fit_with_a_user_grid_and_fixed_lambdas(demo_run):
    folder, _ = demo_run
    result = run("fit", folder, "--grid", "0.05:0.02", "--grid", "0.01:0.01")
    assert result.exit_code == 0, result.output
    search = json.loads((folder / "models" / "human.search.json").read_text())["cv_results"]
    assert [r["params"] for r in search] == [{"lambda_shared": 0.05, "lambda_domain": 0.02},
                                              {"lambda_shared": 0.01, "lambda_domain": 0.01}]
    fixed = run("fit", folder, "--lambda-shared", 0.03, "--lambda-domain", 0.01)
    assert "lambda_shared=0.03" in fixed.output
    assert run("fit", folder, "--grid", "nonsense").exit_code == 1


def test_judge_fit_and_compare_two_mechanisms(concepts_only_run, tmp_path):
    """An LLM judge from a local server becomes a second mechanism, fitted and compared with the first."""
    import re

    from preflens.testing import FakeOpenAIServer

    folder, truth = concepts_only_run

    def shorter_wins(body):  # a judge that prefers the shorter response: a bias HMDR should expose
        user = body["messages"][-1]["content"]
        first, second = re.findall(r"<response_[12]>\n(.*?)\n</response_[12]>", user, re.S)[-2:]
        return "1" if len(first) < len(second) else "2"

    with FakeOpenAIServer(shorter_wins) as server:
        result = run("judge", folder, "--as", "short_judge", "--llm", "openai/judge", "--base-url", server.base_url,
                     "--cache", tmp_path / "c.sqlite")
        assert result.exit_code == 0, result.output
        assert len(server.requests) == 240 * 2
    assert "accuracy against human" in result.output and "first-shown response" in result.output
    summary = json.loads((folder / "judgments" / "short_judge.json").read_text())
    assert summary["tie_rate"] < 0.02  # a tie only where both responses have the same length
    assert abs(summary["position_bias"] - 0.5) < 0.05 and 0 <= summary["accuracy_vs_reference"] <= 1
    assert run("fit", folder).exit_code == 0
    compared = run("compare", folder, "--first", "human", "--second", "short_judge", "--top", 3, "--bootstrap", 20)
    assert compared.exit_code == 0, compared.output
    assert "95% CI" in compared.output and "20 paired bootstrap refits" in compared.output
    comparison = json.loads((folder / "comparison.json").read_text())
    assert set(comparison["agreement"]) == {"human", "short_judge", "HMDR(human)", "HMDR(short_judge)"}
    assert comparison["agreement"]["short_judge"]["HMDR(short_judge)"] > 0.8  # the model explains the judge
    rows = comparison["weight_differences"]["rows"]
    filler = [r for r in rows if r["scope"] == "shared" and r["concept"] == "filler"]
    # the judge punishes long filler harder (the human labels reward length, which filler carries here)
    assert filler and filler[0]["second"] < min(filler[0]["first"], 0)
    # the difference is clear: its paired-bootstrap interval lies above 0 (human minus judge, in points)
    assert 0 < filler[0]["ci_low_pts"] <= filler[0]["difference_pts"] <= filler[0]["ci_high_pts"] <= 100
    assert all(r["ci_low_pts"] <= r["ci_high_pts"] for r in rows)
    # the probabilities are read at each concept's typical difference, as the explanations' headline is
    assert all(0 < r["unit"] <= 1 for r in rows)
    assert all(r["p_first"] == pytest.approx(1 / (1 + math.exp(-r["first"] / 50 * r["unit"]))) for r in rows)


def test_judge_with_a_reward_model(demo_run, tmp_path):
    folder, _ = demo_run
    try:
        import torch
        from tokenizers import Tokenizer, models, pre_tokenizers
        from transformers import (  # noqa: F401
            BertConfig,
            BertForSequenceClassification,
            BertTokenizerFast,
            PreTrainedTokenizerFast,
        )
    except ImportError:
        import pytest

        pytest.skip("needs the 'embed' extra")
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "you", "should", "the"])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]",
                                        cls_token="[CLS]", sep_token="[SEP]")
    torch.manual_seed(1)
    model = BertForSequenceClassification(BertConfig(vocab_size=len(vocab), hidden_size=8, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=16,
                                                     max_position_embeddings=512, num_labels=1))
    model.save_pretrained(tmp_path / "rm")
    tokenizer.save_pretrained(tmp_path / "rm")
    result = run("judge", folder, "--as", "rm", "--reward-model", tmp_path / "rm")
    assert result.exit_code == 0, result.output
    scores = pd.read_parquet(folder / "judgments" / "rm.parquet")
    assert len(scores) == 240 and {"reward_a", "reward_b", "difference"} <= set(scores.columns)
    labels = pd.read_parquet(folder / "judgments" / "rm.labels.parquet")["label"]
    assert list(labels) == ["a" if d > 0 else "b" if d < 0 else "tie" for d in scores["difference"]]


def test_steer_and_tiebreak_commands(concepts_only_run, tmp_path):
    """Judge Hack and Tie Break from the command line against a local server playing generator and judge."""
    import re

    from preflens.testing import FakeOpenAIServer

    folder, _ = concepts_only_run

    def server_rule(body):
        user = body["messages"][-1]["content"]
        if "Write a helpful response" in user:  # the generator: lists the concepts it was given
            listed = re.findall(r"^- ([^:]+):", user, re.M)
            return "Here is what to do:\n1. Do it." + "".join(f" Also {n}." for n in listed)
        first, second = re.findall(r"<response_[12]>\n(.*?)\n</response_[12]>", user, re.S)[-2:]
        if "Consider only" not in user and len(first) % 3 == 0:
            return "1"  # position-biased on some pairs: ties
        return "1" if len(first) > len(second) else "2"  # otherwise the longer response wins

    with FakeOpenAIServer(server_rule) as server:
        llm = ["--llm", "openai/m", "--base-url", server.base_url, "--cache", tmp_path / "c.sqlite"]
        assert run("judge", folder, "--as", "lengthy", *llm).exit_code == 0
        assert run("fit", folder).exit_code == 0
        before = len(server.requests)
        steered = run("steer", folder, "--judge", "lengthy", "--queries-per-domain", 2, "--k", 2, *llm)
        assert steered.exit_code == 0, steered.output
        assert "| all | guided | 8 |" in steered.output and "| all | random | 8 |" in steered.output
        # 8 queries x 3 responses, then 8 x 2 conditions x 2 orders of judging: exactly these calls
        assert len(server.requests) - before == 8 * 3 + 8 * 2 * 2
        before = len(server.requests)
        assert run("steer", folder, "--judge", "lengthy", "--queries-per-domain", 2, "--k", 2, *llm).exit_code == 0
        assert len(server.requests) == before  # resumed from the cache: nothing asked again
        broken = run("tiebreak", folder, "--judge", "lengthy", "--reference", "human", "--k", 2, *llm)
        assert broken.exit_code == 0, broken.output
        asked = [json.dumps(b, sort_keys=True) for b in server.requests[before:]]
        ties = json.loads((folder / "tiebreak" / "lengthy.json").read_text())["table"][0]["ties"]
        assert len(asked) == len(set(asked)) and 0 < len(asked) <= 4 * ties * 2  # never the same call twice
        before = len(server.requests)
        assert run("tiebreak", folder, "--judge", "lengthy", "--reference", "human", "--k", 2, *llm).exit_code == 0
        assert len(server.requests) == before
    assert "| reference |" in broken.output and "| diff |" in broken.output
    table = json.loads((folder / "tiebreak" / "lengthy.json").read_text())["table"]
    assert {row["choice"] for row in table} == {"none (the original tie)", "random", "judge", "reference", "diff"}
    responses = pd.read_parquet(folder / "steer" / "lengthy.responses.parquet")
    assert len(responses) == 8 and all(len(c) == 2 for c in responses["guided_concepts"])


def test_evidence_says_when_a_fit_is_no_better_than_the_majority():
    from preflens.fit import evidence

    y = np.array([1.0] * 12 + [0.0] * 8)
    clear = evidence("m", [{"mean_accuracy": 0.9, "std_accuracy": 0.05}], y, 5)
    assert clear["reliable"] and clear["majority"] == 0.6 and clear["sentence"] == ""
    thin = evidence("m", [{"mean_accuracy": 0.65, "std_accuracy": 0.2}], y, 5)
    assert not thin["reliable"] and thin["pairs_needed"] == 384  # 4 x 0.6 x 0.4 / 0.05^2
    assert "not clearly above the 60.0% of always picking response A" in thin["sentence"]
    worse = evidence("m", [{"mean_accuracy": 0.4, "std_accuracy": 0.1}], y, 5)
    assert not worse["reliable"] and "no better than the 60.0%" in worse["sentence"]
    assert evidence("m", None, y, 5) is None  # fixed lambdas: no search, no claim


def test_a_fit_on_random_labels_is_headlined_as_unreliable(make_oracle_run):
    """20 pairs with coin-flip labels: the report, report.md and report.json say no reliable explanation."""
    import random

    rng = random.Random(1)
    folder, _ = make_oracle_run(5, relabel=lambda record: {**record, "label": rng.choice("ab")})
    assert run("fit", folder).exit_code == 0
    assert run("report", folder).exit_code == 0
    fit_row = json.loads((folder / "report.json").read_text())["fits"][0]
    assert fit_row["reliable"] is False and fit_row["evidence"].startswith("No reliable explanation of human")
    assert "No reliable explanation of human" in (folder / "report.md").read_text().split("## Fit")[0]
    assert "No reliable explanation of human" in (folder / "report.html").read_text()
    assert "## Top concepts: human (not significant: no reliable explanation)" in (folder / "report.md").read_text()
    from preflens.report import effect_figure

    row = {"scope": "shared", "concept": "c", "shared_effect": 5.0, "domain_effect": 0.0, "effect": 5.0}
    drawn = effect_figure([row], "shared", 5, reliable=False)  # bars of an unreliable fit are drawn grey
    assert "not significant" in drawn["layout"]["title"]["text"] and drawn["data"][0]["marker"]["color"] == "#b8b8b8"
    assert "not significant" not in effect_figure([row], "shared", 5)["layout"]["title"]["text"]

"""fit, explain and evaluate on a run folder built from demo data with its true (oracle) features."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from preflens.cli import cli
from preflens.model import HMDR
from preflens.runs import RunRecord


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def demo_run(tmp_path):
    data = tmp_path / "data"
    assert run("demo-data", "--out", data, "--pairs-per-domain", 60, "--oracle").exit_code == 0
    folder = tmp_path / "run"
    assert run("validate", data / "pairs.jsonl", "--out", folder).exit_code == 0
    shutil.copy(data / "concepts.json", folder / "concepts.json")
    shutil.copy(data / "oracle_features.parquet", folder / "features.parquet")
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
    assert record.stages["fit"].status == "done" and record.stages["fit"].counts["human"]["pairs"] == 240

    again = run("fit", folder)
    assert "up to date" in again.output  # nothing changed: no refit

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
    assert "| mechanism | HMDR in | HMDR out | Length in | Length out |" in result.output
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

"""The stage runner: what each stage reads and owns, resuming, missing work, and the run folder's lock.

Each of the first four tests is the regression test of a defect of the hand-wired pipeline.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner

from preflens import demo_data_path
from preflens.cli import cli
from preflens.data import PairDataset
from preflens.runs import RunRecord
from preflens.testing import FakeOpenAIServer, example_from_schema


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def responder(body):
    """Discovery, Comp-rep and a judge that prefers the shorter response."""
    if "response_format" not in body:
        user = body["messages"][-1]["content"]
        first, second = re.findall(r"<response_[12]>\n(.*?)\n</response_[12]>", user, re.S)[-2:]
        return "1" if len(first) < len(second) else "2"
    schema = body["response_format"]["json_schema"]
    if schema["name"] == "Proposals":
        return json.dumps({"concepts": [{"name": "Concrete amounts", "description": "A good response gives numbers."}]})
    if schema["name"].startswith("CompAnswer"):
        first = body["messages"][1]["content"].split("<response_1>")[1].split("</response_1>")[0]
        return json.dumps({f"c{i}": 1 if "1." in first else 2 for i in range(1, len(schema["schema"]["properties"]) + 1)})
    return json.dumps(example_from_schema(schema["schema"]))


@pytest.fixture
def oracle_run(make_oracle_run):
    """A run folder on demo data with its true features and concepts (no LLM needed to fit)."""
    return make_oracle_run(30)


def n_boot(folder, mechanism="human"):
    meta = json.loads((folder / "explanations" / f"{mechanism}.json").read_text())["meta"]
    return (meta.get("bootstrap") or {}).get("n_boot", 0)


def test_a_refit_does_not_drop_the_intervals(oracle_run):
    """fit, explain --bootstrap 5, fit --force, explain --bootstrap 5: the intervals are still there."""
    folder, _ = oracle_run
    assert run("fit", folder).exit_code == 0
    assert run("explain", folder, "--bootstrap", 5).exit_code == 0 and n_boot(folder) == 5
    assert run("fit", folder, "--force").exit_code == 0  # the same model again: fit does not touch explanations
    again = run("explain", folder, "--bootstrap", 5)
    assert "explain (human): up to date (5 bootstrap refits)" in again.output and "95% CI" in again.output
    assert n_boot(folder) == 5
    assert run("explain", folder).exit_code == 0 and n_boot(folder) == 5  # no --bootstrap: keeps the intervals

    # a different model: the old intervals are not shown as if they were this model's
    assert run("fit", folder, "--lambda-shared", 0.05, "--lambda-domain", 0.05).exit_code == 0
    assert run("report", folder).exit_code == 0
    report = json.loads((folder / "report.json").read_text())
    assert report["fits"][0]["bootstrap"] == 0 and all("ci_low" not in r for r in report["effects"]["human"])
    redone = run("explain", folder, "--bootstrap", 5)
    assert "up to date" not in redone.output and n_boot(folder) == 5
    assert run("report", folder).exit_code == 0
    assert json.loads((folder / "report.json").read_text())["fits"][0]["bootstrap"] == 5


def test_judge_adds_a_mechanism_that_run_fits_and_bootstraps(tmp_path):
    """A judge's labels do not make discover or represent stale; run fits and bootstraps the judge too."""
    data = tmp_path / "data"
    assert run("demo-data", "--out", data, "--pairs-per-domain", 10).exit_code == 0
    folder = tmp_path / "run"
    with FakeOpenAIServer(responder) as server:
        llm = ["--llm", "openai/m", "--base-url", server.base_url, "--cache", tmp_path / "c.sqlite"]
        args = ["run", data / "pairs.jsonl", "--out", folder, "--scheme", "comp", "--batches-per-domain", 1,
                "--splits", 0, "--bootstrap", 3, *llm]
        first = run(*args)
        assert first.exit_code == 0, first.output
        judged = run("judge", folder, "--as", "short", *llm)
        assert judged.exit_code == 0, judged.output
        calls = len(server.requests)
        again = run("judge", folder, "--as", "short", *llm)
        assert "judge (short): up to date" in again.output and len(server.requests) == calls
        second = run(*args)
        assert second.exit_code == 0, second.output
        assert len(server.requests) == calls  # discover and represent are up to date: no call
    assert "discover: up to date" in second.output and "represent: up to date" in second.output
    assert "fit (human): up to date" in second.output and "short:" in second.output  # the judge is fitted now
    record = RunRecord.model_validate_json((folder / "run.json").read_text())
    assert record.stages["explain:short"].status == "done" and n_boot(folder, "short") == 3
    assert "label:short" not in PairDataset.read_parquet(folder / "pairs.parquet").frame  # ingest's file only
    assert {f["mechanism"] for f in json.loads((folder / "report.json").read_text())["fits"]} == {"human", "short"}


def test_a_second_process_on_the_same_folder_gets_one_clear_line(tmp_path):
    """Two runs on one folder at once: the second fails at once; the lock goes with a killed process."""
    folder = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom preflens.pipeline import RunContext, Runner\n"
                               "with Runner(RunContext(sys.argv[1])):\n    print('locked', flush=True)\n"
                               "    time.sleep(600)\n", str(folder)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        second = run("run", "whatever.jsonl", "--out", folder, "--llm", "openai/m", "--base-url", "http://127.0.0.1:9/v1")
        assert second.exit_code == 1
        assert f"is in use by another preflens process (pid {holder.pid}" in second.output
        assert len(second.output.strip().splitlines()) == 1
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    from preflens.pipeline import RunContext, Runner

    with Runner(RunContext(folder)) as runner:  # kill -9 released it
        assert runner.outcomes == []


def test_missing_cells_fail_the_run_and_are_retried(oracle_run, tmp_path):
    """A server answering 400 to everything: exit 1; against a healthy one, exactly the missing cells are asked."""
    folder, _ = oracle_run
    (folder / "features.parquet").unlink()
    represent = ["represent", folder, "--scheme", "comp", "--no-relevance", "--llm", "openai/m", "--max-retries", 0,
                 "--cache", tmp_path / "c.sqlite", "--base-url"]
    with FakeOpenAIServer(responder) as broken:
        broken.inject(*["400"] * 10_000)
        failed = run(*represent, broken.base_url)
        asked = len(broken.requests)
    assert failed.exit_code == 1 and "represent: no usable answer in" in failed.output
    assert "injected 400" in failed.output and "rerun the same command" in failed.output
    record = RunRecord.model_validate_json((folder / "run.json").read_text())
    assert record.stages["represent"].status == "incomplete" and record.stages["represent"].counts["missing"] > 0
    with FakeOpenAIServer(responder) as healthy:
        fixed = run(*represent, healthy.base_url)
        assert fixed.exit_code == 0, fixed.output
        assert len(healthy.requests) == asked  # each failed call once, none twice
        again = run(*represent, healthy.base_url)
        assert "represent: up to date" in again.output and len(healthy.requests) == asked

    # some cells missing: under --max-missing it warns, the stage stays incomplete, and the next run asks for those
    (folder / "features.parquet").unlink()
    with FakeOpenAIServer(responder) as flaky:
        flaky.inject("400", "400", "400")
        partial = run(*represent[:-3], "--cache", tmp_path / "fresh.sqlite", "--max-missing", 0.5, "--base-url",
                      flaky.base_url)
        assert partial.exit_code == 0, partial.output
        assert "have no usable answer; they are retried the next time" in partial.output
        record = RunRecord.model_validate_json((folder / "run.json").read_text())
        assert record.stages["represent"].status == "incomplete"
        before = len(flaky.requests)
        retried = run(*represent[:-3], "--cache", tmp_path / "fresh.sqlite", "--base-url", flaky.base_url)
        assert retried.exit_code == 0 and len(flaky.requests) - before == 3
    assert RunRecord.model_validate_json((folder / "run.json").read_text()).stages["represent"].status == "done"


def test_a_run_reads_the_pairs_once(tmp_path, monkeypatch):
    """Evidence for the design: one process, one read of pairs.parquet, however many stages read the pairs."""
    data = tmp_path / "data"
    assert run("demo-data", "--out", data, "--pairs-per-domain", 6).exit_code == 0
    reads = []
    original = PairDataset.read_parquet.__func__

    def counted(cls, path):
        reads.append(str(path))
        return original(cls, path)

    monkeypatch.setattr(PairDataset, "read_parquet", classmethod(counted))
    with FakeOpenAIServer(responder) as server:
        args = ["run", data / "pairs.jsonl", "--out", tmp_path / "run", "--scheme", "comp", "--batches-per-domain", 1,
                "--splits", 2, "--bootstrap", 2, "--llm", "openai/m", "--base-url", server.base_url,
                "--cache", tmp_path / "c.sqlite"]
        first = run(*args)
        assert first.exit_code == 0, first.output
        assert len(reads) == 1
        assert run(*args).exit_code == 0 and len(reads) == 2


def test_force_redoes_the_named_stage_only(oracle_run):
    """From Python: a forced fit runs again; explain, whose model did not change, stays up to date."""
    from preflens.fit import FitSettings
    from preflens.pipeline import RunContext, Runner
    from preflens.stages import explain_stage, fit_stage

    folder, data = oracle_run
    with Runner(RunContext(folder)) as runner:
        assert runner.run(fit_stage("human", FitSettings())).status == "done"
        assert runner.run(explain_stage("human")).status == "done"
        assert runner.run(fit_stage("human", FitSettings())).status == "up to date"
    with Runner(RunContext(folder), force={"fit"}) as runner:
        assert runner.run(fit_stage("human", FitSettings())).status == "done"
        assert runner.run(explain_stage("human")).status == "up to date"
    bad = run("run", data / "pairs.jsonl", "--out", folder, "--force", "nonsense", "--llm", "openai/m",
              "--base-url", "http://127.0.0.1:9/v1")
    assert bad.exit_code == 1 and "--force nonsense: not a stage" in bad.output


def test_the_python_example_runs_the_pipeline_then_resumes(tmp_path):
    """examples/pipeline_from_python.py against a local server: every stage, then all up to date."""
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "pipeline_from_python.py"
    env = {**os.environ, "PREFLENS_CACHE": str(tmp_path / "c.sqlite")}
    with FakeOpenAIServer(responder) as server:
        command = [sys.executable, str(example), "--out", str(tmp_path / "run"), "--llm", "openai/m",
                   "--base-url", server.base_url]
        first = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
        assert first.returncode == 0, first.stderr
        calls = len(server.requests)
        again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
        assert again.returncode == 0, again.stderr
        assert len(server.requests) == calls
    assert "16 pairs in 4 domains" in first.stdout and "llm_judge: top shared concepts" in first.stdout
    stages = [line for line in again.stdout.splitlines()
              if line.startswith(("ingest", "discover", "represent", "judge:", "fit:", "explain:", "evaluate"))]
    assert len(stages) == 9 and all(line.endswith("up to date") for line in stages), stages
    assert (tmp_path / "run" / "report.html").exists()


def test_damaged_or_misplaced_state_is_one_clear_line(oracle_run):
    folder, _ = oracle_run
    assert run("fit", folder).exit_code == 0
    model = folder / "models" / "human.json"
    model.write_text(model.read_text()[:100])  # a truncated artifact is stale, not up to date
    refit = run("fit", folder)
    assert refit.exit_code == 0 and "up to date" not in refit.output
    assert json.loads(model.read_text())  # rewritten whole

    (folder / "features.parquet").write_bytes(b"PAR1 garbage")
    damaged = run("fit", folder)
    assert damaged.exit_code == 1 and "features.parquet: cannot be read as a features file" in damaged.stderr
    assert "bug in preflens" not in damaged.output

    import shutil

    shutil.rmtree(folder / "models")
    (folder / "models").write_text("a file where the models folder goes")
    blocked = run("fit", folder)
    assert blocked.exit_code == 1 and "bug in preflens" not in blocked.output
    assert "models" in blocked.stderr.strip().splitlines()[-1]


def test_run_dry_run_sends_nothing(tmp_path):
    concepts = tmp_path / "concepts.yaml"
    concepts.write_text("- name: Numbers\n  definition: The response gives concrete numbers.\n")
    with FakeOpenAIServer(responder) as server:
        result = run("run", demo_data_path(), "--out", tmp_path / "run", "--concepts", concepts, "--dry-run",
                     "--llm", "openai/m", "--base-url", server.base_url)
        assert result.exit_code == 0, result.output
        assert not server.requests
    assert re.search(r"represent \(comp-rep\): up to \d+ calls for 120 pairs x 1 concepts", result.output)
    assert "Nothing was sent to the LLM" in result.output

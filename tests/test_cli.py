"""The command line: validate, run folder, cache, demo-data, llm check, exit codes."""

from __future__ import annotations

import json

from click.testing import CliRunner

from preflens import demo_data_path
from preflens.cli import cli
from preflens.llm import LLMCache, LLMClient, LLMRequest, Message
from preflens.runs import RunRecord
from preflens.testing import FakeLLM, FakeOpenAIServer


def run(*args, **kwargs):
    return CliRunner().invoke(cli, [str(a) for a in args], **kwargs)


def test_validate_summarises_the_demo_data():
    result = run("validate", demo_data_path())
    assert result.exit_code == 0, result.output
    assert "120 rows read, 120 pairs kept, 0 skipped" in result.output
    assert "software" in result.output and "No problems found." in result.output


def test_validate_with_custom_columns_writes_a_run_folder(tmp_path):
    data = tmp_path / "mine.csv"
    data.write_text("question,first,second,topic,vote\nq1,a1,b1,law,1\nq2,a2,b2,law,2\nq3,a3,a3,law,1\n")
    result = run("validate", data, "--prompt-col", "question", "--a-col", "first", "--b-col", "second",
                 "--domain-col", "topic", "--label-col", "crowd=vote", "--label-map", "1=a",
                 "--label-map", "2=b", "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "3 rows read, 2 pairs kept, 1 skipped" in result.output
    assert "mine.csv row 3: identical responses" in result.output
    record = RunRecord.model_validate_json((tmp_path / "run" / "run.json").read_text())
    ingest = record.stages["ingest"]
    assert ingest.status == "done" and ingest.counts["pairs"] == 2
    assert ingest.inputs_hash.startswith("sha256:")
    assert (tmp_path / "run" / "pairs.parquet").exists()
    validation = json.loads((tmp_path / "run" / "validation.json").read_text())
    assert validation["rows_skipped"] == 1


def test_validate_json_output(tmp_path):
    result = run("validate", demo_data_path(), "--json")
    data = json.loads(result.output)
    assert data["summary"]["pairs"] == 120 and data["validation"]["rows_read"] == 120


def test_user_errors_are_one_line_with_exit_1(tmp_path):
    result = run("validate", tmp_path / "missing.jsonl")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [f"Error: {tmp_path / 'missing.jsonl'}: no such file"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"q": "x"}\n')
    result = run("validate", bad)
    assert result.exit_code == 1 and "--prompt-col" in result.output and "Traceback" not in result.output


def test_usage_errors_exit_2():
    assert run("validate").exit_code == 2
    assert run("no-such-command").exit_code == 2


def test_report_of_a_missing_folder_is_a_usage_error():
    result = run("report", "no-such-run-folder")
    assert result.exit_code == 2 and "does not exist" in result.output


def test_demo_data_command(tmp_path):
    result = run("demo-data", "--out", tmp_path, "--pairs-per-domain", 3, "--seed", 2)
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "pairs.jsonl").read_text().splitlines()) == 12
    assert json.loads((tmp_path / "truth.json").read_text())["seed"] == 2


def test_cache_commands(tmp_path):
    path = tmp_path / "c.sqlite"
    client = LLMClient(FakeLLM(lambda r: "x"), cache=LLMCache(path))
    client.map([LLMRequest(messages=(Message(role="user", content=f"q{i}"),), stage="discover") for i in range(3)])
    client.close()
    assert run("cache", "path", "--cache", path).output.strip() == str(path)
    stats = json.loads(run("cache", "stats", "--cache", path, "--json").output)
    assert stats["entries"] == 3 and stats["by_model"][0]["stage"] == "discover"
    assert "3 cached replies" in run("cache", "stats", "--cache", path).output
    refused = run("cache", "clear", "--cache", path, input="n\n")
    assert refused.exit_code == 1 and len(LLMCache(path)) == 3
    cleared = run("cache", "clear", "--cache", path, "--yes")
    assert "Deleted 3" in cleared.output and len(LLMCache(path)) == 0


def test_llm_check_against_a_local_server(tmp_path):
    def responder(body):
        if body.get("response_format"):
            return json.dumps({"better": "A", "reason": "4 is right"})
        return "Yes"

    with FakeOpenAIServer(responder) as server:
        result = run("llm", "check", "--llm", "openai/fake-model", "--base-url", server.base_url)
        assert result.exit_code == 0, result.output
        assert len(server.requests) == 2
    assert "valid JSON for the schema" in result.output and "Yes=-0.10" in result.output


def test_llm_check_reports_a_failing_server(tmp_path):
    with FakeOpenAIServer() as server:
        server.inject(*["malformed"] * 4)  # the free-text check takes one, the JSON check three
        result = run("llm", "check", "--llm", "openai/fake-model", "--base-url", server.base_url)
    assert result.exit_code == 1 and "did not answer both checks" in result.output


def test_options_that_do_not_apply_are_refused():
    result = run("llm", "check", "--llm", "local", "--base-url", "http://127.0.0.1:1/v1")
    assert result.exit_code == 1 and "--base-url does not apply to the 'local' provider" in result.output
    result = run("llm", "check", "--llm", "nosuch/model")
    assert result.exit_code == 1 and "unknown LLM provider 'nosuch'" in result.output


def test_validate_a_hub_layout_folder_with_subset_split_and_limit(tmp_path):
    import pytest

    pytest.importorskip("datasets")
    from test_data import _hub_layout_repo

    repo = _hub_layout_repo(tmp_path / "repo")
    result = run("validate", f"hf:{repo}", "--subset", "hard", "--split", "train", "--limit", 5,
                 "--domain-col", "category", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["summary"]["pairs"] == 5

"""discover and represent from the command line, against a local OpenAI-compatible server."""

from __future__ import annotations

import json

import pandas as pd
from click.testing import CliRunner

from preflens import demo_data_path
from preflens.cli import cli
from preflens.distill import uncertain_labels
from preflens.runs import RunRecord
from preflens.testing import FakeOpenAIServer, example_from_schema


def responder(body):
    schema = body["response_format"]["json_schema"]
    if schema["name"] == "Proposals":
        return json.dumps({"concepts": [{"name": "Concrete amounts", "description": "A good response gives numbers."},
                                        {"name": "Code example", "description": "A good response shows code."}]})
    if schema["name"].startswith("CompAnswer"):
        user = body["messages"][1]["content"]
        first = user.split("<response_1>")[1].split("</response_1>")[0]
        n = len(schema["schema"]["properties"])
        return json.dumps({f"c{i}": 1 if "1." in first else 2 for i in range(1, n + 1)})
    return json.dumps(example_from_schema(schema["schema"]))


def run(*args, env=None):
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def test_discover_then_represent_with_a_server(tmp_path):
    folder = tmp_path / "run"
    assert run("validate", demo_data_path(), "--out", folder).exit_code == 0
    with FakeOpenAIServer(responder) as server:
        llm = ["--llm", "openai/test-model", "--base-url", server.base_url, "--cache", tmp_path / "c.sqlite"]
        dry = run("discover", folder, "--batches-per-domain", 2, "--dry-run", *llm)
        assert dry.exit_code == 0 and "8 proposal calls" in dry.output and not server.requests
        result = run("discover", folder, "--batches-per-domain", 2, *llm)
        assert result.exit_code == 0, result.output
        concepts = json.loads((folder / "concepts.json").read_text())["concepts"]
        names = [c["name"] for c in concepts]
        assert names[:10][0] == "Specificity" and "Concrete amounts" in names
        discovered = next(c for c in concepts if c["name"] == "Code example")
        assert discovered["shared"] and discovered["counts"]["domains"] == 4
        calls_after_discover = len(server.requests)

        again = run("discover", folder, "--batches-per-domain", 2, *llm)
        assert "up to date" in again.output and len(server.requests) == calls_after_discover

        plan = run("represent", folder, "--scheme", "comp", "--no-relevance", "--dry-run", *llm)
        assert "would make up to 240 calls" in plan.output
        represented = run("represent", folder, "--scheme", "comp", "--no-relevance", *llm)
        assert represented.exit_code == 0, represented.output
        assert len(server.requests) - calls_after_discover == 240
    features = pd.read_parquet(folder / "features.parquet")
    assert len(features) == 120 and set(features.columns) >= {"id", "Concrete amounts"}
    record = RunRecord.model_validate_json((folder / "run.json").read_text())
    assert record.stages["represent"].llm["calls"] == 240 and record.stages["discover"].status == "done"
    assert "0 missing" in represented.output


def test_represent_needs_concepts(tmp_path):
    folder = tmp_path / "run"
    run("validate", demo_data_path(), "--out", folder)
    result = run("represent", folder, "--llm", "openai/x", "--base-url", "http://127.0.0.1:9/v1")
    assert result.exit_code == 1 and "preflens discover" in result.output


def test_run_all_stages_from_a_config_then_resume_without_calls(tmp_path):
    data = tmp_path / "data"
    assert run("demo-data", "--out", data, "--pairs-per-domain", 10).exit_code == 0
    config = tmp_path / "preflens.toml"
    with FakeOpenAIServer(responder) as server:
        config.write_text(f'llm = "openai/test-model"\nbase_url = "{server.base_url}"\nscheme = "comp"\n'
                          f'batches-per-domain = 1\nsplits = 2\ncache = "{tmp_path / "c.sqlite"}"\n')
        first = run("run", data / "pairs.jsonl", "--out", tmp_path / "run", "--config", config, "--splits", 2)
        assert first.exit_code == 0, first.output
        calls = len(server.requests)
        assert calls > 0 and (tmp_path / "run" / "evaluation.md").exists()
        assert "Concrete amounts" in first.output  # the discovered concept is listed
        again = run("run", data / "pairs.jsonl", "--out", tmp_path / "run", "--config", config)
        assert again.exit_code == 0, again.output
        assert len(server.requests) == calls  # nothing asked again
        assert "ingest: 40 pairs from 40 rows, 0 skipped (up to date)" in again.output
        assert "discover: up to date" in again.output and "represent: up to date" in again.output
        assert "fit (human): up to date" in again.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("no_such_option: 1\n")
    result = run("run", data / "pairs.jsonl", "--out", tmp_path / "run2", "--config", bad)
    assert result.exit_code == 2 and "unknown option(s) no_such_option" in result.output


def test_demo_without_the_embed_extra_uses_the_concept_list_on_32_pairs(tmp_path, monkeypatch):
    """Discovery from evidence and distilled representation need the sentence-embedding model: without it
    the demo says so and runs its concept list on 8 pairs per domain, not all 120 pairs."""
    import preflens.embeddings

    monkeypatch.setattr(preflens.embeddings, "embeddings_available", lambda: False)
    with FakeOpenAIServer(responder) as server:
        result = run("demo", "--out", tmp_path / "demo", "--splits", 0, "--bootstrap", 0, "--llm", "openai/test-model",
                     "--base-url", server.base_url, "--cache", tmp_path / "c.sqlite")
    assert result.exit_code == 0, result.output
    assert "the demo's concept list is used, as the 'embed' extra is not installed" in result.output
    assert "demo: 32 pairs (8 per domain) from the bundled data; 11 concepts from the demo's list" in result.output
    assert json.loads((tmp_path / "demo" / "concepts.json").read_text())["meta"]["source"] == "the demo's concept list"


def test_demo_writes_the_report_with_recovery_then_resumes_without_calls(tmp_path):
    out = tmp_path / "demo"
    with FakeOpenAIServer(responder) as server:
        llm = ["--llm", "openai/test-model", "--base-url", server.base_url, "--cache", tmp_path / "c.sqlite"]
        first = run("demo", "--out", out, "--pairs-per-domain", 4, "--given-concepts", "--splits", 2, "--bootstrap", 5,
                    *llm)
        assert first.exit_code == 0, first.output
        calls = len(server.requests)
        assert calls >= 16  # at least the relevance call of each of the 16 pairs
        again = run("demo", "--out", out, "--pairs-per-domain", 4, "--given-concepts", "--splits", 2, "--bootstrap", 5,
                    *llm)
        assert again.exit_code == 0, again.output
        assert len(server.requests) == calls
    for stage in ("represent", "fit (human)", "evaluate", "recovery"):
        assert f"{stage}: up to date" in again.output
    assert "explain (human): up to date (5 bootstrap refits)" in again.output
    assert "Recovery of the planted truth" in first.output and "Report:" in first.output
    assert (out / "report.html").exists() and (out / "truth.json").exists()
    saved = json.loads((out / "report.json").read_text())
    assert saved["dataset"]["pairs"] == 16 and saved["recovery"]["concepts_found"] == 11
    assert saved["recovery"]["pairs"] == 16 and saved["run"]["totals"]["calls"] == calls


def small_model(body):
    """Chooses the first offered description; says Yes to a presence question when the response has a list."""
    content = body["messages"][-1]["content"]
    if "Answer with the number only." in content:
        return "1"
    if "Answer Yes or No." in content:
        response = content.split("<response>")[1].split("</response>")[0]
        return "Yes" if "\n1. " in response else "No"
    return responder(body)


def test_discover_from_evidence_then_distilled_representation_with_a_server(tmp_path):
    folder = tmp_path / "run"
    assert run("validate", demo_data_path(), "--out", folder).exit_code == 0
    with FakeOpenAIServer(small_model) as server:
        llm = ["--llm", "openai/test-model", "--base-url", server.base_url, "--cache", tmp_path / "c.sqlite"]
        dry = run("discover", folder, "--method", "evidence", "--dry-run", *llm)
        assert dry.exit_code == 0 and "pieces of evidence without the LLM" in dry.output and not server.requests
        result = run("discover", folder, "--method", "evidence", *llm)
        assert result.exit_code == 0, result.output
        assert "evidence:" in result.output and "presence checks; kept" in result.output
        concepts = json.loads((folder / "concepts.json").read_text())
        report = json.loads((folder / "discovery.json").read_text())
        assert concepts["meta"]["method"] == "evidence" and report["calls"]["names"] > 0
        assert {m["measured_concept"] for m in report["measured"]} >= {"list_items"}  # lists need no name
        assert {c["status"].split(":")[0] for c in concepts["meta"]["candidates"]} <= {"kept", "rejected"}
        kept = [c for c in concepts["meta"]["candidates"] if c["status"] == "kept"]
        assert [c["name"] for c in concepts["concepts"]] == [c["name"] for c in kept]
        after_discover = len(server.requests)

        (folder / "given.yaml").write_text("- {name: Lists, definition: The response has a numbered list.}\n"
                                           "- {name: Greeting, definition: The response greets the user.}\n")
        represented = run("represent", folder, "--scheme", "presence", "--labeler", "distilled",
                          "--concepts", folder / "given.yaml", *llm)
        assert represented.exit_code == 0, represented.output
        assert "distilled:" in represented.output
    summary = json.loads((folder / "representation.json").read_text())
    assert summary["labeler"] == "distilled"
    asked = sum(d["llm"] for d in summary["distillation"])
    assert asked + sum(d["predicted"] for d in summary["distillation"]) == 2 * 120 * 2
    for entry in summary["distillation"]:  # each concept says whether its labels are uncertain (here: learned well)
        assert entry["uncertain"] is uncertain_labels(entry) is False and entry["cv_correlation"] > 0.9
    details = pd.read_parquet(folder / "representation_details.parquet")
    assert (details["source"] == "llm").sum() == asked
    assert len(server.requests) - after_discover <= asked  # answers verification already asked come from the cache
    assert {s["concept"] for s in summary["concepts"]} == {"Lists", "Greeting"}

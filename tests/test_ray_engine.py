"""The Ray engine: the per-pair stages as map_batches on a local Ray (2 CPUs), against the fake server.

Ray is the optional extra ``preflens[ray]``; CI installs it and sets PREFLENS_REQUIRE_RAY=1, so
there a missing Ray fails these tests instead of skipping them.
"""

from __future__ import annotations

import json
import logging
import os

import pandas as pd
import pytest
from click.testing import CliRunner

from preflens import demo_data_path
from preflens.cli import cli
from preflens.runs import RunRecord
from preflens.testing import FakeOpenAIServer, example_from_schema, kill_session

if not os.environ.get("PREFLENS_REQUIRE_RAY"):
    pytest.importorskip("ray", reason="the Ray engine needs preflens[ray]")

CONCEPTS = ("- name: Numbers\n  definition: The response gives concrete numbers.\n"
            "- name: Steps\n  definition: The response gives numbered steps.\n"
            "- name: Warmth\n  definition: The response is warm.\n")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


def comp_answers(body):
    """Comp-rep: response 1 shows every concept more when it has a numbered step ("1.")."""
    schema = body["response_format"]["json_schema"]
    if schema["name"].startswith("CompAnswer"):
        first = body["messages"][1]["content"].split("<response_1>")[1].split("</response_1>")[0]
        n = len(schema["schema"]["properties"])
        return json.dumps({f"c{i}": 1 if "1." in first else 2 for i in range(1, n + 1)})
    if schema["name"].startswith("RelevanceAnswer"):  # every concept applies
        return json.dumps({f"c{i}": True for i in range(1, len(schema["schema"]["properties"]) + 1)})
    return json.dumps(example_from_schema(schema["schema"]))


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def folders(tmp_path):
    concepts = tmp_path / "concepts.yaml"
    concepts.write_text(CONCEPTS)
    for name in ("local", "ray"):
        assert run("validate", demo_data_path(), "--out", tmp_path / name).exit_code == 0
    return tmp_path, concepts


def llm_options(server, cache, concepts):
    return ["--llm", "openai/test-model", "--base-url", server.base_url, "--cache", cache, "--concepts", concepts,
            "--scheme", "comp", "--no-relevance"]


def test_represent_on_ray_gives_the_local_features_then_is_up_to_date(folders):
    tmp_path, concepts = folders
    with FakeOpenAIServer(comp_answers) as server:
        local = run("represent", tmp_path / "local", *llm_options(server, tmp_path / "a.sqlite", concepts))
        assert local.exit_code == 0, local.output
        calls = len(server.requests)
        on_ray = run("represent", tmp_path / "ray", *llm_options(server, tmp_path / "b.sqlite", concepts),
                     "--engine", "ray", "--workers", 2, "--batch-size", 16)
        assert on_ray.exit_code == 0, on_ray.output
        assert len(server.requests) == 2 * calls == 480  # the same 240 requests, each once (separate caches)
        again = run("represent", tmp_path / "ray", *llm_options(server, tmp_path / "b.sqlite", concepts),
                    "--engine", "ray")
        assert "represent: up to date" in again.output and len(server.requests) == 480
    for name in ("features.parquet", "representation_details.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "local" / name),
                                      pd.read_parquet(tmp_path / "ray" / name))
    local_json = json.loads((tmp_path / "local" / "representation.json").read_text())
    ray_json = json.loads((tmp_path / "ray" / "representation.json").read_text())
    assert local_json == ray_json and ray_json["coverage"]["order_disagreements"] > 0
    record = RunRecord.model_validate_json((tmp_path / "ray" / "run.json").read_text()).stages["represent"]
    assert record.llm["engine"] == "ray" and record.llm["calls"] == 240 and record.llm["llm"] == "openai/test-model"
    assert 1 <= record.llm["workers"] <= 2 and record.llm["worker_peak_rss_mb"] > 0
    assert not (tmp_path / "ray" / "shards" / "represent").exists() or \
        not any((tmp_path / "ray" / "shards" / "represent").iterdir())  # complete: the shards are folded in


def test_a_rerun_on_ray_skips_the_pairs_its_shards_hold(folders):
    tmp_path, concepts = folders
    options = ["--engine", "ray", "--workers", 2, "--batch-size", 8, "--max-missing", 0.5]
    pairs = pd.read_parquet(tmp_path / "ray" / "pairs.parquet")
    texts = pd.concat([pairs["response_a"], pairs["response_b"]]).value_counts()
    broken = [text for text in pairs["response_a"] if texts[text] == 1][::7][:5]  # in one pair each
    assert len(broken) == 5

    def broken_for_five_pairs(body):
        if any(text in body["messages"][1]["content"] for text in broken):
            return "{not valid json"  # retried, then missing
        return comp_answers(body)

    with FakeOpenAIServer(broken_for_five_pairs) as server:
        first = run("represent", tmp_path / "ray", *llm_options(server, tmp_path / "b.sqlite", concepts), *options)
        assert first.exit_code == 0, first.output
        assert "have no usable answer; they are retried" in first.output
        shards = list((tmp_path / "ray" / "shards" / "represent").glob("*/part-0001-*.parquet"))
        assert len(shards) == 15  # 120 pairs in batches of 8, each batch a shard
        record = RunRecord.model_validate_json((tmp_path / "ray" / "run.json").read_text()).stages["represent"]
        assert record.status == "incomplete" and record.counts["missing"] == 15  # 5 pairs x 3 concepts
        server.responder = comp_answers  # the server is healthy again
        before = len(server.requests)
        second = run("represent", tmp_path / "ray", *llm_options(server, tmp_path / "b.sqlite", concepts), *options)
        assert second.exit_code == 0, second.output
        # only the 5 pairs with missing cells went to a worker (both orders: a bad reply is not cached)
        assert len(server.requests) - before == 10
        record = RunRecord.model_validate_json((tmp_path / "ray" / "run.json").read_text()).stages["represent"]
        assert record.status == "done" and record.llm["requests"] == 10 and record.llm["pairs_from_shards"] == 115
        assert not list((tmp_path / "ray" / "shards" / "represent").glob("*/*.parquet"))
        local = run("represent", tmp_path / "local", *llm_options(server, tmp_path / "a.sqlite", concepts))
        assert local.exit_code == 0, local.output
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "local" / "features.parquet"),
                                  pd.read_parquet(tmp_path / "ray" / "features.parquet"))


def test_measured_on_ray_equals_the_local_engine(folders):
    tmp_path, _ = folders
    assert run("measure", tmp_path / "local").exit_code == 0
    result = run("measure", tmp_path / "ray", "--engine", "ray")
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "local" / "measured.parquet"),
                                  pd.read_parquet(tmp_path / "ray" / "measured.parquet"))


def test_the_python_run_takes_the_ray_engine(folders):
    from preflens import Run
    from preflens.errors import ConfigError

    tmp_path, concepts = folders
    with FakeOpenAIServer(comp_answers) as server:
        with Run(tmp_path / "ray", llm="openai/test-model", base_url=server.base_url, cache=tmp_path / "c.sqlite",
                 engine="ray", workers=2) as pipeline:
            pipeline.use_concepts(concepts)
            features = pipeline.represent(scheme="comp", relevance=False)
        assert len(server.requests) == 240 and len(features) == 120
    with pytest.raises(ConfigError, match="pass those instead of client="):
        Run(tmp_path / "ray", client=object(), engine="ray")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="distilled"):
        from preflens.engine import RayEngine
        from preflens.represent import RepresentSettings
        from preflens.stages import represent_stage

        represent_stage(RepresentSettings(labeler="distilled"), "local", engine=RayEngine())


def test_an_llm_judge_on_ray_gives_the_local_labels(folders):
    """Few-shot (2 examples drawn from all labelled pairs), so each worker needs the whole pool."""
    import re

    tmp_path, _ = folders

    def shorter_wins(body):
        user = body["messages"][-1]["content"]
        first, second = re.findall(r"<response_[12]>\n(.*?)\n</response_[12]>", user, re.S)[-2:]
        return "1" if len(first) < len(second) else "2"

    with FakeOpenAIServer(shorter_wins) as server:
        for name, engine in (("local", []), ("ray", ["--engine", "ray", "--batch-size", 16])):
            result = run("judge", tmp_path / name, "--as", "short", "--shots", 2, "--llm", "openai/judge",
                         "--base-url", server.base_url, "--cache", tmp_path / f"{name}.sqlite", *engine)
            assert result.exit_code == 0, result.output
        assert len(server.requests) == 2 * 240
    for file in ("short.labels.parquet", "short.parquet", "short.json"):
        local, on_ray = tmp_path / "local" / "judgments" / file, tmp_path / "ray" / "judgments" / file
        if file.endswith(".json"):
            assert json.loads(local.read_text()) == json.loads(on_ray.read_text())
        else:
            pd.testing.assert_frame_equal(pd.read_parquet(local), pd.read_parquet(on_ray))
    record = RunRecord.model_validate_json((tmp_path / "ray" / "run.json").read_text()).stages["judge:short"]
    assert record.llm["engine"] == "ray" and record.llm["calls"] == 240 and record.status == "done"


@pytest.mark.timeout(300)
def test_a_ray_run_killed_midway_resumes_from_its_shards(folders):
    """kill -9 (every process of the stage's session: it, its local Ray, the workers) once some batches are
    in shards; the rerun takes those pairs from the shards and the calls already paid for from the cache."""
    import subprocess
    import sys
    import time

    tmp_path, concepts = folders
    folder, cache = tmp_path / "ray", tmp_path / "b.sqlite"
    shards = folder / "shards" / "represent"
    with FakeOpenAIServer(comp_answers, delay=0.05) as server:
        command = [sys.executable, "-m", "preflens", "represent", str(folder),
                   *map(str, llm_options(server, cache, concepts)), "--engine", "ray", "--workers", "2",
                   "--batch-size", "8", "--max-concurrency", "2"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True, env={**os.environ, "RAY_ADDRESS": ""})
        deadline = time.monotonic() + 240
        while len(list(shards.glob("*/part-*.parquet"))) < 3 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.poll() is None, "the stage ended before it could be killed"
        kill_session(process.pid)  # the stage, its local Ray and the Ray workers (which are in groups of their own)
        process.wait()
        kept = len(list(shards.glob("*/part-*.parquet")))
        assert 3 <= kept < 15
        # whole shards only: every shard reads back with its 8 pairs. A kill that lands while a shard is
        # being written leaves its temporary file (written, then renamed), which the next run removes.
        assert all(len(pd.read_parquet(path)) == 8 for path in shards.glob("*/part-*.parquet"))
        from preflens.llm import LLMCache

        with LLMCache(cache) as stored:
            paid = len(stored)  # answers the killed run received (each committed on arrival)
        resumed = run("represent", folder, *llm_options(server, cache, concepts), "--engine", "ray", "--batch-size", 8)
        assert resumed.exit_code == 0, resumed.output
        assert not list(shards.glob("*/*.tmp"))
        record = RunRecord.model_validate_json((folder / "run.json").read_text()).stages["represent"]
        assert record.status == "done" and record.llm["pairs_from_shards"] == 8 * kept
        # each pair in no shard is asked again (2 requests), but every answer received before the kill and not
        # already in a shard comes from the cache
        assert record.llm["requests"] == 2 * (120 - 8 * kept)
        assert record.llm["cache_hits"] == paid - 2 * 8 * kept
        assert record.llm["calls"] == record.llm["requests"] - record.llm["cache_hits"]
        local = run("represent", tmp_path / "local", *llm_options(server, tmp_path / "a.sqlite", concepts))
        assert local.exit_code == 0, local.output
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "local" / "features.parquet"),
                                  pd.read_parquet(folder / "features.parquet"))


def test_run_takes_the_engine_from_its_config_file(folders):
    tmp_path, concepts = folders
    config = tmp_path / "preflens.toml"
    with FakeOpenAIServer(comp_answers) as server:
        config.write_text(f'llm = "openai/test-model"\nbase_url = "{server.base_url}"\nscheme = "comp"\n'
                          f'engine = "ray"\nworkers = 2\ncache = "{tmp_path / "c.sqlite"}"\n')
        result = run("run", demo_data_path(), "--out", tmp_path / "run", "--config", config, "--concepts", concepts,
                     "--splits", 0, "--bootstrap", 0)
        assert result.exit_code == 0, result.output
        calls = len(server.requests)
    stages = RunRecord.model_validate_json((tmp_path / "run" / "run.json").read_text()).stages
    # a relevance call and the two orders per pair
    assert stages["represent"].llm["engine"] == "ray" and stages["represent"].llm["calls"] == calls == 360
    assert stages["fit:human"].status == "done" and (tmp_path / "run" / "report.html").exists()

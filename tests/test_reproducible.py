"""Discovery builds every request in a deterministic order: a second process reads them all from the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from preflens import demo_data_path
from preflens.testing import FakeOpenAIServer, example_from_schema


def responder(body):
    schema = body["response_format"]["json_schema"]
    if schema["name"] == "Taxonomy":  # many names with equal counts: their order must not come from a set
        return json.dumps({"domains": ["Alpha", "Beta", "Gamma", "Delta", "Epsilon", "Zeta", "Eta", "Theta"],
                           "tasks": ["explain", "compare", "plan", "fix", "list", "rank", "sum", "cite"]})
    if schema["name"] == "Proposals":
        return json.dumps({"concepts": [{"name": "Concrete amounts", "description": "A good response gives numbers."}]})
    return json.dumps(example_from_schema(schema["schema"]))


def preflens(*args, hash_seed: str, home) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PREFLENS_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "preflens", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=600, check=False)


def test_discovery_twice_in_two_processes_makes_no_new_call(tmp_path):
    with FakeOpenAIServer(responder) as server:
        counts = []
        for hash_seed in ("1", "2"):  # string hashing, and so set order, differs between the two processes
            folder = tmp_path / f"run{hash_seed}"
            assert preflens("validate", demo_data_path(), "--out", folder, hash_seed=hash_seed,
                            home=tmp_path).returncode == 0
            result = preflens("discover", folder, "--method", "propose", "--batches-per-domain", 2,
                              "--llm", "openai/test-model", "--base-url", server.base_url,
                              "--cache", tmp_path / "cache.sqlite", hash_seed=hash_seed, home=tmp_path)
            assert result.returncode == 0, result.stderr
            counts.append(len(server.requests))
    assert counts[0] > 0
    assert counts[1] == counts[0], f"the second process made {counts[1] - counts[0]} new calls"

"""Ctrl-C and SIGTERM during an LLM stage: exit 130, say where to resume, record the stage as interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from preflens import demo_data_path
from preflens.testing import FakeOpenAIServer


def _wait_for(condition, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("the condition never came true")
        time.sleep(0.05)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("sent", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_stage_exits_130_and_is_recorded(tmp_path, sent):
    env = {**os.environ, "PREFLENS_HOME": str(tmp_path / "home")}
    folder = tmp_path / "run"
    concepts = tmp_path / "concepts.yaml"
    concepts.write_text("- name: Numbers\n  definition: The response gives concrete numbers.\n")
    assert subprocess.run([sys.executable, "-m", "preflens", "validate", str(demo_data_path()), "--out", str(folder)],
                          env=env, capture_output=True, check=False).returncode == 0
    with FakeOpenAIServer(lambda body: "Yes", delay=0.2) as server:
        process = subprocess.Popen(
            [sys.executable, "-m", "preflens", "represent", str(folder), "--concepts", str(concepts), "--scheme",
             "presence", "--llm", "openai/m", "--base-url", server.base_url, "--max-concurrency", "1"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_for(lambda: len(server.answered) >= 2)  # the stage is under way
        process.send_signal(sent)
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Interrupted" in stderr and "run the same command again" in stderr
    record = json.loads((folder / "run.json").read_text())["stages"]["represent"]
    assert record["status"] == "failed" and "interrupted" in record["error"]
    assert not (folder / ".preflens.owner.json").exists()  # the folder was released

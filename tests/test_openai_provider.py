"""The OpenAI-compatible provider against a real local HTTP server with injected faults."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import BaseModel

from preflens import LLMAuthError
from preflens.llm import LLMCache, LLMClient, LLMRequest, Message, get_llm, structured_request
from preflens.testing import FakeOpenAIServer

JOB = Path(__file__).with_name("client_job.py")


class Verdict(BaseModel):
    better: str
    reason: str


def verdict_responder(body):
    if body.get("response_format"):
        return json.dumps({"better": "A", "reason": "it is right"})
    return "Yes"


@pytest.fixture
def server():
    with FakeOpenAIServer(verdict_responder, hang_seconds=3.0) as running:
        yield running


OPEN_CLIENTS: list[LLMClient] = []


@pytest.fixture(autouse=True)
def close_clients():
    """Each test's clients are closed after it, as a program would close them."""
    yield
    while OPEN_CLIENTS:
        OPEN_CLIENTS.pop().close()


def make_client(server, tmp_path, **kwargs):
    provider = get_llm("openai/fake-model", base_url=server.base_url)
    kwargs.setdefault("initial_backoff", 0.001)
    kwargs.setdefault("max_backoff", 0.01)
    client = LLMClient(provider, cache=LLMCache(tmp_path / "cache.sqlite"), **kwargs)
    OPEN_CLIENTS.append(client)
    return client


def ask(text, **fields):
    return LLMRequest(messages=(Message(role="user", content=text),), **fields)


def test_structured_output_is_requested_as_json_schema_and_validated(server, tmp_path):
    client = make_client(server, tmp_path)
    response = client.complete(structured_request([("user", "which?")], Verdict, template_version="t/1"), Verdict)
    assert response.parsed == Verdict(better="A", reason="it is right")
    body = server.requests[-1]
    assert body["response_format"]["type"] == "json_schema"
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["required"] == ["better", "reason"] and schema["additionalProperties"] is False
    assert body["temperature"] == 0.0 and body["seed"] == 0 and body["model"] == "fake-model"


def test_logprobs_come_back(server, tmp_path):
    response = make_client(server, tmp_path).complete(ask("Yes or no?", logprobs=True, top_logprobs=2, max_tokens=2))
    assert response.text == "Yes"
    assert response.logprobs[0].top == {"Yes": -0.1, "No": -2.4}


def test_429_500_and_a_broken_body_are_retried(server, tmp_path):
    server.inject("429", "500", "garbage")
    client = make_client(server, tmp_path)
    response = client.complete(ask("hello"))
    assert response.text == "Yes" and response.attempts == 4
    assert len(server.requests) == 4 and client.stats.retries == 3


def test_a_hanging_request_times_out_and_is_retried(server, tmp_path):
    server.inject("hang")
    client = make_client(server, tmp_path, timeout=0.5)
    response = client.complete(ask("hello"))
    assert response.ok and response.attempts == 2 and client.stats.retries == 1
    assert client.cache.stats()["calls_logged"] == {"error": 1, "ok": 1}
    # the client's timeout fired (the server would have held the request for 3 s)
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:
        errors = [row[0] for row in db.execute("SELECT error FROM calls WHERE status = 'error'")]
    assert errors == ["timeout after 0.5s"]


def test_malformed_json_is_retried_then_recorded_missing(server, tmp_path):
    server.inject("malformed")
    client = make_client(server, tmp_path)
    response = client.complete(structured_request([("user", "a")], Verdict), Verdict)
    assert response.ok and client.stats.invalid_replies == 1
    server.inject("malformed", "malformed", "malformed")
    response = client.complete(structured_request([("user", "b")], Verdict), Verdict)
    assert not response.ok and "invalid reply after 3 attempts" in response.error
    assert client.stats.missing == 1


def test_400_is_not_retried_and_401_stops_with_a_clear_error(server, tmp_path):
    server.inject("400")
    client = make_client(server, tmp_path)
    response = client.complete(ask("a"))
    assert response.error.startswith("request rejected: HTTP 400") and len(server.requests) == 1
    server.inject("401")
    with pytest.raises(LLMAuthError, match="refused the API key"):
        client.complete(ask("b"))


def test_key_comes_from_the_named_variable_and_is_never_stored(server, tmp_path, monkeypatch):
    monkeypatch.setenv("MY_KEY", "sk-test-secret-123")
    provider = get_llm("openai/fake-model", base_url=server.base_url, api_key_env="MY_KEY")
    client = LLMClient(provider, cache=LLMCache(tmp_path / "cache.sqlite"))
    client.complete(ask("x"))
    client.close()
    for path in tmp_path.glob("cache.sqlite*"):
        assert b"sk-test-secret-123" not in path.read_bytes()


def test_no_key_and_no_server_is_a_clear_error():
    with pytest.raises(LLMAuthError, match="OPENAI_API_KEY"):
        get_llm("openai/gpt-4o-mini")


def test_same_run_twice_makes_no_second_call(server, tmp_path):
    requests = [ask(f"item {i}") for i in range(20)]
    make_client(server, tmp_path).map(requests)
    assert len(server.requests) == 20
    again = make_client(server, tmp_path)
    responses = again.map(requests)
    assert len(server.requests) == 20 and all(r.cached for r in responses)
    assert again.stats.calls == 0 and again.stats.cache_hits == 20


def test_kill_9_mid_run_then_resume_repeats_no_completed_call(tmp_path):
    count = 40
    cache_path = tmp_path / "cache.sqlite"
    env = {**os.environ, "OPENAI_API_KEY": "test"}
    with FakeOpenAIServer(delay=0.05) as server:
        job = subprocess.Popen([sys.executable, str(JOB), server.base_url, str(cache_path), str(count)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while len(server.answered) < 12 and time.time() < deadline:
            time.sleep(0.01)
        job.send_signal(signal.SIGKILL)
        job.wait()
        assert job.returncode == -signal.SIGKILL
        with LLMCache(cache_path) as cache:
            saved_after_kill = cache.keys()
        answered_before = [b["messages"][0]["content"] for b in server.answered]
        assert 0 < len(saved_after_kill) < count
        # every reply the killed process had received and stored is there
        assert len(saved_after_kill) >= len(answered_before) - 2  # at most the 2 in flight were lost

        first_run_requests = len(server.requests)
        finished = subprocess.run([sys.executable, str(JOB), server.base_url, str(cache_path), str(count)],
                                  env=env, capture_output=True, text=True, timeout=120, check=True)
        stats = json.loads(finished.stdout)
        resumed = [b["messages"][0]["content"] for b in server.requests[first_run_requests:]]
    assert stats["ok"] == count
    assert stats["cache_hits"] == len(saved_after_kill)
    assert stats["calls"] == len(resumed) == count - len(saved_after_kill)
    stored_items = {f"item {i}" for i in range(count)} - set(resumed)
    assert len(stored_items) == len(saved_after_kill)  # nothing that was saved was asked again
    with LLMCache(cache_path) as cache:
        assert len(cache) == count


@pytest.mark.parametrize("status", ["500", "403", "400"])
def test_a_key_echoed_by_the_server_is_never_stored_or_printed(server, tmp_path, monkeypatch, status):
    key = "sk-test-0123456789abcdefSECRET"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    server.inject(f"echo-key-{status}")
    client = make_client(server, tmp_path, max_retries=1)
    error_text = ""
    try:
        response = client.complete(ask("hello"))
        error_text = str(response.error)
    except Exception as exc:  # 403 is fatal for the run: LLMAuthError
        error_text = str(exc)
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:
        stored = " ".join(str(row) for row in db.execute("SELECT * FROM calls"))
        stored += " ".join(str(row) for row in db.execute("SELECT * FROM responses"))
    assert "[redacted]" in error_text + stored  # the message was kept, without the key
    for text in (error_text, stored):
        assert key not in text and "0123456789abcdef" not in text and "SECRET" not in text

"""Test doubles for code that calls LLMs: an in-process fake provider and a local HTTP server.

Neither is ever a default: they exist so that tests (ours and our users') run without a model.

- :class:`FakeLLM` is a :class:`~preflens.llm.base.Provider` answering from a queue or a function.
- :class:`FakeOpenAIServer` is a real OpenAI-compatible HTTP server on ``127.0.0.1`` (chat
  completions with ``response_format`` and ``logprobs``), which can inject 429s, 500s, hangs,
  malformed JSON and broken bodies, and records every request it receives.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .llm.base import LLMReply, LLMRequest, Provider, TransientError

Responder = Callable[[dict[str, Any]], str]


def example_from_schema(schema: dict[str, Any]) -> Any:
    """A small value that follows a JSON schema (first enum value, empty strings, zeros)."""
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return example_from_schema(schema[key][0])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "object":
        return {name: example_from_schema(sub) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        return [example_from_schema(schema.get("items", {}))] * int(schema.get("minItems", 0))
    return {"string": "", "integer": 0, "number": 0.0, "boolean": False, "null": None}.get(str(kind), "")


def default_responder(body: dict[str, Any]) -> str:
    """Reply with a schema example when a JSON schema is asked for, else ``Yes``."""
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        return json.dumps(example_from_schema(response_format["json_schema"]["schema"]))
    return "Yes"


class FakeLLM(Provider):
    """A provider that answers from queued texts or a function of the request.

    Parameters
    ----------
    replies : iterable of str, or callable(LLMRequest) -> str
        Queued replies (an exhausted queue raises) or a function computing each reply.
    failures : iterable of Exception, optional
        Raised, one per call, before any reply is given (e.g. ``TransientError("429")``).
    """

    name = "fake"

    def __init__(self, replies: Iterable[str] | Callable[[LLMRequest], str] = (), *,
                 failures: Iterable[Exception] = (), model: str = "fake-model",
                 max_concurrency: int = 4) -> None:
        self.model = model
        self.default_concurrency = max_concurrency
        self._function = replies if callable(replies) else None
        self._queue: deque[str] = deque() if callable(replies) else deque(replies)
        self._failures: deque[Exception] = deque(failures)
        self.history: list[LLMRequest] = []

    async def complete(self, request: LLMRequest) -> LLMReply:
        self.history.append(request)
        if self._failures:
            raise self._failures.popleft()
        if self._function is not None:
            text = self._function(request)
        elif self._queue:
            text = self._queue.popleft()
        else:
            raise TransientError("FakeLLM has no queued reply left")
        prompt_tokens = sum(len(m.content.split()) for m in request.messages)
        return LLMReply(text=text, finish_reason="stop", prompt_tokens=prompt_tokens,
                        completion_tokens=len(text.split()))


class FakeOpenAIServer:
    """An OpenAI-compatible chat completions server on 127.0.0.1, for tests.

    Use as a context manager; ``base_url`` is the ``/v1`` URL to give the client.

    Parameters
    ----------
    responder : callable(body) -> str
        Computes the assistant's text from the request body (default :func:`default_responder`).
    delay : float
        Seconds to wait before answering each request.

    Faults are queued with :meth:`inject` and consumed one per request, in order:
    ``"429"`` (with ``Retry-After: 0``), ``"500"``, ``"hang"`` (no answer for ``hang_seconds``),
    ``"malformed"`` (a 200 whose content is not the requested JSON), ``"garbage"`` (a 200 whose
    body is not JSON at all), ``"400"`` and ``"401"``, and ``"echo-key-500"``/``-403``/``-400`` (an error whose
    message repeats the request's ``Authorization`` header and key).
    """

    def __init__(self, responder: Responder = default_responder, *, delay: float = 0.0,
                 hang_seconds: float = 5.0) -> None:
        self.responder = responder
        self.delay = delay
        self.hang_seconds = hang_seconds
        self.requests: list[dict[str, Any]] = []
        self.answered: list[dict[str, Any]] = []
        self._faults: deque[str] = deque()
        self._lock = threading.Lock()
        self._stop_hanging = threading.Event()
        server_class = type("Server", (ThreadingHTTPServer,), {"request_queue_size": 256,  # many clients at once
                                                               "handle_error": _quiet_disconnects})
        self._httpd = server_class(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        port = self._httpd.server_address[1]
        return f"http://127.0.0.1:{port}/v1"

    def inject(self, *faults: str) -> None:
        """Queue faults for the next requests."""
        with self._lock:
            self._faults.extend(faults)

    def __enter__(self) -> FakeOpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop_hanging.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def _next_fault(self) -> str | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes; without this, Nagle's algorithm and the
                # client's delayed ACK add about 40 ms to every answer.
                self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
                raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:  # noqa: N802
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [{"id": "fake-model", "object": "model"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    self._send(400, {"error": {"message": "body is not JSON"}})
                    return
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                with server._lock:
                    server.requests.append(body)
                fault = server._next_fault()
                if server.delay:
                    time.sleep(server.delay)
                if fault == "hang":
                    server._stop_hanging.wait(server.hang_seconds)
                    return self._send(500, {"error": {"message": "hung request"}})
                if fault in ("429", "500", "400", "401"):
                    status = int(fault)
                    headers = {"Retry-After": "0"} if status == 429 else None
                    return self._send(status, {"error": {"message": f"injected {fault}", "type": "test"}}, headers)
                if fault and fault.startswith("echo-key-"):  # a careless server that echoes the credentials
                    status = int(fault.rsplit("-", 1)[1])
                    auth = self.headers.get("Authorization", "")
                    return self._send(status, {"error": {"message": f"bad request with headers Authorization: "
                                                                    f"{auth}; key={auth.removeprefix('Bearer ')}"}})
                if fault == "garbage":
                    return self._send(200, b"<html>not json</html>")
                text = "{not valid json" if fault == "malformed" else server.responder(body)
                self._send(200, _completion(body, text))
                with server._lock:
                    server.answered.append(body)

        return Handler


def _quiet_disconnects(server: Any, request: Any, client_address: Any) -> None:
    """A client that went away (timed out, was killed) is expected in tests; other errors are printed."""
    import sys

    if not isinstance(sys.exc_info()[1], ConnectionError):
        ThreadingHTTPServer.handle_error(server, request, client_address)


def _completion(body: dict[str, Any], text: str) -> dict[str, Any]:
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
    choice: dict[str, Any] = {"index": 0, "finish_reason": "stop",
                              "message": {"role": "assistant", "content": text}}
    if body.get("logprobs"):
        other = "No" if text.strip() == "Yes" else "Yes"
        choice["logprobs"] = {"content": [{
            "token": text, "logprob": -0.1, "bytes": list(text.encode()),
            "top_logprobs": [{"token": text, "logprob": -0.1, "bytes": list(text.encode())},
                             {"token": other, "logprob": -2.4, "bytes": list(other.encode())}],
        }]}
    return {
        "id": f"chatcmpl-test-{int(time.time() * 1000)}", "object": "chat.completion",
        "created": int(time.time()), "model": body.get("model", "fake-model"), "choices": [choice],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(text.split()),
                  "total_tokens": prompt_tokens + len(text.split())},
    }


def kill_session(sid: int, *, timeout: float = 30.0) -> None:
    """SIGKILL every process of session ``sid`` until none is left (Linux ``/proc``).

    For tests and benchmarks that kill a stage started with ``start_new_session=True``: a local
    Ray's workers run in process groups of their own, so killing the stage's group leaves them
    finishing their batches for a few seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        members = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":  # field 6 of stat: the session id
                members.append(int(stat.parent.name))
        if not members:
            return
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)
    raise RuntimeError(f"processes of session {sid} survive SIGKILL")

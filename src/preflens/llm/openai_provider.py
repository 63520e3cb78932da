"""Any OpenAI-compatible chat completions server: OpenAI, vLLM, SGLang, Ollama, llama.cpp server.

Selected as ``--llm openai/MODEL``. The server is ``--base-url`` or ``$OPENAI_BASE_URL`` (default
OpenAI's). The key is read from ``$OPENAI_API_KEY`` or from the environment variable named by
``api_key_env``; it is sent in the ``Authorization`` header and never written to the cache, a log
or ``run.json``. The :class:`~preflens.llm.client.LLMClient` retries; this provider does not.

The requests go out through aiohttp, one connection pool per event loop: the body is the JSON of
the chat-completions request and the reply is read as a plain dict. This is the whole protocol the
tool needs, and it costs a third of the CPU per request of the ``openai`` SDK, whose per-call
parameter transformation, reply models and httpx pool bookkeeping (which checks every idle
connection on each request) made the client, not the server, the limit at 32 requests in flight
(``benchmarks/bench_concurrency.py``).
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from .._version import __version__
from ..errors import ConfigError, LLMAuthError, LLMError
from .base import (
    LLMReply,
    LLMRequest,
    Provider,
    RequestError,
    TransientError,
    redact,
    reply_from_completion,
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class OpenAIProvider(Provider):
    """Chat completions on an OpenAI-compatible server.

    Parameters
    ----------
    model : str
        The model name the server knows (``gpt-4o-mini``, ``Qwen/Qwen2.5-7B-Instruct``, ...).
    base_url : str, optional
        The server's ``/v1`` URL; default ``$OPENAI_BASE_URL`` or OpenAI.
    api_key_env : str
        Name of the environment variable holding the key (default ``OPENAI_API_KEY``).
    max_concurrency : int
        Default number of requests in flight for this backend.
    structured_outputs : bool
        Send ``response_format={"type": "json_schema", ...}`` for requests with a schema. Turn it
        off for servers that reject it; replies are then still validated.
    """

    name = "openai"

    def __init__(self, model: str, *, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 max_concurrency: int = 8, structured_outputs: bool = True) -> None:
        if not model:
            raise ConfigError("an OpenAI-compatible LLM needs a model name: --llm openai/MODEL")
        self.model = model
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        self.default_concurrency = max_concurrency
        self.structured_outputs = structured_outputs
        key = os.environ.get(api_key_env)
        if not key and self.base_url is None:
            raise LLMAuthError(
                f"no API key: set the {api_key_env} environment variable, or point --base-url at a "
                "local server (vLLM, Ollama, llama.cpp) that needs none"
            )
        self._headers = {"Content-Type": "application/json", "Accept": "application/json",
                         "User-Agent": f"preflens/{__version__}"}
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        self._secrets = (key,) if key else ()
        self._url = (self.base_url or DEFAULT_BASE_URL).rstrip("/") + "/chat/completions"
        self._session: Any = None
        self._session_loop: Any = None
        import aiohttp  # noqa: F401  (here, not at the first call: its import held the event loop for about 0.1 s)

    def _pool(self) -> Any:
        """The aiohttp session for the running event loop (its connections belong to one loop)."""
        import aiohttp

        loop = asyncio.get_running_loop()
        if self._session is None or self._session_loop is not loop:
            # no limit of its own: the client's semaphore bounds the requests in flight
            connector = aiohttp.TCPConnector(limit=0)
            self._session = aiohttp.ClientSession(connector=connector, headers=self._headers,
                                                  timeout=aiohttp.ClientTimeout(total=None))
            self._session_loop = loop
        return self._session

    def _body(self, request: LLMRequest) -> dict[str, Any]:
        return {"model": self.model, **request.chat_body(structured=self.structured_outputs)}

    async def complete(self, request: LLMRequest) -> LLMReply:
        import aiohttp

        body = json.dumps(self._body(request)).encode()
        try:
            async with self._pool().post(self._url, data=body) as response:
                status, raw = response.status, await response.read()
                retry_after = _seconds(response.headers.get("retry-after"))
        except aiohttp.ClientError as exc:  # refused, reset, broken body, bad status line
            raise TransientError(redact(f"connection failed: {type(exc).__name__}: {exc}", self._secrets)[:300]) from None
        if status >= 400:
            # the key is taken out before the message is cut, so no part of it survives the cut
            raise self._status_error(status, _message(raw, self._secrets), retry_after)
        try:
            completion = json.loads(raw)
            if not completion.get("choices"):
                raise TransientError("the server returned no choices")
            return reply_from_completion(completion)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            raise TransientError(redact(f"malformed response from the server: {type(exc).__name__}: {exc}",
                                        self._secrets)[:300]) from None

    def _status_error(self, status: int, message: str, retry_after: float | None) -> Exception:
        """The error for an HTTP status: fatal for the run, worth retrying, or this request's."""
        if status == 401:
            return LLMAuthError(f"{self.spec}: the server refused the API key ({status}); check it")
        if status == 403:
            return LLMAuthError(f"{self.spec}: permission denied ({status}): {message}")
        if status == 404:
            return LLMError(f"{self.spec}: not found at {self.base_url or DEFAULT_BASE_URL} ({message}); "
                            "check the model name and --base-url (it usually ends in /v1)")
        if status == 429:
            return TransientError(f"rate limited (429): {message}", retry_after)
        if status >= 500 or status in (408, 409):
            return TransientError(f"server error {status}: {message}", retry_after)
        return RequestError(f"HTTP {status}: {message}")

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            if self._session_loop is asyncio.get_running_loop():
                await session.close()


def _message(raw: bytes, secrets: tuple[str, ...] = ()) -> str:
    """The error message of an OpenAI-style error body, or the start of the body, with secrets taken out."""
    try:
        body = json.loads(raw)
    except ValueError:
        return redact(raw[:4000].decode("utf-8", "replace"), secrets)[:300]
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return redact(str(inner["message"])[:4000], secrets)[:300]
    return redact(str(body)[:4000], secrets)[:300]


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None

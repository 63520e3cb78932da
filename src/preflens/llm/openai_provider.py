"""Any OpenAI-compatible chat completions server: OpenAI, vLLM, SGLang, Ollama, llama.cpp server.

Selected as ``--llm openai/MODEL``. The server is ``--base-url`` or ``$OPENAI_BASE_URL`` (default
OpenAI's). The key is read from ``$OPENAI_API_KEY`` or from the environment variable named by
``api_key_env``; it is passed to the SDK and never written to the cache, a log or ``run.json``.
The SDK's own retries are off: the :class:`~preflens.llm.client.LLMClient` retries.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ..errors import ConfigError, LLMAuthError, LLMError
from .base import (
    LLMReply,
    LLMRequest,
    Provider,
    RequestError,
    TransientError,
    reply_from_completion,
)

# Servers that need no key (vLLM, Ollama, llama.cpp) still require the SDK to get one.
_PLACEHOLDER_KEY = "not-needed"


class OpenAIProvider(Provider):
    """Chat completions through the official ``openai`` SDK.

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
        import openai

        self.model = model
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        self.default_concurrency = max_concurrency
        self.structured_outputs = structured_outputs
        key = os.environ.get(api_key_env)
        if not key:
            if self.base_url is None:
                raise LLMAuthError(
                    f"no API key: set the {api_key_env} environment variable, or point --base-url at a "
                    "local server (vLLM, Ollama, llama.cpp) that needs none"
                )
            key = _PLACEHOLDER_KEY
        self._openai = openai
        self._key = key
        self._client: Any = None
        self._client_loop: Any = None

    def _sdk(self) -> Any:
        """The SDK client for the running event loop (its connection pool belongs to one loop)."""
        import asyncio

        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = self._openai.AsyncOpenAI(api_key=self._key, base_url=self.base_url,
                                                    max_retries=0, timeout=None)
            self._client_loop = loop
        return self._client

    def _body(self, request: LLMRequest) -> dict[str, Any]:
        return {"model": self.model, **request.chat_body(structured=self.structured_outputs)}

    async def complete(self, request: LLMRequest) -> LLMReply:
        openai = self._openai
        try:
            # The body goes out as JSON bytes and the reply comes back as a plain dict: the SDK
            # keeps the connection pool, headers and error types, without its per-call
            # transformation of the parameters and its pydantic model of the reply.
            response = await self._sdk().post(
                "/chat/completions", cast_to=bytes, content=json.dumps(self._body(request)).encode(),
                options={"headers": {"Content-Type": "application/json"}})
        except openai.AuthenticationError as exc:
            raise LLMAuthError(f"{self.spec}: the server refused the API key ({exc.status_code}); check it") from None
        except openai.PermissionDeniedError as exc:
            raise LLMAuthError(f"{self.spec}: permission denied ({exc.status_code}): {_message(exc)}") from None
        except openai.NotFoundError as exc:
            raise LLMError(
                f"{self.spec}: not found at {self.base_url or 'the OpenAI API'} ({_message(exc)}); "
                "check the model name and --base-url (it usually ends in /v1)"
            ) from None
        except openai.RateLimitError as exc:
            raise TransientError(f"rate limited (429): {_message(exc)}", _retry_after(exc)) from None
        except openai.APITimeoutError:
            raise TransientError("the request timed out") from None
        except openai.APIConnectionError as exc:
            raise TransientError(f"connection failed: {exc}") from None
        except openai.APIStatusError as exc:
            if exc.status_code >= 500 or exc.status_code in (408, 409):
                raise TransientError(f"server error {exc.status_code}: {_message(exc)}", _retry_after(exc)) from None
            raise RequestError(f"HTTP {exc.status_code}: {_message(exc)}") from None
        except openai.APIResponseValidationError as exc:
            raise TransientError(f"malformed response from the server: {exc}") from None
        except ValueError as exc:  # a body that is not JSON at all
            raise TransientError(f"malformed response from the server: {exc}") from None
        try:
            completion = json.loads(response)
            if not completion.get("choices"):
                raise TransientError("the server returned no choices")
            return reply_from_completion(completion)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            raise TransientError(f"malformed response from the server: {type(exc).__name__}: {exc}"[:300]) from None

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def _message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
    return str(getattr(exc, "message", exc))[:300]


def _retry_after(exc: Any) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None

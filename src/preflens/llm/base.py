"""What every LLM backend speaks: requests, responses, and the provider interface.

A provider does one thing: send one chat request and return the reply. Caching, concurrency,
retries, schema validation and accounting are the :class:`~preflens.llm.client.LLMClient`'s job.
"""

from __future__ import annotations

import abc
import copy
import hashlib
import json
import math
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

CACHE_KEY_TAG = "sha256:"


class Message(BaseModel):
    """One chat message."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    role: Literal["system", "user", "assistant"]
    content: str


class LLMRequest(BaseModel):
    """One chat completion to make.

    Every field except ``stage`` and ``item`` changes the output and so enters the cache key.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    messages: tuple[Message, ...]
    json_schema: dict[str, Any] | None = Field(
        default=None, description="JSON schema the reply must follow (structured output)."
    )
    schema_name: str = "reply"
    temperature: float = 0.0
    max_tokens: int = 512
    seed: int | None = 0
    logprobs: bool = False
    top_logprobs: int | None = None
    template_version: str = Field(
        default="", description="Name and version of the prompt template that built the messages."
    )
    stage: str = Field(default="", description="Pipeline stage, for accounting only.")
    item: str = Field(default="", description="Which pair or batch this is for, for logs only.")

    @classmethod
    def chat(cls, messages: Any, **fields: Any) -> LLMRequest:
        """A request from ``(role, text)`` pairs or :class:`Message` objects."""
        built = tuple(m if isinstance(m, Message) else Message(role=m[0], content=m[1]) for m in messages)
        return cls(messages=built, **fields)

    def key_fields(self) -> dict[str, Any]:
        """The fields that change the output (everything but accounting labels)."""
        return self.model_dump(mode="json", exclude={"stage", "item"})

    def chat_body(self, *, structured: bool = True, strict: bool = True) -> dict[str, Any]:
        """The OpenAI chat-completions body for this request (without the model name)."""
        body: dict[str, Any] = {
            "messages": [m.model_dump() for m in self.messages],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        if self.seed is not None:
            body["seed"] = self.seed
        if self.logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = self.top_logprobs or 5
        if self.json_schema is not None and structured:
            schema: dict[str, Any] = {"name": self.schema_name, "schema": self.json_schema}
            if strict:
                schema["strict"] = True
            body["response_format"] = {"type": "json_schema", "json_schema": schema}
        return body


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces, so equal values give equal strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def cache_key(provider: str, model: str, request: LLMRequest) -> str:
    """Tagged hash of everything that changes the output of a request."""
    return cache_key_and_json(provider, model, request)[0]


def cache_key_and_json(provider: str, model: str, request: LLMRequest) -> tuple[str, str]:
    """(:func:`cache_key`, the canonical JSON of the request's key fields), the request encoded once."""
    request_json = canonical_json(request.key_fields())
    # = canonical_json({"provider": ..., "model": ..., "request": key_fields}): the keys in sorted order
    payload = f'{{"model":{canonical_json(model)},"provider":{canonical_json(provider)},"request":{request_json}}}'
    return CACHE_KEY_TAG + hashlib.sha256(payload.encode("utf-8")).hexdigest(), request_json


class TokenLogprob(BaseModel):
    """One generated token with its log-probability and the top alternatives."""

    token: str
    logprob: float
    top: dict[str, float] = Field(default_factory=dict)


class LLMReply(BaseModel):
    """What a provider returns for one request."""

    text: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0  # prompt tokens the server reused from its prompt cache
    logprobs: list[TokenLogprob] | None = None


class LLMResponse(BaseModel):
    """What the client returns: the reply (or why there is none) and where it came from."""

    key: str
    text: str | None = None
    parsed: Any = None
    logprobs: list[TokenLogprob] | None = None
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached: bool = False
    error: str | None = None
    attempts: int = 0

    @property
    def ok(self) -> bool:
        return self.error is None

    def option_probability(self, first: set[str], second: set[str]) -> float:
        """P(first) / (P(first) + P(second)) over the first token's alternatives; NaN when neither appears.

        Tokens are compared stripped and lower-cased, e.g. ``{"yes", "y"}`` against ``{"no", "n"}``.
        """
        if not self.logprobs:
            return math.nan
        mass = {"first": 0.0, "second": 0.0}
        for token, logprob in self.logprobs[0].top.items():
            word = token.strip().lower()
            if word in first:
                mass["first"] += math.exp(logprob)
            elif word in second:
                mass["second"] += math.exp(logprob)
        total = mass["first"] + mass["second"]
        return mass["first"] / total if total > 0 else math.nan


def reply_from_completion(completion: dict[str, Any]) -> LLMReply:
    """An :class:`LLMReply` from an OpenAI-style chat completion given as a dict (any provider)."""
    choice = completion["choices"][0]
    usage = completion.get("usage") or {}
    content = (choice.get("logprobs") or {}).get("content")
    logprobs = [
        TokenLogprob(token=item["token"], logprob=item["logprob"],
                     top={alt["token"]: alt["logprob"] for alt in item.get("top_logprobs") or []})
        for item in content
    ] if content else None
    return LLMReply(
        text=(choice.get("message") or {}).get("content") or "",
        finish_reason=choice.get("finish_reason"),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        cached_prompt_tokens=int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0),
        logprobs=logprobs,
    )


_SECRET_AFTER = re.compile(r"(?i)(bearer\s+|authorization[\"']?\s*[:=]\s*[\"']?(?:bearer\s+)?|"
                           r"api[_-]?key[\"']?\s*[:=]\s*[\"']?|x-api-key[\"']?\s*[:=]\s*[\"']?)"
                           r"([^\s\"',;}\]]+)")
_KEY_LIKE = re.compile(r"\b(sk|pk|rk)-[A-Za-z0-9_\-*.]{6,}")


def redact(text: str, secrets: tuple[str, ...] | list[str] = ()) -> str:
    """The text with every secret taken out: the given keys (and their halves, when a server echoes part of
    one), anything after ``Bearer``/``Authorization``/``api_key``, and ``sk-...``-style keys."""
    for secret in secrets:
        if secret and len(secret) >= 8:
            text = text.replace(secret, "[redacted]")
            for part in (secret[: len(secret) // 2], secret[len(secret) // 2:]):
                if len(part) >= 8:
                    text = text.replace(part, "[redacted]")
    text = _SECRET_AFTER.sub(lambda m: m.group(1) + "[redacted]", text)
    return _KEY_LIKE.sub("[redacted]", text)


class TransientError(Exception):
    """A failure worth retrying: rate limit, timeout, server error, dropped connection."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RequestError(Exception):
    """A failure of this one request that retrying will not fix (for example a 400)."""


class Provider(abc.ABC):
    """An LLM backend. Subclasses implement :meth:`complete` and set ``name`` and ``model``.

    ``complete`` raises :class:`TransientError` for failures worth retrying,
    :class:`RequestError` for a bad request, and :class:`~preflens.errors.LLMAuthError` or
    :class:`~preflens.errors.LLMError` for failures that will hit every request.
    """

    name: str = "provider"
    model: str = ""
    default_concurrency: int = 4
    cancellable: bool = True
    """Whether an abandoned call stops (so the client may time it out and retry)."""
    supports_logprobs: bool = True

    @abc.abstractmethod
    async def complete(self, request: LLMRequest) -> LLMReply:
        """Send one request and return the reply."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections or model memory."""

    @property
    def spec(self) -> str:
        """``provider/model`` as given on the command line."""
        return f"{self.name}/{self.model}" if self.model else self.name


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of a JSON schema in the form OpenAI's strict structured outputs accept.

    Every object gets ``additionalProperties: false`` and lists all its properties as required;
    pydantic's ``title`` keys are dropped.
    """

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: fix(v) for k, v in node.items() if k != "title"}
            if node.get("type") == "object" and "properties" in node:
                node["additionalProperties"] = False
                node["required"] = list(node["properties"])
            return node
        if isinstance(node, list):
            return [fix(v) for v in node]
        return node

    return fix(copy.deepcopy(schema))

"""The one route every LLM call takes: cache, concurrency limit, retries, validation, accounting.

::

    request ──> cache hit? ──yes──> response (no call)
                   │ no
                   v
          semaphore (max_concurrency) ──> provider.complete ──> retry on 429/5xx/timeout
                   │                                              (exponential backoff + jitter,
                   v                                               honouring Retry-After)
          validate against the schema ──invalid──> retry a bounded number of times, then "missing"
                   │ valid
                   v
          count tokens and cost, hold in the cache ──> response
                   │
                   v
          commit the replies held (one transaction per turn of the event loop)

``amap`` runs ``max_concurrency`` workers over the requests, not a task per request.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import BaseModel, ValidationError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from ..errors import ConfigError, LLMError, LLMUnavailableError
from .base import (
    LLMReply,
    LLMRequest,
    LLMResponse,
    Message,
    Provider,
    RequestError,
    TransientError,
    cache_key_and_json,
    strict_schema,
)
from .cache import LLMCache, elapsed_ms


class BudgetExceededError(LLMError):
    """The call or cost limit of a run was reached; replies so far are cached."""


@dataclass
class Price:
    """Prices in US dollars per million tokens."""

    input_per_million: float
    output_per_million: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_million + completion_tokens * self.output_per_million) / 1e6


@dataclass
class UsageStats:
    """What a client did: requests answered, calls made, tokens spent."""

    requests: int = 0
    cache_hits: int = 0
    calls: int = 0
    retries: int = 0
    invalid_replies: int = 0
    missing: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    cost_usd: float = 0.0
    call_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cost_usd"] = round(self.cost_usd, 6)
        data["call_seconds"] = round(self.call_seconds, 3)
        return data


@dataclass
class _Outcome:
    reply: LLMReply | None
    parsed: Any = None
    error: str | None = None
    attempts: int = 0


def structured_request(messages: Sequence[tuple[str, str]] | Sequence[Message], output_type: type[BaseModel],
                       **fields: Any) -> LLMRequest:
    """An :class:`LLMRequest` whose reply must be JSON following ``output_type``'s schema."""
    return LLMRequest.chat(messages, json_schema=strict_schema(output_type.model_json_schema()),
                           schema_name=output_type.__name__, **fields)


class LLMClient:
    """Send requests to a provider through the cache, with limits, retries and accounting.

    Parameters
    ----------
    provider : Provider
        The backend (see :func:`preflens.llm.get_llm`).
    cache : LLMCache or None
        Where replies are stored; ``None`` disables caching.
    max_concurrency : int, optional
        Requests in flight at once (default: the provider's own default).
    max_retries : int
        Retries of one call on rate limits, timeouts, 5xx and dropped connections.
    initial_backoff, max_backoff : float
        Seconds of exponential backoff (with jitter) between retries; a ``Retry-After`` from the
        server is honoured up to ``max_backoff``.
    timeout : float
        Seconds one call may take before it counts as a timeout (and is retried); not applied to a
        provider that cannot cancel a call (the in-process local model, bounded by max_tokens instead).
    max_invalid_retries : int
        Extra calls when a reply does not follow the schema; each retry changes the seed.
        After that the item is recorded as missing, never a crash.
    max_consecutive_failures : int
        Stop with :class:`~preflens.errors.LLMUnavailableError` when this many requests in a row
        fail after all their retries (the backend is down); replies so far stay cached.
    price : Price, optional
        Token prices, to account the cost in dollars.
    max_calls : int, optional
        Stop with :class:`BudgetExceededError` once this many backend calls were made.
    max_cost : float, optional
        Stop with :class:`BudgetExceededError` once the accounted cost reaches this many dollars.
    """

    def __init__(
        self,
        provider: Provider,
        *,
        cache: LLMCache | None = None,
        max_concurrency: int | None = None,
        max_retries: int = 6,
        initial_backoff: float = 1.0,
        max_backoff: float = 60.0,
        timeout: float = 120.0,
        max_invalid_retries: int = 2,
        max_consecutive_failures: int = 8,
        price: Price | None = None,
        max_calls: int | None = None,
        max_cost: float | None = None,
    ) -> None:
        concurrency = max_concurrency or provider.default_concurrency
        if concurrency < 1:
            raise ConfigError(f"max_concurrency must be at least 1; got {concurrency}")
        self.provider = provider
        self.cache = cache
        self.max_concurrency = concurrency
        self.max_retries = max_retries
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.timeout = timeout
        self.max_invalid_retries = max_invalid_retries
        self.max_consecutive_failures = max_consecutive_failures
        self.price = price
        self.max_calls = max_calls
        self.max_cost = max_cost
        self.stats = UsageStats()
        self.stage_stats: dict[str, UsageStats] = {}
        self._semaphore: asyncio.Semaphore | None = None
        self._semaphore_loop: asyncio.AbstractEventLoop | None = None
        self._in_flight: dict[str, asyncio.Future[_Outcome]] = {}
        self._consecutive_failures = 0
        self._runner: asyncio.Runner | None = None
        self._flush_loop: asyncio.AbstractEventLoop | None = None  # the loop where a cache flush is queued
        self._flush_error: Exception | None = None

    # -- accounting ---------------------------------------------------------------------

    def _count(self, stage: str, **increments: float) -> None:
        for stats in (self.stats, self.stage_stats.setdefault(stage, UsageStats())):
            for name, value in increments.items():
                setattr(stats, name, getattr(stats, name) + value)

    def _check_budget(self) -> None:
        if self.max_calls is not None and self.stats.calls >= self.max_calls:
            raise BudgetExceededError(
                f"stopped after {self.stats.calls} LLM calls (--max-calls {self.max_calls}); the replies "
                "so far are cached: run again with a higher limit to go on from here"
            )
        if self.max_cost is not None and self.stats.cost_usd >= self.max_cost:
            raise BudgetExceededError(
                f"stopped at ${self.stats.cost_usd:.4f} (--max-cost {self.max_cost}); the replies so far "
                "are cached: run again with a higher limit to go on from here"
            )

    # -- one call with retries ------------------------------------------------------------

    def _semaphore_for_loop(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if self._semaphore is None or self._semaphore_loop is not loop:
            self._semaphore = asyncio.Semaphore(self.max_concurrency)
            self._semaphore_loop = loop
        return self._semaphore

    def _wait(self, state: RetryCallState) -> float:
        base = wait_exponential_jitter(multiplier=self.initial_backoff, max=self.max_backoff,
                                       jitter=self.initial_backoff)(state)
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after:
            return max(base, min(float(retry_after), self.max_backoff))
        return base

    async def _call_once(self, key: str, request: LLMRequest) -> tuple[LLMReply, int]:
        start = time.perf_counter()
        try:
            async with self._semaphore_for_loop():
                self._check_budget()  # inside the limit, so in-flight calls count before the next check
                self._count(request.stage, calls=1)
                start = time.perf_counter()
                # a provider that cannot cancel a call (the in-process model) is not timed out: the abandoned
                # call would hold the model while the retry waits behind it; its max_tokens bounds it instead
                timeout = self.timeout if self.provider.cancellable else None
                async with asyncio.timeout(timeout):  # no task of its own, unlike wait_for
                    reply = await self.provider.complete(request)
        except (TransientError, RequestError, TimeoutError) as exc:
            error = f"timeout after {self.timeout:g}s" if isinstance(exc, TimeoutError) else str(exc)
            self._log(key, request, "error", error, None, elapsed_ms(start))
            if isinstance(exc, TimeoutError):
                raise TransientError(error) from None
            raise
        self._count(request.stage, call_seconds=time.perf_counter() - start)
        self._account(request.stage, reply)
        return reply, elapsed_ms(start)

    def _account(self, stage: str, reply: LLMReply) -> None:
        cost = self.price.cost(reply.prompt_tokens, reply.completion_tokens) if self.price else 0.0
        self._count(stage, prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
                    cached_prompt_tokens=reply.cached_prompt_tokens, cost_usd=cost)

    def _log(self, key: str, request: LLMRequest, status: str, error: str | None,
             reply: LLMReply | None, duration_ms: int) -> None:
        if self.cache is not None:
            self.cache.log_call(
                key, provider=self.provider.name, model=self.provider.model, stage=request.stage,
                status=status, error=error, prompt_tokens=reply.prompt_tokens if reply else 0,
                completion_tokens=reply.completion_tokens if reply else 0, duration_ms=duration_ms)

    async def _call_with_retries(self, key: str, request: LLMRequest) -> tuple[LLMReply, int, int]:
        """(reply, attempts used, duration of the successful call in ms)."""
        try:  # the first attempt outside tenacity: its set-up and checks cost tens of microseconds a call
            reply, duration = await self._call_once(key, request)
            return reply, 1, duration
        except TransientError as exc:
            first_error: TransientError | None = exc
        attempts = 0
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception_type(TransientError),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                attempts += 1
                if first_error is not None:  # attempt 1 is the failure above: tenacity waits and counts as usual
                    error, first_error = first_error, None
                    raise error
                self._count(request.stage, retries=1)
                reply, duration = await self._call_once(key, request)
                return reply, attempts, duration
        raise AssertionError("unreachable")  # pragma: no cover

    async def _produce(self, key: str, request: LLMRequest, output_type: type[BaseModel] | None,
                       request_json: str) -> _Outcome:
        attempts = 0
        last_error = ""
        attempt_request = request
        for invalid_try in range(self.max_invalid_retries + 1):
            if invalid_try and request.seed is not None:
                attempt_request = attempt_request.model_copy(update={"seed": request.seed + invalid_try})
            try:
                reply, used, duration = await self._call_with_retries(key, attempt_request)
            except TransientError as exc:
                self._consecutive_failures += 1
                if self._consecutive_failures >= self.max_consecutive_failures:
                    raise LLMUnavailableError(
                        f"{self.provider.spec}: {self._consecutive_failures} requests in a row failed after "
                        f"{self.max_retries} retries each (last: {exc}); replies received so far are "
                        "cached, so run again when the server is back"
                    ) from None
                return _Outcome(None, error=f"failed after retries: {exc}", attempts=attempts + self.max_retries + 1)
            except RequestError as exc:
                return _Outcome(None, error=f"request rejected: {exc}", attempts=attempts + 1)
            attempts += used
            self._consecutive_failures = 0
            parsed, problem = _validate(reply, request, output_type)
            if problem is None:
                if self.cache is not None:  # the reply and its call log, committed with this loop turn's others
                    self.cache.put_pending(key, provider=self.provider.name, model=self.provider.model,
                                           stage=request.stage, template_version=request.template_version,
                                           request=request_json, reply=reply, duration_ms=duration, log_call=True)
                    self._flush_this_turn()
                return _Outcome(reply, parsed, None, attempts)
            last_error = problem
            if reply.finish_reason == "length" and attempt_request.max_tokens:
                # cut off: the next try gets twice the room (the reply is still cached under the request's key)
                attempt_request = attempt_request.model_copy(update={"max_tokens": 2 * attempt_request.max_tokens})
            self._count(request.stage, invalid_replies=1)
            self._log(key, request, "invalid", problem, reply, duration)
        return _Outcome(None, error=f"invalid reply after {attempts} attempts: {last_error}", attempts=attempts)

    # -- the cache's writes: one transaction per turn of the event loop --------------------

    def _flush_this_turn(self) -> None:
        """Commit the replies held by the cache at the start of the loop's next turn, before it waits on the
        network again: every reply received is on disk before any other reply can arrive."""
        loop = asyncio.get_running_loop()
        if self._flush_loop is not loop:
            self._flush_loop = loop
            loop.call_soon(self._flush_cache)

    def _flush_cache(self) -> None:
        self._flush_loop = None
        if self.cache is None:
            return
        try:
            self.cache.flush()
            self._flush_error = None
        except Exception as exc:  # the replies stay held; the next request raises this (a full disk, a lock)
            self._flush_error = exc

    # -- public API ---------------------------------------------------------------------

    def cached(self, requests: Sequence[LLMRequest]) -> list[bool]:
        """Whether each request's reply is in the cache already (asking it then costs no call)."""
        if self.cache is None or not requests:
            return [False] * len(requests)
        keys = [cache_key_and_json(self.provider.name, self.provider.model, r)[0] for r in requests]
        found = self.cache.existing(keys)
        return [key in found for key in keys]

    async def acomplete(self, request: LLMRequest, output_type: type[BaseModel] | None = None) -> LLMResponse:
        """Answer one request, from the cache when possible. Never raises for one bad item."""
        if self._flush_error is not None:
            self._flush_cache()  # try again: raises if it still fails
            if self._flush_error is not None:
                raise self._flush_error
        key, request_json = cache_key_and_json(self.provider.name, self.provider.model, request)
        self._count(request.stage, requests=1)
        if self.cache is not None:
            cached = self.cache.get(key)
            if cached is not None:
                parsed, problem = _validate(cached, request, output_type)
                if problem is None:
                    self._count(request.stage, cache_hits=1)
                    return _response(key, _Outcome(cached, parsed), cached=True)
        shared = self._in_flight.get(key)
        if shared is not None:  # the same request is already on its way: wait for that answer
            self._count(request.stage, cache_hits=1)
            return _response(key, await asyncio.shield(shared), cached=True)
        future: asyncio.Future[_Outcome] = asyncio.get_running_loop().create_future()
        self._in_flight[key] = future
        try:
            outcome = await self._produce(key, request, output_type, request_json)
            future.set_result(outcome)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved
            raise
        finally:
            del self._in_flight[key]
        if outcome.error is not None:
            self._count(request.stage, missing=1)
        return _response(key, outcome, cached=False)

    async def amap(self, requests: Sequence[LLMRequest], output_type: type[BaseModel] | None = None,
                   progress: Callable[[LLMResponse], None] | None = None) -> list[LLMResponse]:
        """Answer many requests concurrently, in input order; ``progress`` is called per answer."""
        return await self.amap_each(requests, [output_type] * len(requests), progress)

    async def amap_each(self, requests: Sequence[LLMRequest], output_types: Sequence[type[BaseModel] | None],
                        progress: Callable[[LLMResponse], None] | None = None) -> list[LLMResponse]:
        """Like :meth:`amap`, with each request validated against its own output type.

        ``max_concurrency`` workers take the requests in order. (A task per request would start
        them all in one turn of the event loop: their keys and cache lookups, thousands at once,
        held up the replies of the calls in flight.)"""
        if len(output_types) != len(requests):
            raise ValueError(f"{len(requests)} requests but {len(output_types)} output types")
        stopped: list[BudgetExceededError] = []
        responses: list[LLMResponse | None] = [None] * len(requests)
        queue = iter(enumerate(zip(requests, output_types)))

        async def worker() -> None:
            for index, (request, output_type) in queue:  # one shared iterator: each request is taken once
                try:
                    response = await self.acomplete(request, output_type)
                except BudgetExceededError as exc:  # no new call; calls already sent go on and are kept
                    stopped.append(exc)
                    return
                responses[index] = response
                if progress is not None:
                    progress(response)

        workers = [asyncio.ensure_future(worker()) for _ in range(min(len(requests), self.max_concurrency))]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        if stopped:
            raise stopped[0]
        return responses  # type: ignore[return-value]

    def run(self, coroutine: Any) -> Any:
        """Run a coroutine on this client's own event loop (for synchronous callers)."""
        # One event loop for all synchronous calls, so that connection pools opened by the
        # provider on the first call stay usable on the next.
        if self._runner is None:
            self._runner = asyncio.Runner()
        # While the loop runs, the collector skips the objects that existed before it: a full collection
        # over all of them (the imported libraries, the pairs) held every reply in flight for about 50 ms
        # (benchmarks/bench_concurrency.py). They are collectable again once the run ends. A process that
        # froze objects itself (a server that freezes after start-up) is left as it is.
        result: list[Any] = []
        freeze = gc.get_freeze_count() == 0
        if freeze:
            gc.freeze()
        try:
            self._runner.run(_into(coroutine, result))
            return result[0]
        finally:
            if freeze:
                gc.unfreeze()
            # the loop stops with the coroutine: the held replies are committed now, not at its next run
            self._flush_loop = None
            if self.cache is not None:
                self.cache.flush()

    def complete(self, request: LLMRequest, output_type: type[BaseModel] | None = None) -> LLMResponse:
        """Synchronous :meth:`acomplete`."""
        return self.run(self.acomplete(request, output_type))  # type: ignore[no-any-return]

    def map(self, requests: Sequence[LLMRequest], output_type: type[BaseModel] | None = None,
            progress: Callable[[LLMResponse], None] | None = None) -> list[LLMResponse]:
        """Synchronous :meth:`amap`."""
        return self.run(self.amap(requests, output_type, progress))  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """Close the provider's connections (the cache stays open)."""
        await self.provider.aclose()

    def close(self) -> None:
        """Close the provider, the event loop of the synchronous calls, and the cache."""
        self.run(self.aclose())
        if self._runner is not None:
            self._runner.close()
            self._runner = None
        if self.cache is not None:
            self.cache.close()

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _into(coroutine: Any, result: list[Any]) -> None:
    """Await ``coroutine`` and keep its value in ``result``, so that the task itself returns None.

    On Python 3.11, ``asyncio.Runner.run`` ends with ``signal.getsignal``, which formats the repr of
    its SIGINT handler, and so of the task and the task's result: a run returning data frames spent
    about 40 ms printing them after the last reply (benchmarks/bench_concurrency.py)."""
    result.append(await coroutine)


def _validate(reply: LLMReply, request: LLMRequest, output_type: type[BaseModel] | None) -> tuple[Any, str | None]:
    """Parse a reply: (parsed value, None) when it follows the schema, else (None, why not)."""
    if reply.finish_reason == "length" and request.json_schema is not None:
        return None, f"reply cut off at max_tokens={request.max_tokens}"
    if output_type is not None:
        try:
            return output_type.model_validate_json(reply.text), None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ())) or "reply"
            return None, f"{where}: {first.get('msg', 'invalid')}"
    if request.json_schema is not None:
        import json

        try:
            return json.loads(reply.text), None
        except ValueError as exc:
            return None, f"not JSON: {exc}"
    return reply.text, None


def _response(key: str, outcome: _Outcome, *, cached: bool) -> LLMResponse:
    reply = outcome.reply
    if reply is None:
        return LLMResponse(key=key, error=outcome.error, attempts=outcome.attempts, cached=cached)
    return LLMResponse(
        key=key, text=reply.text, parsed=outcome.parsed, logprobs=reply.logprobs,
        finish_reason=reply.finish_reason, prompt_tokens=reply.prompt_tokens,
        completion_tokens=reply.completion_tokens, cached=cached, attempts=outcome.attempts,
    )

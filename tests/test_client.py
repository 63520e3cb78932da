"""The cached client with an in-process fake provider: cache keys, retries, validation, limits."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel

from preflens import LLMUnavailableError
from preflens.llm import (
    BudgetExceededError,
    LLMCache,
    LLMClient,
    LLMRequest,
    Message,
    Price,
    RequestError,
    TransientError,
    cache_key,
    structured_request,
)
from preflens.testing import FakeLLM


class Verdict(BaseModel):
    better: str


def ask(text: str, **fields) -> LLMRequest:
    return LLMRequest(messages=(Message(role="user", content=text),), **fields)


def fast_client(provider, tmp_path, **kwargs) -> LLMClient:
    kwargs.setdefault("initial_backoff", 0.001)
    kwargs.setdefault("max_backoff", 0.01)
    return LLMClient(provider, cache=LLMCache(tmp_path / "cache.sqlite"), **kwargs)


def test_second_run_makes_no_call(tmp_path):
    requests = [ask(f"question {i}") for i in range(5)]
    first = FakeLLM(lambda r: "answer to " + r.messages[0].content)
    responses = fast_client(first, tmp_path).map(requests)
    assert [r.text for r in responses] == [f"answer to question {i}" for i in range(5)]
    assert len(first.history) == 5
    second = FakeLLM(lambda r: "a different answer")
    client = fast_client(second, tmp_path, max_concurrency=1)
    again = client.map(requests)
    assert second.history == []
    assert [r.text for r in again] == [r.text for r in responses] and all(r.cached for r in again)
    assert client.stats.cache_hits == 5 and client.stats.calls == 0


def test_cache_key_covers_what_changes_the_output_and_nothing_else():
    base = ask("hi", template_version="judge/1", stage="discover", item="p1")
    key = cache_key("openai", "m", base)
    assert key.startswith("sha256:")
    assert cache_key("openai", "m", base.model_copy(update={"stage": "other", "item": "p2"})) == key
    for change in ({"temperature": 0.7}, {"seed": 1}, {"template_version": "judge/2"},
                   {"max_tokens": 9}, {"json_schema": {"type": "object"}}, {"logprobs": True}):
        assert cache_key("openai", "m", base.model_copy(update=change)) != key
    assert cache_key("openai", "other-model", base) != key
    assert cache_key("local", "m", base) != key


def test_transient_errors_are_retried_then_succeed(tmp_path):
    provider = FakeLLM(["ok"], failures=[TransientError("429", retry_after=0.0), TransientError("500")])
    client = fast_client(provider, tmp_path)
    response = client.complete(ask("x"))
    assert response.text == "ok" and response.attempts == 3
    assert client.stats.calls == 3 and client.stats.retries == 2


def test_exhausted_retries_record_missing_without_crashing(tmp_path):
    provider = FakeLLM(["never"], failures=[TransientError("503")] * 3)
    client = fast_client(provider, tmp_path, max_retries=2)
    response = client.complete(ask("x"))
    assert not response.ok and "failed after retries" in response.error
    assert client.stats.missing == 1
    assert len(client.cache) == 0  # failures are not cached
    assert client.cache.stats()["calls_logged"] == {"error": 3}


def test_a_dead_backend_stops_the_run(tmp_path):
    provider = FakeLLM(lambda r: "x", failures=[TransientError("down")] * 100)
    client = fast_client(provider, tmp_path, max_retries=1, max_consecutive_failures=3, max_concurrency=1)
    with pytest.raises(LLMUnavailableError, match="3 requests in a row"):
        client.map([ask(f"q{i}") for i in range(10)])


def test_invalid_structured_reply_is_retried_with_a_new_seed_then_missing(tmp_path):
    provider = FakeLLM(['{"better": 1}', "not json", '{"better": "A"}'])
    client = fast_client(provider, tmp_path)
    request = structured_request([("user", "which?")], Verdict, seed=5)
    response = client.complete(request, Verdict)
    assert response.parsed == Verdict(better="A")
    assert [r.seed for r in provider.history] == [5, 6, 7]
    assert client.stats.invalid_replies == 2
    assert request.json_schema["additionalProperties"] is False

    bad = FakeLLM(["nope"] * 3)
    client = fast_client(bad, tmp_path)
    response = client.complete(structured_request([("user", "other")], Verdict), Verdict)
    assert response.parsed is None and "invalid reply after 3 attempts" in response.error
    assert client.stats.missing == 1


def test_request_errors_are_not_retried(tmp_path):
    provider = FakeLLM(["ok"], failures=[RequestError("HTTP 400: context too long")])
    client = fast_client(provider, tmp_path)
    response = client.complete(ask("x"))
    assert response.error == "request rejected: HTTP 400: context too long"
    assert len(provider.history) == 1


def test_call_budget_stops_with_work_kept(tmp_path):
    provider = FakeLLM(lambda r: "a")
    client = fast_client(provider, tmp_path, max_calls=3, max_concurrency=1)
    with pytest.raises(BudgetExceededError, match="--max-calls 3"):
        client.map([ask(f"q{i}") for i in range(6)])
    assert len(client.cache) == 3
    rest = fast_client(FakeLLM(lambda r: "a"), tmp_path)
    rest.map([ask(f"q{i}") for i in range(6)])
    assert rest.stats.calls == 3 and rest.stats.cache_hits == 3


def test_call_budget_keeps_every_call_already_sent(tmp_path):
    class Slow(FakeLLM):
        async def complete(self, request):
            reply = await super().complete(request)
            await asyncio.sleep(0.02)  # still in flight when the budget is reached
            return reply

    provider = Slow(lambda r: "a")
    client = fast_client(provider, tmp_path, max_calls=5, max_concurrency=8)
    with pytest.raises(BudgetExceededError, match="stopped after 5 LLM calls"):
        client.map([ask(f"q{i}") for i in range(20)])
    assert len(provider.history) == 5  # exactly the budget was sent ...
    assert len(client.cache) == 5  # ... and every reply paid for was kept


def test_concurrency_limit_and_in_flight_deduplication(tmp_path):
    active = {"now": 0, "max": 0}

    class Slow(FakeLLM):
        async def complete(self, request):
            active["now"] += 1
            active["max"] = max(active["max"], active["now"])
            await asyncio.sleep(0.01)
            active["now"] -= 1
            return await super().complete(request)

    provider = Slow(lambda r: "x")
    client = fast_client(provider, tmp_path, max_concurrency=3)
    requests = [ask(f"q{i % 10}") for i in range(30)]  # each distinct request three times
    responses = client.map(requests)
    assert len(responses) == 30 and active["max"] == 3
    assert len(provider.history) == 10


def test_tokens_and_cost_are_accounted_per_stage(tmp_path):
    provider = FakeLLM(lambda r: "one two three")
    client = fast_client(provider, tmp_path, price=Price(1.0, 2.0))
    client.map([ask("a b", stage="discover"), ask("c d e", stage="represent")])
    assert client.stats.prompt_tokens == 5 and client.stats.completion_tokens == 6
    assert client.stats.cost_usd == pytest.approx((5 * 1.0 + 6 * 2.0) / 1e6)
    assert client.stage_stats["discover"].prompt_tokens == 2
    assert client.stage_stats["represent"].calls == 1


def test_cache_stats_and_clear_by_stage(tmp_path):
    client = fast_client(FakeLLM(lambda r: "x"), tmp_path)
    client.map([ask("a", stage="discover"), ask("b", stage="represent")])
    stats = client.cache.stats()
    assert stats["entries"] == 2 and {row["stage"] for row in stats["by_model"]} == {"discover", "represent"}
    assert client.cache.clear(stage="discover") == 1
    assert client.cache.clear() == 1 and len(client.cache) == 0


def test_the_client_says_which_requests_are_cached_without_asking(tmp_path):
    provider = FakeLLM(lambda r: "x")
    client = fast_client(provider, tmp_path)
    client.map([ask(f"q{i}") for i in range(3)])
    asked = len(provider.history)
    probe = [ask(f"q{i}") for i in range(5)]
    assert client.cached(probe) == [True, True, True, False, False]
    assert client.cache.existing(["nope"]) == set()
    assert len(provider.history) == asked  # looking asks nothing
    assert fast_client(FakeLLM(lambda r: "x"), tmp_path).cached(probe[:1]) == [True]  # from the file, in a new client


def test_a_reply_cut_off_at_max_tokens_is_asked_again_with_more_room(tmp_path):
    from preflens.llm import LLMReply

    class Wordy(FakeLLM):
        async def complete(self, request):
            self.history.append(request)
            if request.max_tokens < 40:  # the answer needs 40 tokens
                return LLMReply(text='{"better": "a', finish_reason="length")
            return LLMReply(text='{"better": "a"}', finish_reason="stop")

    provider = Wordy()
    client = fast_client(provider, tmp_path)
    response = client.complete(structured_request([("user", "which?")], Verdict, max_tokens=15), Verdict)
    assert response.ok and response.parsed.better == "a"
    assert [r.max_tokens for r in provider.history] == [15, 30, 60]
    again = fast_client(Wordy(), tmp_path).complete(structured_request([("user", "which?")], Verdict, max_tokens=15),
                                                     Verdict)
    assert again.cached  # kept under the request as it was asked


def test_a_provider_that_cannot_cancel_is_not_timed_out(tmp_path):
    class Uncancellable(FakeLLM):
        cancellable = False

        async def complete(self, request):
            await asyncio.sleep(0.3)  # longer than the timeout
            return await super().complete(request)

    provider = Uncancellable(lambda r: "done")
    client = fast_client(provider, tmp_path, timeout=0.05)
    response = client.complete(ask("slow"))
    assert response.ok and response.attempts == 1 and client.stats.retries == 0
    assert len(provider.history) == 1


def test_workers_look_up_only_the_requests_they_are_about_to_send(tmp_path):
    """A task per request made every key and cache lookup (here 400) before the first reply was read."""
    class Slow(FakeLLM):
        async def complete(self, request):
            await asyncio.sleep(0.001)
            return await super().complete(request)

    client = fast_client(Slow(lambda r: "x"), tmp_path, max_concurrency=4)
    lookups: list[str] = []
    get = client.cache.get
    client.cache.get = lambda key: lookups.append(key) or get(key)  # type: ignore[method-assign]
    seen_at_first_reply: list[int] = []

    def progress(response):
        if not seen_at_first_reply:
            seen_at_first_reply.append(len(lookups))

    responses = client.map([ask(f"q{i}") for i in range(400)], progress=progress)
    assert [r.text for r in responses] == ["x"] * 400 and len(lookups) == 400
    assert seen_at_first_reply[0] <= 2 * 4


def test_replies_are_held_for_one_loop_turn_then_committed_together(tmp_path):
    class Slow(FakeLLM):
        async def complete(self, request):
            await asyncio.sleep(0.001)
            return await super().complete(request)

    client = fast_client(Slow(lambda r: "x"), tmp_path, max_concurrency=8)
    transactions = []
    flush = client.cache.flush
    client.cache.flush = lambda: (transactions.append(client.cache.pending), flush())  # type: ignore[method-assign]

    async def during_the_run():
        responses = await client.amap([ask(f"q{i}") for i in range(40)])
        await asyncio.sleep(0)  # one turn: the last replies' flush runs
        return responses

    client.run(during_the_run())
    written = [n for n in transactions if n]
    assert sum(written) == 40 and max(written) > 1  # replies of one turn share a transaction
    with LLMCache(tmp_path / "cache.sqlite") as other:  # another connection sees them all, and their calls
        assert len(other) == 40 and other.stats()["calls_logged"] == {"ok": 40}


def test_held_replies_are_served_from_memory_and_written_when_the_run_ends(tmp_path):
    cache = LLMCache(tmp_path / "cache.sqlite")
    client = LLMClient(FakeLLM(lambda r: "x"), cache=cache)
    reply = client.complete(ask("q"))  # the run's end commits
    assert reply.text == "x" and cache.pending == 0
    from preflens.llm import LLMReply

    cache.put_pending("k", provider="p", model="m", stage="s", template_version="t", request="{}",
                      reply=LLMReply(text="held"), duration_ms=1, log_call=True)
    assert cache.get("k").text == "held" and cache.pending == 1
    with LLMCache(tmp_path / "cache.sqlite") as other:
        assert other.get("k") is None
    cache.close()  # closing writes what is held
    with LLMCache(tmp_path / "cache.sqlite") as other:
        assert other.get("k").text == "held" and len(other) == 2


def test_a_cache_that_cannot_be_written_stops_the_run_with_its_error(tmp_path):
    import sqlite3

    answered = []

    class Slow(FakeLLM):
        async def complete(self, request):
            await asyncio.sleep(0.001)
            reply = await super().complete(request)
            answered.append(request)
            return reply

    client = fast_client(Slow(lambda r: "x"), tmp_path, max_concurrency=2)

    def full_disk():
        raise sqlite3.OperationalError("database or disk is full")

    client.cache.flush = full_disk  # type: ignore[method-assign]
    with pytest.raises(sqlite3.OperationalError, match="disk is full"):
        client.map([ask(f"q{i}") for i in range(50)])
    assert 0 < len(answered) < 10  # it stopped at the first requests after the failed write ...
    assert client.cache.pending == len(answered)  # ... and every reply received is still held


def test_run_returns_the_value_and_collections_skip_older_objects_only_while_it_runs(tmp_path):
    """A full collection in the middle of a run held every reply in flight (52 ms at 32 in flight, in
    benchmarks/bench_concurrency.py); the run freezes what existed before it and unfreezes after."""
    import gc

    client = fast_client(FakeLLM(lambda r: "ok"), tmp_path)
    seen: list[int] = []

    async def body() -> str:
        seen.append(gc.get_freeze_count())
        return "value"

    assert client.run(body()) == "value"

    async def fails() -> None:
        raise KeyError("inside")

    with pytest.raises(KeyError):
        client.run(fails())
    assert seen[0] > 0 and gc.get_freeze_count() == 0
    gc.freeze()  # a process that froze its own objects keeps them frozen after a run
    try:
        frozen = gc.get_freeze_count()
        assert client.run(body()) == "value" and gc.get_freeze_count() == frozen > 0
    finally:
        gc.unfreeze()
    client.close()

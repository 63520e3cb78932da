"""Commands that look after the tools around a run: the LLM cache and an LLM check."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from ..errors import PreflensError
from . import cli
from ._options import fail_soft, llm_options, make_client
from ._render import console, out, shown


@cli.group()
def cache() -> None:
    """Inspect or clear the LLM cache."""


@cache.command("path")
@click.option("--cache", "cache_path", type=click.Path(dir_okay=False), help="Cache file.")
def cache_path_command(cache_path: str | None) -> None:
    """Print the cache file's path."""
    from ..llm import default_cache_path

    out.print(str(Path(cache_path) if cache_path else default_cache_path()), soft_wrap=True)


@cache.command("stats")
@click.option("--cache", "cache_path", type=click.Path(dir_okay=False), help="Cache file.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@fail_soft
def cache_stats(cache_path: str | None, as_json: bool) -> None:
    """Entries, tokens and calls in the cache, per provider, model and stage."""
    from ..llm import LLMCache

    with LLMCache(cache_path) as store:
        stats = store.stats()
    if as_json:
        out.print_json(json.dumps(stats))
        return
    out.print(f"{stats['path']}: {stats['entries']} cached replies, {stats['size_bytes'] / 1e6:.1f} MB")
    calls = stats["calls_logged"]
    if calls:
        out.print("Calls logged: " + ", ".join(f"{n} {status}" for status, n in sorted(calls.items())))
    if stats["by_model"]:
        table = Table()
        for column in ("provider", "model", "stage", "entries", "prompt tokens", "completion tokens"):
            table.add_column(column, justify="right" if "tok" in column or column == "entries" else "left")
        for row in stats["by_model"]:
            table.add_row(shown(row["provider"]), shown(row["model"]), shown(row["stage"] or "-"), str(row["entries"]),
                          str(row["prompt_tokens"]), str(row["completion_tokens"]))
        out.print(table)


@cache.command("clear")
@click.option("--cache", "cache_path", type=click.Path(dir_okay=False), help="Cache file.")
@click.option("--stage", help="Only this stage's replies.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@fail_soft
def cache_clear(cache_path: str | None, stage: str | None, yes: bool) -> None:
    """Delete cached replies (paid-for work: you will be asked first)."""
    from ..llm import LLMCache

    with LLMCache(cache_path) as store:
        entries = store.stats()["entries"]
        what = f"the '{stage}' replies" if stage else f"all {entries} cached replies"
        if not yes and not click.confirm(f"Delete {what} from {store.path}?", default=False):
            raise click.Abort()
        deleted = store.clear(stage=stage)
    out.print(f"Deleted {deleted} cached replies.")


@cli.group()
def llm() -> None:
    """Check an LLM backend."""


@llm.command("check")
@llm_options
@fail_soft
def llm_check(**opts: Any) -> None:
    """Send two small requests (free text with logprobs, and JSON-schema output) and report.

    Use it to see that a server (vLLM, Ollama, OpenAI, ...) or the embedded model answers, follows
    a JSON schema, and returns log-probabilities, before starting a long run.
    """
    from pydantic import BaseModel

    from ..llm import LLMRequest, Message, structured_request

    class Verdict(BaseModel):
        better: str
        reason: str

    opts = dict(opts, no_cache=True) if not opts["cache_path"] else opts
    opts["max_retries"] = min(opts["max_retries"], 1)  # a check answers fast: a server that is down fails at once
    client = make_client(opts)
    console.print(f"Checking {client.provider.spec} ...")
    yes_no = LLMRequest(
        messages=(Message(role="user", content="Is Paris the capital of France? Answer Yes or No."),),
        max_tokens=2, logprobs=True, top_logprobs=5, template_version="llm-check/1", stage="check")
    structured = structured_request(
        [("user", "Which answer to 'What is 2+2?' is better, A: '4' or B: '5'? Reply in JSON with "
                  "'better' (A or B) and a one-sentence 'reason'.")],
        Verdict, max_tokens=80, template_version="llm-check/1", stage="check")

    async def both() -> list[Any]:
        try:
            results = []
            for request, output_type in ((yes_no, None), (structured, Verdict)):
                start = time.perf_counter()
                response = await client.acomplete(request, output_type)
                results.append((response, time.perf_counter() - start))
                if response.error and "connection failed" in response.error:
                    where = getattr(client.provider, "base_url", None) or client.provider.spec
                    raise PreflensError(f"{client.provider.spec}: cannot reach {where} ({response.error}); is the "
                                        "server running, and does --base-url end in /v1?")
            return results
        finally:
            await client.aclose()

    (plain, plain_s), (js, js_s) = asyncio.run(both())
    notes = "no logprobs returned" if plain.ok and not plain.logprobs else (
        "logprobs " + ", ".join(f"{t}={v:.2f}" for t, v in list(plain.logprobs[0].top.items())[:3])
        if plain.logprobs else "")
    for label, response, seconds, note in (
        ("yes/no", plain, plain_s, notes),
        ("json schema", js, js_s, "valid JSON for the schema" if js.ok else ""),
    ):
        reply = " ".join((response.text or response.error or "").split())[:70]
        status = "[green]ok[/]" if response.ok else "[red]failed[/]"
        out.print(f"{label:<12} {status} {seconds:6.2f} s  {shown(repr(reply))}  {shown(note)}")
    if plain_s > 5 * max(js_s, 0.01):
        out.print("(the first call includes loading the model)")
    if not (plain.ok and js.ok):
        raise PreflensError(f"{client.provider.spec} did not answer both checks (see the table above)")

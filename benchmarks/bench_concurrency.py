"""Does representation keep the configured concurrency busy? Against a local server with fixed latency.

Run:  python benchmarks/bench_concurrency.py [--latency 0.05] [--pairs 800] [--concurrency 1 8 32 64] [--transport] [--cold]

A local OpenAI-compatible test server, in its own process, answers every request after ``latency`` seconds. With
concurrency c the ideal rate is c / latency requests per second; the figure printed is the rate
reached by Comp-rep (both orders, no relevance filter) over freshly made demo pairs, with a fresh cache, and
the CPU time the client process spent per request (building prompts, the HTTP client, validation,
the cache), next to the test server's. Both processes share the machine's cores: on 2 cores the
server's CPU is part of what limits the rate. To compare with an earlier version, run this file with
that version first on PYTHONPATH. ``--transport`` adds, per concurrency, as many requests sent by a bare
aiohttp loop (one fixed body, no preflens): the ceiling that this server and the HTTP client leave.
Each client first runs once untimed on a few pairs, so that the first one timed does not pay alone
for the process's first connections and lazy imports (``--cold`` leaves that out).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from pathlib import Path

import aiohttp  # imported before any timing (about 0.1 s): the client and the bare loop below both use it

from preflens import load_pairs
from preflens.demo import demo_concepts, load_truth, write_demo_data
from preflens.llm import LLMCache, LLMClient, get_llm
from preflens.represent import RepresentSettings, represent
from preflens.testing import FakeOpenAIServer, example_from_schema


def responder(body):
    return json.dumps(example_from_schema(body["response_format"]["json_schema"]["schema"]))


def serve(latency: float, urls: multiprocessing.Queue, stop: multiprocessing.Event) -> None:
    """Run the test server in its own process, so that it does not share the client's interpreter."""
    with FakeOpenAIServer(responder, delay=latency) as server:
        urls.put(server.base_url)
        start = time.process_time()
        stop.wait()
        urls.put((len(server.requests), time.process_time() - start))


async def bare_transport(base_url: str, body: bytes, concurrency: int, count: int) -> None:
    """``count`` posts of one body, ``concurrency`` at a time, through aiohttp alone."""
    import asyncio

    limit = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     headers={"Content-Type": "application/json"}) as session:
        async def one() -> None:
            async with limit, session.post(base_url + "/chat/completions", data=body) as response:
                await response.read()

        await asyncio.gather(*(one() for _ in range(count)))


def measure(latency: float, work) -> tuple[int, float, float, float]:
    """(calls, seconds, client CPU seconds, server CPU seconds) of ``work(base_url)`` against a fresh server."""
    urls: multiprocessing.Queue = multiprocessing.Queue()
    stop = multiprocessing.Event()
    process = multiprocessing.Process(target=serve, args=(latency, urls, stop))
    process.start()
    base_url = urls.get(timeout=30)
    start, cpu = time.perf_counter(), time.process_time()
    work(base_url)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    stop.set()
    calls, server_cpu = urls.get(timeout=30)
    process.join()
    return calls, seconds, cpu, server_cpu


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--pairs", type=int, default=800, help="demo pairs made for the run (4 domains)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--transport", action="store_true", help="also time a bare aiohttp loop (the ceiling)")
    parser.add_argument("--cold", action="store_true",
                        help="no untimed warm-up run: the first client timed pays the process's first-use costs")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    pairs_path = write_demo_data(folder, pairs_per_domain=max(1, args.pairs // 4))
    frame = load_pairs(pairs_path).frame
    concepts = demo_concepts(load_truth(pairs_path))
    settings = RepresentSettings(scheme="comp", relevance=False)
    print(f"server latency {args.latency * 1000:.0f} ms, {len(frame)} pairs, Comp-rep in both orders")
    print("client | concurrency | requests | seconds | requests/s | ideal c/latency | share of ideal | "
          "client CPU/request | server CPU/request")

    def row(name: str, concurrency: int, calls: int, seconds: float, cpu: float, server_cpu: float) -> None:
        rate, ideal = calls / seconds, concurrency / args.latency
        print(f"{name} | {concurrency:>11} | {calls:>8} | {seconds:7.2f} | {rate:10.1f} | {ideal:15.1f} | "
              f"{rate / ideal:14.0%} | {cpu / calls * 1000:.2f} ms | {server_cpu / calls * 1000:.2f} ms")

    import asyncio

    from preflens.represent import plan_requests

    first = plan_requests(frame.head(1), concepts, settings)[0]
    body = json.dumps({"model": "bench", **first.chat_body()}).encode()

    def run_represent(base_url: str, concurrency: int, pairs=frame) -> None:
        client = LLMClient(get_llm("openai/bench", base_url=base_url),
                           cache=LLMCache(Path(tempfile.mkdtemp()) / "c.sqlite"), max_concurrency=concurrency)
        represent(pairs, concepts, client, settings)
        client.close()

    def run_bare(base_url: str, concurrency: int, count: int = 2 * len(frame)) -> None:
        asyncio.run(bare_transport(base_url, body, concurrency, count))

    if not args.cold:  # the first run in a process pays for first connections and lazy imports (about
        # 3 points of the ideal rate at 32 in flight, for either client): both warm up untimed first
        measure(args.latency, lambda url: run_represent(url, 32, frame.head(64)))
        if args.transport:
            measure(args.latency, lambda url: run_bare(url, 32, 128))
    for concurrency in args.concurrency:
        row("preflens", concurrency, *measure(args.latency, lambda url: run_represent(url, concurrency)))
        if args.transport:
            row("aiohttp alone", concurrency, *measure(args.latency, lambda url: run_bare(url, concurrency)))


if __name__ == "__main__":
    main()

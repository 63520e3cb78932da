"""Representation on the local engine and on Ray Data, against a local server with fixed latency.

Run:  python benchmarks/bench_ray.py [--pairs 4000] [--concepts 10] [--latency 0.05] [--concurrency 32]
                                     [--workers 1 2] [--kill-after 0.5]

Needs preflens[ray]. A local OpenAI-compatible test server, in its own process, answers every request
after ``latency`` seconds. Each configuration runs ``preflens represent`` (Comp-rep, both orders, no
relevance filter, all concepts in one call: 2 requests per pair) in a fresh process on freshly
made demo pairs, with a fresh cache, and prints:

- requests/s against the limit workers x concurrency / latency (the local engine is one worker);
  the stage's time includes starting Ray (a local Ray with this machine's CPUs);
- the peak resident memory per worker (the stage process itself for the local engine);
- resume: a Ray run killed (SIGKILL to every process of its session, Ray's included) once ``--kill-after`` of the pairs
  are in shards, then run again: its time, the pairs it took from shards and the calls it made.

All processes share this machine's cores, the test server's included.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from preflens.concepts import ConceptSet
from preflens.demo import demo_concepts, load_truth, write_demo_data
from preflens.engine import peak_rss_bytes
from preflens.testing import FakeOpenAIServer, example_from_schema, kill_session


def responder(body):
    return json.dumps(example_from_schema(body["response_format"]["json_schema"]["schema"]))


def serve(latency: float, urls: multiprocessing.Queue, stop: multiprocessing.Event) -> None:
    with FakeOpenAIServer(responder, delay=latency) as server:
        urls.put(server.base_url)
        stop.wait()
        urls.put(len(server.requests))


def represent(folder: Path, args: argparse.Namespace, url: str, cache: Path, engine: list[str],
              kill_when: int | None = None) -> tuple[dict | None, float, float]:
    """One ``preflens represent`` in a fresh process: its record, wall seconds, the process's peak RSS."""
    command = [sys.executable, "-m", "preflens", "represent", str(folder), "--concepts", str(args.concepts_file),
               "--scheme", "comp", "--no-relevance", "--concepts-per-call", str(args.concepts), "--llm",
               "openai/bench", "--base-url", url, "--cache", str(cache), "--max-concurrency", str(args.concurrency),
               "--batch-size", str(args.batch_size), *engine]
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, env={**os.environ, "RAY_ADDRESS": ""})
    peak = 0.0
    shards = folder / "shards" / "represent"
    while process.poll() is None:
        peak = max(peak, peak_rss_bytes(process.pid) / 2**20)
        if kill_when is not None and shards.is_dir():
            done = sum(1 for _ in shards.glob("*/part-*.parquet")) * args.batch_size
            if done >= kill_when:
                kill_session(process.pid)
                process.wait()
                return None, time.perf_counter() - start, peak
        time.sleep(0.05)
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"represent failed: {process.stderr.read() if process.stderr else ''}")
    record = json.loads((folder / "run.json").read_text())["stages"]["represent"]
    return record, seconds, peak


def fresh_folder(base: Path, name: str, pairs_path: Path) -> Path:
    folder = base / name
    subprocess.run([sys.executable, "-m", "preflens", "validate", str(pairs_path), "--out", str(folder)],
                   check=True, capture_output=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=4000, help="demo pairs made for the run (4 domains)")
    parser.add_argument("--concepts", type=int, default=10)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight per worker")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--kill-after", type=float, default=0.5, help="share of the pairs in shards at the kill")
    parser.add_argument("--resume-only", action="store_true", help="skip the throughput table")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp())
    pairs_path = write_demo_data(base / "data", pairs_per_domain=max(1, args.pairs // 4))
    concepts = demo_concepts(load_truth(pairs_path))
    args.concepts_file = base / "concepts.json"
    ConceptSet(concepts.concepts[:args.concepts]).save(args.concepts_file)
    n_pairs = 4 * max(1, args.pairs // 4)

    urls: multiprocessing.Queue = multiprocessing.Queue()
    stop = multiprocessing.Event()
    server = multiprocessing.Process(target=serve, args=(args.latency, urls, stop))
    server.start()
    url = urls.get(timeout=30)
    print(f"{n_pairs} pairs x {args.concepts} concepts, Comp-rep both orders ({2 * n_pairs} requests), server "
          f"latency {args.latency * 1000:.0f} ms, {args.concurrency} in flight per worker, batches of "
          f"{args.batch_size} pairs, {os.cpu_count()} CPUs")
    print("engine | workers | requests | stage s | requests/s | limit w x c / latency | share | peak RSS per worker MB")
    configs = [("local", 1, [])] + [("ray", w, ["--engine", "ray", "--workers", str(w)]) for w in args.workers]
    for name, workers, engine in ([] if args.resume_only else configs):
        folder = fresh_folder(base, f"{name}-{workers}", pairs_path)
        record, seconds, peak = represent(folder, args, url, base / f"{name}-{workers}.sqlite", engine)
        assert record is not None
        calls, stage_seconds = record["llm"]["calls"], record["seconds"]
        limit = workers * args.concurrency / args.latency
        rss = record["llm"].get("worker_peak_rss_mb", round(peak, 1))
        print(f"{name} | {workers} | {calls} | {stage_seconds:.1f} | {calls / stage_seconds:.0f} | {limit:.0f} | "
              f"{calls / stage_seconds / limit:.0%} | {rss}")

    workers = max(args.workers)
    folder = fresh_folder(base, "resume", pairs_path)
    cache = base / "resume.sqlite"
    engine = ["--engine", "ray", "--workers", str(workers)]
    _, killed_after, _ = represent(folder, args, url, cache, engine, kill_when=int(args.kill_after * n_pairs))
    shards = sum(1 for _ in (folder / "shards" / "represent").glob("*/part-*.parquet"))
    record, seconds, _ = represent(folder, args, url, cache, engine)
    assert record is not None
    llm = record["llm"]  # no counters when every pair came from the shards
    print(f"resume, {workers} workers: killed after {killed_after:.1f} s with {shards} shards; the rerun took "
          f"{seconds:.1f} s ({record['seconds']:.1f} s in the stage), took {llm['pairs_from_shards']} pairs "
          f"from shards, asked {llm.get('requests', 0)} requests of which {llm.get('calls', 0)} were calls "
          f"({llm.get('cache_hits', 0)} from the cache: batches in flight at the kill)")
    stop.set()
    print(f"server answered {urls.get(timeout=30)} requests in all")
    server.join()


if __name__ == "__main__":
    main()

"""Where the per-pair stages run: in this process (``local``, the default) or on Ray Data (``ray``).

With the Ray engine a stage reads the run folder's ``pairs.parquet`` as a Ray Dataset and maps each
batch of pairs through the same pure function the local engine calls (a batch of pairs, the
concepts, the settings -> one record per pair) with ``map_batches``: for the LLM stages on a pool of
actors, each holding one :class:`~preflens.llm.LLMClient` (its retries, validation and accounting,
and the node's own SQLite cache), for the measured concepts as plain tasks.

This process streams the records back and writes each batch as a Parquet shard under
``RUN/shards/STAGE/KEY/`` (KEY: the stage's input hash), so a run that is killed keeps every batch
that finished; the next run of the stage skips the pairs those shards already hold (a pair with a
missing cell is asked again) and the stage assembles its usual artifacts from the shards.

``RAY_ADDRESS`` (or ``RayEngine.address``) picks a running cluster; without it a local Ray starts
with this machine's CPUs. On a cluster the run folder must be on storage every node sees at the
same path (a shared file system), as for any file-based Ray Data job.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from .errors import ConfigError, PreflensError

if TYPE_CHECKING:
    from .llm import LLMClient

EngineName = Literal["local", "ray"]
USAGE_COLUMN = "_usage"
SHARDS = "shards"
_SHARD_NAME = re.compile(r"part-(\d{4})-(\d{6})\.parquet$")

logger = logging.getLogger("preflens")


class EngineError(PreflensError):
    """The distributed engine could not start, or a worker failed."""


@dataclass(frozen=True)
class ClientSpec:
    """How to build an :class:`~preflens.llm.LLMClient`: a recipe that travels to other processes.

    ``cache`` None is the default cache file of the process's machine (``$PREFLENS_CACHE`` or the
    user cache folder): on a cluster each node keeps its own cache.
    """

    llm: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    max_concurrency: int | None = None
    timeout: float = 120.0
    max_retries: int = 6
    max_calls: int | None = None
    max_cost: float | None = None
    price: tuple[float, float] | None = None
    cache: str | None = None
    no_cache: bool = False

    def build(self, on_status: Callable[[str], None] | None = None) -> LLMClient:
        from .llm import LLMCache, LLMClient, Price, get_llm

        provider = get_llm(self.llm, base_url=self.base_url, api_key_env=self.api_key_env)
        if on_status is not None and hasattr(provider, "on_status"):  # the in-process model says when it loads
            provider.on_status = on_status
        return LLMClient(provider, cache=None if self.no_cache else LLMCache(self.cache),
                         max_concurrency=self.max_concurrency, timeout=self.timeout, max_retries=self.max_retries,
                         max_calls=self.max_calls, max_cost=self.max_cost,
                         price=Price(*self.price) if self.price else None)

    def split_budget(self, workers: int) -> ClientSpec:
        """The same recipe with ``max_calls``/``max_cost`` shared evenly by ``workers`` clients."""
        calls = None if self.max_calls is None else max(1, self.max_calls // workers)
        cost = None if self.max_cost is None else self.max_cost / workers
        return replace(self, max_calls=calls, max_cost=cost)


@dataclass(frozen=True)
class RayEngine:
    """Run the per-pair stages as ``map_batches`` over a Ray Dataset.

    Parameters
    ----------
    client : ClientSpec
        How each worker builds its LLM client (LLM stages only).
    workers : int
        Actors of an LLM stage (each with ``client.max_concurrency`` requests in flight).
    batch_size : int
        Pairs per batch, and so per shard: the unit of work lost when a worker is killed.
    cpus_per_worker : float
        CPUs Ray reserves per LLM actor; they mostly wait on the network, and on a small machine a
        whole CPU each would leave none for reading the data.
    address : str or None
        A Ray cluster (default ``$RAY_ADDRESS``; without either a local Ray starts).
    """

    client: ClientSpec = field(default_factory=ClientSpec)
    workers: int = 2
    batch_size: int = 256
    cpus_per_worker: float = 0.5
    address: str | None = None

    def __post_init__(self) -> None:
        if self.workers < 1 or self.batch_size < 1 or self.cpus_per_worker <= 0:
            raise ConfigError("the Ray engine needs workers >= 1, batch_size >= 1 and cpus_per_worker > 0")

    # ---------------------------------------------------------------- Ray

    def start(self) -> Any:
        """Connect to the cluster (or start a local Ray) once per process; returns the ``ray`` module."""
        try:
            import ray
        except ImportError:
            raise ConfigError("--engine ray needs Ray Data: pip install 'preflens[ray]'") from None
        if not ray.is_initialized():
            address = self.address or os.environ.get("RAY_ADDRESS") or None
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                         configure_logging=True)
            except Exception as exc:  # a wrong address, a cluster of another Ray version, ...
                where = f"the Ray cluster at {address}" if address else "a local Ray"
                raise EngineError(f"cannot start {where}: {one_line(exc)}; check RAY_ADDRESS, or use --engine local") \
                    from None
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the stage's own progress bar counts the pairs
        context.print_on_execution_start = False
        return ray

    def read_pairs(self, path: Path, columns: tuple[str, ...], batch_size: int | None = None) -> Any:
        """The pairs file as a Ray Dataset of ``columns`` in blocks of one batch each.

        One block per batch makes one map task per batch, whose records come back (and are written
        as a shard) as soon as it ends, and spreads the batches over every worker.
        """
        ray = self.start()
        rows = batch_size or self.batch_size
        return ray.data.read_parquet(str(path)).select_columns(list(columns)).repartition(
            target_num_rows_per_block=rows)

    def map_llm(self, dataset: Any, function: Callable[..., pd.DataFrame], kwargs: dict[str, Any],
                skip: set[str]) -> Iterator[pd.DataFrame]:
        """``function(batch, client, **kwargs)`` on every batch on a pool of ``workers`` actors.

        Pairs whose id is in ``skip`` are left out; each yielded frame is one batch's records with
        the worker's LLM use in ``_usage`` (JSON on the batch's first row).
        """
        ray = self.start()
        skipped = ray.put(skip)
        mapped = dataset.map_batches(
            LLMBatches, fn_constructor_kwargs={"function": function, "client": self.client.split_budget(self.workers),
                                               "kwargs": kwargs, "skip": skipped},
            batch_size=self.batch_size, batch_format="pandas", num_cpus=self.cpus_per_worker,
            # two batches queued per actor: enough to hide the hand-over, few enough to spread them evenly
            compute=ray.data.ActorPoolStrategy(size=self.workers, max_tasks_in_flight_per_actor=2))
        return _iterate(mapped)

    def map_tasks(self, dataset: Any, function: Callable[..., pd.DataFrame], kwargs: dict[str, Any],
                  batch_size: int) -> Iterator[pd.DataFrame]:
        """``function(batch, **kwargs)`` on every batch of ``batch_size`` pairs as Ray tasks (CPU work, no LLM)."""
        self.start()
        mapped = dataset.map_batches(function, fn_kwargs=kwargs, batch_size=batch_size, batch_format="pandas")
        return _iterate(mapped)


def _iterate(mapped: Any) -> Iterator[pd.DataFrame]:
    try:
        for batch in mapped.iter_batches(batch_size=None, batch_format="pandas"):
            if len(batch):
                yield batch
    except PreflensError:
        raise
    except Exception as exc:
        cause = _user_cause(exc)
        if isinstance(cause, PreflensError):
            raise type(cause)(str(cause)) from None
        raise EngineError(f"a Ray worker failed: {one_line(cause)}; the batches that finished are kept, so rerun "
                          "the same command to go on") from None


def _user_cause(exc: BaseException) -> BaseException:
    """The exception a worker's own code raised, under Ray's wrappers."""
    seen = 0
    while seen < 10:
        inner = getattr(exc, "cause", None) or exc.__cause__
        if inner is None or inner is exc:
            return exc
        exc, seen = inner, seen + 1
    return exc


def one_line(exc: BaseException | str) -> str:
    text = " ".join(str(exc).split())
    return text[:400] + (" ..." if len(text) > 400 else "")


class LLMBatches:
    """A Ray Data actor: one LLM client for its lifetime, one pure function per batch."""

    def __init__(self, function: Callable[..., pd.DataFrame], client: ClientSpec, kwargs: dict[str, Any],
                 skip: Any) -> None:
        import ray

        self.function, self.kwargs = function, kwargs
        self.skip = ray.get(skip) if isinstance(skip, ray.ObjectRef) else skip
        self.client = client.build()

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        if self.skip:
            batch = batch[~batch["id"].isin(self.skip)]
        if not len(batch):
            return pd.DataFrame()
        before = asdict(self.client.stats)
        records = self.function(batch, client=self.client, **self.kwargs)
        after = asdict(self.client.stats)
        usage = {k: v - before[k] for k, v in after.items()}
        usage.update(pid=os.getpid(), peak_rss_bytes=peak_rss_bytes())
        records[USAGE_COLUMN] = [json.dumps(usage)] + [""] * (len(records) - 1)
        return records

    def __del__(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            try:
                client.close()
            except Exception:  # noqa: BLE001 - an actor going away must not fail on its way out
                pass


def peak_rss_bytes(pid: int | str = "self") -> int:
    """A process's peak resident memory (VmHWM; 0 where /proc is not there, or the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# -------------------------------------------------------------------- usage and shards


@dataclass
class WorkerUsage:
    """The LLM use of the workers, summed, and each worker's peak memory."""

    totals: dict[str, float] = field(default_factory=dict)
    peak_rss_bytes: dict[int, int] = field(default_factory=dict)

    def add(self, records: pd.DataFrame) -> pd.DataFrame:
        """Take the usage out of a batch of records; returns the records without it."""
        if USAGE_COLUMN not in records.columns:
            return records
        for text in records[USAGE_COLUMN]:
            if not text:
                continue
            usage = json.loads(text)
            pid, rss = usage.pop("pid"), usage.pop("peak_rss_bytes")
            self.peak_rss_bytes[pid] = max(rss, self.peak_rss_bytes.get(pid, 0))
            for key, value in usage.items():
                self.totals[key] = self.totals.get(key, 0) + value
        return records.drop(columns=[USAGE_COLUMN])

    def record(self) -> dict[str, Any]:
        """For the stage's ``llm`` record: the client's counters, plus the workers' peak memory."""
        data: dict[str, Any] = {k: round(v, 6) if isinstance(v, float) else v for k, v in self.totals.items()}
        if self.peak_rss_bytes:
            data["workers"] = len(self.peak_rss_bytes)
            data["worker_peak_rss_mb"] = round(max(self.peak_rss_bytes.values()) / 2**20, 1)
        return data


class ShardStore:
    """A stage's finished batches as Parquet shards, ``part-ATTEMPT-SEQ.parquet``, in one folder.

    Each run of the stage is a new attempt; where two shards hold the same pair, the later attempt
    wins. A shard is written to a temporary name and renamed, so a killed run leaves whole shards
    only (a damaged one is set aside and its pairs are redone).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in self.folder.glob("*.tmp"):
            stale.unlink(missing_ok=True)
        existing = [int(m.group(1)) for p in self.folder.iterdir() if (m := _SHARD_NAME.match(p.name))]
        self.attempt = max(existing, default=0) + 1
        self.written = 0

    def shards(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if _SHARD_NAME.match(p.name))

    def read(self) -> pd.DataFrame:
        """Every shard's records, one per pair (the latest attempt's)."""
        frames = []
        for path in self.shards():
            try:
                frames.append(pd.read_parquet(path))
            except Exception:  # noqa: BLE001 - a damaged shard: its pairs are simply redone
                path.rename(path.with_suffix(".damaged"))
        if not frames:
            return pd.DataFrame()
        records = pd.concat(frames, ignore_index=True)
        return records.drop_duplicates("id", keep="last").reset_index(drop=True)

    def write(self, records: pd.DataFrame) -> Path:
        self.written += 1
        path = self.folder / f"part-{self.attempt:04d}-{self.written:06d}.parquet"
        temporary = path.with_suffix(".tmp")
        records.to_parquet(temporary, index=False)
        os.replace(temporary, path)
        return path

    def clear(self) -> None:
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)


def shard_store(run_folder: Path, stage: str, key: str) -> ShardStore:
    """The shards of ``stage`` for inputs ``key``; shards of the stage's earlier inputs are removed."""
    import shutil

    base = run_folder / SHARDS / stage.replace(":", "-")
    name = key.split(":")[-1][:16]
    if base.is_dir():
        for other in base.iterdir():
            if other.name != name:
                shutil.rmtree(other, ignore_errors=True)
    return ShardStore(base / name)


@dataclass
class ShardedRun:
    """What :func:`map_pairs` gives back: one record per pair in the pairs' order, and how it went."""

    records: pd.DataFrame
    usage: WorkerUsage
    store: ShardStore
    from_shards: int

    def llm_record(self, llm: str, engine: RayEngine) -> dict[str, Any]:
        return {**self.usage.record(), "llm": llm, "engine": "ray", "workers_asked": engine.workers,
                "pairs_from_shards": self.from_shards}


def map_pairs(context: Any, engine: RayEngine, stage: str, function: Callable[..., pd.DataFrame],
              kwargs: dict[str, Any], *, columns: tuple[str, ...], is_done: Callable[[pd.DataFrame], Any],
              label: str) -> ShardedRun:
    """Run ``function(batch, client, **kwargs)`` on the pairs that no shard of this stage holds as done.

    ``context`` is the stage's :class:`~preflens.pipeline.RunContext`; ``is_done(records)`` marks the
    records whose pair needs no new call (a pair with a missing cell is redone). Every finished batch
    is written as a shard at once; the records of all shards come back in the pairs' order.
    """
    pairs = context.pairs.frame
    store = shard_store(context.folder.path, stage, context.inputs_hash or "unhashed")
    kept = store.read()
    done = set(kept.loc[is_done(kept), "id"]) & set(pairs["id"]) if len(kept) else set()
    usage = WorkerUsage()
    todo = len(pairs) - len(done)
    if todo:
        dataset = engine.read_pairs(context.require("pairs.parquet", "run 'preflens validate' first"), columns)
        with context.progress(f"{label} on Ray, {engine.workers} workers", todo) as advance:
            for records in engine.map_llm(dataset, function, kwargs, skip=done):
                records = usage.add(records)
                store.write(records)
                for _ in range(len(records)):
                    advance()
        kept = store.read()
    order = pd.DataFrame({"id": pairs["id"].to_numpy()})
    records = order.merge(kept, on="id", how="left", indicator=True) if len(kept) else order.assign(_merge="left_only")
    lost = int((records["_merge"] != "both").sum())
    if lost:
        raise EngineError(f"{stage} on Ray: {lost} pairs came back from no worker; rerun the same command to ask "
                          "for them")
    return ShardedRun(records.drop(columns=["_merge"]), usage, store, len(done))

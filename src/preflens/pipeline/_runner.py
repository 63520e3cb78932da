"""The runner: for every stage the same rules for hashing, skipping, recording, accounting and locking."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from filelock import FileLock, Timeout

from ..errors import PreflensError
from ..runs import StageRecord
from ._context import RunContext
from ._stage import Stage, StageResult

LOCK_FILE = ".preflens.lock"
OWNER_FILE = ".preflens.owner.json"
DEFAULT_MAX_MISSING = 0.05


class RunLockedError(PreflensError):
    """Another process is working in the run folder."""


class IncompleteStageError(PreflensError):
    """An LLM stage ended with no usable answer, or more missing work than allowed."""


@dataclass
class Outcome:
    """What happened to one stage in this process."""

    stage: str
    status: Literal["up to date", "done", "incomplete"]
    record: StageRecord
    result: StageResult | None = None


def _stats(context: RunContext, llm_stage: str | None) -> dict[str, Any]:
    if llm_stage is None or not context.has_client:
        return {}
    stats = context.client().stage_stats.get(llm_stage)
    return asdict(stats) if stats else {}


class Runner:
    """Runs stages on one run folder, which it locks for as long as it is open.

    For each stage it hashes what the stage declares it reads, skips it when its record says
    ``done`` with the same hash and its artifacts are all there (unless forced), records
    ``running`` then ``done``/``incomplete``/``failed`` in ``run.json`` with times, counts and the LLM
    use under the stage's name, and forgets the artifacts the stage rewrote. A stage whose paid work
    came back with nothing usable, or with more than ``max_missing`` of it missing, stops the run
    with :class:`IncompleteStageError` after its partial artifacts and record are saved.

    The lock is an OS lock on ``RUN/.preflens.lock`` (released by the OS even on ``kill -9``); a
    second process gets :class:`RunLockedError` at once. Opening the same folder again in the same
    process is allowed (the lock is shared and counted).
    """

    def __init__(self, context: RunContext, *, force: bool | set[str] = False,
                 max_missing: float = DEFAULT_MAX_MISSING) -> None:
        self.context = context
        self.force = force
        self.max_missing = max_missing
        self.outcomes: list[Outcome] = []
        path = context.folder.path / LOCK_FILE
        self._lock = FileLock(path, timeout=0, is_singleton=True)

    # ---------------------------------------------------------------- lock

    def __enter__(self) -> Runner:
        folder = self.context.folder.path
        owner_file = folder / OWNER_FILE
        try:
            self._lock.acquire()
        except Timeout:
            owner = ""
            try:
                data = json.loads(owner_file.read_text(encoding="utf-8"))
                owner = f" (pid {data['pid']}: {data['command']}, since {data['since_utc']})"
            except (OSError, ValueError, KeyError):
                pass
            raise RunLockedError(f"{folder} is in use by another preflens process{owner}; wait for it to finish, "
                                 "or give this run another --out folder") from None
        if self._lock.lock_counter == 1:
            import sys

            self.context.folder.reload()  # another process may have finished a stage since we read it
            owner_file.write_text(json.dumps({"pid": os.getpid(), "command": " ".join(sys.argv[:3]),
                                              "since_utc": datetime.now(UTC).isoformat(timespec="seconds")}),
                                  encoding="utf-8")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock.lock_counter == 1:
            self.context.close()
            (self.context.folder.path / OWNER_FILE).unlink(missing_ok=True)
        self._lock.release()

    @property
    def is_open(self) -> bool:
        """True inside the ``with`` block (this process holds the folder's lock)."""
        return self._lock.is_locked

    # ---------------------------------------------------------------- stages

    def _forced(self, stage: Stage) -> bool:
        if isinstance(self.force, bool):
            return self.force
        return stage.name in self.force or stage.name.split(":", 1)[0] in self.force

    def run(self, stage: Stage) -> Outcome:
        """Run one stage (or skip it when it is up to date); see the class docstring."""
        if not self.is_open:
            raise RuntimeError("open the Runner with 'with Runner(...)' before running stages")
        context, folder = self.context, self.context.folder
        inputs_hash = context.hash(stage.reads)
        if not (self._forced(stage) or stage.always) and folder.is_done(stage.name, inputs_hash):
            outcome = Outcome(stage.name, "up to date", folder.record.stages[stage.name])
            self.outcomes.append(outcome)
            return outcome
        for name in stage.writes:
            folder.file(name).parent.mkdir(parents=True, exist_ok=True)
        before = _stats(context, stage.llm)
        context.first_error = None
        context.inputs_hash = inputs_hash
        start = time.perf_counter()
        result: StageResult | None = None
        with folder.stage(stage.name, inputs_hash=inputs_hash, settings=dict(stage.reads.settings)) as record:
            try:
                result = stage.run(context)
            finally:
                if result is not None and result.llm is not None:  # the calls were made by other processes
                    record.llm = {**result.llm, "wall_seconds": round(time.perf_counter() - start, 2)}
                elif stage.llm is not None and context.has_client:
                    after = _stats(context, stage.llm)
                    record.llm = {k: round(v - before.get(k, 0), 6) if isinstance(v, float) else v - before.get(k, 0)
                                  for k, v in after.items()}
                    record.llm.update(llm=context.client().provider.spec,
                                      wall_seconds=round(time.perf_counter() - start, 2))
                if result is not None:
                    context.invalidate(result.outputs)
            record.outputs = list(result.outputs)
            record.counts = dict(result.counts)
            if result.work:
                record.counts.update(work=result.work, missing=result.missing)
        if result.missing:
            record.status = "incomplete"
            record.error = result.first_error or context.first_error
            folder.save()
        outcome = Outcome(stage.name, "incomplete" if result.missing else "done", record, result)
        self.outcomes.append(outcome)
        if result.missing:
            self._check_missing(stage, result, record.error)
        return outcome

    def _check_missing(self, stage: Stage, result: StageResult, error: str | None) -> None:
        share = result.missing / max(result.work, 1)
        cause = f"; first error: {error}" if error else ""
        retry = ("rerun the same command: only the missing work is sent again (the rest is cached)")
        if result.missing >= result.work:
            raise IncompleteStageError(f"{stage.name}: no usable answer in {result.work} {stage.description or 'tasks'}"
                                       f"{cause}. Check the LLM with 'preflens llm check', then {retry}")
        if share > self.max_missing:
            raise IncompleteStageError(f"{stage.name}: {result.missing} of {result.work} {stage.description or 'tasks'} "
                                       f"({share:.1%}) have no usable answer, more than --max-missing "
                                       f"{self.max_missing:.0%}{cause}. Fix the cause, then {retry}")
        self.context.echo(f"{stage.name}: {result.missing} of {result.work} {stage.description or 'tasks'} "
                          f"({share:.1%}) have no usable answer; they are retried the next time this stage runs")

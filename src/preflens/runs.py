"""The run folder: each stage's artifacts plus ``run.json``, the record of how they were made.

::

    run/
      run.json          config, versions, and per stage: status, times, settings, the hash of its
                        inputs, LLM calls, cache hits, tokens, cost, errors
      pairs.parquet     the canonical pairs (ingest)
      validation.json   every problem met while reading the data (ingest)
      ...               later stages add concepts, features, model, explanations, report

A stage whose record says ``done`` with the same inputs hash is not redone; ``run.json`` is
rewritten atomically after every change, so a killed run leaves a readable record. No API key
is ever written here: configs hold the *name* of the key's environment variable.
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from ._version import __version__
from .errors import ConfigError

RUN_FORMAT = "preflens-run/1"
_TRACKED_PACKAGES = ("numpy", "pandas", "pyarrow", "pydantic", "openai", "xllamacpp", "datasets")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class StageRecord(BaseModel):
    """What one stage did."""

    status: Literal["running", "done", "incomplete", "failed"] = "running"
    started_utc: str = Field(default_factory=_now)
    finished_utc: str | None = None
    seconds: float | None = None
    inputs_hash: str = ""
    settings: dict[str, Any] = Field(default_factory=dict)
    counts: dict[str, Any] = Field(default_factory=dict)
    llm: dict[str, Any] | None = None
    outputs: list[str] = Field(default_factory=list)
    error: str | None = None


class RunRecord(BaseModel):
    """The content of ``run.json``."""

    format: str = RUN_FORMAT
    preflens_version: str = __version__
    created_utc: str = Field(default_factory=_now)
    updated_utc: str = Field(default_factory=_now)
    versions: dict[str, str] = Field(default_factory=dict)
    stages: dict[str, StageRecord] = Field(default_factory=dict)


@functools.cache
def environment_versions() -> dict[str, str]:
    """Python, platform, preflens, key packages and the git revision when run from a checkout."""
    versions = {"python": platform.python_version(), "platform": platform.platform(), "preflens": __version__}
    for name in _TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    try:
        revision = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                                  capture_output=True, text=True, timeout=5, check=False)
        if revision.returncode == 0:
            versions["git_revision"] = revision.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return versions


class RunFolder:
    """A folder holding one run's artifacts and its ``run.json``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.record_path = self.path / "run.json"
        self.reload()

    def reload(self) -> None:
        """Read ``run.json`` again (the runner does, once it holds the folder's lock)."""
        if self.record_path.exists():
            try:
                self.record = RunRecord.model_validate_json(self.record_path.read_bytes())
            except ValueError as exc:  # pydantic's ValidationError: truncated, not JSON, or not a run record
                raise ConfigError(
                    f"{self.record_path}: not a readable run record ({str(exc).splitlines()[0][:120]}); delete or "
                    "move it (the stages are then redone as needed, with the LLM calls read from the cache), or "
                    "choose another --out") from None
        else:
            self.record = RunRecord()
        self.record.versions = dict(environment_versions())

    def file(self, name: str) -> Path:
        return self.path / name

    def save(self) -> None:
        """Write ``run.json`` atomically."""
        self.record.updated_utc = _now()
        temporary = self.record_path.with_suffix(".json.tmp")
        temporary.write_text(self.record.model_dump_json(indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, self.record_path)

    def is_done(self, stage: str, inputs_hash: str) -> bool:
        """True when the stage finished with these inputs and its outputs are all still there and readable."""
        record = self.record.stages.get(stage)
        return (record is not None and record.status == "done" and record.inputs_hash == inputs_hash
                and all(readable(self.file(name)) for name in record.outputs))

    @contextmanager
    def stage(self, name: str, *, inputs_hash: str, settings: dict[str, Any]) -> Iterator[StageRecord]:
        """Record a stage: ``running`` now, then ``done`` or ``failed`` with the error."""
        record = StageRecord(inputs_hash=inputs_hash, settings=settings)
        self.record.stages[name] = record
        self.save()
        start = time.perf_counter()
        try:
            yield record
        except (KeyboardInterrupt, SystemExit) as exc:
            record.status = "failed"
            record.error = f"interrupted ({type(exc).__name__}); rerun the same command to go on"
            raise
        except BaseException as exc:
            record.status = "failed"
            record.error = f"{type(exc).__name__}: {exc}"
            raise
        else:
            record.status = "done"
        finally:
            record.finished_utc = _now()
            record.seconds = round(time.perf_counter() - start, 3)
            self.save()


def readable(path: Path) -> bool:
    """Whether an artifact is there and can be read: a Parquet footer and schema, a JSON document."""
    if not path.is_file():
        return False
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            pq.read_metadata(path)
        elif path.suffix == ".json":
            json.loads(path.read_bytes())
    except Exception:  # pyarrow and json raise several kinds; each means "cannot be read"
        return False
    return True


def _finite(value: Any) -> Any:
    """NaN and infinities become None (null), recursively; numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically; a missing number (NaN) is written as null, never as invalid JSON."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(_finite(data), indent=2, ensure_ascii=False, allow_nan=False) + "\n",
                         encoding="utf-8")
    os.replace(temporary, path)

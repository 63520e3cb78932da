"""A stage: what it reads, what it writes, and a pure ``run(context) -> StageResult``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._context import RunContext


@dataclass(frozen=True)
class Reads:
    """Exactly what a stage's result depends on; the runner hashes this and nothing else.

    ``columns`` are columns of the pairs (``label:NAME`` for a mechanism's labels), so a label column
    added by ``judge`` does not make ``represent`` stale. ``files`` are artifacts of the run folder,
    hashed by content; ``external`` are files outside it (the source data, a given concept list).
    """

    columns: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    external: tuple[Path, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class StageResult:
    """What a stage's ``run`` returns: the artifacts it wrote and what it counted.

    ``work``/``missing`` count units of paid work (pair-concept cells, verdicts) and those that
    produced nothing usable; a stage with missing work is recorded ``incomplete`` and redone (only
    the missing work reaches the LLM: the rest is cached) the next time it runs. ``value`` goes back
    to the caller and is not recorded.
    """

    outputs: list[str] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)
    work: int = 0
    missing: int = 0
    first_error: str | None = None
    value: Any = None
    llm: dict[str, Any] | None = None
    """The LLM use when the calls were made elsewhere (the Ray engine's workers), not by the context's client."""


@dataclass(frozen=True)
class Stage:
    """One step of the pipeline.

    ``name`` is its key in ``run.json`` (``judge:NAME``, ``fit:NAME`` for per-mechanism stages);
    ``writes`` lists the artifacts it owns (no other stage writes them); ``llm`` is the stage name
    the LLM client accounts calls under, when the stage makes calls; ``description`` names the units
    of its work in messages (``pair-concept cells``).
    """

    name: str
    reads: Reads
    writes: tuple[str, ...]
    run: Callable[[RunContext], StageResult]
    llm: str | None = None
    description: str = ""
    always: bool = False
    """Run every time (the report: cheap, and it reads whatever the folder holds)."""

"""measured: the measured concepts (length, lists, refusals, ...) of every pair, with no LLM."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING

import pandas as pd

from ..pipeline import Reads, RunContext, Stage, StageResult

if TYPE_CHECKING:
    from ..engine import RayEngine

WRITES = ("measured.parquet", "measured.json")
MEASURED_VERSION = "measured/1"
BATCH = 100_000
RAY_BATCH = 10_000


def measured_stage(names: list[str], *, engine: RayEngine | None = None) -> Stage:
    """Measure the concepts ``names`` (see :mod:`preflens.measured`) on every pair, in batches
    (one process per core, or Ray tasks with a :class:`~preflens.engine.RayEngine`)."""
    from ..measured import choose

    chosen = choose(names)
    reads = Reads(columns=("id", "response_a", "response_b"),
                  settings={"concepts": [c.name for c in chosen], "version": MEASURED_VERSION})

    def run(context: RunContext) -> StageResult:
        from ..measured import measure, measured_concept_set

        frame = context.pairs.frame[["id", "response_a", "response_b"]]
        batches = [frame.iloc[start:start + BATCH] for start in range(0, len(frame), BATCH)]
        parts = []
        total = -(-len(frame) // RAY_BATCH) if engine is not None else len(batches)
        with context.progress("measured" + (" on Ray" if engine is not None else ""), total) as advance:
            if engine is not None:
                dataset = engine.read_pairs(context.require("pairs.parquet", "run 'preflens validate' first"),
                                            ("id", "response_a", "response_b"), batch_size=RAY_BATCH)
                for part in engine.map_tasks(dataset, measure, {"concepts": chosen}, RAY_BATCH):
                    parts.append(part)
                    advance()
                if parts:  # in the pairs' order, whatever order the tasks finished in, with numpy dtypes
                    values = pd.concat(parts, ignore_index=True).set_index("id").loc[frame["id"].to_numpy()]
                    ordered = pd.DataFrame({"id": frame["id"].to_numpy()})
                    for name in values.columns:
                        ordered[name] = values[name].to_numpy(float)
                    parts = [ordered]
            elif len(batches) > 1:  # a pure function of each batch: one process per core
                # spawned, not forked: a fork copies the parent's threads (an LLM client's) and its memory
                with ProcessPoolExecutor(max_workers=min(len(batches), os.cpu_count() or 1),
                                         mp_context=multiprocessing.get_context("spawn")) as pool:
                    for part in pool.map(measure, batches, [chosen] * len(batches)):
                        parts.append(part)
                        advance()
            else:
                for batch in batches:
                    parts.append(measure(batch, chosen))
                    advance()
        features = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["id"])
        features.to_parquet(context.folder.file("measured.parquet"), index=False)
        measured_concept_set(chosen).save(context.folder.file("measured.json"))
        return StageResult(outputs=list(WRITES), counts={"concepts": len(chosen), "pairs": len(features)})

    return Stage("measured", reads, WRITES, run, description="pairs")

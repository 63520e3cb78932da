"""measured: the measured concepts (length, lists, refusals, ...) of every pair, with no LLM."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import pandas as pd

from ..pipeline import Reads, RunContext, Stage, StageResult

WRITES = ("measured.parquet", "measured.json")
MEASURED_VERSION = "measured/1"
BATCH = 100_000


def measured_stage(names: list[str]) -> Stage:
    """Measure the concepts ``names`` (see :mod:`preflens.measured`) on every pair, in batches."""
    from ..measured import choose

    chosen = choose(names)
    reads = Reads(columns=("id", "response_a", "response_b"),
                  settings={"concepts": [c.name for c in chosen], "version": MEASURED_VERSION})

    def run(context: RunContext) -> StageResult:
        from ..measured import measure, measured_concept_set

        frame = context.pairs.frame[["id", "response_a", "response_b"]]
        batches = [frame.iloc[start:start + BATCH] for start in range(0, len(frame), BATCH)]
        parts = []
        with context.progress("measured", len(batches)) as advance:
            if len(batches) > 1:  # a pure function of each batch: one process per core
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

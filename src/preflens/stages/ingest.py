"""ingest: read the source data once into the canonical ``pairs.parquet`` and ``validation.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..pipeline import Reads, RunContext, Stage, StageResult
from ..runs import write_json

WRITES = ("pairs.parquet", "validation.json")


def ingest_stage(source: str, options: dict[str, Any], *, dataset: Any = None) -> Stage:
    """The ingest stage for ``source`` read with :func:`preflens.data.load_pairs` keyword ``options``.

    ``dataset`` is the already loaded :class:`~preflens.data.PairDataset` when the caller has it
    (``validate --out`` reads the file to summarise it anyway).
    """
    path = Path(source)
    # the input size guard does not change what is read, so it is not part of the inputs hash
    settings = {"data": source, **{k: v for k, v in options.items() if k != "max_input_mb"}}
    reads = Reads(external=(path,) if path.is_file() else (), settings=settings)

    def run(context: RunContext) -> StageResult:
        from ..data import load_pairs

        pairs = dataset if dataset is not None else load_pairs(source, **options)
        pairs.to_parquet(context.folder.file("pairs.parquet"))
        write_json(context.folder.file("validation.json"), pairs.report.to_dict())
        return StageResult(outputs=list(WRITES), value=pairs,
                           counts={"rows_read": pairs.report.rows_read, "pairs": len(pairs),
                                   "rows_skipped": pairs.report.rows_skipped, "problems": len(pairs.report.problems)})

    return Stage("ingest", reads, WRITES, run, description="rows")

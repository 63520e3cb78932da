"""represent: every pair on every concept with an LLM (Comp-rep, Score-rep or Presence-rep)."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from ..data import CORE_COLUMNS
from ..pipeline import Reads, RunContext, Stage, StageResult
from ..runs import write_json

if TYPE_CHECKING:
    from ..engine import RayEngine

WRITES = ("features.parquet", "representation_details.parquet", "representation.json")


def represent_stage(settings: object, llm: str, *, batch_size: int = 256, engine: RayEngine | None = None) -> Stage:
    """Represent with :class:`~preflens.represent.RepresentSettings` ``settings`` and the LLM named ``llm``.

    A pair-concept cell with no usable answer is missing (NaN); the stage is then ``incomplete`` and
    its next run asks again for exactly those cells (answered ones come from the cache). With a
    :class:`~preflens.engine.RayEngine` the batches run on Ray Data workers and each finished batch
    is kept as a shard (see :mod:`preflens.engine`); the features are the same.
    """
    from ..represent import RepresentSettings, concept_statistics, plan_requests, represent

    assert isinstance(settings, RepresentSettings)
    if engine is not None and settings.labeler == "distilled":
        from ..errors import ConfigError

        raise ConfigError("--labeler distilled learns from a sample of all the pairs in one process; use it with "
                          "--engine local, or use --labeler llm on Ray")
    reads = Reads(columns=CORE_COLUMNS, files=("concepts.json",), settings={**asdict(settings), "llm": llm})

    def run(context: RunContext) -> StageResult:
        from ..features import save_features

        pairs, concepts = context.pairs.frame, context.llm_concepts
        llm_record = None
        if engine is not None:
            result, llm_record = _represent_on_ray(context, engine, settings, llm)
        else:
            # distilled: the seed, the rounds within budget and any fallback are not known ahead
            total = len(plan_requests(pairs, concepts, settings)) if settings.labeler == "llm" else None
            with context.llm_progress(f"represent ({settings.scheme}, {settings.labeler})", total) as progress:
                result = represent(pairs, concepts, context.client(), settings, batch_size=batch_size,
                                   progress=progress)
        save_features(result.features, context.folder.file("features.parquet"))
        result.details.to_parquet(context.folder.file("representation_details.parquet"), index=False)
        coverage = result.coverage.to_dict()
        summary = {"scheme": settings.scheme, "labeler": settings.labeler, "coverage": coverage,
                   "concepts": concept_statistics(result.details, pairs)}
        if result.distillation is not None:
            summary["distillation"] = result.distillation
        write_json(context.folder.file("representation.json"), summary)
        return StageResult(outputs=list(WRITES), counts=coverage, work=result.coverage.cells,
                           missing=result.coverage.missing, value=result, llm=llm_record)

    return Stage("represent", reads, WRITES, run, llm="represent", description="pair-concept cells")


def _represent_on_ray(context: RunContext, engine: RayEngine, settings: object,
                      llm: str) -> tuple[Any, dict[str, Any]]:
    """Represent the pairs that no shard holds yet on Ray workers, then assemble every shard in pair order."""
    from ..engine import map_pairs
    from ..represent import representation_from_records, represent_records

    concepts = context.llm_concepts
    run = map_pairs(context, engine, "represent", represent_records, {"concepts": concepts, "settings": settings},
                    columns=CORE_COLUMNS, is_done=lambda records: records["c:missing"] == 0,
                    label=f"represent ({settings.scheme})")  # type: ignore[attr-defined]
    result = representation_from_records(run.records, concepts)
    if result.coverage.missing == 0:
        run.store.clear()  # every cell is in features.parquet now
    return result, run.llm_record(llm, engine)

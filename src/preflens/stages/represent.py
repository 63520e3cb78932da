"""represent: every pair on every concept with an LLM (Comp-rep, Score-rep or Presence-rep)."""

from __future__ import annotations

from dataclasses import asdict

from ..data import CORE_COLUMNS
from ..pipeline import Reads, RunContext, Stage, StageResult
from ..runs import write_json

WRITES = ("features.parquet", "representation_details.parquet", "representation.json")


def represent_stage(settings: object, llm: str, *, batch_size: int = 256) -> Stage:
    """Represent with :class:`~preflens.represent.RepresentSettings` ``settings`` and the LLM named ``llm``.

    A pair-concept cell with no usable answer is missing (NaN); the stage is then ``incomplete`` and
    its next run asks again for exactly those cells (answered ones come from the cache).
    """
    from ..represent import RepresentSettings, concept_statistics, plan_requests, represent

    assert isinstance(settings, RepresentSettings)
    reads = Reads(columns=CORE_COLUMNS, files=("concepts.json",), settings={**asdict(settings), "llm": llm})

    def run(context: RunContext) -> StageResult:
        from ..features import save_features

        pairs, concepts = context.pairs.frame, context.llm_concepts
        # distilled: the seed, the rounds within budget and any fallback are not known ahead
        total = len(plan_requests(pairs, concepts, settings)) if settings.labeler == "llm" else None
        with context.llm_progress(f"represent ({settings.scheme}, {settings.labeler})", total) as progress:
            result = represent(pairs, concepts, context.client(), settings, batch_size=batch_size, progress=progress)
        save_features(result.features, context.folder.file("features.parquet"))
        result.details.to_parquet(context.folder.file("representation_details.parquet"), index=False)
        coverage = result.coverage.to_dict()
        summary = {"scheme": settings.scheme, "labeler": settings.labeler, "coverage": coverage,
                   "concepts": concept_statistics(result.details, pairs)}
        if result.distillation is not None:
            summary["distillation"] = result.distillation
        write_json(context.folder.file("representation.json"), summary)
        return StageResult(outputs=list(WRITES), counts=coverage, work=result.coverage.cells,
                           missing=result.coverage.missing, value=result)

    return Stage("represent", reads, WRITES, run, llm="represent", description="pair-concept cells")

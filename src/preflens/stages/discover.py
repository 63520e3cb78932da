"""discover: learn the concepts behind one mechanism's preferences with an LLM (or take a given list)."""

from __future__ import annotations

from pathlib import Path

from ..data import CORE_COLUMNS, LABEL_PREFIX
from ..pipeline import Reads, RunContext, Stage, StageResult
from ..runs import write_json

WRITES = ("concepts.json", "discovery.json")


def discover_stage(settings: object, llm: str) -> Stage:
    """Discovery with :class:`~preflens.discover.DiscoverySettings` ``settings`` and the LLM named ``llm``."""
    from ..discover import DiscoverySettings, adiscover

    assert isinstance(settings, DiscoverySettings)
    reads = Reads(columns=(*CORE_COLUMNS, LABEL_PREFIX + settings.mechanism),
                  settings={**vars(settings), "llm": llm})

    def run(context: RunContext) -> StageResult:
        client = context.client()
        with context.llm_progress("discover", None) as progress:
            result = client.run(adiscover(context.pairs, client, settings, progress))
        result.concepts.save(context.folder.file("concepts.json"))
        write_json(context.folder.file("discovery.json"), result.report)
        return StageResult(outputs=list(WRITES), value=result,
                           counts={"concepts": result.report["concepts"], "shared": result.report["shared"]})

    return Stage("discover", reads, WRITES, run, llm="discover", description="calls")


def given_concepts_stage(path: str | Path) -> Stage:
    """Take the concepts from a YAML or JSON list instead of discovering them (checked before use)."""
    given = Path(path)

    def run(context: RunContext) -> StageResult:
        from ..concepts import ConceptSet

        concepts = ConceptSet.load(given)
        concepts.meta.setdefault("source", f"given: {given.name}")
        concepts.save(context.folder.file("concepts.json"))
        write_json(context.folder.file("discovery.json"), {"source": str(given), "concepts": len(concepts),
                                                           "shared": int(concepts.shared_mask().sum())})
        return StageResult(outputs=list(WRITES), value=concepts, counts={"concepts": len(concepts), "given": True})

    return Stage("discover", Reads(external=(given,), settings={"given": str(given)}), WRITES, run)

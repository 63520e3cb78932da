"""discover: learn the concepts behind one mechanism's preferences with an LLM (or take a given list)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from ..data import CORE_COLUMNS, LABEL_PREFIX
from ..pipeline import Reads, RunContext, Stage, StageResult
from ..runs import write_json

WRITES = ("concepts.json", "discovery.json")


def discover_stage(settings: object, llm: str) -> Stage:
    """Discovery with the LLM named ``llm``: the paper's (:class:`~preflens.discover.DiscoverySettings`)
    or from evidence (:class:`~preflens.discover_evidence.EvidenceDiscoverySettings`)."""
    from ..discover import DiscoveryResult, DiscoverySettings, adiscover
    from ..discover_evidence import EvidenceDiscoverySettings, adiscover_from_evidence

    assert isinstance(settings, DiscoverySettings | EvidenceDiscoverySettings)
    method = "evidence" if isinstance(settings, EvidenceDiscoverySettings) else "propose"
    reads = Reads(columns=(*CORE_COLUMNS, LABEL_PREFIX + settings.mechanism),
                  settings={**asdict(settings), **({"method": method} if method == "evidence" else {}), "llm": llm})

    def run(context: RunContext) -> StageResult:
        client = context.client()
        with context.llm_progress(f"discover ({method})", None) as progress:
            if isinstance(settings, EvidenceDiscoverySettings):
                concepts, report = client.run(adiscover_from_evidence(context.pairs, client, settings, progress))
                result = DiscoveryResult(concepts, report)
            else:
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
        if context.exists("pairs.parquet"):
            concepts.check_domains(context.pairs.domains, source=str(given))
        concepts.meta.setdefault("source", f"given: {given.name}")
        concepts.save(context.folder.file("concepts.json"))
        write_json(context.folder.file("discovery.json"), {"source": str(given), "concepts": len(concepts),
                                                           "shared": int(concepts.shared_mask().sum())})
        return StageResult(outputs=list(WRITES), value=concepts, counts={"concepts": len(concepts), "given": True})

    return Stage("discover", Reads(external=(given,), settings={"given": str(given)}), WRITES, run)

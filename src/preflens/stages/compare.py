"""compare: agreement between the mechanisms and their models, and where their weights differ most."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..data import LABEL_PREFIX
from ..errors import ConfigError
from ..pipeline import Reads, RunContext, Stage, StageResult
from ..runs import write_json
from .fit import MODEL_READS

WRITES = ("comparison.json",)


def compare_stage(mechanisms: list[str], fitted: list[str], *, first: str | None = None, second: str | None = None,
                  top: int = 8, bootstrap: int = 0, seed: int = 0) -> Stage:
    """Agreement of every mechanism's labels and every ``fitted`` model; weights of ``first`` minus ``second``,
    with 95% intervals of the differences from ``bootstrap`` paired refits (0: none)."""
    from ..explain import UNIT_RULE

    first = first or (fitted[0] if fitted else None)
    second = second or (fitted[1] if len(fitted) > 1 else None)
    reads = Reads(columns=("id", "domain", *(LABEL_PREFIX + m for m in mechanisms)),
                  files=(*MODEL_READS, *(f"models/{m}.json" for m in fitted)),
                  # probabilities are read at each concept's typical difference (a file without "unit" is redone)
                  settings={"first": first, "second": second, "top": top, "bootstrap": bootstrap, "seed": seed,
                            "unit": UNIT_RULE})

    def run(context: RunContext) -> StageResult:
        from ..compare import agreement_matrix, bootstrap_differences, weight_differences
        from ..explain import typical_differences

        pairs, inputs = context.pairs, context.inputs
        columns: dict[str, pd.Series] = {m: pairs.labels(m) for m in mechanisms}
        for mechanism in fitted:
            predicted = context.model(mechanism).predict(inputs.X, domains=inputs.domains)
            columns[f"HMDR({mechanism})"] = pd.Series(np.where(predicted == 1, "a", "b"), dtype=object)
        matrix = agreement_matrix(columns)
        result: dict[str, Any] = {"agreement": {i: {j: float(v) for j, v in row.items()}
                                                for i, row in matrix.iterrows()}}
        if first and second:
            for mechanism in (first, second):
                if mechanism not in fitted:
                    raise ConfigError(f"no fitted model for '{mechanism}'; run 'preflens fit {context.folder.path}' "
                                      "first")
            models = context.model(first), context.model(second)
            units = typical_differences(inputs.X)
            intervals = None
            if bootstrap:
                with context.progress(f"bootstrap ({first} − {second})", bootstrap) as advance:
                    intervals = bootstrap_differences(*models, inputs.X, pairs.labels(first), pairs.labels(second),
                                                      domains=inputs.domains, shared=inputs.shared,
                                                      membership=inputs.membership, n_boot=bootstrap,
                                                      random_state=seed, progress=advance, units=units)
            diff = weight_differences(*models, top=top, intervals=intervals, units=units)
            result["weight_differences"] = {"first": first, "second": second, "bootstrap": bootstrap,
                                            "rows": diff.to_dict("records")}
        write_json(context.folder.file("comparison.json"), result)
        return StageResult(outputs=list(WRITES), counts={"mechanisms": len(columns)}, value=(matrix, result))

    return Stage("compare", reads, WRITES, run)

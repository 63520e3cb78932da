"""fit: one HMDR per mechanism, its lambdas chosen by cross-validation (or given)."""

from __future__ import annotations

import numpy as np

from ..data import LABEL_PREFIX
from ..names import check_mechanism
from ..pipeline import Reads, RunContext, Stage, StageResult
from ..runs import write_json

MODEL_READS = ("features.parquet", "concepts.json", "measured.parquet", "measured.json")
"""The files a model's inputs are built from: the LLM concepts and the measured ones."""


def fit_stage(mechanism: str, settings: object) -> Stage:
    """Fit ``mechanism``'s labels with :class:`~preflens.fit.FitSettings` ``settings``."""
    from ..fit import FitSettings, fit_mechanism

    mechanism = check_mechanism(mechanism)  # it becomes a file name
    assert isinstance(settings, FitSettings)
    writes = (f"models/{mechanism}.json", f"models/{mechanism}.search.json")
    reads = Reads(columns=("id", "domain", LABEL_PREFIX + mechanism), files=MODEL_READS, settings=vars(settings))

    def run(context: RunContext) -> StageResult:
        inputs = context.inputs
        result = fit_mechanism(inputs, context.pairs.labels(mechanism), mechanism, settings)
        model = result.model
        model.to_json(context.folder.file(writes[0]))
        write_json(context.folder.file(writes[1]), {"cv_results": result.cv_results, "evidence": result.evidence})
        counts = {"pairs": result.n_pairs, "ties_or_missing": result.n_ties_or_missing,
                  "nonzero_shared": int(np.count_nonzero(model.shared_coef_)),
                  "nonzero_domain": int(np.count_nonzero(model.domain_coef_)),
                  "converged": bool(model.converged_), "missing_cells": inputs.missing_cells,
                  "reliable": None if result.evidence is None else result.evidence["reliable"]}
        return StageResult(outputs=list(writes), counts=counts, value=result)

    return Stage(f"fit:{mechanism}", reads, writes, run, description="pairs")

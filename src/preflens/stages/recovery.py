"""recovery: on demo data, how far the run recovered the planted concepts, features and weights."""

from __future__ import annotations

import json
from pathlib import Path

from ..data import LABEL_PREFIX
from ..pipeline import Reads, RunContext, Stage, StageResult
from ..runs import write_json
from .fit import MODEL_READS

WRITES = ("recovery.json",)


def recovery_stage(truth_path: str | Path, mechanisms: list[str]) -> Stage:
    """Compare the fitted ``mechanisms`` and the features with the demo data's ``truth.json``.

    It reads the mechanism's bootstrap intervals (``explanations/M.json``) to check the planted
    measured properties. It also fits HMDR on the true features of the same pairs (see :func:`preflens.demo.recovery`),
    which is why this is a stage of its own and not part of the report.
    """
    truth_file = Path(truth_path)
    reads = Reads(columns=("id", "domain", *(LABEL_PREFIX + m for m in mechanisms)),
                  files=(*MODEL_READS, *(f"models/{m}.json" for m in mechanisms),
                         *(f"explanations/{m}.json" for m in mechanisms)), external=(truth_file,),
                  settings={"mechanisms": mechanisms})

    def run(context: RunContext) -> StageResult:
        from ..demo import recovery
        from ..explain import GlobalExplanation

        truth = json.loads(truth_file.read_text(encoding="utf-8"))
        models = {m: context.model(m) for m in mechanisms}
        mechanism = "human" if "human" in models else next(iter(models), None)
        explained = context.path(f"explanations/{mechanism}.json") if mechanism else None
        explanation = GlobalExplanation.from_json(explained) if explained and explained.exists() else None
        result = recovery(truth, context.pairs, context.inputs, context.concepts, models, mechanism, explanation)
        write_json(context.folder.file("recovery.json"), result)
        return StageResult(outputs=list(WRITES), counts={"mechanisms": len(mechanisms)}, value=result)

    return Stage("recovery", reads, WRITES, run)

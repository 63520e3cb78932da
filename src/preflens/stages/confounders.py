"""confounders: how well each measured property alone predicts each mechanism, against the full model.

A judge that picks the longer response 96% of the time is explained by length before any concept;
this stage puts that number next to the model's cross-validated accuracy so the report can say it
first. A property "predicts" a pair by its sign (A when its feature is positive, B when negative,
half a pair right when it is 0, as a tie), in the direction that fits the labels better; the
direction is reported ("the longer response wins").
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data import LABEL_PREFIX
from ..pipeline import Reads, RunContext, Stage, StageResult
from ..runs import write_json

WRITES = ("confounders.json",)
WITHIN_POINTS = 3.0
"""A property alone within this many points of the full model's accuracy is named as explaining the labels."""


def sign_accuracy(feature: np.ndarray, y: np.ndarray) -> tuple[float, int, float]:
    """(accuracy, direction, coverage) of predicting y (1 = A) by the feature's sign; ties in the feature count 0.5.

    ``direction`` is +1 when a larger feature wins, -1 when a smaller one does; ``coverage`` is the
    share of pairs where the feature differs at all.
    """
    s = np.sign(feature)
    right = np.where(s == 0, 0.5, (s > 0) == (y == 1)).astype(float)
    accuracy = float(right.mean())
    direction = 1 if accuracy >= 0.5 else -1
    return (accuracy if direction > 0 else 1.0 - accuracy), direction, float((s != 0).mean())


def confounders_stage(mechanisms: list[str]) -> Stage:
    """For each mechanism, each measured concept alone against the full model's CV accuracy."""
    reads = Reads(columns=("id", *(LABEL_PREFIX + m for m in mechanisms)),
                  files=("measured.parquet", *(f"models/{m}.search.json" for m in mechanisms)),
                  settings={"mechanisms": mechanisms, "within_points": WITHIN_POINTS})

    def run(context: RunContext) -> StageResult:
        import pandas as pd

        from ..measured import BY_NAME
        from ..model import labels_to_y

        pairs = context.pairs.frame
        measured = pd.read_parquet(context.path("measured.parquet")).set_index("id").reindex(pairs["id"])
        result: dict[str, Any] = {"within_points": WITHIN_POINTS, "mechanisms": {}}
        for mechanism in mechanisms:
            y = labels_to_y(list(context.pairs.labels(mechanism)))
            usable = np.isin(y, (0.0, 1.0))
            search = context.json(f"models/{mechanism}.search.json") or {}
            cv = [r["mean_accuracy"] for r in search.get("cv_results") or [] if r.get("mean_accuracy") is not None]
            model_accuracy = max(cv) if cv else None
            rows = []
            for name in measured.columns:
                values = measured[name].to_numpy(float)[usable]
                accuracy, direction, coverage = sign_accuracy(np.nan_to_num(values), y[usable])
                rows.append({"concept": name, "accuracy": accuracy, "direction": direction, "coverage": coverage,
                             "definition": BY_NAME[name].definition if name in BY_NAME else ""})
            rows.sort(key=lambda r: -r["accuracy"])
            result["mechanisms"][mechanism] = {"pairs": int(usable.sum()), "model_cv_accuracy": model_accuracy,
                                               "measured": rows, "sentence": sentence(mechanism, rows, model_accuracy)}
        write_json(context.folder.file("confounders.json"), result)
        return StageResult(outputs=list(WRITES), counts={"mechanisms": len(mechanisms)}, value=result)

    return Stage("confounders", reads, WRITES, run)


def _side(row: dict[str, Any]) -> str:
    if row["concept"] == "position":
        return "first (A)" if row["direction"] > 0 else "second (B)"
    more = {"length": "longer", "refusal": "refusing", "apology": "apologising", "ai_disclaimer": "disclaiming"}
    word = more.get(row["concept"], f"higher-{row['concept'].replace('_', ' ')}")
    less = {"length": "shorter", "refusal": "non-refusing", "apology": "non-apologising",
            "ai_disclaimer": "non-disclaiming"}.get(row["concept"], f"lower-{row['concept'].replace('_', ' ')}")
    return word if row["direction"] > 0 else less


def sentence(mechanism: str, rows: list[dict[str, Any]], model_accuracy: float | None) -> str:
    """The report's first line about a mechanism: a property alone that explains it, or that none does."""
    if not rows:
        return ""
    best = rows[0]
    alone = (f"{best['concept'].replace('_', ' ')} alone predicts {mechanism} {100 * best['accuracy']:.1f}% of the "
             f"time (the {_side(best)} response wins)")
    if model_accuracy is None:
        return alone[0].upper() + alone[1:] + "."
    gap = 100 * (model_accuracy - best["accuracy"])
    if gap <= WITHIN_POINTS:
        added = (f"so the other concepts add nothing beyond it ({gap:+.1f} points)" if gap < 0.5
                 else f"so the other concepts add {gap:.1f} points")
        return (alone[0].upper() + alone[1:] + f"; the full model reaches {100 * model_accuracy:.1f}% (cross-"
                f"validated), {added}. Read their effects with that in mind.")
    return (f"No single measured property explains {mechanism}: the best, {best['concept'].replace('_', ' ')}, "
            f"predicts it {100 * best['accuracy']:.1f}% of the time, against {100 * model_accuracy:.1f}% for the full "
            "model (cross-validated).")

"""judge: label the pairs with an LLM judge or a reward model, as a new mechanism.

The labels go to ``judgments/NAME.labels.parquet`` (this stage's own artifact, never
``pairs.parquet``); :attr:`preflens.pipeline.RunContext.pairs` adds them as the ``label:NAME`` column.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..data import CORE_COLUMNS, LABEL_PREFIX
from ..names import check_mechanism
from ..pipeline import JUDGMENT_LABELS, Reads, RunContext, Stage, StageResult
from ..runs import write_json

if TYPE_CHECKING:
    from ..engine import RayEngine


def judge_stage(name: str, *, settings: object | None = None, llm: str | None = None,
                reward_model: str | None = None, margin: float = 0.0, device: str = "cpu",
                reference: str = "human", engine: RayEngine | None = None) -> Stage:
    """Judge as mechanism ``name`` with an LLM (``settings``: JudgeSettings, ``llm``) or a ``reward_model``.

    With a :class:`~preflens.engine.RayEngine` an LLM judge runs on Ray Data workers, each finished
    batch kept as a shard (see :mod:`preflens.engine`); the labels are the same.
    """
    from ..judge import JudgeSettings

    name = check_mechanism(name)  # it becomes a file name
    writes = (JUDGMENT_LABELS.format(name=name), f"judgments/{name}.parquet", f"judgments/{name}.json")
    if reward_model:
        recorded: dict[str, Any] = {"reward_model": reward_model, "margin": margin}
    else:
        assert isinstance(settings, JudgeSettings)
        reference = settings.reference or reference
        recorded = {**vars(settings), "template": None, "template_version": settings.template_version, "llm": llm}
    columns = CORE_COLUMNS + ((LABEL_PREFIX + reference,) if reference != name else ())
    reads = Reads(columns=columns, settings=recorded)

    def run(context: RunContext) -> StageResult:
        from ..evaluate import label_accuracy

        pairs = context.pairs
        summary: dict[str, Any] = {"mechanism": name}
        summary_llm: dict[str, Any] | None = None
        work = missing = 0
        if reward_model:
            from ..reward import reward_labels

            with context.progress(f"scoring with {reward_model}", None):
                scores = reward_labels(reward_model, pairs.frame, margin=margin, device=device).frame
            labels = list(scores["label"])
            scores.to_parquet(context.folder.file(writes[1]), index=False)
        else:
            from ..judge import judge

            assert isinstance(settings, JudgeSettings)
            if engine is not None:
                result, summary_llm = _judge_on_ray(context, engine, settings, name, llm or "")
            else:
                with context.llm_progress(f"judge {name}", len(pairs) * 2 * max(1, settings.ensemble)) as progress:
                    result = judge(pairs, context.client(), settings, progress)
            labels = list(result.labels)
            result.verdicts.to_parquet(context.folder.file(writes[1]), index=False)
            summary["position_bias"] = result.position_bias()
            work, missing = len(labels), sum(label is None for label in labels)
        pd.DataFrame({"id": pairs.frame["id"].to_numpy(), "label": pd.Series(labels, dtype=object)}).to_parquet(
            context.folder.file(writes[0]), index=False)
        column = pd.Series(labels, dtype=object)
        summary.update(tie_rate=float((column == "tie").mean()) if len(column) else float("nan"),
                       missing=int(column.isna().sum()), counts={k: int((column == k).sum()) for k in ("a", "b", "tie")})
        if reference in pairs.mechanisms and reference != name:
            summary["reference"] = reference
            summary["accuracy_vs_reference"] = label_accuracy(list(column), list(pairs.labels(reference)))
        write_json(context.folder.file(writes[2]), summary)
        if np.isnan(summary.get("position_bias", np.nan)):
            summary.pop("position_bias", None)
        return StageResult(outputs=list(writes), counts={k: v for k, v in summary.items() if k != "mechanism"},
                           work=work, missing=missing, value=summary, llm=summary_llm)

    return Stage(f"judge:{name}", reads, writes, run, llm=None if reward_model else "judge",
                 description="pairs")


def _judge_on_ray(context: RunContext, engine: RayEngine, settings: Any, name: str,
                  llm: str) -> tuple[Any, dict[str, Any]]:
    """Judge the pairs that no shard holds a verdict for on Ray workers; all shards' labels in pair order."""
    from ..engine import map_pairs
    from ..judge import judge_records, judgments_from_records

    pool = context.pairs if settings.shots else None  # few-shot examples come from every labelled pair
    run = map_pairs(context, engine, f"judge:{name}", judge_records, {"settings": settings, "demonstrations": pool},
                    columns=CORE_COLUMNS, is_done=lambda records: records["label"].notna(), label=f"judge {name}")
    result = judgments_from_records(run.records)
    if result.labels.notna().all():
        run.store.clear()
    return result, run.llm_record(llm, engine)

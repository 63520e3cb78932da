"""The pipeline's stages, one module each; every module declares its :class:`~preflens.pipeline.Stage`.

=========  ==============================================  =============================================
stage      reads                                           writes (its own artifacts)
=========  ==============================================  =============================================
ingest     the source data file, the reading options       pairs.parquet, validation.json
measured   pairs (the two responses)                       measured.parquet, measured.json
discover   pairs (texts, domain, one mechanism's labels)   concepts.json, discovery.json
represent  pairs (texts, domain), concepts.json            features.parquet, representation*.{parquet,json}
confounders  labels, measured concepts, the fits' CV       confounders.json
judge      pairs (texts, domain, reference labels)         judgments/NAME.{labels.parquet,parquet,json}
fit        id, domain, one mechanism's labels, features    models/NAME.json, models/NAME.search.json
explain    a model, its labels, features (bootstrap)       explanations/NAME.json
evaluate   texts' lengths, labels, features                evaluation.json, evaluation.md
recovery   truth.json (demo data), models, features        recovery.json
compare    labels, models, features                        comparison.json
report     every artifact above                            report.html, report.md, report.json
=========  ==============================================  =============================================
"""

from .compare import compare_stage
from .confounders import confounders_stage
from .discover import discover_stage, given_concepts_stage
from .evaluate import evaluate_stage
from .explain import explain_stage
from .fit import fit_stage
from .ingest import ingest_stage
from .judge import judge_stage
from .measured import measured_stage
from .recovery import recovery_stage
from .report import report_stage
from .represent import represent_stage

__all__ = ["compare_stage", "confounders_stage", "discover_stage", "evaluate_stage", "explain_stage", "fit_stage", "given_concepts_stage",
           "ingest_stage", "judge_stage", "measured_stage", "recovery_stage", "report_stage", "represent_stage"]

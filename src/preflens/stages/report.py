"""report: render what the stages wrote into report.html, report.md and report.json."""

from __future__ import annotations

import json
from pathlib import Path

from ..pipeline import Reads, RunContext, Stage, StageResult

WRITES = ("report.html", "report.md", "report.json")


def report_stage(truth_path: str | Path | None = None) -> Stage:
    """The report; ``truth_path`` (demo data) adds what was planted in each pair to the pair viewer."""

    def run(context: RunContext) -> StageResult:
        from ..report import write_report

        truth = json.loads(Path(truth_path).read_text(encoding="utf-8")) if truth_path else None
        files = write_report(context.folder.path, truth=truth, context=context)
        return StageResult(outputs=list(WRITES), counts={"mechanisms": len(files.content["mechanisms"])},
                           value=files)

    return Stage("report", Reads(settings={"truth": str(truth_path) if truth_path else None}), WRITES, run,
                 always=True)

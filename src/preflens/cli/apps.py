"""Commands of the applications: steer (Judge Hack), tiebreak (Tie Break) and export-rubric."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click
import pandas as pd

from ..errors import ConfigError
from . import cli
from ._options import fail_soft, llm_options, make_client, open_run
from ._progress import Progress
from ._render import out, shown


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--judge", "judge_name", required=True, help="The mechanism whose fitted explanation guides generation.")
@click.option("--generator", "generator_spec", help="LLM that writes the responses (default: the judge's --llm).")
@click.option("--generator-base-url", help="Server URL of the generator, when it differs from --base-url.")
@click.option("--queries", "queries_path", type=click.Path(exists=True, dir_okay=False),
              help="New queries (a data file with prompt and domain columns); default: prompts of RUN's pairs.")
@click.option("--queries-per-domain", default=50, show_default=True, type=click.IntRange(1),
              help="Queries per domain to generate responses for.")
@click.option("--k", default=4, show_default=True, type=click.IntRange(1), help="Concepts in the guided prompt.")
@click.option("--max-tokens", default=400, show_default=True, type=click.IntRange(16), help="Per generated response.")
@click.option("--variant", type=click.Choice(["zero", "cot"]), default="zero", show_default=True,
              help="Judge prompt: zero-shot, or chain of thought first.")
@click.option("--calibrated", is_flag=True, help="Judge with both orders' probabilities averaged.")
@click.option("--reward-model", help="Judge with a reward model instead of an LLM.")
@click.option("--device", default="cpu", show_default=True, help="Reward model: torch device.")
@click.option("--seed", default=0, show_default=True, help="Seed of the query sample and the random concepts.")
@llm_options
@fail_soft
def steer(run_dir: str, judge_name: str, generator_spec: str | None, generator_base_url: str | None,
          queries_path: str | None, queries_per_domain: int, k: int, max_tokens: int, variant: str,
          calibrated: bool, reward_model: str | None, device: str, seed: int, **opts: Any) -> None:
    """Judge Hack: responses guided by the judge's top concepts vs vanilla vs random concepts."""
    with open_run(run_dir) as runner:
        _steer(runner.context, judge_name, generator_spec, generator_base_url, queries_path, queries_per_domain, k,
               max_tokens, variant, calibrated, reward_model, device, seed, opts)


def _steer(context: Any, judge_name: str, generator_spec: str | None, generator_base_url: str | None,
           queries_path: str | None, queries_per_domain: int, k: int, max_tokens: int, variant: str,
           calibrated: bool, reward_model: str | None, device: str, seed: int, opts: dict[str, Any]) -> None:
    from ..judge import JudgeSettings
    from ..llm import LLMCache, LLMClient, get_llm
    from ..runs import write_json
    from ..steer import held_out_queries, llm_comparer, reward_comparer
    from ..steer import steer as run_steer

    run = context.folder
    if not run.file(f"models/{judge_name}.json").exists():
        raise ConfigError(f"{run.path}: no fitted model for '{judge_name}'; run 'preflens judge' and 'preflens fit' "
                          "first")
    model = context.model(judge_name)
    concepts = context.concepts
    queries = _read_queries(queries_path) if queries_path else held_out_queries(context.pairs, queries_per_domain, seed)
    judge_client = None
    if reward_model:
        compare_with = reward_comparer(reward_model, device=device)
    else:
        judge_client = make_client(opts)
        compare_with = llm_comparer(judge_client, JudgeSettings(variant=variant, seed=seed,  # type: ignore[arg-type]
                                                                calibrated=calibrated))
    generator_provider = get_llm(generator_spec or opts["llm_spec"],
                                 base_url=generator_base_url or (opts["base_url"] if not generator_spec else None),
                                 api_key_env=opts["api_key_env"])
    generator = LLMClient(generator_provider, cache=None if opts["no_cache"] else LLMCache(opts["cache_path"]),
                          max_concurrency=opts["max_concurrency"], timeout=opts["timeout"])
    start = time.perf_counter()
    with Progress("steer: generating", len(queries) * 3) as progress:
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
    out.print(shown(markdown))
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
@click.option("--k", default=4, show_default=True, type=click.IntRange(1), help="Concepts shown to the re-judge.")
@click.option("--variant", type=click.Choice(["zero", "cot"]), default="zero", show_default=True,
              help="Judge prompt: zero-shot, or chain of thought first.")
@click.option("--calibrated", is_flag=True, help="Re-judge with both orders' probabilities averaged.")
@click.option("--tie-margin", default=0.0, show_default=True, type=click.FloatRange(0, 0.5),
              help="Calibrated: |P(A) - 0.5| at most this is still a tie.")
@click.option("--seed", default=0, show_default=True, help="Seed of the random concepts.")
@click.option("--features", "features_path", type=click.Path(dir_okay=False), help="Feature matrix to use instead of RUN/features.parquet.")
@click.option("--concepts", "concepts_path", type=click.Path(dir_okay=False), help="Concept set to use instead of RUN/concepts.json.")
@llm_options
@fail_soft
def tiebreak(run_dir: str, judge_name: str, reference: str, k: int, variant: str, calibrated: bool,
             tie_margin: float, seed: int, features_path: str | None, concepts_path: str | None, **opts: Any) -> None:
    """Tie Break: re-judge the judge's ties with k concepts (random, judge's, reference's, diff)."""
    with open_run(run_dir, overrides={"features.parquet": features_path, "concepts.json": concepts_path}) as runner:
        _tiebreak(runner.context, judge_name, reference, k, variant, calibrated, tie_margin, seed, opts)


def _tiebreak(context: Any, judge_name: str, reference: str, k: int, variant: str, calibrated: bool,
              tie_margin: float, seed: int, opts: dict[str, Any]) -> None:
    from ..judge import JudgeSettings
    from ..runs import write_json
    from ..tiebreak import tiebreak as run_tiebreak

    run, pairs, concepts = context.folder, context.pairs, context.concepts
    for name in (judge_name, reference):
        if name not in pairs.mechanisms:
            raise ConfigError(f"no labels for '{name}'; the run has: {', '.join(pairs.mechanisms)}")
    inputs = context.inputs
    client = make_client(opts)
    try:
        with Progress("tiebreak", None) as progress:
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
    out.print(shown(markdown))
    out.print(f"Wrote {run.file(f'tiebreak/{judge_name}.md')}")


@cli.command("export-rubric")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--mechanism", default="human", show_default=True, help="Whose fitted explanation becomes the rubric.")
@click.option("--top", default=5, show_default=True, type=click.IntRange(1),
              help="Principles per scope (shared, then each domain) at most.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False),
              help="Markdown file to write (default RUN/rubrics/MECHANISM.md); a .json beside it holds the "
                   "principles and the ICAI-style constitution (their texts alone).")
@fail_soft
def export_rubric(run_dir: str, mechanism: str, top: int, out_path: str | None) -> None:
    """Write a mechanism's fitted explanation as a short judge rubric: the concepts it rewards and penalises,
    with direction and strength, in every domain and per domain."""
    import json

    from ..explain import GlobalExplanation
    from ..names import check_mechanism
    from ..rubric import make_rubric

    mechanism = check_mechanism(mechanism, "--mechanism")
    with open_run(run_dir) as runner:
        context = runner.context
        path = context.require(f"explanations/{mechanism}.json",
                               f"fit and explain it first: preflens run, or preflens fit {run_dir} then preflens "
                               f"explain {run_dir} --mechanism {mechanism}")
        rubric = make_rubric(GlobalExplanation.from_json(path), context.concepts, mechanism=mechanism, top=top,
                             pairs=len(context.pairs))
    target = Path(out_path) if out_path else Path(run_dir) / "rubrics" / f"{mechanism}.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(rubric.to_markdown(), encoding="utf-8")
    target.with_suffix(".json").write_text(json.dumps(rubric.to_dict(), indent=1, ensure_ascii=False) + "\n",
                                           encoding="utf-8")
    out.print(shown(rubric.to_markdown()))
    out.print(f"Wrote {target} and {target.with_suffix('.json')}", markup=False)

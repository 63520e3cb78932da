"""Options shared by several commands, and turning them into loaders, clients and runners."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..errors import ConfigError, PreflensError
from ..pipeline import DEFAULT_MAX_MISSING

F = Callable[..., Any]


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
        click.option("--subset", "hf_config", metavar="NAME",
                     help="Subset (configuration) of a hf:NAME dataset, e.g. --subset default."),
        click.option("--limit", type=click.IntRange(1),
                     help="Read only the first N rows (a hf:NAME dataset is then streamed, not downloaded whole)."),
        click.option("--encoding", default="utf-8", show_default=True, help="Text encoding of the file."),
        click.option("--max-response-chars", default=200_000, show_default=True, type=click.IntRange(1),
                     help="Truncate longer responses (reported)."),
        click.option("--max-input-mb", default=2048, show_default=True, type=click.IntRange(1),
                     help="Stop reading a file after this many MB (after decompression): a guard against "
                          "files that inflate without end."),
        click.option("--strict", is_flag=True, help="Fail on the first bad row instead of skipping it."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def load_options(opts: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments of :func:`preflens.data.load_pairs` for the data options of a command."""
    label_map: dict[str, str] = {}
    for item in opts["label_map"]:
        value, sep, label = item.partition("=")
        if not sep:
            raise ConfigError(f"--label-map {item}: expected VALUE=LABEL, e.g. --label-map 1=a")
        label_map[value.strip()] = label.strip().lower()
    return dict(
        format=opts["fmt"], id_col=opts["id_col"], prompt_col=opts["prompt_col"], a_col=opts["a_col"],
        b_col=opts["b_col"], label_cols=list(opts["label_cols"]) or None, domain_col=opts["domain_col"],
        chosen_col=opts["chosen_col"], rejected_col=opts["rejected_col"], chosen_label=opts["chosen_label"],
        domain=opts["domain"], default_domain=opts["default_domain"], label_map=label_map, seed=opts["seed"],
        split=opts["split"], encoding=opts["encoding"], max_response_chars=opts["max_response_chars"],
        max_input_mb=opts["max_input_mb"], config=opts["hf_config"], limit=opts["limit"], strict=opts["strict"],
    )


DATA_OPTION_NAMES = ("fmt", "id_col", "prompt_col", "a_col", "b_col", "label_cols", "domain_col", "chosen_col",
                     "rejected_col", "chosen_label", "domain", "default_domain", "label_map", "seed", "split",
                     "encoding", "max_response_chars", "max_input_mb", "hf_config", "limit", "strict")


def llm_options(command: F) -> F:
    """Options that choose and limit the LLM."""
    options = [
        click.option("--llm", "llm_spec", envvar="PREFLENS_LLM",
                     help="openai/MODEL for any OpenAI-compatible server; local (default) for the embedded "
                          "model, or local/PATH.gguf for another GGUF file."),
        click.option("--base-url", help="Server URL ending in /v1 (default $OPENAI_BASE_URL)."),
        click.option("--api-key-env", help="Environment variable holding the API key (default OPENAI_API_KEY)."),
        click.option("--max-concurrency", type=click.IntRange(1), help="Requests in flight at once."),
        click.option("--timeout", type=click.FloatRange(0, min_open=True), default=120.0, show_default=True,
                     help="Seconds per call to a server before it is retried (the local model is not timed out; "
                          "max_tokens bounds it)."),
        click.option("--max-retries", type=click.IntRange(0), default=6, show_default=True,
                     help="Retries on 429/5xx/timeouts."),
        click.option("--max-calls", type=click.IntRange(1), help="Stop after this many LLM calls."),
        click.option("--max-cost", type=click.FloatRange(0, min_open=True),
                     help="Stop when the cost reaches this many dollars."),
        click.option("--price", nargs=2, type=float, metavar="IN OUT",
                     help="Dollars per million prompt and completion tokens, for cost accounting."),
        click.option("--cache", "cache_path", type=click.Path(dir_okay=False),
                     help="Cache file (default $PREFLENS_CACHE or the user cache folder)."),
        click.option("--no-cache", is_flag=True, help="Neither read nor write the cache."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def labeler_option(command: F) -> F:
    """``--labeler``: every cell from the LLM, or a sample and a light model for the rest."""
    return click.option("--labeler", type=click.Choice(["llm", "distilled"]),
                        help="Representation: llm asks every cell; distilled asks a sample and a light model on "
                             "sentence embeddings labels the rest (presence scheme; default with the local model "
                             "from 100 pairs).")(command)


def missing_option(command: F) -> F:
    """``--max-missing``: the share of an LLM stage's work that may come back unusable before it fails."""
    return click.option("--max-missing", default=DEFAULT_MAX_MISSING, show_default=True,
                        type=click.FloatRange(0, 1),
                        help="Fail when more than this share of an LLM stage's cells or verdicts has no usable "
                             "answer (they are retried on the next run either way).")(command)


def open_run(run_dir: str | Path, *, client: Any = None, force: bool | set[str] = False,
             max_missing: float = DEFAULT_MAX_MISSING, overrides: dict[str, Any] | None = None) -> Any:
    """A locked :class:`~preflens.pipeline.Runner` on ``run_dir`` with the command line's progress bars."""
    from ..pipeline import RunContext, Runner
    from ._progress import Progress
    from ._render import console, shown

    context = RunContext(run_dir, client_factory=(lambda: client) if client is not None else None,
                         progress=Progress, echo=lambda message: console.print(shown(message)),
                         overrides=overrides)
    return Runner(context, force=force, max_missing=max_missing)


def client_spec(opts: dict[str, Any]) -> Any:
    """The LLM options as a :class:`~preflens.engine.ClientSpec` (a recipe Ray workers build from too)."""
    from ..engine import ClientSpec

    return ClientSpec(llm=opts["llm_spec"], base_url=opts["base_url"], api_key_env=opts["api_key_env"],
                      max_concurrency=opts["max_concurrency"], timeout=opts["timeout"],
                      max_retries=opts["max_retries"], max_calls=opts["max_calls"], max_cost=opts["max_cost"],
                      price=tuple(opts["price"]) if opts["price"] else None,
                      cache=str(opts["cache_path"]) if opts["cache_path"] else None, no_cache=opts["no_cache"])


def make_client(opts: dict[str, Any]) -> Any:
    from ._render import console

    # the in-process model says when it assembles or loads itself
    return client_spec(opts).build(on_status=lambda line: console.print(line, markup=False))


def engine_options(command: F) -> F:
    """``--engine`` and ``--workers``: where the per-pair stages (measured, represent) run."""
    options = [
        click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                     help="Where the per-pair stages run: in this process, or as map_batches on Ray Data "
                          "(RAY_ADDRESS picks a cluster; without it a local Ray starts). Needs preflens[ray]."),
        click.option("--workers", type=click.IntRange(1), default=2, show_default=True,
                     help="--engine ray: LLM workers (actors), each with --max-concurrency requests in flight."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def batch_size_option(command: F) -> F:
    return click.option("--batch-size", default=256, show_default=True, type=click.IntRange(1),
                        help="--engine ray: pairs per batch, and so per shard kept when a run is killed.")(command)


def make_engine(opts: dict[str, Any], batch_size: int = 256) -> Any:
    """The :class:`~preflens.engine.RayEngine` the options ask for, or None for the local engine.

    Pops ``engine``, ``workers`` and ``batch_size`` from ``opts``; the LLM options stay for the local client.
    """
    from ..engine import RayEngine

    name, workers = opts.pop("engine", "local"), opts.pop("workers", 2)
    batch_size = opts.pop("batch_size", batch_size)
    if name != "ray":
        return None
    client = client_spec(opts) if "llm_spec" in opts else None  # measure asks no LLM
    return RayEngine(**({"client": client} if client else {}), workers=workers, batch_size=batch_size)


def one_line(text: str) -> str:
    """An error text on one line, control characters (ESC, ...) written as ``\\xNN``."""
    import unicodedata

    text = " ".join(str(text).split())
    return "".join(ch if unicodedata.category(ch) not in ("Cc", "Cf") else ch.encode("unicode_escape").decode("ascii")
                   for ch in text)


def os_error_message(exc: OSError) -> str:
    """One line for a file-system error: the path, what went wrong, and what to do."""
    import errno

    hints = {errno.ENOTDIR: "a part of this path is a file, not a folder; choose another path",
             errno.EEXIST: "a file is in the way; move it, or choose another path",
             errno.EISDIR: "this is a folder; give a file",
             errno.ENOENT: "no such file or folder",
             errno.EACCES: "permission denied; choose a folder you can write to",
             errno.EROFS: "the file system is read-only; choose another folder",
             errno.ENOSPC: "no space left on the device; free some, or choose another folder"}
    where = exc.filename if exc.filename is not None else "a file"
    return f"{where}: {hints.get(exc.errno or -1, exc.strerror or type(exc).__name__)}"


def fail_soft(function: F) -> F:
    """Turn errors into one line on stderr and exit status 1 (a non-preflens error is labelled a bug)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, KeyboardInterrupt):
            raise
        except Exception as exc:
            if os.environ.get("PREFLENS_DEBUG"):
                raise
            if isinstance(exc, PreflensError):
                message = str(exc)
            elif isinstance(exc, OSError):  # a path that is not there, a file where a folder must be, ...
                message = os_error_message(exc)
            elif isinstance(exc, MemoryError):
                message = "out of memory; try a smaller input (--max-input-mb) or a machine with more memory"
            else:  # a bug, not a user error: still one line, the traceback on request
                message = (f"unexpected {type(exc).__name__}: {str(exc)[:300]} (a bug in preflens; "
                           "PREFLENS_DEBUG=1 shows the traceback for a report)")
            click.echo(f"Error: {one_line(message)}", err=True)
            sys.exit(1)

    return wrapper


def load_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    """Read a YAML or TOML config file into the command's defaults (flags given on the command line win)."""
    if not value:
        return
    path = Path(value)
    try:
        if path.stat().st_size > 1_000_000:
            raise click.BadParameter(f"{value}: larger than 1 MB; a config file holds option values")
        text = path.read_text(encoding="utf-8-sig")
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            from ..concepts import parse_yaml

            data = parse_yaml(text, value)[0] or {}
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # tomllib's and our YAML errors are ValueErrors
        raise click.BadParameter(f"{value}: cannot read: {exc}") from None
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


def grid_point(text: str) -> dict[str, float]:
    shared_text, sep, domain_text = text.partition(":")
    try:
        return {"lambda_shared": float(shared_text), "lambda_domain": float(domain_text)}
    except ValueError:
        raise ConfigError(f"--grid {text}: expected LAMBDA_SHARED:LAMBDA_DOMAIN, e.g. --grid 0.06:0.02") from None

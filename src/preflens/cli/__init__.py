"""The ``preflens`` command line: thin commands over the pipeline's stages and runner.

Exit codes: 0 ok, 1 a user error (one line on stderr; ``PREFLENS_DEBUG=1`` shows the traceback),
2 a usage error, 130 interrupted.

Modules: :mod:`._options` (shared options, clients, runners), :mod:`._progress` (progress bars),
:mod:`._render` (printing), :mod:`.pipeline` (the stages' commands, ``run`` and ``demo``),
:mod:`.apps` (steer, tiebreak), :mod:`.interop` (import-ap, export-ap), :mod:`.tools` (cache, llm check).
"""

from __future__ import annotations

import sys

import click

from .._version import __version__
from ._render import console


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="preflens")
def cli() -> None:
    """Explain why a preference mechanism prefers one response over another.

    \b
    Where to start:
      preflens demo                         every stage on bundled data, with the embedded model
      preflens validate DATA                check your pairs file (CSV, JSONL, Parquet, hf:NAME)
      preflens run DATA --out RUN --dry-run say what a run on your data would cost
      preflens run DATA --out RUN           every stage; the report is RUN/report.html

    Each command has --help.
    """


from . import apps, interop, pipeline, tools

__all__ = ["apps", "cli", "interop", "main", "pipeline", "tools"]


def _terminate(signum: int, _frame: object) -> None:
    """SIGTERM: unwind like Ctrl-C, so that run.json records the stage as interrupted and the lock is released."""
    raise KeyboardInterrupt


def main() -> None:
    """Entry point of the ``preflens`` script (exit 130 when interrupted, with where to resume)."""
    import signal

    signal.signal(signal.SIGTERM, _terminate)
    try:
        code = cli.main(prog_name="preflens", standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        console.print("Interrupted. The work finished so far is kept (in the run folder and the LLM cache): run the "
                      "same command again to go on from there.", markup=False)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)

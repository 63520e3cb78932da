"""The ``preflens`` command line: thin commands over the pipeline's stages and runner.

Exit codes: 0 ok, 1 a user error (one line on stderr; ``PREFLENS_DEBUG=1`` shows the traceback),
2 a usage error, 130 interrupted.

Modules: :mod:`._options` (shared options, clients, runners), :mod:`._progress` (progress bars),
:mod:`._render` (printing), :mod:`.pipeline` (the stages' commands, ``run`` and ``demo``),
:mod:`.apps` (steer, tiebreak), :mod:`.tools` (cache, llm check).
"""

from __future__ import annotations

import sys

import click

from .._version import __version__
from ._render import console


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="preflens")
def cli() -> None:
    """Explain why a preference mechanism prefers one response over another."""


from . import apps, pipeline, tools

__all__ = ["apps", "cli", "main", "pipeline", "tools"]


def main() -> None:
    """Entry point of the ``preflens`` script."""
    try:
        cli.main(prog_name="preflens", standalone_mode=True)
    except KeyboardInterrupt:
        console.print("Interrupted.")
        sys.exit(130)

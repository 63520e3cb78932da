"""Every command and option of the command line says what it does."""

from __future__ import annotations

import click
from click.testing import CliRunner

from preflens.cli import cli


def _commands(group: click.Group, prefix: str = ""):
    for name, command in group.commands.items():
        yield f"{prefix}{name}", command
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix}{name} ")


def test_every_command_and_option_has_help():
    missing = []
    for name, command in _commands(cli):
        if not (command.help or command.short_help):
            missing.append(f"{name}: the command")
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden and not param.help:
                missing.append(f"{name} {param.opts[0]}")
    assert not missing, "no help text: " + ", ".join(missing)


def test_the_top_level_help_says_where_to_start():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert "preflens demo" in result.output and "preflens validate" in result.output


def test_progress_prints_plain_lines_when_stderr_is_not_a_terminal(capsys):
    from preflens.cli._progress import Progress

    with Progress("represent", 40) as advance:
        for _ in range(40):
            advance()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("represent: started, 0/40 done")
    assert sum("running" in line for line in lines) == 9  # every tenth of the work
    assert lines[-1].startswith("represent: finished, 40/40 done")

"""Every file of the bad-input corpus (``bad_inputs.py``) through the command line.

Per file: the exit status; for a readable file, that every good row survives and the problem is
listed; for an unreadable one, a single line that names the file or field and never "a bug in
preflens"; nothing from the data reaches the terminal as markup or escape codes; and, where a file
is built to exhaust memory, a bound on the peak of Python allocations.
"""

from __future__ import annotations

import json
import tracemalloc

import pytest
from click.testing import CliRunner

from bad_inputs import CASES, GOOD, Case, good, lines
from preflens.cli import cli


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_inputs")
    (folder / "_good.jsonl").write_bytes(lines([good(i) for i in range(GOOD)]))
    return folder


def test_the_corpus_is_large_enough():
    assert len({case.name for case in CASES}) == len(CASES) >= 40


def _command(case: Case, path, corpus, tmp_path) -> list[str]:
    data = str(corpus / "_good.jsonl")
    if case.command == "validate":
        return ["validate", str(path), *case.args] + ([] if case.text_output else ["--json"])
    if case.command == "run":
        return ["run", data, "--concepts", str(path), "--out", str(tmp_path / "run"), "--measured", "none",
                "--llm", "openai/m", "--base-url", "http://127.0.0.1:9/v1", "--max-retries", "0"]
    if case.command == "out":
        return ["validate", data, "--out", str(path)]
    if case.command == "out_under":
        return ["validate", data, "--out", str(path / "sub" / "run")]
    if case.command == "cache":
        return ["cache", "stats", "--cache", str(path)]
    if case.command == "cache_under":
        return ["cache", "stats", "--cache", str(path / "x.sqlite")]
    raise AssertionError(case.command)


@pytest.mark.timeout(120)  # a hang guard, not a speed check
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input(case: Case, corpus, tmp_path):
    path = case.write(tmp_path) if case.command != "validate" or case.name.startswith("a_") else (
        corpus / case.name if (corpus / case.name).exists() else case.write(corpus))
    if case.memory_mb:
        tracemalloc.start()
    try:
        result = CliRunner().invoke(cli, _command(case, path, corpus, tmp_path))
    finally:
        if case.memory_mb:
            peak = tracemalloc.get_traced_memory()[1] / 1e6
            tracemalloc.stop()
    assert result.exit_code == case.exit, (result.stdout, result.stderr)
    assert "bug in preflens" not in result.output and "Traceback" not in result.output
    assert "\x1b" not in result.output and "\x07" not in result.output
    if case.memory_mb:
        assert peak < case.memory_mb, f"peak {peak:.0f} MB of Python allocations"
    if case.exit == 1:
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error")]
        assert len(errors) == 1, result.stderr
        error = errors[0]
        assert result.stderr.rstrip().endswith(error), result.stderr  # the error is one line, the last
        assert len(error) < 1000, f"{len(error)} characters"
        assert case.says in error, error
        return
    if case.exit == 2:  # a usage error: click names the option
        assert case.says in result.stderr
        return
    if case.text_output:
        assert case.says in result.stdout, result.stdout
        assert f"{GOOD} rows read, {case.kept} pairs kept" in result.stdout
        return
    data = json.loads(result.stdout)
    assert data["summary"]["pairs"] == case.kept, data["validation"]["problems"][:5]
    problems = data["validation"]["problems"]
    if case.says:
        assert any(case.says in p["message"] for p in problems), problems[:5]
    else:
        assert not [p for p in problems if p["action"] == "skipped"], problems[:5]
    for key, value in case.extra.items():
        assert data["validation"][key] == value
    if "problems_total" in case.extra:
        assert len(problems) <= 10_000 and data["validation"]["problem_counts"]

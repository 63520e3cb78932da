"""export-rubric: a fitted explanation as a judge rubric, checked on demo data with its true features."""

from __future__ import annotations

import json

from click.testing import CliRunner

from preflens.cli import cli
from preflens.explain import GlobalExplanation


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_the_rubric_says_what_the_fit_rewards_and_penalises(make_oracle_run):
    folder, _ = make_oracle_run(30)
    assert run("export-rubric", folder).exit_code == 1  # nothing fitted yet: one clear line
    assert run("fit", folder).exit_code == 0 and run("explain", folder).exit_code == 0
    result = run("export-rubric", folder, "--top", 3)
    assert result.exit_code == 0, result.output
    data = json.loads((folder / "rubrics" / "human.json").read_text())
    markdown = (folder / "rubrics" / "human.md").read_text()
    explanation = GlobalExplanation.from_json(folder / "explanations" / "human.json").frame
    shared = explanation[explanation["scope"] == "shared"].nsmallest(3, "rank")
    principles = [p for p in data["principles"] if p["scope"] == "shared"]
    assert [p["concept"] for p in principles] == list(shared["concept"])  # the strongest shared effects, in order
    for principle, (_, row) in zip(principles, shared.iterrows(), strict=True):
        assert principle["direction"] == ("prefer" if row["effect"] > 0 else "avoid")
        assert principle["text"] in markdown and principle["text"] in data["constitution"]
    definitions = {c["name"]: c["definition"] for name in ("concepts.json", "measured.json")  # length is measured
                   for c in json.loads((folder / name).read_text())["concepts"]}
    assert definitions[principles[0]["concept"]].rstrip(".") in principles[0]["text"]
    domain_lines = [p for p in data["principles"] if p["scope"] != "shared"]
    assert domain_lines and len(domain_lines) <= 3 * 4
    assert "## In every domain" in markdown and "of the time when only it differs" in markdown

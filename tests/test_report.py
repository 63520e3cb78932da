"""The report: what it collects, the recovery figures, escaping, the Markdown summary, the command."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from preflens.cli import cli
from preflens.report import collect, render_html, render_markdown, script_json, write_report

INJECTED = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
ODD_CONCEPT = "<b>bold</b> & | pipes"


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def make_run(folder, *, pairs_per_domain=12, inject=True, judge=False):
    """A run folder on demo data with its true features (no LLM), one hostile pair and concept name.

    ``judge`` adds a second mechanism whose labels are the planted ones with every third pair flipped.
    """
    data = folder / "data"
    assert run("demo-data", "--out", data, "--pairs-per-domain", pairs_per_domain, "--oracle").exit_code == 0
    lines = (data / "pairs.jsonl").read_text().splitlines()
    if judge:
        records = [json.loads(line) for line in lines]
        for i, record in enumerate(records):
            record["judge"] = {"a": "b", "b": "a"}[record["label"]] if i % 3 == 0 else record["label"]
        lines = [json.dumps(r) for r in records]
    first = json.loads(lines[0])
    if inject:
        first["response_b"] += "\n" + INJECTED
        first["prompt"] = "</script><script>window.__pwned = 3</script> " + first["prompt"]
        lines[0] = json.dumps(first)
        (data / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    concepts = json.loads((data / "concepts.json").read_text())
    features = pd.read_parquet(data / "oracle_features.parquet")
    if inject:  # a concept name with HTML and a Markdown pipe in it
        old = concepts["concepts"][1]["name"]
        concepts["concepts"][1]["name"] = ODD_CONCEPT
        features = features.rename(columns={old: ODD_CONCEPT})
    ids_b = pd.Series([json.loads(line)["id"] for line in lines])
    features["id"] = ids_b  # the injected pair's id changed with its content; same order
    target = folder / "run"
    labels = ["--label-col", "human=label", "--label-col", "judge=judge"] if judge else []
    assert run("validate", data / "pairs.jsonl", "--out", target, *labels).exit_code == 0
    (target / "concepts.json").write_text(json.dumps(concepts))
    features.to_parquet(target / "features.parquet", index=False)
    measured = run("measure", target, "--measured", "length,emphasis")  # the planted measured properties
    assert measured.exit_code == 0, measured.output
    fitted = run("fit", target)
    assert fitted.exit_code == 0, fitted.output
    evaluated = run("evaluate", target, "--splits", 2, "--method", "HMDR", "--method", "Length")
    assert evaluated.exit_code == 0, evaluated.output
    return target, data


def recovered(folder, data):
    """The recovery stage's result, as 'preflens report --truth' computes it."""
    result = run("report", folder, "--truth", data / "truth.json")
    assert result.exit_code == 0, result.output
    recovery = json.loads((folder / "recovery.json").read_text())
    assert json.loads((folder / "report.json").read_text())["recovery"] == recovery  # the report shows it as is
    return recovery


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("report"))


def test_collect_gathers_every_section(demo_run):
    folder, data = demo_run
    report = collect(folder)
    assert report["mechanisms"] == ["human"] and report["domains"] == ["cooking", "legal", "software", "travel"]
    assert len(report["pairs"]) == 48 and report["pairs_total"] == 48
    assert {c["name"] for c in report["concepts"]} >= {ODD_CONCEPT, "code_block"}
    code_block = next(c for c in report["concepts"] if c["name"] == "code_block")
    assert code_block["domains"] == ["software"] and not code_block["shared"]
    # the true features fire exactly where the truth says the concept differs
    truth = json.loads((data / "truth.json").read_text())
    software = [i for i, t in truth["pairs"].items() if "code_block" in t["features"]]
    assert code_block["frequency"] == pytest.approx(len(software) / 12, abs=1e-3)
    assert all(e["id"] in truth["pairs"] for e in code_block["examples"])
    assert report["evaluation"]["summary"] and report["fits"][0]["cv_accuracy"] > 0.5
    assert report["agreement"]["names"] == ["human", "HMDR(human)"]
    viewer = report["pairs"][0]
    assert INJECTED in viewer["response_b"] and viewer["labels"]["human"] in ("a", "b")
    assert 0 <= viewer["predictions"]["human"]["p_a"] <= 1


def test_recovery_is_perfect_on_the_true_features_and_not_on_shuffled_ones(tmp_path):
    folder, data = make_run(tmp_path, inject=False)
    truth = json.loads((data / "truth.json").read_text())
    exact = recovered(folder, data)
    assert exact["concepts_found"] == 11 and exact["concepts_given"]
    assert exact["sign_accuracy"] == 1.0 and exact["weights"]["sign_agreement"] > 0.8
    assert exact["oracle"]["cv_accuracy"] > 0.5 and exact["ceiling"] == pytest.approx(
        np.mean([max(t["p_a"], 1 - t["p_a"]) for t in truth["pairs"].values()]))
    # shuffle every column across pairs: the representation no longer matches the truth
    features = pd.read_parquet(folder / "features.parquet")
    rng = np.random.default_rng(0)
    for column in features.columns[1:]:
        features[column] = rng.permutation(features[column].to_numpy())
    features.to_parquet(folder / "features.parquet", index=False)
    assert run("fit", folder).exit_code == 0
    shuffled = recovered(folder, data)
    assert shuffled["sign_accuracy"] < 0.8
    assert "right sign in" in " ".join(shuffled["summary"])


def test_recovery_matches_discovered_concepts_by_their_values(tmp_path):
    folder, data = make_run(tmp_path, inject=False)
    concepts = json.loads((folder / "concepts.json").read_text())
    concepts["concepts"][0]["name"] = "warns about risks"  # was safety_caveat
    concepts["meta"] = {"stage": "discover"}  # as the discovery stage writes it
    (folder / "concepts.json").write_text(json.dumps(concepts))
    features = pd.read_parquet(folder / "features.parquet").rename(columns={"safety_caveat": "warns about risks"})
    features.to_parquet(folder / "features.parquet", index=False)
    assert run("fit", folder).exit_code == 0
    recovery = recovered(folder, data)
    row = next(r for r in recovery["concepts"] if r["planted"] == "safety_caveat")
    assert row["matched"] == "warns about risks" and row["match_score"] >= 0.5
    assert recovery["match_method"].startswith("values")
    assert not recovery["concepts_given"] and "11 of 11 planted concepts are matched" in recovery["summary"][0]
    assert recovery["also_matching"] == []
    # a second discovered concept that follows the same planted one less well is named, not counted
    weaker = features["warns about risks"].to_numpy(float).copy()
    weaker[np.flatnonzero(weaker)[::4]] = 0.0  # a quarter of its differences missed
    features["mentions danger"] = weaker
    features.to_parquet(folder / "features.parquet", index=False)
    concepts["concepts"].append({**concepts["concepts"][0], "name": "mentions danger"})
    (folder / "concepts.json").write_text(json.dumps(concepts))
    assert run("fit", folder).exit_code == 0
    recovery = recovered(folder, data)
    assert "11 of 11 planted concepts are matched" in recovery["summary"][0]
    [also] = recovery["also_matching"]
    assert (also["concept"], also["planted"], also["matched_by"]) == ("mentions danger", "safety_caveat",
                                                                      "warns about risks")
    assert 0.5 <= also["r"] < also["matched_r"] and "mentions danger ↔ safety_caveat" in recovery["summary"][1]
    features.drop(columns=["mentions danger"]).to_parquet(folder / "features.parquet", index=False)
    concepts["concepts"].pop()
    (folder / "concepts.json").write_text(json.dumps(concepts))
    # a concept whose values no longer follow any planted one matches nothing, whatever its name
    features = pd.read_parquet(folder / "features.parquet")
    features["warns about risks"] = np.random.default_rng(0).permutation(features["warns about risks"].to_numpy())
    features.to_parquet(folder / "features.parquet", index=False)
    assert run("fit", folder).exit_code == 0
    recovery = recovered(folder, data)
    row = next(r for r in recovery["concepts"] if r["planted"] == "safety_caveat")
    assert row["matched"] is None and "10 of 11 planted concepts are matched" in recovery["summary"][0]
    assert "1 of the run's concepts match no planted one" in recovery["summary"][0]


def test_recovery_checks_the_planted_length_and_formatting_effects(tmp_path):
    """The demo's planted measured properties: a control recovers length's weight inside its bootstrap
    interval, the penalised formatting effect is checked the same way, and a run without them says so.

    A 95% interval misses the planted weight in about one draw of 20 (seed 0 at 400 pairs: length
    +3.79 [3.13, 4.89]); this draw of 240 pairs is one where it holds, and the test guards that
    the check, the control and the recovery's wiring stay right."""
    folder, data = make_run(tmp_path, pairs_per_domain=60, inject=False)
    assert run("fit", folder, "--control", "length").exit_code == 0
    assert run("explain", folder, "--bootstrap", 30).exit_code == 0
    recovery = recovered(folder, data)
    rows = {r["property"]: r for r in recovery["confounders"]}
    assert set(rows) == {"length", "emphasis"} and recovery["controls"] == ["length"]
    length, emphasis = rows["length"], rows["emphasis"]
    assert length["control"] and length["in_model"] and not emphasis["control"]
    assert length["planted_weight"] == 3.0 and length["recovered_domains"] == 4
    low, high = length["intervals"]["cooking"]
    assert low <= 3.0 <= high and low > 0  # a real interval around the planted weight, not one that holds anything
    assert emphasis["fitted_shared"] > 0 and emphasis["recovered_domains"] is not None
    assert any(line.startswith("Planted length (weight +3.0 in every domain; fitted as a control")
               and "recovered" in line for line in recovery["summary"])
    # the weights of the concepts an LLM reads are scored apart from the properties
    assert recovery["weights"]["cells"] == 32 and recovery["concepts_planted"] == 11

    # without the measured concepts, nothing can carry the planted length: the recovery says so
    (folder / "measured.parquet").unlink()
    (folder / "measured.json").unlink()
    assert run("fit", folder, "--force").exit_code == 0
    recovery = recovered(folder, data)
    rows = {r["property"]: r for r in recovery["confounders"]}
    assert not rows["length"]["in_model"] and "has no measured concept 'length'" in rows["length"]["sentence"]


def test_html_is_self_contained_and_escapes_the_data(demo_run):
    folder, _ = demo_run
    page = render_html(collect(folder))
    assert "<script>window.__pwned" not in page and "<img src=x" not in page
    # every <script> element closes where it should: the data cannot end its block early
    assert page.count("<script") == page.count("</script>") == 4
    assert not re.search(r"""<(script|link|img)[^>]+(src|href)=["']?https?:""", page)
    assert "&lt;b&gt;bold&lt;/b&gt;" in page  # the concept name in the catalogue, as text
    blob = page.split('id="preflens-data">')[1].split("</script>")[0]
    assert "<" not in blob and ">" not in blob
    assert INJECTED in json.loads(blob)["pairs"][0]["response_b"]


def test_script_json_round_trips_and_never_contains_markup():
    value = {"text": "</script><!-- & \u2028", "n": [1, 2.5, None]}
    text = script_json(value)
    assert not set("<>&") & set(text) and json.loads(text) == value


def test_markdown_summary(demo_run):
    folder, _ = demo_run
    markdown = render_markdown(collect(folder))
    assert markdown.startswith("# preflens report")
    assert "| human |" in markdown and "HMDR in" in markdown and "## Top concepts: human" in markdown
    assert "<b>" not in markdown  # escaped
    for line in markdown.splitlines():
        if line.startswith("|") and ODD_CONCEPT.split()[0] in line:
            assert "\\|" in line


def test_report_command_writes_three_files_and_recovery_from_truth(demo_run, tmp_path):
    folder, data = demo_run
    copy = tmp_path / "run"
    shutil.copytree(folder, copy)
    result = run("report", copy, "--truth", data / "truth.json")
    assert result.exit_code == 0, result.output
    for name in ("report.html", "report.md", "report.json"):
        assert (copy / name).stat().st_size > 0
    assert "Recovery of the planted truth" in (copy / "report.md").read_text()
    saved = json.loads((copy / "report.json").read_text())
    assert saved["recovery"]["concepts_planted"] == 11


def test_report_command_errors_name_the_missing_stage(tmp_path):
    result = run("report", tmp_path)
    assert result.exit_code == 1 and "no pairs.parquet yet" in result.output and "Traceback" not in result.output
    folder, _ = make_run(tmp_path / "x", inject=False)
    shutil.rmtree(folder / "models")
    result = run("report", folder)
    assert result.exit_code == 1 and f"preflens fit {folder}" in result.output


def test_write_report_returns_the_paths(demo_run, tmp_path):
    folder, _ = demo_run
    copy = tmp_path / "run"
    shutil.copytree(folder, copy)
    files = write_report(copy)
    assert files.html.name == "report.html" and files.markdown.exists() and files.data.exists()


def test_effect_plots_read_in_probabilities_that_stay_on_their_scale():
    from preflens.explain import preferred
    from preflens.report import effect_figure, heatmap_figure

    rows = [{"scope": "cooking", "concept": "Lists", "shared_effect": 400.0, "domain_effect": 226.0,
             "effect": 626.0, "p_preferred": float(preferred(626.0)), "odds_ratio": 2.7e5},
            {"scope": "cooking", "concept": "Hedging", "shared_effect": -20.0, "domain_effect": 0.0,
             "effect": -20.0, "p_preferred": float(preferred(-20.0)), "odds_ratio": 0.67}]
    figure = effect_figure(rows, "cooking", 5)
    ticks = figure["layout"]["xaxis"]["ticktext"]
    assert "50%" in ticks and all(0 < float(t.rstrip("%")) < 100 for t in ticks)
    bars = figure["data"][0]
    assert bars["x"] == [-20.0 / 50, 400.0 / 50]  # logits, so the shared and domain parts add up
    assert bars["customdata"][1][0] == "100%" and bars["customdata"][0][0] == "40%"
    heat = heatmap_figure(rows, ["Lists", "Hedging"], ["cooking"])["data"][0]
    assert all(0 <= v <= 100 for line in heat["z"] for v in line) and heat["zmin"] + heat["zmax"] == 100


def test_an_all_zero_model_says_so_in_its_top_concepts():
    from preflens.report import effect_figure

    figure = effect_figure([{"scope": "shared", "concept": "A", "shared_effect": 0.0, "domain_effect": 0.0,
                             "effect": 0.0, "p_preferred": 0.5, "odds_ratio": 1.0}], "shared", 5)
    assert figure["data"][0]["y"] == []  # no zero-width bar drawn as a top concept
    assert figure["layout"]["annotations"][0]["text"] == "no concept has a non-zero weight here"


def test_the_catalogue_shows_each_mechanisms_shared_preference(make_oracle_run):
    import re

    from click.testing import CliRunner

    from preflens.cli import cli

    folder, _ = make_oracle_run(20)
    for args in (["fit", str(folder)], ["explain", str(folder)], ["report", str(folder)]):
        assert CliRunner().invoke(cli, args).exit_code == 0
    page = (folder / "report.html").read_text()
    table = page[page.index('<table id="catalogue-table">'):]
    table = table[:table.index("</table>")]
    assert "preferred by human" in table
    effects = json.loads((folder / "report.json").read_text())["effects"]["human"]
    shared = next(r for r in effects if r["scope"] == "shared" and abs(r["effect"]) > 1e-9)
    row = table[table.index(f"<b>{shared['concept']}</b>"):]
    row = row[:row.index("</tr>")]
    assert re.findall(r"(\d+)%</td>", row)[-1] == f"{100 * shared['p_preferred']:.0f}"


def test_uncertain_labels_need_mostly_predicted_values_that_follow_the_llm_poorly():
    from preflens.distill import UNCERTAIN_BELOW, uncertain_labels

    predicted = {"llm": 36, "predicted": 204, "fallback": None}
    assert uncertain_labels({**predicted, "cv_correlation": 0.52})
    assert uncertain_labels({**predicted, "cv_correlation": None})  # agreement unknown
    assert not uncertain_labels({**predicted, "cv_correlation": UNCERTAIN_BELOW})
    assert not uncertain_labels({**predicted, "cv_correlation": 0.52, "fallback": "asked everywhere"})
    assert not uncertain_labels({"llm": 150, "predicted": 90, "fallback": None, "cv_correlation": 0.3})  # mostly asked


def test_the_report_marks_concepts_whose_distilled_labels_are_uncertain(demo_run, tmp_path):
    folder, _ = demo_run
    copy = tmp_path / "run"
    shutil.copytree(folder, copy)
    effects = collect(copy)["effects"]["human"]
    top = [r["concept"] for r in effects if r["scope"] == "shared" and abs(r["effect"] or 0) > 1e-9][:2]
    assert len(top) == 2
    weak, good = top
    distillation = [{"concept": weak, "responses": 96, "llm": 20, "predicted": 76, "cv_correlation": 0.41,
                     "second_sample": 0, "fallback": None},
                    {"concept": good, "responses": 96, "llm": 20, "predicted": 76, "cv_correlation": 0.91,
                     "second_sample": 0, "fallback": None}]
    (copy / "representation.json").write_text(json.dumps({"labeler": "distilled", "concepts": [],
                                                           "distillation": distillation}))
    data = collect(copy)
    labels = {c["name"]: c["labels"] for c in data["concepts"] if c.get("labels")}
    assert labels[weak] == {"asked": 20, "predicted": 76, "agreement": 0.41, "fallback": False, "uncertain": True}
    assert labels[good]["uncertain"] is False and len(labels) == 2
    markdown = render_markdown(data)
    shared_row = next(line for line in markdown.splitlines() if line.startswith("| shared |"))
    assert f"{weak} † " in shared_row.replace("\\|", "|") and f"{good} †" not in shared_row
    assert f"{weak} 0.41" in markdown.replace("\\|", "|") and "--labeler llm" in markdown
    page = render_html(data)
    assert 'id="uncertain-labels"' in page and "76 predicted, r 0.41" in page
    from preflens.report import figures

    names = [y for key, figure in figures(data).items() if key.startswith("fig-effects-0-0")
             for y in figure["data"][0]["y"]]
    assert any(name.endswith(" †") for name in names) and not any(name.startswith(f"{good} †") for name in names)
    # without distillation (every cell from the LLM, or given features) nothing is marked
    (copy / "representation.json").unlink()
    plain = collect(copy)
    assert "†" not in render_markdown(plain) and 'id="uncertain-labels"' not in render_html(plain)

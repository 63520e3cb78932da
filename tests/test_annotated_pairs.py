"""AnnotatedPairs (ICAI, Feedback Forensics): import, export, and both round trips.

``data/icai_annotated_pairs.json`` was written by ICAI's own writer (inverse-cai 0.4.8,
``create_annotated_pairs``); ``data/make_icai_annotated_pairs.py`` says how to make it again.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from preflens.annotated_pairs import read_annotated_pairs
from preflens.cli import cli
from preflens.errors import DataError
from preflens.model import HMDR

ICAI_FILE = Path(__file__).parent / "data" / "icai_annotated_pairs.json"
SIDE = {"a": "a", "b": "b", "text_a": "a", "text_b": "b"}


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def votes(document):
    """(annotator description or name, comparison id) -> the preference, with text_a/text_b read as a/b."""
    annotators = document["annotators"]
    out = {}
    for comparison in document["comparisons"]:
        for annotator_id, annotation in comparison["annotations"].items():
            info = annotators[annotator_id]
            if info["type"] == "non_preference_principle":
                continue
            key = info["description"] if info["type"] == "principle" else info.get("name", annotator_id)
            pref = annotation.get("pref")
            out[(key, comparison["id"])] = (SIDE.get(pref, pref), annotation.get("no_pref_reason") if pref is None
                                            else None)
    return out


def test_an_icai_file_reads_as_pairs_mechanisms_and_principle_votes():
    document = json.loads(ICAI_FILE.read_text())
    imported = read_annotated_pairs(ICAI_FILE)
    assert len(imported.records) == len(document["comparisons"]) == 24
    assert [r["id"] for r in imported.records] == [c["id"] for c in document["comparisons"]]
    assert {r["domain"] for r in imported.records} == {"cooking", "travel", "software", "legal"}
    # the dataset's own preference is the default mechanism, the detected column a second one
    assert list(imported.mechanisms) == ["human", "second_rater"]
    assert imported.concepts.names == ["gives concrete numbers, amounts or durations",
                                       "asks the user a clarifying question",
                                       "pads the answer with long, repetitive filler"]
    assert any("non_preference_principle" in note for note in imported.notes)
    # every vote becomes a feature: a -> +1, b -> -1, not applicable -> 0, invalid -> missing
    principle = imported.concepts.names[0]
    annotator = imported.annotator_of[principle]
    for record, value in zip(imported.records, imported.features[principle], strict=True):
        annotation = next(c for c in document["comparisons"] if c["id"] == record["id"])["annotations"][annotator]
        expected = {"a": 1.0, "b": -1.0}.get(annotation["pref"], math.nan if annotation.get("no_pref_reason")
                                              == "invalid" else 0.0)
        assert value == expected or (math.isnan(value) and math.isnan(expected))
    assert imported.features[principle].isna().sum() == 1


def test_icai_to_preflens_to_icai_keeps_every_pair_label_and_vote(tmp_path):
    result = run("import-ap", ICAI_FILE, "--out", tmp_path / "run")
    assert result.exit_code == 0, result.output
    assert "24 pairs, 4 domain(s), 2 mechanism(s) (human, second_rater), 3 principle(s)" in result.output
    assert run("export-ap", tmp_path / "run", tmp_path / "back.json").exit_code == 0
    original, back = json.loads(ICAI_FILE.read_text()), json.loads((tmp_path / "back.json").read_text())
    assert back["metadata"]["version"] == "2.0"
    assert [(c["id"], c["prompt"], c["response_a"]["text"], c["response_b"]["text"], c["metadata"]["domain"])
            for c in back["comparisons"]] == [
        (c["id"], c["prompt"], c["response_a"]["text"], c["response_b"]["text"], c["metadata"]["domain"])
        for c in original["comparisons"]]
    # the default annotator keeps its votes under preflens's name for it; every other one keeps its own
    renamed = {("human" if k == "preferred_text" else k, pair): v for (k, pair), v in votes(original).items()}
    assert votes(back) == renamed and len(renamed) == 24 * 5
    default = back["annotators"][back["metadata"]["default_annotator"]]
    assert default["name"] == "human" and default["type"] == "human"


def test_a_fit_runs_on_imported_votes_with_no_llm(tmp_path):
    assert run("import-ap", ICAI_FILE, "--out", tmp_path / "run").exit_code == 0
    fitted = run("fit", tmp_path / "run", "--mechanism", "human")
    assert fitted.exit_code == 0, fitted.output
    model = HMDR.from_json(tmp_path / "run" / "models" / "human.json")
    assert list(model.feature_names_in_) == ["gives concrete numbers, amounts or durations",
                                             "asks the user a clarifying question",
                                             "pads the answer with long, repetitive filler"]


def test_a_run_exported_and_imported_again_fits_the_same_model(make_oracle_run, tmp_path):
    folder, _ = make_oracle_run(20)  # planted concepts' true features, plus measured length and emphasis
    assert run("fit", folder).exit_code == 0
    assert run("export-ap", folder, tmp_path / "run.json").exit_code == 0
    document = json.loads((tmp_path / "run.json").read_text())
    score = next(a for a in document["annotators"].values() if a.get("name") == "length")
    assert score["type"] == "principle" and score["preflens"]["provenance"] == ["measured"]
    assert run("import-ap", tmp_path / "run.json", "--out", tmp_path / "again").exit_code == 0
    assert run("fit", tmp_path / "again").exit_code == 0
    first = HMDR.from_json(folder / "models" / "human.json")
    second = HMDR.from_json(tmp_path / "again" / "models" / "human.json")
    assert list(first.feature_names_in_) == list(second.feature_names_in_)
    assert np.allclose(first.shared_coef_, second.shared_coef_) and np.allclose(first.domain_coef_,
                                                                                 second.domain_coef_)
    assert np.abs(first.shared_coef_).sum() > 0  # a real fit, not two empty ones
    again = pd.read_parquet(tmp_path / "again" / "pairs.parquet")
    assert len(again) == 80 and set(again["domain"]) == {"cooking", "travel", "software", "legal"}


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "line 1: not valid JSON"),
    ('{"annotators": {}}', "expected an object with a 'comparisons' list"),
    ('{"metadata": {"version": "3.0"}, "comparisons": []}', "version 3.0 is not one preflens reads"),
    ('{"comparisons": [{"id": "x", "text_a": "", "text_b": "b"}]}', "no comparison with two response texts"),
])
def test_a_bad_file_gets_one_clear_line(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_annotated_pairs(path)
    result = run("import-ap", path, "--out", tmp_path / "run")
    assert result.exit_code != 0 and message.split(":")[-1].strip() in result.output
    assert "Traceback" not in result.output

"""Concept sets written by hand (YAML or JSON) and their checks."""

from __future__ import annotations

import pytest

from preflens.concepts import ConceptSet
from preflens.errors import DataError


def test_hand_written_yaml(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(
        "concepts:\n"
        "  - name: Numbered steps\n"
        "    definition: A high score indicates numbered steps; a low score indicates prose.\n"
        "  - name: Code\n"
        "    definition: A high score indicates a code block.\n"
        "    domains: [software]\n")
    concepts = ConceptSet.load(path)
    assert concepts.names == ["Numbered steps", "Code"]
    assert concepts.shared_mask().tolist() == [True, False]
    assert concepts.membership(["cooking", "software"]).tolist() == [[True, False], [True, True]]


def test_bad_concept_files_are_clear(tmp_path):
    duplicate = tmp_path / "d.json"
    duplicate.write_text('[{"name": "A"}, {"name": "A"}]')
    with pytest.raises(DataError, match="'A' appears twice"):
        ConceptSet.load(duplicate)
    nameless = tmp_path / "n.json"
    nameless.write_text('{"concepts": [{"definition": "x"}]}')
    with pytest.raises(DataError, match="concept 1: a concept needs a 'name'"):
        ConceptSet.load(nameless)
    with pytest.raises(DataError, match="no such concepts file"):
        ConceptSet.load(tmp_path / "missing.json")


def test_concept_files_are_checked_before_any_call(tmp_path):
    def load(text, name="c.yaml"):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return ConceptSet.load(path)

    with pytest.raises(DataError, match=r"c.yaml line 3: unknown key 'description' in a concept; did you mean 'definition'"):
        load("concepts:\n  - name: Clarity\n    description: clear\n")
    with pytest.raises(DataError, match="the concept list is empty"):
        load("concepts: []\n")
    with pytest.raises(DataError, match="'id' is reserved"):
        load("- name: id\n  definition: x\n")
    with pytest.raises(DataError, match="line 2: 'definition' must be str; got list"):
        load("- name: A\n  definition: [a, b]\n")
    with pytest.raises(DataError, match="anchors and aliases"):
        load('a: &a ["lol","lol"]\nb: &b [*a,*a,*a]\nconcepts: [{name: X, definition: *b}]\n')
    with pytest.raises(DataError, match="control characters"):
        load('[{"name": "A\\u001b]0;x\\u0007", "definition": "x"}]', "c.json")
    with pytest.raises(DataError, match="not valid YAML"):
        load("- name: [unclosed\n")
    concepts = load("- name: Tips\n  definition: gives tips\n  domains: [gardening, cooking]\n")
    concepts.check_domains(["gardening", "cooking"])
    with pytest.raises(DataError, match=r"c.yaml line 1: concept 'Tips' lists the domain\(s\) 'cooking', which the data"):
        concepts.check_domains(["gardening", "travel"], source="c.yaml")


def test_phrases_and_examples_round_trip_and_are_checked(tmp_path):
    path = tmp_path / "marked.yaml"
    path.write_text("- name: Cost estimate\n"
                    "  definition: The response estimates what things will cost.\n"
                    "  phrases: [costs about, per night]\n"
                    "  examples: ['Hostels cost about 25 GBP a night.']\n"
                    "- name: Plain\n")
    concepts = ConceptSet.load(path)
    cost, plain = concepts.concepts
    assert cost.phrases == ["costs about", "per night"] and cost.examples == ["Hostels cost about 25 GBP a night."]
    assert plain.phrases == [] and plain.examples == []
    saved = tmp_path / "saved.json"
    concepts.save(saved)
    assert ConceptSet.load(saved).concepts == concepts.concepts
    bad = tmp_path / "bad.yaml"
    bad.write_text("- name: A\n  phrases: [ok, '']\n")
    with pytest.raises(DataError, match="line 2: 'phrases' of 'A' must be a list of non-empty strings"):
        ConceptSet.load(bad)
    bad.write_text("- name: A\n  examples: a sentence\n")
    with pytest.raises(DataError, match="'examples' must be list"):
        ConceptSet.load(bad)

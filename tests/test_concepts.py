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
    with pytest.raises(DataError, match="concept 1 needs a 'name'"):
        ConceptSet.load(nameless)
    with pytest.raises(DataError, match="no such concepts file"):
        ConceptSet.load(tmp_path / "missing.json")

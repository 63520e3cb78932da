"""The embedding baseline's encoder: all-MiniLM-L6-v2 from its package, offline."""

from __future__ import annotations

import numpy as np
import pytest

from preflens.embeddings import embedding_differences, embeddings_available

pytestmark = pytest.mark.skipif(not embeddings_available(), reason="needs pip install 'preflens[embed]'")


def test_embeddings_are_real_and_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    diff = embedding_differences(
        ["Preheat the oven to 200C and roast for 45 minutes.", "Use git reset --soft HEAD~1."],
        ["Roast the potatoes in a hot oven until golden.", "Preheat the oven to 200C."])
    assert diff.shape == (2, 384)
    # a paraphrase pair differs less than an unrelated pair
    assert np.linalg.norm(diff[0]) < np.linalg.norm(diff[1])

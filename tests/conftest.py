from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test gets its own preflens home and cache; no outside LLM settings leak in."""
    monkeypatch.setenv("PREFLENS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # tests use local models and data only
    for name in ("PREFLENS_CACHE", "PREFLENS_LLM", "OPENAI_BASE_URL", "OPENAI_API_KEY", "PREFLENS_DEBUG"):
        monkeypatch.delenv(name, raising=False)

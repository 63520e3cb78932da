from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Every test gets its own preflens home and cache; no outside LLM settings leak in."""
    monkeypatch.setenv("PREFLENS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # tests use local models and data only
    for name in ("PREFLENS_CACHE", "PREFLENS_LLM", "OPENAI_BASE_URL", "OPENAI_API_KEY", "PREFLENS_DEBUG"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def make_oracle_run(tmp_path):
    """A factory of run folders on demo data with its true features and concepts (fitting needs no LLM).

    ``make_oracle_run(pairs_per_domain, relabel=None, measured=True)`` returns (run folder, data
    folder); ``relabel`` may rewrite each record of the demo pairs before they are ingested. With
    ``measured`` the planted measured properties (length, emphasis) are measured too, so the run
    has every feature the labels were drawn from.
    """
    import json
    import shutil

    from click.testing import CliRunner

    from preflens.cli import cli

    def make(pairs_per_domain: int, relabel=None, measured: bool = True):
        data, folder = tmp_path / "data", tmp_path / "run"
        assert CliRunner().invoke(cli, ["demo-data", "--out", str(data), "--pairs-per-domain", str(pairs_per_domain),
                                        "--oracle"]).exit_code == 0
        if relabel is not None:
            records = [json.loads(line) for line in (data / "pairs.jsonl").read_text().splitlines()]
            (data / "pairs.jsonl").write_text("\n".join(json.dumps(relabel(r)) for r in records) + "\n")
        assert CliRunner().invoke(cli, ["validate", str(data / "pairs.jsonl"), "--out", str(folder)]).exit_code == 0
        shutil.copy(data / "concepts.json", folder / "concepts.json")
        shutil.copy(data / "oracle_features.parquet", folder / "features.parquet")
        if measured:
            result = CliRunner().invoke(cli, ["measure", str(folder), "--measured", "length,emphasis"])
            assert result.exit_code == 0, result.output
        return folder, data

    return make

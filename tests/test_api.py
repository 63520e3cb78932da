"""The public API: what docs/api.md documents is exactly ``preflens.__all__``, and every name resolves."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import preflens

API_DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def documented_names() -> set[str]:
    """The names in the first column of the tables in docs/api.md."""
    names: set[str] = set()
    for line in API_DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("| `"):
            names |= set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", line.split("|")[1]))
    return names


def test_all_matches_the_documented_api():
    documented = documented_names()
    public = set(preflens.__all__)
    assert public == documented, (sorted(public - documented), sorted(documented - public))
    for name in public:
        assert getattr(preflens, name) is not None


def test_import_stays_light():
    """The modelling stack loads on first use, not on import (the command line starts faster)."""
    code = "import sys, preflens; print('sklearn' in sys.modules, 'preflens.model' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == ["False", "False"]
    assert preflens.HMDR.__module__ == "preflens.model"


def test_model_does_not_import_explain():
    """explain depends on model, never the other way round (the import cycle is gone)."""
    code = "import sys, preflens.model; print('preflens.explain' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"

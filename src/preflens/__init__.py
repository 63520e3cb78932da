"""preflens: explain why a preference mechanism prefers one response over another.

The library's public names (documented in docs/api.md); see the README for the command line.
The modelling and pipeline names load on first use, so ``import preflens`` stays light.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .data import PairDataset, Problem, ValidationReport, load_pairs
from .demo import demo_data_path, make_demo_pairs, write_demo_data
from .errors import (
    ConfigError,
    DataError,
    DataWarning,
    LLMAuthError,
    LLMError,
    LLMUnavailableError,
    MissingDependencyError,
    ModelFileError,
    PreflensError,
    PreflensWarning,
)
from .llm import LLMCache, LLMClient, LLMRequest, LLMResponse, get_llm
from .runs import RunFolder

if TYPE_CHECKING:
    from .concepts import Concept, ConceptSet
    from .discover import DiscoverySettings
    from .discover import discover as discover_concepts
    from .discover_evidence import EvidenceDiscoverySettings, discover_from_evidence
    from .evidence import EvidenceSettings, mine_evidence
    from .explain import GlobalExplanation, LocalExplanation, explain_global, explain_local
    from .fit import FitSettings
    from .judge import JudgeSettings
    from .judge import judge as judge_pairs
    from .model import HMDR, HMDRSearch
    from .pipeline import Run, RunContext, Runner, Stage
    from .report import write_report
    from .represent import RepresentSettings
    from .represent import represent as represent_pairs

logging.getLogger(__name__).addHandler(logging.NullHandler())

_LAZY = {
    "Concept": ("concepts", "Concept"),
    "ConceptSet": ("concepts", "ConceptSet"),
    "DiscoverySettings": ("discover", "DiscoverySettings"),
    "discover_concepts": ("discover", "discover"),
    "EvidenceDiscoverySettings": ("discover_evidence", "EvidenceDiscoverySettings"),
    "discover_from_evidence": ("discover_evidence", "discover_from_evidence"),
    "EvidenceSettings": ("evidence", "EvidenceSettings"),
    "mine_evidence": ("evidence", "mine_evidence"),
    "RepresentSettings": ("represent", "RepresentSettings"),
    "represent_pairs": ("represent", "represent"),
    "JudgeSettings": ("judge", "JudgeSettings"),
    "judge_pairs": ("judge", "judge"),
    "FitSettings": ("fit", "FitSettings"),
    "HMDR": ("model", "HMDR"),
    "HMDRSearch": ("model", "HMDRSearch"),
    "GlobalExplanation": ("explain", "GlobalExplanation"),
    "LocalExplanation": ("explain", "LocalExplanation"),
    "explain_global": ("explain", "explain_global"),
    "explain_local": ("explain", "explain_local"),
    "write_report": ("report", "write_report"),
    "Run": ("pipeline", "Run"),
    "RunContext": ("pipeline", "RunContext"),
    "Runner": ("pipeline", "Runner"),
    "Stage": ("pipeline", "Stage"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'preflens' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "HMDR",
    "Concept",
    "ConceptSet",
    "ConfigError",
    "DataError",
    "DataWarning",
    "DiscoverySettings",
    "EvidenceDiscoverySettings",
    "EvidenceSettings",
    "FitSettings",
    "GlobalExplanation",
    "HMDRSearch",
    "JudgeSettings",
    "LLMAuthError",
    "LLMCache",
    "LLMClient",
    "LLMError",
    "LLMRequest",
    "LLMResponse",
    "LLMUnavailableError",
    "LocalExplanation",
    "MissingDependencyError",
    "ModelFileError",
    "PairDataset",
    "PreflensError",
    "PreflensWarning",
    "Problem",
    "RepresentSettings",
    "Run",
    "RunContext",
    "RunFolder",
    "Runner",
    "Stage",
    "ValidationReport",
    "__version__",
    "demo_data_path",
    "discover_concepts",
    "discover_from_evidence",
    "explain_global",
    "explain_local",
    "get_llm",
    "judge_pairs",
    "load_pairs",
    "make_demo_pairs",
    "mine_evidence",
    "represent_pairs",
    "write_demo_data",
    "write_report",
]

"""preflens: explain why a preference mechanism prefers one response over another.

The library's public names; see the README for the command line.
"""

import logging

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

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "ConfigError",
    "DataError",
    "DataWarning",
    "LLMAuthError",
    "LLMCache",
    "LLMClient",
    "LLMError",
    "LLMRequest",
    "LLMResponse",
    "LLMUnavailableError",
    "MissingDependencyError",
    "ModelFileError",
    "PairDataset",
    "PreflensError",
    "PreflensWarning",
    "Problem",
    "RunFolder",
    "ValidationReport",
    "__version__",
    "demo_data_path",
    "get_llm",
    "load_pairs",
    "make_demo_pairs",
    "write_demo_data",
]

"""Errors and warnings raised by preflens.

The hierarchy::

    PreflensError
    ├── ConfigError                 bad option or setting
    ├── DataError                   a data file that cannot be read as preference pairs
    ├── MissingDependencyError      an optional extra is not installed
    ├── ModelFileError              the embedded model cannot be assembled or verified
    └── LLMError                    an LLM backend failed in a way retries cannot fix
        ├── LLMAuthError            no key, or the key was refused
        └── LLMUnavailableError     too many calls in a row failed after their retries

    PreflensWarning (UserWarning)
    └── DataWarning                 a problem in the data that was handled (row skipped, default used)

Every message says what was expected, what was found, and how to fix it. The CLI prints
``PreflensError`` messages on one line and exits with status 1.
"""

from __future__ import annotations


class PreflensError(Exception):
    """Base class of every error preflens raises on purpose."""


class ConfigError(PreflensError, ValueError):
    """An option or setting is invalid."""


class DataError(PreflensError, ValueError):
    """A data file cannot be read as preference pairs."""


class MissingDependencyError(PreflensError, ImportError):
    """An optional dependency is missing; the message gives the pip command."""


class ModelFileError(PreflensError):
    """The embedded model file cannot be assembled or does not match its checksum."""


class LLMError(PreflensError):
    """An LLM backend failed in a way that retrying will not fix."""


class LLMAuthError(LLMError):
    """The API key is missing or was refused."""


class LLMUnavailableError(LLMError):
    """Many consecutive calls failed even after retries: the backend is down or overloaded."""


class PreflensWarning(UserWarning):
    """Base class of preflens warnings."""


class DataWarning(PreflensWarning):
    """A problem in the input data was handled (a row skipped, a default applied)."""


def missing_dependency(package: str, extra: str) -> MissingDependencyError:
    """Build the error for a missing optional dependency, with the install line."""
    return MissingDependencyError(
        f"this feature needs the '{package}' package, which is not installed; "
        f"install it with: pip install 'preflens[{extra}]'"
    )

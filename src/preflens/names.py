"""The one place where names that come from users and data are checked.

Three kinds of names reach files, tables and the terminal:

- a **mechanism** name (``human``, ``--chosen-label``, ``--label-col NAME=COL``, ``judge NAME``)
  becomes a file name (``models/NAME.json``), so it must be a plain file name;
- a **concept** name becomes a column of ``features.parquet``, so it must not be one of the
  columns preflens itself writes there;
- a **domain** name is data; it is kept as written, except for control characters, which would
  reach the terminal as escape codes (a domain read from a file is cleaned and the row reported).

Every name is non-empty, at most :data:`MAX_NAME_CHARS` characters and free of control characters.
"""

from __future__ import annotations

import re
import unicodedata

from .errors import ConfigError

MAX_NAME_CHARS = 120
RESERVED_CONCEPT_NAMES = frozenset({"id", "domain", "prompt", "response_a", "response_b"})
"""Columns preflens writes beside the concept columns."""

_FILE_SAFE = re.compile(r"^[\w][\w .+@=,()-]*$")


def has_control(text: str) -> bool:
    """True when the text holds a control or format character (ESC, BEL, NUL, bidi overrides, ...)."""
    return any(unicodedata.category(ch) in ("Cc", "Cf") for ch in text)


def strip_control(text: str) -> str:
    """The text without control and format characters (tabs and newlines become spaces)."""
    return "".join(" " if ch in "\t\n\r" else ch for ch in text
                   if ch in "\t\n\r" or unicodedata.category(ch) not in ("Cc", "Cf")).strip()


def _common(kind: str, name: object, where: str) -> str:
    prefix = f"{where}: " if where else ""
    if not isinstance(name, str):
        raise ConfigError(f"{prefix}a {kind} name must be text; got {type(name).__name__} {str(name)[:40]!r}")
    stripped = name.strip()
    if not stripped:
        raise ConfigError(f"{prefix}a {kind} name must not be empty")
    if len(stripped) > MAX_NAME_CHARS:
        raise ConfigError(f"{prefix}the {kind} name {stripped[:40]!r}... is {len(stripped)} characters; "
                          f"use at most {MAX_NAME_CHARS}")
    if has_control(stripped):
        raise ConfigError(f"{prefix}the {kind} name {stripped!r} holds control characters; use plain text")
    return stripped


def check_mechanism(name: object, where: str = "") -> str:
    """A mechanism name that is safe as a file name: letters, digits, ``_ - . + @ = , ( )`` and spaces."""
    stripped = _common("mechanism", name, where)
    if not _FILE_SAFE.match(stripped) or stripped in (".", ".."):
        prefix = f"{where}: " if where else ""
        raise ConfigError(
            f"{prefix}the mechanism name {stripped!r} cannot be used: it becomes a file name, so it must start "
            "with a letter or digit and hold only letters, digits, spaces and _ - . + @ = , ( ) "
            "(no '/', '\\', ':'); for example 'gpt4_judge'")
    return stripped


def check_concept(name: object, where: str = "") -> str:
    """A concept name: plain text, not a reserved column name, no ``:`` (label columns use it)."""
    stripped = _common("concept", name, where)
    prefix = f"{where}: " if where else ""
    if stripped.lower() in RESERVED_CONCEPT_NAMES or stripped.startswith("label:"):
        raise ConfigError(f"{prefix}the concept name {stripped!r} is reserved (preflens uses "
                          f"{', '.join(sorted(RESERVED_CONCEPT_NAMES))} and label:*); rename the concept")
    return stripped


def clean_domain(value: str) -> tuple[str, bool]:
    """A domain name without control characters, cut to :data:`MAX_NAME_CHARS`; and whether it changed."""
    cleaned = strip_control(value)[:MAX_NAME_CHARS].strip()
    return cleaned, cleaned != value.strip()

"""Turn an ``--llm`` spec into a provider.

Specs are ``provider/model``: ``openai/gpt-4o-mini``, ``openai/Qwen/Qwen2.5-7B-Instruct`` (the
model part may contain slashes), ``local`` (the embedded model) or ``local/PATH.gguf``.
Providers register under the entry-point group ``preflens.providers``; the built-in ones use the
same group, so a plugin package adds a backend the same way.
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points
from typing import Any

from ..errors import ConfigError
from .base import Provider

ENTRY_POINT_GROUP = "preflens.providers"
DEFAULT_LLM = "local"
_BUILTIN = {
    "openai": "preflens.llm.openai_provider:OpenAIProvider",
    "local": "preflens.llm.local:LocalProvider",
}


def available_providers() -> dict[str, str]:
    """Provider names and the ``module:Class`` each loads."""
    found = dict(_BUILTIN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def default_llm_spec() -> str:
    """``$PREFLENS_LLM`` if set, else the embedded local model."""
    return os.environ.get("PREFLENS_LLM") or DEFAULT_LLM


def get_llm(spec: str | None = None, **options: Any) -> Provider:
    """A provider for a spec such as ``openai/gpt-4o-mini`` or ``local``.

    ``options`` go to the provider's constructor (``base_url``, ``api_key_env``, ``n_ctx``, ...);
    ``None`` values are dropped so that a provider's own defaults apply.
    """
    spec = spec or default_llm_spec()
    name, _, model = spec.partition("/")
    providers = available_providers()
    if name not in providers:
        raise ConfigError(
            f"unknown LLM provider '{name}' in --llm {spec}; use one of: "
            + ", ".join(f"{p}/MODEL" if p != "local" else "local" for p in sorted(providers))
        )
    module_name, _, class_name = providers[name].partition(":")
    import importlib
    import inspect

    cls = getattr(importlib.import_module(module_name), class_name)
    given = {k: v for k, v in options.items() if v is not None}
    accepted = inspect.signature(cls).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        unknown = sorted(set(given) - set(accepted))
        if unknown:
            options_text = ", ".join("--" + u.replace("_", "-") for u in unknown)
            raise ConfigError(f"{options_text} does not apply to the '{name}' provider (--llm {spec})")
    return cls(model, **given)  # type: ignore[no-any-return]

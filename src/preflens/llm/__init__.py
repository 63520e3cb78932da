"""The LLM layer: providers, the cached client, and the embedded model."""

from .base import (
    LLMReply,
    LLMRequest,
    LLMResponse,
    Message,
    Provider,
    RequestError,
    TransientError,
    cache_key,
)
from .cache import LLMCache, default_cache_path, preflens_home
from .client import BudgetExceededError, LLMClient, Price, UsageStats, structured_request
from .registry import available_providers, default_llm_spec, get_llm

__all__ = [
    "BudgetExceededError",
    "LLMCache",
    "LLMClient",
    "LLMReply",
    "LLMRequest",
    "LLMResponse",
    "Message",
    "Price",
    "Provider",
    "RequestError",
    "TransientError",
    "UsageStats",
    "available_providers",
    "cache_key",
    "default_cache_path",
    "default_llm_spec",
    "get_llm",
    "preflens_home",
    "structured_request",
]

"""Model providers: the OpenAI-compatible HTTP client and the offline one."""

from .base import ChatRequest, ChatResult, Provider, ProviderError, estimate_tokens
from .offline import OfflineProvider
from .openai import OpenAICompatibleProvider

KINDS = ("openai", "offline")

__all__ = [
    "KINDS",
    "ChatRequest",
    "ChatResult",
    "OfflineProvider",
    "OpenAICompatibleProvider",
    "Provider",
    "ProviderError",
    "estimate_tokens",
]

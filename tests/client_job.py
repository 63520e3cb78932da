"""A job of N LLM requests through the real client and cache, run as its own process by the tests."""

from __future__ import annotations

import json
import sys

from preflens.llm import LLMCache, LLMClient, LLMRequest, Message
from preflens.llm.openai_provider import OpenAIProvider


def main() -> None:
    base_url, cache_path, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    provider = OpenAIProvider("fake-model", base_url=base_url)
    client = LLMClient(provider, cache=LLMCache(cache_path), max_concurrency=2,
                       initial_backoff=0.01, max_backoff=0.05)
    requests = [LLMRequest(messages=(Message(role="user", content=f"item {i}"),), stage="job")
                for i in range(count)]
    responses = client.map(requests)
    print(json.dumps({"ok": sum(r.ok for r in responses), **client.stats.to_dict()}))


if __name__ == "__main__":
    main()

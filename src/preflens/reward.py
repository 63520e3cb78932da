"""Reward models as a mechanism: score each response, the higher score wins.

Any Hugging Face sequence-classification reward model with one output (Skywork-Reward, QRM, ...)
loads from a local folder, or by hub name where a network exists. The query and response are
formatted with the tokenizer's chat template when it has one, else as ``query\\n\\nresponse``.
The label is the response with the higher reward; with ``margin`` > 0, a smaller difference is a
tie. The score difference is kept. Needs ``transformers`` and ``torch`` (the ``embed`` extra).

Using a real one, on a machine with a network or with the model saved locally::

    preflens judge RUN --reward-model Skywork/Skywork-Reward-Llama-3.1-8B-v0.2 --as skywork --device cuda
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import ConfigError, missing_dependency


@dataclass
class RewardScores:
    """Per pair: the reward of each response, their difference, and the label."""

    frame: pd.DataFrame  # id, reward_a, reward_b, difference, label


def _load(model: str, device: str) -> tuple[Any, Any]:
    try:
        import torch  # noqa: F401
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
    except ImportError:
        raise missing_dependency("transformers and torch", "embed") from None
    local = Path(model).expanduser()
    if not local.exists() and (model.startswith((".", "/", "~")) or model.count("/") > 1):
        raise ConfigError(f"--reward-model {model}: no such folder")
    try:
        tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=local.exists())
        network = AutoModelForSequenceClassification.from_pretrained(model, local_files_only=local.exists())
    except (OSError, ValueError, RuntimeError, pickle.UnpicklingError) as exc:  # missing, broken or refused files
        reason = " ".join(str(exc).split())[:200]
        if isinstance(exc, pickle.UnpicklingError):
            reason = ("its weights are a pickle that torch refused to load (only plain tensors are allowed, "
                      "since a pickle can run code); save the model with safetensors")
        raise ConfigError(f"could not load the reward model '{model}': {reason}. Give a local folder saved with "
                          "save_pretrained, or a hub name on a machine with a network") from None
    if getattr(network.config, "num_labels", 1) != 1:
        raise ConfigError(f"'{model}' has {network.config.num_labels} outputs; a reward model has one")
    return tokenizer, network.to(device).eval()


def _texts(tokenizer: Any, prompts: Sequence[str], responses: Sequence[str]) -> list[str]:
    if getattr(tokenizer, "chat_template", None):
        return [tokenizer.apply_chat_template([{"role": "user", "content": p}, {"role": "assistant", "content": r}],
                                              tokenize=False) for p, r in zip(prompts, responses, strict=True)]
    return [f"{p}\n\n{r}" for p, r in zip(prompts, responses, strict=True)]


def score_responses(model: str, prompts: Sequence[str], responses: Sequence[str], *, batch_size: int = 8,
                    device: str = "cpu", max_length: int = 2048,
                    progress: Callable[[int], None] | None = None) -> np.ndarray:
    """The reward of each (prompt, response)."""
    import torch

    tokenizer, network = _load(model, device)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    texts = _texts(tokenizer, prompts, responses)
    scores = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True, truncation=True,
                              max_length=max_length).to(device)
            scores.append(network(**batch).logits[:, 0].float().cpu().numpy())
            if progress is not None:
                progress(min(start + batch_size, len(texts)))
    return np.concatenate(scores) if scores else np.zeros(0)


def reward_labels(model: str, pairs: pd.DataFrame, *, margin: float = 0.0, batch_size: int = 8,
                  device: str = "cpu", progress: Callable[[int], None] | None = None) -> RewardScores:
    """Score both responses of every pair; label a/b by the higher reward, tie within ``margin``."""
    n = len(pairs)
    scores = score_responses(model, list(pairs["prompt"]) * 2,
                             list(pairs["response_a"]) + list(pairs["response_b"]), batch_size=batch_size,
                             device=device, progress=progress)
    reward_a, reward_b = scores[:n], scores[n:]
    difference = reward_a - reward_b
    labels = np.where(np.abs(difference) <= margin, "tie", np.where(difference > 0, "a", "b"))
    frame = pd.DataFrame({"id": pairs["id"].to_numpy(), "reward_a": reward_a, "reward_b": reward_b,
                          "difference": difference, "label": labels})
    return RewardScores(frame)

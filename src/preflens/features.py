"""Feature matrices: one row per pair, one column per concept, saved as ``features.parquet``.

Columns: ``id`` and one float column per concept, in the concept set's order. A value is
typically present(A) - present(B) or a comparison in [-1, 1]; 0 means "no difference or not
relevant"; a missing cell (NaN) means the LLM gave no usable answer and is counted, never guessed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError


def save_features(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a features table (``id`` plus concept columns)."""
    if "id" not in frame.columns:
        raise ValueError("a features table needs an 'id' column")
    frame.to_parquet(path, index=False)


def read_parquet(path: str | Path, what: str = "Parquet file") -> pd.DataFrame:
    """A Parquet file, or a :class:`DataError` naming it when it cannot be read."""
    try:
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError; a truncated file an OSError
        raise DataError(f"{path}: cannot be read as a {what} ({' '.join(str(exc).split())[:160]}); it is damaged "
                        "or not Parquet: delete it and rerun the stage that writes it") from None


def load_features(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such features file; run 'preflens represent' first")
    frame = read_parquet(path, "features file")
    if "id" not in frame.columns:
        raise DataError(f"{path}: a features file needs an 'id' column")
    return frame


def align_features(features: pd.DataFrame, ids: pd.Series, concepts: list[str]) -> tuple[pd.DataFrame, int]:
    """The features for ``ids`` (in that order) and ``concepts``, missing cells as 0.

    Returns the matrix and the number of missing cells filled. Pairs without a features row and
    concepts without a column raise :class:`DataError`.
    """
    indexed = features.set_index("id")
    absent_ids = ids[~ids.isin(indexed.index)]
    if len(absent_ids):
        raise DataError(f"{len(absent_ids)} pairs have no features (first: {absent_ids.iloc[0]}); "
                        "run 'preflens represent' on the same data")
    absent = [c for c in concepts if c not in indexed.columns]
    if absent:
        raise DataError(f"the features have no column for concept(s) {absent[:5]}; they were built "
                        "with another concept set")
    matrix = indexed.loc[ids.to_list(), concepts].astype(float)
    missing = int(np.isnan(matrix.to_numpy()).sum())
    return matrix.fillna(0.0).reset_index(drop=True), missing

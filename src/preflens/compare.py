"""Mechanisms side by side: how often they agree, and the concepts on which their weights differ."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from .model import HMDR


def pair_agreement(first: pd.Series, second: pd.Series) -> float:
    """Agreement of two label columns: 1 when equal, 0.5 when exactly one is a tie, 0 when opposite.

    Pairs either mechanism did not label are left out.
    """
    both = first.notna() & second.notna()
    if not both.any():
        return float("nan")
    x, y = first[both].to_numpy(), second[both].to_numpy()
    score = np.where(x == y, 1.0, np.where((x == "tie") | (y == "tie"), 0.5, 0.0))
    return float(score.mean())


def agreement_matrix(labels: Mapping[str, pd.Series]) -> pd.DataFrame:
    """Pairwise agreement between every two label columns (mechanisms and models), as in the paper's Fig. 5."""
    names = list(labels)
    matrix = pd.DataFrame(np.nan, index=names, columns=names)
    for i in names:
        for j in names:
            matrix.loc[i, j] = pair_agreement(labels[i].reset_index(drop=True), labels[j].reset_index(drop=True))
    return matrix


def weight_differences(first: HMDR, second: HMDR, *, top: int = 10) -> pd.DataFrame:
    """Per scope (shared and each domain both models know), concepts with the largest effect difference.

    Effects are 50 x weight (percent); the difference is first minus second.
    """
    names = [str(n) for n in first.feature_names_in_]
    if names != [str(n) for n in second.feature_names_in_]:
        raise ValueError("the two models were fitted on different concepts")
    rows = []
    scopes = [("shared", first.shared_coef_, second.shared_coef_)]
    for domain in first.domains_:
        if domain in set(second.domains_):
            scopes.append((str(domain), first.coef_for(domain), second.coef_for(domain)))
    for scope, a, b in scopes:
        difference = 50 * (a - b)
        for j in np.argsort(-np.abs(difference))[:top]:
            if abs(difference[j]) > 1e-9:
                rows.append({"scope": scope, "concept": names[j], "first": 50 * a[j], "second": 50 * b[j],
                             "difference": difference[j]})
    return pd.DataFrame(rows, columns=["scope", "concept", "first", "second", "difference"])

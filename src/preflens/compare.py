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
    """Per scope (shared and each domain both models know), the concepts on which the two models differ most.

    ``p_first``/``p_second``: how often each model prefers the response showing the concept when the pair
    differs only in it (sigmoid of the weight); ``difference_pts`` is first minus second in points (bounded
    by 100), the order of the rows. ``first``, ``second`` and ``difference`` keep the paper's 50 × weight.
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
        p_a, p_b = 1 / (1 + np.exp(-a)), 1 / (1 + np.exp(-b))
        points = 100 * (p_a - p_b)
        for j in np.argsort(-np.abs(points), kind="stable")[:top]:
            if abs(a[j] - b[j]) > 1e-9:
                rows.append({"scope": scope, "concept": names[j], "p_first": float(p_a[j]), "p_second": float(p_b[j]),
                             "difference_pts": float(points[j]), "first": 50 * a[j], "second": 50 * b[j],
                             "difference": 50 * (a[j] - b[j])})
    return pd.DataFrame(rows, columns=["scope", "concept", "p_first", "p_second", "difference_pts", "first", "second",
                                       "difference"])

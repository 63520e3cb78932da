"""Mechanisms side by side: how often they agree, and the concepts on which their weights differ."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

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


def _scopes(first: HMDR, second: HMDR) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(scope, first's weights, second's weights) for the shared part and each domain both models know."""
    scopes = [("shared", first.shared_coef_, second.shared_coef_)]
    for domain in first.domains_:
        if domain in set(second.domains_):
            scopes.append((str(domain), first.coef_for(domain), second.coef_for(domain)))
    return scopes


def _points(a: np.ndarray, b: np.ndarray, unit: np.ndarray | float = 1.0) -> np.ndarray:
    """P(preferred) of the first minus the second at a difference of ``unit``, in points, per concept."""
    return 100 * (1 / (1 + np.exp(-a * unit)) - 1 / (1 + np.exp(-b * unit)))


def _units(names: list[str], units: Mapping[str, float] | None) -> np.ndarray:
    """Per concept, the difference the probabilities are read at (1 where ``units`` has none)."""
    from .explain import unit_of

    return np.array([unit_of(units, name) for name in names])


def bootstrap_differences(first: HMDR, second: HMDR, X: Any, y_first: Any, y_second: Any, *, domains: Any,
                          shared: Any = None, membership: Any = None, n_boot: int = 100, level: float = 0.95,
                          random_state: int = 0, progress: Callable[[], None] | None = None,
                          units: Mapping[str, float] | None = None) -> dict[tuple[str, str], tuple[float, float]]:
    """Intervals of first minus second (points of P(preferred), at each concept's ``units`` as in
    :func:`weight_differences`) per (scope, concept), by a paired bootstrap.

    Each refit draws the pairs with replacement within each domain *once* and refits both models on
    that draw (each on the pairs its own labels cover), so the interval is that of the difference, not
    two intervals side by side.
    """
    from .explain import refit_on, resample_within_domains
    from .model import labels_to_y

    names = [str(n) for n in first.feature_names_in_]
    unit = _units(names, units)
    rng = np.random.default_rng(random_state)
    domain_values = np.asarray(domains, dtype=object)
    by_domain = [np.flatnonzero(domain_values == d) for d in dict.fromkeys(domain_values)]
    matrix = X.to_numpy(dtype=float) if hasattr(X, "to_numpy") else X
    ys = [labels_to_y(list(y)) for y in (y_first, y_second)]
    samples: dict[tuple[str, str], list[float]] = {}
    for _ in range(n_boot):
        rows = resample_within_domains(by_domain, rng)
        refits = [refit_on(model, matrix, y, domain_values, rows, shared=shared, membership=membership)
                  for model, y in zip((first, second), ys, strict=True)]
        for scope, a, b in _scopes(*refits):
            for name, value in zip(names, _points(a, b, unit), strict=True):
                samples.setdefault((scope, name), []).append(float(value))
        if progress is not None:
            progress()
    tail = (1 - level) / 2
    return {key: (float(np.quantile(v, tail)), float(np.quantile(v, 1 - tail))) for key, v in samples.items()}


def weight_differences(first: HMDR, second: HMDR, *, top: int = 10,
                       intervals: Mapping[tuple[str, str], tuple[float, float]] | None = None,
                       units: Mapping[str, float] | None = None) -> pd.DataFrame:
    """Per scope (shared and each domain both models know), the concepts on which the two models differ most.

    ``p_first``/``p_second``: how often each model prefers the response showing more of the concept when
    the pair differs only in it, by the concept's typical difference ``unit`` (from ``units``, as the
    explanations' headline reads it: :func:`preflens.explain.typical_differences`; 1 where not given), so
    sigmoid(weight × unit); ``difference_pts`` is first minus second in points (bounded by 100), the order
    of the rows. ``first``, ``second`` and ``difference`` keep the paper's 50 × weight. With ``intervals``
    (from :func:`bootstrap_differences`, with the same ``units``) also ``ci_low_pts, ci_high_pts``.
    """
    names = [str(n) for n in first.feature_names_in_]
    if names != [str(n) for n in second.feature_names_in_]:
        raise ValueError("the two models were fitted on different concepts")
    unit = _units(names, units)
    rows = []
    for scope, a, b in _scopes(first, second):
        p_a, p_b = 1 / (1 + np.exp(-a * unit)), 1 / (1 + np.exp(-b * unit))
        points = _points(a, b, unit)
        for j in np.argsort(-np.abs(points), kind="stable")[:top]:
            if abs(a[j] - b[j]) > 1e-9:
                row = {"scope": scope, "concept": names[j], "unit": float(unit[j]), "p_first": float(p_a[j]),
                       "p_second": float(p_b[j]), "difference_pts": float(points[j]), "first": 50 * a[j],
                       "second": 50 * b[j], "difference": 50 * (a[j] - b[j])}
                if intervals is not None:
                    row["ci_low_pts"], row["ci_high_pts"] = intervals.get((scope, names[j]), (0.0, 0.0))
                rows.append(row)
    columns = ["scope", "concept", "unit", "p_first", "p_second", "difference_pts", "first", "second", "difference"]
    return pd.DataFrame(rows, columns=columns + (["ci_low_pts", "ci_high_pts"] if intervals is not None else []))

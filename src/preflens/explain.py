"""Explanations from a fitted HMDR: global effects per domain and local lifts per pair.

Global (App. C.3 of the paper): the expected lift of concept j in domain d is about
``50 * (b_j + s_dj)`` percent. The shared part ``50 * b_j`` and the domain part ``50 * s_dj`` are kept
apart, as the paper's figures draw them (light and dark bars). Bootstrap confidence intervals come
from refitting on pairs resampled within each domain.

The headline unit, bounded and readable: ``p_preferred = sigmoid((b_j + s_dj) * unit_j)``, how often the
response that shows concept j is preferred when the pair differs only in it, by a typical difference
``unit_j`` (50% is no effect), with the odds ratio ``exp((b_j + s_dj) * unit_j)`` and, after bootstrap, the
interval ``p_low, p_high`` (the same of the interval's ends). ``unit_j`` is the 90th percentile of
``|x_j|`` over the pairs where the concept differs (:func:`typical_differences`; 1 when no data is given).
A presence rule's feature is -1, 0 or 1, so its unit is 1; an LLM's P(Yes) differences often stay within
±0.3, and at a full unit of 1, which no pair reaches, a weight of 7 would read "preferred 100%". Effects
are ranked by ``|weight * unit|``. The paper's ``50 * weight`` (per unit of 1) stays in ``effect`` for
comparison; it is not bounded (a weight of 12 reads "+600%") and so is never the number shown first.

Local: for a pair with logit z = (b + s_d) . x, concept j's contribution to the logit is
``(b_j + s_dj) * x_j`` and ``p_shift`` is what it moves P(A preferred), in points:
``100 * (sigmoid(z) - sigmoid(z - contribution))``. The paper's relative lift
``100 * (sigmoid(z + b_j + s_dj) - sigmoid(z)) / sigmoid(z)`` (adding one unit of j) stays in ``lift_pct``.

Explanations hold data (``to_frame``, ``to_dict``, ``to_json``); drawing them is the report's job.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning

from .model import HMDR, _sigmoid, check_fitted, labels_to_y

SHARED_SCOPE = "shared"
GLOBAL_FORMAT = "preflens-global-explanation/1"
LOCAL_FORMAT = "preflens-local-explanation/1"


def _clean(value: Any) -> Any:
    """Replace NaN with None so that JSON can be written with allow_nan=False."""
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


@dataclass
class GlobalExplanation:
    """Effects of each concept per scope (``shared`` and each domain).

    ``frame`` has one row per (scope, concept) with a non-zero weight (or a non-zero bootstrap
    interval): ``scope, concept, shared_effect, domain_effect, effect`` (the paper's 50 × weight), ``unit``
    (the typical difference the readable units are read at), ``rank``, ``p_preferred, odds_ratio`` (the
    readable units) and, after bootstrap, ``ci_low, ci_high,
    nonzero_share`` (how often the bootstrap refits kept the weight non-zero) and ``p_low, p_high``.
    """

    frame: pd.DataFrame
    meta: dict[str, Any]

    def scopes(self) -> list[str]:
        return list(dict.fromkeys(self.frame["scope"]))

    def top(self, scope: str, k: int = 10) -> pd.DataFrame:
        """The ``k`` concepts with the largest effect at their typical difference (``|weight * unit|``) in a scope."""
        rows = self.frame[self.frame["scope"] == scope]
        return rows.nsmallest(k, "rank")

    def to_frame(self) -> pd.DataFrame:
        return self.frame.copy()

    def to_dict(self) -> dict[str, Any]:
        return {"format": GLOBAL_FORMAT, "meta": self.meta,
                "effects": [{k: _clean(v) for k, v in row.items()} for row in self.frame.to_dict("records")]}

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False) + "\n", encoding="utf-8")

    @classmethod
    def from_json(cls, path: str | Path) -> GlobalExplanation:
        from .errors import DataError

        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except ValueError:
            data = None
        if not isinstance(data, dict) or data.get("format") != GLOBAL_FORMAT:
            raise DataError(f"{path}: not a readable preflens global explanation; delete it and rerun "
                            "'preflens explain'")
        columns = ["scope", "concept", "shared_effect", "domain_effect", "effect", "rank"]
        if data["effects"] and "unit" in data["effects"][0]:
            columns.insert(5, "unit")
        if (data["meta"] or {}).get("bootstrap"):
            columns += ["ci_low", "ci_high", "nonzero_share"]
        frame = pd.DataFrame(data["effects"], columns=columns)
        numeric = [c for c in columns if c not in ("scope", "concept")]
        frame[numeric] = frame[numeric].astype(float)  # typed even when there is no effect at all
        frame["rank"] = frame["rank"].astype(int)
        return cls(readable(frame), data["meta"])


def preferred(effect: Any, unit: Any = 1.0) -> Any:
    """P(the response showing the concept is preferred | the pair differs only in it, by ``unit``), from
    50 × weight."""
    return _sigmoid(np.asarray(effect, float) / 50.0 * np.asarray(unit, float))


# how typical_differences reads a concept's unit, for the settings of the stages that use it: a change here
# makes their earlier outputs stale
UNIT_RULE = "p90 of the non-zero |feature|"


def unit_of(units: Mapping[str, float] | None, concept: str) -> float:
    """The difference ``concept``'s effect is read at: its entry in ``units`` (from :func:`typical_differences`),
    1 where it has none."""
    return float((units or {}).get(concept, 1.0))


def typical_differences(X: Any, quantile: float = 0.9) -> dict[str, float]:
    """Per feature column, the ``quantile`` of ``|x|`` over the pairs where it is not 0 (at most 1; 1 where
    the column is 0 everywhere): the difference the headline ``p_preferred`` is read at."""
    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X, float))
    units = {}
    for column in frame.columns:
        values = np.abs(frame[column].to_numpy(dtype=float))
        values = values[np.isfinite(values) & (values > 1e-12)]
        units[str(column)] = float(min(1.0, np.quantile(values, quantile))) if len(values) else 1.0
    return units


def readable(frame: pd.DataFrame) -> pd.DataFrame:
    """The effects frame with the bounded units added: ``p_preferred``, ``odds_ratio`` and ``p_low, p_high``,
    at each row's ``unit`` (1 when the frame has none)."""
    frame = frame.copy()
    if "unit" not in frame.columns:
        frame["unit"] = 1.0
    unit = frame["unit"].astype(float)
    frame["p_preferred"] = preferred(frame["effect"], unit) if len(frame) else pd.Series(dtype=float)
    frame["odds_ratio"] = np.exp(frame["effect"].astype(float) / 50.0 * unit)
    if "ci_low" in frame.columns:
        frame["p_low"] = preferred(frame["ci_low"], unit) if len(frame) else pd.Series(dtype=float)
        frame["p_high"] = preferred(frame["ci_high"], unit) if len(frame) else pd.Series(dtype=float)
    return frame


def _effect_rows(model: HMDR, b: np.ndarray, s: np.ndarray) -> dict[tuple[str, str], tuple[float, float]]:
    """(scope, concept) -> (shared part, domain part), in percent, for non-zero weights."""
    names = [str(n) for n in model.feature_names_in_]
    rows: dict[tuple[str, str], tuple[float, float]] = {}
    for j in np.flatnonzero(b):
        rows[(SHARED_SCOPE, names[j])] = (50.0 * b[j], 0.0)
    for d, domain in enumerate(model.domains_):
        for j in np.flatnonzero(b + s[d]):
            rows[(str(domain), names[j])] = (50.0 * b[j], 50.0 * s[d, j])
    return rows


def explain_global(model: HMDR, *, bootstrap: BootstrapEffects | None = None,
                   units: dict[str, float] | None = None) -> GlobalExplanation:
    """The global explanation of a fitted model, with bootstrap intervals when given.

    ``units``: per concept, the typical difference the headline units are read at (from
    :func:`typical_differences` of the features the model was fitted on); 1 for a concept not in it."""
    check_fitted(model)
    rows = _effect_rows(model, model.shared_coef_, model.domain_coef_)
    keys = set(rows) | (set(bootstrap.samples) if bootstrap else set())
    records = []
    for scope, concept in keys:
        shared_part, domain_part = rows.get((scope, concept), (0.0, 0.0))
        record = {"scope": scope, "concept": concept, "shared_effect": shared_part,
                  "domain_effect": domain_part, "effect": shared_part + domain_part,
                  "unit": unit_of(units, concept)}
        if bootstrap is not None:
            values = bootstrap.samples.get((scope, concept), np.zeros(bootstrap.n_boot))
            low, high = np.quantile(values, [(1 - bootstrap.level) / 2, (1 + bootstrap.level) / 2])
            record.update(ci_low=float(low), ci_high=float(high), nonzero_share=float(np.mean(values != 0)))
        records.append(record)
    columns = ["scope", "concept", "shared_effect", "domain_effect", "effect", "unit"]
    frame = pd.DataFrame(records, columns=columns + (["ci_low", "ci_high", "nonzero_share"] if bootstrap else []))
    scope_order = {s: i for i, s in enumerate([SHARED_SCOPE, *map(str, model.domains_)])}
    frame["_order"] = frame["scope"].map(scope_order)
    frame["_abs"] = -(frame["effect"] * frame["unit"]).abs()
    frame = frame.sort_values(["_order", "_abs", "concept"]).drop(columns=["_order", "_abs"]).reset_index(drop=True)
    frame.insert(6, "rank", frame.groupby("scope").cumcount() + 1)
    meta = {"domains": [str(d) for d in model.domains_], "params": model.get_params(), "alpha": model.alpha_,
            "effect_unit": "percent: expected lift of P(preferred) per unit of the concept, 50 * weight (the paper's)",
            "p_preferred_unit": "P(the response showing the concept is preferred | the pair differs only in it, by "
                                "the typical difference 'unit') = sigmoid(weight * unit); 0.5 is no effect; unit "
                                "is the 90th percentile of the concept's non-zero |feature| (1 for a presence rule)",
            "bootstrap": {"n_boot": bootstrap.n_boot, "level": bootstrap.level} if bootstrap else None}
    return GlobalExplanation(readable(frame), meta)


@dataclass
class BootstrapEffects:
    """Effects (percent) of every (scope, concept) in each bootstrap refit."""

    samples: dict[tuple[str, str], np.ndarray]
    n_boot: int
    level: float


def bootstrap_effects(model: HMDR, X: Any, y: Any, *, domains: Any, shared: Any = None, membership: Any = None,
                      n_boot: int = 100, level: float = 0.95, random_state: int = 0,
                      progress: Callable[[], None] | None = None) -> BootstrapEffects:
    """Refit ``model``'s settings on pairs resampled with replacement within each domain.

    ``progress`` is called after each refit.
    """
    check_fitted(model)
    rng = np.random.default_rng(random_state)
    domain_values = np.asarray(domains, dtype=object)
    by_domain = [np.flatnonzero(domain_values == d) for d in model.domains_]
    samples: dict[tuple[str, str], np.ndarray] = {}
    matrix = X.to_numpy(dtype=float) if hasattr(X, "to_numpy") else X
    y_values = labels_to_y(list(y)) if not isinstance(y, np.ndarray) or y.dtype == object else np.asarray(y, float)
    for i in range(n_boot):
        rows = resample_within_domains(by_domain, rng)
        refit = refit_on(model, matrix, y_values, domain_values, rows, shared=shared, membership=membership)
        for key, (shared_part, domain_part) in _effect_rows(refit, refit.shared_coef_, refit.domain_coef_).items():
            samples.setdefault(key, np.zeros(n_boot))[i] = shared_part + domain_part
        if progress is not None:
            progress()
    return BootstrapEffects(samples, n_boot, level)


def resample_within_domains(by_domain: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Row indices drawn with replacement within each domain (each domain keeps its size)."""
    return np.concatenate([rng.choice(index, size=len(index), replace=True) for index in by_domain if len(index)])


def refit_on(model: HMDR, matrix: Any, y_values: np.ndarray, domain_values: np.ndarray, rows: np.ndarray, *,
             shared: Any = None, membership: Any = None) -> HMDR:
    """``model``'s settings (penalties, controls) fitted again on ``rows``, warm-started from its weights."""
    controls = np.flatnonzero(getattr(model, "control_mask_", np.zeros(0, bool))).tolist() or None
    refit = HMDR(**{**model.get_params(), "controls": controls})  # by index: the refits see a matrix
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        refit.fit(matrix[rows], y_values[rows], domains=domain_values[rows], shared=shared, membership=membership,
                  coef_init=(model.shared_coef_, model.domain_coef_))
    refit.feature_names_in_ = model.feature_names_in_
    return refit


@dataclass
class LocalExplanation:
    """Per pair: the prediction, and per concept the value, weight, logit contribution and lift.

    ``pairs`` has one row per pair (``pair, domain, logit, p_a, predicted, label``); ``concepts``
    one row per (pair, concept) whose weight in the pair's domain is non-zero
    (``pair, concept, value, weight, contribution, lift_pct``); the contribution is zero where the
    pair does not show the concept, the lift is what adding it would do.
    """

    pairs: pd.DataFrame
    concepts: pd.DataFrame

    def data(self, i: int) -> dict[str, Any]:
        """One pair's explanation as plain data, concepts sorted by |contribution|, then |weight|."""
        pair = self.pairs.iloc[i].to_dict()
        rows = self.concepts[self.concepts["pair"] == pair["pair"]]
        order = sorted(rows.index, key=lambda r: (-abs(rows.at[r, "contribution"]), -abs(rows.at[r, "weight"])))
        rows = rows.loc[order]
        return {**{k: _clean(v) for k, v in pair.items()}, "concepts": rows.drop(columns="pair").to_dict("records")}

    def to_frame(self) -> pd.DataFrame:
        """One row per (pair, concept), with the pair's prediction repeated."""
        return self.concepts.merge(self.pairs, on="pair", how="left")

    def to_dict(self) -> dict[str, Any]:
        return {"format": LOCAL_FORMAT, "pairs": [self.data(i) for i in range(len(self.pairs))]}


def explain_local(model: HMDR, X: Any, *, domains: Any = None, ids: Any = None, y: Any = None) -> LocalExplanation:
    """Explain the model's prediction for each row of X."""
    check_fitted(model)
    matrix = X.to_numpy(dtype=float) if hasattr(X, "to_numpy") else np.asarray(X, float)
    n = matrix.shape[0]
    domain_values = np.asarray(domains if domains is not None else [None] * n, dtype=object)
    ids = [str(i) for i in (ids if ids is not None else range(n))]
    logits = model.decision_function(matrix, domains=domain_values if domains is not None else None)
    labels = labels_to_y(list(y)) if y is not None else np.full(n, np.nan)
    names = [str(c) for c in model.feature_names_in_]
    pair_rows, concept_rows = [], []
    for i in range(n):
        weights = model.coef_for(domain_values[i])
        z = logits[i]
        p = float(_sigmoid(np.array([z]))[0])
        pair_rows.append({"pair": ids[i], "domain": domain_values[i], "logit": float(z), "p_a": p,
                          "predicted": "a" if z > 0 else "b",
                          "label": {1.0: "a", 0.0: "b"}.get(float(labels[i]), None)})
        for j in np.flatnonzero(weights):
            lifted = float(_sigmoid(np.array([z + weights[j]]))[0])
            without = float(_sigmoid(np.array([z - weights[j] * matrix[i, j]]))[0])
            concept_rows.append({"pair": ids[i], "concept": names[j], "value": float(matrix[i, j]),
                                 "weight": float(weights[j]), "contribution": float(weights[j] * matrix[i, j]),
                                 "lift_pct": 100.0 * (lifted - p) / p, "p_shift": 100.0 * (p - without)})
    columns = ["pair", "concept", "value", "weight", "contribution", "lift_pct", "p_shift"]
    return LocalExplanation(pd.DataFrame(pair_rows), pd.DataFrame(concept_rows, columns=columns))

"""The fit stage: one HMDR per mechanism on the shared feature matrix, lambdas by cross-validation.

A pure function of (pairs, features, concepts, settings) to fitted models; the CLI saves them in
the run folder as ``models/<mechanism>.json`` with the search results and global explanations.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning

from .concepts import ConceptSet
from .data import PairDataset
from .errors import DataError, DataWarning
from .features import align_features
from .model import FALLBACK_FRACTION, HMDR, HMDRSearch, fallback_lambdas, labels_to_y


@dataclass
class FitSettings:
    """Settings of the fit stage; ``lambda_shared`` and ``lambda_domain`` given skip the search.

    ``controls`` are concepts fitted with no penalty, in the shared weights only (see :class:`HMDR`).
    """

    alpha: float | None = None
    lambda_shared: float | None = None
    lambda_domain: float | None = None
    mode: str = "hmdr"
    cv: int = 5
    random_state: int = 0
    grid: list[dict[str, float]] | None = None
    controls: list[str] | None = None


@dataclass
class FitResult:
    """One mechanism's fitted model and how it was chosen."""

    mechanism: str
    model: HMDR
    cv_results: list[dict[str, Any]] | None
    n_pairs: int
    n_ties_or_missing: int
    missing_cells: int
    evidence: dict[str, Any] | None = None


@dataclass
class ModelInputs:
    """The aligned matrix, masks and labels a fit needs."""

    X: pd.DataFrame
    domains: np.ndarray
    shared: np.ndarray
    membership: np.ndarray
    missing_cells: int


def evidence(mechanism: str, cv_results: list[dict[str, Any]] | None, y: np.ndarray, folds: int) -> dict[str, Any] | None:
    """Whether the chosen fit is clearly better than always picking the majority side.

    Clearly better: the best setting's mean CV accuracy exceeds the majority share by more than two
    standard errors of that mean over the folds (fold std / sqrt(folds)). The best of a grid is an
    optimistic estimate, so this errs towards saying "reliable". When it is not, the sentence gives the
    number of labelled pairs at which a gain of the size seen would be two binomial standard errors:
    4 p (1 - p) / gain^2 with p the majority share.
    """
    if not cv_results:
        return None
    labelled = y[~np.isnan(y)]
    share_a = float(labelled.mean())
    majority = max(share_a, 1.0 - share_a)
    side = "A" if share_a >= 0.5 else "B"
    best = max(cv_results, key=lambda r: r["mean_accuracy"])
    error = float(best.get("std_accuracy") or 0.0) / math.sqrt(max(folds, 1))
    gain = best["mean_accuracy"] - majority
    reliable = gain > 2 * error and gain > 0
    result = {"majority": majority, "majority_side": side, "cv_accuracy": best["mean_accuracy"],
              "cv_standard_error": error, "gain": gain, "reliable": bool(reliable), "pairs": int(len(labelled)),
              "sentence": ""}
    if not reliable:
        head = (f"No reliable explanation of {mechanism}: its cross-validated accuracy, {100 * best['mean_accuracy']:.1f}% "
                f"(± {200 * error:.1f} points over the folds), is ")
        if gain > 0:
            needed = math.ceil(4 * majority * (1 - majority) / gain ** 2)
            result["pairs_needed"] = needed
            result["sentence"] = (head + f"not clearly above the {100 * majority:.1f}% of always picking response "
                                  f"{side}; telling a gain of this size apart would take about {needed:,} labelled "
                                  f"pairs (it has {len(labelled):,}). Read the concepts below as unconfirmed.")
        else:
            result["sentence"] = (head + f"no better than the {100 * majority:.1f}% of always picking response {side}. "
                                  "More pairs, or other concepts, are needed; the concepts below explain nothing yet.")
    return result


def model_inputs(pairs: PairDataset, features: pd.DataFrame, concepts: ConceptSet) -> ModelInputs:
    """Line up features with pairs and build the shared mask and membership (sorted domains)."""
    X, missing = align_features(features, pairs.frame["id"], concepts.names)
    domains = pairs.frame["domain"].to_numpy(dtype=object)
    domain_names = sorted(set(domains.tolist()), key=str)
    return ModelInputs(X, domains, concepts.shared_mask(), concepts.membership(domain_names), missing)


def fit_mechanism(inputs: ModelInputs, labels: pd.Series, mechanism: str, settings: FitSettings) -> FitResult:
    """Fit one mechanism's HMDR (with the search unless both lambdas are given)."""
    y = labels_to_y(list(labels))
    usable = ~np.isnan(y)
    if usable.sum() < 4 or len(np.unique(y[usable])) < 2:
        raise DataError(f"mechanism '{mechanism}' has {int(usable.sum())} usable labels (ties and missing left "
                        "out); HMDR needs labels of both sides")
    base = HMDR(alpha=settings.alpha, mode=settings.mode, random_state=settings.random_state,
                controls=settings.controls or None)
    smallest = int(np.bincount(y[usable].astype(int), minlength=2).min())
    if smallest < 2 and (settings.lambda_shared is None or settings.lambda_domain is None):
        warnings.warn(f"mechanism '{mechanism}': only {smallest} pair of one side, too few to choose the lambdas by "
                      f"cross-validation; fitted once at {FALLBACK_FRACTION:g} x lambda_max", DataWarning, stacklevel=2)
        lambdas = fallback_lambdas(base, inputs.X, y, domains=inputs.domains, shared=inputs.shared,
                                   membership=inputs.membership)
        settings = FitSettings(**{**vars(settings), **lambdas})
    if settings.lambda_shared is not None and settings.lambda_domain is not None:
        model = HMDR(**{**base.get_params(), "lambda_shared": settings.lambda_shared,
                        "lambda_domain": settings.lambda_domain})
        model.fit(inputs.X, y, domains=inputs.domains, shared=inputs.shared, membership=inputs.membership)
        cv_results = None
    else:
        folds = max(2, min(settings.cv, int(np.bincount(y[usable].astype(int)).min())))
        search = HMDRSearch(base, grid=settings.grid, cv=folds,
                            random_state=settings.random_state)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            search.fit(inputs.X, y, domains=inputs.domains, shared=inputs.shared, membership=inputs.membership)
        model, cv_results = search.best_estimator_, search.cv_results_
        return FitResult(mechanism, model, cv_results, int(usable.sum()), int((~usable).sum()), inputs.missing_cells,
                         evidence(mechanism, cv_results, y, folds))
    return FitResult(mechanism, model, cv_results, int(usable.sum()), int((~usable).sum()), inputs.missing_cells)

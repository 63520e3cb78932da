"""The fit stage: one HMDR per mechanism on the shared feature matrix, lambdas by cross-validation.

A pure function of (pairs, features, concepts, settings) to fitted models; the CLI saves them in
the run folder as ``models/<mechanism>.json`` with the search results and global explanations.
"""

from __future__ import annotations

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


@dataclass
class ModelInputs:
    """The aligned matrix, masks and labels a fit needs."""

    X: pd.DataFrame
    domains: np.ndarray
    shared: np.ndarray
    membership: np.ndarray
    missing_cells: int


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
    return FitResult(mechanism, model, cv_results, int(usable.sum()), int((~usable).sum()), inputs.missing_cells)

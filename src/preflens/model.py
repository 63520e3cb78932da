"""The Hierarchical Multi-Domain Regression (HMDR) and its ablations.

For a pair in domain d with concept features x (one value per concept, usually
present(A) - present(B) in {-1, 0, 1}), P(A preferred) = sigmoid((b + s_d) . x). ``b`` is shared by
all domains and lives on the shared concepts; ``s_d`` is domain d's deviation and lives on the
concepts that belong to d (and the shared ones). The objective is Eq. 1 of the paper::

    sum_d [ mean_{i in d} l(y_i, (b + s_d) . x_i)  +  alpha * mean_{i in d} l(y_i, b . x_i) ]
        + lambda_shared * ||b||_1 + lambda_domain * sum_d ||s_d||_1

with the logistic loss l(y, z) = log(1 + exp(-y z)), y in {-1, +1}.

Choices the paper leaves open (documented in ``docs/hmdr.md``):

- **Mean per domain, summed over domains.** Each domain weighs the same whatever its size, and
  ``alpha = 1/|D|`` makes the shared-loss term worth one domain; the paper's small lambdas only
  make sense with means.
- **Solver: proximal Newton on an augmented design.** The objective is one L1 logistic regression
  on a sparse design with a column per shared concept and one per (domain, concept), row weights
  1/n_d (and alpha/n_d for the rows repeated with their shared columns only), and a penalty per
  column (zero for controls). The default solver (``solver="cd"``, :mod:`preflens._prox_newton`)
  is coordinate descent inside proximal Newton steps, on working sets grown by optimality checks on
  every column, compiled by Numba: exact zeros, warm starts along a path. liblinear (``"liblinear"``,
  positive penalties only) and FISTA (``"fista"``) remain available and reach the same objective.
- **Convergence**: the largest violation of the optimality conditions, relative to the largest
  gradient at zero, at most ``tol``; a :class:`~sklearn.exceptions.ConvergenceWarning` when
  ``max_iter`` Newton steps run out first, or when no step can lower the objective any more.
- **Lambdas are relative to the data**: the search's grid is fractions of lambda_max, the penalty
  above which every weight is zero (:func:`default_grid`).
- **No intercept, and the (-x, -y) augmentation is implied.** For a logistic model without an
  intercept, the augmented pair (-x, -y) has exactly the loss of (x, y), so adding it changes
  nothing but the run time; the model is symmetric by construction: P(A over B | x) =
  1 - P(B over A | -x). (A test checks the identity.)
- **Unknown or missing domain**: predicted with ``b`` alone (``domains=None`` for a model fitted
  without domains means its one domain).
"""

from __future__ import annotations

import copy
import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.exceptions import ConvergenceWarning, DataConversionWarning, NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.utils.validation import check_is_fitted

from . import _prox_newton
from ._version import __version__
from .errors import ConfigError

MODES = ("hmdr", "shared", "specific")
SOLVERS = ("auto", "cd", "liblinear", "fista")
DEFAULT_DOMAIN = "default"  # the domain of every pair when none is given
MERGE_SAMPLE = 2048
COLD_START_ALL_COLUMNS = 1000
MODEL_FORMAT = "preflens-hmdr/1"


def _log1pexp(t: np.ndarray) -> np.ndarray:
    """log(1 + exp(t)) without overflow."""
    return np.logaddexp(0.0, t)


def _sigmoid(t: np.ndarray) -> np.ndarray:
    return expit(t)


def labels_to_y(labels: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Map labels to y: 'a'/1/True -> 1.0, 'b'/0/False -> 0.0, 'tie'/0.5/None/NaN -> NaN."""
    out = np.full(len(labels), np.nan)
    for i, value in enumerate(labels):
        if isinstance(value, str):
            out[i] = {"a": 1.0, "b": 0.0}.get(value.lower(), np.nan)
        elif value is None:
            continue
        else:
            number = float(value)
            out[i] = number if number in (0.0, 1.0) else np.nan
    return out


_TARGETS = {"a", "b", "tie"}


def _check_targets(y: Any) -> None:
    """HMDR's y is a preference: 1 (A preferred), 0 (B), 0.5 (tie), missing, or the labels a/b/tie."""
    if isinstance(y, np.ndarray) and y.ndim == 1 and y.dtype.kind in "fiub":  # numbers: checked at once
        if np.all(np.isnan(y) | (y == 0) | (y == 1) | (y == 0.5)):
            return
    values = pd.unique(pd.Series(np.asarray(y, dtype=object).ravel() if np.ndim(y) > 1 else list(y), dtype=object))
    bad = []
    for value in values:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if isinstance(value, str):
            if value.lower() not in _TARGETS:
                bad.append(value)
        elif isinstance(value, (bool, int, float, np.integer, np.floating)) and float(value) in (0.0, 0.5, 1.0):
            continue
        else:
            bad.append(value)
    if bad or np.ndim(y) > 1:
        shown = ", ".join(repr(v) for v in bad[:5]) if bad else f"an array of shape {np.shape(y)}"
        raise ValueError(f"Unknown label type: {shown}. Only binary classification is supported. HMDR's y is a "
                         "preference per pair: 1 or 'a' (A preferred), 0 or 'b' (B preferred), 0.5 or 'tie', or missing")


def _as_targets(y: Any) -> np.ndarray:
    """y checked (see :func:`_check_targets`) and mapped to 1.0 / 0.0 / NaN (ties and missing)."""
    if y is None:
        raise ValueError("HMDR requires y to be passed, but the target y is None")
    if not isinstance(y, (list, tuple, pd.Series, np.ndarray)):
        y = np.asarray(y)
    if isinstance(y, np.ndarray) and y.ndim == 2 and y.shape[1] == 1:
        warnings.warn("A column-vector y was passed when a 1d array was expected; it is flattened",
                      DataConversionWarning, stacklevel=4)
        y = y.ravel()
    _check_targets(y)
    return labels_to_y(list(y)) if not isinstance(y, np.ndarray) or y.dtype == object else np.asarray(y, float)


class _Design:
    """HMDR's objective as one weighted L1 logistic regression on an augmented sparse design.

    Columns: one per shared concept (``b``), then one per (domain, concept) the domain may use
    (``s_d``), filled only on that domain's rows. Rows: every pair once, weighted 1/n_d, and, when
    the shared-only loss is on, every pair again with only its shared columns, weighted alpha/n_d.
    The objective is then ``sum_i r_i l(y_i, A_i w) + sum_j p_j |w_j|`` with ``p_j`` the column's
    lambda (``lambda_shared`` or ``lambda_domain``).
    """

    def __init__(self, X: sp.csr_matrix, y_pm: np.ndarray, codes: np.ndarray, n_domains: int,
                 mask_b: np.ndarray, mask_s: np.ndarray, alpha: float, use_shared_loss: bool,
                 unpenalised: np.ndarray | None = None) -> None:
        n, n_features = X.shape
        self.n_features, self.n_domains = n_features, n_domains
        col_b = np.full(n_features, -1)
        col_b[mask_b] = np.arange(int(mask_b.sum()))
        n_b = int(mask_b.sum())
        col_s = np.full((n_domains, n_features), -1)
        col_s[mask_s] = n_b + np.arange(int(mask_s.sum()))
        self.n_cols = n_b + int(mask_s.sum())
        self.col_feature = np.concatenate([np.flatnonzero(mask_b), np.nonzero(mask_s)[1]])
        self.col_domain = np.concatenate([np.full(n_b, -1), np.nonzero(mask_s)[0]])
        # controls: shared columns with no L1 penalty
        self.unpenalised = (np.zeros(self.n_cols, bool) if unpenalised is None
                            else np.asarray(unpenalised, bool)[self.col_feature] & (self.col_domain < 0))
        counts = np.bincount(codes, minlength=n_domains).astype(float)
        per_row = 1.0 / counts[codes]
        self.use_shared_loss = use_shared_loss and alpha > 0 and n_b > 0
        # the design by columns, built in one compiled pass over X: each entry in its shared column and
        # its domain's column, and the rows again with their shared columns only for the shared-only loss
        self.by_column = _prox_newton.augment(X, codes, col_b, col_s, self.n_cols, self.use_shared_loss)
        if self.use_shared_loss:
            self.r = np.concatenate([per_row, alpha * per_row])
            self.y = np.concatenate([y_pm, y_pm])
        else:
            self.r, self.y = per_row, y_pm
        self._A_csc: sp.csc_matrix | None = None
        self._A: sp.csr_matrix | None = None

    def csc(self) -> sp.csc_matrix:
        """The design by columns, as a scipy matrix (sharing the arrays)."""
        if self._A_csc is None:
            indptr, indices, data = self.by_column
            self._A_csc = sp.csc_matrix((data, indices, indptr), shape=(len(self.r), self.n_cols))
        return self._A_csc

    @property
    def A(self) -> sp.csr_matrix:
        """The design by rows (made when first needed: liblinear and FISTA use it, the cd solver does not)."""
        if self._A is None:
            self._A = self.csc().tocsr()
        return self._A

    def columns(self, columns: np.ndarray) -> sp.csr_matrix:
        """The design restricted to some columns."""
        if len(columns) == self.n_cols:
            return self.A
        return self.csc()[:, columns].tocsr()

    def penalties(self, lambda_b: float, lambda_s: float) -> np.ndarray:
        return np.where(self.unpenalised, 0.0, np.where(self.col_domain < 0, lambda_b, lambda_s)).astype(float)

    def loss(self, z: np.ndarray) -> float:
        return float(self.r @ _log1pexp(-self.y * z))

    def gradient(self, z: np.ndarray) -> np.ndarray:
        return self.csc().T @ (-self.y * _sigmoid(-self.y * z) * self.r)

    def lambda_max(self, gradient_at_zero: np.ndarray | None = None) -> tuple[float, float]:
        """The smallest (lambda_shared, lambda_domain) at which every weight is zero."""
        g = np.abs(self.gradient(np.zeros(len(self.r))) if gradient_at_zero is None else gradient_at_zero)
        g = np.where(self.unpenalised, 0.0, g)  # (with controls: at zero, not at the controls' own fit)
        shared = self.col_domain < 0
        return (float(g[shared].max()) if shared.any() else 0.0,
                float(g[~shared].max()) if (~shared).any() else 0.0)

    def to_coefs(self, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b = np.zeros(self.n_features)
        s = np.zeros((self.n_domains, self.n_features))
        shared = self.col_domain < 0
        b[self.col_feature[shared]] = w[shared]
        s[self.col_domain[~shared], self.col_feature[~shared]] = w[~shared]
        return b, s

    def from_coefs(self, b: np.ndarray, s: np.ndarray) -> np.ndarray:
        shared = self.col_domain < 0
        w = np.zeros(self.n_cols)
        w[shared] = np.asarray(b, float)[self.col_feature[shared]]
        if s.shape[0] == self.n_domains:
            w[~shared] = np.asarray(s, float)[self.col_domain[~shared], self.col_feature[~shared]]
        return w


def _soft_threshold(value: np.ndarray, threshold: np.ndarray | float) -> np.ndarray:
    return np.sign(value) * np.maximum(np.abs(value) - threshold, 0.0) + 0.0  # + 0.0 turns -0.0 into 0.0


def _screen(design: _Design, penalty: np.ndarray, w0: np.ndarray, gradient: np.ndarray,
            previous: np.ndarray | None) -> np.ndarray:
    """The first working set: the non-zeros of ``w0`` and the columns the strong rule keeps.

    The sequential strong rule (Tibshirani et al., 2012) keeps a column when its gradient at ``w0``,
    the solution at the penalties ``previous``, is at least ``2 p - p_previous``; without
    ``previous`` (a warm start from other data) the bar is ``p / 2``. At most
    ``max(2 nnz(w0), n_columns / 4, 100)`` of the kept columns, the strongest, start in the set
    (all of them on a cold start of a design with at most ``COLD_START_ALL_COLUMNS`` columns, where
    extra rounds cost more than the columns); optimality checks add the rest as needed.
    """
    bar = 0.5 * penalty if previous is None else np.maximum(2.0 * penalty - previous, 0.0)
    support = w0 != 0
    score = np.where(support, np.inf, np.abs(gradient) / np.maximum(penalty, 1e-300))
    candidates = np.flatnonzero(support | (np.abs(gradient) >= bar))
    size = max(2 * int(support.sum()), design.n_cols // 4, 100)
    if not support.any() and design.n_cols <= COLD_START_ALL_COLUMNS:
        size = design.n_cols
    if len(candidates) > size:
        candidates = candidates[np.argsort(-score[candidates], kind="stable")[:size]]
    active = np.zeros(design.n_cols, bool)
    active[candidates] = True
    return active


def _merge_rows(A: sp.csr_matrix, labels: np.ndarray, weights: np.ndarray
                ) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Drop rows with no entry and merge identical (row, label) pairs by adding their weights.

    Both leave the weighted loss unchanged up to a constant: an empty row's loss does not depend
    on the weights, and k equal rows weigh as one row of k times the weight. Rows are told apart
    by a random projection of their values (distinct rows collide with probability zero). On large
    inputs, rows are merged only when an even sample of them has at least 10% repeats.
    """
    rows = np.flatnonzero(np.diff(A.indptr) > 0)
    if not len(rows):
        return A[:0], labels[:0], weights[:0]
    if len(rows) < A.shape[0]:
        A, labels, weights = A[rows], labels[rows], weights[rows]
    # one random projection of the values, the label a large offset (|projection| << 1e6)
    keys = A @ np.random.default_rng(0).standard_normal(A.shape[1]) + 1e6 * labels
    if len(keys) > 2 * MERGE_SAMPLE:  # merge only when a sample shows enough repeats to pay for it
        sample = keys[:: len(keys) // MERGE_SAMPLE]
        if len(np.unique(sample)) > 0.9 * len(sample):
            return A, labels, weights
    unique, representatives, group = np.unique(keys, return_index=True, return_inverse=True)
    if len(unique) == len(keys):
        return A, labels, weights
    merged = np.bincount(group, weights=weights)
    return A[representatives], labels[representatives], merged


def _liblinear(design: _Design, penalty: np.ndarray, active: np.ndarray, *, tol: float, max_iter: int,
               random_state: int) -> tuple[np.ndarray, int, bool]:
    """Solve on the ``active`` columns with liblinear's L1 logistic regression (newGLMNET).

    Per-column penalties become one by scaling each column by ``p_min / p_j``; the row weights are
    liblinear's instance weights. Rows are merged first (see :func:`_merge_rows`), so that a small
    working set makes a small problem. Returns (w on all columns, iterations, converged).
    """
    columns = np.flatnonzero(active)
    w = np.zeros(design.n_cols)
    if not len(columns):
        return w, 0, True
    p_min = float(penalty[columns].min())
    A = design.columns(columns)
    A, labels, weights = _merge_rows(A, design.y > 0, design.r)
    if labels.all() or not labels.any():  # one class left: liblinear needs both; FISTA takes it
        sub = np.zeros(design.n_cols, bool)
        sub[columns] = True
        w_sub, n_iter, converged = _fista(design, np.where(sub, penalty, np.inf), w, tol=min(tol, 1e-6),
                                          max_iter=max_iter, rng=np.random.default_rng(random_state))
        return np.where(sub, w_sub, 0.0), n_iter, converged
    scale = p_min / penalty[columns]
    uniform = bool(np.all(weights == weights[0]))  # then the weight goes into C (liblinear is faster without)
    solver = LogisticRegression(l1_ratio=1.0, C=(weights[0] if uniform else 1.0) / p_min, solver="liblinear",
                                fit_intercept=False, tol=tol, max_iter=max_iter, random_state=random_state)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        solver.fit(A if np.all(scale == 1.0) else A @ sp.diags(scale), labels,
                   sample_weight=None if uniform else weights)
    converged = not any(issubclass(item.category, ConvergenceWarning) for item in caught)
    w[columns] = solver.coef_[0] * scale
    return w, int(np.max(solver.n_iter_)), converged


def _fista(design: _Design, penalty: np.ndarray, w0: np.ndarray, *, tol: float, max_iter: int,
           rng: np.random.Generator) -> tuple[np.ndarray, int, bool]:
    """Accelerated proximal gradient with backtracking and momentum restarts; allows zero penalties."""
    v = rng.standard_normal(design.n_cols)
    curvature = 0.0
    for _ in range(30):  # power iteration for the largest eigenvalue of A' R A
        image = design.A.T @ (design.r * (design.A @ v))
        norm = float(np.linalg.norm(image))
        if norm == 0.0:
            break
        curvature, v = norm / max(float(np.linalg.norm(v)), 1e-300), image / norm
    lipschitz = max(0.25 * 1.05 * curvature, 1e-12)
    w = w0.copy()
    z = design.A @ w
    w_prev, z_prev, t = w, z, 1.0
    converged, iteration = False, 0
    for iteration in range(1, max_iter + 1):
        t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        beta = (t - 1.0) / t_next
        yw, yz = w + beta * (w - w_prev), z + beta * (z - z_prev)  # margins are linear in the weights
        f_y, grad = design.loss(yz), design.gradient(yz)
        while True:
            new_w = _soft_threshold(yw - grad / lipschitz, penalty / lipschitz)
            new_z = design.A @ new_w
            step = new_w - yw
            bound = f_y + float(grad @ step) + 0.5 * lipschitz * float(step @ step)
            if design.loss(new_z) <= bound + 1e-12 * max(1.0, abs(bound)):
                break
            lipschitz *= 2.0  # the bound was not a majoriser: smaller steps
        mapping = float(np.max(np.abs(step))) * lipschitz if step.size else 0.0
        if float((yw - new_w) @ (new_w - w)) > 0:  # restart when the momentum points uphill
            t_next = 1.0
        w_prev, z_prev, w, z, t = w, z, new_w, new_z, t_next
        if mapping < tol:
            converged = True
            break
    return w, iteration, converged


def _solve(design: _Design, lambda_b: float, lambda_s: float, *, solver: str, tol: float | None, max_iter: int,
           random_state: int, w0: np.ndarray | None = None, previous: np.ndarray | None = None
           ) -> tuple[np.ndarray, int, bool, float]:
    """Minimise HMDR's objective on ``design``; returns (w, iterations, converged, objective).

    "auto" is "cd" (:mod:`preflens._prox_newton`). liblinear (positive penalties only) runs on a
    screened set of columns and is repeated with the columns whose optimality condition fails until
    none does, so all three answer the full problem.
    """
    penalty = design.penalties(lambda_b, lambda_s)
    if solver == "auto":
        solver = "cd"
    loss: float | None = None  # the cd solver returns it; the others' is computed from the margins z
    if solver == "cd":
        w, z, n_iter, converged, loss = _prox_newton.solve(
            design.by_column, design.y, design.r, penalty, w0, tol=1e-4 if tol is None else tol, max_iter=max_iter)
    elif solver == "fista":
        start = np.zeros(design.n_cols) if w0 is None else w0
        w, n_iter, converged = _fista(design, penalty, start, tol=1e-6 if tol is None else tol, max_iter=max_iter,
                                      rng=np.random.default_rng(random_state))
        z = design.A @ w
    else:
        if penalty.size and penalty.min() <= 0:
            raise ConfigError("solver='liblinear' needs positive lambdas; use solver='fista' (or 'auto') for zero")
        tol = 1e-4 if tol is None else tol
        z = np.zeros(len(design.r)) if w0 is None else design.A @ w0
        gradient = design.gradient(z)
        if w0 is None:  # a cold start is a path from lambda_max, where every weight is zero
            w0, previous = np.zeros(design.n_cols), design.penalties(*design.lambda_max(gradient))
        active = _screen(design, penalty, w0, gradient, previous)
        n_iter, converged = 0, True
        while True:  # working sets: solve on the active columns, add those whose optimality fails
            w, rounds, ok = _liblinear(design, penalty, active, tol=tol, max_iter=max_iter,
                                       random_state=random_state)
            n_iter, converged = n_iter + rounds, converged and ok
            z = design.A @ w
            excess = np.where(active, 0.0, np.abs(design.gradient(z)) - penalty * (1.0 + 1e-4))
            violators = np.flatnonzero(excess > 0)
            if not len(violators):
                break
            grow = max(int(active.sum()), 10)
            active[violators[np.argsort(-excess[violators], kind="stable")[:grow]]] = True
    return w, n_iter, converged, (design.loss(z) if loss is None else loss) + float(penalty @ np.abs(w))


class HMDR(ClassifierMixin, BaseEstimator):
    """Hierarchical Multi-Domain Regression: shared plus per-domain sparse logistic weights.

    Parameters
    ----------
    alpha : float, default=None
        Weight of the shared-only loss; ``None`` means ``1 / n_domains`` as in the paper.
        ``alpha=0`` is the paper's "Dirty" ablation.
    lambda_shared : float, default=0.125
        L1 penalty on the shared weights ``b``.
    lambda_domain : float, default=0.0625
        L1 penalty on the domain deviations ``s_d``.
    mode : {"hmdr", "shared", "specific"}, default="hmdr"
        "shared": ``b`` only (the "Shared" ablation); "specific": per-domain models with no
        shared part (the "Specific" ablation; an unknown domain gets P = 0.5).
    solver : {"auto", "cd", "liblinear", "fista"}, default="auto"
        "cd" (what "auto" picks): proximal Newton with coordinate descent on working sets,
        compiled by Numba. "liblinear": scikit-learn's liblinear
        (newGLMNET) on the augmented design, with strong-rule screening; needs both lambdas
        positive. "fista": accelerated proximal gradient. All three take the same objective.
    tol : float, default=None
        The stopping tolerance. For "cd", the largest violation of the optimality conditions
        relative to the largest |gradient| at zero (default 1e-4, within 1e-6 of the optimum's
        objective in our measurements); liblinear's ``tol`` (default 1e-4); for FISTA, the largest
        entry of the proximal gradient mapping (default 1e-6).
    max_iter : int, default=5000
    random_state : int, default=0
        Seeds liblinear's coordinate order and FISTA's power iteration ("cd" is deterministic).
    controls : list of str or int, default=None
        Concepts (names, or column indices) fitted as controls: in ``b`` only and with no L1
        penalty, so every other weight is read net of them (length, say). liblinear cannot leave a
        column unpenalised: with controls use "cd" or "fista".

    Attributes
    ----------
    shared_coef_ : ndarray of shape (n_concepts,)
        ``b``; zero outside the shared concepts.
    domain_coef_ : ndarray of shape (n_domains, n_concepts)
        ``s_d`` per domain; zero outside each domain's concepts.
    domains_ : ndarray of shape (n_domains,)
    feature_names_in_ : ndarray of shape (n_concepts,)
    shared_mask_ : ndarray of bool, shape (n_concepts,)
    membership_ : ndarray of bool, shape (n_domains, n_concepts)
    control_mask_ : ndarray of bool, shape (n_concepts,)
    classes_ : ndarray, [0, 1] (1 = response A preferred)
    n_iter_ : int
    converged_ : bool
    objective_ : float
    alpha_ : float
        The alpha used (resolved from ``alpha=None``).
    """

    def __init__(self, *, alpha: float | None = None, lambda_shared: float = 0.125,
                 lambda_domain: float = 0.0625, mode: str = "hmdr", solver: str = "auto", tol: float | None = None,
                 max_iter: int = 5000, random_state: int = 0, controls: Sequence[str | int] | None = None) -> None:
        self.alpha = alpha
        self.lambda_shared = lambda_shared
        self.lambda_domain = lambda_domain
        self.mode = mode
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state
        self.controls = controls

    # -- validation ---------------------------------------------------------------------

    def _check_params(self) -> None:
        for name in ("lambda_shared", "lambda_domain"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value < 0 or not math.isfinite(value):
                raise ConfigError(f"The '{name}' parameter of HMDR must be a float in the range [0, inf). Got {value!r} instead.")
        if self.alpha is not None and (not isinstance(self.alpha, (int, float)) or self.alpha < 0):
            raise ConfigError(f"The 'alpha' parameter of HMDR must be None or a float >= 0. Got {self.alpha!r} instead.")
        if self.mode not in MODES:
            raise ConfigError(f"The 'mode' parameter of HMDR must be one of {MODES}. Got {self.mode!r} instead.")
        if self.solver not in SOLVERS:
            raise ConfigError(f"The 'solver' parameter of HMDR must be one of {SOLVERS}. Got {self.solver!r} instead.")

    @staticmethod
    def _as_matrix(X: Any) -> tuple[sp.csr_matrix, np.ndarray | None]:
        """X as a CSR matrix of floats, and its column names when it has them; errors in scikit-learn's words."""
        names = None
        if hasattr(X, "columns"):
            names = np.asarray([str(c) for c in X.columns], dtype=object)
            X = X.to_numpy(dtype=float)
        if not sp.issparse(X):
            X = np.asarray(X)
            if np.iscomplexobj(X):
                raise ValueError("Complex data not supported; X must hold real numbers")
            if X.ndim != 2:
                raise ValueError(f"Expected 2D array, got {X.ndim}D array instead. Reshape your data with "
                                 "array.reshape(-1, 1) for one concept or array.reshape(1, -1) for one pair")
        matrix = sp.csr_matrix(X, dtype=float)
        if matrix.shape[0] == 0 or matrix.shape[1] == 0:
            what = "sample(s)" if matrix.shape[0] == 0 else "feature(s)"
            raise ValueError(f"Found array with 0 {what} (shape={matrix.shape}) while a minimum of 1 is required.")
        if matrix.nnz and not np.all(np.isfinite(matrix.data)):
            raise ValueError("X contains NaN or infinity; fill missing concept values (e.g. with 0) first")
        return matrix, names

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True  # a CSR matrix is what the solver uses anyway
        tags.classifier_tags.multi_class = False  # one preference per pair: A or B
        return tags

    def _domain_codes(self, domains: Any, n_rows: int) -> np.ndarray:
        """Codes into domains_, or -1 for unknown/missing domains.

        ``domains=None`` means the one domain of a model fitted without domains, else unknown.
        """
        if domains is None:
            fitted_without = len(self.domains_) == 1 and self.domains_[0] == DEFAULT_DOMAIN
            return np.full(n_rows, 0 if fitted_without else -1)
        domains = np.asarray(domains, dtype=object)
        if len(domains) != n_rows:
            raise ValueError(f"domains has {len(domains)} entries but X has {n_rows} rows")
        codes, uniques = pd.factorize(domains, use_na_sentinel=True)
        lookup = pd.Index(self.domains_).get_indexer(pd.Index(uniques, dtype=object))
        return np.where(codes >= 0, lookup[codes], -1)

    # -- fitting ----------------------------------------------------------------------

    def fit(self, X: Any, y: Any, *, domains: Any = None, shared: Any = None, membership: Any = None,
            coef_init: tuple[np.ndarray, np.ndarray] | None = None) -> HMDR:
        """Fit on pairs X (n x concepts) with y = 1 when A is preferred, 0 when B is.

        Ties (y = 0.5) and missing labels (NaN) are left out. ``domains`` gives each row's domain
        (default: one domain). ``shared`` is a boolean mask of shared concepts (default: all);
        ``membership`` a boolean (n_domains x n_concepts) array, rows in the order of
        ``np.unique(domains)``, saying which concepts belong to which domain (default: all).
        ``coef_init`` (b, s) starts the solver's screening from another solution.
        """
        design = self._prepare(X, y, domains=domains, shared=shared, membership=membership)
        w0 = None if coef_init is None else design.from_coefs(np.asarray(coef_init[0], float),
                                                                 np.asarray(coef_init[1], float))
        self._fit_design(design, w0)
        return self

    def _prepare(self, X: Any, y: Any, *, domains: Any, shared: Any, membership: Any) -> _Design:
        """Check the inputs, set the fitted layout (domains, masks, alpha) and build the design."""
        self._check_params()
        matrix, names = self._as_matrix(X)
        y_values = _as_targets(y)
        y_values = np.where(np.isin(y_values, (0.0, 1.0)), y_values, np.nan)
        if len(y_values) != matrix.shape[0]:
            raise ValueError(f"y has {len(y_values)} entries but X has {matrix.shape[0]} rows")
        domain_values = np.asarray(domains if domains is not None else [], dtype=object)
        if domains is not None and len(domain_values) != matrix.shape[0]:
            raise ValueError(f"domains has {len(domain_values)} entries but X has {matrix.shape[0]} rows")
        keep = ~np.isnan(y_values)
        if keep.sum() < 2 or len(np.unique(y_values[keep])) < 2:
            raise ValueError("HMDR needs labels of both classes (A preferred and B preferred) after dropping ties; "
                             "found 1 class or fewer than 2 labelled pairs")
        self.domains_ = np.array([DEFAULT_DOMAIN] if domains is None else sorted(pd.unique(domain_values).tolist(), key=str),
                                 dtype=object)
        n_domains, n_features = len(self.domains_), matrix.shape[1]
        self.n_features_in_ = n_features
        self.feature_names_in_ = names if names is not None else np.array([f"x{j}" for j in range(n_features)], dtype=object)
        self.shared_mask_ = np.ones(n_features, bool) if shared is None else np.asarray(shared, bool)
        self.membership_ = (np.ones((n_domains, n_features), bool) if membership is None
                            else np.asarray(membership, bool))
        if self.shared_mask_.shape != (n_features,) or self.membership_.shape != (n_domains, n_features):
            raise ValueError(f"shared must have shape ({n_features},) and membership ({n_domains}, {n_features}); "
                             f"got {self.shared_mask_.shape} and {self.membership_.shape}")
        self.control_mask_ = self._control_mask()
        self.shared_mask_ = self.shared_mask_ | self.control_mask_  # a control is in b only, whatever the masks say
        self.membership_ = self.membership_ & ~self.control_mask_
        self.classes_ = np.array([0, 1])
        self.alpha_ = float(self.alpha) if self.alpha is not None else 1.0 / n_domains
        codes = np.zeros(matrix.shape[0], int) if domains is None else self._domain_codes(domain_values, matrix.shape[0])
        if keep.all():
            return self._design(matrix, y_values, codes)
        return self._design(matrix[keep], y_values[keep], codes[keep])

    def _control_mask(self) -> np.ndarray:
        """The features named (or indexed) by ``controls``."""
        mask = np.zeros(self.n_features_in_, bool)
        names = [str(n) for n in self.feature_names_in_]
        for control in self.controls or ():
            if isinstance(control, (int, np.integer)) and not isinstance(control, bool):
                if not 0 <= int(control) < len(names):
                    raise ConfigError(f"control {control}: there are {len(names)} concepts")
                mask[int(control)] = True
            elif str(control) in names:
                mask[names.index(str(control))] = True
            else:
                raise ConfigError(f"control '{control}' is not a concept of this fit; concepts: {', '.join(names)}")
        return mask

    def _design(self, matrix: sp.csr_matrix, y01: np.ndarray, codes: np.ndarray) -> _Design:
        """The augmented design of the fitted masks and mode for these rows."""
        n_domains, n_features = self.membership_.shape
        mask_b = self.shared_mask_.copy() if self.mode != "specific" else np.zeros(n_features, bool)
        mask_s = (self.membership_ | self.shared_mask_) if self.mode != "shared" else np.zeros((n_domains, n_features), bool)
        mask_b = mask_b | self.control_mask_
        mask_s = mask_s & ~self.control_mask_
        return _Design(matrix, 2.0 * y01 - 1.0, codes, n_domains, mask_b, mask_s, self.alpha_,
                       use_shared_loss=self.mode == "hmdr", unpenalised=self.control_mask_)

    def _fit_design(self, design: _Design, w0: np.ndarray | None, previous: np.ndarray | None = None) -> np.ndarray:
        """Solve on a prepared design and set the fitted weights; returns the design's weight vector."""
        w, n_iter, converged, objective = _solve(
            design, self.lambda_shared, self.lambda_domain, solver=self.solver, tol=self.tol,
            max_iter=self.max_iter, random_state=self.random_state, w0=w0, previous=previous)
        self.shared_coef_, self.domain_coef_ = design.to_coefs(w)
        self.n_iter_, self.converged_, self.objective_ = n_iter, converged, objective
        if not converged:
            warnings.warn(
                f"HMDR did not converge in {self.max_iter} iterations (tol={self.tol}); raise max_iter "
                "or the lambdas", ConvergenceWarning, stacklevel=3)
        return w

    # -- prediction ---------------------------------------------------------------------

    def coef_for(self, domain: Any) -> np.ndarray:
        """The weights b + s_d used for one domain (b alone for an unknown domain)."""
        check_is_fitted(self, "shared_coef_")
        codes = self._domain_codes([domain], 1)
        return self.shared_coef_ + (self.domain_coef_[codes[0]] if codes[0] >= 0 else 0.0)

    def decision_function(self, X: Any, *, domains: Any = None) -> np.ndarray:
        """The logit of P(A preferred) for each row."""
        check_is_fitted(self, "shared_coef_")
        matrix, _ = self._as_matrix(X)
        if matrix.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {matrix.shape[1]} features, but HMDR is expecting {self.n_features_in_} features "
                             "as input (one per concept it was fitted with)")
        codes = self._domain_codes(domains, matrix.shape[0])
        logits = matrix @ self.shared_coef_
        for d in range(len(self.domains_)):
            rows = np.flatnonzero(codes == d)
            if len(rows):
                logits[rows] += matrix[rows] @ self.domain_coef_[d]
        return np.asarray(logits)

    def predict_proba(self, X: Any, *, domains: Any = None) -> np.ndarray:
        """Columns [P(B preferred), P(A preferred)]."""
        p = _sigmoid(self.decision_function(X, domains=domains))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any, *, domains: Any = None) -> np.ndarray:
        """1 when A is predicted to be preferred, else 0 (a logit of exactly 0 predicts 0)."""
        return (self.decision_function(X, domains=domains) > 0).astype(int)

    def score(self, X: Any, y: Any, sample_weight: Any = None, *, domains: Any = None) -> float:
        """Accuracy (weighted by ``sample_weight`` when given) on the rows with a non-tie label."""
        y_values = labels_to_y(list(y)) if not isinstance(y, np.ndarray) or y.dtype == object else np.asarray(y, float)
        keep = np.isin(y_values, (0.0, 1.0))
        if not keep.any():
            return float("nan")
        correct = (self.predict(X, domains=domains) == y_values)[keep]
        weights = None if sample_weight is None else np.asarray(sample_weight, dtype=float)[keep]
        return float(np.average(correct, weights=weights))

    # -- persistence ----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The fitted model as plain data (JSON-safe)."""
        check_is_fitted(self, "shared_coef_")
        return {
            "format": MODEL_FORMAT,
            "preflens_version": __version__,
            "params": self.get_params(),
            "alpha_": self.alpha_,
            "domains_": [str(d) for d in self.domains_],
            "feature_names_in_": [str(n) for n in self.feature_names_in_],
            "shared_mask_": self.shared_mask_.tolist(),
            "membership_": self.membership_.tolist(),
            "control_mask_": self.control_mask_.tolist(),
            "shared_coef_": self.shared_coef_.tolist(),
            "domain_coef_": self.domain_coef_.tolist(),
            "n_iter_": int(self.n_iter_),
            "converged_": bool(self.converged_),
            "objective_": float(self.objective_),
        }

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), allow_nan=False) + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HMDR:
        if data.get("format") != MODEL_FORMAT:
            raise ValueError(f"not a preflens HMDR model (format {data.get('format')!r}, expected {MODEL_FORMAT})")
        model = cls(**data["params"])
        model.alpha_ = float(data["alpha_"])
        model.domains_ = np.array(data["domains_"], dtype=object)
        model.feature_names_in_ = np.array(data["feature_names_in_"], dtype=object)
        model.n_features_in_ = len(model.feature_names_in_)
        model.shared_mask_ = np.array(data["shared_mask_"], bool)
        model.membership_ = np.array(data["membership_"], bool).reshape(len(model.domains_), model.n_features_in_)
        model.control_mask_ = np.array(data.get("control_mask_") or [False] * model.n_features_in_, bool)
        model.shared_coef_ = np.array(data["shared_coef_"], float)
        model.domain_coef_ = np.array(data["domain_coef_"], float).reshape(len(model.domains_), model.n_features_in_)
        model.classes_ = np.array([0, 1])
        model.n_iter_, model.converged_, model.objective_ = data["n_iter_"], data["converged_"], data["objective_"]
        return model

    @classmethod
    def from_json(cls, path: str | Path) -> HMDR:
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as exc:
            from .errors import DataError

            raise DataError(f"{path}: not a readable model file ({type(exc).__name__}: {str(exc)[:120]}); delete it "
                            "and rerun 'preflens fit'") from None


# ------------------------------------------------------------------------------------------
# Hyper-parameter search
# ------------------------------------------------------------------------------------------


GRID_FRACTIONS = tuple(float(f) for f in np.geomspace(1.0, 0.01, 5))
PATH_FRACTIONS = tuple(float(f) for f in np.geomspace(1.0, 0.01, 9))


def default_grid(lambda_max_shared: float, lambda_max_domain: float, mode: str = "hmdr") -> list[dict[str, float]]:
    """Lambdas as fractions of lambda_max, the smallest penalty at which every weight is zero.

    HMDR and Dirty: lambda_shared and lambda_domain each take 5 fractions of their own lambda_max,
    1 to 0.01 log-spaced (25 pairs, in an order where each point is next to the one before, for
    warm starts). Shared and Specific: their one lambda takes 9 fractions, 1 to 0.01. Duplicates
    are dropped. A lambda_max of zero (no column can move) becomes a tiny positive value.
    """
    shared_max, domain_max = max(lambda_max_shared, 1e-12), max(lambda_max_domain, 1e-12)
    if mode == "hmdr":
        points = []
        for i, fraction_b in enumerate(GRID_FRACTIONS):
            for fraction_s in (GRID_FRACTIONS if i % 2 == 0 else GRID_FRACTIONS[::-1]):
                points.append({"lambda_shared": shared_max * fraction_b, "lambda_domain": domain_max * fraction_s})
    else:
        key, top = ("lambda_shared", shared_max) if mode == "shared" else ("lambda_domain", domain_max)
        points = [{key: top * fraction} for fraction in PATH_FRACTIONS]
    unique: list[dict[str, float]] = []
    for point in points:
        if point not in unique:
            unique.append(point)
    return unique


def lambda_max(estimator: HMDR, X: Any, y: Any, *, domains: Any = None, shared: Any = None,
               membership: Any = None) -> tuple[float, float]:
    """(lambda_shared, lambda_domain) above which ``estimator``'s fit on this data is all zeros.

    For this objective it is the largest |gradient| at zero over each penalty's columns,
    ||A' (r y / 2)||_inf (0.0 for a part the mode does not have).
    """
    model = HMDR(**estimator.get_params())
    return model._prepare(X, y, domains=domains, shared=shared, membership=membership).lambda_max()


def hmdr_path(estimator: HMDR, X: Any, y: Any, grid: Sequence[dict[str, float]], *, domains: Any = None,
              shared: Any = None, membership: Any = None) -> list[HMDR]:
    """``estimator`` fitted at every setting of ``grid``, in order, as one warm-started path.

    The design is built once; each fit's screening starts from the fit before it (the sequential
    strong rule), so a grid ordered from strong to weak penalties, each point next to the one before,
    runs fastest. Each returned model is a full HMDR, the same as one fitted alone.
    """
    model = HMDR(**estimator.get_params())
    design = model._prepare(X, y, domains=domains, shared=shared, membership=membership)
    models: list[HMDR] = []
    w, previous = None, None
    for point in grid:
        model.set_params(**point)
        w = model._fit_design(design, w, previous)
        previous = design.penalties(model.lambda_shared, model.lambda_domain)
        models.append(copy.copy(model))
    return models


FALLBACK_FRACTION = 0.1


def fallback_lambdas(estimator: HMDR, X: Any, y: Any, **fit_kwargs: Any) -> dict[str, float]:
    """Lambdas at ``FALLBACK_FRACTION`` x lambda_max, for data too small to cross-validate."""
    top_shared, top_domain = lambda_max(estimator, X, y, **fit_kwargs)
    return {"lambda_shared": max(FALLBACK_FRACTION * top_shared, 1e-12),
            "lambda_domain": max(FALLBACK_FRACTION * top_domain, 1e-12)}


class HMDRSearch(ClassifierMixin, BaseEstimator):
    """Choose HMDR's lambdas by k-fold cross-validation on the training set, then refit.

    A classifier in the style of ``LogisticRegressionCV``: once fitted, it predicts with the
    refitted ``best_estimator_``.

    The default grid is relative to the data (:func:`default_grid` of :func:`lambda_max` on the
    training set, as glmnet and scikit-learn do). Each fold builds its design once and runs the
    grid as a path: each fit starts from the previous fit's solution, whose screening keeps the
    solver on the columns that can be non-zero. Folds are stratified by domain and label.

    Parameters
    ----------
    estimator : HMDR
        The model whose other parameters (alpha, mode, tol, ...) are kept.
    grid : list of dict, optional
        Parameter settings to try (default: :func:`default_grid` for the data).
    cv : int, default=5
    scoring : {"accuracy", "log_loss"}, default="accuracy"
        What the search maximises over the folds: accuracy (the paper's choice) or minus the mean
        log-loss (smoother, and in our measurements it picks denser models).
    random_state : int, default=0

    Attributes
    ----------
    best_params_ : dict
    best_estimator_ : HMDR
        Refitted on all the training data with ``best_params_``.
    cv_results_ : list of dict
        Per setting: the params, mean and std of the fold accuracies, the mean log-loss and the
        mean number of non-zero weights.
    lambda_max_ : tuple of float
        (lambda_shared, lambda_domain) at which the fit on all the training data is all zeros.
    """

    def __init__(self, estimator: HMDR | None = None, *, grid: list[dict[str, float]] | None = None,
                 cv: int = 5, scoring: str = "accuracy", random_state: int = 0) -> None:
        self.estimator = estimator
        self.grid = grid
        self.cv = cv
        self.scoring = scoring
        self.random_state = random_state

    def fit(self, X: Any, y: Any, *, domains: Any = None, shared: Any = None, membership: Any = None) -> HMDRSearch:
        matrix_all, names = HMDR._as_matrix(X)
        targets = _as_targets(y)
        y_values = np.where(np.isin(targets, (0.0, 1.0)), targets, np.nan)
        if len(y_values) != matrix_all.shape[0]:
            raise ValueError(f"y has {len(y_values)} entries but X has {matrix_all.shape[0]} rows")
        domain_values = np.asarray(domains if domains is not None else [DEFAULT_DOMAIN] * len(y_values), dtype=object)
        keep = np.isin(y_values, (0.0, 1.0))
        matrix = matrix_all[keep]
        y_kept, d_kept = y_values[keep], domain_values[keep]
        base = self.estimator if self.estimator is not None else HMDR()
        estimator = _with_control_indices(base, names)  # the folds see a matrix without names
        params = estimator.get_params()
        all_domains = sorted(set(domain_values.tolist()), key=str)
        refit = HMDR(**params)  # its design on all the training data gives lambda_max_, then the refit
        full_design = refit._prepare(matrix, y_kept, domains=d_kept, shared=shared,
                                     membership=_membership_for(membership, all_domains, d_kept))
        self.lambda_max_ = full_design.lambda_max()
        if self.grid:  # strongest penalty first, so that each warm start moves toward denser solutions
            grid = sorted(self.grid, key=lambda point: -sum(point.values()))
        else:
            grid = default_grid(*self.lambda_max_, mode=base.mode)
        strata = np.array([f"{d}|{int(v)}" for d, v in zip(d_kept, y_kept)])
        _, counts = np.unique(strata, return_counts=True)
        if counts.min() < self.cv:
            strata = y_kept.astype(int).astype(str)
        folds = StratifiedKFold(self.cv, shuffle=True, random_state=self.random_state).split(matrix, strata)
        scores = np.zeros((len(grid), self.cv))
        losses = np.zeros((len(grid), self.cv))
        sizes = np.zeros((len(grid), self.cv))
        for fold, (train, test) in enumerate(folds):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                path = hmdr_path(estimator, matrix[train], y_kept[train], grid, domains=d_kept[train],
                                 shared=shared, membership=_membership_for(membership, all_domains, d_kept[train]))
            for index, model in enumerate(path):
                logits = model.decision_function(matrix[test], domains=d_kept[test])
                scores[index, fold] = float(np.mean((logits > 0) == (y_kept[test] == 1)))
                losses[index, fold] = float(np.mean(_log1pexp(-(2 * y_kept[test] - 1) * logits)))
                sizes[index, fold] = np.count_nonzero(model.shared_coef_) + np.count_nonzero(model.domain_coef_)
        means, mean_losses, mean_sizes = scores.mean(axis=1), losses.mean(axis=1), sizes.mean(axis=1)
        criterion = mean_losses if self.scoring == "log_loss" else -means
        best = int(np.argmin(criterion))  # ties go to the earlier, more strongly penalised setting
        self.cv_results_ = [{"params": grid[i], "mean_accuracy": float(means[i]), "std_accuracy": float(scores[i].std()),
                             "mean_log_loss": float(mean_losses[i]), "mean_nonzero": float(mean_sizes[i])}
                            for i in range(len(grid))]
        self.best_params_ = dict(grid[best])
        refit.set_params(**self.best_params_)
        refit._fit_design(full_design, None)
        if names is not None:
            refit.feature_names_in_ = np.asarray([str(n) for n in names], dtype=object)
        self.best_estimator_ = refit
        self.classes_ = refit.classes_
        self.n_features_in_ = refit.n_features_in_
        if names is not None:
            self.feature_names_in_ = refit.feature_names_in_
        return self

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.classifier_tags.multi_class = False
        return tags

    def decision_function(self, X: Any, *, domains: Any = None) -> np.ndarray:
        """The best estimator's logit of P(A preferred)."""
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.decision_function(X, domains=domains)

    def predict_proba(self, X: Any, *, domains: Any = None) -> np.ndarray:
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.predict_proba(X, domains=domains)

    def predict(self, X: Any, *, domains: Any = None) -> np.ndarray:
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.predict(X, domains=domains)

    def score(self, X: Any, y: Any, sample_weight: Any = None, *, domains: Any = None) -> float:
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.score(X, y, sample_weight, domains=domains)


def _with_control_indices(estimator: HMDR, names: Any) -> HMDR:
    """The estimator with its controls given by column index (for fits on a matrix without names)."""
    if not estimator.controls or names is None:
        return estimator
    lookup = {str(n): i for i, n in enumerate(names)}
    indices = []
    for control in estimator.controls:
        if isinstance(control, (int, np.integer)) and not isinstance(control, bool):
            indices.append(int(control))
        elif str(control) in lookup:
            indices.append(lookup[str(control)])
        else:
            raise ConfigError(f"control '{control}' is not a concept of this fit; concepts: "
                              + ", ".join(map(str, names)))
    return clone(estimator).set_params(controls=indices)


def _membership_for(membership: Any, all_domains: list[Any], subset: np.ndarray) -> Any:
    """Rows of a full membership array for the domains present in a subset (sorted order)."""
    if membership is None:
        return None
    present = sorted(set(subset.tolist()), key=str)
    index = {d: i for i, d in enumerate(all_domains)}
    return np.asarray(membership, bool)[[index[d] for d in present]]


def check_fitted(model: Any) -> None:
    """Raise sklearn's NotFittedError with the fix when a model is not fitted."""
    try:
        check_is_fitted(model, "shared_coef_")
    except NotFittedError:
        raise NotFittedError("This HMDR is not fitted yet; call 'fit' first") from None

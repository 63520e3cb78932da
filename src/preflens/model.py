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
- **Solver: FISTA** (accelerated proximal gradient) with a block-diagonal step (one step size for
  ``b``, one per ``s_d``, from power-iteration bounds of each domain's curvature, with backtracking as
  a safeguard) and gradient-based momentum restarts. Soft-thresholding gives weights that are
  exactly zero, not small.
- **Convergence**: stop when the largest entry of the gradient mapping is below ``tol``; a
  :class:`~sklearn.exceptions.ConvergenceWarning` when ``max_iter`` is reached first.
- **No intercept, and the (-x, -y) augmentation is implied.** For a logistic model without an
  intercept, the augmented pair (-x, -y) has exactly the loss of (x, y), so adding it changes
  nothing but the run time; the model is symmetric by construction: P(A over B | x) =
  1 - P(B over A | -x). (A test checks the identity.)
- **Unknown or missing domain**: predicted with ``b`` alone.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Sequence
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import StratifiedKFold
from sklearn.utils.validation import check_is_fitted

from ._version import __version__
from .errors import ConfigError

MODES = ("hmdr", "shared", "specific")
MODEL_FORMAT = "preflens-hmdr/1"


def _log1pexp(t: np.ndarray) -> np.ndarray:
    """log(1 + exp(t)) without overflow."""
    return np.logaddexp(0.0, t)


def _sigmoid(t: np.ndarray) -> np.ndarray:
    out = np.empty_like(t, dtype=float)
    positive = t >= 0
    out[positive] = 1.0 / (1.0 + np.exp(-t[positive]))
    exp_t = np.exp(t[~positive])
    out[~positive] = exp_t / (1.0 + exp_t)
    return out


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


class _Problem:
    """A training problem laid out for the solver: rows sorted by domain, sparse features."""

    def __init__(self, X: sp.csr_matrix, y_pm: np.ndarray, domain_codes: np.ndarray, n_domains: int,
                 mask_b: np.ndarray, mask_s: np.ndarray, alpha: float, use_shared_loss: bool) -> None:
        order = np.argsort(domain_codes, kind="stable")
        self.X = X[order].tocsr()
        self.XT = self.X.T.tocsr()
        self.y = y_pm[order]
        codes = domain_codes[order]
        self.n_domains = n_domains
        self.bounds = np.searchsorted(codes, np.arange(n_domains + 1))
        counts = np.diff(self.bounds)
        self.row_weight = np.zeros(len(codes))
        for d in range(n_domains):
            if counts[d]:
                self.row_weight[self.bounds[d]:self.bounds[d + 1]] = 1.0 / counts[d]
        self.blocks = [self.X[self.bounds[d]:self.bounds[d + 1]] for d in range(n_domains)]
        self.blocks_T = [block.T.tocsr() for block in self.blocks]
        self.mask_b = mask_b
        self.mask_s = mask_s
        self.alpha = alpha
        self.use_shared_loss = use_shared_loss and alpha > 0
        self.n_features = X.shape[1]

    def margins(self, b: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(u, z): u = X b and z = X (b + s_d(i)) for every row."""
        u = self.X @ b
        z = u.copy()
        for d, block in enumerate(self.blocks):
            if block.shape[0] and self.mask_s[d].any():
                z[self.bounds[d]:self.bounds[d + 1]] += block @ s[d]
        return u, z

    def loss(self, u: np.ndarray, z: np.ndarray) -> float:
        value = float(self.row_weight @ _log1pexp(-self.y * z))
        if self.use_shared_loss:
            value += self.alpha * float(self.row_weight @ _log1pexp(-self.y * u))
        return value

    def gradient(self, u: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        r = -self.y * _sigmoid(-self.y * z) * self.row_weight
        total = r
        if self.use_shared_loss:
            total = r + self.alpha * (-self.y * _sigmoid(-self.y * u) * self.row_weight)
        grad_b = self.XT @ total if self.mask_b.any() else np.zeros(self.n_features)
        grad_s = np.zeros((self.n_domains, self.n_features))
        for d, block_T in enumerate(self.blocks_T):
            if block_T.shape[1] and self.mask_s[d].any():
                grad_s[d] = block_T @ r[self.bounds[d]:self.bounds[d + 1]]
        return grad_b * self.mask_b, grad_s * self.mask_s

    def curvature(self, rng: np.random.Generator) -> tuple[float, np.ndarray]:
        """Step bounds (L_b, L_s[d]) such that 0.5 * dtheta' M dtheta majorises the loss's curvature."""
        h = np.zeros(self.n_domains)
        for d, block in enumerate(self.blocks):
            n_d = block.shape[0]
            if not n_d:
                continue
            v = rng.standard_normal(self.n_features)
            eig = 0.0
            for _ in range(30):
                w = block.T @ (block @ v)
                norm = float(np.linalg.norm(w))
                if norm == 0.0:
                    break
                eig, v = norm / max(float(np.linalg.norm(v)), 1e-300), w / norm
            h[d] = 1.05 * eig / n_d
        # (u + v)' H (u + v) <= 2 u'Hu + 2 v'Hv and the logistic curvature is at most 1/4.
        factor = (2.0 if self.mask_s.any() else 1.0) + (self.alpha if self.use_shared_loss else 0.0)
        lipschitz_b = 0.25 * factor * float(h.sum())
        lipschitz_s = 0.25 * 2.0 * h
        return max(lipschitz_b, 1e-12), np.maximum(lipschitz_s, 1e-12)


def _soft_threshold(value: np.ndarray, threshold: np.ndarray | float) -> np.ndarray:
    return np.sign(value) * np.maximum(np.abs(value) - threshold, 0.0) + 0.0  # + 0.0 turns -0.0 into 0.0


def _fista(problem: _Problem, lambda_b: float, lambda_s: float, b0: np.ndarray, s0: np.ndarray, *,
           tol: float, max_iter: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int, bool, float]:
    """Minimise the objective; returns (b, s, iterations, converged, objective)."""
    lip_b, lip_s = problem.curvature(rng)
    b, s = b0 * problem.mask_b, s0 * problem.mask_s
    u, z = problem.margins(b, s)
    b_prev, s_prev, u_prev, z_prev = b, s, u, z
    t = 1.0
    converged = False
    iteration = 0

    def penalty(bv: np.ndarray, sv: np.ndarray) -> float:
        return lambda_b * float(np.abs(bv).sum()) + lambda_s * float(np.abs(sv).sum())

    for iteration in range(1, max_iter + 1):
        t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        beta = (t - 1.0) / t_next
        yb, ys = b + beta * (b - b_prev), s + beta * (s - s_prev)
        yu, yz = u + beta * (u - u_prev), z + beta * (z - z_prev)  # margins are linear in the weights
        f_y = problem.loss(yu, yz)
        grad_b, grad_s = problem.gradient(yu, yz)
        while True:
            new_b = _soft_threshold(yb - grad_b / lip_b, lambda_b / lip_b) * problem.mask_b
            new_s = _soft_threshold(ys - grad_s / lip_s[:, None], (lambda_s / lip_s)[:, None]) * problem.mask_s
            new_u, new_z = problem.margins(new_b, new_s)
            db, ds = new_b - yb, new_s - ys
            bound = (f_y + float(grad_b @ db) + float((grad_s * ds).sum())
                     + 0.5 * lip_b * float(db @ db) + 0.5 * float((lip_s[:, None] * ds * ds).sum()))
            if problem.loss(new_u, new_z) <= bound + 1e-12 * max(1.0, abs(bound)):
                break
            lip_b, lip_s = lip_b * 2.0, lip_s * 2.0  # the bound was not a majoriser: smaller steps
        mapping = max(float(np.max(np.abs(db)) * lip_b) if db.size else 0.0,
                      float(np.max(np.abs(ds) * lip_s[:, None])) if ds.size else 0.0)
        # Restart the momentum when it points uphill (O'Donoghue and Candes, 2015).
        if float((yb - new_b) @ (new_b - b)) + float(((ys - new_s) * (new_s - s)).sum()) > 0:
            t_next = 1.0
        b_prev, s_prev, u_prev, z_prev = b, s, u, z
        b, s, u, z = new_b, new_s, new_u, new_z
        t = t_next
        if mapping < tol:
            converged = True
            break
    objective = problem.loss(u, z) + penalty(b, s)
    return b, s, iteration, converged, objective


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
    tol : float, default=1e-6
        Stop when the largest entry of the proximal gradient mapping is below this.
    max_iter : int, default=5000
    random_state : int, default=0
        Seeds the power iteration that sizes the steps.

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
    classes_ : ndarray, [0, 1] (1 = response A preferred)
    n_iter_ : int
    converged_ : bool
    objective_ : float
    alpha_ : float
        The alpha used (resolved from ``alpha=None``).
    """

    def __init__(self, *, alpha: float | None = None, lambda_shared: float = 0.125,
                 lambda_domain: float = 0.0625, mode: str = "hmdr", tol: float = 1e-6,
                 max_iter: int = 5000, random_state: int = 0) -> None:
        self.alpha = alpha
        self.lambda_shared = lambda_shared
        self.lambda_domain = lambda_domain
        self.mode = mode
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state

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

    @staticmethod
    def _as_matrix(X: Any) -> tuple[sp.csr_matrix, np.ndarray | None]:
        names = None
        if hasattr(X, "columns"):
            names = np.asarray([str(c) for c in X.columns], dtype=object)
            X = X.to_numpy(dtype=float)
        matrix = sp.csr_matrix(X, dtype=float)
        if matrix.ndim != 2:
            raise ValueError(f"X must be 2-dimensional; got shape {matrix.shape}")
        if matrix.nnz and not np.all(np.isfinite(matrix.data)):
            raise ValueError("X contains NaN or infinity; fill missing concept values (e.g. with 0) first")
        return matrix, names

    def _domain_codes(self, domains: Any, n_rows: int) -> np.ndarray:
        """Codes into domains_, or -1 for unknown/missing domains."""
        if domains is None:
            return np.full(n_rows, -1)
        domains = np.asarray(domains, dtype=object)
        if len(domains) != n_rows:
            raise ValueError(f"domains has {len(domains)} entries but X has {n_rows} rows")
        lookup = {d: i for i, d in enumerate(self.domains_)}
        return np.array([lookup.get(d, -1) for d in domains])

    # -- fitting ----------------------------------------------------------------------

    def fit(self, X: Any, y: Any, *, domains: Any = None, shared: Any = None, membership: Any = None,
            coef_init: tuple[np.ndarray, np.ndarray] | None = None) -> HMDR:
        """Fit on pairs X (n x concepts) with y = 1 when A is preferred, 0 when B is.

        Ties (y = 0.5) and missing labels (NaN) are left out. ``domains`` gives each row's domain
        (default: one domain). ``shared`` is a boolean mask of shared concepts (default: all);
        ``membership`` a boolean (n_domains x n_concepts) array, rows in the order of
        ``np.unique(domains)``, saying which concepts belong to which domain (default: all).
        """
        self._check_params()
        matrix, names = self._as_matrix(X)
        y_values = labels_to_y(list(y)) if not isinstance(y, np.ndarray) or y.dtype == object else np.asarray(y, float)
        y_values = np.where(np.isin(y_values, (0.0, 1.0)), y_values, np.nan)
        if len(y_values) != matrix.shape[0]:
            raise ValueError(f"y has {len(y_values)} entries but X has {matrix.shape[0]} rows")
        domain_values = np.asarray(domains if domains is not None else ["default"] * matrix.shape[0], dtype=object)
        if len(domain_values) != matrix.shape[0]:
            raise ValueError(f"domains has {len(domain_values)} entries but X has {matrix.shape[0]} rows")
        keep = ~np.isnan(y_values)
        if keep.sum() < 2 or len(np.unique(y_values[keep])) < 2:
            raise ValueError("HMDR needs labels of both classes (A preferred and B preferred) after dropping ties")
        self.domains_ = np.array(sorted(set(domain_values.tolist()), key=str), dtype=object)
        n_domains, n_features = len(self.domains_), matrix.shape[1]
        self.n_features_in_ = n_features
        self.feature_names_in_ = names if names is not None else np.array([f"x{j}" for j in range(n_features)], dtype=object)
        self.shared_mask_ = np.ones(n_features, bool) if shared is None else np.asarray(shared, bool)
        self.membership_ = (np.ones((n_domains, n_features), bool) if membership is None
                            else np.asarray(membership, bool))
        if self.shared_mask_.shape != (n_features,) or self.membership_.shape != (n_domains, n_features):
            raise ValueError(f"shared must have shape ({n_features},) and membership ({n_domains}, {n_features}); "
                             f"got {self.shared_mask_.shape} and {self.membership_.shape}")
        self.classes_ = np.array([0, 1])
        self.alpha_ = float(self.alpha) if self.alpha is not None else 1.0 / n_domains
        mask_b = self.shared_mask_.copy() if self.mode != "specific" else np.zeros(n_features, bool)
        mask_s = (self.membership_ | self.shared_mask_) if self.mode != "shared" else np.zeros((n_domains, n_features), bool)
        codes = self._domain_codes(domain_values, matrix.shape[0])
        problem = _Problem(matrix[keep], 2.0 * y_values[keep] - 1.0, codes[keep], n_domains, mask_b, mask_s,
                           self.alpha_, use_shared_loss=self.mode == "hmdr")
        if coef_init is not None:
            b0, s0 = np.array(coef_init[0], float), np.array(coef_init[1], float)
        else:
            b0, s0 = np.zeros(n_features), np.zeros((n_domains, n_features))
        b, s, n_iter, converged, objective = _fista(
            problem, self.lambda_shared, self.lambda_domain, b0, s0, tol=self.tol, max_iter=self.max_iter,
            rng=np.random.default_rng(self.random_state))
        self.shared_coef_, self.domain_coef_ = b, s
        self.n_iter_, self.converged_, self.objective_ = n_iter, converged, objective
        if not converged:
            warnings.warn(
                f"HMDR did not converge in {self.max_iter} iterations (tol={self.tol:g}); raise max_iter "
                "or the lambdas", ConvergenceWarning, stacklevel=2)
        return self

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
            raise ValueError(f"X has {matrix.shape[1]} concepts, but HMDR was fitted with {self.n_features_in_}")
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
        """Accuracy on the rows with a non-tie label."""
        y_values = labels_to_y(list(y)) if not isinstance(y, np.ndarray) or y.dtype == object else np.asarray(y, float)
        keep = np.isin(y_values, (0.0, 1.0))
        predictions = self.predict(X, domains=domains)
        return float(np.mean(predictions[keep] == y_values[keep])) if keep.any() else float("nan")

    # -- explanations -------------------------------------------------------------------

    def explain_global(self, **kwargs: Any) -> Any:
        """:func:`preflens.explain.explain_global` of this model."""
        from .explain import explain_global

        return explain_global(self, **kwargs)

    def explain_local(self, X: Any, **kwargs: Any) -> Any:
        """:func:`preflens.explain.explain_local` of this model on X."""
        from .explain import explain_local

        return explain_local(self, X, **kwargs)

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
        model.shared_coef_ = np.array(data["shared_coef_"], float)
        model.domain_coef_ = np.array(data["domain_coef_"], float).reshape(len(model.domains_), model.n_features_in_)
        model.classes_ = np.array([0, 1])
        model.n_iter_, model.converged_, model.objective_ = data["n_iter_"], data["converged_"], data["objective_"]
        return model

    @classmethod
    def from_json(cls, path: str | Path) -> HMDR:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


# ------------------------------------------------------------------------------------------
# Hyper-parameter search
# ------------------------------------------------------------------------------------------


def default_grid(n_domains: int, mode: str = "hmdr") -> list[dict[str, float]]:
    """The paper's 9 configurations for HMDR and Dirty; 9 log-spaced lambdas for the ablations.

    HMDR/Dirty: lambda_domain in {1/D^2, 2/D^2, 1/(2D)}, lambda_shared in {1/D^2, 2/D^2, 1/(2D), 1/D}
    with lambda_shared >= lambda_domain (9 pairs). Shared/Specific: one lambda on the same scale,
    9 values from 1/(4 D^2) to 2/D.
    """
    d = float(max(n_domains, 1))
    if mode == "hmdr":
        lambdas_s = (1 / d**2, 2 / d**2, 1 / (2 * d))
        lambdas_b = (1 / d**2, 2 / d**2, 1 / (2 * d), 1 / d)
        return [{"lambda_shared": lb, "lambda_domain": ls} for lb, ls in product(lambdas_b, lambdas_s) if lb >= ls - 1e-15]
    values = np.geomspace(1 / (4 * d**2), 2 / d, 9)
    key = "lambda_shared" if mode == "shared" else "lambda_domain"
    return [{key: float(v)} for v in values]


class HMDRSearch:
    """Choose HMDR's lambdas by k-fold cross-validation on the training set, then refit.

    Within each fold the grid is fitted from the strongest penalty to the weakest, each fit warm-
    started from the previous one. Folds are stratified by domain and label.

    Parameters
    ----------
    estimator : HMDR
        The model whose other parameters (alpha, mode, tol, ...) are kept.
    grid : list of dict, optional
        Parameter settings to try (default :func:`default_grid`).
    cv : int, default=5
    random_state : int, default=0

    Attributes
    ----------
    best_params_ : dict
    best_estimator_ : HMDR
        Refitted on all the training data with ``best_params_``.
    cv_results_ : list of dict
        Per setting: the params, mean and std of the fold accuracies.
    """

    def __init__(self, estimator: HMDR | None = None, *, grid: list[dict[str, float]] | None = None,
                 cv: int = 5, random_state: int = 0) -> None:
        self.estimator = estimator if estimator is not None else HMDR()
        self.grid = grid
        self.cv = cv
        self.random_state = random_state

    def fit(self, X: Any, y: Any, *, domains: Any = None, shared: Any = None, membership: Any = None) -> HMDRSearch:
        y_values = labels_to_y(list(y)) if not isinstance(y, np.ndarray) or y.dtype == object else np.asarray(y, float)
        domain_values = np.asarray(domains if domains is not None else ["default"] * len(y_values), dtype=object)
        keep = np.isin(y_values, (0.0, 1.0))
        matrix = HMDR._as_matrix(X)[0][keep]
        names = np.asarray(X.columns) if hasattr(X, "columns") else None
        y_kept, d_kept = y_values[keep], domain_values[keep]
        n_domains = len(set(domain_values.tolist()))
        grid = self.grid or default_grid(n_domains, self.estimator.mode)
        # strongest penalty first, so that each warm start moves toward denser solutions
        order = sorted(range(len(grid)), key=lambda i: -sum(grid[i].values()))
        strata = np.array([f"{d}|{int(v)}" for d, v in zip(d_kept, y_kept)])
        _, counts = np.unique(strata, return_counts=True)
        if counts.min() < self.cv:
            strata = y_kept.astype(int).astype(str)
        folds = StratifiedKFold(self.cv, shuffle=True, random_state=self.random_state).split(matrix, strata)
        scores = np.zeros((len(grid), self.cv))
        all_domains = sorted(set(domain_values.tolist()), key=str)
        for fold, (train, test) in enumerate(folds):
            init = None
            for index in order:
                model = HMDR(**{**self.estimator.get_params(), **grid[index]})
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    model.fit(matrix[train], y_kept[train], domains=d_kept[train], shared=shared,
                              membership=_membership_for(membership, all_domains, d_kept[train]), coef_init=init)
                init = (model.shared_coef_, model.domain_coef_) if len(model.domains_) == len(all_domains) else None
                scores[index, fold] = model.score(matrix[test], y_kept[test], domains=d_kept[test])
        means = scores.mean(axis=1)
        best = int(np.argmax(means))
        self.cv_results_ = [{"params": grid[i], "mean_accuracy": float(means[i]), "std_accuracy": float(scores[i].std())}
                            for i in range(len(grid))]
        self.best_params_ = dict(grid[best])
        refit = HMDR(**{**self.estimator.get_params(), **self.best_params_})
        refit.fit(matrix, y_kept, domains=d_kept, shared=shared,
                  membership=_membership_for(membership, all_domains, d_kept))
        if names is not None:
            refit.feature_names_in_ = np.asarray([str(n) for n in names], dtype=object)
        self.best_estimator_ = refit
        return self


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

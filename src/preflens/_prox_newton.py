"""HMDR's default solver: proximal Newton with coordinate descent on working sets, compiled by Numba.

It minimises ``sum_i r_i log(1 + exp(-y_i a_i . w)) + sum_j p_j |w_j|`` for a sparse design given
by columns (CSC), row weights ``r`` and per-column penalties ``p`` (zero allowed: the controls).
This is the form of HMDR's augmented design (see :class:`preflens.model._Design`).

The algorithm is the one of glmnet, liblinear's newGLMNET and skglm's ``ProxNewton``:

- **Working sets.** Each outer round computes the gradient on every column and its violation of
  the optimality conditions (the distance of ``-gradient`` to ``p_j * subdifferential |w_j|``). It
  stops when the largest violation is at most ``tol`` times the largest |gradient| at zero. Otherwise
  the round solves the problem restricted to the non-zero columns plus the worst violators (at
  least ``2 * nnz``, as skglm does, and at least ``MIN_WORKING_SET``) to 0.3 of that violation. A
  cold start's first round reuses the gradient at zero that sets the stopping scale.
- **Proximal Newton** on the working set: a quadratic model of the loss (the Hessian's diagonal
  per row, ``r_i s_i (1 - s_i)``), minimised by cyclic coordinate descent with soft-thresholding
  (exact zeros), then a backtracking (Armijo) line search on the true objective.
- **Warm starts**: ``w`` and the margins ``z = A w`` come in and go out, so a path along lambda
  starts each fit at the previous solution.

Numba compiles the kernel once and caches it on disk (``cache=True``), so only the first process
after an install pays for compilation (a few seconds; see ``docs/benchmarks.md``).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import scipy.sparse as sp

MAX_NEWTON_STEPS = 20  # per working set
MAX_SWEEPS = 50  # coordinate-descent sweeps per Newton step
# the first working set: each round pays one gradient pass over the whole design, far more than coordinate
# descent on a few dozen more columns; starting at 64 columns rather than skglm's 10 saves rounds (at 320,000
# pairs and a strong penalty, 3 rounds instead of 5: benchmarks/bench_solvers.py)
MIN_WORKING_SET = 64
ARMIJO = 0.01
MAX_HALVINGS = 30


def _augment(indptr, indices, data, codes, col_b, col_s, n_cols, shared_copy):  # pragma: no cover - compiled
    """HMDR's augmented design by columns (CSC arrays), from X by rows (see :class:`preflens.model._Design`).

    Row i holds each entry of X's row i in its shared column (``col_b``) and in its domain's column
    (``col_s[codes[i]]``), where these exist; with ``shared_copy``, rows n + i repeat the rows with
    their shared columns only. A counting sort: one pass counts each column's entries, the next
    fills them, rows in increasing order within a column.
    """
    n = indptr.shape[0] - 1
    any_domain = False  # no domain columns at all (the flat case): skip their lookups
    for d in range(col_s.shape[0]):
        for f in range(col_s.shape[1]):
            any_domain = any_domain or col_s[d, f] >= 0
    per_shared = 2 if shared_copy else 1
    counts = np.zeros(n_cols + 1, np.int64)
    for i in range(n):
        domain_cols = col_s[codes[i]]
        for k in range(indptr[i], indptr[i + 1]):
            f = indices[k]
            if col_b[f] >= 0:
                counts[col_b[f] + 1] += per_shared
            if any_domain and domain_cols[f] >= 0:
                counts[domain_cols[f] + 1] += 1
    for j in range(n_cols):
        counts[j + 1] += counts[j]
    fill = counts[:-1].copy()
    rows = np.empty(counts[n_cols], np.int32)  # half the memory traffic of int64 (augment checks the size)
    values = np.empty(counts[n_cols], np.float64)
    for i in range(n):
        domain_cols = col_s[codes[i]]
        for k in range(indptr[i], indptr[i + 1]):
            f = indices[k]
            j = col_b[f]
            if j >= 0:
                rows[fill[j]] = i
                values[fill[j]] = data[k]
                fill[j] += 1
            if any_domain:
                j = domain_cols[f]
                if j >= 0:
                    rows[fill[j]] = i
                    values[fill[j]] = data[k]
                    fill[j] += 1
    if shared_copy:  # after every row's own entries, so rows stay in increasing order within a column
        for i in range(n):
            for k in range(indptr[i], indptr[i + 1]):
                j = col_b[indices[k]]
                if j >= 0:
                    rows[fill[j]] = n + i
                    values[fill[j]] = data[k]
                    fill[j] += 1
    return counts, rows, values


def _margin_terms(y, r, z, raw, hess):  # pragma: no cover - compiled
    """At margins z: the loss, and per row the loss's derivative (raw) and curvature (hess)."""
    loss = 0.0
    for i in range(y.shape[0]):
        t = y[i] * z[i]
        if t >= 0.0:
            e = math.exp(-t)
            s = e / (1.0 + e)  # sigmoid(-t)
            loss += r[i] * math.log1p(e)
        else:
            e = math.exp(t)
            s = 1.0 / (1.0 + e)
            loss += r[i] * (math.log1p(e) - t)
        raw[i] = -y[i] * r[i] * s
        hess[i] = r[i] * s * (1.0 - s)
    return loss


def _gradient(indptr, indices, data, raw, grad):  # pragma: no cover - compiled
    """grad = A' raw, column by column."""
    for j in range(indptr.shape[0] - 1):
        g = 0.0
        for k in range(indptr[j], indptr[j + 1]):
            g += data[k] * raw[indices[k]]
        grad[j] = g


def _violation(w, g, p):  # pragma: no cover - compiled
    """How far -g is from p * the subdifferential of |w|."""
    if w > 0.0:
        return abs(g + p)
    if w < 0.0:
        return abs(g - p)
    return max(abs(g) - p, 0.0)


def _kernel(indptr, indices, data, y, r, pen, w, z, tol, max_iter):  # pragma: no cover - compiled
    n_cols = indptr.shape[0] - 1
    n = y.shape[0]
    grad = np.zeros(n_cols)
    score = np.zeros(n_cols)
    raw, hess = np.zeros(n), np.zeros(n)
    raw_try, hess_try = np.zeros(n), np.zeros(n)
    ad, z_try = np.zeros(n), np.zeros(n)
    # the stopping scale: the largest |gradient| at w = 0 (every sigmoid 1/2)
    for i in range(n):
        raw[i] = -0.5 * y[i] * r[i]
    _gradient(indptr, indices, data, raw, grad)
    scale = 0.0
    for j in range(n_cols):
        scale = max(scale, abs(grad[j]))
    stop = tol * max(scale, 1e-12)
    cold = True  # z = 0 (no warm start): the first round's gradient is the one at zero, just computed
    for i in range(n):
        if z[i] != 0.0:
            cold = False
            break
    # loss, raw and hess always describe the current margins z
    loss = _margin_terms(y, r, z, raw, hess)
    n_iter = 0
    ws_size = MIN_WORKING_SET
    last_objective = np.inf
    while n_iter < max_iter:
        # -- the optimality check on every column ---------------------------------------
        if cold:
            cold = False
        else:
            _gradient(indptr, indices, data, raw, grad)
        worst = 0.0
        nnz = 0
        for j in range(n_cols):
            violation = _violation(w[j], grad[j], pen[j])
            if w[j] != 0.0:
                nnz += 1
                score[j] = np.inf  # the support stays in the working set
            else:
                score[j] = violation
            worst = max(worst, violation)
        if worst <= stop:
            return n_iter, True, loss
        objective = loss
        for j in range(n_cols):
            objective += pen[j] * abs(w[j])
        if objective >= last_objective - 1e-15 * abs(objective):  # a round that gained nothing: at the
            return n_iter, False, loss                            # limit of the arithmetic, unconverged
        last_objective = objective
        ws_size = min(n_cols, max(ws_size, 2 * nnz))
        order = np.argsort(-score)
        size = 0
        while size < ws_size and score[order[size]] > 0.0:
            size += 1
        ws = order[:size]
        inner_stop = max(0.3 * worst, stop)
        moved = False
        # -- proximal Newton on the working set ------------------------------------------
        for _ in range(MAX_NEWTON_STEPS):
            if n_iter >= max_iter:
                break
            inner_worst = 0.0
            for j in ws:
                g = 0.0
                for k in range(indptr[j], indptr[j + 1]):
                    g += data[k] * raw[indices[k]]
                grad[j] = g
                inner_worst = max(inner_worst, _violation(w[j], g, pen[j]))
            if inner_worst <= inner_stop:
                break
            n_iter += 1
            # the Newton direction d: coordinate descent on the quadratic model
            d = np.zeros(size)
            h_diag = np.zeros(size)
            ad[:] = 0.0
            for m in range(size):
                j = ws[m]
                h = 0.0
                for k in range(indptr[j], indptr[j + 1]):
                    h += hess[indices[k]] * data[k] * data[k]
                h_diag[m] = h
            for _sweep in range(MAX_SWEEPS):
                biggest = 0.0
                for m in range(size):
                    h = h_diag[m]
                    if h <= 1e-300:
                        continue
                    j = ws[m]
                    g = grad[j]
                    for k in range(indptr[j], indptr[j + 1]):
                        i = indices[k]
                        g += hess[i] * data[k] * ad[i]
                    old = w[j] + d[m]
                    value = old - g / h
                    threshold = pen[j] / h
                    if value > threshold:
                        new = value - threshold
                    elif value < -threshold:
                        new = value + threshold
                    else:
                        new = 0.0
                    delta = new - old
                    if delta != 0.0:
                        d[m] += delta
                        for k in range(indptr[j], indptr[j + 1]):
                            ad[indices[k]] += delta * data[k]
                        biggest = max(biggest, abs(delta) * h)
                if biggest <= 0.3 * inner_stop:
                    break
            # the Armijo line search on the true objective along d
            decrease = 0.0
            penalty0 = 0.0
            for m in range(size):
                j = ws[m]
                decrease += grad[j] * d[m] + pen[j] * (abs(w[j] + d[m]) - abs(w[j]))
                penalty0 += pen[j] * abs(w[j])
            if decrease >= 0.0:  # no descent left at this precision
                break
            step = 1.0
            accepted = False
            loss_try = loss
            for _halving in range(MAX_HALVINGS):
                for i in range(n):
                    z_try[i] = z[i] + step * ad[i]
                loss_try = _margin_terms(y, r, z_try, raw_try, hess_try)
                penalty = 0.0
                for m in range(size):
                    j = ws[m]
                    penalty += pen[j] * abs(w[j] + step * d[m])
                if loss_try + penalty - loss - penalty0 <= ARMIJO * step * decrease:
                    accepted = True
                    break
                # near the optimum the objective's change is lost to rounding, while its slope at the
                # step is not: accept a step where the objective is still going down (as skglm does)
                slope = (penalty - penalty0) / step
                for i in range(n):
                    slope += raw_try[i] * ad[i]
                if slope < 0.0:
                    accepted = True
                    break
                step *= 0.5
            if not accepted:  # no step decreases the objective
                break
            moved = True
            for m in range(size):
                j = ws[m]
                value = w[j] + step * d[m]
                w[j] = value if value != 0.0 else 0.0
            z[:] = z_try
            raw, raw_try = raw_try, raw
            hess, hess_try = hess_try, hess
            loss = loss_try
        if not moved:  # no step lowers the objective: stop, unconverged
            return n_iter, False, loss
    return n_iter, False, loss


@functools.cache
def _compiled() -> tuple:
    """(kernel, augment), compiled by Numba on first use (and cached on disk for later processes)."""
    from numba import njit

    helpers = {name: njit(inline="always", cache=True)(globals()[name])
               for name in ("_margin_terms", "_gradient", "_violation")}
    namespace = {**globals(), **helpers}
    kernel = type(_kernel)(_kernel.__code__, namespace, "_kernel")
    return njit(cache=True, nogil=True)(kernel), njit(cache=True, nogil=True)(_augment)


Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]


def augment(X, codes: np.ndarray, col_b: np.ndarray, col_s: np.ndarray, n_cols: int, shared_copy: bool) -> Arrays:
    """(indptr, row indices, data) of HMDR's augmented design by columns, from the CSR matrix X."""
    if (2 if shared_copy else 1) * X.shape[0] >= np.iinfo(np.int32).max:
        raise ValueError(f"{X.shape[0]:,} pairs: HMDR's design holds row numbers as 32-bit integers; fit on "
                         "fewer than a billion pairs (a sample)")
    return _compiled()[1](np.ascontiguousarray(X.indptr, dtype=np.int64),
                          np.ascontiguousarray(X.indices),  # int32 or int64: one compiled version each
                          np.ascontiguousarray(X.data, dtype=np.float64),
                          np.ascontiguousarray(codes, dtype=np.int64), np.ascontiguousarray(col_b, dtype=np.int64),
                          np.ascontiguousarray(col_s, dtype=np.int64), int(n_cols), bool(shared_copy))


def solve(columns: Arrays, y: np.ndarray, r: np.ndarray, penalty: np.ndarray, w0: np.ndarray | None, *,
          tol: float, max_iter: int) -> tuple[np.ndarray, np.ndarray, int, bool, float]:
    """Minimise the weighted L1 logistic objective; returns (w, margins A w, Newton steps, converged, the
    loss at w without the penalty).

    ``columns`` are the design's CSC arrays from :func:`augment`; ``w0`` is a warm start (zeros when None).
    """
    indptr, indices, data = columns
    n_rows, n_cols = len(y), len(indptr) - 1
    w = np.zeros(n_cols) if w0 is None else np.array(w0, dtype=np.float64)
    z = np.zeros(n_rows)
    if w0 is not None and np.any(w):
        z = np.asarray(sp.csc_matrix((data, indices, indptr), shape=(n_rows, n_cols)) @ w, dtype=np.float64)
    n_iter, converged, loss = _compiled()[0](indptr, indices, data, np.ascontiguousarray(y, dtype=np.float64),
                                             np.ascontiguousarray(r, dtype=np.float64),
                                             np.ascontiguousarray(penalty, dtype=np.float64), w, z, float(tol),
                                             int(max_iter))
    return w, z, int(n_iter), bool(converged), float(loss)

"""HMDR's solver against the best tools in its class, side by side in one process.

Run:  python benchmarks/bench_solvers.py [--quick] [--skip-320k] [--baseline-rev REV]

1. Flat case (one domain: HMDR is L1 logistic regression), 32,000 pairs x 600 concepts, ~15.5
   non-zero features per pair: one fit, the 9-point path and the 9 x 5 CV search, against
   scikit-learn's liblinear and, when installed (``pip install skglm``; not a dependency),
   skglm. Times are to the common objective: each solver runs at tighter and tighter tolerances
   and is timed at the first one whose objective is within 1e-6 (relative) of the best any
   solver reached. scikit-learn's C is 1 / (lambda * n).
2. Hierarchical case (8 domains): single fits at 3,200, 32,000 and 320,000 pairs against the
   FISTA solver preflens used before (loaded from git revision ``--baseline-rev``), at equal
   objective; scaling in concepts (100 to 5,000); the CV search; BLAS threads limited or not.

Each time is the best of ``--repeat`` runs. Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from preflens.model import HMDR, PATH_FRACTIONS, HMDRSearch, hmdr_path, lambda_max
from preflens.synthetic import make_hmdr_data

TOLERANCES = (1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8)
REL_GAP = 1e-6
REPEAT = 3


def best_of(function, repeat: int | None = None):
    """(smallest wall time, result of the last call)."""
    times, result = [], None
    for _ in range(repeat or REPEAT):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result


def flat_objective(X: sp.csr_matrix, y: np.ndarray, w: np.ndarray, lam: float) -> float:
    z = X @ w
    return float(np.mean(np.logaddexp(0.0, -(2 * y - 1) * z)) + lam * np.abs(w).sum())


def flat_solvers():
    """name -> fit(X, y, lam, tol) returning the coefficients."""

    def preflens_fit(X, y, lam, tol):
        return HMDR(mode="shared", alpha=0.0, lambda_shared=lam, tol=tol).fit(X, y).shared_coef_

    def liblinear_fit(X, y, lam, tol):
        model = LogisticRegression(l1_ratio=1.0, C=1.0 / (lam * X.shape[0]), solver="liblinear",
                                   fit_intercept=False, tol=tol, max_iter=10_000)
        return model.fit(X, y).coef_[0]

    solvers = {"preflens": preflens_fit, "liblinear": liblinear_fit}
    try:
        from skglm import SparseLogisticRegression

        def skglm_fit(X, y, lam, tol):
            return SparseLogisticRegression(alpha=lam, fit_intercept=False, tol=tol, max_iter=100).fit(X, y).coef_.ravel()

        skglm_fit(X_warm := sp.random(200, 20, density=0.2, format="csr", random_state=0),
                  (np.arange(200) % 2).astype(float), 0.01, 1e-4)  # compile once, outside the timings
        del X_warm
        solvers["skglm"] = skglm_fit
    except ImportError:
        print("   (skglm is not installed: pip install skglm to add it)")
    return solvers


def time_to_objective(fit, X, y, lam, reference: float) -> tuple[float, float, float]:
    """(seconds, tolerance, relative gap) at the loosest tolerance within REL_GAP of reference."""
    gap = float("inf")
    for tol in TOLERANCES:
        seconds, w = best_of(lambda: fit(X, y, lam, tol))
        gap = (flat_objective(X, y, w, lam) - reference) / abs(reference)
        if gap <= REL_GAP:
            return seconds, tol, gap
    return seconds, tol, gap


def flat_case(n_pairs: int) -> None:
    data = make_hmdr_data(pairs_per_domain=n_pairs // 8, random_state=0)
    X, y = sp.csr_matrix(data.X), data.y
    top = lambda_max(HMDR(mode="shared", alpha=0.0), X, y)[0]
    print(f"\n1) flat case: {X.shape[0]} pairs x {X.shape[1]} concepts, {X.nnz / X.shape[0]:.1f} non-zero per pair, "
          f"lambda_max {top:.4g}")
    solvers = flat_solvers()
    print("   one fit, time to the common objective (within 1e-6 relative of the best):")
    for fraction in (0.1, 0.01):
        lam = fraction * top
        finals = {name: flat_objective(X, y, fit(X, y, lam, 1e-8), lam) for name, fit in solvers.items()}
        reference = min(finals.values())
        row = []
        for name, fit in solvers.items():
            seconds, tol, gap = time_to_objective(fit, X, y, lam, reference)
            row.append(f"{name} {seconds:.3f} s (tol {tol:g}, gap {gap:.0e})")
        print(f"   lambda = {fraction:g} x lambda_max: " + "; ".join(row))

    lams = [top * f for f in PATH_FRACTIONS]
    grid = [{"lambda_shared": lam} for lam in lams]
    best = {}
    for lam in lams:  # the reference objective at each point of the path
        best[lam] = min(flat_objective(X, y, fit(X, y, lam, 1e-8), lam) for fit in solvers.values())
    print("   9-point path (1 to 0.01 x lambda_max); preflens at its default tol, liblinear at 1e-4, skglm at 1e-6:")

    def preflens_path():
        return [m.shared_coef_ for m in hmdr_path(HMDR(mode="shared", alpha=0.0), X, y, grid)]

    def cold_path(fit, tol):
        return lambda: [fit(X, y, lam, tol) for lam in lams]

    runs = {"preflens": preflens_path, "liblinear": cold_path(solvers["liblinear"], 1e-4)}
    if "skglm" in solvers:
        from skglm import SparseLogisticRegression

        def skglm_path():
            model = SparseLogisticRegression(alpha=lams[0], fit_intercept=False, tol=1e-6, warm_start=True)
            out = []
            for lam in lams:
                model.alpha = lam
                out.append(model.fit(X, y).coef_.ravel().copy())
            return out
        runs["skglm"] = skglm_path
    for name, run in runs.items():
        seconds, coefs = best_of(run)
        gap = max((flat_objective(X, y, w, lam) - best[lam]) / best[lam] for w, lam in zip(coefs, lams))
        print(f"     {name:10s} {seconds:.3f} s  (worst relative gap along the path {gap:.0e})")

    print("   9 x 5 CV search + refit on the same grid (HMDRSearch vs LogisticRegressionCV(liblinear)):")
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    seconds_ours, search = best_of(lambda: HMDRSearch(HMDR(mode="shared", alpha=0.0), grid=grid, cv=5).fit(X, y))
    n_train = X.shape[0] * 4 / 5
    cs = [1.0 / (lam * n_train) for lam in lams]
    seconds_lr, lrcv = best_of(lambda: _lrcv(cs, folds).fit(X, y))
    print(f"     HMDRSearch {seconds_ours:.3f} s (best lambda {search.best_params_['lambda_shared']:.3g}); "
          f"LogisticRegressionCV {seconds_lr:.3f} s (best C {float(np.ravel(lrcv.C_)[0]):.3g}); "
          f"ratio {seconds_ours / seconds_lr:.2f}")


def _lrcv(cs, folds):
    return LogisticRegressionCV(Cs=cs, cv=folds, l1_ratios=(1.0,), solver="liblinear", fit_intercept=False,
                                tol=1e-4, scoring="accuracy", use_legacy_attributes=False)


def baseline_module(rev: str):
    """The model module at git revision ``rev`` (the FISTA solver), imported under another name."""
    root = Path(__file__).resolve().parents[1]
    try:
        text = subprocess.run(["git", "show", f"{rev}:src/preflens/model.py"], cwd=root, check=True,
                              capture_output=True, text=True).stdout
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None
    text = text.replace("from ._version import __version__", "__version__ = 'baseline'")
    text = text.replace("from .errors import ConfigError", "ConfigError = ValueError")
    path = Path(tempfile.mkdtemp()) / "baseline_model.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("baseline_model", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_model"] = module
    spec.loader.exec_module(module)
    return module


def hierarchical_case(rev: str, sizes: list[int]) -> None:
    baseline = baseline_module(rev)
    print(f"\n2) hierarchical case: 8 domains, 600 concepts (75 shared); baseline = FISTA at git {rev}"
          + ("" if baseline else " (not available: no git history here)"))
    print("   single fit, time to equal objective (baseline at tol 1e-6, preflens at its default):")
    for n_pairs in sizes:
        data = make_hmdr_data(pairs_per_domain=n_pairs // 8, random_state=0)
        X = sp.csr_matrix(data.X)
        kwargs = dict(domains=data.domains, shared=data.shared_mask, membership=data.membership)
        repeat = 1 if n_pairs > 100_000 else REPEAT
        for lambdas in ((0.0625, 0.015625), (0.005, 0.0025)):
            params = dict(lambda_shared=lambdas[0], lambda_domain=lambdas[1])
            new_s, new = best_of(lambda: HMDR(**params).fit(X, data.y, **kwargs), repeat)
            row = f"   {X.shape[0]:>7} pairs, lambdas {lambdas}: preflens {new_s:.3f} s, objective {new.objective_:.8f}"
            if baseline:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    old_s, old = best_of(lambda: baseline.HMDR(**params, tol=1e-6).fit(X, data.y, **kwargs), repeat)
                gap = (new.objective_ - old.objective_) / old.objective_
                row += f"; FISTA {old_s:.3f} s, objective {old.objective_:.8f} (preflens - FISTA: {gap:+.0e}); " \
                       f"speed-up {old_s / new_s:.1f}x"
            print(row)
        del data, X

    print("   scaling in concepts (3,200 pairs, 8 domains, one fit at 0.1 x lambda_max):")
    for n_concepts in (100, 600, 2000, 5000):
        data = make_hmdr_data(pairs_per_domain=400, n_concepts=n_concepts, n_shared=max(n_concepts // 8, 20), random_state=0)
        X = sp.csr_matrix(data.X)
        kwargs = dict(domains=data.domains, shared=data.shared_mask, membership=data.membership)
        top_b, top_s = lambda_max(HMDR(), X, data.y, **kwargs)
        seconds, model = best_of(lambda: HMDR(lambda_shared=0.1 * top_b, lambda_domain=0.1 * top_s).fit(
            X, data.y, **kwargs))
        nonzero = np.count_nonzero(model.shared_coef_) + np.count_nonzero(model.domain_coef_)
        print(f"     {n_concepts:>5} concepts ({X.nnz / X.shape[0]:.0f} non-zero per pair): {seconds:.3f} s, "
              f"{nonzero} non-zero weights")

    data = make_hmdr_data(pairs_per_domain=400, random_state=0)
    X = sp.csr_matrix(data.X)
    kwargs = dict(domains=data.domains, shared=data.shared_mask, membership=data.membership)
    print(f"   CV search, {X.shape[0]} pairs:")
    for limit in (None, 1):
        with threadpool_limits(limits=limit):
            seconds, search = best_of(lambda: HMDRSearch(HMDR(), cv=5).fit(X, data.y, **kwargs))
        print(f"     preflens, 25 settings x 5 folds + refit, BLAS threads {limit or 'default'}: {seconds:.2f} s "
              f"({seconds / 126 * 1000:.1f} ms per fit)")
    if baseline:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            seconds, _ = best_of(lambda: baseline.HMDRSearch(baseline.HMDR(), cv=5).fit(X, data.y, **kwargs))
        print(f"     FISTA baseline, 9 settings x 5 folds + refit: {seconds:.2f} s ({seconds / 46 * 1000:.1f} ms per fit)")


def main() -> None:
    global REPEAT
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="3,200 flat pairs and no 320,000-pair fit")
    parser.add_argument("--skip-320k", action="store_true")
    parser.add_argument("--baseline-rev", default="dc2728b~1", help="git revision with the FISTA solver")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    REPEAT = args.repeat
    print(f"machine: {os.cpu_count()} cores; numpy {np.__version__}")
    warnings.simplefilter("ignore", ConvergenceWarning)
    flat_case(3_200 if args.quick else 32_000)
    sizes = [3_200, 32_000] if (args.quick or args.skip_320k) else [3_200, 32_000, 320_000]
    hierarchical_case(args.baseline_rev, sizes)


if __name__ == "__main__":
    main()

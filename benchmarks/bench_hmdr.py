"""HMDR speed: the full 9 x 5-fold search, single fits at 1x/10x/100x pairs, and PyTorch Adam.

Run:  python benchmarks/bench_hmdr.py [--skip-100x] [--adam-steps 3000]

Data: synthetic pairs from a known HMDR (8 domains, 600 concepts of which 75 shared, features in
{-1, 0, 1}, 10% non-zero among a domain's concepts). Adam (the paper's optimiser) minimises the same
objective (per-domain means, L1 as a subgradient), full batch, and is timed to reach FISTA's objective.
Needs torch for the Adam part (pip install 'preflens[embed]' brings it); prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import warnings

import numpy as np
import scipy.sparse as sp

from preflens.model import HMDR, HMDRSearch
from preflens.synthetic import make_hmdr_data

LAMBDA_SHARED, LAMBDA_DOMAIN = 0.0625, 0.015625


def data_at(scale: int, seed: int = 0):
    data = make_hmdr_data(pairs_per_domain=400 * scale, random_state=seed)
    return data, sp.csr_matrix(data.X)


def adam_objective_curve(data, X, steps: int, lr: float, target: float) -> tuple[float, float, float | None]:
    """Run Adam; return (seconds, final objective, seconds to reach target or None)."""
    import torch

    torch.set_num_threads(os.cpu_count() or 2)
    names = data.domain_names
    codes = torch.tensor([names.index(d) for d in data.domains])
    Xt = torch.tensor(data.X, dtype=torch.float64)
    y = torch.tensor(2 * data.y - 1, dtype=torch.float64)
    counts = torch.bincount(codes, minlength=len(names)).double()
    row_w = 1.0 / counts[codes]
    mask_b = torch.tensor(data.shared_mask, dtype=torch.float64)
    mask_s = torch.tensor(data.membership | data.shared_mask, dtype=torch.float64)
    b = torch.zeros(X.shape[1], dtype=torch.float64, requires_grad=True)
    s = torch.zeros(len(names), X.shape[1], dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.Adam([b, s], lr=lr)
    alpha = 1.0 / len(names)
    reached = None
    start = time.perf_counter()
    value = float("nan")
    for _ in range(steps):
        optimiser.zero_grad()
        bb, ss = b * mask_b, s * mask_s
        u = Xt @ bb
        z = u + (Xt * ss[codes]).sum(1)
        loss = (row_w * torch.nn.functional.softplus(-y * z)).sum() + alpha * (row_w * torch.nn.functional.softplus(-y * u)).sum()
        objective = loss + LAMBDA_SHARED * bb.abs().sum() + LAMBDA_DOMAIN * ss.abs().sum()
        objective.backward()
        optimiser.step()
        value = float(objective.detach())
        if reached is None and value <= target + 1e-4:
            reached = time.perf_counter() - start
    return time.perf_counter() - start, value, reached


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-100x", action="store_true")
    parser.add_argument("--adam-steps", type=int, default=3000)
    parser.add_argument("--adam-lr", type=float, default=0.01)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores")

    data, X = data_at(1)
    print(f"\n1) grid search: {X.shape[0]} pairs x {X.shape[1]} concepts x {len(data.domain_names)} domains, "
          f"{X.nnz / X.shape[0]:.1f} non-zero features per pair")
    start = time.perf_counter()
    search = HMDRSearch(HMDR(), cv=5).fit(X, data.y, domains=data.domains, shared=data.shared_mask,
                                          membership=data.membership)
    print(f"   9 configurations x 5 folds + refit: {time.perf_counter() - start:.2f} s; best {search.best_params_}")

    print(f"\n2) single fit (lambda_shared={LAMBDA_SHARED}, lambda_domain={LAMBDA_DOMAIN}), by size")
    for scale in ([1, 10] if args.skip_100x else [1, 10, 100]):
        data_s, X_s = (data, X) if scale == 1 else data_at(scale)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = HMDR(lambda_shared=LAMBDA_SHARED, lambda_domain=LAMBDA_DOMAIN).fit(
                X_s, data_s.y, domains=data_s.domains, shared=data_s.shared_mask, membership=data_s.membership)
        seconds = time.perf_counter() - start
        per_pair = seconds / X_s.shape[0] * 1e6
        print(f"   {scale:>3}x: {X_s.shape[0]:>7} pairs  {seconds:7.2f} s  {model.n_iter_:>4} iterations  "
              f"{per_pair:6.1f} us/pair  objective {model.objective_:.6f}  converged {model.converged_}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"   peak memory of this process so far: {peak:.0f} MB")

    print(f"\n3) PyTorch Adam on the same objective (1x data, lr={args.adam_lr}, {args.adam_steps} full-batch steps)")
    try:
        import torch  # noqa: F401
    except ImportError:
        print("   torch is not installed: pip install 'preflens[embed]'")
        return
    start = time.perf_counter()
    fista = HMDR(lambda_shared=LAMBDA_SHARED, lambda_domain=LAMBDA_DOMAIN).fit(
        X, data.y, domains=data.domains, shared=data.shared_mask, membership=data.membership)
    fista_seconds = time.perf_counter() - start
    seconds, value, reached = adam_objective_curve(data, X, args.adam_steps, args.adam_lr, fista.objective_)
    print(f"   FISTA: {fista_seconds:.3f} s, objective {fista.objective_:.6f}, "
          f"{np.count_nonzero(fista.shared_coef_) + np.count_nonzero(fista.domain_coef_)} non-zero weights (exact zeros)")
    print(f"   Adam:  {seconds:.2f} s, objective {value:.6f} after {args.adam_steps} steps; "
          + (f"reached FISTA's objective + 1e-4 after {reached:.2f} s" if reached else "never reached FISTA's objective + 1e-4"))
    print(f"   speed-up to FISTA's objective: {(reached or seconds) / fista_seconds:.0f}x"
          + ("" if reached else " (at least; Adam had not got there)"))


if __name__ == "__main__":
    main()

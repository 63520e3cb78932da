"""How well HMDR recovers a known model: support, signs, and accuracy against the ceiling.

Run:  python benchmarks/recovery_hmdr.py [--seeds 3]

Synthetic data from a known HMDR (8 domains, 600 concepts, 75 shared, sparse b and s_d), 400
training and 400 test pairs per domain; lambdas by the default grid (fractions of lambda_max) and 5-fold CV.
"""

from __future__ import annotations

import argparse

import numpy as np

from preflens.model import HMDR, HMDRSearch
from preflens.synthetic import make_hmdr_data


def support(fitted: np.ndarray, true: np.ndarray) -> tuple[float, float, float]:
    found, real = fitted != 0, true != 0
    both = found & real
    precision = both.sum() / max(found.sum(), 1)
    recall = both.sum() / max(real.sum(), 1)
    signs = float(np.mean(np.sign(fitted[both]) == np.sign(true[both]))) if both.any() else float("nan")
    return float(precision), float(recall), signs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    print("seed | in-domain acc | ceiling | OOD acc (b only) | OOD ceiling | beta P/R/sign | b P/R/sign | s_d P/R/sign | lambdas")
    for seed in range(args.seeds):
        data = make_hmdr_data(pairs_per_domain=800, random_state=seed)
        train = (np.arange(len(data.y)) % 800) < 400
        test = ~train
        search = HMDRSearch(HMDR(), cv=5, random_state=seed).fit(
            data.X[train], data.y[train], domains=data.domains[train], shared=data.shared_mask,
            membership=data.membership)
        model = search.best_estimator_
        acc = model.score(data.X[test], data.y[test], domains=data.domains[test])
        ceiling = data.true_accuracy(data.X[test], data.y[test], data.domains[test])
        ood = model.score(data.X[test], data.y[test])  # no domain: shared weights only
        ood_ceiling = float(np.mean(((data.X[test] @ data.shared_coef) > 0) == (data.y[test] == 1)))
        beta = support(model.shared_coef_ + model.domain_coef_, data.shared_coef + data.domain_coef)
        b = support(model.shared_coef_, data.shared_coef)
        s = support(model.domain_coef_, data.domain_coef)
        fmt = lambda t: "/".join(f"{v:.2f}" for v in t)  # noqa: E731
        print(f"{seed} | {acc:.3f} | {ceiling:.3f} | {ood:.3f} | {ood_ceiling:.3f} | {fmt(beta)} | {fmt(b)} | {fmt(s)} | "
              f"{search.best_params_['lambda_shared']:.4f}/{search.best_params_['lambda_domain']:.4f}")


if __name__ == "__main__":
    main()

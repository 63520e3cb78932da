"""Synthetic feature matrices drawn from a known HMDR, to check and benchmark the model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SyntheticHMDR:
    """A feature matrix, labels and domains drawn from known weights.

    Attributes
    ----------
    X : ndarray (n_pairs, n_concepts) with values in {-1, 0, 1}
    y : ndarray (n_pairs,) 1 = A preferred
    domains : ndarray (n_pairs,) of str
    shared_mask : ndarray (n_concepts,) bool
    membership : ndarray (n_domains, n_concepts) bool, rows in sorted domain order
    shared_coef : ndarray (n_concepts,) the true b
    domain_coef : ndarray (n_domains, n_concepts) the true s_d
    domain_names : list of str, sorted
    """

    X: np.ndarray
    y: np.ndarray
    domains: np.ndarray
    shared_mask: np.ndarray
    membership: np.ndarray
    shared_coef: np.ndarray
    domain_coef: np.ndarray
    domain_names: list[str]

    def true_logits(self, X: np.ndarray, domains: np.ndarray) -> np.ndarray:
        index = {d: i for i, d in enumerate(self.domain_names)}
        codes = np.array([index[d] for d in domains])
        return X @ self.shared_coef + np.einsum("ij,ij->i", X, self.domain_coef[codes])

    def true_accuracy(self, X: np.ndarray, y: np.ndarray, domains: np.ndarray) -> float:
        """Accuracy of the true model itself on (X, y): the ceiling."""
        return float(np.mean((self.true_logits(X, domains) > 0) == (y == 1)))


def make_hmdr_data(n_domains: int = 8, pairs_per_domain: int = 400, n_concepts: int = 600, n_shared: int = 75, *,
                   shared_nonzero: int = 15, domain_nonzero: int = 8, density: float = 0.1,
                   weight_scale: float = 1.5, random_state: int = 0) -> SyntheticHMDR:
    """Draw pairs from an HMDR with sparse true weights.

    The first ``n_shared`` concepts are shared; every other concept belongs to one or two domains.
    A concept that does not belong to a pair's domain has the value 0 there, as after the
    relevance filter; the others are non-zero (-1 or +1, equally likely) with probability ``density``.
    ``shared_nonzero`` entries of b and ``domain_nonzero`` entries of each s_d are non-zero
    (normal with standard deviation ``weight_scale``); s_d is mostly on the domain's own concepts.
    """
    rng = np.random.default_rng(random_state)
    names = [f"domain{d}" for d in range(n_domains)]
    shared_mask = np.zeros(n_concepts, bool)
    shared_mask[:n_shared] = True
    membership = np.zeros((n_domains, n_concepts), bool)
    membership[:, :n_shared] = True
    for j in range(n_shared, n_concepts):
        owners = rng.choice(n_domains, size=rng.choice([1, 2], p=[0.8, 0.2]), replace=False)
        membership[owners, j] = True
    shared_coef = np.zeros(n_concepts)
    chosen = rng.choice(n_shared, size=shared_nonzero, replace=False)
    shared_coef[chosen] = rng.normal(0, weight_scale, shared_nonzero)
    domain_coef = np.zeros((n_domains, n_concepts))
    for d in range(n_domains):
        own = np.flatnonzero(membership[d] & ~shared_mask)
        n_own = min(len(own), domain_nonzero - domain_nonzero // 4)
        picks = list(rng.choice(own, size=n_own, replace=False))
        picks += list(rng.choice(n_shared, size=domain_nonzero - n_own, replace=False))
        domain_coef[d, picks] = rng.normal(0, weight_scale, len(picks))
    X = np.zeros((n_domains * pairs_per_domain, n_concepts))
    domains = np.repeat(np.array(names, dtype=object), pairs_per_domain)
    for d in range(n_domains):
        rows = slice(d * pairs_per_domain, (d + 1) * pairs_per_domain)
        draws = rng.choice([-1.0, 0.0, 1.0], size=(pairs_per_domain, n_concepts),
                           p=[density / 2, 1 - density, density / 2])
        X[rows] = draws * membership[d]
    data = SyntheticHMDR(X, np.zeros(len(X)), domains, shared_mask, membership, shared_coef, domain_coef, names)
    p = 1.0 / (1.0 + np.exp(-data.true_logits(X, domains)))
    data.y = (rng.random(len(X)) < p).astype(float)
    return data

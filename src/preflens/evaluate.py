"""The paper's evaluation protocol: in-domain splits, leave-one-domain-out, and baselines.

For each mechanism (a label column), on the same splits:

- **in-domain**: ``n_splits`` random train/test splits within every domain (the paper: 25 splits of
  2,800/400, a test fraction of 1/8); hyper-parameters chosen by 5-fold CV on the training part;
- **out-of-domain**: each domain held out in turn, the model trained on the others and the held-out
  domain predicted with the shared weights only (HMDR, Shared, Dirty); Specific has no OOD result.

Methods: HMDR, Shared, Specific, Dirty (HMDR with alpha = 0), LR-L1 and LR-L2 (logistic regression
on all concepts, ignoring domains), Length (the difference in response length alone), and Embedding
(logistic regression on the difference of the two responses' sentence embeddings), when given. With
controls (column indices of X): HMDR+controls (HMDR with those concepts unpenalised, in b only) and
Controls (an L2 logistic regression on the controls alone).
Pairs a mechanism labelled a tie, or did not label, are left out of its training and test sets.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from .model import HMDR, HMDRSearch, fallback_lambdas, labels_to_y

METHODS = ("HMDR", "HMDR+controls", "Controls", "Shared", "Specific", "Dirty", "LR-L1", "LR-L2", "Length", "Embedding")
_HMDR_MODES = {"HMDR": ("hmdr", None), "Shared": ("shared", 0.0), "Specific": ("specific", None), "Dirty": ("hmdr", 0.0)}
_C_GRID = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


@dataclass
class EvaluationResult:
    """Accuracies of every (mechanism, method, setting) over the runs.

    ``runs`` has one row per (mechanism, method, setting, run, domain) with the accuracy and the
    number of test pairs; ``domain`` is ``"all"`` for the run's overall accuracy.
    """

    runs: pd.DataFrame
    settings: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> pd.DataFrame:
        """Mean and standard deviation of the overall accuracy per (mechanism, method, setting)."""
        overall = self.runs[self.runs["domain"] == "all"]
        grouped = overall.groupby(["mechanism", "method", "setting"], sort=False)["accuracy"]
        return grouped.agg(mean="mean", std="std", runs="count").reset_index()

    def per_domain(self) -> pd.DataFrame:
        """Mean accuracy per (mechanism, method, setting, domain)."""
        rows = self.runs[self.runs["domain"] != "all"]
        return rows.groupby(["mechanism", "method", "setting", "domain"], sort=False)["accuracy"].mean().reset_index()

    def table(self) -> pd.DataFrame:
        """The paper's Table 1 layout: mechanisms as rows, "method in/out" as columns (percent)."""
        summary = self.summary()
        summary["column"] = summary["method"] + " " + summary["setting"]
        wide = summary.pivot(index="mechanism", columns="column", values="mean") * 100
        methods = list(METHODS) + sorted({m for m in summary["method"] if m not in METHODS})
        order = [f"{m} {s}" for m in methods for s in ("in", "out") if f"{m} {s}" in wide.columns]
        return wide[order]

    def to_markdown(self) -> str:
        """The table as Markdown, mean ± std in percent."""
        summary = self.summary()
        cells: dict[str, dict[str, str]] = {}
        for _, row in summary.iterrows():
            text = f"{100 * row['mean']:.1f}" + (f" ± {100 * row['std']:.1f}" if row["runs"] > 1 else "")
            cells.setdefault(row["mechanism"], {})[f"{row['method']} {row['setting']}"] = text
        columns = [c for c in self.table().columns]
        lines = ["| mechanism | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
        for mechanism, values in cells.items():
            lines.append(f"| {mechanism} | " + " | ".join(values.get(c, "–") for c in columns) + " |")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        summary = self.summary()
        summary["std"] = summary["std"].astype(object).where(summary["std"].notna(), None)
        return {"format": "preflens-evaluation/1", "settings": self.settings,
                "summary": summary.to_dict("records"), "per_domain": self.per_domain().to_dict("records")}

    def to_json(self, path: Any) -> None:
        with open(path, "w", encoding="utf-8") as out:
            json.dump(self.to_dict(), out, indent=1, allow_nan=False)
            out.write("\n")


def label_accuracy(predicted: Sequence[Any], reference: Sequence[Any]) -> float:
    """Agreement of one mechanism's labels with another's; a predicted tie counts 0.5.

    Pairs whose reference label is a tie or missing are left out (as the paper does for judges
    scored against human labels).
    """
    pred = np.asarray([str(p).lower() if p is not None else "" for p in predicted])
    ref = labels_to_y(list(reference))
    keep = ~np.isnan(ref)
    scores = np.where(pred == "tie", 0.5, (pred == "a").astype(float) == ref)
    return float(scores[keep].mean()) if keep.any() else float("nan")


def _fit_predict_lr(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, cv: int, seed: int) -> np.ndarray:
    """L2 logistic regression without intercept, C chosen by CV; predictions 0/1."""
    if train_x.shape[1] == 1:
        return (LogisticRegression(fit_intercept=False).fit(train_x, train_y).predict(test_x)).astype(int)
    smallest_class = int(np.bincount(train_y.astype(int), minlength=2).min())
    if smallest_class < 2:
        return (LogisticRegression(fit_intercept=False, max_iter=2000).fit(train_x, train_y).predict(test_x)).astype(int)
    folds = list(StratifiedKFold(min(cv, smallest_class), shuffle=True, random_state=seed).split(train_x, train_y))
    best_c, best = _C_GRID[0], -1.0
    for c in _C_GRID:
        score = np.mean([LogisticRegression(C=c, fit_intercept=False, max_iter=2000).fit(train_x[tr], train_y[tr])
                         .score(train_x[te], train_y[te]) for tr, te in folds])
        if score > best:
            best_c, best = c, score
    model = LogisticRegression(C=best_c, fit_intercept=False, max_iter=2000).fit(train_x, train_y)
    return model.predict(test_x).astype(int)


def _fit_searched(base: HMDR, X: np.ndarray, y: np.ndarray, cv: int, seed: int,
                  grid: list[dict[str, float]] | None = None, **fit_kwargs: Any) -> HMDR | None:
    """The lambda search's best model, with no more folds than the smaller side has pairs.

    With a single pair of one side there is nothing to cross-validate: one fit at 0.1 x lambda_max.
    With no pair of one side, None (the split cannot train this method).
    """
    smallest = int(np.bincount(y.astype(int), minlength=2).min())
    if smallest == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if smallest < 2:
            return HMDR(**{**base.get_params(), **fallback_lambdas(base, X, y, **fit_kwargs)}).fit(X, y, **fit_kwargs)
        search = HMDRSearch(base, grid=grid, cv=min(cv, smallest), random_state=seed)
        search.fit(X, y, **fit_kwargs)
    return search.best_estimator_


def _run_method(method: str, X: np.ndarray, y: np.ndarray, domains: np.ndarray, train: np.ndarray, test: np.ndarray,
                *, out_of_domain: bool, shared: Any, membership: Any, all_domains: list[Any],
                extra: Mapping[str, np.ndarray | None], cv: int, seed: int,
                controls: Sequence[int] = ()) -> np.ndarray | None:
    """Predictions (0/1) for the test rows, or None when the method does not apply."""
    if method == "Controls":
        if not controls:
            return None
        columns = X[:, list(controls)]
        return _fit_predict_lr(columns[train], y[train], columns[test], cv, seed)
    if method == "HMDR+controls":
        if not controls:
            return None
        train_domains = sorted(set(domains[train].tolist()), key=str)
        index = {d: i for i, d in enumerate(all_domains)}
        member = None if membership is None else np.asarray(membership, bool)[[index[d] for d in train_domains]]
        model = _fit_searched(HMDR(controls=list(controls)), X[train], y[train], cv, seed, domains=domains[train],
                              shared=shared, membership=member)
        return None if model is None else model.predict(X[test], domains=None if out_of_domain else domains[test])
    if method in _HMDR_MODES:
        if method == "Specific" and out_of_domain:
            return None
        mode, alpha = _HMDR_MODES[method]
        train_domains = sorted(set(domains[train].tolist()), key=str)
        index = {d: i for i, d in enumerate(all_domains)}
        member = None if membership is None else np.asarray(membership, bool)[[index[d] for d in train_domains]]
        model = _fit_searched(HMDR(mode=mode, alpha=alpha), X[train], y[train], cv, seed, domains=domains[train],
                              shared=shared, membership=member)
        return None if model is None else model.predict(X[test], domains=None if out_of_domain else domains[test])
    if method == "LR-L1":
        model = _fit_searched(HMDR(mode="shared", alpha=0.0), X[train], y[train], cv, seed)
        return None if model is None else model.predict(X[test])  # one domain: domains are ignored
    if method == "LR-L2":
        return _fit_predict_lr(X[train], y[train], X[test], cv, seed)
    source = extra.get({"Length": "length", "Embedding": "embedding"}[method])
    if source is None:
        return None
    features = source.reshape(len(source), -1)
    return _fit_predict_lr(features[train], y[train], features[test], cv, seed)


def _splits(domains: np.ndarray, usable: np.ndarray, n_splits: int, test_fraction: float,
            rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """Random train/test splits within each domain, over the usable rows."""
    out = []
    for _ in range(n_splits):
        train, test = [], []
        for domain in sorted(set(domains[usable].tolist()), key=str):
            rows = rng.permutation(np.flatnonzero(usable & (domains == domain)))
            n_test = max(1, int(round(test_fraction * len(rows))))
            test.append(rows[:n_test])
            train.append(rows[n_test:])
        out.append((np.concatenate(train), np.concatenate(test)))
    return out


def evaluate(X: pd.DataFrame | np.ndarray, labels: Mapping[str, Sequence[Any]], domains: Any, *,
             shared: Any = None, membership: Any = None, length_diff: np.ndarray | None = None,
             embedding_diff: np.ndarray | None = None, methods: Sequence[str] = METHODS, n_splits: int = 25,
             test_fraction: float = 0.125, cv: int = 5, out_of_domain: bool = True, random_state: int = 0,
             controls: Sequence[int] = (), progress: Callable[[str], None] | None = None) -> EvaluationResult:
    """Run the protocol for every mechanism in ``labels`` and every method in ``methods``.

    ``membership`` rows follow the sorted domain names. ``length_diff`` (n,) and
    ``embedding_diff`` (n, dim) enable the Length and Embedding baselines; ``controls`` (column
    indices) HMDR+controls and Controls. Every other mechanism's
    own labels are scored as predictions of each mechanism on the same test pairs (a tie counts 0.5),
    as the paper reports LLM judges beside the model (method ``"<name> labels"``).
    """
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ValueError(f"unknown method(s) {sorted(unknown)}; choose from {list(METHODS)}")
    matrix = X.to_numpy(dtype=float) if hasattr(X, "to_numpy") else np.asarray(X, float)
    domain_values = np.asarray(domains, dtype=object)
    all_domains = sorted(set(domain_values.tolist()), key=str)
    extra = {"length": None if length_diff is None else np.asarray(length_diff, float),
             "embedding": None if embedding_diff is None else np.asarray(embedding_diff, float)}
    records = []
    rng = np.random.default_rng(random_state)
    for mechanism, mechanism_labels in labels.items():
        y = labels_to_y(list(mechanism_labels))
        usable = ~np.isnan(y)
        settings = [("in", run, train, test) for run, (train, test) in
                    enumerate(_splits(domain_values, usable, n_splits, test_fraction, rng))]
        if out_of_domain and len(all_domains) > 1:
            for held_out in all_domains:
                is_out = domain_values == held_out
                settings.append(("out", held_out, np.flatnonzero(usable & ~is_out), np.flatnonzero(usable & is_out)))
        for setting, run, train, test in settings:
            if not len(test) or len(np.unique(y[train])) < 2:
                continue
            if progress is not None:
                progress(f"{mechanism}: {setting}-domain {'split ' + str(run) if setting == 'in' else run}")
            for other, other_labels in labels.items():
                if other == mechanism:
                    continue
                predicted_labels = np.asarray(list(other_labels), dtype=object)[test]
                records.append({"mechanism": mechanism, "method": f"{other} labels", "setting": setting,
                                "run": str(run), "domain": "all", "n_test": int(len(test)),
                                "accuracy": label_accuracy(list(predicted_labels),
                                                           ["a" if v == 1 else "b" for v in y[test]])})
            for method in methods:
                predicted = _run_method(method, matrix, y, domain_values, train, test, out_of_domain=setting == "out",
                                        shared=shared, membership=membership, all_domains=all_domains,
                                        extra=extra, cv=cv, seed=random_state, controls=controls)
                if predicted is None:
                    continue
                correct = predicted == y[test]
                records.append({"mechanism": mechanism, "method": method, "setting": setting, "run": str(run),
                                "domain": "all", "accuracy": float(correct.mean()), "n_test": int(len(test))})
                for domain in sorted(set(domain_values[test].tolist()), key=str):
                    in_domain = domain_values[test] == domain
                    records.append({"mechanism": mechanism, "method": method, "setting": setting, "run": str(run),
                                    "domain": str(domain), "accuracy": float(correct[in_domain].mean()),
                                    "n_test": int(in_domain.sum())})
    settings_record = {"n_splits": n_splits, "test_fraction": test_fraction, "cv": cv,
                       "out_of_domain": out_of_domain, "random_state": random_state, "methods": list(methods),
                       "controls": [int(c) for c in controls]}
    return EvaluationResult(pd.DataFrame(records), settings_record)

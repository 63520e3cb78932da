"""The evaluation protocol on synthetic data with a known ceiling."""

from __future__ import annotations

import json

import numpy as np
import pytest

from preflens.evaluate import evaluate, label_accuracy
from preflens.synthetic import make_hmdr_data


@pytest.fixture(scope="module")
def result():
    data = make_hmdr_data(n_domains=3, pairs_per_domain=200, n_concepts=40, n_shared=12, shared_nonzero=5,
                          domain_nonzero=4, density=0.3, random_state=2)
    rng = np.random.default_rng(0)
    labels = {"human": np.where(data.y == 1, "a", "b").astype(object)}
    judge = labels["human"].copy()
    judge[rng.random(len(judge)) < 0.2] = "tie"
    labels["judge"] = judge
    true_logit = data.true_logits(data.X, data.domains)
    length = true_logit * 0.1 + rng.normal(0, 1, len(true_logit))  # a length that says something
    result = evaluate(data.X, labels, data.domains, shared=data.shared_mask, membership=data.membership,
                      length_diff=length, n_splits=2, cv=3, random_state=0)
    return data, result


def test_every_method_runs_in_and_out_of_domain(result):
    data, res = result
    summary = res.summary()
    methods = set(summary["method"])
    assert methods == {"HMDR", "Shared", "Specific", "Dirty", "LR-L1", "LR-L2", "Length",  # no embeddings given
                       "judge labels", "human labels"}
    assert not ((summary["method"] == "Specific") & (summary["setting"] == "out")).any()
    hmdr_in = summary[(summary["mechanism"] == "human") & (summary["method"] == "HMDR") & (summary["setting"] == "in")]
    assert hmdr_in["runs"].iloc[0] == 2
    ceiling = data.true_accuracy(data.X, data.y, data.domains)
    assert hmdr_in["mean"].iloc[0] > ceiling - 0.1
    length_in = summary[(summary["method"] == "Length") & (summary["setting"] == "in")]["mean"]
    assert (length_in < hmdr_in["mean"].iloc[0]).all()


def test_ties_are_left_out_of_a_mechanisms_test_sets(result):
    _, res = result
    runs = res.runs[(res.runs["domain"] == "all") & (res.runs["setting"] == "in")]
    human_n = runs[runs["mechanism"] == "human"]["n_test"].iloc[0]
    judge_n = runs[runs["mechanism"] == "judge"]["n_test"].iloc[0]
    assert judge_n < human_n


def test_tables_and_json(result, tmp_path):
    _, res = result
    table = res.table()
    assert list(table.index) == ["human", "judge"] and "HMDR in" in table.columns and "HMDR out" in table.columns
    markdown = res.to_markdown()
    assert markdown.startswith("| mechanism | HMDR in | HMDR out |") and "±" in markdown
    res.to_json(tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["settings"]["n_splits"] == 2 and data["per_domain"]


def test_label_accuracy_counts_predicted_ties_as_half():
    assert label_accuracy(["a", "tie", "b", "a"], ["a", "a", "a", None]) == pytest.approx((1 + 0.5 + 0) / 3)


def test_another_mechanisms_labels_are_scored_on_the_same_test_pairs(result):
    _, res = result
    summary = res.summary().set_index(["mechanism", "method", "setting"])
    judge_as_human = summary.loc[("human", "judge labels", "in"), "mean"]
    # the judge copies human labels except 20% ties, which count 0.5: about 90% agreement
    assert 0.8 < judge_as_human < 1.0
    assert summary.loc[("judge", "human labels", "in"), "mean"] == 1.0  # on the judge's non-tie pairs
    assert "judge labels in" in res.table().columns


def test_tiny_data_with_one_pair_of_a_side_does_not_crash_the_search():
    """Few pairs: no more CV folds than the smaller side has pairs; one pair of a side: a single fit."""
    import warnings

    import numpy as np
    import pandas as pd

    from preflens.errors import DataWarning
    from preflens.evaluate import evaluate
    from preflens.fit import FitSettings, ModelInputs, fit_mechanism

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.choice([-1.0, 0.0, 1.0], size=(12, 4)), columns=list("abcd"))
    domains = np.array(["x"] * 6 + ["y"] * 6, dtype=object)
    labels = pd.Series(["a"] * 11 + ["b"])
    result = evaluate(X, {"m": labels}, domains, n_splits=2)
    assert set(result.summary()["method"]) >= {"HMDR", "LR-L1"}
    inputs = ModelInputs(X, domains, np.ones(4, bool), np.ones((2, 4), bool), 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fitted = fit_mechanism(inputs, labels, "m", FitSettings())
    assert fitted.cv_results is None and any(issubclass(w.category, DataWarning) for w in caught)

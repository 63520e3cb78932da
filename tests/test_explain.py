"""Global and local explanations: the paper's formulas, bootstrap intervals, JSON round trips."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from preflens.explain import GlobalExplanation, bootstrap_effects, explain_global, explain_local
from preflens.model import HMDR
from preflens.synthetic import make_hmdr_data


@pytest.fixture(scope="module")
def fitted():
    data = make_hmdr_data(n_domains=3, pairs_per_domain=300, n_concepts=30, n_shared=10, shared_nonzero=4,
                          domain_nonzero=3, density=0.3, random_state=1)
    names = [f"concept_{j}" for j in range(30)]
    X = pd.DataFrame(data.X, columns=names)
    model = HMDR(lambda_shared=0.02, lambda_domain=0.02).fit(X, data.y, domains=data.domains,
                                                              shared=data.shared_mask, membership=data.membership)
    return data, X, model


def test_global_effects_are_fifty_times_the_weights(fitted):
    data, X, model = fitted
    explanation = explain_global(model)
    frame = explanation.to_frame()
    shared = frame[frame["scope"] == "shared"]
    j = int(np.flatnonzero(model.shared_coef_)[0])
    row = shared[shared["concept"] == f"concept_{j}"].iloc[0]
    assert row["effect"] == pytest.approx(50 * model.shared_coef_[j]) and row["domain_effect"] == 0
    d = 1
    domain_rows = frame[frame["scope"] == model.domains_[d]]
    for _, r in domain_rows.iterrows():
        k = int(r["concept"].split("_")[1])
        assert r["shared_effect"] == pytest.approx(50 * model.shared_coef_[k])
        assert r["domain_effect"] == pytest.approx(50 * model.domain_coef_[d, k])
    assert list(domain_rows["rank"]) == list(range(1, len(domain_rows) + 1))
    assert list(domain_rows["effect"].abs()) == sorted(domain_rows["effect"].abs(), reverse=True)
    assert explanation.scopes()[0] == "shared" and len(explanation.top("shared", 2)) == 2


def test_the_global_effect_approximates_the_mean_local_lift(fitted):
    """App. C.3: E[lift_j] is about 50 * (b_j + s_dj) percent when weights are small."""
    data, X, model = fitted
    local = explain_local(model, X, domains=data.domains)
    frame = local.to_frame()
    global_frame = explain_global(model).to_frame()
    small = global_frame[(global_frame["scope"] != "shared") & (global_frame["effect"].abs() < 12)]
    assert len(small) >= 3
    for _, row in small.iterrows():
        lifts = frame[(frame["domain"] == row["scope"]) & (frame["concept"] == row["concept"])]["lift_pct"]
        assert lifts.mean() == pytest.approx(row["effect"], abs=0.25 * abs(row["effect"]) + 1.0)


def test_local_explanation_adds_up_to_the_logit(fitted):
    data, X, model = fitted
    local = explain_local(model, X.iloc[:5], domains=data.domains[:5], ids=[f"p{i}" for i in range(5)],
                                y=data.y[:5])
    one = local.data(2)
    assert one["pair"] == "p2" and one["label"] in ("a", "b")
    assert sum(c["contribution"] for c in one["concepts"]) == pytest.approx(one["logit"])
    assert one["p_a"] == pytest.approx(model.predict_proba(X.iloc[[2]], domains=data.domains[2:3])[0, 1])
    contributions = [abs(c["contribution"]) for c in one["concepts"]]
    assert contributions == sorted(contributions, reverse=True)
    z, w = one["logit"], one["concepts"][0]["weight"]
    expected = 100 * (1 / (1 + np.exp(-(z + w))) - 1 / (1 + np.exp(-z))) / (1 / (1 + np.exp(-z)))
    assert one["concepts"][0]["lift_pct"] == pytest.approx(expected)
    json.dumps(local.to_dict(), allow_nan=False)


def test_bootstrap_intervals_cover_the_point_estimates_and_round_trip(fitted, tmp_path):
    data, X, model = fitted
    boot = bootstrap_effects(model, X, data.y, domains=data.domains, shared=data.shared_mask,
                             membership=data.membership, n_boot=20, random_state=0)
    explanation = explain_global(model, bootstrap=boot)
    frame = explanation.to_frame()
    strong = frame[frame["effect"].abs() > 20]
    assert len(strong) and ((strong["ci_low"] <= strong["effect"]) & (strong["effect"] <= strong["ci_high"])).all()
    assert ((frame["ci_low"] <= frame["ci_high"]) & frame["nonzero_share"].between(0, 1)).all()
    path = tmp_path / "global.json"
    explanation.to_json(path)
    loaded = GlobalExplanation.from_json(path)
    pd.testing.assert_frame_equal(loaded.to_frame(), frame, check_dtype=False)
    assert loaded.meta["bootstrap"] == {"n_boot": 20, "level": 0.95}


def test_an_explanation_with_no_effect_reads_back_typed(tmp_path):
    """An all-zero model's explanation, saved and read back, still answers top() (empty)."""
    import numpy as np

    from preflens.explain import GlobalExplanation, explain_global
    from preflens.model import HMDR

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 2, 40).astype(float)
    model = HMDR(lambda_shared=100.0, lambda_domain=100.0).fit(X, y, domains=np.array(["d"] * 40))
    explain_global(model).to_json(tmp_path / "e.json")
    loaded = GlobalExplanation.from_json(tmp_path / "e.json")
    assert loaded.frame.empty and loaded.top("shared", 3).empty


def test_readable_units_stay_on_their_scale(fitted):
    """P(preferred) = sigmoid(weight), the odds ratio = exp(weight), intervals mapped end to end; a weight of 12
    (the paper's unit reads +600%) is still a probability."""
    data, X, model = fitted
    boot = bootstrap_effects(model, X, data.y, domains=data.domains, shared=data.shared_mask,
                             membership=data.membership, n_boot=10, random_state=0)
    frame = explain_global(model, bootstrap=boot).to_frame()
    weights = frame["effect"] / 50
    assert np.allclose(frame["p_preferred"], 1 / (1 + np.exp(-weights)))
    assert np.allclose(frame["odds_ratio"], np.exp(weights))
    assert frame[["p_preferred", "p_low", "p_high"]].stack().between(0, 1).all()
    assert ((frame["p_low"] <= frame["p_high"]) & (np.sign(frame["p_preferred"] - 0.5) == np.sign(weights))).all()

    big = HMDR(lambda_shared=0.0, lambda_domain=0.0).fit(X.iloc[:, :2], data.y, domains=data.domains)
    big.shared_coef_[:] = [12.0, -12.0]
    big.domain_coef_[:] = 0.0
    huge = explain_global(big).to_frame()
    shared = huge[huge["scope"] == "shared"].set_index("concept")
    assert shared.loc["concept_0", "effect"] == pytest.approx(600)
    assert 0.999 < shared.loc["concept_0", "p_preferred"] < 1 and 0 < shared.loc["concept_1", "p_preferred"] < 0.001


def test_the_local_shift_is_in_points_of_probability(fitted):
    data, X, model = fitted
    local = explain_local(model, X.iloc[:20], domains=data.domains[:20])
    concepts = local.concepts
    assert concepts["p_shift"].between(-100, 100).all()
    moved = concepts[concepts["contribution"].abs() > 1e-9]
    assert len(moved) and (np.sign(moved["p_shift"]) == np.sign(moved["contribution"])).all()
    assert (concepts.loc[concepts["contribution"] == 0, "p_shift"].abs() < 1e-9).all()


def test_the_headline_is_read_at_the_concepts_typical_difference(fitted, tmp_path):
    """A presence rule differs by a full 1; an LLM's P(Yes) differences stay within about 0.2. At a full
    unit the second concept's weight of 8 would read 'preferred 100%', a difference no pair shows; read at
    its typical difference it is 83%, and it ranks by that, not by its raw weight."""
    from preflens.explain import typical_differences

    data, _, _ = fitted
    rng = np.random.default_rng(0)
    n = len(data.y)
    X = pd.DataFrame({"rule": rng.choice([-1.0, 0.0, 1.0], n), "llm": rng.uniform(-0.2, 0.2, n)})
    model = HMDR(lambda_shared=0.0, lambda_domain=0.0).fit(X, data.y, domains=data.domains)
    model.shared_coef_[:] = [1.0, 8.0]
    model.domain_coef_[:] = 0.0
    units = typical_differences(X)
    assert units["rule"] == 1.0 and 0.17 < units["llm"] < 0.2
    frame = explain_global(model, units=units).to_frame()
    shared = frame[frame["scope"] == "shared"].set_index("concept")
    assert shared.loc["llm", "effect"] == pytest.approx(400)  # the paper's unit is kept
    assert shared.loc["llm", "p_preferred"] == pytest.approx(1 / (1 + np.exp(-8 * units["llm"])))
    assert 0.79 < shared.loc["llm", "p_preferred"] < 0.84 and shared.loc["rule", "p_preferred"] == pytest.approx(
        1 / (1 + np.exp(-1)))
    assert shared.loc["llm", "rank"] == 1 and shared.loc["rule", "rank"] == 2
    unscaled = explain_global(model).to_frame().set_index(["scope", "concept"])
    assert unscaled.loc[("shared", "llm"), "p_preferred"] > 0.999  # at a unit of 1, as before
    explain_global(model, units=units).to_json(tmp_path / "e.json")
    again = GlobalExplanation.from_json(tmp_path / "e.json").to_frame()
    assert np.allclose(again["p_preferred"], frame["p_preferred"]) and np.allclose(again["unit"], frame["unit"])


def test_compare_reads_both_models_at_each_concepts_typical_difference():
    """compare's probabilities are read where the data lives, as the headline's are: at a concept's unit."""
    from preflens.compare import bootstrap_differences, weight_differences

    data = make_hmdr_data(pairs_per_domain=60, random_state=1)
    kwargs = dict(domains=data.domains, shared=data.shared_mask, membership=data.membership)
    first = HMDR(lambda_shared=0.01, lambda_domain=0.01).fit(data.X, data.y, **kwargs)
    second = HMDR(lambda_shared=0.01, lambda_domain=0.01).fit(data.X, 1 - data.y, **kwargs)
    names = [str(n) for n in first.feature_names_in_]
    order = np.argsort(-np.abs(first.shared_coef_))
    names = [names[j] for j in order]  # the strongest shared concept first, the next second
    units = {names[0]: 0.2}
    rows = weight_differences(first, second, top=len(names), units=units)
    shared = rows[rows["scope"] == "shared"].set_index("concept")
    assert names[0] in shared.index and shared.at[names[0], "unit"] == 0.2
    w = shared.at[names[0], "first"] / 50
    assert shared.at[names[0], "p_first"] == pytest.approx(1 / (1 + np.exp(-0.2 * w)))
    assert (shared.drop(index=names[0])["unit"] == 1.0).all() and len(shared) > 1
    whole = weight_differences(first, second, top=len(names)).set_index(["scope", "concept"])
    # a smaller difference moves the probabilities less
    assert abs(shared.at[names[0], "difference_pts"]) < abs(whole.at[("shared", names[0]), "difference_pts"])
    at_unit = bootstrap_differences(first, second, data.X, data.y, 1 - data.y, n_boot=5, units=units, **kwargs)
    at_one = bootstrap_differences(first, second, data.X, data.y, 1 - data.y, n_boot=5, **kwargs)
    low, high = at_unit[("shared", names[0])]
    # the second model's labels are flipped, so its weights are the first's negated: per refit the difference
    # is 100 tanh(w u / 2), smaller in size at u = 0.2 than at 1, and so are the quantiles
    assert abs(low) < abs(at_one[("shared", names[0])][0]) and abs(high) < abs(at_one[("shared", names[0])][1])
    assert at_unit[("shared", names[1])] == at_one[("shared", names[1])]

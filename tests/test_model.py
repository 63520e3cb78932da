"""HMDR: the optimum, exact sparsity, recovery of planted weights, ablations, persistence."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LogisticRegression

from preflens.errors import ConfigError
from preflens.model import HMDR, HMDRSearch, default_grid, hmdr_path, lambda_max
from preflens.synthetic import make_hmdr_data


@pytest.fixture(scope="module")
def synthetic():
    """8 domains, 400 training + 400 test pairs each, 600 concepts of which 75 shared."""
    data = make_hmdr_data(n_domains=8, pairs_per_domain=800, n_concepts=600, n_shared=75, random_state=0)
    train = (np.arange(len(data.y)) % 800) < 400
    return data, train


def small_problem(seed=0, n=1500, c=40):
    rng = np.random.default_rng(seed)
    X = rng.choice([-1.0, 0.0, 1.0], size=(n, c), p=[0.1, 0.8, 0.1])
    w = np.zeros(c)
    w[:6] = rng.normal(0, 1.5, 6)
    y = (rng.random(n) < 1 / (1 + np.exp(-X @ w))).astype(float)
    domains = rng.choice(["law", "food", "code"], size=n, p=[0.5, 0.3, 0.2])
    return X, y, domains


def test_matches_sklearn_l1_logistic_regression_when_domain_parts_are_off():
    X, y, domains = small_problem()
    counts = {d: (domains == d).sum() for d in set(domains)}
    for lam in (0.005, 0.02, 0.1):
        model = HMDR(mode="shared", alpha=0.0, lambda_shared=lam, tol=1e-10, max_iter=50_000)
        model.fit(X, y, domains=domains)
        # sum over domains of per-domain means == sklearn with sample weights 1/n_d and C = 1/lambda
        reference = LogisticRegression(l1_ratio=1.0, C=1 / lam, fit_intercept=False, solver="liblinear",
                                       tol=1e-10, max_iter=1_000_000)
        reference.fit(X, y, sample_weight=np.array([1 / counts[d] for d in domains]))
        np.testing.assert_allclose(model.shared_coef_, reference.coef_[0], atol=1e-6)
        assert np.array_equal(model.shared_coef_ == 0, np.abs(reference.coef_[0]) < 1e-9)
        assert not model.domain_coef_.any()


def test_weights_are_exactly_zero_and_restricted_to_their_concepts(synthetic):
    data, train = synthetic
    model = HMDR(lambda_shared=0.0625, lambda_domain=0.03125)
    model.fit(data.X[train], data.y[train], domains=data.domains[train], shared=data.shared_mask,
              membership=data.membership)
    assert model.converged_
    assert not model.shared_coef_[~data.shared_mask].any()
    assert not (model.domain_coef_ * ~(data.membership | data.shared_mask)).any()
    assert 0 < np.count_nonzero(model.shared_coef_) < data.shared_mask.sum()
    assert np.count_nonzero(model.domain_coef_) < 0.1 * model.domain_coef_.size


def test_recovers_planted_weights_near_the_ceiling(synthetic):
    data, train = synthetic
    test = ~train
    search = HMDRSearch(HMDR(), cv=5).fit(data.X[train], data.y[train], domains=data.domains[train],
                                          shared=data.shared_mask, membership=data.membership)
    assert len(search.cv_results_) == 25
    model = search.best_estimator_
    accuracy = model.score(data.X[test], data.y[test], domains=data.domains[test])
    ceiling = data.true_accuracy(data.X[test], data.y[test], data.domains[test])
    assert accuracy > ceiling - 0.05, (accuracy, ceiling)
    true_beta = data.shared_coef + data.domain_coef
    fit_beta = model.shared_coef_ + model.domain_coef_
    found, real = fit_beta != 0, true_beta != 0
    precision, recall = (found & real).sum() / found.sum(), (found & real).sum() / real.sum()
    both = found & real
    sign_agreement = np.mean(np.sign(fit_beta[both]) == np.sign(true_beta[both]))
    assert precision > 0.7 and recall > 0.6 and sign_agreement > 0.9, (precision, recall, sign_agreement)
    b_found, b_real = model.shared_coef_ != 0, data.shared_coef != 0
    assert (b_found & b_real).sum() / b_real.sum() >= 0.7


def test_unknown_domain_uses_shared_weights_only(synthetic):
    data, train = synthetic
    model = HMDR().fit(data.X[train], data.y[train], domains=data.domains[train], shared=data.shared_mask,
                       membership=data.membership)
    x = data.X[:5]
    np.testing.assert_allclose(model.decision_function(x, domains=["elsewhere"] * 5), x @ model.shared_coef_)
    np.testing.assert_allclose(model.decision_function(x), x @ model.shared_coef_)
    np.testing.assert_allclose(model.coef_for("domain0"), model.shared_coef_ + model.domain_coef_[0])


def test_symmetric_augmentation_changes_nothing():
    X, y, domains = small_problem(seed=3)
    plain = HMDR(lambda_shared=0.02, lambda_domain=0.02, tol=1e-10, max_iter=20_000).fit(X, y, domains=domains)
    augmented = HMDR(lambda_shared=0.02, lambda_domain=0.02, tol=1e-10, max_iter=20_000).fit(
        np.vstack([X, -X]), np.concatenate([y, 1 - y]), domains=np.concatenate([domains, domains]))
    np.testing.assert_allclose(plain.shared_coef_, augmented.shared_coef_, atol=1e-6)
    np.testing.assert_allclose(plain.domain_coef_, augmented.domain_coef_, atol=1e-6)
    p = plain.predict_proba(X[:10], domains=domains[:10])[:, 1]
    np.testing.assert_allclose(plain.predict_proba(-X[:10], domains=domains[:10])[:, 1], 1 - p)


def test_ties_and_missing_labels_are_left_out():
    X, y, domains = small_problem(seed=4)
    with_ties = y.astype(object)
    with_ties[:100] = "tie"
    with_ties[100:150] = None
    a = HMDR().fit(X, with_ties, domains=domains)
    b = HMDR().fit(X[150:], y[150:], domains=domains[150:])
    np.testing.assert_allclose(a.shared_coef_, b.shared_coef_)
    assert a.score(X, with_ties, domains=domains) == pytest.approx(a.score(X[150:], y[150:], domains=domains[150:]))


def test_ablations_specific_and_dirty():
    X, y, domains = small_problem(seed=5)
    specific = HMDR(mode="specific", lambda_domain=0.01).fit(X, y, domains=domains)
    assert not specific.shared_coef_.any() and specific.domain_coef_.any()
    assert np.all(specific.predict_proba(X[:3], domains=["nowhere"] * 3)[:, 1] == 0.5)
    dirty = HMDR(alpha=0.0).fit(X, y, domains=domains)
    assert dirty.alpha_ == 0.0 and HMDR().fit(X, y, domains=domains).alpha_ == pytest.approx(1 / 3)


def test_estimator_contract_and_json_round_trip(tmp_path):
    X, y, domains = small_problem(seed=6)
    model = HMDR(lambda_shared=0.03, lambda_domain=0.01)
    assert clone(model).get_params() == model.get_params()
    with pytest.raises(NotFittedError):
        model.predict(X)
    model.fit(X, y, domains=domains)
    path = tmp_path / "model.json"
    model.to_json(path)
    loaded = HMDR.from_json(path)
    np.testing.assert_array_equal(loaded.predict_proba(X, domains=domains), model.predict_proba(X, domains=domains))
    assert list(loaded.domains_) == sorted(set(domains))


def test_bad_parameters_and_inputs_are_clear():
    X, y, domains = small_problem(seed=7, n=100)
    with pytest.raises(ConfigError, match="'lambda_shared' parameter of HMDR must be a float in the range"):
        HMDR(lambda_shared=-1).fit(X, y)
    with pytest.raises(ConfigError, match="'mode'"):
        HMDR(mode="fancy").fit(X, y)
    with pytest.raises(ValueError, match="NaN"):
        HMDR().fit(np.where(X == 1, np.nan, X), y)
    with pytest.raises(ValueError, match="both classes"):
        HMDR().fit(X, np.ones(len(y)))


def test_convergence_warning_when_iterations_run_out():
    X, y, domains = small_problem(seed=8)
    with pytest.warns(ConvergenceWarning, match="did not converge in 2 iterations"):
        HMDR(max_iter=2, tol=1e-12).fit(X, y, domains=domains)


def test_default_grid_is_relative_to_lambda_max_without_duplicates():
    grid = default_grid(0.4, 0.05)
    assert len(grid) == 25 and len({tuple(g.items()) for g in grid}) == 25
    assert sorted({g["lambda_shared"] for g in grid}) == pytest.approx(sorted(0.4 * np.geomspace(1, 0.01, 5)))
    assert max(g["lambda_domain"] for g in grid) == pytest.approx(0.05)
    # consecutive points differ in one lambda by one step: a path for warm starts
    for before, after in zip(grid, grid[1:]):
        assert (before["lambda_shared"] == after["lambda_shared"]) != (before["lambda_domain"] == after["lambda_domain"])
    path = default_grid(0.4, 0.0, "shared")
    assert [g["lambda_shared"] for g in path] == pytest.approx(list(0.4 * np.geomspace(1, 0.01, 9)))
    assert len(default_grid(0.0, 0.3, "specific")) == 9


def test_lambda_max_is_where_the_fit_becomes_all_zero():
    X, y, domains = small_problem(seed=3)
    top_shared, top_domain = lambda_max(HMDR(), X, y, domains=domains)
    at = HMDR(lambda_shared=top_shared * 1.0001, lambda_domain=top_domain * 1.0001).fit(X, y, domains=domains)
    assert not at.shared_coef_.any() and not at.domain_coef_.any()
    below = HMDR(lambda_shared=top_shared * 0.95, lambda_domain=top_domain * 1.0001).fit(X, y, domains=domains)
    assert below.shared_coef_.any() and not below.domain_coef_.any()
    below = HMDR(lambda_shared=top_shared * 1.0001, lambda_domain=top_domain * 0.95).fit(X, y, domains=domains)
    assert not below.shared_coef_.any() and below.domain_coef_.any()


@pytest.mark.parametrize("mode", ["hmdr", "shared"])
def test_a_single_domain_search_recovers_a_planted_signal(mode):
    """The bug this guards against: a fixed grid above lambda_max made every one-domain fit all zeros."""
    rng = np.random.default_rng(11)
    n, c = 400, 12
    X = rng.choice([-1.0, 0.0, 1.0], size=(n, c), p=[0.25, 0.5, 0.25])
    w = np.zeros(c)
    w[[0, 3, 7]] = [2.0, -1.5, 1.0]
    y = (rng.random(n) < 1 / (1 + np.exp(-X @ w))).astype(float)
    train, test = np.arange(n) < 300, np.arange(n) >= 300
    search = HMDRSearch(HMDR(mode=mode), cv=5).fit(X[train], y[train])
    model = search.best_estimator_
    beta = model.coef_for("default")
    assert set(np.flatnonzero(beta)) >= {0, 3, 7}
    assert np.array_equal(np.sign(beta[[0, 3, 7]]), np.sign(w[[0, 3, 7]]))
    ceiling = np.mean((X[test] @ w > 0) == (y[test] == 1))
    assert model.score(X[test], y[test]) >= ceiling - 0.05, (model.score(X[test], y[test]), ceiling)
    assert max(r["mean_accuracy"] for r in search.cv_results_) > 0.7


def test_cd_liblinear_and_fista_reach_the_same_optimum(synthetic):
    data, train = synthetic
    kwargs = dict(domains=data.domains[train], shared=data.shared_mask, membership=data.membership)
    for lambdas in ((0.0625, 0.015625), (0.004, 0.002)):
        fits = {solver: HMDR(lambda_shared=lambdas[0], lambda_domain=lambdas[1], solver=solver, tol=1e-8,
                             max_iter=50_000).fit(data.X[train], data.y[train], **kwargs)
                for solver in ("cd", "liblinear", "fista")}
        assert all(model.converged_ for model in fits.values())
        for solver in ("cd", "liblinear"):
            assert fits[solver].objective_ == pytest.approx(fits["fista"].objective_, rel=1e-7)
            np.testing.assert_allclose(fits[solver].shared_coef_, fits["fista"].shared_coef_, atol=1e-3)
            np.testing.assert_allclose(fits[solver].domain_coef_, fits["fista"].domain_coef_, atol=1e-3)
        # exact zeros: cd and liblinear agree on the support; FISTA's zeros are exact too
        cd, lib = fits["cd"], fits["liblinear"]
        assert np.array_equal(cd.shared_coef_ != 0, lib.shared_coef_ != 0)
        assert np.array_equal(cd.domain_coef_ != 0, lib.domain_coef_ != 0)
        assert 0 < np.count_nonzero(cd.domain_coef_) < cd.domain_coef_.size


def test_auto_is_cd_and_its_default_tolerance_reaches_the_optimum(synthetic):
    data, train = synthetic
    kwargs = dict(domains=data.domains[train], shared=data.shared_mask, membership=data.membership)
    default = HMDR(lambda_shared=0.004, lambda_domain=0.002).fit(data.X[train], data.y[train], **kwargs)
    tight = HMDR(lambda_shared=0.004, lambda_domain=0.002, solver="cd", tol=1e-10).fit(
        data.X[train], data.y[train], **kwargs)
    assert default.converged_ and default.objective_ == pytest.approx(tight.objective_, rel=1e-6)
    assert np.array_equal(default.coef_for(data.domain_names[0]), HMDR(
        lambda_shared=0.004, lambda_domain=0.002, solver="cd").fit(
        data.X[train], data.y[train], **kwargs).coef_for(data.domain_names[0]))  # deterministic


def test_an_unreachable_tolerance_stops_early_with_a_warning():
    """At tol=0 no step can lower the objective long before max_iter: cd says so and stops."""
    X, y, domains = small_problem(seed=4)
    with pytest.warns(ConvergenceWarning):
        model = HMDR(lambda_shared=0.01, lambda_domain=0.005, solver="cd", tol=0.0, max_iter=100_000).fit(
            X, y, domains=domains)
    assert not model.converged_ and model.n_iter_ < 1_000


def test_zero_lambda_is_solved_and_liblinear_refuses_it():
    X, y, domains = small_problem(seed=4)
    model = HMDR(lambda_shared=0.01, lambda_domain=0.0, max_iter=20_000).fit(X, y, domains=domains)
    assert model.converged_ and np.isfinite(model.objective_)
    slow = HMDR(lambda_shared=0.01, lambda_domain=0.0, solver="fista", tol=1e-9, max_iter=100_000).fit(
        X, y, domains=domains)
    assert model.objective_ == pytest.approx(slow.objective_, rel=1e-6)
    with pytest.raises(ConfigError, match="positive lambdas"):
        HMDR(lambda_shared=0.01, lambda_domain=0.0, solver="liblinear").fit(X, y, domains=domains)


def test_a_warm_start_reaches_the_same_optimum_as_a_cold_start():
    X, y, domains = small_problem(seed=9)
    other = HMDR(lambda_shared=0.001, lambda_domain=0.001).fit(X, y, domains=domains)
    cold = HMDR(tol=1e-9, max_iter=20_000, lambda_shared=0.05, lambda_domain=0.02).fit(X, y, domains=domains)
    warm = HMDR(tol=1e-9, max_iter=20_000, lambda_shared=0.05, lambda_domain=0.02).fit(
        X, y, domains=domains, coef_init=(other.shared_coef_, other.domain_coef_))
    np.testing.assert_allclose(warm.shared_coef_, cold.shared_coef_, atol=1e-5)
    np.testing.assert_allclose(warm.domain_coef_, cold.domain_coef_, atol=1e-5)
    assert warm.objective_ == pytest.approx(cold.objective_, rel=1e-8)


def test_a_path_gives_the_same_fits_as_fitting_each_setting_alone():
    X, y, domains = small_problem(seed=5)
    top_shared, top_domain = lambda_max(HMDR(), X, y, domains=domains)
    grid = default_grid(top_shared, top_domain)
    path = hmdr_path(HMDR(tol=1e-8), X, y, grid, domains=domains)
    assert [m.get_params()["lambda_shared"] for m in path] == [g["lambda_shared"] for g in grid]
    for model, point in zip(path, grid):
        alone = HMDR(tol=1e-8, **point).fit(X, y, domains=domains)
        assert model.objective_ == pytest.approx(alone.objective_, rel=1e-7)
        assert np.array_equal(model.shared_coef_ != 0, alone.shared_coef_ != 0)
    assert not path[0].shared_coef_.any() and not path[0].domain_coef_.any()  # lambda_max itself: all zeros
    assert np.count_nonzero(path[-1].shared_coef_) > np.count_nonzero(path[5].shared_coef_)


def test_a_control_is_unpenalised_and_shared_only():
    """A control keeps a non-zero weight at any lambda, lives in b only, and survives a round trip."""
    import tempfile
    from pathlib import Path

    rng = np.random.default_rng(3)
    X = rng.normal(size=(400, 5))
    y = (1.5 * X[:, 0] + 0.8 * X[:, 4] + rng.normal(size=400) > 0).astype(float)
    domains = np.array(["a", "b"] * 200)
    for lam in (0.001, 0.1, 10.0):
        model = HMDR(lambda_shared=lam, lambda_domain=lam, controls=[4]).fit(X, y, domains=domains)
        assert model.shared_coef_[4] > 0.3 and np.all(model.domain_coef_[:, 4] == 0)
        if lam == 10.0:
            assert np.all(model.shared_coef_[:4] == 0)  # everything else is penalised away
        reference = HMDR(lambda_shared=lam, lambda_domain=lam, controls=[4], solver="fista", tol=1e-9,
                         max_iter=100_000).fit(X, y, domains=domains)
        assert model.objective_ == pytest.approx(reference.objective_, rel=1e-6)
    named = HMDR(lambda_shared=10.0, lambda_domain=10.0, controls=["length"]).fit(
        pd.DataFrame(X, columns=["a", "b", "c", "d", "length"]), y, domains=domains)
    assert named.control_mask_.tolist() == [False] * 4 + [True] and named.shared_coef_[4] > 0.3
    with tempfile.TemporaryDirectory() as folder:
        named.to_json(Path(folder) / "m.json")
        assert HMDR.from_json(Path(folder) / "m.json").control_mask_.tolist() == named.control_mask_.tolist()
    with pytest.raises(ConfigError, match="control 'lenght' is not a concept"):
        HMDR(controls=["lenght"]).fit(pd.DataFrame(X, columns=list("abcde")), y, domains=domains)
    searched = HMDRSearch(HMDR(controls=[4]), cv=3).fit(X, y, domains=domains)
    assert searched.best_estimator_.shared_coef_[4] > 0.3  # the search keeps the control in every fit


def _paper_objective(model, X, y, domains):
    """Eq. 1 computed from b and s_d directly, without the augmented design."""
    total = 0.0
    yy = 2 * y - 1
    for index, domain in enumerate(model.domains_):
        rows = domains == domain
        full = X[rows] @ (model.shared_coef_ + model.domain_coef_[index])
        total += np.mean(np.logaddexp(0, -yy[rows] * full))
        if model.mode == "hmdr":
            total += model.alpha_ * np.mean(np.logaddexp(0, -yy[rows] * (X[rows] @ model.shared_coef_)))
    return (total + model.lambda_shared * np.abs(model.shared_coef_).sum()
            + model.lambda_domain * np.abs(model.domain_coef_).sum())


@pytest.mark.parametrize("mode", ["hmdr", "shared", "specific"])
def test_the_fitted_objective_is_equation_1_with_partial_masks(mode):
    """The augmented design (built in compiled code) is Eq. 1: the objective the solver reports equals the
    paper's formula evaluated on the fitted b and s_d, with some concepts not shared and some not in a domain."""
    X, y, domains = small_problem(seed=11, c=12)
    shared = np.array([True] * 6 + [False] * 6)
    membership = np.ones((3, 12), bool)
    membership[0, 8:] = False  # "code" (the first of the sorted domains) lacks the last four concepts
    membership[2, :3] = False
    model = HMDR(lambda_shared=0.004, lambda_domain=0.003, mode=mode, tol=1e-9).fit(
        X, y, domains=domains, shared=shared, membership=membership)
    assert model.objective_ == pytest.approx(_paper_objective(model, X, y, domains), rel=1e-10)
    if mode != "shared":
        assert not model.domain_coef_[0, 8:].any() and np.count_nonzero(model.domain_coef_) > 0
    if mode != "specific":
        assert not model.shared_coef_[6:].any() and np.count_nonzero(model.shared_coef_) > 0
    # and the optimum: a perturbation of any single non-zero weight does not lower it
    for target in ("shared_coef_", "domain_coef_"):
        coef = getattr(model, target)
        for index in np.argwhere(coef != 0)[:5]:
            for step in (1e-3, -1e-3):
                moved = copy.deepcopy(model)
                getattr(moved, target)[tuple(index)] += step
                assert _paper_objective(moved, X, y, domains) > model.objective_


def test_a_warm_start_with_empty_rows_last():
    """Pairs with no concept difference (empty rows) at the end of the data, warm-started: the margins of the
    start are computed right (a bootstrap refit once failed here)."""
    X, y, domains = small_problem(seed=2)
    X[-30:] = 0.0
    cold = HMDR(lambda_shared=0.01, lambda_domain=0.005, tol=1e-9).fit(X, y, domains=domains)
    start = HMDR(lambda_shared=0.05, lambda_domain=0.02).fit(X, y, domains=domains)
    warm = HMDR(lambda_shared=0.01, lambda_domain=0.005, tol=1e-9).fit(
        X, y, domains=domains, coef_init=(start.shared_coef_, start.domain_coef_))
    assert warm.objective_ == pytest.approx(cold.objective_, rel=1e-9)

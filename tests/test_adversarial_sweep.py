"""Regressions found by an adversarial sweep of the ordinal family, two-part families and response additions.

No sampling: each test compares compiled log densities (PyMC graph) or checks that bad input is refused
before compiling.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hmodels as hm

PRIORS = {"Intercept": hm.Normal(1, 2), "x": hm.Normal(0, 1), "sd": hm.HalfNormal(1), "shape": hm.Gamma(2, 1)}


def _censored_times(seed=4, n=40):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    t = rng.weibull(1.5, n) * np.exp(1 + 0.5 * x)
    cap = rng.uniform(1, 6, n)
    cens = np.where(t > cap, 1, 0)
    cens[rng.random(n) < 0.15] = -1  # some left-censored rows too
    cens[0] = 0
    g = [f"g{i % 5}" for i in range(n)]
    return pd.DataFrame({"t": np.minimum(t, cap), "c": cens, "x": x, "g": g})


def _logps(model, n_points=3, seed=0):
    """The model's log density (no Jacobian) at a few jittered points of its own unconstrained space."""
    pmodel = model.pymc_model
    logp = pmodel.compile_logp(jacobian=False)
    rng = np.random.default_rng(seed)
    start = pmodel.initial_point()
    points = [{k: v + rng.normal(scale=0.3, size=np.shape(v)) for k, v in start.items()} for _ in range(n_points)]
    return np.array([float(logp(p)) for p in points]), points, logp


def test_censored_and_weighted_likelihood_is_the_censored_one_times_the_weights():
    """cens() + weights(): the weighted censored log-likelihood uses the parameters' values, not random clones.

    pm.logp of a pm.Censored distribution lifts the model's random variables; the weighted Potential
    evaluated them as fresh random draws (a noisy, mostly -inf/NaN log density) until they were
    replaced by their value variables first.
    """
    d = _censored_times().assign(w1=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = hm.Model("t | cens(c) ~ x + (1 | g)", d, family="weibull", priors=PRIORS, centered=False)
        weighted = hm.Model("t | cens(c) + weights(w1) ~ x + (1 | g)", d, family="weibull", priors=PRIORS,
                            centered=False)
        lp_plain, points, _ = _logps(plain)
        lp_w, _, logp_w = _logps(weighted)
        again = np.array([float(logp_w(p)) for p in points])  # deterministic: the same point, the same value
    assert np.isfinite(lp_w).all()
    np.testing.assert_allclose(lp_w, again, rtol=0, atol=0)
    np.testing.assert_allclose(lp_w, lp_plain, rtol=1e-10)


def _value_point(pmodel, constrained):
    """The model's value-variable point (its own transforms) for constrained parameter values."""
    import pytensor.tensor as pt

    point = {}
    for rv in pmodel.free_RVs:
        value = np.asarray(constrained[rv.name], dtype=float)
        tr = pmodel.rvs_to_transforms.get(rv)
        if tr is not None:
            value = tr.forward(pt.as_tensor_variable(value), *rv.owner.inputs).eval()
        point[pmodel.rvs_to_values[rv].name] = np.asarray(value, dtype=float)
    return point


def test_censored_rows_with_weight_zero_are_the_rows_dropped():
    """Weight 0 removes a row's likelihood exactly (same parameter values; explicit priors, raw intercept)."""
    d = _censored_times()
    d["w"] = np.where(np.arange(len(d)) < 6, 0.0, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = dict(family="weibull", priors=PRIORS, centered=False, intercept_prior="raw")
        weighted = hm.Model("t | cens(c) + weights(w) ~ x + (1 | g)", d, **kw).pymc_model
        dropped = hm.Model("t | cens(c) ~ x + (1 | g)", d.iloc[6:], **kw).pymc_model
        rng = np.random.default_rng(2)
        for _ in range(3):
            values = {"b": rng.normal([1.0, 0.5], 0.3), "sd_g": np.abs(rng.normal(0.5, 0.2, 1)),
                      "z_g": rng.normal(size=(5, 1)), "shape": rng.uniform(1, 2)}
            lp_w = float(weighted.compile_logp(jacobian=False)(_value_point(weighted, values)))
            lp_d = float(dropped.compile_logp(jacobian=False)(_value_point(dropped, values)))
            assert lp_w == pytest.approx(lp_d, rel=1e-10)


@pytest.mark.parametrize("bounds,fix", [("lb=0.5", "trunc\\(lb=1\\)"), ("ub=20.5", "trunc\\(ub=20\\)"),
                                        ("lb=0.5, ub=20.5", "trunc\\(lb=1, ub=20\\)")])
@pytest.mark.parametrize("family", ["poisson", "negativebinomial"])
def test_fractional_truncation_bounds_of_counts_are_refused(bounds, fix, family):
    """trunc(lb=0.5) of counts normalised over y >= 0 (P = 1: no truncation at all) while keeping y >= 1."""
    d = pd.DataFrame({"y": [1, 2, 3, 4, 2, 5], "x": np.arange(6.0)})
    with pytest.raises(hm.SpecificationError, match=fix):
        hm.Model(f"y | trunc({bounds}) ~ x", d, family=family)
    assert hm.Model("y | trunc(lb=1) ~ x", d, family=family).spec.trunc == (1.0, None)


# -- K-fold and prediction on the fitted rows: the held-out outcome as the likelihood reads it ------------
def _ratings(seed=7, n=80):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    codes = np.searchsorted([-1.5, 0.0, 1.5], x + rng.logistic(size=n))  # 0..3
    return pd.DataFrame({"x": x, "g": [f"g{i % 8}" for i in range(n)], "codes": codes})


@pytest.fixture(scope="module")
def ordinal_kfolds():
    """The same ratings as 0-based numbers, 1-based numbers and ordered labels: the same model thrice."""
    d = _ratings()
    labels = np.array(["low", "mid", "high", "top"])
    outcomes = {"zero_based": d["codes"], "one_based": d["codes"] + 1,
                "labels": pd.Categorical(labels[d["codes"]], categories=list(labels), ordered=True)}
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, y in outcomes.items():
            fit = hm.Model("y ~ x + (1 | g)", d.assign(y=y), family="cumulative").fit(
                draws=150, tune=200, chains=2, seed=3, progressbar=False)
            out[name] = (fit, float(fit.kfold(k=2, seed=1).elpd))
    return out


def test_ordinal_kfold_scores_category_numbers_whatever_the_coding(ordinal_kfolds):
    """kfold scored raw ratings as category numbers (0 -> the last category) and crashed on labels."""
    elpd = {name: v[1] for name, v in ordinal_kfolds.items()}
    assert np.isfinite(elpd["one_based"])
    assert elpd["zero_based"] == pytest.approx(elpd["one_based"], rel=1e-12)
    assert elpd["labels"] == pytest.approx(elpd["one_based"], rel=1e-12)


def test_ordinal_predict_on_the_fitted_frame_with_labelled_outcome(ordinal_kfolds):
    """predict(newdata) with the ordinal outcome column of labels in it (the training frame) raised ValueError."""
    from hmodels.predict import new_design

    fit = ordinal_kfolds["labels"][0]
    assert fit.predict(fit.data, kind="probs").values.shape[-2:] == (fit.design.n, 4)
    np.testing.assert_array_equal(new_design(fit, fit.data)[0].y, fit.design.y)


def test_kfold_held_out_rows_keep_their_censoring_and_weights():
    """Held-out censored rows are scored by their survival probability, weighted rows with their weight.

    The held-out design (predict.new_design) has neither; _held_out_outcome adds the fitted rows' own.
    """
    import dataclasses
    import types

    from hmodels.comparison import _held_out_outcome

    d = _censored_times().assign(w=lambda f: np.linspace(0.5, 2.0, len(f)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = hm.Model("t | cens(c) + weights(w) ~ x + (1 | g)", d, family="weibull")
    refit = types.SimpleNamespace(spec=m.spec, family=m.family, design=m.design)
    test_idx = np.array([1, 4, 7, 20, 33])
    bare = dataclasses.replace(m.design, cens=None, weights=None)
    held = _held_out_outcome(refit, bare, m.design.data, test_idx)
    assert (m.design.cens[test_idx] != 0).any()
    np.testing.assert_array_equal(held.cens, m.design.cens[test_idx])
    np.testing.assert_array_equal(held.weights, m.design.weights[test_idx])


@pytest.mark.parametrize("bounds", [(10.0, None), (10.0, 11.0), (None, -10.0)])
def test_truncated_replicates_far_in_a_tail_are_finite_and_inside_the_bounds(bounds, monkeypatch):
    """trunc(lb=10) of N(0, 1): F(10) rounds to 1, and the inverse CDF gave +inf for every replicate."""
    import types

    import xarray as xr
    from scipy import stats

    import hmodels.linpred as linpred

    monkeypatch.setattr(linpred, "mean_draws", lambda fit, eta: eta)
    text = ", ".join(f"{k}={v:g}" for k, v in zip(("lb", "ub"), bounds) if v is not None)
    spec = hm.parse_formula(f"y | trunc({text}) ~ 1")
    fit = types.SimpleNamespace(family=hm.families.get_family("gaussian"), spec=spec,
                                draws=xr.Dataset({"sigma": (("chain", "draw"), [[1.0]])}))
    design = types.SimpleNamespace(spec=spec, trials=None, se=None)
    y = linpred.simulate_response(fit, np.zeros((1, 1, 4000)), design, seed=1).ravel()
    lb, ub = bounds
    assert np.isfinite(y).all()
    assert (lb is None or y.min() >= lb) and (ub is None or y.max() <= ub)
    a, b = (-np.inf if lb is None else lb), (np.inf if ub is None else ub)
    assert stats.kstest(y, stats.truncnorm(a, b).cdf).pvalue > 0.001


def test_loo_of_a_fit_with_zero_weights_leaves_those_rows_out():
    """A weight-0 row's log-likelihood is 0 in every draw: az.loo raised 'All tail values are the same'."""
    rng = np.random.default_rng(5)
    n = 40
    d = pd.DataFrame({"x": rng.normal(size=n), "g": [f"g{i % 5}" for i in range(n)]})
    d["y"] = 1 + d["x"] + rng.normal(size=n)
    d["w"] = np.where(np.arange(n) < 4, 0.0, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = hm.Model("y | weights(w) ~ x + (1 | g)", d, priors={"sd": hm.HalfNormal(1)}).fit(
            draws=200, tune=200, chains=2, seed=1, progressbar=False)
        res = fit.loo()
        by_group = fit.loo(by="g")
    assert np.asarray(res.pareto_k).shape == (n - 4,) and np.isfinite(res.elpd)
    assert np.asarray(res.elpd_i.coords["obs"]).min() == 4  # the rows kept keep their numbers
    assert np.asarray(by_group.pareto_k).shape == (5,)
    # a prediction does not need the weights (they weigh the fitted rows' likelihood): none, or any, same values
    new = pd.DataFrame({"x": [0.0, 1.5], "g": ["g0", "g3"]})
    without = fit.predict(new, kind="mean").values
    np.testing.assert_array_equal(without, fit.predict(new.assign(w=7.0), kind="mean").values)


# -- response additions: input read as meant, or refused --------------------------------------------------
@pytest.mark.parametrize("codes", [
    np.array(["0", "1", "-1", "0"] * 5),  # text from a CSV read with dtype=str
    pd.Categorical([0, 1, -1, 0] * 5),  # a category of numbers
    pd.Series([0, 1, -1, 0] * 5, dtype=object),
    np.array(["none", "Right", " left", "NONE"] * 5),
])
def test_censoring_codes_given_as_text_or_categories_are_read_as_numbers(codes):
    d = pd.DataFrame({"t": np.linspace(1, 3, 20), "x": np.linspace(0, 1, 20), "c": codes})
    m = hm.Model("t | cens(c) ~ x", d, family="weibull")
    assert m.design.cens.tolist() == [0, 1, -1, 0] * 5


def test_weights_expression_with_a_plus_is_one_addition():
    s = hm.parse_formula("t | weights(w1 + w2) + cens(c) ~ x", family="weibull")
    assert (s.weights, s.cens) == ("w1 + w2", "c")
    assert hm.parse_formula(s.formula, family="weibull") == s


@pytest.mark.parametrize("bound", ["True", "'1'", "None"])
def test_truncation_bounds_that_are_not_numbers_are_refused(bound):
    with pytest.raises(hm.FormulaError, match="numbers"):
        hm.parse_formula(f"y | trunc(lb={bound}) ~ x")

"""hm.simulate, hm.design_grid and the parameter dictionaries of the studies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

import hmodels as hm
from hmodels.studies.params import draw_from_priors, lkj_corr, parameter_labels, parse_params
from hmodels.studies.simulate import call_design, design_for

SLEEP_TRUTH = {"Intercept": 250, "Days": 10, "sd(Subject, Intercept)": 25, "sd(Subject, Days)": 6,
               "cor(Subject)": 0.1, "sigma": 25}


@pytest.fixture(scope="module")
def sleep_model():
    return hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy"))


def test_simulate_keeps_the_design_and_records_the_truth(sleep_model):
    df = hm.simulate(sleep_model, SLEEP_TRUTH, seed=1)
    assert list(df.columns) == ["Reaction", "Days", "Subject"] and len(df) == 180
    assert df["Days"].equals(sleep_model.design.data["Days"])
    assert df.attrs["params"]["cor(Subject, Intercept:Days)"] == 0.1
    assert not np.allclose(df["Reaction"], sleep_model.design.y)
    again = hm.simulate(sleep_model, SLEEP_TRUTH, seed=1)
    assert again["Reaction"].equals(df["Reaction"])
    many = hm.simulate(sleep_model, SLEEP_TRUTH, n=3, seed=1)
    assert len(many) == 3 and not many[0]["Reaction"].equals(many[1]["Reaction"])
    prior = hm.simulate(sleep_model, n=2, seed=4)
    assert prior[0].attrs["params"] != prior[1].attrs["params"]  # a new draw from the priors per data set


def test_simulated_gaussian_data_recover_the_truth_by_reml():
    design = hm.design_grid(150, 8, group="g", within={"t": np.arange(8)})
    truth = {"Intercept": 5.0, "t": -0.5, "sd(g, Intercept)": 2.0, "sd(g, t)": 0.4, "cor(g)": -0.3, "sigma": 1.5}
    df = hm.simulate("y ~ t + (t | g)", truth, design=design, seed=11)
    pf = hm.Model("y ~ t + (t | g)", df).optimize()
    est = pf.estimates()
    se = {**pf.fixed_effects()["se"].to_dict(), **pf.variance_components()["se"].to_dict()}
    for k, v in truth.items():
        label = "cor(g, Intercept:t)" if k == "cor(g)" else k
        assert abs(est[label] - v) < 4 * se[label], (label, est[label], v, se[label])


@pytest.mark.parametrize("family", ["bernoulli", "binomial", "poisson", "negativebinomial", "student_t"])
def test_every_family_simulates_its_distribution(family):
    G, m = 400, 10
    design = hm.design_grid(G, m, group="g", within={"n": [5]})
    vals = {"Intercept": 0.3, "sd(g)": 0.5}
    vals.update({"student_t": {"sigma": 2.0, "nu": 5.0}, "negativebinomial": {"alpha": 3.0}}.get(family, {}))
    formula = "p(y, n) ~ 1 + (1 | g)" if family == "binomial" else "y ~ 1 + (1 | g)"
    y = hm.simulate(formula, vals, design=design, family=family, seed=5)["y"].to_numpy()
    b = np.random.default_rng(0).normal(0.3, 0.5, size=200_000)  # the marginal of the linear predictor
    if family in ("bernoulli", "binomial"):
        trials = 5 if family == "binomial" else 1
        assert y.dtype == np.int64 and y.min() >= 0 and y.max() <= trials
        assert y.mean() / trials == pytest.approx(special.expit(b).mean(), abs=0.02)
    elif family in ("poisson", "negativebinomial"):
        assert y.dtype == np.int64
        mu = np.exp(0.3 + 0.5**2 / 2)
        assert y.mean() == pytest.approx(mu, rel=0.06)
        extra = 0 if family == "poisson" else np.exp(2 * 0.3 + 2 * 0.5**2) / 3.0
        var = mu + np.exp(2 * 0.3 + 2 * 0.5**2) - mu**2 + extra  # law of total variance
        assert y.var() == pytest.approx(var, rel=0.15)
    else:
        assert y.var() == pytest.approx(0.5**2 + 2.0**2 * 5 / 3, rel=0.1)


def test_known_standard_errors_are_used():
    m = hm.Model("y | se(sigma) ~ 1 + (1 | school)", hm.datasets.load("eight_schools"))
    df = hm.simulate(m, {"Intercept": 0, "sd(school)": 0.0}, n=400, seed=2)
    y = np.stack([d["y"].to_numpy() for d in df])
    assert y.std(axis=0) == pytest.approx(m.design.se, rel=0.12)


def test_lkj_draws_have_the_right_marginal():
    rng = np.random.default_rng(1)
    r = np.array([lkj_corr(2.0, 3, rng)[0, 2] for _ in range(3000)])
    b = 2.0 - 1 + 3 / 2  # each correlation is 2 Beta(b, b) - 1
    assert stats.kstest((r + 1) / 2, stats.beta(b, b).cdf).pvalue > 0.01


def test_prior_draws_follow_the_priors_on_the_centred_intercept(sleep_model):
    d, pri = sleep_model.design, sleep_model.priors
    rng = np.random.default_rng(2)
    draws = [draw_from_priors(d, pri, rng) for _ in range(1000)]
    mean_days = d.X[:, 1].mean()
    centred = np.array([p.beta[0] + mean_days * p.beta[1] for p in draws])
    assert stats.kstest(centred, pri["Intercept"].prior.scipy().cdf).pvalue > 0.01
    sd = np.array([p.sd["Subject"][1] for p in draws])
    assert stats.kstest(sd, pri["sd(Subject, Days)"].prior.scipy().cdf).pvalue > 0.01


def test_parameter_dictionaries_are_checked(sleep_model):
    d = sleep_model.design
    assert [p.label for p in parameter_labels(d)][-2:] == ["cor(Subject, Intercept:Days)", "sigma"]
    with pytest.raises(hm.SpecificationError, match="Did you mean 'sigma'"):
        parse_params(d, {**SLEEP_TRUTH, "sgima": 1})
    with pytest.raises(hm.SpecificationError, match="missing 'sigma'"):
        parse_params(d, {k: v for k, v in SLEEP_TRUTH.items() if k != "sigma"})
    with pytest.raises(hm.SpecificationError, match="must be >= 0"):
        parse_params(d, {**SLEEP_TRUTH, "sd(Subject, Days)": -1})
    with pytest.raises(hm.SpecificationError, match=r"\[-1, 1\]"):
        parse_params(d, {**SLEEP_TRUTH, "cor(Subject)": 1.5})
    with pytest.raises(hm.SpecificationError, match="must be a number"):
        parse_params(d, {**SLEEP_TRUTH, "sigma": "big"})
    p = parse_params(d, {**SLEEP_TRUTH, "cor(Subject)": [[1, 0.2], [0.2, 1]], " sd( Subject , Days ) ": 7})
    assert p.cor["Subject"][0, 1] == 0.2 and p.sd["Subject"][1] == 7
    m3 = hm.Model("y ~ x + (x + z | g)", pd.DataFrame({"y": np.arange(30.0) % 7, "x": np.arange(30.0) % 5,
                                                        "z": np.arange(30.0) % 3, "g": np.repeat(np.arange(6), 5)}))
    base = {"Intercept": 0, "x": 1, "sd(g, Intercept)": 1, "sd(g, x)": 1, "sd(g, z)": 1, "sigma": 1}
    with pytest.raises(hm.SpecificationError, match="3x3 correlation matrix"):
        parse_params(m3.design, {**base, "cor(g)": 0.3})
    with pytest.raises(hm.SpecificationError, match="positive semi-definite"):
        parse_params(m3.design, {**base, "cor(g)": [[1, 0.9, -0.9], [0.9, 1, 0.9], [-0.9, 0.9, 1]]})


def test_simulate_argument_errors(sleep_model):
    with pytest.raises(hm.SpecificationError, match="design="):
        hm.simulate("y ~ x + (1 | g)", {"Intercept": 0})
    with pytest.raises(hm.SpecificationError, match="params="):
        hm.simulate("y ~ 1 + (1 | g)", design=hm.design_grid(4, 2, group="g"))
    with pytest.raises(hm.SpecificationError, match="positive integer"):
        hm.simulate(sleep_model, SLEEP_TRUTH, n=0)
    with pytest.raises(hm.DataError, match="trials"):
        hm.simulate("p(y, n) ~ 1 + (1 | g)", {"Intercept": 0, "sd(g)": 1}, design=hm.design_grid(4, 2, group="g"),
                    family="binomial")


def test_design_grid_and_templates():
    d = hm.design_grid(6, 4, group="site", between={"arm": ["a", "b", "c"]},
                       within={"x": lambda rng, n: rng.normal(size=n)}, seed=1)
    assert d.shape == (24, 3) and d.groupby("arm")["site"].nunique().tolist() == [2, 2, 2]
    assert (d.groupby("site", observed=True)["arm"].nunique() == 1).all()
    assert d["x"].nunique() == 24
    with pytest.raises(hm.SpecificationError, match="at least 2"):
        hm.design_grid(1, 4)
    tmpl = hm.design_grid(2, 3, group="g", between={"treat": [0, 1]}, within={"t": [0, 1, 2]})
    big = call_design(tmpl, 5, 4, np.random.default_rng(0), "g")
    assert big["g"].nunique() == 5 and len(big) == 20
    assert big.groupby("treat")["g"].nunique().tolist() == [3, 2]
    assert big.loc[big["g"] == "1", "t"].tolist() == [0, 1, 2, 0]
    assert call_design(tmpl, None, None, np.random.default_rng(0), "g") is tmpl
    with pytest.raises(hm.SpecificationError, match="callable"):
        call_design("nope", 2, 2, np.random.default_rng(0), "g")
    spec = hm.parse_formula("y ~ treat + (1 | g)")
    assert design_for(spec, tmpl).n == 6


def test_simulate_asks_the_family_registry_for_its_parameters():
    """A family added through the registry (gamma, with its shape) is simulated with its own parameters."""
    import warnings

    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(10), 8)
    x = rng.normal(size=80)
    df = pd.DataFrame({"y": rng.gamma(5, np.exp(1 + 0.5 * x) / 5), "x": x, "g": g.astype(str)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = hm.Model("y ~ x + (1 | g)", df, family="gamma")
    sims = hm.simulate(m, {"Intercept": 1.0, "x": 0.5, "sd(g, Intercept)": 1e-6, "shape": 5.0}, n=200, seed=2)
    y = np.stack([s["y"].to_numpy() for s in sims])
    mu = np.exp(1 + 0.5 * x)
    np.testing.assert_allclose(y.mean(axis=0) / mu, 1.0, atol=0.2)          # gamma mean mu
    assert abs(np.mean(y.var(axis=0) / mu**2) - 1 / 5) < 0.05                # variance mu^2 / shape
    with pytest.raises(hm.SpecificationError, match="shape"):
        hm.simulate(m, {"Intercept": 1.0, "x": 0.5, "sd(g, Intercept)": 0.3}, seed=2)

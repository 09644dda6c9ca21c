"""Prior explanation, prior predictive checks, prior vs posterior, power-scaling sensitivity and compare_priors.

Fits are small (2 chains x 500 draws), each fitted once per module.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hmodels as hm
from hmodels.prior_checks import THRESHOLDS, log_prior_dataset


@pytest.fixture(scope="module")
def sleep():
    return hm.datasets.load("sleepstudy")


def _groups(G: int, n: int = 5, seed: int = 0) -> pd.DataFrame:
    """y = 10 + u_g + e, u_g ~ N(0, 1), e ~ N(0, 1): G groups of n."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(G), n)
    u = rng.normal(0, 1.0, G)
    return pd.DataFrame({"y": 10 + u[g] + rng.normal(0, 1, G * n), "g": [f"g{i:02d}" for i in g]})


_FITS = {}


def _fit(G):
    if G not in _FITS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _FITS[G] = hm.Model("y ~ 1 + (1 | g)", _groups(G)).fit(draws=500, tune=500, chains=2, seed=1,
                                                                    progressbar=False)
    return _FITS[G]


# -- explain ---------------------------------------------------------------------------------
def test_explain_priors_rows_sources_and_implied_ranges(sleep):
    m = hm.Model("Reaction ~ Days + (Days | Subject)", sleep, priors={"sigma": hm.HalfNormal(50)})
    tab = m.explain_priors(draws=4000, seed=1)
    assert list(tab["parameter"]) == ["Intercept", "Days", "sd(Subject, Intercept)", "sd(Subject, Days)",
                                      "cor(Subject)", "sigma", "ICC(Subject)"]
    src = dict(zip(tab["parameter"], tab["source"]))
    assert src["Intercept"] == "default" and src["sigma"] == "user" and src["ICC(Subject)"] == "implied"
    assert "sd(Reaction) = 56.33" in tab.set_index("parameter").loc["Intercept", "derived_from"]
    row = tab.set_index("parameter").loc["Intercept"]
    # Normal(298.5, 140.8): 95% range mean +/- 1.96 sd; 2.5% quantile of 4000 draws has MC SE ~6
    assert row["implied_low"] == pytest.approx(298.5 - 1.96 * 140.8, abs=25)
    assert row["implied_high"] == pytest.approx(298.5 + 1.96 * 140.8, abs=25)
    icc = tab.set_index("parameter").loc["ICC(Subject)"]
    assert 0 <= icc["implied_low"] < 0.05 and 0.9 < icc["implied_high"] <= 1
    assert tab["rationale"].iloc[0]


def test_explain_priors_logit_reports_odds_ratios():
    m = hm.Model("p(incidence, size) ~ period + (1 | herd)", hm.datasets.load("cbpp"), family="binomial")
    tab = m.explain_priors(seed=1).set_index("parameter")
    assert "odds ratio" in tab.loc["period[2]", "implies"]
    assert tab.loc["period[2]", "implied_low"] > 0  # a ratio
    assert 0 < tab.loc["Intercept", "implied_low"] < tab.loc["Intercept", "implied_high"] < 1  # a probability


# -- prior predictive ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pp_sleep(sleep):
    out = {}
    for s in ("default", "vague"):
        m = hm.Model("Reaction ~ Days + (Days | Subject)", sleep, prior_set=s)
        out[s] = m.prior_predictive(draws=500, seed=1)
    return out


def test_vague_prior_predictive_flags_implausible_outcomes(pp_sleep):
    pp = pp_sleep["vague"]
    checks = pp.checks.set_index("check")
    assert pp.flagged
    assert checks.loc["negative outcomes", "flagged"] and checks.loc["far beyond observed range", "flagged"]
    assert checks.loc["far beyond observed range", "fraction"] > 0.9
    assert any("negative" in f and "Reaction" in f for f in pp.flags)


def test_default_prior_predictive_is_not_flagged(pp_sleep):
    pp = pp_sleep["default"]
    checks = pp.checks.set_index("check")
    assert not pp.flagged and pp.flags == []
    assert checks.loc["negative outcomes", "fraction"] < THRESHOLDS["negative"] / 2
    assert checks.loc["far beyond observed range", "fraction"] < THRESHOLDS["far"] / 4


def test_prior_predictive_data_summary_and_plot(pp_sleep):
    import matplotlib

    pp = pp_sleep["default"]
    assert {"prior", "prior_predictive", "observed_data"} <= set(pp.data.children)
    assert pp.data["prior_predictive"]["Reaction"].shape == (1, 500, 180)
    summ = pp.summary.set_index("quantity")
    assert {"Reaction", "mean(Reaction)", "sd(Subject, Intercept)", "sd(Subject, Days)", "ICC(Subject)", "R2"} <= set(
        summ.index
    )
    assert summ.loc["mean(Reaction)", "observed"] == pytest.approx(298.5079, abs=1e-3)
    # sd(Subject, Intercept) ~ HalfNormal(56.33): median 0.674 * 56.33 = 38.0; MC SE of the median of 500 ~2
    assert summ.loc["sd(Subject, Intercept)", "prior_median"] == pytest.approx(0.6745 * 56.33, abs=8)
    fig = pp.plot()
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 4
    matplotlib.pyplot.close(fig)


def test_binomial_vague_pins_probabilities():
    cbpp = hm.datasets.load("cbpp")
    flagged = {}
    for s in ("default", "vague"):
        m = hm.Model("p(incidence, size) ~ period + (1 | herd)", cbpp, family="binomial", prior_set=s)
        pp = m.prior_predictive(draws=300, seed=2)
        flagged[s] = pp.checks.set_index("check").loc["probabilities pinned at 0/1", "fraction"]
    assert flagged["vague"] > 0.9 > THRESHOLDS["pinned"] > flagged["default"]


# -- sensitivity and contraction -------------------------------------------------------------
def test_power_scaling_flags_group_sd_prior_with_4_groups_not_60():
    few = _fit(4).prior_sensitivity().loc["sd_g[Intercept]"]
    many = _fit(60).prior_sensitivity().loc["sd_g[Intercept]"]
    assert few["prior"] >= 0.05 and few["verdict"] in ("prior-data conflict", "weak likelihood")
    assert many["prior"] < 0.05 and many["verdict"] == "fine" and many["message"] == ""
    assert few["prior"] > 4 * many["prior"]


def test_log_prior_matches_prior_densities():
    fit = _fit(4)
    lp = log_prior_dataset(fit)
    sd = fit.draws["sd_g"].sel(g__term="Intercept").values
    expected = fit.priors["sd(g, Intercept)"].prior.scipy().logpdf(sd)
    np.testing.assert_allclose(lp["sd_g"].sel(g__term="Intercept").values, expected, rtol=1e-12)
    assert set(lp.data_vars) == {"b", "sd_g", "sigma"}


def test_contraction_larger_with_more_groups():
    few, many = _fit(4).prior_contraction(), _fit(60).prior_contraction()
    assert set(few.index) == {"b[Intercept]", "sd_g[Intercept]", "sigma"}
    assert many.loc["sd_g[Intercept]", "contraction"] > 0.95
    assert few.loc["sd_g[Intercept]", "contraction"] < many.loc["sd_g[Intercept]", "contraction"] - 0.2
    prior_sd = _fit(4).priors["sd(g, Intercept)"].prior.scipy().std()
    assert few.loc["sd_g[Intercept]", "prior_sd"] == pytest.approx(prior_sd, rel=1e-9)


def test_plot_prior_posterior_adds_prior_group():
    fit = _fit(4)
    pc = fit.plot_prior_posterior(var_names=["sd_g", "sigma"], draws=400)
    assert "prior" in fit.posterior.children
    assert fit.posterior["prior"]["sd_g"].shape == (1, 400, 1)
    assert pc is not None
    import matplotlib.pyplot as plt

    plt.close("all")


# -- compare ---------------------------------------------------------------------------------
def test_compare_priors_orders_group_sd_interval_widths(sleep):
    six = sleep[sleep["Subject"].isin(sorted(sleep["Subject"].unique())[:6])]
    m = hm.Model("Reaction ~ Days + (1 | Subject)", six)
    tab = hm.compare_priors(m, ["regularizing", "default", "vague"], draws=500, tune=500, chains=2, seed=1)
    assert list(tab.columns.get_level_values(0).unique()) == ["regularizing", "default", "vague"]
    w = tab.xs("width", axis=1, level="stat").loc["sd(Subject, Intercept)"]
    assert w["regularizing"] <= w["default"] <= w["vague"]
    assert set(tab.index) == {"b[Intercept]", "b[Days]", "sd(Subject, Intercept)", "sigma"}
    # the fixed slope is well identified: same under all three priors within 3 posterior SDs (~1.7 ms/day)
    means = tab.xs("mean", axis=1, level="stat").loc["b[Days]"]
    assert means.max() - means.min() < 3 * 1.7


def test_explain_priors_of_family_parameters_with_their_own_formula_speak_of_those_parameters():
    rng = np.random.default_rng(1)
    x = rng.normal(size=120)
    g = np.repeat([f"g{i}" for i in range(12)], 10)
    y = 1 + x + np.exp(0.3 * x) * rng.normal(size=120)
    data = pd.DataFrame({"y": y, "x": x, "g": g})
    t = hm.Model("y ~ x + (1 | g)", data, dpars={"sigma": "x + (x | g)"}).explain_priors().set_index("parameter")
    # the sigma intercept is log sigma: the implied range is that of sigma (positive), not of mean y
    assert t.loc["sigma_Intercept", "implies"].startswith("sigma (residual SD of y)")
    assert t.loc["sigma_Intercept", "implied_low"] > 0
    assert t.loc["sigma_x", "implies"].startswith("ratio of sigma per SD of x")
    assert "sigma" in t.loc["sd(g, sigma_Intercept)", "implies"]
    assert "sigma" in t.loc["cor(g__sigma)", "implies"]
    assert np.isfinite(t.loc["ICC(g)", ["implied_low", "implied_high"]].astype(float)).all()
    counts = pd.DataFrame({"y": rng.poisson(2, 120) * (rng.uniform(size=120) > 0.3), "x": x, "g": g})
    z = hm.Model("y ~ x + (1 | g)", counts, family="zero_inflated_poisson",
                 dpars={"zi": "1 + x"}).explain_priors().set_index("parameter")
    assert z.loc["zi_Intercept", "implies"].startswith("zi (probability of an excess")
    assert 0 < z.loc["zi_Intercept", "implied_low"] < z.loc["zi_Intercept", "implied_high"] < 1
    assert z.loc["zi_x", "implies"].startswith("odds ratio of zi per SD of x")


def test_explain_priors_of_a_lognormal_speaks_of_log_y_for_every_coefficient():
    rng = np.random.default_rng(2)
    x = rng.normal(size=100)
    data = pd.DataFrame({"time": np.exp(1 + 0.5 * x + 0.6 * rng.normal(size=100)), "x": x,
                         "g": np.repeat([f"g{i}" for i in range(10)], 10)})
    t = hm.Model("time ~ x + (1 | g)", data, family="lognormal").explain_priors().set_index("parameter")
    assert t.loc["Intercept", "implies"].startswith("mean log(time)")
    assert t.loc["x", "implies"].startswith("change in log(time) per SD of x")  # not "change in time"
    assert "difference in log(time)" in t.loc["sd(g, Intercept)", "implies"]


def test_explain_priors_of_a_truncated_outcome_says_the_intercept_is_before_truncation():
    rng = np.random.default_rng(3)
    x = rng.normal(size=100)
    y = rng.poisson(np.exp(0.2 + 0.5 * x))
    data = pd.DataFrame({"y": np.maximum(y, 1), "x": x})
    t = hm.Model("y | trunc(lb=1) ~ x", data, family="poisson").explain_priors().set_index("parameter")
    assert "before truncation" in t.loc["Intercept", "implies"]  # exp(Intercept) is mu, not E[y | y >= 1]
    assert "before truncation" not in hm.Model("y ~ x", data, family="poisson").explain_priors()["implies"][0]

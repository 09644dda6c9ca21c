"""The hard-GLMM suite (issue 14): simulators with known truth, and fits that must converge.

The fast tests check the simulators' shapes and fit small versions; the full-size fits (default
settings with ``until="converged"``) are marked slow: ``pytest -m slow tests/hard``.
``benchmarks/hard.py`` measures the same cases at plain default settings.
"""

import warnings

import numpy as np
import pytest

from hard import CASES, make_case
from hmodels.diagnostics import diagnose
from hmodels.sampling import UNTIL_ESS, UNTIL_RHAT


def _fit(case, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return case.model().fit(progressbar=False, **kw)


def _truth_z(case, fit):
    """|posterior mean - truth| / posterior SD for every coefficient (lme4's estimate for real data).

    SDs are left out: one data set informs an SD only through its realised effects (5 groups of
    ``binomial_few_groups`` seed 2 lie close together: posterior 0.15 +- 0.13 against 0.7).
    """
    table = diagnose(fit, group_effects=False).table
    truth = case.truth if case.truth is not None else case.extra["lme4"]
    return {t: abs(table.loc[t, "mean"] - v) / table.loc[t, "sd"] for t, v in truth["b"].items()}


def test_nested_poisson_is_nested_with_small_inner_levels():
    c = make_case("nested_poisson", 1)
    d = c.data
    assert d.groupby("brood", observed=True)["loc"].nunique().max() == 1  # every brood in one location
    sizes = d.groupby("brood", observed=True).size()
    assert d["brood"].nunique() == 120 and d["loc"].nunique() == 60
    assert sizes.min() >= 1 and sizes.max() <= 6
    assert c.truth["sd"] == {"brood": {"Intercept": 0.83}, "loc": {"Intercept": 0.55}}


def test_grouseticks_is_the_issue_shape():
    c = make_case("grouseticks")
    d = c.data
    assert len(d) == 403 and d["BROOD"].nunique() == 118 and d["LOCATION"].nunique() == 63
    assert d.groupby("BROOD", observed=True)["LOCATION"].nunique().max() == 1


@pytest.mark.parametrize("size, rows, a, g", [("full", 20_000, 500, 200), ("small", 2_000, 50, 20)])
def test_crossed_designs(size, rows, a, g):
    common = make_case("crossed_bernoulli", 1, size)
    rare = make_case("crossed_bernoulli_rare", 1, size)
    for c in (common, rare):
        assert len(c.data) == rows and c.data["a"].nunique() == a and c.data["g"].nunique() == g
    assert 0.3 < common.data["y"].mean() < 0.7
    if size == "full":
        assert 0.01 < rare.data["y"].mean() < 0.03  # ~2% prevalence


def test_toenail_like_has_a_large_subject_icc():
    c = make_case("toenail_like", 1)
    sd = c.truth["sd"]["id"]["Intercept"]
    assert sd**2 / (sd**2 + np.pi**2 / 3) > 0.8
    assert c.data.groupby("id", observed=True).size().eq(7).all()


def test_other_cases_have_their_shape():
    assert make_case("slope_near_zero", 1).truth["sd"]["g"]["x"] <= 0.02
    assert make_case("binomial_few_groups", 1).data["g"].nunique() == 5
    nb = make_case("negbin_obs_effect", 1)
    assert nb.data["row"].nunique() == len(nb.data) and nb.family == "negativebinomial"


@pytest.mark.parametrize("name", ["nested_poisson", "slope_near_zero", "binomial_few_groups"])
def test_small_cases_converge_and_recover_the_truth(name):
    c = make_case(name, 1, "small")
    fit = _fit(c, seed=1, until="converged", max_time=60)
    u = fit.meta["until"]
    assert u["converged"], u
    table = diagnose(fit, group_effects=False).table
    assert table["r_hat"].max() <= UNTIL_RHAT and table["ess_bulk"].min() >= UNTIL_ESS
    z = _truth_z(c, fit)
    assert max(z.values()) < 4, z  # one data set: every estimate within 4 posterior SDs of the truth


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("seed", [1, 2])
def test_full_size_cases_converge_at_default_settings(name, seed):
    c = make_case(name, seed)
    fit = _fit(c, seed=seed, until="converged", max_time=1800)
    u = fit.meta["until"]
    assert u["converged"], {k: v for k, v in u.items() if k != "rounds"}
    assert fit.divergences == 0
    table = diagnose(fit, group_effects=False).table
    assert table["r_hat"].max() <= UNTIL_RHAT
    assert table["ess_bulk"].min() >= UNTIL_ESS and table["ess_tail"].min() >= UNTIL_ESS
    z = _truth_z(c, fit)
    assert max(z.values()) < 4, z

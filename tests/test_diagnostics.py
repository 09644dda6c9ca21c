"""Convergence diagnosis, divergence location and singular-fit detection (hmodels.diagnostics)."""

from __future__ import annotations

import numpy as np
import pytest
from _sim_fits import centred_schools_fit, slope_fit

from hmodels.diagnostics import RHAT_MAX, Diagnosis, diagnose


@pytest.fixture(scope="module")
def bad():
    return diagnose(centred_schools_fit())


def test_centred_eight_schools_diverges_and_says_what_to_do(bad):
    assert isinstance(bad, Diagnosis)
    assert bad.divergences > 0
    assert not bad.ok
    div = [v for v in bad.verdicts if v.problem == "divergences"]
    assert len(div) == 1
    assert "target_accept=0.95" in div[0].remedy  # raised from 0.6
    assert "centered={'school': False}" in div[0].remedy  # non-centre the funnel
    # the divergences sit in the neck of the funnel: small school SD
    loc = bad.divergence_location.loc["sd(school, Intercept)"]
    assert loc["mean_percentile"] < 0.3
    assert loc["median_divergent"] < loc["median_other"]
    assert "divergences" in repr(bad) and "Remedy" in repr(bad)
    assert "problems found" in bad._repr_html_()


def test_table_has_arviz_diagnostics_per_parameter(bad):
    t = bad.table
    assert {"r_hat", "ess_bulk", "ess_tail", "mcse_mean", "flag"} <= set(t.columns)
    assert {"Intercept", "sd(school, Intercept)", "r_school[A, Intercept]"} <= set(t.index)
    assert len(t) == 1 + 1 + 8
    assert (t["ess_bulk"] > 0).all() and (t["mcse_mean"] > 0).all()
    flagged = t[t["flag"].str.contains("r_hat")]
    assert (flagged["r_hat"] > RHAT_MAX).all()


def test_non_centred_eight_schools_passes(schools_fit):
    d = schools_fit.diagnose()
    assert d.divergences == 0
    assert d.ok, d.messages()
    assert d.tree_depth_hits == 0
    assert d.bfmi.shape == (4,) and np.all(d.bfmi > 0.3)
    assert d.summary()["passed"].all()


def test_sleepstudy_passes_and_is_not_singular(sleep_fit):
    d = sleep_fit.diagnose()
    assert d.ok, d.messages()
    assert d.singular_components == []
    assert d.singular.loc["sd(Subject, Days)", "statistic"] < 0.1


def test_zero_slope_variance_is_singular():
    d = diagnose(slope_fit(0.0))
    assert d.singular.loc["sd(g, x)", "singular"]
    assert not d.singular.loc["sd(g, Intercept)", "singular"]
    assert d.singular_components == ["sd(g, x)"]
    v = [v for v in d.verdicts if v.problem == "singular_sd"]
    assert len(v) == 1 and "Drop the random slope of x for g" in v[0].remedy
    assert not v[0].affects_ok  # a property of model and data, not of the sampler


def test_real_slope_variance_is_not_singular():
    d = diagnose(slope_fit(0.6))
    assert d.singular_components == []
    assert d.singular.loc["sd(g, x)", "statistic"] < 0.1


def _cut(fit, chains: int, draws: int):
    """Keep only the first ``chains`` chains and ``draws`` draws of a fit (every group with those dims)."""
    import copy

    import xarray as xr

    groups = {name: node.to_dataset().isel(chain=slice(0, chains), draw=slice(0, draws), missing_dims="ignore")
              for name, node in fit.posterior.children.items()}
    out = copy.copy(fit)
    out.posterior = xr.DataTree.from_dict(groups)
    return out


@pytest.mark.parametrize("chains, draws, checks, why, remedy", [
    (1, 1, {"r_hat", "ess_bulk", "ess_tail", "bfmi"}, "but the fit has 1 draw per chain", "draws=1000"),
    (1, 500, {"r_hat"}, "it compares chains and needs at least 2, but the fit has 1 chain", "chains=4"),
    (2, 3, {"r_hat", "ess_bulk", "ess_tail"}, "needs at least 4 draws per chain, but the fit has 3", "draws=1000"),
])
def test_checks_that_cannot_be_computed_fail(schools_fit, chains, draws, checks, why, remedy):
    """R-hat, ESS or E-BFMI that come out NaN (too few chains or draws) used to leave diagnose() OK."""
    d = diagnose(_cut(schools_fit, chains, draws))
    assert (d.chains, d.n_draws) == (chains, draws)
    assert not d.ok
    assert set(d.not_computed) == checks
    nc = [v for v in d.verdicts if v.problem == "not_computed"]
    assert len(nc) == len(checks) and all(v.affects_ok for v in nc)
    assert all("could not be computed" in v.message for v in nc)
    assert any(why in v.message for v in nc), [v.message for v in nc]
    assert any(remedy in v.remedy for v in nc)
    assert not d.summary().loc["max R-hat", "passed"]
    assert "PROBLEMS FOUND" in repr(d) and "could not be computed" in repr(d)


def test_fit_warns_when_convergence_cannot_be_checked():
    """One chain of one draw: no R-hat, no ESS. The fit must not call itself converged, and says why."""
    import hmodels as hm

    m = hm.Model("Yield ~ 1 + (1 | Batch)", hm.datasets.load("dyestuff"))
    with pytest.warns(hm.ConvergenceWarning, match="cannot be checked from 1 chain"):
        fit = m.fit(draws=1, tune=10, chains=1, seed=1, progressbar=False)
    assert not fit.converged and not fit.diagnose().ok


# -- identifiability (issue 13): chains in different modes, posteriors that are their priors -------------------
@pytest.fixture(scope="module")
def narrow_prior_fit():
    import warnings

    import hmodels as hm

    m = hm.Model("Reaction ~ Days + (1 | Subject)", hm.datasets.load("sleepstudy"),
                 priors={"Days": hm.Normal(0, 0.01)})  # a prior so narrow the data cannot move it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return m.fit(draws=300, tune=300, chains=2, seed=1, progressbar=False)


def test_a_posterior_that_is_its_prior_is_named(narrow_prior_fit):
    d = diagnose(narrow_prior_fit)
    v = [v for v in d.verdicts if v.problem == "prior_dominated"]
    assert len(v) == 1 and v[0].parameters == ("Days",)
    assert "Days (" in v[0].message and "of its prior SD" in v[0].message
    assert not v[0].affects_ok  # a property of model and data, not of the sampler
    assert not [v for v in d.verdicts if v.problem == "multimodal"]


def test_chains_in_different_modes_are_named(narrow_prior_fit):
    import copy

    fit = copy.copy(narrow_prior_fit)
    fit.posterior = narrow_prior_fit.posterior.copy(deep=True)
    b = fit.posterior["posterior"]["b"]
    shifted = b.values.copy()
    shifted[1, :, 0] += 40 * float(b.sel(term="Intercept").std())  # chain 1 in another mode of the Intercept
    fit.posterior["posterior"]["b"] = b.copy(data=shifted)
    d = diagnose(fit)
    v = [v for v in d.verdicts if v.problem == "multimodal"]
    assert len(v) == 1 and v[0].parameters[0] == "Intercept"
    assert "different modes" in v[0].message and "prior that rules out" in v[0].remedy
    assert not d.ok

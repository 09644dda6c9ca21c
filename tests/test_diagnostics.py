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

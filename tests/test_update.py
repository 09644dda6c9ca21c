"""fit.update: refit with new data, priors or formula, keeping the rest."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import hmodels as hm


@pytest.fixture(scope="module")
def base_fit():
    m = hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy"),
                 priors={"Days": hm.Normal(10, 5)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return m.fit(draws=300, tune=300, chains=2, seed=3, progressbar=False)


def _quiet(fn, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(progressbar=False, **kw)


def test_update_with_nothing_changed_reproduces_the_fit(base_fit):
    same = _quiet(base_fit.update)
    np.testing.assert_array_equal(same.draws["b"].values, base_fit.draws["b"].values)
    assert same.settings == base_fit.settings and same.spec == base_fit.spec


def test_update_priors_merges_over_the_users_priors(base_fit):
    new = _quiet(base_fit.update, priors={"sd": hm.HalfNormal(10)})
    assert new.priors["Days"].prior == hm.Normal(10, 5)  # kept
    sd_days = new.priors["sd(Subject, Days)"]
    assert sd_days.prior == hm.HalfNormal(10) and sd_days.source == "user"
    assert new.variance_components().loc["sd(Subject, Intercept)", "mean"] < \
        base_fit.variance_components().loc["sd(Subject, Intercept)", "mean"]


def test_update_data_and_formula(base_fit):
    data = hm.datasets.load("sleepstudy")
    few = data[data["Subject"].astype(str).isin(sorted(data["Subject"].astype(str).unique())[:9])]
    sub = _quiet(base_fit.update, data=few, seed=4)
    assert sub.meta["n_obs"] == len(few) and sub.settings.seed == 4
    simpler = _quiet(base_fit.update, formula="Reaction ~ Days + (1 | Subject)")
    assert list(simpler.meta["factors"]["Subject"]["terms"]) == ["Intercept"]
    assert simpler.priors["Days"].prior == hm.Normal(10, 5)
    with pytest.raises(hm.SpecificationError, match="DataFrame"):
        base_fit.update(data=[1, 2, 3])

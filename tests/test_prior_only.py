"""model.fit(prior_only=True): NUTS draws from the priors alone (brms's sample_prior = "only")."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

import hmodels as hm


@pytest.fixture(scope="module")
def prior_fit():
    m = hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy"),
                 priors={"Days": hm.Normal(10, 5), "sd": hm.HalfNormal(20), "sigma": hm.HalfNormal(30)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return m, m.fit(draws=1000, tune=500, chains=2, seed=2, progressbar=False, prior_only=True)


def test_prior_only_draws_follow_the_priors(prior_fit):
    _, fit = prior_fit
    assert fit.meta["prior_only"] is True and "prior_only" in fit.meta["plan"]["deviations"][0]
    assert fit.meta["plan"]["centered"] == {"Subject": False}
    days = fit.draws["b"].sel(term="Days").values.ravel()
    sd = fit.draws["sd_Subject"].values.reshape(-1, 2)
    sigma = fit.draws["sigma"].values.ravel()
    # Kolmogorov-Smirnov against the prior (MCMC draws are autocorrelated: a loose level)
    assert stats.kstest(days, stats.norm(10, 5).cdf).pvalue > 1e-3
    assert stats.kstest(sd[:, 1], stats.halfnorm(scale=20).cdf).pvalue > 1e-3
    assert stats.kstest(sigma, stats.halfnorm(scale=30).cdf).pvalue > 1e-3
    assert abs(np.mean(days) - 10) < 0.5


def test_prior_only_meta_matches_a_posterior_fit(prior_fit):
    m, fit = prior_fit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = m.fit(draws=100, tune=100, chains=2, seed=2, progressbar=False)
    assert sorted(post.meta) == sorted(fit.meta) and post.meta["prior_only"] is False
    with pytest.raises(hm.SpecificationError, match="likelihood"):
        m.fit(prior_only=True, log_likelihood=True, progressbar=False)

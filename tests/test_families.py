"""Family conformance: hmodels' NumPy log-likelihood equals PyMC's model log-density, per family.

The pointwise log-likelihood used by LOO, predictive checks and loaded fits is computed in NumPy
(:mod:`hmodels.linpred`); here it is checked against the PyMC graph that was sampled, at prior
draws, for every family and link.
"""

import numpy as np
import pandas as pd
import pymc as pm
import pytensor
import pytest
import xarray as xr

import hmodels as hm
from hmodels.fit import Fit
from hmodels.linpred import linear_predictor, pointwise_loglik, simulate_response
from hmodels.sampling import SamplerSettings

rng = np.random.default_rng(7)
N = 40
BASE = pd.DataFrame({"x": rng.normal(size=N), "g": np.repeat(list("abcdefgh"), 5)})

CASES = {
    ("gaussian", None): rng.normal(3, 2, N),
    ("student_t", None): rng.standard_t(4, N),
    ("bernoulli", "logit"): rng.integers(0, 2, N),
    ("bernoulli", "probit"): rng.integers(0, 2, N),
    ("bernoulli", "cloglog"): rng.integers(0, 2, N),
    ("binomial", "logit"): rng.integers(0, 6, N),
    ("binomial", "probit"): rng.integers(0, 6, N),
    ("poisson", None): rng.poisson(3, N),
    ("negativebinomial", None): rng.poisson(3, N),
}


def _pymc_loglik(model, post):
    """PyMC's elementwise log-density of the observed variable, with every free RV fixed to a draw."""
    from pytensor.graph.replace import graph_replace

    pmodel = model.pymc_model
    obs_rv = pmodel[model.spec.response]
    graph = pm.logp(obs_rv, model.design.y)
    out = np.empty((post.sizes["chain"], post.sizes["draw"], model.design.n))
    for c in range(post.sizes["chain"]):
        for d in range(post.sizes["draw"]):
            repl = {rv: pytensor.tensor.constant(np.asarray(post[rv.name].values[c, d], dtype=rv.dtype))
                    for rv in pmodel.free_RVs}
            with pytensor.config.change_flags(mode="FAST_COMPILE"):
                out[c, d] = graph_replace(graph, repl, strict=False).eval()
    return out


def _fake_fit(model, draws=2):
    with model.pymc_model, pytensor.config.change_flags(mode="FAST_COMPILE"):
        prior = pm.sample_prior_predictive(draws=draws, random_seed=1)
    post = prior["prior"].to_dataset()
    tree = xr.DataTree.from_dict({"posterior": post})
    settings = SamplerSettings("pymc", draws, 0, 1, 1, 1, 0.9)
    meta = {"fixed_terms": model.design.fixed_terms, "factors": {}}
    return Fit(tree, model.spec, model.priors, settings, meta, data=model.design.data, design=model.design, model=model)


@pytest.mark.parametrize("family, link", list(CASES))
def test_loglik_matches_pymc(family, link):
    df = BASE.copy()
    df["y"] = CASES[(family, link)]
    df["n"] = 6
    formula = "p(y, n) ~ x + (x | g)" if family == "binomial" else "y ~ x + (x | g)"
    model = hm.Model(formula, df, family=family, link=link)
    fit = _fake_fit(model)
    ours = pointwise_loglik(fit, linear_predictor(fit))
    theirs = _pymc_loglik(model, fit.draws)
    assert ours.shape == theirs.shape
    finite = np.isfinite(theirs)
    assert finite.mean() > 0.9
    np.testing.assert_allclose(ours[finite], theirs[finite], rtol=1e-6, atol=1e-6)
    reps = simulate_response(fit, linear_predictor(fit), seed=1)
    assert reps.shape == ours.shape and np.isfinite(reps).all()

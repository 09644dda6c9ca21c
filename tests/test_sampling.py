"""Sampler options, reproducibility and convergence reporting."""

import warnings

import numpy as np
import pytest

import hmodels as hm
from hmodels.sampling import check_settings


@pytest.fixture(scope="module")
def dyestuff_model():
    return hm.Model("Yield ~ 1 + (1 | Batch)", hm.datasets.load("dyestuff"))


def _fit(model, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(draws=200, tune=200, chains=2, progressbar=False, **kw)


def test_same_seed_same_draws(dyestuff_model):
    a = _fit(dyestuff_model, seed=5)
    b = _fit(dyestuff_model, seed=5)
    c = _fit(dyestuff_model, seed=6)
    np.testing.assert_array_equal(a.draws["b"].values, b.draws["b"].values)
    np.testing.assert_array_equal(a.draws["r_Batch"].values, b.draws["r_Batch"].values)
    assert not np.array_equal(a.draws["b"].values, c.draws["b"].values)


def test_posterior_has_named_dims(dyestuff_model):
    fit = _fit(dyestuff_model, seed=1)
    post = fit.draws
    assert post["b"].dims == ("chain", "draw", "term")
    assert post["r_Batch"].dims == ("chain", "draw", "Batch", "Batch__term")
    assert list(post["r_Batch"].coords["Batch"].values) == list("ABCDEF")
    assert {"posterior", "sample_stats", "observed_data"} <= set(fit.posterior.children)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [({"sampler": "stan"}, "Unknown sampler"), ({"draws": 0}, "draws must be"), ({"chains": 1.5}, "chains"),
     ({"target_accept": 1.2}, "target_accept"), ({"seed": -3}, "seed")],
)
def test_bad_sampler_options(dyestuff_model, kwargs, fragment):
    with pytest.raises(hm.SamplingError, match=fragment):
        dyestuff_model.fit(**kwargs)


def test_settings_default_sampler():
    s = check_settings(None, 10, 10, 2, 1, 1, 0.9)
    assert s.sampler in hm.sampling.available_samplers()


def test_centered_option_changes_parameterisation():
    data = hm.datasets.load("dyestuff")
    nc = hm.Model("Yield ~ 1 + (1 | Batch)", data).pymc_model
    c = hm.Model("Yield ~ 1 + (1 | Batch)", data, centered=True).pymc_model
    assert "z_Batch" in nc.named_vars and "z_Batch" not in c.named_vars
    assert "r_Batch" in {v.name for v in c.free_RVs}
    with pytest.raises(hm.SpecificationError, match="not a grouping factor"):
        hm.Model("Yield ~ 1 + (1 | Batch)", data, centered={"batch": True})


def test_convergence_warning_is_plain_language():
    """A centred eight-schools fit with a low target_accept diverges, and the warning gives the remedy."""
    m = hm.Model("y | se(sigma) ~ 1 + (1 | school)", hm.datasets.load("eight_schools"),
                 priors={"Intercept": hm.Normal(0, 5), "sd": hm.HalfCauchy(5)}, centered=True)
    with pytest.warns(hm.ConvergenceWarning, match="divergent transitions.*target_accept"):
        fit = m.fit(draws=500, tune=300, chains=2, seed=2, target_accept=0.6, progressbar=False)
    assert fit.divergences > 0 and not fit.converged

"""Sampler options, reproducibility and convergence reporting."""

import warnings

import numpy as np
import pandas as pd
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
    nc = hm.Model("Yield ~ 1 + (1 | Batch)", data, centered=False).pymc_model
    c = hm.Model("Yield ~ 1 + (1 | Batch)", data, centered=True).pymc_model
    assert "z_Batch" in nc.named_vars and "z_Batch" not in c.named_vars
    assert "r_Batch" in {v.name for v in c.free_RVs}
    with pytest.raises(hm.SpecificationError, match="not a grouping factor"):
        hm.Model("Yield ~ 1 + (1 | Batch)", data, centered={"batch": True})
    with pytest.raises(hm.SpecificationError, match="'auto', True, False"):
        hm.Model("Yield ~ 1 + (1 | Batch)", data, centered="yes")
    # a centred factor samples its effects directly, a non-centred one standardised effects
    fc = hm.Model("Yield ~ 1 + (1 | Batch)", data, centered=True).fit(draws=100, tune=100, chains=1, seed=1,
                                                                       method="joint", progressbar=False)
    fn = hm.Model("Yield ~ 1 + (1 | Batch)", data, centered=False).fit(draws=100, tune=100, chains=1, seed=1,
                                                                        method="joint", progressbar=False)
    assert "z_Batch" in fn.draws and "z_Batch" not in fc.draws
    assert fc.meta["centered"] == {"Batch": True} and fn.meta["centered"] == {"Batch": False}


def test_auto_centring_follows_the_information_in_each_level():
    """centered='auto' centres well-informed factors and keeps weakly informed ones non-centred."""
    schools = hm.Model("y | se(sigma) ~ 1 + (1 | school)", hm.datasets.load("eight_schools"))
    assert schools.centering(None) == {"school": False}  # one noisy observation per school
    cbpp = hm.Model("p(incidence, size) ~ period + (1 | herd)", hm.datasets.load("cbpp"), family="binomial")
    assert cbpp.centered == {"herd": True}  # 15 herds, about 56 animals each
    pen = hm.Model("diameter ~ 1 + (1 | plate) + (1 | sample)", hm.datasets.load("penicillin"))
    assert pen.centering("plate")["sample"] is True  # 24 plates per sample
    pastes = hm.Model("strength ~ 1 + (1 | batch/cask)", hm.datasets.load("pastes"))
    # with the casks integrated out they are noise for the batches: 10 batches, weakly informed
    assert pastes.centering("batch:cask")["batch"] is False
    # a random slope without between-group variance keeps its factor non-centred
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(60), 8)
    x = rng.normal(size=g.size)
    d = pd.DataFrame({"y": rng.poisson(np.exp(0.5 + 0.3 * x + rng.normal(0, 0.6, 60)[g])), "x": x, "g": g})
    assert hm.Model("y ~ x + (1 | g)", d, family="poisson").centered == {"g": True}
    assert hm.Model("y ~ x + (x | g)", d, family="poisson").centered == {"g": False}


def test_convergence_warning_is_plain_language():
    """A centred eight-schools fit with a low target_accept diverges, and the warning gives the remedy."""
    m = hm.Model("y | se(sigma) ~ 1 + (1 | school)", hm.datasets.load("eight_schools"),
                 priors={"Intercept": hm.Normal(0, 5), "sd": hm.HalfCauchy(5)}, centered=True)
    with pytest.warns(hm.ConvergenceWarning, match="divergent transitions.*target_accept"):
        fit = m.fit(draws=500, tune=300, chains=2, seed=2, target_accept=0.6, progressbar=False, method="joint")
    assert fit.divergences > 0 and not fit.converged


@pytest.mark.parametrize("sampler", ["numpyro", "pymc"])
def test_pymc_graph_samplers_agree_with_the_compiled_engine(sampler):
    """numpyro and PyMC's NUTS sample the PyMC graph (hmodels.build); hmodels' default sampler runs its
    compiled log density. Same model and priors: posterior means agree within 4 combined MCSEs."""
    m = hm.Model("Yield ~ 1 + (1 | Batch)", hm.datasets.load("dyestuff"), centered=False)
    kw = dict(draws=1000, tune=1000, chains=2, seed=1, method="joint", progressbar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = m.fit(**kw)
        theirs = m.fit(sampler=sampler, **kw)
    assert theirs.settings.sampler == sampler and ours.settings.sampler == "nutpie"
    for table in ("fixed_effects", "variance_components"):
        a, b = getattr(ours, table)(), getattr(theirs, table)()
        tol = 4 * np.hypot(a["mcse_mean"], b["mcse_mean"])
        assert ((a["mean"] - b["mean"]).abs() <= tol).all(), (table, a[["mean", "mcse_mean"]], b[["mean", "mcse_mean"]])

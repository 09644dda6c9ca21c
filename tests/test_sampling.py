"""Sampler options, reproducibility and convergence reporting."""

import os
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
    assert cbpp.plan().centering == {"herd": True}  # 15 herds, about 56 animals each
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
    assert hm.Model("y ~ x + (1 | g)", d, family="poisson").plan().centering == {"g": True}
    assert hm.Model("y ~ x + (x | g)", d, family="poisson").plan().centering == {"g": False}


def test_convergence_warning_is_plain_language():
    """A centred eight-schools fit with a low target_accept diverges, and the warning gives the remedy."""
    m = hm.Model("y | se(sigma) ~ 1 + (1 | school)", hm.datasets.load("eight_schools"),
                 priors={"Intercept": hm.Normal(0, 5), "sd": hm.HalfCauchy(5)}, centered=True)
    with pytest.warns(hm.ConvergenceWarning, match="divergent transitions.*target_accept"):
        fit = m.fit(draws=500, tune=300, chains=2, seed=2, target_accept=0.6, progressbar=False, method="joint")
    assert fit.divergences > 0 and not fit.converged


@pytest.mark.parametrize("sampler", ["numpyro", "pymc"])
def test_pymc_graph_samplers_agree_with_the_compiled_engine(sampler):
    """numpyro and PyMC's NUTS agree with hmodels' compiled engine on posterior means.

    numpyro and PyMC's NUTS sample the PyMC graph (hmodels.build); hmodels' default sampler runs its
    compiled log density. Same model and priors: posterior means agree within 4 combined MCSEs.
    """
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


# -- issue #17: settings, seeds, cores and memory ---------------------------------------------------------------


def test_tune_must_be_at_least_one():
    """tune=0 made nutpie panic (Rust backtraces, then a poisoned-mutex error); now a plain refusal."""
    with pytest.raises(hm.SamplingError, match=r"tune must be an integer >= 1, got 0\..*tune=100 or more"):
        check_settings(None, 100, 0, 2, 2, 1, None)
    assert check_settings(None, 100, 1, 2, 2, 1, None).tune == 1


def test_numpy_integers_are_accepted_and_stored_as_int():
    """Numpy integers (np.int64(300)) were refused; bools, floats and strings still are."""
    s = check_settings(None, np.int64(300), np.int32(200), np.int64(2), np.uint8(2), np.int64(5), None)
    assert (s.draws, s.tune, s.chains, s.cores, s.seed) == (300, 200, 2, 2, 5)
    assert all(type(v) is int for v in (s.draws, s.tune, s.chains, s.cores, s.seed))
    for bad in (True, np.bool_(True), 2.0, "10"):
        with pytest.raises(hm.SamplingError, match="draws must be an integer"):
            check_settings(None, bad, 100, 2, 2, 1, None)


def test_large_seeds_are_reduced_to_64_bits_deterministically():
    """Seeds of 2**64 or more are hashed to 64 bits (SeedSequence); smaller ones are kept."""
    from hmodels.sampling import reduce_seed

    s = check_settings(None, 10, 10, 2, 2, 2**70, None)
    assert 0 <= s.seed < 2**64 and s.seed == reduce_seed(2**70) == check_settings(None, 10, 10, 2, 2, 2**70, None).seed
    assert reduce_seed(2**70) != reduce_seed(2**70 + 1)
    assert check_settings(None, 10, 10, 2, 2, 2**64 - 1, None).seed == 2**64 - 1  # in range: unchanged
    assert check_settings(None, 10, 10, 2, 2, np.uint64(2**64 - 1), None).seed == 2**64 - 1


def test_seed_beyond_64_bits_fits_and_reproduces(dyestuff_model):
    """seed=2**70 failed inside nutpie (OverflowError); the reduced seed is recorded and reproduces the draws."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 30 draws: low ESS
        a = dyestuff_model.fit(draws=30, tune=30, chains=1, seed=2**70, progressbar=False)
        b = dyestuff_model.fit(draws=30, tune=30, chains=1, seed=a.settings.seed, progressbar=False)
    assert a.settings.seed < 2**64
    np.testing.assert_array_equal(a.draws["b"].values, b.draws["b"].values)


def test_cores_are_capped_at_the_number_of_chains():
    """cores=10000 started 10,009 threads; one chain runs on one core."""
    with pytest.warns(UserWarning, match="cores=10000 is more than chains=4.*only 4 core"):
        s = check_settings(None, 10, 10, 4, 10000, 1, None)
    assert s.cores == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_settings(None, 10, 10, 4, 2, 1, None).cores == 2


def test_memory_check_refuses_what_cannot_fit():
    """draws=10**9 aborted the interpreter (SIGABRT on a 32 GB allocation); now refused with the numbers."""
    from hmodels.sampling import SamplerSettings, check_memory

    s = SamplerSettings("nutpie", 10**9, 1000, 4, 4, 1, None)
    with pytest.raises(hm.SamplingError) as err:
        check_memory(s, 50, available=16 * 10**9)
    msg = str(err.value)
    assert "4 chains x 1,000,000,000 draws" in msg and "3,584.0 GB" in msg and "only 16.0 GB is available" in msg
    assert "fewer draws (at most about 4,464,285 per chain would fit" in msg and "or fewer chains" in msg
    assert "log_likelihood=False" not in msg
    with pytest.raises(hm.SamplingError, match="log-likelihood of 10,000 observations.*log_likelihood=False"):
        check_memory(SamplerSettings("nutpie", 10**6, 1000, 4, 4, 1, None), 50, n_obs=10_000, available=8 * 10**9)
    small = SamplerSettings("nutpie", 1000, 1000, 4, 4, 1, None)
    assert check_memory(small, 50, available=16 * 10**9) == 4 * 1000 * 8 * (100 + 12)
    assert check_memory(small, 50) > 0  # this machine's available memory


def test_available_memory_is_known_on_linux():
    """MemAvailable (or free pages) is read where the system provides it."""
    from hmodels.sampling import available_memory

    avail = available_memory()
    if os.path.exists("/proc/meminfo"):
        assert isinstance(avail, int) and avail > 0


def test_fit_memory_check_counts_every_stored_value(dyestuff_model):
    """The estimate for a model counts every posterior value, and the log-likelihood when requested."""
    from hmodels.sampling import check_fit_memory, draw_size

    # b (1) + r and z of 6 batches (12) + sd (1) + cor matrix (1) + sigma (1)
    assert draw_size(dyestuff_model) == 16
    huge = check_settings(None, 10**9, 1000, 4, 4, 1, None)
    with pytest.raises(hm.SamplingError, match="GB of memory"):
        check_fit_memory(dyestuff_model, huge, available=8 * 10**9)
    ok = check_settings(None, 1000, 1000, 4, 4, 1, None)
    n = dyestuff_model.design.n
    assert check_fit_memory(dyestuff_model, ok, log_likelihood=True, available=8 * 10**9) == \
        4 * 1000 * 8 * (2 * 16 + 12 + 2 * n)


@pytest.mark.parametrize("sampler", ["nutpie", "pymc"])
def test_fit_refuses_draws_that_cannot_fit_in_memory(dyestuff_model, sampler):
    """draws=10**9 is refused before anything is allocated or compiled, on every backend."""
    with pytest.raises(hm.SamplingError, match="GB of memory"):
        dyestuff_model.fit(draws=10**9, sampler=sampler, progressbar=False)

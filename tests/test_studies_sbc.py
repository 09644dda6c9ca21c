"""Simulation-based calibration: a correct sampler passes, a mis-specified one is caught, studies resume."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import hmodels as hm
from hmodels.studies.sbc import draws_by_label, ecdf_test

FAST = dict(draws=100, tune=150, chains=2)


def _small_data(seed=1, groups=8, per=5):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), per)
    x = rng.normal(size=groups * per)
    y = 1 + 0.5 * x + rng.normal(size=groups)[g] * 0.5 + rng.normal(size=groups * per)
    return pd.DataFrame({"y": y, "x": x, "g": g, "k": rng.poisson(np.exp(0.5 + 0.3 * x))})


@pytest.fixture(scope="module")
def small_model():
    return hm.Model("y ~ x + (1 | g)", _small_data())


def overconfident(model, seed):
    """A broken sampler: the right posterior mean, but draws squeezed to 40 % of their spread."""
    d = draws_by_label(model.fit(seed=seed, progressbar=False, **FAST))
    return {k: v.mean() + 0.4 * (v - v.mean()) for k, v in d.items()}


def biased(model, seed):
    """A broken sampler: every draw shifted up by one posterior SD."""
    d = draws_by_label(model.fit(seed=seed, progressbar=False, **FAST))
    return {k: v + v.std() for k, v in d.items()}


def test_correct_sampler_is_calibrated(small_model):
    res = hm.sbc(small_model, n=40, seed=3, **FAST)
    assert res.calibrated, res
    assert list(res.table.index) == ["Intercept", "x", "sd(g, Intercept)", "sigma"]
    assert (res.table["n"] == 40).all() and res.failures == 0
    assert (res.table[["p_chi2", "p_ecdf"]] > 0.01).all().all()
    assert res.verdict.startswith("Calibrated")
    r = res.ranks
    assert set(r.columns) >= {"replicate", "parameter", "truth", "rank", "n_ranks", "u", "post_mean", "error"}
    assert ((r["rank"] >= 0) & (r["rank"] <= r["n_ranks"])).all() and r["u"].between(0, 1).all()
    fig = res.plot()
    assert len([a for a in fig.axes if a.get_visible()]) == 4


def test_poisson_model_is_calibrated():
    m = hm.Model("k ~ x + (1 | g)", _small_data(), family="poisson",
                 priors={"x": hm.Normal(0, 1), "sd": hm.HalfNormal(0.5)})  # the defaults allow rates of e^10
    res = hm.sbc(m, n=40, seed=6, **FAST)
    assert res.calibrated, res


@pytest.mark.parametrize("fitter, words", [(overconfident, "too narrow"), (biased, "biased high")])
def test_a_misspecified_sampler_is_caught(small_model, fitter, words):
    res = hm.sbc(small_model, n=40, seed=3, fitter=fitter)
    assert not res.calibrated
    assert res.table["flagged"].sum() >= 3, res.table
    assert res.verdict.startswith("Not calibrated") and words in res.verdict


def test_failed_replicates_are_counted_not_dropped(small_model):
    def flaky(model, seed):
        if seed % 3 == 0:
            raise RuntimeError("sampler crashed")
        return overconfident(model, seed)

    res = hm.sbc(small_model, n=12, seed=1, fitter=flaky)
    assert res.failures == (res.ranks.groupby("replicate")["error"].first() != "").sum() > 0
    assert "failed" in res.verdict
    assert "sampler crashed" in res.ranks["error"].iloc[np.flatnonzero(res.ranks["error"] != "")[0]]


def test_ecdf_test_band_and_p_values():
    rng = np.random.default_rng(7)
    ok = ecdf_test(rng.uniform(size=200))
    assert ok["p"] > 0.01
    assert np.all(ok["lower"] <= ok["ecdf"]) and np.all(ok["ecdf"] <= ok["upper"])
    assert ecdf_test(rng.beta(0.5, 0.5, size=200))["p"] < 0.01  # U-shaped: too narrow a posterior
    assert ecdf_test(rng.beta(2, 2, size=200))["p"] < 0.01      # hump: too wide
    # the simultaneous band holds its level: about 1 % of uniform samples leave a 99 % band
    outside = np.mean([ecdf_test(rng.uniform(size=50))["p"] < 0.01 for _ in range(300)])
    assert outside < 0.04


COUNT = {"n": 0}


def counting(model, seed):
    COUNT["n"] += 1
    return draws_by_label(model.fit(seed=seed, progressbar=False, **FAST))


class Stop(BaseException):
    """Stands in for an interruption (Ctrl-C, a killed job) in the middle of a study."""


def interrupted(model, seed):
    COUNT["n"] += 1
    if COUNT["n"] > 5:
        raise Stop()
    return draws_by_label(model.fit(seed=seed, progressbar=False, **FAST))


def test_an_interrupted_study_resumes_without_recomputing(small_model, tmp_path):
    folder = tmp_path / "sbc"
    COUNT["n"] = 0
    with pytest.raises(Stop):
        hm.sbc(small_model, n=12, seed=2, resume=folder, fitter=interrupted, scheduler="synchronous")
    assert list(folder.glob("part-*.parquet")), "finished replicates were written before the interruption"
    COUNT["n"] = 0
    # same study, same settings (the fitter's name is part of them): only what is missing runs
    interrupted_name = interrupted.__qualname__
    resumed = hm.sbc(small_model, n=12, seed=2, resume=folder, fitter=_renamed(counting, interrupted_name),
                     scheduler="synchronous")
    assert COUNT["n"] == 12 - 4  # the first chunk of 4 replicates was stored and not recomputed
    assert resumed.ranks.groupby("replicate").size().eq(4).all() and resumed.ranks["replicate"].nunique() == 12
    COUNT["n"] = 0
    fresh = hm.sbc(small_model, n=12, seed=2, fitter=counting, scheduler="synchronous")
    assert np.allclose(fresh.ranks["u"], resumed.ranks["u"])  # identical to an uninterrupted study
    again = hm.sbc(small_model, n=12, seed=2, resume=folder, fitter=_renamed(counting, interrupted_name))
    assert COUNT["n"] == 12 and np.allclose(again.ranks["u"], resumed.ranks["u"])  # nothing left to run
    with pytest.raises(hm.SpecificationError, match="other settings"):
        hm.sbc(small_model, n=12, seed=99, resume=folder)
    # a prior changed past the 4 digits its repr shows is another study too (the folder keyed on the repr)
    priors = {r.slot.param: r.prior for r in small_model.priors}
    sd = priors["sd(g, Intercept)"]
    priors["sd(g, Intercept)"] = type(sd)(*[v * (1 + 1e-6) for v in sd.params.values()])
    assert repr(priors["sd(g, Intercept)"]) == repr(sd)
    nudged = hm.Model("y ~ x + (1 | g)", _small_data(), priors=priors)
    with pytest.raises(hm.SpecificationError, match="other settings.*priors"):
        hm.sbc(nudged, n=12, seed=2, resume=folder, fitter=_renamed(counting, interrupted_name))


def _renamed(fn, name):
    def wrapper(model, seed):
        return fn(model, seed)

    wrapper.__qualname__ = name
    return wrapper


def test_bad_arguments(small_model):
    with pytest.raises(hm.SpecificationError, match="Model"):
        hm.sbc("y ~ x", n=10)
    with pytest.raises(hm.SpecificationError, match="n must"):
        hm.sbc(small_model, n=1)
    with pytest.raises(hm.SpecificationError, match="thin"):
        hm.sbc(small_model, n=10, thin=0)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["gaussian", "binomial", "poisson"])
@pytest.mark.parametrize("slopes", [False, True])
def test_sbc_uniform_at_small_sizes(family, slopes):
    """The issue's check: 8 groups x 5, random intercepts or correlated slopes, 200 replicates."""
    df = _small_data(seed=4)
    df["n"] = 6
    df["s"] = np.minimum(df["k"], 6)
    lhs = {"gaussian": "y", "binomial": "p(s, n)", "poisson": "k"}[family]
    m = hm.Model(f"{lhs} ~ x + ({'x' if slopes else '1'} | g)", df, family=family)
    res = hm.sbc(m, n=200, seed=11, draws=250, tune=300, chains=2)
    assert (res.table[["p_chi2", "p_ecdf"]] > 0.01).all().all(), res

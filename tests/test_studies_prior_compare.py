"""compare_priors on the studies' Dask runner: the same table locally and resumed, fits returned, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import hmodels as hm
import hmodels.studies._dask as runner
import hmodels.studies.prior_compare as prior_compare

FAST = dict(draws=150, tune=200, chains=2, seed=1)
SETS = ["regularizing", "vague", {"Intercept": hm.Normal(80, 5)}]


@pytest.fixture(scope="module")
def schools():
    return hm.Model("y | se(sigma) ~ 1 + (1 | school)", hm.datasets.load("eight_schools"))


class Stop(BaseException):
    """Stands in for an interruption (Ctrl-C, a killed job) in the middle of a comparison."""


def test_interrupted_and_resumed_equals_uninterrupted(schools, tmp_path, monkeypatch):
    whole = hm.compare_priors(schools, SETS, scheduler="synchronous", **FAST)
    assert list(whole.columns.get_level_values(0).unique()) == ["regularizing", "vague",
                                                                "custom: Intercept=Normal(80, 5)"]
    assert list(whole.index) == ["b[Intercept]", "sd(school, Intercept)"]
    # the informative Intercept prior pulls the mean far up (data: about 8)
    means = whole.xs("mean", axis=1, level="stat").loc["b[Intercept]"]
    assert means.iloc[2] > means.iloc[0] + 20
    monkeypatch.setattr(runner, "LOCAL_CHUNK", 1)
    real, calls = prior_compare._prior_set_task, {"n": 0, "stop": 1}

    def counted(*args):
        calls["n"] += 1
        if calls["n"] > calls["stop"]:
            raise Stop()
        return real(*args)

    monkeypatch.setattr(prior_compare, "_prior_set_task", counted)
    folder = tmp_path / "priors"
    with pytest.raises(Stop):
        hm.compare_priors(schools, SETS, scheduler="synchronous", resume=folder, **FAST)
    assert len(list(folder.glob("part-*.parquet"))) == 1
    calls.update(n=0, stop=99)
    resumed = hm.compare_priors(schools, SETS, scheduler="synchronous", resume=folder, **FAST)
    assert calls["n"] == 2  # only the two missing refits ran
    assert resumed.equals(whole)
    # another study's folder is refused: other priors, other seed, other sampler settings
    other_sets = ["regularizing", "vague", {"Intercept": hm.Normal(70, 5)}]
    for sets, kw in ((other_sets, FAST), (SETS, dict(FAST, seed=2)), (SETS, dict(FAST, draws=100))):
        with pytest.raises(hm.SpecificationError, match="other settings"):
            hm.compare_priors(schools, sets, resume=folder, **kw)
    assert calls["n"] == 2


def test_fits_are_returned_through_the_store(schools, tmp_path):
    tab, fits = hm.compare_priors(schools, ["default", "vague"], return_fits=True, resume=tmp_path / "f", **FAST)
    assert list(fits) == ["default", "vague"]
    fe = fits["vague"].fixed_effects()
    assert fe.loc["Intercept", "mean"] == pytest.approx(tab[("vague", "mean")]["b[Intercept]"])
    again, fits2 = hm.compare_priors(schools, ["default", "vague"], return_fits=True, resume=tmp_path / "f", **FAST)
    assert again.equals(tab)
    np.testing.assert_array_equal(fits2["default"].draws["b"].values, fits["default"].draws["b"].values)


def test_bad_requests_fail_before_any_refit(schools, tmp_path):
    with pytest.raises(hm.errors.PriorError):
        hm.compare_priors(schools, ["default", "no-such-set"], **FAST)
    with pytest.raises(hm.SpecificationError, match="given twice"):
        hm.compare_priors(schools, ["vague", "vague"], **FAST)
    with pytest.raises(hm.SpecificationError, match="list of prior sets"):
        hm.compare_priors(schools, "vague", **FAST)
    with pytest.raises(hm.SpecificationError, match="needs a seed"):
        hm.compare_priors(schools, ["vague"], resume=tmp_path / "x", draws=100)


def test_sampler_settings_are_checked_before_any_task(schools, monkeypatch):
    def never(*args):
        raise AssertionError("a refit ran")

    monkeypatch.setattr(prior_compare, "_prior_set_task", never)
    with pytest.raises(hm.SpecificationError, match="'draw' to model.fit"):
        hm.compare_priors(schools, ["vague"], draw=100)
    with pytest.raises(hm.SamplingError, match="draws must be"):
        hm.compare_priors(schools, ["vague"], draws=0)
    with pytest.raises(hm.SpecificationError, match="'draw' to model.fit"):
        hm.sbc(schools, n=4, draw=100)
    crt = lambda G, m: hm.design_grid(G, m, group="cluster", between={"treat": [0, 1]})  # noqa: E731
    kw = dict(effects={"treat": 1}, variances={"sd(cluster)": 1, "sigma": 1}, n_groups=[4], n_per_group=[2], reps=2)
    with pytest.raises(hm.SpecificationError, match="apply to fit='bayes' only"):
        hm.power("y ~ treat + (1 | cluster)", crt, draws=100, **kw)
    with pytest.raises(hm.SpecificationError, match="'chain' to model.fit"):
        hm.power("y ~ treat + (1 | cluster)", crt, fit="bayes", chain=2, **kw)

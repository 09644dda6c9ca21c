"""LOO, leave-one-group-out, K-fold and model comparison (hmodels.comparison)."""

import warnings

import numpy as np
import pandas as pd
import pytest

import hmodels as hm
from hmodels.comparison import LOOWarning, log_likelihood_tree
from hmodels.linpred import linear_predictor, pointwise_loglik

FIT = dict(draws=300, tune=300, chains=2, progressbar=False)


def _simulate(slope_sd: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n_groups, n_per = 20, 10
    g = np.repeat(np.arange(n_groups), n_per)
    x = np.tile(np.arange(n_per, dtype=float), n_groups)
    a = rng.normal(0, 1.0, n_groups)
    b = rng.normal(0, slope_sd, n_groups)
    y = 1.0 + a[g] + (0.3 + b[g]) * x + rng.normal(0, 0.5, g.size)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g]})


def _pair(data, seed):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "intercepts": hm.Model("y ~ x + (1 | g)", data).fit(seed=seed, **FIT),
            "slopes": hm.Model("y ~ x + (x | g)", data).fit(seed=seed, **FIT),
        }


@pytest.fixture(scope="module")
def with_slopes():
    return _pair(_simulate(0.4, seed=1), seed=1)


@pytest.fixture(scope="module")
def without_slopes():
    return _pair(_simulate(0.0, seed=2), seed=2)


def _compare(fits, by=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LOOWarning)
        return hm.compare(fits, by=by)


@pytest.mark.parametrize("by", [None, "g"])
def test_real_slopes_are_preferred(with_slopes, by):
    cmp = _compare(with_slopes, by)
    t = cmp.table
    assert t.index[0] == "slopes"
    diff, dse = abs(t.loc["intercepts", "elpd_diff"]), t.loc["intercepts", "dse"]
    assert diff > 2 * dse
    assert "'slopes'" in cmp.reading and "clearly worse" in cmp.reading
    assert t.loc["slopes", "weight"] > 0.9


@pytest.mark.parametrize("by", [None, "g"])
def test_no_slope_variance_intercepts_not_worse(without_slopes, by):
    t = _compare(without_slopes, by).table
    diff = t.loc["intercepts", "elpd"] - t.loc["slopes", "elpd"]
    dse = t["dse"].max()
    assert diff > -2 * dse


def test_leave_one_group_out_sums_each_groups_loglik(sleep_fit):
    tree = log_likelihood_tree(sleep_fit, by="Subject")
    ll = pointwise_loglik(sleep_fit, linear_predictor(sleep_fit))
    codes = sleep_fit._design.factor("Subject").codes
    got = tree["log_likelihood"]["Reaction"]
    assert got.dims == ("chain", "draw", "Subject") and got.sizes["Subject"] == 18
    np.testing.assert_allclose(got.values[..., 3], ll[..., codes == 3].sum(-1), rtol=1e-12)
    np.testing.assert_allclose(got.values.sum(-1), ll.sum(-1), rtol=1e-10)


def test_loo_values_and_high_k_warning(sleep_fit):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LOOWarning)
        res = sleep_fit.loo()
    assert res.n_data_points == 180 and np.isfinite(res.elpd) and res.se > 0
    assert res.pareto_k.sizes["obs"] == 180
    # whole subjects are influential: PSIS leave-one-group-out flags them and points to K-fold
    with pytest.warns(LOOWarning, match=r"groups of 'Subject'.*fit\.kfold\(k=10, by='Subject'\)"):
        logo = sleep_fit.loo(by="Subject")
    assert logo.n_data_points == 18


def test_compare_rejects_different_data(sleep_fit, cbpp_fit):
    with pytest.raises(hm.SpecificationError, match="different data"):
        hm.compare({"a": sleep_fit, "b": cbpp_fit})
    with pytest.raises(hm.SpecificationError, match="at least two"):
        hm.compare({"a": sleep_fit})
    with pytest.raises(hm.SpecificationError, match="grouping factor"):
        sleep_fit.loo(by="Nope")


def test_kfold_refits_and_scores_held_out_groups():
    data = hm.datasets.load("dyestuff")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = hm.Model("Yield ~ 1 + (1 | Batch)", data).fit(draws=150, tune=150, chains=2, seed=1, progressbar=False)
        kf = fit.kfold(k=3, by="Batch", seed=1, draws=150, tune=150)
        loo = fit.loo()
    assert kf.kind == "loo_kfold" and kf.n_folds == 3 and kf.n_data_points == 30
    assert np.all(np.isfinite(kf.elpd_i.values))
    # predicting a new batch is harder than a new observation of a known batch
    assert kf.elpd < loo.elpd and kf.se > 0


def test_kfold_folds_run_in_parallel_and_reproducibly():
    """The refits run through Dask; threads and a sequential scheduler give identical results."""
    from hmodels.comparison import _fold_assignments

    data = hm.datasets.load("dyestuff")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = hm.Model("Yield ~ 1 + (1 | Batch)", data).fit(draws=150, tune=150, chains=2, seed=1, progressbar=False)
        parallel = fit.kfold(k=3, by="Batch", seed=2, draws=150, tune=150, scheduler="threads")
        sequential = fit.kfold(k=3, by="Batch", seed=2, draws=150, tune=150, scheduler="synchronous")
    np.testing.assert_array_equal(parallel.elpd_i.values, sequential.elpd_i.values)
    folds = _fold_assignments(30, 3, data["Batch"].to_numpy(), seed=2)
    for batch in data["Batch"].unique():  # every batch in one fold, folds of whole batches
        assert len(set(folds[data["Batch"].to_numpy() == batch])) == 1
    assert sorted(np.bincount(folds)[1:]) == [10, 10, 10]


class Stop(BaseException):
    """Stands in for an interruption (Ctrl-C, a killed job) in the middle of a cross-validation."""


def test_kfold_interrupted_and_resumed_equals_uninterrupted(tmp_path, monkeypatch):
    """Finished folds stream to Parquet; a rerun refits only the missing ones, with the same numbers."""
    import hmodels.comparison as comparison
    import hmodels.studies._dask as runner

    data = hm.datasets.load("dyestuff")
    kw = dict(k=4, by="Batch", seed=3, draws=100, tune=150, scheduler="synchronous")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = hm.Model("Yield ~ 1 + (1 | Batch)", data).fit(draws=100, tune=150, chains=2, seed=1, progressbar=False)
        whole = fit.kfold(**kw)
    monkeypatch.setattr(runner, "LOCAL_CHUNK", 1)  # write every fold as it finishes
    real, calls = comparison._fold_loglik, {"n": 0, "stop": 2}

    def counted(*args):
        calls["n"] += 1
        if calls["n"] > calls["stop"]:
            raise Stop()
        return real(*args)

    monkeypatch.setattr(comparison, "_fold_loglik", counted)
    folder = tmp_path / "kfold"
    with pytest.raises(Stop), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit.kfold(resume=folder, **kw)
    assert len(list(folder.glob("part-*.parquet"))) == 2
    calls.update(n=0, stop=99)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resumed = fit.kfold(resume=folder, **kw)
    assert calls["n"] == 2  # only the two missing folds were refitted
    np.testing.assert_array_equal(resumed.elpd_i.values, whole.elpd_i.values)
    assert resumed.elpd == whole.elpd and resumed.se == whole.se
    # a folder of another cross-validation is refused, not mixed in
    for other in (dict(kw, seed=4), dict(kw, k=3), dict(kw, draws=120), dict(kw, by=None)):
        with pytest.raises(hm.SpecificationError, match="other settings"):
            fit.kfold(resume=folder, **other)
    assert calls["n"] == 2
    with pytest.raises(hm.SpecificationError, match="needs a seed"):
        fit.kfold(k=4, resume=tmp_path / "x")


def test_kfold_checks_its_sampler_settings_before_refitting(schools_fit):
    with pytest.raises(hm.SpecificationError, match="'draw' to model.fit"):
        schools_fit.kfold(k=2, seed=1, draw=100)
    with pytest.raises(hm.SamplingError, match="draws must be"):
        schools_fit.kfold(k=2, seed=1, draws=0)

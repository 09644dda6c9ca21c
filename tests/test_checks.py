"""Posterior predictive checks, overdispersion, residuals, influential groups (hmodels.checks)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from _sim_fits import count_fit  # noqa: E402

from hmodels import SpecificationError, checks  # noqa: E402


def test_poisson_on_negbin_data_is_overdispersed():
    od = checks.overdispersion(count_fit("poisson"))
    assert od.overdispersed and od.p_value < 0.05
    assert od.ratio_low > 1
    assert "negativebinomial" in od.message and "observation-level random effect" in od.message


def test_negbin_fit_is_not_overdispersed():
    od = checks.overdispersion(count_fit("negativebinomial"))
    assert not od.overdispersed and not od.underdispersed
    assert od.ratio_low < 1 < od.ratio_high


def test_overdispersion_refuses_gaussian(sleep_fit):
    with pytest.raises(SpecificationError, match="count and binomial"):
        checks.overdispersion(sleep_fit)


def test_ppc_sleepstudy_table(sleep_fit):
    res = sleep_fit.ppc()
    t = res.table
    assert list(t.index[:4]) == ["mean", "sd", "min", "max"]
    assert t.index.str.startswith("mean[Subject=").sum() == 18
    y = sleep_fit.data["Reaction"].to_numpy()
    assert t.loc["mean", "observed"] == pytest.approx(y.mean())
    assert t.loc["sd", "observed"] == pytest.approx(y.std(ddof=1))
    assert ((t["p_value"] >= 0) & (t["p_value"] <= 1)).all()
    assert not t.loc[["mean", "sd", "max"], "extreme"].any()  # a good model reproduces these
    assert res.y_rep.shape == (4000, 180)
    assert "reproduced" in res.summary()


def test_ppc_counts_zero_share_and_plot(tmp_path):
    fit = count_fit("poisson")
    res = fit.ppc(group=[])
    y = fit.data["y"].to_numpy()
    assert res.table.loc["share_zeros", "observed"] == pytest.approx((y == 0).mean())
    assert not res.table.index.str.startswith("mean[").any()
    # the poisson model cannot produce the negative-binomial spread
    assert res.table.loc["sd", "extreme"]
    pc = res.plot()
    pc.savefig(str(tmp_path / "ppc.png"))
    assert (tmp_path / "ppc.png").stat().st_size > 5000


def test_ppc_binomial_uses_proportions(cbpp_fit):
    res = cbpp_fit.ppc(group="herd", draws=1000)
    d = cbpp_fit.data
    assert res.table.loc["mean", "observed"] == pytest.approx((d["incidence"] / d["size"]).mean())
    assert res.y_rep.shape == (1000, len(d))
    dt = res.to_datatree()
    assert float(dt["posterior_predictive"]["incidence"].max()) <= 1


def test_quantile_residuals_are_standard_normal(sleep_fit):
    r = checks.quantile_residuals(sleep_fit)
    assert r.shape == (180,)
    se = 1 / np.sqrt(r.size)
    assert abs(r.mean()) < 4 * se
    assert 0.7 < r.std() < 1.2


def test_residuals_and_group_influence(cbpp_fit):
    res = cbpp_fit.residuals()
    assert {"observed", "fitted", "residual", "pearson", "quantile", "herd"} <= set(res.columns)
    np.testing.assert_allclose(res["residual"], res["observed"] - res["fitted"])
    inf = checks.group_influence(cbpp_fit, "herd")
    assert len(inf) == 15 and inf["pareto_k"].notna().all()
    assert (inf["n"] == cbpp_fit.data.groupby("herd", observed=True).size().to_numpy()).all()


def test_residuals_of_a_zero_truncated_count_are_against_the_truncated_mean():
    from _sim_fits import zero_truncated_fit

    from hmodels.linpred import linear_predictor

    fit = zero_truncated_fit()
    res = fit.residuals()
    mu = np.exp(linear_predictor(fit))
    truncated_mean = (mu / -np.expm1(-mu)).mean(axis=(0, 1))  # E[y | y >= 1] per row, averaged over draws
    assert res["observed"].min() >= 1
    # the untruncated mean mu sits ~0.5 below; the replicate mean's Monte Carlo error is ~0.03 per row
    assert np.abs(res["fitted"] - truncated_mean).mean() < 0.05
    assert abs(res["fitted"].mean() - res["observed"].mean()) < 0.1
    assert 0.8 < res["pearson"].std() < 1.2


def test_overdispersion_and_residuals_with_a_zero_inflation_formula_use_each_rows_zi():
    from _sim_fits import zi_formula_fit

    from hmodels.linpred import aux_draws, linear_predictor

    fit = zi_formula_fit()
    od = checks.overdispersion(fit)
    assert 0 <= od.p_value <= 1
    res = fit.residuals()
    lam = np.exp(linear_predictor(fit))
    zi = aux_draws(fit, fit.design)["zi"]
    assert zi.shape == lam.shape  # one zi per row and draw
    V = ((1 - zi) * lam * (1 + zi * lam)).mean(axis=(0, 1))  # the zero-inflated poisson's variance, by hand
    np.testing.assert_allclose(res["pearson"], res["residual"] / np.sqrt(V), rtol=1e-10)
    assert "overdispersion" in fit.report().lower()

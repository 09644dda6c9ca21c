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

"""ICC, R² (Nakagawa & Schielzeth; Gelman et al.), variance decomposition and shrinkage (hmodels.components)."""

from __future__ import annotations

import math

import numpy as np
from _sim_fits import COUNTS, SLOPE, count_fit, slope_data, slope_fit

from hmodels import components


def _truth_slope(sd_slope, seed):
    data = slope_data(sd_slope, seed)
    x = data["x"].to_numpy()
    v_fixed = SLOPE["b1"] ** 2 * x.var()
    v_group = SLOPE["sd_intercept"] ** 2 + sd_slope ** 2 * np.mean(x ** 2)  # independent intercept and slope
    v_res = SLOPE["sigma"] ** 2
    total = v_fixed + v_group + v_res
    # Bayesian R² is conditional on the realised group effects: var(true mean) / (var(true mean) + sigma²)
    mu = data["mu"].to_numpy()
    return {"icc": v_group / (v_group + v_res), "marginal": v_fixed / total, "conditional": (v_fixed + v_group) / total,
            "bayes": mu.var(ddof=1) / (mu.var(ddof=1) + v_res)}


SEEDS = range(8)


def test_icc_and_r2_cover_the_simulation_truth():
    """95% intervals of ICC and R² contain the truth in at least 6 of 8 simulated data sets.

    With calibrated 95% intervals, 5 or fewer hits in 8 has probability 0.6%.
    """
    hits = dict.fromkeys(["icc", "marginal", "conditional", "bayes"], 0)
    for seed in SEEDS:
        fit = slope_fit(0.6, seed)
        truth = _truth_slope(0.6, seed)
        icc = fit.icc()
        assert list(icc.index) == ["g"]
        r2 = fit.r2()
        assert list(r2.index) == ["marginal", "conditional", "bayes"]
        rows = {"icc": icc.loc["g"], **{k: r2.loc[k] for k in ("marginal", "conditional", "bayes")}}
        for k, row in rows.items():
            hits[k] += int(row["hdi_low"] <= truth[k] <= row["hdi_high"])
    assert all(h >= 6 for h in hits.values()), hits


def test_sleepstudy_conditional_exceeds_marginal(sleep_fit):
    r2 = sleep_fit.r2()
    assert r2.loc["conditional", "hdi_low"] > r2.loc["marginal", "hdi_high"]
    assert 0 < r2.loc["marginal", "mean"] < r2.loc["conditional", "mean"] < 1
    # decomposition is consistent with the R² rows (posterior means of ratios vs ratio of means, within 0.05)
    vd = components.variance_decomposition(sleep_fit)
    assert vd.loc["residual", "mean"] > 0
    ratio = vd.loc["fixed", "mean"] / vd["mean"].sum()
    assert abs(ratio - r2.loc["marginal", "mean"]) < 0.05
    # the residual variance is sigma²: its posterior mean equals E[sigma²]
    sigma = sleep_fit.draws["sigma"].values
    assert math.isclose(vd.loc["residual", "mean"], float(np.mean(sigma ** 2)), rel_tol=1e-9)


def test_binomial_icc_uses_latent_logit_variance(cbpp_fit):
    vd = components.variance_decomposition(cbpp_fit)
    assert math.isclose(vd.loc["residual", "mean"], math.pi ** 2 / 3)
    sd = cbpp_fit.draws["sd_herd"].values[..., 0]
    icc = cbpp_fit.icc()
    expected = float(np.mean(sd ** 2 / (sd ** 2 + math.pi ** 2 / 3)))
    assert math.isclose(icc.loc["herd", "mean"], expected, rel_tol=1e-9)


def test_poisson_residual_variance_lognormal_approximation():
    fit = count_fit("poisson")
    d = components._decomposition_draws(fit)
    b = fit.draws["b"].transpose("chain", "draw", "term").values
    sd2 = fit.draws["sd_g"].values[..., 0] ** 2
    x = fit.data["x"].to_numpy()
    lam = np.exp(b[..., :1] + b[..., 1:] * x + 0.5 * sd2[..., None]).mean(axis=-1)
    np.testing.assert_allclose(d["residual"], np.log1p(1 / lam), rtol=1e-10)
    tri = components._decomposition_draws(fit, method="trigamma")["residual"]
    assert np.all(tri > 0)


def test_negbin_icc_recovers_truth():
    fit = count_fit("negativebinomial")
    p = COUNTS
    lam = np.exp(p["b0"] + p["sd_intercept"] ** 2 / 2) * np.exp(p["b1"] ** 2 / 2)  # E[exp(b1 x)], x ~ N(0, 1)
    v_res = math.log1p(1 / lam + 1 / p["alpha"])
    truth = p["sd_intercept"] ** 2 / (p["sd_intercept"] ** 2 + v_res)
    icc = fit.icc()
    assert icc.loc["g", "hdi_low"] <= truth <= icc.loc["g", "hdi_high"]


def test_shrinkage_pulls_groups_to_population(sleep_fit):
    s = sleep_fit.shrinkage("Subject")
    assert len(s) == 18 and (s["n"] == 10).all()
    data = sleep_fit.data
    raw = data.groupby(data["Subject"].astype(str))["Reaction"].mean()
    np.testing.assert_allclose(s["raw_mean"].to_numpy(), raw.loc[s.index].to_numpy())
    moved = (s["fitted_mean"] - s["population_mean"]).abs()
    assert moved.sum() < (s["raw_mean"] - s["population_mean"]).abs().sum()


def test_extended_components_keeps_core_rows(sleep_fit):
    core = sleep_fit.variance_components()
    ext = components.extended_components(sleep_fit)
    np.testing.assert_allclose(ext.iloc[: len(core)]["mean"].to_numpy(), core["mean"].to_numpy())
    assert list(ext.iloc[: len(core)]["kind"]) == list(core["kind"])
    assert {"var", "icc", "r2"} <= set(ext["kind"])


def test_shrinkage_of_a_truncated_outcome_is_refused_and_r2_icc_say_what_they_describe():
    import pytest
    from _sim_fits import zero_truncated_fit

    from hmodels import SpecificationError

    fit = zero_truncated_fit()
    with pytest.raises(SpecificationError, match="truncated"):  # raw group means vs untruncated fitted means
        components.shrinkage(fit, "g")
    for table in (components.r2(fit), components.icc(fit), components.variance_decomposition(fit),
                  components.bayes_r2(fit)):
        assert "untruncated" in table.attrs["additions"]
    assert "untruncated" in fit.report()
    assert components.r2(count_fit("poisson")).attrs["additions"] == ""

"""Power by simulation: the two-arm cluster-randomised trial against its closed form, decisions, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import hmodels as hm
from hmodels.studies.power import parse_decision


def crt(n_groups, n_per_group):
    """Two arms, whole clusters randomised, balanced."""
    return hm.design_grid(n_groups, n_per_group, group="cluster", between={"treat": [0, 1]})


def closed_form(effect, G, m, sd, sigma, alpha=0.05):
    """Power of the two-sided z test of a balanced two-arm cluster-randomised trial (design effect)."""
    se = np.sqrt(4 * (sd**2 + sigma**2 / m) / G)  # = sqrt(4 sigma_tot^2 (1 + (m - 1) ICC) / (G m))
    z = stats.norm.ppf(1 - alpha / 2)
    return stats.norm.cdf(effect / se - z) + stats.norm.cdf(-effect / se - z)


VARS = {"sd(cluster)": 0.5, "sigma": 1.0}


def test_crt_power_matches_the_design_effect_formula():
    res = hm.power("y ~ treat + (1 | cluster)", crt, effects={"treat": 0.5}, variances=VARS, n_groups=[30],
                   n_per_group=[6], reps=150, seed=1)
    row = res.table.iloc[0]
    expected = closed_form(0.5, 30, 6, 0.5, 1.0)
    assert abs(row["power"] - expected) < 2 * row["mcse"], (row["power"], expected, row["mcse"])
    assert row["failures"] == 0 and row["reps"] == 150
    assert row["mean_width"] == pytest.approx(2 * 1.96 * np.sqrt(4 * (0.25 + 1 / 6) / 30), rel=0.1)
    assert row["type_s"] == 0 and row["type_m"] > 1  # significant estimates exaggerate an underpowered effect


@pytest.mark.slow
def test_crt_power_grid_matches_the_design_effect_formula():
    res = hm.power("y ~ treat + (1 | cluster)", crt, effects={"treat": 0.4}, variances=VARS, n_groups=[20, 40],
                   n_per_group=[5, 10], reps=400, seed=2)
    for _, row in res.table.iterrows():
        expected = closed_form(0.4, row["n_groups"], row["n_per_group"], 0.5, 1.0)
        assert abs(row["power"] - expected) < 2 * row["mcse"], (row.to_dict(), expected)


def test_table_shape_plot_and_replicates():
    res = hm.power("y ~ treat + (1 | cluster)", crt, effects={"treat": 0.5}, variances=VARS, n_groups=[8, 12],
                   n_per_group=[3, 6], reps=10, seed=3)
    t = res.table
    assert len(t) == 4 and list(t[["n_groups", "n_per_group"]].itertuples(index=False, name=None)) == [
        (8, 3), (8, 6), (12, 3), (12, 6)]
    assert {"power", "mcse", "mean_width", "type_s", "type_m", "failures", "not_converged", "singular"} <= set(t)
    assert len(res.replicates) == 40 and set(res.replicates["effect"]) == {"treat"}
    assert res.plot() is not None and "PowerResult" in repr(res)


def test_zero_effect_gives_the_type_one_error_rate():
    res = hm.power("y ~ treat + (1 | cluster)", crt, effects={"treat": 0.0}, variances=VARS, n_groups=[40],
                   n_per_group=[4], reps=100, seed=4)
    row = res.table.iloc[0]
    assert row["power"] < 0.12 and np.isnan(row["type_s"]) and np.isnan(row["type_m"])


def test_decision_rules():
    assert parse_decision("P(effect < -0.2) > 0.9") == {"kind": "prob", "direction": "<", "threshold": -0.2,
                                                         "level": 0.9}
    assert parse_decision("rope", rope=(-0.1, 0.1))["kind"] == "rope"
    with pytest.raises(hm.SpecificationError, match="Unknown decision"):
        parse_decision("p < 0.05")
    with pytest.raises(hm.SpecificationError, match="rope=\\(low, high\\)"):
        parse_decision("rope")
    kw = dict(effects={"treat": 0.6}, variances=VARS, n_groups=[16], n_per_group=[5], reps=40, seed=5)
    two = hm.power("y ~ treat + (1 | cluster)", crt, **kw)
    one = hm.power("y ~ treat + (1 | cluster)", crt, decision="P(effect>0)>0.975", **kw)
    rope = hm.power("y ~ treat + (1 | cluster)", crt, decision="rope", rope=(-0.2, 0.2), **kw)
    r2, r1 = two.replicates, one.replicates
    # the same simulated data sets (same seed): the one-sided rule at 0.975 agrees with the 95 % interval
    assert np.allclose(r2["estimate"], r1["estimate"])
    assert (r1["decision"] == (r2["lower"] > 0)).all()
    assert rope.table["power"].iloc[0] <= two.table["power"].iloc[0]


def test_template_design_and_glmm_laplace():
    template = pd.DataFrame({"cluster": ["a", "a", "b", "b"], "treat": [0, 0, 1, 1], "n": 10})
    res = hm.power("p(y, n) ~ treat + (1 | cluster)", template, effects={"Intercept": -1.0, "treat": 1.0},
                   variances={"sd(cluster)": 0.3}, n_groups=[12], n_per_group=[4], reps=8, fit="ml",
                   family="binomial", seed=6)
    assert res.table["failures"].iloc[0] == 0 and res.table["reps"].iloc[0] == 8
    with pytest.raises(hm.SpecificationError, match="fit='ml'"):
        hm.power("p(y, n) ~ treat + (1 | cluster)", template, effects={"treat": 1.0},
                 variances={"sd(cluster)": 0.3}, family="binomial", reps=2, seed=1)


def test_bayesian_fits():
    res = hm.power("y ~ treat + (1 | cluster)", crt, effects={"treat": 1.0}, variances=VARS, n_groups=[10],
                   n_per_group=[4], reps=4, fit="bayes", seed=7, draws=150, tune=150)
    row = res.replicates.iloc[0]
    assert row["error"] == "" and row["lower"] < row["estimate"] < row["upper"]
    assert res.table["reps"].iloc[0] == 4


def test_resumable_power_study(tmp_path):
    kw = dict(effects={"treat": 0.5}, variances=VARS, n_groups=[10], n_per_group=[4], reps=12, seed=8)
    a = hm.power("y ~ treat + (1 | cluster)", crt, resume=tmp_path / "p", **kw)
    b = hm.power("y ~ treat + (1 | cluster)", crt, resume=tmp_path / "p", **kw)
    assert a.replicates.equals(b.replicates)


def test_bad_arguments():
    f = "y ~ treat + (1 | cluster)"
    with pytest.raises(hm.SpecificationError, match="Did you mean 'sd\\(cluster, Intercept\\)'"):
        hm.power(f, crt, effects={"treat": 1}, variances={"sd(clustr, Intercept)": 1, "sigma": 1},
                 n_groups=[4], n_per_group=[2], reps=2)
    with pytest.raises(hm.SpecificationError, match="missing 'sigma'"):
        hm.power(f, crt, effects={"treat": 1}, variances={"sd(cluster)": 1}, n_groups=[4], n_per_group=[2], reps=2)
    with pytest.raises(hm.SpecificationError, match="population-level terms"):
        hm.power(f, crt, effects={"Intercept": 1}, variances=VARS, n_groups=[4], n_per_group=[2], reps=2)
    with pytest.raises(hm.SpecificationError, match="n_groups must be positive"):
        hm.power(f, crt, effects={"treat": 1}, variances=VARS, n_groups=[0], n_per_group=[2], reps=2)
    with pytest.raises(hm.SpecificationError, match="give n_groups"):
        hm.power(f, crt, effects={"treat": 1}, variances=VARS, reps=2)
    with pytest.raises(hm.SpecificationError, match="fit must be"):
        hm.power(f, crt, effects={"treat": 1}, variances=VARS, n_groups=[4], n_per_group=[2], fit="gls")


# -- assurance: power averaged over a design prior --------------------------------------------------
def test_point_mass_design_prior_reproduces_power():
    kw = dict(effects={"treat": 0.5}, variances=VARS, n_groups=[10], n_per_group=[4], reps=20, seed=3)
    plain = hm.power("y ~ treat + (1 | cluster)", crt, **kw)
    point = stats.rv_discrete(values=([0.5], [1.0]))
    assured = hm.power("y ~ treat + (1 | cluster)", crt, design_prior={"treat": point}, **kw)
    assert "assurance" in assured.table.columns and "power" not in assured.table.columns
    # the design prior draws from a stream of its own: the same data sets, the same fits
    np.testing.assert_array_equal(plain.replicates["estimate"], assured.replicates["estimate"])
    assert assured.table["assurance"].iloc[0] == plain.table["power"].iloc[0]
    assert assured.table["mcse"].iloc[0] == plain.table["mcse"].iloc[0]
    assert "assurance" in repr(assured)


def test_normal_design_prior_matches_the_expected_design_effect_power():
    from scipy import integrate

    mu, tau, G, m = 0.4, 0.3, 30, 6
    res = hm.power("y ~ treat + (1 | cluster)", crt, effects={"treat": mu}, variances=VARS, n_groups=[G],
                   n_per_group=[m], design_prior={"treat": hm.Normal(mu, tau)}, reps=300, seed=5)
    row = res.table.iloc[0]
    expected = integrate.quad(lambda d: closed_form(d, G, m, 0.5, 1.0) * stats.norm.pdf(d, mu, tau),
                              mu - 10 * tau, mu + 10 * tau)[0]
    assert abs(row["assurance"] - expected) < 2 * row["mcse"], (row["assurance"], expected, row["mcse"])
    # assurance is not the power at the prior mean (0.447 vs 0.396 here): the check can tell them apart
    assert abs(expected - closed_form(mu, G, m, 0.5, 1.0)) > 0.01
    truths = res.replicates["truth"]
    assert truths.nunique() == 300 and abs(truths.mean() - mu) < 3 * tau / np.sqrt(300)
    assert row["truth"] == pytest.approx(truths.mean())


def test_design_prior_errors():
    f = "y ~ treat + (1 | cluster)"
    kw = dict(effects={"treat": 0.5}, variances=VARS, n_groups=[4], n_per_group=[2], reps=2, seed=1)
    with pytest.raises(hm.SpecificationError, match=r"design_prior\['treat'\] must be an hmodels prior"):
        hm.power(f, crt, design_prior={"treat": 0.5}, **kw)
    with pytest.raises(hm.SpecificationError, match="not among effects or variances"):
        hm.power(f, crt, design_prior={"tret": hm.Normal(0, 1)}, **kw)
    with pytest.raises(hm.SpecificationError, match="design_prior must be a dict"):
        hm.power(f, crt, design_prior=hm.Normal(0, 1), **kw)

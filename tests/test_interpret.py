"""coef, hypothesis, marginal means, comparisons, slopes and post-stratification against direct draw calculations."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, special, stats

import hmodels as hm
from hmodels.interpret import coef_draws
from hmodels.summary import summarise_draws


def _b(fit, term):
    return fit.draws["b"].sel(term=term).transpose("chain", "draw").to_numpy()


def _r(fit, factor, term):
    """Group effects (chain, draw, level) of one term."""
    r = fit.draws[f"r_{factor}"]
    return r.sel({f"{factor}__term": term}).transpose("chain", "draw", factor).to_numpy()


def _assert_summary(table_row, draws, prob=0.95):
    """A table row's estimate / sd / HDI are the summary of ``draws`` (chain, draw)."""
    s = summarise_draws(draws[..., None], ["x"], prob).iloc[0]
    assert table_row["estimate"] == pytest.approx(s["mean"], rel=1e-9, abs=1e-12)
    assert table_row["sd"] == pytest.approx(s["sd"], rel=1e-9, abs=1e-12)
    assert table_row["hdi_low"] == pytest.approx(s["hdi_low"], rel=1e-9, abs=1e-12)
    assert table_row["hdi_high"] == pytest.approx(s["hdi_high"], rel=1e-9, abs=1e-12)


@pytest.fixture(scope="module")
def chick_fit():
    data = hm.datasets.load("chickweight")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hm.Model("weight ~ Time * Diet + (Time | Chick)", data).fit(draws=500, tune=500, chains=2, seed=1,
                                                                             progressbar=False)


# -- coef ---------------------------------------------------------------------------------------
def test_coef_is_fixed_plus_group_effect_exactly(sleep_fit):
    c = coef_draws(sleep_fit, "Subject")
    assert list(c.coords["term"].values) == ["Intercept", "Days"]
    for term in ("Intercept", "Days"):
        direct = _b(sleep_fit, term)[:, :, None] + _r(sleep_fit, "Subject", term)
        assert np.array_equal(c.sel(term=term).transpose("chain", "draw", "Subject").to_numpy(), direct)
    table = sleep_fit.coef("Subject")
    assert len(table) == 18 * 2 and list(table.columns[:3]) == ["level", "term", "mean"]
    row = table[(table["level"] == "308") & (table["term"] == "Days")].iloc[0]
    direct = _b(sleep_fit, "Days") + _r(sleep_fit, "Subject", "Days")[:, :, 0]
    s = summarise_draws(direct[..., None], ["x"]).iloc[0]
    assert row["mean"] == pytest.approx(s["mean"], rel=1e-12)
    assert (row["hdi_low"], row["hdi_high"]) == pytest.approx((s["hdi_low"], s["hdi_high"]), rel=1e-12)
    assert row["mean"] > 15  # subject 308 slows down fast (lme4: 19.7 ms/day)


def test_coef_all_terms_adds_population_terms_constant_over_levels(chick_fit):
    c = coef_draws(chick_fit, "Chick", all_terms=True)
    assert list(c.coords["term"].values) == list(chick_fit.meta["fixed_terms"])
    d2 = c.sel(term="Diet[2]").transpose("chain", "draw", "Chick").to_numpy()
    assert np.array_equal(d2, np.broadcast_to(_b(chick_fit, "Diet[2]")[:, :, None], d2.shape))
    assert len(chick_fit.coef("Chick", all_terms=True)) == 50 * 8


def test_coef_unknown_factor(sleep_fit):
    with pytest.raises(hm.SpecificationError, match="Subject"):
        sleep_fit.coef("Subjet")


# -- hypothesis ---------------------------------------------------------------------------------
def test_hypothesis_probabilities_are_draw_fractions(sleep_fit):
    days, sigma = _b(sleep_fit, "Days"), sleep_fit.draws["sigma"].transpose("chain", "draw").to_numpy()
    sd_days = sleep_fit.draws["sd_Subject"].sel(Subject__term="Days").transpose("chain", "draw").to_numpy()
    cor = sleep_fit.draws["cor_Subject"].isel(cor_Subject__row=0, cor_Subject__col=1).transpose("chain", "draw")
    cor = cor.to_numpy()
    t = sleep_fit.hypothesis(["Days > 8", "sd(Subject, Days) < 5", "cor(Subject, Intercept, Days) > 0",
                              "sigma >= 25", "Intercept + 5 * Days = 300", "r(Subject, 308, Days) > 0"])
    assert list(t.index) == ["Days > 8", "sd(Subject, Days) < 5", "cor(Subject, Intercept, Days) > 0",
                             "sigma >= 25", "Intercept + 5 * Days = 300", "r(Subject, 308, Days) > 0"]
    er = t.loc["Intercept + 5 * Days = 300", "evidence_ratio"]  # Savage-Dickey (tested on its own below)
    expected = [np.mean(days > 8), np.mean(sd_days < 5), np.mean(cor > 0), np.mean(sigma >= 25), er / (1 + er),
                np.mean(_r(sleep_fit, "Subject", "Days")[:, :, 0] > 0)]
    np.testing.assert_array_equal(t["prob"].to_numpy(), np.array(expected))
    p = expected[0]
    assert t.loc["Days > 8", "evidence_ratio"] == pytest.approx(p / (1 - p))
    _assert_summary(t.loc["Days > 8"], days - 8)  # estimate of lhs - rhs, as brms
    _assert_summary(t.loc["Intercept + 5 * Days = 300"], _b(sleep_fit, "Intercept") + 5 * days - 300)
    assert np.isfinite(er) and er > 0
    assert t.loc["Days > 8", "prob"] > 0.9  # lme4: 10.47 (SE 1.5)


def test_hypothesis_accepts_equivalent_spellings(sleep_fit):
    t = sleep_fit.hypothesis(["cor(Subject, Intercept, Days) > 0", "cor(Subject,Days,Intercept) > 0",
                              "cor(Subject, Intercept:Days) > 0", "0 < cor(Subject, Intercept, Days)"])
    assert t["prob"].nunique() == 1
    assert sleep_fit.hypothesis("Days > 8")["prob"].iloc[0] == sleep_fit.hypothesis("8 < Days")["prob"].iloc[0]


def test_hypothesis_bracketed_terms_and_functions(chick_fit, cbpp_fit):
    d2, d3 = _b(chick_fit, "Diet[2]"), _b(chick_fit, "Diet[3]")
    t2, t3 = _b(chick_fit, "Time:Diet[2]"), _b(chick_fit, "Time:Diet[3]")
    t = chick_fit.hypothesis(["Diet[3] - Diet[2] = 0", "Time:Diet[3] > Time:Diet[2]", "-Time:Diet[2] < 0",
                              "Time + Time:Diet[3] > 8"])
    _assert_summary(t.iloc[0], d3 - d2)
    assert t["prob"].iloc[1] == np.mean(t3 - t2 > 0)
    assert t["prob"].iloc[2] == np.mean(-t2 < 0)
    assert t["prob"].iloc[3] == np.mean(_b(chick_fit, "Time") + t3 > 8)
    p4 = _b(cbpp_fit, "period[4]")
    h = cbpp_fit.hypothesis("exp(period[4]) < 0.5")
    assert h["prob"].iloc[0] == np.mean(np.exp(p4) < 0.5)
    _assert_summary(h.iloc[0], np.exp(p4) - 0.5)


@pytest.mark.parametrize("text, match", [
    ("Dayz > 8", "Days"),
    ("sd(Subject, Dys) < 5", "Days"),
    ("sd(Subjct, Days) < 5", "Subject"),
    ("cor(Subject, Intercept, Dys) > 0", "Intercept, Days"),
    ("r(Subject, 999, Days) > 0", "level"),
    ("__import__('os').system('echo hacked') > 0", "__import__"),
    ("Days.real > 1", "Days.real"),
    ("Days[0] > 1", "Days"),
    ("(lambda: 1)() > 0", "not allowed|Unknown"),
    ("Days > 8 > 1", "exactly one comparison"),
    ("Days != 8", "exactly one comparison"),
    ("Days >", "Could not read"),
    ("", "non-empty"),
    ("'a' > 1", "not allowed"),
])
def test_hypothesis_rejects_unknown_names_and_unsafe_expressions(sleep_fit, text, match):
    with pytest.raises(hm.SpecificationError, match=match):
        sleep_fit.hypothesis(text)


def test_hypothesis_unknown_bracketed_term_names_the_closest(chick_fit):
    with pytest.raises(hm.SpecificationError, match=r"Diet\[2\]"):
        chick_fit.hypothesis("Dit[2] > 0")
    with pytest.raises(hm.SpecificationError, match=r"Time:Diet\[2\]"):
        chick_fit.hypothesis("Tme:Diet[2] > 0")


# -- marginal means, comparisons, slopes: gaussian (identity link) -------------------------------
def test_sleepstudy_marginal_means_against_draws(sleep_fit):
    b0, b1 = _b(sleep_fit, "Intercept"), _b(sleep_fit, "Days")
    r0, r1 = _r(sleep_fit, "Subject", "Intercept"), _r(sleep_fit, "Subject", "Days")
    for groups in ("exclude", "marginalize"):  # identical for an identity link
        mm = sleep_fit.marginal_means(at={"Days": 5}, groups=groups)
        np.testing.assert_allclose(mm.draws[..., 0], b0 + 5 * b1, rtol=1e-12)
        _assert_summary(mm.table.iloc[0], b0 + 5 * b1)
    inc = sleep_fit.marginal_means(at={"Days": 5}, groups="include")
    np.testing.assert_allclose(inc.draws[..., 0], b0 + 5 * b1 + (r0 + 5 * r1).mean(axis=-1), rtol=1e-12)
    mm = sleep_fit.marginal_means(at={"Days": [0, 9]})
    assert list(mm.table["Days"]) == [0.0, 9.0]
    np.testing.assert_allclose(mm.draws, np.stack([b0, b0 + 9 * b1], axis=-1), rtol=1e-12)
    link = sleep_fit.marginal_means(at={"Days": 5}, scale="link")
    np.testing.assert_allclose(link.draws[..., 0], b0 + 5 * b1, rtol=1e-12)


def test_sleepstudy_slopes_are_the_days_effect(sleep_fit):
    b1, r1 = _b(sleep_fit, "Days"), _r(sleep_fit, "Subject", "Days")
    s = sleep_fit.slopes("Days")
    np.testing.assert_allclose(s.draws[..., 0], b1, rtol=1e-7)
    s_inc = sleep_fit.slopes("Days", groups="include", at={"Days": 2})
    np.testing.assert_allclose(s_inc.draws[..., 0], b1 + r1.mean(axis=-1), rtol=1e-7)


def _chick_cell(fit, diet: str, time: float) -> np.ndarray:
    eta = _b(fit, "Intercept") + time * _b(fit, "Time")
    if diet != "1":
        eta = eta + _b(fit, f"Diet[{diet}]") + time * _b(fit, f"Time:Diet[{diet}]")
    return eta


def test_chickweight_marginal_means_by_diet_and_averaged(chick_fit):
    mm = chick_fit.marginal_means(by="Diet", at={"Time": 10})
    assert [str(v) for v in mm.table["Diet"]] == ["1", "2", "3", "4"]
    cells = np.stack([_chick_cell(chick_fit, k, 10.0) for k in "1234"], axis=-1)
    np.testing.assert_allclose(mm.draws, cells, rtol=1e-12)
    for i in range(4):
        _assert_summary(mm.table.iloc[i], cells[..., i])
    avg = chick_fit.marginal_means(at={"Time": 10})  # Diet averaged with equal weights (balanced grid)
    np.testing.assert_allclose(avg.draws[..., 0], cells.mean(axis=-1), rtol=1e-12)
    t_mean = float(hm.datasets.load("chickweight")["Time"].mean())  # Time at its mean when not given
    at_mean = chick_fit.marginal_means(by="Diet")
    np.testing.assert_allclose(at_mean.draws[..., 1], _chick_cell(chick_fit, "2", t_mean), rtol=1e-12)
    # include: every chick's fitted line, averaged over the 50 chicks, in each diet
    r0, r1 = _r(chick_fit, "Chick", "Intercept"), _r(chick_fit, "Chick", "Time")
    inc = chick_fit.marginal_means(by="Diet", at={"Time": 10}, groups="include")
    np.testing.assert_allclose(inc.draws, cells + (r0 + 10 * r1).mean(axis=-1)[..., None], rtol=1e-12)


def test_chickweight_comparisons_and_slopes(chick_fit):
    c = chick_fit.comparisons("Diet", at={"Time": 10})
    assert list(c.table["contrast"]) == ["2 - 1", "3 - 1", "4 - 1"]
    for i, k in enumerate("234"):
        direct = _b(chick_fit, f"Diet[{k}]") + 10 * _b(chick_fit, f"Time:Diet[{k}]")
        np.testing.assert_allclose(c.draws[..., i], direct, rtol=1e-9, atol=1e-9)
        _assert_summary(c.table.iloc[i], c.draws[..., i])
    pw = chick_fit.comparisons("Diet", at={"Time": 10}, contrast="pairwise", comparison="ratio")
    assert list(pw.table["contrast"]) == ["2 / 1", "3 / 1", "4 / 1", "3 / 2", "4 / 2", "4 / 3"]
    np.testing.assert_allclose(pw.draws[..., 3], _chick_cell(chick_fit, "3", 10.0) / _chick_cell(chick_fit, "2", 10.0),
                               rtol=1e-12)
    by_time = chick_fit.comparisons("Diet", by="Time", at={"Time": [0, 20]})
    assert list(by_time.table["Time"]) == [0.0, 0.0, 0.0, 20.0, 20.0, 20.0]
    np.testing.assert_allclose(by_time.draws[..., 5], _b(chick_fit, "Diet[4]") + 20 * _b(chick_fit, "Time:Diet[4]"),
                               rtol=1e-9, atol=1e-9)
    s = chick_fit.slopes("Time", by="Diet")
    slopes = [_b(chick_fit, "Time")] + [_b(chick_fit, "Time") + _b(chick_fit, f"Time:Diet[{k}]") for k in "234"]
    np.testing.assert_allclose(s.draws, np.stack(slopes, axis=-1), rtol=1e-7)
    plus_one = chick_fit.comparisons("Time", by="Diet")  # numeric variable: x + 1 vs x
    np.testing.assert_allclose(plus_one.draws, s.draws, rtol=1e-6)


# -- GLMM: population-averaged (marginalize) against numerical integration -----------------------
def _cbpp_eta_sd(fit):
    b0, sd = _b(fit, "Intercept"), fit.draws["sd_herd"].isel(herd__term=0).transpose("chain", "draw").to_numpy()
    etas = [b0] + [b0 + _b(fit, f"period[{k}]") for k in "234"]
    return np.stack(etas, axis=-1), sd


def test_cbpp_marginalize_matches_gauss_hermite_and_quad_per_draw(cbpp_fit):
    mm = cbpp_fit.marginal_means(by="period")  # default: groups="marginalize", response scale
    assert mm.info["groups"] == "marginalize"
    eta, sd = _cbpp_eta_sd(cbpp_fit)
    # Gauss-Hermite per draw (150 nodes: converged to ~1e-13 for herd SDs up to 2), independent of the
    # module's trapezoidal rule
    x, w = np.polynomial.hermite.hermgauss(150)
    gh = (special.expit(eta[..., None] + np.sqrt(2) * sd[..., None, None] * x) * w).sum(-1) / np.sqrt(np.pi)
    np.testing.assert_allclose(mm.draws, gh, atol=1e-9)
    # adaptive quadrature on a subset of draws
    for c, d in [(0, 0), (1, 250), (2, 500), (3, 999)]:
        for g in range(4):
            val, _ = integrate.quad(lambda u: special.expit(eta[c, d, g] + sd[c, d] * u) * stats.norm.pdf(u),
                                    -np.inf, np.inf, epsabs=1e-12)
            assert mm.draws[c, d, g] == pytest.approx(val, abs=1e-9)
    # the population-averaged incidence is above a typical herd's for probabilities below 1/2
    typical = cbpp_fit.marginal_means(by="period", groups="exclude")
    np.testing.assert_allclose(typical.draws, special.expit(eta), rtol=1e-12)
    assert (mm.table["estimate"] > typical.table["estimate"]).all()


def test_cbpp_monte_carlo_agrees_with_quadrature_within_mc_error(cbpp_fit):
    n = 4000
    quad = cbpp_fit.marginal_means(by="period")
    mc = cbpp_fit.marginal_means(by="period", integration="montecarlo", n_points=n, seed=3)
    eta, sd = _cbpp_eta_sd(cbpp_fit)
    x, w = np.polynomial.hermite.hermgauss(150)
    h = special.expit(eta[..., None] + np.sqrt(2) * sd[..., None, None] * x)
    var_u = (h ** 2 * w).sum(-1) / np.sqrt(np.pi) - quad.draws ** 2  # Var_u[h] per draw and period
    se = np.sqrt(var_u / n)
    z = (mc.draws - quad.draws) / se
    assert np.abs(z).max() < 5.5  # 8000 draws x 4 periods of (at most) standard-normal z
    assert np.abs(mc.table["estimate"] - quad.table["estimate"]).max() < 4 * se.max()


def test_cbpp_include_link_scale_and_ratio(cbpp_fit):
    eta, _ = _cbpp_eta_sd(cbpp_fit)
    r = _r(cbpp_fit, "herd", "Intercept")  # (chain, draw, 15)
    inc = cbpp_fit.marginal_means(by="period", groups="include")
    np.testing.assert_allclose(inc.draws, special.expit(eta[..., :, None] + r[..., None, :]).mean(-1), rtol=1e-12)
    link = cbpp_fit.marginal_means(by="period", scale="link")  # nothing to integrate on the link scale
    np.testing.assert_allclose(link.draws, eta, rtol=1e-12)
    mm = cbpp_fit.marginal_means(by="period")
    ratio = cbpp_fit.comparisons("period", comparison="ratio")
    np.testing.assert_allclose(ratio.draws, mm.draws[..., 1:] / mm.draws[..., :1], rtol=1e-12)
    diff = cbpp_fit.comparisons("period", scale="link")  # log odds ratios: the period coefficients
    np.testing.assert_allclose(diff.draws[..., 2], _b(cbpp_fit, "period[4]"), rtol=1e-9, atol=1e-12)
    slope_free = cbpp_fit.comparisons("period", groups="exclude")
    np.testing.assert_allclose(slope_free.draws[..., 0], special.expit(eta[..., 1]) - special.expit(eta[..., 0]),
                               rtol=1e-9, atol=1e-12)


# -- post-stratification ------------------------------------------------------------------------
def test_poststratify_is_the_weighted_average_of_cell_predictions(cbpp_fit):
    data = hm.datasets.load("cbpp")
    table = data.assign(N=data["size"])
    ps = cbpp_fit.poststratify(table, weights="N", by="period", groups="include")
    mu = cbpp_fit.predict(table, kind="mean", groups="include").values
    for i, k in enumerate(["1", "2", "3", "4"]):
        rows = (table["period"].astype(str) == k).to_numpy()
        w = table["N"].to_numpy(dtype=float)[rows]
        np.testing.assert_allclose(ps.draws[..., i], (mu[..., rows] * w).sum(-1) / w.sum(), rtol=1e-12)
    overall = cbpp_fit.poststratify(table, weights="N", groups="include")
    w = table["N"].to_numpy(dtype=float)
    np.testing.assert_allclose(overall.draws[..., 0], (mu * w).sum(-1) / w.sum(), rtol=1e-12)
    new = pd.DataFrame({"period": ["1", "4"], "herd": ["new herd", "new herd"], "N": [10, 30]})
    a = cbpp_fit.poststratify(new, groups="new", seed=5)
    b = cbpp_fit.poststratify(new, groups="new", seed=5)
    np.testing.assert_array_equal(a.draws, b.draws)
    assert 0 < a.table["estimate"].iloc[0] < 1
    with pytest.raises(hm.MissingColumnError, match="N"):
        cbpp_fit.poststratify(data.assign(n=1), weights="Nn")
    with pytest.raises(hm.DataError, match="non-negative"):
        cbpp_fit.poststratify(table.assign(N=-1))


# -- bad input ----------------------------------------------------------------------------------
def test_bad_by_at_and_variable_names(chick_fit):
    with pytest.raises(hm.SpecificationError, match="'Diet'"):
        chick_fit.marginal_means(by="Dit")
    with pytest.raises(hm.SpecificationError, match="'Time'"):
        chick_fit.marginal_means(at={"Tme": 10})
    with pytest.raises(hm.SpecificationError, match="grouping factor"):
        chick_fit.marginal_means(by="Chick")
    with pytest.raises(hm.SpecificationError, match="'Diet'"):
        chick_fit.comparisons("Diett")
    with pytest.raises(hm.SpecificationError, match="categorical"):
        chick_fit.slopes("Diet")
    with pytest.raises(hm.SpecificationError, match="'Time'"):
        chick_fit.slopes("Tim")
    with pytest.raises(hm.SpecificationError, match="numeric"):
        chick_fit.marginal_means(by="Time")  # numeric by needs values in at
    with pytest.raises(hm.DataError, match="not a level of 'Diet'"):
        chick_fit.marginal_means(at={"Diet": "5"})
    with pytest.raises(hm.SpecificationError, match="marginalize"):
        chick_fit.marginal_means(groups="marginal")
    with pytest.raises(hm.SpecificationError, match="scale='response'"):
        chick_fit.comparisons("Diet", comparison="ratio", scale="link")
    with pytest.raises(hm.SpecificationError, match="prob"):
        chick_fit.marginal_means(prob=95)


def test_values_outside_the_data_range_warn_with_the_range(chick_fit):
    with pytest.warns(hm.DataWarning, match=r"outside the data range of 'Time' \[0, 21\]"):
        mm = chick_fit.marginal_means(by="Diet", at={"Time": 30})
    np.testing.assert_allclose(mm.draws[..., 0], _chick_cell(chick_fit, "1", 30.0), rtol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        chick_fit.marginal_means(at={"Time": 21})  # the edge of the range is inside


def test_categorical_at_values_by_label(chick_fit):
    mm = chick_fit.marginal_means(by="Diet", at={"Diet": [2, "4"], "Time": 10})
    assert [str(v) for v in mm.table["Diet"]] == ["2", "4"]
    np.testing.assert_allclose(mm.draws[..., 1], _chick_cell(chick_fit, "4", 10.0), rtol=1e-12)


# -- plots ---------------------------------------------------------------------------------------
def test_plot_conditional_with_an_interaction(chick_fit):
    import matplotlib.pyplot as plt

    fig = chick_fit.plot_conditional("Time:Diet", n_points=11, data_points=False)
    ax = fig.axes[0]
    assert len(ax.lines) == 4 and "by Diet" in ax.get_title()
    x, y = ax.lines[1].get_xdata(), ax.lines[1].get_ydata()  # Diet 2
    expected = np.stack([_chick_cell(chick_fit, "2", float(t)) for t in x], axis=-1).mean(axis=(0, 1))
    np.testing.assert_allclose(y, expected, rtol=1e-9)
    same = chick_fit.plot_conditional("Time", by="Diet", n_points=11, data_points=False)
    np.testing.assert_allclose(same.axes[0].lines[3].get_ydata(), ax.lines[3].get_ydata())
    fig2 = chick_fit.plot_conditional("Diet", by="Time")  # numeric by: mean and mean +- 1 SD
    assert len([t for t in fig2.axes[0].get_legend().get_texts() if "Time" in t.get_text()]) == 3
    with pytest.raises(hm.SpecificationError, match="two-way"):
        chick_fit.plot_conditional("Time:Diet", by="Diet")
    with pytest.raises(hm.MissingColumnError, match="'Diet'"):
        chick_fit.plot_conditional("Time:Dit")
    plt.close("all")


def test_estimates_plot(chick_fit):
    import matplotlib.pyplot as plt

    mm = chick_fit.marginal_means(by="Diet", at={"Time": [0, 10, 20]})
    fig = mm.plot()
    assert fig.axes[0].get_xlabel() == "Time" and len(fig.axes[0].lines) == 4
    fig = chick_fit.comparisons("Diet", at={"Time": 10}).plot()
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["2 - 1", "3 - 1", "4 - 1"]  # top down
    assert "Marginal means" in repr(mm) and "<table" in mm._repr_html_()
    plt.close("all")


# -- several factors, correlated slopes, log link ------------------------------------------------
@pytest.fixture(scope="module")
def counts_fit():
    rng = np.random.default_rng(7)
    g, h = np.repeat(np.arange(12), 20), np.tile(np.arange(8), 30)
    x = rng.uniform(-1, 1, g.size)
    u = rng.multivariate_normal([0, 0], [[0.25, 0.1], [0.1, 0.16]], size=12)
    eta = 0.5 + 0.4 * x + u[g, 0] + u[g, 1] * x + rng.normal(0, 0.3, 8)[h]
    data = pd.DataFrame({"y": rng.poisson(np.exp(eta)), "x": x, "g": [f"g{i}" for i in g],
                         "h": [f"h{i}" for i in h]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hm.Model("y ~ x + (x | g) + (1 | h)", data, family="poisson").fit(draws=300, tune=300, chains=2,
                                                                                seed=1, progressbar=False)


def test_marginalize_integrates_over_every_factor_with_correlations(counts_fit):
    x0 = 0.6
    mm = counts_fit.marginal_means(at={"x": x0})
    d = counts_fit.draws
    sd_g = d["sd_g"].transpose("chain", "draw", "g__term").to_numpy()
    rho = d["cor_g"].isel(cor_g__row=0, cor_g__col=1).transpose("chain", "draw").to_numpy()
    sd_h = d["sd_h"].isel(h__term=0).transpose("chain", "draw").to_numpy()
    v = sd_g[..., 0] ** 2 + 2 * rho * sd_g[..., 0] * sd_g[..., 1] * x0 + (sd_g[..., 1] * x0) ** 2 + sd_h ** 2
    eta = _b(counts_fit, "Intercept") + x0 * _b(counts_fit, "x")
    np.testing.assert_allclose(mm.draws[..., 0], np.exp(eta + v / 2), rtol=1e-12)  # lognormal mean
    # Monte Carlo over u ~ N(0, Sigma_g) and N(0, sd_h^2) drawn per factor: within MC error
    n = 4000
    mc = counts_fit.marginal_means(at={"x": x0}, integration="montecarlo", n_points=n, seed=2)
    se = np.sqrt(np.expm1(v) * np.exp(2 * eta + v) / n)  # sd of a lognormal / sqrt(n)
    assert np.abs((mc.draws[..., 0] - mm.draws[..., 0]) / se).max() < 5.5
    # the slope at x0 on the response scale: d/dx exp(eta(x) + v(x)/2)
    dv = 2 * rho * sd_g[..., 0] * sd_g[..., 1] + 2 * sd_g[..., 1] ** 2 * x0
    s = counts_fit.slopes("x", at={"x": x0})
    np.testing.assert_allclose(s.draws[..., 0], np.exp(eta + v / 2) * (_b(counts_fit, "x") + dv / 2), rtol=1e-6)


def test_include_averages_over_the_observed_level_combinations(counts_fit):
    x0 = -0.2
    inc = counts_fit.marginal_means(at={"x": x0}, groups="include")
    data = counts_fit.design.data
    rg0, rg1 = _r(counts_fit, "g", "Intercept"), _r(counts_fit, "g", "x")
    rh = _r(counts_fit, "h", "Intercept")
    gl = list(counts_fit.draws.coords["g"].values)
    hl = list(counts_fit.draws.coords["h"].values)
    combos = data[["g", "h"]].astype(str).drop_duplicates().to_numpy()
    eta = _b(counts_fit, "Intercept") + x0 * _b(counts_fit, "x")
    direct = np.mean([np.exp(eta + rg0[..., gl.index(a)] + x0 * rg1[..., gl.index(a)] + rh[..., hl.index(b)])
                      for a, b in combos], axis=0)
    np.testing.assert_allclose(inc.draws[..., 0], direct, rtol=1e-12)


def test_a_loaded_fit_gives_the_same_answers(cbpp_fit, tmp_path):
    cbpp_fit.save(tmp_path / "cbpp.nc")
    loaded = hm.load(tmp_path / "cbpp.nc")
    for f in ("marginal_means", "comparisons"):
        kwargs = {"by": "period"} if f == "marginal_means" else {"variable": "period"}
        np.testing.assert_allclose(getattr(loaded, f)(**kwargs).draws, getattr(cbpp_fit, f)(**kwargs).draws,
                                   rtol=1e-12)
    pd.testing.assert_frame_equal(loaded.hypothesis("period[2] < 0"), cbpp_fit.hypothesis("period[2] < 0"))


def test_savage_dickey_ratio_of_a_point_hypothesis():
    """Normal prior, near-normal posterior: the ratio equals N(0 | post mean - 10, post sd) / N(0 | 0, 5)."""
    from scipy import stats

    m = hm.Model("Reaction ~ Days + (1 | Subject)", hm.datasets.load("sleepstudy"), priors={"Days": hm.Normal(10, 5)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = m.fit(draws=1000, tune=500, chains=2, seed=4, progressbar=False)
    t = fit.hypothesis(["Days = 10", "Days = 0", "r(Subject, 308, Intercept) = 0"])
    days = fit.draws["b"].sel(term="Days").to_numpy().ravel()
    analytic = stats.norm(days.mean() - 10, days.std()).pdf(0) / stats.norm(0, 5).pdf(0)
    assert t.loc["Days = 10", "evidence_ratio"] == pytest.approx(analytic, rel=0.15)
    assert t.loc["Days = 10", "evidence_ratio"] > 1 > t.loc["Days = 0", "evidence_ratio"]  # 10.5 is near 10
    er = t.loc["Days = 10", "evidence_ratio"]
    assert t.loc["Days = 10", "prob"] == pytest.approx(er / (1 + er))
    assert np.isnan(t.loc["r(Subject, 308, Intercept) = 0", "evidence_ratio"])  # no prior draws of group effects


def test_outcome_scale_estimates_of_a_truncated_outcome_are_the_truncated_mean():
    # a zero-truncated poisson's expected count is mu / (1 - exp(-mu)); the family's mean mu would be ~0.5 too low
    from _sim_fits import zero_truncated_fit

    fit = zero_truncated_fit()
    mm = fit.marginal_means(at={"x": 0.0}, groups="exclude").table
    mu = np.exp(fit.draws["b"].sel(term="Intercept").values)
    assert mm["estimate"].iloc[0] == pytest.approx(float((mu / -np.expm1(-mu)).mean()), rel=1e-10)
    assert mm["estimate"].iloc[0] > float(mu.mean()) + 0.2  # well above the untruncated mean
    marg = fit.marginal_means(at={"x": 0.0}).table["estimate"].iloc[0]  # over the groups: quadrature, no shortcut
    assert marg > mm["estimate"].iloc[0]  # E over groups of a convex function of the effect
    assert np.isfinite(fit.slopes("x").table["estimate"]).all()
    assert np.isfinite(fit.comparisons("x").table["estimate"]).all()
    link = fit.marginal_means(at={"x": 0.0}, groups="exclude", scale="link").table  # the linear predictor: fine
    assert link["estimate"].iloc[0] == pytest.approx(float(fit.draws["b"].sel(term="Intercept").mean()))

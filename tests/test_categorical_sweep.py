"""Adversarial checks of the categorical family and of the ordinal thresholds' centring (issue 12).

Each test here would have caught a defect found by the sweep (an untyped exception, a meaningless
number, or a wrong refit), or checks an identity that must hold exactly in distribution:

* K = 2 categorical is the bernoulli model (same priors): posteriors agree within Monte Carlo error.
* Adding a constant to a predictor leaves a categorical model's slopes unchanged (centred intercept priors).
* Grid averages (marginal_means, comparisons, slopes, poststratify) and plot_conditional need an expected
  outcome, which an unordered outcome has not: a typed FamilyError naming the alternative.
* The posterior predictive check of an unordered outcome compares each category's share (not the mean
  and SD of arbitrary category numbers).
* kfold refits a categorical model (it used to pass the fit's centring back and be refused), and a fold
  whose training rows lack a category is refused with a DataError (it was a PriorError about a key
  the user never wrote).
* A mixed-type outcome column (1 and "1") is refused instead of merged into one category.
* A predictor whose name starts like a category's predictor (``mu_rate``) takes a prior for every category.
* power refuses a categorical model at once (its replicates all failed, leaving NaN power).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hmodels as hm

LABELS = np.array(["bus", "car", "train"])
SMALL = dict(draws=300, tune=300, chains=2, progressbar=False)


def _choices(seed=3, n_groups=10, per_group=15):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per_group)
    x = rng.normal(size=g.size)
    f = rng.choice(["p", "q", "r"], g.size)
    u = rng.normal(0, 0.6, (n_groups, 2))
    eta = np.stack([0.5 + 0.8 * x + u[g, 0] + (f == "q"), -0.3 - 0.5 * x + u[g, 1]], axis=1)
    y = hm.families.get_family("categorical").simulate(rng, eta, {})
    return pd.DataFrame({"choice": LABELS[y - 1], "x": x, "f": f, "g": [f"s{i}" for i in g]})


@pytest.fixture(scope="module")
def cat_fit():
    m = hm.Model("choice ~ x + f + (1 | g)", _choices(), family="categorical")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hm.ConvergenceWarning)
        return m.fit(seed=1, **SMALL)


# -- correctness ------------------------------------------------------------------------------------
def _agree(a, b, term_a, term_b, k=4.0):
    """|mean_a - mean_b| within k combined Monte Carlo SEs."""
    ra, rb = a.loc[term_a], b.loc[term_b]
    assert abs(ra["mean"] - rb["mean"]) < k * np.hypot(ra["mcse_mean"], rb["mcse_mean"]), (term_a, ra, rb)


def test_two_categories_are_the_bernoulli_model():
    rng = np.random.default_rng(7)
    g = np.repeat(np.arange(12), 20)
    x = rng.normal(size=g.size)
    y = rng.random(g.size) < 1 / (1 + np.exp(-(-0.3 + 0.7 * x + rng.normal(0, 0.8, 12)[g])))
    d = pd.DataFrame({"y01": y.astype(int), "ycat": np.where(y, "yes", "no"), "x": x, "g": [f"g{i}" for i in g]})
    priors = {"Intercept": hm.StudentT(3, 0, 2.5), "x": hm.Normal(0, 1), "sd": hm.HalfNormal(1)}
    kw = dict(draws=1000, tune=500, chains=2, seed=3, progressbar=False)
    fb = hm.Model("y01 ~ x + (1 | g)", d, family="bernoulli", priors=priors).fit(**kw)
    fc = hm.Model("ycat ~ x + (1 | g)", d, family="categorical", priors=priors).fit(**kw)
    assert fc.model.priors["muyes_x"].prior == hm.Normal(0, 1)
    b, c = fb.fixed_effects(), fc.fixed_effects()
    _agree(b, c, "Intercept", "muyes_Intercept")
    _agree(b, c, "x", "muyes_x")
    vb, vc = fb.variance_components(), fc.variance_components()
    _agree(vb, vc, "sd(g, Intercept)", "sd(g, muyes_Intercept)")
    # same model: the posterior SDs agree too (an SD's relative Monte Carlo error is about 1/sqrt(2 ESS))
    for tb, tc in (("x", "muyes_x"), ("Intercept", "muyes_Intercept")):
        rel = np.sqrt(1 / (2 * b.loc[tb, "ess_bulk"]) + 1 / (2 * c.loc[tc, "ess_bulk"]))
        assert abs(np.log(c.loc[tc, "sd"] / b.loc[tb, "sd"])) < 4 * rel, (tb, b.loc[tb], c.loc[tc])


def test_adding_a_constant_to_a_predictor_leaves_the_slopes_unchanged():
    d = _choices(seed=5).assign(x1000=lambda t: t["x"] + 1000.0)
    kw = dict(seed=1, **SMALL)
    a = hm.Model("choice ~ x", d, family="categorical").fit(**kw).fixed_effects()
    b = hm.Model("choice ~ x1000", d, family="categorical").fit(**kw).fixed_effects()
    for cat in ("mucar", "mutrain"):
        _agree(a, b, f"{cat}_x", f"{cat}_x1000", k=3.0)
        # the reported intercepts are at x = 0: the same line
        implied = b.loc[f"{cat}_Intercept", "mean"] + 1000.0 * b.loc[f"{cat}_x1000", "mean"]
        assert abs(a.loc[f"{cat}_Intercept", "mean"] - implied) < 3 * a.loc[f"{cat}_Intercept", "mcse_mean"] + 1e-6


# -- refusals of things an unordered outcome has not ---------------------------------------------------
@pytest.mark.parametrize("call", [
    lambda fit: fit.marginal_means(by="f"),
    lambda fit: fit.marginal_means(by="f", scale="link"),
    lambda fit: fit.comparisons("f"),
    lambda fit: fit.slopes("x"),
    lambda fit: fit.poststratify(pd.DataFrame({"x": [0.0, 1.0], "f": ["p", "q"], "g": ["s0", "s1"], "N": [1, 2]})),
    lambda fit: fit.plot_conditional("x"),
], ids=["marginal_means", "marginal_means_link", "comparisons", "slopes", "poststratify", "plot_conditional"])
def test_grid_averages_are_refused_with_the_alternative(cat_fit, call):
    with pytest.raises(hm.FamilyError, match=r"no expected value.*kind='probs'"):
        call(cat_fit)


def test_ppc_checks_each_category_share(cat_fit):
    res = cat_fit.ppc(seed=1)
    t = res.table
    y = cat_fit.design.y
    assert "mean" not in t.index and "sd" not in t.index
    for k, lv in enumerate(LABELS, start=1):
        assert t.loc[f"share(choice = {lv})", "observed"] == pytest.approx((y == k).mean())
        assert 0.0 <= t.loc[f"share(choice = {lv})", "rep_mean"] <= 1.0
    shares = t.loc[[f"share(choice = {lv})" for lv in LABELS], "rep_mean"]
    assert shares.sum() == pytest.approx(1.0)
    g0 = cat_fit.design.factors[0].codes == 0
    assert t.loc["mean[g=s0](choice = car)", "observed"] == pytest.approx((y[g0] == 2).mean())
    assert "share(choice = bus)" in cat_fit.report()


def test_kfold_refits_a_categorical_model(cat_fit):
    res = cat_fit.kfold(k=2, seed=1, draws=100, tune=100, chains=1)
    assert np.isfinite(float(res.elpd))


def test_kfold_refuses_a_fold_whose_training_rows_lack_a_category():
    d = _choices().iloc[:60].copy()
    d.loc[5, "choice"] = "plane"  # one row: one fold's training rows lack it
    fit = hm.Model("choice ~ x", d, family="categorical").fit(seed=1, draws=100, tune=100, chains=1, progressbar=False)
    with pytest.raises(hm.DataError, match="'plane' of 'choice' are only in the held-out rows"):
        fit.kfold(k=2, seed=1, draws=100, tune=100, chains=1)


def test_power_refuses_a_categorical_model_before_any_replicate_runs():
    crt = lambda G, m: hm.design_grid(G, m, group="cluster", between={"treat": [0, 1]})  # noqa: E731
    for fit in ("reml", "ml", "bayes"):  # every replicate used to fail, and the table held NaN power
        with pytest.raises(hm.SpecificationError, match="categorical model.*not available"):
            hm.power("y ~ treat", crt, effects={"treat": 0.5}, variances={}, n_groups=[5], n_per_group=[5],
                     reps=2, family="categorical", fit=fit, seed=1)


# -- bad input ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("values", [["a", 1, "b", "a"], ["1", 1, "b", "b"], [True, "a", "a", True]])
def test_a_mixed_type_outcome_is_refused(values):
    d = pd.DataFrame({"y": pd.Series(values * 5, dtype=object), "x": np.arange(20.0)})
    with pytest.raises(hm.DataError, match=r"mixes values of different types.*astype\(str\)"):
        hm.Model("y ~ x", d, family="categorical")


def test_an_unknown_per_category_prior_key_names_the_key_as_written():
    with pytest.raises(hm.PriorError, match=r"'mucar_z'"):
        hm.Model("choice ~ x", _choices(), family="categorical", priors={"mucar_z": hm.Normal(0, 1)})


def test_a_predictor_named_like_a_category_prefix_takes_a_common_prior():
    rng = np.random.default_rng(1)
    d = pd.DataFrame({"y": rng.choice(list("abc"), 40), "mu_rate": rng.normal(size=40), "x": rng.normal(size=40)})
    p = hm.Model("y ~ mu_rate", d, family="categorical", priors={"mu_rate": hm.Normal(0, 1)}).priors
    assert p["mub_mu_rate"].prior == p["muc_mu_rate"].prior == hm.Normal(0, 1)  # was "names no category"
    p = hm.Model("y ~ mu_rate", d, family="categorical", priors={"mub_mu_rate": hm.Normal(0, 1)}).priors
    assert p["mub_mu_rate"].prior == hm.Normal(0, 1) and p["muc_mu_rate"].source != "user"
    d = d.rename(columns={"mu_rate": "mub_x"})
    p = hm.Model("y ~ mub_x", d, family="categorical", priors={"mub_x": hm.Normal(0, 1)}).priors
    assert p["muc_mub_x"].prior == hm.Normal(0, 1)
    with pytest.raises(hm.PriorError, match="'mub_x' is ambiguous"):  # the column mub_x, or x in category b
        hm.Model("y ~ mub_x + x", d, family="categorical", priors={"mub_x": hm.Normal(0, 1)})


def test_prior_checks_read_each_intercept_prior_where_it_is_placed():
    """Found by the sweep: the prior checks read each category's raw intercept against its prior.

    That prior is on the intercept at the predictors' means. With x far from 0, prior_sensitivity flagged every
    coefficient "prior-data conflict", the intercepts' contraction was 0.4 instead of about 0.99, and diagnose()
    called the intercepts prior-dominated.
    """
    rng = np.random.default_rng(3)
    x = rng.normal(size=300)
    y = rng.random(300) < 1 / (1 + np.exp(-(0.3 + 0.8 * x)))
    d = pd.DataFrame({"y01": y.astype(int), "ycat": np.where(y, "yes", "no"), "x": x + 20.0})
    kw = dict(draws=500, tune=300, chains=2, seed=1, progressbar=False)
    fb = hm.Model("y01 ~ x", d, family="bernoulli").fit(**kw)
    fc = hm.Model("ycat ~ x", d, family="categorical").fit(**kw)
    cb, cc = fb.prior_contraction(), fc.prior_contraction()
    # same priors (K = 2 is the bernoulli model): the same analytic prior SD of the raw intercept
    assert cc.loc["b[muyes_Intercept]", "prior_sd"] == pytest.approx(cb.loc["b[Intercept]", "prior_sd"], rel=1e-6)
    assert cc.loc["b[muyes_Intercept]", "prior_sd"] > 40  # sqrt(2.5^2 + 20^2 sd(x-prior)^2), not 2.5
    sens = fc.prior_sensitivity()
    assert (sens["verdict"] == "fine").all(), sens
    # diagnose() said "the data say little about muyes_Intercept (116% of its prior SD)"
    assert not [v for v in fc.diagnose().verdicts if "Intercept" in str(v)]


@pytest.mark.parametrize("call", [
    lambda fit: fit.shrinkage("g"),
    lambda fit: fit.plot_trajectories("x", by="g"),
], ids=["shrinkage", "plot_trajectories"])
def test_per_group_means_are_refused_for_unordered_categories(cat_fit, call):
    """Found by the sweep: both reported the mean category number as if unordered categories had a mean.

    shrinkage("g") gave raw means of 2.05 (categories 1..3) and a shrinkage of 1.49.
    """
    with pytest.raises(hm.FamilyError, match="categorical outcome has (no mean|none)"):
        call(cat_fit)


def test_a_category_only_in_dropped_rows_is_refused_with_a_fix_that_works():
    """Found by the sweep: the error's fix for a category whose only row is dropped did not work.

    The only row of category 'd' had a missing predictor; the error said no row has it and that
    remove_unused_categories() would fix it, which it cannot (the row is still in the data).
    """
    rng = np.random.default_rng(1)
    d = pd.DataFrame({"y": pd.Categorical(rng.choice(list("abc"), 30), categories=list("abcd")),
                      "x": rng.normal(size=30)})
    d.loc[0, ["y", "x"]] = ["d", np.nan]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the dropped row's own warning
        with pytest.raises(hm.DataError, match=r"no row has: d \(rows with missing values .*dropna"):
            hm.Model("y ~ x", d, family="categorical")


def test_explain_priors_reads_each_categorys_terms_as_the_formulas():
    """Found by the sweep: explain_priors took sd(g, mub_Intercept) for a slope, not a group's odds ratio.

    It said "mub_Intercept slope per unit mub_Intercept" and gave a log-odds range; K = 2 must read as the
    bernoulli model with the same priors (same simulations: the same numbers).
    """
    rng = np.random.default_rng(2)
    d = pd.DataFrame({"x": rng.normal(size=60), "g": np.repeat([f"g{i}" for i in range(6)], 10)})
    d["ycat"] = rng.choice(["no", "yes"], 60)
    d["y01"] = (d["ycat"] == "yes").astype(int)
    tb = hm.Model("y01 ~ x + (1 | g)", d, family="bernoulli").explain_priors(seed=1).set_index("parameter")
    tc = hm.Model("ycat ~ x + (1 | g)", d, family="categorical").explain_priors(seed=1).set_index("parameter")
    for b, c in (("sd(g, Intercept)", "sd(g, muyes_Intercept)"), ("x", "muyes_x"), ("Intercept", "muyes_Intercept")):
        for col in ("implied_low", "implied_high"):
            assert tc.loc[c, col] == pytest.approx(tb.loc[b, col], rel=1e-9), (b, tb.loc[b], tc.loc[c])
    assert "odds ratio of yes against no" in tc.loc["sd(g, muyes_Intercept)", "implies"]
    assert "per SD of x " in tc.loc["muyes_x", "implies"]


@pytest.mark.parametrize("formula,key,one", [
    ("y ~ x + (1 + x | g)", "cor(g, muc_Intercept, muc_x)", "cor(g, muc_Intercept, muc_x)"),
    ("y ~ x + (1 + x | g) + (0 + z + w | g)", "cor(g, muc_z, muc_w)", "cor(g, muc_z, muc_w)"),
])
def test_a_categorys_correlation_prior_takes_the_name_the_prior_table_gives_it(formula, key, one):
    """Found by the sweep: the prior table's own name cor(g, muc_Intercept, muc_x) was refused as a prior key."""
    from hmodels.categorical import _example_data

    d = _example_data().assign(z=lambda t: np.sin(np.arange(len(t))), w=lambda t: np.cos(np.arange(len(t)) / 3))
    p = hm.Model(formula, d, family="categorical", priors={key: hm.LKJ(4)}).priors
    cors = {r.slot.param: r.prior for r in p if r.slot.cls == "cor"}
    assert cors.pop(one) == hm.LKJ(4)
    assert cors and all(v != hm.LKJ(4) for v in cors.values())  # every other block keeps its default

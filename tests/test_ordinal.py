"""The cumulative (ordinal) family: likelihood against statsmodels, outcome coding, thresholds, recovery.

The generated conformance suite (tests/test_family_conformance.py) already checks the NumPy
log-likelihood against PyMC's, the simulation moments and fit -> predict -> ppc -> LOO -> save/load
for both links; here: an independent implementation (statsmodels' OrderedModel), the tails, what
the user sees (thresholds named as brms does, category probabilities), bad input, and recovery of
known parameters by simulation.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hmodels as hm
from hmodels.families.ordinal import category_logp

CUT = np.array([-1.2, 0.3, 1.6])


@pytest.mark.parametrize("link", ["logit", "probit"])
def test_loglik_equals_statsmodels_ordered_model(link):
    from statsmodels.miscmodels.ordinal_model import OrderedModel

    rng = np.random.default_rng(1)
    x = rng.normal(size=400)
    fam = hm.families.get_family("cumulative", link)
    y = fam.simulate(rng, 0.7 * x, {"cutpoints": CUT})
    om = OrderedModel(y, x[:, None], distr=link)
    # statsmodels' parameters: slope, first threshold, log increments of the others
    params = np.r_[0.7, CUT[0], np.log(np.diff(CUT))]
    theirs = om.loglike(params)
    ours = fam.loglik(y, 0.7 * x, {"cutpoints": CUT}).sum()
    assert ours == pytest.approx(theirs, rel=1e-12)


@pytest.mark.parametrize("link", ["logit", "probit"])
def test_category_probabilities_are_stable_in_the_tails(link):
    eta = np.array([-60.0, -8.0, 0.0, 8.0, 60.0])
    lp = category_logp(link, eta, CUT)
    p = np.exp(lp)
    assert np.isfinite(lp).all()
    np.testing.assert_allclose(p.sum(axis=-1), 1.0, rtol=1e-12)
    # far above every threshold: the top category is certain, the bottom one has a tiny but exact log-probability
    assert p[-1, -1] == pytest.approx(1.0) and lp[-1, 0] < -50
    if link == "logit":  # log P(y = 1) = log F(c_1 - eta) = -log1p(exp(eta - c_1))
        assert lp[-1, 0] == pytest.approx(-np.logaddexp(0, 60.0 - CUT[0]), rel=1e-12)


def _ratings(seed=3, n_groups=40, per_group=15, slope=0.8, sd=0.6, cut=CUT, link="logit"):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per_group)
    x = rng.normal(size=g.size)
    eta = slope * x + rng.normal(0, sd, n_groups)[g]
    y = hm.families.get_family("cumulative", link).simulate(rng, eta, {"cutpoints": cut})
    labels = np.array(["poor", "fair", "good", "excellent"])
    rating = pd.Categorical(labels[y - 1], categories=list(labels), ordered=True)
    return pd.DataFrame({"rating": rating, "x": x, "g": [f"g{i}" for i in g]})


@pytest.fixture(scope="session")
def ordinal_fit():
    data = _ratings()
    m = hm.Model("rating ~ x + (1 | g)", data, family="cumulative")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hm.ConvergenceWarning)
        return m.fit(draws=500, tune=500, chains=2, seed=2, progressbar=False)


def test_outcome_coding_and_no_intercept_column():
    m = hm.Model("rating ~ x + (1 | g)", _ratings(), family="cumulative")
    assert m.design.response_levels == ("poor", "fair", "good", "excellent")
    assert set(np.unique(m.design.y)) == {1, 2, 3, 4}
    assert m.design.fixed_terms == ["x"]  # the thresholds take the intercept's place
    assert "cutpoints" in {r.slot.param for r in m.priors}
    plan = m.plan()  # the compiled engine samples it (kernels.c: cumulative_loglik)
    assert plan.backend == "engine" and not any("PyMC graph" in d for d in plan.deviations), plan


def test_thresholds_are_reported_as_brms_names_them(ordinal_fit):
    fe = ordinal_fit.fixed_effects()
    assert list(fe.index) == ["Intercept[1]", "Intercept[2]", "Intercept[3]", "x"]
    assert np.all(np.diff(fe["mean"].to_numpy()[:3]) > 0)
    assert "cutpoints" not in ordinal_fit.variance_components().index
    assert "Intercept[2]" in ordinal_fit.diagnose().table.index  # each threshold's R-hat and ESS


def test_recovers_the_simulated_truth(ordinal_fit):
    fe, vc = ordinal_fit.fixed_effects(), ordinal_fit.variance_components()
    truth = {"Intercept[1]": CUT[0], "Intercept[2]": CUT[1], "Intercept[3]": CUT[2], "x": 0.8}
    for term, value in truth.items():
        assert fe.loc[term, "hdi_low"] < value < fe.loc[term, "hdi_high"], (term, fe.loc[term].to_dict())
    sd = vc.loc["sd(g, Intercept)"]
    assert sd["hdi_low"] < 0.6 < sd["hdi_high"]
    assert ordinal_fit.divergences == 0


def test_category_probabilities_and_expected_category(ordinal_fit):
    new = pd.DataFrame({"x": [-2.0, 0.0, 2.0], "g": ["g0", "g0", "g0"]})
    probs = ordinal_fit.predict(new, kind="probs")
    assert list(probs.draws.coords["category"].values) == ["poor", "fair", "good", "excellent"]
    np.testing.assert_allclose(probs.values.sum(axis=-1), 1.0, rtol=1e-12)
    mean = ordinal_fit.predict(new, kind="mean").values
    np.testing.assert_allclose(mean, (probs.values * np.arange(1, 5)).sum(-1), rtol=1e-12)
    # a positive slope moves the outcome up the scale
    assert np.all(np.diff(mean.mean(axis=(0, 1))) > 0)
    table = probs.summary()
    assert table.index.names == ["obs", "category"] and len(table) == 12
    with pytest.raises(hm.SpecificationError, match="probs"):
        hm.Model("Reaction ~ Days + (1 | Subject)", hm.datasets.load("sleepstudy")).fit(
            draws=20, tune=20, chains=1, seed=1, progressbar=False).predict(kind="probs")


def test_prior_predictive_thresholds_are_ordered():
    m = hm.Model("rating ~ x + (1 | g)", _ratings(), family="cumulative")
    pp = m.prior_predictive(draws=100, seed=1)
    cut = np.asarray(pp.data["prior"]["cutpoints"].values)
    assert np.all(np.diff(cut, axis=-1) > 0)
    y = np.asarray(pp.data["prior_predictive"]["rating"].values)
    assert set(np.unique(y)) <= {1, 2, 3, 4}


def test_overdispersion_check_refuses_an_ordinal_outcome(ordinal_fit):
    with pytest.raises(hm.SpecificationError, match="count and binomial"):
        ordinal_fit.overdispersion()


# -- bad input -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make,match", [
    (lambda d: d.assign(rating=d["rating"].astype(str)), "without an order"),
    (lambda d: d.assign(rating=pd.Categorical(d["rating"].astype(str))), "unordered categorical"),
    (lambda d: d.assign(rating=d["rating"].cat.add_categories(["superb"])), "superb"),
    (lambda d: d.assign(rating=1), "single category"),
    (lambda d: d.assign(rating=d["rating"].cat.codes + 0.5), "whole numbers"),
])
def test_bad_ordinal_outcomes_are_refused_with_the_fix(make, match):
    with pytest.raises(hm.DataError, match=match):
        hm.Model("rating ~ x + (1 | g)", make(_ratings()), family="cumulative")


def test_whole_number_ratings_use_their_sorted_values():
    d = _ratings()
    d["stars"] = d["rating"].cat.codes.astype(int) + 1  # 1..4
    m = hm.Model("stars ~ x + (1 | g)", d, family="ordinal")
    assert m.design.response_levels == (1, 2, 3, 4)
    assert m.family.name == "cumulative"


# -- studies: simulation from an ordinal model ------------------------------------------------------------
def test_simulate_keeps_the_categories_and_checks_the_thresholds():
    m = hm.Model("rating ~ x + (1 | g)", _ratings(), family="cumulative")
    truth = {"Intercept[1]": -1.0, "Intercept[2]": 0.5, "Intercept[3]": 2.0, "x": 1.0, "sd(g, Intercept)": 0.5}
    d = hm.simulate(m, truth, seed=1)
    assert isinstance(d["rating"].dtype, pd.CategoricalDtype) and d["rating"].cat.ordered
    assert list(d["rating"].cat.categories) == ["poor", "fair", "good", "excellent"]
    again = hm.Model("rating ~ x + (1 | g)", d, family="cumulative")  # refits on the same scale
    assert again.design.response_levels == m.design.response_levels
    # the thresholds drive the category shares: a lower first threshold, fewer 'poor' ratings
    low = hm.simulate(m, {**truth, "Intercept[1]": -3.0}, seed=1)
    assert (low["rating"] == "poor").mean() < (d["rating"] == "poor").mean()
    with pytest.raises(hm.SpecificationError, match="must increase"):
        hm.simulate(m, {**truth, "Intercept[2]": -2.0}, seed=1)
    from_priors = hm.simulate(m, n=2, seed=3)
    assert all(set(x["rating"].cat.categories) == set(m.design.response_levels) for x in from_priors)


def test_report_names_the_ordinal_framework_and_categories(ordinal_fit):
    text = ordinal_fit.report()
    assert "cumulative-link (ordinal) mixed model" in text
    assert "ordered categories poor < fair < good < excellent (3 thresholds)" in text


def test_whole_number_ratings_with_gaps_are_refused_and_consecutive_ones_keep_their_scale():
    d = _ratings()
    codes = d["rating"].cat.codes.astype(int)
    with pytest.raises(hm.DataError, match="never occur"):
        hm.Model("stars ~ x + (1 | g)", d.assign(stars=codes.map({0: 1, 1: 2, 2: 3, 3: 5})), family="cumulative")
    m = hm.Model("stars ~ x + (1 | g)", d.assign(stars=codes), family="cumulative")  # ratings 0..3
    assert m.design.response_levels == (0, 1, 2, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hm.ConvergenceWarning)
        fit = m.fit(draws=200, tune=200, chains=2, seed=1, progressbar=False)
    new = d.head(5)
    probs = fit.predict(new, kind="probs").values
    mean = fit.predict(new, kind="mean").values
    np.testing.assert_allclose(mean, (probs * np.arange(0, 4)).sum(-1), rtol=1e-12)  # on the 0..3 scale
    assert set(np.unique(fit.predict(new, kind="response", seed=1).values)) <= {0, 1, 2, 3}


def test_kfold_names_a_fold_whose_training_rows_lack_a_category():
    d = _ratings(n_groups=10, per_group=6)
    d = d[d["rating"] != "excellent"].copy()
    d.loc[d.index[0], "rating"] = "excellent"  # one row of the top category: its fold cannot be refitted
    m = hm.Model("rating ~ x + (1 | g)", d, family="cumulative")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = m.fit(draws=100, tune=100, chains=2, seed=1, progressbar=False)
    with pytest.raises(hm.DataError, match="K-fold: the model cannot be refitted without"):
        fit.kfold(k=3, seed=1, draws=50, tune=50, chains=1)


def test_adding_a_constant_to_a_predictor_leaves_the_posterior_unchanged():
    """The thresholds' prior sits at the predictors' means (brms): x + 1000 must not drag the slope to 0.

    The engine's log density is the same function of its coordinates for x and x + 1000 (to rounding);
    the fitted slope agrees within Monte Carlo error and the reported thresholds move by 1000 * slope.
    """
    d = _ratings().assign(x_far=lambda t: t["x"] + 1000.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", hm.DataWarning)  # nothing to warn about at the default
        m_near = hm.Model("rating ~ x + (1 | g)", d, family="cumulative")
        m_far = hm.Model("rating ~ x_far + (1 | g)", d, family="cumulative")
    e_near, e_far = m_near.engine_model(None), m_far.engine_model(None)
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = rng.normal(0, 0.5, e_near.ndim)
        (lp1, g1), (lp2, g2) = e_near.logp_grad(x), e_far.logp_grad(x)
        assert lp2 == pytest.approx(lp1, rel=1e-10)
        np.testing.assert_allclose(g2, g1, rtol=1e-7, atol=1e-9)
    kw = dict(draws=500, tune=500, chains=2, seed=5, progressbar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hm.ConvergenceWarning)
        near, far = m_near.fit(**kw), m_far.fit(**kw)
    b_near = near.draws["b"].sel(term="x").values
    b_far = far.draws["b"].sel(term="x_far").values
    mcse = np.hypot(*(float(v.std()) / np.sqrt(250) for v in (b_near, b_far)))  # ESS >= 250 each, conservatively
    assert abs(b_far.mean() - b_near.mean()) < 4 * mcse
    centred_far = far.draws["cutpoints"].values - 1000.0 * b_far[..., None]
    np.testing.assert_allclose(centred_far.mean(axis=(0, 1)), near.draws["cutpoints"].values.mean(axis=(0, 1)),
                               atol=4 * float(centred_far.std()) / np.sqrt(250))
    # the slope is the simulated one (0.8), not pulled to 0 by the thresholds' prior
    assert abs(float(b_far.mean()) - 0.8) < 3 * float(b_far.std())


def test_pymc_graph_puts_the_thresholds_prior_at_the_predictors_means():
    """The PyMC graph's log density is the same for x and x + 1000 at corresponding points."""
    d = _ratings().assign(x_far=lambda t: t["x"] + 1000.0)
    near = hm.Model("rating ~ x + (1 | g)", d, family="cumulative").pymc_model
    far = hm.Model("rating ~ x_far + (1 | g)", d, family="cumulative").pymc_model
    assert "cutpoints_centered" in {v.name for v in far.free_RVs}
    assert "cutpoints" in {v.name for v in far.deterministics}
    point = near.initial_point()
    point = {k: v + 0.1 * np.arange(np.size(v)).reshape(np.shape(v)) for k, v in point.items()}  # not at 0
    assert set(point) == set(far.initial_point())
    lp_near = near.compile_logp(mode="FAST_COMPILE")(point)
    lp_far = far.compile_logp(mode="FAST_COMPILE")(point)
    assert lp_far == pytest.approx(lp_near, rel=1e-9)


def test_raw_thresholds_prior_far_from_zero_is_warned_about():
    d = _ratings().assign(x_far=lambda t: t["x"] + 1000.0)
    with pytest.warns(hm.DataWarning, match=r"intercept_prior='centered'.*center\(x_far\)"):
        hm.Model("rating ~ x_far + (1 | g)", d, family="cumulative", intercept_prior="raw")
    with warnings.catch_warnings():
        warnings.simplefilter("error", hm.DataWarning)
        hm.Model("rating ~ x + (1 | g)", d, family="cumulative", intercept_prior="raw")


def test_prior_draws_of_thresholds_follow_the_predictors():
    """Prior predictive and draw_from_priors put the thresholds' prior at the predictors' means too."""
    from hmodels.studies.params import draw_from_priors

    d = _ratings().assign(x_far=lambda t: t["x"] + 1000.0)
    m = hm.Model("rating ~ x_far + (1 | g)", d, family="cumulative")
    rng = np.random.default_rng(2)
    for _ in range(20):
        p = draw_from_priors(m.design, m.priors, rng)
        centred = p.aux["cutpoints"] - float(m.design.x_means @ p.beta)
        assert np.all(np.abs(centred) < 200) and np.all(np.diff(p.aux["cutpoints"]) > 0)
    pp = m.prior_predictive(draws=200, seed=3)
    cut = pp.data["prior"]["cutpoints"].values
    b = pp.data["prior"]["b"].values[..., 0]
    centred = cut - float(m.design.x_means[0]) * b[..., None]
    assert np.all(np.diff(cut, axis=-1) > 0)
    assert np.median(np.abs(centred)) < 10  # StudentT(3, 0, 2.5) at the means, not at x_far = 0


def test_marginal_means_and_conditional_plot_of_the_expected_category(ordinal_fit):
    """The expected category number at a grid point = predict(kind='mean') there.

    Both marginal_means and plot_conditional crashed before: the population design kept the intercept the
    thresholds replace, and the thresholds lost their axis.
    """
    x0 = 0.3
    mm = ordinal_fit.marginal_means(at={"x": [x0]}, groups="exclude")
    new = ordinal_fit.data.head(1).assign(x=x0)
    direct = np.asarray(ordinal_fit.predict(new, kind="mean", groups="exclude").draws).reshape(-1)
    assert mm.table["estimate"].iloc[0] == pytest.approx(direct.mean(), rel=1e-10)
    assert 1.0 < mm.table["estimate"].iloc[0] < 4.0
    fig = ordinal_fit.plot_conditional("x", data_points=False)
    assert len(fig.axes[0].lines) >= 1

"""The categorical (multinomial-logit) family and its stacked model (hmodels.categorical).

Independent references: statsmodels' ``MNLogit`` (its log-likelihood at given parameters, and its ML fit
of a model without groups: posterior means within 1 posterior SD at default priors with 900 rows), and
recovery of known parameters of a mixed model by simulation. The generated conformance suite
(tests/test_family_conformance.py) adds NumPy == PyMC log-likelihood, simulation moments and
fit -> predict -> ppc -> LOO -> save/load.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hmodels as hm
from hmodels.families.categorical import category_predictor_names, nominal_categories

LABELS = np.array(["bus", "car", "train"])


def _choices(seed=3, n_groups=30, per_group=20, sd=(0.7, 0.4)):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per_group)
    x = rng.normal(size=g.size)
    u = rng.normal(0, sd, (n_groups, 2))
    eta = np.stack([0.5 + 0.8 * x + u[g, 0], -0.3 - 0.5 * x + u[g, 1]], axis=1)
    y = hm.families.get_family("categorical").simulate(rng, eta, {})
    return pd.DataFrame({"choice": LABELS[y - 1], "x": x, "g": [f"s{i}" for i in g]})


@pytest.fixture(scope="module")
def mixed_fit():
    m = hm.Model("choice ~ x + (1 | g)", _choices(), family="categorical")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hm.ConvergenceWarning)
        return m.fit(draws=500, tune=500, chains=2, seed=1, progressbar=False)


def test_loglik_equals_statsmodels_mnlogit():
    from statsmodels.discrete.discrete_model import MNLogit

    d = _choices(seed=5)
    codes, _ = nominal_categories(d["choice"], "choice")
    X = np.column_stack([np.ones(len(d)), d["x"]])
    params = np.array([[0.4, -0.2], [0.7, -0.6]])  # (p, K - 1): statsmodels' layout
    theirs = MNLogit(codes - 1, X).loglike(params.ravel(order="F"))
    ours = hm.families.get_family("categorical").loglik(codes, X @ params, {}).sum()
    assert ours == pytest.approx(theirs, rel=1e-12)


def test_design_stacks_one_predictor_per_category_with_brms_names():
    m = hm.Model("choice ~ x + (x | g)", _choices(), family="categorical")
    d = m.design
    assert d.fixed_terms == ["mucar_Intercept", "mucar_x", "mutrain_Intercept", "mutrain_x"]
    f = d.factors[0]
    assert f.terms == ["mucar_Intercept", "mucar_x", "mutrain_Intercept", "mutrain_x"]
    # correlated within a category (as the formula says), independent across categories (brms's default)
    assert f.blocks == [[0, 1], [2, 3]] and f.correlated == [True, True]
    cors = {"cor(g, mucar_Intercept, mucar_x)", "cor(g, mutrain_Intercept, mutrain_x)"}
    assert {r.slot.param for r in m.priors} >= cors
    plan = m.plan()  # the compiled engine samples it (categorical_loglik on the categories' blocks of rows)
    assert plan.backend == "engine" and not plan.deviations, plan


def test_priors_apply_to_every_category_or_to_one():
    d = _choices()
    m = hm.Model("choice ~ x + (1 | g)", d, family="categorical",
                 priors={"x": hm.Normal(0, 1), "mutrain_x": hm.Normal(0, 0.5),
                         "sd(g, mucar_Intercept)": hm.HalfNormal(2)})
    assert m.priors["mucar_x"].prior == hm.Normal(0, 1)
    assert m.priors["mutrain_x"].prior == hm.Normal(0, 0.5)
    assert m.priors["sd(g, mucar_Intercept)"].prior == hm.HalfNormal(2)
    assert m.priors["sd(g, mutrain_Intercept)"].source != "user"
    # the default intercept prior sits at each category's log-odds against the reference
    n = d["choice"].value_counts()
    loc = m.priors["mutrain_Intercept"].prior.params["mu"]
    assert loc == pytest.approx(np.log(n["train"] / n["bus"]), abs=1e-3)
    with pytest.raises(hm.PriorError, match="mubike_x.*mucar, mutrain"):
        hm.Model("choice ~ x", d, family="categorical", priors={"mubike_x": hm.Normal(0, 1)})


def test_predictor_names_are_distinct():
    assert category_predictor_names(("a", "b-1", "b 1", "c")) == ["mub1", "mub1_2", "muc"]


@pytest.mark.parametrize("column,match", [
    (["a"] * 10, "single category"),
    (pd.Categorical(["a", "b"] * 5, categories=["a", "b", "c"]), "no row has: c"),
    ([0.5, 1, 2] * 3 + [1], "not whole"),
])
def test_bad_outcomes_are_refused_with_the_fix(column, match):
    d = pd.DataFrame({"y": column, "x": np.arange(10.0)})
    with pytest.raises(hm.DataError, match=match):
        hm.Model("y ~ x", d, family="categorical")


def test_an_offset_is_refused_not_dropped():
    d = _choices().assign(e=2.0)
    with pytest.raises(hm.SpecificationError, match=r"offset\(np.log\(e\)\) in a categorical model"):
        hm.Model("choice ~ x + offset(np.log(e))", d, family="categorical")


def test_posterior_matches_statsmodels_ml_fit_without_groups():
    from statsmodels.discrete.discrete_model import MNLogit

    rng = np.random.default_rng(11)
    x = rng.normal(size=900)
    eta = np.stack([0.3 + 0.9 * x, -0.5 + 0.4 * x], axis=1)
    y = hm.families.get_family("categorical").simulate(rng, eta, {})
    d = pd.DataFrame({"y": LABELS[y - 1], "x": x})
    ml = MNLogit(y - 1, np.column_stack([np.ones_like(x), x])).fit(disp=0).params  # (p, K - 1)
    fit = hm.Model("y ~ x", d, family="categorical").fit(draws=1000, tune=1000, chains=2, seed=2, progressbar=False)
    fe = fit.fixed_effects()
    ref = {"mucar_Intercept": ml[0, 0], "mucar_x": ml[1, 0], "mutrain_Intercept": ml[0, 1], "mutrain_x": ml[1, 1]}
    for term, value in ref.items():
        assert abs(fe.loc[term, "mean"] - value) < fe.loc[term, "sd"], (term, fe.loc[term, "mean"], value)


def test_mixed_model_recovers_the_simulated_parameters(mixed_fit):
    fe, vc = mixed_fit.fixed_effects(), mixed_fit.variance_components()
    truth = {"mucar_Intercept": 0.5, "mucar_x": 0.8, "mutrain_Intercept": -0.3, "mutrain_x": -0.5}
    for term, value in truth.items():
        assert abs(fe.loc[term, "mean"] - value) < 3 * fe.loc[term, "sd"], term
    for term, value in {"mucar_Intercept": 0.7, "mutrain_Intercept": 0.4}.items():
        row = vc[vc["term"] == term].iloc[0]
        assert abs(row["mean"] - value) < 3 * row["sd"], term
    assert mixed_fit.divergences == 0


def test_predictions_probabilities_links_and_refusals(mixed_fit, tmp_path):
    new = pd.DataFrame({"x": [0.0, 1.0], "g": ["s0", "someone new"]})
    probs = mixed_fit.predict(new, kind="probs", groups="new", seed=1).draws
    assert list(probs.coords["category"].values) == list(LABELS)
    np.testing.assert_allclose(probs.sum("category").values, 1.0, rtol=1e-12)
    link = mixed_fit.predict(new.iloc[:1], kind="link").draws  # log-odds against the reference
    p = mixed_fit.predict(new.iloc[:1], kind="probs").draws
    np.testing.assert_allclose(link.values, np.log(p.values[..., 1:] / p.values[..., :1]), rtol=1e-9)
    # population level at x = 0: the log-odds are the intercepts
    pop = mixed_fit.predict(new.iloc[:1], kind="link", groups="exclude").draws.values[..., 0, :]
    b = mixed_fit.draws["b"]
    np.testing.assert_allclose(pop[..., 0], b.sel(term="mucar_Intercept").values, rtol=1e-12)
    draws = mixed_fit.predict(new, kind="response", groups="new", seed=2).draws.values
    assert set(np.unique(draws)) <= {1.0, 2.0, 3.0}
    with pytest.raises(hm.SpecificationError, match="kind='probs'"):
        mixed_fit.predict(new, kind="mean")
    for call in (mixed_fit.icc, mixed_fit.residuals, mixed_fit.overdispersion):
        with pytest.raises((hm.FamilyError, hm.SpecificationError), match="categor"):
            call()
    path = tmp_path / "categorical.nc"
    mixed_fit.save(path)
    back = hm.load(path)
    np.testing.assert_array_equal(back.predict(new.iloc[:1], kind="probs").draws.values,
                                  mixed_fit.predict(new.iloc[:1], kind="probs").draws.values)


def test_checks_report_and_loo(mixed_fit):
    ppc = mixed_fit.ppc(seed=1)
    assert 0.05 < ppc.table["p_value"].min() <= 1.0
    assert np.isfinite(float(mixed_fit.loo().elpd))
    text = mixed_fit.report()
    assert "unordered categories bus, car, train (bus the reference" in text
    with pytest.raises(hm.SpecificationError, match="categorical model"):
        hm.simulate(mixed_fit.model, seed=1)


def test_prior_predictive_summarises_category_shares():
    d = _choices()
    pp = hm.Model("choice ~ x + (1 | g)", d, family="categorical").prior_predictive(draws=200, seed=1)
    table = pp.summary.set_index("quantity")
    shares = table.loc[[f"share(choice = {k})" for k in LABELS]]
    np.testing.assert_allclose(shares["observed"].sum(), 1.0)
    assert (shares["prior_low"] <= shares["observed"]).all() and (shares["observed"] <= shares["prior_high"]).all()
    assert not any(q.startswith(("mean(", "sd(choice", "R2", "ICC")) for q in table.index)


# -- the compiled engine (kernels.c: categorical_loglik on the categories' blocks of rows) ----------------
@pytest.mark.parametrize("formula,centered,intercept_prior", [
    ("choice ~ x + (x | g)", False, "centered"),
    ("choice ~ x + (x | g)", True, "centered"),
    ("choice ~ x + (1 | g)", True, "raw"),
    ("choice ~ 0 + x + (1 | g)", False, "centered"),
])
def test_engine_log_density_equals_the_pymc_graph_and_finite_differences(formula, centered, intercept_prior):
    from test_engine import assert_engine_matches_pymc

    from hmodels.engine.layout import EngineModel

    m = hm.Model(formula, _choices(n_groups=8, per_group=6), family="categorical", centered=centered,
                 intercept_prior=intercept_prior)
    em = EngineModel(m.design, m.priors, m.centering(None))
    assert em.npred == 2 and m.plan().backend == "engine"
    assert_engine_matches_pymc(m, em, None, formula, gradient=True, seed=4)


def test_engine_rows_are_the_stacked_predictors():
    """Block j of the engine's rows is category j + 2's linear predictor of the stacked design."""
    from hmodels.categorical import engine_rows

    m = hm.Model("choice ~ x + (x | g)", _choices(n_groups=5, per_group=4), family="categorical")
    rows, T = engine_rows(m.design, m.priors)
    rng = np.random.default_rng(2)
    bc = rng.normal(size=len(m.design.fixed_terms))
    r = rng.normal(size=(5, 4))
    f, fr = m.design.factors[0], rows.factors[0]
    eta_rows = rows.X @ bc + (fr.Z * r[fr.codes]).sum(axis=1)
    b = T @ bc  # the reported (raw) coefficients
    n = m.design.n
    for j, pred in enumerate(m.design.predictors):
        cols, idx = list(pred.columns), list(pred.terms["g"])
        eta = m.design.X[:, cols] @ b[cols] + (f.Z[:, idx] * r[f.codes][:, idx]).sum(axis=1)
        np.testing.assert_allclose(eta_rows[j * n:(j + 1) * n], eta, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(rows.y[:n], m.design.y)


def test_no_thresholds_are_shifted_for_a_categorical_outcome():
    """The ordinal thresholds' centring (threshold_shift_means) must not touch a categorical model's design."""
    from hmodels.engine.layout import EngineModel
    from hmodels.families.ordinal import threshold_shift_means

    m = hm.Model("choice ~ x + (1 | g)", _choices(n_groups=5, per_group=4), family="categorical")
    assert threshold_shift_means(m.design) is None
    assert EngineModel(m.design, m.priors, m.centering(None)).threshold_means is None


def test_centring_rule_reads_each_categorys_information():
    """centered="auto": centred when every category's effects are well informed, else non-centred."""
    many = hm.Model("choice ~ x + (1 | g)", _choices(n_groups=10, per_group=200, sd=(0.8, 0.8)), family="categorical")
    few = hm.Model("choice ~ x + (1 | g)", _choices(n_groups=60, per_group=2), family="categorical")
    assert many.centering(None) == {"g": True} and few.centering(None) == {"g": False}
    # every backend samples the model the plan says (the PyMC graph centred too)
    m = hm.Model("choice ~ x + (1 | g)", _choices(n_groups=6, per_group=10), family="categorical", centered=True)
    assert dict(m.plan().centered) == {"g": True}
    assert not [d for d in m.plan(sampler="pymc").deviations if "centr" in d]
    free = {v.name for v in m.built_graph(None).model.free_RVs}
    assert {"r_g_0", "r_g_1"} <= free and not any(v.startswith("z_g") for v in free)


def test_engine_posterior_equals_the_pymc_graph_within_mcse(mixed_fit):
    m = hm.Model("choice ~ x + (1 | g)", _choices(), family="categorical")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hm.ConvergenceWarning)
        graph = m.fit(draws=500, tune=500, chains=2, seed=2, progressbar=False, sampler="pymc")
    assert mixed_fit.meta["plan"]["backend"] == "engine" and graph.meta["plan"]["backend"] != "engine"
    a, b = mixed_fit.fixed_effects(), graph.fixed_effects()
    z = (a["mean"] - b["mean"]) / np.hypot(a["mcse_mean"], b["mcse_mean"])
    assert (z.abs() < 4).all(), z
    va, vb = mixed_fit.variance_components(), graph.variance_components()
    zs = (va["mean"] - vb["mean"]) / np.hypot(va["mcse_mean"], vb["mcse_mean"])
    assert (zs.abs() < 4).all(), zs


def test_prior_table_says_where_every_intercept_prior_sits():
    m = hm.Model("choice ~ x + (1 | g)", _choices(n_groups=5, per_group=4), family="categorical")
    assert "Intercept priors are on the intercept at the predictors' means" in repr(m.priors)
    raw = hm.Model("choice ~ x", _choices(n_groups=5, per_group=4), family="categorical", intercept_prior="raw")
    assert "Intercept priors are on the raw intercept" in repr(raw.priors)

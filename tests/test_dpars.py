"""Distributional parameters with their own formulas (hmodels.dpars; brms's ``sigma ~ x``, glmmTMB's ziformula)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import hmodels as hm
from hmodels.errors import FamilyError, FormulaError, PriorError, SpecificationError

REF = Path(__file__).parent / "reference"
TRUTH = {"Intercept": 1.0, "x": 0.5, "sigma_Intercept": -0.5, "sigma_x": 0.6, "sd_g": 0.5}


def _hetero_data(seed: int = 1, n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 10, n)
    x = rng.normal(size=n)
    u = rng.normal(0, TRUTH["sd_g"], 10)
    sigma = np.exp(TRUTH["sigma_Intercept"] + TRUTH["sigma_x"] * x)
    y = TRUTH["Intercept"] + TRUTH["x"] * x + u[g] + sigma * rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{k}" for k in g]})


@pytest.fixture(scope="module")
def hetero():
    model = hm.Model("y ~ x + (1 | g)", _hetero_data(), dpars={"sigma": "x"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = model.fit(draws=500, tune=500, chains=2, seed=11, progressbar=False)
    return model, fit


def test_spec_names_priors_and_plan():
    model = hm.Model("y ~ x + (1 | g)", _hetero_data(), dpars={"sigma": "sigma ~ x + (1 | g)"})
    assert model.spec.dpars == (("sigma", "x + (1 | g)"),)
    params = [r.slot.param for r in model.priors]
    assert params == ["Intercept", "x", "sd(g, Intercept)", "sigma_Intercept", "sigma_x", "sd(g, sigma_Intercept)"]
    assert "sigma" not in params  # the scalar sigma is replaced by its linear predictor
    sy = float(np.std(model.design.y, ddof=1))
    assert model.priors["sigma_Intercept"].prior.params["mu"] == pytest.approx(np.log(sy))
    assert model.priors["sigma_Intercept"].rationale  # from the prior set, with its rationale
    sx = float(np.std(model.design.dpars["sigma"].X[:, 1]))
    assert model.priors["sigma_x"].prior.params["sigma"] == pytest.approx(2.5 / sx)
    user = hm.Model("y ~ x + (1 | g)", _hetero_data(), dpars={"sigma": "x"}, priors={"sigma_x": hm.Normal(0, 1)})
    assert user.priors["sigma_x"].source == "user"
    plan = model.plan()
    assert plan.backend == "engine" and plan.method == "joint" and plan.collapsed_factor is None
    assert not plan.deviations  # the engine samples the location's and sigma's blocks of rows (dpar_loglik)
    back = hm.ModelSpec.from_dict(json.loads(json.dumps(model.spec.to_dict())))
    assert back == model.spec and "dpars={'sigma': 'x + (1 | g)'}" in str(back)


def test_recovery(hetero):
    _, fit = hetero
    fe = fit.fixed_effects()
    assert {"sigma_Intercept", "sigma_x"} <= set(fe.index)
    for term in ("Intercept", "x", "sigma_Intercept", "sigma_x"):
        mean, sd = fe.loc[term, "mean"], fe.loc[term, "sd"]
        assert abs(mean - TRUTH[term]) < 3 * sd, (term, mean, sd)
    assert fe.loc["sigma_x", "sd"] < 0.1  # informative: sigma's slope is identified, not the prior


def test_numpy_loglik_matches_pymc_graph(hetero):
    model, fit = hetero
    pm_model = model.pymc_model
    rng = np.random.default_rng(3)
    point = {k: v + rng.normal(0, 0.3, np.shape(v)) for k, v in pm_model.initial_point().items()}
    values = pm_model.compile_fn(pm_model.unobserved_value_vars, inputs=pm_model.value_vars,
                                 on_unused_input="ignore", point_fn=False)(**point)
    named = dict(zip([v.name for v in pm_model.unobserved_value_vars], values))
    draws = xr.Dataset({k: (("chain", "draw", *fit.draws[k].dims[2:]), np.asarray(named[k])[None, None])
                        for k in ("b", "r_g", "b_sigma")})
    view = SimpleNamespace(family=fit.family, draws=draws, design=model.design)
    from hmodels.linpred import linear_predictor, pointwise_loglik

    ll_np = pointwise_loglik(view, linear_predictor(view, model.design), model.design)[0, 0]
    obs = pm_model.observed_RVs[0]
    ll_pm = pm_model.compile_logp(vars=[obs], sum=False, jacobian=False)(point)[0]
    np.testing.assert_allclose(ll_np, ll_pm, rtol=1e-9, atol=1e-9)


def _family_data(fam, seed=0, n=60):
    rng = np.random.default_rng(seed)
    x, g = rng.normal(size=n), np.repeat([f"g{i}" for i in range(6)], n // 6)
    trials = rng.integers(5, 12, n) if fam.outcome == "binomial" else None
    mu = fam.mean(0.3 + 0.4 * x + fam.example_eta)
    aux = {b: fam.aux_spec(b).example for b in fam.aux}
    if "sigma" in aux and fam.link == "log":
        aux["sigma"] = 0.05 * float(np.mean(mu))
    data = pd.DataFrame({"y": fam.simulate(rng, mu, aux, trials=trials), "x": x, "g": g})
    if trials is not None:
        data["n"] = trials
    return data, "y" if trials is None else "p(y, n)"


def _family_pairs():
    from hmodels.families import FAMILIES, get_family

    fast = {("gaussian", "sigma"), ("student_t", "nu"), ("beta", "phi"), ("zero_inflated_negativebinomial", "zi"),
            ("hurdle_gamma", "hu"), ("zero_one_inflated_beta", "coi")}
    for name in FAMILIES:
        fam = get_family(name)
        for a in fam.aux:
            if fam.aux_spec(a).support in ("positive", "unit"):
                yield pytest.param(name, a, marks=() if (name, a) in fast else pytest.mark.slow, id=f"{name}-{a}")


@pytest.mark.parametrize("family, param", list(_family_pairs()))
def test_every_family_parameter_loglik_matches_pymc(family, param):
    """Each family parameter with a formula (x): the NumPy pointwise log-likelihood equals the PyMC graph's."""
    from hmodels.families import get_family
    from hmodels.linpred import linear_predictor, pointwise_loglik

    fam = get_family(family)
    data, lhs = _family_data(fam)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = hm.Model(f"{lhs} ~ x + (1 | g)", data, family=family, dpars={param: "x"}, centered=False)
    pmm = model.pymc_model
    point = {k: v + np.random.default_rng(3).normal(0, 0.2, np.shape(v)) for k, v in pmm.initial_point().items()}
    values = pmm.compile_fn(pmm.unobserved_value_vars, inputs=pmm.value_vars, on_unused_input="ignore",
                            point_fn=False)(**point)
    named = dict(zip([v.name for v in pmm.unobserved_value_vars], values))
    keep = ["b", "r_g", f"b_{param}", *[a for a in fam.aux if a in named and a != param]]
    dims = {"b": ("term",), "r_g": ("g", "g__term"), f"b_{param}": ("b_term",)}
    draws = xr.Dataset({k: (("chain", "draw", *dims.get(k, tuple(f"{k}_{i}" for i in range(np.ndim(named[k]))))),
                            np.asarray(named[k])[None, None]) for k in keep})
    view = SimpleNamespace(family=model.family, draws=draws, design=model.design)
    ll_np = pointwise_loglik(view, linear_predictor(view, model.design), model.design)[0, 0]
    ll_pm = pmm.compile_logp(vars=pmm.observed_RVs, sum=False, jacobian=False)(point)[0]
    np.testing.assert_allclose(ll_np, ll_pm, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("family, param", [pytest.param(*p.values, id=p.id) for p in _family_pairs()])  # all fast
def test_every_family_parameter_on_the_engine_matches_the_pymc_graph(family, param):
    """Each family parameter with a formula and group effects, on the engine (dpar_loglik in kernels.c).

    Log density = the PyMC graph's; gradient = finite differences.
    """
    from test_engine import assert_engine_matches_pymc

    from hmodels.families import get_family

    fam = get_family(family)
    data, lhs = _family_data(fam)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = hm.Model(f"{lhs} ~ x + (1 | g)", data, family=family, dpars={param: "x + (1 | g)"})
    plan = model.plan()
    assert plan.backend == "engine" and not plan.deviations, plan
    assert_engine_matches_pymc(model, model.engine_model(None), None, f"{family}-{param}", gradient=True, seed=2)


def test_engine_posterior_equals_the_pymc_graph_within_mcse(hetero):
    model, fit = hetero
    assert fit.meta["plan"]["backend"] == "engine"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hm.ConvergenceWarning)
        graph = model.fit(draws=500, tune=500, chains=2, seed=2, progressbar=False, sampler="numpyro")
    a = pd.concat([fit.fixed_effects(), fit.variance_components()])
    b = pd.concat([graph.fixed_effects(), graph.variance_components()])
    z = (a["mean"] - b["mean"]) / np.hypot(a["mcse_mean"], b["mcse_mean"])
    assert (z.abs() < 4).all(), z


def test_loo_and_per_row_predictions(hetero):
    _, fit = hetero
    loo = fit.loo()
    assert np.isfinite(float(loo.elpd))
    new = pd.DataFrame({"x": [-2.0, 2.0], "g": ["g0", "g0"]})
    y = fit.predict(new, kind="response", seed=5).values  # (chain, draw, 2)
    b = fit.draws["b_sigma"].values.reshape(-1, 2)
    ratio = float(np.mean(np.exp(4 * b[:, 1])))  # sigma(x = 2) / sigma(x = -2)
    observed = y[..., 1].std() / y[..., 0].std()
    assert observed == pytest.approx(ratio, rel=0.15)  # a scalar sigma would give about 1, not ~11
    again = fit.predict(new, kind="response", seed=5).values
    np.testing.assert_array_equal(y, again)
    with pytest.raises(SpecificationError, match="sigma has its own formula"):  # no single residual variance
        fit.icc()
    from hmodels.components import bayes_r2

    assert 0 < float(bayes_r2(fit)["mean"].iloc[0]) < 1
    assert fit.residuals()["pearson"].notna().all()


def test_save_load_round_trip(hetero, tmp_path):
    _, fit = hetero
    path = tmp_path / "dpars.nc"
    fit.save(path)
    back = hm.load(path)
    assert back.spec == fit.spec
    pd.testing.assert_frame_equal(back.fixed_effects(), fit.fixed_effects())
    new = pd.DataFrame({"x": [0.0, 1.0], "g": ["g1", "g2"]})
    np.testing.assert_allclose(back.predict(new, kind="response", seed=2).values,
                               fit.predict(new, kind="response", seed=2).values)


def test_group_terms_of_a_dpar():
    """sigma ~ x + (1 | g): per-group residual SDs, recovered; summaries name them as brms."""
    rng = np.random.default_rng(2)
    n, k = 600, 15
    g, x = rng.integers(0, k, n), rng.normal(size=n)
    u, v = rng.normal(0, 0.5, k), rng.normal(0, 0.4, k)
    y = 1 + 0.5 * x + u[g] + np.exp(-0.5 + 0.3 * x + v[g]) * rng.normal(size=n)
    data = pd.DataFrame({"y": y, "x": x, "g": [f"l{j}" for j in g]})
    model = hm.Model("y ~ x + (1 | g)", data, dpars={"sigma": "x + (1 | g)"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = model.fit(draws=400, tune=400, chains=2, seed=1, progressbar=False)
    vc = fit.variance_components()
    row = vc.loc["sd(g, sigma_Intercept)"]
    assert row["group"] == "g" and abs(row["mean"] - np.std(v)) < 3 * row["sd"]
    fe = fit.fixed_effects()
    assert abs(fe.loc["sigma_x", "mean"] - 0.3) < 3 * fe.loc["sigma_x", "sd"]
    r = fit.draws["r_g__sigma"].mean(("chain", "draw")).values[:, 0]
    assert np.corrcoef(r, v[[int(lv[1:]) for lv in fit.draws["r_g__sigma"].coords["g__sigma"].values]])[0, 1] > 0.7


def test_intercept_only_dpar_is_the_plain_model():
    """sigma ~ 1 with log(sigma) ~ Normal(m, s) is the plain model with sigma ~ LogNormal(m, s): same log density."""
    data = _hetero_data(n=120)
    plain = hm.Model("y ~ x + (1 | g)", data, priors={"sigma": hm.LogNormal(0.2, 0.7)}, centered=False)
    dpar = hm.Model("y ~ x + (1 | g)", data, dpars={"sigma": "1"},
                    priors={"sigma_Intercept": hm.Normal(0.2, 0.7)}, centered=False)
    a, b = plain.pymc_model, dpar.pymc_model
    rng = np.random.default_rng(7)
    pa = {k: v + rng.normal(0, 0.4, np.shape(v)) for k, v in a.initial_point().items()}
    pb = {k: v for k, v in pa.items() if k != "sigma_log__"}
    pb["b_sigma_scale__"] = np.atleast_1d(pa["sigma_log__"])  # log(sigma), the one coefficient of sigma ~ 1
    assert set(pb) == set(b.initial_point()), (set(pb), set(b.initial_point()))
    assert float(a.compile_logp()(pa)) == pytest.approx(float(b.compile_logp()(pb)), rel=1e-10)


def test_bad_input():
    data = _hetero_data(n=60)
    with pytest.raises(FamilyError, match="Its parameters are: sigma"):
        hm.Model("y ~ x", data, dpars={"phi": "x"})
    with pytest.raises(FamilyError, match="alpha"):
        hm.Model("y ~ x", data.assign(y=np.round(np.abs(data.y) * 3)), family="poisson", dpars={"alpha": "x"})
    with pytest.raises(FormulaError, match="sigma"):
        hm.Model("y ~ x", data, dpars={"sigma": "x + (1 |"})
    with pytest.raises(FormulaError, match="empty"):
        hm.Model("y ~ x", data, dpars={"sigma": "  "})
    with pytest.raises(FormulaError, match="offset"):
        hm.Model("y ~ x", data, dpars={"sigma": "x + offset(x)"})
    with pytest.raises(SpecificationError, match="dict"):
        hm.Model("y ~ x", data, dpars=["sigma"])
    with pytest.raises(PriorError, match="sigma_Intercept"):  # the scalar sigma is gone: its key names the new ones
        hm.Model("y ~ x", data, dpars={"sigma": "x"}, priors={"sigma": hm.HalfNormal(1)})
    with pytest.raises(hm.errors.MissingColumnError, match="z"):
        hm.Model("y ~ x", data, dpars={"sigma": "z"})
    with pytest.raises(SpecificationError, match="standard errors"):
        hm.Model("y | se(s) ~ x", data.assign(s=1.0), dpars={"sigma": "x"})
    with pytest.raises(SpecificationError, match="nonlinear"):
        hm.Model("y ~ a * exp(b * x)", data, nonlinear={"a": "1", "b": "1"}, dpars={"sigma": "x"})
    ordinal = pd.DataFrame({"r": pd.Categorical(np.tile(["a", "b", "c"], 20), ordered=True), "x": np.arange(60.0)})
    with pytest.raises(FamilyError, match="cutpoints"):
        hm.Model("r ~ x", ordinal, family="ordinal", dpars={"cutpoints": "x"})


def test_zero_inflation_formula_matches_glmmtmb():
    """Salamanders, count ~ mined + (1 | site), ziformula = ~ mined, nbinom2 (tests/reference/glmmtmb_dpars.R)."""
    ref = json.loads((REF / "glmmtmb_dpars.json").read_text())
    data = pd.read_csv(REF / "glmmtmb_dpars.csv")
    data["mined"] = pd.Categorical(data["mined"], categories=["yes", "no"])  # R's level order: reference "yes"
    model = hm.Model("count ~ mined + (1 | site)", data, family="zero_inflated_negativebinomial",
                     dpars={"zi": "mined"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = model.fit(seed=3, progressbar=False)  # the defaults (a divergent round restarts at a higher target)
    fe = fit.fixed_effects()
    assert fit.divergences == 0 and fe["r_hat"].max() <= 1.01, fe["r_hat"]
    pairs = {"Intercept": ref["cond"]["(Intercept)"], "mined[no]": ref["cond"]["minedno"],
             "zi_Intercept": ref["zi"]["(Intercept)"], "zi_mined[no]": ref["zi"]["minedno"]}
    for term, ml in pairs.items():
        assert abs(fe.loc[term, "mean"] - ml) < fe.loc[term, "sd"], (term, fe.loc[term, "mean"], ml)
    vc = fit.variance_components()
    for label, ml in (("alpha", ref["alpha"]), ("sd(site, Intercept)", ref["sd_site"])):
        assert abs(vc.loc[label, "mean"] - ml) < vc.loc[label, "sd"], (label, vc.loc[label, "mean"], ml)


def test_new_levels_of_a_dpar_factor():
    """A factor only sigma's formula uses: unseen levels are refused by groups='include', as the mean's are."""
    rng = np.random.default_rng(2)
    n = 200
    h, x = rng.integers(0, 8, n), rng.normal(size=n)
    y = 1 + 0.5 * x + np.exp(-0.5 + rng.normal(0, 0.6, 8)[h]) * rng.normal(size=n)
    data = pd.DataFrame({"y": y, "x": x, "h": [f"h{k}" for k in h]})
    model = hm.Model("y ~ x", data, dpars={"sigma": "1 + (1 | h)"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = model.fit(draws=150, tune=150, chains=1, seed=4, progressbar=False)
    new = pd.DataFrame({"x": [0.0, 0.0], "h": ["h1", "h_new"]})
    with pytest.raises(hm.errors.DataError, match="h_new"):
        fit.predict(new, kind="response")
    pred = fit.predict(new, kind="mean", groups="exclude")
    assert pred.values.shape == (1, 150, 2)
    link = fit.predict(new, kind="response", groups="new", seed=1)
    assert link.new_levels == {"h": ["h_new"]}


def test_interpretation_of_a_model_with_a_sigma_formula():
    """Marginal means and slopes of the mean (sigma does not enter a gaussian's mean); hypotheses on dpar terms."""
    d = hm.datasets.load("sleepstudy")
    m = hm.Model("Reaction ~ Days + (1 | Subject)", d, dpars={"sigma": "Days"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = m.fit(draws=200, tune=200, chains=2, seed=1, progressbar=False)
    mm = fit.marginal_means(by="Days", at={"Days": [0, 9]})
    b = fit.fixed_effects()["mean"]
    assert mm.table["estimate"].iloc[1] - mm.table["estimate"].iloc[0] == pytest.approx(9 * b["Days"], rel=0.05)
    assert fit.slopes("Days").table["estimate"].iloc[0] == pytest.approx(b["Days"], rel=0.05)
    hyp = fit.hypothesis("sigma_Days > 0")
    assert 0 <= float(hyp["prob"].iloc[0]) <= 1
    lognormal = hm.Model("Reaction ~ Days + (1 | Subject)", d, family="lognormal", dpars={"sigma": "Days"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lfit = lognormal.fit(draws=100, tune=100, chains=2, seed=1, progressbar=False)
    with pytest.raises(SpecificationError, match="own formula"):  # exp(mu + sigma^2/2) differs by row
        lfit.marginal_means(by="Days", at={"Days": [0, 9]})


def test_predict_with_only_fitted_levels_of_a_dpar_factor():
    """A factor only the dpar uses, every newdata level fitted: predict works (it raised KeyError: 'h')."""
    rng = np.random.default_rng(3)
    n = 120
    h, x = rng.integers(0, 6, n), rng.normal(size=n)
    data = pd.DataFrame({"y": 1 + 0.5 * x + np.exp(rng.normal(0, 0.5, 6)[h]) * rng.normal(size=n), "x": x,
                         "h": [f"h{k}" for k in h]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = hm.Model("y ~ x", data, dpars={"sigma": "1 + (1 | h)"}).fit(draws=100, tune=100, chains=1, seed=2,
                                                                            progressbar=False)
    new = pd.DataFrame({"x": [0.0, 1.0], "h": ["h1", "h2"]})
    pred = fit.predict(new, kind="response", seed=1)
    assert pred.values.shape == (1, 100, 2) and pred.new_levels == {}


def test_update_with_a_new_formula_keeps_the_dpars():
    """update(formula=...) rebuilt the model without sigma's formula: sigma silently became one scalar."""
    data = _hetero_data(n=120).assign(z=np.linspace(-1.0, 1.0, 120))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = hm.Model("y ~ x + (1 | g)", data, dpars={"sigma": "x"}).fit(draws=50, tune=50, chains=1, seed=1,
                                                                            progressbar=False)
        new = fit.update(formula="y ~ x + z + (1 | g)", data=data, draws=50, tune=50, progressbar=False)
    assert new.spec.dpars == (("sigma", "x"),)
    assert list(new.fixed_effects().index) == ["Intercept", "x", "z", "sigma_Intercept", "sigma_x"]


def test_an_offset_on_the_mean_beside_a_family_parameter_formula():
    """The offset enters the location's block only (found by the sweep: the engine's initial point failed)."""
    from test_engine import assert_engine_matches_pymc

    rng = np.random.default_rng(4)
    d = _hetero_data(n=120).assign(t=rng.normal(size=120))
    m = hm.Model("y ~ x + offset(t) + (1 | g)", d, dpars={"sigma": "x"})
    assert m.plan().backend == "engine"
    assert_engine_matches_pymc(m, m.engine_model(None), None, "offset", gradient=True, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = m.fit(draws=200, tune=200, chains=2, seed=1, progressbar=False)
    assert np.isfinite(fit.fixed_effects()["mean"]).all()


def test_groups_new_draws_fresh_effects_for_a_dpar_factor():
    """predict(groups="new"): a new level of sigma's factor gets sigma = exp(b + u), u ~ N(0, sd) per posterior draw.

    It got u = 0 (the population value, understating the spread); fitted levels keep their own effects.
    """
    from hmodels.dpars import dpar_values
    from hmodels.predict import new_design

    rng = np.random.default_rng(2)
    n = 240
    h, x = rng.integers(0, 8, n), rng.normal(size=n)
    y = 1 + 0.5 * x + np.exp(-0.5 + rng.normal(0, 0.6, 8)[h]) * rng.normal(size=n)
    data = pd.DataFrame({"y": y, "x": x, "h": [f"h{k}" for k in h]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = hm.Model("y ~ x", data, dpars={"sigma": "1 + (1 | h)"}).fit(draws=500, tune=300, chains=2, seed=4,
                                                                            progressbar=False)
    new = pd.DataFrame({"x": [0.0] * 3, "h": ["h1", "h_new", "h_other"]})
    design, unseen = new_design(fit, new)
    assert unseen == {"h": ["h_new", "h_other"]}
    assert list(design.dpars["sigma"].factors[0].codes) == [1, 8, 9]  # fitted levels, then the unseen ones in order
    fresh = hm.predict.new_level_effects(fit, design, unseen, seed=3, factors=design.dpars["sigma"].factors,
                                         meta={"h__sigma": {"cors": []}}, origin={"h__sigma": "h"})
    sig = dpar_values(fit.draws, design.dpars["sigma"], "include", fresh)  # (chain, draw, 3)
    b0 = fit.draws["b_sigma"].isel(b_sigma__term=0).values
    sd = fit.draws["sd_h__sigma"].values[..., 0]
    r1 = fit.draws["r_h__sigma"].values[..., 1, 0]
    np.testing.assert_allclose(np.log(sig[..., 0]), b0 + r1, rtol=1e-12)  # a fitted level: its own effect
    u = np.log(sig[..., 1]) - b0  # a new level: a fresh N(0, sd) per draw
    z = u / sd
    assert abs(z.mean()) < 4 / np.sqrt(z.size) * 1.5 and abs(z.std() - 1) < 0.1, (z.mean(), z.std())
    assert not np.allclose(sig[..., 1], sig[..., 2])  # two new levels: their own draws
    # through predict: the spread of a new level's outcomes is wider than the population's
    wide = fit.predict(new, kind="response", groups="new", seed=1).values[..., 1].std()
    narrow = fit.predict(new, kind="response", groups="exclude", seed=1).values[..., 1].std()
    assert wide > narrow


def test_kfold_scores_a_held_out_level_of_a_parameters_factor_with_fresh_effects():
    """K-fold, held-out group new to sigma's factor: its sigma gets u ~ N(0, sd) per draw (it got 0, too sure)."""
    from hmodels.comparison import _fold_loglik
    from hmodels.linpred import linear_predictor, pointwise_loglik
    from hmodels.predict import new_design

    rng = np.random.default_rng(4)
    n, h = 320, rng.integers(0, 8, 320)
    x = rng.normal(size=n)
    y = 1 + 0.5 * x + np.exp(-0.3 + rng.normal(0, 0.6, 8)[h]) * rng.normal(size=n)
    data = pd.DataFrame({"y": y, "x": x, "h": [f"h{k}" for k in h]})
    model = hm.Model("y ~ x", data, dpars={"sigma": "1 + (1 | h)"})
    test_idx = np.flatnonzero(h == 3)
    kwargs = {"draws": 300, "tune": 300, "chains": 2, "progressbar": False}
    priors = {r.slot.param: r.prior for r in model.priors}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ll = _fold_loglik(model.spec.to_dict(), data, priors, {}, test_idx, kwargs, 5)
        again = _fold_loglik(model.spec.to_dict(), data, priors, {}, test_idx, kwargs, 5)
        refit = hm.Model("y ~ x", data.drop(index=test_idx).reset_index(drop=True), priors=priors,
                         dpars={"sigma": "1 + (1 | h)"}).fit(seed=5, **kwargs)
    np.testing.assert_array_equal(ll, again)  # reproducible
    design, unseen = new_design(refit, data.iloc[test_idx].reset_index(drop=True))
    assert unseen == {"h": ["h3"]}
    population = pointwise_loglik(refit, linear_predictor(refit, design), design)  # sigma's effect 0
    assert ll.shape == population.shape
    # fresh effects: each draw's sigma moves by its own u, so the held-out log-likelihood spreads more over draws
    assert (ll.std(axis=(0, 1)) > 1.5 * population.std(axis=(0, 1))).all()


def _unit_pairs():
    from hmodels.families import FAMILIES, get_family

    return [(name, a) for name in FAMILIES for a in get_family(name).aux
            if get_family(name).aux_spec(a).support == "unit"]


@pytest.mark.parametrize("family, param", _unit_pairs())
def test_a_probability_with_a_formula_is_exact_far_in_its_tail_on_the_engine(family, param):
    """zi / hu / zoi / coi by their logit in the kernels: log(1 - p) stays exact where p rounds to 1.

    Along the line that moves the probability's intercept, the log density is a quadratic in it (the rows
    against it contribute -t, the others ~0, the prior on a coefficient is normal) once p > 1 - 1e-13: a
    quadratic through t = 30, 31, 32 predicts t = 45 and 60 (sigmoid(t) is exactly 1.0 in doubles past
    t ~ 37, where log(1 - p) was -inf before), and the gradient there equals finite differences.
    """
    from test_engine import _finite_diff

    from hmodels.families import get_family

    data, lhs = _family_data(get_family(family))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = hm.Model(f"{lhs} ~ x + (1 | g)", data, family=family, dpars={param: "1 + x"})
    em = model.engine_model(None)
    x0 = em.initial_point(np.random.default_rng(0), jitter=0.3)
    key = f"b_{param}"
    base = em.constrained(x0[None])[key][0]
    moves = [em.constrained((x0 + np.eye(em.ndim)[j])[None])[key][0] - base for j in range(em.ndim)]
    j = next(j for j, d in enumerate(moves) if abs(d[0]) > 1e-9 and abs(d[1]) < 1e-12)  # the intercept alone
    slope = base[1] * (data["x"].abs().max())

    def at(t):  # the point whose probability intercept is t (the x coefficient as it was)
        x = x0.copy()
        x[j] += (t - base[0]) / moves[j][0]
        return x

    ts = np.array([30.0, 31.0, 32.0]) + abs(slope)
    quad = np.polyfit(ts, [em.logp_grad(at(t))[0] for t in ts], 2)
    for t in (45.0 + abs(slope), 60.0 + abs(slope)):
        lp, grad = em.logp_grad(at(t))
        assert np.isfinite(lp) and np.isfinite(grad).all(), (family, param, t, lp)
        assert lp == pytest.approx(np.polyval(quad, t), rel=1e-9, abs=1e-6), (family, param, t)
    fd = _finite_diff(em, at(60.0 + abs(slope)))
    grad = em.logp_grad(at(60.0 + abs(slope)))[1]
    assert (np.abs(fd - grad) / (1.0 + np.abs(fd))).max() < 1e-5

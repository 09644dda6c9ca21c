"""Nonlinear mixed models, the model side: stacked design, priors, plan, PyMC graph, fit and downstream.

The pure layer (expression parsing, self-starts, nls) is tested in tests/test_nonlinear_expression.py.
References: nlme ML fits by tests/reference/nlme_orange_theoph.R (Theoph with pdDiag(lKa + lCl),
Orange with random Asym).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hmodels as hm
from hmodels.errors import DataError, DataWarning, FormulaError, MissingColumnError, PriorError, SpecificationError

REF = Path(__file__).parent / "reference"
NLME = json.loads((REF / "nlme_orange_theoph.json").read_text())
SSFOL = ("conc ~ Dose * exp(lKe + lKa - lCl) / (exp(lKa) - exp(lKe)) * "
         "(exp(-exp(lKe) * Time) - exp(-exp(lKa) * Time))")
THEOPH_NL = {"lKa": "1 + (1 || Subject)", "lKe": "1", "lCl": "1 + (1 || Subject)"}
THEOPH_START = {"lKa": 0.5, "lKe": -2.5, "lCl": -3.0}


@pytest.fixture(scope="session")
def theoph():
    return hm.datasets.load("theoph")


@pytest.fixture(scope="session")
def orange():
    return hm.datasets.load("orange")


@pytest.fixture(scope="session")
def theoph_model(theoph):
    return hm.Model(SSFOL, theoph, nonlinear=THEOPH_NL, start=THEOPH_START)


@pytest.fixture(scope="session")
def orange_model(orange):
    return hm.Model("circumference ~ SSlogis(age, Asym, xmid, scal)", orange, nonlinear={"Asym": "1 + (1 | Tree)"})


@pytest.fixture(scope="session")
def theoph_fit(theoph_model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return theoph_model.fit(seed=1, progressbar=False, log_likelihood=True)  # default draws, chains, sampler


@pytest.fixture(scope="session")
def orange_fit(orange_model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return orange_model.fit(seed=2, progressbar=False)


# -- design, spec, priors, plan (no sampling) ----------------------------------------------------------
def test_stacked_design_names_and_blocks(theoph_model, orange):
    d = theoph_model.design
    assert d.fixed_terms == ["lKa_Intercept", "lKe_Intercept", "lCl_Intercept"]
    (f,) = d.factors
    assert f.factor == "Subject" and f.terms == ["lKa_Intercept", "lCl_Intercept"] and f.n_levels == 12
    assert f.blocks == [[0], [1]] and f.correlated == [False, False]  # '||': pdDiag
    assert [(p.name, p.columns, p.terms) for p in d.predictors] == [
        ("lKa", (0,), {"Subject": (0,)}), ("lKe", (1,), {}), ("lCl", (2,), {"Subject": (1,)})]
    assert d.X.shape == (132, 3) and set(d.covariates) == {"Dose", "Time"}
    # '|' in two parameters' formulas: one correlated block across parameters (pdSymm)
    m = hm.Model("circumference ~ SSlogis(age, Asym, xmid, scal)", orange,
                 nonlinear={"Asym": "1 + (1 | Tree)", "xmid": "1 + (1 | Tree)"})
    (g,) = m.design.factors
    assert g.terms == ["Asym_Intercept", "xmid_Intercept"] and g.blocks == [[0, 1]] and g.correlated == [True]
    assert "cor(Tree)" in [r.slot.param for r in m.priors]


def test_auto_centering_from_the_linearised_model(theoph_model, orange_model):
    from hmodels.nonlinear.design import CENTRE_AT, linearised_design
    from hmodels.parameterisation import information_ratios

    lin = linearised_design(orange_model.design, orange_model.priors.start.estimates)
    assert information_ratios(lin)["Tree"] > CENTRE_AT and orange_model.centering() == {"Tree": True}
    lin = linearised_design(theoph_model.design, theoph_model.priors.start.estimates)
    assert information_ratios(lin)["Subject"] < CENTRE_AT and theoph_model.centering() == {"Subject": False}


def test_covariate_on_a_parameter(orange):
    data = orange.assign(site=np.where(orange["Tree"].astype(str).isin(["1", "2"]), "a", "b"))
    m = hm.Model("circumference ~ SSlogis(age, Asym, xmid, scal)", data, nonlinear={"Asym": "1 + site"})
    assert m.design.fixed_terms == ["Asym_Intercept", "Asym_site[b]", "xmid_Intercept", "scal_Intercept"]
    p = m.priors["Asym_site[b]"]
    assert p.prior.name == "Normal" and p.prior.params["mu"] == 0.0
    sd = m.design.X[:, 1].std()
    assert p.prior.params["sigma"] == pytest.approx(m.priors.start.scale("Asym") / sd, rel=1e-3)


def test_spec_round_trip(theoph_model):
    s = theoph_model.spec
    assert s.formula == SSFOL and s.fixed == () and s.groups == ()
    assert s.nonlinear.formulas == THEOPH_NL and dict(s.nonlinear.start) == THEOPH_START
    assert hm.ModelSpec.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert "nonlinear={'lKa': '1 + (1 || Subject)'" in str(s)


def test_priors_scaled_from_nls_start(theoph_model, orange_model):
    sv = theoph_model.priors.start
    assert sv.converged and sv.source["lKa"] == "start="
    for k in ("lKa", "lKe", "lCl"):
        r = theoph_model.priors[f"{k}_Intercept"]
        assert r.source == "nonlinear start" and r.rationale
        assert r.prior.params["mu"] == pytest.approx(sv.estimates[k], abs=1e-5)
        assert r.prior.params["sigma"] == pytest.approx(max(5 * sv.ses[k], abs(sv.estimates[k]) / 4), rel=1e-3)
        # wide enough for the data to dominate: nlme's estimate is well inside the prior
        assert abs(NLME["theoph"]["fixed"][k]["estimate"] - r.prior.params["mu"]) < r.prior.params["sigma"]
    assert theoph_model.priors["sigma"].prior.params["sigma"] == pytest.approx(2 * sv.residual_sd, rel=1e-3)
    assert theoph_model.priors["sd(Subject, lKa_Intercept)"].prior.name == "HalfNormal"
    # the self-start supplies the start of Orange's parameters
    assert orange_model.priors.start.source["Asym"] == "self-start SSlogis"
    assert "sd(Tree, Asym_Intercept)" in [r.slot.param for r in orange_model.priors]


def test_user_priors_by_term_and_parameter(theoph):
    m = hm.Model(SSFOL, theoph, nonlinear=THEOPH_NL, start=THEOPH_START,
                 priors={"lKa": hm.Normal(0.5, 1), "lCl_Intercept": "Normal(-3, 0.5)", "sd(Subject)": hm.HalfNormal(1)})
    assert m.priors["lKa_Intercept"].prior == hm.Normal(0.5, 1) and m.priors["lKa_Intercept"].source == "user"
    assert m.priors["lCl_Intercept"].prior == hm.Normal(-3, 0.5)
    assert m.priors["sd(Subject, lCl_Intercept)"].prior == hm.HalfNormal(1)
    assert m.priors["lKe_Intercept"].source == "nonlinear start"
    with pytest.raises(PriorError, match="lKA"):
        hm.Model(SSFOL, theoph, nonlinear=THEOPH_NL, start=THEOPH_START, priors={"lKA": hm.Normal(0, 1)})
    with pytest.raises(PriorError, match="outcome units"):
        hm.Model(SSFOL, theoph, nonlinear=THEOPH_NL, start=THEOPH_START, prior_set="weakly-informative")


def test_plan_routes_nutpie_to_the_engine_and_the_others_to_the_pymc_graph(theoph_model):
    for sampler in ("nutpie", "numpyro", "pymc"):
        plan = theoph_model.plan(sampler)
        assert plan.backend == ("engine" if sampler == "nutpie" else "pymc-graph"), plan
        assert plan.sampler == sampler and plan.method == "joint"
        assert plan.collapsed_factor is None and plan.centering == {"Subject": False}  # linearised ratio 14
        assert not plan.deviations and plan.mass_matrix == "diag"  # the PyMC graph follows the engine's plan
    with pytest.raises(SpecificationError, match="nonlinear"):
        theoph_model.plan("nutpie", method="collapsed")
    m = theoph_model.pymc_model
    assert set(m.coords["term"]) == {"lKa_Intercept", "lKe_Intercept", "lCl_Intercept"}


def test_graph_log_density_matches_numpy(theoph_model):
    """The PyMC graph's likelihood at a point equals the Gaussian log-likelihood of the NumPy expression."""
    from scipy import stats

    assert theoph_model.centering() == {"Subject": False}  # z_Subject is sampled
    model = theoph_model.pymc_model
    d = theoph_model.design
    b, sd, sigma = np.array([0.4, -2.4, -3.1]), np.array([0.6, 0.2]), 0.7
    z = np.random.default_rng(1).normal(size=(12, 2))
    values = {"b": b, "z_Subject": z, "sd_Subject": sd, "sigma": sigma}
    point = {}
    for rv in model.free_RVs:
        tr = model.rvs_to_transforms[rv]
        v = values[rv.name]
        fwd = tr.forward(v, *rv.owner.inputs) if tr is not None else v
        point[model.rvs_to_values[rv].name] = np.asarray(fwd.eval() if hasattr(fwd, "eval") else fwd)
    loglik = float(model.compile_logp(vars=model.observed_RVs)(point))
    r = z * sd
    codes = d.factors[0].codes
    env = {"lKa": b[0] + r[codes, 0], "lKe": np.full(d.n, b[1]), "lCl": b[2] + r[codes, 1], **d.covariates}
    expected = stats.norm.logpdf(d.y, d.expression.evaluate(env), sigma).sum()
    assert loglik == pytest.approx(expected, rel=1e-9)


# -- bad input ------------------------------------------------------------------------------------------
def test_bad_input_is_refused_before_compiling(theoph, orange):
    with pytest.raises(SpecificationError, match="'lKz' is not a parameter"):
        hm.Model("circumference ~ SSlogis(age, Asym, xmid, scal)", orange, nonlinear={"lKz": "1"})
    with pytest.raises(SpecificationError, match="do not appear"):
        hm.Model("y ~ a * x", pd.DataFrame({"y": [1.0, 2, 3], "x": [1.0, 2, 3]}), nonlinear={"a": "1", "b": "1"})
    with pytest.raises(MissingColumnError, match="Plot"):
        hm.Model("circumference ~ SSlogis(age, Asym, xmid, scal)", orange, nonlinear={"Asym": "1 + (1 | Plot)"})
    with pytest.raises(FormulaError, match="'scl'"):
        hm.Model("circumference ~ Asym / (1 + exp((xmid - age) / scl))", orange,
                 nonlinear={"Asym": "1", "xmid": "1", "scal": "1"})
    with pytest.raises(SpecificationError, match="cannot take a nonlinear mean"):
        hm.Model("circumference ~ SSlogis(age, Asym, xmid, scal)", orange, family="beta",
                 nonlinear={"Asym": "1"})
    with pytest.raises(SpecificationError, match="start= names 'lka'"):
        hm.Model(SSFOL, theoph, nonlinear=THEOPH_NL, start={"lka": 0.5})
    with pytest.raises(SpecificationError, match="pass nonlinear= too"):
        hm.Model("conc ~ Time", theoph, start={"a": 1.0})


def test_data_that_break_the_expression_are_refused():
    with pytest.raises(DataError, match=r"divides by 'x', which is 0 in 1 row \(index 1\)"):
        hm.Model("y ~ a / x", pd.DataFrame({"y": [1.0, 2, 3, 4], "x": [1.0, 0, 2, 3]}), nonlinear={"a": "1"})
    with pytest.raises(DataError, match="distinct values"):
        hm.Model("y ~ SSlogis(x, A, m, s)", pd.DataFrame({"y": [1.0, 2, 3, 4, 5, 6], "x": [1.0, 1, 2, 2, 1, 2]}),
                 nonlinear={"A": "1"})


def test_non_finite_at_start_names_the_rows():
    data = pd.DataFrame({"y": [1.0, 2.0, 2.5, 3.0], "x": [1.0, 2.0, -1.0, 4.0]})
    with pytest.raises(DataError, match=r"1 row \(index 2\)"):
        hm.Model("y ~ a * sqrt(b * x)", data, nonlinear={"a": "1", "b": "1"}, start={"a": 1.0, "b": 1.0})


def test_no_start_without_self_start_warns_about_exchangeable_parameters(theoph):
    """From zeros the one-compartment curve is undefined (exp(lKa) = exp(lKe)); the two rate constants swap."""
    with pytest.warns(DataWarning, match="not identified"):
        m = hm.Model(SSFOL, theoph, nonlinear=THEOPH_NL)
    assert m.priors.start.converged
    with pytest.raises(SpecificationError, match="start="):
        hm.Model("y ~ exp(a * x) / (b - b)", pd.DataFrame({"y": [1.0, 2, 3], "x": [1.0, 2, 3]}),
                 nonlinear={"a": "1", "b": "1"})


# -- fits against nlme ----------------------------------------------------------------------------------
def _check_against_nlme(fit, ref, random):
    fe = fit.fixed_effects()
    for k, v in ref["fixed"].items():
        row = fe.loc[f"{k}_Intercept"]
        assert abs(row["mean"] - v["estimate"]) < row["sd"], (k, row["mean"], row["sd"], v["estimate"])
    vc = fit.variance_components()
    for k, v in ref["random_sd"].items():
        row = vc.loc[f"sd({random}, {k}_Intercept)"]
        assert abs(row["mean"] - v) < row["sd"], (k, row["mean"], row["sd"], v)
    assert abs(vc.loc["sigma", "mean"] - ref["sigma"]) < vc.loc["sigma", "sd"]


def test_theoph_matches_nlme(theoph_fit):
    _check_against_nlme(theoph_fit, NLME["theoph"], "Subject")


def test_orange_matches_nlme(orange_fit):
    _check_against_nlme(orange_fit, NLME["orange"], "Tree")


@pytest.mark.parametrize("which", ["theoph_fit", "orange_fit"])
def test_default_settings_converge(which, request):
    fit = request.getfixturevalue(which)
    # the defaults sample 4 x 1000 draws and add rounds until converged (until="auto"): either way, converged
    assert fit.settings.chains == 4 and fit.settings.draws >= 1000 and fit.settings.sampler == "nutpie"
    assert fit.meta.get("until", {}).get("converged", fit.settings.draws == 1000), fit.meta.get("until")
    rhat, _ = fit._rhat_ess()
    assert fit.divergences == 0 and rhat <= 1.01, (fit.divergences, rhat)
    assert fit.meta["plan"]["backend"] == "engine"  # the expression runs as a program (hmodels.nonlinear.program)


# -- downstream -----------------------------------------------------------------------------------------
def _curve_draws(fit, time, subject_code, dose):
    b = fit.draws["b"].transpose("chain", "draw", "term").values
    r = fit.draws["r_Subject"].transpose("chain", "draw", ...).values[:, :, subject_code]
    lKa, lKe, lCl = b[..., 0] + r[..., 0], b[..., 1], b[..., 2] + r[..., 1]
    return (dose * np.exp(lKe + lKa - lCl) / (np.exp(lKa) - np.exp(lKe))
            * (np.exp(-np.exp(lKe) * time) - np.exp(-np.exp(lKa) * time)))


def test_predict_new_times_and_new_subject(theoph_fit):
    levels = list(theoph_fit.meta["factors"]["Subject"]["levels"])
    nd = pd.DataFrame({"Dose": [4.02, 4.02, 4.5], "Time": [1.5, 30.0, 2.0], "Subject": [levels[0], levels[0], "new"]},
                      index=[10, 11, 12])
    with pytest.raises(DataError, match="new"):
        theoph_fit.predict(nd)
    p = theoph_fit.predict(nd.iloc[:2], kind="mean")
    assert list(p.draws.coords["obs"].values) == [10, 11]
    for i, t in enumerate((1.5, 30.0)):
        np.testing.assert_allclose(p.values[..., i], _curve_draws(theoph_fit, t, 0, 4.02), rtol=1e-10)
    np.testing.assert_allclose(theoph_fit.predict(nd.iloc[:2], kind="link").values, p.values)  # identity link
    new = theoph_fit.predict(nd, groups="new", seed=3)
    pop = theoph_fit.predict(nd, groups="exclude")
    assert new.new_levels == {"Subject": ["new"]}
    assert new.values[..., 2].std() > pop.values[..., 2].std()  # a new subject adds between-subject variation
    resp = theoph_fit.predict(nd.iloc[:2], kind="response", seed=1)
    assert abs(resp.values.std(axis=(0, 1))[0] - np.sqrt(p.values[..., 0].var()
                                                        + (theoph_fit.draws["sigma"].values ** 2).mean())) < 0.1


def test_loglik_ppc_loo_diagnose(theoph_fit):
    from scipy import stats

    ll = theoph_fit.posterior["log_likelihood"]["conc"].values
    mu = theoph_fit.predict(kind="mean").values
    sigma = theoph_fit.draws["sigma"].transpose("chain", "draw").values[..., None]
    np.testing.assert_allclose(ll, stats.norm.logpdf(theoph_fit.design.y, mu, sigma), rtol=1e-10)
    loo = theoph_fit.loo()
    assert np.isfinite(loo.elpd) and len(loo.pareto_k.values.ravel()) == theoph_fit.design.n
    ppc = theoph_fit.ppc(seed=1)
    assert ppc.y_rep.shape[-1] == theoph_fit.design.n and "mean" in ppc.table.index
    assert 0.025 < ppc.table.loc["mean", "p_value"] < 0.975
    diag = theoph_fit.diagnose()
    assert diag.divergences == 0 and diag.summary().loc["max R-hat", "passed"]


def test_save_load_round_trip(theoph_fit, tmp_path):
    path = tmp_path / "theoph.hmfit"
    theoph_fit.save(path)
    back = hm.load(path)
    assert back.spec == theoph_fit.spec
    nd = pd.DataFrame({"Dose": [4.02], "Time": [3.0], "Subject": [theoph_fit.meta["factors"]["Subject"]["levels"][2]]})
    np.testing.assert_array_equal(back.predict(nd).values, theoph_fit.predict(nd).values)
    pd.testing.assert_frame_equal(back.fixed_effects(), theoph_fit.fixed_effects())


def test_report_names_the_framework(orange_fit):
    text = str(orange_fit.report())
    assert "nonlinear mixed model" in text
    assert "Asym ~ 1 + (1 | Tree)" in text


def test_plot_trajectories_draws_the_fitted_curve(theoph_fit):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = theoph_fit.plot_trajectories("Time", by="Subject", levels=["1", "2"])
    line = fig.axes[0].get_lines()[0]
    d = theoph_fit.design
    rows = np.flatnonzero(d.data["Subject"].astype(str).to_numpy() == "1")
    rows = rows[np.argsort(d.data["Time"].to_numpy()[rows], kind="stable")]
    expected = theoph_fit.predict(kind="mean").values.mean(axis=(0, 1))[rows]
    np.testing.assert_allclose(np.asarray(line.get_ydata(), dtype=float), expected, rtol=1e-10)
    plt.close(fig)


def test_poisson_expression_is_on_the_log_scale():
    """For a log link the expression is the log mean (brms's nl = TRUE): the graph's likelihood says so."""
    from scipy import stats

    rng = np.random.default_rng(4)
    x = np.tile(np.linspace(0.0, 4.0, 10), 6)
    g = np.repeat(np.arange(6), 10).astype(str)
    df = pd.DataFrame({"y": rng.poisson(np.exp(3.0 - 0.5 * x)), "x": x, "g": g})
    m = hm.Model("y ~ la - exp(lk) * x", df, family="poisson", nonlinear={"la": "1 + (1 | g)", "lk": "1"},
                 start={"la": 3.0, "lk": -0.7}, centered=False)
    assert m.plan("pymc").backend == "pymc-graph" and "sigma" not in [r.slot.param for r in m.priors]
    model = m.pymc_model
    b, sd, z = np.array([2.9, np.log(0.45)]), np.array([0.3]), rng.normal(size=(6, 1))
    values = {"b": b, "sd_g": sd, "z_g": z}
    point = {}
    for rv in model.free_RVs:
        tr = model.rvs_to_transforms[rv]
        fwd = tr.forward(values[rv.name], *rv.owner.inputs) if tr is not None else values[rv.name]
        point[model.rvs_to_values[rv].name] = np.asarray(fwd.eval() if hasattr(fwd, "eval") else fwd)
    codes = m.design.factors[0].codes
    log_mean = b[0] + (z * sd)[codes, 0] - np.exp(b[1]) * x
    expected = stats.poisson.logpmf(df["y"], np.exp(log_mean)).sum()
    assert float(model.compile_logp(vars=model.observed_RVs)(point)) == pytest.approx(expected, rel=1e-9)


def test_saved_parameter_formulas_are_checked_before_evaluation(theoph_model):
    from dataclasses import replace

    from hmodels.errors import FitFileError
    from hmodels.io import _check_expressions
    from hmodels.spec import NonlinearPart

    _check_expressions(theoph_model.spec)  # the fitted spec passes
    nl = theoph_model.spec.nonlinear
    bad = NonlinearPart(nl.expression, (("lKa", "1 + os.system(x)"), *nl.parameters[1:]))
    with pytest.raises(FitFileError, match="system"):
        _check_expressions(replace(theoph_model.spec, nonlinear=bad))


def test_co2_with_covariates_on_a_parameter_matches_nlme():
    """The third reference model: CO2 uptake, SSasymp with Asym ~ Type * Treatment and a random Asym per plant.

    nlme's ML fit (tests/reference/nlme_nonlinear.json, ``nlme.co2``): R's reference levels Quebec and
    nonchilled, which the bundled data declare and the design keeps. Posterior means within one posterior
    SD at the default priors (the plant SD and sigma against nlme's REML fit).
    """
    both = json.loads((REF / "nlme_nonlinear.json").read_text())["nlme"]["co2"]
    ref, reml = both["ML"], both["REML"]
    names = {"Asym.(Intercept)": "Asym_Intercept", "Asym.TypeMississippi": "Asym_Type[Mississippi]",
             "Asym.Treatmentchilled": "Asym_Treatment[chilled]",
             "Asym.TypeMississippi:Treatmentchilled": "Asym_Type[Mississippi]:Treatment[chilled]",
             "R0": "R0_Intercept", "lrc": "lrc_Intercept"}
    m = hm.Model("uptake ~ SSasymp(conc, Asym, R0, lrc)", hm.datasets.load("co2"),
                 nonlinear={"Asym": "1 + Type * Treatment + (1 | Plant)"})
    assert m.design.fixed_terms == list(names.values())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = m.fit(seed=1, progressbar=False)
    fe, vc = fit.fixed_effects(), fit.variance_components()
    far = {}
    for r_name, ours in names.items():
        z = (fe.loc[ours, "mean"] - ref["fixed"][r_name]) / fe.loc[ours, "sd"]
        if abs(z) > 1:
            far[ours] = round(float(z), 2)
    # variance components against REML: with 12 plants the ML SD (1.94) is biased low (REML 2.01)
    for r_value, ours in ((reml["random_sd"]["Asym.(Intercept)"], "sd(Plant, Asym_Intercept)"),
                          (reml["sigma"], "sigma")):
        z = (vc.loc[ours, "mean"] - r_value) / vc.loc[ours, "sd"]
        if abs(z) > 1:
            far[ours] = round(float(z), 2)
    assert not far, far
    assert fit.divergences == 0


@pytest.mark.parametrize("lhs,what", [("y | weights(w)", "weights"), ("y | cens(c)", "censoring"),
                                      ("y | trunc(lb=0)", "truncation")])
def test_outcome_additions_a_nonlinear_mean_cannot_honour_are_refused(lhs, what):
    """They were dropped without a word (the model fitted as if the column were not there)."""
    x = np.tile(np.linspace(0.5, 5.0, 10), 6)
    d = pd.DataFrame({"y": 3 * np.exp(-0.4 * x), "x": x, "g": np.repeat(np.arange(6), 10).astype(str), "w": 2.0,
                      "c": 0})
    with pytest.raises(SpecificationError, match=f"(?i){what}.*cannot be combined with a nonlinear mean"):
        hm.Model(f"{lhs} ~ a * exp(-b * x)", d, nonlinear={"a": "1 + (1 | g)", "b": "1"}, start={"a": 1.0, "b": 0.4})

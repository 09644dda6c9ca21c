"""The nonlinear mean on the compiled engine (hmodels.nonlinear.program; kernels.c: nl_forward).

The program's value and forward-mode derivatives are checked against the two independent evaluations
every expression already has: NumPy (the value) and sympy's exact derivatives (the gradient), for every
function of the whitelist and every self-starting shape (both generated from their registries,
``FUNCTIONS`` and ``SELF_STARTS``). The engine's whole log density is checked against the PyMC graph of
``hmodels.nonlinear.build`` (and its gradient against finite differences) for models of every family
the nonlinear issue names, with covariates on parameters and correlated effects.
"""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest
from test_engine import assert_engine_matches_pymc

import hmodels as hm
from hmodels.engine import native
from hmodels.nonlinear import SELF_STARTS, parse_expression
from hmodels.nonlinear.expression import FUNCTIONS
from hmodels.nonlinear.program import compile_program

# one expression per function, with arguments inside its domain for the values below (a, b > 0, x in [0.5, 3])
CALLS = {
    "exp": "a * exp(-b * x)", "log": "a * log(b * x + 1)", "log1p": "a * log1p(b * x)",
    "expm1": "a * expm1(b * x / 4)", "sqrt": "a * sqrt(b * x)", "inv_logit": "a * inv_logit(b * x - 1)",
    "logit": "a * logit(b / (b + x))", "pow": "pow(a, b) * x + pow(x, b)", "abs": "a * abs(b - x)",
    "where": "where(x > b, a * x, a - b * x)", "Phi": "a * Phi(b * x - 1.5)", "lgamma": "a * lgamma(b + x)",
}


def _run(text, params, covs, values):
    e = parse_expression(text, covs, params)
    prog = compile_program(e, params, covs)
    env = {k: np.asarray(v, dtype=float) for k, v in values.items()}
    out = native.nl_forward(prog.ops, prog.constants, np.array([env[c] for c in covs]),
                            np.array([np.broadcast_to(env[p], env[covs[0]].shape) for p in params]))
    return e, env, out


def _check(text, params, covs, values):
    e, env, out = _run(text, params, covs, values)
    assert out is not None, text
    mu, D = out
    np.testing.assert_allclose(mu, e.evaluate(env), rtol=1e-12, atol=1e-12, err_msg=text)
    grad = e.gradient(env)
    for j, p in enumerate(params):
        np.testing.assert_allclose(D[j], grad[p], rtol=1e-10, atol=1e-12, err_msg=f"{text}: d/d{p}")


def test_every_function_of_the_whitelist_has_a_case():
    assert set(CALLS) == set(FUNCTIONS)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_program_value_and_gradient_equal_numpy_and_sympy(name):
    rng = np.random.default_rng(1)
    x = np.linspace(0.5, 3.0, 11)
    values = {"a": 1.3 + 0.2 * rng.random(11), "b": 0.7 + 0.2 * rng.random(11), "x": x}
    _check(CALLS[name], ["a", "b"], ["x"], values)


@pytest.mark.parametrize("op", ["<", "<=", ">", ">=", "==", "!="])
def test_comparisons_are_zero_or_one_without_derivative(op):
    x = np.array([0.5, 1.0, 1.5, 2.0])
    _check(f"a * (x {op} b) + a ** 2 * x", ["a", "b"], ["x"], {"a": np.full(4, 1.5), "b": np.full(4, 1.0), "x": x})


@pytest.mark.parametrize("name", sorted(SELF_STARTS))
def test_every_self_start_shape_runs_as_a_program(name):
    ss = SELF_STARTS[name]
    covs = list(ss.columns or ss.covariate_args)
    params = list(ss.parameters or ss.parameter_args)
    text = re.sub(r"\{(\w+)\}", lambda mt: mt.group(1), ss.template)
    rng = np.random.default_rng(2)
    n = 9
    values = {c: np.linspace(0.5, 4.0, n) + 0.1 * k for k, c in enumerate(covs)}
    values.update({p: np.full(n, 0.4 + 0.3 * k) + 0.05 * rng.random(n) for k, p in enumerate(params)})
    _check(text, params, covs, values)


def test_a_non_finite_value_is_reported_not_returned():
    _, _, out = _run("a * log(x - b)", ["a", "b"], ["x"], {"a": np.ones(3), "b": np.full(3, 2.0),
                                                             "x": np.array([1.0, 3.0, 4.0])})
    assert out is None


def test_deep_or_wide_expressions_fall_back_to_the_pymc_graph():
    from hmodels.engine.codes import NL_MAXDEPTH

    deep = "a" + " * (1 + a" * (NL_MAXDEPTH + 1) + ")" * (NL_MAXDEPTH + 1)
    d = pd.DataFrame({"y": np.linspace(1.0, 2.0, 20), "x": np.linspace(0.0, 1.0, 20)})
    m = hm.Model(f"y ~ {deep} * x", d, nonlinear={"a": "1"}, start={"a": 0.1})
    plan = m.plan()
    assert plan.backend == "pymc-graph" and "deeper" in plan.deviations[0]


# -- the engine's log density = the PyMC graph's --------------------------------------------------------------
def _growth(family, seed=3, n_groups=8, per=8):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per)
    t = np.tile(np.linspace(0.5, 6.0, per), n_groups)
    grp = np.where(g % 2 == 0, "A", "B")
    la = 2.0 + 0.3 * (grp == "B") + rng.normal(0, 0.2, n_groups)[g]
    lk = -0.5 + rng.normal(0, 0.15, n_groups)[g]
    log_mean = la - np.exp(lk) * t  # exponential decay on the log scale
    if family == "poisson":
        y = rng.poisson(np.exp(log_mean))
    elif family == "bernoulli":
        y = rng.binomial(1, 1 / (1 + np.exp(-(log_mean - 1.0))))
    elif family == "lognormal":
        y = np.exp(log_mean + rng.normal(0, 0.2, g.size))
    else:
        y = np.exp(log_mean) + rng.normal(0, 0.3, g.size)
    return pd.DataFrame({"y": y, "t": t, "grp": grp, "g": [f"s{i}" for i in g], "s": 0.2 + 0.1 * (g % 3)})


MODELS = {
    "gaussian-correlated": ("y ~ exp(la - exp(lk) * t)", "gaussian",
                            {"la": "1 + grp + (1 | g)", "lk": "1 + (1 | g)"}, True),
    "gaussian-independent": ("y ~ exp(la - exp(lk) * t)", "gaussian",
                             {"la": "1 + (1 || g)", "lk": "1 + (1 || g)"}, False),
    "gaussian-known-se": ("y | se(s) ~ exp(la - exp(lk) * t)", "gaussian", {"la": "1 + (1 | g)", "lk": "1"}, False),
    "student": ("y ~ exp(la - exp(lk) * t)", "student_t", {"la": "1 + (1 | g)", "lk": "1"}, False),
    "poisson": ("y ~ la - exp(lk) * t", "poisson", {"la": "1 + grp + (1 | g)", "lk": "1"}, True),
    "bernoulli": ("y ~ la - exp(lk) * t - 1", "bernoulli", {"la": "1 + (1 | g)", "lk": "1"}, False),
    "lognormal": ("y ~ la - exp(lk) * t", "lognormal", {"la": "1 + (1 | g)", "lk": "1 + (1 | g)"}, True),
}


@pytest.mark.parametrize("case", sorted(MODELS))
def test_engine_log_density_equals_the_pymc_graph(case):
    formula, family, nonlinear, centered = MODELS[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hm.DataWarning)
        m = hm.Model(formula, _growth(family), family=family, nonlinear=nonlinear, start={"la": 2.0, "lk": -0.5},
                     centered=centered)
    plan = m.plan()
    assert plan.backend == "engine" and not plan.deviations, plan
    assert_engine_matches_pymc(m, m.engine_model(None), None, case, gradient=True, seed=5)


def test_engine_posterior_equals_the_pymc_graph_within_mcse():
    formula, family, nonlinear, _ = MODELS["poisson"]
    m = hm.Model(formula, _growth(family), family=family, nonlinear=nonlinear, start={"la": 2.0, "lk": -0.5})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hm.ConvergenceWarning)
        ours = m.fit(draws=500, tune=500, chains=2, seed=1, progressbar=False)
        graph = m.fit(draws=500, tune=500, chains=2, seed=2, progressbar=False, sampler="numpyro")
    assert ours.meta["plan"]["backend"] == "engine" and graph.meta["plan"]["backend"] == "pymc-graph"
    for table in ("fixed_effects", "variance_components"):
        a, b = getattr(ours, table)(), getattr(graph, table)()
        z = (a["mean"] - b["mean"]) / np.hypot(a["mcse_mean"], b["mcse_mean"])
        assert (z.abs() < 4).all(), (table, z)


def test_a_refit_on_new_data_compiles_nothing():
    """The program is data for the one compiled library: a new expression or new data reuse it."""
    import os

    lib = native.loaded_path()  # installed (hatch_build.py) or cached
    before = os.stat(lib).st_mtime_ns
    formula, family, nonlinear, _ = MODELS["gaussian-independent"]
    for seed in (3, 4):
        m = hm.Model(formula, _growth(family, seed=seed), family=family, nonlinear=nonlinear,
                     start={"la": 2.0, "lk": -0.5})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", hm.ConvergenceWarning)
            fit = m.fit(draws=50, tune=50, chains=1, seed=1, progressbar=False)
        assert fit.meta["plan"]["backend"] == "engine"
    assert native.loaded_path() == lib and os.stat(lib).st_mtime_ns == before


@pytest.mark.parametrize("method", ["collapsed", "laplace"])
def test_integrating_effects_out_is_refused_not_silently_dropped(method):
    """method='laplace' ran the engine's joint sampler without a word; both are refused, naming the remedy."""
    formula, family, nonlinear, _ = MODELS["gaussian-independent"]
    m = hm.Model(formula, _growth(family), family=family, nonlinear=nonlinear, start={"la": 2.0, "lk": -0.5})
    with pytest.raises(hm.errors.SpecificationError, match=f"method='{method}' is not available for a nonlinear"):
        m.plan(method=method)
    assert m.plan(method="joint").method == "joint"


def test_update_with_a_new_formula_keeps_the_parameters_formulas():
    """update(formula=...) of a nonlinear fit lost nonlinear= and failed with "Column 'la' ... not in the data"."""
    formula, family, nonlinear, _ = MODELS["gaussian-independent"]
    data = _growth(family)
    m = hm.Model(formula, data, family=family, nonlinear=nonlinear, start={"la": 2.0, "lk": -0.5})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = m.fit(draws=50, tune=50, chains=1, seed=1, progressbar=False)
        new = fit.update(formula="y ~ exp(la - exp(lk) * t * 1.0)", data=data, draws=50, tune=50, progressbar=False)
    assert dict(new.spec.nonlinear.parameters) == nonlinear and dict(new.spec.nonlinear.start) == {"la": 2.0,
                                                                                                   "lk": -0.5}
    assert new.spec.nonlinear.expression == "exp(la - exp(lk) * t * 1.0)"


def test_a_power_of_a_covariate_that_is_zero_has_finite_derivatives():
    """t ** b at t = 0 (time zero): value 0, derivative 0 in b (the limit of t^b log t), not NaN (the sweep)."""
    from test_engine import _finite_diff

    _, _, out = _run("a * t ** b", ["a", "b"], ["t"], {"a": np.full(3, 2.0), "b": np.full(3, 0.6),
                                                          "t": np.array([0.0, 1.0, 4.0])})
    mu, D = out
    np.testing.assert_allclose(mu, [0.0, 2.0, 2.0 * 4.0**0.6], rtol=1e-12)
    np.testing.assert_allclose(D[:, 0], [0.0, 0.0])  # d/da = t^b = 0, d/db = a t^b log t -> 0
    rng = np.random.default_rng(1)
    t = np.tile(np.linspace(0.0, 5.0, 8), 5)
    g = np.repeat(np.arange(5), 8)
    d = pd.DataFrame({"y": 2.0 * t**0.6 + rng.normal(0, 0.1, t.size), "t": t, "g": [f"s{i}" for i in g]})
    m = hm.Model("y ~ a * t ** b", d, nonlinear={"a": "1 + (1 | g)", "b": "1"}, start={"a": 2.0, "b": 0.6})
    em = m.engine_model(None)
    x = em.initial_point(seed=2)
    lp, grad = em.logp_grad(x)
    assert np.isfinite(lp) and np.isfinite(grad).all()
    fd = _finite_diff(em, x)
    assert (np.abs(fd - grad) / (1.0 + np.abs(fd))).max() < 1e-5


def test_a_constant_added_to_a_parameters_covariate_changes_only_its_intercept():
    """A covariate on a nonlinear parameter: z and z + 100 give the same log density at every sampled point.

    The intercept is sampled at the covariate's mean, where its nls-based prior is (the sweep found Asym_z going
    from -34.9 (sd 67.6) to 0.03 (sd 1.08) when the prior sat on the raw intercept).
    """
    d = hm.datasets.load("orange")
    z = np.random.default_rng(1).normal(size=d["Tree"].nunique())[d["Tree"].astype("category").cat.codes.to_numpy()]
    models = [hm.Model("circumference ~ SSlogis(age, Asym, xmid, scal)", d.assign(z=z + shift),
                       nonlinear={"Asym": "1 + z + (1 | Tree)"}) for shift in (0.0, 100.0)]
    ems = [m.engine_model(None) for m in models]
    graphs = [m.pymc_model for m in models]
    for x in _points_of(ems[0]):
        a, b = (em.logp_grad(x)[0] for em in ems)
        assert a == pytest.approx(b, rel=1e-9)
        va, vb = (em.constrained(x[None])["b"][0] for em in ems)
        assert va[1] == pytest.approx(vb[1], rel=1e-12) and va[0] - vb[0] == pytest.approx(100.0 * va[1], rel=1e-9)
    point = graphs[0].initial_point()
    assert float(graphs[0].compile_logp()(point)) == pytest.approx(float(graphs[1].compile_logp()(point)), rel=1e-9)
    assert "b_centered" in {v.name for v in graphs[0].free_RVs}


def _points_of(em, n=3):
    rng = np.random.default_rng(6)
    return [em.initial_point(rng, jitter=1.0) for _ in range(n)]


def test_intercept_prior_of_a_parameter_with_a_constant_added_covariate_is_stated_and_raw_is_refused():
    """A parameter with covariates: the model says its intercept prior is "centered"; "raw" is refused.

    The report read "raw intercept", explain_priors did not say where the intercept's prior is, and
    ``intercept_prior="raw"`` was silently sampled centred (found by the sweep).
    """
    d = hm.datasets.load("orange")
    d = d.assign(z=d["Tree"].astype("category").cat.codes.to_numpy() * 0.5 + 3.0)
    expr = "circumference ~ SSlogis(age, Asym, xmid, scal)"
    m = hm.Model(expr, d, nonlinear={"Asym": "1 + z + (1 | Tree)"})
    assert m.intercept_prior == m.priors.intercept_prior == "centered"
    implies = m.explain_priors(draws=200).set_index("parameter")["implies"]
    assert implies["Asym_Intercept"].startswith("Asym_Intercept at the means of Asym's covariates")
    assert implies["xmid_Intercept"].startswith("xmid_Intercept, ")  # no covariates: as given
    with pytest.raises(hm.PriorError, match=r"intercept_prior='raw' is not available.*\(Asym\)"):
        hm.Model(expr, d, nonlinear={"Asym": "1 + z + (1 | Tree)"}, intercept_prior="raw")
    with pytest.raises(hm.PriorError, match="'centered' or 'raw'"):
        hm.Model(expr, d, nonlinear={"Asym": "1 + (1 | Tree)"}, intercept_prior="centred")
    plain = hm.Model(expr, d, nonlinear={"Asym": "1 + (1 | Tree)"}, intercept_prior="raw")  # nothing centred: as given
    assert plain.intercept_prior == plain.priors.intercept_prior == "raw"

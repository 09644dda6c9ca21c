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

    lib = native.library_path()
    before = os.stat(lib).st_mtime_ns
    formula, family, nonlinear, _ = MODELS["gaussian-independent"]
    for seed in (3, 4):
        m = hm.Model(formula, _growth(family, seed=seed), family=family, nonlinear=nonlinear,
                     start={"la": 2.0, "lk": -0.5})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", hm.ConvergenceWarning)
            fit = m.fit(draws=50, tune=50, chains=1, seed=1, progressbar=False)
        assert fit.meta["plan"]["backend"] == "engine"
    assert native.library_path() == lib and os.stat(lib).st_mtime_ns == before

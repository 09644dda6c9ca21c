"""The nonlinear expression: safe parsing, name checks, NumPy/PyTensor/sympy evaluation, exact gradients."""

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from hmodels.errors import DataError, FormulaError, SpecificationError
from hmodels.nonlinear import FUNCTIONS, NonlinearExpression, parse_expression

REF = json.loads((Path(__file__).parent / "reference" / "nlme_nonlinear.json").read_text())

THEOPH = ("Dose * exp(lKe + lKa - lCl) / (exp(lKa) - exp(lKe)) * (exp(-exp(lKe) * Time) - exp(-exp(lKa) * Time))")
THEOPH_COLUMNS = ["Subject", "Wt", "Dose", "Time", "conc"]

# every function of the whitelist, comparisons, where, unary minus, powers
RICH = ("a * exp(-b * x) + log1p(c ** 2) * sqrt(abs(x) + 1) - expm1(b / 4) + inv_logit(a - x) "
        "+ logit(inv_logit(c)) + pow(abs(x) + 0.5, b / 3) + where(x > 0, a * x, -c * x ^ 2) "
        "+ Phi(c * x) + lgamma(abs(a) + 1.5) + (x <= c) * b - log(abs(b) + 2)")


def rich():
    return parse_expression(RICH, ["x", "y"], ["a", "b", "c"])


def random_env(rng, n=50):
    return {"a": rng.normal(size=n), "b": rng.normal(size=n), "c": rng.normal(size=n), "x": rng.normal(size=n) * 2}


def test_theoph_formula_parses_and_matches_r_ssfol():
    e = parse_expression(THEOPH, THEOPH_COLUMNS, ["lKa", "lKe", "lCl"])
    assert isinstance(e, NonlinearExpression)
    assert e.parameters == ("lKe", "lKa", "lCl")  # order of first appearance, not of the argument
    assert e.covariates == ("Dose", "Time")
    assert e.text == THEOPH
    ref = REF["self_start_values"]["SSfol"]
    env = {"Dose": np.array(ref["covariates"]["Dose"]), "Time": np.array(ref["covariates"]["input"]),
           **ref["parameters"]}
    np.testing.assert_allclose(e.evaluate(env), ref["value"], rtol=1e-13)
    g = e.gradient(env)
    for p in e.parameters:
        np.testing.assert_allclose(g[p], ref["gradient"][p], rtol=1e-12)


@pytest.mark.parametrize("text, match", [
    ('os.system("x")', "attribute call"),
    ("__import__('os')", "'__import__' is not allowed"),
    ("a.b", "attribute access"),
    ("x[0]", "subscripts"),
    ("lambda: a", "lambda"),
    ("(lambda q: q)(a)", "call of a computed value"),
    ("'text'", "not a real number"),
    ("a + True", "not a real number"),
    ("a * 1j", "not a real number"),
    ("exp(x=a)", "positional arguments only"),
    ("exp(*a)", "no \\*args"),
    ("exp(a, x)", "takes 1 argument, got 2"),
    ("where(x > 0, a)", "takes 3 arguments, got 2"),
    ("a if x > 0 else b", "Use where"),
    ("a and b", "Use where"),
    ("a % x", "modulo"),
    ("a // x", "integer division"),
    ("a & x", "'&'"),
    ("not a", "unary minus"),
    ("~a", "unary minus"),
    ("a < x < b", "chained comparisons"),
    ("a in x", "only the comparisons"),
    ("[a, x]", "lists"),
    ("(a, x)", "tuples"),
    ("(q := a)", "assignments"),
    ("[q for q in x]", "comprehensions"),
    ("a = x", "not a valid arithmetic expression"),
    ("a +", "not a valid arithmetic expression"),
    ("eval('1')", "'eval' is not allowed"),
    ("print(a)", "'print' is not allowed"),
    ("SSlogis(x, a, b, c) + 1", "must be the whole right-hand side"),
    ("", "empty"),
    ("+".join(["a"] * 2400), "nested too deeply"),
    ("a" * 6000, "longer than 5000 characters"),
])
def test_rejects_everything_outside_the_whitelist(text, match):
    with pytest.raises(FormulaError, match=match):
        parse_expression(text, ["x"], ["a", "b"])


def test_unknown_name_says_which_and_the_closest_names():
    with pytest.raises(FormulaError, match="The name 'scl'.*Did you mean 'scal'") as exc:
        parse_expression("Asym / (1 + exp((xmid - age) / scl))", ["age", "circumference"], ["Asym", "xmid", "scal"])
    assert "add 'scl' to nonlinear=" in str(exc.value)
    with pytest.raises(FormulaError, match="Did you mean 'Time'"):
        parse_expression("a * exp(-b * time)", ["Time", "conc"], ["a", "b"])
    with pytest.raises(FormulaError, match="it is a function"):
        parse_expression("a * exp", ["x"], ["a"])


def test_unused_duplicate_and_ambiguous_parameters():
    with pytest.raises(SpecificationError, match="'c' do not appear") as exc:
        parse_expression("a * x + b", ["x"], ["a", "b", "c"])
    assert type(exc.value) is SpecificationError
    with pytest.raises(SpecificationError, match="same name as data column"):
        parse_expression("a * x", ["x", "a"], ["a"])
    with pytest.raises(SpecificationError, match="listed twice"):
        parse_expression("a * x", ["x"], ["a", "a"])


def test_caret_is_r_power_with_r_precedence():
    env = {"a": 2.0, "x": 3.0}
    assert float(parse_expression("a * x^2", ["x"], ["a"]).evaluate(env)) == 18.0
    assert float(parse_expression("-x^2 + a", ["x"], ["a"]).evaluate(env)) == -7.0  # R: -x^2 is -(x^2)
    assert float(parse_expression("a^x^a", ["x"], ["a"]).evaluate(env)) == 2.0 ** 9  # right-associative
    assert parse_expression("a * x^2", ["x"], ["a"]).text == "a * x^2"  # kept as written


def test_functions_table_is_the_documented_whitelist():
    assert set(FUNCTIONS) == {"exp", "log", "log1p", "expm1", "sqrt", "inv_logit", "logit", "pow", "abs", "where",
                              "Phi", "lgamma"}


def test_numpy_and_pytensor_agree_on_random_inputs():
    import pytensor
    import pytensor.tensor as pt

    e = rich()
    rng = np.random.default_rng(1)
    env = random_env(rng)
    syms = {k: pt.dvector(k) for k in env}
    f = pytensor.function(list(syms.values()), e.evaluate(syms, lib="pytensor"))
    np.testing.assert_allclose(f(*env.values()), e.evaluate(env), rtol=1e-12, atol=1e-12)
    grads = e.gradient(syms, lib="pytensor")
    fg = pytensor.function(list(syms.values()), [grads[p] for p in e.parameters])
    gn = e.gradient(env)
    for p, got in zip(e.parameters, fg(*env.values())):
        np.testing.assert_allclose(got, gn[p], rtol=1e-12, atol=1e-12)


def test_sympy_value_agrees_with_numpy():
    import sympy as sp

    e = rich()
    env = {k: float(v[0]) for k, v in random_env(np.random.default_rng(2), 1).items()}
    s = e.sympy()
    assert {str(v) for v in s.free_symbols} == {"a", "b", "c", "x"}
    val = float(s.subs({sp.Symbol(k, real=True): v for k, v in env.items()}).evalf(30))
    assert val == pytest.approx(float(e.evaluate(env)), rel=1e-12)


def test_gradient_equals_finite_differences():
    e = rich()
    rng = np.random.default_rng(3)
    env = random_env(rng, 40)
    env["x"] = np.where(np.abs(env["x"]) < 0.05, 0.5, env["x"])  # away from the kinks of where(x > 0, ...)
    g = e.gradient(env)
    for p in e.parameters:
        h = 1e-6 * np.maximum(1.0, np.abs(env[p]))
        up, down = dict(env), dict(env)
        up[p], down[p] = env[p] + h, env[p] - h
        fd = (e.evaluate(up) - e.evaluate(down)) / (2 * h)
        np.testing.assert_allclose(g[p], fd, rtol=1e-6, atol=1e-7)


def test_gradient_broadcasts_constant_derivatives():
    e = parse_expression("A + B * x", ["x"], ["A", "B"])
    g = e.gradient({"A": 1.0, "B": 2.0, "x": np.arange(4.0)})
    np.testing.assert_array_equal(g["A"], np.ones(4))
    np.testing.assert_array_equal(g["B"], np.arange(4.0))


def test_comparisons_and_where():
    e = parse_expression("where(t < tlag, 0, a * (t - tlag)) + (t >= 3) * b", ["t"], ["a", "b", "tlag"])
    t = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(e.evaluate({"a": 2.0, "b": 10.0, "tlag": 1.5, "t": t}), [0, 0, 1, 13, 15])
    g = e.gradient({"a": 2.0, "b": 10.0, "tlag": 1.5, "t": t})
    np.testing.assert_allclose(g["tlag"], [0, 0, -2, -2, -2])
    np.testing.assert_allclose(g["b"], [0, 0, 0, 1, 1])


def test_evaluate_needs_every_name_and_a_known_backend():
    e = parse_expression("a * x", ["x"], ["a"])
    with pytest.raises(SpecificationError, match="missing for 'x'"):
        e.evaluate({"a": 1.0})
    with pytest.raises(SpecificationError, match="lib must be"):
        e.evaluate({"a": 1.0, "x": 1.0}, lib="jax")


def test_pickle_equality_and_hash():
    e = parse_expression(THEOPH, THEOPH_COLUMNS, ["lKe", "lKa", "lCl"])
    _ = e.derivatives  # caches are not pickled; they are rebuilt
    e2 = pickle.loads(pickle.dumps(e))
    assert e2 == e and hash(e2) == hash(e)
    env = {"Dose": 4.0, "Time": 2.0, "lKe": -2.5, "lKa": 0.5, "lCl": -3.2}
    assert float(e2.evaluate(env)) == float(e.evaluate(env))


def test_check_covariates_names_rows():
    e = parse_expression("a / (dose - 1) + log(w) * b", ["dose", "w"], ["a", "b"])
    e.check_covariates({"dose": [2.0, 3.0], "w": [1.0, 2.0]})
    with pytest.raises(DataError, match=r"divides by 'dose - 1', which is 0 in 1 row \(index r2\)"):
        e.check_covariates({"dose": [2.0, 1.0], "w": [1.0, 2.0]}, labels=["r1", "r2"])
    with pytest.raises(DataError, match=r"takes log\(\) of 'w', which is not positive in 2 rows"):
        e.check_covariates({"dose": [2.0, 3.0], "w": [0.0, -2.0]})
    # a denominator that involves a parameter is left to the start-value check
    parse_expression("a / (dose - b)", ["dose"], ["a", "b"]).check_covariates({"dose": [1.0]})

"""R's self-starting shapes: expressions, getInitial starting values, expansion, and population nls.

References: tests/reference/nlme_nonlinear.json, written by tests/reference/nlme_nonlinear.R (R 4.2.2).
"""

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

import hmodels as hm
from hmodels.errors import DataError, FormulaError, SpecificationError
from hmodels.nonlinear import SELF_STARTS, NlsResult, SelfStart, expand_self_start, nls_start, parse_expression

REF = json.loads((Path(__file__).parent / "reference" / "nlme_nonlinear.json").read_text())
REQUIRED = {"SSlogis", "SSfpl", "SSasymp", "SSasympOrig", "SSmicmen", "SSgompertz", "SSweibull", "SSfol", "SSbiexp"}


def test_every_required_shape_is_there_with_r_argument_names():
    assert REQUIRED <= set(SELF_STARTS)
    for name, ref in REF["self_start_values"].items():
        ss = SELF_STARTS[name]
        assert isinstance(ss, SelfStart) and ss.name == name
        assert ss.covariate_args == tuple(ref["covariate_args"])
        assert ss.parameter_args == tuple(ref["parameter_args"])


@pytest.mark.parametrize("name", sorted(REF["self_start_values"]))
def test_expression_and_gradient_equal_r_self_start_functions(name):
    ref = REF["self_start_values"][name]
    ss = SELF_STARTS[name]
    covs, pars = list(ref["covariates"]), list(ref["parameters"])
    e = parse_expression(ss.expression(covs, pars), covs, pars)
    assert set(e.parameters) == set(pars) and set(e.covariates) == set(covs)
    env = {**{k: np.array(v, dtype=float) for k, v in ref["covariates"].items()}, **ref["parameters"]}
    np.testing.assert_allclose(e.evaluate(env), ref["value"], rtol=1e-13)
    g = e.gradient(env)
    for p in pars:  # R's analytic gradient attribute
        np.testing.assert_allclose(g[p], ref["gradient"][p], rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("label", sorted(REF["get_initial"]))
def test_initial_matches_r_getinitial(label):
    case = REF["get_initial"][label]
    ss = SELF_STARTS[case["shape"]]
    cov = {a: np.array(v, dtype=float) for a, v in zip(ss.covariate_args, case["covariates"].values())}
    got = ss.initial(cov, np.array(case["y"], dtype=float))
    assert list(got) == list(ss.parameter_args)
    for k, v in case["initial"].items():
        assert got[k] == pytest.approx(v, rel=1e-5), (k, got[k], v)


def test_ssfol_initial_follows_r_where_r_stops_before_the_optimum():
    # R's second plinear fit in SSfol's initial converges at iteration 0 (relative offset 2.6e-6 < 1e-5),
    # so getInitial is not the least-squares optimum; nls from there is.
    case = REF["get_initial"]["theoph1_fol"]
    ss = SELF_STARTS["SSfol"]
    cov = {"Dose": np.array(case["covariates"]["Dose"]), "input": np.array(case["covariates"]["Time"])}
    ini = ss.initial(cov, np.array(case["y"]))
    nls_ref = REF["nls"]["theoph1_fol"]["estimates"]
    assert abs(ini["lKe"] - nls_ref["lKe"]) > 0.05  # R's start, not the optimum
    e = parse_expression(ss.expression(["Dose", "Time"], ["lKe", "lKa", "lCl"]), ["Dose", "Time"],
                         ["lKe", "lKa", "lCl"])
    res = nls_start(e, {"Dose": cov["Dose"], "Time": cov["input"]}, np.array(case["y"]), ini)
    for k, v in nls_ref.items():
        assert res.estimates[k] == pytest.approx(v, rel=1e-4)
        assert res.standard_errors[k] == pytest.approx(REF["nls"]["theoph1_fol"]["se"][k], rel=1e-3)
    assert res.residual_sd == pytest.approx(REF["nls"]["theoph1_fol"]["sigma"], rel=1e-6)


@pytest.mark.parametrize("name", sorted(SELF_STARTS))
def test_too_few_distinct_inputs_is_a_typed_error_first(name):
    ss = SELF_STARTS[name]
    k = ss.min_distinct - 1
    x = np.repeat(np.arange(1.0, k + 1), 3)
    y = np.full(x.size, np.nan) if name != "SSfol" else np.ones(x.size)  # checked before y is looked at
    cov = {a: x for a in ss.covariate_args}
    if name == "SSfol":
        cov = {"Dose": np.ones(k), "input": np.arange(1.0, k + 1)}
        y = np.ones(k)
    with pytest.raises(DataError, match=f"{name} needs at least {ss.min_distinct}"):
        ss.initial(cov, y)


def test_asymp_three_points_closed_form_and_errors():
    ss = SELF_STARTS["SSasymp"]
    with pytest.raises(DataError, match="not monotone"):
        ss.initial({"input": np.array([1.0, 2.0, 3.0])}, np.array([1.0, 2.0, 1.5]))
    with pytest.raises(DataError, match="equally spaced"):
        ss.initial({"input": np.array([1.0, 2.0, 4.0])}, np.array([1.0, 1.5, 1.75]))
    with pytest.raises(DataError, match="non-negative"):
        SELF_STARTS["SSweibull"].initial({"x": np.arange(-1.0, 5.0)}, np.arange(6.0))


def test_initial_falls_back_to_the_linearising_guesses_with_a_warning():
    from dataclasses import replace

    from hmodels.errors import DataWarning
    from hmodels.nonlinear import selfstart

    def fails_late(cov, y, start):
        start.update(xmid=5.0, scal=float("nan"))
        raise selfstart._StartFailure("step factor reduced below minFactor")

    def fails_early(cov, y, start):
        raise selfstart._StartFailure("singular gradient")

    x = np.arange(1.0, 9.0)
    ss = replace(SELF_STARTS["SSlogis"], algorithm=fails_late)
    with pytest.warns(DataWarning, match="did not converge.*xmid"):
        out = ss.initial({"input": x}, x)
    assert out["xmid"] == 5.0 and np.isnan(out["Asym"]) and np.isnan(out["scal"])
    with pytest.raises(DataError, match="could not compute starting values.*Pass start= values for Asym, xmid"):
        replace(SELF_STARTS["SSlogis"], algorithm=fails_early).initial({"input": x}, x)


def test_initial_finds_the_optimum_where_r_gauss_newton_fails():
    # R 4.2: getInitial(y ~ SSlogis(x, Asym, xmid, scal)) stops: "qr.solve(QR.B, cc): singular matrix 'a' in solve"
    from hmodels.nonlinear import selfstart

    x = np.arange(1.0, 9.0)
    y = np.array([1.0, 5, 2, 6, 3, 7, 2, 1])
    with pytest.raises(selfstart._StartFailure, match="singular"):
        rng = np.ptp(y)
        z = (y - y.min() + 0.05 * rng) / (1.1 * rng)
        a, b = selfstart._lm(np.log(z / (1 - z)), x)
        selfstart._gauss_newton_plinear(lambda t: 1 / (1 + np.exp((t[0] - x) / t[1])), np.array([a, b]), y)
    out = SELF_STARTS["SSlogis"].initial({"input": x}, y)
    assert all(np.isfinite(v) for v in out.values())


def test_expand_self_start_positional_keywords_and_binding():
    cols = ["Tree", "age", "circumference"]
    text, params, ss, covs = expand_self_start("SSlogis(age, A, m, s)", cols)
    assert text == "A / (1 + exp((m - age) / s))" and params == ("A", "m", "s") and covs == ("age",)
    assert ss.name == "SSlogis" and ss.parameters == params and ss.columns == covs
    assert ss == SELF_STARTS["SSlogis"].__class__(**{**ss.__dict__})
    kw = expand_self_start("SSlogis(Asym = A, input = age, xmid = m, scal = s)", cols)
    assert kw[0] == text
    # bound: initial takes the data columns and names the values with the user's names
    o = hm.datasets.load("orange")
    ini = ss.initial({"age": o["age"].to_numpy(float)}, o["circumference"].to_numpy(float))
    ref = REF["get_initial"]["orange_pooled"]["initial"]
    assert list(ini) == ["A", "m", "s"]
    assert ini["A"] == pytest.approx(ref["Asym"], rel=1e-5) and ini["s"] == pytest.approx(ref["scal"], rel=1e-5)
    assert ss.rationale("m").startswith("m is the value of age at which the curve reaches half of its asymptote A")
    assert SELF_STARTS["SSlogis"].rationale("Asym").startswith("Asym is the upper asymptote")
    assert pickle.loads(pickle.dumps(ss)) == ss
    # SSfol: two inputs, R's order Dose, input
    text, params, ss, covs = expand_self_start("SSfol(Dose, Time, lKe, lKa, lCl)", ["Dose", "Time", "conc"])
    assert covs == ("Dose", "Time") and params == ("lKe", "lKa", "lCl")
    e = parse_expression(text, ["Dose", "Time", "conc"], params)
    assert e.covariates == ("Dose", "Time")


def test_expand_self_start_passes_other_expressions_through():
    assert expand_self_start("a * exp(-b * t)", ["t"]) == ("a * exp(-b * t)", (), None, ())
    assert expand_self_start("SSlogis(age, A, m, s) + 1", ["age"])[2] is None  # parse_expression rejects it
    assert expand_self_start("x +", ["x"])[2] is None


@pytest.mark.parametrize("rhs, cols, err, match", [
    ("SSlogit(age, A, m, s)", ["age"], FormulaError, "Did you mean 'SSlogis'"),
    ("SSlogis(age, A, m)", ["age"], FormulaError, "missing the argument"),
    ("SSlogis(age, A, m, s, t)", ["age"], FormulaError, "takes 4 arguments"),
    ("SSlogis(ag, A, m, s)", ["age"], FormulaError, "not a data column. Did you mean 'age'"),
    ("SSlogis(log(age), A, m, s)", ["age"], FormulaError, "add a column"),
    ("SSlogis(age, A, 2 * m, s)", ["age"], FormulaError, "must be a name"),
    ("SSlogis(age, A, m, scale = s)", ["age"], FormulaError, "'scale' is not an argument"),
    ("SSlogis(age, A, m, s, input = age)", ["age"], FormulaError, "given twice"),
    ("SSlogis(age, A, A, s)", ["age"], FormulaError, "used twice"),
    ("SSlogis(age, age, m, s)", ["age"], SpecificationError, "name of a data column"),
])
def test_expand_self_start_errors(rhs, cols, err, match):
    with pytest.raises(err, match=match):
        expand_self_start(rhs, cols)


def test_nls_start_orange_pooled_equals_r_nls():
    o = hm.datasets.load("orange")
    ref_data = REF["get_initial"]["orange_pooled"]
    np.testing.assert_array_equal(o["age"], ref_data["covariates"]["age"])  # the bundled data are R's
    np.testing.assert_array_equal(o["circumference"], ref_data["y"])
    e = parse_expression("Asym / (1 + exp((xmid - age) / scal))", o.columns, ["Asym", "xmid", "scal"])
    ref = REF["nls"]["orange_pooled_written"]
    res = nls_start(e, {"age": o["age"].to_numpy(float)}, o["circumference"].to_numpy(float), ref["start"])
    assert isinstance(res, NlsResult) and res.converged and res.df == ref["df"] and res.n == 35
    for k in e.parameters:
        assert res.estimates[k] == pytest.approx(ref["estimates"][k], rel=1e-4)
        assert res.standard_errors[k] == pytest.approx(ref["se"][k], rel=1e-4)
    assert res.residual_sd == pytest.approx(ref["sigma"], rel=1e-6)
    assert res.rss <= ref["rss"] * (1 + 1e-12)  # at least as good a least-squares fit as R's
    np.testing.assert_allclose(np.sqrt(np.diag(res.cov)), list(res.standard_errors.values()))


def test_nls_start_non_finite_start_names_rows():
    e = parse_expression("a / (x - b)", ["x"], ["a", "b"])
    x = np.array([1.0, 2.0, 3.0, 2.0])
    with pytest.raises(DataError, match=r"not finite at the starting values \(a = 1, b = 2\) in 2 rows \(index 1, 3\)"):
        nls_start(e, {"x": x}, np.ones(4), {"a": 1.0, "b": 2.0})
    with pytest.raises(DataError, match="index q"):
        nls_start(e, {"x": x}, np.ones(4), {"a": 1.0, "b": 3.0}, labels=["n", "o", "q", "r"])


def test_nls_start_missing_start_and_singular_gradient():
    e = parse_expression("a * b * x", ["x"], ["a", "b"])
    x = np.arange(1.0, 9.0)
    with pytest.raises(SpecificationError, match="Starting values are missing for 'b'"):
        nls_start(e, {"x": x}, 2 * x, {"a": 1.0})
    with pytest.raises(SpecificationError, match="singular gradient.*a, b"):
        nls_start(e, {"x": x}, 2 * x + np.sin(x), {"a": 1.0, "b": 1.0})
    with pytest.raises(DataError, match="response is not finite"):
        nls_start(e, {"x": x}, np.r_[np.nan, x[1:]], {"a": 1.0, "b": 1.0})


def test_nls_start_weibull_at_zero_uses_the_limit_of_the_derivative():
    # d/dpwr of x ** pwr is x ** pwr * log(x): 0 * -inf at x = 0, whose limit is 0
    ss = SELF_STARTS["SSweibull"]
    case = REF["get_initial"]["chick6_weibull"]
    x = np.r_[0.0, case["covariates"]["Time"]]
    y = np.r_[41.0, case["y"]]
    e = parse_expression(ss.expression(["Time"], ss.parameter_args), ["Time"], ss.parameter_args)
    res = nls_start(e, {"Time": x}, y, case["initial"])
    assert res.converged and all(np.isfinite(v) for v in res.standard_errors.values())

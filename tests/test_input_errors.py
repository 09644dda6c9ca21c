"""Bad or uninformative input: a typed hmodels error (or a DataWarning) in Model(...), before anything compiles.

The message names the column, term, prior or rows and says what to do (issues #17 and #12).
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pandas as pd
import pytest

import hmodels as hm
from hmodels.errors import DataWarning


def _df(n: int = 60, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "y": rng.normal(size=n), "x": rng.uniform(1, 2, n), "cond": rng.choice(list("abc"), n),
        "g": np.repeat([f"g{i}" for i in range(6)], n // 6), "expo": rng.uniform(1, 3, n),
        "count": rng.poisson(3, n),
    })


def _no_warnings(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn()


# -- 1. names that collide with the posterior's own names ----------------------------------------
def test_factor_named_like_a_posterior_variable_is_refused():
    df = _df().rename(columns={"g": "b"})
    with pytest.raises(hm.SpecificationError, match=r"grouping factor 'b'.*population-level coefficients.*"
                                                     r"Rename the column 'b'.*'b': 'b_group'"):
        hm.Model("y ~ x + (1 | b)", df)


@pytest.mark.parametrize("formula, culprit", [
    ("y ~ x + (1 | g) + (1 | sd_g)", "grouping factor 'sd_g'"),   # a factor named after another's SDs
    ("y ~ x + (1 | g) + (1 | g__term)", "grouping factor 'g__term'"),
    ("y ~ x + (1 | term)", "grouping factor 'term'"),             # a dimension of the posterior
    ("y ~ x + (1 | sigma)", "grouping factor 'sigma'"),
    ("sigma ~ x + (1 | g)", "outcome 'sigma'"),
])
def test_every_colliding_name_is_refused(formula, culprit):
    with pytest.raises(hm.SpecificationError, match=f"{culprit}.*Rename the column"):
        hm.parse_formula(formula)


def test_family_parameters_are_reserved_only_where_they_exist():
    df = _df().rename(columns={"y": "alpha"})
    assert hm.Model("alpha ~ x + (1 | g)", df).spec.response == "alpha"  # gaussian: no 'alpha' variable
    with pytest.raises(hm.SpecificationError, match="outcome 'alpha'"):
        hm.parse_formula("alpha ~ x + (1 | g)", family="negativebinomial")


# -- 2. data that carry no information -----------------------------------------------------------
def test_constant_gaussian_outcome():
    df = _df().assign(y=3.0)
    with pytest.raises(hm.DataError, match=r"'y' has the same value \(3\) in all 60 rows"):
        hm.Model("y ~ x + (1 | g)", df)


@pytest.mark.parametrize("family, formula, values, fragment", [
    ("poisson", "count ~ x + (1 | g)", {"count": 0}, "'count' is 0 in all 60 rows"),
    ("negativebinomial", "count ~ x + (1 | g)", {"count": 0}, "'count' is 0 in all 60 rows"),
    ("bernoulli", "count ~ x + (1 | g)", {"count": 1}, "'count' is 1 in all 60 rows"),
    ("bernoulli", "count ~ x + (1 | g)", {"count": 0}, "'count' is 0 in all 60 rows"),
    ("binomial", "p(count, n) ~ x + (1 | g)", {"count": 0, "n": 5}, "no successes"),
    ("binomial", "p(count, n) ~ x + (1 | g)", {"count": 5, "n": 5}, "all successes"),
])
def test_outcome_without_variation(family, formula, values, fragment):
    df = _df().assign(**values)
    with pytest.raises(hm.DataError, match=f"{fragment}.*priors alone"):
        hm.Model(formula, df, family=family)


def test_complete_separation_warns_naming_the_predictor():
    df = _df()
    df["win"] = (df["x"] > 1.5).astype(int)
    with pytest.warns(DataWarning, match=r"'x' \(completely: every row with x > 1\.\d+ has outcome 1.*prior"):
        hm.Model("win ~ x + (1 | g)", df, family="bernoulli")


def test_quasi_complete_separation_by_a_category_warns():
    df = _df()
    rng = np.random.default_rng(1)
    df["win"] = np.where(df["cond"] == "c", 0, rng.integers(0, 2, len(df)))
    with pytest.warns(DataWarning, match=r"'cond\[c\]' \(quasi-completely"):
        hm.Model("win ~ cond + (1 | g)", df, family="bernoulli")


def test_no_separation_warning_for_overlapping_outcomes():
    _no_warnings(lambda: hm.Model("p(incidence, size) ~ period + (1 | herd)", hm.datasets.load("cbpp"),
                                  family="binomial"))


def test_nested_cells_with_one_row_are_confounded_with_the_residual():
    df = pd.DataFrame({"y": np.arange(12.0) ** 1.5, "a": np.repeat(["a1", "a2", "a3"], 4),
                       "b": np.tile(["b1", "b2", "b3", "b4"], 3)})
    with pytest.raises(hm.DataError, match=r"Every level of the grouping factor 'a:b' has exactly one row.*"
                                           r"sd\(a:b\) and sigma are not separately identified"):
        hm.Model("y ~ 1 + (1 | a/b)", df)
    # an observation-level effect is fine where there is no residual SD (overdispersion in counts)
    df["k"] = np.arange(12) % 5
    hm.Model("k ~ 1 + (1 | a/b)", df, family="poisson")


def test_fewer_rows_than_variance_parameters():
    df = pd.DataFrame({"y": [1.0, 2.5, 2.0], "g": ["a", "a", "b"], "h": ["c", "d", "d"], "k": ["e", "f", "e"]})
    with pytest.raises(hm.DataError, match=r"4 variance parameters .* only 3 row"):
        hm.Model("y ~ 1 + (1 | g) + (1 | h) + (1 | k)", df)


# -- 3. priors -------------------------------------------------------------------------------------
@pytest.mark.parametrize("priors", [5, ["Normal(0, 1)"], 2.5])
def test_priors_of_the_wrong_type(priors):
    with pytest.raises(hm.PriorError, match=r"priors must be a dict .* or the name or path of a prior set"):
        hm.Model("y ~ x + (1 | g)", _df(), priors=priors)


def test_uniform_too_wide_to_sample():
    with pytest.raises(hm.PriorError, match=r"Uniform\(-1e\+300, 1e\+300\) for Intercept .* too wide to sample"
                                            r".*hm\.Normal"):
        hm.Model("y ~ x + (1 | g)", _df(), priors={"Intercept": hm.Uniform(-1e300, 1e300)})
    with pytest.raises(hm.PriorError, match="not a finite number"):
        hm.Uniform(-1e308, 1e308)
    hm.Model("y ~ x + (1 | g)", _df(), priors={"Intercept": hm.Uniform(-100, 100)})  # a sane range is kept


# -- 4. columns ------------------------------------------------------------------------------------
def test_duplicate_column_names():
    df = _df()
    df = pd.concat([df, df[["x"]]], axis=1)
    with pytest.raises(hm.DataError, match=r"more than one column named 'x'"):
        hm.Model("y ~ x + (1 | g)", df)


def test_backtick_quoted_column_names():
    df = _df().rename(columns={"x": "my x", "g": "my group", "cond": "_c"})
    m = hm.Model("y ~ `my x` + `_c` + (`my x` | `my group`)", df)
    assert m.design.fixed_terms == ["Intercept", "my x", "_c[b]", "_c[c]"]
    np.testing.assert_array_equal(m.design.X[:, 1], df["my x"].to_numpy())
    assert m.spec.factors == ("my group",) and m.design.factors[0].terms == ["Intercept", "my x"]
    assert m.spec.formula == "y ~ 1 + `my x` + `_c` + (1 + `my x` | `my group`)"
    assert hm.parse_formula(m.spec.formula) == m.spec


@pytest.mark.parametrize("formula", ["y ~ my x + (1 | g)", "y ~ _c + (1 | g)"])
def test_unquoted_odd_names_say_use_backticks(formula):
    with pytest.raises(hm.FormulaError, match="backticks"):
        hm.Model(formula, _df().rename(columns={"x": "my x", "cond": "_c"}))


# -- 5. impossible values after transformation -----------------------------------------------------
def test_log_link_gaussian_needs_a_positive_outcome():
    df = _df()
    df.index = df.index + 100  # messages give the data's own index labels
    with pytest.raises(hm.DataError, match=r"log link .* 'y' is zero or negative in \d+ rows \(index 10\d"):
        hm.Model("y ~ x + (1 | g)", df, link="log")


def test_non_finite_transformation_names_term_and_rows():
    df = _df()
    df.loc[[3, 17], "x"] = 0.0
    df.index = [f"r{i}" for i in range(len(df))]
    with pytest.raises(hm.DataError, match=r"term 'np\.log\(x\)' \(population-level\) is not finite \(-inf\) "
                                           r"in 2 rows \(index r3, r17\)"):
        hm.Model("y ~ np.log(x) + (1 | g)", df)
    with pytest.raises(hm.DataError, match=r"'np\.log\(x\)' \(group-specific, for 'g'\) is not finite .* in 2 rows"):
        hm.Model("y ~ 1 + (np.log(x) | g)", df)
    df["count"] = df["count"].astype(float)
    with pytest.raises(hm.DataError, match=r"outcome 'np\.log\(count\)' is not finite"):
        hm.Model("np.log(count) ~ x + (1 | g)", df.assign(count=0.0))


def test_thousands_of_terms_give_a_short_formula_error():
    formula = "y ~ " + " + ".join(f"x{i}" for i in range(3000)) + " + (1 | g)"
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)  # Python's default; importing PyMC raises it to 10000 (then 3000 terms parse)
    try:
        with pytest.raises(hm.FormulaError, match="about 3000 terms") as info:
            hm.parse_formula(formula)
    finally:
        sys.setrecursionlimit(old)
    assert len(str(info.value)) < 1000


# -- 6. counts -------------------------------------------------------------------------------------
def test_counts_off_by_float_noise_are_rounded_with_a_warning():
    df = _df()
    df["count"] = df["count"] + np.where(np.arange(len(df)) % 7 == 1, 3e-6, 0.0)  # relative noise < 1e-6
    df["count"] = df["count"].where(np.arange(len(df)) % 7 != 1, df["count"] + 6)
    with pytest.warns(DataWarning, match=r"'count' holds values that differ from whole numbers .* \(index 1, 8, 15"):
        m = hm.Model("count ~ x + (1 | g)", df, family="poisson")
    assert m.design.y.dtype == np.int64 and np.array_equal(m.design.y, np.round(df["count"]))


@pytest.mark.parametrize("family", ["poisson", "negativebinomial"])
def test_near_integer_but_real_fractions_are_errors(family):
    df = _df().astype({"count": float})
    df.loc[4, "count"] = 7.0001  # within rtol 1e-5 of 7: was silently rounded
    with pytest.raises(hm.DataError, match=r"whole numbers .* 7\.0001 in 1 row \(index 4\)"):
        hm.Model("count ~ x + (1 | g)", df, family=family)


def test_fractional_trials_are_errors():
    df = _df().assign(n=10.0)
    df.loc[2, "n"] = 10.00002
    with pytest.raises(hm.DataError, match=r"trials column 'n' must hold positive whole numbers.*index 2"):
        hm.Model("p(count, n) ~ x + (1 | g)", df, family="binomial")


# -- 7. prediction ---------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_predict_with_non_finite_newdata(sleep_fit, bad):
    new = pd.DataFrame({"Days": [1.0, bad, 3.0], "Subject": ["308"] * 3}, index=[10, 11, 12])
    with pytest.raises(hm.DataError, match=r"newdata column 'Days' has missing or non-finite values .* "
                                           r"in 1 row \(index 11\)"):
        sleep_fit.predict(new)


# -- 8. offsets and formula transformations ------------------------------------------------------
@pytest.mark.parametrize("formula, offset", [
    ("count ~ x + offset(np.log(expo)) + (1 | g)", np.log),
    ("count ~ offset(expo) + x + (1 | g)", lambda e: e),
])
def test_offsets_are_offsets_not_fitted_as_coefficients(formula, offset):
    m = _no_warnings(lambda: hm.Model(formula, _df(), family="poisson"))
    assert m.design.fixed_terms == ["Intercept", "x"]  # no coefficient for the offset (tests/test_offsets.py)
    np.testing.assert_allclose(m.design.offset, offset(_df()["expo"].to_numpy()))


@pytest.mark.parametrize("formula, fragment", [
    ("count ~ x + (1 + offset(expo) | g)", "cannot vary by group"),
    ("count ~ x + x:offset(expo) + (1 | g)", "not a term of its own"),
])
def test_offsets_that_cannot_be_honoured_are_refused(formula, fragment):
    with pytest.raises(hm.FormulaError, match=fragment):
        hm.Model(formula, _df(), family="poisson")


def test_offset_from_the_python_api():
    s = hm.spec("count", fixed=["x", "offset(np.log(expo))"], family="poisson")
    assert s == hm.spec("count", fixed=["x"], offset="np.log(expo)", family="poisson")
    with pytest.raises(hm.FormulaError, match="cannot vary by group"):
        hm.spec("count", fixed=["x"], groups=[hm.RandomSlope("offset(expo)", by="g")], family="poisson")


def test_formula_transformations_build_the_right_columns():
    df = _df()
    x = df["x"].to_numpy()
    d = hm.Model("y ~ I(x**2) + np.power(x, 3) + I((x + 1)**2) + (1 | g)", df).design
    assert d.fixed_terms[1:3] == ["I(x ** 2)", "np.power(x, 3)"]
    np.testing.assert_allclose(d.X[:, 1:], np.column_stack([x**2, x**3, (x + 1) ** 2]))

    d = hm.Model("y ~ poly(x, 2) + (1 | g)", df).design
    assert d.fixed_terms == ["Intercept", "poly(x, 2)[0]", "poly(x, 2)[1]"]
    P = d.X[:, 1:]
    np.testing.assert_allclose(P.T @ P, np.eye(2), atol=1e-10)  # orthonormal polynomials
    np.testing.assert_allclose(P.sum(axis=0), 0, atol=1e-10)
    assert abs(np.corrcoef(P[:, 0], x)[0, 1]) > 0.999

    d = hm.Model("y ~ C(cond, Sum) + (1 | g)", df).design
    assert d.fixed_terms == ["Intercept", "C(cond, Sum)[a]", "C(cond, Sum)[b]"]
    code = {"a": [1, 0], "b": [0, 1], "c": [-1, -1]}  # sum (deviation) coding
    np.testing.assert_array_equal(d.X[:, 1:], np.array([code[c] for c in df["cond"]]))

    d = hm.Model("y ~ bs(x, df=4) + (1 | g)", df).design
    assert d.fixed_terms == ["Intercept"] + [f"bs(x, df=4)[{i}]" for i in range(4)]
    assert d.X.shape == (60, 5) and np.isfinite(d.X).all()


def test_misspelt_column_inside_a_transformation_is_still_caught():
    with pytest.raises(hm.MissingColumnError, match=r"Column 'xx' is used .*Did you mean 'x'"):
        hm.Model("y ~ I(xx**2) + (1 | g)", _df())


def test_transformed_fit_predicts_with_the_training_transformation():
    df = _df()
    m = hm.Model("y ~ poly(x, 2) + (1 | g)", df)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = m.fit(draws=50, tune=50, chains=1, seed=1, progressbar=False)
    p = fit.predict(df.iloc[[0, 5]], kind="link", groups="exclude")
    b = np.asarray(fit.draws["b"].transpose("chain", "draw", ...).values)
    np.testing.assert_allclose(p.values, np.einsum("cdp,np->cdn", b, m.design.X[[0, 5]]), rtol=1e-10)


@pytest.mark.parametrize("formula", ["y ~ Intercept + (1 | g)", "y ~ x + Intercept + (1 | g)",
                                     "y ~ x + (0 + Intercept | g)"])
def test_column_named_intercept_is_refused(formula):
    """formulae put a column named 'Intercept' into the intercept's column: no intercept, no predictor, silently."""
    df = _df().assign(Intercept=lambda f: 2 * f["x"] + 1)
    with pytest.raises(hm.SpecificationError, match=r"column named 'Intercept' is used as a term.*Rename the column"):
        hm.Model(formula, df)


def test_trials_too_large_for_whole_numbers_are_errors():
    """trials of 1e20 overflowed int64: 'The successes exceed the trials ... 0 > -9223372036854775808'."""
    df = _df().assign(n=1e20)
    with pytest.raises(hm.DataError,
                       match=r"trials column 'n' must hold positive whole numbers.*1e\+20.*above 2\*\*53"):
        hm.Model("p(count, n) ~ x + (1 | g)", df, family="binomial")


def test_an_addition_the_family_cannot_take_names_the_families_that_can():
    """The list of families for trunc() left out none and named bernoulli/binomial, which then refused it."""
    df = _df()
    with pytest.raises(hm.SpecificationError, match=r"truncation is for: gaussian, .*poisson") as e:
        hm.Model("count | trunc(lb=1) ~ x + (1 | g)", df, family="zero_inflated_poisson")
    assert " binomial" not in str(e.value) and "bernoulli" not in str(e.value)


def test_an_outcome_too_large_for_double_arithmetic_names_the_column_and_the_rescaling():
    """y * 1e300 gave "PriorError: Normal: parameter mu=nan must be finite" (its variance overflowed)."""
    df = _df().assign(y=lambda d: d["y"] * 1e300)
    with pytest.raises(hm.DataError, match=r"outcome 'y' is too large.*Rescale it, e.g. y / 1e"):
        hm.Model("y ~ x + (1 | g)", df)


def test_patsy_quoting_and_unknown_functions_say_what_to_write():
    df = _df().assign(**{"my x": lambda d: d["x"]})
    with pytest.raises(hm.SpecificationError, match=r"quote it with backticks, e.g. `my x`"):
        hm.Model("y ~ Q('my x') + (1 | g)", df)
    assert hm.Model("y ~ `my x` + (1 | g)", df).design.fixed_terms == ["Intercept", "my x"]
    with pytest.raises(hm.SpecificationError, match=r"'foo' is neither a column of the data nor a function"):
        hm.Model("y ~ foo(x) + (1 | g)", df)

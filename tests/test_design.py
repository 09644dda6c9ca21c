"""Data validation: every bad input gets a typed hmodels error naming the culprit, before compiling."""

import warnings

import numpy as np
import pandas as pd
import pytest

import hmodels as hm


@pytest.fixture(scope="module")
def sleep():
    return hm.datasets.load("sleepstudy")


def test_shapes(sleep):
    d = hm.make_design(hm.parse_formula("Reaction ~ Days + (Days | Subject)"), sleep)
    assert d.X.shape == (180, 2) and d.fixed_terms == ["Intercept", "Days"]
    f = d.factors[0]
    assert f.Z.shape == (180, 2) and f.n_levels == 18 and f.terms == ["Intercept", "Days"]
    assert f.blocks == [[0, 1]] and f.correlated == [True]
    assert np.all(f.group_sizes() == 10)


def test_nested_factor_levels():
    d = hm.make_design(hm.parse_formula("strength ~ 1 + (1 | batch/cask)"), hm.datasets.load("pastes"))
    names = [f.factor for f in d.factors]
    assert names == ["batch", "batch:cask"]
    assert d.factors[1].n_levels == 30 and d.factors[1].levels[0] == "A:a"


def test_categorical_dummies():
    d = hm.make_design(hm.parse_formula("p(incidence, size) ~ period + (1 | herd)", family="binomial"),
                       hm.datasets.load("cbpp"))
    assert d.fixed_terms == ["Intercept", "period[2]", "period[3]", "period[4]"]
    assert d.trials is not None and (d.y <= d.trials).all()


def test_unknown_column_names_closest(sleep):
    with pytest.raises(hm.MissingColumnError, match="'Reacton'.*Did you mean 'Reaction'"):
        hm.Model("Reacton ~ Days + (1 | Subject)", sleep)


def test_non_numeric_gaussian_outcome(sleep):
    with pytest.raises(hm.DataError, match="'Subject' must be numeric"):
        hm.Model("Subject ~ Days", sleep)


def test_negative_and_fractional_counts():
    df = pd.DataFrame({"y": [1, -2, 3, 4], "g": list("aabb")})
    with pytest.raises(hm.DataError, match="non-negative whole numbers"):
        hm.Model("y ~ 1 + (1 | g)", df, family="poisson")
    df["y"] = [1, 2.5, 3, 4]
    with pytest.raises(hm.DataError, match="2.5"):
        hm.Model("y ~ 1 + (1 | g)", df, family="poisson")


def test_successes_exceed_trials():
    df = pd.DataFrame({"k": [1, 5, 2, 3], "n": [3, 4, 5, 5], "g": list("aabb")})
    with pytest.raises(hm.DataError, match="exceed the trials 'n'"):
        hm.Model("p(k, n) ~ 1 + (1 | g)", df, family="binomial")


def test_single_level_factor(sleep):
    one = sleep[sleep.Subject == "308"]
    with pytest.raises(hm.DataError, match="'Subject' has only 1 level"):
        hm.Model("Reaction ~ Days + (1 | Subject)", one)


def test_slope_constant_within_groups():
    df = pd.DataFrame({"y": np.arange(8.0), "x": [0, 0, 1, 1, 2, 2, 3, 3], "g": list("aabbccdd")})
    with pytest.raises(hm.DataError, match="slope 'x' for 'g' is constant within every level"):
        hm.Model("y ~ x + (x | g)", df)


def test_missing_rows_dropped_with_count(sleep):
    df = sleep.copy()
    df["Days"] = df["Days"].astype(float)
    df.loc[[3, 7], "Reaction"] = np.nan
    df.loc[10, "Days"] = np.inf
    with pytest.warns(UserWarning, match="Dropped 3 of 180 rows"):
        m = hm.Model("Reaction ~ Days + (1 | Subject)", df)
    assert m.design.n == 177 and m.design.n_dropped == 3
    assert 3 not in m.design.rows and 10 not in m.design.rows


def test_missing_rows_raise(sleep):
    df = sleep.copy()
    df.loc[3, "Reaction"] = np.nan
    with pytest.raises(hm.DataError, match="1 of 180 rows.*'Reaction'"):
        hm.Model("Reaction ~ Days + (1 | Subject)", df, missing="raise")


def test_empty_data(sleep):
    with pytest.raises(hm.DataError, match="empty"):
        hm.Model("Reaction ~ Days + (1 | Subject)", sleep.iloc[:0])


def test_binary_outcome_checked():
    df = pd.DataFrame({"y": [0, 1, 2, 1], "g": list("aabb")})
    with pytest.raises(hm.DataError, match="only 0 and 1"):
        hm.Model("y ~ 1 + (1 | g)", df, family="bernoulli")


def test_rank_deficient_design():
    df = pd.DataFrame({"y": np.arange(6.0), "x": [1.0, 2, 3, 4, 5, 6], "g": list("aabbcc")})
    df["x2"] = 2 * df["x"]
    with pytest.raises(hm.DataError, match="rank deficient"):
        hm.Model("y ~ x + x2 + (1 | g)", df)


def test_no_warning_for_clean_data(sleep):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hm.Model("Reaction ~ Days + (Days | Subject)", sleep)


def test_declared_category_order_sets_the_reference_level():
    """An unordered pandas Categorical keeps its declared order (first = reference), as R's factor levels."""
    d = hm.datasets.load("sleepstudy")
    d["arm"] = pd.Categorical(np.where(d["Days"] > 4, "treated", "control"), categories=["treated", "control"])
    m = hm.Model("Reaction ~ arm + (1 | Subject)", d)
    assert m.design.fixed_terms == ["Intercept", "arm[control]"]  # formulae alone would sort: arm[treated]
    np.testing.assert_array_equal(m.design.X[:, 1], (d["arm"] == "control").to_numpy(float))
    d["arm_text"] = d["arm"].astype(str)  # plain strings: no declared order, sorted as formulae does
    assert hm.Model("Reaction ~ arm_text + (1 | Subject)", d).design.fixed_terms == ["Intercept", "arm_text[treated]"]


@pytest.mark.parametrize("formula,where", [
    ("y ~ x + y", "population-level terms"),
    ("y ~ x + I(y ** 2)", "population-level terms"),
    ("np.log(y) ~ x + y", "population-level terms"),
    ("y ~ x + (y | g)", "group-specific terms of 'g'"),
    ("y ~ x + offset(np.log(y))", "offset"),
])
def test_the_outcome_on_the_right_of_the_tilde_is_refused(formula, where):
    """Found by the adversarial sweep: y ~ x + y fitted a coefficient of 1 for y and a sigma of 0."""
    d = pd.DataFrame({"y": np.arange(1.0, 13.0), "x": np.arange(12.0) % 3, "g": list("abc") * 4})
    with pytest.raises(hm.SpecificationError,
                       match=f"outcome column 'y' is also on the right of '~' \\(in the {where}"):
        hm.Model(formula, d)


def test_the_outcome_as_a_family_parameters_predictor_is_refused():
    d = pd.DataFrame({"y": np.arange(1.0, 13.0), "x": np.arange(12.0) % 3})
    with pytest.raises(hm.SpecificationError, match="formula of sigma"):
        hm.Model("y ~ x", d, dpars={"sigma": "1 + y"})


def test_trials_and_censoring_columns_may_be_predictors():
    """Only the outcome is refused: the number of trials is an ordinary covariate (brms allows it too)."""
    d = pd.DataFrame({"k": [1, 2, 3, 4, 2, 1], "n": [5, 6, 7, 8, 9, 5], "g": list("ababab")})
    assert "log(n)" in hm.Model("p(k, n) ~ log(n) + (1 | g)", d, family="binomial").design.fixed_terms


def test_the_outcome_in_a_nonlinear_expression_is_refused():
    """Found by the sweep: conc ~ A * exp(-k * conc) was fitted (the outcome as its own covariate)."""
    theoph = hm.datasets.load("theoph")
    ok = hm.Model("conc ~ A * exp(-k * Time)", theoph, nonlinear={"A": "1 + (1 | Subject)", "k": "1"},
                  start={"A": 8, "k": 0.1})
    assert ok.design.n == len(theoph)
    with pytest.raises(hm.SpecificationError,
                       match=r"outcome column 'conc' is also on the right of '~' \(in the nonlinear"):
        hm.Model("conc ~ A * exp(-k * conc)", theoph, nonlinear={"A": "1 + (1 | Subject)", "k": "1"},
                 start={"A": 8, "k": 0.1})


@pytest.mark.parametrize("formula", ["y ~ x + (1 | y)", "y ~ x + (1 | g:y)"])
def test_the_outcome_as_a_grouping_factor_is_refused_as_such(formula):
    """Found by the sweep: (1 | y) was refused as a naming clash, not as the outcome on the right of '~'.

    That error's fix (rename the column to y_group) kept the outcome as its own grouping factor.
    """
    d = pd.DataFrame({"y": np.arange(1.0, 13.0), "x": np.arange(12.0) % 3, "g": list("abc") * 4})
    with pytest.raises(hm.SpecificationError,
                       match=r"outcome column 'y' is also on the right of '~' \(in the grouping"):
        hm.Model(formula, d)


@pytest.mark.parametrize("lhs", ["y | se(s, sigma = TRUE)", "y | se(s + 1)"])
def test_se_of_anything_but_a_column_is_refused_with_the_fix(lhs):
    """brms's ``se(s, sigma = TRUE)`` or an expression in se(): a typed error (was a bare KeyError; sweep)."""
    d = pd.DataFrame({"y": [0.3, 1.2, -0.4, 0.8], "s": [0.5, 0.4, 0.6, 0.5], "g": list("aabb")})
    with pytest.raises(hm.SpecificationError, match=r"se\(\) takes one column.*write 'y \| se\(s\) ~"):
        hm.Model(f"{lhs} ~ 1 + (1 | g)", d)


def test_declared_categories_without_rows_are_dropped():
    """A Categorical predictor's unused category is dropped, as R's model.frame and brms do.

    One declared, or only in rows dropped for missing values, gave an all-zero dummy column and a rank-deficiency
    error.
    """
    rng = np.random.default_rng(0)
    d = pd.DataFrame({"y": rng.normal(size=60), "x": rng.normal(size=60), "cond": rng.choice(list("abc"), 60),
                      "g": np.repeat([f"g{i}" for i in range(6)], 10)})
    d["cond"] = pd.Categorical(d["cond"], categories=["zz", "c", "a", "b"])  # declared order: c is the reference
    m = hm.Model("y ~ x + cond + (1 | g)", d)
    assert m.design.fixed_terms == ["Intercept", "x", "cond[a]", "cond[b]"]
    np.testing.assert_array_equal(m.design.X[:, 2], (d["cond"] == "a").to_numpy(dtype=float))
    d2 = d.assign(x=np.where(d["cond"] == "b", np.nan, d["x"]))  # every 'b' row is dropped
    with pytest.warns(UserWarning, match="Dropped"):
        m2 = hm.Model("y ~ x + cond + (1 | g)", d2)
    assert m2.design.fixed_terms == ["Intercept", "x", "cond[a]"]


@pytest.mark.parametrize("formula, column", [
    ("y ~ t + (1 | g)", pd.date_range("2020-01-01", periods=60, freq="D")),
    ("y ~ x + (t | g)", pd.to_timedelta(np.arange(60), unit="h")),
    ("y ~ t + (1 | g)", pd.Series([1, "a", 2.5] * 20, dtype=object)),
])
def test_predictors_formulae_cannot_encode_name_the_column(formula, column):
    """formulae said only 'Variable is of an unrecognized type (<class 'pandas.Series'>)'."""
    rng = np.random.default_rng(0)
    d = pd.DataFrame({"y": rng.normal(size=60), "x": rng.normal(size=60), "g": np.repeat(list("abcdef"), 10),
                      "t": column})
    with pytest.raises(hm.DataError, match=r"the column 't' holds .* cannot use as a predictor. Convert it"):
        hm.Model(formula, d)


@pytest.mark.parametrize("formula, kw, what", [
    ("y | weights(v) ~ x + (1 | g)", {}, "weights 'v'"),
    ("k | trials(v) ~ x + (1 | g)", {"family": "binomial"}, "trials column 'v'"),
    ("y | se(v) ~ x + (1 | g)", {}, "standard-error column 'v'"),
])
@pytest.mark.parametrize("values, fragment", [
    (pd.date_range("2020-01-01", periods=60, freq="D"), "dates or durations"),  # was read as nanoseconds, silently
    (np.r_[["a"], np.full(59, "2")], r"found 'a' in 1 row \(index 0\)"),  # was numpy's ValueError
])
def test_weights_trials_and_se_must_be_numbers(formula, kw, what, values, fragment):
    rng = np.random.default_rng(0)
    d = pd.DataFrame({"y": rng.normal(size=60), "x": rng.normal(size=60), "g": np.repeat(list("abcdef"), 10),
                      "k": rng.integers(0, 2, 60), "v": values})
    with pytest.raises(hm.DataError, match=f"The {what} must hold numbers.*{fragment}"):
        hm.Model(formula, d, **kw)


def test_interaction_levels_that_would_merge_are_refused():
    """('1:2', '3') and ('1', '2:3') were both level '1:2:3' of (1 | a:b): two groups merged into one, silently."""
    d = pd.DataFrame({"y": np.arange(40.0) % 7, "a": ["1:2"] * 10 + ["1"] * 10 + ["3"] * 10 + ["4"] * 10,
                      "b": ["3"] * 10 + ["2:3"] * 10 + ["5"] * 10 + ["6"] * 10})
    with pytest.raises(hm.DataError, match=r"levels contain ':' themselves.*merged"):
        hm.Model("y ~ 1 + (1 | a:b)", d)
    assert hm.Model("y ~ 1 + (1 | a:b)", d.assign(a=d["a"].str.replace(":", "_"))).design.factors[0].n_levels == 4


def test_nested_factor_with_mixed_number_and_text_labels():
    """(1 | school/cls) with classes '1', '2', '1b' crashed sorting the levels (TypeError: str < int)."""
    d = pd.DataFrame({"y": np.arange(24.0) % 5, "school": np.repeat(["s1", "s2"], 12),
                      "cls": np.tile(["1", "2", "1b"], 8)})
    f = hm.Model("y ~ 1 + (1 | school/cls)", d).design.factor("school:cls")
    assert f.levels == ["s1:1", "s1:2", "s1:1b", "s2:1", "s2:2", "s2:1b"]  # numbers by value, then text


@pytest.mark.parametrize("dtype", ["Int64", "Float64", "double[pyarrow]"])
def test_nullable_and_pyarrow_numbers_work_in_every_term(dtype):
    """Nullable and pyarrow numbers work in every term.

    formulae failed on pandas' extension arrays: offset(np.log(e)) of an Int64 exposure ('FloatingArray' object has
    no attribute 'flatten'), x:cond of a pyarrow double ('too many indices for array').
    """
    rng = np.random.default_rng(0)
    d = pd.DataFrame({"k": rng.poisson(3, 60), "x": rng.integers(1, 9, 60).astype(float), "e": rng.integers(1, 5, 60),
                      "cond": rng.choice(list("abc"), 60), "g": np.repeat(list("abcdef"), 10)})
    plain = hm.Model("k ~ x:cond + offset(np.log(e)) + (1 | g)", d, family="poisson").design
    ext = hm.Model("k ~ x:cond + offset(np.log(e)) + (1 | g)", d.astype({"x": dtype, "e": dtype}),
                   family="poisson").design
    np.testing.assert_array_equal(ext.X, plain.X)
    np.testing.assert_allclose(ext.offset, np.log(d["e"].to_numpy(float)))


def test_a_grouping_column_whose_values_share_a_label_is_refused():
    """The int 1 and the string '1' in one object column were merged into one group (levels are text)."""
    d = pd.DataFrame({"y": np.arange(12.0), "g": pd.Series([1, "1", "b", "c"] * 3, dtype=object)})
    with pytest.raises(hm.DataError, match=r"grouping column 'g' holds different values with the same text"):
        hm.Model("y ~ 1 + (1 | g)", d)
    d["g"] = d["g"].astype(str)  # the fix the message names: one group "1"
    assert hm.Model("y ~ 1 + (1 | g)", d).design.factor("g").levels == ["1", "b", "c"]

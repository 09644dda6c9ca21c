"""Prediction for existing groups, new groups and the population level (hmodels.predict)."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import hmodels as hm
from hmodels.linpred import linear_predictor, mean_draws
from hmodels.predict import new_design


def _arr(fit, name):
    return np.asarray(fit.draws[name].transpose("chain", "draw", ...).values)


NEW = pd.DataFrame({"Days": [0, 9, 0, 9], "Subject": ["308", "308", "new", "new"]})


def test_existing_subject_is_fixed_plus_group_effect_exactly(sleep_fit):
    p = sleep_fit.predict(NEW.iloc[:2], kind="link")
    b, r = _arr(sleep_fit, "b"), _arr(sleep_fit, "r_Subject")
    j = list(sleep_fit.meta["factors"]["Subject"]["levels"]).index("308")
    days = np.array([0.0, 9.0])
    expected = (b[..., 0, None] + r[..., j, 0, None]) + (b[..., 1, None] + r[..., j, 1, None]) * days
    np.testing.assert_allclose(p.values, expected, rtol=1e-12, atol=1e-9)
    assert p.draws.dims == ("chain", "draw", "obs")


def test_exclude_equals_x_times_b(sleep_fit):
    p = sleep_fit.predict(NEW, kind="link", groups="exclude")
    b = _arr(sleep_fit, "b")
    X = np.column_stack([np.ones(4), NEW["Days"].to_numpy(float)])
    np.testing.assert_allclose(p.values, np.einsum("cdp,np->cdn", b, X), rtol=1e-12)
    # identity link: mean == link
    np.testing.assert_array_equal(sleep_fit.predict(NEW, groups="exclude").values, p.values)


def test_new_subject_spread_matches_group_sd(sleep_fit):
    pn = sleep_fit.predict(NEW, kind="link", groups="new", seed=11)
    pe = sleep_fit.predict(NEW, kind="link", groups="exclude")
    assert pn.new_levels == {"Subject": ["new"]}
    # existing subject is unaffected by groups="new"
    np.testing.assert_array_equal(pn.values[..., :2], sleep_fit.predict(NEW.iloc[:2], kind="link").values)
    u = (pn.values - pe.values)[..., 2:].reshape(-1, 2)  # the fresh group effect at Days 0 and 9
    n = u.shape[0]
    sd, cor = _arr(sleep_fit, "sd_Subject").reshape(n, 2), _arr(sleep_fit, "cor_Subject").reshape(n, 2, 2)[:, 0, 1]
    var0 = np.mean(sd[:, 0] ** 2)
    var9 = np.mean(sd[:, 0] ** 2 + 81 * sd[:, 1] ** 2 + 18 * cor * sd[:, 0] * sd[:, 1])
    # sample SD of n draws has relative Monte Carlo SE ~ 1/sqrt(2n) (heavier tails: allow 4 SE)
    tol = 4 / np.sqrt(2 * n)
    assert abs(u[:, 0].std() / np.sqrt(var0) - 1) < tol
    assert abs(u[:, 1].std() / np.sqrt(var9) - 1) < tol
    assert abs(u[:, 0].mean()) < 4 * np.sqrt(var0 / n)
    # the same new subject shares one effect across its rows: Days 0 and 9 differ by its slope only
    assert np.corrcoef(u[:, 0], u[:, 1])[0, 1] > 0.2
    s_new, s_exc = pn.summary(), pe.summary()
    width = lambda s: (s["hdi_high"] - s["hdi_low"]).to_numpy()  # noqa: E731
    assert np.all(width(s_new)[2:] > 1.5 * width(s_exc)[2:])
    assert np.all(width(s_new)[2:] > 1.5 * width(s_new)[:2])


def test_new_levels_are_reproducible_with_seed(sleep_fit):
    a = sleep_fit.predict(NEW, groups="new", seed=3).values
    b = sleep_fit.predict(NEW, groups="new", seed=3).values
    c = sleep_fit.predict(NEW, groups="new", seed=4).values
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[..., 2], c[..., 2])


def test_unseen_level_with_include_is_a_clear_error(sleep_fit):
    with pytest.raises(hm.DataError, match=r"Subject: 'new'.*groups='new'.*groups='exclude'"):
        sleep_fit.predict(NEW)


def test_default_newdata_is_the_fitted_data(sleep_fit):
    np.testing.assert_array_equal(sleep_fit.predict(kind="link").values, linear_predictor(sleep_fit))
    s = sleep_fit.predict().summary(prob=0.9)
    assert list(s.columns) == ["mean", "sd", "hdi_low", "hdi_high"] and len(s) == 180
    assert (s["hdi_low"] < s["mean"]).all() and (s["mean"] < s["hdi_high"]).all()


def test_response_draws_add_residual_noise(sleep_fit):
    pm_ = sleep_fit.predict(NEW.iloc[:2], kind="mean")
    pr = sleep_fit.predict(NEW.iloc[:2], kind="response", seed=1)
    sigma = _arr(sleep_fit, "sigma").ravel()
    var_extra = pr.values.reshape(-1, 2).var(axis=0) - pm_.values.reshape(-1, 2).var(axis=0)
    n = sigma.size
    np.testing.assert_allclose(var_extra, np.mean(sigma**2), rtol=8 / np.sqrt(n))


def test_binomial_mean_is_probability_and_response_needs_trials(cbpp_fit):
    new = pd.DataFrame({"period": ["1", "4"], "herd": ["1", "1"]})
    p = cbpp_fit.predict(new, kind="mean")
    eta = cbpp_fit.predict(new, kind="link").values
    np.testing.assert_allclose(p.values, mean_draws(cbpp_fit, eta))
    assert ((p.values > 0) & (p.values < 1)).all()
    with pytest.raises(hm.MissingColumnError, match="trials column 'size'"):
        cbpp_fit.predict(new, kind="response")
    r = cbpp_fit.predict(new.assign(size=[10, 20]), kind="response", seed=1).values
    assert r.min() >= 0 and r[..., 0].max() <= 10 and r[..., 1].max() <= 20
    assert np.array_equal(r, np.round(r))


def test_unseen_fixed_category_is_a_clear_error(cbpp_fit):
    new = pd.DataFrame({"period": ["5"], "herd": ["1"]})
    with pytest.raises(hm.DataError, match=r"column 'period' has categories the model was not fitted with: '5'"):
        cbpp_fit.predict(new, groups="exclude")


def test_missing_predictor_column(sleep_fit):
    with pytest.raises(hm.MissingColumnError, match="'Days'"):
        sleep_fit.predict(pd.DataFrame({"Subject": ["308"]}))


def test_new_data_use_training_encoding():
    """scale() and categorical coding come from the fitted data, not from newdata."""
    data = hm.datasets.load("orthodont")
    model = hm.Model("distance ~ scale(age) + Sex + (1 | Subject)", data)
    d = model.design
    fake = SimpleNamespace(spec=model.spec, data=d.data, meta={
        "fixed_terms": d.fixed_terms,
        "factors": {f.factor: {"levels": f.levels, "terms": f.terms, "cors": []} for f in d.factors}})
    rows = [0, 5, 50, 90]
    nd, unseen = new_design(fake, data.iloc[rows][["age", "Sex", "Subject"]])
    np.testing.assert_allclose(nd.X, d.X[rows], rtol=1e-12)
    np.testing.assert_array_equal(nd.factors[0].codes, d.factors[0].codes[rows])
    assert unseen == {}
    # a single row would have scale() = nan if standardised on its own
    one, _ = new_design(fake, data.iloc[[7]][["age", "Sex", "Subject"]])
    np.testing.assert_allclose(one.X, d.X[[7]], rtol=1e-12)


def test_non_finite_transformation_of_newdata_names_term_and_rows():
    data = hm.datasets.load("sleepstudy").assign(Days1=lambda d: d["Days"] + 1)
    model = hm.Model("Reaction ~ np.log(Days1) + (1 | Subject)", data)
    d = model.design
    fake = SimpleNamespace(spec=model.spec, data=d.data, meta={
        "fixed_terms": d.fixed_terms,
        "factors": {f.factor: {"levels": f.levels, "terms": f.terms, "cors": []} for f in d.factors}})
    new = pd.DataFrame({"Days1": [1.0, 0.0, -1.0], "Subject": ["308"] * 3}, index=["a", "b", "c"])
    with pytest.raises(hm.DataError, match=r"term 'np\.log\(Days1\)' \(population-level, in newdata\) is not finite "
                                           r".* 2 rows \(index b, c\)"):
        new_design(fake, new)


def test_the_docstring_says_what_is_predicted_for_censored_truncated_and_weighted_outcomes():
    from hmodels.predict import predict

    doc = " ".join(predict.__doc__.split())
    assert "censored outcome (``cens()``) is predicted uncensored" in doc
    assert "truncated one (``trunc()``) is drawn from the truncated distribution" in doc
    assert "``weights()`` do not enter a prediction" in doc


def test_integer_ids_in_a_float_column_are_the_same_groups():
    """Integer IDs in a float column are the same groups as the integers.

    A NaN made the subject column float: levels '300.0', ..., and newdata with 300 (int) was an unseen group (an
    error, or with groups='new' a fitted subject silently predicted as a new one).
    """
    import warnings

    rng = np.random.default_rng(2)
    d = pd.DataFrame({"x": rng.normal(size=60), "g": np.repeat(np.arange(6) + 300, 10)})
    d["y"] = d["x"] + np.repeat(rng.normal(size=6), 10) + rng.normal(size=60)
    d.loc[3, "g"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = hm.Model("y ~ x + (1 | g)", d)
        assert m.design.factors[0].levels == [str(i) for i in range(300, 306)]
        fit = m.fit(draws=50, tune=50, chains=1, seed=1, progressbar=False)
    ref = fit.predict(pd.DataFrame({"x": [0.0, 0.0], "g": ["300", "301"]}), kind="link").values
    for ids in ([300, 301], [300.0, 301.0]):
        new = pd.DataFrame({"x": [0.0, 0.0], "g": ids})
        np.testing.assert_array_equal(fit.predict(new, kind="link").values, ref)
        np.testing.assert_array_equal(fit.predict(new, kind="link", groups="new").values, ref)


def test_newdata_with_nullable_or_pyarrow_exposure():
    """predict evaluated offset(np.log(e)) of an Int64 / Float64 / pyarrow newdata column with a formulae crash."""
    import warnings

    rng = np.random.default_rng(1)
    d = pd.DataFrame({"x": rng.normal(size=80), "g": np.repeat(list("abcd"), 20), "e": rng.integers(1, 5, 80)})
    d["k"] = rng.poisson(np.exp(0.2 + 0.3 * d["x"]) * d["e"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = hm.Model("k ~ x + offset(np.log(e)) + (1 | g)", d, family="poisson").fit(
            draws=50, tune=50, chains=1, seed=1, progressbar=False)
    new = pd.DataFrame({"x": [0.0, 1.0], "g": ["a", "b"], "e": [1, 2]})
    ref = fit.predict(new, kind="mean").values
    for dtype in ("Int64", "Float64", "double[pyarrow]"):
        np.testing.assert_array_equal(fit.predict(new.astype({"e": dtype}), kind="mean").values, ref)


def test_population_predictions_do_not_need_the_grouping_column(sleep_fit):
    """groups='exclude' leaves every group effect out, so newdata need not name a group (it was refused)."""
    nd = pd.DataFrame({"Days": [1.0, 5.0]}, index=[7, 9])
    a = sleep_fit.predict(nd, groups="exclude")
    b = sleep_fit.predict(nd.assign(Subject="308"), groups="exclude")
    np.testing.assert_array_equal(np.asarray(a.draws), np.asarray(b.draws))
    assert list(a.draws.coords["obs"].values) == [7, 9]
    with pytest.raises(hm.MissingColumnError, match="Subject"):  # with the group effects it is needed
        sleep_fit.predict(nd)
    with pytest.raises(hm.MissingColumnError, match="Days"):  # a population-level predictor still is
        sleep_fit.predict(pd.DataFrame({"Subject": ["308"]}), groups="exclude")


def test_population_predictions_without_a_family_parameters_grouping_column():
    """A sigma formula's group term kept its column 'needed' for groups='exclude' (found by a sweep)."""
    import warnings

    rng = np.random.default_rng(0)
    d = pd.DataFrame({"x": rng.normal(size=120), "g": rng.choice(list("abcde"), 120),
                      "h": rng.choice(list("pqrs"), 120)})
    d["y"] = 1 + d["x"] + rng.normal(size=120)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = hm.Model("y ~ x + (1 | g)", d, dpars={"sigma": "1 + (1 | h)"}).fit(draws=60, tune=60, chains=2, seed=1,
                                                                                progressbar=False)
    a = fit.predict(d[["x"]].head(3), groups="exclude", kind="response", seed=2)
    b = fit.predict(d.head(3), groups="exclude", kind="response", seed=2)
    np.testing.assert_array_equal(np.asarray(a.draws), np.asarray(b.draws))

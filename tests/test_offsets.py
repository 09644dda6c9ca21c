"""Offsets: ``offset(expr)`` in a formula (or ``hm.spec(offset=...)``) enters the linear predictor with coefficient 1.

Checked here: the compiled engine's log density equals the PyMC graph's with an offset (poisson,
negative binomial, binomial, gaussian joint and integrated out, with and without the coefficients
integrated out too) and its gradients equal finite differences; repeated rows are aggregated only
when their offsets agree; a poisson model with exposures recovers its coefficients; a gaussian
offset is the same model as the outcome minus the offset; predictions evaluate the offset on new
data; a saved fit rebuilds it; and no coefficient is ever fitted for an offset (the old behaviour).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from test_engine import _log_prior_only, _points, assert_engine_matches_pymc

import hmodels as hm
from hmodels.engine.layout import EngineModel
from hmodels.linpred import linear_predictor

rng0 = np.random.default_rng(7)
N = 60
DATA = pd.DataFrame({"x": rng0.normal(size=N), "g": np.repeat(list("abcdef"), 10), "h": np.tile(list("pqrs"), 15),
                     "expo": rng0.uniform(0.5, 5.0, N), "n": rng0.integers(3, 9, N), "o": rng0.normal(size=N),
                     "cat": np.array(list("uv"))[rng0.integers(0, 2, N)]})
DATA["yc"] = rng0.poisson(DATA.expo * np.exp(0.3 + 0.5 * DATA.x))
DATA["yk"] = rng0.binomial(DATA.n, 0.4)
DATA["yg"] = 2 + DATA.x + DATA.o + rng0.normal(size=N)
DATA["e3"] = np.array([1.0, 2.0, 4.0])[rng0.integers(0, 3, N)]  # few distinct exposures: rows to aggregate

# id: formula, family, factor integrated out
CASES = {
    "poisson": ("yc ~ x + offset(np.log(expo)) + (1 | g)", "poisson", None),
    "negbin": ("yc ~ x + offset(log(expo)) + (x | g)", "negativebinomial", None),
    "binom-logit": ("p(yk, n) ~ x + offset(o) + (1 | g) + (1 | h)", "binomial", None),
    "gauss-joint": ("yg ~ x + offset(o) + (x | g)", "gaussian", None),
    "gauss-collapsed": ("yg ~ x + offset(o) + (x | g)", "gaussian", "g"),
    "gauss-partial": ("yg ~ x + offset(o) + (1 | g) + (1 | h)", "gaussian", "g"),
    "pois-aggregated": ("yc ~ cat + offset(np.log(e3)) + (1 | g)", "poisson", None),
}


def _model(case, integrate_coefficients=False):
    formula, family, collapse = CASES[case]
    m = hm.Model(formula, DATA, family=family)
    em = EngineModel(m.design, m.priors, m.centering(collapse), collapse=collapse,
                     integrate_coefficients=integrate_coefficients)
    return m, em


@pytest.mark.parametrize("case", list(CASES))
def test_engine_log_density_matches_pymc_with_an_offset(case):
    m, em = _model(case)
    assert m.design.offset is not None and em.intbeta is False
    # the offset is a constant: gradients are unchanged in form, and checked against finite differences
    assert_engine_matches_pymc(m, em, CASES[case][2], case, gradient=True)


@pytest.mark.parametrize("case", ["gauss-collapsed", "gauss-partial"])
def test_integrated_coefficients_with_an_offset_match_the_dense_mvn(case):
    """Coefficients and one factor integrated out: log N(y | offset + Xc m0 + sampled effects, V), by scipy."""
    m, em = _model(case, integrate_coefficients=True)
    assert em.intbeta
    d = m.design
    for x in _points(em, n=2, seed=2):
        v = em.constrained(x[None])
        cov = np.diag(np.full(d.n, v["sigma"][0] ** 2)) + em.Xc @ em.L0 @ em.L0.T @ em.Xc.T
        mean = d.offset + em.Xc @ em.m0
        for f, fd in zip(em.factors, d.factors):
            if f.collapsed:
                B, k = v[f"_B_{f.name}"][0], len(f.terms)
                Z = np.zeros((d.n, fd.n_levels * k))
                for t in range(k):
                    Z[np.arange(d.n), fd.codes * k + t] = fd.Z[:, t]
                cov = cov + Z @ np.kron(np.eye(fd.n_levels), B @ B.T) @ Z.T
            else:
                mean = mean + (fd.Z * v[f"r_{f.name}"][0][fd.codes]).sum(axis=1)
        dense = stats.multivariate_normal(mean, cov).logpdf(d.y)
        lp = em.logp_grad(x, jacobian=False)[0]
        assert math.isclose(lp - _log_prior_only(m, em, x), dense, rel_tol=1e-9, abs_tol=1e-8)


def test_rows_with_different_offsets_are_not_aggregated_together():
    m, em = _model("pois-aggregated")
    a = em.aggregated
    assert a is not None
    # one aggregated row per distinct (cat, g, offset): merging different offsets would change the likelihood
    distinct = len(DATA.groupby(["cat", "g", "e3"]).size())
    assert a["unique"] == distinct > len(DATA.groupby(["cat", "g"]).size())
    plain = hm.Model("yc ~ cat + (1 | g)", DATA, family="poisson")
    assert EngineModel(plain.design, plain.priors, plain.centering(None)).aggregated["unique"] < distinct


# -- fits ------------------------------------------------------------------------------------------
TRUTH = {"Intercept": -1.0, "x": 0.5, "sd": 0.4}


@pytest.fixture(scope="module")
def exposure_data():
    rng = np.random.default_rng(2024)
    n_g, per = 25, 24
    g = np.repeat([f"s{i:02d}" for i in range(n_g)], per)
    x = rng.normal(size=n_g * per)
    expo = rng.uniform(0.5, 20.0, n_g * per)  # exposures over a 40-fold range
    u = rng.normal(0, TRUTH["sd"], n_g)[np.repeat(np.arange(n_g), per)]
    rate = np.exp(TRUTH["Intercept"] + TRUTH["x"] * x + u)
    return pd.DataFrame({"count": rng.poisson(rate * expo), "x": x, "expo": expo, "g": g})


@pytest.fixture(scope="module")
def exposure_fit(exposure_data):
    m = hm.Model("count ~ x + offset(np.log(expo)) + (1 | g)", exposure_data, family="poisson")
    return m.fit(draws=500, tune=500, chains=2, seed=3, progressbar=False)


def test_exposure_model_recovers_the_rate_coefficients(exposure_fit):
    fe = exposure_fit.fixed_effects()
    assert list(fe.index) == ["Intercept", "x"]
    for term in ("Intercept", "x"):
        mean, sd = float(fe.loc[term, "mean"]), float(fe.loc[term, "sd"])
        assert abs(mean - TRUTH[term]) < 3 * sd, (term, mean, sd)
    assert exposure_fit.divergences == 0
    # the offset is data, not a parameter: nothing in the posterior is named after it
    names = list(exposure_fit.draws.data_vars) + [str(t) for t in exposure_fit.draws["b"].coords["term"].values]
    assert not any("offset" in n or "expo" in n for n in names)


def test_no_coefficient_is_ever_fitted_for_an_offset(exposure_fit, exposure_data):
    """The behaviour before offsets were refused: a coefficient 'offset(np.log(expo))' with a Normal prior."""
    assert not any("offset" in t for t in exposure_fit.meta["fixed_terms"])
    assert not any("offset" in t for t in exposure_fit.fixed_effects().index)
    assert not any("offset" in r.slot.param for r in exposure_fit.priors)
    for formula in ("count ~ x + offset(np.log(expo)) + (1 | g)", "count ~ offset(np.log(expo)) + x + (1 | g)",
                    "count ~ 0 + x + offset(expo) + (1 | g)"):
        d = hm.Model(formula, exposure_data, family="poisson").design
        assert not any("offset" in t or "expo" in t for t in d.fixed_terms), formula
        assert d.offset is not None and d.X.shape[1] == len(d.fixed_terms)
    s = hm.spec("count", fixed=["x", "offset(np.log(expo))"], family="poisson")  # moved out of fixed
    assert s.fixed == ("x",) and s.offset == "np.log(expo)"


def test_linear_predictor_includes_the_offset(exposure_fit, exposure_data):
    eta = linear_predictor(exposure_fit)
    b = exposure_fit.draws["b"].transpose("chain", "draw", "term").values
    r = exposure_fit.draws["r_g"].transpose("chain", "draw", ...).values[..., 0]
    d = exposure_fit.design
    manual = np.einsum("cdp,np->cdn", b, d.X) + r[:, :, d.factors[0].codes] + np.log(exposure_data["expo"].values)
    np.testing.assert_allclose(eta, manual, rtol=1e-12, atol=1e-12)
    eta0 = linear_predictor(exposure_fit, groups="exclude")  # the offset is population level: kept
    np.testing.assert_allclose(eta0, np.einsum("cdp,np->cdn", b, d.X) + d.offset, rtol=1e-12)


def test_predict_evaluates_the_offset_on_newdata(exposure_fit):
    new = pd.DataFrame({"x": [0.0, 0.0, 1.0], "expo": [1.0, 10.0, 10.0], "g": ["s00"] * 3})
    link = exposure_fit.predict(new, kind="link").draws.values
    mean = exposure_fit.predict(new, kind="mean").draws.values
    np.testing.assert_allclose(link[..., 1] - link[..., 0], np.log(10.0), rtol=1e-12)  # kind="link" includes it
    np.testing.assert_allclose(mean[..., 1] / mean[..., 0], 10.0, rtol=1e-10)
    b = exposure_fit.draws["b"].transpose("chain", "draw", "term").values
    r = exposure_fit.draws["r_g"].sel(g="s00").transpose("chain", "draw", ...).values[..., 0]
    np.testing.assert_allclose(link[..., 2], b[..., 0] + b[..., 1] + r + np.log(10.0), rtol=1e-12)
    pop = exposure_fit.predict(new, kind="link", groups="exclude").draws.values
    np.testing.assert_allclose(pop[..., 1], b[..., 0] + np.log(10.0), rtol=1e-12)
    counts = exposure_fit.predict(new, kind="response", seed=1).draws.values
    assert counts[..., 1].mean() > 5 * counts[..., 0].mean()


def test_predict_without_the_offset_column_is_a_typed_error(exposure_fit):
    with pytest.raises(hm.MissingColumnError, match=r"'expo'.*offset\(np\.log\(expo\)\)"):
        exposure_fit.predict(pd.DataFrame({"x": [0.0], "g": ["s00"]}), kind="link")
    with pytest.raises(hm.DataError, match=r"offset 'np.log\(expo\)' is not finite \(-inf\) in newdata in 1 row "
                                           r"\(index 7\)"):
        exposure_fit.predict(pd.DataFrame({"x": [0.0, 1.0], "expo": [1.0, 0.0], "g": ["s00"] * 2}, index=[6, 7]))


def test_interpretation_and_components_run_with_an_offset(exposure_fit, exposure_data):
    """The reference grid holds the offset's columns like any predictor (at their mean, or at=)."""
    b0 = exposure_fit.draws["b"].sel(term="Intercept").values
    b1 = exposure_fit.draws["b"].sel(term="x").values
    x_mean = exposure_data["x"].mean()
    per_unit = exposure_fit.marginal_means(at={"expo": 1.0}, groups="exclude")  # the rate per unit of exposure
    np.testing.assert_allclose(float(per_unit.table["estimate"].iloc[0]), np.exp(b0 + b1 * x_mean).mean(), rtol=1e-10)
    at_mean = exposure_fit.marginal_means(groups="exclude")  # offset at log(mean(expo))
    np.testing.assert_allclose(float(at_mean.table["estimate"].iloc[0]),
                               (exposure_data["expo"].mean() * np.exp(b0 + b1 * x_mean)).mean(), rtol=1e-10)
    # R² (Nakagawa): the fixed variance is that of X b, without the offset (as MuMIn's model matrix)
    from hmodels.components import _decomposition_draws

    fixed = _decomposition_draws(exposure_fit)["fixed"]
    X = exposure_fit.design.X
    b = exposure_fit.draws["b"].transpose("chain", "draw", "term").values
    np.testing.assert_allclose(fixed, np.einsum("cdp,np->cdn", b, X).var(axis=-1), rtol=1e-10)
    assert np.isfinite(exposure_fit.r2()["mean"]).all()
    assert np.isfinite(exposure_fit.icc()["mean"]).all()


def test_save_and_load_rebuild_the_offset(exposure_fit, tmp_path):
    path = tmp_path / "offset.nc"
    exposure_fit.save(path)
    loaded = hm.load(path)
    assert loaded.spec == exposure_fit.spec and loaded.spec.offset == "np.log(expo)"
    np.testing.assert_array_equal(loaded.design.offset, exposure_fit.design.offset)
    new = pd.DataFrame({"x": [0.5], "expo": [3.0], "g": ["s01"]})
    np.testing.assert_array_equal(loaded.predict(new, kind="link").draws.values,
                                  exposure_fit.predict(new, kind="link").draws.values)
    np.testing.assert_allclose(linear_predictor(loaded), linear_predictor(exposure_fit), rtol=0, atol=0)


@pytest.mark.parametrize("method", ["collapsed", "joint"])
def test_gaussian_offset_is_the_outcome_minus_the_offset(method):
    """y ~ x + offset(o) is y - o ~ x for an identity link: the same posterior (same seed, up to MC error).

    Integrated out, the engine reads y - o itself (bit-identical draws); joint, the kernel adds o to eta.
    """
    rng = np.random.default_rng(5)
    g = np.repeat([f"g{i}" for i in range(12)], 15)
    x = rng.normal(size=g.size)
    o = rng.normal(3.0, 2.0, g.size)
    y = 1.0 + 0.7 * x + o + rng.normal(0, 0.5, 12)[np.repeat(np.arange(12), 15)] + rng.normal(size=g.size)
    df = pd.DataFrame({"y": y, "x": x, "o": o, "g": g, "ynet": y - o})
    kw = dict(draws=1000, tune=500, chains=2, seed=11, progressbar=False, method=method)
    with_offset = hm.Model("y ~ x + offset(o) + (1 | g)", df).fit(**kw)
    moved = hm.Model("ynet ~ x + (1 | g)", df).fit(**kw)
    assert with_offset.meta["method"] == method
    assert [str(r.prior) for r in with_offset.priors] == [str(r.prior) for r in moved.priors]
    for name in ("b", "sd_g", "sigma"):
        a, c = with_offset.draws[name], moved.draws[name]
        sd = c.std(("chain", "draw"))
        # joint: the two runs' trajectories part after a few steps (rounding), so their means differ by MC error,
        # about sd * sqrt(2 / ESS) ~ 0.06 sd here: 0.25 sd is 4 of those
        assert (abs(a.mean(("chain", "draw")) - c.mean(("chain", "draw"))) < 0.25 * sd).all(), name
        assert np.allclose(a.std(("chain", "draw")), sd, rtol=0.15), name
        if method == "collapsed":
            np.testing.assert_allclose(a.values, c.values, rtol=1e-9, atol=1e-12)


# -- specification and data errors ---------------------------------------------------------------
def test_offset_spec_representation():
    s = hm.parse_formula("count ~ x + offset(np.log( expo )) + (1 | g)", family="poisson")
    assert s.offset == "np.log(expo)" and s.fixed == ("x",)
    assert s.formula == "count ~ 1 + x + offset(np.log(expo)) + (1 | g)"
    assert hm.parse_formula(s.formula, family="poisson") == s
    assert hm.ModelSpec.from_dict(s.to_dict()) == s
    assert s == hm.spec("count", fixed=["x"], groups=[hm.RandomIntercept("g")], family="poisson",
                        offset="np.log(expo)")
    two = hm.parse_formula("y ~ x + offset(np.log(a)) + offset(b)")  # several offsets are summed
    assert two.offset == "np.log(a) + b" and two == hm.spec("y", ["x"], offset=["np.log(a)", "b"])
    assert not hm.parse_formula("y ~ offset(e) - 1").intercept


@pytest.mark.parametrize("formula, fragment", [
    ("count ~ x + (1 + offset(expo) | g)", "cannot vary by group"),
    ("count ~ x + (offset(expo) || g)", "cannot vary by group"),
    ("count ~ x:offset(expo)", "not a term of its own"),
    ("count ~ x - offset(expo)", "not a term of its own"),
    ("count ~ offset(expo) * x", "not a term of its own"),
    ("offset(count) ~ x", "belongs on the right"),
])
def test_offsets_that_cannot_be_honoured_are_refused(formula, fragment):
    with pytest.raises(hm.FormulaError, match=fragment):
        hm.parse_formula(formula, family="poisson")


def test_offset_inside_a_group_term_from_the_python_api_is_refused():
    with pytest.raises(hm.FormulaError, match="cannot vary by group"):
        hm.spec("count", fixed=["x"], groups=[hm.RandomSlope("offset(expo)", by="g")], family="poisson")


def test_non_finite_offset_names_its_rows():
    df = DATA.copy()
    df.loc[[3, 8], "expo"] = 0.0
    with pytest.raises(hm.DataError, match=r"offset 'np.log\(expo\)' is not finite \(-inf\) in 2 rows "
                                           r"\(index 3, 8\)"):
        hm.Model("yc ~ x + offset(np.log(expo)) + (1 | g)", df, family="poisson")
    df.loc[[3, 8], "expo"] = np.nan  # missing values in an offset column are dropped like any other
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        m = hm.Model("yc ~ x + offset(np.log(expo)) + (1 | g)", df, family="poisson")
    assert m.design.n == N - 2 and np.isfinite(m.design.offset).all()
    with pytest.raises(hm.DataError, match="numeric"):
        hm.Model("yc ~ x + offset(cat) + (1 | g)", DATA, family="poisson")
    with pytest.raises(hm.MissingColumnError, match="'expos'"):
        hm.Model("yc ~ x + offset(np.log(expos)) + (1 | g)", DATA, family="poisson")


def test_intercept_prior_is_centred_net_of_the_offset():
    m = hm.Model("yc ~ x + offset(np.log(expo)) + (1 | g)", DATA, family="poisson")
    loc = m.priors.to_frame().set_index("parameter").loc["Intercept", "prior"]
    expected = np.log(DATA["yc"].sum() / DATA["expo"].sum())
    assert f"Normal({expected:.4g}," in loc
    g = hm.Model("yg ~ x + offset(o) + (1 | g)", DATA)
    assert f"Normal({(DATA.yg - DATA.o).mean():.4g}," in g.priors.to_frame().set_index("parameter").loc[
        "Intercept", "prior"]


def test_point_fits_and_simulation_honour_the_offset():
    """REML of y ~ x + offset(o) equals REML of (y - o) ~ x; Laplace ML and hm.simulate use the offset."""
    rng = np.random.default_rng(11)
    g = np.repeat(np.arange(12), 8)
    x, o = rng.normal(size=96), rng.normal(0, 3, size=96)
    y = 1 + 0.5 * x + o + rng.normal(0, 0.7, 12)[g] + rng.normal(size=96)
    df = pd.DataFrame({"y": y, "x": x, "o": o, "ymo": y - o, "g": g.astype(str)})
    a = hm.Model("y ~ x + offset(o) + (1 | g)", df).optimize("reml")
    b = hm.Model("ymo ~ x + (1 | g)", df).optimize("reml")
    np.testing.assert_allclose(a.fixed_effects()["estimate"], b.fixed_effects()["estimate"], rtol=1e-6)
    np.testing.assert_allclose(a.variance_components()["estimate"], b.variance_components()["estimate"], rtol=1e-5)
    expo = rng.uniform(0.5, 20, 600)
    gg = np.repeat(np.arange(30), 20)
    xx = rng.normal(size=600)
    counts = rng.poisson(expo * np.exp(-1 + 0.5 * xx + rng.normal(0, 0.3, 30)[gg]))
    pois = pd.DataFrame({"count": counts, "x": xx, "expo": expo, "g": gg.astype(str)})
    m = hm.Model("count ~ x + offset(np.log(expo)) + (1 | g)", pois, family="poisson")
    fe = m.optimize("ml").fixed_effects()
    assert abs(fe.loc["Intercept", "estimate"] + 1) < 3 * fe.loc["Intercept", "se"] + 0.05
    assert abs(fe.loc["x", "estimate"] - 0.5) < 3 * fe.loc["x", "se"]
    sim = hm.simulate(m, {"Intercept": -1.0, "x": 0.5, "sd(g, Intercept)": 1e-6}, seed=3)
    ratio = sim["count"].sum() / np.sum(expo * np.exp(-1 + 0.5 * xx))
    assert 0.9 < ratio < 1.1  # the simulated counts scale with exposure

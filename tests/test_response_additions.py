"""Censoring ``cens()``, truncation ``trunc()`` and observation weights ``weights()`` of the outcome.

References: survival::survreg maximum-likelihood fits of the censored NCCTG lung data
(tests/reference/survreg_censored.R -> survreg_censored.json, lung.csv): the log-likelihood at
survreg's estimates equals ours exactly, and hmodels' posterior means lie within half a posterior SD
of survreg's estimates. The PyMC graph's censored / truncated / weighted likelihood equals the NumPy
pointwise log-likelihood (LOO, model comparison) draw by draw.
"""

from __future__ import annotations

import json
import math
import types
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import hmodels as hm
from hmodels.families import get_family
from hmodels.linpred import linear_predictor, pointwise_loglik
from hmodels.spec import addition_families

REF = Path(__file__).parent / "reference"
SURVREG = json.loads((REF / "survreg_censored.json").read_text())


def _lung():
    return pd.read_csv(REF / "lung.csv")


def _fake_fit(fam, **aux):
    """The parts of a Fit that :func:`pointwise_loglik` reads: the family and one draw of its parameters."""
    draws = xr.Dataset({k: (("chain", "draw"), [[float(v)]]) for k, v in aux.items()})
    return types.SimpleNamespace(family=fam, draws=draws)


@pytest.mark.parametrize("dist", ["weibull", "exponential", "lognormal"])
def test_censored_loglik_at_survreg_estimates_equals_survregs(dist):
    ref = SURVREG["fits"][dist]
    m = hm.Model("time | cens(censored) ~ age + sex", _lung(), family=dist)
    beta = np.array([ref["fixed"][t]["estimate"] for t in m.design.fixed_terms])
    eta = (m.design.X @ beta)[None, None, :]
    aux = {k: v["estimate"] for k, v in ref["aux"].items()}
    ll = pointwise_loglik(_fake_fit(m.family, **aux), eta, m.design)
    assert ll.sum() == pytest.approx(ref["logLik"], rel=1e-10)


@pytest.fixture(scope="session")
def lung_fits():
    out = {}
    for dist in ("weibull", "lognormal"):
        m = hm.Model("time | cens(censored) ~ age + sex", _lung(), family=dist)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", hm.ConvergenceWarning)
            out[dist] = m.fit(draws=1000, tune=1000, chains=2, seed=3, progressbar=False, log_likelihood=True)
    return out


@pytest.mark.parametrize("dist", ["weibull", "lognormal"])
def test_posterior_agrees_with_survreg(lung_fits, dist):
    ref, fit = SURVREG["fits"][dist], lung_fits[dist]
    fe, vc = fit.fixed_effects(), fit.variance_components()
    for term, r in ref["fixed"].items():
        assert abs(fe.loc[term, "mean"] - r["estimate"]) < 0.5 * fe.loc[term, "sd"], (term, fe.loc[term, "mean"], r)
        assert fe.loc[term, "sd"] == pytest.approx(r["se"], rel=0.2), term
    for name, r in ref["aux"].items():
        assert abs(vc.loc[name, "mean"] - r["estimate"]) < 0.5 * vc.loc[name, "sd"], (name, r)
    assert fit.divergences == 0
    assert fit.meta["plan"]["backend"] == "engine"  # censored rows by kernels.c: censored_loglik


def test_pymc_likelihood_equals_numpy_pointwise_draw_by_draw(lung_fits):
    """The censored likelihood the sampler used (pm.Censored) is the one LOO reads (NumPy), at posterior draws."""
    import pymc as pm

    fit = lung_fits["weibull"]
    design = fit.design
    eta = linear_predictor(fit)
    ll = pointwise_loglik(fit, eta)
    shape = np.asarray(fit.draws["shape"].transpose("chain", "draw").values)
    y = design.y.astype(float)
    upper = np.where(design.cens == 1, y, np.inf)
    for c, d in [(0, 0), (1, 17), (0, 999)]:
        dist = fit.family.pymc_dist(eta[c, d], {"shape": shape[c, d]})
        theirs = pm.logp(pm.Censored.dist(dist, lower=None, upper=upper), y).eval()
        np.testing.assert_allclose(ll[c, d], theirs, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ll.sum(-1).mean(), fit.loo().elpd + fit.loo().p, rtol=0.05)


def test_predictions_of_a_censored_fit_need_no_censoring_column(lung_fits):
    fit = lung_fits["weibull"]
    new = pd.DataFrame({"age": [50.0, 70.0], "sex": [1, 2]})
    mean = fit.predict(new, kind="mean").values
    np.testing.assert_array_equal(mean, fit.predict(new.assign(censored=1), kind="mean").values)
    assert np.isfinite(mean).all()


def test_ignoring_censoring_biases_the_intercept_the_censored_fit_does_not(lung_fits):
    naive = hm.Model("time ~ age + sex", _lung(), family="weibull")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = naive.fit(draws=300, tune=300, chains=2, seed=3, progressbar=False)
    ref = SURVREG["fits"]["weibull"]["fixed"]
    X = lung_fits["weibull"].design.X  # columns Intercept, age, sex
    truth = float(np.mean(X @ np.array([ref[t]["estimate"] for t in ("Intercept", "age", "sex")])))
    # the log mean survival time averaged over the patients, per draw
    censored = lung_fits["weibull"].predict(kind="link").values.mean(axis=-1)
    ignored = f.predict(kind="link").values.mean(axis=-1)
    assert abs(censored.mean() - truth) < 0.5 * censored.std()
    assert ignored.mean() < truth - 3 * censored.std()  # treating censored times as deaths: survival too short


def test_censored_fit_refuses_ppc_and_saves(lung_fits, tmp_path):
    fit = lung_fits["weibull"]
    with pytest.raises(hm.SpecificationError, match="censored"):
        fit.ppc()
    path = tmp_path / "cens.nc"
    fit.save(path)
    back = hm.load(path)
    assert back.spec.cens == "censored" and back.spec.formula.startswith("time | cens(censored) ~")
    np.testing.assert_array_equal(back.design.cens, fit.design.cens)
    new = _lung().head(3)
    np.testing.assert_array_equal(np.asarray(back.predict(new).draws), np.asarray(fit.predict(new).draws))


# -- truncation --------------------------------------------------------------------------------------------
def _zero_truncated(seed=5, n_groups=25, per=12):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per)
    x = rng.normal(size=g.size)
    lam = np.exp(0.3 + 0.5 * x + rng.normal(0, 0.3, n_groups)[g])
    y = rng.poisson(lam)
    while (y == 0).any():  # draw again until every count is positive: Poisson(lam) | y >= 1
        y[y == 0] = rng.poisson(lam[y == 0])
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g]})


@pytest.fixture(scope="session")
def truncated_fit():
    m = hm.Model("y | trunc(lb=1) ~ x + (1 | g)", _zero_truncated(), family="poisson")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hm.ConvergenceWarning)
        return m.fit(draws=600, tune=600, chains=2, seed=2, progressbar=False)


def test_zero_truncated_poisson_recovers_the_truth_and_replicates_have_no_zeros(truncated_fit):
    fe = truncated_fit.fixed_effects()
    for term, value in (("Intercept", 0.3), ("x", 0.5)):
        assert fe.loc[term, "hdi_low"] < value < fe.loc[term, "hdi_high"], (term, fe.loc[term].to_dict())
    rep = truncated_fit.predict(kind="response", seed=1).values
    assert rep.min() >= 1
    assert np.isfinite(float(truncated_fit.loo().elpd))
    # the expected count is the truncated distribution's: mu / (1 - exp(-mu)), mu the untruncated mean
    mean = truncated_fit.predict(kind="mean").values
    mu = np.exp(truncated_fit.predict(kind="link").values)
    np.testing.assert_allclose(mean, mu / -np.expm1(-mu), rtol=1e-12)
    reps = np.stack([truncated_fit.predict(kind="response", seed=s).values for s in range(4)])
    se = reps.std(axis=(0, 1, 2)) / np.sqrt(reps[..., 0].size)
    assert np.all(np.abs(reps.mean(axis=(0, 1, 2)) - mean.mean(axis=(0, 1))) < 5 * se + 1e-9)


@pytest.mark.parametrize("family", addition_families("truncation"))
@pytest.mark.parametrize("bounds", [(1.0, None), (None, 4.0), (1.0, 4.0)])
def test_truncated_mean_equals_numerical_integration_of_the_family_density(family, bounds):
    """Every family that takes trunc(): its closed-form truncated mean = sum / integral of its own density."""
    from scipy import integrate

    fam = get_family(family)
    aux = {a: fam.aux_spec(a).example for a in fam.aux}
    lb, ub = bounds
    mu = 0.4 if family == "lognormal" else 2.3  # the lognormal's location is on the log scale
    got = fam.truncated_mean(np.array([mu]), aux, lb, ub)
    if got is None:  # no closed form: a prediction of the mean is refused
        assert not fam.has_truncated_mean
        return
    if fam.discrete:
        ys = np.arange(0, 500)
        keep = (ys >= (lb if lb is not None else 0)) & (ys <= (ub if ub is not None else np.inf))
        f = np.exp(fam.loglik(ys, np.full(ys.shape, mu), aux))
        want = (ys * f)[keep].sum() / f[keep].sum()
    else:
        lo = lb if lb is not None else (-60.0 if fam.name == "gaussian" else 1e-300)
        hi = ub if ub is not None else 300.0

        def pdf(y):
            return float(np.exp(fam.loglik(np.array([y]), np.array([mu]), aux))[0])

        want = integrate.quad(lambda y: y * pdf(y), lo, hi, limit=200)[0] / integrate.quad(pdf, lo, hi, limit=200)[0]
    assert float(got[0]) == pytest.approx(want, rel=1e-9)


def test_truncated_posterior_on_the_engine_equals_the_pymc_graphs_within_mcse(truncated_fit):
    assert truncated_fit.meta["plan"]["backend"] == "engine"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hm.ConvergenceWarning)
        graph = truncated_fit.model.fit(draws=600, tune=600, chains=2, seed=3, progressbar=False, sampler="numpyro")
    a = pd.concat([truncated_fit.fixed_effects(), truncated_fit.variance_components()])
    b = pd.concat([graph.fixed_effects(), graph.variance_components()])
    z = (a["mean"] - b["mean"]) / np.hypot(a["mcse_mean"], b["mcse_mean"])
    assert (z.abs() < 4).all(), z


def test_truncated_pointwise_loglik_is_the_renormalised_pmf(truncated_fit):
    from scipy import stats

    fit = truncated_fit
    eta = linear_predictor(fit)[:1, :1]
    ll = pointwise_loglik(fit, eta)[0, 0]
    lam = np.exp(eta[0, 0])
    np.testing.assert_allclose(ll, stats.poisson.logpmf(fit.design.y, lam) - stats.poisson.logsf(0, lam), rtol=1e-12)


# -- weights ----------------------------------------------------------------------------------------------
def test_weight_two_is_the_same_log_density_as_each_row_twice():
    d = hm.datasets.load("sleepstudy")
    doubled = pd.concat([d, d], ignore_index=True)
    priors = {"Intercept": hm.Normal(300, 100), "Days": hm.Normal(0, 50), "sd": hm.HalfNormal(50),
              "sigma": hm.HalfNormal(50)}  # the data-scaled defaults differ slightly (sd with n - 1)
    m_w = hm.Model("Reaction | weights(w) ~ Days + (1 | Subject)", d.assign(w=2.0), centered=False, priors=priors)
    m_2 = hm.Model("Reaction ~ Days + (1 | Subject)", doubled, centered=False, priors=priors)
    point = m_2.pymc_model.initial_point()
    lp_w = m_w.pymc_model.compile_logp()(point)
    lp_2 = m_2.pymc_model.compile_logp()(point)
    assert lp_w == pytest.approx(lp_2, rel=1e-10)
    plan = m_w.plan()  # the engine samples it (rowwise_loglik), nothing integrated out
    assert plan.backend == "engine" and plan.method == "joint" and not plan.deviations
    # the engine's log density: the same as each row twice, at the same point
    em_w, em_2 = m_w.engine_model(None), m_2.engine_model(None)
    x = em_2.initial_point(seed=3)
    assert em_w.logp_grad(x)[0] == pytest.approx(em_2.logp_grad(x)[0], rel=1e-10)


def _weighted_data(fam, seed=0, n=48):
    rng = np.random.default_rng(seed)
    x, g = rng.normal(size=n), np.repeat([f"g{i}" for i in range(6)], n // 6)
    trials = rng.integers(5, 12, n) if fam.outcome == "binomial" else None
    mu = fam.mean(0.3 + 0.4 * x + np.asarray(fam.example_eta, dtype=float))
    aux = {b: fam.aux_spec(b).example for b in fam.aux}
    if "sigma" in aux and fam.link == "log":
        aux["sigma"] = 0.05 * float(np.mean(mu))
    data = pd.DataFrame({"y": fam.simulate(rng, mu, aux, trials=trials), "x": x, "g": g,
                         "w": rng.uniform(0.3, 2.5, n)})
    if trials is not None:
        data["n"] = trials
    return data, "y | trials(n) + weights(w)" if trials is not None else "y | weights(w)"


def _weighted_pairs():
    from hmodels.families import family_link_pairs, get_family

    return [pytest.param(f, link, id=f"{f}-{link}") for f, link in family_link_pairs()  # every family weights() takes
            if get_family(f, link).engine_code is not None and get_family(f, link).supports_additions]


@pytest.mark.parametrize("family,link", _weighted_pairs())
def test_weighted_log_density_on_the_engine_equals_the_pymc_graph(family, link):
    """Every family with an engine kernel: weights() on the engine (rowwise_loglik) = the PyMC graph's Potential."""
    from test_engine import assert_engine_matches_pymc

    fam = hm.families.get_family(family, link)
    data, lhs = _weighted_data(fam)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hm.DataWarning)
        m = hm.Model(f"{lhs} ~ x + (1 | g)", data, family=family, link=link)
    assert m.plan().backend == "engine"
    assert_engine_matches_pymc(m, m.engine_model(None), None, f"{family}-{link}", gradient=True, seed=4)


# -- censoring on the engine (kernels.c: censored_loglik) ----------------------------------------------------
def _censored_model(family, seed=3, n=60):
    rng = np.random.default_rng(seed)
    x, g = rng.normal(size=n), np.repeat([f"g{i}" for i in range(6)], n // 6)
    mu = np.exp(0.5 + 0.3 * x)
    y = {"gaussian": 2 + x + rng.normal(size=n), "lognormal": np.exp(0.5 + 0.3 * x + 0.4 * rng.normal(size=n)),
         "exponential": rng.exponential(mu), "weibull": mu * rng.weibull(1.5, n)}[family]
    d = pd.DataFrame({"y": y, "x": x, "g": g, "c": rng.choice([0, 0, 1, -1], n)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hm.Model("y | cens(c) ~ x + (1 | g)", d, family=family)


@pytest.mark.parametrize("family", ["gaussian", "lognormal", "exponential", "weibull"])
def test_censored_log_density_on_the_engine_equals_scipy_and_the_pymc_graph(family):
    """Right- and left-censored rows on the engine equal scipy's and the PyMC graph's.

    = scipy's logsf / logcdf (with the observed rows' logpdf and the priors, at random points), = the PyMC
    graph's pm.Censored and finite differences at moderate points.
    """
    from hmodels.engine.layout import CENSORED_FAMILIES

    assert family in CENSORED_FAMILIES
    _assert_engine_equals_scipy_and_graph(_censored_model(family), family)


def _assert_engine_equals_scipy_and_graph(m, label):
    """The engine samples ``m`` (one factor g): its log density = scipy's and the PyMC graph's, gradient = FD.

    scipy's: the pointwise log-likelihood plus the priors at random points.
    """
    from test_engine import _log_prior_only, _points, assert_engine_matches_pymc

    plan = m.plan()
    assert plan.backend == "engine" and not plan.deviations, plan
    em = m.engine_model(None)
    d = m.design
    for x in _points(em, n=3, seed=9):
        v = em.constrained(x[None])
        eta = d.X @ v["b"][0] + (d.factors[0].Z * v["r_g"][0][d.factors[0].codes]).sum(axis=1)
        draws = xr.Dataset({a: (("chain", "draw"), [[float(v[a][0])]]) for a in m.family.aux})
        view = types.SimpleNamespace(family=m.family, draws=draws, design=d)
        expected = float(pointwise_loglik(view, eta[None, None], d).sum()) + _log_prior_only(m, em, x)
        assert em.logp_grad(x, jacobian=False)[0] == pytest.approx(expected, rel=1e-9, abs=1e-8)
    assert_engine_matches_pymc(m, em, None, label, gradient=True, seed=3)


def test_censoring_for_a_family_without_a_closed_form_cdf_stays_on_the_pymc_graph():
    rng = np.random.default_rng(1)
    d = pd.DataFrame({"y": rng.gamma(2.0, 1.0, 40), "x": rng.normal(size=40), "c": rng.choice([0, 1], 40)})
    plan = hm.Model("y | cens(c) ~ x", d, family="gamma").plan()
    assert plan.backend == "pymc-graph" and "censoring (cens()) for the gamma family" in plan.deviations[0]


# -- truncation on the engine (kernels.c: truncation_logmass) ------------------------------------------------
def _truncated_model(family, bounds, seed=3, n=60):
    """Data of the family clipped into bounds at its 20% / 80% quantiles (``bounds``: which of them apply)."""
    fam = hm.families.get_family(family)
    rng = np.random.default_rng(seed)
    x, g = rng.normal(size=n), np.repeat([f"g{i}" for i in range(6)], n // 6)
    mu = fam.mean(0.3 + 0.4 * x + np.asarray(fam.example_eta, dtype=float))
    aux = {b: fam.aux_spec(b).example for b in fam.aux}
    y = np.asarray(fam.simulate(rng, mu, aux), dtype=float)
    lo, hi = np.quantile(y, [0.2, 0.8])
    lo, hi = (max(np.floor(lo), 1.0), np.ceil(hi) + 1) if fam.discrete else (round(float(lo), 3), round(float(hi), 3))
    lb, ub = (float(lo) if "lb" in bounds else None), (float(hi) if "ub" in bounds else None)
    y = np.clip(y, -np.inf if lb is None else lb, np.inf if ub is None else ub)
    args = ", ".join(f"{k}={v!r}" for k, v in (("lb", lb), ("ub", ub)) if v is not None)
    d = pd.DataFrame({"y": y, "x": x, "g": g})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hm.Model(f"y | trunc({args}) ~ x + (1 | g)", d, family=family)


def _truncated_cases():
    from hmodels.engine.layout import TRUNCATED_FAMILIES

    return [pytest.param(f, b, id=f"{f}-{b}") for f in TRUNCATED_FAMILIES for b in ("lb", "ub", "lb+ub")]


@pytest.mark.parametrize("family,bounds", _truncated_cases())
def test_truncated_log_density_on_the_engine_equals_scipy_and_the_pymc_graph(family, bounds):
    """Every family the kernels truncate, each kind of bound: = scipy (pointwise_loglik), = pm.Truncated, = FD."""
    _assert_engine_equals_scipy_and_graph(_truncated_model(family, bounds), f"{family}-{bounds}")


@pytest.mark.parametrize("family", ["gaussian", "lognormal", "exponential", "weibull", "poisson", "negativebinomial",
                                    "gamma", "student_t"])
@pytest.mark.parametrize("bounds", ["lb", "ub"])
def test_weighted_one_sided_truncation_has_finite_gradients_on_the_pymc_graph(family, bounds):
    """weights() + a one-sided trunc(): finite gradients on the PyMC graph, and the engine = that graph.

    The gaussian's was NaN (pm.Truncated's normaliser at its infinite bound): every draw of sampler='pymc' diverged.
    """
    from test_engine import assert_engine_matches_pymc

    m = _truncated_model(family, bounds)
    rng = np.random.default_rng(2)
    data = m.design.data.assign(w=rng.uniform(0.5, 2.0, m.design.n))
    lhs = m.spec.formula.split("~")[0].strip().replace("y | ", "y | weights(w) + ")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wm = hm.Model(f"{lhs} ~ x + (1 | g)", data, family=family)
    graph = wm.pymc_model
    point = graph.initial_point()
    assert np.isfinite(graph.compile_dlogp(mode="FAST_COMPILE")(point)).all()
    if wm.plan().backend == "engine":
        assert_engine_matches_pymc(wm, wm.engine_model(None), None, f"{family}-{bounds}-weighted", gradient=True)


_INF = np.inf


@pytest.mark.parametrize("family,lb,ub,eta,aux,expected", [
    # far tails, where a difference of CDFs loses every digit: exact values (mpmath / closed forms)
    ("gaussian", 10.0, _INF, 0.0, {"sigma": 1.0}, -53.23128515051247),
    ("gaussian", 38.0, 40.0, 0.0, {"sigma": 1.0}, -726.5572160190),
    ("gaussian", -40.0, -38.0, 0.0, {"sigma": 1.0}, -726.5572160190),
    ("gaussian", 0.0, _INF, 5.0, {"sigma": 1.0}, float(np.log1p(-0.5 * math.erfc(5 / math.sqrt(2))))),
    ("poisson", 1.0, _INF, -20.0, {}, float(np.log(-np.expm1(-np.exp(-20.0))))),  # P(y >= 1) = 1 - exp(-mu)
    ("poisson", 0.0, 3.0, 7.0, {}, None),  # scipy's logcdf is -inf here; the kernels' is finite (checked by FD)
    ("poisson", 1000.0, _INF, float(np.log(900.0)), {}, None),
    ("negativebinomial", 1.0, _INF, -15.0, {"alpha": 50.0},  # 1 - (a / (a + mu))^a (scipy's logpmf loses digits)
     float(np.log(-np.expm1(-50.0 * np.log1p(np.exp(-15.0) / 50.0))))),
    ("negativebinomial", 30.0, _INF, 0.0, {"alpha": 2.0}, None),
    ("negativebinomial", 1.0, _INF, float(np.log(1000.0)), {"alpha": 0.5},  # a tail too long to sum: closed form
     float(np.log(-np.expm1(0.5 * np.log(0.5 / 1000.5))))),
    ("exponential", 30.0, _INF, 0.0, {}, -30.0),  # log S(30) of a mean-1 exponential
    ("weibull", 4.0, 5.0, 0.0, {"shape": 3.0}, None),
])
def test_truncation_mass_in_the_kernels_is_exact_in_the_tails(family, lb, ub, eta, aux, expected):
    """log P(lb <= y <= ub) where a difference of CDFs would round to 0 or 1: the closed form or scipy, and FD."""
    from scipy import special, stats

    from hmodels.engine import native

    fam = hm.families.get_family(family)
    lp, grad = native.truncation_logmass(fam.engine_code, fam.link_fn.engine_code, lb, ub, eta, aux)
    if expected is None:  # scipy, summing the pmf (counts) or from its survival function
        mu = np.exp(eta)
        if family == "weibull":
            k = aux["shape"]
            dist = stats.weibull_min(k, scale=mu / special.gamma(1 + 1 / k))
            expected = dist.logsf(lb) + np.log(-np.expm1(dist.logsf(ub) - dist.logsf(lb)))
        else:
            dist = stats.poisson(mu) if family == "poisson" else stats.nbinom(aux["alpha"],
                                                                              aux["alpha"] / (aux["alpha"] + mu))
            top = ub if ub < _INF else lb + 20000
            expected = special.logsumexp(dist.logpmf(np.arange(lb, top + 1)))
    assert lp == pytest.approx(expected, rel=1e-11, abs=1e-9)
    h = 1e-6
    up = native.truncation_logmass(fam.engine_code, fam.link_fn.engine_code, lb, ub, eta + h, aux)[0]
    down = native.truncation_logmass(fam.engine_code, fam.link_fn.engine_code, lb, ub, eta - h, aux)[0]
    assert grad["eta"] == pytest.approx((up - down) / (2 * h), rel=1e-6, abs=1e-6)
    for name, value in aux.items():
        plus = native.truncation_logmass(fam.engine_code, fam.link_fn.engine_code, lb, ub, eta,
                                         {**aux, name: value * (1 + h)})[0]
        minus = native.truncation_logmass(fam.engine_code, fam.link_fn.engine_code, lb, ub, eta,
                                          {**aux, name: value * (1 - h)})[0]
        assert grad[name] == pytest.approx((plus - minus) / (2 * h * value), rel=1e-6, abs=1e-6)


@pytest.mark.parametrize("alpha,mu", [(0.02, 3000.0), (1e-3, 50.0), (1e-6, 10.0), (50.0, 1e-7)])
def test_zero_truncated_negative_binomial_mass_is_the_closed_form_at_any_alpha(alpha, mu):
    """trunc(lb=1): log(1 - (a / (a + mu))^a) to the last digits, for a small alpha too.

    With P(y = 0) above 1/2 (small alpha) the kernels summed the pmf upward from 1, ~40 (a + mu) / a terms
    (1e9 at alpha = 1e-6: a fit hung as the sampler tried small alphas) and lost digits on the way (4e-12).
    """
    from hmodels.engine import native

    fam = hm.families.get_family("negativebinomial")

    def mass(e, a):
        return native.truncation_logmass(fam.engine_code, fam.link_fn.engine_code, 1.0, _INF, e, {"alpha": a})

    eta = math.log(mu)
    lp, grad = mass(eta, alpha)
    assert lp == pytest.approx(math.log(-math.expm1(-alpha * math.log1p(mu / alpha))), rel=1e-13)
    h = 1e-6
    assert grad["eta"] == pytest.approx((mass(eta + h, alpha)[0] - mass(eta - h, alpha)[0]) / (2 * h), rel=1e-6)
    fd = (mass(eta, alpha * (1 + h))[0] - mass(eta, alpha * (1 - h))[0]) / (2 * h * alpha)
    assert grad["alpha"] == pytest.approx(fd, rel=1e-6, abs=1e-8)


@pytest.mark.parametrize("family, bounds, eta, near", [
    ("gaussian", (0.0, 10.0), -50.0, 0.0),   # every bit of mass below lb: the draws sit at lb, not at ub
    ("gaussian", (0.0, 10.0), 60.0, 10.0),   # above ub: at ub, not at lb
    ("gaussian", (0.0, None), -45.0, 0.0),   # one-sided: at lb, not at +inf
    ("poisson", (1, None), -40.0, 1.0),      # a rate of 4e-18, zero-truncated: 1, not inf
    ("negativebinomial", (1, None), -40.0, 1.0),
])
def test_truncated_draws_where_the_mass_between_the_bounds_underflows_sit_at_the_near_bound(family, bounds, eta, near):
    from hmodels.families import get_family
    from hmodels.linpred import simulate_response

    fam = get_family(family)
    fit = _fake_fit(fam, **{"gaussian": {"sigma": 1.0}, "poisson": {},
                            "negativebinomial": {"alpha": 2.0}}[family])
    design = types.SimpleNamespace(spec=types.SimpleNamespace(trunc=bounds), trials=None, se=None)
    y = simulate_response(fit, np.full((1, 1, 50), eta), design, seed=1)
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y, near, atol=0.05)


def test_truncation_the_kernels_do_not_evaluate_stays_on_the_pymc_graph_and_the_plan_says_so():
    rng = np.random.default_rng(1)
    d = pd.DataFrame({"y": np.abs(rng.standard_t(5, 40)), "x": rng.normal(size=40)})
    plan = hm.Model("y | trunc(lb=0) ~ x", d, family="student_t").plan()
    assert plan.backend == "pymc-graph" and "truncation (trunc()) for the student_t family" in plan.deviations[0]
    plan = hm.Model("y | trunc(lb=0) ~ x", d.assign(y=d.y + 0.1), family="gamma").plan()
    assert plan.backend == "pymc-graph" and "truncation (trunc()) for the gamma family" in plan.deviations[0]


# -- the formula and bad input ----------------------------------------------------------------------------
def test_formula_round_trip_of_every_addition():
    s = hm.parse_formula("t | cens(1 - event) + weights(w) ~ x + (1 | g)", family="weibull")
    assert (s.cens, s.weights, s.trunc) == ("1 - event", "w", None)
    assert hm.parse_formula(s.formula, family="weibull") == s
    t = hm.parse_formula("y | trunc(lb=0, ub=10) ~ x", family="gaussian")
    assert t.trunc == (0.0, 10.0) and hm.parse_formula(t.formula) == t
    # every digit of a bound survives (update(family=...) reparses the formula; '%g' made 12345.678 into 12345.7)
    u = hm.parse_formula("y | trunc(lb=12345.678, ub=1e7) ~ x", family="gaussian")
    assert hm.parse_formula(u.formula).trunc == (12345.678, 1e7)
    tiny = hm.parse_formula("y | trunc(lb=1e-300) ~ x", family="gaussian")
    assert "trunc(lb=1e-300)" in tiny.formula and hm.parse_formula(tiny.formula).trunc == (1e-300, None)


@pytest.mark.parametrize("formula,family,error,match", [
    ("t | cens(c) ~ x", "poisson", hm.SpecificationError, "continuous outcomes"),
    ("t | cens(c) ~ x", "beta", hm.SpecificationError, "not available for the beta family"),
    ("t | trunc(lb=z) ~ x", "gaussian", hm.FormulaError, "numbers"),
    ("t | trunc(lb=5, ub=1) ~ x", "gaussian", hm.SpecificationError, "below the upper"),
    ("t | trunc(lb=2) ~ x", "gaussian", hm.DataError, "outside the truncation bounds"),
    ("t | cens(bad) ~ x", "weibull", hm.DataError, "0 \\(observed\\), 1 \\(right-censored\\)"),
    ("t | weights(neg) ~ x", "gaussian", hm.DataError, "non-negative"),
    ("t | cens(c) + trunc(lb=0) ~ x", "weibull", hm.SpecificationError, "together"),
    ("t | cens(c) + cens(c) ~ x", "weibull", hm.FormulaError, "twice"),
    ("t | censor(c) ~ x", "weibull", hm.FormulaError, "cens\\(c\\)"),
])
def test_bad_additions_are_refused_with_the_fix(formula, family, error, match):
    d = pd.DataFrame({"t": [1.0, 2.5, 3.0, 4.0], "c": [0, 1, 0, 0], "bad": [0, 2, 0, 1], "neg": [1.0, -1.0, 1.0, 1.0],
                      "x": [0.1, 0.5, 0.2, 0.9], "z": 1.0})
    with pytest.raises(error, match=match):
        hm.Model(formula, d, family=family)


def test_an_event_indicator_named_as_such_gets_a_warning():
    d = _lung().assign(event=lambda x: 1 - x["censored"])
    with pytest.warns(hm.DataWarning, match="1 - event"):
        hm.Model("time | cens(event) ~ age", d, family="weibull")
    m = hm.Model("time | cens(1 - event) ~ age", d, family="weibull")  # the fix: no warning, same coding
    np.testing.assert_array_equal(m.design.cens, d["censored"].to_numpy())


def test_studies_refuse_what_they_cannot_simulate_or_calibrate(lung_fits):
    with pytest.raises(hm.SpecificationError, match="censoring mechanism"):
        hm.simulate(lung_fits["weibull"].model, n=1, seed=1)
    weighted = hm.Model("Reaction | weights(w) ~ Days + (1 | Subject)", hm.datasets.load("sleepstudy").assign(w=2.0))
    with pytest.raises(hm.SpecificationError, match="weighted likelihood"):
        hm.sbc(weighted, n=4, seed=1)


def test_report_of_a_censored_fit_says_so_and_skips_the_ppc(lung_fits):
    text = lung_fits["weibull"].report()
    assert "63 right- and 0 left-censored of 228 rows" in text
    assert "survival / censored-outcome regression" in text
    assert "Not computed:" in text and "censored" in text


@pytest.mark.parametrize("lb,alpha,mu", [(2.0, 1e-5, 5.0), (3.0, 1e-4, 5.0), (2.0, 0.01, 3000.0)])
def test_a_negative_binomial_tail_too_long_to_sum_takes_the_complement(lb, alpha, mu):
    """trunc(lb >= 2) at a tiny alpha: the kernels take 1 - F(lb - 1) (lb terms), = scipy and FD.

    The tail beyond lb is ~40 / log(1 + a / mu) terms long (4e7 at 1e-5): summing it hung a fit.
    """
    from scipy import stats

    from hmodels.engine import native

    fam = hm.families.get_family("negativebinomial")

    def mass(e, a):
        return native.truncation_logmass(fam.engine_code, fam.link_fn.engine_code, lb, _INF, e, {"alpha": a})

    lp, grad = mass(math.log(mu), alpha)
    assert lp == pytest.approx(stats.nbinom(alpha, alpha / (alpha + mu)).logsf(lb - 1), rel=1e-10)
    h = 1e-6
    fd = (mass(math.log(mu), alpha * (1 + h))[0] - mass(math.log(mu), alpha * (1 - h))[0]) / (2 * h * alpha)
    assert grad["alpha"] == pytest.approx(fd, rel=1e-5)


@pytest.mark.parametrize("mu, sigma, lb, ub, want", [
    (1e6, 1.0, -3.0, 3.0, 2.999998999997),  # bounds 1e6 SDs below the mean: at the upper bound, less 1/z
    (0.0, 1e8, 39.0, 40.0, 39.5),  # a window much narrower than sigma: its midpoint
    (1e6, 1e-8, -3.0, 3.0, 3.0),
    (0.0, 1.0, 1000100.0, None, 1000100.000001),  # 1e6 SDs into the upper tail
    (0.0, 1e8, 0.0, 1e-12, 5e-13),
    (0.0, 1.0, 5.0, 5.5, 5.152101776907269),  # mpmath (60 digits)
    (0.0, 1.0, -5.5, -5.0, -5.152101776907269),
])
def test_gaussian_truncated_mean_far_in_the_tails_and_for_narrow_windows(mu, sigma, lb, ub, want):
    """scipy's truncnorm.mean gave -41.2, 34.27, -inf, 1e-8, 1000163 and nan on such inputs (found by a sweep)."""
    got = get_family("gaussian").truncated_mean(np.array([mu]), {"sigma": np.array(sigma)}, lb, ub)[0]
    assert np.isfinite(got) and (lb is None or got >= lb) and (ub is None or got <= ub)
    assert got == pytest.approx(want, rel=1e-9, abs=1e-9)


def test_size_biased_truncated_means_stay_inside_their_bounds_when_the_mass_underflows():
    """The numerator underflowed to 0 before the denominator: the mean was 0, below lb (found by a sweep)."""
    got = get_family("gamma").truncated_mean(np.array([1.0]), {"shape": np.array(10.0)}, 1e-31, 1e-30)[0]
    assert 1e-31 <= got <= 1e-30
    got = get_family("lognormal").truncated_mean(np.array([0.0]), {"sigma": np.array(5.0)}, 5e-81, 1e-80)[0]
    assert 5e-81 <= got <= 1e-80
    assert get_family("poisson").truncated_mean(np.array([2.3]), {}, 3, 3)[0] == 3.0  # one admissible value

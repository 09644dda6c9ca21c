"""Where the data lie and in what units never changes the posterior (issue #17, item 5).

Shifting the outcome by a constant moves the intercept by that constant and nothing else;
rescaling it rescales every location and scale parameter (with the default, data-scaled priors);
shifting a predictor moves the raw intercept only. These are exact reparameterisations, so the
posterior may differ only by floating-point noise. Before the fix, the integrated (collapsed)
gaussian likelihood formed ``e'e = y'y - 2 b'X'y + b'X'X b`` from cross-products of the raw
response (``y'y ~ 1e20`` for ``y ~ 1e9``) and lost every digit to cancellation (sleep study on
``Reaction + 1e9``: sigma 0.18 instead of 25.9, R-hat 3); the joint model sampled coefficients and
centred effects in the data's units (``Reaction * 1e-9``: no convergence); and a predictor such as a
Unix timestamp was rejected as collinear with the intercept.

Checked here: the engine's log density and gradient at corresponding points (exactly, to rounding),
posteriors of the engine (``method="collapsed"`` and ``"joint"``) against the fit of the original data
with the same seed (within a fraction of a posterior SD), the PyMC-graph backend at an extreme
offset, the reference collapsed likelihood of :mod:`hmodels.collapsed`, and the rank check.
"""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import pytest

import hmodels as hm
from hmodels.collapsed import build_collapsed, marginal_loglik_numpy
from hmodels.engine import codes as K
from hmodels.engine.layout import EngineModel
from hmodels.errors import ConvergenceWarning

SLEEP = hm.datasets.load("sleepstudy")
PENICILLIN = hm.datasets.load("penicillin")
FORMULA = "Reaction ~ Days + (Days | Subject)"
SETTINGS = {"draws": 300, "tune": 300, "chains": 2, "seed": 1, "progressbar": False}
OFFSETS = [1e4, 1e8, 1e9]
SCALES = [1e-9, 1e-3, 1e3, 1e9]
#: Largest difference of a posterior mean from the reference fit's, in the reference's posterior SDs.
#: An exact reparameterisation with the same seed gives nearly the same draws (the collapsed fits
#: agree to 4 digits); where rounding lets the trajectories diverge the two fits are independent,
#: and their means differ by about 0.08 SD (600 draws).
TOL_SD = 0.3


def _data(offset=0.0, scale=1.0, data=SLEEP, column="Reaction"):
    d = data.copy()
    d[column] = d[column] * scale + offset
    return d


@functools.cache
def _fit(method, offset=0.0, scale=1.0, sampler=None, formula=FORMULA, shift=0.0):
    """A sleep-study fit of ``Reaction * scale + offset`` (and ``T = Days + shift``), cached."""
    data = _data(offset, scale)
    data["T"] = data["Days"] + shift
    extra = {"sampler": sampler} if sampler else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return hm.Model(formula, data).fit(method=method, **SETTINGS, **extra)


def _quantities(fit, slope="Days"):
    """Flattened draws of sigma, the SDs, the correlation and the coefficients."""
    p = fit.draws
    flat = {name: np.asarray(v.transpose("chain", "draw", ...).values).reshape(-1, *v.shape[2:])
            for name, v in p.items()}
    terms = list(p["b"].coords["term"].values)
    return {"sigma": flat["sigma"], "sd_Intercept": flat["sd_Subject"][:, 0], "sd_Days": flat["sd_Subject"][:, 1],
            "cor": flat["cor_Subject"][:, 0, 1], "b_Intercept": flat["b"][:, terms.index("Intercept")],
            "b_slope": flat["b"][:, terms.index(slope)]}


def _compare(fit, ref, offset=0.0, scale=1.0, tol=TOL_SD, what=""):
    """Posterior means of ``fit`` against those of ``ref`` mapped to its data: ``a = (a_fit - shift) / scale``."""
    got, want = _quantities(fit), _quantities(ref)
    errors = {}
    for name, w in want.items():
        g = got[name]
        if name != "cor":
            g = (g - (offset if name == "b_Intercept" else 0.0)) / scale
        errors[name] = abs(g.mean() - w.mean()) / w.std()
    bad = {k: round(v, 3) for k, v in errors.items() if not v <= tol}
    assert not bad, (what, "posterior means off by (posterior SDs):", bad,
                     "sigma:", float(got["sigma"].mean()) / scale, "vs", float(want["sigma"].mean()))


# -- the compiled log density, at corresponding points -------------------------------------------------
CASES = {  # formula, data, outcome, priors, integrated-out factor
    "collapsed": (FORMULA, SLEEP, "Reaction", None, "Subject"),
    "collapsed-sampled-coefficients": (FORMULA, SLEEP, "Reaction", {"Days": hm.StudentT(3, 0, 10)}, "Subject"),
    "partial": ("diameter ~ 1 + (1 | plate) + (1 | sample)", PENICILLIN, "diameter", None, "plate"),
    "joint-centred": (FORMULA, SLEEP, "Reaction", None, None),
}


def _engine(case, offset=0.0, scale=1.0):
    """The engine model of a case on shifted or rescaled data, centred as for the original data."""
    formula, data, column, priors, collapse = CASES[case]
    centering = hm.Model(formula, data, priors=priors).centering(collapse)
    m = hm.Model(formula, _data(offset, scale, data, column), priors=priors)
    return EngineModel(m.design, m.priors, centering, collapse=collapse)


def _log_coordinates(em):
    """Indices of x sampled on the log scale (they move by log(scale) when the data are rescaled)."""
    return [xi for f in em.factors for xi in range(f.x_sd, f.x_sd + len(f.terms))] + [
        xi for xi in em.x_aux.values() if int(em.prior_rows[em._row_of(xi)][4]) == K.T_LOG]


@pytest.mark.parametrize("case", list(CASES))
def test_log_density_does_not_depend_on_the_location_of_the_outcome(case):
    base = _engine(case)
    rng = np.random.default_rng(0)
    points = [base.initial_point(rng, jitter=1.0) for _ in range(3)]
    for offset in OFFSETS:
        em = _engine(case, offset=offset)
        for x in points:
            lp0, g0 = base.logp_grad(x)
            lp, g = em.logp_grad(x)
            assert abs(lp - lp0) < 1e-6, (case, offset, lp, lp0)
            np.testing.assert_allclose(g, g0, rtol=1e-6, atol=1e-8, err_msg=f"{case} offset {offset:g}")


@pytest.mark.parametrize("case", [c for c in CASES if CASES[c][3] is None])  # data-scaled priors only
def test_log_density_scales_with_the_outcome(case):
    """Rescaled data: the same gradient at the rescaled point, the log density moved by a constant."""
    base = _engine(case)
    rng = np.random.default_rng(1)
    points = [base.initial_point(rng, jitter=1.0) for _ in range(3)]
    for scale in SCALES:
        em = _engine(case, scale=scale)
        logs = _log_coordinates(em)
        diffs = []
        for x in points:
            xs = x.copy()
            xs[logs] += math.log(scale)
            lp0, g0 = base.logp_grad(x)
            lp, g = em.logp_grad(xs)
            diffs.append(lp - lp0)
            np.testing.assert_allclose(g, g0, rtol=1e-6, atol=1e-7, err_msg=f"{case} scale {scale:g}")
        assert np.ptp(diffs) < 1e-6 * max(1.0, abs(diffs[0])), (case, scale, diffs)


# -- posteriors of the default engine -------------------------------------------------------------------
@pytest.mark.parametrize("method", ["collapsed", "joint"])
@pytest.mark.parametrize("offset", OFFSETS)
def test_posterior_does_not_depend_on_the_location_of_the_outcome(method, offset):
    fit = _fit(method, offset=offset)
    _compare(fit, _fit(method), offset=offset, what=f"{method}, Reaction + {offset:g}")
    if method == "collapsed":  # the same seed and an exact reparameterisation: the same draws
        _compare(fit, _fit(method), offset=offset, tol=0.02, what=f"{method}, Reaction + {offset:g}")


@pytest.mark.parametrize("method", ["collapsed", "joint"])
@pytest.mark.parametrize("scale", SCALES)
def test_posterior_scales_with_the_outcome(method, scale):
    _compare(_fit(method, scale=scale), _fit(method), scale=scale, what=f"{method}, Reaction * {scale:g}")


def test_both_methods_agree_at_an_extreme_offset():
    _compare(_fit("collapsed", offset=1e9), _fit("joint"), offset=1e9, what="collapsed at 1e9 vs joint")
    _compare(_fit("joint", offset=1e9), _fit("collapsed"), offset=1e9, what="joint at 1e9 vs collapsed")


@pytest.mark.parametrize("method", ["collapsed", "joint"])
def test_shifted_predictor_moves_only_the_intercept(method):
    """``T = Days + 1.7e9`` (a Unix timestamp): the same slopes, SDs and sigma; b0(T) = b0(Days) - 1.7e9 slope."""
    shift = 1.7e9
    fit = _fit(method, formula="Reaction ~ T + (Days | Subject)", shift=shift)
    ref = _fit(method)
    got, want = _quantities(fit, slope="T"), _quantities(ref)
    for name in ("sigma", "sd_Intercept", "sd_Days", "cor", "b_slope"):
        assert abs(got[name].mean() - want[name].mean()) <= TOL_SD * want[name].std(), name
    centred = got["b_Intercept"] + shift * got["b_slope"]  # the intercept at Days = 0
    assert abs(centred.mean() - want["b_Intercept"].mean()) <= TOL_SD * want["b_Intercept"].std()


# -- the PyMC-graph backend (compiles per model: one fit per method) --------------------------------------
@pytest.mark.parametrize("method", ["collapsed", "joint"])
def test_pymc_backend_at_an_extreme_offset(method):
    fit = _fit(method, offset=1e9, sampler="pymc")
    _compare(fit, _fit(method), offset=1e9, what=f"sampler='pymc', {method}, Reaction + 1e9")


# -- the reference collapsed likelihood (hmodels.collapsed) ---------------------------------------------
def test_reference_collapsed_likelihood_does_not_depend_on_the_location_of_the_outcome():
    rng = np.random.default_rng(2)
    S = 5
    r = np.tanh(rng.normal(0, 0.5, S))
    draws = {"b": np.column_stack([rng.normal(250, 10, S), rng.normal(10, 2, S)]),
             "sigma": rng.uniform(20, 30, S), "sd_Subject": np.column_stack([rng.uniform(15, 35, S),
                                                                            rng.uniform(4, 8, S)]),
             "L_cor_Subject": np.stack([[[1.0, 0.0], [c, math.sqrt(1 - c * c)]] for c in r])}
    m0 = hm.Model(FORMULA, SLEEP)
    ll0 = marginal_loglik_numpy(build_collapsed(m0.design, m0.priors), m0.design, draws)
    for offset in OFFSETS:
        m = hm.Model(FORMULA, _data(offset))
        shifted = {**draws, "b": draws["b"] + [offset, 0.0]}
        ll = marginal_loglik_numpy(build_collapsed(m.design, m.priors), m.design, shifted)
        np.testing.assert_allclose(ll, ll0, rtol=0, atol=1e-6, err_msg=f"offset {offset:g}")


# -- the rank check on the centred, scaled design ---------------------------------------------------------
def test_a_timestamp_predictor_is_not_collinear_with_the_intercept():
    data = SLEEP.assign(T=SLEEP["Days"] + 1.7e9, T2=2 * (SLEEP["Days"] + 1.7e9), small=SLEEP["Days"] * 1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hm.Model("Reaction ~ T + (1 | Subject)", data)
        hm.Model("Reaction ~ small + (1 | Subject)", data)  # units, not collinearity
        hm.Model("Reaction ~ 0 + Subject + T", data)  # the constant through a full set of dummies
    with pytest.raises(hm.DataError, match="rank deficient"):
        hm.Model("Reaction ~ T + T2 + (1 | Subject)", data)  # truly collinear, shifted or not


def test_a_badly_scaled_predictor_is_named():
    data = SLEEP.assign(T=1.7e9 + SLEEP["Days"] * 1e-6, T5=1.7e9 + SLEEP["Days"] * 1e-5)
    with pytest.raises(hm.DataError, match=r"Badly scaled column\(s\).*T \(SD"):
        hm.Model("Reaction ~ T + (1 | Subject)", data)  # < 1 significant digit: no longer separable
    with pytest.warns(UserWarning, match=r"Badly scaled column\(s\).*T5 \(SD"):
        hm.Model("Reaction ~ T5 + (1 | Subject)", data)  # 2 digits: usable, but say so


@pytest.mark.parametrize("scale", [1e-9, 1e9])
def test_pymc_backend_at_an_extreme_scale(scale):
    """The PyMC graph samples coefficients and centred effects at the data's scale (exact linear transforms)."""
    fit = _fit("joint", scale=scale, sampler="pymc")
    _compare(fit, _fit("joint"), scale=scale, what=f"sampler='pymc', joint, Reaction * {scale:g}")

"""Hierarchical centring in the compiled engine (kernels.c, ``hier_forward``; issue 14).

A centred intercept-only factor nested in another is sampled as ``v_l = r_l + m_l``, ``m_l`` everything
constant within level ``l``. The map is exact (a shift with unit Jacobian), so at corresponding points:

* the log density (with and without the Jacobian) and every named variable equal the standard engine's
  (centred effects through the Householder reflection, intercept shift);
* the log density without the Jacobian equals the PyMC graph's;
* the gradient equals central finite differences;
* sampled posteriors agree with the standard parameterisation's within Monte Carlo error.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hard import make_case
from test_engine import _finite_diff, _pymc_values

import hmodels as hm
import hmodels.engine.codes as K
import hmodels.parameterisation as P
from hmodels.engine.layout import EngineModel, reflect_levels


def _nested_data(seed=3):
    """Chicks in broods in locations in regions, with brood-, location- and row-level predictors."""
    rng = np.random.default_rng(seed)
    n_reg, n_loc = 3, 9
    n_brood = 2 * n_loc
    reg_of_loc = np.repeat(np.arange(n_reg), n_loc // n_reg)
    loc_of_brood = np.repeat(np.arange(n_loc), 2)
    rows = rng.integers(1, 5, n_brood)
    brood = np.repeat(np.arange(n_brood), rows)
    loc = loc_of_brood[brood]
    n = len(brood)
    year = rng.integers(0, 3, n_brood)[brood]
    h = rng.normal(size=n_loc)[loc]
    x = rng.normal(size=n)  # varies within broods
    eta = 0.5 + 0.3 * (year == 1) - 0.4 * h + 0.2 * x + rng.normal(0, 0.7, n_brood)[brood] \
        + rng.normal(0, 0.5, n_loc)[loc]
    trials = rng.integers(2, 8, n)
    hb = rng.normal(size=n_brood)[brood]  # a brood-level predictor that varies within locations
    yc = rng.poisson(np.exp(eta))
    return pd.DataFrame({"hb": hb, "yo": np.clip(yc, 0, 3) + 1,
        "yc": yc, "yg": 3.0 + 2.0 * eta + rng.normal(size=n),
        "yk": rng.binomial(trials, 1 / (1 + np.exp(-eta))), "n": trials,
        "year": pd.Categorical(np.array(["a", "b", "c"])[year]), "h": h, "x": x,
        "brood": [f"b{i}" for i in brood], "loc": [f"l{i}" for i in loc],
        "reg": [f"r{i}" for i in reg_of_loc[loc]], "k": [f"k{i}" for i in rng.integers(0, 4, n)]})


DATA = _nested_data()
# id: formula, family, centred factors, intercept prior, expected parents of brood
CASES = {
    "poisson": ("yc ~ year + h + (1 | brood) + (1 | loc)", "poisson", {"brood": True, "loc": False}, "centered",
                ["loc"]),
    "poisson-parent-centred": ("yc ~ year + h + x + (1 | brood) + (1 | loc)", "poisson",
                               {"brood": True, "loc": True}, "centered", ["loc"]),
    "gaussian-crossed-raw": ("yg ~ x + h + (1 | brood) + (1 | loc) + (1 | k)", "gaussian",
                             {"brood": True, "loc": False, "k": True}, "raw", ["loc"]),
    "binomial-parent-slope": ("p(yk, n) ~ hb + (1 | brood) + (1 + hb | loc)", "binomial",
                              {"brood": True, "loc": False}, "centered", ["loc"]),
    "gaussian-parent-slope-varies-within": ("yg ~ x + (1 | brood) + (1 + x | loc)", "gaussian",
                                            {"brood": True, "loc": True}, "centered", ["loc"]),
    "cumulative": ("yo ~ hb + x + (1 | brood) + (1 | loc)", "cumulative", {"brood": True, "loc": False}, "centered",
                   ["loc"]),
    "negbin": ("yc ~ hb + (1 | brood) + (1 | loc)", "negativebinomial", {"brood": True, "loc": False}, "raw", ["loc"]),
    "gaussian-two-parents-no-intercept": ("yg ~ 0 + year + x + (1 | brood) + (1 | loc) + (1 | reg)", "gaussian",
                                          {"brood": True, "loc": False, "reg": True}, "centered", ["loc", "reg"]),
}


def _pair(case):
    formula, family, centred, iprior, _ = CASES[case]
    m = hm.Model(formula, DATA, family=family, intercept_prior=iprior, centered=centred)
    cent = m.centering(None)
    return m, EngineModel(m.design, m.priors, cent, hierarchical=()), \
        EngineModel(m.design, m.priors, cent, hierarchical=("brood",))


def _standard_point(std, hi, x):
    """The standard engine's coordinates of the point the hierarchical engine has at ``x``."""
    v = hi.constrained(x[None])
    xs = x.copy()
    for f in std.factors:  # centred effects: w = Q r / scale (Q is its own inverse)
        if f.name in [g.name for g in hi.factors if g.hier is not None]:
            xs[f.x_eff:f.x_eff + f.levels] = reflect_levels(v[f"r_{f.name}"] / f.escale)[0, :, 0]
    if std.icol >= 0:  # the sampled intercept: model intercept + the shift of each engine's centred factors
        row = std.prior_rows[std.p_beta + std.icol]
        ub = row[6] if int(row[4]) == K.T_AFFINE else 1.0
        ib = std.x_beta + std.icol
        xs[ib] += sum(xs[xi] * sc / (ub * math.sqrt(L)) for xi, L, sc in std.shift)
        xs[ib] -= sum(x[xi] * sc / (ub * math.sqrt(L)) for xi, L, sc in hi.shift)
    return xs


def _points(em, n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [em.initial_point(rng, jitter=1.0) for _ in range(n)]


@pytest.mark.parametrize("case", list(CASES))
def test_structure_is_what_is_constant_within_a_brood(case):
    m, _, hi = _pair(case)
    f = next(g for g in hi.factors if g.name == "brood")
    parents = [hi.factors[q].name for q, _, _ in f.hier["parents"]]
    assert parents == CASES[case][4]
    d = m.design
    fb = d.factor("brood")
    for j, term in enumerate(d.fixed_terms):  # a column enters m exactly when it is constant within every brood
        col = d.X[:, j]
        const = all(np.ptp(col[fb.codes == lv]) == 0 for lv in range(fb.n_levels))
        assert (np.abs(f.hier["Xh"][:, j]).max() > 0) == (const and np.abs(col).max() > 0), term
    assert hi.shift == [s for s in hi.shift if s[0] != f.x_eff]  # no intercept shift for the brood effects


@pytest.mark.parametrize("case", list(CASES))
def test_log_density_and_variables_equal_the_standard_engine(case):
    _, std, hi = _pair(case)
    assert hi.ndim == std.ndim
    for x in _points(hi):
        xs = _standard_point(std, hi, x)
        for jac in (True, False):
            a, b = hi.logp_grad(x, jacobian=jac)[0], std.logp_grad(xs, jacobian=jac)[0]
            assert math.isclose(a, b, rel_tol=1e-10, abs_tol=1e-8), (case, jac, a, b)
        vh, vs = hi.constrained(x[None]), std.constrained(xs[None])
        assert set(vh) == set(vs)
        for k in vh:
            np.testing.assert_allclose(vh[k], vs[k], rtol=1e-9, atol=1e-9, err_msg=f"{case}: {k}")


@pytest.mark.parametrize("case", list(CASES))
def test_log_density_matches_pymc(case):
    from hmodels.build import build_model

    m, _, hi = _pair(case)
    pmodel = build_model(m.design, m.priors, m.centering(None)).model
    logp = pmodel.compile_logp(jacobian=False, mode="FAST_COMPILE")
    for x in _points(hi, n=2, seed=1):
        ours = hi.logp_grad(x, jacobian=False)[0]
        theirs = float(logp(_pymc_values(pmodel, m, hi, x)))
        assert math.isclose(ours, theirs, rel_tol=1e-8, abs_tol=1e-7), (case, ours, theirs)


@pytest.mark.parametrize("case", list(CASES))
def test_gradient_matches_finite_differences(case):
    _, _, hi = _pair(case)
    for x in _points(hi, seed=2):
        for jac in (True, False):
            lp, grad = hi.logp_grad(x, jacobian=jac)
            assert np.isfinite(lp)
            if jac:
                fd = _finite_diff(hi, x)
            else:
                fd = np.array([(hi.logp_grad(x + e, False)[0] - hi.logp_grad(x - e, False)[0]) / (2 * e.max())
                               for e in np.diag(1e-6 * np.maximum(1.0, np.abs(x)))])
            err = np.abs(fd - grad) / (1.0 + np.abs(fd))
            assert err.max() < 1e-5, (case, jac, int(err.argmax()), grad[err.argmax()], fd[err.argmax()])


def test_initial_point_starts_the_effects_near_zero():
    _, _, hi = _pair("poisson")
    x = hi.initial_point(0, jitter=0.5)
    r = hi.constrained(x[None])["r_brood"]
    assert np.abs(r).max() <= 0.5 * hi.factors[0].escale[0] + 1e-12  # the jitter, not minus the intercept
    assert np.array_equal(x, hi.initial_point(0, jitter=0.5))  # seeded


def test_only_eligible_factors_can_be_hierarchically_centred():
    m, _, _ = _pair("binomial-parent-slope")
    cent = m.centering(None)
    for bad in ("loc",):  # not centred, and has a slope
        with pytest.raises(ValueError, match="hierarchical"):
            EngineModel(m.design, m.priors, {**cent, "loc": True}, hierarchical=(bad,))
    g = hm.Model("yg ~ x + (1 | brood) + (1 | loc)", DATA)
    with pytest.raises(ValueError, match="integrated out"):
        EngineModel(g.design, g.priors, {"brood": True, "loc": False}, collapse="loc", hierarchical=("brood",))
    assert P.nested_candidates(g.design, {"brood": True, "loc": True}) == ("brood",)  # loc is not nested in brood
    assert P.nested_candidates(g.design, {"brood": False, "loc": True}) == ()
    crossed = hm.Model("yg ~ x + (1 | brood) + (1 | k)", DATA).design
    assert P.nested_candidates(crossed, {"brood": True, "k": True}) == ()


def test_the_rule_applies_only_without_an_integrated_out_factor(monkeypatch):
    g = hm.Model("yg ~ x + (1 | brood) + (1 | loc)", DATA)
    monkeypatch.setattr(P, "HIERARCHICAL", True)
    assert P.hierarchical_factors(g.design, {"brood": True, "loc": False}, None) == ("brood",)
    assert P.hierarchical_factors(g.design, {"brood": True, "loc": False}, "loc") == ()
    monkeypatch.setattr(P, "HIERARCHICAL", False)
    assert P.hierarchical_factors(g.design, {"brood": True, "loc": False}, None) == ()


@pytest.fixture(scope="module")
def nested_fits():
    """The nested poisson case (small) sampled with and without hierarchical centring (same plan otherwise)."""
    case = make_case("nested_poisson", seed=1, size="small")
    fits = {}
    old = P.HIERARCHICAL
    try:
        for on in (False, True):
            P.HIERARCHICAL = on
            model = case.model()
            assert (model.engine_model(None).factors[0].hier is not None) == on
            fits[on] = model.fit(draws=1000, tune=1000, chains=4, seed=7, progressbar=False)
    finally:
        P.HIERARCHICAL = old
    return fits


def test_posteriors_agree_with_the_standard_parameterisation(nested_fits):
    from hmodels.diagnostics import diagnose

    a = diagnose(nested_fits[False], group_effects=False).table
    b = diagnose(nested_fits[True], group_effects=False).table
    assert list(a.index) == list(b.index)
    z = (a["mean"] - b["mean"]).abs() / np.sqrt(a["mcse_mean"] ** 2 + b["mcse_mean"] ** 2)
    assert z.max() < 4.0, z.to_dict()  # 6 parameters: 4 combined MCSEs
    assert ((a["sd"] - b["sd"]).abs() / a["sd"]).max() < 0.15  # posterior SDs (ESS >= ~150 each)
    ra = nested_fits[False].posterior["posterior"]["r_brood"].mean(("chain", "draw")).values
    rb = nested_fits[True].posterior["posterior"]["r_brood"].mean(("chain", "draw")).values
    assert np.abs(ra - rb).max() < 0.15  # the effects as reported, not the sampled locations


def test_the_plan_records_it_and_the_pymc_graph_says_it_does_not_follow():
    m = make_case("nested_poisson", seed=1, size="small").model()
    assert m.plan().hierarchical == ("brood",) and m.plan().deviations == ()
    assert m.plan().to_dict()["hierarchical"] == ["brood"]
    pymc = m.plan("pymc")
    assert pymc.policy() == m.plan().policy()
    assert any("hierarchically centred" in d for d in pymc.deviations)
    assert hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy")).plan().hierarchical == ()

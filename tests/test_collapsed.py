"""Collapsed (marginalised) Gaussian LMM: exact likelihood, exact conditional draws, same posterior.

:mod:`hmodels.collapsed` is the dense, every-factor reference; fits integrate out one factor (the plan's).

Posterior comparisons: means agree within max(0.15 posterior SD, 3 combined MCSE), posterior
SDs within 15 %. The likelihood and conditional-draw checks are exact (no sampling).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import REFERENCE_MODELS, reference_fit

import hmodels as hm
from hmodels.collapsed import CollapsedStats, build_collapsed, draw_group_effects


def _sim_three_slopes(seed=0):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(12), 8)
    x1, x2 = rng.normal(size=96), rng.normal(size=96)
    y = 1 + 0.5 * x1 + rng.normal(size=12)[g] + 0.3 * rng.normal(size=12)[g] * x1 + rng.normal(size=96)
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": g.astype(str)})


CASES = {
    "sleepstudy": ("Reaction ~ Days + (Days | Subject)", lambda: hm.datasets.load("sleepstudy")),
    "penicillin": ("diameter ~ 1 + (1 | plate) + (1 | sample)", lambda: hm.datasets.load("penicillin")),
    "eight_schools": ("y | se(sigma) ~ 1 + (1 | school)", lambda: hm.datasets.load("eight_schools")),
    "three_terms": ("y ~ x1 + (x1 + x2 | g)", _sim_three_slopes),
    "uncorrelated": ("y ~ x1 + (x1 || g) + (1 | x2bin)",
                     lambda: _sim_three_slopes().assign(x2bin=lambda d: (d.x2 > 0).astype(int).astype(str))),
}


def _dense_pieces(design, values):
    """Dense Z (n × q), prior covariance G (q × q) and residual variances for given parameters."""
    Zs, Gs = [], []
    for f in design.factors:
        k = len(f.terms)
        B = np.diag(values[f"sd_{f.factor}"])
        for j, (block, cor) in enumerate(zip(f.blocks, f.correlated)):
            if cor:
                idx = np.array(block)
                lname = [n for n in values if n.startswith(f"L_cor_{f.factor}")][0 if sum(f.correlated) == 1 else j]
                B[np.ix_(idx, idx)] = values[f"sd_{f.factor}"][idx][:, None] * values[lname]
        Z = np.zeros((design.n, f.n_levels * k))
        for t in range(k):
            Z[np.arange(design.n), f.codes * k + t] = f.Z[:, t]
        Zs.append(Z)
        Gs.append(np.kron(np.eye(f.n_levels), B @ B.T))
    Z = np.hstack(Zs)
    G = np.zeros((Z.shape[1],) * 2)
    off = 0
    for g in Gs:
        G[off:off + len(g), off:off + len(g)] = g
        off += len(g)
    resid = design.se**2 if design.se is not None else np.full(design.n, values["sigma"] ** 2)
    return Z, G, resid


def _mvn_logpdf(y, mean, cov):
    """log N(y | mean, cov) by Cholesky (scipy's eigenvalue check for definiteness is flaky near its tolerance)."""
    L = np.linalg.cholesky(cov)
    z = np.linalg.solve(L, y - mean)
    return float(-0.5 * (len(y) * np.log(2 * np.pi) + 2 * np.log(np.diag(L)).sum() + z @ z))


def _random_values(built, seed):
    """Parameter values at a jittered point of the collapsed model (constrained scale)."""
    model = built.model
    rng = np.random.default_rng(seed)
    point = {k: v + rng.normal(0, 0.3, size=np.shape(v)) for k, v in model.initial_point().items()}
    names = [v.name for v in model.free_RVs] + [d.name for d in model.deterministics] + ["marginal_loglik"]
    fn = model.compile_fn([model[n] for n in names], inputs=model.value_vars, on_unused_input="ignore",
                          point_fn=False, mode="FAST_COMPILE")
    out = fn(*[point[v.name] for v in model.value_vars])
    return dict(zip(names, [np.asarray(o) for o in out]))


@pytest.mark.parametrize("case", list(CASES))
def test_marginal_likelihood_matches_dense_mvn(case):
    formula, data = CASES[case]
    model = hm.Model(formula, data())
    built = build_collapsed(model.design, model.priors)
    for seed in (1, 2):
        v = _random_values(built, seed)
        Z, G, resid = _dense_pieces(model.design, v)
        d = model.design
        mean = d.X @ v["b"]
        expected = _mvn_logpdf(d.y, mean, Z @ G @ Z.T + np.diag(resid))
        assert v["marginal_loglik"] == pytest.approx(expected, rel=1e-9, abs=1e-6)


@pytest.mark.parametrize("case", ["sleepstudy", "penicillin", "eight_schools"])
def test_conditional_group_effects_are_exact(case):
    """Many draws at one parameter value: mean and covariance of r match the GLS formulas."""
    import xarray as xr

    formula, data = CASES[case]
    model = hm.Model(formula, data())
    built = build_collapsed(model.design, model.priors)
    v = _random_values(built, 3)
    n_rep = 4000
    post = {}
    for name in ["b", "sigma"] + [n for n in v if n.startswith(("sd_", "L_cor_"))]:
        if name in v:
            arr = np.broadcast_to(v[name], (1, n_rep, *np.shape(v[name])))
            post[name] = (("chain", "draw", *[f"{name}_{i}" for i in range(arr.ndim - 2)]), arr)
    out = draw_group_effects(built, model.design, xr.Dataset(post), seed=5)
    r = np.concatenate([out[f"r_{f.factor}"][1].reshape(n_rep, -1) for f in model.design.factors], axis=1)
    Z, G, resid = _dense_pieces(model.design, v)
    d = model.design
    Vinv = np.linalg.inv(Z @ G @ Z.T + np.diag(resid))
    mean = G @ Z.T @ Vinv @ (d.y - d.X @ v["b"])
    cov = G - G @ Z.T @ Vinv @ Z @ G
    sd = np.sqrt(np.diag(cov))
    # Monte Carlo error of a mean of 4000 exact draws is sd / 63; 4.5 of those is 0.07 sd
    assert np.all(np.abs(r.mean(0) - mean) <= 4.5 * sd / np.sqrt(n_rep))
    assert np.allclose(r.std(0), sd, rtol=0.08)


def test_crossproducts_of_the_reference():
    sleep = hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy"))
    st = CollapsedStats(sleep.design)
    assert st.A.shape == (18, 2, 2) and st.A[:, 0, 0].sum() == 180  # ZᵀZ per subject


# -- same posterior as the joint model --------------------------------------------------------------
_OTHER: dict[tuple[str, str], hm.Fit] = {}


def _fit(name, method):
    """The reference model fitted with ``method`` (4 × 1000, seed 1, like conftest.reference_fit)."""
    ref = reference_fit(name)
    if ref.meta["method"] == method:
        return ref
    if (name, method) not in _OTHER:
        cfg = REFERENCE_MODELS[name]
        model = hm.Model(cfg["formula"], hm.datasets.load(cfg["data"]), family=cfg["family"],
                         priors=cfg["priors"], intercept_prior="raw")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _OTHER[(name, method)] = model.fit(draws=1000, tune=1000, chains=4, seed=1,
                                               target_accept=cfg["target_accept"], progressbar=False,
                                               method=method)
    return _OTHER[(name, method)]


def _agree(a: pd.DataFrame, b: pd.DataFrame, what: str):
    tol = np.maximum(0.15 * a["sd"], 3 * np.hypot(a["mcse_mean"], b["mcse_mean"]))
    diff = (a["mean"] - b["mean"]).abs()
    assert (diff <= tol).all(), f"{what}: means differ\n{pd.DataFrame({'diff': diff, 'tol': tol})}"
    ratio = b["sd"] / a["sd"]
    assert ((ratio > 0.85) & (ratio < 1.15)).all(), f"{what}: posterior SDs differ\n{ratio}"


def _compare(name):
    joint, coll = _fit(name, "joint"), _fit(name, "collapsed")
    assert joint.meta["method"] == "joint" and coll.meta["method"] == "collapsed"
    assert coll.divergences == 0
    _agree(joint.fixed_effects(), coll.fixed_effects(), "fixed effects")
    vj, vc = joint.variance_components(), coll.variance_components()
    _agree(vj.set_index(["group", "term"]), vc.set_index(["group", "term"]), "variance components")
    for f in coll.meta["factors"]:
        gj, gc = joint.group_effects(f), coll.group_effects(f)
        assert list(gj["level"]) == list(gc["level"])
        _agree(gj, gc, f"group effects of {f}")
    # the collapsed fit carries every variable of the joint (non-centred) fit
    assert set(joint.draws.data_vars) <= set(coll.draws.data_vars) | {"lp"}
    return joint, coll


def test_sleepstudy_collapsed_equals_joint():
    joint, coll = _compare("sleepstudy")
    # one draw of the group effects reproduces the draw of r: r = B z per level
    r, z = coll.draws["r_Subject"].values[0, 0], coll.draws["z_Subject"].values[0, 0]
    sd = coll.draws["sd_Subject"].values[0, 0]
    L = np.linalg.cholesky(coll.draws["cor_Subject"].values[0, 0])
    assert np.allclose(r, z @ (sd[:, None] * L).T)


def test_penicillin_crossed_collapsed_equals_joint():
    _compare("penicillin")


def test_eight_schools_known_se_collapsed_equals_joint():
    _compare("eight_schools")


def test_radon_collapsed_equals_joint():
    _compare("radon")


def test_collapsed_log_likelihood_is_conditional_pointwise():
    fit = _fit("sleepstudy", "collapsed")
    from hmodels.linpred import linear_predictor, pointwise_loglik

    ll = pointwise_loglik(fit, linear_predictor(fit))
    assert ll.shape == (4, 1000, 180) and np.isfinite(ll).all()
    assert "Reaction" in fit.posterior["observed_data"]
    assert fit.timing["sample_s"] > 0 and "group_effects_s" in fit.timing

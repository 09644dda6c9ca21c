"""Parameter recovery on simulated data, generated from the family registry (every family x link).

Rule: for every registered (family, link) pair, data are simulated by the family's own ``simulate``
(30 groups x 12 observations, ``y ~ x + (1 | g)``; a categorical outcome gets one linear predictor and
one independent group effect per non-reference category; an ordinal outcome has no intercept — its
thresholds are the family's example cutpoints) from known values, and fitted at the default settings
(priors, sampler, 4 chains x 1000 draws; two seeds). Per pair: no divergences, and no gross error: every true value
(coefficients, group SDs, family parameters) within 4.5 posterior SDs of its posterior mean (with
~300 checks in all a correct sampler essentially never trips this; a wrong likelihood, link or
transform does). Pooled over all pairs: between 80 % and 98.5 % of true values inside their central
90 % interval (expected 90 %; far outside either bound means intervals that are too narrow — biased or
over-confident fits — or too wide).

A gaussian model with correlated random slopes is checked the same way (a design, not a family).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import hmodels as hm
from hmodels.families import family_link_pairs, get_family

G, PER = 30, 12
SEEDS = (1, 2)
Z_GROSS = 4.5
CHECKS: dict[tuple[str, str], list] = {}
PAIRS = family_link_pairs()


def _positive_mean(fam) -> bool:
    """Whether the model asks for a positive mean that the linear predictor does not guarantee.

    An identity or inverse link on a positive outcome; a log link on an outcome with real-line noise, whose
    draws must stay positive too (hmodels refuses non-positive outcomes with a log link).
    """
    positive = np.ndim(fam.example_eta) == 0 and float(fam.example_eta) > 0
    return (positive and fam.link in ("identity", "inverse")) or (fam.link == "log" and "sigma" in fam.aux)


def simulate(fam, seed: int) -> tuple[pd.DataFrame, dict]:
    """Data from the family's own simulator, and the true value of every reported parameter (by its label)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(G), PER)
    x = rng.normal(size=G * PER)
    ex = np.asarray(fam.example_eta, dtype=float)
    s = 0.25 if _positive_mean(fam) else 1.0
    b0 = 0.0 if fam.outcome == "ordinal" else 0.3 + ex  # an ordinal intercept is in its thresholds
    b1, sd = 0.4 * s, 0.4 * s
    u = rng.normal(0.0, sd, (G,) + ex.shape)  # one effect per category of a categorical outcome
    eta = b0 + b1 * x.reshape((-1,) + (1,) * ex.ndim) + u[g]
    aux = {a: fam.aux_spec(a).example for a in fam.aux}
    if _positive_mean(fam) and "sigma" in aux:
        aux["sigma"] = 0.1  # the outcome stays positive (7 sigma from the smallest mean)
    trials = rng.integers(5, 15, size=G * PER) if fam.outcome == "binomial" else None
    y = fam.simulate(rng, fam.mean(eta), aux, trials=trials)
    df = pd.DataFrame({"y": y, "x": x, "g": pd.Categorical(g)})
    if trials is not None:
        df["n"] = trials
    truth = {}
    if ex.ndim:  # per category: b0 + example, b1, sd (labels in the fit's order, checked below)
        truth["predictors"] = [(float(b), b1, sd) for b in np.atleast_1d(b0)]
    else:
        if fam.outcome != "ordinal":
            truth["Intercept"] = float(b0)
        truth["x"] = b1
        truth["sd(g, Intercept)"] = sd
    for a, v in aux.items():
        truth[a] = np.asarray(v, dtype=float)
    return df, truth


def _model(fam, df) -> hm.Model:
    lhs = "p(y, n)" if fam.outcome == "binomial" else "y"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hm.DataWarning)
        return hm.Model(f"{lhs} ~ x + (1 | g)", df, family=fam.name, link=fam.link)


def _draws_by_label(fit: hm.Fit, truth: dict) -> list[tuple[str, float, np.ndarray]]:
    """(label, true value, draws) for every true value."""
    post = fit.draws
    out = []
    terms = [str(t) for t in post["b"].coords["term"].values]
    if "predictors" in truth:  # categorical: blocks of (Intercept, x) terms, one SD per block, in order
        sds = [str(t) for t in post["sd_g"].coords["g__term"].values]
        for j, (b0, b1, sd) in enumerate(truth["predictors"]):
            it, xt = terms[2 * j], terms[2 * j + 1]
            assert it.endswith("Intercept") and xt.endswith("_x") and sds[j] == it, (terms, sds)
            out.append((it, b0, post["b"].sel(term=it).values.ravel()))
            out.append((xt, b1, post["b"].sel(term=xt).values.ravel()))
            out.append((f"sd(g, {it})", sd, post["sd_g"].sel(g__term=it).values.ravel()))
    for name, value in truth.items():
        if name in terms:
            out.append((name, value, post["b"].sel(term=name).values.ravel()))
        elif name.startswith("sd("):
            term = name.split(", ")[1].rstrip(")")
            out.append((name, value, post["sd_g"].sel(g__term=term).values.ravel()))
        elif name in post:
            draws = post[name].values.reshape(post[name].shape[0] * post[name].shape[1], -1)
            for k, v in enumerate(np.atleast_1d(value)):
                out.append((f"{name}[{k}]" if np.ndim(value) else name, float(v), draws[:, k]))
    return out


def _checks(fit: hm.Fit, truth: dict) -> list[tuple[str, float, float, bool]]:
    """(label, true value, |mean - truth| / sd, truth inside the central 90 % interval)."""
    rows = []
    for label, value, draws in _draws_by_label(fit, truth):
        lo, hi = np.quantile(draws, [0.05, 0.95])
        rows.append((label, value, abs(draws.mean() - value) / draws.std(), bool(lo <= value <= hi)))
    return rows


def _fit(model: hm.Model, seed: int) -> hm.Fit:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(seed=seed, progressbar=False)  # the defaults: what a user gets


@pytest.mark.parametrize("family, link", PAIRS, ids=[f"{f}-{k}" for f, k in PAIRS])
def test_recovers_simulated_parameters(family, link):
    fam = get_family(family, link)
    checks, report = [], []
    for seed in SEEDS:
        df, truth = simulate(fam, seed)
        fit = _fit(_model(fam, df), seed)
        assert fit.divergences == 0, (family, link, seed, fit.divergences)
        rows = _checks(fit, truth)
        assert {r[0] for r in rows} >= {k for k in truth if k != "predictors" and k not in fam.aux}, rows
        checks += rows
        report += [f"seed {seed} {n}: true {v:.3g}, z {z:.2f}, in90 {c}" for n, v, z, c in rows]
    CHECKS[(family, link)] = checks
    assert all(z < Z_GROSS for _, _, z, _ in checks), "\n".join(report)


def test_correlated_slopes_are_recovered():
    rng = np.random.default_rng(11)
    g = np.repeat(np.arange(G), PER)
    x = rng.normal(size=G * PER)
    u = rng.multivariate_normal([0, 0], [[0.36, 0.5 * 0.6 * 0.4], [0.5 * 0.6 * 0.4, 0.16]], G)
    y = rng.normal(0.5 + 0.8 * x + u[g, 0] + u[g, 1] * x, 1.2)
    fit = _fit(hm.Model("y ~ x + (x | g)", pd.DataFrame({"y": y, "x": x, "g": pd.Categorical(g)})), 11)
    truth = {"Intercept": 0.5, "x": 0.8, "sd(g, Intercept)": 0.6, "sd(g, x)": 0.4, "sigma": 1.2}
    rows = _checks(fit, truth)
    rho = fit.draws["cor_g"].values.reshape(-1, 2, 2)[:, 0, 1]
    assert fit.divergences == 0 and len(rows) == 5
    assert all(z < Z_GROSS for _, _, z, _ in rows), rows
    assert abs(rho.mean() - 0.5) / rho.std() < Z_GROSS


def test_pooled_coverage_of_90_percent_intervals():
    if set(CHECKS) != set(PAIRS):
        pytest.skip("needs every per-family recovery test in the same session (run the whole module)")
    checks = [c for rows in CHECKS.values() for c in rows]
    coverage = np.mean([c[3] for c in checks])
    assert len(checks) >= 200
    assert 0.80 <= coverage <= 0.985, f"90% interval coverage {coverage:.3f} over {len(checks)} checks"

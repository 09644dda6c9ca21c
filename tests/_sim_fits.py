"""Small simulated fits shared by test_diagnostics, test_components and test_checks (fitted once per session)."""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pandas as pd

import hmodels as hm

SLOPE = dict(groups=20, per_group=10, sd_intercept=1.0, sigma=0.5, b0=1.0, b1=0.5)
COUNTS = dict(groups=20, per_group=15, sd_intercept=0.5, alpha=2.0, b0=1.5, b1=0.4)
SETTINGS = dict(draws=500, tune=500, chains=2, seed=1, progressbar=False)


def _exact(z: np.ndarray, sd: float) -> np.ndarray:
    """Group effects with realised mean 0 and SD exactly ``sd`` (so the truth is the realisation)."""
    z = z - z.mean()
    return sd * z / z.std(ddof=1) if sd > 0 else np.zeros_like(z)


def slope_data(sd_slope: float, seed: int = 3) -> pd.DataFrame:
    """y = b0 + a_g + (b1 + s_g) x + e, x evenly spaced in [-1, 1] within each group.

    The group intercepts and slopes are standardised to their nominal SDs (mean 0), so that the
    variance components of this data set are the nominal ones, not a noisy realisation of them.
    """
    p = SLOPE
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(p["groups"]), p["per_group"])
    x = np.tile(np.linspace(-1, 1, p["per_group"]), p["groups"])
    a = _exact(rng.normal(size=p["groups"]), p["sd_intercept"])
    s = _exact(rng.normal(size=p["groups"]), sd_slope)
    mu = p["b0"] + a[g] + (p["b1"] + s[g]) * x
    y = mu + rng.normal(0, p["sigma"], g.size)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i:02d}" for i in g], "mu": mu})


@functools.cache
def slope_fit(sd_slope: float, seed: int = 3) -> hm.Fit:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hm.Model("y ~ x + (x | g)", slope_data(sd_slope, seed)).fit(**SETTINGS)


def count_data(seed: int = 5) -> pd.DataFrame:
    """Negative-binomial counts (shape alpha) with a random intercept per group."""
    p = COUNTS
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(p["groups"]), p["per_group"])
    x = rng.normal(size=g.size)
    a = rng.normal(0, p["sd_intercept"], p["groups"])
    mu = np.exp(p["b0"] + p["b1"] * x + a[g])
    y = rng.poisson(rng.gamma(p["alpha"], mu / p["alpha"]))
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i:02d}" for i in g]})


@functools.cache
def count_fit(family: str) -> hm.Fit:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hm.Model("y ~ x + (1 | g)", count_data(), family=family).fit(**SETTINGS)


@functools.cache
def centred_schools_fit() -> hm.Fit:
    """Centred eight schools with a low target_accept: the classic funnel with divergences."""
    model = hm.Model("y | se(sigma) ~ 1 + (1 | school)", hm.datasets.load("eight_schools"), centered=True,
                     priors={"Intercept": hm.Normal(0, 5), "sd": hm.HalfCauchy(5)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(draws=500, tune=500, chains=2, seed=5, target_accept=0.6, progressbar=False,
                         method="joint")


def zero_truncated_data(seed: int = 5) -> pd.DataFrame:
    """Zero-truncated poisson counts (rates around 1, so the truncation matters) with a random intercept."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(15), 20)
    x = rng.normal(size=g.size)
    lam = np.exp(0.0 + 0.5 * x + rng.normal(0, 0.3, 15)[g])
    y = rng.poisson(lam)
    while (y == 0).any():  # Poisson(lam) | y >= 1
        y[y == 0] = rng.poisson(lam[y == 0])
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i:02d}" for i in g]})


@functools.cache
def zero_truncated_fit() -> hm.Fit:
    """``y | trunc(lb=1) ~ x + (1 | g)``, poisson: the expected count is ``mu / (1 - exp(-mu))``, not ``mu``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hm.Model("y | trunc(lb=1) ~ x + (1 | g)", zero_truncated_data(), family="poisson").fit(**SETTINGS)


@functools.cache
def zi_formula_fit() -> hm.Fit:
    """Zero-inflated poisson whose ``zi`` has its own formula (``dpars={"zi": "1 + x"}``): zi differs by row."""
    rng = np.random.default_rng(7)
    g = np.repeat(np.arange(15), 20)
    x = rng.normal(size=g.size)
    zi = 1 / (1 + np.exp(-(-1.0 + 1.0 * x)))
    lam = np.exp(0.8 + 0.4 * x + rng.normal(0, 0.3, 15)[g])
    y = np.where(rng.uniform(size=g.size) < zi, 0, rng.poisson(lam))
    data = pd.DataFrame({"y": y, "x": x, "g": [f"g{i:02d}" for i in g]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return hm.Model("y ~ x + (1 | g)", data, family="zero_inflated_poisson", dpars={"zi": "1 + x"}).fit(**SETTINGS)

"""Hard GLMMs with known truth (issue 14): simulators of the shapes on which NUTS struggles at defaults.

Each case is a :class:`HardCase` made by a function ``case(seed, size="full")``; ``size="small"``
gives a scaled-down version of the same shape for fast smoke tests. ``truth`` holds the values the
data were simulated from: ``b`` (coefficient per fixed term) and ``sd`` (per factor, per term).
``CASES`` maps each case name to its simulator; ``benchmarks/hard.py`` runs them all at default settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["HardCase", "CASES", "make_case", "nested_poisson", "grouseticks", "crossed_bernoulli",
           "crossed_bernoulli_rare", "toenail_like", "slope_near_zero", "binomial_few_groups",
           "negbin_obs_effect"]


@dataclass
class HardCase:
    """A model, its data and the truth it was simulated from (``truth`` is None for real data)."""

    name: str
    formula: str
    data: pd.DataFrame
    family: str
    truth: dict | None
    notes: str = ""
    extra: dict = field(default_factory=dict)

    def model(self, **kwargs):
        """The :class:`hmodels.Model` of this case (default settings unless ``kwargs`` say otherwise)."""
        import hmodels as hm

        return hm.Model(self.formula, self.data, family=self.family, **kwargs)


def _cat(codes, prefix):
    labels = [f"{prefix}{i + 1}" for i in range(int(codes.max()) + 1)]
    return pd.Categorical([labels[c] for c in codes], categories=labels)


def nested_poisson(seed: int = 0, size: str = "full") -> HardCase:
    """Issue 14's shape: 120 broods (1-6 rows each) nested 2 per location in 60 locations, poisson log link.

    ``y ~ year + h + (1 | brood) + (1 | loc)``, SD(brood) 0.83 and SD(loc) 0.55 on the log scale
    (grouseticks' lme4 fit has 0.77 and 0.57), a 3-level factor ``year`` and a standardised
    continuous ``h``; coefficients near grouseticks' (0.47, 1.17, -0.98, -0.85).
    """
    rng = np.random.default_rng([14, 1, seed])
    n_loc = 60 if size == "full" else 20
    n_brood = 2 * n_loc
    loc_of_brood = np.repeat(np.arange(n_loc), 2)
    rows = rng.integers(1, 7, size=n_brood)
    brood = np.repeat(np.arange(n_brood), rows)
    loc = loc_of_brood[brood]
    year_of_brood = rng.integers(0, 3, size=n_brood)  # a brood is observed in one year, as in grouseticks
    h_of_loc = rng.normal(size=n_loc)  # height is a property of the location
    year, h = year_of_brood[brood], h_of_loc[loc]
    b = {"Intercept": 0.47, "year[96]": 1.17, "year[97]": -0.98, "h": -0.85}
    sd = {"brood": 0.83, "loc": 0.55}
    eta = (b["Intercept"] + np.where(year == 1, b["year[96]"], 0.0) + np.where(year == 2, b["year[97]"], 0.0)
           + b["h"] * h + sd["brood"] * rng.normal(size=n_brood)[brood] + sd["loc"] * rng.normal(size=n_loc)[loc])
    data = pd.DataFrame({"y": rng.poisson(np.exp(eta)),
                         "year": pd.Categorical(np.array(["95", "96", "97"])[year], categories=["95", "96", "97"]),
                         "h": h, "brood": _cat(brood, "b"), "loc": _cat(loc, "l")})
    return HardCase("nested_poisson", "y ~ year + h + (1 | brood) + (1 | loc)", data, "poisson",
                    {"b": b, "sd": {"brood": {"Intercept": sd["brood"]}, "loc": {"Intercept": sd["loc"]}}},
                    f"{len(data)} rows, {n_brood} broods nested in {n_loc} locations")


def grouseticks(seed: int = 0, size: str = "full") -> HardCase:
    """lme4's grouseticks (real data, no truth; lme4's Laplace fit in ``extra["lme4"]``).

    ``seed`` and ``size`` are accepted for a uniform interface; the data are the same.
    """
    import hmodels as hm

    data = hm.datasets.load("grouseticks")
    lme4 = {"b": {"Intercept": 0.4668623, "YEAR[96]": 1.1655824, "YEAR[97]": -0.9779325, "scale(HEIGHT)": -0.8466356},
            "sd": {"BROOD": {"Intercept": 0.76965}, "LOCATION": {"Intercept": 0.57414}}}
    return HardCase("grouseticks", "TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | LOCATION)", data, "poisson",
                    None, "403 rows, 118 broods nested in 63 locations (lme4::grouseticks)", {"lme4": lme4})


def _crossed(seed, size, intercept, name):
    rng = np.random.default_rng([14, 2, seed, int(intercept < -1)])
    n, n_a, n_b = (20_000, 500, 200) if size == "full" else (2_000, 50, 20)
    a = rng.integers(0, n_a, size=n)
    g = rng.integers(0, n_b, size=n)
    x = rng.normal(size=n)
    b = {"Intercept": intercept, "x": 0.5}
    sd = {"a": 1.0, "g": 0.6}
    eta = b["Intercept"] + b["x"] * x + sd["a"] * rng.normal(size=n_a)[a] + sd["g"] * rng.normal(size=n_b)[g]
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    data = pd.DataFrame({"y": y, "x": x, "a": _cat(a, "a"), "g": _cat(g, "g")})
    return HardCase(name, "y ~ x + (1 | a) + (1 | g)", data, "bernoulli",
                    {"b": b, "sd": {"a": {"Intercept": sd["a"]}, "g": {"Intercept": sd["g"]}}},
                    f"{n} rows, {n_a} x {n_b} crossed levels, prevalence {y.mean():.3f}")


def crossed_bernoulli(seed: int = 0, size: str = "full") -> HardCase:
    """Crossed binary data: 20,000 rows, factors of 500 and 200 levels (SDs 1.0 and 0.6), prevalence ~0.5."""
    return _crossed(seed, size, 0.0, "crossed_bernoulli")


def crossed_bernoulli_rare(seed: int = 0, size: str = "full") -> HardCase:
    """The crossed design at ~2% prevalence (intercept -4.6 on the logit scale): ~400 events in 20,000 rows."""
    return _crossed(seed, size, -4.6, "crossed_bernoulli_rare")


def toenail_like(seed: int = 0, size: str = "full") -> HardCase:
    """Binary longitudinal data like the toenail trial: 300 subjects x 7 visits, subject SD 4 (ICC 0.83).

    ``y ~ treat * month + (1 | id)``; latent-scale ICC = 16 / (16 + pi^2 / 3) = 0.83.
    """
    rng = np.random.default_rng([14, 3, seed])
    n_id = 300 if size == "full" else 60
    months = np.array([0, 1, 2, 3, 6, 9, 12], dtype=float)
    idx = np.repeat(np.arange(n_id), len(months))
    month = np.tile(months, n_id)
    treat = (np.arange(n_id) % 2)[idx]
    b = {"Intercept": -1.6, "treat": 0.0, "month": -0.4, "treat:month": -0.15}
    sd = 4.0
    eta = (b["Intercept"] + b["treat"] * treat + b["month"] * month + b["treat:month"] * treat * month
           + sd * rng.normal(size=n_id)[idx])
    y = (rng.random(len(idx)) < 1 / (1 + np.exp(-eta))).astype(int)
    data = pd.DataFrame({"y": y, "treat": treat.astype(float), "month": month, "id": _cat(idx, "s")})
    return HardCase("toenail_like", "y ~ treat * month + (1 | id)", data, "bernoulli",
                    {"b": b, "sd": {"id": {"Intercept": sd}}}, f"{n_id} subjects x 7 visits, ICC 0.83")


def slope_near_zero(seed: int = 0, size: str = "full") -> HardCase:
    """A poisson random slope whose SD is near zero: ``y ~ x + (x | g)``, SD(x) 0.02, SD(Intercept) 0.5."""
    rng = np.random.default_rng([14, 4, seed])
    n_g, per = (40, 15) if size == "full" else (15, 10)
    g = np.repeat(np.arange(n_g), per)
    x = rng.normal(size=len(g))
    b = {"Intercept": 1.0, "x": 0.3}
    sd = {"Intercept": 0.5, "x": 0.02}
    eta = (b["Intercept"] + sd["Intercept"] * rng.normal(size=n_g)[g]
           + (b["x"] + sd["x"] * rng.normal(size=n_g)[g]) * x)
    data = pd.DataFrame({"y": rng.poisson(np.exp(eta)), "x": x, "g": _cat(g, "g")})
    return HardCase("slope_near_zero", "y ~ x + (x | g)", data, "poisson", {"b": b, "sd": {"g": sd}},
                    f"{len(g)} rows, {n_g} groups, slope SD 0.02")


def binomial_few_groups(seed: int = 0, size: str = "full") -> HardCase:
    """A binomial GLMM with 5 groups (SD 0.7): ``k | trials(n) ~ x + (1 | g)``, 20 rows per group, 10 trials."""
    rng = np.random.default_rng([14, 5, seed])
    n_g, per = 5, (20 if size == "full" else 8)
    g = np.repeat(np.arange(n_g), per)
    x = rng.normal(size=len(g))
    b = {"Intercept": -0.3, "x": 0.6}
    sd = 0.7
    eta = b["Intercept"] + b["x"] * x + sd * rng.normal(size=n_g)[g]
    n = np.full(len(g), 10)
    data = pd.DataFrame({"k": rng.binomial(n, 1 / (1 + np.exp(-eta))), "n": n, "x": x, "g": _cat(g, "g")})
    return HardCase("binomial_few_groups", "k | trials(n) ~ x + (1 | g)", data, "binomial",
                    {"b": b, "sd": {"g": {"Intercept": sd}}}, f"{len(g)} rows, 5 groups")


def negbin_obs_effect(seed: int = 0, size: str = "full") -> HardCase:
    """Negative binomial counts with an observation-level effect and a group effect.

    ``y ~ x + (1 | g) + (1 | row)``: 40 groups x 10 rows, SD(g) 0.5, SD(obs) 0.4, NB shape 5;
    the observation-level effect and the NB overdispersion are only weakly separable.
    """
    rng = np.random.default_rng([14, 6, seed])
    n_g, per = (40, 10) if size == "full" else (15, 8)
    g = np.repeat(np.arange(n_g), per)
    n = len(g)
    x = rng.normal(size=n)
    b = {"Intercept": 1.2, "x": 0.4}
    sd = {"g": 0.5, "obs": 0.4}
    shape = 5.0
    eta = b["Intercept"] + b["x"] * x + sd["g"] * rng.normal(size=n_g)[g] + sd["obs"] * rng.normal(size=n)
    mu = np.exp(eta)
    y = rng.negative_binomial(shape, shape / (shape + mu))
    data = pd.DataFrame({"y": y, "x": x, "g": _cat(g, "g"), "row": _cat(np.arange(n), "o")})
    return HardCase("negbin_obs_effect", "y ~ x + (1 | g) + (1 | row)", data, "negativebinomial",
                    {"b": b, "sd": {"g": {"Intercept": sd["g"]}, "row": {"Intercept": sd["obs"]}}, "alpha": shape},
                    f"{n} rows, {n_g} groups, one effect per row")


CASES = {f.__name__: f for f in (nested_poisson, grouseticks, crossed_bernoulli, crossed_bernoulli_rare,
                                 toenail_like, slope_near_zero, binomial_few_groups, negbin_obs_effect)}


def make_case(name: str, seed: int = 0, size: str = "full") -> HardCase:
    """The case ``name`` of :data:`CASES` simulated with ``seed`` at ``size`` ("full" or "small")."""
    return CASES[name](seed, size)

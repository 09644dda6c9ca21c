"""Two-part families for continuous outcomes with exact zeros (and ones).

The hurdle gamma, the hurdle lognormal and the zero-one-inflated beta.

Parameterisations follow brms, so priors and estimates carry over:

* ``hurdle_gamma`` (log link): ``P(y = 0) = hu``; a positive ``y`` is ``Gamma`` with mean ``mu`` and
  ``shape`` (costs, rainfall, durations with exact zeros).
* ``hurdle_lognormal`` (identity link on the mean of ``log y``): ``P(y = 0) = hu``; a positive ``y``
  is ``LogNormal(mu, sigma)``.
* ``zero_one_inflated_beta`` (logit link): ``P(y in {0, 1}) = zoi``, ``P(y = 1 | y in {0, 1}) = coi``;
  otherwise ``Beta(mu phi, (1 - mu) phi)`` (proportions that can be exactly 0 or 1).

``mu`` is the location of the continuous part; :meth:`response_mean` gives the expected outcome
(``(1 - hu) mu`` for the hurdle gamma, ``zoi coi + (1 - zoi) mu`` for the zero-one-inflated beta).
The zero (and one) probabilities have one value for all rows. Each has a kernel in the compiled
engine (``engine_code``; hand-derived gradients, checked by the generated conformance suite against
PyMC, scipy and finite differences). ICC and marginal/conditional R² are not defined for them (two
processes make the outcome); Bayesian R² is.

Examples
--------
>>> import hmodels as hm
>>> fam = hm.families.get_family("hurdle_gamma")
>>> float(fam.response_mean(4.0, {"hu": 0.25, "shape": 2.0}))
3.0
>>> zoib = hm.families.get_family("zero_one_inflated_beta")
>>> float(zoib.response_mean(0.5, {"phi": 5.0, "zoi": 0.2, "coi": 0.5}))
0.5
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..engine import codes as K
from ..errors import DataError
from .auxiliary import AuxSpec
from .base import _P_EPS, Family, _clip_pt

__all__ = ["HurdleGamma", "HurdleLogNormal", "ZeroOneInflatedBeta"]


def _bad_rows(family, y, bad, column, labels, need: str, hint: str) -> None:
    if bad.any():
        from ..errors import row_labels

        vals = ", ".join(f"{v:.6g}" for v in np.unique(np.asarray(y, dtype=float)[bad])[:3])
        raise DataError(
            f"The {family.name} family models {need}, but {column!r} is outside it in {row_labels(labels, bad)} "
            f"(values such as {vals}). {hint}"
        )


#: Why ICC / latent R² are not defined for these families (Family.no_latent_scale).
_NO_LATENT = ("two processes (the zeros and the continuous part) make the outcome, so there is no single latent-scale "
              "residual variance. Bayesian R² (hm.components.bayes_r2(fit)) is defined.")


@dataclass(frozen=True, repr=False)
class _ContinuousHurdle(Family):
    """``P(0) = hu``; a positive outcome from the continuous part (``_logf``, ``_draw``, ``_moments``)."""

    ppc_kind: ClassVar = "density"
    zero_in_support: ClassVar = True
    hurdle: ClassVar = True
    no_latent_scale: ClassVar = _NO_LATENT

    def check_response(self, y, column, labels) -> None:  # noqa: D102 - see Family
        y = np.asarray(y, dtype=float)
        _bad_rows(self, y, y < 0, column, labels, "zero or a positive outcome",
                  "Drop or correct those rows; an outcome that can be negative needs gaussian or student_t.")


    def loglik(self, y, mu, aux, trials=None, se=None):  # noqa: D102
        y = np.asarray(y, dtype=float)
        hu = np.asarray(aux["hu"], dtype=float)
        positive = y > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            cont = self._logf(np.where(positive, y, 1.0), mu, aux)
        return np.where(positive, np.log1p(-hu) + cont, np.log(hu))

    def simulate(self, rng, mu, aux, trials=None, se=None):  # noqa: D102
        draws = self._draw(rng, mu, aux)
        zero = rng.random(np.shape(draws)) < np.asarray(aux["hu"], dtype=float)
        return np.where(zero, 0.0, draws)

    def response_mean(self, mu, aux, trials=None):
        """``(1 - hu)`` times the mean of the continuous part."""
        return (1 - np.asarray(aux["hu"], dtype=float)) * self._moments(mu, aux)[0]

    def variance(self, mu, aux, trials=None, se=None):  # noqa: D102
        keep = 1 - np.asarray(aux["hu"], dtype=float)
        m1, m2 = self._moments(mu, aux)
        return keep * m2 - (keep * m1) ** 2


@dataclass(frozen=True, repr=False)
class HurdleGamma(_ContinuousHurdle):
    """Zero with probability ``hu``, else ``Gamma`` with mean ``mu`` and ``shape`` (log link).

    Examples
    --------
    >>> import hmodels as hm
    >>> hm.families.get_family("hurdle_gamma").aux
    ('shape', 'hu')
    """

    links: ClassVar = ("log",)
    default_link: ClassVar = "log"
    aux: ClassVar = ("shape", "hu")
    engine_code: ClassVar = K.FAM_HURDLEGAMMA

    def _logf(self, y, mu, aux):
        from scipy import stats

        shape = np.asarray(aux["shape"], dtype=float)
        return stats.gamma.logpdf(y, shape, scale=np.asarray(mu, dtype=float) / shape)

    def _draw(self, rng, mu, aux):
        shape = np.asarray(aux["shape"], dtype=float)
        mu = np.asarray(mu, dtype=float)
        return rng.gamma(np.broadcast_to(shape, np.broadcast_shapes(shape.shape, mu.shape)), mu / shape)

    def _moments(self, mu, aux):
        mu = np.asarray(mu, dtype=float)
        return mu, mu**2 * (1 + 1 / np.asarray(aux["shape"], dtype=float))

    def pymc_likelihood(self, name, eta, aux, y, trials=None, se=None, dims="obs"):  # noqa: D102
        import pymc as pm

        mu, shape = self.link_fn.inverse_pt(eta), aux["shape"]
        return pm.HurdleGamma(name, psi=1 - aux["hu"], alpha=shape, beta=shape / mu, observed=y, dims=dims)


@dataclass(frozen=True, repr=False)
class HurdleLogNormal(_ContinuousHurdle):
    """Zero with probability ``hu``, else ``LogNormal(mu, sigma)`` (``mu``: mean of ``log y``, identity link).

    Examples
    --------
    >>> import hmodels as hm
    >>> hm.families.get_family("hurdle_lognormal").aux
    ('sigma', 'hu')
    """

    links: ClassVar = ("identity",)
    default_link: ClassVar = "identity"
    aux: ClassVar = ("sigma", "hu")
    engine_code: ClassVar = K.FAM_HURDLELOGNORMAL
    aux_specs: ClassVar = {
        "sigma": AuxSpec("positive", "HalfNormal(1)",
                         "SD of log y below about 2: positive values within a factor of ~50 of their median.",
                         "SD of log({response}) among its positive values", example=0.5),
    }

    def engine_location(self, y):
        """``log y`` of the positive outcomes (NaN at the zeros): the scale of ``mu`` (the engine's reference fit)."""
        y = np.asarray(y, dtype=float)
        with np.errstate(divide="ignore"):
            return np.where(y > 0, np.log(np.where(y > 0, y, 1.0)), np.nan)

    def _logf(self, y, mu, aux):
        from scipy import stats

        return stats.lognorm.logpdf(y, np.asarray(aux["sigma"], dtype=float), scale=np.exp(mu))

    def _draw(self, rng, mu, aux):
        return np.exp(rng.normal(mu, aux["sigma"]))

    def _moments(self, mu, aux):
        mu, s2 = np.asarray(mu, dtype=float), np.asarray(aux["sigma"], dtype=float) ** 2
        return np.exp(mu + s2 / 2), np.exp(2 * mu + 2 * s2)

    def pymc_likelihood(self, name, eta, aux, y, trials=None, se=None, dims="obs"):  # noqa: D102
        import pymc as pm

        return pm.HurdleLogNormal(name, psi=1 - aux["hu"], mu=eta, sigma=aux["sigma"], observed=y, dims=dims)


@dataclass(frozen=True, repr=False)
class ZeroOneInflatedBeta(Family):
    """A proportion in [0, 1] with exact 0s and 1s (brms's ``zero_one_inflated_beta``): ``phi``, ``zoi``, ``coi``.

    Examples
    --------
    >>> import hmodels as hm
    >>> fam = hm.families.get_family("zoib")
    >>> fam.name, fam.aux
    ('zero_one_inflated_beta', ('phi', 'zoi', 'coi'))
    """

    links: ClassVar = ("logit",)
    default_link: ClassVar = "logit"
    aux: ClassVar = ("phi", "zoi", "coi")
    no_latent_scale: ClassVar = _NO_LATENT
    engine_code: ClassVar = K.FAM_ZOIB
    aux_specs: ClassVar = {
        "zoi": AuxSpec("unit", "Beta(1, 1)", "brms's default: every probability of an exact 0 or 1 equally plausible.",
                       "probability that {response} is exactly 0 or 1", example=0.2),
        "coi": AuxSpec("unit", "Beta(1, 1)", "brms's default: every share of ones among the exact 0s and 1s equally "
                       "plausible.", "probability that an exact 0-or-1 value of {response} is 1", example=0.4),
    }
    aliases: ClassVar = ("zoib",)

    def check_response(self, y, column, labels) -> None:  # noqa: D102
        y = np.asarray(y, dtype=float)
        hint = " If they are percentages, divide by 100." if (y[(y < 0) | (y > 1)] <= 100).all() else ""
        _bad_rows(self, y, (y < 0) | (y > 1), column, labels, "a proportion in [0, 1]", hint.strip())

    def link_scale_response(self, y, name):
        """``logit`` of the outcome squeezed into (0, 1), ``(y (n - 1) + 0.5) / n`` (Smithson & Verkuilen 2006)."""
        y = np.asarray(y, dtype=float)
        n = len(y)
        return self.link_fn.link((y * (n - 1) + 0.5) / n), f"logit({name})"


    def loglik(self, y, mu, aux, trials=None, se=None):  # noqa: D102
        from scipy import stats

        y = np.asarray(y, dtype=float)
        mu = np.clip(np.asarray(mu, dtype=float), _P_EPS, 1 - _P_EPS)
        phi, zoi, coi = (np.asarray(aux[k], dtype=float) for k in ("phi", "zoi", "coi"))
        inside = (y > 0) & (y < 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            cont = np.log1p(-zoi) + stats.beta.logpdf(np.where(inside, y, 0.5), mu * phi, (1 - mu) * phi)
        return np.where(inside, cont, np.log(zoi) + np.where(y == 1, np.log(coi), np.log1p(-coi)))

    def simulate(self, rng, mu, aux, trials=None, se=None):  # noqa: D102
        mu = np.asarray(mu, dtype=float)
        phi, zoi, coi = (np.asarray(aux[k], dtype=float) for k in ("phi", "zoi", "coi"))
        shape = np.broadcast_shapes(mu.shape, phi.shape, zoi.shape)
        inner = rng.beta(np.broadcast_to(mu * phi, shape), np.broadcast_to((1 - mu) * phi, shape))
        edge = rng.random(shape) < zoi
        one = rng.random(shape) < coi
        return np.where(edge, one.astype(float), inner)

    def response_mean(self, mu, aux, trials=None):
        """``zoi coi + (1 - zoi) mu``."""
        zoi, coi = np.asarray(aux["zoi"], dtype=float), np.asarray(aux["coi"], dtype=float)
        return zoi * coi + (1 - zoi) * np.asarray(mu, dtype=float)

    def variance(self, mu, aux, trials=None, se=None):  # noqa: D102
        mu = np.asarray(mu, dtype=float)
        phi, zoi, coi = (np.asarray(aux[k], dtype=float) for k in ("phi", "zoi", "coi"))
        second = zoi * coi + (1 - zoi) * (mu * (1 - mu) / (1 + phi) + mu**2)
        return second - self.response_mean(mu, aux) ** 2

    def pymc_likelihood(self, name, eta, aux, y, trials=None, se=None, dims="obs"):  # noqa: D102
        import pymc as pm
        import pytensor.tensor as pt

        def logp(value, mu, phi, zoi, coi):
            inside = pt.and_(pt.gt(value, 0), pt.lt(value, 1))
            safe = pt.switch(inside, value, 0.5)
            cont = pt.log1p(-zoi) + pm.logp(pm.Beta.dist(alpha=mu * phi, beta=(1 - mu) * phi), safe)
            edge = pt.log(zoi) + pt.switch(pt.eq(value, 1), pt.log(coi), pt.log1p(-coi))
            return pt.switch(inside, cont, edge)

        mu = _clip_pt(self.link_fn.inverse_pt(eta))
        return pm.CustomDist(name, mu, aux["phi"], aux["zoi"], aux["coi"], logp=logp,
                             observed=np.asarray(y, dtype=float), dims=dims)

"""Families for positive continuous outcomes: gamma, lognormal, exponential and weibull.

Each has a kernel in the compiled engine (``engine_code``; the lognormal is the gaussian kernel on
``log y``). Parameterisations follow brms, so that priors and estimates carry over:

===========  ===========================  =========================  ==================================
family       location ``mu``              own parameters             variance of ``y``
===========  ===========================  =========================  ==================================
gamma        mean                         ``shape``                  ``mu^2 / shape``
lognormal    mean of ``log y``            ``sigma`` (SD of log y)    ``(exp(sigma^2) - 1) exp(2 mu + sigma^2)``
exponential  mean                         —                          ``mu^2``
weibull      mean                         ``shape``                  ``mu^2 (G(1 + 2/shape) / G(1 + 1/shape)^2 - 1)``
===========  ===========================  =========================  ==================================

Censored times (``time | cens(censored) ~ ...``, brms's coding: 1 = right-censored) and truncation
(``y | trunc(lb=, ub=)``) use :meth:`~hmodels.families.base.Family.pymc_dist` and
:meth:`~hmodels.families.base.Family.scipy_dist` on the PyMC graph and in summaries; the compiled engine
evaluates both for the lognormal, exponential and weibull (``engine_censoring``, ``engine_truncation``), and the
gamma's on the PyMC graph (the plan says so).

Examples
--------
>>> import hmodels as hm
>>> fam = hm.families.get_family("weibull")
>>> fam, fam.aux, fam.engine_code is None
(Family(name='weibull', link='log'), ('shape',), False)
>>> float(fam.response_mean(2.0, {"shape": 1.0})), float(fam.variance(2.0, {"shape": 1.0}))  # exponential
(2.0, 4.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..engine import codes as K
from ..errors import DataError
from .auxiliary import AuxSpec
from .base import Family, _count_latent_variance, _size_biased_ratio

__all__ = ["Gamma", "LogNormal", "Exponential", "Weibull", "check_positive"]


def check_positive(family: Family, y: np.ndarray, column: str, labels: np.ndarray) -> None:
    """Raise :class:`~hmodels.errors.DataError` naming the rows where ``y <= 0`` (positive-only families).

    Examples
    --------
    >>> import numpy as np, hmodels as hm
    >>> check_positive(hm.families.get_family("gamma"), np.array([1.0, 0.0]), "cost", np.array([7, 8]))
    Traceback (most recent call last):
    ...
    hmodels.errors.DataError: The gamma family models a positive outcome, but 'cost' is zero or negative in 1 row ...
    """
    bad = np.asarray(y, dtype=float) <= 0
    if bad.any():
        from ..errors import row_labels

        vals = ", ".join(f"{v:.6g}" for v in np.unique(np.asarray(y, dtype=float)[bad])[:3])
        raise DataError(
            f"The {family.name} family models a positive outcome, but {column!r} is zero or negative in "
            f"{row_labels(labels, bad)} (values such as {vals}). Drop or correct those rows if they are errors; "
            "exact zeros need a two-part model for the zeros and the positive values (family='hurdle_gamma' or "
            "'hurdle_lognormal'); an outcome that can be negative needs a family on the whole "
            "real line (gaussian, student_t)."
        )


def _link_label(link: str, name: str) -> str:
    return {"log": f"log({name})", "inverse": f"1/{name}"}.get(link, name)


@dataclass(frozen=True, repr=False)
class _Positive(Family):
    """Shared pieces of the positive continuous families (support check, outcome on the link scale)."""

    def check_response(self, y, column, labels) -> None:  # noqa: D102 - see Family
        check_positive(self, y, column, labels)

    def link_scale_response(self, y, name):  # noqa: D102
        return self.link_fn.link(np.asarray(y, dtype=float)), _link_label(self.link, name)


@dataclass(frozen=True, repr=False)
class Gamma(_Positive):
    """Positive continuous outcome (costs, durations, concentrations): mean ``mu``, variance ``mu^2 / shape``.

    Links ``log`` (default: effects are ratios of means and the mean stays positive), ``inverse``
    (the canonical link; R's and brms's default) and ``identity``; with the last two the linear
    predictor must stay positive, which the sampler enforces by rejecting proposals.

    Examples
    --------
    >>> import hmodels as hm
    >>> fam = hm.families.get_family("gamma", "inverse")
    >>> float(fam.mean(0.5)), float(fam.variance(2.0, {"shape": 4.0}))
    (2.0, 1.0)
    """

    links: ClassVar = ("log", "inverse", "identity")
    default_link: ClassVar = "log"
    aux: ClassVar = ("shape",)
    engine_code: ClassVar = K.FAM_GAMMA

    def loglik_constant(self, y, trials=None, w=None, known_se=False, collapsed=False) -> float:  # noqa: D102
        return float(-np.log(np.asarray(y, dtype=float)).sum())  # -sum(log y): the kernel has the rest

    @property
    def example_eta(self) -> float:  # noqa: D102
        return 1.0 if self.link == "log" else 3.0  # identity / inverse: a mean well above 0

    def loglik(self, y, mu, aux, trials=None, se=None):  # noqa: D102
        from scipy import stats

        k = aux["shape"]
        return stats.gamma.logpdf(y, k, scale=mu / k)

    def simulate(self, rng, mu, aux, trials=None, se=None):
        """Draws per element of ``mu``; NaN where the mean is not positive (inverse / identity links)."""
        k = np.asarray(aux["shape"], dtype=float)
        mu = np.asarray(mu, dtype=float)
        ok = mu > 0
        return np.where(ok, rng.gamma(k, np.where(ok, mu, 1.0) / k), np.nan)

    def variance(self, mu, aux, trials=None, se=None):  # noqa: D102
        return np.asarray(mu, dtype=float) ** 2 / aux["shape"]

    def latent_residual_variance(self, lam, aux, se=None, method: str = "lognormal"):
        """Variance of ``log y`` given the mean (log link): ``trigamma(shape)`` exactly; approximations.

        ``method="lognormal"``: ``log(1 + 1/shape)``; ``"trigamma"``: ``psi1(shape)`` (exact);
        ``"delta"``: ``1/shape`` (Nakagawa, Johnson & Schielzeth 2017). Not defined for the inverse
        and identity links (raises :class:`~hmodels.errors.FamilyError`).
        """
        if self.link != "log":
            return super().latent_residual_variance(lam, aux, se, method)
        inv = 1.0 / np.asarray(aux["shape"], dtype=float)
        return np.broadcast_to(_count_latent_variance(inv, method), np.shape(lam))

    def latent_label(self, method: str) -> str | None:  # noqa: D102
        return {"lognormal": "log(1 + 1/shape) (lognormal approximation)", "trigamma": "trigamma(shape) (exact)",
                "delta": "1/shape (delta method)"}.get(method)

    def pymc_dist(self, eta, aux, trials=None, se=None):  # noqa: D102
        import pymc as pm
        import pytensor.tensor as pt

        k = aux["shape"]
        rate = k * pt.exp(-eta) if self.link == "log" else k / self.link_fn.inverse_pt(eta)
        return pm.Gamma.dist(alpha=k, beta=rate)

    def scipy_dist(self, mu, aux, trials=None, se=None):  # noqa: D102
        from scipy import stats

        k = np.asarray(aux["shape"], dtype=float)
        return stats.gamma(k, scale=np.asarray(mu, dtype=float) / k)

    def truncated_mean(self, mu, aux, lb, ub):  # noqa: D102 - y f(y; k, theta) = mu f(y; k + 1, theta)
        from scipy import stats

        k, mu = np.asarray(aux["shape"], dtype=float), np.asarray(mu, dtype=float)
        return _size_biased_ratio(mu, stats.gamma(k + 1.0, scale=mu / k), self.scipy_dist(mu, aux), lb, ub, lb, ub,
                                  lb, ub, mu)


@dataclass(frozen=True, repr=False)
class LogNormal(_Positive):
    """Positive outcome whose log is normal: ``log y ~ Normal(mu, sigma)`` (brms's ``lognormal``).

    The linear predictor is ``mu``, the mean of ``log y`` (identity link on the log scale):
    coefficients are changes in ``log y``, ``exp(b)`` ratios of medians. The expected outcome is
    ``exp(mu + sigma^2 / 2)``. ``sigma`` is the residual SD of ``log y``; its data-scaled prior
    uses ``sd(log y)``.

    Examples
    --------
    >>> import hmodels as hm
    >>> fam = hm.families.get_family("lognormal")
    >>> round(float(fam.response_mean(0.0, {"sigma": 1.0})), 4)  # exp(1/2)
    1.6487
    """

    links: ClassVar = ("identity",)
    default_link: ClassVar = "identity"
    aux: ClassVar = ("sigma",)
    aux_specs: ClassVar = {
        "sigma": AuxSpec("positive", "HalfNormal(1)", "Residual SD of log(y) below about 2 SDs of log(y).",
                         "SD of log({response}) (the residual SD on the log scale)", scale="data", example=0.5),
    }
    aliases: ClassVar = ("log_normal",)
    engine_code: ClassVar = K.GAUSSIAN  # a gaussian model of log y (engine_outcome), Jacobian in the constant
    engine_censoring: ClassVar = True  # censored log y: the gaussian's censored_loglik
    engine_truncation: ClassVar = True  # the gaussian's truncation_logmass on log y

    def engine_outcome(self, y):
        """``log y``: the lognormal model is the gaussian model of ``log y``."""
        return np.log(np.asarray(y, dtype=float))

    @property
    def integrates_out(self) -> bool:
        """True: a gaussian identity-link model of ``log y``, so group effects integrate out exactly as for an LMM."""
        return True

    def loglik_constant(self, y, trials=None, w=None, known_se=False, collapsed=False) -> float:  # noqa: D102
        return float(-np.log(np.asarray(y, dtype=float)).sum())  # -sum(log y): the kernel has the rest

    def link_scale_response(self, y, name):  # noqa: D102
        return np.log(np.asarray(y, dtype=float)), f"log({name})"

    def loglik(self, y, mu, aux, trials=None, se=None):  # noqa: D102
        from scipy import stats

        return stats.lognorm.logpdf(y, aux["sigma"], scale=np.exp(mu))

    def simulate(self, rng, mu, aux, trials=None, se=None):  # noqa: D102
        return np.exp(rng.normal(mu, aux["sigma"]))

    def response_mean(self, mu, aux, trials=None):  # noqa: D102
        return np.exp(np.asarray(mu, dtype=float) + 0.5 * np.asarray(aux["sigma"], dtype=float) ** 2)

    def variance(self, mu, aux, trials=None, se=None):  # noqa: D102
        s2 = np.asarray(aux["sigma"], dtype=float) ** 2
        return np.expm1(s2) * np.exp(2 * np.asarray(mu, dtype=float) + s2)

    def latent_residual_variance(self, lam, aux, se=None, method: str = "lognormal"):
        """``sigma^2``: the residual variance of ``log y`` (exact, whatever ``method``)."""
        return np.broadcast_to(np.asarray(aux["sigma"], dtype=float) ** 2, np.shape(lam))

    def latent_label(self, method: str) -> str | None:  # noqa: D102
        return "sigma^2 (residual variance of log y)"

    def pymc_dist(self, eta, aux, trials=None, se=None):  # noqa: D102
        import pymc as pm

        return pm.LogNormal.dist(mu=eta, sigma=aux["sigma"])

    def scipy_dist(self, mu, aux, trials=None, se=None):  # noqa: D102
        from scipy import stats

        return stats.lognorm(aux["sigma"], scale=np.exp(mu))

    def truncated_mean(self, mu, aux, lb, ub):  # noqa: D102 - y f(y; m, s) = exp(m + s^2/2) f(y; m + s^2, s)
        from scipy import stats

        s, mu = np.asarray(aux["sigma"], dtype=float), np.asarray(mu, dtype=float)
        mean = np.exp(mu + 0.5 * s**2)
        return _size_biased_ratio(mean, stats.lognorm(s, scale=np.exp(mu + s**2)), self.scipy_dist(mu, aux), lb, ub,
                                  lb, ub, lb, ub, mean)


_LOG_GUMBEL_VARIANCE = math.pi**2 / 6  # variance of log E for E ~ Exponential(1)


@dataclass(frozen=True, repr=False)
class Exponential(_Positive):
    """Positive outcome (waiting times) with mean ``mu``: variance ``mu^2``; censored times with ``cens()``.

    Examples
    --------
    >>> import hmodels as hm
    >>> fam = hm.families.get_family("exponential")
    >>> round(float(fam.latent_residual_variance(1.0, {})), 4)  # pi^2 / 6
    1.6449
    """

    links: ClassVar = ("log",)
    default_link: ClassVar = "log"
    engine_code: ClassVar = K.FAM_EXPONENTIAL
    engine_censoring: ClassVar = True  # kernels.c: censored_loglik (closed-form survival function)
    engine_truncation: ClassVar = True  # kernels.c: truncation_logmass (closed-form survival function)

    def loglik(self, y, mu, aux, trials=None, se=None):  # noqa: D102
        from scipy import stats

        return stats.expon.logpdf(y, scale=mu)

    def simulate(self, rng, mu, aux, trials=None, se=None):  # noqa: D102
        return rng.exponential(mu)

    def variance(self, mu, aux, trials=None, se=None):  # noqa: D102
        return np.asarray(mu, dtype=float) ** 2

    def latent_residual_variance(self, lam, aux, se=None, method: str = "lognormal"):
        """``pi^2 / 6``: the variance of ``log y`` given its mean (exact, whatever ``method``)."""
        return np.full(np.shape(lam), _LOG_GUMBEL_VARIANCE)

    def latent_label(self, method: str) -> str | None:  # noqa: D102
        return "pi^2/6 (variance of log y)"

    def pymc_dist(self, eta, aux, trials=None, se=None):  # noqa: D102
        import pymc as pm
        import pytensor.tensor as pt

        return pm.Exponential.dist(lam=pt.exp(-eta))

    def scipy_dist(self, mu, aux, trials=None, se=None):  # noqa: D102
        from scipy import stats

        return stats.expon(scale=mu)

    def truncated_mean(self, mu, aux, lb, ub):  # noqa: D102 - y f(y) = mu Gamma(2, mu)'s density
        from scipy import stats

        mu = np.asarray(mu, dtype=float)
        return _size_biased_ratio(mu, stats.gamma(2.0, scale=mu), self.scipy_dist(mu, aux), lb, ub, lb, ub, lb, ub,
                                  mu)


@dataclass(frozen=True, repr=False)
class Weibull(_Positive):
    """Positive outcome (times to an event) with mean ``mu`` and ``shape`` (brms's ``weibull``); censoring: ``cens()``.

    The Weibull scale is ``mu / Gamma(1 + 1/shape)``; ``shape = 1`` is the exponential, above 1
    the hazard rises with time, below 1 it falls.

    Examples
    --------
    >>> import hmodels as hm
    >>> fam = hm.families.get_family("weibull")
    >>> round(float(fam.latent_residual_variance(1.0, {"shape": 2.0})), 4)  # pi^2 / (6 shape^2)
    0.4112
    """

    links: ClassVar = ("log",)
    default_link: ClassVar = "log"
    aux: ClassVar = ("shape",)
    engine_code: ClassVar = K.FAM_WEIBULL
    engine_censoring: ClassVar = True  # kernels.c: censored_loglik (closed-form survival function)
    engine_truncation: ClassVar = True  # kernels.c: truncation_logmass (closed-form survival function)

    def loglik_constant(self, y, trials=None, w=None, known_se=False, collapsed=False) -> float:  # noqa: D102
        return float(-np.log(np.asarray(y, dtype=float)).sum())  # -sum(log y): the kernel has the rest

    @staticmethod
    def _scale(mu, k):
        from scipy.special import gammaln

        return mu / np.exp(gammaln(1.0 + 1.0 / np.asarray(k, dtype=float)))

    def loglik(self, y, mu, aux, trials=None, se=None):  # noqa: D102
        from scipy import stats

        k = aux["shape"]
        return stats.weibull_min.logpdf(y, k, scale=self._scale(mu, k))

    def simulate(self, rng, mu, aux, trials=None, se=None):  # noqa: D102
        k = np.asarray(aux["shape"], dtype=float)
        shape = np.broadcast(np.asarray(mu), k).shape
        return self._scale(mu, k) * rng.weibull(np.broadcast_to(k, shape))

    def variance(self, mu, aux, trials=None, se=None):  # noqa: D102
        from scipy.special import gammaln

        k = np.asarray(aux["shape"], dtype=float)
        ratio = np.exp(gammaln(1 + 2 / k) - 2 * gammaln(1 + 1 / k))
        return np.asarray(mu, dtype=float) ** 2 * (ratio - 1)

    def latent_residual_variance(self, lam, aux, se=None, method: str = "lognormal"):
        """``pi^2 / (6 shape^2)``: the variance of ``log y`` given its mean (exact, whatever ``method``)."""
        k = np.asarray(aux["shape"], dtype=float)
        return np.broadcast_to(_LOG_GUMBEL_VARIANCE / k**2, np.shape(lam))

    def latent_label(self, method: str) -> str | None:  # noqa: D102
        return "pi^2/(6 shape^2) (variance of log y)"

    def pymc_dist(self, eta, aux, trials=None, se=None):  # noqa: D102
        import pymc as pm
        import pytensor.tensor as pt

        k = aux["shape"]
        return pm.Weibull.dist(alpha=k, beta=pt.exp(eta - pt.gammaln(1.0 + 1.0 / k)))

    def scipy_dist(self, mu, aux, trials=None, se=None):  # noqa: D102
        from scipy import stats
        from scipy.special import gammaln

        k = np.asarray(aux["shape"], dtype=float)
        return stats.weibull_min(k, scale=np.exp(np.log(mu) - gammaln(1.0 + 1.0 / k)))

    def truncated_mean(self, mu, aux, lb, ub):  # noqa: D102 - E[y 1{y <= c}] = mu P(1 + 1/k, (c / lambda)^k)
        from scipy import stats
        from scipy.special import gammaln

        k, mu = np.asarray(aux["shape"], dtype=float), np.asarray(mu, dtype=float)
        lam = np.exp(np.log(mu) - gammaln(1.0 + 1.0 / k))
        z = [None if v is None else (max(v, 0.0) / lam) ** k for v in (lb, ub)]  # the size-biased gamma's scale
        return _size_biased_ratio(mu, stats.gamma(1.0 + 1.0 / k), self.scipy_dist(mu, aux), z[0], z[1], lb, ub,
                                  lb, ub, mu)

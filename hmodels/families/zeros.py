"""Counts with excess zeros: zero-inflated and hurdle poisson and negative binomial.

* zero-inflated (``zi``): a zero is either structural (probability ``zi``) or a count that
  happened to be 0; ``P(0) = zi + (1 - zi) f(0)``, ``P(y) = (1 - zi) f(y)`` for ``y > 0``.
* hurdle (``hu``): every zero comes from the hurdle; ``P(0) = hu``, ``P(y) = (1 - hu) f(y) / (1 - f(0))``.

``f`` is the poisson or negative-binomial (``alpha``: variance ``mu + mu^2 / alpha``) pmf with mean
``mu = exp(eta)``, the mean of the count part; the expected outcome is :meth:`response_mean`
(``(1 - zi) mu`` and ``(1 - hu) mu / (1 - f(0))``). ``zi`` and ``hu`` are one probability for all
rows for now (no formula of their own). Each has a kernel in the compiled engine (``engine_code``).
ICC and marginal/conditional R² are not defined for them (two processes make the outcome); Bayesian R² is.

Examples
--------
>>> import hmodels as hm
>>> fam = hm.families.get_family("zero_inflated_poisson")
>>> float(fam.response_mean(4.0, {"zi": 0.25}))
3.0
>>> hm.families.get_family("zinb")
Family(name='zero_inflated_negativebinomial', link='log')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..engine import codes as K
from .base import Family

__all__ = ["ZeroInflatedPoisson", "ZeroInflatedNegativeBinomial", "HurdlePoisson", "HurdleNegativeBinomial"]


def _nb_log_p0(mu, alpha):
    """``log f(0)`` of the negative binomial: ``alpha log(alpha / (alpha + mu))``."""
    mu, alpha = np.asarray(mu, dtype=float), np.asarray(alpha, dtype=float)
    return -alpha * np.log1p(mu / alpha)


def _nb_logpmf(y, mu, alpha):
    from scipy import stats

    return stats.nbinom.logpmf(y, alpha, alpha / (alpha + mu))


def _zero_truncated_poisson(rng, mu):
    """Exact draws of ``Poisson(mu) | y >= 1``.

    Given at least one arrival of a rate-1 process on ``(0, mu)``, the first comes at ``t`` (an
    exponential truncated to ``(0, mu)``) and ``Poisson(mu - t)`` more follow.
    """
    mu = np.asarray(mu, dtype=float)
    u = rng.uniform(size=mu.shape)
    t = -np.log1p(u * np.expm1(-mu))  # truncated exponential on (0, mu)
    return 1 + rng.poisson(np.maximum(mu - t, 0.0))


def _zero_truncated_negbin(rng, mu, alpha):
    """Draws of ``NB(mu, alpha) | y >= 1`` by inversion of the truncated distribution function."""
    from scipy import stats

    mu, alpha = np.broadcast_arrays(np.asarray(mu, dtype=float), np.asarray(alpha, dtype=float))
    p0 = np.exp(_nb_log_p0(mu, alpha))
    u = p0 + rng.uniform(size=mu.shape) * (1 - p0)
    return np.maximum(stats.nbinom.ppf(u, alpha, alpha / (alpha + mu)), 1.0)


@dataclass(frozen=True, repr=False)
class _ExcessZeros(Family):
    """Shared pieces of the zero-inflated and hurdle count families."""

    links: ClassVar = ("log",)
    default_link: ClassVar = "log"
    outcome: ClassVar = "count"
    ppc_kind: ClassVar = "counts"
    discrete: ClassVar = True
    no_latent_scale: ClassVar = (
        "the outcome mixes two processes (the zeros and the counts), so there is no single latent-scale residual "
        "variance. Bayesian R² (hm.components.bayes_r2(fit)) is defined; for a latent-scale ICC of the count part, "
        "fit a poisson or negativebinomial model.")


    def loglik_constant(self, y, trials=None, w=None, known_se=False, collapsed=False) -> float:  # noqa: D102
        from scipy.special import gammaln

        return float(-gammaln(np.asarray(y, dtype=float) + 1).sum())  # -log y! (0 for the zeros)

    # the count part f (a mixin below): _logf(y), _log_f0 = log f(0), _second_moment = E[y^2], draws


@dataclass(frozen=True, repr=False)
class _ZeroInflated(_ExcessZeros):
    aux: ClassVar = ("zi",)

    def loglik(self, y, mu, aux, trials=None, se=None):  # noqa: D102 - see Family
        zi = np.asarray(aux["zi"], dtype=float)
        y = np.asarray(y)
        with np.errstate(divide="ignore"):
            counts = np.log1p(-zi) + self._logf(y, mu, aux)
            zeros = np.logaddexp(np.log(zi), np.log1p(-zi) + self._log_f0(mu, aux))
        return np.where(y == 0, zeros, counts)

    def simulate(self, rng, mu, aux, trials=None, se=None):  # noqa: D102
        zi = np.asarray(aux["zi"], dtype=float)
        counts = self._draw(rng, np.broadcast_to(mu, np.broadcast(np.asarray(mu), zi).shape), aux)
        return np.where(rng.uniform(size=counts.shape) < zi, 0, counts)

    def response_mean(self, mu, aux, trials=None):  # noqa: D102
        return (1 - np.asarray(aux["zi"], dtype=float)) * mu

    def variance(self, mu, aux, trials=None, se=None):  # noqa: D102
        keep = 1 - np.asarray(aux["zi"], dtype=float)
        m = keep * np.asarray(mu, dtype=float)
        return keep * self._second_moment(mu, aux) - m**2


@dataclass(frozen=True, repr=False)
class _Hurdle(_ExcessZeros):
    aux: ClassVar = ("hu",)
    hurdle: ClassVar = True

    def loglik(self, y, mu, aux, trials=None, se=None):  # noqa: D102
        hu = np.asarray(aux["hu"], dtype=float)
        y = np.asarray(y)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_pos = np.log(-np.expm1(self._log_f0(mu, aux)))  # log(1 - f(0))
            counts = np.log1p(-hu) + self._logf(y, mu, aux) - log_pos
        return np.where(y == 0, np.log(hu) + np.zeros_like(counts), counts)

    def simulate(self, rng, mu, aux, trials=None, se=None):  # noqa: D102
        hu = np.asarray(aux["hu"], dtype=float)
        counts = self._draw_positive(rng, np.broadcast_to(mu, np.broadcast(np.asarray(mu), hu).shape), aux)
        return np.where(rng.uniform(size=counts.shape) < hu, 0, counts)

    def _keep(self, mu, aux):
        """``(1 - hu) / (1 - f(0))``: the weight of the count part's moments."""
        return (1 - np.asarray(aux["hu"], dtype=float)) / -np.expm1(self._log_f0(mu, aux))

    def response_mean(self, mu, aux, trials=None):  # noqa: D102
        return self._keep(mu, aux) * mu

    def variance(self, mu, aux, trials=None, se=None):  # noqa: D102
        keep = self._keep(mu, aux)
        return keep * self._second_moment(mu, aux) - (keep * np.asarray(mu, dtype=float)) ** 2


class _PoissonPart:
    """The poisson count part (mixed into the zero-inflated and hurdle classes)."""

    def _logf(self, y, mu, aux):
        from scipy import stats

        return stats.poisson.logpmf(y, mu)

    def _log_f0(self, mu, aux):
        return -np.asarray(mu, dtype=float)

    def _second_moment(self, mu, aux):
        mu = np.asarray(mu, dtype=float)
        return mu + mu**2

    def _draw(self, rng, mu, aux):
        return rng.poisson(mu)

    def _draw_positive(self, rng, mu, aux):
        return _zero_truncated_poisson(rng, mu)


class _NegBinPart:
    """The negative-binomial count part (shape ``alpha``)."""

    def _logf(self, y, mu, aux):
        return _nb_logpmf(y, mu, aux["alpha"])

    def _log_f0(self, mu, aux):
        return _nb_log_p0(mu, aux["alpha"])

    def _second_moment(self, mu, aux):
        mu = np.asarray(mu, dtype=float)
        return mu + mu**2 * (1 + 1 / np.asarray(aux["alpha"], dtype=float))

    def _draw(self, rng, mu, aux):
        alpha = aux["alpha"]
        return rng.poisson(rng.gamma(alpha, mu / alpha))

    def _draw_positive(self, rng, mu, aux):
        return _zero_truncated_negbin(rng, mu, aux["alpha"])


@dataclass(frozen=True, repr=False)
class ZeroInflatedPoisson(_PoissonPart, _ZeroInflated):
    """Poisson counts with excess zeros (probability ``zi`` of a structural zero).

    Examples
    --------
    >>> import hmodels as hm
    >>> fam = hm.families.get_family("zip")
    >>> float(fam.variance(2.0, {"zi": 0.5}))  # (1 - zi) mu (1 + zi mu)
    2.0
    """

    aliases: ClassVar = ("zip", "zipoisson", "zero_inflated_pois")
    engine_code: ClassVar = K.ZIPOISSON
    overdispersed_alternative: ClassVar = "zero_inflated_negativebinomial"

    @property
    def dispersion_checkable(self) -> bool:  # noqa: D102 - zi explains the zeros, not the counts' spread
        return True

    def pymc_likelihood(self, name, eta, aux, y, trials=None, se=None, dims="obs"):  # noqa: D102
        import pymc as pm

        return pm.ZeroInflatedPoisson(name, psi=1 - aux["zi"], mu=self.link_fn.inverse_pt(eta), observed=y, dims=dims)


@dataclass(frozen=True, repr=False)
class ZeroInflatedNegativeBinomial(_NegBinPart, _ZeroInflated):
    """Negative-binomial counts (shape ``alpha``) with excess zeros (``zi``); brms's ``zero_inflated_negbinomial``.

    Examples
    --------
    >>> import hmodels as hm
    >>> hm.families.get_family("zero_inflated_negbinomial").aux
    ('alpha', 'zi')
    """

    aux: ClassVar = ("alpha", "zi")
    aliases: ClassVar = ("zinb", "zero_inflated_negbinomial", "zero_inflated_nb", "zinegbin")
    engine_code: ClassVar = K.ZINEGBIN

    def pymc_likelihood(self, name, eta, aux, y, trials=None, se=None, dims="obs"):  # noqa: D102
        import pymc as pm

        return pm.ZeroInflatedNegativeBinomial(name, psi=1 - aux["zi"], mu=self.link_fn.inverse_pt(eta),
                                               alpha=aux["alpha"], observed=y, dims=dims)


@dataclass(frozen=True, repr=False)
class HurdlePoisson(_PoissonPart, _Hurdle):
    """A zero with probability ``hu``, else a zero-truncated poisson count.

    Examples
    --------
    >>> import hmodels as hm
    >>> fam = hm.families.get_family("hurdle_poisson")
    >>> round(float(fam.response_mean(1.0, {"hu": 0.5})), 4)  # 0.5 * 1 / (1 - exp(-1))
    0.791
    """

    aliases: ClassVar = ("hurdle_pois",)
    engine_code: ClassVar = K.HURDLEPOISSON
    overdispersed_alternative: ClassVar = "hurdle_negativebinomial"

    @property
    def dispersion_checkable(self) -> bool:  # noqa: D102 - hu explains the zeros, not the counts' spread
        return True

    def pymc_likelihood(self, name, eta, aux, y, trials=None, se=None, dims="obs"):  # noqa: D102
        import pymc as pm

        return pm.HurdlePoisson(name, psi=1 - aux["hu"], mu=self.link_fn.inverse_pt(eta), observed=y, dims=dims)


@dataclass(frozen=True, repr=False)
class HurdleNegativeBinomial(_NegBinPart, _Hurdle):
    """A zero with probability ``hu``, else a zero-truncated negative-binomial count; brms's ``hurdle_negbinomial``.

    Examples
    --------
    >>> import hmodels as hm
    >>> hm.families.get_family("hurdle_nb").name
    'hurdle_negativebinomial'
    """

    aux: ClassVar = ("alpha", "hu")
    aliases: ClassVar = ("hurdle_negbinomial", "hurdle_nb", "hurdle_negbin")
    engine_code: ClassVar = K.HURDLENEGBIN

    def pymc_likelihood(self, name, eta, aux, y, trials=None, se=None, dims="obs"):  # noqa: D102
        import pymc as pm

        return pm.HurdleNegativeBinomial(name, psi=1 - aux["hu"], mu=self.link_fn.inverse_pt(eta),
                                         alpha=aux["alpha"], observed=y, dims=dims)

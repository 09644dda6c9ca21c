"""Response families: one class per family, the registry of them, and their links.

A family class owns everything about its distribution — which links and parameters it has, what
outcome it accepts, its PyMC likelihood, its NumPy log-likelihood, mean, variance and simulation,
the code of its C kernel in the compiled engine, the kind of posterior predictive plot that suits
it and its latent-scale variance — so downstream modules ask the family object and never branch
on its name. Links live in :mod:`hmodels.families.links`, the specifications of the families' own
parameters (support, default prior) in :mod:`hmodels.families.auxiliary`. The conformance tests
(``tests/test_family_conformance.py``) are generated from :data:`FAMILIES`: registering a family
(:func:`register_family`) gets it the whole suite.

Every registered family has a kernel in the compiled engine (``engine_code``; hand-derived
gradients, checked by the conformance suite): gaussian, student_t, bernoulli, binomial, poisson,
negativebinomial here, and gamma, lognormal (the gaussian kernel on ``log y``), beta,
beta_binomial, zero_inflated_poisson, zero_inflated_negativebinomial, hurdle_poisson,
hurdle_negativebinomial, exponential, weibull, cumulative (ordinal), hurdle_gamma, hurdle_lognormal,
zero_one_inflated_beta (:mod:`hmodels.families.positive`, :mod:`hmodels.families.proportions`,
:mod:`hmodels.families.zeros`, :mod:`hmodels.families.ordinal`, :mod:`hmodels.families.two_part`). A
family registered without one (``engine_code`` None) is sampled through the PyMC graph, and the fit
plan says so.

Examples
--------
>>> import hmodels as hm
>>> fam = hm.families.get_family("bernoulli", "probit")
>>> fam
Family(name='bernoulli', link='probit')
>>> fam.aux, fam.outcome, fam.ppc_kind
((), 'binary', 'bars')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..engine import codes as K
from ..errors import FamilyError, closest
from .auxiliary import AUX_SPECS, AuxSpec
from .base import _P_EPS, Family, _clip_pt, _count_latent_variance, _minus, _size_biased_ratio
from .categorical import Categorical
from .links import LINKS, Link, get_link
from .ordinal import Cumulative
from .positive import Exponential, Gamma, LogNormal, Weibull
from .proportions import Beta, BetaBinomial
from .two_part import HurdleGamma, HurdleLogNormal, ZeroOneInflatedBeta
from .zeros import HurdleNegativeBinomial, HurdlePoisson, ZeroInflatedNegativeBinomial, ZeroInflatedPoisson

__all__ = ["Family", "get_family", "FAMILIES", "register_family", "family_link_pairs", "inverse_link",
           "inverse_link_numpy", "LINKS", "Link", "get_link", "AuxSpec", "AUX_SPECS"]


# -- the families ---------------------------------------------------------------------------------
def _normal_shift(a, b):
    """E[Z | a < Z < b] of a standard normal Z, accurate in both tails and for narrow intervals.

    The interval is reflected onto the side of 0 holding its centre; in the upper tail the ratio
    (phi(a) - phi(b)) / (Q(a) - Q(b)) is formed from log densities and log survival functions (``expm1``
    keeps the digits of both differences); an interval narrower than ~1e-4 / (1 + |centre|) is a tilted
    uniform: centre * (1 - width^2 / 12).

    Examples
    --------
    >>> float(_normal_shift(np.array(0.0), np.array(np.inf)))  # sqrt(2 / pi)
    0.7978845608028654
    """
    from scipy.special import erfcx, ndtr

    a, b = np.broadcast_arrays(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
    flip = (a + b) < 0
    lo, hi = np.where(flip, -b, a), np.where(flip, -a, b)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        c, w = 0.5 * (lo + hi), hi - lo
        narrow = c * (1.0 - w * w / 12.0)
        half_sq = -0.5 * (hi - lo) * (hi + lo)  # log phi(hi) - log phi(lo), without cancellation
        dphi = -_expm1_safe(half_sq)  # 1 - phi(hi) / phi(lo)
        # Q(x) = phi(x) sqrt(pi / 2) erfcx(x / sqrt 2): phi(lo) / Q(lo) and Q(hi) / Q(lo) without the squares
        ex_lo, ex_hi = erfcx(lo / np.sqrt(2.0)), erfcx(hi / np.sqrt(2.0))
        imr = np.sqrt(2.0 / np.pi) / ex_lo
        upper = imr * dphi / -_expm1_safe(half_sq + np.log(ex_hi / ex_lo))
        direct = (np.expm1(-0.5 * lo * lo) - np.expm1(-0.5 * hi * hi)) / (np.sqrt(2.0 * np.pi) * (ndtr(hi) - ndtr(lo)))
        out = np.where(w * (1.0 + np.abs(c)) < 1e-4, narrow, np.where(lo >= 0, upper, direct))
    return np.where(flip, -out, out)


def _expm1_safe(x):
    """``expm1`` with -inf -> -1 (an unbounded side)."""
    return np.where(np.isneginf(x), -1.0, np.expm1(np.where(np.isneginf(x), 0.0, x)))


@dataclass(frozen=True, repr=False)
class Gaussian(Family):
    """Normal outcome; ``sigma`` (or known standard errors ``se``)."""

    links: ClassVar = ("identity", "log")
    default_link: ClassVar = "identity"
    aux: ClassVar = ("sigma",)
    aliases: ClassVar = ("normal",)
    engine_code: ClassVar = K.GAUSSIAN
    engine_censoring: ClassVar = True  # kernels.c: censored_loglik (log Phi)
    engine_truncation: ClassVar = True  # kernels.c: truncation_logmass
    accepts_se: ClassVar = True

    @property
    def is_linear(self) -> bool:  # noqa: D102 - see Family
        return self.link == "identity"

    def _sigma(self, aux, se):
        return se if se is not None else aux["sigma"]

    def loglik(self, y, mu, aux, trials=None, se=None):  # noqa: D102
        from scipy import stats

        return stats.norm.logpdf(y, mu, self._sigma(aux, se))

    def simulate(self, rng, mu, aux, trials=None, se=None):  # noqa: D102
        return rng.normal(mu, self._sigma(aux, se))

    def variance(self, mu, aux, trials=None, se=None):  # noqa: D102
        return np.broadcast_to(np.asarray(self._sigma(aux, se), dtype=float) ** 2, np.shape(mu))

    def latent_residual_variance(self, lam, aux, se=None, method: str = "lognormal"):  # noqa: D102
        if self.link != "identity":
            return super().latent_residual_variance(lam, aux, se, method)
        if se is not None:
            return np.full(np.shape(lam), float(np.mean(np.asarray(se, dtype=float) ** 2)))
        return np.broadcast_to(np.asarray(aux["sigma"], dtype=float) ** 2, np.shape(lam))

    def pymc_dist(self, eta, aux, trials=None, se=None):  # noqa: D102
        import pymc as pm

        return pm.Normal.dist(mu=self.link_fn.inverse_pt(eta), sigma=aux.get("sigma", se))

    def scipy_dist(self, mu, aux, trials=None, se=None):  # noqa: D102
        from scipy import stats

        return stats.norm(mu, aux.get("sigma", se))

    def truncated_mean(self, mu, aux, lb, ub):  # noqa: D102 - mu + sigma E[Z | a < Z < b], in logs (_normal_shift)
        mu, sigma = np.broadcast_arrays(np.asarray(mu, dtype=float), np.asarray(aux["sigma"], dtype=float))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            a = (-np.inf if lb is None else lb - mu) / sigma
            b = (np.inf if ub is None else ub - mu) / sigma
            out = mu + sigma * _normal_shift(a, b)
        return np.clip(out, -np.inf if lb is None else lb, np.inf if ub is None else ub)

    def loglik_constant(self, y, trials=None, w=None, known_se=False, collapsed=False) -> float:  # noqa: D102
        return float(0.5 * np.log(w).sum()) if known_se and not collapsed else 0.0


@dataclass(frozen=True, repr=False)
class StudentT(Family):
    """Student-t outcome (robust regression); ``sigma`` and degrees of freedom ``nu``."""

    links: ClassVar = ("identity", "log")
    default_link: ClassVar = "identity"
    aux: ClassVar = ("sigma", "nu")
    aliases: ClassVar = ("t", "studentt", "student")
    engine_code: ClassVar = K.STUDENT

    def loglik(self, y, mu, aux, trials=None, se=None):  # noqa: D102
        from scipy import stats

        return stats.t.logpdf(y, aux["nu"], mu, aux["sigma"])

    def simulate(self, rng, mu, aux, trials=None, se=None):  # noqa: D102
        return mu + aux["sigma"] * rng.standard_t(np.broadcast_to(aux["nu"], np.shape(mu)))

    def variance(self, mu, aux, trials=None, se=None):  # noqa: D102
        nu, s = np.asarray(aux["nu"], dtype=float), np.asarray(aux["sigma"], dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.broadcast_to(np.where(nu > 2, s**2 * nu / (nu - 2), np.inf), np.shape(mu))

    def latent_residual_variance(self, lam, aux, se=None, method: str = "lognormal"):  # noqa: D102
        if self.link != "identity":
            return super().latent_residual_variance(lam, aux, se, method)
        return self.variance(lam, aux)

    def pymc_dist(self, eta, aux, trials=None, se=None):  # noqa: D102
        import pymc as pm

        return pm.StudentT.dist(nu=aux["nu"], mu=self.link_fn.inverse_pt(eta), sigma=aux["sigma"])

    def scipy_dist(self, mu, aux, trials=None, se=None):  # noqa: D102
        from scipy import stats

        return stats.t(aux["nu"], mu, aux["sigma"])


@dataclass(frozen=True, repr=False)
class Bernoulli(Family):
    """0/1 outcome."""

    links: ClassVar = ("logit", "probit", "cloglog")
    default_link: ClassVar = "logit"
    outcome: ClassVar = "binary"
    aliases: ClassVar = ("logistic", "binary")
    engine_code: ClassVar = K.BERNOULLI
    ppc_kind: ClassVar = "bars"
    discrete: ClassVar = True

    def loglik(self, y, mu, aux, trials=None, se=None):  # noqa: D102
        from scipy import stats

        return stats.bernoulli.logpmf(y, np.clip(mu, _P_EPS, 1 - _P_EPS))

    def simulate(self, rng, mu, aux, trials=None, se=None):  # noqa: D102
        return rng.binomial(1, mu)

    def variance(self, mu, aux, trials=None, se=None):  # noqa: D102
        return mu * (1 - mu)

    def pymc_dist(self, eta, aux, trials=None, se=None):  # noqa: D102
        import pymc as pm

        if self.link == "logit":
            return pm.Bernoulli.dist(logit_p=eta)
        return pm.Bernoulli.dist(p=_clip_pt(self.link_fn.inverse_pt(eta)))

    def scipy_dist(self, mu, aux, trials=None, se=None):  # noqa: D102
        from scipy import stats

        return stats.bernoulli(np.clip(mu, _P_EPS, 1 - _P_EPS))

    @property
    def aggregates(self) -> bool:  # noqa: D102
        return True


@dataclass(frozen=True, repr=False)
class Binomial(Family):
    """Successes out of a known number of trials (``p(k, n) ~ ...`` or ``k | trials(n) ~ ...``)."""

    links: ClassVar = ("logit", "probit", "cloglog")
    default_link: ClassVar = "logit"
    outcome: ClassVar = "binomial"
    engine_code: ClassVar = K.BINOMIAL
    overdispersed_alternative: ClassVar = "beta_binomial"
    ppc_kind: ClassVar = "density"  # shown as proportions
    discrete: ClassVar = True

    def loglik(self, y, mu, aux, trials=None, se=None):  # noqa: D102
        from scipy import stats

        return stats.binom.logpmf(y, trials, np.clip(mu, _P_EPS, 1 - _P_EPS))

    def simulate(self, rng, mu, aux, trials=None, se=None):  # noqa: D102
        return rng.binomial(trials, mu)

    def variance(self, mu, aux, trials=None, se=None):  # noqa: D102
        return trials * mu * (1 - mu)

    def response_mean(self, mu, aux, trials=None):
        """Expected count ``trials * p`` (the probability ``p`` itself when ``trials`` is None)."""
        return mu if trials is None else trials * mu

    def pymc_dist(self, eta, aux, trials=None, se=None):  # noqa: D102
        import pymc as pm

        if self.link == "logit":
            return pm.Binomial.dist(n=trials, logit_p=eta)
        return pm.Binomial.dist(n=trials, p=_clip_pt(self.link_fn.inverse_pt(eta)))

    def scipy_dist(self, mu, aux, trials=None, se=None):  # noqa: D102
        from scipy import stats

        return stats.binom(trials, np.clip(mu, _P_EPS, 1 - _P_EPS))

    def loglik_constant(self, y, trials=None, w=None, known_se=False, collapsed=False) -> float:  # noqa: D102
        from scipy.special import gammaln

        return float((gammaln(trials + 1) - gammaln(y + 1) - gammaln(trials - y + 1)).sum())

    @property
    def aggregates(self) -> bool:  # noqa: D102
        return True


@dataclass(frozen=True, repr=False)
class Poisson(Family):
    """Counts."""

    links: ClassVar = ("log",)
    default_link: ClassVar = "log"
    outcome: ClassVar = "count"
    engine_code: ClassVar = K.POISSON
    engine_truncation: ClassVar = True  # kernels.c: truncation_logmass (the pmf summed over the bounds)
    overdispersed_alternative: ClassVar = "negativebinomial"
    ppc_kind: ClassVar = "counts"
    discrete: ClassVar = True

    def loglik(self, y, mu, aux, trials=None, se=None):  # noqa: D102
        from scipy import stats

        return stats.poisson.logpmf(y, mu)

    def simulate(self, rng, mu, aux, trials=None, se=None):  # noqa: D102
        return rng.poisson(mu)

    def variance(self, mu, aux, trials=None, se=None):  # noqa: D102
        return mu

    def latent_residual_variance(self, lam, aux, se=None, method: str = "lognormal"):  # noqa: D102
        return _count_latent_variance(1.0 / np.asarray(lam, dtype=float), method)

    def pymc_dist(self, eta, aux, trials=None, se=None):  # noqa: D102
        import pymc as pm

        return pm.Poisson.dist(mu=self.link_fn.inverse_pt(eta))

    def scipy_dist(self, mu, aux, trials=None, se=None):  # noqa: D102
        from scipy import stats

        return stats.poisson(mu)

    def truncated_mean(self, mu, aux, lb, ub):  # noqa: D102 - y f(y) = mu f(y - 1): the same poisson shifted by one
        d = self.scipy_dist(mu, aux)
        return _size_biased_ratio(np.asarray(mu, dtype=float), d, d, _minus(lb, 2), _minus(ub, 1), _minus(lb, 1), ub,
                                  lb, ub, mu)

    def loglik_constant(self, y, trials=None, w=None, known_se=False, collapsed=False) -> float:  # noqa: D102
        from scipy.special import gammaln

        return float(-gammaln(y + 1).sum())

    @property
    def aggregates(self) -> bool:  # noqa: D102
        return True


@dataclass(frozen=True, repr=False)
class NegativeBinomial(Family):
    """Overdispersed counts: variance ``mu + mu^2 / alpha``."""

    links: ClassVar = ("log",)
    default_link: ClassVar = "log"
    aux: ClassVar = ("alpha",)
    outcome: ClassVar = "count"
    aliases: ClassVar = ("negbinomial", "negative_binomial", "negbin", "nb")
    engine_code: ClassVar = K.NEGBIN
    engine_truncation: ClassVar = True  # kernels.c: truncation_logmass (the pmf summed over the bounds)
    ppc_kind: ClassVar = "counts"
    discrete: ClassVar = True

    def loglik(self, y, mu, aux, trials=None, se=None):  # noqa: D102
        from scipy import stats

        alpha = aux["alpha"]
        return stats.nbinom.logpmf(y, alpha, alpha / (alpha + mu))

    def simulate(self, rng, mu, aux, trials=None, se=None):  # noqa: D102
        alpha = aux["alpha"]
        return rng.poisson(rng.gamma(alpha, mu / alpha))

    def variance(self, mu, aux, trials=None, se=None):  # noqa: D102
        return mu + mu**2 / aux["alpha"]

    def latent_residual_variance(self, lam, aux, se=None, method: str = "lognormal"):  # noqa: D102
        inv = 1.0 / np.asarray(lam, dtype=float) + 1.0 / np.asarray(aux["alpha"], dtype=float)
        return _count_latent_variance(inv, method)

    def pymc_dist(self, eta, aux, trials=None, se=None):  # noqa: D102
        import pymc as pm

        return pm.NegativeBinomial.dist(mu=self.link_fn.inverse_pt(eta), alpha=aux["alpha"])

    def scipy_dist(self, mu, aux, trials=None, se=None):  # noqa: D102
        from scipy import stats

        alpha = np.asarray(aux["alpha"], dtype=float)
        return stats.nbinom(alpha, alpha / (alpha + np.asarray(mu, dtype=float)))

    def truncated_mean(self, mu, aux, lb, ub):  # noqa: D102 - y f(y) = mu f+(y - 1), f+ of shape alpha + 1
        from scipy import stats

        alpha, mu = np.asarray(aux["alpha"], dtype=float), np.asarray(mu, dtype=float)
        return _size_biased_ratio(mu, stats.nbinom(alpha + 1.0, alpha / (alpha + mu)), self.scipy_dist(mu, aux),
                                  _minus(lb, 2), _minus(ub, 1), _minus(lb, 1), ub, lb, ub, mu)

    def loglik_constant(self, y, trials=None, w=None, known_se=False, collapsed=False) -> float:  # noqa: D102
        from scipy.special import gammaln

        return float(-gammaln(y + 1).sum())


# -- the registry -------------------------------------------------------------------------------------
#: Family name -> family class.
FAMILIES: dict[str, type[Family]] = {}
_ALIASES: dict[str, str] = {}


def register_family(name: str, cls: type[Family]) -> type[Family]:
    """Add a family class to the registry under ``name`` (its aliases too); returns the class.

    Examples
    --------
    >>> from hmodels.families import FAMILIES
    >>> list(FAMILIES)[:3]
    ['gaussian', 'student_t', 'bernoulli']
    """
    if not (isinstance(cls, type) and issubclass(cls, Family)):
        raise FamilyError(f"A family must be a subclass of hmodels.families.Family, got {cls!r}.")
    if not cls.links or cls.default_link not in cls.links or any(lk not in LINKS for lk in cls.links):
        raise FamilyError(f"Family {name!r} must list links among {', '.join(LINKS)} and a default among them.")
    for a in cls.aux:
        cls.aux_spec(a)  # every parameter has a specification (support, default prior)
    if set(cls.aux_specs) - set(cls.aux):
        raise FamilyError(f"Family {name!r} declares aux_specs for parameters it does not list in aux: "
                          f"{', '.join(sorted(set(cls.aux_specs) - set(cls.aux)))}.")
    FAMILIES[name] = cls
    for a in cls.aliases:
        _ALIASES[a] = name
    return cls


def unregister_family(name: str) -> None:
    """Remove a family (and its aliases) from the registry (for tests of toy families)."""
    cls = FAMILIES.pop(name, None)
    for a in getattr(cls, "aliases", ()):
        _ALIASES.pop(a, None)


for _name, _cls in (("gaussian", Gaussian), ("student_t", StudentT), ("bernoulli", Bernoulli),
                    ("binomial", Binomial), ("poisson", Poisson), ("negativebinomial", NegativeBinomial)):
    register_family(_name, _cls)

# the families of hmodels.families.positive, .proportions and .zeros
for _name, _cls in (("gamma", Gamma), ("lognormal", LogNormal), ("beta", Beta), ("beta_binomial", BetaBinomial),
                    ("zero_inflated_poisson", ZeroInflatedPoisson),
                    ("zero_inflated_negativebinomial", ZeroInflatedNegativeBinomial),
                    ("hurdle_poisson", HurdlePoisson), ("hurdle_negativebinomial", HurdleNegativeBinomial),
                    ("exponential", Exponential), ("weibull", Weibull), ("cumulative", Cumulative),
                    ("hurdle_gamma", HurdleGamma), ("hurdle_lognormal", HurdleLogNormal),
                    ("zero_one_inflated_beta", ZeroOneInflatedBeta), ("categorical", Categorical)):
    register_family(_name, _cls)


def family_link_pairs() -> list[tuple[str, str]]:
    """Every registered (family, link) pair, for tests generated from the registry.

    Examples
    --------
    >>> ("student_t", "log") in family_link_pairs()
    True
    """
    return [(name, link) for name, cls in FAMILIES.items() for link in cls.links]


def get_family(name: str | Family, link: str | None = None) -> Family:
    """Look up a family by name (with common aliases) and check its link.

    Parameters
    ----------
    name : str or Family
        Family name, e.g. ``"gaussian"``, ``"binomial"``, ``"negativebinomial"``.
    link : str, optional
        Link function; the family's default when omitted.

    Returns
    -------
    Family

    Raises
    ------
    FamilyError
        Unknown family, or a link the family does not support.

    Examples
    --------
    >>> get_family("poisson")
    Family(name='poisson', link='log')
    """
    if isinstance(name, Family):
        if link is None or link == name.link:
            return name
        name = name.name
    key = str(name).lower().replace("-", "_").replace(" ", "_")
    key = _ALIASES.get(key.replace("_", ""), _ALIASES.get(key, key))
    if key not in FAMILIES:
        raise FamilyError(
            f"Unknown family {name!r}. Use one of: {', '.join(FAMILIES)}.{closest(str(name), FAMILIES)}"
        )
    cls = FAMILIES[key]
    link = cls.default_link if link is None else str(link).lower()
    if link not in cls.links:
        raise FamilyError(
            f"Family {key!r} does not support link {link!r}; supported links: {', '.join(cls.links)}."
        )
    return cls(key, link)


def inverse_link(link: str, eta):
    """Mean from the linear predictor, as a PyTensor expression."""
    return get_link(link).inverse_pt(eta)


def inverse_link_numpy(link: str, eta: np.ndarray) -> np.ndarray:
    """Mean from the linear predictor, for NumPy arrays (posterior draws)."""
    return get_link(link).inverse(eta)

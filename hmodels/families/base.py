"""The base class of every response family and the helpers the family modules share.

See :mod:`hmodels.families` for the registry; each family module (``__init__`` for the families
with engine kernels, :mod:`~hmodels.families.positive`, :mod:`~hmodels.families.proportions`,
:mod:`~hmodels.families.zeros`) builds on :class:`Family` here, so that no family module imports
the package that registers it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..errors import FamilyError
from .auxiliary import AUX_SPECS, AuxSpec
from .links import LINKS, Link

__all__ = ["Family"]

_P_EPS = 1e-12  # probabilities are clipped to [eps, 1 - eps] in log-likelihoods (as PyMC's clip)


@dataclass(frozen=True)
class Family:
    """A response distribution with its link (the base class of every registered family).

    Parameters
    ----------
    name : str
        The registered name (``gaussian``, ``student_t``, ``bernoulli``, ``binomial``,
        ``poisson``, ``negativebinomial``, ``gamma``, ``lognormal``, ``beta``, ...; see :data:`FAMILIES`).
    link : str
        The link function (``identity``, ``log``, ``logit``, ``probit``, ``cloglog``, ``inverse``).

    Class attributes (set by each family): ``links``, ``default_link``, ``aux`` (its own
    parameters, each specified by an :class:`~hmodels.families.auxiliary.AuxSpec` in ``aux_specs``
    or the shared :data:`~hmodels.families.auxiliary.AUX_SPECS`), ``outcome`` (``continuous``,
    ``binary``, ``binomial``, ``count``: the checks every outcome of that kind gets; a family adds
    its own in :meth:`check_response`), ``aliases``, ``engine_code`` (its C kernel, None when the
    compiled engine has none), ``engine_censoring`` (the kernels evaluate its censored observations:
    ``censored_loglik`` in ``kernels.c``), ``engine_truncation`` (they evaluate its truncated likelihood:
    ``truncation_logmass``), ``ppc_kind`` (``density``, ``bars``, ``counts``), ``discrete``,
    ``accepts_se`` (known standard errors).

    Methods take ``mu`` — the distribution's location from the inverse link (a probability per
    trial for binary and binomial outcomes, the mean of ``log y`` for the lognormal, the mean of the
    count part for zero-inflated and hurdle counts) — and ``aux``, a dict of the family's
    parameters broadcastable against it. :meth:`response_mean` turns it into the expected outcome.
    """

    name: str
    link: str

    links: ClassVar[tuple[str, ...]] = ()
    default_link: ClassVar[str] = ""
    aux: ClassVar[tuple[str, ...]] = ()
    aux_specs: ClassVar[dict[str, AuxSpec]] = {}
    outcome: ClassVar[str] = "continuous"
    aliases: ClassVar[tuple[str, ...]] = ()
    engine_code: ClassVar[int | None] = None
    engine_censoring: ClassVar[bool] = False
    engine_truncation: ClassVar[bool] = False
    ppc_kind: ClassVar[str] = "density"
    discrete: ClassVar[bool] = False
    accepts_se: ClassVar[bool] = False
    #: Why ICC and marginal/conditional R² are not defined for the family (None: the generic rules decide).
    #: Set, it makes :attr:`latent_variance` None and :meth:`latent_residual_variance` raise FamilyError.
    no_latent_scale: ClassVar[str | None] = None
    #: A continuous family whose outcome can be exactly 0 (a hurdle), though its location has a log link.
    zero_in_support: ClassVar[bool] = False
    #: A hurdle family: every zero comes from the hurdle, so zeros say nothing about the location ``mu``.
    hurdle: ClassVar[bool] = False
    #: The family to suggest when the outcome is overdispersed for this one (None: no such family).
    overdispersed_alternative: ClassVar[str | None] = None
    #: What ``fit.predict(kind=...)`` can give for the family ("probs": category probabilities).
    prediction_kinds: ClassVar[tuple[str, ...]] = ("mean", "response", "link")

    def __repr__(self) -> str:
        return f"Family(name={self.name!r}, link={self.link!r})"

    @classmethod
    def aux_spec(cls, name: str) -> AuxSpec:
        """The specification of the family's parameter ``name`` (its own, else the shared one).

        Examples
        --------
        >>> import hmodels as hm
        >>> hm.families.get_family("lognormal").aux_spec("sigma").meaning
        'SD of log({response}) (the residual SD on the log scale)'
        """
        spec = cls.aux_specs.get(name) or AUX_SPECS.get(name)
        if spec is None:
            raise FamilyError(
                f"The family {cls.__name__} has a parameter {name!r} without a specification: declare it in "
                f"aux_specs, e.g. aux_specs = {{{name!r}: AuxSpec('positive', 'Exponential(1)', 'why', 'what')}}."
            )
        return spec

    def check_response(self, y: np.ndarray, column: str, labels: np.ndarray) -> None:
        """Refuse outcomes outside the family's support beyond its ``outcome`` kind (raise DataError).

        Called by :func:`hmodels.design.make_design` after the checks of the outcome kind
        (numbers; 0/1; non-negative whole numbers). ``labels`` are the rows' index labels, for the
        message. The base class accepts everything.
        """

    def link_scale_response(self, y: np.ndarray, name: str):
        """The outcome mapped onto the scale of the linear predictor, where a plain transformation does it.

        Returns ``(values, label)`` — ``log y`` for the lognormal, ``g(y)`` for a positive or
        unit-interval continuous outcome with link ``g`` — or None (counts, binary outcomes,
        gaussian-type families, where the data-scale rules of :mod:`hmodels.priors.resolve` and
        :mod:`hmodels.parameterisation` apply as they are). Used for data-scaled priors and the
        centring heuristic.
        """
        return None

    @property
    def example_eta(self) -> float:
        """A linear-predictor value well inside the family's support (examples and generated tests)."""
        return 1.0 if self.link == "log" and not self.discrete else 0.0

    def latent_label(self, method: str) -> str | None:
        """How :meth:`latent_residual_variance` is computed, in words (reports), or None for the generic label."""
        return None

    # -- the link ------------------------------------------------------------------------------
    @property
    def link_fn(self) -> Link:
        """The :class:`~hmodels.families.links.Link` object."""
        return LINKS[self.link]

    def mean(self, eta, aux=None, trials=None):
        """Mean per observation from the linear predictor (a probability for binary/binomial)."""
        return self.link_fn.inverse(eta)

    @property
    def is_gaussian(self) -> bool:
        """True for the gaussian family."""
        return self.name == "gaussian"

    @property
    def is_linear(self) -> bool:
        """A linear model: gaussian outcome, identity link (an LMM with groups)."""
        return False

    @property
    def integrates_out(self) -> bool:
        """Group effects (and Normal-prior coefficients) integrate out analytically (linear models)."""
        return self.is_linear

    @property
    def dispersion_checkable(self) -> bool:
        """A count or binomial family with no dispersion parameter of its own (the Pearson check applies).

        True for poisson and binomial, and for the zero-inflated and hurdle poisson (their ``zi`` / ``hu``
        explains the zeros, not the spread of the counts); False where the family estimates its own
        dispersion (negativebinomial and its zero-inflated and hurdle versions, beta_binomial).
        """
        return self.discrete and not self.aux and self.outcome != "binary"

    @property
    def latent_variance(self) -> float | None:
        """Distribution-specific variance on the latent scale (ICC / R² of binary and binomial GLMMs), or None.

        ``pi^2/3`` for logit, 1 for probit, ``pi^2/6`` for cloglog (Nakagawa & Schielzeth 2013);
        None where the residual variance depends on the mean (log link; see
        :mod:`hmodels.components`) or is a parameter (gaussian).
        """
        if self.no_latent_scale is not None:
            return None
        return self.link_fn.latent_variance if self.outcome in ("binary", "binomial") else None

    # -- the distribution (NumPy) ----------------------------------------------------------------
    def loglik(self, y, mu, aux, trials=None, se=None):
        """Pointwise log-likelihood of ``y`` (NumPy, broadcasting over draws)."""
        raise NotImplementedError

    def simulate(self, rng, mu, aux, trials=None, se=None):
        """One replicated outcome per element of ``mu`` (NumPy)."""
        raise NotImplementedError

    def variance(self, mu, aux, trials=None, se=None):
        """Variance of the outcome per observation (for a binomial: of the count ``y``)."""
        raise NotImplementedError

    def response_mean(self, mu, aux, trials=None):
        """Expected outcome per observation, from the location ``mu`` and the family's parameters.

        ``trials * p`` for a binomial count (``p`` when ``trials`` is None: per trial), ``(1 - zi) mu``
        for a zero-inflated count, ``exp(mu + sigma^2 / 2)`` for a lognormal; ``mu`` where the
        location is the mean.
        """
        return mu

    def truncated_mean(self, mu, aux, lb, ub):
        """Expected outcome of the distribution truncated to ``[lb, ub]`` (``None``: no bound on that side).

        ``None`` where the family does not give it in closed form (a prediction then refuses); families with
        one override this, each checked against numerical integration of its own density
        (``tests/test_response_additions.py``).
        """
        return None

    @property
    def has_truncated_mean(self) -> bool:
        """Whether :meth:`truncated_mean` has a closed form for this family (it is overridden)."""
        return type(self).truncated_mean is not Family.truncated_mean

    def latent_residual_variance(self, lam, aux, se=None, method: str = "lognormal"):
        """Residual variance on the latent (link) scale, for ICC and R² (Nakagawa, Johnson & Schielzeth 2017).

        Parameters
        ----------
        lam : array
            Mean on the outcome scale (used by log-link count families; shape of the result).
        aux : dict
            The family's parameters, broadcastable against ``lam``.
        se : array, optional
            Known standard errors (gaussian).
        method : {"lognormal", "trigamma", "delta"}
            Approximation for log-link count families.
        """
        if self.no_latent_scale is not None:
            raise FamilyError(f"Variance decomposition (ICC, marginal/conditional R²) is not defined for the "
                              f"{self.name} family: {self.no_latent_scale}")
        if self.latent_variance is not None:
            return np.full(np.shape(lam), self.latent_variance)
        raise FamilyError(
            f"Variance decomposition is not defined for the {self.name} family with the {self.link} link; it is "
            "available for identity-link gaussian/student_t, binary/binomial, log-link poisson/negativebinomial, "
            "log-link gamma/weibull/exponential and lognormal families. Bayesian R² "
            "(hm.components.bayes_r2(fit)) is defined for every family."
        )

    # -- the distribution (PyMC) -----------------------------------------------------------------
    def pymc_aux(self, name, prior, design):
        """The PyMC random variable of the family's parameter ``name`` with its resolved ``prior`` (a scalar).

        A family whose parameter is not a scalar (the ordinal thresholds) overrides this.
        """
        return prior.pymc_class()(name, **prior.params)

    def pymc_dist(self, eta, aux, trials=None, se=None):
        """The outcome's PyMC distribution given the linear predictor ``eta`` (unnamed, ``pm.X.dist``), or None.

        A family that defines it gets :meth:`pymc_likelihood` for free and takes censoring,
        truncation and weights (``pm.Censored``, ``pm.Truncated``; see :meth:`supports_additions`).
        """
        return None

    def scipy_dist(self, mu, aux, trials=None, se=None):
        """The outcome's frozen scipy distribution given the location ``mu`` (vectorised), or None.

        Its ``logcdf``/``logsf``/``ppf`` serve censored and truncated log-likelihoods and simulation.
        """
        return None

    @property
    def supports_additions(self) -> bool:
        """Whether the family takes ``cens()``, ``trunc()`` and ``weights()`` (it has both distribution objects)."""
        return type(self).pymc_dist is not Family.pymc_dist and type(self).scipy_dist is not Family.scipy_dist

    def pymc_likelihood(self, name, eta, aux, y, trials=None, se=None, dims="obs"):
        """Add the observed PyMC likelihood of ``y`` given the linear predictor ``eta`` to the model in context.

        The default registers :meth:`pymc_dist` as the observed variable; a family without one overrides this.
        """
        dist = self.pymc_dist(eta, aux, trials=trials, se=se)
        if dist is None:
            raise NotImplementedError(f"The {self.name} family defines neither pymc_dist nor pymc_likelihood.")
        import pymc as pm

        dims = (dims,) if isinstance(dims, str) else dims
        return pm.modelcontext(None).register_rv(dist, name, observed=y, dims=dims)

    # -- compiled engine -----------------------------------------------------------------------------
    def engine_outcome(self, y):
        """The outcome as the family's C kernel and an integrated-out likelihood read it.

        ``y`` itself; ``log y`` for the lognormal (a gaussian model of ``log y``).
        """
        return y

    def engine_location(self, y):
        """The outcome on the scale of an identity link's location ``mu`` (NaN where it has none), or None.

        None: :meth:`engine_outcome` is on that scale. The engine's reference fit and data scale
        (coefficients are sampled standardised about them) read it; the hurdle lognormal gives
        ``log y`` of its positive values.
        """
        return None

    def loglik_constant(self, y, trials=None, w=None, known_se=False, collapsed=False) -> float:
        """Terms of the log-likelihood that do not depend on parameters (the engine adds them as PyMC does)."""
        return 0.0

    @property
    def aggregates(self) -> bool:
        """Identical rows enter the likelihood only through sums (the engine sums them exactly)."""
        return False


def _clip_pt(p):
    import pytensor.tensor as pt

    return pt.clip(p, _P_EPS, 1 - _P_EPS)


_COUNT_METHODS = ("lognormal", "trigamma", "delta")


def _count_latent_variance(inv, method: str):
    """Latent residual variance of a log-link count from ``1/lambda (+ 1/alpha)`` (Nakagawa et al. 2017)."""
    if method not in _COUNT_METHODS:
        from ..errors import SpecificationError

        raise SpecificationError(f"method must be one of {', '.join(_COUNT_METHODS)}, got {method!r}.")
    if method == "lognormal":
        return np.log1p(inv)
    if method == "trigamma":
        from scipy.special import polygamma

        return polygamma(1, 1.0 / inv)
    return inv


def _between(dist, lo, hi):
    """P(lo < Y <= hi) of a (frozen) scipy distribution, ``None`` for no bound, from whichever tail keeps its digits."""
    if lo is None:
        return 1.0 if hi is None else dist.cdf(hi)
    if hi is None:
        return dist.sf(lo)
    lo_cdf = dist.cdf(lo)
    return np.where(lo_cdf < 0.5, dist.cdf(hi) - lo_cdf, dist.sf(lo) - dist.sf(hi))


def _minus(v, k):
    """A bound less ``k`` (None stays None)."""
    return None if v is None else v - k


def _size_biased_ratio(mult, biased, plain, lo_b, hi_b, lo, hi, lb, ub, mean):
    """``mult * P_biased(lo_b, hi_b] / P(lo, hi]``: E[y | bounds] by the size-biased distribution.

    Where the mass between the bounds underflows (0 / 0), the mean is at the bound nearest the distribution.
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        num = np.asarray(mult * _between(biased, lo_b, hi_b), dtype=float)
        den = np.asarray(_between(plain, lo, hi), dtype=float)
        out = num / den
    near = np.where(np.asarray(mean) < (lb if lb is not None else -np.inf), lb if lb is not None else np.nan,
                    ub if ub is not None else np.nan)
    ok = (den > 0) & (num > 0) & np.isfinite(out)  # else the masses underflowed: the mean is at the near bound
    return np.clip(np.where(ok, out, near), -np.inf if lb is None else lb, np.inf if ub is None else ub)

"""A family's own (auxiliary) parameters: their support, default prior and meaning.

Each family lists its parameters in ``aux`` (``("shape",)``); the specification of each comes
from the family's ``aux_specs`` where it declares one, else from the shared :data:`AUX_SPECS`
(brms's names: ``sigma``, ``nu``, ``alpha``, ``shape``, ``phi``, ``zi``, ``hu``). The prior machinery
(:mod:`hmodels.priors.resolve`) creates one prior slot per parameter from these specifications;
a prior set's entry for the parameter's name (its class) overrides the declared default.

Defaults follow brms (``get_prior``) where it has one and the hmodels default set otherwise:

=========  ==========  ============================  =============================================
parameter  support     default prior                 families
=========  ==========  ============================  =============================================
sigma      positive    HalfNormal(1) x data scale    gaussian, student_t, lognormal
nu         positive    Gamma(2, 0.1)                 student_t
alpha      positive    Exponential(0.1)              negativebinomial and its zero-inflated and
                                                     hurdle versions
shape      positive    Gamma(0.01, 0.01)             gamma, weibull (brms)
phi        positive    Gamma(0.01, 0.01)             beta, beta_binomial (brms)
zi         unit        Beta(1, 1)                    zero-inflated families (brms)
hu         unit        Beta(1, 1)                    hurdle families (brms)
=========  ==========  ============================  =============================================

Examples
--------
>>> from hmodels.families.auxiliary import AUX_SPECS
>>> AUX_SPECS["zi"].support, AUX_SPECS["zi"].default
('unit', 'Beta(1, 1)')
>>> AUX_SPECS["shape"].default_prior
Gamma(0.01, 0.01)
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["AuxSpec", "AUX_SPECS", "AUX_SUPPORTS"]

#: Supports an auxiliary parameter can have: the positive half-line, the open unit interval, or an
#: increasing vector of reals (the thresholds of an ordinal model; the prior applies to each element).
AUX_SUPPORTS = ("positive", "unit", "ordered")


@dataclass(frozen=True)
class AuxSpec:
    """How one auxiliary parameter of a family is constrained, given a prior and explained.

    Parameters
    ----------
    support : {"positive", "unit", "ordered"}
        ``"positive"``: sampled on the log scale; ``"unit"``: a probability in (0, 1), sampled on
        the logit scale (its prior must live on (0, 1): :class:`~hmodels.priors.Beta` or a
        ``Uniform`` inside [0, 1]); ``"ordered"``: a vector of increasing real values (a real-line
        prior on each element; the family creates it, see ``Family.pymc_aux``).
    default : str
        The default prior, as text (``"Gamma(0.01, 0.01)"``), used when neither the user nor a prior
        set gives one.
    rationale : str
        Why that default (shown by ``explain_priors``).
    meaning : str
        What the parameter is, in words; ``{response}`` is replaced by the outcome's name.
    scale : {"none", "data"}
        ``"data"``: the default is in units of the outcome (multiplied by its data scale, as
        ``sigma``); ``"none"``: as written.
    example : float or tuple of float
        A typical value (the generated conformance tests simulate data with it); a tuple for an
        ``"ordered"`` vector.

    Examples
    --------
    >>> spec = AuxSpec("positive", "Gamma(0.01, 0.01)", "brms's default.", "gamma shape")
    >>> spec.default_prior.support
    'positive'
    """

    support: str
    default: str
    rationale: str
    meaning: str
    scale: str = "none"
    example: float = 1.0

    def __post_init__(self):
        from ..errors import FamilyError

        if self.support not in AUX_SUPPORTS:
            raise FamilyError(f"An auxiliary parameter's support must be one of {AUX_SUPPORTS}, got {self.support!r}.")
        if self.scale not in ("none", "data"):
            raise FamilyError(f"An auxiliary parameter's scale must be 'none' or 'data', got {self.scale!r}.")

    @property
    def prior_support(self) -> str:
        """The support its prior must have: ``"real"`` for an ordered vector, else :attr:`support`."""
        return "real" if self.support == "ordered" else self.support

    @property
    def is_vector(self) -> bool:
        """Whether the parameter is a vector (the ordered thresholds of an ordinal model)."""
        return self.support == "ordered"

    @property
    def default_prior(self):
        """The default prior as a :class:`~hmodels.priors.Prior` object."""
        from ..priors.distributions import from_string

        return from_string(self.default)


#: Shared specifications of the auxiliary parameters, by name (a family may override one in its ``aux_specs``).
AUX_SPECS: dict[str, AuxSpec] = {
    "sigma": AuxSpec("positive", "HalfNormal(1)", "Residual SD below about 2 outcome SDs.",
                     "residual SD of {response}", scale="data", example=1.0),
    "nu": AuxSpec("positive", "Gamma(2, 0.1)",
                  "Student-t degrees of freedom: heavy and light tails both plausible (Juarez & Steel 2010; brms "
                  "default).", "Student-t degrees of freedom (large = normal tails)", example=8.0),
    "alpha": AuxSpec("positive", "Exponential(0.1)",
                     "Negative-binomial shape: overdispersion (small alpha) and near-Poisson (large alpha) both "
                     "allowed.", "negative-binomial shape (small = strong overdispersion)", example=3.0),
    "shape": AuxSpec("positive", "Gamma(0.01, 0.01)",
                     "brms's default for a shape: spread over many orders of magnitude (the data decide how "
                     "tightly outcomes cluster around their mean).",
                     "shape (large = {response} close to its mean)", example=2.0),
    "phi": AuxSpec("positive", "Gamma(0.01, 0.01)",
                   "brms's default for a precision: spread over many orders of magnitude (the data decide how "
                   "tightly proportions cluster around their mean).",
                   "precision (large = proportions close to their mean)", example=10.0),
    "zi": AuxSpec("unit", "Beta(1, 1)",
                  "brms's default: every probability of an excess zero equally plausible.",
                  "probability of an excess (structural) zero", example=0.3),
    "hu": AuxSpec("unit", "Beta(1, 1)",
                  "brms's default: every probability of a zero equally plausible.",
                  "probability of a zero (the hurdle)", example=0.3),
}

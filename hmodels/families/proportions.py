"""Families for proportions: beta (a proportion in (0, 1)) and beta_binomial (overdispersed successes).

Both use brms's mean-precision parameterisation: mean ``mu`` (logit link), precision ``phi``,
``Beta(mu phi, (1 - mu) phi)``. Both have kernels in the compiled engine (``engine_code``).

Examples
--------
>>> import hmodels as hm
>>> fam = hm.families.get_family("beta")
>>> round(float(fam.variance(0.5, {"phi": 9.0})), 4)  # mu (1 - mu) / (1 + phi)
0.025
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..engine import codes as K
from ..errors import DataError
from .base import _P_EPS, Family, _clip_pt

__all__ = ["Beta", "BetaBinomial"]


def _shapes(mu, aux):
    """Beta shape parameters ``(mu phi, (1 - mu) phi)`` with ``mu`` clipped as in the likelihoods."""
    mu = np.clip(np.asarray(mu, dtype=float), _P_EPS, 1 - _P_EPS)
    phi = np.asarray(aux["phi"], dtype=float)
    return mu * phi, (1 - mu) * phi


#: Why ICC / latent R² are not defined for proportions (Family.no_latent_scale).
_NO_LATENT = ("it has no standard latent-scale residual variance. Bayesian R² (hm.components.bayes_r2(fit)) is "
              "defined, and for a latent-scale ICC of proportions, a binomial model with an observation-level effect "
              "(1 | obs) has one.")


@dataclass(frozen=True, repr=False)
class Beta(Family):
    """A proportion strictly between 0 and 1 (shares, rates, scores on a bounded scale): mean ``mu``, precision ``phi``.

    Variance ``mu (1 - mu) / (1 + phi)``. Exact 0s and 1s are outside its support (see
    :meth:`check_response`).

    Examples
    --------
    >>> import hmodels as hm
    >>> fam = hm.families.get_family("beta")
    >>> fam.link, fam.aux, fam.ppc_kind
    ('logit', ('phi',), 'density')
    """

    links: ClassVar = ("logit",)
    default_link: ClassVar = "logit"
    aux: ClassVar = ("phi",)
    no_latent_scale: ClassVar = _NO_LATENT
    engine_code: ClassVar = K.FAM_BETA

    def loglik_constant(self, y, trials=None, w=None, known_se=False, collapsed=False) -> float:  # noqa: D102
        y = np.asarray(y, dtype=float)
        return float(-(np.log(y) + np.log1p(-y)).sum())  # the kernel has mu phi log y + (1 - mu) phi log(1 - y)

    def check_response(self, y, column, labels) -> None:
        """Refuse outcomes outside (0, 1): exact 0 or 1 with a transformation to use, others as out of range."""
        from ..errors import row_labels

        y = np.asarray(y, dtype=float)
        outside = (y < 0) | (y > 1)
        if outside.any():
            vals = ", ".join(f"{v:.6g}" for v in y[outside][:3])
            hint = " If they are percentages, divide by 100." if (y[outside] <= 100).all() else ""
            raise DataError(
                f"The beta family models a proportion in (0, 1), but {column!r} is outside [0, 1] in "
                f"{row_labels(labels, outside)} (values such as {vals}).{hint} For counts of successes out of a "
                "number of trials use family='binomial' or 'beta_binomial' with p(successes, trials)."
            )
        edge = (y == 0) | (y == 1)
        if edge.any():
            n = len(y)
            raise DataError(
                f"The beta family models a proportion strictly between 0 and 1, but {column!r} is exactly 0 or 1 in "
                f"{row_labels(labels, edge)}: the beta density is 0 or infinite there. Either transform the outcome "
                f"into (0, 1), e.g. (y * (n - 1) + 0.5) / n with n = {n} rows (Smithson & Verkuilen 2006), or model "
                "the exact 0s and 1s with family='zero_one_inflated_beta'. For "
                "successes out of a known number of trials use family='binomial' or 'beta_binomial'."
            )

    def link_scale_response(self, y, name):  # noqa: D102
        return self.link_fn.link(np.asarray(y, dtype=float)), f"logit({name})"

    def loglik(self, y, mu, aux, trials=None, se=None):  # noqa: D102
        from scipy import stats

        a, b = _shapes(mu, aux)
        return stats.beta.logpdf(y, a, b)

    def simulate(self, rng, mu, aux, trials=None, se=None):  # noqa: D102
        a, b = _shapes(mu, aux)
        return rng.beta(a, b)

    def variance(self, mu, aux, trials=None, se=None):  # noqa: D102
        mu = np.asarray(mu, dtype=float)
        return mu * (1 - mu) / (1 + np.asarray(aux["phi"], dtype=float))


    def pymc_likelihood(self, name, eta, aux, y, trials=None, se=None, dims="obs"):  # noqa: D102
        import pymc as pm

        mu, phi = _clip_pt(self.link_fn.inverse_pt(eta)), aux["phi"]
        return pm.Beta(name, alpha=mu * phi, beta=(1 - mu) * phi, observed=y, dims=dims)


@dataclass(frozen=True, repr=False)
class BetaBinomial(Family):
    """Successes out of a known number of trials with extra-binomial variation (``p(k, n) ~ ...``).

    The success probability of each row is ``Beta(mu phi, (1 - mu) phi)``: mean ``n mu``, variance
    ``n mu (1 - mu) (1 + (n - 1) / (phi + 1))`` — the binomial's as ``phi`` grows.

    Examples
    --------
    >>> import hmodels as hm
    >>> fam = hm.families.get_family("beta_binomial")
    >>> float(fam.variance(0.5, {"phi": 1.0}, trials=3))  # 3 * 0.25 * (1 + 2 / 2)
    1.5
    """

    links: ClassVar = ("logit",)
    default_link: ClassVar = "logit"
    aux: ClassVar = ("phi",)
    no_latent_scale: ClassVar = _NO_LATENT
    outcome: ClassVar = "binomial"
    aliases: ClassVar = ("betabinomial", "betabinom")
    engine_code: ClassVar = K.BETABINOMIAL
    ppc_kind: ClassVar = "density"  # shown as proportions
    discrete: ClassVar = True

    def loglik(self, y, mu, aux, trials=None, se=None):  # noqa: D102
        from scipy import stats

        a, b = _shapes(mu, aux)
        return stats.betabinom.logpmf(y, trials, a, b)

    def simulate(self, rng, mu, aux, trials=None, se=None):  # noqa: D102
        a, b = _shapes(mu, aux)
        return rng.binomial(trials, rng.beta(a, b))

    def response_mean(self, mu, aux, trials=None):
        """Expected count ``trials * mu`` (``mu`` when ``trials`` is None: per trial)."""
        return mu if trials is None else trials * mu

    def variance(self, mu, aux, trials=None, se=None):  # noqa: D102
        mu = np.asarray(mu, dtype=float)
        n = np.asarray(trials, dtype=float)
        return n * mu * (1 - mu) * (1 + (n - 1) / (np.asarray(aux["phi"], dtype=float) + 1))


    def pymc_likelihood(self, name, eta, aux, y, trials=None, se=None, dims="obs"):  # noqa: D102
        import pymc as pm

        mu, phi = _clip_pt(self.link_fn.inverse_pt(eta)), aux["phi"]
        return pm.BetaBinomial(name, alpha=mu * phi, beta=(1 - mu) * phi, n=trials, observed=y, dims=dims)

    def loglik_constant(self, y, trials=None, w=None, known_se=False, collapsed=False) -> float:  # noqa: D102
        from scipy.special import gammaln

        return float((gammaln(trials + 1) - gammaln(y + 1) - gammaln(trials - y + 1)).sum())

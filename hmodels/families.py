"""Response families and link functions.

A :class:`Family` is pure data (name, link, the auxiliary parameters it needs, what kind of
outcome it accepts). The PyMC likelihood and the inverse links are built from it in one place
(:func:`inverse_link` / :func:`add_likelihood`), so that every family goes through the same path.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import FamilyError, closest

__all__ = ["Family", "get_family", "FAMILIES", "inverse_link", "inverse_link_numpy"]


@dataclass(frozen=True)
class Family:
    """A response distribution with its link.

    Parameters
    ----------
    name : str
        One of ``gaussian``, ``student_t``, ``bernoulli``, ``binomial``, ``poisson``,
        ``negativebinomial``.
    link : str
        The link function (``identity``, ``logit``, ``probit``, ``cloglog``, ``log``).

    Examples
    --------
    >>> import hmodels as hm
    >>> hm.families.get_family("bernoulli", "probit")
    Family(name='bernoulli', link='probit')
    """

    name: str
    link: str

    @property
    def aux(self) -> tuple[str, ...]:
        """Names of the family's own parameters (``sigma``, ``nu``, ``alpha``)."""
        return FAMILIES[self.name]["aux"]

    @property
    def outcome(self) -> str:
        """What the outcome must be: ``continuous``, ``binary``, ``count`` or ``binomial``."""
        return FAMILIES[self.name]["outcome"]

    @property
    def is_gaussian(self) -> bool:
        """True for the gaussian family (identity link)."""
        return self.name == "gaussian"

    @property
    def latent_variance(self) -> float | None:
        """Distribution-specific variance on the latent scale (for ICC / R² of GLMMs).

        ``pi^2/3`` for logit, 1 for probit, ``pi^2/6`` for cloglog (Nakagawa & Schielzeth 2013);
        ``None`` for families whose residual variance depends on the mean (log link: computed
        per draw from the mean, see :mod:`hmodels.components`) or is a parameter (gaussian).
        """
        return {"logit": math.pi**2 / 3, "probit": 1.0, "cloglog": math.pi**2 / 6}.get(self.link)


FAMILIES: dict[str, dict] = {
    "gaussian": {"links": ("identity", "log"), "default": "identity", "aux": ("sigma",), "outcome": "continuous"},
    "student_t": {"links": ("identity", "log"), "default": "identity", "aux": ("sigma", "nu"), "outcome": "continuous"},
    "bernoulli": {"links": ("logit", "probit", "cloglog"), "default": "logit", "aux": (), "outcome": "binary"},
    "binomial": {"links": ("logit", "probit", "cloglog"), "default": "logit", "aux": (), "outcome": "binomial"},
    "poisson": {"links": ("log",), "default": "log", "aux": (), "outcome": "count"},
    "negativebinomial": {"links": ("log",), "default": "log", "aux": ("alpha",), "outcome": "count"},
}
_ALIASES = {
    "normal": "gaussian", "t": "student_t", "studentt": "student_t", "student": "student_t",
    "logistic": "bernoulli", "binary": "bernoulli", "negbinomial": "negativebinomial",
    "negative_binomial": "negativebinomial", "negbin": "negativebinomial", "nb": "negativebinomial",
}


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
    info = FAMILIES[key]
    link = info["default"] if link is None else str(link).lower()
    if link not in info["links"]:
        raise FamilyError(
            f"Family {key!r} does not support link {link!r}; supported links: {', '.join(info['links'])}."
        )
    return Family(key, link)


def inverse_link(link: str, eta):
    """Mean from the linear predictor, as a PyTensor expression."""
    import pytensor.tensor as pt

    if link == "identity":
        return eta
    if link == "log":
        return pt.exp(eta)
    if link == "logit":
        return pt.sigmoid(eta)
    if link == "probit":
        return 0.5 * pt.erfc(-eta / np.sqrt(2.0))
    if link == "cloglog":
        return 1.0 - pt.exp(-pt.exp(eta))
    raise FamilyError(f"Unknown link {link!r}.")


def inverse_link_numpy(link: str, eta: np.ndarray) -> np.ndarray:
    """Mean from the linear predictor, for NumPy arrays (posterior draws)."""
    from scipy import special

    if link == "identity":
        return eta
    if link == "log":
        return np.exp(eta)
    if link == "logit":
        return special.expit(eta)
    if link == "probit":
        return special.ndtr(eta)
    if link == "cloglog":
        return -np.expm1(-np.exp(eta))
    raise FamilyError(f"Unknown link {link!r}.")

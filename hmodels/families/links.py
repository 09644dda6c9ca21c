"""Link functions: one class each, owning the NumPy, PyTensor and C-kernel pieces of the link.

Examples
--------
>>> from hmodels.families.links import LINKS
>>> float(LINKS["logit"].inverse(0.0))
0.5
>>> sorted(LINKS)
['cloglog', 'identity', 'inverse', 'log', 'logit', 'probit']
"""

from __future__ import annotations

import math

import numpy as np

from ..engine import codes as K

__all__ = ["Link", "LINKS", "get_link"]


class Link:
    """A link ``g``: ``g(mean) = eta``.

    Attributes
    ----------
    name : str
    engine_code : int or None
        The link's code in the compiled kernels (``hmodels/engine/kernels.c``); None for a link no
        kernel implements (families using it run on the PyMC graph).
    latent_variance : float or None
        Variance of the standard latent distribution of a binary/binomial outcome under this link
        (``pi^2/3`` logit, 1 probit, ``pi^2/6`` cloglog; Nakagawa & Schielzeth 2013), else None.
    scale_words : str
        What a coefficient means on this scale (for reports).
    """

    name = ""
    engine_code: int | None = -1
    latent_variance: float | None = None
    scale_words = ""

    def inverse(self, eta):
        """Mean from the linear predictor (NumPy)."""
        raise NotImplementedError

    def dinverse(self, eta):
        """Derivative of :meth:`inverse` with respect to eta (NumPy; for IRLS)."""
        raise NotImplementedError

    def link(self, mu):
        """The link itself, ``g(mu)`` (NumPy)."""
        raise NotImplementedError

    def inverse_pt(self, eta):
        """Mean from the linear predictor (PyTensor)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"Link({self.name!r})"


class Identity(Link):
    """``mu = eta``."""

    name, engine_code, scale_words = "identity", K.IDENTITY, "the scale of the outcome"

    def inverse(self, eta):  # noqa: D102 - see Link
        return eta

    def dinverse(self, eta):  # noqa: D102
        return np.ones_like(np.asarray(eta, dtype=float))

    def link(self, mu):  # noqa: D102
        return mu

    def inverse_pt(self, eta):  # noqa: D102
        return eta


class Log(Link):
    """``mu = exp(eta)``."""

    name, engine_code, scale_words = "log", K.LOG, "the log scale (exponentiate for rate ratios)"

    def inverse(self, eta):  # noqa: D102
        return np.exp(eta)

    def dinverse(self, eta):  # noqa: D102
        return np.exp(eta)

    def link(self, mu):  # noqa: D102
        return np.log(mu)

    def inverse_pt(self, eta):  # noqa: D102
        import pytensor.tensor as pt

        return pt.exp(eta)


class Logit(Link):
    """``mu = 1 / (1 + exp(-eta))``."""

    name, engine_code, scale_words = "logit", K.LOGIT, "the log-odds scale (exponentiate for odds ratios)"
    latent_variance = math.pi**2 / 3

    def inverse(self, eta):  # noqa: D102
        from scipy import special

        return special.expit(eta)

    def dinverse(self, eta):  # noqa: D102
        from scipy import special

        p = special.expit(eta)
        return p * (1 - p)

    def link(self, mu):  # noqa: D102
        from scipy import special

        return special.logit(mu)

    def inverse_pt(self, eta):  # noqa: D102
        import pytensor.tensor as pt

        return pt.sigmoid(eta)


class Probit(Link):
    """``mu = Phi(eta)``."""

    name, engine_code, scale_words = "probit", K.PROBIT, "the probit (latent standard normal) scale"
    latent_variance = 1.0

    def inverse(self, eta):  # noqa: D102
        from scipy import special

        return special.ndtr(eta)

    def dinverse(self, eta):  # noqa: D102
        return np.exp(-0.5 * np.asarray(eta, dtype=float) ** 2) / math.sqrt(2 * math.pi)

    def link(self, mu):  # noqa: D102
        from scipy import special

        return special.ndtri(mu)

    def inverse_pt(self, eta):  # noqa: D102
        import pytensor.tensor as pt

        return 0.5 * pt.erfc(-eta / np.sqrt(2.0))


class Cloglog(Link):
    """``mu = 1 - exp(-exp(eta))``."""

    name, engine_code, scale_words = "cloglog", K.CLOGLOG, "the complementary log-log scale"
    latent_variance = math.pi**2 / 6

    def inverse(self, eta):  # noqa: D102
        return -np.expm1(-np.exp(eta))

    def dinverse(self, eta):  # noqa: D102
        e = np.exp(np.asarray(eta, dtype=float))
        return e * np.exp(-e)

    def link(self, mu):  # noqa: D102
        return np.log(-np.log1p(-np.asarray(mu, dtype=float)))

    def inverse_pt(self, eta):  # noqa: D102
        import pytensor.tensor as pt

        return 1.0 - pt.exp(-pt.exp(eta))


class Inverse(Link):
    """``mu = 1 / eta`` (the canonical link of the gamma family; the mean must stay positive)."""

    name, engine_code, scale_words = "inverse", K.INVERSE, "the inverse scale (1 / mean)"

    def inverse(self, eta):  # noqa: D102
        return 1.0 / np.asarray(eta, dtype=float)

    def dinverse(self, eta):  # noqa: D102
        return -1.0 / np.asarray(eta, dtype=float) ** 2

    def link(self, mu):  # noqa: D102
        return 1.0 / np.asarray(mu, dtype=float)

    def inverse_pt(self, eta):  # noqa: D102
        return 1.0 / eta


#: Link name -> the link object.
LINKS: dict[str, Link] = {cls.name: cls() for cls in (Identity, Log, Logit, Probit, Cloglog, Inverse)}


def get_link(name: str) -> Link:
    """The link object of a name.

    Examples
    --------
    >>> get_link("probit").latent_variance
    1.0
    """
    from ..errors import FamilyError, closest

    if name not in LINKS:
        raise FamilyError(f"Unknown link {name!r}; links: {', '.join(LINKS)}.{closest(str(name), LINKS)}")
    return LINKS[name]

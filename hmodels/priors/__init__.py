"""Priors: distribution objects, named sets (TOML) and their resolution per parameter."""

from .distributions import (
    LKJ,
    PRIOR_CLASSES,
    Beta,
    Cauchy,
    Exponential,
    Gamma,
    HalfCauchy,
    HalfNormal,
    HalfStudentT,
    InverseGamma,
    Laplace,
    LogNormal,
    Normal,
    Prior,
    StudentT,
    Uniform,
    from_string,
)
from .resolve import PriorSlot, PriorTable, ResolvedPrior, prior_slots, resolve_priors
from .sets import PriorSet, list_sets, load_set, sets_folder

__all__ = [
    "LKJ", "PRIOR_CLASSES", "Beta", "Cauchy", "Exponential", "Gamma", "HalfCauchy", "HalfNormal", "HalfStudentT",
    "InverseGamma", "Laplace", "LogNormal", "Normal", "Prior", "StudentT", "Uniform", "from_string",
    "PriorSlot", "PriorTable", "ResolvedPrior", "prior_slots", "resolve_priors", "PriorSet", "list_sets",
    "load_set", "sets_folder", "list",
]


def list():  # noqa: A001 - hm.priors.list() is the documented name
    """Names of the shipped prior sets (same as :func:`list_sets`).

    Examples
    --------
    >>> import hmodels as hm
    >>> "default" in hm.priors.list()
    True
    """
    return list_sets()

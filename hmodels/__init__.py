"""hmodels: Bayesian hierarchical (mixed-effects) models on PyMC and ArviZ.

Examples
--------
>>> import hmodels as hm
>>> data = hm.datasets.load("sleepstudy")
>>> model = hm.Model("Reaction ~ Days + (Days | Subject)", data)
>>> model.spec.formula
'Reaction ~ 1 + Days + (1 + Days | Subject)'
"""

from importlib import metadata as _metadata

from . import datasets, families, priors, sampling
from .design import make_design
from .errors import (
    ConvergenceWarning, DataError, FamilyError, FitFileError, FormulaError, HModelsError, MissingColumnError,
    PriorError, SamplingError, SpecificationError,
)
from .comparison import compare
from .fit import Fit
from .formula import parse_formula
from .io import load
from .model import Model
from .prior_compare import compare_priors
from .priors import (
    LKJ, Cauchy, Exponential, Gamma, HalfCauchy, HalfNormal, HalfStudentT, InverseGamma, Laplace, LogNormal,
    Normal, StudentT, Uniform,
)
from .spec import GroupBlock, GroupTerm, ModelSpec, RandomIntercept, RandomSlope, spec

try:
    __version__ = _metadata.version("hmodels")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.1.0"

__all__ = [
    "Model", "Fit", "compare_priors", "spec", "ModelSpec", "GroupTerm", "GroupBlock", "RandomIntercept", "RandomSlope",
    "parse_formula", "make_design", "load", "compare", "datasets", "families", "priors", "sampling",
    "Normal", "StudentT", "Cauchy", "Laplace", "HalfNormal", "HalfStudentT", "HalfCauchy", "Exponential", "Gamma",
    "InverseGamma", "LogNormal", "Uniform", "LKJ",
    "HModelsError", "SpecificationError", "FormulaError", "DataError", "MissingColumnError", "PriorError",
    "FamilyError", "SamplingError", "FitFileError", "ConvergenceWarning",
]

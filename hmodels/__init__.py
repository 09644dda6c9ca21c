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
from . import fit_methods as _fit_methods  # noqa: F401  (Fit's analysis methods)
from .comparison import compare
from .design import make_design
from .errors import (
    ConvergenceWarning,
    DataError,
    DataWarning,
    FamilyError,
    FitFileError,
    FormulaError,
    HModelsError,
    MissingColumnError,
    PriorError,
    SamplingError,
    SpecificationError,
)
from .fit import Fit
from .formula import parse_formula
from .interpret import Estimates
from .io import load
from .model import Model
from .plan import FitPlan
from .priors import (
    LKJ,
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
    StudentT,
    Uniform,
)
from .spec import GroupBlock, GroupTerm, ModelSpec, RandomIntercept, RandomSlope, spec
from .studies import (
    PointFit,
    PowerResult,
    SBCResult,
    compare_estimates,
    compare_priors,
    design_grid,
    power,
    sbc,
    simulate,
)

try:
    __version__ = _metadata.version("hmodels")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.1.0"

__all__ = [
    "Model", "Fit", "FitPlan", "compare_priors", "spec", "ModelSpec", "GroupTerm", "GroupBlock", "RandomIntercept",
    "RandomSlope", "Estimates",
    "parse_formula", "make_design", "load", "compare", "datasets", "families", "priors", "sampling",
    "Normal", "StudentT", "Cauchy", "Laplace", "HalfNormal", "HalfStudentT", "HalfCauchy", "Exponential", "Gamma",
    "InverseGamma", "LogNormal", "Uniform", "Beta", "LKJ",
    "HModelsError", "SpecificationError", "FormulaError", "DataError", "MissingColumnError", "PriorError",
    "FamilyError", "SamplingError", "FitFileError", "ConvergenceWarning",
    "DataWarning",
    "simulate", "design_grid", "sbc", "SBCResult", "power", "PowerResult", "PointFit", "compare_estimates",
]

"""Attach the analysis functions to :class:`~hmodels.fit.Fit` as its methods (xarray's accessor idea).

``fit.diagnose(...)`` *is* :func:`hmodels.diagnostics.diagnose` (its first parameter is the fit),
so a method's signature and docstring are the function's own and cannot drift from it. This module
sits above :mod:`hmodels.fit` and the analysis modules, so none of them imports another upwards.

Examples
--------
>>> import inspect
>>> import hmodels as hm
>>> from hmodels import checks
>>> inspect.signature(hm.Fit.overdispersion) == inspect.signature(checks.overdispersion)
True
"""

from __future__ import annotations

from . import checks, comparison, components, diagnostics, interpret, io, plots, predict, prior_checks, report
from . import update as _update
from .fit import Fit

__all__ = ["METHODS"]

#: Method name -> the function it is.
METHODS = {
    "diagnose": diagnostics.diagnose,
    "ppc": checks.ppc,
    "overdispersion": checks.overdispersion,
    "residuals": checks.residuals,
    "icc": components.icc,
    "r2": components.r2,
    "shrinkage": components.shrinkage,
    "report": report.report,
    "plot_prior_posterior": prior_checks.plot_prior_posterior,
    "prior_contraction": prior_checks.prior_contraction,
    "prior_sensitivity": prior_checks.prior_sensitivity,
    "predict": predict.predict,
    "loo": comparison.loo,
    "kfold": comparison.kfold,
    "save": io.save,
    "update": _update.update,
    "plot_effects": plots.plot_effects,
    "plot_groups": plots.plot_groups,
    "plot_trajectories": plots.plot_trajectories,
    "plot_components": plots.plot_components,
    "plot_conditional": plots.plot_conditional,
    "coef": interpret.coef,
    "hypothesis": interpret.hypothesis,
    "marginal_means": interpret.marginal_means,
    "comparisons": interpret.comparisons,
    "slopes": interpret.slopes,
    "poststratify": interpret.poststratify,
}

for _name, _function in METHODS.items():
    setattr(Fit, _name, _function)

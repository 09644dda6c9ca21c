"""The one assembler: a backend's draws -> :class:`~hmodels.fit.Fit`, the same way for every backend.

Backends (:func:`hmodels.engine.fit.sample_engine`, :func:`hmodels.pymc_backend.sample_pymc`)
return a :class:`~hmodels.plan.BackendResult`; :func:`assemble_fit` adds the observed data, the
metadata (one schema for every backend: design, plan, backend facts), the pointwise
log-likelihood when asked, and the plain-language convergence warnings.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

from .errors import ConvergenceWarning
from .fit import Fit

if TYPE_CHECKING:  # annotations only
    from .model import Model
    from .plan import BackendResult, FitPlan
    from .sampling import SamplerSettings

__all__ = ["assemble_fit", "cor_blocks", "observed_name"]


def observed_name(spec) -> str:
    """Name of the observed variable (the response column).

    Examples
    --------
    >>> import hmodels as hm
    >>> observed_name(hm.spec(response="Reaction", fixed=["Days"]))
    'Reaction'
    """
    return spec.response


def cor_blocks(f) -> list[tuple[str, list[str]]]:
    """The correlation variables of a grouping factor: ``[(name, terms), ...]`` (``cor_<factor>[_<k>]``).

    Examples
    --------
    >>> import hmodels as hm
    >>> d = hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy")).design
    >>> cor_blocks(d.factors[0])
    [('cor_Subject', ['Intercept', 'Days'])]
    """
    n_cor = sum(f.correlated)
    out = []
    for j, (block, cor) in enumerate(zip(f.blocks, f.correlated)):
        if cor:
            out.append((f"cor_{f.factor}" if n_cor == 1 else f"cor_{f.factor}_{j}", [f.terms[i] for i in block]))
    return out


def design_meta(model: Model, plan: FitPlan) -> dict:
    """The plain-data description of the design and of how it was sampled (``fit.meta``)."""
    d = model.design
    return {
        "fixed_terms": list(d.fixed_terms),
        "factors": {
            f.factor: {
                "levels": list(f.levels),
                "terms": list(f.terms),
                "cors": [[var, list(terms)] for var, terms in cor_blocks(f)],
                "n_per_level": [int(x) for x in f.group_sizes()],
            }
            for f in d.factors
        },
        "centered": plan.centering,
        "intercept_prior": model.intercept_prior,
        "prior_set": str(model.prior_set),
        "observed": observed_name(d.spec),
        "n_obs": d.n,
        "n_dropped": d.n_dropped,
        "dropped_rows": [int(i) for i in np.setdiff1d(np.arange(d.n + d.n_dropped), d.rows)],
    }


def assemble_fit(model: Model, result: BackendResult, settings: SamplerSettings, log_likelihood: bool = False,
                 timing: dict | None = None) -> Fit:
    """Build the :class:`~hmodels.fit.Fit` of a backend's result (one path for every backend).

    Parameters
    ----------
    model : Model
    result : BackendResult
    settings : SamplerSettings
        As requested; the stored settings carry the plan's target acceptance rate.
    log_likelihood : bool
        Add the pointwise log-likelihood group (for LOO).
    timing : dict, optional
        Timings measured before sampling (``build_s``).

    Returns
    -------
    Fit

    Examples
    --------
    >>> import hmodels as hm
    >>> m = hm.Model("y | se(sigma) ~ 1 + (1 | school)", hm.datasets.load("eight_schools"))
    >>> fit = m.fit(draws=200, tune=200, chains=2, seed=1, progressbar=False)
    >>> sorted(fit.meta["plan"])[:3]
    ['aggregate_rows', 'backend', 'centered']
    """
    from dataclasses import replace

    import xarray as xr

    d = model.design
    plan = result.plan
    settings = replace(settings, target_accept=float(plan.target_accept))
    meta = design_meta(model, plan)
    post = result.posterior
    C, D = post.sizes["chain"], post.sizes["draw"]
    groups = {
        "posterior": post,
        "sample_stats": result.sample_stats,
        "observed_data": xr.Dataset({meta["observed"]: (("obs",), d.y)}, coords={"obs": np.arange(d.n)}),
    }
    if result.divergences is not None:
        groups["divergences"] = result.divergences
    meta.update({
        "method": plan.method,
        "collapsed_factor": plan.collapsed_factor,
        "coefficients_integrated": bool(plan.integrate_coefficients and plan.backend == "engine"),
        "mass_matrix": plan.mass_matrix if plan.backend == "engine" else "diag",
        "plan": plan.to_dict(),
        "prior_only": False,
        **result.facts,
    })
    fit = Fit(xr.DataTree.from_dict(groups), model.spec, model.priors, settings, meta,
              {**(timing or {}), **result.timing}, data=d.data, design=d, model=model)
    if log_likelihood:
        from .linpred import linear_predictor, pointwise_loglik

        ll = pointwise_loglik(fit, linear_predictor(fit), d)
        fit.posterior["log_likelihood"] = xr.DataTree(xr.Dataset(
            {meta["observed"]: (("chain", "draw", "obs"), ll)},
            coords={"chain": np.arange(C), "draw": np.arange(D), "obs": np.arange(d.n)}))
    for message in fit.convergence_messages():
        warnings.warn(message, ConvergenceWarning, stacklevel=3)
    return fit

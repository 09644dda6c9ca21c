"""Posterior draws of a nonlinear model's mean: ``expression(eta_1..eta_K, covariates)`` per draw.

NumPy over draws from the Fit alone (no PyMC), as :mod:`hmodels.linpred`, which calls
:func:`nonlinear_predictor` for a nonlinear spec; prediction, ``ppc``, ``loo`` and
``plot_trajectories`` therefore work unchanged.
"""

from __future__ import annotations

import numpy as np

__all__ = ["nonlinear_predictor"]


def nonlinear_predictor(fit, design, groups: str = "include", effects: dict | None = None) -> np.ndarray:
    """Draws of the nonlinear predictor ``expression(eta_1..eta_K, covariates)``, shape (chain, draw, n).

    On the link scale (the mean itself for identity links), as :func:`hmodels.linpred.linear_predictor`.

    Examples
    --------
    >>> mu = nonlinear_predictor(fit, fit.design)  # doctest: +SKIP
    >>> mu.shape  # doctest: +SKIP
    (4, 1000, 132)
    """
    draws = fit.draws
    b = np.asarray(draws["b"].transpose("chain", "draw", ...).values, dtype=float)
    env = {}
    for p in design.predictors:
        cols = list(p.columns)
        eta = np.einsum("cdp,np->cdn", b[..., cols], design.X[:, cols])
        if groups == "include":
            for f in design.factors:
                idx = list(p.terms.get(f.factor, ()))
                if not idx:
                    continue
                r = effects[f.factor] if effects and f.factor in effects else np.asarray(
                    draws[f"r_{f.factor}"].transpose("chain", "draw", ...).values, dtype=float)
                eta = eta + np.einsum("cdnk,nk->cdn", r[:, :, f.codes][..., idx], f.Z[:, idx])
        env[p.name] = eta
    env.update({c: np.asarray(v, dtype=float) for c, v in design.covariates.items()})
    with np.errstate(all="ignore"):
        out = np.asarray(design.expression.evaluate(env, lib="numpy"), dtype=float)
    c, d = b.shape[:2]
    return np.broadcast_to(out, (c, d, design.n)).copy()

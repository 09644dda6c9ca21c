"""Posterior draws of the linear predictor, the mean, replicated data and pointwise log-likelihood.

NumPy over draws (sample dims first: ``(chain, draw, obs)``), from the Fit alone — no PyMC model —
so fresh and reloaded fits behave the same. Prediction on new data builds on these (see
:mod:`hmodels.predict`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["fit_design", "linear_predictor", "mean_draws", "simulate_response", "pointwise_loglik", "aux_draws"]


def fit_design(fit):
    """The Design of a fit's rows (``fit.design``; rebuilt from spec and data for a loaded fit)."""
    return fit.design


def _draws(fit, name):
    da = fit.draws[name]
    return np.asarray(da.transpose("chain", "draw", ...).values)


def linear_predictor(fit, design=None, groups: str = "include", effects: dict | None = None) -> np.ndarray:
    """Linear-predictor draws ``X b + offset + sum_f (Z_f * r_f[codes_f]).sum(-1)``, shape (chain, draw, n).

    The offset (``design.offset``, coefficient 1) is part of the population-level predictor: it is
    included whatever ``groups`` says.

    Parameters
    ----------
    fit : Fit
    design : Design, optional
        Rows to predict for (default: the data the model was fitted to).
    groups : {"include", "exclude"}
        Include the group-specific effects, or give population-level predictions (``X b`` and the
        offset only).
    effects : dict, optional
        Group-effect draws to use instead of the fitted ``r_<factor>``, by factor name, each of
        shape (chain, draw, levels, terms) with levels in the order of ``design``'s level codes
        (prediction for new levels appends their fresh draws after the fitted levels).

    Examples
    --------
    >>> eta = linear_predictor(fit)  # doctest: +SKIP
    >>> eta.shape  # doctest: +SKIP
    (4, 1000, 180)
    """
    design = fit_design(fit) if design is None else design
    b = _draws(fit, "b") if design.fixed_terms else None
    eta = np.einsum("cdp,np->cdn", b, design.X) if b is not None else 0.0
    if groups == "include":
        for f in design.factors:
            r = effects[f.factor] if effects and f.factor in effects else _draws(fit, f"r_{f.factor}")
            # r: (chain, draw, level, term)
            eta = eta + np.einsum("cdnk,nk->cdn", r[:, :, f.codes, :], f.Z)
    if np.isscalar(eta):
        c, d = fit.draws.sizes["chain"], fit.draws.sizes["draw"]
        eta = np.zeros((c, d, design.n))
    offset = getattr(design, "offset", None)
    if offset is not None:
        eta = eta + np.asarray(offset, dtype=float)
    return eta


def mean_draws(fit, eta: np.ndarray) -> np.ndarray:
    """Expected outcome per draw (probability for bernoulli/binomial, rate for counts)."""
    return fit.family.mean(eta)


def aux_draws(fit) -> dict[str, np.ndarray]:
    """Family parameters as (chain, draw, 1) arrays, ready to broadcast over observations."""
    return {a: _draws(fit, a)[..., None] for a in fit.family.aux if a in fit.draws}


def simulate_response(fit, eta: np.ndarray, design=None, seed: int | None = None) -> np.ndarray:
    """Replicated outcomes, one per draw and observation (posterior predictive)."""
    design = fit_design(fit) if design is None else design
    rng = np.random.default_rng(seed)
    return fit.family.simulate(rng, mean_draws(fit, eta), aux_draws(fit), trials=design.trials, se=design.se)


def pointwise_loglik(fit, eta: np.ndarray, design=None) -> np.ndarray:
    """Log-likelihood of each observation under each draw, shape (chain, draw, n)."""
    design = fit_design(fit) if design is None else design
    return fit.family.loglik(design.y, mean_draws(fit, eta), aux_draws(fit), trials=design.trials, se=design.se)

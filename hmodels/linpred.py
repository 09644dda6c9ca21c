"""Posterior draws of the linear predictor, the mean, replicated data and pointwise log-likelihood.

NumPy over draws (sample dims first: ``(chain, draw, obs)``), from the Fit alone — no PyMC model —
so fresh and reloaded fits behave the same. Prediction on new data builds on these (see
:mod:`hmodels.predict`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["fit_design", "linear_predictor", "mean_draws", "simulate_response", "pointwise_loglik", "aux_draws",
           "refuse_truncated_mean"]


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
    if getattr(design.spec, "nonlinear", None) is not None:  # expression(eta_1..eta_K), on the link scale
        from .nonlinear.linpred import nonlinear_predictor

        return nonlinear_predictor(fit, design, groups, effects)
    if getattr(design, "predictors", None) and getattr(design, "base", None) is not None:  # categorical: (.., n, K-1)
        from .categorical import categorical_predictor

        return categorical_predictor(fit, design, groups, effects)
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


def refuse_truncated_mean(fit, what: str) -> None:
    """Raise for a truncated outcome: its expected value is the truncated distribution's mean, not the family's.

    ``fit.family.response_mean`` is the mean of the untruncated distribution (a zero-truncated poisson's
    ``mu`` instead of ``mu / (1 - exp(-mu))``); every expected-outcome summary refuses rather than show it.
    """
    trunc = getattr(fit.spec, "trunc", None)
    if trunc is None:
        return
    from .errors import SpecificationError

    bounds = ", ".join(f"{k}={v:g}" for k, v in zip(("lb", "ub"), trunc) if v is not None)
    raise SpecificationError(
        f"{what} needs the expected outcome, and this outcome is truncated (trunc({bounds})): its mean is "
        "the truncated distribution's, which hmodels does not compute yet (the family's mean would be the "
        "untruncated one). fit.predict(newdata, kind='response') draws from the truncated distribution (average "
        "the draws for its mean); scale='link' / kind='link' gives the linear predictor."
    )


def aux_draws(fit, design=None, groups: str = "include", effects: dict | None = None) -> dict[str, np.ndarray]:
    """Family parameters as (chain, draw, 1) arrays, ready to broadcast over observations.

    A vector parameter (the thresholds of an ordinal model) keeps its own last axis: (chain, draw, 1, K-1).
    A parameter with its own formula (:mod:`hmodels.dpars`) is per row: (chain, draw, n), the inverse
    link of its linear predictor on ``design``'s rows (default: the fitted rows); ``groups="exclude"``
    leaves its group effects out, and a level the fit has not seen gets none unless ``effects`` (fresh draws for
    new levels, :func:`hmodels.dpars.dpar_values`) has its factor.
    """
    out = {a: np.expand_dims(_draws(fit, a), 2) for a in fit.family.aux if a in fit.draws}
    if design is None:
        if not any(f"b_{a}" in fit.draws for a in fit.family.aux):  # no parameter with a formula
            return out
        design = fit_design(fit)
    if getattr(design, "dpars", None):
        from .dpars import dpar_values

        for name, dd in design.dpars.items():
            out[name] = dpar_values(fit.draws, dd, groups, effects)
    return out


def simulate_response(fit, eta: np.ndarray, design=None, seed: int | None = None,
                      groups: str = "include", effects: dict | None = None) -> np.ndarray:
    """Replicated outcomes, one per draw and observation (posterior predictive).

    ``groups``: whether the group effects of family parameters with their own formula enter
    (:func:`aux_draws`).

    A truncated outcome is drawn from the truncated distribution (inverse CDF); a censored one is
    the uncensored outcome (what would have been observed without censoring).
    """
    design = fit_design(fit) if design is None else design
    rng = np.random.default_rng(seed)
    mu, aux = mean_draws(fit, eta), aux_draws(fit, design, groups, effects)
    trunc = design.spec.trunc
    if trunc is None:
        return fit.family.simulate(rng, mu, aux, trials=design.trials, se=design.se)
    dist = fit.family.scipy_dist(mu, aux, trials=design.trials, se=design.se)
    lo, hi = _truncation_cdf(fit.family, dist, trunc)
    v = rng.uniform(size=np.shape(mu))
    with np.errstate(all="ignore"):
        y = dist.ppf(np.clip(lo + (hi - lo) * v, 0.0, 1.0))
        upper = np.broadcast_to((lo > 0.5) & (not fit.family.discrete), np.shape(mu))  # scipy's counts: no isf
        if upper.any():  # a bound in the upper tail: F(lb) rounds to 1 there, so invert the survival function
            lb, ub = trunc
            s_lo = 1.0 if lb is None else dist.sf(lb - 1 if fit.family.discrete else lb)
            s_hi = 0.0 if ub is None else dist.sf(ub)
            y = np.where(upper, dist.isf(np.clip(s_lo - (s_lo - s_hi) * v, 0.0, 1.0)), y)
    lb, ub = trunc
    # the mass between the bounds rounds to nothing (a bound tens of SDs beyond the location): the inverse CDF
    # gives +-inf there, which the clip would move to the FAR bound; the truncated distribution's limit is the
    # near bound (the one on the side of the location: below-the-interval mass -> lb, above it -> ub)
    lost = ~np.isfinite(y)
    if lost.any():
        near = np.where(np.broadcast_to(lo > 0.5, np.shape(y)), -np.inf if lb is None else lb,
                        np.inf if ub is None else ub)
        y = np.where(lost, near, y)
    return np.clip(y, -np.inf if lb is None else lb, np.inf if ub is None else ub)


def _truncation_cdf(family, dist, trunc):
    """``F`` just below the lower bound (at ``lb - 1`` for counts: the bound is included) and ``F(ub)``."""
    lb, ub = trunc
    lo = 0.0 if lb is None else dist.cdf(lb - 1 if family.discrete else lb)
    hi = 1.0 if ub is None else dist.cdf(ub)
    return lo, hi


def truncation_log_mass(family, dist, trunc) -> np.ndarray:
    """``log P(lb <= y <= ub)`` under ``dist`` (the normalising constant of a truncated likelihood), stably."""
    lb, ub = trunc
    below = None if lb is None else (lb - 1 if family.discrete else lb)
    if ub is None:
        return dist.logsf(below)
    if below is None:
        return dist.logcdf(ub)
    a, b = dist.logcdf(below), dist.logcdf(ub)
    with np.errstate(divide="ignore"):
        return b + np.log(-np.expm1(a - b))


def pointwise_loglik(fit, eta: np.ndarray, design=None, dpar_effects: dict | None = None) -> np.ndarray:
    """Log-likelihood of each observation under each draw, shape (chain, draw, n).

    ``dpar_effects``: group effects of the family parameters' factors with fresh draws for unseen levels
    (:func:`hmodels.predict.new_dpar_level_effects`); without them such a level gets none.
    """
    design = fit_design(fit) if design is None else design
    fam, mu, aux = fit.family, mean_draws(fit, eta), aux_draws(fit, design, effects=dpar_effects)
    ll = fam.loglik(design.y, mu, aux, trials=design.trials, se=design.se)
    cens, trunc = getattr(design, "cens", None), design.spec.trunc
    if cens is not None or trunc is not None:
        dist = fam.scipy_dist(mu, aux, trials=design.trials, se=design.se)
        y = np.asarray(design.y, dtype=float)
        if cens is not None:  # a censored row contributes the probability beyond its recorded value
            ll = np.where(cens == 1, dist.logsf(y), np.where(cens == -1, dist.logcdf(y), ll))
        if trunc is not None:
            ll = ll - truncation_log_mass(fam, dist, trunc)
    weights = getattr(design, "weights", None)
    return ll if weights is None else ll * weights

"""Laplace-approximate integration of one factor's random intercepts inside NUTS (``method="laplace"``).

For a generalised linear mixed model, NUTS then samples everything but the effects ``u_l`` of one
grouping factor with random intercepts only (the one with most levels): given the rest (``theta``:
coefficients, other factors' effects, the factor's SD ``s`` and the family's parameters), the
levels are independent and each level's likelihood is integrated over ``u_l ~ N(0, s^2)`` by the
Laplace approximation — as TMB/glmmTMB do for point fits and Stan's embedded Laplace does for
sampling::

    log p(y_l | theta) ~= l_l(u*) - u*^2 / (2 s^2) - 1/2 log(1 - s^2 l_l''(u*))

with ``l_l(u) = sum_{i in l} log p(y_i | eta_i + u)`` and ``u*`` its penalised maximum, found by
Newton's method (:data:`NEWTON_STEPS` safeguarded steps from 0; its derivatives by PyTensor). The
gradient NUTS needs flows through one last Newton step from the converged point (the implicit
function theorem), not through the iterations.

After sampling (:func:`laplace_effects`), for every posterior draw the effects are drawn from their
exact conditional posterior by importance resampling from the Laplace Gaussian (a Student-t with
4 degrees of freedom, scaled 1.2 times wider, as proposal), and the same importance weights estimate
the exact marginal likelihood ``p(y | theta)``. Reweighting the draws by exact / approximate
marginal (Pareto-smoothed) says how far the approximation moved the posterior: the Pareto k of
those weights and the largest shift of a posterior mean, in posterior SDs, are in
``fit.meta["laplace"]`` and a warning names them when the approximation is not close (k > 0.7 or a
shift > 0.1 SD). For a gaussian identity-link model the approximation is exact.

Opt-in (``model.fit(method="laplace")``) until shown exact enough to be a default.

Examples
--------
>>> import hmodels as hm
>>> m = hm.Model("incidence ~ period + (1 | herd)", hm.datasets.load("cbpp"), family="poisson")
>>> laplace_factor(m.design)
'herd'
"""

from __future__ import annotations

import warnings

import numpy as np

from .errors import ConvergenceWarning, SpecificationError

__all__ = ["laplace_factor", "laplace_gap", "laplace_marginal", "laplace_effects", "NEWTON_STEPS"]

#: Newton steps from u = 0, each at most MAX_STEP on the link scale (a far optimum of an exponential-family
#: level is approached in strides, then Newton converges quadratically).
NEWTON_STEPS = 20
MAX_STEP = 2.0
#: Proposals per level and draw for the importance-resampled effects and the marginal's check.
PROPOSALS = 32
#: The check flags a Pareto k above this, or a posterior mean shifted by more than SHIFT_SD posterior SDs.
PARETO_K = 0.7
SHIFT_SD = 0.1


def laplace_gap(design) -> str | None:
    """Why ``method="laplace"`` cannot fit this model (words), or None when it can.

    Examples
    --------
    >>> import hmodels as hm
    >>> laplace_gap(hm.Model("Reaction ~ Days", hm.datasets.load("sleepstudy")).design)
    'the model has no grouping factor with random intercepts only'
    """
    from .families import get_family

    spec = design.spec
    fam = get_family(spec.family, spec.link)
    if fam.outcome in ("ordinal", "categorical"):
        return f"the {fam.name} family's likelihood is not a function of one linear predictor per row"
    if any(getattr(spec, a, None) is not None for a in ("cens", "trunc", "weights")) or getattr(spec, "dpars", ()):
        return "censoring, truncation, weights and family parameters with their own formula are not supported"
    if getattr(spec, "nonlinear", None) is not None:
        return "a nonlinear model's effects enter through its expression"
    if design.se is not None:
        return "known standard errors: use method='collapsed' (exact)"
    if not _candidates(design):
        return "the model has no grouping factor with random intercepts only"
    return None


def _candidates(design):
    return [f for f in design.factors if len(f.terms) == 1 and np.all(f.Z[:, 0] == 1.0)]


def laplace_factor(design) -> str:
    """The factor whose effects the Laplace approximation integrates out: random intercepts, most levels.

    Examples
    --------
    >>> import hmodels as hm
    >>> d = hm.Model("diameter ~ 1 + (1 | plate) + (1 | sample)", hm.datasets.load("penicillin")).design
    >>> laplace_factor(d)
    'plate'
    """
    gap = laplace_gap(design)
    if gap is not None:
        raise SpecificationError(f"method='laplace' is not available: {gap}. Use method='joint' or 'auto'.")
    return max(_candidates(design), key=lambda f: f.n_levels).factor


# -- the PyMC graph: the approximate marginal likelihood ------------------------------------------
def laplace_marginal(fam, eta0, aux, y, trials, codes: np.ndarray, n_levels: int, sd):
    """PyTensor scalar: the Laplace approximation of ``sum_l log p(y_l | theta)`` (see the module docstring).

    ``eta0`` (n,) is the linear predictor without the factor's effects, ``sd`` its SD (a scalar).

    Examples
    --------
    >>> import pytensor.tensor as pt
    >>> from hmodels.families import get_family
    >>> fam = get_family("gaussian")
    >>> lp = laplace_marginal(fam, pt.zeros(4), {"sigma": pt.constant(1.0)}, np.array([1.0, 2, 3, 4]), None,
    ...                       np.array([0, 0, 1, 1]), 2, pt.constant(1.0))
    >>> round(float(lp.eval()), 4)  # exact for a gaussian: N(y_l | 0, I + J) per level (scipy: -10.1077)
    -10.1077
    """
    import pymc as pm
    import pytensor.tensor as pt
    from pytensor.gradient import disconnected_grad

    codes = np.asarray(codes, dtype=np.int64)
    s2 = sd**2
    observed = np.asarray(y, dtype=float)

    def rows(u):
        eta = eta0 + u[codes]
        lp = pm.logp(fam.pymc_dist(eta, aux, trials=trials), observed)
        g = pt.grad(lp.sum(), eta)
        h = pt.grad(g.sum(), eta)  # each row's log density depends on its own eta only: the Hessian is diagonal
        return lp, _level_sum(g, codes, n_levels), _level_sum(h, codes, n_levels)

    u = pt.zeros(n_levels)
    for _ in range(NEWTON_STEPS):  # values only: the gradient does not flow through the iterations
        _, G, H = rows(u)
        grad = G - u / s2
        curv = pt.minimum(H, 0.0) - 1.0 / s2  # safeguarded (negative) curvature
        u = u - pt.clip(grad / curv, -MAX_STEP, MAX_STEP)
    u = disconnected_grad(u)
    _, G, H = rows(u)
    u = u - (G - u / s2) / (H - 1.0 / s2)  # one differentiable Newton step: du*/dtheta by the implicit function
    lp, _, H = rows(u)
    return lp.sum() - (u**2).sum() / (2.0 * s2) - 0.5 * pt.log(pt.maximum(1.0 - s2 * H, 1e-12)).sum()


def _level_sum(v, codes, n_levels):
    import pytensor.tensor as pt

    return pt.inc_subtensor(pt.zeros(n_levels)[codes], v)


# -- after sampling: exact conditional effects and the approximation's check -------------------------
def laplace_effects(design, factor: str, post, family_aux, seed=None) -> tuple[dict, dict]:
    """Effects of the Laplace-integrated factor drawn from their exact conditional posterior, and the check.

    Per posterior draw and level: Newton's method for ``u*`` and the curvature (NumPy, with the
    family's own log-likelihood), :data:`PROPOSALS` proposals from a Student-t(4) at ``u*`` 1.2 times
    wider than the Laplace Gaussian, importance weights ``p(y_l, u | theta) / q(u)``, one proposal
    resampled by them (the effect) and their mean (the level's exact marginal likelihood). The
    check reweights the posterior draws by exact / Laplace marginal (Pareto-smoothed).

    Returns
    -------
    (dict, dict)
        ``{"z_<factor>", "r_<factor>"}`` for ``Dataset.assign``, and the check: ``pareto_k``,
        ``max_shift_sd`` (the largest reweighted change of a posterior mean, in posterior SDs),
        ``worst`` (that variable), ``log_marginal_error`` (mean and max over draws of |exact -
        Laplace| log marginal), ``min_level_ess`` (of the resampling, smallest over draws and levels),
        ``close`` (both within the thresholds).

    Examples
    --------
    >>> effects, check = laplace_effects(design, "herd", posterior, ("alpha",), seed=1)  # doctest: +SKIP
    """
    from scipy import sparse, stats

    from .families import get_family

    fam = get_family(design.spec.family, design.spec.link)
    rng = np.random.default_rng(seed)
    f = design.factor(factor)
    L, codes, n = f.n_levels, f.codes, design.n
    C_, D_ = post.sizes["chain"], post.sizes["draw"]
    S = C_ * D_
    ind = sparse.csr_matrix((np.ones(n), (np.arange(n), codes)), shape=(n, L))
    flat = {v: np.asarray(post[v].transpose("chain", "draw", ...).values, dtype=float).reshape(S, *post[v].shape[2:])
            for v in post.data_vars}
    eta0 = np.zeros((S, n))
    if design.X.shape[1]:
        eta0 += flat["b"] @ design.X.T
    if design.offset is not None:
        eta0 += design.offset
    for g in design.factors:
        if g.factor != factor:
            eta0 += (g.Z[None] * flat[f"r_{g.factor}"][:, g.codes]).sum(-1)
    sd = flat[f"sd_{factor}"].reshape(S)
    y, trials = np.asarray(design.y, dtype=float), design.trials
    aux_all = {a: flat[a].reshape(S, 1) for a in family_aux if a in flat}

    def level_loglik(eta, aux):  # (..., n) -> (..., L)
        lp = np.asarray(fam.loglik(y, fam.mean(eta), aux, trials=trials), dtype=float)
        shape = lp.shape
        return (ind.T @ lp.reshape(-1, n).T).T.reshape(*shape[:-1], L)

    u_out = np.empty((S, L))
    approx_lm, exact_lm = np.empty(S), np.empty(S)
    min_ess = np.inf
    step = 1e-4
    chunk = max(1, int(2_000_000 // max(PROPOSALS * n, 1)))
    for lo in range(0, S, chunk):
        hi = min(S, lo + chunk)
        e0, s2 = eta0[lo:hi], sd[lo:hi, None] ** 2
        aux = {a: v[lo:hi] for a, v in aux_all.items()}
        u = np.zeros((hi - lo, L))
        with np.errstate(all="ignore"):
            for _ in range(100):  # to convergence (the graph took NEWTON_STEPS: the check sees any shortfall)
                ll0 = level_loglik(e0 + u[:, codes], aux)
                llp = level_loglik(e0 + u[:, codes] + step, aux)
                llm = level_loglik(e0 + u[:, codes] - step, aux)
                G, H = (llp - llm) / (2 * step), (llp - 2 * ll0 + llm) / step**2
                delta = np.clip((G - u / s2) / (np.minimum(H, 0.0) - 1.0 / s2), -MAX_STEP, MAX_STEP)
                u = u - delta
                if np.nanmax(np.abs(delta)) < 1e-8:
                    break
            ll0 = level_loglik(e0 + u[:, codes], aux)
            H = (level_loglik(e0 + u[:, codes] + step, aux) - 2 * ll0
                 + level_loglik(e0 + u[:, codes] - step, aux)) / step**2
            approx_lm[lo:hi] = (ll0 - u**2 / (2 * s2) - 0.5 * np.log(np.maximum(1 - s2 * H, 1e-12))).sum(-1)
            scale = 1.2 / np.sqrt(np.maximum(1.0 / s2 - H, 1e-12))
            t = stats.t(4)
            z = t.rvs(size=(PROPOSALS, hi - lo, L), random_state=rng)
            prop = u[None] + scale[None] * z
            ll = level_loglik(e0[None] + prop[..., codes], {a: v[None] for a, v in aux.items()})
            logw = (ll - prop**2 / (2 * s2[None]) - 0.5 * np.log(2 * np.pi * s2[None])
                    - (t.logpdf(z) - np.log(scale[None])))
        m = np.nanmax(logw, axis=0)
        w = np.exp(logw - m[None])
        w = np.where(np.isfinite(w), w, 0.0)
        wsum = w.sum(axis=0)
        exact_lm[lo:hi] = (m + np.log(wsum / PROPOSALS)).sum(-1)
        min_ess = min(min_ess, float(np.min(wsum**2 / np.maximum((w**2).sum(axis=0), 1e-300))))
        cum = np.cumsum(w / wsum[None], axis=0)
        pick = (rng.random((hi - lo, L))[None] > cum).sum(axis=0).clip(0, PROPOSALS - 1)
        u_out[lo:hi] = np.take_along_axis(prop, pick[None], axis=0)[0]
    check = _check(flat, exact_lm - approx_lm, factor)
    check["min_level_ess"] = min_ess
    dims = ("chain", "draw", factor, f"{factor}__term")
    r = u_out.reshape(C_, D_, L, 1)
    z = (u_out / sd[:, None]).reshape(C_, D_, L, 1)
    return {f"z_{factor}": (dims, z), f"r_{factor}": (dims, r)}, check


def _check(flat: dict, log_ratio: np.ndarray, factor: str) -> dict:
    """How far reweighting the draws by exact / Laplace marginal moves the posterior."""
    from arviz_stats.base.array import array_stats

    lr = np.where(np.isfinite(log_ratio), log_ratio, -np.inf)
    lw, k = array_stats.psislw(lr - lr.max())
    lw = np.asarray(lw, dtype=float)
    w = np.exp(lw - lw.max())
    w /= w.sum()
    worst, shift = "", 0.0
    for name, v in flat.items():
        if name.startswith(("z_", "r_")) or v.ndim == 0:
            continue
        vals = v.reshape(v.shape[0], -1)
        sdv = vals.std(axis=0)
        ok = sdv > 0
        if not ok.any():
            continue
        d = np.abs(w @ vals - vals.mean(axis=0))[ok] / sdv[ok]
        if d.max() > shift:
            shift, worst = float(d.max()), name
    k = float(np.asarray(k).ravel()[0])
    close = k <= PARETO_K and shift <= SHIFT_SD
    return {"factor": factor, "pareto_k": k, "max_shift_sd": shift, "worst": worst,
            "log_marginal_error": {"mean": float(np.mean(np.abs(log_ratio))), "max": float(np.max(np.abs(log_ratio)))},
            "close": bool(close)}


def warn_if_far(check: dict) -> None:
    """A plain-language warning when the Laplace approximation is not close to the joint posterior."""
    if check["close"]:
        return
    warnings.warn(
        f"method='laplace' integrated out {check['factor']!r} approximately, and the check says the approximation "
        f"is not close here: reweighting the draws to the exact marginal likelihood moves {check['worst']} by "
        f"{check['max_shift_sd']:.2f} posterior SDs (Pareto k {check['pareto_k']:.2f}). This happens with few rows "
        "per level of a binary outcome. Refit with method='joint' (the exact joint posterior).",
        ConvergenceWarning, stacklevel=3,
    )

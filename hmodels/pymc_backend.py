"""The PyMC-graph backend: the model of :mod:`hmodels.build` sampled by PyMC's NUTS or numpyro.

It follows the same :class:`~hmodels.plan.FitPlan` as the engine: the same factor integrated out
(the PyMC graph then carries the collapsed likelihood of :func:`hmodels.build.build_model`), the
same centring per sampled factor and target acceptance rate; where it cannot follow the plan
(it samples the coefficients, evaluates every row, adapts a diagonal mass matrix) the plan lists
it. It returns the canonical posterior — the PyMC model's internal variables (``b_slopes``,
``Intercept_centered``, ``L_cor_*``, per-block pieces) dropped — and the integrated-out effects
drawn exactly from their Gaussian conditional posterior, as the engine does. It compiles the
graph for every new model, so it serves as an independent check of the engine.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from .plan import BackendResult, FitPlan

if TYPE_CHECKING:  # annotations only
    from .build import BuiltModel
    from .design import Design
    from .sampling import SamplerSettings

__all__ = ["sample_pymc", "draw_collapsed_effects"]


def _canonical_names(design, family_aux) -> set[str]:
    names = {"b", *family_aux}
    for f in design.factors:
        names |= {f"sd_{f.factor}", f"r_{f.factor}", f"z_{f.factor}"}
    if getattr(design, "dpars", None):
        from .dpars import dpar_variables

        names |= dpar_variables(design)
    return names


def sample_pymc(built: BuiltModel, design: Design, plan: FitPlan, settings: SamplerSettings, family_aux,
                progressbar: bool = True) -> BackendResult:
    """Sample a built PyMC model (:class:`~hmodels.build.BuiltModel`) following ``plan``.

    Parameters
    ----------
    built : BuiltModel
        Built with the plan's centring and integrated-out factor.
    design : Design
    plan : FitPlan
    settings : SamplerSettings
    family_aux : sequence of str
        The family's parameters (``sigma``, ``nu``, ``alpha``).
    progressbar : bool

    Returns
    -------
    BackendResult

    Examples
    --------
    >>> import hmodels as hm
    >>> m = hm.Model("Yield ~ 1 + (1 | Batch)", hm.datasets.load("dyestuff"))
    >>> fit = m.fit(draws=200, tune=200, chains=2, seed=1, sampler="pymc", progressbar=False)  # doctest: +SKIP
    >>> fit.meta["plan"]["backend"]  # doctest: +SKIP
    'pymc-graph'
    """
    from dataclasses import replace

    from .sampling import sample


    settings = replace(settings, target_accept=plan.target_accept)
    idata, timing = sample(built.model, settings, progressbar=progressbar, log_likelihood=False)
    t2 = time.perf_counter()
    post = idata["posterior"].to_dataset()
    keep = _canonical_names(design, family_aux) | {c for cors in built.cor_vars.values() for c, _ in cors}
    post = post[[v for v in post.data_vars if v in keep]]
    laplace_check = None
    if plan.collapsed_factor is not None and plan.method == "laplace":  # importance-resampled effects + the check
        from .laplace import laplace_effects, warn_if_far

        seed = None if settings.seed is None else [settings.seed, 7919]
        effects, laplace_check = laplace_effects(design, plan.collapsed_factor, post, family_aux, seed=seed)
        post = post.assign(effects)
        warn_if_far(laplace_check)
    elif plan.collapsed_factor is not None:
        seed = None if settings.seed is None else [settings.seed, 7919]
        post = post.assign(draw_collapsed_effects(design, plan.collapsed_factor, built.cor_vars, post, seed=seed))
    dfactors = [f for dd in (getattr(design, "dpars", None) or {}).values() for f in dd.factors]
    post = post.assign_coords({f.factor: [str(lv) for lv in f.levels] for f in [*design.factors, *dfactors]})
    post = post.drop_vars([c for c in post.coords if c not in post.dims])
    t3 = time.perf_counter()
    n_sampled = int(sum(np.asarray(v).size for v in built.model.initial_point().values()))
    facts = {"engine": f"PyMC graph + {settings.sampler} NUTS", "n_sampled_parameters": n_sampled,
             "aggregated_rows": None}
    if laplace_check is not None:
        facts["laplace"] = laplace_check
    stats = idata["sample_stats"].to_dataset()
    # numeric statistics only (nutpie's per-draw divergence messages are Python objects, not data)
    stats = stats[[v for v in stats.data_vars if stats[v].dtype.kind in "biuf"]]
    return BackendResult(post, stats, plan, {"sample_s": timing["total_s"], "group_effects_s": t3 - t2}, facts)


def _flat(post, name):
    a = np.asarray(post[name].transpose("chain", "draw", ...).values, dtype=float)
    return a.reshape(a.shape[0] * a.shape[1], *a.shape[2:])


def draw_collapsed_effects(design, factor: str, cor_vars: dict, post, seed=None, chunk: int = 200) -> dict:
    """Exact draws of an integrated-out factor's effects given each posterior draw of the rest.

    For draw ``s``, with ``e = y - X b - Σ_{other factors} Z r`` and ``B = diag(sd) L``, the
    standardised effects of level ``l`` are ``N(s M_l⁻¹ c_l, M_l⁻¹)`` (``M_l = I + s Bᵀ A_l B``,
    ``c_l = Bᵀ Σ_{i∈l} w_i z_i e_i``, ``s = 1/σ²``) and ``r_l = B z_l``.

    Parameters
    ----------
    design : Design
    factor : str
        The integrated-out grouping factor.
    cor_vars : dict
        ``{factor: [(cor variable, terms), ...]}`` of the built model.
    post : xarray.Dataset
        Draws of ``b``, ``sd_*``, ``cor_*``, ``sigma`` and the other factors' ``r_*``.
    seed : int or sequence, optional
    chunk : int
        Draws processed at a time.

    Returns
    -------
    dict
        ``{"z_<factor>": (dims, array), "r_<factor>": (dims, array)}`` for ``Dataset.assign``.

    Examples
    --------
    >>> out = draw_collapsed_effects(design, "Subject", built.cor_vars, posterior, seed=1)  # doctest: +SKIP
    """
    from .build import collapsed_crossproducts

    rng = np.random.default_rng(seed)
    f = design.factor(factor)
    w, A = collapsed_crossproducts(design, f)
    C_, D_ = post.sizes["chain"], post.sizes["draw"]
    S, k, L = C_ * D_, len(f.terms), f.n_levels
    sd = _flat(post, f"sd_{factor}")
    B = np.zeros((S, k, k))
    B[:, np.arange(k), np.arange(k)] = sd
    cors = iter(cor_vars.get(factor, []))
    for block, cor in zip(f.blocks, f.correlated):
        if cor:
            idx = np.array(block)
            Lc = np.linalg.cholesky(_flat(post, next(cors)[0]))
            B[:, idx[:, None], idx[None, :]] = sd[:, idx, None] * Lc
    b = _flat(post, "b") if design.X.shape[1] else np.zeros((S, 0))
    s = np.ones(S) if design.se is not None else 1.0 / _flat(post, "sigma") ** 2
    others = [g for g in design.factors if g.factor != factor]
    r_others = {g.factor: _flat(post, f"r_{g.factor}") for g in others}
    from .families import get_family

    y = np.asarray(get_family(design.spec.family, design.spec.link).engine_outcome(design.y.astype(float)), dtype=float)
    if design.offset is not None:
        y = y - design.offset  # the offset is part of the mean, with coefficient 1
    Zw = f.Z * w[:, None]
    z_out, r_out = np.empty((S, L, k)), np.empty((S, L, k))
    for lo in range(0, S, chunk):
        hi = min(S, lo + chunk)
        e = y[None, :] - b[lo:hi] @ design.X.T
        for g in others:
            e -= (g.Z[None] * r_others[g.factor][lo:hi][:, g.codes]).sum(-1)
        Zte = np.zeros((hi - lo, L, k))
        np.add.at(Zte, (slice(None), f.codes), Zw[None] * e[:, :, None])
        Bs, ss = B[lo:hi], s[lo:hi]
        M = np.eye(k) + ss[:, None, None, None] * np.einsum("sti,ltu,suj->slij", Bs, A, Bs)
        c = np.einsum("slt,sti->sli", Zte, Bs)
        chol = np.linalg.cholesky(M)
        mean = ss[:, None, None] * np.linalg.solve(M, c[..., None])[..., 0]
        noise = np.linalg.solve(np.swapaxes(chol, -1, -2), rng.standard_normal(c.shape)[..., None])[..., 0]
        z = mean + noise
        z_out[lo:hi] = z
        r_out[lo:hi] = np.einsum("slj,sij->sli", z, Bs)
    dims = ("chain", "draw", factor, f"{factor}__term")
    return {f"z_{factor}": (dims, z_out.reshape(C_, D_, L, k)), f"r_{factor}": (dims, r_out.reshape(C_, D_, L, k))}

"""Fit a :class:`~hmodels.model.Model` with the compiled log density and nutpie's NUTS.

The default path of ``Model.fit`` (``sampler="nutpie"``). It chooses what to integrate out
(:func:`collapse_plan`), builds the :class:`~hmodels.engine.layout.EngineModel` (cached on the
Model per plan, so a refit pays nothing), samples, and returns a
:class:`~hmodels.fit.Fit` with exactly the variables of the joint model: ``b``, ``sd_<factor>``,
``cor_<factor>``, ``r_<factor>`` (and ``z_<factor>`` for standardised effects), ``sigma``, ``nu``,
``alpha``.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConvergenceWarning, SamplingError, SpecificationError

__all__ = ["collapse_plan", "fit_engine", "auto_target_accept"]

METHODS = ("auto", "joint", "collapsed")


def collapse_plan(design, method: str) -> str | None:
    """The grouping factor to integrate out analytically, or None.

    ``"auto"`` and ``"collapsed"`` integrate out, for a gaussian identity-link model, the factor
    with the most group effects (levels x terms): all of them when it is the only factor (the
    likelihood then reads only cross-products), otherwise the others are sampled given it.
    ``"joint"`` integrates nothing out.

    Examples
    --------
    >>> import hmodels as hm
    >>> d = hm.Model("diameter ~ 1 + (1 | plate) + (1 | sample)", hm.datasets.load("penicillin")).design
    >>> collapse_plan(d, "auto")
    'plate'
    """
    if method not in METHODS:
        raise SpecificationError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}.")
    spec = design.spec
    ok = spec.family == "gaussian" and spec.link == "identity" and bool(design.factors)
    if method == "collapsed" and not ok:
        why = ("the model has no grouping factors" if not design.factors else
               f"group effects integrate out analytically only for the gaussian family with identity link, "
               f"not {spec.family} ({spec.link})")
        raise SpecificationError(f"method='collapsed' is not available: {why}. Use method='joint' or 'auto'.")
    if method == "joint" or not ok:
        return None
    sizes = [f.n_levels * len(f.terms) for f in design.factors]
    return design.factors[int(np.argmax(sizes))].factor


#: Largest number of sampled parameters for which nutpie adapts a low-rank (correlation-aware)
#: mass matrix; above it the diagonal one (the low-rank update then costs more than it gains:
#: 3.5 s vs 1.0 s for the same ESS on a 125-parameter poisson GLMM).
LOW_RANK_MAX_DIM = 64
#: Default NUTS target acceptance rate. 0.8 gave divergences in the tail of collapsed eight schools
#: (10 in 4000 draws) and on centred pastes; 0.9 gave none on every benchmark model.
TARGET_ACCEPT = 0.9
#: Above this many sampled parameters the default is 0.8 (Stan's): on the 73,000-row crossed model
#: (1,131 parameters) it needs 15 instead of 22 leapfrog steps per draw, with no divergences.
LARGE_DIM = 200


def auto_target_accept(ndim: int) -> float:
    """The default target acceptance rate: :data:`TARGET_ACCEPT`, or 0.8 above :data:`LARGE_DIM` parameters."""
    return 0.8 if ndim > LARGE_DIM else TARGET_ACCEPT


def mass_matrix_adaptation(ndim: int) -> str:
    """nutpie's ``"low_rank"`` adaptation up to :data:`LOW_RANK_MAX_DIM` parameters, else ``"diag"``.

    Low-rank adaptation learns the correlated directions of the posterior (an intercept against
    the mean of a few group effects): on penicillin it raised the coefficients' ESS from 391 to
    3251 in 4000 draws.
    """
    return "low_rank" if ndim <= LOW_RANK_MAX_DIM else "diag"


@dataclass
class _Built:
    """What :meth:`Fit.from_sampling` reads from a built model."""

    centered: dict
    observed: str
    cor_vars: dict = field(default_factory=dict)


def engine_model(model, collapsed: str | None):
    """The :class:`EngineModel` of a Model for one integration plan (built once, then cached)."""
    from .layout import EngineModel

    cache = model.__dict__.setdefault("_engine_models", {})
    if collapsed not in cache:
        cache[collapsed] = EngineModel(model.design, model.priors, model.centering(collapsed), collapse=collapsed)
    return cache[collapsed]


def fit_engine(model, settings, method: str = "auto", progressbar: bool = True, log_likelihood: bool = False):
    """Sample a Model with the compiled log density; see :meth:`hmodels.Model.fit`.

    Examples
    --------
    >>> import hmodels as hm
    >>> m = hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy"))
    >>> fit = m.fit(draws=500, chains=2, seed=1, progressbar=False)  # doctest: +SKIP
    >>> fit.meta["method"]  # doctest: +SKIP
    'collapsed'
    """
    import xarray as xr

    from ..build import obs_name
    from ..fit import Fit
    from .nuts import nutpie_sample

    t0 = time.perf_counter()
    design = model.design
    collapsed = collapse_plan(design, method)
    em = engine_model(model, collapsed)
    target = settings.target_accept if settings.target_accept is not None else auto_target_accept(em.ndim)
    settings = type(settings)(**{**settings.to_dict(), "target_accept": float(target)})
    t1 = time.perf_counter()
    try:
        xd, stats = nutpie_sample(em, settings.draws, settings.tune, settings.chains, settings.cores, settings.seed,
                                  settings.target_accept, progressbar=progressbar,
                                  adaptation=mass_matrix_adaptation(em.ndim))
    except BaseException as exc:  # nutpie can raise a Rust PanicException (not an Exception)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise SamplingError(f"nutpie failed: {type(exc).__name__}: {exc}. Try sampler='pymc'.") from exc
    t2 = time.perf_counter()
    C, D = xd.shape[:2]
    flat = xd.reshape(C * D, em.ndim)
    values = em.constrained(flat)
    seed = None if settings.seed is None else [settings.seed, 7919]
    values.update(em.conditional_effects(flat, seed=seed))
    t3 = time.perf_counter()
    posterior = _posterior_dataset(em, values, C, D)
    observed = obs_name(design.spec)
    groups = {
        "posterior": posterior,
        "sample_stats": _sample_stats(stats),
        "observed_data": xr.Dataset({observed: (("obs",), design.y)}, coords={"obs": np.arange(design.n)}),
    }
    points = _divergence_points(em, stats)
    if points is not None:
        groups["divergences"] = points
    tree = xr.DataTree.from_dict(groups)
    built = _Built(centered={f.name: f.centred for f in em.factors if not f.collapsed},
                   observed=observed, cor_vars={f.name: f.cor_names for f in em.factors})
    timing = {"build_s": t1 - t0, "sample_s": t2 - t1, "group_effects_s": t3 - t2}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit = Fit.from_sampling(model, built, tree, settings, timing)
    fit.meta["method"] = "joint" if collapsed is None else "collapsed"
    fit.meta["collapsed_factor"] = collapsed
    fit.meta["engine"] = "hmodels compiled log density + nutpie NUTS"
    fit.meta["coefficients_integrated"] = bool(em.intbeta)
    fit.meta["mass_matrix"] = mass_matrix_adaptation(em.ndim)
    fit.meta["n_sampled_parameters"] = int(em.ndim)
    fit.meta["aggregated_rows"] = None if em.aggregated is None else int(em.aggregated["unique"])
    if log_likelihood:
        from ..linpred import linear_predictor, pointwise_loglik

        ll = pointwise_loglik(fit, linear_predictor(fit), design)
        fit.posterior["log_likelihood"] = xr.DataTree(xr.Dataset(
            {observed: (("chain", "draw", "obs"), ll)},
            coords={"chain": np.arange(C), "draw": np.arange(D), "obs": np.arange(design.n)}))
    fit.timing["total_s"] = time.perf_counter() - t0
    for message in fit.convergence_messages():
        warnings.warn(message, ConvergenceWarning, stacklevel=3)
    return fit


def _posterior_dataset(em, values: dict, C: int, D: int):
    import xarray as xr

    design = em.design
    data, coords = {}, {"chain": np.arange(C), "draw": np.arange(D)}

    def put(name, dims, arr):
        data[name] = (("chain", "draw", *dims), np.asarray(arr).reshape(C, D, *np.shape(arr)[1:]))

    if "b" in values:
        coords["term"] = list(design.fixed_terms)
        put("b", ("term",), values["b"])
    for f in em.factors:
        coords[f.name] = [str(lv) for lv in design.factor(f.name).levels]
        coords[f"{f.name}__term"] = list(f.terms)
        put(f"sd_{f.name}", (f"{f.name}__term",), values[f"sd_{f.name}"])
        for cname, terms in f.cor_names:
            coords[f"{cname}__row"] = list(terms)
            coords[f"{cname}__col"] = list(terms)
            put(cname, (f"{cname}__row", f"{cname}__col"), values[cname])
        if f"z_{f.name}" in values:
            put(f"z_{f.name}", (f.name, f"{f.name}__term"), values[f"z_{f.name}"])
        put(f"r_{f.name}", (f.name, f"{f.name}__term"), values[f"r_{f.name}"])
    for a in ("sigma", "nu", "alpha"):
        if a in values:
            put(a, (), values[a])
    return xr.Dataset(data, coords=coords)


def _divergence_points(em, stats):
    """SDs and family parameters where each divergent trajectory diverged (dim ``divergence``)."""
    import xarray as xr

    if "divergence_start" not in stats or not bool(stats["diverging"].values.any()):
        return None
    start = np.asarray(stats["divergence_start"].transpose("chain", "draw", ...).values, dtype=float)
    div = np.asarray(stats["diverging"].transpose("chain", "draw").values, dtype=bool)
    x = start[div]
    x = x[np.isfinite(x).all(axis=1)]
    if not len(x):
        return None
    values = em.constrained(x)
    data = {}
    for f in em.factors:
        data[f"sd_{f.name}"] = (("divergence", f"{f.name}__term"), values[f"sd_{f.name}"])
    for a in ("sigma", "nu", "alpha"):
        if a in values:
            data[a] = (("divergence",), values[a])
    return xr.Dataset(data, coords={f"{f.name}__term": list(f.terms) for f in em.factors})


_STAT_NAMES = {"depth": "tree_depth", "maxdepth_reached": "reached_max_treedepth", "logp": "lp",
               "mean_tree_accept": "acceptance_rate"}


def _sample_stats(stats):
    """nutpie's sample statistics under ArviZ's names (diverging, energy, lp, tree_depth, ...)."""
    keep = ["diverging", "energy", "energy_error", "max_energy_error", "step_size", "n_steps", "depth",
            "maxdepth_reached", "logp", "mean_tree_accept"]
    ds = stats[[k for k in keep if k in stats]]
    ds = ds.rename({k: v for k, v in _STAT_NAMES.items() if k in ds})
    return ds.assign(diverging=ds["diverging"].astype(bool))

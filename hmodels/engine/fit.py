"""The engine backend: nutpie's NUTS on hmodels' compiled log density (``sampler="nutpie"``).

It follows a :class:`~hmodels.plan.FitPlan` (what is integrated out, centring, target rate,
mass matrix) on the :class:`~hmodels.engine.layout.EngineModel` of that plan, and returns a
:class:`~hmodels.plan.BackendResult` with exactly the variables of the joint model: ``b``,
``sd_<factor>``, ``cor_<factor>``, ``r_<factor>`` (and ``z_<factor>`` for standardised effects) and
the family's own parameters (``sigma``, ``nu``, ``alpha``, ``shape``, ``phi``, ``zi``, ``hu``, ``zoi``, ``coi``,
and an ordinal model's ``cutpoints``, dim ``cutpoint``, labelled ``Intercept[1]``, ...). It
knows nothing of :class:`~hmodels.fit.Fit`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from ..errors import SamplingError
from ..families.ordinal import threshold_labels
from ..plan import BackendResult, FitPlan
from .codes import AUX_NAMES

if TYPE_CHECKING:  # annotations only
    from ..sampling import SamplerSettings
    from .layout import EngineModel

__all__ = ["sample_engine"]


def sample_engine(em: EngineModel, plan: FitPlan, settings: SamplerSettings, progressbar: bool = True) -> BackendResult:
    """Sample an :class:`~hmodels.engine.layout.EngineModel` with nutpie, following ``plan``.

    Returns the canonical posterior (what was integrated out drawn exactly afterwards), the
    sample statistics under ArviZ's names and the points where trajectories diverged; the
    :class:`~hmodels.fit.Fit` is assembled by :func:`hmodels.assemble.assemble_fit`.

    Examples
    --------
    >>> import hmodels as hm
    >>> m = hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy"))
    >>> fit = m.fit(draws=500, chains=2, seed=1, progressbar=False)  # doctest: +SKIP
    >>> fit.meta["method"]  # doctest: +SKIP
    'collapsed'
    """
    from .nuts import nutpie_sample

    t1 = time.perf_counter()
    try:
        xd, stats = nutpie_sample(em, settings.draws, settings.tune, settings.chains, settings.cores, settings.seed,
                                  plan.target_accept, progressbar=progressbar, adaptation=plan.mass_matrix)
    except BaseException as exc:  # nutpie can raise a Rust PanicException (not an Exception)
        if isinstance(exc, (KeyboardInterrupt, SystemExit, SamplingError)):
            raise
        raise SamplingError(f"nutpie failed: {type(exc).__name__}: {exc}. Try sampler='pymc'.") from exc
    t2 = time.perf_counter()
    C, D = xd.shape[:2]
    flat = xd.reshape(C * D, em.ndim)
    values = em.constrained(flat)
    seed = None if settings.seed is None else [settings.seed, 7919]
    values.update(em.conditional_effects(flat, seed=seed))
    t3 = time.perf_counter()
    facts = {"engine": "hmodels compiled log density + nutpie NUTS", "n_sampled_parameters": int(em.ndim),
             "aggregated_rows": None if em.aggregated is None else int(em.aggregated["unique"])}
    return BackendResult(_posterior_dataset(em, values, C, D), _sample_stats(stats), plan,
                         {"sample_s": t2 - t1, "group_effects_s": t3 - t2}, facts,
                         divergences=_divergence_points(em, stats))


def _posterior_dataset(em, values: dict, C: int, D: int):
    import xarray as xr

    design = em.design
    data, coords = {}, {"chain": np.arange(C), "draw": np.arange(D)}

    def put(name, dims, arr):
        data[name] = (("chain", "draw", *dims), np.asarray(arr).reshape(C, D, *np.shape(arr)[1:]))

    if "b" in values:
        coords["term"] = list(design.fixed_terms)
        put("b", ("term",), values["b"])
    for name, _, cols in getattr(em, "dpar_blocks", ()):  # b_<parameter> of each family parameter's formula
        coords[f"b_{name}__term"] = [em.terms[c] for c in cols]
        put(f"b_{name}", (f"b_{name}__term",), values[f"b_{name}"])
    for f in em.factors:
        coords[f.name] = list(em.factor_levels[f.name])
        coords[f"{f.name}__term"] = list(f.terms)
        put(f"sd_{f.name}", (f"{f.name}__term",), values[f"sd_{f.name}"])
        for cname, terms in f.cor_names:
            coords[f"{cname}__row"] = list(terms)
            coords[f"{cname}__col"] = list(terms)
            put(cname, (f"{cname}__row", f"{cname}__col"), values[cname])
        if f"z_{f.name}" in values:
            put(f"z_{f.name}", (f.name, f"{f.name}__term"), values[f"z_{f.name}"])
        put(f"r_{f.name}", (f.name, f"{f.name}__term"), values[f"r_{f.name}"])
    for a in AUX_NAMES:
        if a == "cutpoints" and a in values:  # the ordinal thresholds, labelled as the PyMC backend labels them
            coords["cutpoint"] = threshold_labels(design.response_levels)
            put(a, ("cutpoint",), values[a])
        elif a in values:
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
    for a in AUX_NAMES:
        # scalars only: diagnose() compares an ordinal model's thresholds at the draws kept at divergences
        if a in values and np.ndim(values[a]) == 1:
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

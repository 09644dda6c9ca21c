"""Run nutpie's NUTS (Rust) on the compiled log density of an :class:`~hmodels.engine.layout.EngineModel`.

The log density is a C function (``kernels.c``, built by :mod:`hmodels.engine.native`) that
nutpie calls directly from its sampler threads — no Python and no GIL per gradient — with the
model's buffers passed through nutpie's ``user_data`` pointer. It is compiled once (about a
second) and cached on disk, so no fit, of any model, pays compilation again.
"""

from __future__ import annotations

import numpy as np

__all__ = ["nutpie_sample"]

def nutpie_sample(engine_model, draws: int, tune: int, chains: int, cores: int, seed, target_accept: float,
                  progressbar: bool = False, max_depth: int = 10, adaptation: str = "diag"):
    """Sample x with nutpie; returns (draws of x (chain, draw, ndim), sample_stats Dataset).

    The sample statistics include ``divergence_start``: the point (unconstrained) where each
    divergent trajectory diverged, which locates divergences better than the draw kept.

    Examples
    --------
    >>> xd, stats = nutpie_sample(em, 1000, 1000, 4, 2, 1, 0.8)  # doctest: +SKIP
    """
    import nutpie
    from nutpie.compile_pymc import CompiledPyMCModel

    from types import SimpleNamespace

    from .native import function_address

    logp_c = SimpleNamespace(address=function_address("hm_logp"))
    expand_c = SimpleNamespace(address=function_address("hm_expand"))

    em = engine_model
    user = np.array([em.F.ctypes.data, em.F.size, em.I.ctypes.data, em.I.size], dtype=np.int64)
    ndim = em.ndim
    base_seed = 0 if seed is None else int(seed)

    def init(chain_seed):
        return em.initial_point(np.random.default_rng([base_seed, int(chain_seed) % (2**63)]))

    compiled = CompiledPyMCModel(
        dims={"x": ("x_dim",)}, _n_dim=ndim, _coords={"x_dim": np.arange(ndim)}, _shapes={"x": (ndim,)},
        compiled_logp_func=logp_c, compiled_expand_func=expand_c, initial_point_func=init,
        shared_data={"F": em.F, "I": em.I}, shared_var_keys={}, user_data=user, n_expanded=ndim,
        shape_info=(["x"], [slice(0, ndim)], [(ndim,)]), logp_func=None, expand_func=None,
    )
    trace = nutpie.sample(compiled, draws=draws, tune=tune, chains=chains, cores=cores, seed=seed,
                          target_accept=target_accept, maxdepth=max_depth, progress_bar=progressbar, adaptation=adaptation,
                          store_divergences=True,
                          save_warmup=False)
    xd = np.asarray(trace["posterior"]["x"].transpose("chain", "draw", "x_dim").values)
    stats = trace["sample_stats"].to_dataset()
    return xd, stats

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

    Only a complete trace is returned. ``nutpie.sample`` itself answers Ctrl-C by returning the
    draws made so far, padded with NaN; here nutpie runs in the background and Ctrl-C cancels it
    and raises :class:`KeyboardInterrupt`, and a trace with fewer draws than requested or
    non-finite draws raises :class:`~hmodels.errors.SamplingError`
    (:func:`hmodels.sampling.check_trace`). A request whose draws would not fit in memory is
    refused before nutpie allocates them (:func:`hmodels.sampling.check_memory`).

    Raises
    ------
    KeyboardInterrupt
        On Ctrl-C (SIGINT), after the sampler threads are cancelled.
    SamplingError
        For an incomplete trace, or draws that would not fit in memory.

    Examples
    --------
    >>> xd, stats = nutpie_sample(em, 1000, 1000, 4, 2, 1, 0.8)  # doctest: +SKIP
    """
    from types import SimpleNamespace

    import nutpie
    from nutpie.compile_pymc import CompiledPyMCModel

    from ..sampling import SamplerSettings, check_memory, check_trace, raise_on_interrupt, reduce_seed
    from .native import function_address

    logp_c = SimpleNamespace(address=function_address("hm_logp"))
    expand_c = SimpleNamespace(address=function_address("hm_expand"))

    em = engine_model
    user = np.array([em.F.ctypes.data, em.F.size, em.I.ctypes.data, em.I.size], dtype=np.int64)
    ndim = em.ndim
    seed = None if seed is None else reduce_seed(seed)  # nutpie takes an unsigned 64-bit seed
    base_seed = 0 if seed is None else int(seed)

    def init(chain_seed):
        return em.initial_point(np.random.default_rng([base_seed, int(chain_seed) % (2**63)]))

    compiled = CompiledPyMCModel(
        dims={"x": ("x_dim",)}, _n_dim=ndim, _coords={"x_dim": np.arange(ndim)}, _shapes={"x": (ndim,)},
        compiled_logp_func=logp_c, compiled_expand_func=expand_c, initial_point_func=init,
        shared_data={"F": em.F, "I": em.I}, shared_var_keys={}, user_data=user, n_expanded=ndim,
        shape_info=(["x"], [slice(0, ndim)], [(ndim,)]), logp_func=None, expand_func=None,
    )
    # nutpie keeps the draws of x and divergence points; the fit's constrained copy is checked by the caller
    check_memory(SamplerSettings("nutpie", draws, tune, chains, cores, seed, target_accept), ndim)
    with raise_on_interrupt():
        # blocking=False: nutpie.sample's blocking mode catches KeyboardInterrupt and returns the partial trace
        sampler = nutpie.sample(compiled, draws=draws, tune=tune, chains=chains, cores=cores, seed=seed,
                                target_accept=target_accept, maxdepth=max_depth, progress_bar=progressbar,
                                adaptation=adaptation, store_divergences=True, save_warmup=False, blocking=False)
        try:
            trace = sampler.wait()
        except BaseException:  # KeyboardInterrupt included: stop the sampler threads, keep nothing
            _cancel(sampler)
            raise
    xd = np.asarray(trace["posterior"]["x"].transpose("chain", "draw", "x_dim").values)
    check_trace(xd, draws, chains, "nutpie")
    stats = trace["sample_stats"].to_dataset()
    return xd, stats


def _cancel(sampler) -> None:
    """Stop a background nutpie sampler and discard its draws (a sampler that has already stopped is left as is)."""
    try:
        sampler.cancel()
    except Exception:  # already finished or failed: the original exception is the one that matters
        pass

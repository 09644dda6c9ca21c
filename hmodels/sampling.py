"""NUTS backends: hmodels' compiled log density on nutpie (default), or the PyMC graph on PyMC/numpyro.

``"nutpie"`` (default): nutpie's Rust NUTS on hmodels' own compiled (numba, cached on disk) log
density and gradient (:mod:`hmodels.engine`): one compilation per installation, none per model.
``"numpyro"`` (JAX) and ``"pymc"`` (PyMC's NUTS, numba linker) sample the PyMC model of
:mod:`hmodels.build` through :func:`pymc.sample`, which returns an ``xarray.DataTree``; they
compile every new model and are kept as independent checks.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass

from .errors import SamplingError

__all__ = ["SamplerSettings", "sample", "available_samplers", "default_sampler"]

SAMPLERS = {"nutpie": "nutpie", "numpyro": "numpyro", "pymc": None}


@dataclass(frozen=True)
class SamplerSettings:
    """How a fit was sampled (stored with the fit)."""

    sampler: str
    draws: int
    tune: int
    chains: int
    cores: int
    seed: int | None
    target_accept: float | None

    def to_dict(self) -> dict:
        """Plain data."""
        return asdict(self)


def available_samplers() -> list[str]:
    """Samplers usable in this environment (checked from package metadata, without importing them).

    Examples
    --------
    >>> import hmodels as hm
    >>> "pymc" in hm.sampling.available_samplers()
    True
    """
    from importlib import metadata

    out = []
    for name, dist in SAMPLERS.items():
        if dist is None:
            out.append(name)
            continue
        try:
            metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
        out.append(name)
    return out


def default_sampler() -> str:
    """``"nutpie"`` (hmodels' compiled log density) when installed, else ``"pymc"``."""
    avail = available_samplers()
    return next(s for s in ("nutpie", "pymc") if s in avail)


def check_settings(sampler, draws, tune, chains, cores, seed, target_accept) -> SamplerSettings:
    """Validate sampler options before any compilation."""
    sampler = default_sampler() if sampler is None else str(sampler).lower()
    if sampler not in SAMPLERS:
        raise SamplingError(f"Unknown sampler {sampler!r}; use one of {', '.join(SAMPLERS)}.")
    if sampler not in available_samplers():
        raise SamplingError(f"The {sampler!r} sampler is not installed: pip install {SAMPLERS[sampler]}.")
    for name, value, low in (("draws", draws, 1), ("tune", tune, 0), ("chains", chains, 1), ("cores", cores, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise SamplingError(f"{name} must be an integer >= {low}, got {value!r}.")
    if target_accept is not None and not (0.5 <= float(target_accept) < 1.0):
        raise SamplingError(f"target_accept must be in [0.5, 1), got {target_accept!r}; 0.8-0.99 is usual.")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
        raise SamplingError(f"seed must be a non-negative integer or None, got {seed!r}.")
    target = None if target_accept is None else float(target_accept)
    return SamplerSettings(sampler, draws, tune, chains, cores, seed, target)


def sample(model, settings: SamplerSettings, progressbar: bool = True, log_likelihood: bool = False):
    """Sample a PyMC model with NUTS.

    Returns
    -------
    (DataTree, dict)
        The draws and timings (``total_s``).
    """
    import pymc as pm

    t0 = time.perf_counter()
    kwargs = dict(
        draws=settings.draws, tune=settings.tune, chains=settings.chains, cores=settings.cores,
        random_seed=settings.seed, target_accept=settings.target_accept, nuts_sampler=settings.sampler,
        progressbar=progressbar, model=model, idata_kwargs={"log_likelihood": log_likelihood},
        # hmodels reports convergence itself, in plain language (Fit.convergence_messages)
        compute_convergence_checks=False,
    )
    if settings.sampler == "numpyro":
        kwargs["nuts"] = {"chain_method": "sequential" if settings.cores == 1 else "parallel"}
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Dd]ivergen.*")
            warnings.filterwarnings("ignore", message=".*rhat.*")
            warnings.filterwarnings("ignore", message=".*effective sample size.*")
            # PyTensor's C linker is not used for sampling (numba / JAX do their own BLAS)
            warnings.filterwarnings("ignore", message=".*could not link to a BLAS.*")
            idata = pm.sample(**kwargs)
    except BaseException as exc:  # nutpie can raise a Rust PanicException (not an Exception)
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        raise SamplingError(f"The {settings.sampler!r} sampler failed: {type(exc).__name__}: {exc}. "
                            "Try sampler='pymc'.") from exc
    return idata, {"total_s": time.perf_counter() - t0}

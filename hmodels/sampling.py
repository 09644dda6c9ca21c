"""NUTS backends: hmodels' compiled log density on nutpie (default), or the PyMC graph on PyMC/numpyro.

``"nutpie"`` (default): nutpie's Rust NUTS on hmodels' own compiled (numba, cached on disk) log
density and gradient (:mod:`hmodels.engine`): one compilation per installation, none per model.
``"numpyro"`` (JAX) and ``"pymc"`` (PyMC's NUTS, numba linker) sample the PyMC model of
:mod:`hmodels.build` through :func:`pymc.sample`, which returns an ``xarray.DataTree``; they
compile every new model and are kept as independent checks.

Whatever the sampler, a fit is either complete or not made: Ctrl-C raises
:class:`KeyboardInterrupt` (the samplers themselves would return the draws made so far, padded
with NaN), a trace with fewer draws or chains than requested, or with non-finite draws, raises
:class:`~hmodels.errors.SamplingError` (:func:`check_trace`), and a request whose draws would not
fit in memory is refused before sampling (:func:`check_memory`).
"""

from __future__ import annotations

import numbers
import os
import signal
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np

from .errors import SamplingError

__all__ = ["SamplerSettings", "sample", "available_samplers", "default_sampler", "check_settings", "check_trace",
           "check_memory", "check_fit_memory", "draw_size", "available_memory", "raise_on_interrupt", "reduce_seed"]

SAMPLERS = {"nutpie": "nutpie", "numpyro": "numpyro", "pymc": None}
#: Seeds at or above this are reduced to 64 bits (nutpie takes an unsigned 64-bit seed).
SEED_LIMIT = 2**64
#: Warm-up iterations below this adapt the step size and mass matrix poorly (a recommendation only).
TUNE_RECOMMENDED = 100
#: Sample statistics stored per draw (diverging, energy, step size, tree depth, ...), for :func:`check_memory`.
STATS_PER_DRAW = 12


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


def _is_integer(value) -> bool:
    """Tell whether ``value`` is a Python or numpy integer (not a bool)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def reduce_seed(seed: int) -> int:
    """Reduce a seed of 2**64 or more deterministically to 64 bits (smaller seeds are returned unchanged).

    The reduction hashes all the seed's bits (:class:`numpy.random.SeedSequence`), so different
    large seeds give different streams and the same seed always the same one.

    Examples
    --------
    >>> reduce_seed(42)
    42
    >>> reduce_seed(2**70) == reduce_seed(2**70) < 2**64
    True
    """
    seed = int(seed)
    if seed < SEED_LIMIT:
        return seed
    return int(np.random.SeedSequence(seed).generate_state(1, dtype=np.uint64)[0])


def check_settings(sampler, draws, tune, chains, cores, seed, target_accept) -> SamplerSettings:
    """Validate sampler options before any compilation.

    Parameters
    ----------
    sampler : str or None
        ``"nutpie"``, ``"numpyro"``, ``"pymc"``, or None for :func:`default_sampler`.
    draws, chains, cores : int
        At least 1 each (Python or numpy integers; stored as ``int``). ``cores`` above ``chains``
        is lowered to ``chains`` with a :class:`UserWarning` (one chain runs on one core).
    tune : int
        Warm-up iterations per chain, at least 1 (:data:`TUNE_RECOMMENDED` or more is advisable):
        warm-up is where NUTS adapts its step size and mass matrix, and nutpie cannot run without it.
    seed : int or None
        Any non-negative integer. Seeds of 2**64 or more are reduced deterministically to 64 bits
        (:func:`reduce_seed`); the reduced seed is the one recorded in ``fit.settings.seed``, and
        refitting with it gives the same draws.
    target_accept : float or None
        In [0.5, 1).

    Returns
    -------
    SamplerSettings

    Raises
    ------
    SamplingError
        For an unknown or uninstalled sampler or an invalid option; the message says what is allowed.

    Examples
    --------
    >>> import numpy as np
    >>> s = check_settings("pymc", np.int64(300), 300, 2, 2, 2**70, None)
    >>> type(s.draws), s.seed < 2**64
    (<class 'int'>, True)
    """
    sampler = default_sampler() if sampler is None else str(sampler).lower()
    if sampler not in SAMPLERS:
        raise SamplingError(f"Unknown sampler {sampler!r}; use one of {', '.join(SAMPLERS)}.")
    if sampler not in available_samplers():
        raise SamplingError(f"The {sampler!r} sampler is not installed: pip install {SAMPLERS[sampler]}.")
    values = {}
    for name, value, low in (("draws", draws, 1), ("tune", tune, 1), ("chains", chains, 1), ("cores", cores, 1)):
        if not _is_integer(value) or value < low:
            hint = (f" Warm-up adapts the sampler's step size and mass matrix and cannot be skipped; "
                    f"use tune={TUNE_RECOMMENDED} or more (the default is 1000)." if name == "tune" else "")
            raise SamplingError(f"{name} must be an integer >= {low}, got {value!r}.{hint}")
        values[name] = int(value)
    if values["cores"] > values["chains"]:
        warnings.warn(f"cores={values['cores']} is more than chains={values['chains']}: each chain runs on one "
                      f"core, so only {values['chains']} core(s) will be used.", UserWarning, stacklevel=3)
        values["cores"] = values["chains"]
    if target_accept is not None:
        try:
            ta = float(target_accept)
        except (TypeError, ValueError):
            ta = np.nan
        if not (0.5 <= ta < 1.0):
            raise SamplingError(f"target_accept must be in [0.5, 1), got {target_accept!r}; 0.8-0.99 is usual.")
    if seed is not None:
        if not _is_integer(seed) or seed < 0:
            raise SamplingError(f"seed must be a non-negative integer or None, got {seed!r}.")
        seed = reduce_seed(seed)
    target = None if target_accept is None else float(target_accept)
    return SamplerSettings(sampler, values["draws"], values["tune"], values["chains"], values["cores"], seed, target)


# -- interrupts and incomplete traces ---------------------------------------------------------------------

@contextmanager
def raise_on_interrupt():
    """Make Ctrl-C (SIGINT) inside the block end in :class:`KeyboardInterrupt`, even if a library swallows it.

    PyMC's samplers catch ``KeyboardInterrupt`` and return the draws made so far, and
    ``nutpie.sample`` returns them padded with NaN. Within this block the SIGINT handler in place
    still runs; when it raises ``KeyboardInterrupt`` (Python's default) that is recorded, and on
    leaving the block ``KeyboardInterrupt`` is raised again if the code inside swallowed it.
    Outside the main thread (where Python delivers no signals), or when SIGINT is ignored or not
    handled by Python, the block changes nothing.

    Examples
    --------
    >>> with raise_on_interrupt():
    ...     pass
    """
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.getsignal(signal.SIGINT)
    if not callable(previous):
        yield
        return
    received = []

    def handler(signum, frame):
        try:
            previous(signum, frame)
        except KeyboardInterrupt:
            received.append(signum)  # a handler that does not raise (an application's own) is respected
            raise

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt("sampling was interrupted; no fit was made")


def check_trace(draws, n_draws: int, n_chains: int, sampler: str = "the") -> None:
    """Refuse a trace that is not complete: fewer chains or draws than requested, or non-finite draws.

    Parameters
    ----------
    draws : numpy.ndarray, xarray.Dataset or xarray.DataTree
        An array with dims (chain, draw, ...), or a posterior whose variables have ``chain`` and
        ``draw`` dims (floating-point variables are checked for NaN and infinities).
    n_draws, n_chains : int
        What was requested.
    sampler : str
        Sampler name, for the message.

    Raises
    ------
    SamplingError
        Naming what is missing, so that a cut-short trace (sampling interrupted, or a sampler that
        stopped early) never becomes a fit.

    Examples
    --------
    >>> import numpy as np
    >>> check_trace(np.zeros((2, 100, 3)), 100, 2)
    >>> check_trace(np.full((2, 100, 3), np.nan), 100, 2)
    Traceback (most recent call last):
    ...
    hmodels.errors.SamplingError: The sampler returned an incomplete trace ...
    """
    if hasattr(draws, "to_dataset"):  # DataTree node
        draws = draws.to_dataset()
    if hasattr(draws, "data_vars"):
        sizes = draws.sizes
        chains, n = int(sizes.get("chain", 0)), int(sizes.get("draw", 0))
        arrays = {name: np.asarray(v.values) for name, v in draws.data_vars.items()}
    else:
        arr = np.asarray(draws)
        chains, n = (arr.shape[0], arr.shape[1]) if arr.ndim >= 2 else (0, 0)
        arrays = {"draws": arr}
    problems = []
    if chains != n_chains or n != n_draws:
        problems.append(f"{chains} chain(s) x {n} draws instead of {n_chains} x {n_draws}")
    bad = {name: int((~np.isfinite(a)).sum()) for name, a in arrays.items()
           if np.issubdtype(a.dtype, np.floating) and a.size}
    bad = {name: k for name, k in bad.items() if k}
    if bad:
        total = sum(a.size for name, a in arrays.items() if name in bad)
        problems.append(f"{sum(bad.values())} of {total} values not finite (in {', '.join(sorted(bad))})")
    if problems:
        name = "The sampler" if sampler == "the" else f"The {sampler!r} sampler"
        raise SamplingError(f"{name} returned an incomplete trace ({'; '.join(problems)}), so no fit was made. "
                            "Sampling was cut short (interrupted, or stopped by an error): run the fit again.")


# -- memory --------------------------------------------------------------------------------------------------

def available_memory() -> int | None:
    """Bytes of memory available to this process, or None when it cannot be determined.

    ``MemAvailable`` of ``/proc/meminfo`` (Linux: free memory plus reclaimable caches), else
    ``os.sysconf`` free pages, lowered to the room left under a cgroup (container) memory limit.
    """
    avail = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
        except (AttributeError, ValueError, OSError):
            avail = None
    try:
        with open("/sys/fs/cgroup/memory.max") as fh:
            limit = fh.read().strip()
        if limit.isdigit():
            with open("/sys/fs/cgroup/memory.current") as fh:
                room = int(limit) - int(fh.read().strip())
            avail = room if avail is None else min(avail, room)
    except (OSError, ValueError):
        pass
    return None if avail is None or avail <= 0 else int(avail)


def _gb(n: float) -> str:
    return f"{n / 1e9:,.1f} GB" if n >= 1e8 else f"{n / 1e6:,.0f} MB"


def check_memory(settings, n_values_per_draw: int, n_obs: int = 0, *, available: int | None = None) -> int:
    """Refuse, before sampling, a request whose draws would not fit in memory.

    The estimate is ``chains x draws x 8 bytes x (2 x n_values_per_draw + STATS_PER_DRAW + 2 x n_obs)``:
    the sampler's (unconstrained) draws and the fit's (constrained) copy, the sample statistics,
    and, when pointwise log-likelihood is requested, the linear predictor and log-likelihood per
    observation. Temporary copies come on top, so this is a lower bound on the peak.

    Parameters
    ----------
    settings : SamplerSettings
        Its ``chains`` and ``draws``.
    n_values_per_draw : int
        Numbers stored per draw (all posterior values: :func:`draw_size`).
    n_obs : int
        Observations, when pointwise log-likelihood is stored (``log_likelihood=True``); else 0.
    available : int, optional
        Bytes available (default: :func:`available_memory`; when that is unknown nothing is refused).

    Returns
    -------
    int
        The estimated bytes.

    Raises
    ------
    SamplingError
        When the estimate exceeds the available memory; the message gives both and how to reduce it.

    Examples
    --------
    >>> s = SamplerSettings("nutpie", 10**9, 1000, 4, 4, 1, None)
    >>> check_memory(s, 50, available=16 * 10**9)
    Traceback (most recent call last):
    ...
    hmodels.errors.SamplingError: 4 chains x 1,000,000,000 draws would need about 3,584.0 GB ...
    """
    chains, draws = int(settings.chains), int(settings.draws)
    per_draw = 8 * (2 * int(n_values_per_draw) + STATS_PER_DRAW + 2 * int(n_obs))
    need = chains * draws * per_draw
    if available is None:
        available = available_memory()
    if available is None or need <= available:
        return need
    fits = max(available // (chains * per_draw), 0)
    ll = (f"{_gb(chains * draws * 16 * int(n_obs))} of it for the pointwise log-likelihood of {int(n_obs):,} "
          "observations" if n_obs else "")
    advice = [f"fewer draws (at most about {fits:,} per chain would fit; 1000-4000 are usually plenty)",
              "fewer chains"]
    if n_obs:
        advice.append("log_likelihood=False (needed only for LOO)")
    raise SamplingError(
        f"{chains} chain{'s' if chains != 1 else ''} x {draws:,} draws would need about {_gb(need)} of memory "
        f"({int(n_values_per_draw):,} values per draw{'; ' + ll if ll else ''}), but only {_gb(available)} "
        f"is available. Use {', '.join(advice[:-1])} or {advice[-1]}.")


def draw_size(model) -> int:
    """Numbers a fit of ``model`` stores per draw (an upper bound: standardised effects counted for every factor).

    Coefficients, and per grouping factor with L levels and K terms the group effects ``r``
    and standardised ``z`` (2 L K), the SDs (K) and the correlation matrix (K²), plus the
    family's parameters (sigma, nu, alpha).

    Examples
    --------
    >>> import hmodels as hm
    >>> draw_size(hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy")))
    81
    """
    design = model.design
    n = len(design.fixed_terms)
    for f in design.factors:
        k = len(f.terms)
        n += 2 * f.n_levels * k + k + k * k
    return n + len(getattr(model.family, "aux", ()))


def check_fit_memory(model, settings, log_likelihood: bool = False, *, available: int | None = None) -> int:
    """:func:`check_memory` for a fit of ``model`` with ``settings``: refuse before sampling what would not fit.

    Examples
    --------
    >>> import hmodels as hm
    >>> m = hm.Model("Yield ~ 1 + (1 | Batch)", hm.datasets.load("dyestuff"))
    >>> check_fit_memory(m, check_settings(None, 10**9, 1000, 4, 4, 1, None), available=8 * 10**9)
    Traceback (most recent call last):
    ...
    hmodels.errors.SamplingError: 4 chains x 1,000,000,000 draws would need about ...
    """
    return check_memory(settings, draw_size(model), model.design.n if log_likelihood else 0, available=available)


# -- PyMC-graph samplers ------------------------------------------------------------------------------------

def sample(model, settings: SamplerSettings, progressbar: bool = True, log_likelihood: bool = False):
    """Sample a PyMC model with NUTS.

    Returns
    -------
    (DataTree, dict)
        The draws and timings (``total_s``).

    Raises
    ------
    KeyboardInterrupt
        On Ctrl-C, although PyMC and nutpie would return the draws made so far.
    SamplingError
        When the sampler fails or returns an incomplete trace (:func:`check_trace`).
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
        with warnings.catch_warnings(), raise_on_interrupt():
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
    check_trace(idata["posterior"], settings.draws, settings.chains, settings.sampler)
    return idata, {"total_s": time.perf_counter() - t0}

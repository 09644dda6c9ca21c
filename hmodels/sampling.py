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

import math
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
           "check_memory", "check_fit_memory", "draw_size", "available_memory", "raise_on_interrupt", "reduce_seed",
           "sample_until", "convergence_summary", "UNTIL_RHAT", "UNTIL_ESS", "UNTIL_MAX_TIME", "UNTIL_AUTO_MAX_DRAWS"]

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


# -- run until converged -----------------------------------------------------------------------------------

#: ``until="converged"``: largest R-hat and smallest bulk and tail ESS (over every coefficient, SD,
#: correlation and family parameter) at which sampling stops.
UNTIL_RHAT = 1.01
UNTIL_ESS = 400
#: Default time budget of ``until="converged"`` (seconds of sampling, all rounds together).
UNTIL_MAX_TIME = 600.0
#: Target acceptance rates tried in turn when a round has divergences.
UNTIL_TARGETS = (0.9, 0.95, 0.99)
#: ``until="auto"`` (the default when ``draws`` and ``tune`` are left at their defaults): the most draws per
#: chain it may keep, as a multiple of ``draws``. A cap in draws, not seconds, so that the same seed gives the
#: same draws on any machine.
UNTIL_AUTO_MAX_DRAWS = 8


def convergence_summary(posterior) -> dict:
    """Largest R-hat and smallest bulk / tail ESS over the canonical non-group variables of a posterior.

    Group effects (``r_<factor>``, ``z_<factor>``) are left out; correlation matrices count once per
    pair (the constant diagonal is skipped).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> rng = np.random.default_rng(0)
    >>> ds = xr.Dataset({"b": (("chain", "draw", "term"), rng.normal(size=(4, 500, 2)))})
    >>> s = convergence_summary(ds)
    >>> s["rhat_max"] < 1.01, s["ess_bulk_min"] > 1000
    (True, True)
    """
    import arviz as az
    import xarray as xr

    cols = []
    for name, da in posterior.data_vars.items():
        if name.startswith(("r_", "z_")):
            continue
        arr = np.asarray(da.transpose("chain", "draw", ...).values, dtype=float)
        C, D = arr.shape[:2]
        flat = arr.reshape(C, D, -1)
        if name.startswith("cor_") and arr.ndim == 4:
            iu = np.triu_indices(arr.shape[2], 1)
            flat = arr[:, :, iu[0], iu[1]]
        cols.append(flat)
    if not cols:
        return {"rhat_max": np.nan, "ess_bulk_min": np.nan, "ess_tail_min": np.nan}
    x = np.concatenate(cols, axis=-1)
    x = x[:, :, np.nanstd(x, axis=(0, 1)) > 0]
    ds = xr.Dataset({"x": (("chain", "draw", "p"), x)})
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        rhat = np.asarray(az.rhat(ds)["x"].values, dtype=float)
        bulk = np.asarray(az.ess(ds, method="bulk")["x"].values, dtype=float)
        tail = np.asarray(az.ess(ds, method="tail")["x"].values, dtype=float)

    def agg(fn, v):
        v = v[np.isfinite(v)]
        return float(fn(v)) if v.size else np.nan

    return {"rhat_max": agg(np.max, rhat), "ess_bulk_min": agg(np.min, bulk), "ess_tail_min": agg(np.min, tail)}


def _converged(s: dict) -> bool:
    return (np.isfinite(s["rhat_max"]) and s["rhat_max"] <= UNTIL_RHAT
            and s["ess_bulk_min"] >= UNTIL_ESS and s["ess_tail_min"] >= UNTIL_ESS)


def _concat(a, b):
    """Two BackendResults with the same chains, joined along ``draw`` (b's draws continue a's chains)."""
    from dataclasses import replace as dc_replace

    import xarray as xr

    def join(x, y):
        D = x.sizes["draw"]
        return xr.concat([x, y.assign_coords(draw=y["draw"].values + D)], dim="draw")

    divs = [d for d in (a.divergences, b.divergences) if d is not None]
    div = None
    if divs:
        div = divs[0] if len(divs) == 1 else xr.concat(divs, dim="divergence")
    timing = {k: a.timing.get(k, 0.0) + b.timing.get(k, 0.0) for k in set(a.timing) | set(b.timing)}
    return dc_replace(b, posterior=join(a.posterior, b.posterior), sample_stats=join(a.sample_stats, b.sample_stats),
                      timing=timing, divergences=div)


def sample_until(run_round, settings: SamplerSettings, plan, until: str = "converged", max_time: float | None = None,
                 max_draws: int | None = None):
    """Sample in rounds until the fit has converged or the time (or draw) budget is spent.

    Round 1 samples with ``settings``. While the largest R-hat exceeds :data:`UNTIL_RHAT` or the
    smallest bulk or tail ESS is below :data:`UNTIL_ESS` (:func:`convergence_summary`), another
    round runs the same number of chains with a fresh warm-up (nutpie cannot resume an adapted
    sampler) and enough draws to reach the ESS target at the rate seen so far (at least
    ``settings.draws``, at most three times the draws so far, and no more than the remaining
    budget allows at the measured speed); its draws continue each chain. A round with divergences
    is discarded, and the next one restarts at a higher target acceptance rate
    (:data:`UNTIL_TARGETS`), since draws from a divergent run may be biased. Each round has its own
    seed derived from ``settings.seed``, so the same seed gives the same rounds.

    Parameters
    ----------
    run_round : callable
        ``run_round(settings, plan) -> BackendResult``.
    settings : SamplerSettings
    plan : FitPlan
    until : {"converged"}
    max_time : float, optional
        Seconds of sampling for all rounds together (default :data:`UNTIL_MAX_TIME`); a round is
        not started when the time left cannot fit half of ``settings.draws`` at the measured speed.
    max_draws : int, optional
        The most draws per chain to keep over all rounds (no cap by default). ``until="auto"`` gives
        this cap and ``max_time=math.inf``, so its rounds do not depend on the machine's speed.

    Returns
    -------
    (BackendResult, SamplerSettings, dict)
        The joined result, the settings it amounts to (total draws per chain, the last round's
        warm-up and target), and the record stored in ``fit.meta["until"]``: ``converged``,
        ``rounds`` (per round: draws, tune, target_accept, seconds, divergences, kept, and R-hat /
        ESS after it), ``draws`` (kept per chain), ``seconds``, ``max_time``, ``criteria``.

    Examples
    --------
    >>> import hmodels as hm
    >>> m = hm.Model("y | se(sigma) ~ 1 + (1 | school)", hm.datasets.load("eight_schools"))
    >>> fit = m.fit(draws=200, tune=200, chains=2, seed=1, until="converged", progressbar=False)  # doctest: +SKIP
    >>> fit.meta["until"]["converged"]  # doctest: +SKIP
    True
    """
    from dataclasses import replace as dc_replace

    if until != "converged":
        raise SamplingError(f"until must be 'converged' or None, got {until!r}.")
    budget = UNTIL_MAX_TIME if max_time is None else max_time
    if not (isinstance(budget, numbers.Real) and budget > 0):
        raise SamplingError(f"max_time must be a positive number of seconds, got {max_time!r}.")
    budget = float(budget)
    start = time.perf_counter()
    rounds, result, kept_draws = [], None, 0
    targets = [t for t in UNTIL_TARGETS if t > float(plan.target_accept)]
    round_settings, round_plan = settings, plan
    while True:
        if rounds:
            seed = None if settings.seed is None else reduce_seed(int(settings.seed) + 104729 * len(rounds))
            round_settings = dc_replace(round_settings, seed=seed)
        t0 = time.perf_counter()
        res = run_round(round_settings, round_plan)
        seconds = time.perf_counter() - t0
        n_div = int(np.asarray(res.sample_stats["diverging"].values).sum()) if "diverging" in res.sample_stats else 0
        restart = bool(n_div) and bool(targets)  # divergent draws may be biased: restart at a higher target
        if restart:
            result, kept_draws = None, 0
            for r in rounds:  # the earlier rounds' draws are dropped with this one: the record says so
                r["kept"] = False
        else:
            result = res if result is None else _concat(result, res)
            kept_draws += round_settings.draws
        summary = convergence_summary((res if result is None else result).posterior)
        rounds.append({"draws": round_settings.draws, "tune": round_settings.tune,
                       "target_accept": float(round_plan.target_accept), "seed": round_settings.seed,
                       "seconds": seconds, "divergences": n_div, "kept": not restart, **summary})
        if n_div and not restart:
            break  # divergences at the highest target: more draws would not remove them
        if not restart and _converged(summary):
            break
        per_draw = seconds / max(round_settings.draws + round_settings.tune, 1)
        left = budget - (time.perf_counter() - start)
        affordable = math.inf if math.isinf(left) else int(left / per_draw) - round_settings.tune
        if restart:
            round_plan = dc_replace(round_plan, target_accept=targets.pop(0))
            nxt = settings.draws
        else:
            ess = min(summary["ess_bulk_min"], summary["ess_tail_min"])
            factor = UNTIL_ESS / ess if np.isfinite(ess) and ess > 0 else 2.0
            if not summary["rhat_max"] <= UNTIL_RHAT:
                factor = max(factor, 2.0)
            nxt = int(np.ceil(kept_draws * max(factor - 1.0, 0.25) * 1.2))
            nxt = min(max(nxt, settings.draws), 3 * kept_draws)
        nxt = min(nxt, affordable)
        if max_draws is not None:
            nxt = min(nxt, int(max_draws) - (0 if restart else kept_draws))
        if nxt < max(settings.draws // 2, 1):
            break
        round_settings = dc_replace(round_settings, draws=int(nxt))
    if result is None:  # the budget ran out after a divergent round: return it, as the user would have seen it
        result, kept_draws = res, round_settings.draws
        rounds[-1]["kept"] = True
    # the sampling time of every round, discarded ones included (ESS per second stays honest)
    result = dc_replace(result, timing={**result.timing, "sample_s": float(sum(r["seconds"] for r in rounds))})
    final = dc_replace(settings, draws=int(kept_draws), tune=round_settings.tune,
                       target_accept=float(result.plan.target_accept))
    record = {"until": until, "converged": bool(_converged(summary) and not rounds[-1]["divergences"]),
              "rounds": rounds, "n_rounds": len(rounds), "draws": int(kept_draws),
              "seconds": time.perf_counter() - start, "max_time": budget, "max_draws": max_draws,
              "criteria": {"rhat_max": UNTIL_RHAT, "ess_bulk_min": UNTIL_ESS, "ess_tail_min": UNTIL_ESS},
              **{k: v for k, v in summary.items()}}
    return result, final, record

"""Build, cache and call the C kernels (``kernels.c``).

The kernels are compiled when hmodels is installed (the wheel's build hook, ``hatch_build.py``, puts the
library in ``hmodels/engine/_prebuilt/``; ``HMODELS_PREBUILT=0`` ignores it) or else on first use with the
system C compiler (``cc``/``gcc``, the one Python was built with; ``$CC`` overrides), about a second, into a
shared library cached under ``$HMODELS_CACHE_DIR`` (default ``~/.cache/hmodels``, else the temporary
directory). Either is named by a hash of the source, the layout constants, the flags and the platform, a cached
one also of the compiler (:mod:`hmodels.engine.toolchain`), so a library built for other kernels is never
loaded; the one built at install serves whatever compiler, if any, is found at run time. The library does not
depend on the model: every fit, of any model, reuses it. nutpie calls it directly from its
sampler threads through C function pointers, without Python or the GIL.

An install-time library is loaded only when its digest matches (it is never rebuilt in place: a
damaged one is passed over for the cache). A damaged cache is rebuilt, not loaded: the SHA-256 and
size of the library are stored beside it (``kernels-<key>.so.sha256``) and checked before every load;
a library that does not match, has no digest, or that the loader rejects is compiled again. Builds and
checks hold a lock file (``kernels-<key>.so.lock``), so concurrent processes never load a half-written
library.

Examples
--------
>>> from hmodels.engine import native
>>> native.library() is not None  # compiled on first use, then loaded from the cache
True
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from ..errors import SamplingError
from . import codes, toolchain
from .toolchain import CFLAGS, compile_library, compiler, digest_path, library_name, source_text
from .toolchain import damage as _damage

__all__ = ["library", "compiler", "logp_grad", "conditional_draws", "prior_logp", "nl_forward", "function_address",
           "CFLAGS", "digest_path"]

#: Where the wheel's build hook puts the library it compiles at install time (``hatch_build.py``).
PREBUILT_DIR = Path(__file__).with_name("_prebuilt")
_LIB = None
_LIB_LOCK = threading.Lock()  # one load per process, even from several threads
#: Entry points every library must export (``hm_logp``/``hm_expand`` are called by nutpie).
SYMBOLS = ("hm_logp_grad", "hm_conditional_draws", "hm_prior_logp", "hm_logp", "hm_expand", "hm_nl_forward",
           "hm_truncation_logmass")
_LOCK_WAIT_S = 120.0  # how long to wait for another process's build before building without the lock

_f64 = np.ctypeslib.ndpointer(dtype=np.float64, flags="C_CONTIGUOUS")
_i64 = np.ctypeslib.ndpointer(dtype=np.int64, flags="C_CONTIGUOUS")


def cache_dir() -> Path:
    """Where compiled kernels are kept (created if needed)."""
    env = os.environ.get("HMODELS_CACHE_DIR")
    candidates = [Path(env)] if env else []
    candidates += [Path.home() / ".cache" / "hmodels", Path(tempfile.gettempdir()) / f"hmodels-{os.getuid()}"]
    for path in candidates:
        try:
            path.mkdir(parents=True, exist_ok=True)
            if os.access(path, os.W_OK):
                return path
        except OSError:
            continue
    raise SamplingError("hmodels found no writable directory for its compiled kernels; set HMODELS_CACHE_DIR.")


def _source_text() -> str:
    return source_text(codes.c_defines())


def library_path() -> Path:
    """Path of the compiled library for this source, compiler and platform in the cache (may not exist yet)."""
    return cache_dir() / library_name(_source_text())


def prebuilt_path() -> Path | None:
    """The library built when hmodels was installed (``_prebuilt/``, by ``hatch_build.py``), or None.

    None where there is none for this source and platform, or where ``HMODELS_PREBUILT=0`` (or ``false``,
    ``no``, ``off``; any value but these and ``1``/``true``/``yes``/``on`` is a SamplingError). Whichever
    compiler built it: it serves also where no compiler is found now, or ``$CC`` names another.
    """
    flag = os.environ.get("HMODELS_PREBUILT", "1").strip().lower()
    if flag in ("0", "false", "no", "off"):
        return None
    if flag not in ("", "1", "true", "yes", "on"):
        raise SamplingError(f"HMODELS_PREBUILT is {os.environ['HMODELS_PREBUILT']!r}: set it to 0 (ignore the kernels "
                            "compiled at install) or 1 (use them, the default).")
    path = PREBUILT_DIR / toolchain.prebuilt_name(_source_text())
    return path if path.is_file() else None


@contextlib.contextmanager
def _cache_lock(path: Path):
    """Hold ``<library>.lock`` (fcntl.flock) while checking, building and loading the library.

    Best effort: where no lock can be had (no fcntl, a read-only directory, a file system without
    locks, a holder that does not finish within ``_LOCK_WAIT_S``) the work goes on without it, which
    is still safe (every library and digest is written by rename, and a mismatched pair is rebuilt).
    """
    try:
        import fcntl
        fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    except (ImportError, OSError):
        yield
        return
    try:
        deadline = time.monotonic() + _LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            except OSError:  # e.g. ENOLCK on some network file systems
                break
        yield
    finally:
        os.close(fd)  # releases the lock


def _build(target: Path) -> None:
    """Compile the kernels into ``target``, then write its digest (both atomically)."""
    if compiler() is None:
        raise SamplingError(
            "hmodels' default sampler compiles its log density once with a C compiler, and none was found "
            "(tried $CC, cc, gcc, clang). Install one (e.g. apt-get install gcc), or use sampler='numpyro' "
            "or sampler='pymc'."
        )
    try:
        why = compile_library(_source_text(), target)
    except OSError as exc:
        raise SamplingError(f"hmodels could not write its compiled kernels to {target}: {exc}. Set "
                            "HMODELS_CACHE_DIR to a writable directory.") from exc
    if why is not None:
        raise SamplingError(f"Compiling hmodels' kernels {why}")


def _fix_hint(path: Path) -> str:
    return (f"Delete the cache directory {path.parent} (or set HMODELS_CACHE_DIR to another writable directory) "
            "and try again.")


def _rebuild(path: Path, damage: str) -> None:
    """Build the library at ``path``; where a damaged one was there, say so if the build fails."""
    if not damage:
        _build(path)
        return
    try:
        _build(path)
    except SamplingError as exc:
        raise SamplingError(f"hmodels' cached kernels library {path} is damaged ({damage}) and could not be "
                            f"rebuilt. {_fix_hint(path)} Rebuilding needs a working C compiler:\n{exc}") from exc


def _open(path: Path):
    """Load the library and declare its entry points; OSError when the loader rejects it or a symbol is missing."""
    lib = ctypes.CDLL(str(path))
    missing = [name for name in SYMBOLS if not hasattr(lib, name)]
    if missing:
        # unload it, or the dynamic loader would hand back this copy for the rebuilt file at the same path
        import _ctypes

        dlclose = getattr(_ctypes, "dlclose", None)  # POSIX only
        if dlclose is not None:
            with contextlib.suppress(OSError):
                dlclose(lib._handle)
        raise OSError(f"it lacks the entry points {', '.join(missing)}")
    lib.hm_logp_grad.restype = ctypes.c_double
    lib.hm_logp_grad.argtypes = [_f64, _f64, _f64, _i64, ctypes.c_int64, ctypes.c_int]
    lib.hm_conditional_draws.restype = ctypes.c_int64
    lib.hm_conditional_draws.argtypes = [_f64, ctypes.c_int64, ctypes.c_int64, _f64, _i64, _f64, _f64, _f64,
                                         _f64, _f64]
    lib.hm_nl_forward.restype = ctypes.c_int64
    lib.hm_nl_forward.argtypes = [_f64, _i64, ctypes.c_int64, ctypes.c_int64, _f64, _f64, _f64]
    lib.hm_truncation_logmass.restype = ctypes.c_double
    lib.hm_truncation_logmass.argtypes = [ctypes.c_int64, ctypes.c_int64, ctypes.c_double, ctypes.c_double,
                                          ctypes.c_double, _f64, _f64]
    lib.hm_prior_logp.restype = ctypes.c_double
    lib.hm_prior_logp.argtypes = [ctypes.c_int64, ctypes.c_double, ctypes.c_double, ctypes.c_double,
                                  ctypes.c_double, ctypes.POINTER(ctypes.c_double)]
    return lib


def _load(path: Path):
    """Check, (re)build if needed, and load the library at ``path``, holding the cache lock throughout."""
    with _cache_lock(path):
        damage = _damage(path)
        rebuilt = damage is not None
        if rebuilt:
            _rebuild(path, damage)
        try:
            return _open(path)
        except OSError as exc:
            if rebuilt:
                raise SamplingError(f"hmodels could not load its freshly compiled kernels library {path}: {exc}. "
                                    f"{_fix_hint(path)}") from exc
            damage = f"it could not be loaded: {exc}"
        _rebuild(path, damage)
        try:
            return _open(path)
        except OSError as exc:
            raise SamplingError(f"hmodels could not load its kernels library {path}, even after rebuilding it: "
                                f"{exc}. {_fix_hint(path)}") from exc


def library():
    """Return the loaded C library: the one compiled at install, else compiled on first use and cached.

    Either is loaded only when its SHA-256 and size match the digest written beside it when it was
    built; a damaged installed one is passed over, a damaged cached one (or one the loader rejects) is
    compiled again.

    Returns
    -------
    ctypes.CDLL
        The kernels, with the argument types of ``hm_logp_grad``, ``hm_conditional_draws`` and
        ``hm_prior_logp`` declared.

    Raises
    ------
    SamplingError
        No C compiler, a failed compilation, an unwritable cache, or a damaged library that could
        not be rebuilt (the message names the file and the fix).
    """
    global _LIB
    if _LIB is None:
        with _LIB_LOCK:
            if _LIB is None:
                _LIB = _load_prebuilt() or _load_cached()
    return _LIB


def loaded_path() -> Path:
    """The file of the library this process runs: the one built at install, or the cached one.

    Examples
    --------
    >>> from hmodels.engine import native
    >>> native.loaded_path().name.startswith("kernels-")
    True
    """
    return Path(library()._name)


def _load_prebuilt():
    """The library built at install time when it is there and intact (read-only: never rebuilt), else None."""
    path = prebuilt_path()
    if path is None or _damage(path) is not None:
        return None
    try:
        return _open(path)
    except OSError:
        return None


def _load_cached():
    """The cached library; where that fails, say so if one built at install was there but passed over."""
    try:
        return _load(library_path())
    except SamplingError as exc:
        path = prebuilt_path()
        why = None if path is None else (_damage(path) or "the loader rejected it")
        if why is None:
            raise
        raise SamplingError(f"hmodels' kernels library built at install, {path}, is damaged ({why}) and was passed "
                            "over; reinstall hmodels (pip install --force-reinstall --no-deps hmodels), or fix what "
                            f"kept the cache from serving instead:\n{exc}") from exc


def function_address(name: str) -> int:
    """Address of a C entry point (``hm_logp``, ``hm_expand``) for nutpie."""
    return ctypes.cast(getattr(library(), name), ctypes.c_void_p).value


def logp_grad(x: np.ndarray, grad: np.ndarray, F: np.ndarray, I: np.ndarray, jacobian: bool = True) -> float:  # noqa: E741
    """Log density at x (fills grad); for checks and tests, NUTS calls ``hm_logp`` directly."""
    return float(library().hm_logp_grad(np.ascontiguousarray(x, dtype=np.float64), grad, F, I, grad.shape[0],
                                        int(bool(jacobian))))


def prior_logp(code: int, p1: float, p2: float, p3: float, v: float) -> tuple[float, float]:
    """(log density, derivative) of one scalar prior at v, as the kernels compute it (for tests)."""
    d = ctypes.c_double()
    lp = library().hm_prior_logp(int(code), float(p1), float(p2), float(p3), float(v), ctypes.byref(d))
    return float(lp), float(d.value)


def truncation_logmass(family: int, link: int, lb: float, ub: float, eta: float, aux: dict) -> tuple[float, dict]:
    """``log P(lb <= y <= ub)`` of one observation as the kernels compute it, and its derivatives (for tests).

    ``family`` and ``link`` are kernel codes, ``aux`` the family parameters by name (``codes.AUX_NAMES``),
    the bounds on the kernel's outcome scale (``-inf`` / ``inf`` for none). Returns ``(log mass, {"eta": d/d eta,
    name: d/d parameter})``.
    """
    a = np.zeros(codes.NAUX)
    for name, value in aux.items():
        a[codes.AUX_NAMES.index(name)] = value
    grad = np.zeros(1 + codes.NAUX)
    lp = library().hm_truncation_logmass(int(family), int(link), float(lb), float(ub), float(eta), a, grad)
    return float(lp), {"eta": float(grad[0]), **{n: float(grad[1 + codes.AUX_NAMES.index(n)]) for n in aux}}


def nl_forward(ops, constants, covariates, params) -> tuple[np.ndarray, np.ndarray] | None:
    """A nonlinear program (:mod:`hmodels.nonlinear.program`) run by the kernels, as the engine runs it (for tests).

    ``covariates`` (ncov x nobs) and ``params`` (m x nobs): the values of each covariate and parameter per
    observation. Returns ``(mu (nobs), D (m x nobs))`` with ``D = d mu / d params``, or None where a value is not
    finite.
    """
    params = np.ascontiguousarray(np.atleast_2d(params), dtype=np.float64)
    m, nobs = params.shape
    I = np.zeros(codes.HEADER, np.int64)  # noqa: E741 (the kernels' name)
    I[codes.H_NLOPS], I[codes.O_NLOPS] = len(ops), codes.HEADER
    I = np.ascontiguousarray(np.concatenate([I, np.asarray(ops, np.int64).ravel()]))  # noqa: E741
    consts = np.asarray(constants, dtype=np.float64).ravel()
    cov = np.asarray(covariates, dtype=np.float64).ravel()
    F = np.ascontiguousarray(np.concatenate([consts, cov, [0.0]]))
    I[codes.O_NLCONST], I[codes.O_NLCOV] = 0, consts.size
    mu, D = np.zeros(nobs), np.zeros(m * nobs)
    ok = library().hm_nl_forward(F, I, nobs, m, params.ravel(), mu, D)
    return (mu, D.reshape(m, nobs)) if ok else None


def conditional_draws(xd, F, I, noise_beta, noise, beta_out, zout, rout) -> None:  # noqa: E741
    """Exact draws of what was integrated out, one per row of ``xd`` (see ``hm_conditional_draws``)."""
    xd = np.ascontiguousarray(xd, dtype=np.float64)
    rc = library().hm_conditional_draws(xd, xd.shape[0], xd.shape[1], F, I,
                                        np.ascontiguousarray(noise_beta, dtype=np.float64),
                                        np.ascontiguousarray(noise, dtype=np.float64), beta_out, zout, rout)
    if rc != 0:
        raise SamplingError(f"hmodels' conditional draws failed (code {rc}).")

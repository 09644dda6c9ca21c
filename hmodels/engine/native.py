"""Build, cache and call the C kernels (``kernels.c``).

The kernels are compiled on first use with the system C compiler (``cc``/``gcc``, the one Python
was built with; ``$CC`` overrides), about a second, into a shared library cached under
``$HMODELS_CACHE_DIR`` (default ``~/.cache/hmodels``, else the temporary directory), named by a
hash of the source, the layout constants, the flags and the compiler. The library does not
depend on the model: every fit, of any model, reuses it. nutpie calls it directly from its
sampler threads through C function pointers, without Python or the GIL.

Examples
--------
>>> from hmodels.engine import native
>>> native.library() is not None  # compiled on first use, then loaded from the cache
True
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import numpy as np

from ..errors import SamplingError
from . import codes

__all__ = ["library", "compiler", "logp_grad", "conditional_draws", "prior_logp", "function_address", "CFLAGS"]

SOURCE = Path(__file__).with_name("kernels.c")
#: Flags: optimised, position independent, no contraction of a*b+c (the same draws on every CPU).
CFLAGS = ["-O2", "-fPIC", "-shared", "-std=c99", "-ffp-contract=off", "-fno-math-errno"]
_LIB = None

_f64 = np.ctypeslib.ndpointer(dtype=np.float64, flags="C_CONTIGUOUS")
_i64 = np.ctypeslib.ndpointer(dtype=np.int64, flags="C_CONTIGUOUS")


def compiler() -> list[str] | None:
    """The C compiler command (``$CC``, Python's own, ``cc``, ``gcc`` or ``clang``), or None."""
    candidates = [os.environ.get("CC"), sysconfig.get_config_var("CC"), "cc", "gcc", "clang"]
    for cand in candidates:
        if not cand:
            continue
        parts = shlex.split(cand)
        if parts and shutil.which(parts[0]):
            return parts
    return None


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
    return codes.c_defines() + SOURCE.read_text()


def library_path() -> Path:
    """Path of the compiled library for this source, compiler and platform (may not exist yet)."""
    cc = compiler()
    key = hashlib.sha256("\n".join([_source_text(), " ".join(CFLAGS), " ".join(cc or []), sys.platform,
                                    sysconfig.get_platform()]).encode()).hexdigest()[:16]
    return cache_dir() / f"kernels-{key}.so"


def _build(target: Path) -> None:
    cc = compiler()
    if cc is None:
        raise SamplingError(
            "hmodels' default sampler compiles its log density once with a C compiler, and none was found "
            "(tried $CC, cc, gcc, clang). Install one (e.g. apt-get install gcc), or use sampler='numpyro' "
            "or sampler='pymc'."
        )
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        src = Path(tmp) / "kernels.c"
        src.write_text(_source_text())
        out = Path(tmp) / "kernels.so"
        cmd = [*cc, *CFLAGS, str(src), "-o", str(out), "-lm"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SamplingError(f"Compiling hmodels' kernels failed ({' '.join(cmd)}):\n{proc.stderr[-2000:]}")
        os.replace(out, target)  # atomic: concurrent processes never load a half-written file


def library():
    """The loaded C library (compiled on first use)."""
    global _LIB
    if _LIB is None:
        path = library_path()
        if not path.exists():
            _build(path)
        lib = ctypes.CDLL(str(path))
        lib.hm_logp_grad.restype = ctypes.c_double
        lib.hm_logp_grad.argtypes = [_f64, _f64, _f64, _i64, ctypes.c_int64, ctypes.c_int]
        lib.hm_conditional_draws.restype = ctypes.c_int64
        lib.hm_conditional_draws.argtypes = [_f64, ctypes.c_int64, ctypes.c_int64, _f64, _i64, _f64, _f64, _f64,
                                             _f64, _f64]
        lib.hm_prior_logp.restype = ctypes.c_double
        lib.hm_prior_logp.argtypes = [ctypes.c_int64, ctypes.c_double, ctypes.c_double, ctypes.c_double,
                                      ctypes.c_double, ctypes.POINTER(ctypes.c_double)]
        _LIB = lib
    return _LIB


def function_address(name: str) -> int:
    """Address of a C entry point (``hm_logp``, ``hm_expand``) for nutpie."""
    return ctypes.cast(getattr(library(), name), ctypes.c_void_p).value


def logp_grad(x: np.ndarray, grad: np.ndarray, F: np.ndarray, I: np.ndarray, jacobian: bool = True) -> float:
    """Log density at x (fills grad); for checks and tests, NUTS calls ``hm_logp`` directly."""
    return float(library().hm_logp_grad(np.ascontiguousarray(x, dtype=np.float64), grad, F, I, grad.shape[0],
                                        int(bool(jacobian))))


def prior_logp(code: int, p1: float, p2: float, p3: float, v: float) -> tuple[float, float]:
    """(log density, derivative) of one scalar prior at v, as the kernels compute it (for tests)."""
    d = ctypes.c_double()
    lp = library().hm_prior_logp(int(code), float(p1), float(p2), float(p3), float(v), ctypes.byref(d))
    return float(lp), float(d.value)


def conditional_draws(xd, F, I, noise_beta, noise, beta_out, zout, rout) -> None:
    """Exact draws of what was integrated out, one per row of ``xd`` (see ``hm_conditional_draws``)."""
    xd = np.ascontiguousarray(xd, dtype=np.float64)
    rc = library().hm_conditional_draws(xd, xd.shape[0], xd.shape[1], F, I,
                                        np.ascontiguousarray(noise_beta, dtype=np.float64),
                                        np.ascontiguousarray(noise, dtype=np.float64), beta_out, zout, rout)
    if rc != 0:
        raise SamplingError(f"hmodels' conditional draws failed (code {rc}).")

"""Ctrl-C and cut-short traces never become a fit (issue #17).

nutpie's blocking ``sample`` and PyMC's samplers answer Ctrl-C by returning the draws made so far
(NaN-padded for nutpie); hmodels must raise ``KeyboardInterrupt`` instead, and refuse any trace
with fewer draws than requested or non-finite draws.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest
import xarray as xr

import hmodels as hm
from hmodels.sampling import SamplerSettings, check_trace, raise_on_interrupt

# -- the guard against incomplete traces --------------------------------------------------------------------


def test_complete_trace_passes():
    """Arrays, Datasets and DataTree nodes with every draw, all finite, pass."""
    check_trace(np.zeros((2, 50, 3)), 50, 2, "nutpie")
    ds = xr.Dataset({"mu": (("chain", "draw"), np.zeros((2, 50))), "n": (("chain", "draw"), np.zeros((2, 50), int))})
    check_trace(ds, 50, 2)
    check_trace(xr.DataTree(ds), 50, 2)


@pytest.mark.parametrize("arr, fragment", [
    (np.zeros((2, 37, 3)), "2 chain(s) x 37 draws instead of 2 x 50"),
    (np.zeros((1, 50, 3)), "1 chain(s) x 50 draws instead of 2 x 50"),
    (np.where(np.arange(50)[None, :, None] < 20, 0.0, np.nan) * np.ones((2, 50, 3)), "180 of 300 values not finite"),
    (np.full((2, 50, 3), np.inf), "not finite"),
])
def test_incomplete_trace_is_refused(arr, fragment):
    """Missing draws or chains, and NaN or infinite draws, raise SamplingError naming what is wrong."""
    with pytest.raises(hm.SamplingError, match="incomplete trace") as err:
        check_trace(arr, 50, 2, "nutpie")
    assert fragment in str(err.value) and "'nutpie'" in str(err.value) and "no fit was made" in str(err.value)
    ds = xr.Dataset({"b": (("chain", "draw", "term"), arr)})
    with pytest.raises(hm.SamplingError, match="incomplete trace"):
        check_trace(ds, 50, 2, "pymc")


# -- SIGINT inside a library that swallows KeyboardInterrupt --------------------------------------------------


def _swallowing_library():
    """Do what PyMC's samplers do: catch KeyboardInterrupt and return the draws made so far."""
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)  # the signal is handled here
    except KeyboardInterrupt:
        pass
    return "partial"


def test_interrupt_swallowed_by_a_library_is_raised_again():
    """raise_on_interrupt re-raises a Ctrl-C that the code inside swallowed, and restores the handler."""
    assert _swallowing_library() == "partial"  # the library alone hides the interrupt
    with pytest.raises(KeyboardInterrupt):
        with raise_on_interrupt():
            _swallowing_library()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    with raise_on_interrupt():  # no interrupt, nothing raised
        pass


def _partial_idata(draws: int):
    return xr.DataTree.from_dict({"posterior": xr.Dataset({"mu": (("chain", "draw"), np.zeros((2, draws)))})})


def test_pymc_path_raises_on_interrupt(monkeypatch):
    """pm.sample returning partial draws after Ctrl-C: sample() raises KeyboardInterrupt."""
    import pymc as pm

    from hmodels.sampling import sample

    def fake_sample(**kwargs):
        _swallowing_library()
        return _partial_idata(7)

    monkeypatch.setattr(pm, "sample", fake_sample)
    settings = SamplerSettings("pymc", 100, 100, 2, 1, 1, 0.9)
    with pytest.raises(KeyboardInterrupt):
        sample(None, settings, progressbar=False)


def test_pymc_path_refuses_a_short_trace(monkeypatch):
    """pm.sample returning fewer draws than requested: SamplingError; a complete trace is returned."""
    import pymc as pm

    from hmodels.sampling import sample

    monkeypatch.setattr(pm, "sample", lambda **kwargs: _partial_idata(7))
    settings = SamplerSettings("pymc", 100, 100, 2, 1, 1, 0.9)
    with pytest.raises(hm.SamplingError, match="2 chain\\(s\\) x 7 draws instead of 2 x 100"):
        sample(None, settings, progressbar=False)
    monkeypatch.setattr(pm, "sample", lambda **kwargs: _partial_idata(100))
    idata, timing = sample(None, settings, progressbar=False)
    assert idata["posterior"].sizes["draw"] == 100


# -- nutpie: run in the background, cancel on Ctrl-C --------------------------------------------------------


class _FakeSampler:
    """Stands in for nutpie's background sampler."""

    def __init__(self, wait):
        self._wait = wait
        self.cancelled = False

    def wait(self, timeout=None):
        return self._wait()

    def cancel(self):
        self.cancelled = True


@pytest.fixture
def fake_nutpie(monkeypatch):
    """Patch nutpie.sample (recording its keyword arguments) and the compiled kernels' addresses."""
    import nutpie

    import hmodels.engine.native as native

    calls = []
    state = SimpleNamespace(calls=calls, sampler=None)

    def fake_sample(compiled, **kwargs):
        calls.append(kwargs)
        return state.sampler

    monkeypatch.setattr(nutpie, "sample", fake_sample)
    monkeypatch.setattr(native, "function_address", lambda name: 0)
    return state


_EM = SimpleNamespace(F=np.zeros(2), I=np.zeros(2, dtype=np.int64), ndim=2, initial_point=lambda rng: np.zeros(2))


def _nutpie_trace(draws: int, nan_from: int | None = None):
    x = np.zeros((2, draws, 2))
    if nan_from is not None:
        x[:, nan_from:] = np.nan
    return xr.DataTree.from_dict({
        "posterior": xr.Dataset({"x": (("chain", "draw", "x_dim"), x)}),
        "sample_stats": xr.Dataset({"diverging": (("chain", "draw"), np.zeros((2, draws), bool))}),
    })


def test_nutpie_interrupt_cancels_and_raises(fake_nutpie):
    """The nutpie sampler runs in the background; Ctrl-C while waiting cancels it and propagates."""
    from hmodels.engine.nuts import nutpie_sample

    def interrupted():
        raise KeyboardInterrupt

    fake_nutpie.sampler = _FakeSampler(interrupted)
    with pytest.raises(KeyboardInterrupt):
        nutpie_sample(_EM, 100, 100, 2, 2, 1, 0.9)
    assert fake_nutpie.calls[0]["blocking"] is False  # nutpie's blocking mode swallows Ctrl-C
    assert fake_nutpie.sampler.cancelled


def test_nutpie_nan_padded_trace_is_refused(fake_nutpie):
    """What nutpie's blocking sample returns after Ctrl-C: all draws requested, those not made NaN."""
    from hmodels.engine.nuts import nutpie_sample

    fake_nutpie.sampler = _FakeSampler(lambda: _nutpie_trace(100, nan_from=40))
    with pytest.raises(hm.SamplingError, match="incomplete trace.*240 of 400 values not finite"):
        nutpie_sample(_EM, 100, 100, 2, 2, 1, 0.9)
    fake_nutpie.sampler = _FakeSampler(lambda: _nutpie_trace(40))
    with pytest.raises(hm.SamplingError, match="40 draws instead of 2 x 100"):
        nutpie_sample(_EM, 100, 100, 2, 2, 1, 0.9)
    fake_nutpie.sampler = _FakeSampler(lambda: _nutpie_trace(100))
    xd, stats = nutpie_sample(_EM, 100, 100, 2, 2, 1, 0.9)
    assert xd.shape == (2, 100, 2) and not fake_nutpie.sampler.cancelled


def test_nutpie_refuses_draws_that_cannot_fit_in_memory(fake_nutpie):
    """draws=10**9 used to abort the interpreter (SIGABRT) when nutpie allocated the trace."""
    from hmodels.engine.nuts import nutpie_sample

    with pytest.raises(hm.SamplingError, match="GB of memory"):
        nutpie_sample(_EM, 10**9, 100, 4, 4, 1, 0.9)
    assert fake_nutpie.calls == []  # refused before nutpie was asked for anything


# -- end to end: Ctrl-C during a real fit ---------------------------------------------------------------------

_CHILD = """
import sys, warnings
import hmodels as hm
warnings.simplefilter("ignore")
sampler = sys.argv[1]
m = hm.Model("Yield ~ 1 + (1 | Batch)", hm.datasets.load("dyestuff"))
m.fit(draws=20, tune=20, chains=1, seed=1, progressbar=False, sampler=sampler)  # compile and cache first
print("READY", flush=True)
fit = m.fit(draws=int(sys.argv[2]), tune=100, chains=2, cores=2, seed=1, progressbar=False, sampler=sampler)
print("RETURNED", fit.settings.draws, fit.draws.sizes["draw"], flush=True)
"""


def _interrupt_fit(sampler: str, draws: int, delay: float = 1.5):
    """Start a fit in a child process, send it SIGINT while it samples; (returncode, stdout, stderr, seconds)."""
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, sampler, str(draws)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "MPLBACKEND": "Agg"})
    try:
        line = proc.stdout.readline()
        if not line.startswith("READY"):
            out, err = proc.communicate(timeout=60)
            pytest.fail(f"the child did not start sampling: {line}{out}{err}")
        time.sleep(delay)
        sent = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        return proc.returncode, out, err, time.perf_counter() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_ctrl_c_during_a_nutpie_fit_raises_keyboard_interrupt():
    """SIGINT during a long fit: the process ends with KeyboardInterrupt, not with a cut-short fit (was: exit 0)."""
    rc, out, err, elapsed = _interrupt_fit("nutpie", 3_000_000)
    assert "RETURNED" not in out, (out, err[-2000:])
    assert rc != 0 and "KeyboardInterrupt" in err, err[-2000:]
    assert elapsed < 30  # promptly: the sampler threads are cancelled, not run to the end


"""Saving fits reliably (hmodels.io, issue 17).

Atomic writes, concurrent writers, unwritable targets, and a checksum that covers every attribute,
coordinate, dtype and byte of the metadata.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest
import xarray as xr

import hmodels as hm
from hmodels import io as hio

DRAWS = 40  # the tests save a thinned copy of the session's sleepstudy fit: small files, fast loads


def _thinned(fit, draws: int = DRAWS):
    groups = {}
    for name, node in fit.posterior.children.items():
        ds = node.to_dataset()
        groups[f"/{name}"] = ds.isel(draw=slice(0, draws)) if "draw" in ds.dims else ds
    return hm.Fit(xr.DataTree.from_dict(groups), fit.spec, fit.priors, fit.settings, dict(fit.meta),
                  timing=fit.timing, versions=fit.versions, data=fit.data, design=None, model=None)


@pytest.fixture(scope="module")
def small_fit(sleep_fit):
    return _thinned(sleep_fit)


@pytest.fixture(scope="module")
def small_cbpp(cbpp_fit):
    return _thinned(cbpp_fit)


@pytest.fixture(scope="module")
def saved(small_fit, tmp_path_factory):
    path = tmp_path_factory.mktemp("reliable") / "sleep.nc"
    small_fit.save(path)
    return path


def _copy(src, dst):
    dst.write_bytes(src.read_bytes())
    return dst


def _others(directory, keep):
    """Files in ``directory`` other than ``keep`` (temporary files a save left behind)."""
    return sorted(p.name for p in directory.iterdir() if p.name not in keep)


# -- 1. atomic saves ------------------------------------------------------------------------------
CHILD_KILLED = textwrap.dedent("""
    import sys, time, h5py
    import hmodels as hm
    src, dst, marker = sys.argv[1:4]
    fit = hm.load(src)
    original, calls = h5py.Dataset.__setitem__, [0]
    def stall(self, key, value):  # in the middle of writing the arrays: tell the parent, then hang
        calls[0] += 1
        if calls[0] == 6:
            open(marker, "w").close()
            time.sleep(600)
        return original(self, key, value)
    h5py.Dataset.__setitem__ = stall
    fit.save(dst)
""")


def test_save_killed_midway_keeps_the_previous_file(small_fit, saved, tmp_path):
    """A kill -9 during a save over a good fit: the good fit is still there, byte for byte."""
    target = _copy(saved, tmp_path / "fit.nc")
    before = target.read_bytes()
    bigger = _thinned(small_fit, 10 * DRAWS)  # a different fit, so a half-written one would show
    bigger.save(tmp_path / "source.nc")
    marker = tmp_path / "writing"
    child = subprocess.Popen([sys.executable, "-c", CHILD_KILLED, str(tmp_path / "source.nc"), str(target),
                              str(marker)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert child.poll() is None, child.communicate()[1].decode()
            assert time.monotonic() < deadline, "the child never started writing"
            time.sleep(0.02)
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate()
    assert target.read_bytes() == before
    xr.testing.assert_identical(hm.load(target).draws, small_fit.draws)


class _Boom(Exception):
    pass


@pytest.mark.parametrize("exc", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_failed_save_keeps_the_previous_file_and_leaves_no_temporary(small_fit, saved, tmp_path, monkeypatch, exc):
    target = _copy(saved, tmp_path / "fit.nc")
    before = target.read_bytes()
    original, calls = h5py.Dataset.__setitem__, [0]

    def fail(self, key, value):
        calls[0] += 1
        if calls[0] == 6:
            raise exc
        return original(self, key, value)

    monkeypatch.setattr(h5py.Dataset, "__setitem__", fail)
    expected = KeyboardInterrupt if isinstance(exc, KeyboardInterrupt) else hm.FitFileError
    with pytest.raises(expected):
        _thinned(small_fit, 2 * DRAWS).save(target)
    monkeypatch.undo()
    assert calls[0] >= 6
    assert target.read_bytes() == before
    assert _others(tmp_path, {"fit.nc"}) == []
    hm.load(target)


CHILD_WRITER = textwrap.dedent("""
    import json, os, sys, time
    import hmodels as hm
    src, dst, go, n = sys.argv[1:5]
    fit = hm.load(src)
    while not os.path.exists(go):
        time.sleep(0.002)
    out = []
    for _ in range(int(n)):
        try:
            fit.save(dst)
            out.append("ok")
        except hm.FitFileError:
            out.append("FitFileError")
        except BaseException as exc:
            out.append(f"{type(exc).__name__}: {exc}")
    print(json.dumps(out))
""")


def test_concurrent_saves_to_one_path(small_fit, saved, tmp_path):
    """Each writer succeeds or gets FitFileError, and the file left loads and passes its checksum."""
    target, go = tmp_path / "shared.nc", tmp_path / "go"
    _copy(saved, target)
    children = [subprocess.Popen([sys.executable, "-c", CHILD_WRITER, str(saved), str(target), str(go), "4"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    time.sleep(0.5)
    go.touch()
    results = []
    for child in children:
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, err
        results += json.loads(out.strip().splitlines()[-1])
    assert set(results) <= {"ok", "FitFileError"}, results
    assert "ok" in results
    fit = hm.load(target)
    xr.testing.assert_identical(fit.draws, small_fit.draws)
    assert _others(tmp_path, {"shared.nc", "go"}) == []


def test_save_keeps_the_permissions_of_the_file_it_replaces(small_fit, saved, tmp_path):
    target = _copy(saved, tmp_path / "fit.nc")
    target.chmod(0o640)
    small_fit.save(target)
    assert target.stat().st_mode & 0o777 == 0o640


# -- 2. unwritable targets ------------------------------------------------------------------------
def test_save_into_a_missing_directory(small_fit, tmp_path):
    missing = tmp_path / "no_such_dir"
    with pytest.raises(hm.FitFileError, match="does not exist") as info:
        small_fit.save(missing / "fit.nc")
    assert str(missing) in str(info.value) and "create" in str(info.value).lower()
    assert not missing.exists()


def test_save_into_a_read_only_directory(small_fit, tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):  # root ignores permission bits: make the check see what a user would
            real = os.access
            monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p) == str(ro) else real(p, mode, **kw))
        with pytest.raises(hm.FitFileError, match="not writable") as info:
            small_fit.save(ro / "fit.nc")
        assert str(ro) in str(info.value)
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_save_onto_a_directory(small_fit, tmp_path):
    (tmp_path / "fit.nc").mkdir()
    with pytest.raises(hm.FitFileError, match="is a directory"):
        small_fit.save(tmp_path / "fit.nc")


# -- 3. checksum coverage -------------------------------------------------------------------------
def _tampered(src, dst, edit):
    _copy(src, dst)
    with h5py.File(dst, "r+") as f:
        edit(f)
    return dst


def _swap_names(f):
    a, b = f["hmodels_data/c0"], f["hmodels_data/c1"]
    na, nb = a.attrs["name"], b.attrs["name"]
    a.attrs["name"], b.attrs["name"] = nb, na


def _relabel_level(f):
    for var in f["hmodels_data"].values():
        if "categories" in var.attrs:
            cats = json.loads(var.attrs["categories"])
            cats[0], cats[1] = cats[1], cats[0]
            var.attrs["categories"] = json.dumps(cats)
            return
    raise AssertionError("no categorical column")


def _edit_group_attr(f):
    f["sample_stats"].attrs["inference_library"] = "something else"


def _drop_bool_marker(f):  # the 'dtype: bool' attribute: diverging would load as int8 (same values)
    del f["sample_stats/diverging"].attrs["dtype"]


def _edit_coordinate(f):
    subjects = f["posterior/Subject"]
    labels = subjects[...]
    subjects[0], subjects[1] = labels[1], labels[0]


def _edit_variable_attr(f):
    f["posterior/sigma"].attrs["units"] = "ms"


def _edit_root_attr(f):
    f.attrs["hmodels_extra"] = "x"


@pytest.mark.parametrize("edit", [_swap_names, _edit_group_attr, _drop_bool_marker, _edit_coordinate,
                                  _edit_variable_attr, _edit_root_attr])
def test_tampered_attributes_are_detected(saved, tmp_path, edit):
    bad = _tampered(saved, tmp_path / "bad.nc", edit)
    with pytest.raises(hm.FitFileError, match="corrupted"):
        hm.load(bad)


def test_relabelled_category_is_detected(small_cbpp, tmp_path):
    small_cbpp.save(tmp_path / "cbpp.nc")
    hm.load(tmp_path / "cbpp.nc")
    bad = _tampered(tmp_path / "cbpp.nc", tmp_path / "bad.nc", _relabel_level)
    with pytest.raises(hm.FitFileError, match="corrupted"):
        hm.load(bad)


def test_byte_flips_in_the_metadata_json(saved, tmp_path):
    raw = saved.read_bytes()
    with h5py.File(saved, "r") as f:
        meta = f.attrs["hmodels_meta"].encode()
    start = raw.find(meta)
    assert start > 0 and raw.count(meta[:100]) == 1, "the metadata JSON is stored once, uncompressed"
    positions = np.linspace(start, start + len(meta) - 1, 47).astype(int)
    bad = tmp_path / "flipped.nc"
    outcomes = {}
    for mask in (0x80, 0x01):
        for pos in positions:
            data = bytearray(raw)
            data[pos] ^= mask
            bad.write_bytes(bytes(data))
            try:
                hm.load(bad)
                outcome = "loaded"
            except hm.FitFileError:
                outcome = "FitFileError"
            except Exception as exc:  # noqa: BLE001 - the point of the test
                outcome = type(exc).__name__
            outcomes[(mask, int(pos - start))] = outcome
    wrong = {k: v for k, v in outcomes.items() if v != "FitFileError"}
    assert not wrong, wrong


def test_version_1_files_still_load(small_fit, tmp_path):
    """Files of the previous format (checksum over arrays and metadata only) are read as before."""
    path = tmp_path / "v1.nc"
    groups = {name: node.to_dataset() for name, node in small_fit.posterior.children.items()}
    groups[hio.DATA_GROUP] = hio._data_to_dataset(small_fit.data)
    meta_json = json.dumps(hio._meta(small_fit), sort_keys=True, allow_nan=True, default=hio._json_default)
    tree = xr.DataTree.from_dict({f"/{k}": v for k, v in groups.items()})
    tree.attrs = {"hmodels_format": hio.FORMAT, "hmodels_format_version": 1, "hmodels_meta": meta_json,
                  "hmodels_checksum": hio._checksum_v1(groups, meta_json)}
    tree.to_netcdf(path, engine="h5netcdf")
    xr.testing.assert_identical(hm.load(path).draws, small_fit.draws)
    bad = _tampered(path, tmp_path / "v1_bad.nc", lambda f: f["posterior/sigma"].__setitem__((0, 0), 1.0))
    with pytest.raises(hm.FitFileError, match="corrupted"):
        hm.load(bad)

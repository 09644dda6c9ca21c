"""Saving and loading fits (hmodels.io): exact round trip, corrupted and crafted files."""

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import hmodels as hm
from hmodels import io as hio

NEW = pd.DataFrame({"Days": [0, 9, 3], "Subject": ["308", "new", "new"]})


@pytest.fixture(scope="module")
def saved(sleep_fit, tmp_path_factory):
    path = tmp_path_factory.mktemp("io") / "sleep.nc"
    sleep_fit.save(path)
    return path


@pytest.mark.filterwarnings("ignore::hmodels.comparison.LOOWarning")
def test_round_trip_gives_identical_numbers(sleep_fit, saved):
    fit = hm.load(saved)
    assert fit.model is None and fit.spec == sleep_fit.spec
    pd.testing.assert_frame_equal(fit.fixed_effects(), sleep_fit.fixed_effects())
    pd.testing.assert_frame_equal(fit.variance_components(), sleep_fit.variance_components())
    pd.testing.assert_frame_equal(fit.group_effects("Subject"), sleep_fit.group_effects("Subject"))
    for groups in ("include", "new", "exclude"):
        nd = NEW.iloc[:1] if groups == "include" else NEW
        a = sleep_fit.predict(nd, kind="response", groups=groups, seed=5).values
        b = fit.predict(nd, kind="response", groups=groups, seed=5).values
        np.testing.assert_array_equal(a, b)
    assert fit.loo().elpd == sleep_fit.loo().elpd
    assert repr(fit) == repr(sleep_fit)
    assert fit.settings == sleep_fit.settings and fit.meta == sleep_fit.meta
    assert fit.priors.to_dict() == sleep_fit.priors.to_dict()
    assert [r.slot for r in fit.priors] == [r.slot for r in sleep_fit.priors]
    pd.testing.assert_frame_equal(fit.data, sleep_fit.data)


def test_categorical_levels_survive(cbpp_fit, tmp_path):
    cbpp_fit.save(tmp_path / "cbpp.nc")
    fit = hm.load(tmp_path / "cbpp.nc")
    assert list(fit.data["period"].cat.categories) == list(cbpp_fit.data["period"].cat.categories)
    assert list(fit.data["herd"].cat.categories) == list(cbpp_fit.data["herd"].cat.categories)
    new = pd.DataFrame({"period": ["2", "4"], "herd": ["3", "new"], "size": [5, 9]})
    a = cbpp_fit.predict(new, kind="response", groups="new", seed=2).values
    np.testing.assert_array_equal(a, fit.predict(new, kind="response", groups="new", seed=2).values)


def _flip(src, dst, offset):
    raw = bytearray(src.read_bytes())
    raw[offset] ^= 0x10
    dst.write_bytes(bytes(raw))


def test_bit_flip_in_the_draws_is_detected(sleep_fit, saved, tmp_path):
    raw = saved.read_bytes()
    needle = np.ascontiguousarray(sleep_fit.draws["sigma"].values).tobytes()[:64]
    offset = raw.find(needle)
    assert offset > 0, "sigma draws are stored uncompressed, so their bytes are in the file"
    bad = tmp_path / "flipped.nc"
    _flip(saved, bad, offset + 20)
    with pytest.raises(hm.FitFileError, match="corrupted"):
        hm.load(bad)


def test_bit_flips_anywhere_never_give_a_wrong_result(sleep_fit, saved, tmp_path):
    size = saved.stat().st_size
    reference = sleep_fit.draws
    for i, offset in enumerate(np.linspace(0, size - 1, 25).astype(int)):
        bad = tmp_path / f"flip{i}.nc"
        _flip(saved, bad, int(offset))
        try:
            fit = hm.load(bad)
        except hm.FitFileError:
            continue
        xr.testing.assert_identical(fit.draws, reference)  # a harmless byte (padding)


def test_truncated_file(saved, tmp_path):
    raw = saved.read_bytes()
    for frac in (0.1, 0.5, 0.99):
        bad = tmp_path / f"trunc{frac}.nc"
        bad.write_bytes(raw[: int(len(raw) * frac)])
        with pytest.raises(hm.FitFileError, match="truncated|corrupted"):
            hm.load(bad)


def test_not_an_hmodels_file(tmp_path):
    path = tmp_path / "other.nc"
    xr.DataTree.from_dict({"/posterior": xr.Dataset({"x": ("a", np.arange(3.0))})}).to_netcdf(path, engine="h5netcdf")
    with pytest.raises(hm.FitFileError, match="not a saved hmodels fit"):
        hm.load(path)
    text = tmp_path / "notes.nc"
    text.write_text("hello")
    with pytest.raises(hm.FitFileError, match="cannot be read"):
        hm.load(text)
    with pytest.raises(hm.FitFileError, match="No fit file"):
        hm.load(tmp_path / "missing.nc")


def _rewrite(saved, dst, edit_attrs=None, edit_meta=None):
    with xr.open_datatree(saved, engine="h5netcdf") as dt:
        tree = dt.load()
    if edit_meta is not None:
        meta = json.loads(tree.attrs["hmodels_meta"])
        edit_meta(meta)
        tree.attrs["hmodels_meta"] = json.dumps(meta, sort_keys=True)
        groups = {k: v.to_dataset() for k, v in tree.children.items()}
        tree.attrs["hmodels_checksum"] = hio._checksum(groups, tree.attrs)  # a forger can do this
    if edit_attrs is not None:
        edit_attrs(tree.attrs)
    tree.to_netcdf(dst, engine="h5netcdf")


def test_newer_format_version(saved, tmp_path):
    dst = tmp_path / "future.nc"
    _rewrite(saved, dst, edit_attrs=lambda a: a.update(hmodels_format_version=hio.FORMAT_VERSION + 1))
    with pytest.raises(hm.FitFileError, match="newer than this hmodels reads"):
        hm.load(dst)


def test_crafted_file_cannot_execute_code(saved, tmp_path):
    sentinel = tmp_path / "pwned.txt"
    payloads = {
        "term": lambda m: m["spec"].update(fixed=[f'np.savetxt("{sentinel}", Days)']),
        "call": lambda m: m["spec"].update(fixed=["np.savetxt(Days, Days)"]),
        "dunder": lambda m: m["spec"].update(response="__import__"),
        "prior": lambda m: m["priors"]["rows"][0]["prior"].update(dist="os.system"),
        "prior_value": lambda m: m["priors"]["rows"][0]["prior"].update(
            mu=f"__import__('os').system('touch {sentinel}')"
        ),
    }
    for name, edit in payloads.items():
        dst = tmp_path / f"crafted_{name}.nc"
        _rewrite(saved, dst, edit_meta=edit)
        with pytest.raises(hm.FitFileError):
            fit = hm.load(dst)
            fit.predict(NEW, groups="new", seed=1)  # would evaluate the formula terms
        assert not sentinel.exists(), name


def test_fits_with_transforms_and_quoted_names_save_and_load(tmp_path):
    """poly(), np.power() and a backtick-quoted column with a space round-trip through a saved file."""
    import warnings

    data = hm.datasets.load("sleepstudy").rename(columns={"Days": "days of sleep"})
    m = hm.Model("Reaction ~ poly(`days of sleep`, 2) + np.power(`days of sleep`, 3) + (1 | Subject)", data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = m.fit(draws=50, tune=50, chains=2, seed=1, progressbar=False)
    path = tmp_path / "transforms.nc"
    fit.save(path)
    back = hm.load(path)
    assert list(back.fixed_effects().index) == list(fit.fixed_effects().index)
    new = data.head(3)
    np.testing.assert_allclose(back.predict(new).draws.values, fit.predict(new).draws.values)

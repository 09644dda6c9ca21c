"""Save fits to NetCDF and load them back, as plain data (no pickle, nothing evaluated).

File layout (NetCDF4/HDF5 through xarray's ``DataTree``, engine ``h5netcdf``):

- the ArviZ groups of the fit (``posterior``, ``sample_stats``, ``observed_data``, ...) as they are;
- ``hmodels_data``: the rows the model was fitted to, one variable per column (``c0``, ``c1``,
  ... with the column name in the ``name`` attribute); categorical columns are stored as integer
  codes with their categories (JSON, in order) so levels and reference categories survive;
- root attributes: ``hmodels_format`` (``"hmodels.Fit"``), ``hmodels_format_version``,
  ``hmodels_meta`` (JSON: spec, priors with provenance, sampler settings, design metadata,
  timing, package versions) and ``hmodels_checksum`` (SHA-256 of every group's attributes and
  dimensions, every variable and coordinate with its dimensions, dtype, attributes and values, and
  the ``hmodels_*`` root attributes, so every byte of the metadata JSON).

Saving is atomic: the file is written under a unique temporary name in the target's directory,
flushed to disk, read back and checked against its checksum, and only then renamed over the
target (:func:`os.replace`), so an interrupted or failed save, or several processes saving to one
path, never leave a half-written file; the previous file stays until the new one is complete.

On load the format and version are checked, the checksum is recomputed from the decoded arrays,
the JSON is read with :func:`json.loads`, priors are rebuilt from their class name and numbers
only, and formula terms are checked against a list of allowed functions before formulae sees
them (formulae evaluates calls). Anything unexpected raises :class:`~hmodels.errors.FitFileError`.
Files of format 1 (whose checksum covered the arrays, coordinates and metadata JSON but no
attributes) are still read.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import stat
from contextlib import suppress
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .errors import FitFileError, HModelsError

__all__ = ["save", "load", "FORMAT", "FORMAT_VERSION"]

FORMAT = "hmodels.Fit"
FORMAT_VERSION = 2  # 2: the checksum covers attributes and dtypes too (1: arrays and metadata only)
DATA_GROUP = "hmodels_data"
ENGINE = "h5netcdf"

# Functions a formula term in a saved file may call (formulae evaluates calls in the formula).
SAFE_CALLS = frozenset({
    "C", "scale", "center", "standardize", "I", "log", "exp", "sqrt", "abs",
    "np.log", "np.log1p", "np.log2", "np.log10", "np.exp", "np.expm1", "np.sqrt", "np.abs", "np.square",
    "np.sin", "np.cos", "np.tanh", "np.power", "poly", "bs",
})
_CALL = re.compile(r"([A-Za-z_][\w.]*)\s*\(")
#: A backtick-quoted column name (formulae reads it as a name, never evaluates it).
_QUOTED = re.compile(r"`[^`]*`")


def save(fit, path) -> None:
    """Write a fit to a NetCDF file, atomically.

    The file is written under a temporary name next to ``path``, flushed to disk, read back and
    checked, then renamed over ``path``: a save that fails or is interrupted (Ctrl-C, a killed
    process, a full disk) leaves any previous file at ``path`` as it was, and of several processes
    saving to one path each either succeeds or raises :class:`~hmodels.errors.FitFileError`, and the
    file left is complete.

    Parameters
    ----------
    fit : Fit
    path : str or path-like
        Target file (``.nc`` by convention); replaced if it exists. Its directory must exist and be
        writable.

    Raises
    ------
    FitFileError
        The fit has no data attached, the directory is missing or not writable, ``path`` is a
        directory or a read-only file, or writing failed (the message says why; nothing is left
        behind and a previous file at ``path`` is unchanged).

    Examples
    --------
    >>> fit.save("sleep.nc")  # doctest: +SKIP
    >>> same = hm.load("sleep.nc")  # doctest: +SKIP
    """
    target = check_target(path)
    if fit.data is None:
        raise FitFileError("This fit has no data attached, so it cannot be saved in a form that predicts again.")
    groups = {name: node.to_dataset() for name, node in fit.posterior.children.items()}
    if DATA_GROUP in groups:
        raise FitFileError(f"The fit already has a group named {DATA_GROUP!r}; rename it before saving.")
    groups[DATA_GROUP] = _data_to_dataset(fit.data)
    meta_json = json.dumps(_meta(fit), sort_keys=True, allow_nan=True, default=_json_default)
    tree = xr.DataTree.from_dict({f"/{k}": v for k, v in groups.items()})
    attrs = {"hmodels_format": FORMAT, "hmodels_format_version": FORMAT_VERSION, "hmodels_meta": meta_json}
    attrs["hmodels_checksum"] = _checksum(groups, attrs)
    tree.attrs = attrs
    _write_atomically(tree, target)


def check_target(path) -> Path:
    """Check that a fit (or a report) can be written to ``path`` before anything is computed or written.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    Path
        The file to write (a symbolic link is followed, so the file it points to is replaced).

    Raises
    ------
    FitFileError
        ``path`` is a directory or a read-only file, or its directory is missing, not a directory
        or not writable; the message names the directory and the fix.

    Examples
    --------
    >>> from hmodels.io import check_target
    >>> check_target("no_such_dir/fit.nc")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    hmodels.errors.FitFileError: Cannot write 'no_such_dir/fit.nc': the directory 'no_such_dir' does not exist...
    """
    shown = str(path)
    target = Path(path)
    if target.is_symlink():
        target = target.resolve()
    if target.is_dir():
        raise FitFileError(f"Cannot write {shown!r}: it is a directory. Give a file path, "
                           f"e.g. {str(target / 'fit.nc')!r}.")
    folder = target.parent
    if not folder.exists():
        raise FitFileError(f"Cannot write {shown!r}: the directory {str(folder)!r} does not exist. "
                           f"Create it first (mkdir -p {folder}) or choose another path.")
    if not folder.is_dir():
        raise FitFileError(f"Cannot write {shown!r}: {str(folder)!r} is not a directory. Choose another path.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise FitFileError(f"Cannot write {shown!r}: the directory {str(folder)!r} is not writable. "
                           "Choose a writable directory or change its permissions.")
    if target.exists() and not os.access(target, os.W_OK):
        raise FitFileError(f"Cannot write {shown!r}: the file exists and is read-only. "
                           "Choose another path or make it writable.")
    return target


def _write_atomically(tree: xr.DataTree, target: Path) -> None:
    """Write ``tree`` to a unique temporary file beside ``target``, verify it, then rename it over ``target``."""
    folder, temp = target.parent, None
    try:
        temp = _create_temporary(target)
        tree.to_netcdf(temp, engine=ENGINE)
        _fsync(temp)
        try:
            _read_verified(temp, keep=False)
        except FitFileError as exc:
            raise FitFileError(f"The fit written to {str(target)!r} did not read back intact ({exc}); it was "
                               "not saved and any previous file there is unchanged.") from None
        if target.exists():  # keep the permissions of the file being replaced
            with suppress(OSError):
                os.chmod(temp, stat.S_IMODE(target.stat().st_mode))
        os.replace(temp, target)
        temp = None
        _fsync(folder, directory=True)
    except FitFileError:
        raise
    except Exception as exc:
        raise FitFileError(f"Could not save the fit to {str(target)!r} ({type(exc).__name__}: {exc}); nothing "
                           "was written and any previous file there is unchanged.") from exc
    finally:  # also on KeyboardInterrupt
        if temp is not None:
            with suppress(OSError):
                os.unlink(temp)


def _create_temporary(target: Path) -> Path:
    """Create an empty file with a name no other writer uses, in ``target``'s directory."""
    for _ in range(100):
        temp = target.with_name(f".{target.name[:120]}.{os.getpid()}-{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(temp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            continue
        except OSError as exc:
            raise FitFileError(f"Cannot write {str(target)!r}: cannot create a file in the directory "
                               f"{str(target.parent)!r} ({exc.strerror}). Choose a writable directory.") from None
        os.close(fd)
        return temp
    raise FitFileError(f"Cannot write {str(target)!r}: no free temporary name in {str(target.parent)!r}.")


def _fsync(path: Path, directory: bool = False) -> None:
    """Flush a file to disk; for a directory (its new entry) only where the system allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        if not directory:
            raise


def load(path):
    """Read a fit written by :func:`save`; it summarises, reports and predicts without refitting.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    Fit
        With ``model`` set to None (refitting, e.g. K-fold, rebuilds the model from spec, data
        and priors).

    Raises
    ------
    FitFileError
        The file is missing, not an hmodels fit, truncated or corrupted (checksum mismatch), or
        from a newer format version.

    Examples
    --------
    >>> import hmodels as hm
    >>> fit = hm.load("sleep.nc")  # doctest: +SKIP
    >>> fit.fixed_effects()  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise FitFileError(f"No fit file at {str(path)!r}.")
    groups, meta_json = _read_verified(path)
    try:
        return _build_fit(groups, json.loads(meta_json))
    except FitFileError:
        raise
    except (HModelsError, KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError) as exc:
        raise FitFileError(
            f"{str(path)!r} holds inconsistent hmodels metadata ({type(exc).__name__}: {exc})."
        ) from None


def _read_verified(path: Path, keep: bool = True) -> tuple[dict, str] | None:
    """Read the groups and metadata JSON of a saved fit, checking its format, version and checksum.

    With ``keep=False`` (checking a file just written) the arrays are hashed one at a time as they
    are read and nothing is returned, so the check needs no second copy of the fit in memory.
    """
    try:
        with xr.open_datatree(path, engine=ENGINE) as opened:
            tree = opened.load() if keep else opened
            attrs = dict(opened.attrs)
            groups = {name: node.to_dataset() for name, node in tree.children.items()}
            meta_json = _check_header(path, attrs, groups)
            _check_checksum(path, attrs, groups, meta_json)
    except FitFileError:
        raise
    except Exception as exc:
        raise FitFileError(
            f"{str(path)!r} cannot be read as a NetCDF4 file ({type(exc).__name__}: {exc}); it is truncated, "
            "corrupted or not a saved hmodels fit."
        ) from None
    return (groups, meta_json) if keep else None


def _check_header(path: Path, attrs: dict, groups: dict) -> str:
    """Check the format marker and version; return the metadata JSON."""
    if not (isinstance(attrs.get("hmodels_format"), str) and attrs["hmodels_format"] == FORMAT):
        raise FitFileError(f"{str(path)!r} is a NetCDF file but not a saved hmodels fit (no {FORMAT!r} marker).")
    version = _version(path, attrs)
    if version > FORMAT_VERSION:
        raise FitFileError(
            f"{str(path)!r} was written in hmodels file format {version}, newer than this hmodels reads "
            f"(format {FORMAT_VERSION}). Upgrade hmodels to load it."
        )
    meta_json = attrs.get("hmodels_meta")
    if not isinstance(meta_json, str) or DATA_GROUP not in groups:
        raise FitFileError(f"{str(path)!r} lacks the hmodels metadata or data; it is incomplete.")
    return meta_json


def _version(path: Path, attrs: dict) -> int:
    try:
        version = int(attrs.get("hmodels_format_version"))
    except (TypeError, ValueError, OverflowError):
        raise FitFileError(f"{str(path)!r} has an unreadable format version.") from None
    if version < 1:
        raise FitFileError(f"{str(path)!r} has an invalid format version ({version}); it is corrupted.")
    return version


def _check_checksum(path: Path, attrs: dict, groups: dict, meta_json: str) -> None:
    version = _version(path, attrs)
    try:
        expected = _checksum_v1(groups, meta_json) if version == 1 else _checksum(groups, attrs)
    except (TypeError, ValueError, UnicodeError, OverflowError) as exc:  # a value too damaged to hash
        raise FitFileError(f"{str(path)!r} is corrupted ({type(exc).__name__}: {exc}). "
                           "Use an intact copy or refit.") from None
    stored = attrs.get("hmodels_checksum")
    if not (isinstance(stored, str) and stored == expected):
        raise FitFileError(
            f"{str(path)!r} is corrupted: its contents do not match the checksum written with it. "
            "Use an intact copy or refit."
        )


# -- metadata -----------------------------------------------------------------------------------
def _meta(fit) -> dict:
    from .fit import package_versions

    rows = []
    for r in fit.priors:
        slot = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(r.slot).items()}
        rows.append({"slot": slot, "prior": r.prior.to_dict(), "source": r.source,
                     "derivation": r.derivation, "rationale": r.rationale})
    return {
        "spec": fit.spec.to_dict(),
        "priors": {"intercept_prior": fit.priors.intercept_prior, "rows": rows},
        "settings": fit.settings.to_dict(),
        "meta": fit.meta,
        "timing": fit.timing,
        "versions": fit.versions,
        "saved_with": package_versions(),
    }


def _build_fit(groups: dict, meta: dict):
    from dataclasses import fields

    from .fit import Fit
    from .priors.distributions import PRIOR_CLASSES
    from .priors.resolve import PriorSlot, PriorTable, ResolvedPrior
    from .sampling import SamplerSettings
    from .spec import ModelSpec

    spec = ModelSpec.from_dict(meta["spec"])
    _check_expressions(spec)
    slot_fields = {f.name for f in fields(PriorSlot)}
    rows = []
    for row in meta["priors"]["rows"]:
        s = {k: v for k, v in row["slot"].items() if k in slot_fields}
        s["keys"] = tuple(s.get("keys", ()))
        s["set_keys"] = tuple(s.get("set_keys", ()))
        p = dict(row["prior"])
        cls = PRIOR_CLASSES.get(p.pop("dist", None))
        if cls is None:
            raise FitFileError(f"Unknown prior distribution in the file: {row['prior'].get('dist')!r}.")
        rows.append(ResolvedPrior(PriorSlot(**s), cls(**{k: float(v) for k, v in p.items()}), str(row["source"]),
                                  str(row["derivation"]), str(row.get("rationale", ""))))
    priors = PriorTable(rows, meta["priors"]["intercept_prior"])
    settings = SamplerSettings(**meta["settings"])
    data = _dataset_to_data(groups.pop(DATA_GROUP))
    posterior = xr.DataTree.from_dict({f"/{k}": v for k, v in groups.items()})
    return Fit(posterior, spec, priors, settings, meta["meta"], timing=meta.get("timing"),
               versions=meta.get("versions"), data=data, design=None, model=None)


def _check_expressions(spec) -> None:
    """Refuse formula terms that call anything but the allowed transformations."""
    if getattr(spec, "nonlinear", None) is not None:  # each parameter's formula is evaluated by formulae too
        from .nonlinear.design import parameter_spec  # (the expression itself is read by a whitelisting parser)

        for name in spec.nonlinear.names:
            _check_expressions(parameter_spec(spec, name))
    if getattr(spec, "dpars", ()):  # each family parameter's formula is evaluated by formulae too
        from .design import dpar_sub_spec

        for name, _ in spec.dpars:
            _check_expressions(dpar_sub_spec(spec, name))
    exprs = [spec.response, *spec.fixed, spec.trials, spec.se, spec.offset]
    for g in spec.groups:
        exprs.append(g.factor)
        for b in g.blocks:
            exprs.extend(b.terms)
    for e in exprs:
        if e is None:
            continue
        if isinstance(e, str):
            e = _QUOTED.sub("_quoted_name", e)  # `my col`: a column name, never evaluated
        if not isinstance(e, str) or any(ch in e for ch in "'\"`;\\") or "__" in e:
            raise FitFileError(f"The saved formula term {e!r} is not a plain term; refusing to evaluate it.")
        for name in _CALL.findall(e):
            if name not in SAFE_CALLS:
                raise FitFileError(
                    f"The saved formula term {e!r} calls {name!r}, which is not among the transformations a "
                    f"saved fit may use ({', '.join(sorted(SAFE_CALLS))}); refusing to evaluate it."
                )


# -- data ---------------------------------------------------------------------------------------
def _data_to_dataset(data: pd.DataFrame) -> xr.Dataset:
    out = {}
    for i, name in enumerate(data.columns):
        col = data[name]
        attrs = {"name": str(name)}
        if isinstance(col.dtype, pd.CategoricalDtype):
            values = col.cat.codes.to_numpy().astype(np.int64)
            attrs.update(kind="category", ordered=int(bool(col.cat.ordered)),
                         categories=json.dumps([_plain(c) for c in col.cat.categories]))
        elif pd.api.types.is_bool_dtype(col):
            values, attrs["kind"] = col.to_numpy().astype(np.int8), "bool"
        elif pd.api.types.is_numeric_dtype(col):
            values, attrs["kind"] = col.to_numpy(), "numeric"
        else:
            values, attrs["kind"] = col.astype(str).to_numpy().astype(str), "string"
        out[f"c{i}"] = xr.Variable(("row",), values, attrs=attrs)
    return xr.Dataset(out, attrs={"n_columns": len(data.columns)})


def _json_default(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, tuple):
        return list(v)
    raise TypeError(f"{type(v).__name__} is not plain data")


def _plain(v):
    return v.item() if isinstance(v, np.generic) else v


def _dataset_to_data(ds: xr.Dataset) -> pd.DataFrame:
    cols = {}
    for i in range(int(ds.attrs["n_columns"])):
        var = ds[f"c{i}"]
        kind, name = var.attrs["kind"], var.attrs["name"]
        values = np.asarray(var.values)
        if kind == "category":
            cats = json.loads(var.attrs["categories"])
            cols[name] = pd.Categorical.from_codes(values.astype(np.int64), categories=cats,
                                                   ordered=bool(int(var.attrs["ordered"])))
        elif kind == "bool":
            cols[name] = values.astype(bool)
        elif kind == "numeric":
            cols[name] = values
        elif kind == "string":
            cols[name] = pd.Series(values.astype(str), dtype=object)
        else:
            raise FitFileError(f"Unknown column kind {kind!r} for column {name!r}.")
    return pd.DataFrame(cols)


# -- checksum ---------------------------------------------------------------------------------------
def _checksum(groups: dict, attrs: dict) -> str:
    """SHA-256 of everything a fit is rebuilt from (format 2).

    Covers the ``hmodels_*`` root attributes except the checksum (so every byte of the metadata JSON);
    for each group its name, attributes and dimension sizes; for each of its variables and
    coordinates the name, whether it is a coordinate, dimensions, shape, attributes, dtype and
    values. Every item is length-prefixed, so no two different contents hash alike by concatenation.
    """
    h = hashlib.sha256()
    _put(h, b"hmodels-checksum-2")
    _put_attrs(h, {k: v for k, v in attrs.items() if str(k).startswith("hmodels_") and k != "hmodels_checksum"})
    for gname in sorted(groups):
        ds = groups[gname]
        _put(h, b"group", gname)
        _put_attrs(h, ds.attrs)
        _put(h, b"sizes", repr(sorted((str(d), int(n)) for d, n in ds.sizes.items())))
        for vname in sorted(ds.variables, key=str):
            var = ds.variables[vname]
            _put(h, b"coord" if vname in ds.coords else b"var", str(vname), repr(tuple(map(str, var.dims))),
                 repr(tuple(var.shape)))
            _put_attrs(h, var.attrs)
            _put_array(h, np.asarray(var.values))
    return h.hexdigest()


def _bytes(v) -> bytes:
    """UTF-8 bytes of a text (undecodable bytes a corrupted file holds come back as they were)."""
    if isinstance(v, (bytes, np.bytes_)):
        return bytes(v)
    return str(v).encode("utf-8", "surrogatepass")


def _put(h, *items) -> None:
    for item in items:
        b = _bytes(item)
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)


def _put_attrs(h, attrs) -> None:
    _put(h, b"attrs", str(len(attrs)))
    for key in sorted(attrs, key=str):
        _put(h, str(key))
        _put_value(h, attrs[key])


def _put_value(h, value) -> None:
    """Hash an attribute value in a form that survives NetCDF.

    A str or a one-item list may be read back as either, a list as an array, an int as a NumPy integer.
    """
    if isinstance(value, (str, bytes, np.str_, np.bytes_)):
        _put(h, b"text", b"1", value)
        return
    arr = np.asarray(value)
    items = arr.ravel().tolist()
    if not items:
        _put(h, b"empty")
    elif arr.dtype.kind in "OUS":
        _put(h, b"text", str(len(items)), *items)
    elif arr.dtype.kind in "biu":
        _put(h, b"int", repr([int(x) for x in items]))
    elif arr.dtype.kind == "f":
        _put(h, b"float", repr([float(x).hex() for x in items]))
    else:
        _put(h, arr.dtype.kind, repr(items))


def _put_array(h, values: np.ndarray) -> None:
    kind = values.dtype.kind
    if kind in "biufc":
        dtype = values.dtype.newbyteorder("<")
        _put(h, dtype.str, np.ascontiguousarray(values, dtype=dtype).tobytes())
    elif kind in "OUS":  # strings: NetCDF gives back object arrays of str for fixed-width ones
        _put(h, b"text", str(values.size), *values.ravel().tolist())
    elif kind in "Mm":
        unit = "datetime64[ns]" if kind == "M" else "timedelta64[ns]"
        _put(h, unit, np.ascontiguousarray(values.astype(unit).view("<i8")).tobytes())
    else:
        _put(h, kind, repr(values.tolist()))


def _checksum_v1(groups: dict, meta_json: str) -> str:
    """Compute the checksum of format 1: every array and coordinate (names, dims, values) and the metadata."""
    h = hashlib.sha256()
    h.update(meta_json.encode("utf-8", "surrogatepass"))
    for gname in sorted(groups):
        ds = groups[gname]
        h.update(f"<group {gname}>".encode())
        for vname in sorted(map(str, ds.variables)):
            var = ds.variables[vname]
            h.update(f"<var {vname} {var.dims} {var.shape}>".encode())
            values = np.asarray(var.values)
            if values.dtype.kind in "biuf":
                h.update(np.ascontiguousarray(values.astype("<f8")).tobytes())
            elif values.dtype.kind in "OUS":
                h.update("\x00".join(map(str, values.ravel().tolist())).encode("utf-8", "surrogatepass"))
            elif values.dtype.kind == "M":
                h.update(np.ascontiguousarray(values.astype("datetime64[ns]").astype("<i8")).tobytes())
            else:
                h.update(repr(values.tolist()).encode())
    return h.hexdigest()

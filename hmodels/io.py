"""Save fits to NetCDF and load them back, as plain data (no pickle, nothing evaluated).

File layout (NetCDF4/HDF5 through xarray's ``DataTree``, engine ``h5netcdf``):

- the ArviZ groups of the fit (``posterior``, ``sample_stats``, ``observed_data``, ...) as they are;
- ``hmodels_data``: the rows the model was fitted to, one variable per column (``c0``, ``c1``,
  ... with the column name in the ``name`` attribute); categorical columns are stored as integer
  codes with their categories (JSON, in order) so levels and reference categories survive;
- root attributes: ``hmodels_format`` (``"hmodels.Fit"``), ``hmodels_format_version``,
  ``hmodels_meta`` (JSON: spec, priors with provenance, sampler settings, design metadata,
  timing, package versions) and ``hmodels_checksum`` (SHA-256 of every array, coordinate and the
  metadata JSON).

On load the format and version are checked, the checksum is recomputed from the decoded arrays,
the JSON is read with :func:`json.loads`, priors are rebuilt from their class name and numbers
only, and formula terms are checked against a list of allowed functions before formulae sees
them (formulae evaluates calls). Anything unexpected raises :class:`~hmodels.errors.FitFileError`.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .errors import FitFileError, HModelsError

__all__ = ["save", "load", "FORMAT", "FORMAT_VERSION"]

FORMAT = "hmodels.Fit"
FORMAT_VERSION = 1
DATA_GROUP = "hmodels_data"
ENGINE = "h5netcdf"

# Functions a formula term in a saved file may call (formulae evaluates calls in the formula).
SAFE_CALLS = frozenset({
    "C", "scale", "center", "standardize", "I", "log", "exp", "sqrt", "abs",
    "np.log", "np.log1p", "np.log2", "np.log10", "np.exp", "np.expm1", "np.sqrt", "np.abs", "np.square",
    "np.sin", "np.cos", "np.tanh",
})
_CALL = re.compile(r"([A-Za-z_][\w.]*)\s*\(")


def save(fit, path) -> None:
    """Write a fit to a NetCDF file.

    Parameters
    ----------
    fit : Fit
    path : str or path-like
        Target file (``.nc`` by convention); overwritten if it exists.

    Examples
    --------
    >>> fit.save("sleep.nc")  # doctest: +SKIP
    >>> same = hm.load("sleep.nc")  # doctest: +SKIP
    """
    if fit.data is None:
        raise FitFileError("This fit has no data attached, so it cannot be saved in a form that predicts again.")
    groups = {name: node.to_dataset() for name, node in fit.posterior.children.items()}
    if DATA_GROUP in groups:
        raise FitFileError(f"The fit already has a group named {DATA_GROUP!r}; rename it before saving.")
    groups[DATA_GROUP] = _data_to_dataset(fit.data)
    meta_json = json.dumps(_meta(fit), sort_keys=True, allow_nan=True, default=_json_default)
    tree = xr.DataTree.from_dict({f"/{k}": v for k, v in groups.items()})
    tree.attrs = {
        "hmodels_format": FORMAT,
        "hmodels_format_version": FORMAT_VERSION,
        "hmodels_meta": meta_json,
        "hmodels_checksum": _checksum(groups, meta_json),
    }
    tree.to_netcdf(Path(path), engine=ENGINE)


def load(path):
    """Read a fit written by :func:`save`; it summarises, reports and predicts without refitting.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    Fit
        With ``_model`` set to None (refitting, e.g. K-fold, rebuilds the model from spec, data
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
    try:
        with xr.open_datatree(path, engine=ENGINE) as opened:
            tree = opened.load()
            attrs = dict(opened.attrs)
            groups = {name: node.to_dataset() for name, node in tree.children.items()}
    except Exception as exc:
        raise FitFileError(
            f"{str(path)!r} cannot be read as a NetCDF4 file ({type(exc).__name__}: {exc}); it is truncated, "
            "corrupted or not a saved hmodels fit."
        ) from None
    if attrs.get("hmodels_format") != FORMAT:
        raise FitFileError(f"{str(path)!r} is a NetCDF file but not a saved hmodels fit (no {FORMAT!r} marker).")
    try:
        version = int(attrs.get("hmodels_format_version"))
    except (TypeError, ValueError):
        raise FitFileError(f"{str(path)!r} has an unreadable format version.") from None
    if version > FORMAT_VERSION:
        raise FitFileError(
            f"{str(path)!r} was written in hmodels file format {version}, newer than this hmodels reads "
            f"(format {FORMAT_VERSION}). Upgrade hmodels to load it."
        )
    meta_json = attrs.get("hmodels_meta")
    if not isinstance(meta_json, str) or DATA_GROUP not in groups:
        raise FitFileError(f"{str(path)!r} lacks the hmodels metadata or data; it is incomplete.")
    if _checksum(groups, meta_json) != attrs.get("hmodels_checksum"):
        raise FitFileError(
            f"{str(path)!r} is corrupted: its contents do not match the checksum written with it. "
            "Use an intact copy or refit."
        )
    try:
        return _build_fit(groups, json.loads(meta_json))
    except FitFileError:
        raise
    except (HModelsError, KeyError, TypeError, ValueError) as exc:
        raise FitFileError(f"{str(path)!r} holds inconsistent hmodels metadata ({type(exc).__name__}: {exc}).") from None


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
    exprs = [spec.response, *spec.fixed, spec.trials, spec.se]
    for g in spec.groups:
        exprs.append(g.factor)
        for b in g.blocks:
            exprs.extend(b.terms)
    for e in exprs:
        if e is None:
            continue
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


# -- checksum -----------------------------------------------------------------------------------
def _checksum(groups: dict, meta_json: str) -> str:
    """SHA-256 over every group's variables and coordinates (names, dims, values) and the metadata."""
    h = hashlib.sha256()
    h.update(meta_json.encode())
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
                h.update("\x00".join(map(str, values.ravel().tolist())).encode())
            elif values.dtype.kind == "M":
                h.update(np.ascontiguousarray(values.astype("datetime64[ns]").astype("<i8")).tobytes())
            else:
                h.update(repr(values.tolist()).encode())
    return h.hexdigest()

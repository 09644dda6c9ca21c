"""Refit one model under several prior sets and put the key quantities side by side.

Each prior set is one task of the studies' Dask runner (:func:`hmodels.studies._dask.run_tasks`):
the refits run on local threads, or on a ``dask.distributed`` cluster with ``client=``, and with
``resume=folder`` each finished refit's summary is written to Parquet as it arrives, so an
interrupted comparison refits only the prior sets still missing.
"""

from __future__ import annotations

import hashlib
import os
import tempfile

import pandas as pd

from ..errors import SamplingError, SpecificationError
from ._dask import quiet, run_tasks
from ._settings import check_fit_kwargs

__all__ = ["compare_priors"]


def _label(p) -> str:
    if isinstance(p, str):
        return p
    if isinstance(p, dict):
        return "custom: " + ", ".join(f"{k}={v!r}" for k, v in p.items())
    return str(p)


def _fit_bytes(fit) -> bytes:
    """A fit as the bytes of its NetCDF file (:func:`hmodels.io.save`: plain data, checksummed, no pickle)."""
    from ..io import save

    fd, path = tempfile.mkstemp(suffix=".nc")
    os.close(fd)
    try:
        save(fit, path)
        with open(path, "rb") as fh:
            return fh.read()
    finally:
        os.unlink(path)


def _fit_from_bytes(data: bytes):
    from ..io import load

    fd, path = tempfile.mkstemp(suffix=".nc")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return load(path)
    finally:
        os.unlink(path)


def _summary_rows(fit, prob: float) -> list[tuple[str, float, float, float]]:
    """(quantity, mean, low, high) of every fixed effect and variance component of a fit."""
    fe = fit.fixed_effects(prob)
    rows = [(f"b[{t}]", r["mean"], r["hdi_low"], r["hdi_high"]) for t, r in fe.iterrows()]
    for _, r in fit.variance_components(prob).iterrows():
        if r["kind"] == "sd":
            key = f"sd({r['group']}, {r['term']})"
        elif r["kind"] == "cor":
            key = f"cor({r['group']})[{r['term']}]"
        else:
            key = str(r["kind"])
        rows.append((key, r["mean"], r["hdi_low"], r["hdi_high"]))
    return rows


def _prior_set_task(shared: dict, index: int, label: str, priors, prior_set) -> pd.DataFrame:
    """Refit the model under one prior set (a task on any worker: plain inputs only)."""
    from ..model import Model
    from ..spec import ModelSpec

    m = Model(ModelSpec.from_dict(shared["spec"]), shared["data"], priors=priors, prior_set=prior_set,
              centered=shared["centered"], intercept_prior=shared["intercept_prior"], missing="drop")
    with quiet():
        fit = m.fit(**shared["fit_kwargs"])
    rows = _summary_rows(fit, shared["prob"])
    out = pd.DataFrame(rows, columns=["quantity", "mean", "low", "high"])
    out.insert(0, "label", label)
    out.insert(0, "set", int(index))
    out[["mean", "low", "high"]] = out[["mean", "low", "high"]].astype(float)
    if shared["return_fits"]:
        out["fit"] = [_fit_bytes(fit)] + [None] * (len(out) - 1)
    return out


def compare_priors(model, prior_sets=("default", "regularizing", "vague"), prob: float = 0.95,
                   return_fits: bool = False, client=None, scheduler: str | None = None, resume=None,
                   progressbar: bool = False, **fit_kwargs):
    """Refit ``model`` under each prior set and compare fixed effects and variance components.

    The refits are tasks of the studies' Dask runner, as for :func:`hmodels.sbc`: local threads
    by default, a ``dask.distributed`` cluster with ``client=``, results streamed to Parquet and
    resumable with ``resume=``.

    Parameters
    ----------
    model : hmodels.Model
        Its formula/spec, data (rows used), centring and intercept placement are kept; only the
        priors change.
    prior_sets : sequence
        Shipped set names, paths of TOML files, or dicts of priors (on top of the default set).
        Each is resolved here, before any refit runs (bad names or priors fail at once), and sent
        to the workers as data (a TOML file need not exist on a cluster's workers).
    prob : float
        Interval probability (HDI, as :meth:`Fit.fixed_effects`).
    return_fits : bool
        Also return the fits, ``{label: Fit}`` (they travel, and are stored with ``resume``, as
        NetCDF files: :func:`hmodels.load`; their ``model`` is None).
    client : optional
        A ``dask.distributed`` Client, a scheduler address (``"tcp://scheduler:8786"``) or
        ``"local"`` (a LocalCluster of one process per core, closed afterwards).
    scheduler : str, optional
        Dask's local scheduler when no client is used: ``"threads"`` (default), ``"processes"``
        or ``"synchronous"``.
    resume : str or Path, optional
        Folder where each refit's summary streams as Parquet; rerun the same call to finish an
        interrupted comparison. A folder made with other settings (model, data, priors, seed,
        sampler settings) is refused with a :class:`~hmodels.errors.SpecificationError`. Needs
        ``seed=``.
    progressbar : bool
        A progress bar over the prior sets (each refit's own bar is off).
    **fit_kwargs
        Passed to :meth:`Model.fit` (``draws``, ``tune``, ``chains``, ``seed``, ...); every prior
        set is refitted with the same seed.

    Returns
    -------
    pandas.DataFrame
        One row per quantity (``b[Days]``, ``sd(Subject, Intercept)``, ``cor(Subject)[Intercept:Days]``,
        ``sigma``); columns a MultiIndex ``(prior set, mean | low | high | width)``.
        With ``return_fits=True``: ``(table, fits)``.

    Examples
    --------
    >>> import hmodels as hm
    >>> m = hm.Model("y | se(sigma) ~ 1 + (1 | school)", hm.datasets.load("eight_schools"))
    >>> tab = hm.compare_priors(m, ["default", "vague"], draws=300, tune=300, chains=2, seed=1)  # doctest: +SKIP
    >>> tab.xs("width", axis=1, level=1)  # doctest: +SKIP
    """
    from ..model import Model
    from ..priors import PriorSet, load_set

    if not isinstance(model, Model):
        raise SpecificationError(f"compare_priors needs an hmodels Model, got {type(model).__name__}.")
    if isinstance(prior_sets, (str, dict)) or not hasattr(prior_sets, "__iter__"):
        raise SpecificationError("prior_sets must be a list of prior sets (names, TOML paths or dicts of priors), "
                                 f"e.g. ['default', 'vague']; got {prior_sets!r}.")
    prior_sets = list(prior_sets)
    if not prior_sets:
        raise SpecificationError("prior_sets is empty: give at least one prior set, e.g. ['default', 'vague'].")
    if not 0 < prob < 1:
        raise SpecificationError(f"prob must lie in (0, 1), got {prob!r}.")
    if resume is not None and fit_kwargs.get("seed") is None:
        raise SpecificationError("compare_priors with resume= needs a seed (seed=...): resumed refits must be the "
                                 "same as the stored ones.")
    fit_kwargs = {**fit_kwargs, "progressbar": False}
    check_fit_kwargs(fit_kwargs, "compare_priors")
    data = model.design.data
    labels, tasks, resolved = [], [], {}
    for i, p in enumerate(prior_sets):
        label = _label(p)
        if label in labels:
            raise SpecificationError(f"The prior set {label!r} is given twice in prior_sets; give each once.")
        labels.append(label)
        if isinstance(p, dict):
            priors, pset = dict(p), None
        elif isinstance(p, (str, os.PathLike, PriorSet)):
            priors, pset = None, p if isinstance(p, PriorSet) else load_set(p)
        else:
            raise SpecificationError(f"prior_sets[{i}] must be a set name, a TOML path or a dict of priors, got "
                                     f"{type(p).__name__}.")
        # resolve here: a bad prior fails now, and the resolved table identifies the study
        m = Model(model.spec, data, priors=priors, prior_set=pset, centered=model.centered_request,
                  intercept_prior=model.intercept_prior, missing="drop")
        resolved[label] = {r.slot.param: r.prior.identity for r in m.priors}
        tasks.append(((i,), (i, label, priors, pset)))
    data_hash = hashlib.sha256(pd.util.hash_pandas_object(data, index=False).values.tobytes()).hexdigest()[:16]
    config = {"spec": model.spec.to_dict(), "data": data_hash, "priors": resolved, "prob": prob,
              "fit": fit_kwargs, "centered": repr(model.centered_request), "intercept_prior": model.intercept_prior,
              "return_fits": bool(return_fits)}
    shared = {"spec": model.spec.to_dict(), "data": data, "centered": model.centered_request,
              "intercept_prior": model.intercept_prior, "fit_kwargs": fit_kwargs, "prob": prob,
              "return_fits": bool(return_fits)}
    rows = run_tasks(_prior_set_task, tasks, kind="compare_priors", config=config, key_columns=["set"],
                     client=client, scheduler=scheduler, resume=resume, progressbar=progressbar, shared=shared)
    missing = [labels[i] for i in range(len(labels)) if i not in set(int(s) for s in rows["set"].unique())]
    if missing:
        raise SamplingError(
            f"The refits under {missing} did not finish (their workers died). Run the same call again"
            + (" with the same resume= folder: only those are refitted." if resume is not None
               else " (pass resume=folder to keep finished refits across runs).")
        )
    pieces, fits = {}, {}
    for i, label in enumerate(labels):
        r = rows[rows["set"] == i]
        df = r.set_index("quantity")[["mean", "low", "high"]].astype(float)
        df.index.name = None
        df["width"] = df["high"] - df["low"]
        pieces[label] = df
        if return_fits:
            fits[label] = _fit_from_bytes(bytes(r["fit"].iloc[0]))
    table = pd.concat(pieces, axis=1)
    table.columns.names = ["prior set", "stat"]
    table.index.name = "quantity"
    return (table, fits) if return_fits else table

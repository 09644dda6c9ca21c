"""Refit one model under several prior sets and put the key quantities side by side."""

from __future__ import annotations

import warnings

import pandas as pd

__all__ = ["compare_priors"]


def _label(p) -> str:
    if isinstance(p, str):
        return p
    if isinstance(p, dict):
        return "custom: " + ", ".join(f"{k}={v!r}" for k, v in p.items())
    return str(p)


def compare_priors(model, prior_sets=("default", "regularizing", "vague"), prob: float = 0.95,
                   return_fits: bool = False, **fit_kwargs):
    """Refit ``model`` under each prior set and compare fixed effects and variance components.

    Parameters
    ----------
    model : hmodels.Model
        Its formula/spec, data (rows used), centring and intercept placement are kept; only the
        priors change.
    prior_sets : sequence
        Shipped set names, paths of TOML files, or dicts of priors (on top of the default set).
    prob : float
        Interval probability (HDI, as :meth:`Fit.fixed_effects`).
    return_fits : bool
        Also return the fits, ``{label: Fit}``.
    **fit_kwargs
        Passed to :meth:`Model.fit` (``draws``, ``tune``, ``chains``, ``seed``, ...).

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
    from .model import Model

    fit_kwargs.setdefault("progressbar", False)
    data = model.design.data
    pieces, fits = {}, {}
    for p in prior_sets:
        label = _label(p)
        kw = {"priors": p} if isinstance(p, dict) else {"prior_set": str(p)}
        m = Model(model.spec, data, centered=model.centered_request, intercept_prior=model.intercept_prior,
                  missing="drop", **kw)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = m.fit(**fit_kwargs)
        fits[label] = fit
        fe = fit.fixed_effects(prob)
        rows = {f"b[{t}]": (r["mean"], r["hdi_low"], r["hdi_high"]) for t, r in fe.iterrows()}
        vc = fit.variance_components(prob)
        for _, r in vc.iterrows():
            if r["kind"] == "sd":
                key = f"sd({r['group']}, {r['term']})"
            elif r["kind"] == "cor":
                key = f"cor({r['group']})[{r['term']}]"
            else:
                key = str(r["kind"])
            rows[key] = (r["mean"], r["hdi_low"], r["hdi_high"])
        df = pd.DataFrame(rows, index=["mean", "low", "high"]).T
        df["width"] = df["high"] - df["low"]
        pieces[label] = df
    table = pd.concat(pieces, axis=1)
    table.columns.names = ["prior set", "stat"]
    table.index.name = "quantity"
    return (table, fits) if return_fits else table

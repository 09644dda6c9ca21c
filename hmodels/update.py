"""Refit a fit with new data, priors or formula, keeping everything else (brms's ``update``).

Examples
--------
>>> import hmodels as hm
>>> m = hm.Model("Yield ~ 1 + (1 | Batch)", hm.datasets.load("dyestuff"))
>>> fit = m.fit(draws=200, tune=200, chains=2, seed=1, progressbar=False)
>>> tighter = fit.update(priors={"sd": hm.HalfNormal(20)}, progressbar=False)
>>> tighter.priors["sd(Batch, Intercept)"].prior, tighter.priors["sd(Batch, Intercept)"].source
(HalfNormal(20), 'user')
"""

from __future__ import annotations

from .errors import SpecificationError

__all__ = ["update"]


def update(fit, data=None, priors=None, formula=None, family: str | None = None, link: str | None = None,
           **fit_kwargs):
    """Fit the model again with some of its pieces changed; the rest as in ``fit``.

    What is kept: the formula (spec), family and link, the data, every prior the user gave (a
    prior keyed by term or class, ``source == "user"``), the intercept-prior placement, the
    centring request and the sampler settings (draws, tune, chains, seed, target_accept, sampler).
    A fit sampled in rounds (``fit.meta["until"]``: the default ``until="auto"``, or ``"converged"``) is
    refitted in rounds the same way, from its first round's settings, unless ``draws=``, ``tune=`` or
    ``until=`` is given.
    Data-scaled default priors are derived again from the data the new fit uses, as for any new
    model. The compiled engine is reused: nothing is compiled again (the PyMC graph backends
    compile the new model).

    Parameters
    ----------
    fit : Fit
    data : pandas.DataFrame, optional
        New data (same columns).
    priors : dict or str, optional
        Priors to add or replace (merged over the user's priors of ``fit``), or a prior-set name.
    formula : str, optional
        A new formula; priors the user gave for terms it no longer has are dropped. The family
        parameters' formulas (``dpars=``) and a nonlinear model's parameter formulas and ``start=`` are kept.
    family, link : str, optional
    **fit_kwargs
        Sampler settings to change (``draws=``, ``seed=``, ``method=``, ``progressbar=``, ...).

    Returns
    -------
    Fit

    Examples
    --------
    >>> refit = fit.update(data=new_rows, seed=2)  # doctest: +SKIP
    """
    import pandas as pd


    if data is None:
        data = fit.data
    elif not isinstance(data, pd.DataFrame):
        raise SpecificationError(f"update(data=...) needs a pandas DataFrame, got {type(data).__name__}.")
    if data is None:
        raise SpecificationError("This fit carries no data; pass data= to update it.")
    user = {r.slot.param: r.prior for r in fit.priors if r.source == "user"}
    if isinstance(priors, str):
        merged = priors
    else:
        merged = {**user, **dict(priors or {})}
    new_family = family if family is not None else fit.spec.family
    new_link = link if link is not None else (fit.spec.link if family is None else None)
    if formula is not None:
        spec = formula
    elif (family is not None or link is not None) and (getattr(fit.spec, "nonlinear", None) is not None
                                                        or getattr(fit.spec, "dpars", ())):
        from dataclasses import replace  # the formula string alone would lose the parameters' formulas

        spec = replace(fit.spec, family=new_family, link=new_link)
    elif family is not None or link is not None:
        spec = fit.spec.formula
    else:
        spec = fit.spec
    kwargs = dict(family=new_family, link=new_link) if isinstance(spec, str) else {}
    if formula is not None and getattr(fit.spec, "dpars", ()):  # a new mean formula keeps the parameters' own
        kwargs["dpars"] = dict(fit.spec.dpars)
    if formula is not None and getattr(fit.spec, "nonlinear", None) is not None:  # ... and a nonlinear model's
        kwargs["nonlinear"] = dict(fit.spec.nonlinear.parameters)
        kwargs["start"] = dict(fit.spec.nonlinear.start) or None
    model = _model(spec, data, merged, fit, kwargs, drop_unknown=formula is not None)
    settings = fit.settings.to_dict()
    base = {k: settings[k] for k in ("draws", "tune", "chains", "seed", "sampler") if k in settings}
    plan = fit.meta.get("plan") or {}
    if plan.get("method") == "joint" and plan.get("collapsed_factor") is None and "method" not in fit_kwargs:
        base["method"] = "joint"  # nothing was integrated out: keep it so (a no-op where nothing could be)
    if plan.get("target_accept") is not None and "target_accept" not in fit_kwargs:
        base["target_accept"] = settings.get("target_accept")
    until = fit.meta.get("until")
    if until and not {"draws", "tune", "until"} & set(fit_kwargs):  # sampled in rounds: so is the refit
        if until.get("mode") == "auto":  # the defaults again (draws and tune were not given)
            base.pop("draws", None)
            base.pop("tune", None)
        else:  # until="converged": its first round's draws and warm-up, and its time budget
            base.update(draws=until["rounds"][0]["draws"], tune=until["rounds"][0]["tune"], until="converged")
        if until.get("max_time") is not None and until["max_time"] != float("inf"):
            base["max_time"] = until["max_time"]
    return model.fit(**{**base, **fit_kwargs})


def _model(spec, data, priors, fit, kwargs, drop_unknown: bool):
    from .errors import PriorError
    from .model import Model

    common = dict(centered=fit.model.centered_request if fit.model is not None else "auto",
                  intercept_prior=fit.priors.intercept_prior, **kwargs)
    try:
        return Model(spec, data, priors=priors or None, **common)
    except PriorError:
        if not drop_unknown or isinstance(priors, str):
            raise
        # a new formula: keep only the user's priors that still name a parameter or class of it
        probe = Model(spec, data, **common)
        keys = {k for r in probe.priors for k in r.slot.keys}
        kept = {k: v for k, v in priors.items() if k in keys}
        return Model(spec, data, priors=kept or None, **common)

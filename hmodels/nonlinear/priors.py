"""Default priors of a nonlinear model, scaled from the starting values of the population curve.

A nonlinear parameter's coefficients cannot take the outcome-scaled defaults of a linear model
(an asymptote, a log rate constant and a midpoint live on unrelated scales). The defaults here
come from the population curve (every group effect zero) fitted by nonlinear least squares
(``nls_start``) from the self-start's initial values (R's ``getInitial``), the user's ``start=``,
or zeros:

====================================  =============================================================
parameter                              default
====================================  =============================================================
``<k>_Intercept``                      Normal(estimate_k, scale_k)
covariate effect on ``k``              Normal(0, scale_k / sd(covariate))
``sd(g, <k>_Intercept)``               HalfNormal(scale_k)  (slopes: scale_k / sd(covariate))
``cor(g)``                             LKJ(2)
``sigma``                              HalfNormal(2 * nls residual SD)
====================================  =============================================================

with ``scale_k = max(5 * se_k, |estimate_k| / 4)`` (``se_k``: the nls standard error). The nls
standard errors ignore the between-group variation, so the mixed model's uncertainty about a
population value can be larger (Theoph lKa: nls SE 0.12, nlme 0.20); five of them keep the prior
at least three times wider than the posterior (Theoph and Orange: 3-14 posterior SDs), while a
quarter of the estimate's size keeps a parameter whose nls SE is tiny from a prior that pins it.
Ten SEs and half the estimate were tried first: Orange's prior predictive then had 27% negative
circumferences (an asymptote below zero); with five SEs the curve stays in a plausible range. The residual SD of the
population curve includes the between-group variation, so it bounds sigma from above: the
half-normal at twice it leaves every plausible sigma inside.

User priors by term (``"lKa_Intercept"``), by parameter (``"lKa"``: every coefficient of it) or by
class (``"sd"``, ``"sd(Subject)"``, ``"cor"``, ``"sigma"``) override these, as for every model.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import DataError, DataWarning, PriorError, SpecificationError, closest, row_labels
from ..families import get_family
from ..priors.distributions import HalfNormal, Normal, Prior, from_string
from ..priors.resolve import (
    PriorSlot,
    PriorTable,
    ResolvedPrior,
    _canon,
    _check_support,
    _family_set,
    _fmt,
    _resolve_slot,
    _robust_unit,
)
from ..priors.sets import load_set

__all__ = ["StartValues", "start_values", "resolve_nonlinear_priors"]

#: Multiples of the nls standard error in a parameter's default prior scale.
SE_MULTIPLE = 5.0
#: Fraction of the estimate's size below which a default prior scale never goes.
ESTIMATE_FRACTION = 0.25


@dataclass(frozen=True)
class StartValues:
    """The population curve's starting values and the nls fit from them.

    Attributes
    ----------
    initial : dict
        Values nls started from (self-start, ``start=`` or zeros), by parameter.
    source : dict
        Where each initial value came from.
    estimates, ses : dict
        nls estimates and standard errors by parameter (the initial values and NaN when nls failed).
    residual_sd : float
        Residual SD of the nls fit (NaN when it failed).
    message : str
        nls's message.
    converged : bool
    """

    initial: dict
    source: dict
    estimates: dict
    ses: dict
    residual_sd: float
    message: str
    converged: bool

    def scale(self, k: str) -> float:
        """The default prior scale of parameter ``k``: ``max(5 se, |estimate| / 4)`` (1 when neither is usable)."""
        est, se = float(self.estimates[k]), float(self.ses.get(k, np.nan))
        cands = [ESTIMATE_FRACTION * abs(est)] + ([SE_MULTIPLE * se] if np.isfinite(se) and se > 0 else [])
        s = max(cands)
        return s if np.isfinite(s) and s > 0 else 1.0


def _nls():
    try:
        from .expression import nls_start
    except ImportError:
        from .selfstart import nls_start
    return nls_start


def _link_y(design) -> np.ndarray:
    """The outcome on the scale the expression describes: the link of y for non-identity links."""
    fam = get_family(design.spec.family, design.spec.link)
    y = np.asarray(design.y, dtype=float)
    if fam.link == "identity":
        on = fam.link_scale_response(y, "")
        return np.asarray(on[0], dtype=float) if on else y
    if design.trials is not None:
        y = y / design.trials
    if fam.link in ("logit", "probit", "cloglog"):
        y = np.clip(y, 0.02, 0.98)
    else:
        y = np.maximum(y, 0.5 if fam.outcome == "count" else 1e-3)
    return np.asarray(fam.link_fn.link(y), dtype=float)


def _population_env(design, values: dict) -> dict:
    env = {c: np.asarray(v, dtype=float) for c, v in design.covariates.items()}
    env.update({k: np.full(design.n, float(v)) for k, v in values.items()})
    return env


def _population(design, values: dict) -> np.ndarray:
    """The population curve (every group effect zero) at constant parameter values, (n,)."""
    with np.errstate(all="ignore"):
        mu = design.expression.evaluate(_population_env(design, values), lib="numpy")
    return np.broadcast_to(np.asarray(mu, dtype=float), (design.n,))


def _try_nls(design, y, initial: dict, names):
    """``((estimates, ses, residual SD), message)`` of nls from ``initial``; ``(None, message)`` when it fails."""
    try:
        with np.errstate(all="ignore"):
            res = _nls()(design.expression, {c: np.asarray(v, dtype=float) for c, v in design.covariates.items()},
                         y, dict(initial))
    except Exception as exc:  # noqa: BLE001 - any failure of the optimiser means "no start from here"
        return None, f"{type(exc).__name__}: {exc}"
    message = str(getattr(res, "message", ""))
    est = {k: float(v) for k, v in dict(res.estimates).items()}
    ses = {k: float(v) for k, v in dict(getattr(res, "standard_errors", getattr(res, "ses", {}))).items()}
    rsd = float(getattr(res, "residual_sd", np.nan))
    ok = (all(np.isfinite(est.get(k, np.nan)) for k in names) and np.isfinite(rsd)
          and bool(getattr(res, "converged", True)))
    return ((est, ses, rsd) if ok else None), message


def _warn_several_fits(found: list, names: list[str]) -> None:
    """Warn when nls from different starts finds equally good population curves with different parameters."""
    for a in found:
        for b in found:
            if a is b or abs(a[2] - b[2]) > 1e-4 * max(a[2], b[2]):
                continue
            differ = [k for k in names if abs(a[0][k] - b[0][k]) > 5 * max(a[1].get(k, 0.0), b[1].get(k, 0.0), 1e-8)]
            if differ:
                both = ", ".join(f"{k} = {_fmt(a[0][k])} or {_fmt(b[0][k])}" for k in differ)
                first = ", ".join(f"{k} = {_fmt(a[0][k])}" for k in differ)
                warnings.warn(
                    f"The population curve fits the data equally well with different values of "
                    f"{', '.join(map(repr, differ))} ({both}): the expression is not identified between them (e.g. "
                    f"two rate constants that can be exchanged). The priors are centred on the first ({first}); pass "
                    "start= near the values you mean, or a prior that tells them apart.", DataWarning, stacklevel=5)
                return


def start_values(design, user_priors: Mapping | None = None) -> StartValues:
    """Starting values of the population curve and the nls fit from them.

    Parameters
    ----------
    design : NonlinearDesign
    user_priors : dict, optional
        Parsed user priors by canonical key; when nls fails, a parameter whose intercept has a user
        prior does not need a start.

    Raises
    ------
    DataError
        The expression is not finite at the starting values (the rows are named).
    SpecificationError
        nls fails without a self-start and without ``start=`` (pass ``start=`` or priors).

    Examples
    --------
    >>> import hmodels as hm
    >>> m = hm.Model("conc ~ SSfol(Dose, Time, lKe, lKa, lCl)", hm.datasets.load("theoph"),
    ...              nonlinear={"lKa": "1 + (1 || Subject)", "lCl": "1 + (1 || Subject)"})
    >>> sv = start_values(m.design)
    >>> sv.source["lKa"], round(sv.estimates["lKa"], 3), round(sv.scale("lKa"), 3)
    ('self-start SSfol', 0.399, 0.588)
    """
    nl = design.spec.nonlinear
    names = list(nl.names)
    y = _link_y(design)
    initial, source = dict.fromkeys(names, 0.0), dict.fromkeys(names, "zero")
    ss = design.self_start
    if ss is not None:
        with np.errstate(all="ignore"):
            init = ss.initial({c: np.asarray(v, dtype=float) for c, v in design.covariates.items()}, y)
        for k, v in init.items():
            if k in initial and np.isfinite(v):
                initial[k], source[k] = float(v), f"self-start {nl.self_start}"
    for k, v in nl.start:
        initial[k], source[k] = float(v), "start="
    given = any(v != "zero" for v in source.values())
    bad = ~np.isfinite(_population(design, initial))
    if bad.any() and given:
        vals = ", ".join(f"{k} = {_fmt(v)}" for k, v in initial.items())
        raise DataError(
            f"The expression {design.expression.text!r} is not finite at the starting values ({vals}) in "
            f"{row_labels(np.asarray(design.rows), bad)} of the data: check those rows (a division by a column that "
            "is 0 there, a log of a non-positive value), or pass other starting values with start={...}.")
    candidates = [initial]
    if not given:  # zeros, then two fixed spreads (zeros make e.g. exp(a) - exp(b) vanish)
        steps = 0.1 * np.arange(1, len(names) + 1)
        candidates += [dict(zip(names, steps)), dict(zip(names, -steps))]
    best, message, found = None, "", []
    for cand in candidates:
        if not np.isfinite(_population(design, cand)).all():
            at = ", ".join(f"{k} = {_fmt(v)}" for k, v in cand.items())
            message = message or f"the expression is not finite at {at}"
            continue
        res, msg = _try_nls(design, y, cand, names)
        message = msg if best is None else message
        if res is not None:
            found.append(res)
            if best is None or res[2] < best[2]:
                best, initial = res, cand
        if best is not None and given:
            break
    _warn_several_fits(found, names)
    converged = best is not None
    if initial is not candidates[0]:
        source = {k: f"{'+' if v > 0 else ''}{_fmt(v)} (zeros made the curve non-finite or nls fail)"
                  for k, v in initial.items()}
    est, ses, rsd = best if converged else (dict(initial), dict.fromkeys(names, np.nan), np.nan)
    if not converged and not given:
        covered = user_priors is not None and all(_canon(f"{k}_Intercept") in user_priors or _canon(k) in user_priors
                                                  for k in names)
        if not covered:
            raise SpecificationError(
                f"Could not find starting values for the nonlinear parameters {', '.join(names)}: nonlinear least "
                f"squares from zeros failed ({message or 'no convergence'}). Pass plausible values with "
                f"start={{{', '.join(f'{k!r}: ...' for k in names)}}}, or priors for every parameter "
                f"(e.g. priors={{'{names[0]}': hm.Normal(..., ...)}}).")
    return StartValues(initial, source, est, ses, rsd, message, converged)


def _slots(design, sv: StartValues) -> list[tuple[PriorSlot, Prior | None, str, str]]:
    """Slots with their default prior, its derivation and rationale (None: resolved as in linear models)."""
    fam = get_family(design.spec.family, design.spec.link)
    out = []
    owner = {}
    for p in design.predictors:
        sk = sv.scale(p.name)
        basis = (f"nls estimate {_fmt(sv.estimates[p.name])} (SE {_fmt(sv.ses[p.name])}) from "
                 f"{sv.source[p.name]} {_fmt(sv.initial[p.name])}" if sv.converged else
                 f"starting value {_fmt(sv.initial[p.name])} ({sv.source[p.name]}; nls did not converge)")
        for j in p.columns:
            owner[j] = p.name
            term = design.fixed_terms[j]
            keys = (term, f"b({term})", p.name)
            if term == f"{p.name}_Intercept":
                prior = Normal(round(float(sv.estimates[p.name]), 6), float(_fmt(sk)))
                note = f"loc {basis}; scale max(5 SE, |estimate|/4) = {_fmt(sk)}"
                if len(p.columns) > 1:  # sampled at its covariates' means (nonlinear.design.parameter_centring)
                    note += f"; on {p.name} at the means of its covariates"
                why = (f"The population value of {p.name} lies within a few nls-based scales of the population "
                       "curve's least-squares fit, wide enough for the data to dominate.")
                if design.self_start is not None and sv.source[p.name].startswith("self-start"):
                    why = f"{design.self_start.rationale(p.name)} {why}"
                loc = float(sv.estimates[p.name])
            else:
                sx = design.x_sds[j] if design.x_sds[j] > 0 else 1.0
                prior = Normal(0.0, float(_fmt(sk / sx)))
                note = f"scale_{p.name} {_fmt(sk)} / sd({term}) = {_fmt(sk / sx)}"
                why = f"A one-SD change in the covariate moves {p.name} by at most a few times its own prior scale."
                loc = 0.0
            slot = PriorSlot(term, "fixed", keys, "real", None, term, loc, float(prior.params["sigma"]), note)
            out.append((slot, prior, note, why))
    for f in design.factors:
        zsd = f.Z.std(axis=0)
        for j, term in enumerate(f.terms):
            k = next(p.name for p in design.predictors if j in p.terms.get(f.factor, ()))
            sk = sv.scale(k)
            if term.endswith("_Intercept"):
                s, note = sk, f"scale_{k} = {_fmt(sk)}"
            else:
                sx = zsd[j] if zsd[j] > 0 else 1.0
                s, note = sk / sx, f"scale_{k} {_fmt(sk)} / sd({term}) = {_fmt(sk / sx)}"
            slot = PriorSlot(f"sd({f.factor}, {term})", "sd", (f"sd({f.factor}, {term})", f"sd({f.factor})", "sd"),
                             "positive", f.factor, term, 0.0, s, note)
            out.append((slot, HalfNormal(float(_fmt(s))), note,
                        f"Groups differ in {k} by less than about twice its prior scale; no variation stays possible."))
        for b, cor in zip(f.blocks, f.correlated):
            if cor:
                label = (f"cor({f.factor})" if sum(f.correlated) == 1
                         else f"cor({f.factor}, {', '.join(f.terms[i] for i in b)})")
                keys = tuple(dict.fromkeys((label, f"cor({f.factor})", "cor")))
                out.append((PriorSlot(label, "cor", keys, "cor", f.factor, None, 0.0, 1.0, ""), None, "", ""))
    for a in fam.aux:
        if a == "sigma" and design.se is not None:
            continue
        aspec = fam.aux_spec(a)
        if a == "sigma" and sv.converged and np.isfinite(sv.residual_sd) and sv.residual_sd > 0:
            s = 2.0 * sv.residual_sd
            note = f"scale 2 × nls residual SD {_fmt(sv.residual_sd)} = {_fmt(s)}"
            out.append((PriorSlot(a, a, (a,), aspec.support, None, None, 0.0, s, note), HalfNormal(float(_fmt(s))),
                        note, "The residual SD is below the population curve's residual SD, which also holds the "
                              "between-group variation."))
        elif aspec.scale == "data":
            s = float(np.std(_link_y(design))) or 1.0
            out.append((PriorSlot(a, a, (a,), aspec.support, None, None, 0.0, s, f"scale sd(y) = {_fmt(s)}"),
                        None, "", ""))
        else:
            out.append((PriorSlot(a, a, (a,), aspec.support), None, "", ""))
    return out


def resolve_nonlinear_priors(design, priors=None, prior_set=None, intercept_prior: str = "centered") -> PriorTable:
    """The prior of every parameter of a nonlinear model: user priors, else the start-scaled defaults.

    Parameters
    ----------
    design : NonlinearDesign
    priors : dict, optional
        User priors by key: a term (``"lKa_Intercept"``), a parameter (``"lKa"``), or a class
        (``"sd"``, ``"sd(Subject)"``, ``"cor"``, ``"sigma"``).
    prior_set : str, optional
        Only ``"default"``: the named sets are in outcome units, which a nonlinear parameter does not have.
    intercept_prior : str
        ``"centered"`` (default): a parameter with covariates has its intercept's prior at their means (as
        sampled); ``"raw"`` is refused for such a model (a PriorError) and kept for the table otherwise.

    Returns
    -------
    PriorTable
        With ``start`` (:class:`StartValues`) attached.

    Examples
    --------
    >>> import hmodels as hm
    >>> m = hm.Model("conc ~ SSfol(Dose, Time, lKe, lKa, lCl)", hm.datasets.load("theoph"),
    ...              nonlinear={"lKa": "1 + (1 || Subject)", "lCl": "1 + (1 || Subject)"},
    ...              priors={"lCl": hm.Normal(-3, 1)})
    >>> m.priors["lKa_Intercept"].prior, m.priors["lCl_Intercept"].source
    (Normal(0.3992, 0.5877), 'user')
    """
    if isinstance(priors, str) or hasattr(priors, "__fspath__"):
        prior_set, priors = str(priors), None
    if prior_set not in (None, "default"):
        raise PriorError(
            f"The prior set {prior_set!r} is in outcome units, which the parameters of a nonlinear model do not have; "
            "nonlinear models take the start-scaled defaults and priors by key, e.g. "
            "priors={'lKa': hm.Normal(0.5, 1), 'sd': hm.HalfNormal(1)}.")
    if priors is not None and not isinstance(priors, Mapping):
        raise PriorError(f"priors must be a dict of priors by parameter key, got {type(priors).__name__}.")
    if intercept_prior not in ("centered", "raw"):
        raise PriorError(f"intercept_prior must be 'centered' or 'raw', got {intercept_prior!r}.")
    centred = [p.name for p in design.predictors if len(p.columns) > 1
               and any(design.fixed_terms[j] == f"{p.name}_Intercept" for j in p.columns)]
    if centred and intercept_prior == "raw":  # never silently put the prior elsewhere than asked
        raise PriorError(
            f"intercept_prior='raw' is not available for a nonlinear model whose parameters have covariates "
            f"({', '.join(centred)}): each such parameter's intercept is sampled, with its prior, at the means of its "
            "covariates (where the nls-based default prior is). Drop intercept_prior='raw', or write the parameter "
            "without covariates.")
    user: dict[str, Prior] = {}
    for key, value in dict(priors or {}).items():
        if not isinstance(key, str):
            raise PriorError(f"Prior keys are parameter names such as 'lKa_Intercept' or 'sd(Subject)'; got {key!r}.")
        try:
            user[_canon(key)] = from_string(value) if not isinstance(value, Prior) else value
        except PriorError as exc:
            raise PriorError(f"Prior for {key!r}: {exc}") from None
    sv = start_values(design, user)
    entries = _slots(design, sv)
    valid = {_canon(k): k for s, *_ in entries for k in s.keys}
    for key in dict(priors or {}):
        if _canon(key) not in valid:
            raise PriorError(f"Unknown prior key {key!r}: it matches no parameter of this model."
                             f"{closest(key, valid.values())} Valid keys: {', '.join(dict.fromkeys(valid.values()))}.")
    default, declared, robust = load_set("default"), _family_set(design), _robust_unit(design)
    rows = []
    for slot, prior, note, why in entries:
        hit = next((k for k in slot.keys if _canon(k) in user), None)
        if hit is not None:
            _check_support(slot, user[_canon(hit)], f"your priors[{hit!r}]")
            rows.append(ResolvedPrior(slot, user[_canon(hit)], "user", "as given"))
        elif prior is not None:
            rows.append(ResolvedPrior(slot, prior, "nonlinear start", note, why))
        else:
            rows.append(_resolve_slot(slot, {}, default, default, robust, declared))
    # a parameter with covariates has its intercept's prior at their means (parameter_centring), else as given
    table = PriorTable(rows, "centered" if centred else "raw")
    table.start = sv
    return table

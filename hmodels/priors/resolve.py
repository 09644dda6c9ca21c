"""Which prior each parameter gets, and why.

Every parameter of a model is a *slot* with the keys that can address it, most specific first
(``"sd(Subject, Days)"``, ``"sd(Subject)"``, ``"sd"``). A slot's prior comes from the first
match in: the user's priors (term key before class key) > the named set > the ``default`` set.
Set entries with ``scale = "data"`` are expressed in data units and converted here.

Data scales (gaussian-type families, identity link; ``s_y = sd(y)``, ``s_x = sd(x)``):

============================  ===========================  =====================================
parameter                      location                      scale
============================  ===========================  =====================================
Intercept (centred)            mean(y)                       s_y
Intercept (raw)                mean(y)                       s_y * sqrt(1 + sum_j (mean_j / s_j)^2)
slope of x                     0                             s_y / s_x
sd(g, Intercept)               —                             s_y
sd(g, x)                       —                             s_y / s_x
sigma                          —                             s_y
============================  ===========================  =====================================

For logit/probit/cloglog/log/inverse links the outcome unit is 1 on the link scale and the
intercept is located at the link of the mean outcome. The lognormal family's identity link is on
the log scale: its unit is ``sd(log y)`` and its intercept is located at ``mean(log y)`` (the family
maps the outcome onto the link scale: :meth:`~hmodels.families.Family.link_scale_response`). The
raw-intercept scale is the SD the centred priors imply for the raw intercept
(``b0 = b0_c - sum_j mean_j * b_j``).

The family's own parameters (``sigma``, ``nu``, ``alpha``, ``shape``, ``phi``, ``zi``, ``hu``) get one
slot each, from the family's declaration (:class:`~hmodels.families.auxiliary.AuxSpec`: support and
default prior); a prior set's entry for the parameter's name overrides the declared default, which
applies when no set has an entry (source ``"family"``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from ..errors import PriorError, closest
from ..families import AUX_SPECS, FAMILIES, get_family
from .distributions import Prior, from_string
from .sets import PriorSet, SetEntry, load_set

__all__ = ["PriorSlot", "ResolvedPrior", "PriorTable", "prior_slots", "resolve_priors"]

CLASS_KEYS = ("Intercept", "fixed", "b", "sd", "cor", "sigma", "nu", "alpha")


def class_keys() -> tuple[str, ...]:
    """Prior-set keys that name a class of parameters: a set may hold them whatever the model.

    The population-level and group-level classes, and every auxiliary parameter of the shared
    specifications and of every registered family.

    Examples
    --------
    >>> {"shape", "phi", "zi", "hu"} <= set(class_keys())
    True
    """
    aux = [*AUX_SPECS, *(a for cls in FAMILIES.values() for a in cls.aux)]
    return tuple(dict.fromkeys((*CLASS_KEYS, *aux)))


@dataclass(frozen=True)
class PriorSlot:
    """One model parameter that needs a prior."""

    param: str
    cls: str
    keys: tuple[str, ...]
    support: str
    factor: str | None = None
    term: str | None = None
    loc: float = 0.0
    scale: float = 1.0
    scale_note: str = ""
    set_keys: tuple[str, ...] = ()  # keys looked up in prior sets only (a distributional parameter's class)


@dataclass(frozen=True)
class ResolvedPrior:
    """The prior a slot got, where it came from and the data scale it was derived from."""

    slot: PriorSlot
    prior: Prior
    source: str
    derivation: str
    rationale: str = ""


class PriorTable:
    """The priors actually used by a model, one row per parameter.

    Examples
    --------
    >>> import hmodels as hm
    >>> m = hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy"))
    >>> m.priors["sigma"].source
    'default'
    """

    def __init__(self, rows: list[ResolvedPrior], intercept_prior: str):
        self.rows = rows
        self.intercept_prior = intercept_prior

    def __getitem__(self, param: str) -> ResolvedPrior:
        key = _canon(param)
        for r in self.rows:
            if _canon(r.slot.param) == key:
                return r
        raise KeyError(f"No parameter {param!r}; parameters: {', '.join(r.slot.param for r in self.rows)}")

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def to_frame(self) -> pd.DataFrame:
        """The table as a DataFrame: parameter, class, prior, source, derivation."""
        return pd.DataFrame(
            {
                "parameter": [r.slot.param for r in self.rows],
                "class": [r.slot.cls for r in self.rows],
                "prior": [repr(r.prior) for r in self.rows],
                "source": [r.source for r in self.rows],
                "derived from": [r.derivation for r in self.rows],
            }
        )

    def to_dict(self) -> dict:
        """Plain data: parameter -> prior dict plus source (for saving)."""
        return {r.slot.param: {**r.prior.to_dict(), "source": r.source, "derivation": r.derivation} for r in self.rows}

    def __repr__(self) -> str:
        # every intercept slot (a categorical model's mu<k>_Intercept, a family parameter's sigma_Intercept, ...)
        intercepts = [r.slot.param for r in self.rows if r.slot.cls == "Intercept"]
        what = "Intercept prior is" if intercepts == ["Intercept"] else "Intercept priors are"
        note = (
            f"{what} on the intercept at the predictors' means (centred)"
            if self.intercept_prior == "centered"
            else f"{what} on the raw intercept (predictors as given)"
        )
        if not intercepts:
            return f"Priors:\n{self.to_frame().to_string(index=False)}"  # no intercept (ordinal thresholds, 0 + ...)
        return f"Priors ({note}):\n{self.to_frame().to_string(index=False)}"

    def _repr_html_(self) -> str:
        return f"<p><b>Priors</b> — intercept prior: {self.intercept_prior}</p>" + self.to_frame().to_html(index=False)


def _canon(key: str) -> str:
    return "".join(str(key).split())


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def prior_slots(design, intercept_prior: str = "centered") -> list[PriorSlot]:
    """The parameters of a model that need priors, with their data scales."""
    spec = design.spec
    fam = get_family(spec.family, spec.link)
    y = design.y.astype(float)
    identity = fam.link == "identity"
    resp = spec.response
    if identity:
        on_link = fam.link_scale_response(y, resp)  # the lognormal: log(y)
        if on_link is not None:
            y, resp = on_link
        if design.offset is not None:  # the coefficients explain the outcome net of the offset
            y, resp = y - design.offset, f"{resp} - offset"
        sy = float(np.std(y, ddof=1)) if y.size > 1 else 1.0
        sy = sy if sy > 0 else 1.0
        my = float(np.mean(y))
        unit, unit_note = sy, f"sd({resp}) = {_fmt(sy)}"
        loc_note = f"mean({resp}) = {_fmt(my)}"
    else:
        unit, unit_note = 1.0, "link scale (unit 1)"
        my = _link_of_mean(fam, y, design.trials, design.offset)
        loc_note = (f"{fam.link}(mean {resp}) = {_fmt(my)}" if design.offset is None else
                    f"{fam.link}(sum {resp} / sum exp(offset)) = {_fmt(my)}" if fam.link == "log" else
                    f"{fam.link}(mean {resp}) - mean(offset) = {_fmt(my)}")
    slots: list[PriorSlot] = []
    xs = design.x_sds
    xm = design.x_means
    non_int = [j for j, t in enumerate(design.fixed_terms) if t != "Intercept"]
    for j, term in enumerate(design.fixed_terms):
        if term == "Intercept":
            if intercept_prior == "raw":
                ratio = sum((xm[k] / xs[k]) ** 2 for k in non_int if xs[k] > 0)
                scale = unit * math.sqrt(1 + ratio)
                note = f"loc {loc_note}; scale {unit_note} × {_fmt(math.sqrt(1 + ratio))} (raw intercept)"
            else:
                scale, note = unit, f"loc {loc_note}; scale {unit_note}"
            slots.append(
                PriorSlot("Intercept", "Intercept", ("Intercept",), "real", None, "Intercept", my, scale, note)
            )
            continue
        sx = xs[j] if xs[j] > 0 else max(abs(xm[j]), 1.0)
        slots.append(
            PriorSlot(term, "fixed", (term, f"b({term})", "fixed", "b"), "real", None, term, 0.0, unit / sx,
                      f"scale {unit_note} / sd({term}) = {_fmt(unit / sx)}")
        )
    for f in design.factors:
        zsd = f.Z.std(axis=0)
        for j, term in enumerate(f.terms):
            if term == "Intercept":
                scale, note = unit, f"scale {unit_note}"
            else:
                sx = zsd[j] if zsd[j] > 0 else 1.0
                scale, note = unit / sx, f"scale {unit_note} / sd({term}) = {_fmt(unit / sx)}"
            slots.append(
                PriorSlot(f"sd({f.factor}, {term})", "sd", (f"sd({f.factor}, {term})", f"sd({f.factor})", "sd"),
                          "positive", f.factor, term, 0.0, scale, note)
            )
        for b, cor in zip(f.blocks, f.correlated):
            if cor:
                label = (
                    f"cor({f.factor})"
                    if sum(f.correlated) == 1
                    else f"cor({f.factor}, {', '.join(f.terms[i] for i in b)})"
                )
                keys = tuple(dict.fromkeys((label, f"cor({f.factor})", "cor")))
                slots.append(PriorSlot(label, "cor", keys, "cor", f.factor, None, 0.0, 1.0, ""))
    if getattr(spec, "dpars", ()):  # parameters with their own formula: coefficients instead of a scalar
        slots.extend(dpar_slots(design, unit, unit_note))
    for a in fam.aux:  # the family's own parameters, as it declares them
        if a == "sigma" and design.se is not None:  # known standard errors replace sigma
            continue
        if a in dict(getattr(spec, "dpars", ())):
            continue
        aspec = fam.aux_spec(a)
        if aspec.scale == "data":
            slots.append(PriorSlot(a, a, (a,), aspec.prior_support, None, None, 0.0, unit, f"scale {unit_note}"))
        else:
            slots.append(PriorSlot(a, a, (a,), aspec.prior_support))
    return slots


def _link_of_mean(fam, y: np.ndarray, trials, offset: np.ndarray | None = None) -> float:
    """The link of the pooled mean outcome (a rate floored at 0.01, a probability kept in [0.01, 0.99]).

    Net of an offset: for a log link the pooled rate per unit of ``exp(offset)``,
    ``log(sum y / sum exp(offset))`` (the intercept of an intercept-only model with that offset);
    for other links ``link(mean) - mean(offset)``.

    Examples
    --------
    >>> from hmodels.families import get_family
    >>> fam = get_family("poisson")
    >>> round(_link_of_mean(fam, np.array([2.0, 6.0]), None, np.log([1.0, 3.0])), 6)  # log(8 / 4)
    0.693147
    """
    if fam.link == "identity":
        return 0.0
    if offset is not None and fam.link == "log":
        from scipy.special import logsumexp

        # the mean count floored at 0.01 as without an offset; logsumexp: exposures of any size
        return float(np.log(max(float(y.sum()), 1e-2 * len(y))) - logsumexp(np.asarray(offset, dtype=float)))
    p = y.sum() / trials.sum() if trials is not None else float(np.mean(y))
    if fam.link == "inverse":  # a positive mean
        p = max(p, 1e-12)
    else:
        p = max(p, 1e-2) if fam.link == "log" else min(max(p, 0.01), 0.99)
    shift = float(np.mean(offset)) if offset is not None else 0.0
    return float(fam.link_fn.link(p)) - shift


def resolve_priors(design, priors=None, prior_set: str | PriorSet | None = None,
                   intercept_prior: str = "centered") -> PriorTable:
    """Give each parameter its prior: user term > user class > named set > default set.

    Parameters
    ----------
    design : Design
    priors : dict, str or None
        User priors by key (values: prior objects or text such as ``"Normal(0, 10)"``), or the name
        or path of a prior set.
    prior_set : str or PriorSet, optional
        Named set under the user's priors (default: ``"default"``).
    intercept_prior : {"centered", "raw"}
        Whether the Intercept prior is on the intercept at the predictors' means or as given.

    Returns
    -------
    PriorTable
    """
    if intercept_prior not in ("centered", "raw"):
        raise PriorError(f"intercept_prior must be 'centered' or 'raw', got {intercept_prior!r}.")
    if isinstance(priors, (str,)) or hasattr(priors, "__fspath__"):
        if prior_set is not None:
            raise PriorError("Give the prior set either as priors='name' or prior_set='name', not both.")
        prior_set, priors = str(priors), None
    if priors is not None and not isinstance(priors, Mapping):
        raise PriorError(
            f"priors must be a dict of priors by parameter key, e.g. {{'Days': hm.Normal(0, 10), 'sd': "
            f"hm.HalfNormal(5)}}, or the name or path of a prior set, e.g. 'weakly-informative'; got "
            f"{type(priors).__name__} {_short(priors)}."
        )
    if prior_set is not None and not isinstance(prior_set, (str, PriorSet)) and not hasattr(prior_set, "__fspath__"):
        raise PriorError(
            f"prior_set must be the name or path of a prior set, e.g. 'weakly-informative'; got "
            f"{type(prior_set).__name__} {_short(prior_set)}."
        )
    user = dict(priors or {})
    for key in user:
        if not isinstance(key, str):
            raise PriorError(f"Prior keys are parameter names such as 'Days' or 'sd(Subject)'; got {key!r}.")
    named = prior_set if isinstance(prior_set, PriorSet) else load_set(prior_set or "default")
    default = named if named.name == "default" and prior_set in (None, "default") else load_set("default")
    slots = prior_slots(design, intercept_prior)
    valid = {_canon(k): k for s in slots for k in s.keys}
    parsed: dict[str, Prior] = {}
    for key, value in user.items():
        ck = _canon(key)
        if ck not in valid:
            raise PriorError(
                f"Unknown prior key {key!r}: it matches no parameter of this model.{closest(key, valid.values())} "
                f"Valid keys: {', '.join(dict.fromkeys(valid.values()))}."
            )
        try:
            parsed[ck] = from_string(value) if not isinstance(value, Prior) else value
        except PriorError as exc:
            raise PriorError(f"Prior for {key!r}: {exc}") from None
    known_classes = class_keys()
    for key in named.entries:
        if _canon(key) not in valid and key not in known_classes:
            raise PriorError(
                f"Prior set {named.name!r} ({named.path}) has key {key!r}, which matches no parameter of this "
                f"model.{closest(key, valid.values())}"
            )
    rows = []
    robust = _robust_unit(design)
    declared = _family_set(design)
    for slot in slots:
        row = _resolve_slot(slot, parsed, named, default, robust, declared)
        _check_width(row)
        rows.append(row)
    return PriorTable(rows, intercept_prior)


def _family_set(design) -> PriorSet:
    """The family's declared defaults for its own parameters, as a prior set (the last resort)."""
    fam = get_family(design.spec.family, design.spec.link)
    entries = {}
    for a in fam.aux:
        aspec = fam.aux_spec(a)
        entries[a] = SetEntry(a, aspec.default_prior, aspec.scale, aspec.rationale)
    return PriorSet(f"family {fam.name}", f"declared by the {fam.name} family", entries, "")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# A Uniform prior is sampled through a logistic transform over (lower, upper): wider than this many
# data-scale units, the sampler's unconstrained scale resolves the parameter too coarsely and its
# gradients are too steep (nutpie fails to initialise, or returns wrong draws without divergences).
MAX_UNIFORM_WIDTH = 1e6


def _check_width(row: ResolvedPrior) -> None:
    """Refuse a Uniform prior so wide, relative to the parameter's data scale, that sampling breaks."""
    prior, slot = row.prior, row.slot
    if prior.name != "Uniform":
        return
    lo, hi = prior.params["lower"], prior.params["upper"]
    unit = slot.scale if slot.scale > 0 and math.isfinite(slot.scale) else 1.0
    if (hi - lo) > MAX_UNIFORM_WIDTH * unit:
        where = {"user": "your priors", "default": "the default prior set"}.get(row.source, f"prior {row.source}")
        better = (f"hm.Normal({_fmt(slot.loc if slot.cls == 'Intercept' else 0.0)}, {_fmt(100 * unit)})"
                  if slot.support == "real" else f"hm.HalfNormal({_fmt(100 * unit)})")
        raise PriorError(
            f"The prior {prior!r} for {slot.param} (from {where}) is too wide to sample: it spans "
            f"{_fmt((hi - lo) / unit)} times the parameter's data scale ({slot.scale_note or _fmt(unit)}), more "
            f"than the {MAX_UNIFORM_WIDTH:g} the sampler can resolve. A flat prior this wide is not 'uninformative', "
            f"it breaks the sampler. Use bounds that could plausibly hold the value, or a wide proper prior such as "
            f"{better}."
        )


def _robust_unit(design) -> tuple[float, float, str]:
    """brms's response-level location and scale for ``scale = "mad"`` entries.

    ``(round(median(link(y)), 1), round(mad(link(y)), 1), note)`` for identity and log links
    (zeros become 0.1 before the log, as brms), and for the inverse link of positive families
    (``1/y``); the lognormal's on ``log y`` (brms's log-scale families); ``(0, 0, note)`` for other
    links, where brms uses its fixed defaults (the entry's ``min_scale``).
    """
    spec = design.spec
    fam = get_family(spec.family, spec.link)
    y = np.asarray(design.y, dtype=float)
    resp = spec.response
    on_link = fam.link_scale_response(y, resp) if fam.link in ("identity", "log", "inverse") and y.size else None
    if on_link is not None:
        y, resp = on_link
    elif fam.link not in ("identity", "log") or y.size == 0:
        return 0.0, 0.0, f"{fam.link} link: no data scale (brms uses fixed defaults)"
    elif fam.link == "log":
        y = np.log(np.where(y == 0, y + 0.1, y))
        resp = f"log({resp})"
    med = float(np.median(y))
    mad = 1.4826 * float(np.median(np.abs(y - med)))  # R's mad(): scaled to the SD for normal data
    loc, unit = round(med, 1), round(mad, 1)
    return loc, unit, f"median({resp}) = {_fmt(loc)}, mad({resp}) = {_fmt(unit)}"


def _resolve_slot(slot: PriorSlot, user: dict, named: PriorSet, default: PriorSet,
                  robust: tuple[float, float, str] = (0.0, 0.0, ""), declared: PriorSet | None = None) -> ResolvedPrior:
    for key in slot.keys:
        if _canon(key) in user:
            prior = user[_canon(key)]
            _check_support(slot, prior, f"your priors[{key!r}]")
            return ResolvedPrior(slot, prior, "user", "as given")
    sources = [("set " + named.name, named), ("default", default)]
    if declared is not None:
        sources.append(("family", declared))
    for source, pset in sources:
        for key in (*slot.keys, *slot.set_keys):
            entry = pset.entries.get(key)
            if entry is None:
                continue
            if slot.set_keys and entry.scale == "mad" and slot.support != "cor":  # a dpar: link-scale units
                entry = replace(entry, scale="data")
            if entry.scale == "mad" and slot.support != "cor":
                unit = max(entry.min_scale, robust[1])
                prior = entry.prior.scaled(unit) if unit > 0 else entry.prior
                derivation = f"{entry.prior!r} × max({_fmt(entry.min_scale)}, mad) with {robust[2]}"
                if slot.cls == "Intercept":
                    prior = _shift(prior, robust[0])
                    derivation += f"; located at median = {_fmt(robust[0])}"
            elif entry.scale == "data" and slot.support != "cor":
                prior = entry.prior.scaled(slot.scale)
                if slot.cls == "Intercept":
                    prior = _shift(prior, slot.loc)
                derivation = f"{entry.prior!r} × data scale: {slot.scale_note}"
            else:
                prior, derivation = entry.prior, "as written"
            _check_support(slot, prior, f"prior set {pset.name!r} key {key!r}")
            label = "default" if pset.name == "default" and source == "default" else source
            if pset.name == "default":
                label = "default"
            if source == "family":
                derivation = f"declared by the family ({derivation})"
            return ResolvedPrior(slot, prior, label, derivation, entry.rationale)
    raise PriorError(f"No prior for {slot.param!r}: the default set has no entry for class {slot.cls!r}.")


def _shift(prior: Prior, loc: float) -> Prior:
    vals = prior.params
    for name in ("mu", "alpha"):
        if name in vals and prior.support == "real":
            vals[name] = vals[name] + loc
            return type(prior)(**vals)
    if prior.name == "Uniform":
        return type(prior)(vals["lower"] + loc, vals["upper"] + loc)
    return prior


def _check_support(slot: PriorSlot, prior: Prior, where: str) -> None:
    need = slot.support
    if need == "unit":
        lo, hi = (prior.params["lower"], prior.params["upper"]) if prior.name == "Uniform" else (None, None)
        if prior.support != "unit" and not (lo is not None and lo >= 0 and hi <= 1):
            raise PriorError(
                f"{where}: {slot.param} is a probability in (0, 1) and needs a prior on (0, 1) such as hm.Beta(1, 1) "
                f"(uniform) or hm.Beta(1, 4) (favouring small values), not {prior!r}."
            )
        return
    if prior.support == "unit":
        raise PriorError(
            f"{where}: {prior!r} is a prior for probabilities in (0, 1) (such as zi and hu); {slot.param} is not a "
            f"probability and needs a prior on {'positive numbers' if need == 'positive' else 'the real line'}."
        )
    if need == "cor" and prior.support != "cor":
        raise PriorError(
            f"{where}: {slot.param} is a correlation matrix and needs an LKJ prior such as hm.LKJ(2), not {prior!r}."
        )
    if need != "cor" and prior.support == "cor":
        raise PriorError(f"{where}: {prior!r} is for correlation matrices; {slot.param} needs a prior on numbers.")
    if need == "positive" and prior.support != "positive":
        sugg = (
            f"hm.Half{prior.name}({prior.params.get('sigma', 1):g})"
            if prior.name in ("Normal", "Cauchy", "StudentT")
            else "hm.HalfNormal(1)"
        )
        if prior.name == "Cauchy":
            sugg = f"hm.HalfCauchy({prior.params['beta']:g})"
        if prior.name == "StudentT":
            sugg = f"hm.HalfStudentT({prior.params['nu']:g}, {prior.params['sigma']:g})"
        raise PriorError(
            f"{where}: {slot.param} must be positive, but {prior!r} puts mass on negative values. Use a prior on "
            f"positive values such as {sugg}."
        )


# -- distributional parameters with their own formulas (their designs: hmodels.dpars / hmodels.design)
def dpar_slots(design, unit: float, unit_note: str) -> list:
    """Prior slots of the distributional parameters' coefficients, group SDs and correlations.

    Examples
    --------
    >>> import hmodels as hm
    >>> m = hm.Model("Reaction ~ Days", hm.datasets.load("sleepstudy"), dpars={"sigma": "Days"})
    >>> [(s.param, s.set_keys) for s in dpar_slots(m.design, 56.2, "sd(Reaction) = 56.2")]
    [('sigma_Intercept', ('Intercept',)), ('sigma_Days', ('fixed',))]
    """
    fam = get_family(design.spec.family, design.spec.link)
    slots = []
    for name, dd in (getattr(design, "dpars", None) or {}).items():
        aspec = fam.aux_spec(name)
        link = dd.link
        if aspec.support == "positive" and aspec.scale == "data":
            loc = math.log(unit)
            loc_note = f"log({unit_note.split(' = ')[0]}) = {_fmt(loc)}"
        else:
            loc, loc_note = 0.0, f"{link}({'1' if link == 'log' else '0.5'}) = 0"
        for j, term in enumerate(dd.fixed_terms):
            if term == f"{name}_Intercept":
                slots.append(PriorSlot(term, "Intercept", (term,), "real", None, term, loc, 1.0,
                                       f"loc {loc_note}; scale {link} link of {name} (unit 1)",
                                       set_keys=("Intercept",)))
                continue
            sx = dd.x_sds[j] if dd.x_sds[j] > 0 else max(abs(dd.x_means[j]), 1.0)
            raw = term[len(name) + 1:]
            slots.append(PriorSlot(term, "fixed", (term, f"b({term})"), "real", None, term, 0.0, 1.0 / sx,
                                   f"scale {link} link of {name} (unit 1) / sd({raw}) = {_fmt(1.0 / sx)}",
                                   set_keys=("fixed",)))
        for f in dd.factors:
            g = dd.origin[f.factor]
            zsd = f.Z.std(axis=0)
            for j, term in enumerate(f.terms):
                sx = 1.0 if term == f"{name}_Intercept" or zsd[j] <= 0 else zsd[j]
                note = f"scale {link} link of {name} (unit 1)" + ("" if sx == 1.0 else f" / sd = {_fmt(1 / sx)}")
                slots.append(PriorSlot(f"sd({g}, {term})", "sd", (f"sd({g}, {term})",), "positive", f.factor,
                                       term, 0.0, 1.0 / sx, note, set_keys=("sd",)))
            n_cor = sum(f.correlated)
            for b, cor in zip(f.blocks, f.correlated):
                if cor:
                    label = f"cor({f.factor})" if n_cor == 1 else f"cor({f.factor}, {', '.join(f.terms[i] for i in b)})"
                    slots.append(PriorSlot(label, "cor", (label,), "cor", f.factor, None, 0.0, 1.0, "",
                                           set_keys=("cor",)))
    return slots

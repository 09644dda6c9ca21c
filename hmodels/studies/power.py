"""Power and design analysis by simulation: how often a planned study reaches its decision.

For every design cell (number of groups x rows per group) and replicate, :func:`power` builds the
planned data set (a ``design`` callable or a template), simulates the outcome from the assumed
effects and variances (:func:`hmodels.simulate`), fits the model — by REML / ML (:func:`~hmodels.
studies.pointfit.point_fit`; t intervals with Satterthwaite's degrees of freedom for gaussian models,
as lmerTest, Wald z intervals for GLMMs) or by NUTS with its priors — and applies the
decision rule to each tested effect. Per cell and effect it reports

- **power**: the share of replicates where the decision is reached, with its Monte-Carlo SE
  ``sqrt(p (1 - p) / R)``;
- **mean width** of the interval;
- **type S** error (Gelman & Carlin 2014): among decisive replicates, the share whose estimate has
  the wrong sign; **type M**: their mean exaggeration ``|estimate| / |truth|``;
- **failures** (fits that raised an error, left out of the power) and fits that did not converge
  or were singular (kept, and counted).

**Assurance** (O'Hagan, Stevens & Campbell 2005): with ``design_prior={"treat": dist}`` each
replicate first draws its true effect (or SD, or any other parameter) from the design prior, so the
share of decisive replicates estimates the power averaged over that prior, ``E[power(delta)]``; the
table then reports ``assurance`` (with its Monte-Carlo SE) instead of ``power``. The draws come from
a random stream of their own, so a point-mass design prior reproduces :func:`power` exactly.

Decision rules: ``"interval excludes 0"`` (the ``prob`` interval: t / Wald for point fits, central
posterior interval for Bayesian fits), ``"P(effect>0)>0.975"`` (any direction, threshold and
level; for point fits ``F((estimate - c) / se)`` with the t(df) or normal ``F``), or ``"rope"`` (the
interval lies entirely outside ``rope=(low, high)``).
"""

from __future__ import annotations

import hashlib
import re
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from itertools import product

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import SpecificationError
from ._dask import quiet, run_tasks
from ._settings import check_fit_kwargs
from .params import parse_params
from .simulate import call_design, design_for, refuse_categorical, simulate_outcome, with_outcome

__all__ = ["power", "PowerResult", "parse_decision", "FITS"]

FITS = ("reml", "ml", "bayes")
_PROB = re.compile(r"^\s*P\s*\(\s*effect\s*([<>])\s*(-?[0-9.eE+-]+)\s*\)\s*>\s*([0-9.]+)\s*$")
_EXCLUDES = re.compile(r"^\s*interval\s+excludes\s+(-?[0-9.eE+-]+)\s*$")


def parse_decision(decision: str, rope=None) -> dict:
    """Read a decision rule into plain data.

    Examples
    --------
    >>> parse_decision("P(effect>0)>0.975")
    {'kind': 'prob', 'direction': '>', 'threshold': 0.0, 'level': 0.975}
    >>> parse_decision("interval excludes 0")
    {'kind': 'excludes', 'value': 0.0}
    """
    if not isinstance(decision, str):
        raise SpecificationError(f"decision must be a string, got {type(decision).__name__}.")
    m = _EXCLUDES.match(decision)
    if m:
        return {"kind": "excludes", "value": float(m.group(1))}
    m = _PROB.match(decision)
    if m:
        level = float(m.group(3))
        if not 0 < level < 1:
            raise SpecificationError(f"The probability level in {decision!r} must lie in (0, 1).")
        return {"kind": "prob", "direction": m.group(1), "threshold": float(m.group(2)), "level": level}
    if decision.strip().lower() == "rope":
        if rope is None or len(rope) != 2 or not rope[0] < rope[1]:
            raise SpecificationError("decision='rope' needs rope=(low, high) with low < high: the region of "
                                     "practical equivalence on the effect's scale.")
        return {"kind": "rope", "low": float(rope[0]), "high": float(rope[1])}
    raise SpecificationError(
        f"Unknown decision {decision!r}. Use 'interval excludes 0', 'P(effect>0)>0.975' (any direction, "
        "threshold and level) or 'rope' with rope=(low, high)."
    )


def _decide(rule: dict, lower: float, upper: float, p_dir: float) -> bool:
    if rule["kind"] == "excludes":
        return bool(lower > rule["value"] or upper < rule["value"])
    if rule["kind"] == "prob":
        return bool(p_dir > rule["level"])
    return bool(lower > rule["high"] or upper < rule["low"])


def _p_direction(rule: dict, est: float, se: float, draws: np.ndarray | None, df: float = np.nan) -> float:
    """P(effect > threshold): the share of posterior draws, or from the point fit's t (Satterthwaite df) or z."""
    if rule["kind"] != "prob":
        return np.nan
    c = rule["threshold"]
    if draws is not None:
        p = float(np.mean(draws > c))
    elif se > 0:
        z = (c - est) / se
        p = float(stats.t.sf(z, df)) if np.isfinite(df) else float(stats.norm.sf(z))
    else:
        p = float(est > c)
    return p if rule["direction"] == ">" else 1.0 - p


# ------------------------------------------------------------------------------------------------
# one replicate (runs on a Dask worker)
# ------------------------------------------------------------------------------------------------
def _fit_effects(shared, design, seed):
    """(estimates, se, lower, upper, draws per tested effect, df, converged, singular) of one simulated data set.

    Point fits of gaussian models use Satterthwaite's degrees of freedom (t intervals, as lmerTest):
    with few clusters the Wald z interval is too narrow and overstates power.
    """
    from ..spec import ModelSpec

    tested, prob, fit = shared["test"], shared["prob"], shared["fit"]
    terms = list(design.fixed_terms)
    idx = [terms.index(t) for t in tested]
    if fit in ("reml", "ml"):
        from .pointfit import point_fit

        pf = point_fit(design, fit, polish=False, component_se=True)
        fe = pf.fixed_effects(prob)
        est, se = fe["estimate"].to_numpy()[idx], fe["se"].to_numpy()[idx]
        lo, hi = fe["lower"].to_numpy()[idx], fe["upper"].to_numpy()[idx]
        return est, se, lo, hi, [None] * len(idx), fe["df"].to_numpy()[idx], pf.converged, pf.singular
    from ..model import Model

    model = Model(ModelSpec.from_dict(shared["spec"]), design.data, priors=shared["priors"])
    with quiet():
        f = model.fit(seed=seed, progressbar=False, **shared["fit_kwargs"])
    b = np.asarray(f.draws["b"].transpose("chain", "draw", "term").values, dtype=float)
    sel = b[..., idx]
    flat = sel.reshape(-1, len(idx))
    a = (1 - prob) / 2
    lo, hi = np.quantile(flat, a, axis=0), np.quantile(flat, 1 - a, axis=0)
    import arviz as az

    with quiet(), np.errstate(all="ignore"):
        rhat = max(float(az.rhat(sel[..., j])) for j in range(len(idx))) if sel.shape[0] > 1 else 1.0
    converged = f.divergences == 0 and (not np.isfinite(rhat) or rhat <= 1.05)
    return (flat.mean(axis=0), flat.std(axis=0), lo, hi, [flat[:, j] for j in range(len(idx))],
            np.full(len(idx), np.nan), converged, False)


def _draw_design_prior(design_prior: dict, entropy: int, cell: int, rep: int) -> dict[str, float]:
    """One draw of every design-prior parameter, from a random stream of its own (labels in sorted order)."""
    if not design_prior:
        return {}
    rng = np.random.default_rng(np.random.SeedSequence([entropy, cell, rep, 1]))
    return {k: float(np.asarray(design_prior[k].rvs(random_state=rng)).ravel()[0]) for k in sorted(design_prior)}


def _replicate(shared: dict, cell: int, n_groups, n_per_group, rep: int) -> pd.DataFrame:
    ss = np.random.SeedSequence([shared["entropy"], cell, rep])
    rng = np.random.default_rng(ss)
    seed = int(ss.generate_state(1)[0] % (2**31 - 1))
    rule = shared["rule"]
    t0 = time.perf_counter()
    tested = shared["test"]
    values = {**shared["values"], **_draw_design_prior(shared.get("design_prior") or {}, shared["entropy"], cell,
                                                       rep)}
    truth = {t: float(values.get(t, 0.0)) for t in tested}
    error = ""
    try:
        from ..spec import ModelSpec

        spec = ModelSpec.from_dict(shared["spec"])
        df = call_design(shared["design"], n_groups, n_per_group, rng, shared["group"])
        design = design_for(spec, df)
        params = parse_params(design, values, fill={"fixed": 0.0, "cor": 0.0}, what="effects/variances")
        y, _ = simulate_outcome(design, params, rng)
        design = with_outcome(design, y)
        est, se, lo, hi, draws, df, converged, singular = _fit_effects(shared, design, seed)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
        nan = np.full(len(tested), np.nan)
        est, se, lo, hi, draws, df, converged, singular = nan, nan, nan, nan, [None] * len(tested), nan, False, False
    seconds = time.perf_counter() - t0
    rows = []
    for j, t in enumerate(tested):
        p_dir = _p_direction(rule, est[j], se[j], draws[j], df[j]) if not error else np.nan
        rows.append({
            "cell": int(cell), "n_groups": np.nan if n_groups is None else float(n_groups),
            "n_per_group": np.nan if n_per_group is None else float(n_per_group), "replicate": int(rep),
            "effect": t, "truth": truth[t], "estimate": float(est[j]), "se": float(se[j]), "lower": float(lo[j]),
            "upper": float(hi[j]), "p_direction": p_dir,
            "decision": bool(_decide(rule, lo[j], hi[j], p_dir)) if not error else False,
            "converged": bool(converged), "singular": bool(singular), "error": error, "seconds": seconds,
        })
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------
# the result
# ------------------------------------------------------------------------------------------------
@dataclass
class PowerResult:
    """The outcome of :func:`power`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per design cell and tested effect: ``n_groups``, ``n_per_group``, ``effect``,
        ``truth``, ``reps``, ``power``, ``mcse``, ``mean_width``, ``type_s``, ``type_m``,
        ``failures``, ``not_converged``, ``singular``. With a design prior, ``assurance``
        replaces ``power`` and ``truth`` is the mean of the replicates' drawn truths.
    replicates : pandas.DataFrame
        One row per replicate and effect (its truth, estimate, interval, decision, ...).
    settings : dict
    """

    table: pd.DataFrame
    replicates: pd.DataFrame
    settings: dict = field(default_factory=dict)

    @property
    def _measure(self) -> str:
        return "assurance" if "assurance" in self.table.columns else "power"

    def __repr__(self) -> str:
        cols = ["n_groups", "n_per_group", "effect", self._measure, "mcse", "mean_width", "type_s", "type_m",
                "failures"]
        return (f"hmodels.PowerResult ({self.settings.get('decision')}, {self.settings.get('fit')} fits, "
                f"{self.settings.get('reps')} replicates per cell)\n{self.table[cols].round(3).to_string(index=False)}")

    def _repr_html_(self) -> str:
        return self.table.round(3).to_html(index=False)

    def plot(self, effect: str | None = None, target: float | None = 0.8):
        """Power curves with ±2 Monte-Carlo SE: power against the number of groups, one line per group size.

        Returns
        -------
        matplotlib.figure.Figure

        Examples
        --------
        >>> fig = result.plot()  # doctest: +SKIP
        """
        import matplotlib.pyplot as plt

        t = self.table
        effect = effect or str(t["effect"].iloc[0])
        t = t[t["effect"] == effect]
        x_col, line_col = "n_groups", "n_per_group"
        if t["n_groups"].nunique() <= 1 and t["n_per_group"].nunique() > 1:
            x_col, line_col = "n_per_group", "n_groups"
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        for val, g in t.groupby(line_col, dropna=False):
            g = g.sort_values(x_col)
            ax.errorbar(g[x_col], g[self._measure], yerr=2 * g["mcse"], marker="o", capsize=3,
                        label=f"{line_col.replace('_', ' ')} = {val:g}" if pd.notna(val) else None)
        if target is not None:
            ax.axhline(target, color="0.5", ls="--", lw=0.8)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(x_col.replace("_", " "))
        ax.set_ylabel(self._measure)
        ax.set_title(f"{effect}: {self.settings.get('decision')}")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        fig.tight_layout()
        return fig


def _summarise(reps: pd.DataFrame, cells: list, tested: list[str], R: int, measure: str = "power") -> pd.DataFrame:
    rows = []
    for ci, (G, m) in enumerate(cells):
        for t in tested:
            r = reps[(reps["cell"] == ci) & (reps["effect"] == t)]
            ok = r[r["error"].astype(str) == ""]
            n_ok = len(ok)
            p = float(ok["decision"].mean()) if n_ok else np.nan
            truth = float(r["truth"].mean()) if len(r) else np.nan
            # type S / M against each replicate's own truth (they differ under a design prior)
            sig = ok[ok["decision"] & (ok["truth"] != 0) & np.isfinite(ok["truth"])]
            if len(sig):
                type_s = float((np.sign(sig["estimate"]) != np.sign(sig["truth"])).mean())
                type_m = float((sig["estimate"].abs() / sig["truth"].abs()).mean())
            else:
                type_s = type_m = np.nan
            rows.append({
                "n_groups": G, "n_per_group": m, "effect": t, "truth": truth, "reps": len(r), measure: p,
                "mcse": float(np.sqrt(p * (1 - p) / n_ok)) if n_ok else np.nan,
                "mean_width": float((ok["upper"] - ok["lower"]).mean()) if n_ok else np.nan,
                "type_s": type_s, "type_m": type_m, "failures": int(len(r) - n_ok),
                "not_converged": int((~ok["converged"].astype(bool)).sum()),
                "singular": int(ok["singular"].astype(bool).sum()),
            })
    return pd.DataFrame(rows)


def _as_list(v, name):
    if v is None:
        return [None]
    vals = list(v) if isinstance(v, (list, tuple, np.ndarray, range)) else [v]
    for x in vals:
        if not isinstance(x, (int, np.integer)) or isinstance(x, bool) or x < 1:
            raise SpecificationError(f"{name} must be positive integers, got {x!r}.")
    return [int(x) for x in vals]


def power(formula, design: Callable | pd.DataFrame, effects: Mapping, variances: Mapping, n_groups=None,
          n_per_group=None, reps: int = 200, decision: str = "interval excludes 0", prob: float = 0.95, rope=None,
          fit: str = "reml", family: str = "gaussian", link: str | None = None, priors=None, test=None,
          design_prior: Mapping | None = None, seed: int | None = None, client=None, scheduler: str | None = None,
          resume=None, progressbar: bool = False, **fit_kwargs) -> PowerResult:
    """Power, interval width and type S / M errors of a planned study, by simulation over a grid of designs.

    Parameters
    ----------
    formula : str or ModelSpec
        The analysis model, e.g. ``"y ~ treat + (1 | cluster)"``.
    design : callable or pandas.DataFrame
        ``design(n_groups, n_per_group) -> DataFrame`` of predictors and grouping columns (it
        also receives ``rng=`` when it takes one; :func:`hmodels.design_grid` builds common
        ones), or a template DataFrame whose groups and rows are cycled to each cell's size
        (unchanged when ``n_groups`` and ``n_per_group`` are omitted).
    effects : dict
        True fixed effects by term (``{"treat": 0.5}``); terms not given are 0 (``Intercept`` included).
    variances : dict
        True SDs, correlations and family parameters by the labels of a Fit's tables
        (``{"sd(cluster)": 0.3, "sigma": 1.0}``); correlations not given are 0.
    n_groups, n_per_group : int or list of int
        The grid of design cells (every combination).
    reps : int
        Replicates per cell.
    decision : str
        ``"interval excludes 0"``, ``"P(effect>0)>0.975"`` or ``"rope"`` (with ``rope=``).
    prob : float
        Interval probability.
    fit : {"reml", "ml", "bayes"}
        Point fits (``"ml"`` is the Laplace approximation for GLMMs) or NUTS (``model.fit``
        with ``priors`` and ``**fit_kwargs``, e.g. ``draws=500, chains=2``).
    family, link : str
    priors : optional
        Priors of the Bayesian fits (as for :class:`~hmodels.model.Model`).
    test : list of str, optional
        Effects to test (default: the keys of ``effects`` except ``Intercept``).
    design_prior : dict, optional
        Assurance: ``{label: distribution}`` (an :mod:`hmodels.priors` object such as
        ``hm.Normal(0.5, 0.2)`` or a frozen ``scipy.stats`` distribution) for any label of
        ``effects`` or ``variances``; each replicate draws its true value from it, and the table
        reports ``assurance``, the power averaged over the design prior, with its Monte-Carlo SE.
        Use a positive distribution for SDs.
    seed : int, optional
        Replicate (cell, i) depends on (seed, cell, i) only.
    client, scheduler, resume, progressbar :
        Where the replicates run and where their results stream, as for :func:`hmodels.sbc`.

    Returns
    -------
    PowerResult
        ``.table`` per cell and effect, ``.replicates``, ``.plot()``.

    Examples
    --------
    >>> import hmodels as hm
    >>> crt = lambda G, m: hm.design_grid(G, m, group="cluster", between={"treat": [0, 1]})
    >>> res = hm.power("y ~ treat + (1 | cluster)", crt, effects={"treat": 0.8},
    ...                variances={"sd(cluster)": 0.3, "sigma": 1.0}, n_groups=[10], n_per_group=[5],
    ...                reps=20, seed=1)
    >>> res.table[["n_groups", "n_per_group", "effect", "reps"]]
       n_groups  n_per_group effect  reps
    0        10            5  treat    20

    Assurance: the true effect is uncertain, ``Normal(0.8, 0.3)``:

    >>> res = hm.power("y ~ treat + (1 | cluster)", crt, effects={"treat": 0.8},
    ...                variances={"sd(cluster)": 0.3, "sigma": 1.0}, n_groups=[10], n_per_group=[5],
    ...                design_prior={"treat": hm.Normal(0.8, 0.3)}, reps=20, seed=1)
    >>> "assurance" in res.table.columns
    True
    """
    from ..formula import parse_formula
    from ..spec import ModelSpec

    if isinstance(formula, str):
        spec = parse_formula(formula, family=family, link=link)
    elif isinstance(formula, ModelSpec):
        spec = formula
    else:
        raise SpecificationError(f"power needs a formula string or a ModelSpec, got {type(formula).__name__}.")
    refuse_categorical(spec)  # its outcome cannot be simulated yet: every replicate would fail
    fit = str(fit).lower()
    if fit not in FITS:
        raise SpecificationError(f"fit must be one of {', '.join(map(repr, FITS))}, got {fit!r}.")
    if fit == "reml" and not (spec.family == "gaussian" and spec.link == "identity"):
        raise SpecificationError(f"REML fits need a gaussian model; for this {spec.family} model use fit='ml' "
                                 "(Laplace) or fit='bayes'.")
    if not isinstance(reps, (int, np.integer)) or isinstance(reps, bool) or reps < 1:
        raise SpecificationError(f"reps must be a positive integer, got {reps!r}.")
    if not 0 < prob < 1:
        raise SpecificationError(f"prob must lie in (0, 1), got {prob!r}.")
    rule = parse_decision(decision, rope)
    for name, m in (("effects", effects), ("variances", variances)):
        if not isinstance(m, Mapping):
            raise SpecificationError(f"{name} must be a dict by parameter label, got {type(m).__name__}.")
    values = {**dict(effects), **dict(variances)}
    dprior = _design_prior(design_prior)
    gs, ms = _as_list(n_groups, "n_groups"), _as_list(n_per_group, "n_per_group")
    if isinstance(design, pd.DataFrame):
        pass
    elif not callable(design):
        raise SpecificationError("design must be a callable (n_groups, n_per_group) -> DataFrame or a template "
                                 f"DataFrame, got {type(design).__name__}.")
    elif None in gs or None in ms:
        raise SpecificationError("With a design callable, give n_groups and n_per_group (the grid of cells).")
    group = spec.groups[0].columns[0] if spec.groups and len(spec.groups[0].columns) == 1 else None
    # check the whole setup on the first cell, here, before any task runs
    df0 = call_design(design, gs[0], ms[0], np.random.default_rng(0), group)
    d0 = design_for(spec, df0)
    parse_params(d0, values, fill={"fixed": 0.0, "cor": 0.0}, what="effects/variances")
    if dprior:
        unknown = [k for k in dprior if k not in values]
        if unknown:
            raise SpecificationError(
                f"design_prior gives {', '.join(map(repr, unknown))}, which is not among effects or variances "
                f"({', '.join(map(repr, values))}); give it there too (its value is then drawn from the design prior)."
            )
        parse_params(d0, {**values, **_draw_design_prior(dprior, 0, 0, 0)}, fill={"fixed": 0.0, "cor": 0.0},
                     what="effects/variances drawn from design_prior")
    tested = [t for t in effects if t != "Intercept"] if test is None else list(test)
    unknown = [t for t in tested if t not in d0.fixed_terms]
    if unknown or not tested:
        raise SpecificationError(
            f"Effects to test must be population-level terms of the model ({', '.join(d0.fixed_terms)}); "
            + (f"got {', '.join(map(repr, unknown))}." if unknown
               else "none was given (effects has only the Intercept).")
        )
    cells = list(product(gs, ms))
    entropy = int(np.random.SeedSequence(seed).entropy) if seed is None else int(seed)
    if fit == "bayes":
        fit_kwargs = {"draws": 500, "tune": 500, "chains": 2, **fit_kwargs}
        check_fit_kwargs({**fit_kwargs, "seed": 1}, "power")
    elif fit_kwargs:
        raise SpecificationError(f"{', '.join(map(repr, fit_kwargs))}: sampler settings apply to fit='bayes' only; "
                                 f"fit={fit!r} uses point fits. Remove them, or use fit='bayes'.")
    design_id = (hashlib.sha256(pd.util.hash_pandas_object(design, index=False).values.tobytes()).hexdigest()[:16]
                 if isinstance(design, pd.DataFrame) else getattr(design, "__qualname__", repr(design)))
    config = {"spec": spec.to_dict(), "values": {k: repr(v) for k, v in values.items()}, "cells": cells,
              "reps": int(reps), "rule": rule, "prob": prob, "fit": fit, "test": tested, "seed": entropy,
              "priors": repr(priors), "fit_kwargs": fit_kwargs, "design": design_id,
              "design_prior": {k: _describe(v) for k, v in dprior.items()}}
    shared = {"spec": spec.to_dict(), "design": design, "group": group, "values": values, "rule": rule,
              "prob": prob, "fit": fit, "test": tested, "entropy": entropy, "priors": priors,
              "fit_kwargs": fit_kwargs, "design_prior": dprior}
    if seed is None:
        warnings.warn(f"power: no seed given; this study's seed is {entropy} (pass seed={entropy} to reproduce or "
                      "resume it).", UserWarning, stacklevel=2)
    tasks = [((ci, r), (ci, G, m, r)) for ci, (G, m) in enumerate(cells) for r in range(int(reps))]
    rows = run_tasks(_replicate, tasks, kind="power", config=config, key_columns=["cell", "replicate"],
                     client=client, scheduler=scheduler, resume=resume, progressbar=progressbar, shared=shared)
    table = _summarise(rows, cells, tested, int(reps), "assurance" if dprior else "power")
    return PowerResult(table=table, replicates=rows, settings={
        "decision": decision, "fit": fit, "reps": int(reps), "prob": prob, "seed": entropy, "cells": cells,
        "design_prior": {k: _describe(v) for k, v in dprior.items()}})


def _design_prior(design_prior) -> dict:
    """``{label: frozen scipy distribution}`` from hmodels priors or scipy distributions; typed errors otherwise."""
    if design_prior is None:
        return {}
    if not isinstance(design_prior, Mapping) or not design_prior:
        raise SpecificationError("design_prior must be a dict {label: distribution}, e.g. "
                                 "{'treat': hm.Normal(0.5, 0.2)}.")
    out = {}
    for k, d in design_prior.items():
        if hasattr(d, "scipy") and callable(d.scipy):
            d = d.scipy()
        if not callable(getattr(d, "rvs", None)):
            raise SpecificationError(
                f"design_prior[{k!r}] must be an hmodels prior (hm.Normal(0.5, 0.2)) or a frozen scipy.stats "
                f"distribution (scipy.stats.norm(0.5, 0.2)), got {type(d).__name__}. A fixed value belongs in "
                "effects or variances."
            )
        out[str(k)] = d
    return out


def _describe(d) -> str:
    """A stable description of a frozen scipy distribution (its repr holds a memory address)."""
    dist = getattr(d, "dist", None)
    if dist is None:
        return repr(d)
    extra = ""
    if hasattr(dist, "xk") and hasattr(dist, "pk"):
        extra = f", xk={list(map(float, dist.xk))}, pk={list(map(float, dist.pk))}"
    return f"{getattr(dist, 'name', type(dist).__name__)}(args={tuple(d.args)}, kwds={dict(d.kwds)}{extra})"

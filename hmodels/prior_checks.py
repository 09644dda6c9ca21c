"""Priors you can see and test: what they imply, prior predictive checks, prior vs posterior, sensitivity.

- :func:`explain_priors` — one row per parameter: the prior, where it came from (default / set /
  user), the data scale it was derived from, and what it implies on the outcome scale (95 % prior
  range of a group's mean, of a slope's spread across groups, of the ICC), by simulation from the
  priors alone (NumPy, no compilation).
- :func:`prior_predictive` — ``pm.sample_prior_predictive`` on the model, a summary of the implied
  outcome, group SDs, ICC and R², plain-language flags when the priors put most of their mass on
  impossible or implausible outcomes, and a plot.
- :func:`prior_contraction`, :func:`plot_prior_posterior` — how much each posterior narrowed
  relative to its prior (``1 - var_post / var_prior``), and ArviZ's prior/posterior overlay.
- :func:`prior_sensitivity` — power-scaling sensitivity (Kallioinen et al. 2024) through
  ``arviz.psense_summary``, with a verdict per parameter.

Prior log densities for power-scaling are computed from the prior objects (``Prior.scipy()``; LKJ
in closed form up to a constant), so fits loaded from disk and collapsed fits work the same as
fresh joint fits. Constants cancel in the normalised power-scaling weights.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import pandas as pd

from .errors import FamilyError, HModelsError
from .families import get_family, inverse_link_numpy

__all__ = [
    "explain_priors", "prior_predictive", "PriorPredictive", "prior_contraction", "plot_prior_posterior",
    "prior_sensitivity", "log_prior_dataset", "THRESHOLDS",
]

#: Fractions of prior predictive mass above which :func:`prior_predictive` flags the priors.
THRESHOLDS = {
    "negative": 0.25,   # share of simulated outcomes below 0 when every observed outcome is >= 0
    "far": 0.5,         # share more than one observed range beyond the observed min / max
    "pinned": 0.5,      # share of simulated probabilities below 0.01 or above 0.99
}

_VERDICTS = {
    "potential prior-data conflict": "prior-data conflict",
    "potential strong prior / weak likelihood": "weak likelihood",
    "✓": "fine",
}


def _fmt(v: float) -> str:
    if not np.isfinite(v):
        return str(v)
    a = abs(v)
    if a != 0 and (a >= 1e5 or a < 1e-3):
        return f"{v:.3g}"
    return f"{v:.3g}" if a < 10 else f"{v:.1f}"


def _interval(x: np.ndarray, prob: float) -> tuple[float, float]:
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(x, [(1 - prob) / 2, (1 + prob) / 2])
    return float(lo), float(hi)


def _draw(prior, n: int, rng: np.random.Generator, block: int = 2) -> np.ndarray:
    """Draws from one prior (an LKJ gives the marginal of one correlation of a ``block``-sized matrix)."""
    if prior.support == "cor":
        a = prior.params["eta"] - 1 + block / 2
        return 2 * rng.beta(a, a, size=n) - 1
    return np.asarray(prior.scipy().rvs(size=n, random_state=rng), dtype=float)


def _resid_var(fam, design, eta: np.ndarray, aux: dict) -> np.ndarray:
    """Residual variance on the latent / outcome scale for ICC and R² (Nakagawa & Schielzeth 2013).

    The family owns the formula (``latent_residual_variance``): gaussian ``sigma²`` (or the mean
    known ``se²``); logit/probit/cloglog: the distribution-specific constant; log-link counts: the
    lognormal approximation ``log(1 + 1/λ [+ 1/α])`` at ``λ = exp(eta)``.
    """
    lam = np.exp(np.clip(eta, -700, 700)) if fam.link == "log" else np.ones(np.shape(eta))
    try:
        return fam.latent_residual_variance(lam, aux, se=design.se)
    except FamilyError:  # no latent-scale decomposition (gaussian with a log link): no ICC / R² shown
        return np.full(np.shape(eta), np.nan)


def _dpar_design(design, slot):
    """The :class:`~hmodels.dpars.DparDesign` a prior slot belongs to (a family parameter's own formula), or None."""
    if not slot.set_keys:  # only a distributional parameter's slots look their class up in the sets alone
        return None
    for dd in (getattr(design, "dpars", None) or {}).values():
        if slot.term in dd.fixed_terms or any(slot.factor == f.factor for f in dd.factors):
            return dd
    return None


def _dpar_implies(model, fam, dd, slot, x, rng, prob, resp):
    """(implies, low, high) of a prior on a family parameter's own linear predictor, in that parameter's words."""
    from .dpars import inverse_link

    meaning = fam.aux_spec(dd.name).meaning.format(response=resp)
    ratio = "ratio" if dd.link == "log" else "odds ratio"
    prefix = f"{dd.name}_"
    if slot.cls == "Intercept":
        at = " at average predictors" if len(dd.fixed_terms) > 1 and model.intercept_prior == "centered" else ""
        return f"{dd.name} ({meaning}){at}", *_interval(inverse_link(dd.link, x), prob)
    if slot.cls == "fixed":
        sds = dict(zip(dd.fixed_terms, dd.x_sds))
        sx = float(sds.get(slot.term, 1.0)) or 1.0
        name = slot.term[len(prefix):] if slot.term.startswith(prefix) else slot.term
        return (f"{ratio} of {dd.name} per SD of {name} (SD = {_fmt(sx)})",
                *_interval(np.exp(np.clip(x * sx, -700, 700)), prob))
    if slot.cls == "sd":
        factor = dd.origin.get(slot.factor, slot.factor)
        term = slot.term[len(prefix):] if slot.term and slot.term.startswith(prefix) else slot.term
        dev = np.exp(np.clip(x * rng.standard_normal(x.size), -700, 700))
        if term == "Intercept":
            return f"a {factor}'s {dd.name} vs the average ({ratio})", *_interval(dev, prob)
        return (f"a {factor}'s {term} slope of {dd.name} vs the average slope, per unit {term} ({ratio})",
                *_interval(dev, prob))
    if slot.cls == "cor":
        return f"one correlation between group effects of {dd.name}", *_interval(x, prob)
    return "", float("nan"), float("nan")


def _category_term(design, term):
    """A categorical model's term ``mu<k>_<t>`` as ``(t, words for category k against the reference)``."""
    names = getattr(design, "predictor_names", None)
    if not names or term is None:
        return term, ""
    levels = design.response_levels
    for nm, lv in sorted(zip(names, levels[1:]), key=lambda p: -len(p[0])):
        if term.startswith(nm + "_"):
            return term[len(nm) + 1:], f" of {lv} against {levels[0]} (the reference)"
    return term, ""


def _unit_words(fam, resp: str) -> tuple[str, str]:
    """(what a change on the link scale means, how to show it)."""
    if fam.link == "identity":  # on the linear predictor's scale: the lognormal's is log(y)
        on_link = fam.link_scale_response(np.ones(1), resp)
        return f"change in {resp if on_link is None else on_link[1]}", "difference"
    if fam.link == "log":
        return "ratio of means", "ratio"
    if fam.link == "logit":
        return "odds ratio", "ratio"
    return f"change on the {fam.link} scale", "difference"


# --------------------------------------------------------------------------------------------
# explain
# --------------------------------------------------------------------------------------------
def explain_priors(model, prob: float = 0.95, draws: int = 4000, seed: int | None = 0) -> pd.DataFrame:
    """What each prior is, where it came from, and what it implies on the outcome scale.

    Implied ranges are central ``prob`` intervals from ``draws`` simulations of the priors alone
    (no data): the mean outcome at average predictors (Intercept), the change per SD of a
    predictor (odds or rate ratio on logit / log links), how far a group's mean or slope can sit
    from the average (group SDs), a correlation (LKJ), and the ICC of each grouping factor.

    Parameters
    ----------
    model : hmodels.Model
    prob : float
        Interval probability (default 0.95).
    draws : int
        Prior simulations (default 4000).
    seed : int, optional

    Returns
    -------
    pandas.DataFrame
        Columns: parameter, class, prior, source, derived_from, rationale, prior_low, prior_high
        (the parameter's own interval), implies (in words), implied_low, implied_high. ICC rows
        have class ``implied``.

    Examples
    --------
    >>> import hmodels as hm
    >>> m = hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy"))
    >>> tab = m.explain_priors()
    >>> list(tab["parameter"])[:3]
    ['Intercept', 'Days', 'sd(Subject, Intercept)']
    """
    rng = np.random.default_rng(seed)
    design = model.design
    fam = get_family(model.spec.family, model.spec.link)
    resp = model.spec.response
    change, how = _unit_words(fam, resp)
    sims: dict[str, np.ndarray] = {}
    rows = []
    term_sd = dict(zip(design.fixed_terms, design.x_sds))
    for r in model.priors:
        slot, prior = r.slot, r.prior
        block = 2
        if slot.cls == "cor":
            dd = _dpar_design(design, slot)  # a family parameter's factor (g__sigma) is in its own design
            f = (next(ff for ff in dd.factors if ff.factor == slot.factor) if dd is not None
                 else design.factor(slot.factor))
            block = max(len(b) for b, c in zip(f.blocks, f.correlated) if c)
        x = _draw(prior, draws, rng, block)
        sims[slot.param] = x
        plo, phi = _interval(x, prob)
        implies, ilo, ihi = "", float("nan"), float("nan")
        term, against = _category_term(design, slot.term)  # categorical: mub_x is x for category b
        dd = _dpar_design(design, slot)
        if dd is not None:  # a family parameter's own formula: on that parameter's link scale, not the outcome's
            implies, ilo, ihi = _dpar_implies(model, fam, dd, slot, x, rng, prob, resp)
        elif getattr(model.spec, "nonlinear", None) is not None and slot.cls in ("fixed", "sd"):
            # a nonlinear parameter's coefficient is on that parameter's own scale, not the outcome's
            what = slot.term if slot.cls == "fixed" else f"a {slot.factor}'s deviation in {slot.term}"
            pred = next((q for q in design.predictors if slot.term == f"{q.name}_Intercept"), None)
            if slot.cls == "fixed" and pred is not None and len(pred.columns) > 1:  # (parameter_centring)
                what += f" at the means of {pred.name}'s covariates"
            implies, (ilo, ihi) = f"{what}, on the nonlinear parameter's own scale", (plo, phi)
        elif slot.cls == "Intercept":
            mu = inverse_link_numpy(fam.link, x)
            what = {"identity": f"mean {resp}", "log": f"mean {resp}", "inverse": f"mean {resp}"}.get(
                fam.link, f"probability of {resp}")
            on_link = fam.link_scale_response(np.ones(1), resp)  # the lognormal's mu: the mean of log(y)
            if fam.link == "identity" and on_link is not None:
                what = f"mean {on_link[1]}"
            if against:  # P(k) / (P(k) + P(reference))
                what = f"probability{against} between the two"
            p = len(getattr(design, "base", None).fixed_terms) if against else len(design.fixed_terms)
            at = " at average predictors" if p > 1 and model.intercept_prior == "centered" else ""
            off = " with the offset at 0 (per unit of exposure for offset(log(exposure)))" \
                if design.offset is not None else ""
            trunc = " (before truncation: the truncated outcome's mean differs)" \
                if getattr(model.spec, "trunc", None) is not None else ""
            implies = f"{what}{at}{off}{trunc}"
            ilo, ihi = _interval(mu, prob)
        elif slot.cls == "fixed":
            sx = term_sd.get(slot.term, 1.0) or 1.0
            eff = x * sx
            eff = np.exp(np.clip(eff, -700, 700)) if how == "ratio" else eff
            implies = f"{change}{against} per SD of {term} (SD = {_fmt(sx)})"
            ilo, ihi = _interval(eff, prob)
        elif slot.cls == "sd":
            dev = x * rng.standard_normal(draws)
            if term == "Intercept":
                diff = change.replace("change in", "difference in")
                what = f"a {slot.factor}'s mean vs the average ({diff}{against})"
            else:
                what = f"a {slot.factor}'s {term} slope vs the average slope, per unit {term}{against}"
            if how == "ratio" and term == "Intercept":
                dev = np.exp(np.clip(dev, -700, 700))
            implies = what
            ilo, ihi = _interval(dev, prob)
        elif slot.cls == "cor":
            implies, (ilo, ihi) = "one correlation between group effects", (plo, phi)
        elif slot.cls in fam.aux:  # the family's own parameters (sigma, nu, alpha, shape, zi, ...), in its words
            implies, (ilo, ihi) = fam.aux_spec(slot.cls).meaning.format(response=resp), (plo, phi)
        rows.append(dict(parameter=slot.param, **{"class": slot.cls}, prior=repr(prior), source=r.source,
                         derived_from=r.derivation, rationale=r.rationale, prior_low=plo, prior_high=phi,
                         implies=implies, implied_low=ilo, implied_high=ihi))
    # ICC per factor with a varying intercept
    int_sds = {f.factor: sims.get(f"sd({f.factor}, Intercept)") for f in design.factors}
    int_sds = {k: v for k, v in int_sds.items() if v is not None}
    if int_sds:
        eta0 = sims.get("Intercept", np.zeros(draws))
        aux = {a: sims[a] for a in fam.aux if a in sims}
        for a, dd in (getattr(design, "dpars", None) or {}).items():  # its intercept: the typical row's value
            if f"{a}_Intercept" in sims:
                from .dpars import inverse_link

                aux[a] = inverse_link(dd.link, sims[f"{a}_Intercept"])
        resid = _resid_var(fam, design, eta0, aux)
        total = sum(v ** 2 for v in int_sds.values()) + resid
        for g, v in int_sds.items():
            lo, hi = _interval(v ** 2 / total, prob)
            scale = "latent scale" if fam.link != "identity" else "outcome scale"
            rows.append(dict(parameter=f"ICC({g})", **{"class": "implied"}, prior="", source="implied",
                             derived_from="simulated from the priors above", rationale="",
                             prior_low=float("nan"), prior_high=float("nan"),
                             implies=f"share of variance between {g}s ({scale})", implied_low=lo, implied_high=hi))
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# prior predictive
# --------------------------------------------------------------------------------------------
@dataclass
class PriorPredictive:
    """Result of :func:`prior_predictive`.

    Attributes
    ----------
    data : xarray.DataTree
        ArviZ data from ``pm.sample_prior_predictive`` (``prior``, ``prior_predictive``,
        ``observed_data``).
    summary : pandas.DataFrame
        Implied quantities (outcome, its mean and SD, group SDs, ICC, R²): observed value where
        there is one, prior median and central 95 % range.
    checks : pandas.DataFrame
        One row per plausibility check: share of prior mass, threshold, flagged, message.
    """

    data: object
    summary: pd.DataFrame
    checks: pd.DataFrame
    _eta: np.ndarray = field(repr=False, default=None)
    _model: object = field(repr=False, default=None)

    @property
    def flags(self) -> list[str]:
        """Plain-language messages for the checks that failed (empty when the priors look plausible)."""
        return list(self.checks.loc[self.checks["flagged"], "message"])

    @property
    def flagged(self) -> bool:
        """True when any check failed."""
        return bool(self.checks["flagged"].any())

    def __repr__(self) -> str:
        head = "Prior predictive check: " + ("PROBLEMS FOUND" if self.flagged else "no implausible outcome mass")
        msgs = "".join(f"\n  - {m}" for m in self.flags)
        return f"{head}{msgs}\n\n{self.summary.to_string(index=False)}"

    def plot(self, n_lines: int = 3, seed: int | None = 0):
        """Outcome distribution vs observed range, implied group SDs, ICC / R², group trajectories.

        Returns
        -------
        matplotlib.figure.Figure

        Examples
        --------
        >>> pp = model.prior_predictive(draws=200, seed=1)  # doctest: +SKIP
        >>> fig = pp.plot()  # doctest: +SKIP
        """
        import matplotlib.pyplot as plt

        model = self._model
        design = model.design
        resp = model.spec.response
        yrep = _stacked(self.data["prior_predictive"][_obs_name(model)])
        y = np.asarray(design.y, dtype=float)
        slopes = [(f, j) for f in design.factors for j, t in enumerate(f.terms) if t != "Intercept"]
        ncols = 4 if slopes else 3
        fig, axes = plt.subplots(1, ncols, figsize=(4.2 * ncols, 3.6))
        ax = axes[0]
        finite = yrep[np.isfinite(yrep)].ravel()
        if finite.size:
            lo, hi = np.quantile(finite, [0.01, 0.99])
            lo, hi = min(lo, y.min()), max(hi, y.max())
            ax.hist(np.clip(finite, lo, hi), bins=60, range=(lo, hi), density=True, color="C0", alpha=0.6,
                    label="prior predictive")
            ax.hist(y, bins=30, range=(lo, hi), density=True, color="k", alpha=0.35, label="observed")
        ax.axvspan(y.min(), y.max(), color="C2", alpha=0.15, label="observed range")
        ax.set_title(f"{resp}: prior predictive vs data")
        ax.legend(fontsize=7)
        ax = axes[1]
        prior = self.data["prior"]
        for f in design.factors:
            sd = _stacked(prior[f"sd_{f.factor}"])
            for j, t in enumerate(f.terms):
                v = sd[..., j].ravel()
                v = v[np.isfinite(v) & (v > 0)]
                if v.size:
                    ax.hist(np.log10(v), bins=40, alpha=0.5, density=True, label=f"sd({f.factor}, {t})")
        ax.set_xlabel("log10 group SD")
        ax.set_title("implied group SDs")
        if design.factors:
            ax.legend(fontsize=7)
        ax = axes[2]
        for name in self.summary["quantity"]:
            if name.startswith("ICC(") or name == "R2":
                v = self._implied[name]
                ax.hist(v[np.isfinite(v)], bins=40, range=(0, 1), alpha=0.5, density=True, label=name)
        ax.set_xlim(0, 1)
        ax.set_title("implied ICC and R²")
        ax.legend(fontsize=7)
        if slopes:
            ax = axes[3]
            f, j = slopes[0]
            rng = np.random.default_rng(seed)
            mu = inverse_link_numpy(model.family.link, self._eta.reshape(-1, design.n))
            picks = rng.choice(mu.shape[0], size=min(n_lines, mu.shape[0]), replace=False)
            x = f.Z[:, j]
            for k, d in enumerate(picks):
                for g in range(f.n_levels):
                    rows = np.flatnonzero(f.codes == g)
                    o = rows[np.argsort(x[rows])]
                    ax.plot(x[o], mu[d, o], color=f"C{k}", alpha=0.5, lw=0.8)
            ax.scatter(x, y, s=4, color="k", alpha=0.4, label="observed")
            ax.set_xlabel(f.terms[j])
            ax.set_title(f"{n_lines} prior draws: one line per {f.factor}")
            ax.legend(fontsize=7)
        fig.tight_layout()
        return fig

    _implied: dict = field(repr=False, default_factory=dict)


def _stacked(da) -> np.ndarray:
    """(chain, draw, ...) values of a DataArray."""
    return np.asarray(da.transpose("chain", "draw", ...).values, dtype=float)


def _obs_name(model) -> str:
    return model.spec.response


def _order_ordered(pmodel, idata):
    """Sort the forward draws of variables with an ``ordered`` transform (the thresholds of an ordinal model).

    Forward sampling draws their elements independently and ignores the transform; the prior that
    NUTS samples — the independent density restricted to increasing vectors — is exactly the
    distribution of those draws sorted (their order statistics).
    """
    import xarray as xr
    from pymc.distributions.transforms import Ordered

    ordered = [rv.name for rv, tr in pmodel.rvs_to_transforms.items() if isinstance(tr, Ordered)]
    ds = idata["prior"].to_dataset()
    names = [n for n in ordered if n in ds]
    if names:
        new = {n: (ds[n].dims, np.sort(np.asarray(ds[n].values), axis=-1)) for n in names}
        if "cutpoints_centered" in names and "cutpoints" in ds:  # reported = centred + means @ b, per draw
            shift = (ds["cutpoints"].values - ds["cutpoints_centered"].values)[..., :1]
            new["cutpoints"] = (ds["cutpoints"].dims, new["cutpoints_centered"][1] + shift)
        ds = ds.assign(new)
        idata["prior"] = xr.DataTree(ds)
    return idata


def _sample_prior(pmodel, draws: int, seed, var_names=None):
    """Run ``pm.sample_prior_predictive`` quietly, compiled with FAST_COMPILE.

    Forward sampling needs no speed; it compiles in ~2 s instead of ~20 s with numba.
    """
    import logging

    import pymc as pm

    logger = logging.getLogger("pymc")
    level = logger.level
    logger.setLevel(logging.WARNING)  # "Sampling: [...]"
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")  # PyTensor's BLAS notice; overflow under vague priors
            idata = pm.sample_prior_predictive(draws=draws, model=pmodel, random_seed=seed, var_names=var_names,
                                               compile_kwargs={"mode": "FAST_COMPILE"})
        return _order_ordered(pmodel, idata)
    finally:
        logger.setLevel(level)


def _as_fit(draws, model):
    """A Fit-like view of prior draws, so the :mod:`hmodels.linpred` helpers apply."""
    return SimpleNamespace(draws=draws, spec=model.spec, design=model.design, family=model.family)


def prior_predictive(model, draws: int = 500, seed: int | None = None) -> PriorPredictive:
    """Simulate parameters and outcomes from the priors and check they are plausible.

    Draws the parameters with ``pm.sample_prior_predictive`` on ``model.pymc_model``, the outcomes
    with the family's own simulation (as the posterior predictive check does; a mean outside the
    family's support, e.g. a negative gamma mean under an inverse link, gives an undefined outcome),
    and flags priors that put most of their mass on impossible or implausible outcomes, in plain
    language:

    - negative outcomes when every observed outcome is >= 0 (gaussian / Student-t families),
      flagged above ``THRESHOLDS["negative"]`` of the simulated outcomes;
    - outcomes more than one observed range beyond the observed minimum or maximum (above
      ``THRESHOLDS["far"]``);
    - probabilities pinned below 0.01 or above 0.99 (bernoulli / binomial; above
      ``THRESHOLDS["pinned"]``);
    - outcomes that overflow (infinite or undefined).

    Parameters
    ----------
    model : hmodels.Model
    draws : int
        Prior draws (default 500).
    seed : int, optional

    Returns
    -------
    PriorPredictive
        ``.data`` (ArviZ DataTree), ``.summary``, ``.checks``, ``.flags``, ``.plot()``.

    Examples
    --------
    >>> import hmodels as hm
    >>> m = hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy"), prior_set="vague")
    >>> pp = m.prior_predictive(draws=200, seed=1)  # doctest: +SKIP
    >>> pp.flagged  # doctest: +SKIP
    True
    """
    import xarray as xr

    from .linpred import aux_draws, linear_predictor, simulate_response

    pmodel = model.pymc_model
    idata = _sample_prior(pmodel, draws, seed, var_names=[v.name for v in (*pmodel.free_RVs, *pmodel.deterministics)])
    design = model.design
    fam = model.family
    resp = model.spec.response
    prior = idata["prior"].to_dataset()
    view = _as_fit(prior, model)
    with np.errstate(all="ignore"):
        eta = linear_predictor(view, design)
        sim_seed = None if seed is None else [int(seed), 7919]
        yrep = np.asarray(simulate_response(view, eta, design, seed=sim_seed), dtype=float)
        idata["prior_predictive"] = xr.DataTree(xr.Dataset(
            {_obs_name(model): (("chain", "draw", "obs"), yrep)},
            coords={"chain": prior["chain"].values, "draw": prior["draw"].values, "obs": np.arange(design.n)}))
        y = np.asarray(design.y, dtype=float)
        rows, implied = [], {}

        def add(name, observed, values):
            lo, hi = _interval(values, 0.95)
            finite = np.asarray(values, dtype=float)
            finite = finite[np.isfinite(finite)]
            med = float(np.median(finite)) if finite.size else float("nan")
            rows.append(dict(quantity=name, observed=observed, prior_median=med, prior_low=lo, prior_high=hi))
            implied[name] = np.asarray(values, dtype=float).ravel()

        nominal = fam.outcome == "categorical"  # unordered categories: their shares, no mean, SD or R²
        if nominal:
            for k, level in enumerate(design.response_levels, start=1):
                add(f"share({resp} = {level})", float((y == k).mean()), (yrep == k).mean(axis=-1).ravel())
        else:
            add(resp, float(np.median(y)), yrep.ravel())
            add(f"mean({resp})", float(y.mean()), yrep.mean(axis=-1).ravel())
            add(f"sd({resp})", float(y.std(ddof=1)) if y.size > 1 else float("nan"),
                yrep.std(axis=-1, ddof=1).ravel())
        aux = {k: v[..., 0] for k, v in aux_draws(view).items()}
        var_eta = eta.var(axis=-1) if not nominal else None
        resid = _resid_var(fam, design, eta.mean(axis=-1), aux) if not nominal else None
        sds = {}
        for f in design.factors:
            sd = _stacked(prior[f"sd_{f.factor}"])
            for j, t in enumerate(f.terms):
                add(f"sd({f.factor}, {t})", float("nan"), sd[..., j].ravel())
            if "Intercept" in f.terms:
                sds[f.factor] = sd[..., f.terms.index("Intercept")]
        if not nominal:
            total = sum(v ** 2 for v in sds.values()) + resid
            for g, v in sds.items():
                add(f"ICC({g})", float("nan"), (v ** 2 / total).ravel())
            add("R2", float("nan"), (var_eta / (var_eta + resid)).ravel())
        checks = _plausibility(model, y, yrep, eta)
    res = PriorPredictive(idata, pd.DataFrame(rows), checks, eta, model)
    res._implied = implied
    return res


def _plausibility(model, y: np.ndarray, yrep: np.ndarray, eta: np.ndarray) -> pd.DataFrame:
    fam = model.family
    resp = model.spec.response
    out = []

    def check(name, frac, threshold, message):
        flagged = bool(frac > threshold)
        out.append(dict(check=name, fraction=float(frac), threshold=threshold, flagged=flagged,
                        message=message if flagged else ""))

    nonfinite = float(np.mean(~np.isfinite(yrep)))
    check("overflow", nonfinite, 0.0,
          f"{nonfinite:.0%} of the simulated {resp} values are infinite or undefined: the priors allow linear "
          "predictors so large that the outcome overflows. Use data-scaled priors (the 'default' set) or "
          "narrower priors on the Intercept and coefficients.")
    finite = yrep[np.isfinite(yrep)]
    if not fam.discrete and y.min() >= 0 and finite.size:
        frac = float(np.mean(finite < 0))
        check("negative outcomes", frac, THRESHOLDS["negative"],
              f"{frac:.0%} of the outcomes simulated from the priors are negative, but every observed {resp} is "
              f">= 0: the priors take impossible values seriously. Use priors scaled to the data (the 'default' "
              "set), narrower priors, or model the outcome on the log scale (family='gaussian', link='log' or "
              "a log-transformed outcome).")
    if fam.outcome in ("binary", "binomial"):
        p = fam.mean(eta)
        frac = float(np.mean((p < 0.01) | (p > 0.99)))
        check("probabilities pinned at 0/1", frac, THRESHOLDS["pinned"],
              f"{frac:.0%} of the probabilities implied by the priors are below 1% or above 99%: on the logit scale "
              "a wide prior means near-certainty, not ignorance. Use priors with SDs of about 1-2.5 on the link "
              "scale (the 'default' or 'weakly-informative' sets).")
    else:
        width = float(y.max() - y.min()) or max(abs(float(y.max())), 1.0)
        lo, hi = y.min() - width, y.max() + width
        frac = float(np.mean((finite < lo) | (finite > hi))) if finite.size else 1.0
        check("far beyond observed range", frac, THRESHOLDS["far"],
              f"{frac:.0%} of the outcomes simulated from the priors lie more than one observed range beyond the "
              f"observed {resp} values ({_fmt(y.min())} to {_fmt(y.max())}), i.e. outside "
              f"[{_fmt(lo)}, {_fmt(hi)}]: the priors are far wider than anything plausible for these data. "
              "Use priors scaled to the data (the 'default' set) or narrower priors.")
    return pd.DataFrame(out)


# --------------------------------------------------------------------------------------------
# prior vs posterior
# --------------------------------------------------------------------------------------------
def _slot_map(fit):
    return {r.slot.param: r for r in fit.priors}


def _categorical_centring(fit, design):
    """The map ``T`` from a stacked model's sampled coefficients to the reported ones, or None.

    Each category's intercept (categorical) or each nonlinear parameter's intercept (with covariates) is
    sampled at the predictors' means, where its prior is; ``b = T @ b_centered``.
    """
    from .categorical import CategoricalDesign, intercept_centring

    if isinstance(design, CategoricalDesign):
        return intercept_centring(design, fit.priors)[1]
    if getattr(design, "expression", None) is not None:
        from .nonlinear.design import parameter_centring

        return parameter_centring(design)[1]
    return None


def _element_priors(fit):
    """Posterior variables/elements with their prior variance (analytic where the prior is direct).

    Yields (variable, selection dict, label, prior variance).
    """
    from .linpred import fit_design

    design = fit_design(fit)
    slots = _slot_map(fit)
    out = []
    terms = fit.meta["fixed_terms"]
    centered_int = (fit.meta.get("intercept_prior", "centered") == "centered" and len(terms) > 1
                    and terms[0] == "Intercept")
    T = _categorical_centring(fit, design)
    for j, t in enumerate(terms):
        if T is not None:  # a categorical model: each raw intercept = its centred one - means @ its slopes
            v = sum(T[j, k] ** 2 * slots[terms[k]].prior.scipy().var() for k in np.flatnonzero(T[j]))
        elif t == "Intercept":
            v = slots["Intercept"].prior.scipy().var()
            if centered_int:  # raw intercept = centred intercept - sum_j mean_j * b_j
                v = v + sum(design.x_means[k] ** 2 * slots[terms[k]].prior.scipy().var() for k in range(1, len(terms)))
        else:
            v = slots[t].prior.scipy().var()
        out.append(("b", {"term": t}, f"b[{t}]", float(v)))
    for g, m in fit.meta["factors"].items():
        for t in m["terms"]:
            sd_var = float(slots[f"sd({g}, {t})"].prior.scipy().var())
            out.append((f"sd_{g}", {f"{g}__term": t}, f"sd_{g}[{t}]", sd_var))
        for var, bterms in m["cors"]:
            label = f"cor({g})" if len(m["cors"]) == 1 else f"cor({g}, {', '.join(bterms)})"
            eta = slots[label].prior.params["eta"]
            a = eta - 1 + len(bterms) / 2
            for i in range(len(bterms)):
                for k in range(i + 1, len(bterms)):
                    out.append((var, {f"{var}__row": bterms[i], f"{var}__col": bterms[k]},
                                f"{var}[{bterms[i]}, {bterms[k]}]", 1 / (2 * a + 1)))
    for a in fit.family.aux:
        if a in fit.draws and a in slots:
            out.append((a, {}, a, float(slots[a].prior.scipy().var())))
    return out


def prior_contraction(fit) -> pd.DataFrame:
    """How much each posterior narrowed relative to its prior: ``1 - var_post / var_prior``.

    Near 1: the data dominate; near 0: the posterior is about as wide as the prior (the data
    say little about this parameter and the prior matters). Prior variances are analytic
    (infinite for Cauchy-type priors, giving contraction 1).

    Returns
    -------
    pandas.DataFrame
        Index: parameter (``b[Days]``, ``sd_Subject[Intercept]``, ...); columns prior_sd,
        posterior_sd, contraction.

    Examples
    --------
    >>> fit.prior_contraction()  # doctest: +SKIP
    """
    post = fit.draws
    rows = []
    for var, sel, label, pvar in _element_priors(fit):
        x = np.asarray(post[var].sel(sel).values, dtype=float)
        qvar = float(np.var(x))
        contraction = 1 - qvar / pvar if pvar > 0 else float("nan")
        rows.append(dict(parameter=label, prior_sd=math.sqrt(pvar), posterior_sd=math.sqrt(qvar),
                         contraction=float(contraction)))
    return pd.DataFrame(rows).set_index("parameter")


def _key_vars(fit) -> list[str]:
    names = ["b"] + [f"sd_{g}" for g in fit.meta["factors"]]
    names += [var for m in fit.meta["factors"].values() for var, _ in m["cors"]]
    names += [a for a in fit.family.aux if a in fit.draws]
    return [n for n in names if n in fit.draws]


def prior_draws(fit, draws: int = 1000, seed: int | None = 0):
    """Draws from the fit's priors (the ``prior`` group), cached in ``fit.posterior["prior"]``.

    Sampled with ``pm.sample_prior_predictive`` on the model rebuilt from the fit's design and
    prior table, so loaded fits work too.
    """
    import xarray as xr

    if "prior" in fit.posterior.children:
        return fit.posterior["prior"].to_dataset()
    model = getattr(fit, "model", None)
    if model is not None:
        pmodel = model.pymc_model
    else:
        from .build import build_model
        from .linpred import fit_design

        pmodel = build_model(fit_design(fit), fit.priors, fit.meta.get("centered", False)).model
    names = _key_vars(fit)
    idata = _sample_prior(pmodel, draws, seed, var_names=names)
    ds = idata["prior"].to_dataset()
    fit.posterior["prior"] = xr.DataTree(ds)
    return ds


def plot_prior_posterior(fit, var_names=None, draws: int = 1000, seed: int | None = 0, **kwargs):
    """Overlay prior and posterior per parameter (``arviz.plot_prior_posterior``).

    Parameters
    ----------
    fit : Fit
    var_names : list of str, optional
        Posterior variables (default: ``b``, group SDs, correlations, family parameters).
    draws, seed
        Prior draws (cached in ``fit.posterior["prior"]``).
    **kwargs
        Passed to ``arviz.plot_prior_posterior``.

    Returns
    -------
    arviz_plots.PlotCollection

    Examples
    --------
    >>> pc = fit.plot_prior_posterior(var_names=["sd_Subject"])  # doctest: +SKIP
    """
    import arviz as az
    import xarray as xr

    prior = prior_draws(fit, draws, seed)
    names = list(var_names) if var_names is not None else [v for v in _key_vars(fit) if not v.startswith("cor_")]
    missing = [v for v in names if v not in fit.draws or v not in prior]
    if missing:
        raise HModelsError(f"No prior and posterior draws for {missing[0]!r}; available: {', '.join(_key_vars(fit))}.")
    dt = xr.DataTree.from_dict({"posterior": fit.draws[names], "prior": prior[names]})
    return az.plot_prior_posterior(dt, var_names=names, **kwargs)


# --------------------------------------------------------------------------------------------
# sensitivity
# --------------------------------------------------------------------------------------------
def log_prior_dataset(fit):
    """Log prior density of each parameter class per draw (a ``log_prior`` group for ArviZ).

    Variables: ``b`` (term; the Intercept entry evaluates the Intercept prior at the centred
    intercept when the prior was placed there), ``sd_<factor>`` (<factor>__term), ``cor_<...>``
    (LKJ, ``(eta - 1) log det R`` up to a constant), ``sigma``, ``nu``, ``alpha``. Group-level
    standard-normal offsets are part of the hierarchical likelihood, not of the prior, as in
    priorsense for brms.

    Examples
    --------
    >>> lp = log_prior_dataset(fit)  # doctest: +SKIP
    """
    import xarray as xr

    from .linpred import fit_design

    design = fit_design(fit)
    slots = _slot_map(fit)
    post = fit.draws
    out = {}
    terms = fit.meta["fixed_terms"]
    if terms:
        b = post["b"].transpose("chain", "draw", "term")
        vals = np.asarray(b.values, dtype=float).copy()
        T = _categorical_centring(fit, design)
        if T is not None:  # a categorical model: its priors are on the coefficients it sampled
            vals = vals @ np.linalg.inv(T).T
        elif fit.meta.get("intercept_prior", "centered") == "centered" and len(terms) > 1 and terms[0] == "Intercept":
            vals[..., 0] = vals[..., 0] + vals[..., 1:] @ np.asarray(design.x_means[1:], dtype=float)
        lp = np.stack([slots[t].prior.scipy().logpdf(vals[..., j]) for j, t in enumerate(terms)], axis=-1)
        out["b"] = (("chain", "draw", "term"), lp)
    for g, m in fit.meta["factors"].items():
        sd = post[f"sd_{g}"].transpose("chain", "draw", f"{g}__term")
        lp = np.stack([slots[f"sd({g}, {t})"].prior.scipy().logpdf(np.asarray(sd.sel({f"{g}__term": t}).values))
                       for t in m["terms"]], axis=-1)
        out[f"sd_{g}"] = (("chain", "draw", f"{g}__term"), lp)
        for var, bterms in m["cors"]:
            label = f"cor({g})" if len(m["cors"]) == 1 else f"cor({g}, {', '.join(bterms)})"
            eta = slots[label].prior.params["eta"]
            R = np.asarray(post[var].transpose("chain", "draw", ...).values, dtype=float)
            sign, logdet = np.linalg.slogdet(R)
            out[var] = (("chain", "draw"), (eta - 1) * logdet)
    for a in fit.family.aux:
        if a in post and a in slots:
            aux_draws = np.asarray(post[a].transpose("chain", "draw").values)
            out[a] = (("chain", "draw"), slots[a].prior.scipy().logpdf(aux_draws))
    coords = {"chain": post["chain"].values, "draw": post["draw"].values, "term": list(terms)}
    for g, m in fit.meta["factors"].items():
        coords[f"{g}__term"] = list(m["terms"])
    return xr.Dataset(out, coords=coords)


def _log_lik_dataset(fit):
    import xarray as xr

    if "log_likelihood" in fit.posterior.children:
        return fit.posterior["log_likelihood"].to_dataset()
    from .linpred import linear_predictor, pointwise_loglik

    ll = pointwise_loglik(fit, linear_predictor(fit))
    post = fit.draws
    coords = {"chain": post["chain"].values, "draw": post["draw"].values, "obs": np.arange(ll.shape[-1])}
    return xr.Dataset({fit.meta["observed"]: (("chain", "draw", "obs"), ll)}, coords=coords)


def prior_sensitivity(fit, var_names=None, threshold: float = 0.05, prior_var_names=None) -> pd.DataFrame:
    """Power-scaling prior and likelihood sensitivity, with a verdict per parameter.

    Calls ``arviz.psense_summary`` (Kallioinen et al. 2024): the posterior is reweighted as if
    the prior (or the likelihood) were raised to a power near 1, by Pareto-smoothed importance
    sampling, and the change is measured by the cumulative Jensen-Shannon distance. Verdicts,
    as ArviZ diagnoses them (``threshold`` 0.05):

    - **prior-data conflict**: both the prior and the likelihood sensitivity reach the threshold —
      the prior and the data pull in different directions;
    - **weak likelihood**: the prior sensitivity exceeds the threshold but the likelihood
      sensitivity does not — the prior dominates, the data say little (typical for a group SD
      with few groups);
    - **fine**: otherwise.

    Parameters
    ----------
    fit : Fit
    var_names : list of str, optional
        Posterior variables (default: ``b``, group SDs, correlations, family parameters).
    threshold : float
    prior_var_names : list of str, optional
        Power-scale only these priors (variables of :func:`log_prior_dataset`); default all.

    Returns
    -------
    pandas.DataFrame
        Index: parameter; columns prior, likelihood (sensitivities), diagnosis (ArviZ's words),
        verdict, message.

    Examples
    --------
    >>> fit.prior_sensitivity()  # doctest: +SKIP
    """
    import arviz as az
    import xarray as xr

    names = list(var_names) if var_names is not None else _key_vars(fit)
    post = fit.draws[names]
    dt = xr.DataTree.from_dict({"posterior": post, "log_prior": log_prior_dataset(fit),
                                "log_likelihood": _log_lik_dataset(fit)})
    import logging

    logger = logging.getLogger("arviz_stats.psense")
    level = logger.level
    logger.setLevel(logging.ERROR)  # our verdict column says the same in plain words
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            tab = az.psense_summary(dt, var_names=names, threshold=threshold, prior_var_names=prior_var_names,
                                    round_to=6)
    finally:
        logger.setLevel(level)
    tab = tab[np.isfinite(tab["prior"].astype(float)) & np.isfinite(tab["likelihood"].astype(float))]
    # a correlation matrix's diagonal is constant and its upper triangle repeats the lower one
    keep = [not (str(i).startswith("cor_") and not _is_lower_offdiagonal(str(i), fit)) for i in tab.index]
    tab = tab[keep].copy()
    tab["verdict"] = [_VERDICTS.get(d, d) for d in tab["diagnosis"]]
    tab["message"] = [_sensitivity_message(i, v) for i, v in zip(tab.index, tab["verdict"])]
    tab.index.name = "parameter"
    return tab


def _is_lower_offdiagonal(label: str, fit) -> bool:
    """Whether ``cor_g[a, b]`` names a correlation below the diagonal (term a after term b)."""
    if "[" not in label:
        return False
    var = label[:label.index("[")]
    inner = label[label.index("[") + 1:label.rindex("]")]
    parts = [p.strip() for p in inner.split(",")]
    if len(parts) != 2 or parts[0] == parts[1]:
        return False
    terms = [str(t) for t in fit.draws[var].coords[f"{var}__row"].values]
    return terms.index(parts[0]) > terms.index(parts[1])


def _sensitivity_message(param: str, verdict: str) -> str:
    if verdict == "prior-data conflict":
        return (f"{param}: the posterior moves when either the prior or the likelihood is strengthened — the "
                "prior and the data disagree. Check the prior's location and scale against what the data suggest, "
                "and report results under a wider prior too (hm.compare_priors).")
    if verdict == "weak likelihood":
        return (f"{param}: the posterior mostly reflects the prior; the data say little about it (e.g. few groups "
                "for a group SD). Report it with its prior, and show how it changes under other priors "
                "(hm.compare_priors).")
    return ""

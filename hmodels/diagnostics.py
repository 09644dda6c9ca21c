"""Convergence and degeneracy diagnostics of a fit, with plain-language verdicts and remedies.

:func:`diagnose` reads a :class:`~hmodels.fit.Fit` (never the PyMC model) and returns a
:class:`Diagnosis`: a per-parameter table (R-hat, bulk/tail ESS, MCSE — all computed by ArviZ),
divergences and where in parameter space they concentrate, tree-depth saturation, E-BFMI, and
singular (boundary) variance components. Every problem becomes a :class:`Verdict` that names the
parameter and the concrete remedy.

Thresholds (Vehtari et al. 2021; Betancourt 2016): R-hat > 1.01, bulk or tail ESS < 100 per
chain, any divergence, any transition at the maximum tree depth, E-BFMI < 0.3. A check that cannot
be computed (R-hat of a single chain, ESS of fewer than :data:`MIN_DRAWS` draws per chain) fails:
it is reported as a ``not_computed`` verdict saying why, and ``Diagnosis.ok`` is False.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from html import escape

import numpy as np
import pandas as pd

__all__ = ["Diagnosis", "Verdict", "diagnose", "singular_components", "RHAT_MAX", "ESS_PER_CHAIN", "BFMI_MIN",
           "MIN_DRAWS", "MIN_CHAINS_RHAT"]

RHAT_MAX = 1.01
ESS_PER_CHAIN = 100
BFMI_MIN = 0.3
MAX_TREEDEPTH = 10  # numpyro's, nutpie's and PyMC's default
#: Fewest draws per chain for which ArviZ computes R-hat and ESS (it returns NaN below).
MIN_DRAWS = 4
#: Fewest chains for which ArviZ computes R-hat (it compares chains; NaN for one).
MIN_CHAINS_RHAT = 2
#: Fewest draws per chain for E-BFMI (it compares successive energies).
MIN_DRAWS_BFMI = 2
#: Singular SD rule: boundary-corrected posterior density at 0 >= this share of its maximum.
SINGULAR_DENSITY_RATIO = 0.8
#: Singular correlation rule: posterior median |cor| >= this.
SINGULAR_COR = 0.9
#: Divergences "concentrate" at small (large) values of an SD when a one-sided Mann-Whitney test of
#: divergent against other draws gives a p-value below this.
DIVERGENCE_P = 0.01


@dataclass(frozen=True)
class Verdict:
    """One problem found in a fit, in plain language, with its remedy.

    Attributes
    ----------
    problem : str
        Short code: ``divergences``, ``r_hat``, ``ess_bulk``, ``ess_tail``, ``tree_depth``,
        ``bfmi``, ``not_computed`` (a check that could not be computed: it fails),
        ``singular_sd``, ``singular_cor``, ``multimodal`` (chains in different modes),
        ``prior_dominated`` (a posterior about as wide as its prior; does not affect ``ok``).
    message : str
        What is wrong and what it means.
    remedy : str
        What to do about it.
    parameters : tuple of str
        The parameters concerned (labels as in :attr:`Diagnosis.table`).
    affects_ok : bool
        Whether the problem makes the sampling untrustworthy (``Diagnosis.ok`` is False). Singular
        components are a property of model and data, not of the sampler, so they do not.
    """

    problem: str
    message: str
    remedy: str
    parameters: tuple[str, ...] = ()
    affects_ok: bool = True

    def __str__(self) -> str:
        return f"{self.message} Remedy: {self.remedy}"


@dataclass
class Diagnosis:
    """The result of :func:`diagnose`.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per parameter (index = label such as ``sd(Subject, Days)`` or
        ``r_Subject[308, Days]``): var, kind, mean, sd, r_hat, ess_bulk, ess_tail, mcse_mean, and
        ``flag`` (which thresholds it fails, empty when fine).
    divergences : int
        Divergent transitions after warm-up.
    divergence_location : pandas.DataFrame
        Per scalar hyper-parameter: median at divergent and at other draws, and the mean
        percentile of divergent draws within the posterior (0.5 = no concentration).
    tree_depth_hits : int
        Transitions that reached the maximum tree depth.
    bfmi : numpy.ndarray
        E-BFMI per chain (ArviZ).
    singular : pandas.DataFrame
        Per group SD and correlation: the statistic of the singularity rule and the decision.
    verdicts : list of Verdict
        Plain-language problems with remedies.
    not_computed : dict
        Checks that could not be computed (``"r_hat"``, ``"ess_bulk"``, ``"ess_tail"``, ``"bfmi"``)
        and why; each fails (a ``not_computed`` verdict, ``ok`` False).
    until : dict or None
        What ``model.fit(until="converged")`` did (``fit.meta["until"]``: rounds, draws, seconds,
        converged), or None for a fit sampled once.
    """

    table: pd.DataFrame
    divergences: int
    divergence_location: pd.DataFrame
    tree_depth_hits: int
    max_tree_depth: int
    bfmi: np.ndarray
    singular: pd.DataFrame
    verdicts: list[Verdict] = field(default_factory=list)
    n_draws: int = 0
    chains: int = 0
    not_computed: dict = field(default_factory=dict)
    until: dict | None = None

    @property
    def ok(self) -> bool:
        """True when no sampling problem was found (singular components do not count).

        A check that could not be computed (NaN: too few chains or draws) is a failed check.
        """
        return not any(v.affects_ok for v in self.verdicts)

    @property
    def singular_components(self) -> list[str]:
        """Labels of the singular SDs and correlations."""
        if self.singular.empty:
            return []
        return list(self.singular.index[self.singular["singular"]])

    def messages(self) -> list[str]:
        """Each verdict as one sentence with its remedy."""
        return [str(v) for v in self.verdicts]

    def summary(self) -> pd.DataFrame:
        """Tabulate the sampler-level checks (check, value, threshold, passed).

        A check that could not be computed for every parameter (or chain) does not pass.
        """
        done = {k: k not in self.not_computed for k in ("r_hat", "ess_bulk", "ess_tail", "bfmi")}
        rows = [
            ("divergences", self.divergences, "0", self.divergences == 0),
            ("max R-hat", _nanmax(self.table["r_hat"]), f"<= {RHAT_MAX}",
             done["r_hat"] and _nanmax(self.table["r_hat"]) <= RHAT_MAX),
            ("min bulk ESS", _nanmin(self.table["ess_bulk"]), f">= {ESS_PER_CHAIN * self.chains}",
             done["ess_bulk"] and _nanmin(self.table["ess_bulk"]) >= ESS_PER_CHAIN * self.chains),
            ("min tail ESS", _nanmin(self.table["ess_tail"]), f">= {ESS_PER_CHAIN * self.chains}",
             done["ess_tail"] and _nanmin(self.table["ess_tail"]) >= ESS_PER_CHAIN * self.chains),
            ("max tree depth hits", self.tree_depth_hits, "0", self.tree_depth_hits == 0),
            ("min E-BFMI", _nanmin(self.bfmi) if self.bfmi.size else np.nan, f">= {BFMI_MIN}",
             done["bfmi"] and bool(self.bfmi.size == 0 or _nanmin(self.bfmi) >= BFMI_MIN)),
        ]
        return pd.DataFrame(rows, columns=["check", "value", "threshold", "passed"]).set_index("check")

    def __repr__(self) -> str:
        verdict = "OK" if self.ok else "PROBLEMS FOUND"
        head = f"hmodels.Diagnosis: {verdict} ({self.chains} chains × {self.n_draws} draws)"
        lines = [head, "", self.summary().to_string()]
        if self.until:
            lines += ["", _until_line(self.until)]
        if self.verdicts:
            lines += ["", "Verdicts:"] + [f"- {v}" for v in self.verdicts]
        else:
            lines += ["", "No problems found."]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        colour = "#070" if self.ok else "#b00"
        out = [f'<p><b>hmodels.Diagnosis</b>: <span style="color:{colour}"><b>'
               f'{"OK" if self.ok else "problems found"}</b></span> ({self.chains} chains × {self.n_draws} draws)</p>',
               self.summary().to_html()]
        if self.verdicts:
            out.append("<ul>" + "".join(
                f"<li><b>{escape(v.problem)}</b>: {escape(v.message)} <i>Remedy:</i> {escape(v.remedy)}</li>"
                for v in self.verdicts) + "</ul>")
        bad = self.table[self.table["flag"] != ""]
        if len(bad):
            out.append("<h4>Parameters failing a threshold</h4>" + bad.round(3).to_html())
        return "".join(out)


def _nanmax(x) -> float:
    x = np.asarray(x, dtype=float)
    return float(np.nanmax(x)) if np.isfinite(x).any() else np.nan


def _nanmin(x) -> float:
    x = np.asarray(x, dtype=float)
    return float(np.nanmin(x)) if np.isfinite(x).any() else np.nan


def _stack(da) -> np.ndarray:
    return np.asarray(da.transpose("chain", "draw", ...).values, dtype=float)


def _parameters(fit, group_effects: bool = True):
    """(label, var, kind, draws (chain, draw)) for every parameter that is reported."""
    post = fit.draws
    out = []
    if "b" in post:
        b = _stack(post["b"])
        for j, t in enumerate(fit.meta["fixed_terms"]):
            out.append((t, "b", "fixed", b[..., j]))
    for f, m in fit.meta["factors"].items():
        if f"sd_{f}" in post:
            sd = _stack(post[f"sd_{f}"])
            for j, t in enumerate(m["terms"]):
                out.append((f"sd({f}, {t})", f"sd_{f}", "sd", sd[..., j]))
        for var, terms in m["cors"]:
            if var not in post:
                continue
            cor = _stack(post[var])
            for i in range(len(terms)):
                for j in range(i + 1, len(terms)):
                    out.append((f"cor({f}, {terms[i]}:{terms[j]})", var, "cor", cor[..., i, j]))
    for a in fit.family.aux:
        if a in post:
            arr = _stack(post[a])
            if arr.ndim == 2:
                out.append((a, a, "aux", arr))
            else:  # a vector (the thresholds of an ordinal model), one row per element under its label
                labels = [str(v) for v in post[a].coords[post[a].dims[-1]].values]
                out += [(lab, a, "aux", arr[..., j]) for j, lab in enumerate(labels)]
    if group_effects:
        for f in fit.meta["factors"]:
            if f"r_{f}" not in post:
                continue
            r = post[f"r_{f}"]
            levels = [str(v) for v in r.coords[f].values]
            terms = [str(v) for v in r.coords[f"{f}__term"].values]
            arr = _stack(r)
            for i, lv in enumerate(levels):
                for j, t in enumerate(terms):
                    out.append((f"r_{f}[{lv}, {t}]", f"r_{f}", "group", arr[:, :, i, j]))
    return out


def _convergence_table(params, chains: int) -> pd.DataFrame:
    import arviz as az
    import xarray as xr

    labels = [p[0] for p in params]
    draws = np.stack([p[3] for p in params], axis=-1)
    ds = xr.Dataset({"x": (("chain", "draw", "p"), draws)}, coords={"p": np.arange(len(labels))})
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        rhat = np.asarray(az.rhat(ds)["x"].values, dtype=float)
        ess_bulk = np.asarray(az.ess(ds, method="bulk")["x"].values, dtype=float)
        ess_tail = np.asarray(az.ess(ds, method="tail")["x"].values, dtype=float)
        mcse = np.asarray(az.mcse(ds, method="mean")["x"].values, dtype=float)
        mean, sd = draws.mean(axis=(0, 1)), draws.std(axis=(0, 1), ddof=1)  # sd is NaN for a single draw
    t = pd.DataFrame({
        "var": [p[1] for p in params], "kind": [p[2] for p in params],
        "mean": mean, "sd": sd,
        "r_hat": rhat, "ess_bulk": ess_bulk, "ess_tail": ess_tail, "mcse_mean": mcse,
    }, index=pd.Index(labels, name="parameter"))
    constant = t["sd"] == 0
    t.loc[constant, ["r_hat", "ess_bulk", "ess_tail"]] = np.nan
    need = ESS_PER_CHAIN * chains
    flags = []
    for r, eb, et in zip(t["r_hat"], t["ess_bulk"], t["ess_tail"]):
        f = []
        if np.isfinite(r) and r > RHAT_MAX:
            f.append("r_hat")
        if np.isfinite(eb) and eb < need:
            f.append("ess_bulk")
        if np.isfinite(et) and et < need:
            f.append("ess_tail")
        flags.append(",".join(f))
    t["flag"] = flags
    return t


def _divergence_location(params, diverging: np.ndarray, points=None) -> pd.DataFrame:
    """Where divergences happen within each hyper-parameter's posterior.

    The values compared are those where the trajectories diverged when the sampler recorded them
    (the fit's ``divergences`` group: hmodels' default sampler), else the draws kept at divergent
    transitions. ``mean_percentile`` is their average empirical-CDF value within the posterior: 0.5
    when they are spread like the rest, near 0 when they pile up at small values (a funnel neck).
    ``p_low`` / ``p_high`` are one-sided Mann-Whitney p-values that they sit lower / higher than
    the posterior draws (:data:`DIVERGENCE_P`).
    """
    from scipy.stats import mannwhitneyu

    div = diverging.astype(bool)
    rows = []
    for label, var, kind, x in params:
        if kind not in ("sd", "aux", "cor"):
            continue
        flat = x.ravel()
        d = div.ravel()
        if not d.any() or d.all():
            continue
        at, rest = flat[d], flat[~d]
        if points is not None and var in points:
            pv = points[var]
            if kind == "sd":
                pv = pv.sel({pv.dims[1]: label[label.index(",") + 1:-1].strip()})
            at, rest = np.asarray(pv.values, dtype=float).ravel(), flat
        order = np.sort(flat)
        pct = np.searchsorted(order, at, side="right") / flat.size
        p_low = float(mannwhitneyu(at, rest, alternative="less").pvalue)
        p_high = float(mannwhitneyu(at, rest, alternative="greater").pvalue)
        rows.append((label, kind, float(np.median(at)), float(np.median(rest)), float(pct.mean()),
                     p_low, p_high))
    return pd.DataFrame(rows, columns=["parameter", "kind", "median_divergent", "median_other", "mean_percentile",
                                       "p_low", "p_high"]).set_index("parameter")


def _reflected_density_ratio(x: np.ndarray) -> float:
    """Boundary-corrected density at 0 divided by the maximum density (for x >= 0).

    A Gaussian KDE of the sample reflected at zero (Silverman's robust bandwidth) gives a density
    without the boundary bias of a plain KDE; the ratio is 1 when the posterior mode is at zero.
    """
    x = np.asarray(x, dtype=float).ravel()
    x = x[np.isfinite(x)]
    if x.size < 10:
        return np.nan
    q75, q25 = np.percentile(x, [75, 25])
    spread = min(np.std(x), (q75 - q25) / 1.349) or np.std(x)
    if spread <= 0:
        return np.nan
    h = 0.9 * spread * x.size ** (-0.2)
    grid = np.linspace(0.0, np.percentile(x, 99), 200)
    both = np.concatenate([x, -x])
    # evaluate in chunks to bound memory
    dens = np.zeros_like(grid)
    for start in range(0, both.size, 20000):
        chunk = both[start:start + 20000]
        dens += np.exp(-0.5 * ((grid[:, None] - chunk[None, :]) / h) ** 2).sum(axis=1)
    return float(dens[0] / dens.max()) if dens.max() > 0 else np.nan


def singular_components(fit) -> pd.DataFrame:
    """Group SDs whose posterior piles up at zero and correlations near ±1.

    Parameters
    ----------
    fit : Fit

    Returns
    -------
    pandas.DataFrame
        One row per group SD and correlation: kind, median, statistic (density ratio for an SD,
        median ``|cor|`` for a correlation), singular (bool).

    Notes
    -----
    lme4 calls a fit *singular* when the (restricted) maximum-likelihood estimate of a variance
    component is on the boundary of its space: an SD of exactly 0 or a correlation of ±1
    (``isSingular``). The Bayesian analogue used here is that the **posterior mode is on the
    boundary**: an SD is singular when the boundary-corrected (reflection) kernel density of its
    posterior at zero is at least ``SINGULAR_DENSITY_RATIO`` (0.8) times the density at the
    posterior mode, i.e. zero is (up to Monte Carlo and smoothing error) the most probable value.
    With a prior whose density is positive at 0 (half-normal, half-Cauchy, half-t, exponential),
    the posterior mode at 0 means the data carry no evidence that the groups differ in that
    term, so the estimate reflects the prior. A posterior bounded away from zero has ratio near 0.
    The LKJ prior puts zero density at ±1, so a correlation can never have its mode exactly on the
    boundary; one is flagged when its posterior median ``|cor|`` is at least ``SINGULAR_COR`` (0.9).

    Examples
    --------
    >>> from hmodels.diagnostics import singular_components
    >>> singular_components(fit)  # doctest: +SKIP
    """
    rows = []
    for label, var, kind, x in _parameters(fit, group_effects=False):
        if kind == "sd":
            ratio = _reflected_density_ratio(x)
            rows.append((label, kind, float(np.median(x)), ratio, bool(ratio >= SINGULAR_DENSITY_RATIO)))
        elif kind == "cor":
            med = float(np.median(x))
            rows.append((label, kind, med, abs(med), bool(abs(med) >= SINGULAR_COR)))
    return pd.DataFrame(rows, columns=["parameter", "kind", "median", "statistic", "singular"]).set_index("parameter")


def _tree_depth_hits(ss) -> tuple[int, int]:
    if "reached_max_treedepth" in ss:
        return int(np.asarray(ss["reached_max_treedepth"].values).sum()), MAX_TREEDEPTH
    if "maxdepth_reached" in ss:
        return int(np.asarray(ss["maxdepth_reached"].values).sum()), MAX_TREEDEPTH
    for name in ("tree_depth", "depth"):
        if name in ss:
            depth = np.asarray(ss[name].values)
            return int((depth >= MAX_TREEDEPTH).sum()), MAX_TREEDEPTH
    return 0, MAX_TREEDEPTH


def _bfmi(fit) -> np.ndarray:
    import arviz as az

    ss = fit.posterior["sample_stats"]
    if "energy" not in ss:
        return np.array([])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = az.bfmi(fit.posterior)
    if hasattr(res, "data_vars"):
        res = res["energy"]
    return np.atleast_1d(np.asarray(getattr(res, "values", res), dtype=float))


def _factor_of(label: str) -> str | None:
    if label.startswith(("sd(", "cor(")):
        return label[label.index("(") + 1:].split(",")[0]
    if label.startswith("r_"):
        return label[2:label.index("[")]
    return None


def _rescale_hint(fit, params: list[str]) -> str:
    """Name predictors far from unit scale among the given fixed-effect labels (or all)."""
    design = getattr(fit, "_design", None)
    if design is None or not hasattr(design, "x_sds"):
        return ""
    names = []
    for j, t in enumerate(design.fixed_terms):
        if t == "Intercept":
            continue
        sd = float(np.asarray(design.x_sds)[j]) if j < len(design.x_sds) else 1.0
        if sd > 10 or 0 < sd < 0.1:
            names.append(f"{t} (sd {sd:.3g})")
    if not names:
        return ""
    return " Rescale " + ", ".join(names) + " with scale(...) in the formula so the sampler works on unit scale."


def diagnose(fit, group_effects: bool = True) -> Diagnosis:
    """Check that the sampler explored the posterior and say what to do if it did not.

    Parameters
    ----------
    fit : Fit
    group_effects : bool
        Include the group-specific effects ``r_<factor>`` in the table and the R-hat / ESS checks
        (default True).

    Returns
    -------
    Diagnosis
        ``.table`` (per parameter), ``.verdicts`` (plain language, each with a remedy), ``.ok``.

    Notes
    -----
    R-hat is the rank-normalised split R-hat and ESS the bulk / tail effective sample sizes of
    Vehtari et al. (2021), computed by ArviZ; E-BFMI is Betancourt's (2016) energy diagnostic.
    Divergences are located by comparing, for each group SD and family parameter, the divergent
    draws with the others (one-sided Mann-Whitney test, p < :data:`DIVERGENCE_P`): divergences
    at small SDs are the signature of a funnel (the sampler cannot reach small SDs), at large SDs
    of the opposite geometry (informative groups, where the centred parameterisation is better).

    Examples
    --------
    >>> import hmodels as hm
    >>> d = hm.diagnostics.diagnose(fit)  # doctest: +SKIP
    >>> d.ok, d.verdicts  # doctest: +SKIP
    """
    post = fit.posterior["posterior"]
    chains, n_draws = int(post.sizes["chain"]), int(post.sizes["draw"])
    params = _parameters(fit, group_effects=group_effects)
    table = _convergence_table(params, chains) if params else pd.DataFrame(
        columns=["var", "kind", "mean", "sd", "r_hat", "ess_bulk", "ess_tail", "mcse_mean", "flag"])
    ss = fit.posterior["sample_stats"]
    diverging = (np.asarray(ss["diverging"].transpose("chain", "draw").values) if "diverging" in ss
                 else np.zeros((chains, n_draws), bool))
    n_div = int(diverging.sum())
    points = fit.posterior["divergences"].to_dataset() if "divergences" in fit.posterior.children else None
    location = _divergence_location(params, diverging, points)
    hits, max_depth = _tree_depth_hits(ss)
    bfmi = _bfmi(fit)
    singular = singular_components(fit)
    centered = dict(fit.meta.get("centered", {}))
    until = fit.meta.get("until")
    target = float(getattr(fit.settings, "target_accept", 0.8))
    verdicts: list[Verdict] = []

    # divergences
    if n_div:
        share = n_div / (chains * n_draws)
        higher = 0.99 if target >= 0.95 else 0.95
        msg = (f"{n_div} divergent transitions ({share:.1%} of draws): the sampler could not follow the "
               "posterior's curvature, so estimates may be biased.")
        remedy = f"Refit with model.fit(target_accept={higher}) (it was {target:g})."
        concentrated = location[(location["kind"] == "sd")] if not location.empty else location
        low = concentrated[concentrated["p_low"] < DIVERGENCE_P] if not concentrated.empty else concentrated
        high = concentrated[concentrated["p_high"] < DIVERGENCE_P] if not concentrated.empty else concentrated
        involved = []
        if len(low):
            label = low["mean_percentile"].idxmin()
            row = low.loc[label]
            f = _factor_of(label)
            involved.append(label)
            msg += (f" They concentrate at small values of {label} (median {row['median_divergent']:.3g} at "
                    f"divergent draws vs {row['median_other']:.3g} elsewhere): a funnel.")
            if f is not None and centered.get(f, False):
                remedy += f" Non-centre {f}: centered={{'{f}': False}} (the default), which removes the funnel."
            else:
                remedy += (f" If they persist, simplify the random effects of {f} (drop a slope or the "
                           "correlation), or give the SD a more informative prior.")
        elif len(high):
            label = high["mean_percentile"].idxmax()
            row = high.loc[label]
            f = _factor_of(label)
            involved.append(label)
            msg += (f" They concentrate at large values of {label} (median {row['median_divergent']:.3g} at "
                    f"divergent draws vs {row['median_other']:.3g} elsewhere).")
            if f is not None and not centered.get(f, False):
                remedy += (f" The data inform each level of {f} well, so centre it: centered={{'{f}': True}}.")
        else:
            remedy += (" If they persist, try the other parameterisation of the grouping factors "
                       "(centered=True for factors with many observations per level) or simplify the random effects.")
        verdicts.append(Verdict("divergences", msg, remedy, tuple(involved)))

    need = ESS_PER_CHAIN * chains
    for col, problem, text, rem in (
        ("r_hat", "r_hat", "R-hat above {thr}: the chains disagree, so these posteriors are not reliably estimated",
         "Run until converged: model.fit(until=\"converged\") adds draws in rounds until R-hat <= 1.01 and "
         "ESS >= 400 (or draws=2000, tune=2000); if it persists the model is poorly identified: "
         "simplify the random effects."),
        ("ess_bulk", "ess_bulk", "bulk effective sample size below {thr}: means and medians are imprecise",
         "Run until converged: model.fit(until=\"converged\") (or draws=2000 or more)."),
        ("ess_tail", "ess_tail", "tail effective sample size below {thr}: interval limits are imprecise",
         "Run until converged: model.fit(until=\"converged\") (or draws=2000 or more)."),
    ):
        bad = table[table["flag"].str.contains(col)] if len(table) else table
        if len(bad):
            thr = RHAT_MAX if col == "r_hat" else need
            worst = bad[col].max() if col == "r_hat" else bad[col].min()
            names = list(bad.index[:5]) + (["..."] if len(bad) > 5 else [])
            message = (f"{len(bad)} parameter(s) with {text.format(thr=thr)} (worst {worst:.3g}): "
                       f"{', '.join(names)}.")
            factors = {fc for fc in (_factor_of(n) for n in bad.index) if fc}
            remedy = rem
            if until and not until.get("converged") and _stopped_by_divergences(until):
                remedy = (f"model.fit(until=\"converged\") stopped after {until['n_rounds']} round(s): divergences "
                          f"remained at target_accept {until['rounds'][-1]['target_accept']:g}, so more draws would "
                          "not help. Deal with the divergences first (see that verdict).")
            elif until and not until.get("converged") and np.isfinite(until["max_time"]):
                remedy = (f"model.fit(until=\"converged\") stopped after {until['n_rounds']} round(s) when its time "
                          f"budget ({until['max_time']:g} s) ran out: refit with model.fit(until=\"converged\", "
                          f"max_time={2 * until['max_time']:g}).")
            elif until and not until.get("converged"):  # until="auto" reached its cap of draws
                remedy = (f"The default fit sampled {until['n_rounds']} round(s), {until['draws']} draws per chain "
                          f"(the most it adds, {until.get('max_draws')} per chain), without converging: refit with "
                          f"model.fit(until=\"converged\", max_time=1200) to allow more, and look at the model: "
                          f"weakly identified terms often need a more informative prior.")
            if factors and col != "ess_tail":
                remedy += (" The affected group terms (" + ", ".join(sorted(factors)) + ") may need the other "
                           "parameterisation (centered=True/False per factor).")
            remedy += _rescale_hint(fit, list(bad.index))
            verdicts.append(Verdict(problem, message, remedy, tuple(bad.index)))

    if hits:
        verdicts.append(Verdict(
            "tree_depth",
            f"{hits} transitions ({hits / (chains * n_draws):.1%}) reached the maximum tree depth ({max_depth}): "
            "sampling was inefficient and may not have explored the whole posterior.",
            "Rescale predictors to unit scale (scale(x)) and keep intercept_prior='centered' so the "
            "intercept and slopes are not strongly correlated; non-centre weakly informed grouping factors."
            + _rescale_hint(fit, []),
        ))
    if bfmi.size and _nanmin(bfmi) < BFMI_MIN:
        low_chains = [str(i) for i, v in enumerate(bfmi) if v < BFMI_MIN]
        verdicts.append(Verdict(
            "bfmi",
            f"E-BFMI below {BFMI_MIN} in chain(s) {', '.join(low_chains)} (min {_nanmin(bfmi):.2f}): the momentum "
            "resampling cannot reach the tails of the energy distribution, typical of a funnel.",
            "Reparameterise: non-centre the grouping factors with few observations per level "
            "(centered=False), and run a longer warm-up (tune=2000).",
        ))

    not_computed = _not_computed(table, bfmi, chains, n_draws)
    for check, (message, remedy, names) in not_computed.items():
        verdicts.append(Verdict("not_computed", message, remedy, names))

    verdicts += _identifiability(fit, params, table)

    for label, row in singular.iterrows():
        if not row["singular"]:
            continue
        f = _factor_of(label)
        if row["kind"] == "sd":
            term = label[label.index(",") + 1:-1].strip()
            if term == "Intercept":
                fix = (f"If {f} is part of the design keep it (the estimate is honest about little "
                       f"between-group variation); otherwise drop (1 | {f}).")
            else:
                fix = (f"Drop the random slope of {term} for {f} (keep (1 | {f})), or keep it to "
                       "reflect the design and report that its SD is prior-driven.")
            verdicts.append(Verdict(
                "singular_sd",
                f"{label} is singular: its posterior piles up at zero (median {row['median']:.3g}; density at 0 is "
                f"{row['statistic']:.0%} of the peak). The data show no evidence that groups vary in this "
                "term, so its size reflects mostly the prior (lme4 would report a singular fit).",
                fix, (label,), affects_ok=False))
        else:
            verdicts.append(Verdict(
                "singular_cor",
                f"{label} is near ±1 (median {row['median']:.2f}): the correlation is not identified by the data "
                "and the covariance matrix is close to degenerate (lme4 would report a singular fit).",
                f"Use uncorrelated effects (x || {f}) or drop the slope for {f}.", (label,), affects_ok=False))

    return Diagnosis(table=table, divergences=n_div, divergence_location=location, tree_depth_hits=hits,
                     max_tree_depth=max_depth, bfmi=bfmi, singular=singular, verdicts=verdicts,
                     n_draws=n_draws, chains=chains,
                     not_computed={check: v[0] for check, v in not_computed.items()}, until=until)


#: Chains are in different modes when two chain means differ by more than this many within-chain SDs.
MODE_GAP = 4.0
#: A parameter's posterior is "its prior" when its SD is at least this share of the prior SD.
PRIOR_DOMINATED = 0.9


def _prior_sds(fit) -> dict[str, float]:
    """Prior SD of each coefficient, group SD and family parameter, by table label (where comparable)."""
    out = {}
    # the mean's intercepts (a categorical model has one per category: centred when each has slopes beside it)
    terms = fit.meta["fixed_terms"]
    intercepts = {r.slot.param for r in fit.priors if r.slot.cls == "Intercept" and r.slot.param in terms}
    centred = getattr(fit.priors, "intercept_prior", "centered") == "centered" and len(terms) > max(len(intercepts), 1)
    if getattr(fit.spec, "nonlinear", None) is not None:  # a parameter's intercept beside covariates: centred too
        from .nonlinear.design import parameter_centring

        T = parameter_centring(fit.design)[1]
        if T is not None:
            intercepts = {terms[j] for j in range(len(terms)) if np.count_nonzero(T[j]) > 1}
            centred = True
    for row in fit.priors:
        label = row.slot.param
        if label in intercepts and centred:  # the prior is on the intercept at the predictors' means
            continue
        try:
            with np.errstate(all="ignore"):
                sd = float(row.prior.scipy().std())
        except Exception:  # a prior without a scipy form (LKJ): nothing to compare  # noqa: BLE001
            continue
        if np.isfinite(sd) and sd > 0:
            out[label] = sd
    return out


def _identifiability(fit, params, table: pd.DataFrame) -> list[Verdict]:
    """Chains in different modes, and parameters whose posterior is their prior (issue 13: say which, and why).

    Modes: for each reported parameter other than group effects, the chain means differ by more than
    :data:`MODE_GAP` pooled within-chain SDs. Prior-dominated: the posterior SD is at least
    :data:`PRIOR_DOMINATED` of the prior SD (coefficients, group SDs and family parameters; not the
    Intercept when its prior sits on the intercept at the predictors' means).
    """
    out: list[Verdict] = []
    modes = []
    for label, _var, kind, draws in params:
        if kind == "group" or draws.ndim != 2 or draws.shape[0] < 2:
            continue
        means, sds = draws.mean(axis=1), draws.std(axis=1)
        within = float(np.sqrt(np.mean(sds**2)))
        if within > 0 and (means.max() - means.min()) > MODE_GAP * within:
            modes.append((label, means))
    if modes:
        names = [m[0] for m in modes[:5]] + (["..."] if len(modes) > 5 else [])
        label, means = modes[0]
        nonlinear = getattr(fit.spec, "nonlinear", None) is not None
        remedy = (f"Give {label} a prior that rules out the other mode(s), or reparameterise so the modes cannot be "
                  "swapped (e.g. order two exchangeable parameters). ")
        if nonlinear:
            remedy += ("In a nonlinear model two parameters that play the same role (absorption and elimination "
                       "rates, two exponentials) can swap: pass start= near the solution you expect and priors "
                       "that separate them, then refit.")
        else:
            remedy += "Check the model for parameters that only their sum or product identifies."
        out.append(Verdict(
            "multimodal",
            f"The chains found different modes for {', '.join(names)} (chain means of {label}: "
            f"{', '.join(f'{m:.4g}' for m in means)}): the posterior has several separated regions, and "
            "the pooled draws mix them.", remedy, tuple(m[0] for m in modes)))
    prior_sd = _prior_sds(fit)
    weak = []
    for label, row in table.iterrows():
        if label in prior_sd and np.isfinite(row["sd"]) and row["sd"] >= PRIOR_DOMINATED * prior_sd[label]:
            weak.append((label, float(row["sd"]) / prior_sd[label]))
    if weak:
        names = ", ".join(f"{lab} ({r:.0%} of its prior SD)" for lab, r in weak[:6])
        out.append(Verdict(
            "prior_dominated",
            f"The data say little about {names}: the posterior is about as wide as the prior, so these estimates "
            "reflect the prior, not the data.",
            "Report them as prior-driven, or give them an informative prior from outside knowledge; a parameter the "
            "data cannot identify is better fixed or dropped (a nonlinear parameter without information: fix it in "
            "the expression, or remove its random effect).",
            tuple(lab for lab, _ in weak), affects_ok=False))
    return out


def _stopped_by_divergences(u: dict) -> bool:
    """Whether ``until="converged"`` stopped because its last, kept round diverged at the highest target."""
    last = u["rounds"][-1] if u.get("rounds") else {}
    return bool(last.get("divergences")) and bool(last.get("kept"))


def _until_line(u: dict) -> str:
    """One sentence on what ``until="converged"`` did."""
    div = sum(r["divergences"] for r in u["rounds"] if not r["kept"])
    dropped = f"; {div} divergent draws in discarded rounds" if div else ""
    if u["converged"]:
        state = "converged"
    elif _stopped_by_divergences(u):
        state = f"not converged (divergences remained at target_accept {u['rounds'][-1]['target_accept']:g})"
    elif np.isfinite(u["max_time"]):
        state = f"not converged (time budget {u['max_time']:g} s spent)"
    else:
        state = f"not converged (the cap of {u.get('max_draws')} draws per chain reached)"
    mode = "Sampled until converged (the default)" if u.get("mode") == "auto" else "Sampled until converged"
    return (f"{mode}: {u['n_rounds']} round(s), {u['draws']} draws per chain kept, "
            f"{u['seconds']:.1f} s{dropped}; {state}: max R-hat {u['rhat_max']:.3f}, min bulk ESS "
            f"{u['ess_bulk_min']:.0f}, min tail ESS {u['ess_tail_min']:.0f}.")


_CHECK_NAMES = {"r_hat": "R-hat", "ess_bulk": "Bulk ESS", "ess_tail": "Tail ESS", "bfmi": "E-BFMI"}


def _not_computed(table: pd.DataFrame, bfmi: np.ndarray, chains: int, n_draws: int) -> dict:
    """Find the checks that came out NaN: {check: (message, remedy, parameters)}.

    A parameter whose draws are all equal (sd 0) has no R-hat or ESS by construction and is not
    counted; a single draw has an undefined sd and is.
    """
    out = {}
    draws_word = f"{n_draws} draw{'s' if n_draws != 1 else ''} per chain"
    chains_word = f"{chains} chain{'s' if chains != 1 else ''}"
    for check in ("r_hat", "ess_bulk", "ess_tail"):
        if not len(table):
            continue
        col = np.asarray(table[check], dtype=float)
        missing = np.isnan(col) & ~(np.asarray(table["sd"], dtype=float) == 0)
        if not missing.any():
            continue
        names = tuple(table.index[missing])
        why, fix = [], []
        if check == "r_hat" and chains < MIN_CHAINS_RHAT:
            why.append(f"it compares chains and needs at least {MIN_CHAINS_RHAT}, but the fit has {chains_word}")
            fix.append("chains=4")
        if n_draws < MIN_DRAWS:
            why.append(f"it needs at least {MIN_DRAWS} draws per chain, but the fit has {draws_word}")
            fix.append("draws=1000")
        if not why:
            bad_draws = ~np.isfinite(np.asarray(table["mean"], dtype=float)[missing])
            why.append("the draws of these parameters are not all finite" if bad_draws.any() else
                       "ArviZ returned NaN for these parameters")
            remedy = "Refit (with the default settings: draws=1000, tune=1000, chains=4) and check the model."
        else:
            remedy = f"Refit with {' and '.join(fix)} (the default{'s' if len(fix) > 1 else ''})."
        shown = ", ".join(list(names[:5]) + (["..."] if len(names) > 5 else []))
        message = (f"{_CHECK_NAMES[check]} could not be computed for {len(names)} parameter(s) ({shown}): "
                   f"{'; '.join(why)}. Without it convergence cannot be confirmed, so the check fails.")
        out[check] = (message, remedy, names)
    if bfmi.size and np.isnan(bfmi).any():
        lost = [str(i) for i in np.flatnonzero(np.isnan(bfmi))]
        if n_draws < MIN_DRAWS_BFMI:
            why = (f"it compares successive energies and needs at least {MIN_DRAWS_BFMI} draws per chain, "
                   f"but the fit has {draws_word}")
            remedy = "Refit with draws=1000 (the default)."
        else:
            why = "the energies recorded by the sampler are not all finite"
            remedy = "Refit (with the default settings: draws=1000, tune=1000, chains=4) and check the model."
        out["bfmi"] = (f"E-BFMI could not be computed for chain(s) {', '.join(lost)}: {why}. Without it the energy "
                       "check cannot be confirmed, so it fails.", remedy, ())
    return out

"""A model report that follows the mixed-model reporting checklist, as Markdown or standalone HTML.

Sections (in order): Model; Data and grouping structure; Fixed effects; Random-effects structure;
Priors; Estimation; Variance components; Convergence diagnostics; Posterior predictive checks;
Limitations. They answer the checklist questions: framework, outcome, family and link, unit of
observation, clustering and the number of groups and observations per group, fixed and random
effects, estimation method and software, variance components with intervals, diagnostics and
model fit, and the limitations the data imply. The HTML embeds its plots as base64 PNG, so the
file stands alone.
"""

from __future__ import annotations

import base64
import io
import tempfile
import warnings
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import SpecificationError

__all__ = ["report", "SECTIONS"]

SECTIONS = (
    "Model", "Data and grouping structure", "Fixed effects", "Random-effects structure", "Priors", "Estimation",
    "Variance components", "Convergence diagnostics", "Posterior predictive checks", "Limitations",
)
DECIMALS = 3


def _fmt(x) -> str:
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        if not np.isfinite(x):
            return "–"
        return f"{x:.{DECIMALS}f}"
    return str(x)


def _md_table(df: pd.DataFrame, index: bool = True) -> str:
    d = df.reset_index() if index and not isinstance(df.index, pd.RangeIndex) else df
    cols = [str(c) for c in d.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for _, row in d.iterrows():
        lines.append("| " + " | ".join(_fmt(v).replace("|", "\\|") for v in row.values) + " |")
    return "\n".join(lines)


def _html_table(df: pd.DataFrame, index: bool = True) -> str:
    d = df.reset_index() if index and not isinstance(df.index, pd.RangeIndex) else df
    head = "".join(f"<th>{escape(str(c))}</th>" for c in d.columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(_fmt(v))}</td>" for v in row.values) + "</tr>"
                   for _, row in d.iterrows())
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _outcome_notes(fit) -> str:
    """What the reader must know about the outcome: ordered categories, censoring, truncation, weights."""
    d, spec, notes = fit.design, fit.spec, []
    levels = getattr(d, "response_levels", None)
    if levels is not None and fit.family.outcome == "categorical":
        notes.append(f"unordered categories {', '.join(map(str, levels))} ({levels[0]} the reference; one linear "
                     f"predictor for each of the other {len(levels) - 1})")
    elif levels is not None:
        notes.append(f"ordered categories {' < '.join(map(str, levels))} ({len(levels) - 1} thresholds)")
    cens = getattr(d, "cens", None)
    if cens is not None:
        notes.append(f"{int((cens == 1).sum())} right- and {int((cens == -1).sum())} left-censored of {len(cens)} "
                     f"rows (cens({spec.cens}); their likelihood is the probability beyond the recorded value)")
    if getattr(spec, "trunc", None) is not None:
        lb, ub = spec.trunc
        notes.append(f"truncated to [{'-inf' if lb is None else f'{lb:g}'}, {'inf' if ub is None else f'{ub:g}'}]")
    if getattr(spec, "weights", None) is not None:
        notes.append(f"observation weights {spec.weights} (each row's log-likelihood times its weight)")
    return "; " + "; ".join(notes) if notes else ""


def _framework(fit) -> str:
    fam = fit.family
    has_groups = bool(fit.meta["factors"])
    if getattr(fit.spec, "nonlinear", None) is not None:
        return "Bayesian nonlinear mixed model" if has_groups else "Bayesian nonlinear regression"
    if fam.outcome == "ordinal":
        return ("Bayesian cumulative-link (ordinal) mixed model" if has_groups
                else "Bayesian cumulative-link (ordinal) regression")
    if getattr(fit.spec, "cens", None) is not None:
        return (f"Bayesian parametric survival / censored-outcome {'mixed model' if has_groups else 'regression'} "
                f"({fam.name})")
    if fam.is_linear:
        kind = "Bayesian linear mixed model (LMM)" if has_groups else "Bayesian linear regression"
    else:
        kind = ("Bayesian generalized linear mixed model (GLMM)" if has_groups
                else "Bayesian generalized linear model (GLM)")
    return kind


def _group_structure(fit) -> pd.DataFrame:
    rows = []
    for f, m in fit.meta["factors"].items():
        n = np.asarray(m["n_per_level"])
        rows.append((f, len(m["levels"]), int(n.min()), float(np.median(n)), int(n.max())))
    return pd.DataFrame(rows, columns=["factor", "groups", "obs_min", "obs_median", "obs_max"]).set_index("factor")


def _random_structure(fit) -> list[str]:
    lines = []
    factors = ([g.factor for g in fit.spec.groups] if getattr(fit.spec, "nonlinear", None) is None
               else list(fit.meta["factors"]))  # a nonlinear model's factors are in its stacked design
    for factor in factors:
        m = fit.meta["factors"][factor]
        cors = m["cors"]
        terms = ", ".join(m["terms"])
        desc = f"**{factor}**: group-specific {terms}"
        if cors:
            desc += "; correlated (" + "; ".join(", ".join(t) for _, t in cors) + ", LKJ prior on the correlations)"
        elif len(m["terms"]) > 1:
            desc += "; uncorrelated"
        cent = fit.meta.get("centered", {}).get(factor, False)
        desc += f"; {'centred' if cent else 'non-centred'} parameterisation"
        lines.append(desc)
    return lines


def _limitations(fit, diag, ppc_res, od) -> list[str]:
    out = []
    for f, m in fit.meta["factors"].items():
        k = len(m["levels"])
        n = np.asarray(m["n_per_level"])
        if k < 5:
            out.append(f"Only {k} levels of {f}: its SD is estimated from very few groups and depends strongly "
                       "on the prior; consider treating it as a fixed effect.")
        elif k < 10:
            out.append(f"{k} levels of {f}: between-group variation is estimated imprecisely (wide interval).")
        slopes = [t for t in m["terms"] if t != "Intercept"]
        if slopes and np.median(n) < 5:
            out.append(f"Random slope(s) of {', '.join(slopes)} for {f} with a median of {np.median(n):g} "
                       "observations per group: too few to estimate group-specific slopes well.")
        if np.min(n) < 2:
            out.append(f"Some levels of {f} have a single observation; their effects are informed only by the "
                       "population distribution.")
    for label in diag.singular_components:
        out.append(f"{label} is singular (posterior piles up at its boundary): the data do not support this "
                   "component and its estimate is driven by the prior.")
    if fit.meta.get("n_dropped"):
        out.append(f"{fit.meta['n_dropped']} rows were dropped for missing or non-finite values "
                   f"(rows {', '.join(map(str, fit.meta.get('dropped_rows', [])[:10]))}"
                   f"{', ...' if len(fit.meta.get('dropped_rows', [])) > 10 else ''}); results assume they are "
                   "missing at random given the predictors.")
    if not diag.ok:
        out.append("The sampler reported problems (see Convergence diagnostics); estimates may be unreliable.")
    if ppc_res is not None and ppc_res.table.loc[~ppc_res.table.index.str.startswith("mean["), "extreme"].any():
        out.append("The posterior predictive check shows features of the data the model does not reproduce.")
    if od is not None and od.overdispersed:
        out.append(od.message)
    out.append("Observational associations: the fixed effects are not causal effects unless the design makes them so.")
    return out


def _png(fig_or_pc) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    if hasattr(fig_or_pc, "savefig") and not isinstance(fig_or_pc, plt.Figure):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "plot.png"
            fig_or_pc.savefig(str(path), dpi=80)
            data = path.read_bytes()
        plt.close("all")
    else:
        fig_or_pc.savefig(buf, format="png", dpi=80, bbox_inches="tight")
        plt.close(fig_or_pc)
        data = buf.getvalue()
    return base64.b64encode(data).decode("ascii")


def _components_figure(vc: pd.DataFrame):
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 0.45 * len(vc) + 1))
    ypos = np.arange(len(vc))[::-1]
    ax.errorbar(vc["mean"], ypos, xerr=[vc["mean"] - vc["hdi_low"], vc["hdi_high"] - vc["mean"]], fmt="o",
                color="C0", capsize=3)
    ax.set_yticks(ypos)
    ax.set_yticklabels(list(vc.index))
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_xlabel("posterior mean and 95% HDI")
    ax.set_title("Variance components")
    fig.tight_layout()
    return fig


def _sampler_words(fit) -> str:
    if fit.settings.sampler == "nutpie":
        return "nutpie, on hmodels' compiled log density and gradient"
    return f"{fit.settings.sampler}, on the PyMC model"


def _method_words(fit) -> list[str]:
    """How the posterior was computed: what was integrated out, and the parameterisation per factor."""
    out = []
    factor = fit.meta.get("collapsed_factor")
    if fit.meta.get("method") == "collapsed" and factor:
        what = f"the group effects of {factor}"
        if fit.meta.get("coefficients_integrated"):
            what += " and the population-level coefficients"
        out.append(f"Gaussian likelihood: {what} were integrated out analytically, and drawn exactly from their "
                   "conditional posterior for every posterior draw (the same posterior as sampling them).")
    centred = fit.meta.get("centered") or {}
    if centred:
        out.append("Group effects sampled " + "; ".join(
            f"{f}: {'centred' if c else 'non-centred'}" for f, c in centred.items())
            + " (chosen from how informative each level's data are).")
    if fit.meta.get("mass_matrix"):
        out.append(f"Mass matrix adaptation: {fit.meta['mass_matrix']}.")
    return out


def report(fit, format: str = "markdown", prob: float = 0.95, path: str | Path | None = None, seed: int = 0,
           plots: bool = True) -> str:
    """Write a report of the fit following the mixed-model reporting checklist.

    Parameters
    ----------
    fit : Fit
    format : {"markdown", "html"}
        Markdown text, or a standalone HTML page with embedded PNG plots.
    prob : float
        HDI probability of every interval.
    path : str or Path, optional
        Also write the report to this file.
    seed : int
        Seed of the posterior predictive replicates.
    plots : bool
        Embed plots (HTML only).

    Returns
    -------
    str
        The report.

    Examples
    --------
    >>> text = fit.report()  # doctest: +SKIP
    >>> fit.report(format="html", path="sleepstudy.html")  # doctest: +SKIP
    """
    from . import checks, components, diagnostics

    if format not in ("markdown", "html"):
        raise SpecificationError(f"format must be 'markdown' or 'html', got {format!r}.")
    fam = fit.family
    s = fit.settings
    pct = f"{prob:.0%}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        diag = diagnostics.diagnose(fit)
        fe = fit.fixed_effects(prob)[["mean", "sd", "hdi_low", "hdi_high", "r_hat", "ess_bulk"]]
        vc = fit.variance_components(prob)
        vc.index.name = "parameter"
        try:
            icc = components.icc(fit, prob) if fit.meta["factors"] else None
            r2 = components.r2(fit, prob)
        except SpecificationError:
            icc = r2 = None
        try:
            ppc_res, ppc_note = checks.ppc(fit, seed=seed), None
        except SpecificationError as exc:  # censored outcomes: recorded values are bounds, not outcomes
            ppc_res, ppc_note = None, str(exc)
        try:
            od = checks.overdispersion(fit, seed=seed) if fam.dispersion_checkable else None
        except SpecificationError:
            od = None

    # each section: list of blocks, a block is str (paragraph), list (bullets), DataFrame (table) or ("img", b64)
    sec: dict[str, list] = {k: [] for k in SECTIONS}
    n_obs = fit.meta["n_obs"]
    outcome = fit.meta.get("observed", fit.spec.response)
    sec["Model"] += [
        f"Framework: {_framework(fit)}, fitted with hmodels.",
        [f"Formula: `{fit.spec.formula}`",
         f"Outcome: {fit.spec.response}" + (f" (successes out of {fit.spec.trials} trials)" if fit.spec.trials else "")
         + (f" with known standard errors {fit.spec.se}" if fit.spec.se else "") + _outcome_notes(fit),
         f"Family: {fam.name}; link: {fam.link}",
         *([f"Nonlinear parameters (each with its own formula, on the {fam.link} scale): "
            + "; ".join(f"{k} ~ {v}" for k, v in fit.spec.nonlinear.parameters)]
           if getattr(fit.spec, "nonlinear", None) is not None else []),
         "Fixed effects: " + (", ".join(fit.meta["fixed_terms"]) or "none")
         + (f"; offset {fit.spec.offset} (coefficient fixed at 1)" if getattr(fit.spec, "offset", None) else ""),
         "Grouping factors: " + (", ".join(fit.meta["factors"]) or "none")],
    ]
    gs = _group_structure(fit)
    unit = (f"Unit of observation: one row of the data ({n_obs} observations of {outcome} used"
            + (f"; {fit.meta['n_dropped']} rows dropped for missing values" if fit.meta.get("n_dropped") else "")
            + ").")
    sec["Data and grouping structure"].append(unit)
    if len(gs):
        sec["Data and grouping structure"] += [
            "Observations are clustered in "
            + ", ".join(f"{int(k)} levels of {f}" for f, k in zip(gs.index, gs["groups"]))
            + "; observations per group (min / median / max):", gs]
    else:
        sec["Data and grouping structure"].append("No grouping factor: observations are treated as independent.")
    sec["Fixed effects"] += [
        f"Posterior mean, SD and {pct} highest-density interval (HDI) of each population-level effect, on the "
        f"{fam.link} scale" + (" (the scale of the outcome)." if fam.link == "identity" else
                               f" (transform with the inverse {fam.link} for the outcome scale)."), fe]
    sec["Random-effects structure"].append(_random_structure(fit) or ["No group-specific effects."])
    pri = fit.priors.to_frame()
    sec["Priors"] += [f"Prior set: {fit.meta.get('prior_set', 'default')}; intercept prior on the "
                      f"{fit.meta.get('intercept_prior', 'centered')} intercept. The priors actually used:", pri]
    versions = ", ".join(f"{k} {v}" for k, v in fit.versions.items() if v != "not installed")
    sec["Estimation"].append([
        f"Method: Bayesian estimation by Hamiltonian Monte Carlo (NUTS), sampler: {_sampler_words(fit)}",
        *_method_words(fit),
        f"Chains: {s.chains}; draws per chain: {s.draws}; warm-up per chain: {s.tune}; "
        f"target_accept: {s.target_accept:g}",
        f"Seed: {s.seed}",
        f"Software: {versions}",
    ] + ([f"Sampling time: {fit.timing['total_s']:.1f} s"] if fit.timing.get("total_s") is not None else []))
    vc_show = vc[["group", "term", "kind", "mean", "sd", "hdi_low", "hdi_high", "r_hat", "ess_bulk"]]
    sec["Variance components"] += [f"Group standard deviations, correlations and family parameters ({pct} HDI):",
                                   vc_show]
    if icc is not None:
        sec["Variance components"] += [
            f"Intraclass correlation per grouping factor (residual variance: {icc.attrs.get('residual_variance')}"
            + (f"; {icc.attrs['additions']}" if icc.attrs.get("additions") else "") + "):",
            icc[["mean", "sd", "hdi_low", "hdi_high"]]]
    if r2 is not None:
        sec["Variance components"] += [
            "R²: marginal (fixed effects) and conditional (fixed and group effects) after Nakagawa & Schielzeth, "
            "and Bayesian R² (Gelman et al. 2019)" + (f"; {r2.attrs['additions']}" if r2.attrs.get("additions") else "")
            + ":", r2[["mean", "sd", "hdi_low", "hdi_high"]]]
    summ = diag.summary().copy()
    summ["value"] = [_fmt(int(v)) if c in ("divergences", "max tree depth hits") else _fmt(float(v))
                     for c, v in zip(summ.index, summ["value"])]
    sec["Convergence diagnostics"] += [
        "All checks passed: no divergences, R-hat ≤ 1.01, enough effective draws, E-BFMI fine."
        if diag.ok else "Problems were found; see the verdicts below.", summ]
    if diag.verdicts:
        sec["Convergence diagnostics"].append([str(v) for v in diag.verdicts])
    if ppc_res is not None:
        ptab = ppc_res.table[~ppc_res.table.index.str.startswith("mean[")]
        sec["Posterior predictive checks"] += [ppc_res.summary(), ptab]
    else:
        sec["Posterior predictive checks"].append(f"Not computed: {ppc_note}")
    if od is not None:
        sec["Posterior predictive checks"].append(od.message)
    sec["Limitations"].append(_limitations(fit, diag, ppc_res, od))

    title = f"hmodels report: {fit.spec.formula}"
    if format == "markdown":
        text = _render_markdown(title, sec)
    else:
        images = {}
        if plots:
            import matplotlib

            matplotlib.use("Agg", force=False)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    if ppc_res is not None:
                        images["Posterior predictive checks"] = _png(ppc_res.plot())
                except Exception:  # a plot must not stop the report  # noqa: BLE001
                    pass
                images["Variance components"] = _png(_components_figure(
                    vc.set_index(vc.index)[["mean", "hdi_low", "hdi_high"]]))
        text = _render_html(title, sec, images)
    if path is not None:
        Path(path).write_text(text, encoding="utf-8")
    return text


def _render_markdown(title: str, sec: dict) -> str:
    out = [f"# {title}", ""]
    for name, blocks in sec.items():
        out += [f"## {name}", ""]
        for b in blocks:
            if isinstance(b, pd.DataFrame):
                out += [_md_table(b), ""]
            elif isinstance(b, list):
                out += [f"- {x}" for x in b] + [""]
            else:
                out += [str(b), ""]
    return "\n".join(out)


_CSS = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}"
        "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
        "th{background:#f0f0f0}code{background:#f4f4f4}img{max-width:100%}")


def _md_inline(s: str) -> str:
    import re

    s = escape(s)
    s = re.sub(r"`([^`]*)`", r"<code>\1</code>", s)
    return re.sub(r"\*\*([^*]*)\*\*", r"<b>\1</b>", s)


def _render_html(title: str, sec: dict, images: dict) -> str:
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{escape(title)}</title>",
           f"<style>{_CSS}</style></head><body>", f"<h1>{escape(title)}</h1>"]
    for name, blocks in sec.items():
        out.append(f"<h2>{escape(name)}</h2>")
        for b in blocks:
            if isinstance(b, pd.DataFrame):
                out.append(_html_table(b))
            elif isinstance(b, list):
                out.append("<ul>" + "".join(f"<li>{_md_inline(str(x))}</li>" for x in b) + "</ul>")
            else:
                out.append(f"<p>{_md_inline(str(b))}</p>")
        if name in images:
            out.append(f'<img alt="{escape(name)} plot" src="data:image/png;base64,{images[name]}">')
    out.append("</body></html>")
    return "\n".join(out)

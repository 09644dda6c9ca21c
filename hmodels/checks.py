"""Posterior predictive checks, overdispersion, residuals and influential groups.

Replicated data come from :func:`hmodels.linpred.simulate_response` (one replicate per posterior
draw, group effects included), so the checks work the same for fresh and reloaded fits. Plots are
ArviZ's (``az.plot_ppc_dist``, ``az.plot_ppc_rootogram``) on a DataTree with a
``posterior_predictive`` group built here.

Bayesian p-values are mid-p values, ``P(T(y_rep) > T(y)) + P(T(y_rep) = T(y)) / 2``, so that
discrete statistics (min, max, share of zeros) that often tie with the observed value are not
pushed to 0 or 1. Values below 0.025 or above 0.975 are flagged as extreme.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .errors import SpecificationError
from .families import FAMILIES
from .linpred import aux_draws, fit_design, linear_predictor, mean_draws, pointwise_loglik, simulate_response

__all__ = ["PPCResult", "ppc", "Overdispersion", "overdispersion", "quantile_residuals", "residuals",
           "group_influence", "EXTREME"]

EXTREME = 0.025


def _mid_p(rep: np.ndarray, obs) -> np.ndarray:
    """Mid-p value over the first (draw) axis."""
    obs = np.asarray(obs, dtype=float)
    return (rep > obs).mean(axis=0) + 0.5 * (rep == obs).mean(axis=0)


def _response_scale(design, y):
    """Outcome on the scale the statistics use (proportions for binomial)."""
    if design.trials is not None:
        return y / np.asarray(design.trials, dtype=float)
    return y


@dataclass
class PPCResult:
    """Posterior predictive check: test statistics with Bayesian p-values, and the replicates.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per statistic (index): observed, rep_mean, rep_low, rep_high (central 95 % of the
        replicated statistic), p_value (mid-p), extreme (bool).
    y : numpy.ndarray
        Observed outcome (counts for binomial).
    y_rep : numpy.ndarray
        Replicated outcomes, shape (draws, n).
    """

    table: pd.DataFrame
    y: np.ndarray
    y_rep: np.ndarray
    family: str
    name: str
    groups: dict = field(default_factory=dict)
    trials: np.ndarray | None = None

    @property
    def extreme(self) -> pd.DataFrame:
        """Rows whose p-value is below 0.025 or above 0.975."""
        return self.table[self.table["extreme"]]

    def summary(self) -> str:
        """One plain-language sentence per family of statistics."""
        t = self.table
        overall = t[~t.index.str.startswith("mean[")]
        pg = t[t.index.str.startswith("mean[")]
        bad = overall[overall["extreme"]]
        parts = []
        if len(bad):
            parts.append("The model does not reproduce " + ", ".join(
                f"the {i} (observed {r.observed:.3g}, replicated {r.rep_low:.3g} to {r.rep_high:.3g}, "
                f"p = {r.p_value:.3f})"
                for i, r in bad.iterrows()) + ".")
        else:
            parts.append("All overall test statistics (" + ", ".join(overall.index) +
                         ") are reproduced (Bayesian p-values between 0.025 and 0.975).")
        if len(pg):
            n_bad = int(pg["extreme"].sum())
            parts.append(f"{n_bad} of {len(pg)} per-group means have extreme p-values"
                         + (" (about 5% would be expected by chance)." if n_bad else "."))
        return " ".join(parts)

    def to_datatree(self):
        """A DataTree with ``posterior_predictive`` and ``observed_data`` groups (one chain)."""
        import xarray as xr

        y, rep = self.y, self.y_rep
        fam = FAMILIES[self.family]
        if self.trials is not None and fam.outcome == "binomial":
            y, rep = y / self.trials, rep / self.trials
        elif fam.discrete:
            y, rep = y.astype(np.int64), rep.astype(np.int64)  # ArviZ detects discrete data by dtype
        pp = xr.Dataset({self.name: (("chain", "draw", "obs"), rep[None])})
        obs = xr.Dataset({self.name: (("obs",), y)})
        return xr.DataTree.from_dict({"posterior_predictive": pp, "observed_data": obs})

    def plot(self, kind: str | None = None, num_samples: int = 50):
        """ArviZ posterior predictive plot chosen by family.

        Density overlay (``az.plot_ppc_dist``, KDE) for continuous outcomes and proportions, a
        rootogram (``az.plot_ppc_rootogram``) for counts, and histograms for binary outcomes.

        Returns
        -------
        arviz_plots.PlotCollection

        Examples
        --------
        >>> fit.ppc().plot()  # doctest: +SKIP
        """
        import arviz as az

        dt = self.to_datatree()
        if kind is None:
            kind = {"counts": "rootogram", "bars": "hist"}.get(FAMILIES[self.family].ppc_kind, "kde")
        if kind == "rootogram":
            return az.plot_ppc_rootogram(dt, backend="matplotlib")
        return az.plot_ppc_dist(dt, kind=kind, num_samples=num_samples, backend="matplotlib")

    def __repr__(self) -> str:
        return (
            f"hmodels.PPCResult ({self.y_rep.shape[0]} replicates)\n"
            f"{self.table.round(3).to_string()}\n\n{self.summary()}"
        )

    def _repr_html_(self) -> str:
        from html import escape

        return f"<p><b>Posterior predictive check</b>: {escape(self.summary())}</p>" + self.table.round(3).to_html()


def _replicates(fit, seed, draws=None):
    """(design, eta, y_rep) with draws flattened to one axis: eta and y_rep of shape (S, n)."""
    design = fit_design(fit)
    cens = getattr(design, "cens", None)
    if cens is not None and (cens != 0).any():
        raise SpecificationError(
            f"Posterior predictive checks and residuals compare replicated outcomes with the recorded ones, but "
            f"{int((cens != 0).sum())} rows are censored: their recorded values are bounds, not outcomes, so the "
            "comparison would be wrong. Compare models with fit.loo() (its likelihood accounts for censoring); "
            "fit.predict(kind='response') gives the uncensored outcomes."
        )
    eta = linear_predictor(fit, design, groups="include")
    rep = np.asarray(simulate_response(fit, eta, design, seed=seed), dtype=float)
    c, d, n = rep.shape
    eta, rep = eta.reshape((c * d, *eta.shape[2:])), rep.reshape(c * d, n)  # eta: (S, n, K - 1) if categorical
    idx = np.arange(c * d)
    if draws is not None and draws < c * d:
        idx = np.sort(np.random.default_rng(seed).choice(c * d, size=draws, replace=False))
        eta, rep = eta[idx], rep[idx]
    return design, eta, rep, idx


def ppc(fit, group: str | list[str] | None = None, draws: int | None = None, seed: int = 0,
        prob: float = 0.95) -> PPCResult:
    """Posterior predictive check with Bayesian p-values for test statistics.

    Parameters
    ----------
    fit : Fit
    group : str or list of str, optional
        Grouping factor(s) whose per-level means are also checked. Default: every factor of the
        model; ``[]`` for none.
    draws : int, optional
        Use a random subset of this many posterior draws (default all).
    seed : int
        Seed for the replicates.
    prob : float
        Central probability of the replicated-statistic interval.

    Returns
    -------
    PPCResult
        ``.table`` (statistic, observed, replicated interval, p_value, extreme), ``.plot()``.

    Notes
    -----
    Statistics: mean, sd, min, max (on the proportion scale for binomial outcomes), share of
    zeros (count, binary and binomial outcomes), and the mean of each level of each requested
    grouping factor (rows ``mean[Subject=308]``). A categorical (unordered) outcome is checked by
    each category's share instead (rows ``share(y = a)``, per level ``mean[g=g1](y = a)``).

    Examples
    --------
    >>> res = fit.ppc()  # doctest: +SKIP
    >>> res.table.loc[["mean", "sd"], "p_value"]  # doctest: +SKIP
    """
    design, _, rep, _ = _replicates(fit, seed, draws)
    y = np.asarray(design.y, dtype=float)
    fam = fit.family
    ys, reps = _response_scale(design, y), _response_scale(design, rep)
    # an unordered outcome: each category's share (the mean, sd, min and max of category numbers mean nothing)
    shares = [(f"({fit.spec.response} = {lv})", k) for k, lv in enumerate(design.response_levels, start=1)] \
        if fam.outcome == "categorical" else []
    stats = {f"share{label}": ((y == k).mean(), (rep == k).mean(axis=1)) for label, k in shares} if shares else {
        "mean": (ys.mean(), reps.mean(axis=1)),
        "sd": (ys.std(ddof=1), reps.std(axis=1, ddof=1)),
        "min": (ys.min(), reps.min(axis=1)),
        "max": (ys.max(), reps.max(axis=1)),
    }
    if fam.outcome in ("count", "binary", "binomial"):
        stats["share_zeros"] = ((y == 0).mean(), (rep == 0).mean(axis=1))
    if group is None:
        group = [f.factor for f in design.factors]
    elif isinstance(group, str):
        group = [group]
    groups = {}
    for g in group:
        fd = design.factor(g)
        groups[g] = fd
        for i, level in enumerate(fd.levels):
            m = fd.codes == i
            if m.any() and shares:
                stats.update({f"mean[{g}={level}]{label}": ((y[m] == k).mean(), (rep[:, m] == k).mean(axis=1))
                              for label, k in shares})
            elif m.any():
                stats[f"mean[{g}={level}]"] = (ys[m].mean(), reps[:, m].mean(axis=1))
    alpha = (1 - prob) / 2
    rows = []
    for name, (obs, r) in stats.items():
        p = float(_mid_p(r, obs))
        lo, hi = np.quantile(r, [alpha, 1 - alpha])
        rows.append((name, float(obs), float(r.mean()), float(lo), float(hi), p, bool(p < EXTREME or p > 1 - EXTREME)))
    table = pd.DataFrame(rows, columns=["statistic", "observed", "rep_mean", "rep_low", "rep_high", "p_value",
                                        "extreme"]).set_index("statistic")
    return PPCResult(table, y, rep, fam.name, str(fit.meta.get("observed", "y")), groups,
                     None if design.trials is None else np.asarray(design.trials, dtype=float))


@dataclass
class Overdispersion:
    """Observed vs replicated Pearson dispersion.

    Attributes
    ----------
    ratio : float
        Posterior mean of ``D(y) / D(y_rep)`` (about 1 when the family's variance fits).
    ratio_low, ratio_high : float
        Central 95 % interval of the ratio.
    p_value : float
        ``P(D(y_rep) >= D(y))``: small when the data are more dispersed than the model allows.
    overdispersed, underdispersed : bool
    message : str
        Plain-language verdict with a suggestion.
    """

    ratio: float
    ratio_low: float
    ratio_high: float
    p_value: float
    overdispersed: bool
    underdispersed: bool
    message: str

    def to_frame(self) -> pd.DataFrame:
        """The result as a one-row DataFrame."""
        return pd.DataFrame([{k: getattr(self, k) for k in ("ratio", "ratio_low", "ratio_high", "p_value",
                                                            "overdispersed", "underdispersed")}])

    def __repr__(self) -> str:
        return (f"Overdispersion: ratio {self.ratio:.2f} [{self.ratio_low:.2f}, {self.ratio_high:.2f}], "
                f"p = {self.p_value:.3f}\n{self.message}")


def _variance_function(fit, design, mu, idx=None):
    """The family's variance of the outcome at ``mu`` (draws flattened; ``idx`` selects draws)."""
    fam = fit.family
    if not fam.discrete or fam.outcome == "ordinal":
        raise SpecificationError(
            f"The overdispersion check is for count and binomial families (poisson, negativebinomial, binomial, "
            f"bernoulli, and their zero-inflated, hurdle and beta-binomial versions), not {fam.name!r}; for a "
            "continuous outcome look at fit.ppc() and the residuals."
        )
    aux = {}
    for a, v in aux_draws(fit, design).items():  # (draws, 1), or (draws, n) for a parameter with its own formula
        draws = np.asarray(v, dtype=float).reshape(-1, v.shape[-1])
        aux[a] = draws if idx is None else draws[idx]
    trials = None if design.trials is None else np.asarray(design.trials, dtype=float)
    return fam.variance(mu, aux, trials=trials)


def _flat_aux(fit, idx=None) -> dict:
    """The family's parameters as (draws, 1) arrays, draws flattened as :func:`_replicates` (``idx`` selects)."""
    out = {}
    for a, v in aux_draws(fit).items():
        v = v.reshape(-1, *v.shape[2:])  # (draws, 1), or (draws, 1, K-1) for ordinal thresholds
        out[a] = v if idx is None else v[idx]
    return out


def overdispersion(fit, seed: int = 0, draws: int | None = None, alpha: float = 0.05) -> Overdispersion:
    """Check whether the outcome is more variable than the family allows (Pearson discrepancy check).

    Per draw, ``D(y) = sum_i (y_i - E_i)² / V_i`` with the draw's expected outcomes ``E_i`` (group
    effects included; zero-inflation and hurdles too) and the family's variance ``V_i``, against the
    same discrepancy of a replicated data set (Gelman, Meng & Stern 1996). Families with a
    dispersion parameter of their own (negativebinomial, beta_binomial, ...) are checked against
    the dispersion they estimated; :attr:`~hmodels.families.Family.dispersion_checkable` says
    whether a report runs the check.

    Parameters
    ----------
    fit : Fit
        A poisson, negativebinomial, binomial or bernoulli fit.
    seed : int
    draws : int, optional
        Use a random subset of posterior draws.
    alpha : float
        Overdispersion is flagged when ``p_value < alpha`` (underdispersion when ``> 1 - alpha``).

    Returns
    -------
    Overdispersion

    Examples
    --------
    >>> from hmodels.checks import overdispersion
    >>> overdispersion(fit).overdispersed  # doctest: +SKIP
    """
    if fit.family.outcome == "categorical":
        raise SpecificationError(
            "The overdispersion check compares the outcome's spread with its variance; a categorical outcome has "
            "neither (its categories are unordered). Check the category counts per group with fit.ppc()."
        )
    design, eta, rep, idx = _replicates(fit, seed, draws)
    mu = mean_draws(fit, eta)
    y = np.asarray(design.y, dtype=float)
    V = np.maximum(_variance_function(fit, design, mu, idx), 1e-12)  # refuses continuous families
    expected = fit.family.response_mean(mu, _flat_aux(fit, idx), trials=design.trials)
    d_obs = ((y - expected) ** 2 / V).sum(axis=1)
    d_rep = ((rep - expected) ** 2 / V).sum(axis=1)
    ratio = d_obs / d_rep
    p = float((d_rep >= d_obs).mean())
    over, under = p < alpha, p > 1 - alpha
    fam = fit.family.name
    alternative = fit.family.overdispersed_alternative
    r = float(ratio.mean())
    if over:
        if alternative is not None:
            hint = (f"Use family='{alternative}', or add an observation-level random effect "
                    "(a column with one level per row, e.g. (1 | obs_id)).")
        else:
            hint = "Add the grouping or predictors that explain the extra variation."
        msg = (f"The data are overdispersed for the {fam} family: the Pearson dispersion is {r:.2f} times "
               f"what the model replicates (p = {p:.3f}), so intervals are too narrow. {hint}")
    elif under:
        msg = (f"The data are underdispersed for the {fam} family (dispersion ratio {r:.2f}, p = {p:.3f}): "
               "the model allows more variation than observed; intervals may be conservative.")
    else:
        msg = (f"No evidence of overdispersion for the {fam} family (dispersion ratio {r:.2f}, "
               f"p = {p:.3f}).")
    lo, hi = np.quantile(ratio, [0.025, 0.975])
    return Overdispersion(r, float(lo), float(hi), p, bool(over), bool(under), msg)


def quantile_residuals(fit, seed: int = 0, draws: int | None = None) -> np.ndarray:
    """Randomized quantile residuals (Dunn & Smyth 1996) from the posterior predictive distribution.

    ``u_i = (#{y_rep < y_i} + V (#{y_rep = y_i} + 1)) / (S + 1)`` with ``V ~ Uniform(0, 1)`` over
    ``S`` replicates, then ``r_i = Phi^{-1}(u_i)``: exactly standard normal when the model is
    right, for continuous and discrete outcomes alike.

    Examples
    --------
    >>> from hmodels.checks import quantile_residuals
    >>> r = quantile_residuals(fit)  # doctest: +SKIP
    """
    from scipy.stats import norm

    design, _, rep, _ = _replicates(fit, seed, draws)
    y = np.asarray(design.y, dtype=float)
    rng = np.random.default_rng(seed + 1)
    less = (rep < y).sum(axis=0)
    equal = (rep == y).sum(axis=0)
    u = (less + rng.uniform(size=y.size) * (equal + 1)) / (rep.shape[0] + 1)
    return norm.ppf(u)


def residuals(fit, seed: int = 0) -> pd.DataFrame:
    """Per-observation fitted values and residuals.

    Returns
    -------
    pandas.DataFrame
        observed, fitted (posterior mean of the expected outcome, proportions for binomial),
        residual (observed - fitted), pearson, quantile (randomized quantile residual), and one
        column per grouping factor with the level of each row.

    Notes
    -----
    A truncated outcome (``trunc()``): ``fitted`` is the mean of the truncated distribution and
    ``pearson`` divides by its SD, both estimated from the posterior predictive replicates (one per
    draw, as the quantile residuals use) — the family's own mean and variance are those of the
    untruncated distribution, which a truncated outcome does not follow.

    Examples
    --------
    >>> res = fit.residuals()  # doctest: +SKIP
    >>> res.groupby("Subject")["residual"].std()  # doctest: +SKIP
    """
    design = fit_design(fit)
    if fit.family.outcome == "categorical":
        raise SpecificationError(
            "Residuals need an outcome with a mean; a categorical outcome has none (its categories are unordered). "
            "Check the fit with fit.ppc() (category counts, per group too) and fit.predict(kind='probs')."
        )
    mu = mean_draws(fit, linear_predictor(fit, design))
    y = np.asarray(design.y, dtype=float)
    ys = _response_scale(design, y)
    fam = fit.family
    fitted = np.asarray(fam.response_mean(mu, aux_draws(fit)), dtype=float).mean(axis=(0, 1))  # per trial
    if not fam.discrete:
        if design.se is not None:
            scale = design.se
        elif "sigma" in fam.aux and "sigma" in fit.draws and fam.link_scale_response(y, "") is None:  # gaussian
            scale = float(np.asarray(fit.draws["sigma"].values).mean())
        else:  # the family's variance at each row's fitted location
            V = np.asarray(fam.variance(mu, aux_draws(fit)), dtype=float)
            V = np.where(np.isfinite(V), V, np.nan)
            scale = np.sqrt(np.maximum(np.nanmean(V.reshape(-1, V.shape[-1]), axis=0), 1e-300))
        pearson = (ys - fitted) / scale
    else:
        mu_flat = mu.reshape(-1, mu.shape[-1])
        V = _variance_function(fit, design, mu_flat).mean(axis=0)
        if design.trials is not None:
            V = V / np.asarray(design.trials, dtype=float) ** 2
        pearson = (ys - fitted) / np.sqrt(np.maximum(V, 1e-12))
    if getattr(design.spec, "trunc", None) is not None:  # the truncated distribution's mean and SD, by simulation
        rep = _response_scale(design, _replicates(fit, seed)[2])
        fitted = rep.mean(axis=0)
        pearson = (ys - fitted) / np.maximum(rep.std(axis=0), 1e-12)
    out = pd.DataFrame({"observed": ys, "fitted": fitted, "residual": ys - fitted, "pearson": pearson,
                        "quantile": quantile_residuals(fit, seed)})
    for fd in design.factors:
        out[fd.factor] = np.asarray(fd.levels, dtype=object)[fd.codes]
    return out


def group_influence(fit, factor: str) -> pd.DataFrame:
    """Influential groups: Pareto k of leave-one-group-out importance sampling, one row per level.

    The pointwise log-likelihood is summed within each level of ``factor`` and passed to
    ``az.loo``; a Pareto k above 0.7 means removing that group changes the posterior too much for
    importance sampling — the group is influential (refit without it to see how much).

    Examples
    --------
    >>> from hmodels.checks import group_influence
    >>> group_influence(fit, "Subject").sort_values("pareto_k").tail()  # doctest: +SKIP
    """
    import warnings

    import arviz as az
    import xarray as xr

    design = fit_design(fit)
    fd = design.factor(factor)
    ll = pointwise_loglik(fit, linear_predictor(fit, design), design)  # (c, d, n)
    L = fd.n_levels
    grp = np.zeros(ll.shape[:2] + (L,))
    for i in range(L):
        grp[..., i] = ll[..., fd.codes == i].sum(axis=-1)
    name = str(fit.meta.get("observed", "y"))
    dt = xr.DataTree.from_dict({
        "posterior": fit.draws[["b"]] if "b" in fit.draws else fit.draws,
        "log_likelihood": xr.Dataset({name: (("chain", "draw", factor), grp)}, coords={factor: list(fd.levels)}),
        "observed_data": xr.Dataset({name: ((factor,), np.zeros(L))}, coords={factor: list(fd.levels)}),
    })
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = az.loo(dt, pointwise=True, var_name=name)
    k = np.asarray(res.pareto_k.values if hasattr(res.pareto_k, "values") else res.pareto_k, dtype=float)
    out = pd.DataFrame({"n": fd.group_sizes(), "elpd_logo": np.asarray(res.elpd_i).ravel(), "pareto_k": k},
                       index=pd.Index(fd.levels, name="level"))
    out["influential"] = out["pareto_k"] > 0.7
    return out

"""Plots of a :class:`~hmodels.fit.Fit`, one call each, on ArviZ and matplotlib.

``plot_effects`` is ArviZ's forest plot (arviz-plots, returns its ``PlotCollection``); the others
draw with matplotlib from ArviZ-computed intervals (:mod:`hmodels.summary`, ``az.hdi``) and the
posterior draws of the linear predictor (:mod:`hmodels.linpred`), and return the matplotlib
``Figure``. Every function reads the Fit only, so fits loaded from disk plot the same way.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .errors import MissingColumnError, SpecificationError, closest
from .linpred import aux_draws, fit_design, linear_predictor, mean_draws, refuse_truncated_mean

__all__ = ["plot_effects", "plot_groups", "plot_trajectories", "plot_components", "plot_conditional"]

_COLOUR = "C0"
_POP_COLOUR = "0.35"


def _hdi(draws: np.ndarray, prob: float) -> np.ndarray:
    """HDI of draws shaped (chain, draw, k) -> (k, 2), computed by ArviZ."""
    import arviz as az

    flat = np.asarray(draws, dtype=float).reshape(-1, draws.shape[-1]).T  # (k, samples)
    return np.asarray(az.hdi(flat, prob=prob)).reshape(-1, 2)


def _check_prob(prob: float) -> None:
    if not 0 < prob < 1:
        raise SpecificationError(f"prob must be between 0 and 1 (e.g. 0.95), got {prob!r}.")


def _check_factor(fit, factor: str) -> None:
    factors = list(fit.meta["factors"])
    if factor not in factors:
        raise SpecificationError(
            f"{factor!r} is not a grouping factor of this model; factors: {', '.join(factors) or 'none'}."
            f"{closest(factor, factors)}"
        )


def _check_column(fit, column: str) -> None:
    cols = list(fit_design(fit).data.columns)
    if column not in cols:
        raise MissingColumnError(
            f"Column {column!r} is not among the model's columns.{closest(column, cols)} "
            f"Available: {', '.join(map(str, cols))}."
        )


def _observed(fit) -> tuple[np.ndarray, str]:
    """Observed outcome on the response scale (a proportion for binomial) and its axis label."""
    d = fit_design(fit)
    if fit.family.outcome == "binomial" and d.trials is not None:
        return d.y / d.trials, f"{fit.spec.response} / {fit.spec.trials}"
    return np.asarray(d.y, dtype=float), str(fit.spec.response)


def _grid(n: int, ncols: int | None = None, size: tuple[float, float] = (2.6, 2.2), sharex=True, sharey=True):
    import matplotlib.pyplot as plt

    ncols = ncols or min(n, 6)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False,
                             sharex=sharex, sharey=sharey, layout="constrained")
    axes = axes.ravel()
    for ax in axes[n:]:
        ax.remove()
    return fig, list(axes[:n])


def plot_effects(fit, prob: float = 0.95, intercept: bool | None = None, **kwargs):
    """Forest plot of the population-level (fixed) effects with 50% and ``prob`` HDIs.

    Drawn by :func:`arviz.plot_forest` (point = posterior mean, thick bar = 50% HDI, thin bar =
    ``prob`` HDI). Effects are on the link scale (log-odds for logit models).

    Parameters
    ----------
    fit : Fit
    prob : float
        Outer interval probability (default 0.95).
    intercept : bool, optional
        Show the Intercept. Default: only when it is the sole term (it is usually on another
        scale than the slopes and squeezes them into a dot).
    **kwargs
        Passed on to :func:`arviz.plot_forest`.

    Returns
    -------
    arviz_plots.PlotCollection
        ``.viz["figure"]`` holds the matplotlib Figure.

    Examples
    --------
    >>> pc = fit.plot_effects()  # doctest: +SKIP
    >>> pc.savefig("effects.png")  # doctest: +SKIP
    """
    import arviz as az

    _check_prob(prob)
    terms = list(fit.meta["fixed_terms"])
    if not terms:
        raise SpecificationError("This model has no population-level effects to plot.")
    if intercept is None:
        intercept = terms == ["Intercept"]
    shown = [t for t in terms if intercept or t != "Intercept"]
    if not shown:
        raise SpecificationError("Nothing to plot: the only population-level term is the Intercept; "
                                 "pass intercept=True.")
    kwargs.setdefault("combined", True)
    kwargs.setdefault("point_estimate", "mean")
    pc = az.plot_forest(fit.posterior, var_names=["b"], coords={"term": shown}, ci_kind="hdi",
                        ci_probs=(0.5, prob), backend="matplotlib", **kwargs)
    fig = pc.viz["figure"].item()
    forest = pc.viz["plot"].sel(column="forest").item()
    forest.axvline(0.0, color="0.6", lw=0.8, ls="--", zorder=0)
    scale = "" if fit.family.link == "identity" else f" ({fit.family.link} scale)"
    forest.set_xlabel(f"effect on {fit.spec.response}{scale}")
    fig.suptitle(f"Population-level effects: mean, 50% and {prob:.0%} HDI")
    return pc


def plot_groups(fit, factor: str, term: str | None = None, prob: float = 0.95):
    """Caterpillar plot of one grouping factor's effects: per level, sorted, with HDIs.

    Each panel is one term of the factor (``Intercept``, ``Days``, ...): the level's deviation
    from the population effect (posterior mean and ``prob`` HDI), levels sorted by mean, a
    dashed line at zero (no deviation).

    Parameters
    ----------
    fit : Fit
    factor : str
        Grouping factor, e.g. ``"Subject"``.
    term : str, optional
        Only this term (default: all the factor's terms, one panel each).
    prob : float
        Interval probability.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = fit.plot_groups("Subject")  # doctest: +SKIP
    >>> len(fig.axes)  # Intercept and Days  # doctest: +SKIP
    2
    """
    import matplotlib.pyplot as plt

    _check_prob(prob)
    _check_factor(fit, factor)
    table = fit.group_effects(factor, prob)
    terms = list(fit.meta["factors"][factor]["terms"])
    if term is not None:
        if term not in terms:
            raise SpecificationError(
                f"{term!r} is not a term of {factor!r}; its terms: {', '.join(terms)}.{closest(term, terms)}"
            )
        terms = [term]
    n_levels = len(fit.meta["factors"][factor]["levels"])
    height = max(2.5, 0.22 * n_levels + 1.0)
    fig, axes = plt.subplots(1, len(terms), figsize=(3.6 * len(terms) + 0.6, height), squeeze=False,
                             layout="constrained")
    for ax, tm in zip(axes[0], terms):
        t = table[table["term"] == tm].sort_values("mean")
        pos = np.arange(len(t))
        ax.hlines(pos, t["hdi_low"], t["hdi_high"], color=_COLOUR, lw=1.2)
        ax.plot(t["mean"], pos, "o", color=_COLOUR, ms=3.5)
        ax.axvline(0.0, color="0.5", lw=0.8, ls="--", zorder=0)
        ax.set_yticks(pos, t["level"].tolist(), fontsize=7 if len(t) > 30 else 9)
        ax.set_title(tm)
        ax.set_xlabel("deviation from population effect")
    axes[0][0].set_ylabel(factor)
    fig.suptitle(f"{factor}: group effects, mean and {prob:.0%} HDI")
    return fig


def plot_trajectories(fit, x: str, by: str, prob: float = 0.95, levels=None, ncols: int | None = None):
    """Fitted lines per group with ``prob`` bands, over the observed data, one panel per level.

    The fitted line is the posterior mean of the expected outcome (response scale) at each
    observed row of the level, including the group effects; the band is its HDI; the grey
    dashed line is the population-level fit (group effects set to zero). Other predictors stay
    at their observed values.

    Parameters
    ----------
    fit : Fit
    x : str
        Numeric predictor for the horizontal axis (a data column).
    by : str
        Column that splits the data into panels, usually the grouping factor.
    prob : float
        Band probability.
    levels : list, optional
        Levels of ``by`` to show (default: all).
    ncols : int, optional
        Panels per row (default up to 6).

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = fit.plot_trajectories("Days", by="Subject")  # doctest: +SKIP
    >>> len(fig.axes)  # doctest: +SKIP
    18
    """
    _check_prob(prob)
    _check_column(fit, x)
    _check_column(fit, by)
    if fit.family.outcome == "categorical":  # the expected category number of unordered categories means nothing
        from .errors import FamilyError

        raise FamilyError(
            "plot_trajectories draws each group's expected outcome; a categorical outcome has none (its categories "
            f"are unordered). Plot each category's probability instead: fit.predict(data, kind='probs') per {by!r}."
        )
    d = fit_design(fit)
    xv = d.data[x]
    if not pd.api.types.is_numeric_dtype(xv):
        raise SpecificationError(f"plot_trajectories needs a numeric x; {x!r} is {xv.dtype}. "
                                 f"Use plot_conditional({x!r}) for a categorical predictor.")
    xv = xv.to_numpy(dtype=float)
    group = d.data[by].astype(str).to_numpy()
    all_levels = list(pd.unique(d.data[by].astype(str))) if not isinstance(d.data[by].dtype, pd.CategoricalDtype) \
        else [str(c) for c in d.data[by].cat.categories if str(c) in set(group)]
    if levels is None:
        levels = all_levels
    else:
        levels = [str(lv) for lv in levels]
        unknown = [lv for lv in levels if lv not in all_levels]
        if unknown:
            raise SpecificationError(f"Level(s) {', '.join(map(repr, unknown))} of {by!r} are not in the data."
                                     f"{closest(unknown[0], all_levels)}")
    refuse_truncated_mean(fit, "plot_trajectories")
    y, ylabel = _observed(fit)
    aux = aux_draws(fit)  # expected outcomes: zero-inflation, lognormal means, ...
    mu = fit.family.response_mean(mean_draws(fit, linear_predictor(fit, groups="include")), aux)
    mu_pop = fit.family.response_mean(mean_draws(fit, linear_predictor(fit, groups="exclude")), aux).mean(axis=(0, 1))
    fig, axes = _grid(len(levels), ncols)
    for ax, lv in zip(axes, levels):
        idx = np.flatnonzero(group == lv)
        idx = idx[np.argsort(xv[idx], kind="stable")]
        band = _hdi(mu[..., idx], prob)
        ax.fill_between(xv[idx], band[:, 0], band[:, 1], color=_COLOUR, alpha=0.25, lw=0)
        ax.plot(xv[idx], mu[..., idx].mean(axis=(0, 1)), color=_COLOUR, lw=1.5)
        ax.plot(xv[idx], mu_pop[idx], color=_POP_COLOUR, lw=1.0, ls="--")
        ax.plot(xv[idx], y[idx], "o", color="k", ms=2.5)
        ax.set_title(f"{by} {lv}", fontsize=9)
    fig.supxlabel(x)
    fig.supylabel(ylabel)
    fig.suptitle(f"Fitted {ylabel} per {by}: mean and {prob:.0%} HDI (dashed: population-level)")
    return fig


def plot_components(fit, prob: float = 0.95):
    """Variance components with intervals: group SDs and residual parameters, and correlations.

    Left panel: standard deviations of the group effects (``sd(Subject, Days)``) and the family
    parameters (``sigma``, ``nu``, ``alpha``); right panel (when the model has correlated group
    effects): the correlations on [-1, 1]. Posterior mean and ``prob`` HDI from
    :meth:`Fit.variance_components`.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = fit.plot_components()  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    _check_prob(prob)
    vc = fit.variance_components(prob)
    if vc.empty:
        raise SpecificationError("This model has no variance components (no group terms and no family "
                                 "parameter such as sigma) to plot.")
    panels = [("scale", vc[vc["kind"] != "cor"]), ("cor", vc[vc["kind"] == "cor"])]
    panels = [(k, t) for k, t in panels if len(t)]
    n_rows = max(len(t) for _, t in panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels) + 1.5, max(2.2, 0.35 * n_rows + 1.2)),
                             squeeze=False, layout="constrained")
    for ax, (kind, t) in zip(axes[0], panels):
        pos = np.arange(len(t))[::-1]
        ax.hlines(pos, t["hdi_low"], t["hdi_high"], color=_COLOUR, lw=1.5)
        ax.plot(t["mean"], pos, "o", color=_COLOUR, ms=4)
        ax.set_yticks(pos, list(t.index))
        if kind == "cor":
            ax.set_xlim(-1.05, 1.05)
            ax.axvline(0.0, color="0.5", lw=0.8, ls="--", zorder=0)
            ax.set_title("correlations")
        else:
            ax.set_xlim(left=0.0)
            ax.set_title("standard deviations")
    fig.suptitle(f"Variance components: mean and {prob:.0%} HDI")
    return fig


def _population_X(fit, newdata: pd.DataFrame) -> np.ndarray:
    """Population-level design matrix of new rows, with the fitted data's factor levels and scalings."""
    from .design import evaluate, population_columns

    d = fit_design(fit)
    spec = fit.spec
    rhs = " + ".join(["1" if spec.intercept else "0", *spec.fixed])
    common = evaluate(rhs, d.data).common
    X = np.asarray(common.evaluate_new_data(newdata).design_matrix, dtype=float)
    # an ordinal model's thresholds take the intercept's place (the design drops its column the same way)
    return population_columns(fit.family, X, ["Intercept" if spec.intercept else "", *[""] * (X.shape[1] - 1)])[0]


def _reference_row(data: pd.DataFrame, columns: list[str]) -> dict:
    """Typical values: the mean of numeric columns, the first (reference) level of the others."""
    ref = {}
    for c in columns:
        col = data[c]
        if pd.api.types.is_bool_dtype(col):
            ref[c] = False
        elif pd.api.types.is_numeric_dtype(col):
            ref[c] = float(col.mean())
        elif isinstance(col.dtype, pd.CategoricalDtype):
            ref[c] = pd.Categorical([col.cat.categories[0]], categories=col.cat.categories)[0]
        else:
            ref[c] = sorted(col.astype(str).unique())[0]
    return ref


def _values_of(col: pd.Series, n_points: int) -> tuple[list, bool]:
    """Plotting values of a predictor: its levels (categorical) or an even grid over its range (numeric)."""
    if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
        return (list(col.cat.categories) if isinstance(col.dtype, pd.CategoricalDtype) else sorted(col.unique())), True
    return list(np.linspace(float(col.min()), float(col.max()), n_points)), False


def _conditional_mu(fit, data: pd.DataFrame, ref: dict, columns: dict) -> np.ndarray:
    """Expected-outcome draws (chain, draw, rows) at ``columns`` (name -> values), others at ``ref``, effects 0."""
    n = len(next(iter(columns.values())))
    grid = pd.DataFrame({c: [v] * n for c, v in ref.items()})
    for c in grid.columns:
        if isinstance(data[c].dtype, pd.CategoricalDtype):
            grid[c] = pd.Categorical(grid[c], categories=data[c].cat.categories)
    for c, values in columns.items():
        col = data[c]
        grid[c] = pd.Categorical(values, categories=col.cat.categories) \
            if isinstance(col.dtype, pd.CategoricalDtype) else values
    from .interpret import _expected  # the family's mean on the grid: refuses a truncated outcome, and a mean
    # that depends on a parameter with its own formula (its per-row values belong to the fitted rows, not the grid)

    X = _population_X(fit, grid)
    b = np.asarray(fit.draws["b"].transpose("chain", "draw", "term").values)
    return _expected(fit, np.einsum("cdp,np->cdn", b, X))


def plot_conditional(fit, x: str, prob: float = 0.95, n_points: int = 50, data_points: bool = True,
                     by: str | None = None):
    """Conditional effect of one predictor on the outcome, on the response scale, over the data.

    The expected outcome (a probability for binomial/bernoulli models, a rate for counts) at
    each value of ``x`` with the other predictors at typical values (numeric: their mean;
    categorical: the reference level) and group effects at zero — brms's
    ``conditional_effects`` default. Numeric ``x``: a line with its ``prob`` HDI band;
    categorical ``x``: one point per level with its HDI. With ``by`` (or ``x="Time:Diet"``),
    one line (or set of points) per level of ``by`` — for a numeric ``by``, at its mean and
    mean ± 1 SD, as brms does — so an interaction shows as lines that are not parallel.

    For effects averaged over the other predictors or over the group-effect distribution (the
    population-averaged mean of a GLMM), see :meth:`Fit.marginal_means` and its ``.plot()``.

    Parameters
    ----------
    fit : Fit
    x : str
        A population-level predictor (data column), or ``"x:by"`` for an interaction.
    prob : float
        Interval probability.
    n_points : int
        Grid size for a numeric ``x``.
    data_points : bool
        Overlay the observed outcomes (proportions for binomial), coloured by the level of a
        categorical ``by``.
    by : str, optional
        A second predictor: one curve per value.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    MissingColumnError
        ``x`` or ``by`` is not a population-level predictor (the message names the closest).
    SpecificationError
        ``by`` given twice (``"x:by"`` and ``by=``) or equal to ``x``.

    Examples
    --------
    >>> fig = fit.plot_conditional("period")  # doctest: +SKIP
    >>> fig = fit.plot_conditional("Time:Diet")  # the same as plot_conditional("Time", by="Diet")  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    from .design import used_columns

    _check_prob(prob)
    if fit.family.outcome == "categorical":
        from .errors import FamilyError

        raise FamilyError(
            "plot_conditional draws the expected outcome against a predictor; a categorical outcome has no expected "
            "value (its categories are unordered). Plot each category's probability instead: "
            "fit.predict(grid, kind='probs', groups='exclude') on a grid of the predictor's values."
        )
    if ":" in x:
        parts = [p.strip() for p in x.split(":")]
        if by is not None or len(parts) != 2 or not all(parts):
            raise SpecificationError(
                f"plot_conditional takes one predictor or one two-way interaction 'x:by' (got {x!r}"
                f"{'' if by is None else f' and by={by!r}'}); e.g. 'Time:Diet' or ('Time', by='Diet')."
            )
        x, by = parts
    d = fit_design(fit)
    group_cols = {c for g in fit.spec.groups for c in g.columns}
    response_cols = {fit.spec.response, fit.spec.trials, fit.spec.se} - {None}
    predictors = [c for c in used_columns(fit.spec) if c not in group_cols and c not in response_cols]
    for name in [x] if by is None else [x, by]:
        if name not in predictors:
            raise MissingColumnError(
                f"{name!r} is not a population-level predictor of this model.{closest(name, predictors)} "
                f"Predictors: {', '.join(predictors) or 'none'}."
            )
    if by == x:
        raise SpecificationError(f"by must differ from x (both are {x!r}).")
    col = d.data[x]
    values, categorical = _values_of(col, n_points)
    ref = _reference_row(d.data, [c for c in predictors if c not in (x, by)])
    if by is None:
        curves = [(None, _conditional_mu(fit, d.data, ref, {x: values}))]
        by_categorical = False
    else:
        bcol = d.data[by]
        by_values, by_categorical = _values_of(bcol, 2)
        if not by_categorical:
            m, s = float(bcol.mean()), float(bcol.std())
            by_values = [m - s, m, m + s]
        curves = [(bv, _conditional_mu(fit, d.data, ref, {x: values, by: [bv] * len(values)})) for bv in by_values]
    y, ylabel = _observed(fit)
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    if data_points:
        xs = pd.Categorical(col, categories=values).codes.astype(float) if categorical else col.to_numpy(dtype=float)
        if categorical:
            xs = xs + np.random.default_rng(0).uniform(-0.15, 0.15, size=len(y))
        if by_categorical:
            codes = pd.Categorical(d.data[by], categories=[bv for bv, _ in curves]).codes
            for i in range(len(curves)):
                ax.plot(xs[codes == i], y[codes == i], "o", color=f"C{i}", ms=3, alpha=0.35)
        else:
            ax.plot(xs, y, "o", color="0.6", ms=3, alpha=0.6, label="data")
    width = 0.5 / max(len(curves), 1)
    for i, (bv, mu) in enumerate(curves):
        band, mean = _hdi(mu, prob), mu.mean(axis=(0, 1))
        colour = _COLOUR if bv is None else f"C{i}"
        if bv is None:
            label_line, label_band = "mean", f"{prob:.0%} HDI"
        else:
            label_line = label_band = f"{by} = {bv:.3g}" if isinstance(bv, float) else f"{by} = {bv}"
        if categorical:
            pos = np.arange(len(values)) + (0.0 if bv is None else (i - (len(curves) - 1) / 2) * width)
            ax.errorbar(pos, mean, yerr=[mean - band[:, 0], band[:, 1] - mean], fmt="o", color=colour, capsize=4,
                        lw=1.5, label=f"mean, {prob:.0%} HDI" if bv is None else label_line)
        else:
            ax.fill_between(values, band[:, 0], band[:, 1], color=colour, alpha=0.25 if bv is None else 0.18, lw=0,
                            label=label_band if bv is None else None)
            ax.plot(values, mean, color=colour, lw=2, label=label_line)
    if categorical:
        ax.set_xticks(np.arange(len(values)), [str(v) for v in values])
    held = ", ".join(f"{c}={v:.3g}" if isinstance(v, float) else f"{c}={v}" for c, v in ref.items())
    ax.set_xlabel(x)
    ax.set_ylabel(f"expected {ylabel}" if fit.family.link == "identity" else f"expected {ylabel} (response scale)")
    what = f"Conditional effect of {x}" + ("" if by is None else f" by {by}")
    ax.set_title(what + (f" ({held}; group effects at 0)" if held else " (group effects at 0)"), fontsize=10)
    ax.legend(fontsize=8)
    return fig

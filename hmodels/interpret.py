"""Answers to the questions a study asks, from the posterior draws.

* :func:`coef` — fixed plus group effect per level and term (lme4's ``coef``), with intervals.
* :func:`hypothesis` — ``"Days > 8"``, ``"Diet[3] - Diet[2] = 0"``, ``"sd(Subject, Days) < 5"``:
  posterior probability, estimate, HDI and evidence ratio, parsed safely (no ``eval``).
* :func:`marginal_means`, :func:`comparisons`, :func:`slopes` — expected outcomes, contrasts and
  derivatives over a reference grid (as emmeans / marginaleffects), per posterior draw.
* :func:`poststratify` — predictions weighted by a population table (MRP).

The reference grid
    One row per combination of: the levels of every categorical predictor (all of them, or those
    given in ``at``) and the values of numeric predictors (their mean in the data, or the values
    given in ``at``). Results are averaged with **equal weight** over the grid rows that share the
    ``by`` values (emmeans' balanced ``weights = "equal"``): a predictor left out of ``by`` and
    ``at`` is averaged over its levels, not fixed at its reference level. Variables given several
    values in ``at`` become rows of the result, as if they were in ``by``.

Group-specific effects (``groups=``) — the choice that makes GLMM answers differ
    ``"marginalize"`` (default)
        The population-averaged (marginal) mean: for each posterior draw ``s``, the expected
        outcome integrated over the fitted group-effect distribution of every grouping factor,
        correlations included, ``E_u[h(x b_s + z u)]`` with ``u ~ N(0, Σ_s)``. Because
        ``z u`` is a univariate normal with variance ``v_s = Σ_f z_f' Σ_{f,s} z_f``, this is a
        one-dimensional integral: by the trapezoidal rule on the standard-normal scale
        (``integration="quadrature"``, the default; near machine precision, step chosen from the
        largest SD; in closed form ``exp(eta + v/2)`` for a log link), or by Monte Carlo over
        ``u`` drawn from ``N(0, Σ_{f,s})`` per factor with a fixed seed (``"montecarlo"``,
        the same standard-normal draws for every posterior draw and grid row). With the
        identity link, or on the link scale, it equals ``"exclude"``.
    ``"exclude"``
        The conditional mean of a typical group, all group effects at zero: ``h(x b_s)``.
        For a non-identity link this is *not* the average over groups: on cbpp the
        period-1 incidence of a typical herd is lower than the herd-averaged one.
    ``"include"``
        The average of the fitted group-specific predictions ``h(x b_s + z r_{s,level})`` over
        the observed levels (over the observed combinations of levels when there are several
        factors): the mean of *these* groups, not of the population of groups.

Results are :class:`Estimates` objects: ``.table`` (a tidy DataFrame with the grid columns and
``estimate``, ``sd``, ``hdi_low``, ``hdi_high``), ``.draws`` (chain, draw, row of the table) and
``.plot()``. A result object rather than a DataFrame subclass, so that pandas' own
``DataFrame.plot`` keeps working on ``.table``.

Examples
--------
>>> import hmodels as hm
>>> fit = hm.Model("weight ~ Time * Diet + (Time | Chick)", hm.datasets.load("chickweight")).fit(
...     draws=100, tune=100, chains=2, seed=1, progressbar=False)
>>> mm = fit.marginal_means(by="Diet", at={"Time": 10})
>>> list(mm.table.columns)
['Diet', 'estimate', 'sd', 'hdi_low', 'hdi_high']
>>> mm.draws.shape  # (chain, draw, row of the table)
(2, 100, 4)
>>> fig = fit.comparisons("Diet", at={"Time": 10}).plot()
"""

from __future__ import annotations

import ast
import itertools
import math
import re
import warnings
from collections.abc import Iterable

import numpy as np
import pandas as pd
import xarray as xr

from .errors import DataError, DataWarning, MissingColumnError, SpecificationError, closest
from .linpred import aux_draws, fit_design, linear_predictor, mean_draws, refuse_truncated_mean
from .summary import summarise_draws

__all__ = ["Estimates", "coef", "coef_draws", "parameter_draws", "hypothesis", "reference_grid", "marginal_means",
           "comparisons", "slopes", "poststratify"]

GROUPS = ("marginalize", "exclude", "include")
SCALES = ("response", "link")
INTEGRATION = ("quadrature", "montecarlo")
#: Default Monte Carlo samples per posterior draw for ``groups="marginalize", integration="montecarlo"``.
N_MONTECARLO = 2000
_SUMMARY = ["estimate", "sd", "hdi_low", "hdi_high"]


# -- small helpers ------------------------------------------------------------------------------
def _draws(fit, name: str) -> np.ndarray:
    return np.asarray(fit.draws[name].transpose("chain", "draw", ...).values, dtype=float)


def _check_prob(prob: float) -> None:
    if not (isinstance(prob, (int, float)) and 0 < prob < 1):
        raise SpecificationError(f"prob must be between 0 and 1 (e.g. 0.95), got {prob!r}.")


def _check_choice(name: str, value, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise SpecificationError(
            f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}.{closest(str(value), choices)}"
        )


def _summary(draws: np.ndarray, prob: float) -> pd.DataFrame:
    """estimate (posterior mean), sd and HDI of draws (chain, draw, k), one row per k."""
    t = summarise_draws(draws, [str(i) for i in range(draws.shape[-1])], prob)
    t = t.rename(columns={"mean": "estimate"})[_SUMMARY].reset_index(drop=True)
    return t


def _check_factor(fit, factor: str) -> None:
    factors = list(fit.meta["factors"])
    if factor not in factors:
        raise SpecificationError(
            f"{factor!r} is not a grouping factor of this model.{closest(factor, factors)} "
            f"Factors: {', '.join(factors) or 'none'}."
        )


# -- result object ------------------------------------------------------------------------------
class Estimates:
    """Posterior summaries over a reference grid, with their draws and a plot.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per estimate: the grid columns (``by`` and multi-valued ``at`` variables, and
        ``contrast`` for comparisons), then ``estimate`` (posterior mean), ``sd``, ``hdi_low``,
        ``hdi_high`` (highest-density interval of ``prob``).
    draws : numpy.ndarray
        Posterior draws, shape (chain, draw, rows of ``table``).
    kind : str
        ``"marginal_means"``, ``"comparisons"``, ``"slopes"`` or ``"poststratify"``.
    info : dict
        How it was computed (``groups``, ``scale``, ``prob``, ``at``, ...).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> est = Estimates(pd.DataFrame({"x": [1, 2], "estimate": [0.5, 0.7]}), np.zeros((1, 2, 2)),
    ...                 "marginal_means", {"keys": ["x"]})
    >>> est.table["estimate"].tolist()
    [0.5, 0.7]
    """

    def __init__(self, table: pd.DataFrame, draws: np.ndarray, kind: str, info: dict | None = None):
        self.table = table
        self.draws = draws
        self.kind = kind
        self.info = dict(info or {})

    @property
    def keys(self) -> list[str]:
        """The grid columns of ``table`` (what each row is an estimate *for*)."""
        return [c for c in self.table.columns if c not in _SUMMARY]

    def __len__(self) -> int:
        return len(self.table)

    def _title(self) -> str:
        what = {"marginal_means": "Marginal means", "comparisons": "Comparisons", "slopes": "Slopes",
                "poststratify": "Post-stratified estimates"}.get(self.kind, self.kind)
        extra = []
        if self.kind == "comparisons":
            extra.append(f"{self.info.get('comparison', 'difference')} in {self.info.get('variable')}")
        if self.kind == "slopes":
            extra.append(f"d/d {self.info.get('variable')}")
        for k in ("scale", "groups"):
            if k in self.info:
                extra.append(f"{k}={self.info[k]}")
        return f"{what} ({', '.join(extra)}; {self.info.get('prob', 0.95):.0%} HDI)"

    def __repr__(self) -> str:
        return f"hmodels.Estimates: {self._title()}\n{self.table.to_string()}"

    def _repr_html_(self) -> str:
        from html import escape

        return f"<p><b>{escape(self._title())}</b></p>" + self.table.to_html()

    def plot(self, ax=None):
        """Plot the estimates with their HDIs.

        A line with a band over a numeric grid column (one line per combination of the other
        grid columns); otherwise one point and interval per row, labelled by its grid values,
        with a dashed reference line at 0 for differences and slopes, at 1 for ratios.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Draw into this axes (default: a new figure).

        Returns
        -------
        matplotlib.figure.Figure

        Examples
        --------
        >>> import numpy as np, pandas as pd
        >>> est = Estimates(pd.DataFrame({"x": [1.0, 2.0, 3.0], "estimate": [1.0, 2.0, 3.0],
        ...                               "sd": 0.1, "hdi_low": [0.8, 1.8, 2.8], "hdi_high": [1.2, 2.2, 3.2]}),
        ...                 np.zeros((1, 2, 3)), "marginal_means")
        >>> fig = est.plot()
        >>> fig.axes[0].get_xlabel()
        'x'
        """
        import matplotlib.pyplot as plt

        t = self.table.reset_index(drop=True)
        keys = self.keys
        numeric = [k for k in keys if k != "contrast" and pd.api.types.is_numeric_dtype(t[k])
                   and not pd.api.types.is_bool_dtype(t[k]) and t[k].nunique() > 2]
        if ax is None:
            fig, ax = plt.subplots(figsize=(6.4, 4.2) if numeric else (6.4, max(2.4, 0.35 * len(t) + 1.2)),
                                   layout="constrained")
        else:
            fig = ax.figure
        ylabel = self.info.get("ylabel", "estimate")
        if numeric:
            x = numeric[0]
            others = [k for k in keys if k != x]
            groups = t.groupby(others, sort=False, observed=True) if others else [((), t)]
            for i, (name, g) in enumerate(groups):
                g = g.sort_values(x)
                name = name if isinstance(name, tuple) else (name,)
                label = ", ".join(f"{k}={v}" for k, v in zip(others, name)) or None
                ax.fill_between(g[x], g["hdi_low"], g["hdi_high"], color=f"C{i}", alpha=0.2, lw=0)
                ax.plot(g[x], g["estimate"], color=f"C{i}", lw=2, label=label)
            ax.set_xlabel(x)
            ax.set_ylabel(ylabel)
            if others:
                ax.legend(fontsize=8)
        else:
            pos = np.arange(len(t))[::-1]
            labels = [", ".join(f"{v}" if k == "contrast" else f"{k}={v}" for k, v in zip(keys, row))
                      for row in t[keys].itertuples(index=False)] if keys else ["all"] * len(t)
            ax.hlines(pos, t["hdi_low"], t["hdi_high"], color="C0", lw=1.8)
            ax.plot(t["estimate"], pos, "o", color="C0", ms=5)
            ax.set_yticks(pos, labels)
            ref = {"comparisons": 1.0 if self.info.get("comparison") == "ratio" else 0.0, "slopes": 0.0}
            if self.kind in ref:
                ax.axvline(ref[self.kind], color="0.5", lw=0.8, ls="--", zorder=0)
            ax.set_xlabel(ylabel)
        ax.set_title(self._title(), fontsize=10)
        return fig


# -- coef ---------------------------------------------------------------------------------------
def coef_draws(fit, factor: str, all_terms: bool = False) -> xr.DataArray:
    """Draws of the per-level coefficients: population effect plus group effect, ``b + r``.

    Parameters
    ----------
    fit : Fit
    factor : str
        A grouping factor, e.g. ``"Subject"``.
    all_terms : bool
        Also give the population-level terms that have no group effect for this factor (the same
        value for every level), as lme4's ``coef`` does. Default: only the factor's own terms.

    Returns
    -------
    xarray.DataArray
        Dims ``(chain, draw, <factor>, term)``. A term of the factor with no population-level
        counterpart (``(0 + x | g)`` without ``x``) is the group effect alone.

    Examples
    --------
    >>> import hmodels as hm
    >>> fit = hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy")).fit(
    ...     draws=100, tune=100, chains=2, seed=1, progressbar=False)
    >>> c = coef_draws(fit, "Subject")
    >>> c.dims
    ('chain', 'draw', 'Subject', 'term')
    >>> bool((c.sel(term="Days") == fit.draws["b"].sel(term="Days") + fit.draws["r_Subject"].sel(
    ...     Subject__term="Days")).all())
    True
    """
    _check_factor(fit, factor)
    r_da = fit.draws[f"r_{factor}"]
    level_dim, term_dim = (d for d in r_da.dims if d not in ("chain", "draw"))
    r = np.asarray(r_da.transpose("chain", "draw", level_dim, term_dim).values, dtype=float)
    levels = [str(v) for v in r_da.coords[level_dim].values]
    gterms = [str(v) for v in r_da.coords[term_dim].values]
    fixed = list(fit.meta["fixed_terms"])
    b = _draws(fit, "b") if fixed else None
    terms = gterms + ([t for t in fixed if t not in gterms] if all_terms else [])
    c, d, n_levels = r.shape[:3]
    out = np.empty((c, d, n_levels, len(terms)))
    for j, t in enumerate(terms):
        if t in gterms and t in fixed:
            out[..., j] = b[:, :, None, fixed.index(t)] + r[..., gterms.index(t)]
        elif t in gterms:
            out[..., j] = r[..., gterms.index(t)]
        else:
            out[..., j] = b[:, :, None, fixed.index(t)]
    return xr.DataArray(out, dims=("chain", "draw", factor, "term"),
                        coords={"chain": r_da.coords["chain"].values, "draw": r_da.coords["draw"].values,
                                factor: levels, "term": terms}, name=f"coef_{factor}")


def coef(fit, factor: str, prob: float = 0.95, all_terms: bool = False) -> pd.DataFrame:
    """Coefficients per level of a grouping factor: population effect plus group effect (lme4's ``coef``).

    For each posterior draw, level and term, ``b[term] + r_<factor>[level, term]`` — e.g. each
    subject's own intercept and slope — summarised with its HDI. :meth:`Fit.group_effects` gives
    the deviations ``r`` alone.

    Parameters
    ----------
    fit : Fit
    factor : str
        A grouping factor of the model.
    prob : float
        Probability mass of the HDI (default 0.95).
    all_terms : bool
        Also list population-level terms without a group effect for this factor (constant
        across levels), as lme4 does.

    Returns
    -------
    pandas.DataFrame
        One row per (level, term): columns ``level``, ``term``, ``mean``, ``sd``, ``hdi_low``,
        ``hdi_high``, ``r_hat``, ``ess_bulk``, ``ess_tail``, ``mcse_mean`` (the columns of
        :meth:`Fit.group_effects`). The draws are :func:`coef_draws`.

    Raises
    ------
    SpecificationError
        ``factor`` is not a grouping factor (the message names the closest ones).

    Examples
    --------
    >>> import hmodels as hm
    >>> fit = hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy")).fit(
    ...     draws=100, tune=100, chains=2, seed=1, progressbar=False)
    >>> table = fit.coef("Subject")
    >>> table[["level", "term"]].head(2)
      level       term
    0   308  Intercept
    1   308       Days
    >>> slopes = table.query("term == 'Days'").set_index("level")["mean"]  # each subject's own slope
    >>> bool(slopes["308"] > slopes["309"])  # lme4: 19.7 and -0.3 ms/day
    True
    """
    _check_prob(prob)
    da = coef_draws(fit, factor, all_terms)
    levels, terms = list(da.coords[factor].values), list(da.coords["term"].values)
    c, d = da.shape[:2]
    t = summarise_draws(da.values.reshape(c, d, -1), [f"{lv}|{tm}" for lv in levels for tm in terms], prob)
    t.insert(0, "term", [tm for _ in levels for tm in terms])
    t.insert(0, "level", [lv for lv in levels for _ in terms])
    t = t.reset_index(drop=True)
    t.attrs["prob"] = prob
    return t


# -- hypothesis ---------------------------------------------------------------------------------
_FUNCS = {"exp": np.exp, "log": np.log, "sqrt": np.sqrt, "abs": np.abs}
_BINOPS = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide, ast.Pow: np.power}
_CMPOPS = {ast.Gt: ">", ast.GtE: ">=", ast.Lt: "<", ast.LtE: "<=", ast.Eq: "="}
_CALL = re.compile(r"(?<![\w.])(sd|cor|r)\s*\(([^()]*)\)")
_TOKEN = re.compile(r"(?<![\w.])[A-Za-z_][\w.]*(?:\[[^\]]*\])?(?::[A-Za-z_][\w.]*(?:\[[^\]]*\])?)*")


def parameter_draws(fit) -> dict[str, np.ndarray]:
    """The named scalar parameters a hypothesis can use, each as draws (chain, draw).

    Fixed-effect terms by name (``Intercept``, ``Days``, ``Diet[2]``, ``Time:Diet[2]``), group
    SDs ``sd(Subject, Days)``, correlations ``cor(Subject, Intercept, Days)`` and the family's
    parameters (``sigma``, ``nu``, ``alpha``). Group effects ``r(Subject, 308, Days)`` are
    also accepted by :func:`hypothesis` but not listed here.

    Examples
    --------
    >>> import hmodels as hm
    >>> fit = hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy")).fit(
    ...     draws=100, tune=100, chains=2, seed=1, progressbar=False)
    >>> list(parameter_draws(fit))
    ['Intercept', 'Days', 'sd(Subject, Intercept)', 'sd(Subject, Days)', 'cor(Subject, Intercept, Days)', 'sigma']
    """
    out: dict[str, np.ndarray] = {}
    fixed = list(fit.meta["fixed_terms"])
    if fixed:
        b = _draws(fit, "b")
        for i, t in enumerate(fixed):
            out[t] = b[..., i]
    for f, m in fit.meta["factors"].items():
        sd = _draws(fit, f"sd_{f}")
        for j, t in enumerate(m["terms"]):
            out[f"sd({f}, {t})"] = sd[..., j]
        for var, bterms in m["cors"]:
            cor = _draws(fit, var)
            for i in range(len(bterms)):
                for j in range(i + 1, len(bterms)):
                    out[f"cor({f}, {bterms[i]}, {bterms[j]})"] = cor[..., i, j]
    for a in fit.family.aux:
        if a in fit.draws:
            values = _draws(fit, a)
            if values.ndim == 2:
                out[a] = values
            else:  # a vector (ordinal thresholds): one entry per element, under its label (Intercept[1], ...)
                da = fit.draws[a]
                for j, lab in enumerate(da.coords[da.dims[-1]].values):
                    out[str(lab)] = values[..., j]
        if f"b_{a}" in fit.draws:  # a parameter with its own formula (hmodels.dpars): sigma_Intercept, sigma_x, ...
            da = fit.draws[f"b_{a}"]
            values = _draws(fit, f"b_{a}")
            for j, lab in enumerate(da.coords[da.dims[-1]].values):
                out[str(lab)] = values[..., j]
    return out


def _unknown(name: str, text: str, known: list[str], hint: str = "") -> SpecificationError:
    listing = ", ".join(known[:25]) + (", ..." if len(known) > 25 else "")
    return SpecificationError(
        f"Unknown parameter {name!r} in hypothesis {text!r}.{closest(name, known)}{hint} "
        f"Parameters: {listing} (and group effects as r(factor, level, term))."
    )


def _lookup_call(fit, kind: str, args: list[str], text: str, params: dict) -> np.ndarray:
    """Draws of ``sd(f, t)``, ``cor(f, t1, t2)`` (or ``cor(f, t1:t2)``) or ``r(f, level, t)``."""
    shown = f"{kind}({', '.join(args)})"
    factors = fit.meta["factors"]
    if kind == "cor" and len(args) == 2 and ":" in args[1]:
        args = [args[0], *args[1].split(":", 1)]
    want = {"sd": 2, "cor": 3, "r": 3}[kind]
    if len(args) != want:
        forms = {"sd": "sd(factor, term)", "cor": "cor(factor, term1, term2)", "r": "r(factor, level, term)"}
        raise SpecificationError(f"{shown} in hypothesis {text!r} needs {want} arguments: {forms[kind]}.")
    f = args[0]
    if f not in factors:
        raise _unknown(shown, text, list(params), f" {f!r} is not a grouping factor;"
                       f" factors: {', '.join(factors) or 'none'}.{closest(f, factors)}")
    terms = list(factors[f]["terms"])
    if kind == "sd":
        label = f"sd({f}, {args[1]})"
        if label not in params:
            raise _unknown(shown, text, list(params), f" Terms of {f!r}: {', '.join(terms)}.")
        return params[label]
    if kind == "cor":
        for a, b in ((args[1], args[2]), (args[2], args[1])):
            if f"cor({f}, {a}, {b})" in params:
                return params[f"cor({f}, {a}, {b})"]
        raise _unknown(shown, text, list(params), f" Correlated terms of {f!r}: "
                       f"{'; '.join(', '.join(t) for _, t in factors[f]['cors']) or 'none'}.")
    level, term = args[1], args[2]
    levels = [str(v) for v in factors[f]["levels"]]
    if level not in levels:
        raise SpecificationError(f"{level!r} is not a level of {f!r} in {shown} (hypothesis {text!r})."
                                 f"{closest(level, levels)}")
    if term not in terms:
        raise SpecificationError(f"{term!r} is not a term of {f!r} in {shown} (hypothesis {text!r}); "
                                 f"terms: {', '.join(terms)}.{closest(term, terms)}")
    r = fit.draws[f"r_{f}"]
    level_dim, term_dim = (d for d in r.dims if d not in ("chain", "draw"))
    return np.asarray(r.transpose("chain", "draw", level_dim, term_dim).values[:, :, levels.index(level),
                                                                              terms.index(term)], dtype=float)


def _parse_hypothesis(fit, text: str, params: dict):
    """Return (lhs draws, comparison operator or None, rhs draws or None)."""
    if not isinstance(text, str) or not text.strip():
        raise SpecificationError(f"A hypothesis must be a non-empty string such as 'Days > 8', got {text!r}.")
    values: dict[str, np.ndarray] = {}

    def hold(draws) -> str:
        name = f"_hm{len(values)}_"
        values[name] = draws
        return name

    expr = _CALL.sub(lambda m: hold(_lookup_call(fit, m.group(1), [a.strip() for a in m.group(2).split(",")],
                                                 text, params)), text)
    # parameter labels that are not Python names (Diet[2], Time:Diet[2], I(x ** 2)), longest first
    odd = sorted((p for p in params if not p.isidentifier() and not p.startswith(("sd(", "cor("))), key=len,
                 reverse=True)
    for label in odd:
        body = r"\s*".join(re.escape(part) for part in label.split())  # "I(Days**2)" matches "I(Days ** 2)"
        pattern = re.compile(r"(?<![\w.:\]])" + body + r"(?![\w.:\[(])")
        if pattern.search(expr):
            expr = pattern.sub(hold(params[label]), expr)
    expr = re.sub(r"(?<![<>=!])=(?!=)", "==", expr)
    known = list(params)
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError:
        for tok in _TOKEN.findall(expr):
            if tok not in values and tok not in params and tok not in _FUNCS:
                raise _unknown(tok, text, known) from None
        raise SpecificationError(
            f"Could not read the hypothesis {text!r}: write an expression of parameters, numbers, + - * / ** "
            "and one comparison (<, >, <=, >=, =), e.g. 'Days > 8' or 'Diet[3] - Diet[2] = 0'."
        ) from None

    def ev(node):
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id in values:
                return values[node.id]
            if node.id in params:
                return params[node.id]
            raise _unknown(node.id, text, known)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            with np.errstate(all="ignore"):
                return _BINOPS[type(node.op)](ev(node.left), ev(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = ev(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS
                and len(node.args) == 1 and not node.keywords):
            with np.errstate(all="ignore"):
                return _FUNCS[node.func.id](ev(node.args[0]))
        fragment = ast.unparse(node)
        for name, _ in sorted(values.items(), key=lambda kv: -len(kv[0])):
            fragment = fragment.replace(name, "<parameter>")
        if isinstance(node, (ast.Subscript, ast.Attribute, ast.Call)):
            raise _unknown(fragment, text, known, " Functions allowed: " + ", ".join(_FUNCS) + ".")
        raise SpecificationError(
            f"{fragment!r} is not allowed in the hypothesis {text!r}: use parameters, numbers, + - * / **, "
            f"unary minus, {', '.join(_FUNCS)} and one comparison."
        )

    body = tree.body
    if isinstance(body, ast.Compare):
        if len(body.ops) != 1 or type(body.ops[0]) not in _CMPOPS:
            raise SpecificationError(
                f"The hypothesis {text!r} must have exactly one comparison among <, >, <=, >=, = "
                "(no chains like 'a < b < c', no '!=')."
            )
        return ev(body.left), _CMPOPS[type(body.ops[0])], ev(body.comparators[0])
    return ev(body), None, None


def hypothesis(fit, hypotheses: str | Iterable[str], prob: float = 0.95) -> pd.DataFrame:
    """Posterior probability, estimate and interval of hypotheses about the parameters (brms's ``hypothesis``).

    Parameters
    ----------
    fit : Fit
    hypotheses : str or list of str
        Each an expression of parameters, numbers, ``+ - * / **``, unary minus and the
        functions ``exp``, ``log``, ``sqrt``, ``abs``, with at most one comparison
        (``<``, ``>``, ``<=``, ``>=``, ``=``):

        * fixed effects by their term name: ``Days``, ``Intercept``, ``Diet[2]``, ``Time:Diet[2]``;
        * group SDs ``sd(Subject, Days)``, correlations ``cor(Subject, Intercept, Days)``;
        * family parameters ``sigma``, ``nu``, ``alpha``;
        * single group effects ``r(Subject, 308, Days)``.

        The string is parsed with :mod:`ast` and evaluated on the draws by a whitelist — never
        ``eval``.
    prob : float
        Probability mass of the HDI (default 0.95).

    Returns
    -------
    pandas.DataFrame
        One row per hypothesis (index: the hypothesis as written), columns:

        ``estimate``, ``sd``, ``hdi_low``, ``hdi_high``
            of ``lhs - rhs`` (as brms; ``"Days > 8"`` summarises ``Days - 8``), or of the
            expression when it has no comparison;
        ``prob``
            posterior probability of the inequality (the fraction of draws where it holds); for
            ``=``, ``ER / (1 + ER)`` (the point hypothesis at even prior odds, as brms); NaN for
            expressions without a comparison;
        ``evidence_ratio``
            ``prob / (1 - prob)`` for an inequality (infinite when every draw agrees); for ``=``
            the Savage–Dickey ratio: posterior density of ``lhs - rhs`` at 0 over its prior density
            at 0 (from 4000 draws of the priors; > 1 supports the equality).

    Raises
    ------
    SpecificationError
        An unknown parameter (the message names the closest ones), or anything the whitelist
        does not allow (attributes, subscripts, other functions, chained comparisons).

    Examples
    --------
    >>> import hmodels as hm
    >>> fit = hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy")).fit(
    ...     draws=100, tune=100, chains=2, seed=1, progressbar=False)
    >>> t = fit.hypothesis(["Days > 5", "sd(Subject, Days) > 1", "Intercept + 5 * Days = 300"])
    >>> list(t.columns)
    ['estimate', 'sd', 'hdi_low', 'hdi_high', 'prob', 'evidence_ratio']
    >>> bool(t.loc["Days > 5", "prob"] > 0.95), bool(t.loc["Days > 5", "evidence_ratio"] > 19)
    (True, True)
    >>> fit.hypothesis("Dayz > 5")
    Traceback (most recent call last):
    ...
    hmodels.errors.SpecificationError: Unknown parameter 'Dayz' in hypothesis 'Dayz > 5'. Did you mean 'Days'? ...
    """
    _check_prob(prob)
    items = [hypotheses] if isinstance(hypotheses, str) else list(hypotheses)
    if not items:
        raise SpecificationError("No hypothesis given: pass a string such as 'Days > 8' or a list of them.")
    params = parameter_draws(fit)
    shape = (fit.draws.sizes["chain"], fit.draws.sizes["draw"])
    diffs, probs, points = [], [], []
    for h in items:
        lhs, op, rhs = _parse_hypothesis(fit, h, params)
        diff = np.broadcast_to(lhs if op is None else lhs - rhs, shape).astype(float)
        if not np.all(np.isfinite(diff)):
            raise SpecificationError(f"The hypothesis {h!r} is not finite for every draw (e.g. log of a negative "
                                     "value or division by zero).")
        if op in (">", ">="):
            p = float(np.mean(diff > 0) if op == ">" else np.mean(diff >= 0))
        elif op in ("<", "<="):
            p = float(np.mean(diff < 0) if op == "<" else np.mean(diff <= 0))
        else:
            p = np.nan
        diffs.append(diff)
        probs.append(p)
        points.append(op == "=")
    t = _summary(np.stack(diffs, axis=-1), prob)
    t.index = pd.Index([str(h) for h in items], name="hypothesis")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = [p / (1.0 - p) if p < 1 else np.inf if p == 1 else np.nan for p in probs]
    if any(points):
        sd = _savage_dickey(fit, [h for h, pt in zip(items, points) if pt], [d for d, pt in zip(diffs, points) if pt])
        for i, ratio in zip([i for i, pt in enumerate(points) if pt], sd):
            ratios[i] = ratio
            probs[i] = ratio / (1.0 + ratio) if np.isfinite(ratio) else np.nan
    t["prob"] = probs
    t["evidence_ratio"] = ratios
    t.attrs["prob"] = prob
    return t


def _savage_dickey(fit, hypotheses: list[str], posterior: list[np.ndarray]) -> list[float]:
    """Savage–Dickey density ratios at 0 of ``lhs - rhs``: posterior density / prior density (brms's Evid.Ratio).

    The prior of each expression comes from draws of the fit's priors
    (:func:`hmodels.prior_checks.prior_draws`, 4000 draws); both densities are Gaussian kernel
    estimates at 0. NaN where the expression cannot be formed from prior draws (group effects) or
    a density is degenerate.
    """
    from types import SimpleNamespace

    from scipy.stats import gaussian_kde

    from .prior_checks import prior_draws

    view = SimpleNamespace(draws=prior_draws(fit, draws=4000, seed=0), meta=fit.meta, family=fit.family,
                           spec=fit.spec)
    prior_params = parameter_draws(view)
    out = []
    for h, post in zip(hypotheses, posterior):
        try:
            lhs, _, rhs = _parse_hypothesis(view, h, prior_params)
            prior = np.asarray(lhs - rhs, dtype=float).ravel()
            post = np.asarray(post, dtype=float).ravel()
            with np.errstate(all="ignore"):
                ratio = float(gaussian_kde(post)(0.0)[0] / gaussian_kde(prior[np.isfinite(prior)])(0.0)[0])
        except (SpecificationError, KeyError, np.linalg.LinAlgError, ValueError):  # e.g. no prior draws of r_
            ratio = np.nan
        out.append(ratio)
    return out


# -- the reference grid -------------------------------------------------------------------------
def _predictors(fit) -> dict[str, dict]:
    """Model predictors (population-level and group-specific terms' columns) -> how they vary in the data."""
    from dataclasses import replace

    from .design import used_columns

    spec = fit.spec
    data = fit_design(fit).data
    # the outcome, trials and SE columns: what a spec without terms still reads. The offset's columns are
    # predictors: the grid holds them at their mean (or at= values), as emmeans does
    extras = set(used_columns(replace(spec, fixed=(), groups=(), intercept=True, offset=None, dpars=()),
                              data.columns))
    group_cols = {c for g in spec.groups for c in g.columns}
    fixed_cols = [c for c in used_columns(replace(spec, groups=()), data.columns) if c not in extras]
    group_term_cols = [c for c in used_columns(spec, data.columns) if c not in extras and c not in group_cols]
    cols = list(dict.fromkeys(fixed_cols + group_term_cols))
    terms = " ".join([*spec.fixed, *(t for g in spec.groups for b in g.blocks for t in b.terms)])
    out = {}
    for c in cols:
        if c not in data.columns:
            continue
        col = data[c]
        as_factor = re.search(r"\bC\(\s*" + re.escape(c) + r"\b", terms) is not None
        if isinstance(col.dtype, pd.CategoricalDtype):
            out[c] = {"kind": "categorical", "levels": list(col.cat.categories)}
        elif pd.api.types.is_bool_dtype(col):
            out[c] = {"kind": "categorical", "levels": [False, True]}
        elif pd.api.types.is_numeric_dtype(col) and not as_factor:
            v = col.to_numpy(dtype=float)
            out[c] = {"kind": "numeric", "mean": float(v.mean()), "min": float(v.min()), "max": float(v.max()),
                      "sd": float(v.std())}
        else:
            out[c] = {"kind": "categorical", "levels": sorted(col.unique(), key=str)}
    return out


def _as_list(v) -> list:
    if isinstance(v, (str, bytes)) or not isinstance(v, Iterable):
        return [v]
    return list(v)


def _check_names(fit, names: Iterable[str], preds: dict, where: str) -> None:
    group_cols = {c for g in fit.spec.groups for c in g.columns}
    for n in names:
        if n in preds:
            continue
        if n in group_cols:
            raise SpecificationError(
                f"{n!r} in {where} is a grouping factor, not a predictor: estimates here are for the population "
                f"of groups (see groups=). For per-level values use fit.coef({n!r}) or fit.predict(...)."
            )
        raise SpecificationError(
            f"{n!r} in {where} is not a predictor of this model.{closest(n, preds)} "
            f"Predictors: {', '.join(preds) or 'none'}."
        )


def _at_values(name: str, value, info: dict) -> list:
    vals = _as_list(value)
    if not vals:
        raise SpecificationError(f"at[{name!r}] is empty; give one value or a list of values.")
    if info["kind"] == "categorical":
        levels = info["levels"]
        by_str = {str(lv): lv for lv in levels}
        out = []
        for v in vals:
            if v in levels:
                out.append(v)
            elif str(v) in by_str:
                out.append(by_str[str(v)])
            else:
                raise DataError(f"{v!r} is not a level of {name!r}; its levels: "
                                f"{', '.join(map(str, levels))}.{closest(str(v), by_str)}")
        return list(dict.fromkeys(out))
    out = []
    for v in vals:
        try:
            x = float(v)
        except (TypeError, ValueError):
            raise DataError(f"at[{name!r}] must be numeric ({name!r} is a numeric predictor), got {v!r}.") from None
        if not math.isfinite(x):
            raise DataError(f"at[{name!r}] must be finite, got {v!r}.")
        if x < info["min"] or x > info["max"]:
            warnings.warn(
                f"{name} = {x:g} is outside the data range of {name!r} [{info['min']:g}, {info['max']:g}]: the "
                "estimate extrapolates beyond the data the model was fitted to.", DataWarning, stacklevel=4)
        out.append(x)
    return list(dict.fromkeys(out))


def reference_grid(fit, by=None, at: dict | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The balanced reference grid of a fit and the columns that label its cells.

    Parameters
    ----------
    fit : Fit
    by : str or list of str, optional
        Predictors whose values label the result rows (categorical: all levels unless ``at``
        restricts them; numeric ones need their values in ``at``).
    at : dict, optional
        Values of predictors: one value (held there) or a list (each becomes rows of the result).
        Numeric predictors not in ``at`` are held at their mean in the data. The columns of an
        offset are predictors too: ``offset(np.log(expo))`` is evaluated at the mean ``expo``
        unless ``at`` says otherwise (``at={"expo": 1}``: per unit of exposure).

    Returns
    -------
    (pandas.DataFrame, list of str)
        The grid (one row per combination; categorical columns with the fitted categories) and
        the key columns: ``by`` then every ``at`` variable with several values.

    Raises
    ------
    SpecificationError
        A name in ``by`` / ``at`` that is not a predictor (closest names in the message), or a
        numeric ``by`` variable without values in ``at``.
    DataError
        A level that the predictor does not have.

    Warns
    -----
    DataWarning
        A numeric ``at`` value outside the range of the data (the message names the range).

    Examples
    --------
    >>> import hmodels as hm
    >>> data = hm.datasets.load("cbpp")
    >>> fit = hm.Model("p(incidence, size) ~ period + (1 | herd)", data, family="binomial").fit(
    ...     draws=100, tune=100, chains=2, seed=1, progressbar=False)
    >>> grid, keys = reference_grid(fit, by="period")
    >>> keys, grid["period"].tolist()
    (['period'], ['1', '2', '3', '4'])
    """
    by = [] if by is None else _as_list(by)
    at = {} if at is None else dict(at)
    if not isinstance(at, dict):
        raise SpecificationError(f"at must be a dict of predictor -> value(s), got {type(at).__name__}.")
    preds = _predictors(fit)
    _check_names(fit, by, preds, "by")
    _check_names(fit, at, preds, "at")
    if len(set(by)) != len(by):
        raise SpecificationError(f"by lists a variable twice: {by}.")
    values = {}
    for name, info in preds.items():
        if name in at:
            values[name] = _at_values(name, at[name], info)
        elif info["kind"] == "categorical":
            values[name] = list(info["levels"])
        elif name in by:
            raise SpecificationError(
                f"{name!r} in by is numeric: give the values to show in at, e.g. at={{{name!r}: [...]}} "
                f"(its data range is [{info['min']:g}, {info['max']:g}])."
            )
        else:
            values[name] = [info["mean"]]
    keys = list(by) + [n for n in at if n not in by and len(values[n]) > 1]
    names = list(values)
    rows = list(itertools.product(*(values[n] for n in names))) if names else [()]
    grid = pd.DataFrame(rows, columns=names)
    data = fit_design(fit).data
    for n in names:
        if preds[n]["kind"] == "categorical" and isinstance(data[n].dtype, pd.CategoricalDtype):
            grid[n] = pd.Categorical(grid[n], categories=data[n].cat.categories, ordered=data[n].cat.ordered)
        elif preds[n]["kind"] == "numeric":
            grid[n] = grid[n].astype(float)
    return grid, keys


# -- expected outcomes on a grid ----------------------------------------------------------------
def _design_rows(fit, grid: pd.DataFrame):
    """A Design for the grid rows (group columns filled with a fitted level: only Z is read from them)."""
    from .predict import new_design

    data = fit_design(fit).data
    full = grid.reset_index(drop=True).copy()
    if full.shape[1] == 0:
        full = pd.DataFrame(index=range(len(grid)))
    for g in fit.spec.groups:
        for c in g.columns:
            if c not in full.columns:
                full[c] = data[c].iloc[0]
    design, _ = new_design(fit, full)
    return design


def _factor_cov(fit, factor: str, terms: list[str]) -> np.ndarray:
    """Covariance of one factor's group effects per draw, (chain, draw, k, k), correlations included."""
    sd = _draws(fit, f"sd_{factor}")
    k = sd.shape[-1]
    R = np.broadcast_to(np.eye(k), sd.shape[:2] + (k, k)).copy()
    for var, bterms in fit.meta["factors"][factor]["cors"]:
        idx = [terms.index(t) for t in bterms]
        ii, jj = np.ix_(idx, idx)
        R[:, :, ii, jj] = _draws(fit, var)
    return sd[..., :, None] * R * sd[..., None, :]


def _normal_rule(s_max: float, n_points: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of ``E[f(t)], t ~ N(0, 1)``: the trapezoidal rule on [-9, 9].

    For integrands analytic in a strip (the inverse links composed with ``eta + s t``) the
    trapezoidal rule converges exponentially, with error ~ ``exp(-2 pi d / h)`` for a strip of
    half-width ``d``; the inverse logit has poles at ``|Im t| = pi / s``, so the step
    ``h = min(0.25, pi / (6 s_max))`` keeps the error near machine precision (checked against
    adaptive quadrature for ``s`` up to 20), where Gauss–Hermite needs hundreds of nodes once
    ``s > 3``. Mass beyond ±9 is below 1e-18.
    """
    half = 9.0
    if n_points is None:
        h = min(0.25, math.pi / (6.0 * s_max)) if s_max > 0 else 0.25
        n = min(int(math.ceil(half / h)), 4000)
    else:
        n = max(int(n_points) // 2, 1)
    t = np.linspace(-half, half, 2 * n + 1)
    w = (t[1] - t[0]) * np.exp(-0.5 * t**2) / math.sqrt(2 * math.pi)
    return t, w


def _chol(S: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.cholesky(S)
    except np.linalg.LinAlgError:  # a numerically singular draw: symmetric square root
        w, V = np.linalg.eigh(S)
        return V * np.sqrt(np.clip(w, 0.0, None))[..., None, :]


def _expected(fit, eta: np.ndarray) -> np.ndarray:
    """Expected outcome per draw at linear predictor ``eta`` (chain, draw, ...): the family's response mean.

    Zero-inflated and hurdle families scale their location by the share of non-structural zeros;
    the lognormal's mean is ``exp(mu + sigma^2 / 2)``. A truncated outcome's is the truncated distribution's mean
    (:meth:`~hmodels.families.Family.truncated_mean`; refused for a family without a closed form).
    """
    trunc = getattr(fit.spec, "trunc", None)
    if trunc is not None and not fit.family.has_truncated_mean:
        refuse_truncated_mean(fit, "An estimate on the outcome scale")
    if trunc is None and _location_is_mean(fit.family):  # the expected outcome is the inverse link
        return mean_draws(fit, eta)
    if getattr(fit.spec, "dpars", ()) and any(a in dict(fit.spec.dpars) for a in fit.family.aux):
        raise SpecificationError(
            f"The expected outcome of the {fit.family.name} family depends on "
            f"{', '.join(a for a, _ in fit.spec.dpars)}, which has its own formula and differs by row; marginal "
            "means, comparisons and slopes on the outcome scale are not available for such models yet. Use "
            "scale='link', or fit.predict(newdata, kind='mean') on the rows you want."
        )
    # (chain, draw) draws broadcast over eta's trailing axes; a vector parameter (an ordinal model's thresholds)
    # keeps its own last axis
    aux = {k: v.reshape(v.shape[:2] + (1,) * (eta.ndim - 2) + v.shape[3:]) for k, v in aux_draws(fit).items()}
    if trunc is not None:
        return fit.family.truncated_mean(mean_draws(fit, eta), aux, *trunc)
    return fit.family.response_mean(mean_draws(fit, eta), aux)


def _location_is_mean(fam) -> bool:
    """The expected outcome is the inverse link itself (the family does not override ``response_mean``)."""
    from .families import Family

    return type(fam).response_mean is Family.response_mean


def _row_draws(fit, grid: pd.DataFrame, groups: str, scale: str, integration: str = "quadrature",
               n_points: int | None = None, seed: int | None = 0) -> np.ndarray:
    """Expected outcome (or linear predictor) per draw and grid row, (chain, draw, rows), per ``groups``."""
    truncated = getattr(fit.spec, "trunc", None) is not None
    if scale != "link" and truncated and not fit.family.has_truncated_mean:
        refuse_truncated_mean(fit, "An estimate on the outcome scale")
    design = _design_rows(fit, grid)
    eta0 = linear_predictor(fit, design, groups="exclude")
    factors = design.factors
    if groups == "exclude" or not factors:
        return eta0 if scale == "link" else _expected(fit, eta0)
    if groups == "marginalize":
        if scale == "link" or (fit.family.link == "identity" and _location_is_mean(fit.family) and not truncated):
            # E[h(eta + e)] = h(eta): nothing to integrate
            return eta0 if scale == "link" else _expected(fit, eta0)
        out = np.empty_like(eta0)
        if integration == "quadrature":
            v = np.zeros_like(eta0)
            for fd in factors:
                S = _factor_cov(fit, fd.factor, fd.terms)
                v = v + np.einsum("gj,cdjk,gk->cdg", fd.Z, S, fd.Z, optimize=True)
            v = np.clip(v, 0.0, None)
            if fit.family.link == "log" and _location_is_mean(fit.family) and not truncated:  # lognormal mean
                return np.exp(eta0 + v / 2)
            nodes, weights = _normal_rule(float(np.sqrt(v.max())), n_points)
            sv = np.sqrt(v)
            for g in range(eta0.shape[-1]):
                out[..., g] = _expected(fit, eta0[..., g, None] + sv[..., g, None] * nodes) @ weights
            return out
        rng = np.random.default_rng(seed)
        m = n_points or N_MONTECARLO
        u = []  # per factor: (chain, draw, m, k), the same standard normals for every grid row and draw
        for fd in factors:
            L = _chol(_factor_cov(fit, fd.factor, fd.terms))
            z = rng.standard_normal((m, len(fd.terms)))
            u.append(np.einsum("cdkj,mj->cdmk", L, z, optimize=True))
        for g in range(eta0.shape[-1]):
            e = sum(np.einsum("cdmk,k->cdm", uf, fd.Z[g]) for uf, fd in zip(u, factors))
            out[..., g] = _expected(fit, eta0[..., g, None] + e).mean(axis=-1)
        return out
    # include: average over the observed (combinations of) levels of the fitted group-specific predictions
    fitted = fit_design(fit)
    codes = np.stack([f.codes for f in fitted.factors], axis=1)
    combos = np.unique(codes, axis=0)
    r = [_draws(fit, f"r_{fd.factor}") for fd in fitted.factors]
    out = np.empty_like(eta0)
    for g in range(eta0.shape[-1]):
        eta = eta0[..., g, None] + sum(np.einsum("cdlk,k->cdl", rf, fd.Z[g])[..., combos[:, i]]
                                       for i, (rf, fd) in enumerate(zip(r, factors)))
        out[..., g] = eta.mean(axis=-1) if scale == "link" else _expected(fit, eta).mean(axis=-1)
    return out


def _cells(grid: pd.DataFrame, keys: list[str]) -> tuple[pd.DataFrame, list[np.ndarray]]:
    """Cells of the grid (unique key values, in grid order) and the grid rows of each."""
    if not keys:
        return pd.DataFrame(index=[0]), [np.arange(len(grid))]
    codes = grid[keys].astype(str).agg("\x1f".join, axis=1).to_numpy()
    order = list(dict.fromkeys(codes))
    rows = [np.flatnonzero(codes == c) for c in order]
    cells = grid.iloc[[r[0] for r in rows]][keys].reset_index(drop=True)
    return cells, rows


def _average(draws: np.ndarray, rows: list[np.ndarray]) -> np.ndarray:
    return np.stack([draws[..., r].mean(axis=-1) for r in rows], axis=-1)


def _refuse_categorical(fit, what: str) -> None:
    """A typed error for grid averages of a categorical fit, whose outcome has no expected value."""
    if fit.family.outcome == "categorical":
        from .errors import FamilyError

        raise FamilyError(
            f"{what} averages an expected outcome (or its linear predictor) over grid or table cells; a categorical "
            f"outcome has no expected value (its categories are unordered) and K - 1 linear predictors, so this is "
            "not available for the categorical family. For each category's probability on a grid of predictor "
            "values use fit.predict(grid, kind='probs', groups='exclude'); kind='link' gives each category's "
            "log-odds against the reference."
        )


def _common_checks(groups, scale, prob, integration):
    _check_choice("groups", groups, GROUPS)
    _check_choice("scale", scale, SCALES)
    _check_choice("integration", integration, INTEGRATION)
    _check_prob(prob)


def _ylabel(fit, scale: str) -> str:
    if scale == "link":
        return f"{fit.spec.response} (linear predictor, {fit.family.link} scale)"
    if fit.family.name in ("binomial", "bernoulli"):
        return f"P({fit.spec.response})"
    return f"expected {fit.spec.response}"


def _table(cells: pd.DataFrame, draws: np.ndarray, prob: float) -> pd.DataFrame:
    t = pd.concat([cells.reset_index(drop=True), _summary(draws, prob)], axis=1)
    t.attrs["prob"] = prob
    return t


def marginal_means(fit, by=None, at: dict | None = None, groups: str = "marginalize", scale: str = "response",
                   prob: float = 0.95, integration: str = "quadrature", n_points: int | None = None,
                   seed: int | None = 0) -> Estimates:
    """Expected outcome over a balanced reference grid, averaged within ``by`` (emmeans's ``emmeans``).

    Parameters
    ----------
    fit : Fit
    by : str or list of str, optional
        Predictors to give estimates for (each level; numeric ones at the values in ``at``).
        Other categorical predictors are averaged over their levels with equal weights.
    at : dict, optional
        Predictor values: ``{"Time": 10}`` holds Time at 10, ``{"Time": [0, 10, 20]}`` gives
        rows for each. Numeric predictors not in ``at`` are held at their mean.
    groups : {"marginalize", "exclude", "include"}
        How the group-specific effects enter (module docstring): the population-averaged mean
        (default), the typical group (effects at zero) or the average over the fitted groups.
        For an identity link the first two are the same.
    scale : {"response", "link"}
        Expected outcome (a probability for binomial/bernoulli, a rate for counts) or the
        linear predictor.
    prob : float
        Probability mass of the HDI.
    integration : {"quadrature", "montecarlo"}
        How ``groups="marginalize"`` integrates over the group effects.
    n_points : int, optional
        Monte Carlo draws per posterior draw (default 2000); for quadrature, the number of
        nodes (default: chosen from the largest group-effect SD for near machine precision).
    seed : int, optional
        Seed of the Monte Carlo draws.

    Returns
    -------
    Estimates
        ``.table``: the ``by`` / multi-valued ``at`` columns, then ``estimate``, ``sd``,
        ``hdi_low``, ``hdi_high``; ``.draws``; ``.plot()``.

    Raises
    ------
    SpecificationError
        Unknown names in ``by`` / ``at`` (closest names in the message), bad option values.
    DataError
        A level a categorical predictor does not have.

    Warns
    -----
    DataWarning
        A numeric ``at`` value outside the data range.

    Notes
    -----
    Per posterior draw ``s`` and grid row ``g`` with population-level row ``x_g`` and
    group-specific rows ``z_{f,g}``: ``"exclude"`` is ``h(x_g b_s)``; ``"marginalize"`` is
    ``∫ h(x_g b_s + sqrt(v_{g,s}) t) φ(t) dt`` with ``v_{g,s} = Σ_f z_{f,g}' Σ_{f,s} z_{f,g}``;
    ``"include"`` is ``mean_k h(x_g b_s + Σ_f z_{f,g} r_{f,s}[k_f])`` over the observed level
    combinations ``k``. Cells average their grid rows' draws, then each cell is summarised.

    Examples
    --------
    >>> import hmodels as hm
    >>> fit = hm.Model("p(incidence, size) ~ period + (1 | herd)", hm.datasets.load("cbpp"),
    ...                family="binomial").fit(draws=200, tune=200, chains=2, seed=1, progressbar=False)
    >>> pa = fit.marginal_means(by="period")                       # population-averaged
    >>> typical = fit.marginal_means(by="period", groups="exclude")  # a herd with effect 0
    >>> bool((pa.table["estimate"] > typical.table["estimate"]).all())
    True
    """
    _refuse_categorical(fit, "marginal_means")
    _common_checks(groups, scale, prob, integration)
    grid, keys = reference_grid(fit, by, at)
    rows = _row_draws(fit, grid, groups, scale, integration, n_points, seed)
    cells, idx = _cells(grid, keys)
    draws = _average(rows, idx)
    info = {"by": keys, "at": dict(at or {}), "groups": groups, "scale": scale, "prob": prob,
            "integration": integration if groups == "marginalize" else None, "ylabel": _ylabel(fit, scale)}
    return Estimates(_table(cells, draws, prob), draws, "marginal_means", info)


def _variable(fit, variable: str, preds: dict, where: str) -> dict:
    if not isinstance(variable, str):
        raise SpecificationError(f"variable must be a predictor name (a string), got {variable!r}.")
    if variable not in preds:
        _check_names(fit, [variable], preds, where)
    return preds[variable]


def comparisons(fit, variable: str, by=None, at: dict | None = None, comparison: str = "difference",
                contrast: str = "reference", groups: str = "marginalize", scale: str = "response",
                prob: float = 0.95, integration: str = "quadrature", n_points: int | None = None,
                seed: int | None = 0) -> Estimates:
    """Contrasts of the expected outcome between values of one predictor (differences or ratios).

    The marginal means of :func:`marginal_means` at each value of ``variable`` (per ``by`` cell,
    other predictors averaged or held as there), then per draw their difference or ratio.

    Parameters
    ----------
    fit : Fit
    variable : str
        The predictor to contrast. Categorical: its levels (those in ``at[variable]`` if
        given). Numeric: the values in ``at[variable]`` when there are several, else ``x + 1``
        versus ``x`` (``x`` = the ``at`` value or the mean).
    by, at, groups, scale, prob, integration, n_points, seed
        As in :func:`marginal_means`.
    comparison : {"difference", "ratio"}
        ``a - b`` or ``a / b`` (ratios on the response scale only; on the link scale a
        difference of a logit is already a log odds ratio).
    contrast : {"reference", "pairwise"}
        Each value against the first, or every pair (later minus earlier).

    Returns
    -------
    Estimates
        ``.table``: the ``by`` columns, ``contrast`` (``"2 - 1"``, ``"2 / 1"``), ``estimate``,
        ``sd``, ``hdi_low``, ``hdi_high``.

    Raises
    ------
    SpecificationError
        ``variable`` is not a predictor (closest names), is also in ``by``, or has one value.

    Examples
    --------
    >>> import hmodels as hm
    >>> fit = hm.Model("weight ~ Time * Diet + (Time | Chick)", hm.datasets.load("chickweight")).fit(
    ...     draws=100, tune=100, chains=2, seed=1, progressbar=False)
    >>> c = fit.comparisons("Diet", at={"Time": 10})
    >>> c.table["contrast"].tolist()
    ['2 - 1', '3 - 1', '4 - 1']
    >>> bool((c.table["estimate"] > 0).all())  # every diet beats diet 1 at day 10
    True
    """
    _refuse_categorical(fit, "comparisons")
    _common_checks(groups, scale, prob, integration)
    _check_choice("comparison", comparison, ("difference", "ratio"))
    _check_choice("contrast", contrast, ("reference", "pairwise"))
    if comparison == "ratio" and scale == "link":
        raise SpecificationError("comparison='ratio' needs scale='response'; on the link scale use a difference "
                                 "(for a logit link it is a log odds ratio, for a log link a log ratio).")
    preds = _predictors(fit)
    info = _variable(fit, variable, preds, "variable")
    by_list = [] if by is None else _as_list(by)
    if variable in by_list:
        raise SpecificationError(f"{variable!r} is both the variable to compare and in by; leave it out of by.")
    at = dict(at or {})
    if info["kind"] == "numeric" and len(_as_list(at.get(variable, []))) < 2:
        x0 = float(_as_list(at[variable])[0]) if variable in at else info["mean"]
        at[variable] = [x0, x0 + 1.0]
    grid, keys = reference_grid(fit, by_list, at)
    keys = [k for k in keys if k != variable]
    values = list(grid[variable].drop_duplicates())
    if len(values) < 2:
        raise SpecificationError(f"{variable!r} has a single value here ({values[0]!r}); a comparison needs two.")
    rows = _row_draws(fit, grid, groups, scale, integration, n_points, seed)
    cells, idx = _cells(grid, keys + [variable])
    means = _average(rows, idx)
    base_cells = cells[keys].astype(str).agg("\x1f".join, axis=1).to_numpy() if keys else np.zeros(len(cells), str)
    pairs = [(0, j) for j in range(1, len(values))] if contrast == "reference" else \
        [(i, j) for i in range(len(values)) for j in range(i + 1, len(values))]
    vpos = {str(v): i for i, v in enumerate(values)}
    out_rows, out_draws = [], []
    for base in dict.fromkeys(base_cells):
        members = np.flatnonzero(base_cells == base)
        at_value = {vpos[str(cells[variable].iloc[m])]: m for m in members}
        for i, j in pairs:
            a, b = means[..., at_value[j]], means[..., at_value[i]]
            with np.errstate(divide="ignore", invalid="ignore"):
                out_draws.append(a - b if comparison == "difference" else a / b)
            sign = "-" if comparison == "difference" else "/"
            label = f"{_fmt(values[j])} {sign} {_fmt(values[i])}"
            out_rows.append({**{k: cells[k].iloc[members[0]] for k in keys}, "contrast": label})
    draws = np.stack(out_draws, axis=-1)
    table_cells = pd.DataFrame(out_rows, columns=[*keys, "contrast"])
    for k in keys:
        if isinstance(grid[k].dtype, pd.CategoricalDtype):
            table_cells[k] = pd.Categorical(table_cells[k], categories=grid[k].cat.categories)
    meta = {"variable": variable, "by": keys, "at": at, "comparison": comparison, "contrast": contrast,
            "groups": groups, "scale": scale, "prob": prob, "ylabel": f"{comparison} in {_ylabel(fit, scale)}"}
    return Estimates(_table(table_cells, draws, prob), draws, "comparisons", meta)


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def slopes(fit, variable: str, by=None, at: dict | None = None, groups: str = "marginalize",
           scale: str = "response", prob: float = 0.95, integration: str = "quadrature",
           n_points: int | None = None, seed: int | None = 0, eps: float | None = None) -> Estimates:
    """Derivative of the expected outcome with respect to a numeric predictor (marginal effects).

    Central finite differences ``(m(x + h) - m(x - h)) / 2h`` of the marginal means of
    :func:`marginal_means` per posterior draw, at ``x`` = the ``at`` value(s) of ``variable``
    (default its mean) — on the response scale by default, so for a GLMM it is the change in
    probability (or rate) per unit of ``variable``.

    Parameters
    ----------
    fit : Fit
    variable : str
        A numeric predictor.
    by, at, groups, scale, prob, integration, n_points, seed
        As in :func:`marginal_means`.
    eps : float, optional
        The step ``h`` (default ``1e-4`` times the SD of ``variable`` in the data, or ``1e-4``).

    Returns
    -------
    Estimates
        ``.table``: the ``by`` / multi-valued ``at`` columns, ``estimate``, ``sd``, ``hdi_low``,
        ``hdi_high`` of the slope.

    Raises
    ------
    SpecificationError
        ``variable`` not a predictor (closest names), or categorical (use :func:`comparisons`).

    Examples
    --------
    >>> import hmodels as hm
    >>> fit = hm.Model("weight ~ Time * Diet + (Time | Chick)", hm.datasets.load("chickweight")).fit(
    ...     draws=100, tune=100, chains=2, seed=1, progressbar=False)
    >>> s = fit.slopes("Time", by="Diet")  # grams per day, per diet
    >>> s.table["Diet"].tolist(), bool(s.table["estimate"].between(4, 15).all())
    (['1', '2', '3', '4'], True)
    """
    _refuse_categorical(fit, "slopes")
    _common_checks(groups, scale, prob, integration)
    preds = _predictors(fit)
    info = _variable(fit, variable, preds, "variable")
    if info["kind"] != "numeric":
        raise SpecificationError(f"{variable!r} is categorical: a slope needs a numeric predictor. Use "
                                 f"fit.comparisons({variable!r}) for differences between its levels.")
    by_list = [] if by is None else _as_list(by)
    if variable in by_list and variable not in (at or {}):
        raise SpecificationError(f"{variable!r} in by needs its values in at, e.g. at={{{variable!r}: [...]}}.")
    grid, keys = reference_grid(fit, by_list, at)
    h = float(eps) if eps is not None else 1e-4 * (info["sd"] if info["sd"] > 0 else 1.0)
    if not h > 0:
        raise SpecificationError(f"eps must be positive, got {eps!r}.")
    up, down = grid.copy(), grid.copy()
    up[variable] = grid[variable] + h
    down[variable] = grid[variable] - h
    both = _row_draws(fit, pd.concat([up, down], ignore_index=True), groups, scale, integration, n_points, seed)
    n = len(grid)
    rows = (both[..., :n] - both[..., n:]) / (2 * h)
    cells, idx = _cells(grid, keys)
    draws = _average(rows, idx)
    meta = {"variable": variable, "by": keys, "at": dict(at or {}), "groups": groups, "scale": scale, "prob": prob,
            "eps": h, "ylabel": f"d {_ylabel(fit, scale)} / d {variable}"}
    return Estimates(_table(cells, draws, prob), draws, "slopes", meta)


# -- post-stratification ------------------------------------------------------------------------
def poststratify(fit, table: pd.DataFrame, weights: str = "N", by=None, groups: str = "new",
                 scale: str = "response", prob: float = 0.95, seed: int | None = 0) -> Estimates:
    """Population estimates from cell predictions weighted by cell counts (MRP).

    For each posterior draw, the expected outcome of every row (cell) of ``table`` (via
    :meth:`Fit.predict`), averaged with weights ``table[weights]`` — overall or within each
    ``by`` group: ``sum_c N_c mu_c / sum_c N_c``.

    Parameters
    ----------
    fit : Fit
    table : pandas.DataFrame
        The post-stratification table: one row per cell, with every predictor and grouping
        column of the model and the weight column.
    weights : str
        Column of cell counts or population shares (non-negative).
    by : str or list of str, optional
        Columns of ``table`` to give estimates for (e.g. a state); default one overall estimate.
    groups : {"new", "include", "exclude"}
        Group effects of the cells, as in :meth:`Fit.predict`: ``"new"`` (default) uses the
        fitted effects for fitted levels and draws unseen levels from the fitted population
        distribution; ``"include"`` requires fitted levels; ``"exclude"`` sets them to zero.
    scale : {"response", "link"}
    prob : float
    seed : int, optional
        Seed for the effects of unseen levels.

    Returns
    -------
    Estimates
        ``.table``: the ``by`` columns, ``estimate``, ``sd``, ``hdi_low``, ``hdi_high``.

    Raises
    ------
    MissingColumnError
        ``weights`` or a ``by`` column is not in ``table``.
    DataError
        Negative, missing or all-zero weights.

    Examples
    --------
    >>> import hmodels as hm
    >>> data = hm.datasets.load("cbpp")
    >>> fit = hm.Model("p(incidence, size) ~ period + (1 | herd)", data, family="binomial").fit(
    ...     draws=100, tune=100, chains=2, seed=1, progressbar=False)
    >>> ps = fit.poststratify(data.assign(N=data["size"]), by="period")  # herds weighted by their size
    >>> ps.table["period"].tolist(), bool(ps.table["estimate"].between(0, 1).all())
    (['1', '2', '3', '4'], True)
    """
    from .predict import predict

    _refuse_categorical(fit, "poststratify")
    _check_choice("groups", groups, ("new", "include", "exclude"))
    _check_choice("scale", scale, SCALES)
    _check_prob(prob)
    if not isinstance(table, pd.DataFrame):
        raise DataError(f"table must be a pandas DataFrame, got {type(table).__name__}.")
    by_list = [] if by is None else _as_list(by)
    for c in [weights, *by_list]:
        if c not in table.columns:
            raise MissingColumnError(f"Column {c!r} is not in the post-stratification table."
                                     f"{closest(c, table.columns)} Columns: {', '.join(map(str, table.columns))}.")
    w = pd.to_numeric(table[weights], errors="coerce").to_numpy(dtype=float)
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise DataError(f"The weights {weights!r} must be finite and non-negative (cell counts or shares).")
    pred = predict(fit, table, kind="link" if scale == "link" else "mean", groups=groups, seed=seed)
    mu = pred.values
    cells, idx = _cells(table.reset_index(drop=True), by_list)
    out = []
    for rows in idx:
        total = w[rows].sum()
        if total <= 0:
            raise DataError(f"The weights {weights!r} sum to zero in a cell of {by_list or 'the table'}.")
        out.append((mu[..., rows] * w[rows]).sum(axis=-1) / total)
    draws = np.stack(out, axis=-1)
    meta = {"by": by_list, "weights": weights, "groups": groups, "scale": scale, "prob": prob,
            "ylabel": _ylabel(fit, scale)}
    return Estimates(_table(cells, draws, prob), draws, "poststratify", meta)

"""Simulate data sets from a model: given parameters or draws from its priors, on its design or a new one.

:func:`simulate` is the generative half of every study: SBC draws parameters from the priors and
data from them, power analysis draws data from assumed effects on a planned design
(:func:`design_grid`). The outcome is drawn by the model's family (``simulate_response`` of
:mod:`hmodels.linpred`), the group effects of every level from ``N(0, Sigma_f)``.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping
from dataclasses import replace

import numpy as np
import pandas as pd

from ..errors import DataError, SpecificationError
from .params import Params, draw_from_priors, family_aux, parse_params

__all__ = ["simulate", "design_grid", "simulate_outcome", "design_for", "with_outcome", "model_with_design",
           "call_design"]


class _ParamsFit:
    """The few attributes of a Fit that :mod:`hmodels.linpred` reads, holding one set of parameter values."""

    def __init__(self, spec, design, aux: dict):
        import xarray as xr

        from ..families import get_family

        self.spec = spec
        self.design = design
        self.family = get_family(spec.family, spec.link)
        self.draws = xr.Dataset(
            {a: (("chain", "draw", f"{a}_dim")[:2 + np.ndim(v)], np.asarray(v, dtype=float)[None, None])
             for a, v in aux.items()}, coords={"chain": [0], "draw": [0]})


def linear_predictor_of(design, params: Params, effects: dict[str, np.ndarray]) -> np.ndarray:
    """``X b + offset + sum_f (Z_f * b_f[codes_f]).sum(-1)`` for one set of values, shape (n,)."""
    eta = design.X @ params.beta if design.fixed_terms else np.zeros(design.n)
    if getattr(design, "offset", None) is not None:  # offset(...) enters with coefficient 1
        eta = eta + design.offset
    for f in design.factors:
        eta = eta + np.einsum("nk,nk->n", effects[f.factor][f.codes], f.Z)
    return eta


def simulate_outcome(design, params: Params, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """One outcome vector drawn from ``params`` on ``design``, and the group effects drawn on the way.

    Returns
    -------
    y : ndarray (n,)
        float for continuous outcomes, int64 for binary, binomial and count outcomes.
    effects : dict
        Per factor, the (levels, terms) group effects that generated ``y``.
    """
    refuse_categorical(design)
    from ..linpred import simulate_response

    cens = getattr(design, "cens", None)
    if cens is not None and (cens != 0).any():
        raise SpecificationError(
            f"{int((cens != 0).sum())} rows of this design are censored (cens()), and simulation has no censoring "
            "mechanism to apply to new outcomes (when would each simulated subject have been censored?). Simulate "
            "from the model without cens() and censor the simulated times yourself, e.g. at a study end."
        )
    effects = params.group_effects(design, rng)
    eta = linear_predictor_of(design, params, effects)
    fit = _ParamsFit(design.spec, design, {a: params.aux[a] for a in family_aux(design)})
    with np.errstate(over="ignore", invalid="ignore"):
        y = np.asarray(simulate_response(fit, eta[None, None, :], design, seed=int(rng.integers(2**63))))[0, 0]
    if fit.family.outcome != "continuous":
        y = y.astype(np.int64)
    return y, effects


def _placeholder(spec, data: pd.DataFrame) -> pd.DataFrame:
    """``data`` with a valid stand-in outcome when it has none (only its shape and type matter)."""
    from ..families import get_family

    if spec.response in data.columns:
        return data
    fam = get_family(spec.family, spec.link)
    n = len(data)
    alt = np.arange(n) % 2
    if fam.outcome == "ordinal":
        raise SpecificationError(
            f"An ordinal model's categories come from its outcome: add the column {spec.response!r} to the design, "
            "holding its categories (an ordered Categorical, or whole numbers covering every rating), e.g. "
            f"design[{spec.response!r}] = np.resize([1, 2, 3, 4, 5], len(design)); simulation replaces its values."
        )
    if fam.outcome == "continuous":
        y = np.random.default_rng(0).normal(size=n)
        y = np.exp(y) if fam.link == "log" else y
    elif fam.outcome == "binomial":
        if spec.trials not in data.columns:
            raise DataError(
                f"The design has no trials column {spec.trials!r}, which the binomial model needs: add the number of "
                "trials of each row to the design."
            )
        y = np.minimum(alt, data[spec.trials].to_numpy())
    else:
        y = alt
    return data.assign(**{spec.response: y})


def design_for(spec, data: pd.DataFrame):
    """The :class:`~hmodels.design.Design` of a planned data set (predictors and groups; outcome optional).

    The outcome, when the data have none, is a stand-in that only fixes the rows' shape: every
    study replaces it with simulated values (:func:`with_outcome`).
    """
    from ..design import make_design

    if not isinstance(data, pd.DataFrame):
        raise DataError(f"A design must be a pandas DataFrame of predictors and grouping columns, got "
                        f"{type(data).__name__}.")
    if spec.response not in data.columns and not _is_column_name(spec.response):
        raise SpecificationError(
            f"Simulation writes the outcome into a column, but {spec.response!r} is an expression: name the outcome "
            "column in the formula (transform it in the data instead)."
        )
    from ._dask import quiet

    with quiet():  # separation or rounding warnings about the stand-in outcome
        return make_design(spec, _placeholder(spec, data), missing="raise")


def _is_column_name(name: str) -> bool:
    return name.isidentifier()


def with_outcome(design, y: np.ndarray):
    """A copy of ``design`` whose outcome is ``y`` (in ``design.y`` and in ``design.data``).

    An ordinal outcome's category numbers ``1..K`` are written into the data as its categories (an
    ordered Categorical of the original labels), so a refit reads the same scale.
    """
    y = np.asarray(y)
    column = y
    levels = getattr(design, "response_levels", None)
    if levels is not None:
        column = pd.Categorical(np.asarray(levels, dtype=object)[y.astype(np.int64) - 1], categories=list(levels),
                                ordered=True)
    return replace(design, y=y, data=design.data.assign(**{design.spec.response: column}))


def model_with_design(model, design):
    """A copy of ``model`` on another :class:`~hmodels.design.Design` of the same spec, with the same priors.

    The priors are the model's own objects (not re-derived from the new data), which is what SBC
    needs; nothing about the new outcome is checked, so degenerate simulated data (all zeros) are
    fitted rather than refused.
    """
    m = copy.copy(model)
    m.design = design
    m._centerings, m._engine_models, m._built = {}, {}, {}
    return m


def refuse_categorical(design) -> None:
    """A typed error for simulation studies of a categorical model, which cannot draw its outcome yet.

    ``design`` is a model's design or its :class:`~hmodels.spec.ModelSpec`.
    """
    from ..families import get_family

    spec = getattr(design, "spec", design)
    if get_family(spec.family, spec.link).outcome == "categorical":
        raise SpecificationError(
            "Simulating data from a categorical model (hm.simulate, sbc, power) is not available yet: its K - 1 "
            "linear predictors are not drawn by the simulation code. Fit it and use fit.predict(kind='response') "
            "for replicated outcomes of the fitted rows."
        )


def _to_params(design, params, what: str = "params") -> Params:
    return params if isinstance(params, Params) else parse_params(design, params, what=what)


def simulate(model, params: Mapping | None = None, n: int | None = None, seed: int | None = None,
             design: pd.DataFrame | None = None, family: str = "gaussian", link: str | None = None):
    """Simulate data sets of a model's design from given parameter values or from its priors.

    Each data set draws new group effects for every level (``N(0, Sigma_f)``) and a new outcome
    from the family; the predictors and groups are those of the model's data (or of ``design``).

    Parameters
    ----------
    model : Model, str or ModelSpec
        A :class:`~hmodels.model.Model`, or a formula / spec together with ``design`` (for planning,
        when no data exist yet; ``params`` are then required).
    params : dict, optional
        True values by the labels of a Fit's tables: the fixed effects (``"Intercept"``, ``"Days"``),
        ``"sd(Subject, Intercept)"``, ``"sd(Subject, Days)"``, ``"cor(Subject, Intercept:Days)"``,
        ``"sigma"`` / ``"nu"`` / ``"alpha"`` as the family has them. Shorthands: ``"sd(g)"`` for a
        factor with one term, ``"cor(g)"`` for a factor's only correlated block (a number for two
        terms, else the matrix). Every parameter must be given. Omitted: a new draw from the
        model's priors for each data set.
    n : int, optional
        Number of data sets. ``None`` (default) returns one DataFrame; an integer, a list of ``n``.
    seed : int, optional
    design : pandas.DataFrame, optional
        Predictors and grouping columns to simulate on instead of the model's data (see
        :func:`design_grid`); binomial models need the trials column, ``se()`` models the SEs.
    family, link : str
        Family and link when ``model`` is a formula.

    Returns
    -------
    pandas.DataFrame or list of DataFrame
        The design's columns with the outcome column simulated; ``df.attrs["params"]`` holds the
        true values (``{label: value}``).

    Raises
    ------
    SpecificationError
        Unknown or missing parameters, impossible values, ``params`` omitted without a Model.

    Examples
    --------
    >>> import hmodels as hm
    >>> m = hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy"))
    >>> truth = {"Intercept": 250, "Days": 10, "sd(Subject, Intercept)": 25, "sd(Subject, Days)": 6,
    ...          "cor(Subject)": 0.1, "sigma": 25}
    >>> df = hm.simulate(m, truth, seed=1)
    >>> df.shape, df.attrs["params"]["Days"]
    ((180, 3), 10.0)
    >>> len(hm.simulate(m, n=3, seed=1))   # three data sets, each from its own draw of the priors
    3
    >>> plan = hm.design_grid(n_groups=6, n_per_group=4, group="cluster", between={"treat": [0, 1]})
    >>> df = hm.simulate("y ~ treat + (1 | cluster)", {"Intercept": 0, "treat": 0.5, "sd(cluster)": 0.3,
    ...                  "sigma": 1}, design=plan, seed=2)
    >>> list(df.columns)
    ['y', 'treat', 'cluster']
    """
    from ..model import Model

    if n is not None and (not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1):
        raise SpecificationError(f"n must be a positive integer (or None for one data set), got {n!r}.")
    if isinstance(model, Model):
        spec, priors = model.spec, model.priors
        d = model.design if design is None else design_for(spec, design)
    else:
        from ..formula import parse_formula
        from ..spec import ModelSpec

        if isinstance(model, str):
            spec = parse_formula(model, family=family, link=link)
        elif isinstance(model, ModelSpec):
            spec = model
        else:
            raise SpecificationError(f"simulate needs a Model, a formula or a ModelSpec, got {type(model).__name__}.")
        if design is None:
            raise SpecificationError("simulate from a formula needs design=: a DataFrame of the predictors and "
                                     "grouping columns (see hm.design_grid), or pass a Model.")
        if params is None:
            raise SpecificationError("simulate from a formula needs params= (there are no priors to draw from "
                                     "without a Model).")
        priors = None
        d = design_for(spec, design)
    refuse_categorical(d)
    fixed = None if params is None else _to_params(d, params)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(1 if n is None else int(n)):
        p = fixed if fixed is not None else draw_from_priors(d, priors, rng)
        y, _ = simulate_outcome(d, p, rng)
        df = with_outcome(d, y).data  # an ordinal outcome as its categories
        df.attrs["params"] = p.flat(d)
        out.append(df)
    return out[0] if n is None else out


def design_grid(n_groups: int, n_per_group: int, group: str = "group", between: Mapping | None = None,
                within: Mapping | None = None, seed: int | None = None) -> pd.DataFrame:
    """A balanced planned design: ``n_groups`` groups of ``n_per_group`` rows, with predictors.

    Parameters
    ----------
    n_groups, n_per_group : int
    group : str
        Name of the grouping column (levels ``"1"``, ``"2"``, ...).
    between : dict, optional
        Group-level predictors, constant within a group: ``{"treat": [0, 1]}`` assigns the values
        to groups in turn (group 1 gets 0, group 2 gets 1, ...: balanced arms), or a callable
        ``f(rng, n_groups) -> values``.
    within : dict, optional
        Row-level predictors: ``{"time": [0, 1, 2, 3]}`` gives row ``j`` of every group value
        ``j mod len``, or a callable ``f(rng, n_rows) -> values`` (e.g. a random covariate).
    seed : int, optional
        For callables.

    Returns
    -------
    pandas.DataFrame
        Columns: the ``between`` and ``within`` predictors, then ``group``.

    Examples
    --------
    >>> import hmodels as hm
    >>> d = hm.design_grid(4, 3, group="clinic", between={"treat": [0, 1]}, within={"visit": [1, 2, 3]})
    >>> d.head(4)
       treat  visit clinic
    0      0      1      1
    1      0      2      1
    2      0      3      1
    3      1      1      2
    >>> d.groupby("treat")["clinic"].nunique().tolist()
    [2, 2]
    """
    for name, v in (("n_groups", n_groups), ("n_per_group", n_per_group)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
            raise SpecificationError(f"{name} must be a positive integer, got {v!r}.")
    if n_groups < 2:
        raise SpecificationError(f"n_groups must be at least 2 (a grouping factor needs two groups), got {n_groups}.")
    rng = np.random.default_rng(seed)
    G, m = int(n_groups), int(n_per_group)
    gid = np.repeat(np.arange(G), m)
    pos = np.tile(np.arange(m), G)
    cols: dict[str, np.ndarray] = {}
    for name, spec_ in (between or {}).items():
        vals = spec_(rng, G) if callable(spec_) else _cycle(spec_, G, name, "between")
        vals = np.asarray(vals)
        if len(vals) != G:
            raise SpecificationError(f"between[{name!r}] gave {len(vals)} values for {G} groups.")
        cols[name] = vals[gid]
    for name, spec_ in (within or {}).items():
        if callable(spec_):
            vals = np.asarray(spec_(rng, G * m))
            if len(vals) != G * m:
                raise SpecificationError(f"within[{name!r}] gave {len(vals)} values for {G * m} rows.")
        else:
            vals = _cycle(spec_, m, name, "within")[pos]
        cols[name] = vals
    cols[group] = pd.Categorical((gid + 1).astype(str), categories=[str(i + 1) for i in range(G)])
    return pd.DataFrame(cols)


def _cycle(values, n: int, name: str, where: str) -> np.ndarray:
    vals = np.asarray(list(values) if not isinstance(values, np.ndarray) else values)
    if vals.ndim != 1 or len(vals) == 0:
        raise SpecificationError(f"{where}[{name!r}] must be a non-empty list of values or a callable.")
    return vals[np.arange(n) % len(vals)]


def call_design(design: Callable | pd.DataFrame, n_groups, n_per_group, rng: np.random.Generator,
                group: str | None = None) -> pd.DataFrame:
    """The planned data set of one design cell.

    ``design`` is a callable ``(n_groups, n_per_group) -> DataFrame`` (it also receives ``rng=`` when
    it has an ``rng`` parameter), or a template DataFrame: its groups (column ``group``) are cycled
    to ``n_groups`` groups, each relabelled, and each group's rows cycled to ``n_per_group`` rows;
    ``None`` sizes keep the template's own.
    """
    if callable(design):
        kwargs = {}
        try:
            if "rng" in inspect.signature(design).parameters:
                kwargs["rng"] = rng
        except (TypeError, ValueError):
            pass
        df = design(n_groups, n_per_group, **kwargs)
        if not isinstance(df, pd.DataFrame):
            raise SpecificationError(f"The design callable must return a pandas DataFrame, got {type(df).__name__}.")
        return df
    if not isinstance(design, pd.DataFrame):
        raise SpecificationError(
            f"design must be a callable (n_groups, n_per_group) -> DataFrame or a template DataFrame, got "
            f"{type(design).__name__}."
        )
    if n_groups is None and n_per_group is None:
        return design
    if group is None or group not in design.columns:
        raise SpecificationError(f"A template design needs its grouping column {group!r} to replicate groups.")
    parts = [g for _, g in design.groupby(group, sort=False, observed=True)]
    G = len(parts) if n_groups is None else int(n_groups)
    out = []
    for i in range(G):
        g = parts[i % len(parts)]
        m = len(g) if n_per_group is None else int(n_per_group)
        rows = g.iloc[np.arange(m) % len(g)].copy()
        rows[group] = str(i + 1)
        out.append(rows)
    df = pd.concat(out, ignore_index=True)
    df[group] = pd.Categorical(df[group], categories=[str(i + 1) for i in range(G)])
    return df

"""Data to arrays: validation, missing rows, design matrices (via formulae), group codes.

A :class:`Design` owns every shape: the population-level matrix ``X`` (n × p), and per grouping
factor the integer level codes (n,) and the group-specific columns ``Z`` (n × k), so that the
linear predictor is ``X @ beta + sum_f (Z_f * b_f[codes_f]).sum(-1)`` — vectorised, no loops
over groups and no dense n × (levels · k) matrices.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import formulae as fm
import numpy as np
import pandas as pd

from .errors import DataError, MissingColumnError, SpecificationError, closest
from .families import get_family
from .spec import ModelSpec

__all__ = ["Design", "FactorDesign", "make_design", "used_columns"]


@dataclass
class FactorDesign:
    """Arrays for one grouping factor.

    Attributes
    ----------
    factor : str
        Factor name (``"Subject"``, ``"batch:cask"``).
    levels : list of str
        Level labels, in code order.
    codes : ndarray of int, shape (n,)
        Level index of each row.
    Z : ndarray, shape (n, k)
        Group-specific predictor columns.
    terms : list of str
        Column labels of ``Z`` (``"Intercept"``, ``"Days"``, ...).
    blocks : list of list of int
        Column indices of each covariance block.
    correlated : list of bool
        Whether each block is correlated.
    """

    factor: str
    levels: list[str]
    codes: np.ndarray
    Z: np.ndarray
    terms: list[str]
    blocks: list[list[int]]
    correlated: list[bool]
    block_expressions: list[str] = field(default_factory=list)

    @property
    def n_levels(self) -> int:
        """Number of levels."""
        return len(self.levels)

    def group_sizes(self) -> np.ndarray:
        """Observations per level."""
        return np.bincount(self.codes, minlength=self.n_levels)


@dataclass
class Design:
    """The data of one model as arrays, with the rows actually used.

    Attributes
    ----------
    y : ndarray (n,)
        Outcome.
    X : ndarray (n, p)
        Population-level design matrix; ``fixed_terms`` labels its columns.
    factors : list of FactorDesign
    trials, se : ndarray or None
        Binomial trials and known standard errors.
    rows : ndarray of int
        Positions (0-based) of the rows used, in the data passed in.
    n_dropped : int
        Rows dropped for missing or non-finite values.
    """

    spec: ModelSpec
    y: np.ndarray
    X: np.ndarray
    fixed_terms: list[str]
    factors: list[FactorDesign]
    trials: np.ndarray | None
    se: np.ndarray | None
    rows: np.ndarray
    n_dropped: int
    data: pd.DataFrame
    x_means: np.ndarray
    x_sds: np.ndarray

    @property
    def n(self) -> int:
        """Number of observations used."""
        return int(self.y.shape[0])

    @property
    def has_intercept(self) -> bool:
        """Whether ``X`` has an intercept column (the first)."""
        return bool(self.fixed_terms) and self.fixed_terms[0] == "Intercept"

    def factor(self, name: str) -> FactorDesign:
        """The :class:`FactorDesign` of one grouping factor."""
        for f in self.factors:
            if f.factor == name:
                return f
        raise SpecificationError(
            f"{name!r} is not a grouping factor of this model; the factors are: "
            f"{', '.join(f.factor for f in self.factors) or 'none'}."
        )


def used_columns(spec: ModelSpec) -> list[str]:
    """Columns of the data that a spec reads (outcome, predictors, factors, trials, se)."""
    cols: list[str] = []

    def add(names):
        for n in names:
            if n not in cols:
                cols.append(n)

    add(_vars(spec.response))
    if spec.fixed:
        add(_vars(" + ".join(spec.fixed)))
    for g in spec.groups:
        for b in g.blocks:
            if b.terms:
                add(_vars(" + ".join(b.terms)))
        add(g.columns)
    for extra in (spec.trials, spec.se):
        if extra is not None:
            add(_vars(extra))
    return cols


def _vars(expr: str) -> list[str]:
    try:
        desc = fm.model_description(expr)
    except Exception as exc:
        raise SpecificationError(f"Could not read the expression {expr!r}: {exc}") from None
    names = sorted(desc.var_names)
    return names


def make_design(spec: ModelSpec, data: pd.DataFrame, missing: str = "drop") -> Design:
    """Validate ``data`` against ``spec`` and build the arrays.

    Parameters
    ----------
    spec : ModelSpec
    data : pandas.DataFrame
    missing : {"drop", "raise"}
        Rows with missing or non-finite values in used columns are dropped with a warning that
        gives their number (``"drop"``), or raise :class:`~hmodels.errors.DataError`.

    Returns
    -------
    Design

    Examples
    --------
    >>> import hmodels as hm
    >>> d = hm.make_design(hm.parse_formula("Reaction ~ Days + (Days | Subject)"),
    ...                    hm.datasets.load("sleepstudy"))
    >>> d.X.shape, d.factors[0].Z.shape, d.factors[0].n_levels
    ((180, 2), (180, 2), 18)
    """
    family = get_family(spec.family, spec.link)
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, got {type(data).__name__}.")
    if len(data) == 0:
        raise DataError("The data are empty (0 rows): pass a DataFrame with observations.")
    if missing not in ("drop", "raise"):
        raise SpecificationError(f"missing must be 'drop' or 'raise', got {missing!r}.")
    cols = used_columns(spec)
    for c in cols:
        if c not in data.columns:
            raise MissingColumnError(
                f"Column {c!r} is used in the model but is not in the data.{closest(c, data.columns)} "
                f"Available columns: {', '.join(map(str, data.columns))}."
            )
    data = data.reset_index(drop=True)
    bad = np.zeros(len(data), dtype=bool)
    for c in cols:
        col = data[c]
        bad |= col.isna().to_numpy()
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            with np.errstate(invalid="ignore"):
                bad |= ~np.isfinite(col.to_numpy(dtype=float, na_value=np.nan))
    n_bad = int(bad.sum())
    if n_bad:
        culprits = [c for c in cols if _bad_mask(data[c]).any()]
        if missing == "raise" or n_bad == len(data):
            raise DataError(
                f"{n_bad} of {len(data)} rows have missing or non-finite values in column(s) "
                f"{', '.join(map(repr, culprits))}. Remove or impute them, or pass missing='drop' to drop those rows."
            )
        warnings.warn(
            f"Dropped {n_bad} of {len(data)} rows with missing or non-finite values in "
            f"{', '.join(map(repr, culprits))}. Pass missing='raise' to stop instead.",
            UserWarning,
            stacklevel=3,
        )
    rows = np.flatnonzero(~bad)
    used = data.loc[rows, cols].reset_index(drop=True)
    used = _categorise_factors(spec, used)

    y, trials, se = _response(spec, family, used)

    # population-level design
    rhs = " + ".join(["1" if spec.intercept else "0", *spec.fixed])
    if rhs == "0":
        X = np.zeros((len(used), 0))
        fixed_terms: list[str] = []
    else:
        common = _evaluate(rhs, used, "population-level terms")
        X = np.asarray(common.design_matrix, dtype=float)
        fixed_terms = [str(c) for c in common.as_dataframe().columns]
    _check_rank(X, fixed_terms)
    x_means = X.mean(axis=0) if X.size else np.zeros(0)
    x_sds = X.std(axis=0) if X.size else np.zeros(0)

    factors = [_factor_design(g, used) for g in spec.groups]
    return Design(
        spec=spec, y=y, X=X, fixed_terms=fixed_terms, factors=factors, trials=trials, se=se,
        rows=rows, n_dropped=n_bad, data=used, x_means=x_means, x_sds=x_sds,
    )


def _bad_mask(col: pd.Series) -> np.ndarray:
    m = col.isna().to_numpy()
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        with np.errstate(invalid="ignore"):
            m = m | ~np.isfinite(col.to_numpy(dtype=float, na_value=np.nan))
    return m


def _categorise_factors(spec: ModelSpec, data: pd.DataFrame) -> pd.DataFrame:
    """Grouping columns are categorical whatever their dtype (integers in a CSV included)."""
    data = data.copy()
    for g in spec.groups:
        for c in g.columns:
            if not isinstance(data[c].dtype, pd.CategoricalDtype):
                data[c] = pd.Categorical(data[c].astype(str) if not pd.api.types.is_numeric_dtype(data[c]) else data[c])
    return data


def _evaluate(rhs: str, data: pd.DataFrame, what: str):
    try:
        return fm.design_matrices(rhs, data, na_action="error").common
    except Exception as exc:
        raise SpecificationError(f"Could not build the {what} {rhs!r}: {exc}") from None


def _response(spec: ModelSpec, family, data: pd.DataFrame):
    col = spec.response
    if col in data.columns:
        raw = data[col]
    else:
        try:
            raw = pd.Series(np.asarray(fm.design_matrices(f"{col} ~ 1", data, na_action="error").response).ravel())
        except Exception as exc:
            raise SpecificationError(f"Could not evaluate the outcome {col!r}: {exc}") from None
    outcome = family.outcome
    if pd.api.types.is_bool_dtype(raw):
        raw = raw.astype(int)
    if not pd.api.types.is_numeric_dtype(raw):
        hint = ""
        if outcome == "binary":
            hint = " For a two-level outcome, code it as 0/1 or True/False, e.g. data['y'] = (data['y'] == 'yes')."
        raise DataError(
            f"The outcome {col!r} must be numeric for the {family.name} family, but it holds "
            f"{raw.dtype} values such as {raw.iloc[0]!r}.{hint}"
        )
    y = raw.to_numpy(dtype=float)
    trials = se = None
    if outcome == "binary":
        if not np.isin(y, (0.0, 1.0)).all():
            raise DataError(f"The outcome {col!r} must hold only 0 and 1 for the bernoulli family; found {np.unique(y)[:5]}.")
        y = y.astype(np.int64)
    elif outcome in ("count", "binomial"):
        if (y < 0).any() or not np.allclose(y, np.round(y)):
            bad = y[(y < 0) | (y != np.round(y))][:3]
            raise DataError(
                f"The outcome {col!r} must hold non-negative whole numbers (counts) for the {family.name} "
                f"family; found values such as {', '.join(map(str, bad))}."
            )
        y = np.round(y).astype(np.int64)
    if spec.trials is not None:
        n = data[spec.trials].to_numpy(dtype=float) if spec.trials in data else None
        if n is None:
            raise MissingColumnError(f"The trials column {spec.trials!r} is not in the data.{closest(spec.trials, data.columns)}")
        if (n <= 0).any() or not np.allclose(n, np.round(n)):
            raise DataError(f"The trials column {spec.trials!r} must hold positive whole numbers.")
        trials = np.round(n).astype(np.int64)
        if (y > trials).any():
            i = int(np.flatnonzero(y > trials)[0])
            raise DataError(
                f"The successes {col!r} exceed the trials {spec.trials!r} in {(y > trials).sum()} row(s), "
                f"e.g. row {i}: {y[i]} > {trials[i]}. Check that the columns are in the order p(successes, trials)."
            )
    if spec.se is not None:
        se = data[spec.se].to_numpy(dtype=float)
        if (se <= 0).any():
            raise DataError(f"The standard-error column {spec.se!r} must be positive; found {se[se <= 0][:3]}.")
    return y, trials, se


def _check_rank(X: np.ndarray, terms: list[str]) -> None:
    if X.size == 0:
        return
    rank = np.linalg.matrix_rank(X)
    if rank < X.shape[1]:
        const = [t for t, s in zip(terms, X.std(axis=0)) if s == 0 and t != "Intercept"]
        which = f" Constant column(s): {', '.join(const)}." if const else ""
        raise DataError(
            f"The population-level design matrix is rank deficient (rank {rank} < {X.shape[1]} columns: "
            f"{', '.join(terms)}); some terms are collinear.{which} Drop or combine the redundant terms."
        )


def _factor_design(group, data: pd.DataFrame) -> FactorDesign:
    cols = list(group.columns)
    if len(cols) == 1:
        cat = data[cols[0]].astype("category").cat.remove_unused_categories()
    else:
        labels = data[cols].astype(str).agg(":".join, axis=1)
        cat = pd.Categorical(labels, categories=list(dict.fromkeys(sorted(labels.unique(), key=_natural))))
        cat = pd.Series(cat)
    levels = [str(c) for c in cat.cat.categories]
    if len(levels) < 2:
        raise DataError(
            f"The grouping factor {group.factor!r} has only {len(levels)} level ({levels[0] if levels else ''}); "
            "a group-specific effect needs at least two groups. Drop the term or use a population-level effect."
        )
    codes = cat.cat.codes.to_numpy().astype(np.int64)
    Zs, terms, blocks, correlated, exprs = [], [], [], [], []
    for b in group.blocks:
        common = _evaluate(b.expression, data, f"group-specific terms of {group.factor!r}")
        Zb = np.asarray(common.design_matrix, dtype=float)
        names = [str(c) for c in common.as_dataframe().columns]
        start = len(terms)
        Zs.append(Zb)
        terms.extend(names)
        blocks.append(list(range(start, start + len(names))))
        correlated.append(bool(b.correlated and len(names) > 1))
        exprs.append(b.expression)
    Z = np.concatenate(Zs, axis=1)
    for j, name in enumerate(terms):
        if name == "Intercept":
            continue
        col = Z[:, j]
        within = pd.Series(col).groupby(codes).std(ddof=0).fillna(0.0).to_numpy()
        if np.all(within < 1e-12):
            raise DataError(
                f"The group-specific slope {name!r} for {group.factor!r} is constant within every level of "
                f"{group.factor!r}, so its per-group effect is not identified. Remove it from the '( ... | "
                f"{group.factor})' term (keep it as a population-level predictor)."
            )
    return FactorDesign(group.factor, levels, codes, Z, terms, blocks, correlated, exprs)


def _natural(s: str):
    return [int(p) if p.isdigit() else p for p in s.replace(":", " : ").split()]

"""Data to arrays: validation, missing rows, design matrices (via formulae), group codes.

A :class:`Design` owns every shape: the population-level matrix ``X`` (n × p), and per grouping
factor the integer level codes (n,) and the group-specific columns ``Z`` (n × k), so that the
linear predictor is ``X @ beta + sum_f (Z_f * b_f[codes_f]).sum(-1)`` — vectorised, no loops
over groups and no dense n × (levels · k) matrices.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field, replace

import formulae as fm
import numpy as np
import pandas as pd
from formulae.categorical import ENCODINGS
from formulae.environment import Environment

from .errors import DataError, DataWarning, MissingColumnError, SpecificationError, closest, row_labels
from .families import get_family
from .spec import ModelSpec

__all__ = ["Design", "FactorDesign", "make_design", "used_columns", "FORMULA_ENV", "evaluate", "row_labels",
           "check_finite", "offset_values"]

# The names a formula can use besides data columns and formulae's own transformations (C, I, scale,
# center, poly, bs, ...): NumPy as ``np``. Passed explicitly, so that formulae never looks a name up
# in the namespace of whichever hmodels function happens to call it.
_NAMESPACE = {"np": np, "numpy": np, "log": np.log, "exp": np.exp, "sqrt": np.sqrt, "abs": np.abs}
FORMULA_ENV = Environment([_NAMESPACE])


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
    offset : ndarray (n,) or None
        The offset ``spec.offset`` evaluated on the rows (added to the linear predictor with
        coefficient 1); None when the model has none.
    response_levels : tuple or None
        The ordered categories of an ordinal outcome (``y`` then holds their numbers ``1..K``);
        None for every other outcome.
    cens : ndarray (n,) of int or None
        Censoring per row (``spec.cens``): 0 observed, 1 right-censored, -1 left-censored.
    weights : ndarray (n,) or None
        Observation weights (``spec.weights``): each row's log-likelihood is multiplied by its weight.
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
    offset: np.ndarray | None = None
    response_levels: tuple | None = None
    cens: np.ndarray | None = None
    weights: np.ndarray | None = None
    dpars: dict | None = None  # name -> hmodels.dpars.DparDesign, for parameters with their own formula

    @property
    def n(self) -> int:
        """Number of observations used."""
        return int(self.y.shape[0])

    @property
    def has_intercept(self) -> bool:
        """Whether ``X`` has an intercept column (the first)."""
        return bool(self.fixed_terms) and self.fixed_terms[0] == "Intercept"

    def factor(self, name: str) -> FactorDesign:
        """Return the :class:`FactorDesign` of one grouping factor."""
        for f in self.factors:
            if f.factor == name:
                return f
        raise SpecificationError(
            f"{name!r} is not a grouping factor of this model; the factors are: "
            f"{', '.join(f.factor for f in self.factors) or 'none'}."
        )


def used_columns(spec: ModelSpec, columns=None) -> list[str]:
    """Columns of the data that a spec reads (outcome, predictors, factors, trials, se, offset).

    Every name a term refers to is a column, except the arguments formulae and NumPy give a meaning
    of their own (``Sum`` in ``C(cond, Sum)``, ``np.pi``) and literals (the ``2`` of ``I(x**2)``);
    a name that is in ``columns`` (the data's columns) always counts as a column.

    Examples
    --------
    >>> import hmodels as hm
    >>> used_columns(hm.parse_formula("y ~ I(x**2) + C(cond, Sum) + (1 | g)"))
    ['y', 'cond', 'x', 'g']
    """
    known = set(columns) if columns is not None else set()
    cols: list[str] = []

    def add(names):
        for n in names:
            if n not in cols:
                cols.append(n)

    add([spec.response] if spec.response in known else _vars(spec.response, known))
    if spec.fixed:
        add(_vars(" + ".join(spec.fixed), known))
    for g in spec.groups:
        for b in g.blocks:
            if b.terms:
                add(_vars(" + ".join(b.terms), known))
        add(g.columns)
    for extra in (spec.trials, spec.se):
        if extra is not None:
            add([extra] if extra in known else _vars(extra, known))
    for extra in (spec.cens, spec.weights):  # a column, or an expression of columns (cens(1 - event))
        if extra is not None:
            add([extra] if extra in known else _vars(f"I({extra})", known))
    if spec.offset is not None:
        add([spec.offset] if spec.offset in known else _vars(spec.offset, known))
    if getattr(spec, "dpars", ()):

        add(dpar_columns(spec, columns))
    return cols


def _check_outcome_not_predictor(spec: ModelSpec, columns) -> None:
    """Refuse a model whose outcome column is also on the right of ``~``.

    A predictor, group term, grouping factor, offset or family parameter's formula that reads the outcome
    would explain the outcome by itself: a typed error names where.

    Examples
    --------
    >>> import hmodels as hm
    >>> _check_outcome_not_predictor(hm.parse_formula("y ~ x + log(y)"), ["y", "x"])
    Traceback (most recent call last):
    ...
    hmodels.errors.SpecificationError: The outcome column 'y' is also on the right of '~' ...
    """
    known = set(columns)
    outcome = set([spec.response] if spec.response in known else _vars(spec.response, known))
    places = []
    if spec.fixed:
        places.append(("the population-level terms", " + ".join(spec.fixed)))
    for g in spec.groups:
        for b in g.blocks:
            if b.terms:
                places.append((f"the group-specific terms of {g.factor!r}", " + ".join(b.terms)))
        places.append((f"the grouping factor {g.factor!r}", " + ".join(g.columns)))
    if spec.offset is not None:
        places.append(("the offset", spec.offset))
    for name, formula in getattr(spec, "dpars", ()) or ():
        places.append((f"the formula of {name}", str(formula).split("~")[-1]))
    for where, expr in places:
        try:
            used = set(_vars(expr, known)) if expr not in known else {expr}
        except SpecificationError:
            continue  # an unreadable expression gets its own error where it is read
        both = sorted(outcome & used)
        if both:
            raise SpecificationError(
                f"The outcome column {both[0]!r} is also on the right of '~' (in {where}: {expr}): a model cannot "
                f"explain {both[0]!r} by itself, and its coefficient would only measure that. Remove it from the right "
                f"of '~'. A lagged or transformed copy of the outcome as a predictor is a different column: make it "
                f"in the data first (e.g. data['{both[0]}_lag'] = data.groupby(g)['{both[0]}'].shift())."
            )


def _vars(expr: str, known=frozenset()) -> list[str]:
    from .formula import _check_spaced_names, _formulae_error, _show

    _check_spaced_names(expr)
    try:
        desc = fm.model_description(expr)
    except Exception as exc:
        raise SpecificationError(
            f"Could not read the expression {_show(expr)}: {_formulae_error(exc, expr)}."
        ) from None
    return [n for n in sorted(desc.var_names) if n in known or _is_column_name(n)]


def _is_column_name(name: str) -> bool:
    """Whether a name formulae reports in a term refers to data (not a literal, an encoding or ``np.<name>``)."""
    if not isinstance(name, str):  # a literal (the 2 of offset(2))
        return False
    return bool(name) and name not in ENCODINGS and not ("." in name and name.split(".")[0] in ("np", "numpy"))


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
    cols = used_columns(spec, data.columns)
    for c in cols:
        if c not in data.columns:
            raise MissingColumnError(
                f"Column {c!r} is used in the model but is not in the data.{closest(c, data.columns)} "
                f"Available columns: {', '.join(map(str, data.columns))}.{_quoting_hint(data.columns)}"
            )
    _check_outcome_not_predictor(spec, data.columns)
    duplicated = sorted({str(c) for c in data.columns[data.columns.duplicated()] if c in cols})
    if duplicated:
        raise DataError(
            f"The data have more than one column named {', '.join(map(repr, duplicated))}, so the model cannot tell "
            "which one it uses. Rename or drop the duplicates, e.g. data = data.loc[:, ~data.columns.duplicated()] "
            "to keep the first of each."
        )
    index = data.index
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
    labels = np.asarray(index[rows])  # the data's own index labels of the used rows, for messages

    y, trials, se = _response(spec, family, used, labels)
    levels = None
    if family.outcome == "ordinal":
        from .families.ordinal import ordinal_categories

        levels = ordinal_categories(_raw_response(spec, used), spec.response, labels)[1]
    elif family.outcome == "categorical":
        from .families.categorical import nominal_categories

        levels = nominal_categories(_raw_response(spec, used), spec.response, labels)[1]

    # population-level design
    rhs = " + ".join(["1" if spec.intercept else "0", *spec.fixed])
    if rhs == "0":
        X = np.zeros((len(used), 0))
        fixed_terms: list[str] = []
    else:
        common = _evaluate(rhs, used, "population-level terms")
        X = np.asarray(common.design_matrix, dtype=float)
        fixed_terms = [str(c) for c in common.as_dataframe().columns]
        check_finite(X, fixed_terms, labels, "population-level")
        X, fixed_terms = population_columns(family, X, fixed_terms)
    _check_rank(X, fixed_terms)
    offset = offset_values(spec, used, labels) if spec.offset is not None else None
    x_means = X.mean(axis=0) if X.size else np.zeros(0)
    x_sds = X.std(axis=0) if X.size else np.zeros(0)

    factors = [_factor_design(g, used) for g in spec.groups]
    for f in factors:
        check_finite(f.Z, f.terms, labels, f"group-specific, for {f.factor!r}")
    _check_information(spec, family, y, trials, se, X, fixed_terms, factors, labels)
    cens, weights = response_additions(spec, family, used, y, labels)
    dpars = None
    if spec.dpars:  # each parameter with a formula: its own linear predictor on the same rows

        dpars = dpar_designs(spec, used, labels)
    return Design(
        spec=spec, y=y, X=X, fixed_terms=fixed_terms, factors=factors, trials=trials, se=se,
        rows=rows, n_dropped=n_bad, data=used, x_means=x_means, x_sds=x_sds, offset=offset,
        response_levels=levels, cens=cens, weights=weights, dpars=dpars,
    )


#: An ordinal predictor whose mean lies more than this many SDs from 0 gets a warning (see below).
ORDINAL_CENTRE_WARN = 3.0


def warn_uncentred_thresholds(design) -> None:
    """Warn when an ordinal model's thresholds get their prior at predictor value 0 and a predictor is far from 0.

    Only with ``intercept_prior="raw"``: by default the thresholds' prior applies at the predictors'
    means (:func:`hmodels.families.ordinal.threshold_shift_means`, as brms). At predictor value 0, a
    predictor such as ``x + 1000`` moves every threshold by ``1000 b``, far into the prior's tail, and the
    prior then drags the slope towards 0 — a different posterior for an equivalent model.

    Examples
    --------
    >>> import hmodels as hm
    >>> m = hm.Model("rating ~ temp", hm.datasets.load("wine"), family="cumulative")
    >>> warn_uncentred_thresholds(m.design)  # temp is a 0/1 column: nothing to say
    """
    terms, means, sds = design.fixed_terms, design.x_means, design.x_sds
    far = [f"{t} (mean {m:.4g}, sd {s:.3g})" for t, m, s in zip(terms, means, sds)
           if s > 0 and abs(m) > ORDINAL_CENTRE_WARN * s]
    if far:
        warnings.warn(
            f"With intercept_prior='raw' the thresholds of this ordinal model get their prior at predictor value 0, "
            f"but {', '.join(far[:4])} {'is' if len(far) == 1 else 'are'} far from 0: the thresholds must move far "
            "into the prior's tail and the prior then pulls the effects towards 0. Use the default "
            "intercept_prior='centered' (the prior at the predictors' means) or centre the predictor(s), e.g. "
            f"center({far[0].split(' (')[0]}).",
            DataWarning, stacklevel=3,
        )


def population_columns(family, X: np.ndarray, terms: list[str]) -> tuple[np.ndarray, list[str]]:
    """The population-level columns the family uses: all, except an ordinal model's intercept.

    The thresholds of a cumulative model take the intercept's place (brms, ordinal's ``clm``); the
    intercept is dropped after formulae has coded the predictors, so their contrasts stay full-rank.

    Examples
    --------
    >>> from hmodels.families import get_family
    >>> population_columns(get_family("cumulative"), np.ones((2, 2)), ["Intercept", "x"])[1]
    ['x']
    """
    if family.outcome == "ordinal" and terms[:1] == ["Intercept"]:
        return X[:, 1:], list(terms[1:])
    return X, list(terms)


def offset_values(spec: ModelSpec, data: pd.DataFrame, labels=None, training: pd.DataFrame | None = None,
                  where: str = "") -> np.ndarray:
    """The offset of ``spec`` on the rows of ``data`` (n,): formulae evaluates ``offset(expr)`` in ``FORMULA_ENV``.

    Parameters
    ----------
    spec : ModelSpec
        A spec with an offset.
    data : pandas.DataFrame
        The rows.
    labels : array, optional
        Index labels of the rows (for messages).
    training : pandas.DataFrame, optional
        The fitted data, when ``data`` are new rows: stateful transformations (``scale(x)``) use the
        fitted data's mean and SD, as every other term does.
    where : str
        Appended to messages (``" in newdata"``).

    Raises
    ------
    DataError
        The offset is not numeric, or not finite in some rows (named, with their index labels).

    Examples
    --------
    >>> import hmodels as hm
    >>> s = hm.parse_formula("y ~ x + offset(np.log(e))", family="poisson")
    >>> offset_values(s, pd.DataFrame({"y": [1, 2], "x": [0.0, 1.0], "e": [1.0, np.e]}))
    array([0., 1.])
    """
    from .formula import _show

    expr = spec.offset
    labels = np.arange(len(data)) if labels is None else np.asarray(labels)
    rhs = f"0 + offset({expr})"
    try:
        with np.errstate(all="ignore"):  # non-finite results are reported below, with their rows
            if training is None:
                values = np.asarray(evaluate(rhs, data).common.design_matrix, dtype=float)
            else:
                dm = evaluate(rhs, training).common
                new = dm.evaluate_new_data(data)
                values = np.asarray(getattr(new, "design_matrix", new), dtype=float)
    except Exception as exc:
        msg = str(exc) if len(str(exc)) <= 300 else str(exc)[:300] + " ..."
        kind = DataError if "numeric" in msg else SpecificationError
        raise kind(f"Could not evaluate the offset {_show(expr)}{where}: {msg}. An offset must be a numeric "
                   "expression of the data, e.g. offset(np.log(exposure)).") from None
    values = values.reshape(len(data), -1)
    if values.shape[1] != 1:
        raise SpecificationError(f"The offset {_show(expr)} gives {values.shape[1]} columns; it must give one number "
                                 "per row (a categorical column cannot be an offset).")
    values = values[:, 0]
    bad = ~np.isfinite(values)
    if bad.any():
        vals = ", ".join(sorted({str(v) for v in values[bad]}))
        raise DataError(
            f"The offset {_show(expr)} is not finite ({vals}){where} in {row_labels(labels, bad)}: its "
            "transformation is undefined there (e.g. log of a zero exposure). Drop those rows (an exposure of 0 "
            "has no observations to model), or fix the column."
        )
    return values


def _bad_mask(col: pd.Series) -> np.ndarray:
    m = col.isna().to_numpy()
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        with np.errstate(invalid="ignore"):
            m = m | ~np.isfinite(col.to_numpy(dtype=float, na_value=np.nan))
    return m


def _quoting_hint(columns) -> str:
    from .formula_text import quote_name

    odd = [str(c) for c in columns if "`" not in str(c) and quote_name(str(c)) != str(c)]
    if not odd:
        return ""
    return (f" Columns whose names are not plain names must be written in backticks in a formula: "
            f"{', '.join(quote_name(c) for c in odd[:5])}.")


def _categorise_factors(spec: ModelSpec, data: pd.DataFrame) -> pd.DataFrame:
    """Make grouping columns categorical (integers in a CSV included); keep categorical predictors' order.

    formulae sorts the categories of an *unordered* pandas Categorical and keeps the order only of an
    ordered one; the first category is the reference level. A user who declares
    ``categories=["Quebec", "Mississippi"]`` means Quebec as the reference, as R's factor levels do, so
    categorical predictors are handed to formulae as ordered (treatment coding in the declared order).
    Categories without rows are dropped (an all-zero column otherwise).
    """
    data = numpy_dtypes(data.copy())
    group_columns = {c for g in spec.groups for c in g.columns}
    for g in spec.groups:
        for c in g.columns:
            if not isinstance(data[c].dtype, pd.CategoricalDtype):
                col = _whole_floats_as_int(data[c])
                if not pd.api.types.is_numeric_dtype(col):
                    _refuse_merged_labels(c, col)
                data[c] = pd.Categorical(col.astype(str) if not pd.api.types.is_numeric_dtype(col) else col)
    for c in data.columns:
        col = data[c]
        if c not in group_columns and c != spec.response and isinstance(col.dtype, pd.CategoricalDtype):
            # a declared category without rows (never present, or only in dropped rows) would be an all-zero
            # column and a rank-deficient design; R's model.frame and brms drop unused levels too
            col = col.cat.remove_unused_categories()
            data[c] = col if col.cat.ordered else col.cat.as_ordered()
    return data


def numpy_dtypes(data: pd.DataFrame) -> pd.DataFrame:
    """Nullable and pyarrow numeric or boolean columns as NumPy ones, for formulae.

    ``Int64``, ``Float64``, ``boolean``, ``double[pyarrow]``: ``offset(np.log(e))`` of an ``Int64`` exposure failed
    ('FloatingArray' object has no attribute 'flatten') and ``x:cond`` of a pyarrow double with 'too many indices
    for array'. Missing values are dropped before; a column that still holds one is left as it is.

    Examples
    --------
    >>> numpy_dtypes(pd.DataFrame({"e": pd.array([1, 2], dtype="Int64")})).dtypes.tolist()
    [dtype('int64')]
    """
    for c in data.columns:
        col = data[c]
        if (not pd.api.types.is_extension_array_dtype(col.dtype) or isinstance(col.dtype, pd.CategoricalDtype)
                or not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)) or col.isna().any()):
            continue
        kind = (bool if pd.api.types.is_bool_dtype(col) else
                np.int64 if pd.api.types.is_integer_dtype(col) else float)
        data[c] = col.to_numpy(dtype=kind)
    return data


def evaluate(rhs: str, data: pd.DataFrame):
    """Build formulae's design matrices of ``rhs`` on ``data``, in hmodels' formula namespace (``FORMULA_ENV``)."""
    return fm.design_matrices(rhs, data, na_action="error", env=FORMULA_ENV)


def _evaluate(rhs: str, data: pd.DataFrame, what: str):
    from .formula import _show

    try:
        with np.errstate(all="ignore"):  # non-finite results are reported by check_finite, with their rows
            return evaluate(rhs, data).common
    except Exception as exc:
        msg = str(exc) if len(str(exc)) <= 300 else str(exc)[:300] + " ..."
        odd = _unusable_columns(rhs, data)
        if odd:  # formulae's own words ('Variable is of an unrecognized type') name neither the column nor the fix
            c, kind = odd[0]
            raise DataError(
                f"Could not build the {what} {_show(rhs)}: the column {c!r} holds {kind}, which a formula cannot use "
                "as a predictor. Convert it first: dates or durations to numbers, e.g. "
                f"data[{c!r}] = (data[{c!r}] - data[{c!r}].min()).dt.days; a column of numbers stored as objects with "
                f"pd.to_numeric(data[{c!r}]); a mix of text and numbers meant as categories with "
                f"data[{c!r}].astype(str)."
            ) from None
        if str(exc).strip("'\"") == "Q" and "Q(" in rhs:  # patsy's quoting, which formulae does not have
            msg = ("Q() is patsy's way to quote a column name; hmodels' formulas (formulae) quote it with backticks, "
                   "e.g. `my x` for the column 'my x'")
        elif isinstance(exc, (NameError, KeyError)):
            msg = (f"{msg} is neither a column of the data nor a function a formula can call (numpy as np, "
                   "log, exp, sqrt, scale, center, C, I, poly, bs, ...); check its spelling")
        raise SpecificationError(f"Could not build the {what} {_show(rhs)}: {msg}") from None


def _unusable_columns(rhs: str, data: pd.DataFrame) -> list[tuple[str, str]]:
    """Columns ``rhs`` reads whose dtype formulae cannot encode: dates, durations, objects that are not all text."""
    try:
        names = _vars(rhs, set(data.columns))
    except SpecificationError:
        return []
    out = []
    for c in names:
        if c not in data.columns:
            continue
        col = data[c]
        if (pd.api.types.is_datetime64_any_dtype(col) or pd.api.types.is_timedelta64_dtype(col)
                or isinstance(col.dtype, pd.PeriodDtype)):
            out.append((c, f"{col.dtype} values (dates or durations)"))
        elif col.dtype == object:
            kind = pd.api.types.infer_dtype(col, skipna=True)
            if kind not in ("string", "empty"):
                types = sorted({type(v).__name__ for v in col.dropna()})
                out.append((c, f"Python objects of type(s) {', '.join(types[:4])} (dtype object, {kind})"))
    return out


def check_finite(M: np.ndarray, terms: list[str], labels, context: str) -> None:
    """Refuse non-finite values produced by a term's transformation (``np.log(0)``), naming the term and rows.

    Parameters
    ----------
    M : ndarray (n, k)
        An evaluated design matrix.
    terms : list of str
        Its column labels.
    labels : array
        Index labels of its rows (for the message).
    context : str
        Where the matrix comes from (``"population-level"``), for the message.
    """
    if M.size == 0:
        return
    finite = np.isfinite(M)
    if finite.all():
        return
    j = int(np.flatnonzero(~finite.all(axis=0))[0])
    rows = ~finite[:, j]
    vals = ", ".join(sorted({str(v) for v in M[rows, j]}))
    raise DataError(
        f"The term {terms[j]!r} ({context}) is not finite ({vals}) in {row_labels(labels, rows)}: its "
        "transformation is undefined there (e.g. log of 0 or of a negative number, division by 0). Drop or fix "
        "those rows, or use a transformation defined for every value (e.g. np.log1p(x) for counts with zeros)."
    )


def _raw_response(spec: ModelSpec, data: pd.DataFrame) -> pd.Series:
    """The outcome column as given (or the outcome expression evaluated by formulae)."""
    return _column_or_expression(spec.response, data, "the outcome", wrap=False)


def _column_or_expression(expr: str, data: pd.DataFrame, what: str, wrap: bool = True) -> pd.Series:
    """A column as given, or an expression of columns evaluated by formulae (``I(1 - event)``)."""
    if expr in data.columns:
        return data[expr]
    try:
        with np.errstate(all="ignore"):
            lhs = f"I({expr})" if wrap else expr
            return pd.Series(np.asarray(evaluate(f"{lhs} ~ 1", data).response).ravel())
    except Exception as exc:
        raise SpecificationError(f"Could not evaluate {what} {expr!r}: {exc}") from None


_EVENT_WORDS = re.compile(r"event|status|dead|death|died|fail|observed|delta|outcome", re.IGNORECASE)


def response_additions(spec: ModelSpec, family, data: pd.DataFrame, y: np.ndarray, labels):
    """Censoring codes and weights of the rows (None where the spec has none); truncation bounds checked.

    Examples
    --------
    >>> import pandas as pd, hmodels as hm
    >>> d = pd.DataFrame({"t": [1.0, 2.0, 3.0], "c": [0, 1, 0], "g": ["a", "a", "b"]})
    >>> s = hm.parse_formula("t | cens(c) ~ 1 + (1 | g)", family="weibull")
    >>> response_additions(s, hm.families.get_family("weibull"), d, d["t"].to_numpy(), d.index)[0].tolist()
    [0, 1, 0]
    """
    cens = weights = None
    if spec.cens is not None:
        raw = _column_or_expression(spec.cens, data, "the censoring indicator")
        if isinstance(raw.dtype, pd.CategoricalDtype) or raw.dtype == object or pd.api.types.is_string_dtype(raw):
            codes = {"none": 0, "right": 1, "left": -1}
            codes.update({s: v for v in (0, 1, -1) for s in (str(v), f"{v}.0")})  # numbers read as text (CSV, category)
            text = raw.astype(str).str.strip().str.lower()
            bad = ~text.isin(list(codes)).to_numpy()
            if bad.any():
                raise DataError(
                    f"The censoring indicator {spec.cens!r} must hold 0 (observed), 1 (right-censored) or -1 "
                    f"(left-censored), or the words 'none', 'right', 'left'; found {text[bad].iloc[0]!r} in "
                    f"{row_labels(labels, bad)}. Interval censoring is not available."
                )
            c = text.map(codes).to_numpy()
        else:
            c = np.asarray(raw, dtype=float)
            bad = ~np.isin(c, (-1.0, 0.0, 1.0))
            if bad.any():
                raise DataError(
                    f"The censoring indicator {spec.cens!r} must hold 0 (observed), 1 (right-censored) or -1 "
                    f"(left-censored), as brms codes it; found {', '.join(f'{v:g}' for v in np.unique(c[bad])[:3])} "
                    f"in {row_labels(labels, bad)}. Interval censoring (2) is not available."
                )
        cens = c.astype(np.int64)
        if spec.cens in data.columns and _EVENT_WORDS.search(spec.cens) and (cens == 1).any():
            warnings.warn(
                f"cens({spec.cens}) reads {spec.cens!r} as brms's censoring indicator: 1 = right-censored (the "
                "event had not happened when observation stopped), 0 = the event was observed. If 1 in "
                f"{spec.cens!r} marks an observed event, write cens(1 - {spec.cens}) instead.",
                DataWarning, stacklevel=4,
            )
        if (cens != 0).all():
            raise DataError(
                f"Every row is censored by {spec.cens!r}: nothing was observed exactly, so the model cannot be "
                "estimated from these data. Check the coding (1 = right-censored, 0 = observed)."
            )
    if spec.weights is not None:
        w = _numbers(_column_or_expression(spec.weights, data, "the weights"), f"The weights {spec.weights!r}", labels)
        bad = ~np.isfinite(w) | (w < 0)
        if bad.any():
            raise DataError(
                f"The weights {spec.weights!r} must be finite and non-negative; found "
                f"{', '.join(f'{v:g}' for v in w[bad][:3])} in {row_labels(labels, bad)}."
            )
        if not (w > 0).any():
            raise DataError(f"Every weight in {spec.weights!r} is 0: no row enters the likelihood.")
        weights = w
    if spec.trunc is not None:
        lb, ub = spec.trunc
        outside = np.zeros(len(y), dtype=bool)
        if lb is not None:
            outside |= y < lb
        if ub is not None:
            outside |= y > ub
        if outside.any():
            raise DataError(
                f"The outcome {spec.response!r} lies outside the truncation bounds "
                f"[{'-inf' if lb is None else f'{lb:g}'}, {'inf' if ub is None else f'{ub:g}'}] in "
                f"{row_labels(labels, outside)}: a truncated distribution gives those values probability 0. "
                "Check the bounds or the rows."
            )
    return cens, weights


def _response(spec: ModelSpec, family, data: pd.DataFrame, labels: np.ndarray | None = None):
    col = spec.response
    labels = np.arange(len(data)) if labels is None else labels
    raw = _raw_response(spec, data)
    outcome = family.outcome
    if outcome == "ordinal":  # category numbers 1..K of an ordered outcome
        from .families.ordinal import ordinal_categories

        raw = pd.Series(ordinal_categories(raw, col, labels)[0])
    elif outcome == "categorical":  # category numbers 1..K of an unordered outcome (the first is the reference)
        from .families.categorical import nominal_categories

        raw = pd.Series(nominal_categories(raw, col, labels)[0])
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
    if not np.isfinite(y).all():
        raise DataError(
            f"The outcome {col!r} is not finite in {row_labels(labels, ~np.isfinite(y))}: its transformation is "
            "undefined there (e.g. log of 0). Drop or fix those rows, or transform the outcome differently."
        )
    trials = se = None
    if outcome == "binary":
        if not np.isin(y, (0.0, 1.0)).all():
            raise DataError(
                f"The outcome {col!r} must hold only 0 and 1 for the bernoulli family; found {np.unique(y)[:5]} "
                f"in {row_labels(labels, ~np.isin(y, (0.0, 1.0)))}."
            )
        y = y.astype(np.int64)
    elif outcome in ("count", "binomial"):
        if (y < 0).any():
            raise DataError(
                f"The outcome {col!r} must hold non-negative whole numbers (counts) for the {family.name} family; "
                f"found values such as {', '.join(map(_num, y[y < 0][:3]))} in {row_labels(labels, y < 0)}."
            )
        y = _whole_numbers(y, f"The outcome {col!r}", f"non-negative whole numbers (counts) for the {family.name} "
                           "family", labels)
    if spec.trials is not None:
        n = _numbers(data[spec.trials], f"The trials column {spec.trials!r}", labels) if spec.trials in data else None
        if n is None:
            raise MissingColumnError(
                f"The trials column {spec.trials!r} is not in the data.{closest(spec.trials, data.columns)}"
            )
        if (n <= 0).any():
            raise DataError(
                f"The trials column {spec.trials!r} must hold positive whole numbers; found "
                f"{', '.join(map(_num, n[n <= 0][:3]))} in {row_labels(labels, n <= 0)}. Drop rows with no trials."
            )
        trials = _whole_numbers(n, f"The trials column {spec.trials!r}", "positive whole numbers", labels)
        if (y > trials).any():
            i = int(np.flatnonzero(y > trials)[0])
            raise DataError(
                f"The successes {col!r} exceed the trials {spec.trials!r} in {(y > trials).sum()} row(s), "
                f"e.g. row {labels[i]}: {y[i]} > {trials[i]}. Check that the columns are in the order "
                "p(successes, trials)."
            )
    if spec.se is not None:
        if spec.se not in data:  # an expression or brms's se(s, sigma = TRUE): not a column (was a bare KeyError)
            extra = (" A residual SD beside the known standard errors (brms's sigma = TRUE) is not available."
                     if "sigma" in spec.se else "")
            raise SpecificationError(
                f"se() takes one column of standard errors, got se({spec.se}).{extra} Compute them as a column "
                "first (data['s'] = ...) and write 'y | se(s) ~ ...'.")
        se = _numbers(data[spec.se], f"The standard-error column {spec.se!r}", labels)
        if (se <= 0).any():
            raise DataError(
                f"The standard-error column {spec.se!r} must be positive; found {se[se <= 0][:3]} in "
                f"{row_labels(labels, se <= 0)}."
            )
    family.check_response(y, col, labels)  # the family's own support (positive, inside (0, 1), ...)
    _check_outcome_information(spec, family, y, trials, labels)
    return y, trials, se


def _numbers(col: pd.Series, what: str, labels) -> np.ndarray:
    """A column of numbers (weights, trials, standard errors) as floats; dates or text are a DataError naming it.

    A date column was read as nanoseconds (weights of 1.6e18, silently), text raised numpy's ValueError.

    Examples
    --------
    >>> _numbers(pd.Series(["1", "2.5"]), "The weights 'w'", np.arange(2)).tolist()
    [1.0, 2.5]
    """
    col = pd.Series(col).reset_index(drop=True)
    labels = np.arange(len(col)) if labels is None else np.asarray(labels)
    if (pd.api.types.is_datetime64_any_dtype(col) or pd.api.types.is_timedelta64_dtype(col)
            or isinstance(col.dtype, pd.PeriodDtype)):
        raise DataError(
            f"{what} must hold numbers, but it holds {col.dtype} values (dates or durations) such as {col.iloc[0]!r}. "
            "Convert it to numbers first, e.g. (data[col] - data[col].min()).dt.days."
        )
    try:
        return col.to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError):
        bad = (pd.to_numeric(col.astype(object), errors="coerce").isna() & col.notna()).to_numpy()
        first = col[bad].iloc[0] if bad.any() else col.iloc[0]
        raise DataError(
            f"{what} must hold numbers; found {first!r} in {row_labels(labels, bad) if bad.any() else 'some rows'}. "
            "Fix or drop those rows, e.g. data[col] = pd.to_numeric(data[col], errors='coerce') and then dropna()."
        ) from None


def _num(v) -> str:
    return f"{float(v):.10g}"


def _whole_numbers(values: np.ndarray, what: str, need: str, labels: np.ndarray) -> np.ndarray:
    """Whole numbers as int64: off by floating-point noise -> rounded with a warning; otherwise an error.

    Noise is a difference of at most 1e-6 relative (``2.0000000001`` from arithmetic or a float32
    column); anything further from a whole number is a real fraction, which a count cannot be.
    """
    huge = ~(np.abs(values) < 2.0**53)  # beyond it a float is not an exact whole number (int64 overflowed above 2**63)
    if huge.any():
        raise DataError(
            f"{what} must hold {need}; found values such as {', '.join(map(_num, values[huge][:3]))} in "
            f"{row_labels(labels, huge)}, too large to be whole numbers held exactly (above 2**53). Check the column."
        )
    r = np.round(values)
    d = np.abs(values - r)
    fraction = d > 1e-6 * np.maximum(1.0, np.abs(values))
    if fraction.any():
        raise DataError(
            f"{what} must hold {need}; found values such as {', '.join(map(_num, values[fraction][:3]))} in "
            f"{row_labels(labels, fraction)}. Counts cannot be fractional: use the counts themselves (not rates "
            "or averages), or a family for continuous outcomes."
        )
    noise = d > 0
    if noise.any():
        warnings.warn(
            f"{what} holds values that differ from whole numbers by floating-point noise (at most "
            f"{d.max():.2g}), e.g. {', '.join(map(_num, values[noise][:3]))} in {row_labels(labels, noise)}; "
            "they were rounded to the nearest whole number. Round the column yourself to silence this.",
            DataWarning,
            stacklevel=4,
        )
    return r.astype(np.int64)


#: Largest |outcome| of a continuous family: squares (variances, the data-scaled priors) stay finite.
OUTCOME_MAX = 1e150


def _check_outcome_information(spec, family, y: np.ndarray, trials, labels: np.ndarray) -> None:
    """Refuse outcomes with nothing to estimate from: constant, all zero, all successes."""
    col = spec.response
    n = len(y)
    if family.outcome == "continuous":
        big = np.abs(y) > OUTCOME_MAX
        if big.any():  # its variance and the data-scaled priors would overflow (a prior "mu=nan" error before)
            raise DataError(
                f"The outcome {col!r} is too large for the arithmetic of the fit (|y| up to "
                f"{float(np.abs(y).max()):.3g} in {row_labels(labels, big)}; its squares overflow). Rescale it, "
                f"e.g. y / 1e{int(np.log10(float(np.abs(y).max()))) - 3}, and scale the estimates back."
            )
        if family.link == "log" and (y <= 0).any() and not family.zero_in_support:
            raise DataError(
                f"The {family.name} family with the log link models a positive mean, but the outcome {col!r} is "
                f"zero or negative in {row_labels(labels, y <= 0)}. Use the identity link (the default), or an "
                "outcome that is positive."
            )
        if spec.se is None and np.ptp(y) == 0:
            raise DataError(
                f"The outcome {col!r} has the same value ({_num(y[0])}) in all {n} rows: there is no variation for "
                "the model to explain, the residual SD would be 0 and no effect can be estimated. Check that the "
                "outcome column is the right one and that the rows were not filtered down to one value."
            )
        return
    what = None
    if family.outcome == "binary" and np.ptp(y) == 0:
        what = f"is {int(y[0])} in all {n} rows"
    elif family.outcome == "count" and not y.any():
        what = f"is 0 in all {n} rows"
    elif family.outcome == "binomial" and trials is not None:
        if not y.any():
            what = f"is 0 (no successes) in all {n} rows"
        elif (y == trials).all():
            what = f"equals the trials {spec.trials!r} (all successes) in all {n} rows"
    if what is not None:
        raise DataError(
            f"The outcome {col!r} {what}: the data carry no information about any effect ({family.link} of the "
            "mean is at its boundary, so every estimate would come from the priors alone). Check that the outcome "
            "column is the right one and that the rows were not filtered down to one outcome."
        )


def _check_information(spec, family, y, trials, se, X, fixed_terms, factors, labels) -> None:
    """Refuse designs that cannot identify their variance parameters; warn on separation."""
    n = len(y)
    has_sigma = "sigma" in family.aux and se is None
    n_var = sum(len(f.terms) for f in factors) + int(has_sigma)
    if n < n_var:
        parts = [f"{len(f.terms)} SD(s) of {f.factor!r}" for f in factors] + (["sigma"] if has_sigma else [])
        raise DataError(
            f"The model has {n_var} variance parameters ({', '.join(parts)}) but only {n} row(s) of data: "
            "fewer rows than variance parameters cannot inform them, so every estimate would come from the priors. "
            "Collect more data or remove group-specific terms."
        )
    if has_sigma:
        for f in factors:
            if "Intercept" in f.terms and f.n_levels == n:
                raise DataError(
                    f"Every level of the grouping factor {f.factor!r} has exactly one row ({f.n_levels} levels, "
                    f"{n} rows), so its group-specific intercepts cannot be told apart from the residual noise: "
                    f"sd({f.factor}) and sigma are not separately identified (only sd² + sigma² is), and each "
                    f"would come from its prior (lme4 refuses this too). Remove the term '(1 | {f.factor})' — the "
                    "residual already plays its role — or use data with more than one row per level."
                )
    if family.outcome in ("binary", "binomial"):
        _warn_separation(spec, y, trials, X, fixed_terms)


def _warn_separation(spec, y, trials, X, fixed_terms) -> None:
    """Warn when one predictor separates successes from failures: its coefficient is then prior-driven.

    Univariate check per population-level column: every row with a success has ``x >= c`` and every
    row with a failure ``x <= c`` (or the reverse); strict inequalities are complete separation,
    ties at ``c`` quasi-complete. Separation by a combination of predictors is not detected.
    """
    succ = y > 0
    fail = (y == 0) if trials is None else (y < trials)
    if not succ.any() or not fail.any():
        return
    found = []
    for j, term in enumerate(fixed_terms):
        x = X[:, j]
        if term == "Intercept" or np.ptp(x) == 0:
            continue
        xs, xf = x[succ], x[fail]
        for lo, hi, high in ((xf, xs, "1"), (xs, xf, "0")):
            if lo.max() <= hi.min():
                kind = "completely" if lo.max() < hi.min() else "quasi-completely"
                found.append(f"{term!r} ({kind}: every row with {term} > {_num(lo.max())} has outcome {high}"
                             + ("" if kind == "completely" else f", apart from ties at {_num(lo.max())}") + ")")
                break
    if found:
        warnings.warn(
            f"Separation in the outcome {spec.response!r}: the predictor(s) {'; '.join(found[:5])}"
            f"{' ...' if len(found) > 5 else ''} separate successes from failures, so the data only say that "
            "the effect is large: its estimate and interval come from its prior, not the data (no finite "
            "maximum-likelihood estimate exists). Report those coefficients as prior-driven, give them an "
            "informative prior on the link scale, or collect data where the outcomes overlap.",
            DataWarning,
            stacklevel=4,
        )


def _check_rank(X: np.ndarray, terms: list[str]) -> None:
    """Raise a :class:`DataError` when the population-level design matrix is rank deficient.

    The rank is that of the centred, scaled design: each column is scaled to unit root mean square
    and, when the constant is in the column space (an intercept, or a full set of dummies), the
    columns are centred and the constant counted once. A shift or a change of units of a predictor
    is an exact reparameterisation of such a model, so it cannot change the verdict: a Unix
    timestamp (``Days + 1.7e9``) is not collinear with the intercept. A column whose variation is
    mostly lost to rounding against its magnitude (fewer than 3 significant digits left) is badly
    scaled: it is named in the error, or in a :class:`DataWarning` when the rank is full.

    Examples
    --------
    >>> x = np.arange(10.0)
    >>> _check_rank(np.column_stack([np.ones(10), x + 1.7e9]), ["Intercept", "t"])  # no error
    >>> _check_rank(np.column_stack([np.ones(10), x, 2 * x]), ["Intercept", "x", "x2"])
    Traceback (most recent call last):
    ...
    hmodels.errors.DataError: The population-level design matrix is rank deficient (rank 2 < 3 columns: ...
    """
    if X.size == 0:
        return
    n, p = X.shape
    rms = np.sqrt(np.mean(np.square(X), axis=0))
    Xs = X / np.where(rms > 0, rms, 1.0)
    ones = np.ones(n)
    coef = np.linalg.lstsq(Xs, ones, rcond=None)[0]
    if np.sqrt(np.mean(np.square(ones - Xs @ coef))) < 1e-10:
        # the constant is in the column space: span(X) = span(1) + span(centred X), orthogonal parts
        Xc = X - X.mean(axis=0)
        crms = np.sqrt(np.mean(np.square(Xc), axis=0))
        # scaled to unit RMS; a column constant up to rounding (of its magnitude) counts as 0
        Xc = Xc / np.where(crms > 16 * np.finfo(float).eps * rms, crms, np.inf)
        rank = 1 + int(np.linalg.matrix_rank(Xc)) if Xc.any() else 1
    else:
        rank = int(np.linalg.matrix_rank(Xs))
    sd, mean = X.std(axis=0), np.abs(X.mean(axis=0))
    lost = np.finfo(float).eps * mean / np.where(sd > 0, sd, np.inf)  # rounding error relative to the variation
    bad = [f"{t} (SD {s:.3g} around {m:.3g})" for t, s, m, q in zip(terms, sd, mean, lost) if s > 0 and q > 1e-3]
    scaled = (f" Badly scaled column(s), whose variation is mostly lost to rounding against their magnitude "
              f"(fewer than 3 significant digits left): {', '.join(bad)}; subtract a constant from them or change "
              f"their units." if bad else "")
    if rank < p:
        const = [t for t, s in zip(terms, sd) if s == 0 and t != "Intercept"]
        which = f" Constant column(s): {', '.join(const)}." if const else ""
        raise DataError(
            f"The population-level design matrix is rank deficient (rank {rank} < {p} columns: "
            f"{', '.join(terms)}); some terms are collinear.{which}{scaled} Drop or combine the redundant terms."
        )
    if bad:
        warnings.warn(scaled.strip(), DataWarning, stacklevel=4)


def _factor_design(group, data: pd.DataFrame) -> FactorDesign:
    cols = list(group.columns)
    if len(cols) == 1:
        cat = data[cols[0]].astype("category").cat.remove_unused_categories()
    else:
        labels = data[cols].astype(str).agg(":".join, axis=1)
        if labels.nunique() < len(data[cols].astype(str).drop_duplicates()):  # ('1:2', '3') and ('1', '2:3')
            raise DataError(
                f"The grouping factor {group.factor!r} joins the levels of {', '.join(map(repr, cols))} with ':', but "
                "some levels contain ':' themselves, so different groups would get the same label and be merged. "
                "Replace ':' in those columns' values, e.g. data[col] = data[col].astype(str).str.replace(':', '_')."
            )
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
    """Sort key of an interaction label: numbers by value, before text (a mix of '1b' and '2' raised TypeError)."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in s.replace(":", " : ").split()]


# -- the designs of distributional parameters with their own formulas (hmodels.dpars)
def dpar_designs(spec, used, labels) -> dict:
    """One :class:`DparDesign` per parameter with a formula, on the model's (cleaned) rows ``used``.

    Examples
    --------
    >>> import hmodels as hm
    >>> data = hm.datasets.load("sleepstudy")
    >>> spec = hm.parse_formula("Reaction ~ Days")
    >>> from dataclasses import replace
    >>> d = dpar_designs(replace(spec, dpars=(("sigma", "Days"),)), data, data.index.to_numpy())
    >>> d["sigma"].X.shape
    (180, 2)
    """
    from .dpars import DparDesign, dpar_link
    from .families import get_family

    fam = get_family(spec.family, spec.link)
    out = {}
    for name, rhs in spec.dpars:
        sub = dpar_sub_spec(spec, name)
        data = _categorise_factors(sub, used)
        text = " + ".join(["1" if sub.intercept else "0", *sub.fixed])
        common = _evaluate(text, data, f"population-level terms of {name!r}")
        X = np.asarray(common.design_matrix, dtype=float)
        raw = [str(c) for c in common.as_dataframe().columns]
        check_finite(X, raw, labels, f"population-level, of {name!r}")
        _check_rank(X, raw)
        factors, origin = [], {}
        for g in sub.groups:
            f = _factor_design(g, data)
            new = f"{f.factor}__{name}"
            origin[new] = f.factor
            factors.append(replace(f, factor=new, terms=[f"{name}_{t}" for t in f.terms]))
        out[name] = DparDesign(name, dpar_link(fam, name), rhs, X, [f"{name}_{t}" for t in raw], factors,
                               X.mean(axis=0), X.std(axis=0), origin)
    return out


def dpar_columns(spec, columns=None) -> list[str]:
    """Columns the dpars' formulas read."""
    cols = []
    for name, _ in spec.dpars:
        for c in used_columns(dpar_sub_spec(spec, name), columns)[1:]:
            if c not in cols:
                cols.append(c)
    return cols


def dpar_sub_spec(spec: ModelSpec, name: str) -> ModelSpec:
    """The ordinary spec ``response ~ <formula of name>`` of a distributional parameter, checked.

    Raises :class:`~hmodels.errors.FormulaError` when the formula cannot be read, has an offset (only
    the mean takes one) or has no population-level term.

    Examples
    --------
    >>> import hmodels as hm
    >>> from dataclasses import replace
    >>> s = replace(hm.parse_formula("Reaction ~ Days"), dpars=(("sigma", "Days + (1 | Subject)"),))
    >>> dpar_sub_spec(s, "sigma").factors
    ('Subject',)
    """
    from .errors import FormulaError
    from .formula import parse_formula

    text = dict(spec.dpars)[name]
    try:
        sub = parse_formula(f"{spec.response} ~ {text}")
    except SpecificationError as exc:
        raise FormulaError(f"In the formula of {name!r} in dpars= ({text!r}): {exc}") from None
    if sub.offset is not None:
        raise FormulaError(f"The formula of {name!r} in dpars= ({text!r}) has an offset, which only the mean takes.")
    if not sub.intercept and not sub.fixed:
        raise FormulaError(f"The formula of {name!r} in dpars= ({text!r}) has no population-level term; keep the "
                           "intercept ('1 + ...').")
    return sub


# -- encoding new data like the fitted data (prediction, K-fold, nonlinear models)
def encode_new_data(expr: str, training: pd.DataFrame, newdata: pd.DataFrame, what: str):
    """Evaluate ``expr`` on ``newdata`` with the encoding learnt from ``training`` (levels, ``scale()`` moments).

    Returns the values and the column names formulae gives the fitted data (the caller checks they match).
    """
    import formulae as fm

    try:
        dm = fm.design_matrices(expr, training, na_action="error", env=FORMULA_ENV).common
    except Exception as exc:  # the fit's own data: should not fail
        raise SpecificationError(f"Could not rebuild the {what} {expr!r} from the fitted data: {exc}") from None
    try:
        with np.errstate(all="ignore"):  # non-finite results are reported with their rows by the caller
            new = dm.evaluate_new_data(newdata)
    except Exception as exc:
        raise DataError(f"Could not evaluate the {what} {expr!r} on newdata: {exc}") from None
    return np.asarray(new.design_matrix if hasattr(new, "design_matrix") else new, dtype=float), \
        [str(c) for c in dm.as_dataframe().columns]


def _refuse_merged_labels(name: str, col: pd.Series) -> None:
    """Refuse a grouping column whose distinct values share a text label (the int 1 and the string '1').

    Group levels are text, so such values would silently become one group.

    Examples
    --------
    >>> _refuse_merged_labels("g", pd.Series(["a", "b"], dtype=object))  # nothing to say
    >>> _refuse_merged_labels("g", pd.Series([1, "1", "b"], dtype=object))
    Traceback (most recent call last):
    ...
    hmodels.errors.DataError: The grouping column 'g' holds different values with the same text: 1 (int) and '1'...
    """
    values = pd.unique(col.dropna())
    seen: dict[str, object] = {}
    for v in values:
        label = str(v)
        if label in seen and type(seen[label]) is not type(v):
            raise DataError(
                f"The grouping column {name!r} holds different values with the same text: {seen[label]!r} "
                f"({type(seen[label]).__name__}) and {v!r} ({type(v).__name__}); as group levels they would be merged "
                f"into one group. Make the column one type, e.g. data[{name!r}] = data[{name!r}].astype(str) if they "
                "are the same group, or relabel one of them."
            )
        seen.setdefault(label, v)


def _whole_floats_as_int(col: pd.Series) -> pd.Series:
    """A float column of whole numbers as int64 (an integer ID column read as float, e.g. because of a NaN).

    Group levels are text: without this, subject 308 was level '308.0' when the column held a NaN, and a
    prediction for 308 (int) was for an unseen group.

    Examples
    --------
    >>> _whole_floats_as_int(pd.Series([308.0, 309.0])).tolist(), _whole_floats_as_int(pd.Series([0.5])).tolist()
    ([308, 309], [0.5])
    """
    if isinstance(col.dtype, pd.CategoricalDtype) or not pd.api.types.is_float_dtype(col) or len(col) == 0:
        return col
    v = col.to_numpy(dtype=float, na_value=np.nan)
    if np.isfinite(v).all() and (v == np.round(v)).all() and np.abs(v).max() < 2.0**53:
        return pd.Series(v.astype(np.int64), index=col.index, name=col.name)
    return col


def level_labels(group, data: pd.DataFrame) -> np.ndarray:
    """Each row's level of a grouping factor as text (``a:b`` for an interaction of columns)."""
    cols = list(group.columns)
    if len(cols) == 1:
        return _whole_floats_as_int(data[cols[0]]).astype(str).to_numpy()
    return data[cols].apply(_whole_floats_as_int).astype(str).agg(":".join, axis=1).to_numpy()

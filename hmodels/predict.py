"""Predictions from a fit for new data, existing groups and new groups.

New data are encoded exactly as the training data were: formulae's stored encoding of the fitted
data (categorical levels, reference levels, the mean and SD of ``scale()`` / ``center()``) is
applied to the new rows, so a prediction at ``Days = 3`` means the same thing as in the fit.

Group-specific effects are an explicit choice (``groups=``), never a silent zero:

``"include"``
    Every level in ``newdata`` must be a fitted level; its ``r_<factor>`` draws are used. An
    unseen level raises :class:`~hmodels.errors.DataError` naming it.
``"new"``
    Fitted levels use their ``r_<factor>`` draws; each unseen level gets fresh effects, drawn
    once per posterior draw from the fitted population distribution
    ``N(0, diag(sd) C diag(sd))`` (``sd_<factor>``, ``cor_<factor>``), shared by all rows of
    that level. Intervals then include between-group variation (a new subject, a new herd).
``"exclude"``
    Population-level prediction ``X b`` (plus the offset): the typical group (all group effects at zero).

A model with an offset (``offset(np.log(exposure))``) evaluates it on ``newdata``, whose rows must
then hold its columns; every kind of prediction includes it, ``"link"`` too.

Draws are computed with :mod:`hmodels.linpred` from the Fit alone, so loaded fits predict the
same as fresh ones.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import xarray as xr

from .design import (
    Design,
    FactorDesign,
    check_finite,
    encode_new_data,
    level_labels,
    numpy_dtypes,
    offset_values,
    population_columns,
    row_labels,
    used_columns,
)
from .errors import DataError, MissingColumnError, SpecificationError, closest
from .linpred import aux_draws, fit_design, linear_predictor, mean_draws, simulate_response

__all__ = ["Prediction", "predict", "new_design", "new_level_effects", "new_dpar_level_effects"]

KINDS = ("mean", "response", "link", "probs")
GROUPS = ("include", "exclude", "new")


class Prediction:
    """Posterior draws of predictions, one per (chain, draw, row of ``newdata``).

    Attributes
    ----------
    draws : xarray.DataArray
        Dims ``(chain, draw, obs)``; ``obs`` is the index of ``newdata``. ``kind="probs"`` adds a
        last dim ``category`` (the ordinal outcome's categories).
    kind : str
        ``"mean"``, ``"response"``, ``"link"`` or ``"probs"``.
    groups : str
        ``"include"``, ``"exclude"`` or ``"new"``.
    new_levels : dict
        Unseen levels that got fresh group effects, by factor (``groups="new"``).

    Examples
    --------
    >>> pred = fit.predict(newdata, groups="new")  # doctest: +SKIP
    >>> pred.summary()  # doctest: +SKIP
    """

    def __init__(self, draws: xr.DataArray, kind: str, groups: str, new_levels: dict | None = None):
        self.draws = draws
        self.kind = kind
        self.groups = groups
        self.new_levels = dict(new_levels or {})

    @property
    def values(self) -> np.ndarray:
        """The draws as a NumPy array, shape (chain, draw, obs)."""
        return np.asarray(self.draws.values)

    def summary(self, prob: float = 0.95) -> pd.DataFrame:
        """Mean, SD and highest-density interval of each row's prediction.

        Parameters
        ----------
        prob : float
            Probability mass of the HDI (default 0.95).

        Returns
        -------
        pandas.DataFrame
            Index: ``newdata``'s index; columns ``mean``, ``sd``, ``hdi_low``, ``hdi_high``.

        Examples
        --------
        >>> fit.predict(newdata).summary(prob=0.9)  # doctest: +SKIP
        """
        from .summary import summarise_draws

        labels = list(self.draws.coords["obs"].values)
        values = self.values
        if values.ndim == 4:  # category probabilities: one row per (obs, category)
            cats = list(self.draws.coords["category"].values)
            index = pd.MultiIndex.from_product([labels, cats], names=["obs", "category"])
            flat = values.reshape(values.shape[0], values.shape[1], -1)
            t = summarise_draws(flat, list(range(flat.shape[-1])), prob)[["mean", "sd", "hdi_low", "hdi_high"]]
            t.index = index
        else:
            t = summarise_draws(values, labels, prob)[["mean", "sd", "hdi_low", "hdi_high"]]
            t.index = pd.Index(labels, name="obs")
        t.attrs["prob"] = prob
        return t

    def __repr__(self) -> str:
        c, d, n = self.values.shape[:3]
        new = (
            "; new levels: " + ", ".join(f"{f}: {len(v)}" for f, v in self.new_levels.items())
            if self.new_levels
            else ""
        )
        return (f"hmodels.Prediction: {self.kind} for {n} rows, groups={self.groups!r}, "
                f"{c} chains × {d} draws{new}\n{self.summary().round(4).to_string()}")


def predict(fit, newdata: pd.DataFrame | None = None, kind: str = "mean", groups: str = "include",
            seed: int | None = None) -> Prediction:
    """Posterior predictions for new (or the fitted) data.

    Parameters
    ----------
    fit : Fit
    newdata : pandas.DataFrame, optional
        Rows to predict for, with the predictor and grouping columns of the model (the outcome is
        not needed). Default: the rows the model was fitted to. Binomial models need the trials
        column for ``kind="response"``; known-SE models need the SE column for ``"response"``.
    kind : {"mean", "response", "link", "probs"}
        ``"mean"``: expected outcome (probability for bernoulli/binomial, rate for counts; for an
        ordinal outcome the expected rating when its categories are consecutive whole numbers,
        else the expected category number ``1..K``);
        ``"response"``: simulated outcomes (posterior predictive, with residual noise; ratings or
        category numbers as for ``"mean"``);
        ``"link"``: the linear predictor; ``"probs"``: the probability of every category of an
        ordinal outcome (draws get a last dim ``category``).
        Response additions: a censored outcome (``cens()``) is predicted uncensored — ``"mean"`` and
        ``"response"`` are of the outcome that would be recorded without censoring; a truncated one
        (``trunc()``) is drawn from the truncated distribution by ``"response"``, and ``"mean"`` is the
        truncated distribution's mean (closed form: :meth:`hmodels.families.Family.truncated_mean`; refused
        for a family without one, the student_t); ``weights()`` do not enter a prediction.
    groups : {"include", "exclude", "new"}
        How group-specific effects enter (see the module docstring): fitted levels only,
        population level only, or fresh draws for unseen levels.
    seed : int, optional
        Seed for new-level effects and simulated outcomes.

    Returns
    -------
    Prediction
        ``.draws`` (xarray, dims chain, draw, obs) and ``.summary()``.

    Raises
    ------
    DataError
        Unseen levels with ``groups="include"``, unseen categories of a population-level
        predictor, missing values, or a missing trials / SE column where needed.

    Examples
    --------
    >>> import pandas as pd
    >>> new = pd.DataFrame({"Days": [0, 9], "Subject": ["new", "new"]})
    >>> p = fit.predict(new, groups="new", seed=1)  # doctest: +SKIP
    >>> p.summary()[["mean", "hdi_low", "hdi_high"]]  # doctest: +SKIP
    """
    if kind not in KINDS:
        raise SpecificationError(f"kind must be one of {', '.join(map(repr, KINDS))}, got {kind!r}.")
    if kind == "mean" and fit.spec.trunc is not None and not fit.family.has_truncated_mean:
        raise SpecificationError(
            f"kind='mean' of a truncated outcome (the mean of the truncated distribution) is not available for the "
            f"{fit.family.name} family yet; kind='response' draws from the truncated distribution (average them for "
            "its mean), kind='link' gives the linear predictor."
        )
    if kind == "mean" and kind not in fit.family.prediction_kinds:
        raise SpecificationError(
            "kind='mean': a categorical outcome has no mean (its categories are unordered). Use kind='probs' for the "
            "probability of each category, kind='response' for drawn categories or kind='link' for the log-odds "
            "of each category against the reference."
        )
    if kind not in fit.family.prediction_kinds:
        raise SpecificationError(
            f"kind='probs' gives category probabilities of an ordinal or categorical outcome; the {fit.family.name} "
            "family has no categories. Use kind='mean' for the expected outcome."
        )
    if groups not in GROUPS:
        raise SpecificationError(
            f"groups must be one of {', '.join(map(repr, GROUPS))}, got {groups!r}: 'include' uses the fitted "
            "group effects, 'new' also draws fresh effects for unseen levels, 'exclude' predicts at the "
            "population level."
        )
    ss = np.random.SeedSequence(seed)
    s_effects, s_response, s_dpar = ss.spawn(3)  # (the first two as they always were)
    if newdata is None:
        design = fit_design(fit)
        index = np.arange(design.n)
        new_levels: dict[str, list[str]] = {}
    else:
        if groups == "exclude":  # population level: the grouping columns are not used, so they need not be given
            newdata = _placeholder_group_columns(fit, newdata)
        design, new_levels = new_design(fit, newdata, need_trials=kind == "response", need_se=kind == "response")
        index = newdata.index.to_numpy()
        if new_levels and groups == "include":
            listing = "; ".join(f"{f}: {', '.join(map(repr, v[:5]))}{' ...' if len(v) > 5 else ''}"
                                for f, v in new_levels.items())
            raise DataError(
                f"newdata has levels the model was not fitted to ({listing}). Choose groups='new' to draw "
                "effects for them from the fitted population distribution (wider intervals, as for a new "
                "group), or groups='exclude' for population-level predictions."
            )
    effects = new_level_effects(fit, design, new_levels, seed=s_effects) if groups == "new" and new_levels else None
    dpar_effects = new_dpar_level_effects(fit, design, new_levels, s_dpar) if groups == "new" else None
    eta = linear_predictor(fit, design, groups="exclude" if groups == "exclude" else "include", effects=effects)
    dgroups = "exclude" if groups == "exclude" else "include"  # dpars' effects: fresh ones for new levels
    if kind == "link" and np.ndim(eta) == 4:  # categorical: one log-odds per non-reference category
        c, d = eta.shape[:2]
        da = xr.DataArray(eta, dims=("chain", "draw", "obs", "category"),
                          coords={"chain": np.arange(c), "draw": np.arange(d), "obs": index,
                                  "category": list(fit_design(fit).response_levels)[1:]},
                          name=kind, attrs={"kind": kind, "groups": groups})
        return Prediction(da, kind, groups, new_levels)
    if kind == "link":
        values = eta
    elif kind == "mean" and fit.spec.trunc is not None:  # the truncated distribution's mean
        values = fit.family.truncated_mean(mean_draws(fit, eta), aux_draws(fit, design, dgroups, dpar_effects),
                                           *fit.spec.trunc)
    elif kind == "mean":  # the expected outcome (zero-inflation, hurdles, the lognormal's exp(mu + sigma^2/2))
        values = fit.family.response_mean(mean_draws(fit, eta), aux_draws(fit, design, dgroups, dpar_effects))
    elif kind == "probs":
        values = fit.family.probabilities(mean_draws(fit, eta), aux_draws(fit, design, dgroups))
        c, d = values.shape[:2]
        cats = list(fit_design(fit).response_levels)
        da = xr.DataArray(
            values, dims=("chain", "draw", "obs", "category"),
            coords={"chain": np.arange(c), "draw": np.arange(d), "obs": index, "category": cats},
            name=kind, attrs={"kind": kind, "groups": groups},
        )
        return Prediction(da, kind, groups, new_levels)
    else:
        values = simulate_response(fit, eta, design, seed=s_response, groups=dgroups, effects=dpar_effects)
    if kind in ("mean", "response") and fit.family.outcome == "ordinal":  # whole-number ratings: their own scale
        from .families.ordinal import rating_offset

        offset = rating_offset(fit_design(fit).response_levels)
        values = values if offset is None else np.asarray(values, dtype=float) + offset
    c, d = values.shape[:2]
    da = xr.DataArray(
        np.asarray(values, dtype=float), dims=("chain", "draw", "obs"),
        coords={"chain": np.arange(c), "draw": np.arange(d), "obs": index},
        name=kind, attrs={"kind": kind, "groups": groups},
    )
    return Prediction(da, kind, groups, new_levels)


# -- new-data design ----------------------------------------------------------------------------
def _placeholder_group_columns(fit, newdata):
    """``newdata`` with each grouping column it lacks set to the first fitted row's value (for ``groups="exclude"``).

    Only columns that name groups and enter no population-level term are filled: the prediction does not
    depend on them (every group effect is left out). Anything else missing is still refused by :func:`new_design`.
    """
    if not isinstance(newdata, pd.DataFrame) or getattr(fit.spec, "nonlinear", None) is not None:
        return newdata
    from .design import dpar_sub_spec

    spec = fit.spec
    population = set(used_columns(replace(spec, groups=(), dpars=(), cens=None, weights=None)))  # dpars: below
    every = set(used_columns(replace(spec, cens=None, weights=None)))
    for name, _ in getattr(spec, "dpars", ()):
        sub = dpar_sub_spec(spec, name)
        population |= set(used_columns(replace(sub, groups=(), cens=None, weights=None)))
        every |= set(used_columns(replace(sub, cens=None, weights=None)))
    # grouping columns and the variables of group-level slopes that no population-level term uses
    missing = sorted(c for c in every - population if c not in newdata.columns)
    if not missing:
        return newdata
    training = _training_data(fit)
    return newdata.assign(**{c: training[c].iloc[0] for c in missing if c in training.columns})


def _training_data(fit) -> pd.DataFrame:
    data = getattr(fit, "data", None)
    if data is None:
        return fit_design(fit).data
    return data


def new_design(fit, newdata: pd.DataFrame, need_trials: bool = False, need_se: bool = False):
    """Encode ``newdata`` like the fitted data.

    Returns
    -------
    (Design, dict)
        The design (levels of each factor: the fitted levels, then unseen ones) and the unseen
        levels by factor. ``y`` is the outcome where ``newdata`` has it, else NaN.

    Examples
    --------
    >>> d, unseen = new_design(fit, pd.DataFrame({"Days": [1], "Subject": ["308"]}))  # doctest: +SKIP
    """
    if getattr(fit.spec, "nonlinear", None) is not None:  # one encoding per nonlinear parameter
        from .nonlinear.newdata import new_nonlinear_design

        return new_nonlinear_design(fit, newdata, need_trials, need_se)
    if not isinstance(newdata, pd.DataFrame):
        raise DataError(f"newdata must be a pandas DataFrame, got {type(newdata).__name__}.")
    if len(newdata) == 0:
        raise DataError("newdata is empty (0 rows).")
    spec = fit.spec
    training = _training_data(fit)
    extras = {spec.response, spec.trials, spec.se}
    # censoring codes and observation weights belong to the fitted rows' likelihood, not to a prediction
    needed = [c for c in used_columns(replace(spec, cens=None, weights=None)) if c not in extras]
    offset_cols = (set(used_columns(spec)) - set(used_columns(replace(spec, offset=None)))
                   if spec.offset is not None else set())
    for c in needed:
        if c not in newdata.columns:
            why = (f" It enters the offset offset({spec.offset}), which is part of every prediction (kind='link' "
                   "too): give each new row its own value (e.g. its exposure; 1 for a rate per unit of exposure)."
                   if c in offset_cols else "")
            raise MissingColumnError(
                f"Column {c!r} is needed for prediction but is not in newdata.{closest(c, newdata.columns)}{why} "
                f"The model uses: {', '.join(needed)}."
            )
    duplicated = sorted({str(c) for c in newdata.columns[newdata.columns.duplicated()] if c in needed})
    if duplicated:
        raise DataError(
            f"newdata has more than one column named {', '.join(map(repr, duplicated))}, so it is ambiguous which "
            "to predict from. Rename or drop the duplicates, e.g. newdata.loc[:, ~newdata.columns.duplicated()]."
        )
    labels = newdata.index.to_numpy()
    nd = newdata.reset_index(drop=True)
    optional = [c for c, need in ((spec.trials, need_trials), (spec.se, need_se)) if need and c in nd.columns]
    for c in [*needed, *optional]:
        col = nd[c]
        bad = col.isna().to_numpy()
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            with np.errstate(invalid="ignore"):
                bad = bad | ~np.isfinite(col.to_numpy(dtype=float, na_value=np.nan))
        if bad.any():
            vals = ", ".join(sorted({str(v) for v in col[bad]}))
            raise DataError(
                f"newdata column {c!r} has missing or non-finite values ({vals}) in {row_labels(labels, bad)}; a "
                "prediction needs a finite value in every row. Fill or drop those rows first."
            )
    nd = numpy_dtypes(nd)  # nullable / pyarrow numbers as NumPy's, as for the fitted data (formulae needs them)
    factor_cols = {c for g in spec.groups for c in g.columns}
    if getattr(spec, "dpars", ()):  # factors of the family parameters' formulas (their unseen levels: population)
        from .design import dpar_sub_spec

        factor_cols |= {c for name, _ in spec.dpars for g in dpar_sub_spec(spec, name).groups for c in g.columns}
    for c in needed:  # unseen categories of a population-level predictor
        if c in factor_cols or c not in training.columns:
            continue
        col = training[c]
        if pd.api.types.is_numeric_dtype(col) and not isinstance(col.dtype, pd.CategoricalDtype):
            continue
        known = set(map(str, col.cat.categories if isinstance(col.dtype, pd.CategoricalDtype) else col.unique()))
        unseen = sorted(set(map(str, nd[c].unique())) - known)
        if unseen:
            raise DataError(
                f"newdata column {c!r} has categories the model was not fitted with: "
                f"{', '.join(map(repr, unseen[:5]))}. "
                f"A population-level effect exists only for the fitted categories ({', '.join(sorted(known)[:10])}); "
                "predict for those, or refit with data that include the new category."
            )
        if isinstance(col.dtype, pd.CategoricalDtype):
            nd[c] = pd.Categorical(nd[c].astype(str).map({str(k): k for k in col.cat.categories}),
                                   categories=col.cat.categories, ordered=col.cat.ordered)

    # a categorical model: encode the formula's design once, then stack it per category
    from .families import get_family

    cat_base = fit_design(fit).base if get_family(spec.family, spec.link).outcome == "categorical" else None
    fixed_terms = list(fit.meta["fixed_terms"]) if cat_base is None else list(cat_base.fixed_terms)
    rhs = " + ".join(["1" if spec.intercept else "0", *spec.fixed])
    if rhs == "0":
        X = np.zeros((len(nd), 0))
    else:
        from .families import get_family

        X, names = population_columns(get_family(spec.family, spec.link),
                                      *encode_new_data(rhs, training, nd, "population-level terms"))
        if names != fixed_terms:
            raise SpecificationError(
                f"The rebuilt population-level terms {names} differ from the fitted {fixed_terms}."
            )
        check_finite(X, fixed_terms, labels, "population-level, in newdata")
    offset = None
    if spec.offset is not None:  # the fitted data's encoding (scale(), center()) applies to the offset too
        offset = offset_values(spec, nd, labels, training=training, where=" in newdata")

    factors, unseen_levels = [], {}
    for g in spec.groups:
        meta = fit.meta["factors"][g.factor]
        levels = list(meta["levels"])
        labels = level_labels(g, nd)
        lookup = {lv: i for i, lv in enumerate(levels)}
        unseen = [lv for lv in dict.fromkeys(labels) if lv not in lookup]
        if unseen:
            unseen_levels[g.factor] = unseen
            for lv in unseen:
                lookup[lv] = len(lookup)
        codes = np.array([lookup[lv] for lv in labels], dtype=np.int64)
        Zs, terms, blocks, correlated, exprs = [], [], [], [], []
        for b in g.blocks:
            Zb, names = encode_new_data(b.expression, training, nd, f"group-specific terms of {g.factor!r}")
            start = len(terms)
            Zs.append(Zb)
            terms.extend(names)
            blocks.append(list(range(start, start + len(names))))
            correlated.append(bool(b.correlated and len(names) > 1))
            exprs.append(b.expression)
        if cat_base is not None:
            meta = {"terms": next(f.terms for f in cat_base.factors if f.factor == g.factor)}
        if terms != list(meta["terms"]):
            raise SpecificationError(
                f"The rebuilt terms of {g.factor!r} {terms} differ from the fitted {meta['terms']}."
            )
        check_finite(np.concatenate(Zs, axis=1), terms, labels, f"group-specific, for {g.factor!r}, in newdata")
        factors.append(FactorDesign(g.factor, levels + unseen, codes, np.concatenate(Zs, axis=1), terms, blocks,
                                    correlated, exprs))

    if spec.response not in nd.columns:
        y = np.full(len(nd), np.nan)
    elif fit.family.outcome in ("ordinal", "categorical"):  # the fitted categories' numbers 1..K; NaN if unseen
        position = {lv: k for k, lv in enumerate(fit.design.response_levels, start=1)}
        y = np.array([position.get(v, np.nan) for v in nd[spec.response]], dtype=float)
    else:
        y = nd[spec.response].to_numpy(dtype=float)
    trials = se = None
    for col, need, label in ((spec.trials, need_trials, "trials"), (spec.se, need_se, "standard-error")):
        if col is None:
            continue
        if col not in nd.columns:
            if need:
                raise MissingColumnError(
                    f"Predicting outcomes needs the {label} column {col!r} in newdata (the {label} of each new row); "
                    f"add it, or ask for kind='mean' / 'link'."
                )
            continue
        values = nd[col].to_numpy(dtype=float)
        if label == "trials":
            trials = np.round(values).astype(np.int64)
        else:
            se = values
    x_means = X.mean(axis=0) if X.size else np.zeros(X.shape[1])
    x_sds = X.std(axis=0) if X.size else np.zeros(X.shape[1])
    dpars = None
    if getattr(spec, "dpars", ()):  # family parameters with their own formula: encoded like the fitted data

        dpars = new_dpar_designs(fit, training, nd, newdata.index.to_numpy(), unseen_levels)
    design = Design(spec=spec, y=y, X=X, fixed_terms=fixed_terms, factors=factors, trials=trials, se=se,
                    rows=np.arange(len(nd)), n_dropped=0, data=nd, x_means=x_means, x_sds=x_sds, offset=offset,
                    dpars=dpars)
    if cat_base is not None:
        from .categorical import stack_categories

        design = stack_categories(replace(design, response_levels=cat_base.response_levels))
    return design, unseen_levels


# -- fresh effects for unseen levels ------------------------------------------------------------
def _stack(fit, name):
    return np.asarray(fit.draws[name].transpose("chain", "draw", ...).values, dtype=float)


def _cholesky(C: np.ndarray) -> np.ndarray:
    try:
        return np.linalg.cholesky(C)
    except np.linalg.LinAlgError:  # numerically semi-definite draws: symmetric square root
        w, V = np.linalg.eigh(C)
        return V * np.sqrt(np.clip(w, 0.0, None))[..., None, :]


def new_dpar_level_effects(fit, design, new_levels: dict, seed=None) -> dict[str, np.ndarray] | None:
    """:func:`new_level_effects` of the factors of the family parameters' own formulas (None when there are none).

    Unseen levels of those factors get fresh effects from their fitted population, as the location's do.

    Examples
    --------
    >>> design, unseen = new_design(fit, newdata)  # doctest: +SKIP
    >>> effects = new_dpar_level_effects(fit, design, unseen, seed=1)  # doctest: +SKIP
    """
    if not new_levels or not getattr(design, "dpars", None):
        return None
    from .dpars import dpar_factor_meta

    meta, origin = dpar_factor_meta(design)
    return new_level_effects(fit, design, new_levels, seed=seed, meta=meta, origin=origin,
                             factors=[f for dd in design.dpars.values() for f in dd.factors])


def new_level_effects(fit, design, new_levels: dict, seed=None, factors=None, meta=None,
                      origin=None) -> dict[str, np.ndarray]:
    """Group effects for every level of ``design``: fitted draws, then fresh draws for unseen levels.

    For each posterior draw ``s`` and unseen level, ``u = diag(sd_s) L_s z`` with ``z ~ N(0, I)``
    and ``L_s L_s' = C_s`` the correlation matrix (identity outside correlated blocks). ``factors``
    (default ``design.factors``), ``meta`` (factor -> its ``cors``; default ``fit.meta["factors"]``) and
    ``origin`` (factor -> the data's factor whose unseen levels it has) serve a family parameter's factors.

    Returns
    -------
    dict
        Factor -> array (chain, draw, fitted + unseen levels, terms).
    """
    rng = np.random.default_rng(seed)
    out = {}
    meta = fit.meta["factors"] if meta is None else meta
    for f in design.factors if factors is None else factors:
        unseen = new_levels.get((origin or {}).get(f.factor, f.factor), [])
        if not unseen:
            continue
        r = _stack(fit, f"r_{f.factor}")
        sd = _stack(fit, f"sd_{f.factor}")  # (c, d, k)
        c, d, k = sd.shape
        C = np.broadcast_to(np.eye(k), (c, d, k, k)).copy()
        for var, bterms in meta[f.factor]["cors"]:
            idx = [f.terms.index(t) for t in bterms]
            ii, jj = np.ix_(idx, idx)
            C[:, :, ii, jj] = _stack(fit, var)
        L = sd[..., :, None] * _cholesky(C)
        z = rng.standard_normal((c, d, len(unseen), k))
        u = np.einsum("cdkj,cdnj->cdnk", L, z)
        out[f.factor] = np.concatenate([r, u], axis=2)
    return out


def new_dpar_designs(fit, training, nd, row_labels, unseen: dict | None = None) -> dict:
    """The fitted dpars' designs on new data, encoded like the fitted data.

    A level of a factor the fit has not seen is added to ``unseen`` (factor -> levels), so that
    ``predict(groups="include")`` refuses it as it does for the mean's factors, and gets the code
    ``fitted levels + its place in unseen[factor]``: ``predict(groups="new")`` draws its effect from the
    fitted population (:func:`new_level_effects`); elsewhere it gets none (the population value).
    """
    from .design import dpar_sub_spec

    spec = fit.spec
    out = {}
    for name, dd in fit.design.dpars.items():
        sub = dpar_sub_spec(spec, name)
        text = " + ".join(["1" if sub.intercept else "0", *sub.fixed])
        X, names = encode_new_data(text, training, nd, f"population-level terms of {name!r}")
        if [f"{name}_{t}" for t in names] != list(dd.fixed_terms):
            raise SpecificationError(f"The rebuilt terms of {name!r} {names} differ from the fitted {dd.fixed_terms}.")
        check_finite(X, list(dd.fixed_terms), row_labels, f"population-level, of {name!r}, in newdata")
        factors = []
        for g, f in zip(sub.groups, dd.factors):
            pos = {lv: i for i, lv in enumerate(f.levels)}
            labs = level_labels(g, nd)
            fresh = {}  # an unseen level: code = fitted levels + its place among the factor's unseen levels
            if unseen is not None:
                for lv in dict.fromkeys(labs):
                    if lv not in pos and lv not in unseen.setdefault(g.factor, []):
                        unseen[g.factor].append(lv)
                fresh = {lv: len(f.levels) + j for j, lv in enumerate(unseen.get(g.factor, []))}
                if not unseen.get(g.factor):  # (a dpar's own factor has no entry when every level was seen)
                    unseen.pop(g.factor, None)
            codes = np.array([pos.get(lv, fresh.get(lv, -1)) for lv in labs], dtype=np.int64)
            Z = np.concatenate([encode_new_data(b.expression, training, nd, f"group-specific terms of {g.factor!r}")[0]
                                for b in g.blocks], axis=1)
            factors.append(replace(f, codes=codes, Z=Z))
        out[name] = replace(dd, X=X, factors=factors)
    return out

"""New data for a nonlinear model: each parameter's formula encoded as for the fitted data, then stacked.

:func:`hmodels.predict.new_design` calls :func:`new_nonlinear_design` for a nonlinear spec.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..design import FactorDesign, _bad_mask, encode_new_data, level_labels
from ..errors import DataError, MissingColumnError, SpecificationError, closest, row_labels
from .design import NonlinearDesign, _stack, _uncorrelated

__all__ = ["new_nonlinear_design"]


def new_nonlinear_design(fit, newdata: pd.DataFrame, need_trials: bool = False, need_se: bool = False):
    """Encode ``newdata`` like the fitted data of a nonlinear model: ``(NonlinearDesign, unseen levels)``.

    New time points (covariates) and new levels of grouping factors (appended after the fitted
    levels) are allowed; the encodings of each parameter's formula are the fitted data's.

    Examples
    --------
    >>> d, unseen = new_nonlinear_design(fit, pd.DataFrame({"Dose": [4.0], "Time": [2.0], "Subject": ["new"]}))
    ... # doctest: +SKIP
    >>> unseen  # doctest: +SKIP
    {'Subject': ['new']}
    """
    if not isinstance(newdata, pd.DataFrame):
        raise DataError(f"newdata must be a pandas DataFrame, got {type(newdata).__name__}.")
    if len(newdata) == 0:
        raise DataError("newdata is empty (0 rows).")
    spec = fit.spec
    train = fit.design
    training = train.data
    extras = {spec.response, spec.trials, spec.se}
    needed = [c for c in training.columns if c not in extras]
    for c in needed:
        if c not in newdata.columns:
            raise MissingColumnError(f"Column {c!r} is needed for prediction but is not in newdata."
                                     f"{closest(c, newdata.columns)} The model uses: {', '.join(needed)}.")
    labels = newdata.index.to_numpy()
    nd = newdata.reset_index(drop=True)
    for c in needed:
        bad = _bad_mask(nd[c])
        if bad.any():
            raise DataError(f"newdata column {c!r} has missing or non-finite values in {row_labels(labels, bad)}; a "
                            "prediction needs a finite value in every row. Fill or drop those rows first.")
    parts, unseen_levels = [], {}
    for k, pspec in train.parameter_specs.items():
        rhs = " + ".join(["1" if pspec.intercept else "0", *pspec.fixed])
        p = train.predictor(k)
        fitted_terms = [train.fixed_terms[j][len(k) + 1:] for j in p.columns]
        if rhs == "0":
            X, names = np.zeros((len(nd), 0)), []
        else:
            X, names = encode_new_data(rhs, training, nd, f"population-level terms of {k!r}")
        if names != fitted_terms:
            raise SpecificationError(f"The rebuilt terms of {k!r} {names} differ from the fitted {fitted_terms}.")
        factors = []
        for g in pspec.groups:
            levels = list(fit.meta["factors"][g.factor]["levels"])
            lab = level_labels(g, nd)
            lookup = {lv: i for i, lv in enumerate(levels)}
            unseen = [lv for lv in dict.fromkeys(lab) if lv not in lookup]
            if unseen:
                unseen_levels[g.factor] = unseen
            for lv in unseen:
                lookup[lv] = len(lookup)
            codes = np.array([lookup[lv] for lv in lab], dtype=np.int64)
            Zs, terms = [], []
            for b in g.blocks:
                Zb, bn = encode_new_data(b.expression, training, nd, f"group-specific terms of {g.factor!r} for {k!r}")
                Zs.append(Zb)
                terms.extend(bn)
            factors.append(FactorDesign(g.factor, levels + unseen, codes, np.concatenate(Zs, axis=1), terms,
                                        [[i] for i in range(len(terms))], [False] * len(terms), []))
        parts.append((k, X, names, factors))
    X, fixed_terms, factors, preds = _stack(parts, {k: _uncorrelated(spec.nonlinear.formulas[k])
                                                    for k in train.parameter_specs})
    for f in factors:
        fitted = train.factor(f.factor)
        if f.terms != fitted.terms:
            raise SpecificationError(f"The rebuilt terms of {f.factor!r} {f.terms} differ from the fitted "
                                     f"{fitted.terms}.")
        f.blocks, f.correlated = fitted.blocks, fitted.correlated
    y = nd[spec.response].to_numpy(dtype=float) if spec.response in nd.columns else np.full(len(nd), np.nan)
    trials = se = None
    for col, need, label in ((spec.trials, need_trials, "trials"), (spec.se, need_se, "standard-error")):
        if col is None:
            continue
        if col not in nd.columns:
            if need:
                raise MissingColumnError(f"Predicting outcomes needs the {label} column {col!r} in newdata; add it, "
                                         "or ask for kind='mean' / 'link'.")
            continue
        values = nd[col].to_numpy(dtype=float)
        trials, se = (np.round(values).astype(np.int64), se) if label == "trials" else (trials, values)
    design = NonlinearDesign(
        spec=spec, y=y, X=X, fixed_terms=fixed_terms, factors=factors, trials=trials, se=se,
        rows=np.arange(len(nd)), n_dropped=0, data=nd, x_means=X.mean(axis=0), x_sds=X.std(axis=0), offset=None,
        predictors=preds, expression=train.expression,
        covariates={c: nd[c].to_numpy(dtype=float) for c in train.covariates}, self_start=train.self_start,
        parameter_specs=train.parameter_specs,
    )
    return design, unseen_levels

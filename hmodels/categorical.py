"""Categorical (multinomial-logit) models: one linear predictor per non-reference category.

``hm.Model("choice ~ x + (1 | g)", data, family="categorical")`` fits, for each category ``k`` but
the first (the reference), its own coefficients and its own group effects on the formula's terms,
as brms's ``categorical`` family (``mu<k>``): ``P(y = k) = softmax(0, eta_2, ..., eta_K)_k``. The
family is :class:`hmodels.families.categorical.Categorical`.

The model's design stacks ``K - 1`` copies of the formula's design (:func:`stack_categories`):
coefficients ``mu<k>_<term>`` (``muB_Intercept``, ``muB_x``, as brms's ``b_muB_x``), and per grouping
factor the terms ``mu<k>_<term>``, correlated within a category as the formula says and independent
across categories (brms's default; it correlates them only with ``(1 | ID | g)``). Priors resolve on
the formula's own design and are copied to every category (:func:`resolve_categorical_priors`);
``priors={"x": ...}`` applies to every category, ``priors={"muB_x": ...}`` to one. The compiled engine
samples it (:func:`engine_rows` lays the ``K - 1`` linear predictors out as blocks of rows of one, and
``categorical_loglik`` in ``kernels.c`` reads them together); the PyMC graph
(:func:`build_categorical_model`) serves ``sampler="pymc"`` / ``"numpyro"`` and prior sampling. Each
factor's effects are centred or not by the usual rule (:func:`hmodels.parameterisation.information_ratios`),
read from each category's log-odds against the reference.

Examples
--------
>>> import numpy as np, pandas as pd
>>> import hmodels as hm
>>> rng = np.random.default_rng(1)
>>> d = pd.DataFrame({"y": rng.choice(["a", "b", "c"], 60), "x": rng.normal(size=60)})
>>> m = hm.Model("y ~ x", d, family="categorical")
>>> m.design.fixed_terms
['mub_Intercept', 'mub_x', 'muc_Intercept', 'muc_x']
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from .design import Design, FactorDesign
from .errors import PriorError, closest
from .families.categorical import category_predictor_names
from .nonlinear.design import Predictor

__all__ = ["CategoricalDesign", "stack_categories", "resolve_categorical_priors", "intercept_centring",
           "engine_rows", "build_categorical_model", "categorical_predictor"]


@dataclass
class CategoricalDesign(Design):
    """A :class:`~hmodels.design.Design` with one stacked linear predictor per non-reference category.

    Attributes
    ----------
    predictors : tuple of Predictor
        One per non-reference category (``mu<category>``), in the categories' order.
    base : Design
        The formula's own design (one copy), from which the stack was made.
    """

    predictors: tuple = ()
    base: Design | None = None

    @property
    def predictor_names(self) -> list[str]:
        """``mu<category>`` of each non-reference category."""
        return [p.name for p in self.predictors]


def stack_categories(base: Design) -> CategoricalDesign:
    """Stack ``K - 1`` copies of a categorical model's design, one per non-reference category.

    Examples
    --------
    >>> import hmodels as hm
    >>> m = hm.Model("y ~ x + (1 | g)", _example_data(), family="categorical")
    >>> f = m.design.factors[0]
    >>> f.terms, f.blocks, f.correlated
    (['mub_Intercept', 'muc_Intercept'], [[0], [1]], [False, False])
    """
    names = category_predictor_names(base.response_levels)
    p = len(base.fixed_terms)
    X = np.tile(base.X, (1, len(names))) if p else np.zeros((base.n, 0))
    fixed_terms = [f"{nm}_{t}" for nm in names for t in base.fixed_terms]
    factors, term_maps = [], {nm: {} for nm in names}
    for f in base.factors:
        k = len(f.terms)
        blocks, correlated, exprs = [], [], []
        for j, nm in enumerate(names):
            term_maps[nm][f.factor] = tuple(range(j * k, (j + 1) * k))
            blocks += [[i + j * k for i in b] for b in f.blocks]
            correlated += list(f.correlated)
            exprs += [f"{nm}: {e}" for e in f.block_expressions]
        factors.append(FactorDesign(f.factor, list(f.levels), f.codes, np.tile(f.Z, (1, len(names))),
                                    [f"{nm}_{t}" for nm in names for t in f.terms], blocks, correlated, exprs))
    predictors = tuple(Predictor(nm, tuple(range(j * p, (j + 1) * p)), term_maps[nm]) for j, nm in enumerate(names))
    return CategoricalDesign(
        spec=base.spec, y=base.y, X=X, fixed_terms=fixed_terms, factors=factors, trials=None, se=None,
        rows=base.rows, n_dropped=base.n_dropped, data=base.data,
        x_means=X.mean(axis=0) if X.size else np.zeros(X.shape[1]),
        x_sds=X.std(axis=0) if X.size else np.zeros(X.shape[1]), offset=base.offset,
        response_levels=base.response_levels, predictors=predictors, base=base,
    )


# -- priors ---------------------------------------------------------------------------------------
def _split_keys(priors: dict, names: list[str], common_keys=frozenset()) -> tuple[dict, dict]:
    """User prior keys: those for every category, and per category those naming one (``muB_x``).

    ``common_keys`` are the formula's own valid keys (canonical form): a predictor named ``mu_rate``
    or ``muB_x`` is a key for every category, not a category's prefix, unless both readings are valid.
    """
    from .priors.resolve import _canon

    common, per = {}, {nm: {} for nm in names}
    by_length = sorted(names, key=len, reverse=True)
    for key, value in priors.items():
        if not isinstance(key, str):
            raise PriorError(f"Prior keys are parameter names such as 'x' or 'muB_x'; got {key!r}.")
        m = re.fullmatch(r"(sd|cor)\((\s*[^,]+),\s*(.+)\)", key)
        inner = m.group(3) if m else key
        hit = next((nm for nm in by_length if inner.startswith(nm + "_")), None)
        stripped = None if hit is None else inner[len(hit) + 1:]
        as_one = None if hit is None else f"{m.group(1)}({m.group(2).strip()}, {stripped})" if m else stripped
        parts = [t.strip() for t in inner.split(",")]
        if m and m.group(1) == "cor" and hit is not None and all(t.startswith(hit + "_") for t in parts):
            # cor(g, muB_Intercept, muB_x), as the prior table names it: the formula's cor(g, Intercept, x),
            # which is cor(g) when that is the factor's only correlated block
            fac = m.group(2).strip()
            as_one = f"cor({fac}, {', '.join(t[len(hit) + 1:] for t in parts)})"
            if _canon(as_one) not in common_keys and _canon(f"cor({fac})") in common_keys:
                as_one = f"cor({fac})"
        if _canon(key) in common_keys:
            if as_one is not None and _canon(as_one) in common_keys:
                raise PriorError(
                    f"Prior key {key!r} is ambiguous: it is a parameter of every category, and {as_one!r} of "
                    f"category predictor {hit} only. Rename the predictor column so that it does not start with "
                    f"{hit}_."
                )
            common[key] = value
            continue
        if hit is None:
            if inner.startswith("mu") and "_" in inner:
                raise PriorError(
                    f"Prior key {key!r} names no category's linear predictor.{closest(inner.split('_')[0], names)} "
                    f"The predictors are: {', '.join(names)} (the first category is the reference and has none)."
                )
            common[key] = value
            continue
        per[hit][as_one] = value
    return common, per


def resolve_categorical_priors(design: CategoricalDesign, priors=None, prior_set=None,
                               intercept_prior: str = "centered"):
    """The priors of a categorical model: the formula's priors, resolved once per category and renamed.

    Parameters
    ----------
    design : CategoricalDesign
    priors : dict or str, optional
        As for every model; a key naming one category's term (``"muB_x"``, ``"sd(g, muB_Intercept)"``)
        applies to that category only, every other key to all of them.
    prior_set : str, optional
    intercept_prior : {"centered", "raw"}

    Returns
    -------
    PriorTable

    Examples
    --------
    >>> import hmodels as hm
    >>> m = hm.Model("y ~ x + (1 | g)", _example_data(), family="categorical",
    ...              priors={"x": hm.Normal(0, 1), "muc_x": hm.Normal(0, 0.5)})
    >>> m.priors["mub_x"].prior, m.priors["muc_x"].prior
    (Normal(0, 1), Normal(0, 0.5))
    """
    from .priors.resolve import PriorTable, resolve_priors

    if isinstance(priors, str) or hasattr(priors, "__fspath__"):
        prior_set, priors = str(priors), None
    if priors is not None and not isinstance(priors, dict):
        raise PriorError(f"priors must be a dict of priors by parameter key, got {type(priors).__name__}.")
    base = design.base
    names = design.predictor_names
    from .priors.resolve import _canon, prior_slots

    known = {_canon(k) for slot in prior_slots(base, intercept_prior) for k in slot.keys}
    common, per = _split_keys(dict(priors or {}), names, known)
    rows = []
    levels = list(design.response_levels)
    y = np.asarray(base.y, dtype=float)
    for k, nm in enumerate(names, start=2):
        # the intercept's prior location: the log-odds of category k against the reference in the data (each
        # category's own logit(mean)); the rows of other categories enter the mean at that share
        share = float(np.clip((y == k).sum() / max(((y == 1) | (y == k)).sum(), 1), 0.01, 0.99))
        base_k = replace(base, y=np.where(y == k, 1.0, np.where(y == 1, 0.0, share)))
        try:
            table = resolve_priors(base_k, {**common, **per[nm]} or None, prior_set, intercept_prior)
        except PriorError as exc:
            if not per[nm]:
                raise
            raise PriorError(  # the message names the key without its prefix: say which one the user wrote
                f"{exc} (Keys prefixed by {nm}_ apply to category {levels[k - 1]!r} only and are checked without "
                f"the prefix: {', '.join(repr(key) for key in priors if isinstance(key, str) and f'{nm}_' in key)}.)"
            ) from None
        said = f"log-odds of {levels[k - 1]!s} against {levels[0]!s} in the data"
        for r in table:
            r = replace(r, derivation=r.derivation.replace(f"logit(mean {design.spec.response})", said))
            rows.append(replace(r, slot=_rename_slot(r.slot, nm, design, base)))
    return PriorTable(rows, intercept_prior)


def _rename_slot(slot, nm: str, design: CategoricalDesign, base: Design):
    """A slot of the formula's design as the slot of category ``nm`` in the stacked design."""
    term = None if slot.term is None else f"{nm}_{slot.term}"
    if slot.cls == "cor":
        param = _cor_label(slot, nm, design, base)
    elif slot.factor is not None and slot.term is not None:
        param = f"sd({slot.factor}, {term})"
    elif slot.param in base.fixed_terms:
        param = f"{nm}_{slot.param}"
    else:
        param = slot.param
    return replace(slot, param=param, term=term, keys=tuple(dict.fromkeys((param, *slot.keys))))


def _cor_label(slot, nm, design, base) -> str:
    """The stacked factor's label of the correlated block that ``slot`` (a ``cor`` slot of ``base``) became."""
    f = next(f for f in base.factors if f.factor == slot.factor)
    sf = next(f for f in design.factors if f.factor == slot.factor)
    blocks = [b for b, c in zip(f.blocks, f.correlated) if c]
    if sum(f.correlated) == 1:
        block = blocks[0]
    else:
        block = next(b for b in blocks if slot.param == f"cor({f.factor}, {', '.join(f.terms[i] for i in b)})")
    terms = [f"{nm}_{f.terms[i]}" for i in block]
    return f"cor({sf.factor})" if sum(sf.correlated) == 1 else f"cor({sf.factor}, {', '.join(terms)})"


# -- the centred intercepts and the engine's rows ------------------------------------------------------
def intercept_centring(design: CategoricalDesign, priors) -> tuple[np.ndarray, np.ndarray | None]:
    """The predictors' means each category's linear predictor is centred at, and the map to raw coefficients.

    With ``intercept_prior="centered"`` (and an intercept beside other columns) the model samples every
    category's coefficients on the formula's design centred at its column means (``means``, 0 for the
    intercept), so each Intercept prior is on that category's intercept at the predictors' means; the
    reported coefficients are ``b = T @ b_centered``. Otherwise ``means`` is zeros and ``T`` is None.

    Examples
    --------
    >>> import hmodels as hm
    >>> m = hm.Model("y ~ x", _example_data(), family="categorical")
    >>> means, T = intercept_centring(m.design, m.priors)
    >>> T.shape
    (4, 4)
    """
    base = design.base
    p = len(base.fixed_terms)
    icol = base.fixed_terms.index("Intercept") if "Intercept" in base.fixed_terms else -1
    if not (icol >= 0 and priors.intercept_prior == "centered" and p > 1):
        return np.zeros(p), None
    means = np.where(np.arange(p) == icol, 0.0, base.X.mean(axis=0))
    T = np.eye(len(design.fixed_terms))
    for j in range(len(design.predictors)):
        T[j * p + icol, j * p:(j + 1) * p] -= means
    return means, T


def engine_rows(design: CategoricalDesign, priors) -> tuple[Design, np.ndarray | None]:
    """The model as one linear predictor over ``K - 1`` blocks of rows, for the compiled engine.

    Block ``j`` (rows ``j * n`` to ``(j + 1) * n``) is category ``j + 2``'s linear predictor: the design
    is block-diagonal in the categories' coefficients (each block the formula's design, centred as
    :func:`intercept_centring` says) and in each factor's terms; the outcome repeats in every block
    (``kernels.c``'s ``categorical_loglik`` reads the first). Returns that design and ``T``, the map from
    the sampled coefficients to the reported ones (None when they are the same).

    Examples
    --------
    >>> import hmodels as hm
    >>> m = hm.Model("y ~ x + (1 | g)", _example_data(), family="categorical")
    >>> rows, T = engine_rows(m.design, m.priors)
    >>> rows.X.shape, rows.factors[0].Z.shape
    ((120, 4), (120, 2))
    """
    from .nonlinear.design import predictor_rows

    means, T = intercept_centring(design, priors)
    return predictor_rows(design, np.tile(design.base.X - means, (1, len(design.predictors)))), T


# -- the PyMC graph -------------------------------------------------------------------------------
def build_categorical_model(design: CategoricalDesign, priors, prior_only: bool = False, centering=None):
    """The PyMC model: ``K - 1`` linear predictors, each factor's effects centred or not as ``centering`` says.

    ``centering`` maps each factor to True (centred) or False (non-centred; every factor by default).

    With ``intercept_prior="centered"`` each category's Intercept prior is on its intercept at the
    predictors' means (the sampled ``b_centered``), as for every hmodels model; ``b`` is reported raw.

    Examples
    --------
    >>> import hmodels as hm
    >>> m = hm.Model("y ~ x + (1 | g)", _example_data(), family="categorical")
    >>> sorted(v.name for v in m.pymc_model.free_RVs)
    ['b_centered', 'sd_g', 'z_g']
    """
    import pymc as pm
    import pytensor.tensor as pt

    from .build import BuiltModel, _group_effects, _vector_rv, coefficient_scales, obs_name
    from .families import get_family

    base = design.base
    fam = get_family(design.spec.family, design.spec.link)
    centering = {f.factor: False for f in design.factors} | dict(centering or {})
    coords = {"term": list(design.fixed_terms), "obs": np.arange(design.n)}
    for f in design.factors:
        coords[f.factor] = list(f.levels)
        coords[f"{f.factor}__term"] = list(f.terms)
    by_param = {r.slot.param: r.prior for r in priors}
    built = BuiltModel(None, centering, obs_name(design.spec))
    p = len(base.fixed_terms)
    means, T = intercept_centring(design, priors)
    centred = T is not None
    Xc = base.X - means
    with pm.Model(coords=coords) as model:
        etas = []
        if p:
            _, scales = coefficient_scales(base)
            scales = np.tile(scales, len(design.predictors))
            prior_list = [by_param[t] for t in design.fixed_terms]
            if centred:  # the Intercept priors on each category's intercept at the predictors' means
                bc = _vector_rv("b_centered", prior_list, "term", pm, scales=scales)
                pm.Deterministic("b", pt.dot(T, bc), dims="term")
            else:
                bc = _vector_rv("b", prior_list, "term", pm, scales=scales)
        effects = {f.factor: _group_effects(f, by_param, centering[f.factor], built, pm, pt, response_scale=1.0)
                   for f in design.factors}
        for pred in design.predictors:
            cols = np.asarray(pred.columns, dtype=int)
            eta = pt.dot(pt.as_tensor_variable(Xc), bc[cols]) if p else pt.zeros(design.n)
            for f in design.factors:
                idx = np.asarray(pred.terms.get(f.factor, ()), dtype=int)
                if idx.size:
                    eta = eta + (pt.as_tensor_variable(f.Z[:, idx]) * effects[f.factor][:, idx][f.codes]).sum(axis=1)
            etas.append(eta)
        if not prior_only:
            fam.pymc_likelihood(built.observed, pt.stack(etas, axis=1), {}, design.y)
    built.model = model
    return built


# -- draws of the linear predictors -----------------------------------------------------------------
def categorical_predictor(fit, design: CategoricalDesign, groups: str = "include", effects: dict | None = None):
    """Draws of the ``K - 1`` linear predictors, shape (chain, draw, n, K - 1) (NumPy, from the Fit alone).

    Examples
    --------
    >>> eta = categorical_predictor(fit, fit.design)  # doctest: +SKIP
    >>> eta.shape  # doctest: +SKIP
    (4, 1000, 300, 2)
    """
    draws = fit.draws
    out = []
    b = np.asarray(draws["b"].transpose("chain", "draw", ...).values, dtype=float) if design.fixed_terms else None
    rs = {}
    if groups == "include":
        for f in design.factors:
            rs[f.factor] = effects[f.factor] if effects and f.factor in effects else np.asarray(
                draws[f"r_{f.factor}"].transpose("chain", "draw", ...).values, dtype=float)
    c, d = (b.shape[:2] if b is not None else (draws.sizes["chain"], draws.sizes["draw"]))
    for pred in design.predictors:
        cols = list(pred.columns)
        eta = np.einsum("cdp,np->cdn", b[..., cols], design.X[:, cols]) if cols else np.zeros((c, d, design.n))
        for f in design.factors:
            idx = list(pred.terms.get(f.factor, ()))
            if idx and f.factor in rs:
                eta = eta + np.einsum("cdnk,nk->cdn", rs[f.factor][:, :, f.codes][..., idx], f.Z[:, idx])
        out.append(eta)
    return np.stack(out, axis=-1)


def _example_data():
    """A small data set with a three-category outcome, for the examples."""
    import pandas as pd

    rng = np.random.default_rng(1)
    return pd.DataFrame({"y": rng.choice(["a", "b", "c"], 60), "x": rng.normal(size=60),
                         "g": np.repeat([f"g{i}" for i in range(6)], 10)})


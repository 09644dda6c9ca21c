"""The model specification: a frozen, printable data object with no PyMC and no data.

Both the formula parser (:mod:`hmodels.formula`) and the Python builder API (:func:`spec`,
:class:`RandomIntercept`, :class:`RandomSlope`) produce a :class:`ModelSpec`, normalised so that
equivalent specifications compare equal.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import FormulaError, SpecificationError
from .families import get_family
from .formula_text import quote_name

__all__ = ["GroupBlock", "GroupTerm", "ModelSpec", "NonlinearPart", "RandomIntercept", "RandomSlope", "spec",
           "quote_name", "reserved_names", "normalise_offset"]

_OFFSET = re.compile(r"(?<![\w.`])offset\s*\(")


@dataclass(frozen=True)
class GroupBlock:
    """Group-specific terms of one factor whose effects share one covariance block.

    Parameters
    ----------
    terms : tuple of str
        Term expressions other than the intercept, as formulae reads them (``"Days"``,
        ``"C(period)"``, ``"x:z"``).
    intercept : bool
        Whether the block has a group-specific intercept.
    correlated : bool
        Whether the effects in the block are correlated (LKJ prior). Always ``False`` for a
        block with a single effect.
    """

    terms: tuple[str, ...] = ()
    intercept: bool = True
    correlated: bool = True

    @property
    def expression(self) -> str:
        """The block's right-hand side, for formulae (``"1 + Days"``, ``"0 + Days"``)."""
        return " + ".join(["1" if self.intercept else "0", *self.terms])


@dataclass(frozen=True)
class GroupTerm:
    """All group-specific effects of one grouping factor.

    Parameters
    ----------
    factor : str
        The grouping factor: a column (``"Subject"``) or an interaction of columns for nested
        designs (``"batch:cask"``).
    blocks : tuple of GroupBlock
        Independent covariance blocks (``(x|g)`` is one correlated block;
        ``(x||g)`` is two single-effect blocks).
    """

    factor: str
    blocks: tuple[GroupBlock, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        """The data columns that make up the factor."""
        return tuple(self.factor.split(":"))

    @property
    def is_correlated(self) -> bool:
        """Whether any block carries a correlation."""
        return any(b.correlated for b in self.blocks)


@dataclass(frozen=True)
class NonlinearPart:
    """The nonlinear part of a spec as plain data: the expression and one formula per parameter.

    Parameters
    ----------
    expression : str
        The right-hand side of the model formula as written: an expression of data columns and
        parameters (``"Asym / (1 + exp((xmid - age) / scal))"``) or a self-starting shape
        (``"SSlogis(age, Asym, xmid, scal)"``).
    parameters : tuple of (str, str)
        ``(parameter, formula)`` pairs in the order the parameters are stacked: the right-hand side
        of each parameter's own linear predictor (``("Asym", "1 + (1 | Tree)")``).
    self_start : str, optional
        The self-starting shape's name (``"SSlogis"``) when the expression is one.
    start : tuple of (str, float)
        Starting values given by the user (``start=`` of :class:`~hmodels.Model`).

    Examples
    --------
    >>> NonlinearPart("a * exp(b * x)", (("a", "1"), ("b", "1"))).formulas
    {'a': '1', 'b': '1'}
    """

    expression: str
    parameters: tuple[tuple[str, str], ...]
    self_start: str | None = None
    start: tuple[tuple[str, float], ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "parameters", tuple((str(k), str(v)) for k, v in self.parameters))
        object.__setattr__(self, "start", tuple((str(k), float(v)) for k, v in self.start))

    @property
    def names(self) -> tuple[str, ...]:
        """The nonlinear parameters, in stacking order."""
        return tuple(k for k, _ in self.parameters)

    @property
    def formulas(self) -> dict[str, str]:
        """Parameter -> the right-hand side of its formula."""
        return dict(self.parameters)


@dataclass(frozen=True)
class ModelSpec:
    """A mixed-model specification as plain data.

    Parameters
    ----------
    response : str
        Outcome column or expression (``"Reaction"``, ``"p(incidence, size)"``).
    fixed : tuple of str
        Population-level terms besides the intercept, as formulae terms.
    intercept : bool
        Whether the model has a population-level intercept.
    groups : tuple of GroupTerm
        Group-specific effects, one entry per grouping factor.
    family, link : str
        Response family and link (see :mod:`hmodels.families`).
    trials : str, optional
        Column with the number of trials (binomial).
    se : str, optional
        Column with known standard errors of the outcome (gaussian meta-analysis).
    offset : str, optional
        An expression added to the linear predictor with coefficient exactly 1 (``offset(...)`` in a
        formula; ``"np.log(exposure)"`` for counts over an exposure). Evaluated by formulae in
        hmodels' formula namespace. Several offsets are summed into one expression; a fixed term
        written ``offset(x)`` is moved here, so equivalent specs compare equal.
    nonlinear : NonlinearPart, optional
        A nonlinear mean (:mod:`hmodels.nonlinear`): ``fixed`` and ``groups`` are then empty and each
        parameter's formula is in ``nonlinear.parameters``.
    cens : str, optional
        Column (or expression) with the censoring indicator, coded as brms codes it: 0 = observed,
        1 = right-censored (the true value is above the recorded one), -1 = left-censored
        (``time | cens(censored) ~ ...``). Survival data often have an *event* indicator instead
        (1 = the event was observed): write ``cens(1 - event)``.
    weights : str, optional
        Column with non-negative observation weights; each row's log-likelihood is multiplied by
        its weight (brms's ``weights()``).
    trunc : tuple, optional
        ``(lb, ub)``: the outcome is truncated to ``lb <= y <= ub`` (None for no bound; for counts the
        bounds are included, so ``trunc(lb=1)`` is a zero-truncated count).
    dpars : tuple of (str, str), optional
        Distributional parameters with their own formula (brms's ``bf(y ~ ..., sigma ~ x)``):
        ``(("sigma", "1 + x"),)``. Parameters not listed are scalars, as without ``dpars``
        (:mod:`hmodels.dpars`).

    Examples
    --------
    >>> import hmodels as hm
    >>> s = hm.spec(response="Reaction", fixed=["Days"],
    ...             groups=[hm.RandomIntercept("Subject"), hm.RandomSlope("Days", by="Subject")])
    >>> s.formula
    'Reaction ~ 1 + Days + (1 + Days | Subject)'
    >>> s == hm.parse_formula("Reaction ~ Days + (Days | Subject)")
    True
    """

    response: str
    fixed: tuple[str, ...] = ()
    intercept: bool = True
    groups: tuple[GroupTerm, ...] = ()
    family: str = "gaussian"
    link: str = "identity"
    trials: str | None = None
    se: str | None = None
    offset: str | None = None
    nonlinear: NonlinearPart | None = None
    cens: str | None = None
    weights: str | None = None
    trunc: tuple | None = None
    dpars: tuple = ()

    def __post_init__(self):
        fam = get_family(self.family, self.link)
        object.__setattr__(self, "family", fam.name)
        object.__setattr__(self, "link", fam.link)
        fixed, offsets = _split_offset_terms(tuple(self.fixed))
        object.__setattr__(self, "fixed", fixed)
        object.__setattr__(self, "offset", normalise_offset([*_as_offsets(self.offset), *offsets]))
        object.__setattr__(self, "groups", _normalise_groups(self.groups))
        if fam.outcome == "binomial" and self.trials is None:
            raise SpecificationError(
                f"The binomial family needs the number of trials: write 'p({self.response}, n) ~ ...' "
                f"or '{self.response} | trials(n) ~ ...', or pass trials='n'."
            )
        if self.se is not None and not fam.accepts_se:
            raise SpecificationError(
                f"Known standard errors (se({self.se})) are only available for the gaussian family, "
                f"not {fam.name!r}."
            )
        _check_offsets(self)
        if self.offset is not None and fam.outcome == "categorical":
            raise SpecificationError(
                f"offset({self.offset}) in a categorical model: an offset would have to enter each category's "
                "log-odds against the reference, which hmodels does not do (it would be silently dropped). Remove "
                "it, or model the exposure as a predictor."
            )
        _check_additions(self, fam)
        _check_names(self)
        if self.dpars:
            from .dpars import check_dpars

            object.__setattr__(self, "dpars", check_dpars(self.dpars, fam, self))

    @property
    def factors(self) -> tuple[str, ...]:
        """Names of the grouping factors, in order."""
        return tuple(g.factor for g in self.groups)

    def group(self, factor: str) -> GroupTerm:
        """Return the :class:`GroupTerm` of one grouping factor."""
        for g in self.groups:
            if g.factor == factor:
                return g
        raise SpecificationError(
            f"{factor!r} is not a grouping factor of this model; the factors are: {', '.join(self.factors) or 'none'}."
        )

    @property
    def formula(self) -> str:
        """An equivalent lme4/brms-style formula string."""
        lhs = self.response
        aterms = []
        if self.trials is not None:
            aterms.append(f"trials({self.trials})")
        if self.se is not None:
            aterms.append(f"se({self.se})")
        if self.cens is not None:
            aterms.append(f"cens({self.cens})")
        if self.trunc is not None:
            # every digit of the bounds (:g kept 6: update(family=...) reparses this string), shortest form
            aterms.append("trunc(" + ", ".join(f"{k}={_exact_number(v)}" for k, v in zip(("lb", "ub"), self.trunc)
                                               if v is not None) + ")")
        if self.weights is not None:
            aterms.append(f"weights({self.weights})")
        if aterms:
            lhs = f"{lhs} | {' + '.join(aterms)}"
        if self.nonlinear is not None:  # the parameters' formulas are in nonlinear.parameters
            return f"{lhs} ~ {self.nonlinear.expression}"
        rhs = ["1" if self.intercept else "0", *self.fixed]
        if self.offset is not None:
            rhs.append(f"offset({self.offset})")
        for g in self.groups:
            factor = ":".join(quote_name(c) for c in g.columns)
            for b in g.blocks:
                rhs.append(f"({b.expression} | {factor})")
        return f"{lhs} ~ {' + '.join(rhs)}"

    def to_dict(self) -> dict:
        """Return the spec as JSON-compatible plain data (for saving fits)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelSpec:
        """Rebuild a spec from :meth:`to_dict` output."""
        groups = tuple(
            GroupTerm(g["factor"],
                      tuple(GroupBlock(tuple(b["terms"]), b["intercept"], b["correlated"]) for b in g["blocks"]))
            for g in data.get("groups", ())
        )
        kw = {k: v for k, v in data.items() if k != "groups"}
        kw["fixed"] = tuple(kw.get("fixed", ()))
        if kw.get("trunc") is not None:
            kw["trunc"] = tuple(kw["trunc"])
        kw["dpars"] = tuple(map(tuple, kw.get("dpars", ())))
        if kw.get("nonlinear") is not None:
            nl = kw["nonlinear"]
            kw["nonlinear"] = NonlinearPart(nl["expression"], tuple(map(tuple, nl["parameters"])),
                                            nl.get("self_start"), tuple(map(tuple, nl.get("start", ()))))
        return cls(groups=groups, **kw)

    def __str__(self) -> str:
        nl = "" if self.nonlinear is None else f", nonlinear={self.nonlinear.formulas}"
        dp = "" if not self.dpars else f", dpars={dict(self.dpars)}"
        return f"{self.formula}  [family={self.family}, link={self.link}{nl}{dp}]"


def _check_additions(spec: ModelSpec, fam) -> None:
    """Censoring, truncation and weights: well-formed, and for a family that can honour them."""
    if spec.trunc is not None:
        try:
            lb, ub = spec.trunc
            lb = None if lb is None else float(lb)
            ub = None if ub is None else float(ub)
        except (TypeError, ValueError):
            raise SpecificationError(f"trunc must be (lb, ub) with numbers or None, got {spec.trunc!r}.") from None
        if lb is None and ub is None:
            raise SpecificationError("trunc needs a lower bound, an upper bound or both, e.g. trunc(lb=0).")
        if lb is not None and ub is not None and not lb < ub:
            raise SpecificationError(f"trunc(lb={lb:g}, ub={ub:g}): the lower bound must be below the upper bound.")
        if any(v is not None and not np.isfinite(v) for v in (lb, ub)):
            raise SpecificationError("trunc bounds must be finite numbers; leave a side out for no bound.")
        object.__setattr__(spec, "trunc", (lb, ub))
    for what, value in (("cens", spec.cens), ("weights", spec.weights)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise SpecificationError(f"{what} must name a column (or an expression of columns), got {value!r}.")
    wanted = [w for w, v in (("censoring", spec.cens), ("truncation", spec.trunc), ("weights", spec.weights))
              if v is not None]
    if not wanted:
        return
    if not fam.supports_additions:
        where = "; ".join(f"{w} {'are' if w == 'weights' else 'is'} for: {', '.join(addition_families(w))}"
                          for w in wanted)
        raise SpecificationError(
            f"{' and '.join(wanted).capitalize()} {'is' if wanted in (['censoring'], ['truncation']) else 'are'} "
            f"not available for the {fam.name} family yet ({where})."
        )
    if spec.cens is not None and fam.discrete:
        raise SpecificationError(
            f"Censoring is for continuous outcomes (times, concentrations), not the {fam.name} family's counts."
        )
    if spec.trunc is not None and fam.outcome in ("binary", "binomial"):
        raise SpecificationError(f"Truncation does not apply to the {fam.name} family's outcome.")
    if spec.trunc is not None and fam.discrete and any(v is not None and v != round(v) for v in spec.trunc):
        lb, ub = spec.trunc  # a count bound is included (y >= lb): lb=0.5 would normalise over y >= 0, not y >= 1
        fixed = ", ".join(f"{k}={f(v):g}" for k, v, f in (("lb", lb, np.ceil), ("ub", ub, np.floor))
                          if v is not None)
        raise SpecificationError(
            f"trunc({', '.join(f'{k}={v:g}' for k, v in zip(('lb', 'ub'), spec.trunc) if v is not None)}): the "
            f"{fam.name} family's counts are whole numbers, so its truncation bounds must be too (both are "
            f"included: lb=1 keeps y >= 1). Write trunc({fixed})."
        )
    if spec.se is not None and (spec.cens is not None or spec.trunc is not None):
        raise SpecificationError("Known standard errors (se) cannot be combined with censoring or truncation.")
    if spec.cens is not None and spec.trunc is not None:
        raise SpecificationError(
            "Censoring and truncation together are not available yet: fit the censored model without trunc(), or "
            "the truncated model without cens()."
        )


def _exact_number(v: float) -> str:
    """The shortest text that reads back as ``v`` exactly: ``1``, ``0.5``, ``12345.678``, ``1e-300``."""
    v = float(v)
    return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)


def addition_families(addition: str | None = None) -> list[str]:
    """Families that take ``cens()``, ``trunc()`` and ``weights()`` (those with a PyMC distribution object).

    With ``addition`` (``"censoring"``, ``"truncation"`` or ``"weights"``), those that take that one: censoring is
    for continuous outcomes, truncation not for binary or binomial ones.

    Examples
    --------
    >>> "weibull" in addition_families()
    True
    >>> "binomial" in addition_families("truncation"), "poisson" in addition_families("censoring")
    (False, False)
    """
    from .families import FAMILIES, get_family

    def takes(fam) -> bool:
        if addition == "censoring":
            return not fam.discrete
        if addition == "truncation":
            return fam.outcome not in ("binary", "binomial")
        return True

    return [name for name in FAMILIES if get_family(name).supports_additions and takes(get_family(name))]


def _as_offsets(offset) -> list[str]:
    """``offset=`` as given (None, one expression or several) -> a list of expressions."""
    if offset is None:
        return []
    if isinstance(offset, str):
        return [offset]
    if isinstance(offset, (list, tuple)) and all(isinstance(o, str) for o in offset):
        return list(offset)
    raise SpecificationError(
        f"offset must be an expression (a column name or e.g. 'np.log(exposure)') or a list of them, "
        f"got {offset!r}."
    )


def _whole_offset(term: str) -> str | None:
    """The argument of ``term`` when the whole term is one ``offset(...)`` call, else None."""
    m = re.match(r"^\s*offset\s*\(", term)
    if not m:
        return None
    depth, start = 0, m.end() - 1
    for i in range(start, len(term)):
        depth += term[i] == "("
        depth -= term[i] == ")"
        if depth == 0:
            return term[start + 1:i] if not term[i + 1:].strip() else None
    return None


def _split_offset_terms(fixed: tuple[str, ...]) -> tuple[tuple[str, ...], list[str]]:
    """Move population-level terms that are a whole ``offset(...)`` out of ``fixed``."""
    kept, offsets = [], []
    for t in fixed:
        inner = _whole_offset(t) if isinstance(t, str) else None
        if inner is None:
            kept.append(t)
        else:
            offsets.append(inner)
    return tuple(kept), offsets


def normalise_offset(parts) -> str | None:
    """One offset expression from several (their sum), written as formulae reads it back; None for none.

    Examples
    --------
    >>> normalise_offset(["np.log( expo )"]), normalise_offset(["log(e)", "offset(z)"]), normalise_offset([])
    ('np.log(expo)', 'log(e) + z', None)
    """
    import formulae as fm

    from .formula_text import _check_spaced_names, _formulae_error, _show, term_source

    exprs = []
    for p in parts:
        p = p.strip()
        inner = _whole_offset(p)
        p = inner.strip() if inner is not None else p
        if not p:
            raise FormulaError("An offset needs an expression: write offset(x), e.g. offset(np.log(exposure)).")
        if _OFFSET.search(p):
            raise FormulaError(f"The offset {p!r} contains another offset(...); write each offset once.")
        exprs.append(p)
    if not exprs:
        return None
    text = " + ".join(f"({e})" for e in exprs) if len(exprs) > 1 else exprs[0]
    _check_spaced_names(text)
    try:
        desc = fm.model_description(f"0 + offset({text})")
        (term,) = desc.terms
        source = term_source(term)
    except Exception as exc:  # formulae raises several types
        raise FormulaError(f"Could not read the offset {_show(text)}: {_formulae_error(exc, text)}.") from None
    if not source.startswith("offset(") or ":" in source:
        raise FormulaError(f"Could not read the offset {_show(text)} as one expression.")
    return source[len("offset("):-1]


def _check_offsets(spec: ModelSpec) -> None:
    """An offset is a population-level term with coefficient 1: refuse one anywhere else, never fit it."""
    if _OFFSET.search(spec.response):
        raise FormulaError(
            f"The outcome {spec.response!r} contains offset(...): an offset belongs on the right of '~', "
            "e.g. 'count ~ x + offset(np.log(exposure))'."
        )
    for e in spec.fixed:
        if isinstance(e, str) and _OFFSET.search(e):
            raise FormulaError(
                f"The term {e!r} uses offset(...) inside another term: an offset is added to the linear "
                "predictor on its own, with coefficient 1, and cannot be interacted or transformed. Write it as "
                "a separate term ('+ offset(np.log(exposure))'), or pass offset='np.log(exposure)' to hm.spec."
            )
    for g in spec.groups:
        for b in g.blocks:
            for t in b.terms:
                if _OFFSET.search(t):
                    raise FormulaError(
                        f"The group-specific term {t!r} of {g.factor!r} is an offset: an offset has coefficient 1 "
                        "for every row, so it cannot vary by group. Write it outside the group term, e.g. "
                        f"'y ~ x + offset(...) + (1 | {g.factor})'."
                    )


# Names the fitted posterior (and the PyMC graph) use whatever the model: variables and dimensions.
_RESERVED = {
    "b": "the population-level coefficients (variable 'b')",
    "sigma": "the residual SD (variable 'sigma')",
    "nu": "the Student-t degrees of freedom (variable 'nu')",
    "alpha": "the negative-binomial shape (variable 'alpha')",
    "Intercept_centered": "the centred intercept of the PyMC graph",
    "cutpoints_centered": "the ordinal thresholds at the predictors' means in the PyMC graph",
    "b_slopes": "the population-level slopes of the PyMC graph",
    "marginal_loglik": "the marginal likelihood term of the PyMC graph",
    "laplace_marginal_loglik": "the Laplace-approximate marginal likelihood of the PyMC graph",
    "chain": "the chain dimension of the draws",
    "draw": "the draw dimension of the draws",
    "term": "the dimension of population-level terms",
    "slope_term": "the dimension of population-level slopes in the PyMC graph",
    "obs": "the observation dimension",
    "divergence": "the dimension of divergent transitions",
}
# Distribution names that can suffix a vector of parameters with mixed priors (``sd_g_HalfNormal``).
_PRIOR_KINDS = ("Normal", "StudentT", "Cauchy", "Laplace", "HalfNormal", "HalfStudentT", "HalfCauchy",
                "Exponential", "Gamma", "InverseGamma", "LogNormal", "Uniform")


def reserved_names() -> tuple[str, ...]:
    """Names hmodels uses for variables and dimensions of every fit; no grouping factor or outcome may take them.

    Each grouping factor ``g`` also uses ``sd_g``, ``r_g``, ``z_g``, ``cor_g`` (and ``cor_g_<k>``),
    ``L_cor_g``, ``g`` and ``g__term``, so one factor may not be named like another's.

    Examples
    --------
    >>> "b" in reserved_names()
    True
    """
    return tuple(_RESERVED)


def _factor_names(g: GroupTerm) -> dict[str, str]:
    f = g.factor
    what = {f: f"the levels dimension of factor {f!r}", f"{f}__term": f"the term dimension of factor {f!r}"}
    for prefix, label in (("sd", "group SDs"), ("r", "group effects"), ("z", "standardised group effects")):
        what[f"{prefix}_{f}"] = f"the {label} of factor {f!r}"
    what.update({f"sd_{f}_{kind}": f"the group SDs of factor {f!r}" for kind in _PRIOR_KINDS})
    cors = [f"cor_{f}", *(f"cor_{f}_{k}" for k in range(len(g.blocks)))]
    for c in cors:
        what.update({c: f"a correlation matrix of factor {f!r}", f"L_{c}": f"a correlation matrix of factor {f!r}",
                     f"{c}__row": f"a correlation dimension of factor {f!r}",
                     f"{c}__col": f"a correlation dimension of factor {f!r}"})
    what.update({f"r_{f}_{k}": f"the group effects of factor {f!r}" for k in range(len(g.blocks))})
    return what


def _check_names(spec: ModelSpec) -> None:
    """Refuse grouping factors and outcomes whose names collide with names hmodels gives the posterior."""
    for g in spec.groups:  # (1 | y): the outcome itself, not a naming clash (design._check_outcome_not_predictor)
        if spec.response in g.columns:
            raise SpecificationError(
                f"The outcome column {spec.response!r} is also on the right of '~' (in the grouping factor "
                f"{g.factor!r}): a model cannot explain {spec.response!r} by itself. Remove it from the right of '~'."
            )
    # a column named 'Intercept' as a term: formulae puts its values in the intercept's column (one column,
    # named 'Intercept'), so the model silently lost its intercept and the predictor
    where = ["the population-level terms"] if "Intercept" in spec.fixed else []
    where += [f"the group-specific terms of {g.factor!r}" for g in spec.groups
              if any("Intercept" in b.terms for b in g.blocks)]
    if where:
        raise SpecificationError(
            f"A column named 'Intercept' is used as a term (in {', '.join(where)}), but 'Intercept' is the name of "
            "the intercept's column: the two would be one column. Rename the column, e.g. "
            "data = data.rename(columns={'Intercept': 'Intercept_x'}), and use the new name in the formula "
            "(the intercept itself is written 1 or 0)."
        )
    owners: dict[str, tuple[str, str]] = {}
    aux = get_family(spec.family, spec.link).aux
    reserved = {k: v for k, v in _RESERVED.items() if k not in ("sigma", "nu", "alpha") or k in aux}
    reserved.update({a: f"the {spec.family} parameter {a!r}" for a in aux if a not in reserved})
    reserved.update({f"b_{k}": "the population-level coefficients" for k in _PRIOR_KINDS})
    reserved.update({f"b_slopes_{k}": "the population-level slopes" for k in _PRIOR_KINDS})
    for name, what in reserved.items():
        owners[name] = ("hmodels", what)
    sources = [(f"grouping factor {g.factor!r}", g.factor, g.columns, _factor_names(g)) for g in spec.groups]
    sources.append((f"outcome {spec.response!r}", spec.response, (spec.response,),
                    {spec.response: "the observed variable"}))
    for label, name, columns, names in sources:
        for n, what in names.items():
            if n in owners and owners[n][0] != label:
                other, other_what = owners[n]
                cols = ", ".join(repr(c) for c in columns)
                suffix = "group" if label.startswith("grouping") else "y"
                new = {c: f"{c.strip('_') or 'x'}_{suffix}" for c in columns}
                raise SpecificationError(
                    f"The {label} cannot be used under that name: {n!r} would be {what}, but {n!r} is already "
                    f"{other_what}{'' if other == 'hmodels' else f' ({other})'}, and the two would collide in "
                    f"the fitted posterior (one name cannot be both a variable and a dimension, or two "
                    f"variables). Rename the column {cols}, e.g. "
                    f"data = data.rename(columns={new!r}), and use the new name in the formula. Names hmodels "
                    f"reserves: {', '.join(reserved_names())} (and the family's parameters: sigma, shape, zi, ...); "
                    "a factor may also not be named sd_<factor>, r_<factor>, z_<factor>, cor_<factor> or "
                    "<factor>__term after another factor."
                )
            owners.setdefault(n, (label, what))


def _normalise_groups(groups) -> tuple[GroupTerm, ...]:
    """Merge blocks per factor, split uncorrelated blocks into one effect each, reject duplicates."""
    by_factor: dict[str, list[GroupBlock]] = {}
    for g in groups:
        if not isinstance(g, GroupTerm):
            raise SpecificationError(f"groups must hold GroupTerm objects, got {type(g).__name__}.")
        factor = ":".join(p.strip() for p in g.factor.split(":"))
        by_factor.setdefault(factor, []).extend(g.blocks)
    out = []
    for factor, blocks in by_factor.items():
        norm: list[GroupBlock] = []
        for b in blocks:
            n_eff = int(b.intercept) + len(b.terms)
            if n_eff == 0:
                raise SpecificationError(f"A group-specific block for {factor!r} has no terms: '(0 | {factor})'.")
            if b.correlated and n_eff > 1:
                norm.append(GroupBlock(tuple(b.terms), b.intercept, True))
                continue
            if b.intercept:
                norm.append(GroupBlock((), True, False))
            norm.extend(GroupBlock((t,), False, False) for t in b.terms)
        seen: set[str] = set()
        for b in norm:
            names = (["Intercept"] if b.intercept else []) + list(b.terms)
            for name in names:
                if name in seen:
                    raise SpecificationError(
                        f"The group-specific term {name!r} appears twice for factor {factor!r}; "
                        f"list each term once, e.g. '({name} | {factor})'."
                    )
                seen.add(name)
        out.append(GroupTerm(factor, tuple(norm)))
    return tuple(out)


@dataclass(frozen=True)
class RandomIntercept:
    """A group-specific intercept for the grouping factor ``by`` (``(1 | by)``).

    Examples
    --------
    >>> import hmodels as hm
    >>> hm.RandomIntercept("Subject")
    RandomIntercept(by='Subject')
    """

    by: str


@dataclass(frozen=True)
class RandomSlope:
    """A group-specific slope of ``term`` for the grouping factor ``by``.

    Slopes are correlated with the intercept and the other correlated slopes of the same
    factor unless ``correlated=False`` (``(0 + term | by)`` as a separate block).

    Examples
    --------
    >>> import hmodels as hm
    >>> hm.RandomSlope("Days", by="Subject")
    RandomSlope(term='Days', by='Subject', correlated=True)
    """

    term: str
    by: str
    correlated: bool = field(default=True)


def spec(
    response: str,
    fixed=(),
    groups=(),
    *,
    intercept: bool = True,
    family: str = "gaussian",
    link: str | None = None,
    trials: str | None = None,
    se: str | None = None,
    offset: str | list[str] | None = None,
) -> ModelSpec:
    """Build a :class:`ModelSpec` without a formula.

    Parameters
    ----------
    response : str
        Outcome column.
    fixed : list of str
        Population-level terms (formulae expressions such as ``"Days"``, ``"C(period)"``).
    groups : list of RandomIntercept, RandomSlope or GroupTerm
        Group-specific effects. Intercepts and correlated slopes of the same factor form one
        correlated block, as ``(x | g)`` does.
    intercept : bool
        Population-level intercept (default ``True``).
    family, link : str
        Response family and link.
    trials, se : str, optional
        Columns with binomial trials or known standard errors.
    offset : str or list of str, optional
        Expression(s) added to the linear predictor with coefficient 1 (summed when several), as
        ``offset(...)`` in a formula: ``offset="np.log(exposure)"``.

    Returns
    -------
    ModelSpec

    Examples
    --------
    >>> import hmodels as hm
    >>> s = hm.spec(response="y", fixed=["x"], groups=[hm.RandomIntercept("g"), hm.RandomSlope("x", by="g")])
    >>> s.formula
    'y ~ 1 + x + (1 + x | g)'
    >>> hm.spec("count", fixed=["x"], offset="np.log(expo)", family="poisson").formula
    'count ~ 1 + x + offset(np.log(expo))'
    """
    if isinstance(fixed, str):
        fixed = [fixed]
    order: list[str] = []
    merged: dict[str, dict] = {}
    extra: list[GroupTerm] = []
    for g in groups:
        if isinstance(g, GroupTerm):
            extra.append(g)
            continue
        if not isinstance(g, (RandomIntercept, RandomSlope)):
            raise SpecificationError(
                f"groups entries must be hm.RandomIntercept, hm.RandomSlope or GroupTerm, got {g!r}."
            )
        entry = merged.setdefault(g.by, {"intercept": False, "cor": [], "uncor": []})
        if g.by not in order:
            order.append(g.by)
        if isinstance(g, RandomIntercept):
            entry["intercept"] = True
        elif g.correlated:
            entry["cor"].append(g.term)
        else:
            entry["uncor"].append(g.term)
    terms: list[GroupTerm] = []
    for by in order:
        e = merged[by]
        blocks = []
        if e["intercept"] or e["cor"]:
            blocks.append(GroupBlock(tuple(e["cor"]), e["intercept"], True))
        blocks.extend(GroupBlock((t,), False, False) for t in e["uncor"])
        terms.append(GroupTerm(by, tuple(blocks)))
    fam = get_family(family, link)
    return ModelSpec(
        response=response, fixed=tuple(fixed), intercept=intercept, groups=tuple(terms + extra),
        family=fam.name, link=fam.link, trials=trials, se=se, offset=offset,
    )

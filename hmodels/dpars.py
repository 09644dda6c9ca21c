"""Distributional parameters with their own formulas (brms's ``bf(y ~ ..., sigma ~ x + (1 | g))``).

A family's own parameters (``sigma``, ``phi``, ``shape``, ``alpha``, ``nu``, ``zi``, ``hu``, ``zoi``,
``coi``) are scalars by default. ``dpars={"sigma": "x + (1 | g)"}`` gives one of them a linear
predictor on its link scale: ``log`` for positive parameters, ``logit`` for probabilities (the
parameter's :class:`~hmodels.families.auxiliary.AuxSpec` support), as brms and glmmTMB
(``dispformula``, ``ziformula``) do. The thresholds of the ordinal family cannot take a formula.

Names follow brms: the coefficients of ``sigma ~ x`` are ``sigma_Intercept`` and ``sigma_x``
(posterior variable ``b_sigma``), its group effects of ``g`` are ``r_g__sigma`` with SDs
``sd(g, sigma_Intercept)`` (posterior ``sd_g__sigma``). Group effects of a distributional parameter
are always non-centred.

Priors (``hmodels.priors.resolve.dpar_slots``): link-scale units (1). The intercept (at the predictors'
means, as the mean's) is located at ``log(sd(y))`` for a parameter in outcome units (``sigma``) and at 0 otherwise
(``log 1``, ``logit 0.5``); a slope's scale is ``1 / sd(x)``; a group SD's scale is 1. They come
from the prior sets' ``Intercept``, ``fixed``, ``sd`` and ``cor`` entries (data-scaled entries scaled
by those link-scale units); user keys are the parameters' own names (``"sigma_x"``,
``"sd(g, sigma_Intercept)"``).

The compiled engine samples these models (:func:`engine_rows`): the location's linear predictor and each
parameter's are blocks of rows of one, and ``dpar_loglik`` in ``kernels.c`` evaluates the family's
likelihood of each observation with its own parameters; ``sampler="pymc"`` / ``"numpyro"`` run the PyMC
graph (:func:`hmodels.build.pymc_dpar`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import FormulaError, SpecificationError, closest

__all__ = ["DparDesign", "check_dpars", "dpar_link", "dpar_values",
           "dpar_variables", "engine_rows"]


def dpar_link(fam, name: str) -> str:
    """The link of a distributional parameter: ``"log"`` (positive) or ``"logit"`` (a probability).

    Examples
    --------
    >>> from hmodels.families import get_family
    >>> dpar_link(get_family("gaussian"), "sigma"), dpar_link(get_family("zero_inflated_poisson"), "zi")
    ('log', 'logit')
    """
    support = fam.aux_spec(name).support
    return {"positive": "log", "unit": "logit"}[support]


def check_dpars(dpars, fam, spec) -> tuple:
    """Validate ``dpars=`` against the family; return ``((name, rhs), ...)`` in the family's order.

    Raises
    ------
    FamilyError
        A parameter the family does not have (the message names the family's parameters), or the
        ordinal thresholds.
    FormulaError
        A formula that is not a non-empty string (one that cannot be read, or has an offset, is refused when the
        design is made: :func:`hmodels.design.dpar_sub_spec`).
    SpecificationError
        ``dpars`` not a dict; ``sigma`` with known standard errors; a nonlinear mean.

    Examples
    --------
    >>> import hmodels as hm
    >>> hm.parse_formula("y ~ x").family
    'gaussian'
    >>> from hmodels.families import get_family
    >>> check_dpars({"sigma": "sigma ~ x + (1 | g)"}, get_family("gaussian"), hm.parse_formula("y ~ x"))
    (('sigma', 'x + (1 | g)'),)
    """
    from .errors import FamilyError

    try:
        items = dict(dpars) if isinstance(dpars, (dict, tuple, list)) else None
    except (TypeError, ValueError):
        items = None
    if items is None:
        raise SpecificationError(f"dpars= must be a dict of parameter -> formula, e.g. {{'sigma': 'x'}}; got "
                                 f"{type(dpars).__name__}.")
    params = [a for a in fam.aux if fam.aux_spec(a).support in ("positive", "unit")]
    if spec.nonlinear is not None:
        raise SpecificationError("dpars= cannot be combined with a nonlinear mean yet; fit the nonlinear model with "
                                 "scalar family parameters.")
    out = {}
    for name, rhs in items.items():
        if name not in fam.aux:
            have = ", ".join(fam.aux) if fam.aux else "none"
            raise FamilyError(
                f"dpars= names {name!r}, which is not a parameter of the {fam.name} family."
                f"{closest(str(name), fam.aux)} Its parameters are: {have}.")
        if fam.aux_spec(name).support == "ordered":
            raise FamilyError(f"The {name!r} of the {fam.name} family (its ordered cutpoints) cannot take a formula; "
                              "only these can: " + (", ".join(params) or "none") + ".")
        if name == "sigma" and spec.se is not None:
            raise SpecificationError("sigma cannot take a formula when the standard errors are known (se()).")
        if not isinstance(rhs, str):
            raise FormulaError(f"The formula of {name!r} in dpars= must be a string such as 'x' or '1 + x + (1 | g)', "
                               f"got {rhs!r}.")
        text = rhs.strip()
        if "~" in text:
            lhs, text = (p.strip() for p in text.split("~", 1))
            if lhs and lhs != name:
                raise FormulaError(f"dpars[{name!r}] = {rhs!r} has {lhs!r} on the left of '~'; write "
                                   f"'{name} ~ {text}' or just {text!r}.")
        if not text:
            raise FormulaError(f"The formula of {name!r} in dpars= is empty; write '1' for an intercept only.")
        out[name] = text  # the formula itself is read with the design (hmodels.design.dpar_sub_spec)
    return tuple((a, out[a]) for a in fam.aux if a in out)


@dataclass
class DparDesign:
    """The linear predictor of one distributional parameter on the model's rows.

    Attributes
    ----------
    name, link : str
        The parameter (``"sigma"``) and its link (``"log"``, ``"logit"``).
    X : ndarray (n, p)
        Population-level columns; ``fixed_terms`` are their brms names (``sigma_Intercept``).
    factors : list of FactorDesign
        Group terms, factor renamed ``<factor>__<name>`` and terms prefixed (``sigma_Intercept``).
    origin : dict
        Renamed factor -> the data's factor name.

    Examples
    --------
    >>> import hmodels as hm
    >>> m = hm.Model("Reaction ~ Days + (1 | Subject)", hm.datasets.load("sleepstudy"),
    ...              dpars={"sigma": "Days + (1 | Subject)"})
    >>> dd = m.design.dpars["sigma"]
    >>> dd.link, dd.fixed_terms, dd.factors[0].factor, dd.factors[0].terms
    ('log', ['sigma_Intercept', 'sigma_Days'], 'Subject__sigma', ['sigma_Intercept'])
    """

    name: str
    link: str
    rhs: str
    X: np.ndarray
    fixed_terms: list
    factors: list
    x_means: np.ndarray
    x_sds: np.ndarray
    origin: dict = field(default_factory=dict)

    @property
    def has_intercept(self) -> bool:
        """Whether ``X`` has an intercept column (the first)."""
        return bool(self.fixed_terms) and self.fixed_terms[0] == f"{self.name}_Intercept"


def inverse_link(link: str, eta):
    """``exp`` or the logistic function, for NumPy arrays or PyTensor tensors."""
    if isinstance(eta, np.ndarray):
        from scipy.special import expit

        return np.exp(eta) if link == "log" else expit(eta)
    import pytensor.tensor as pt

    return pt.exp(eta) if link == "log" else pt.sigmoid(eta)


def dpar_variables(design) -> set[str]:
    """Posterior variables of the distributional parameters (``b_sigma``, ``sd_g__sigma``, ...).

    Examples
    --------
    >>> import hmodels as hm
    >>> m = hm.Model("Reaction ~ Days", hm.datasets.load("sleepstudy"), dpars={"sigma": "1 + (1 | Subject)"})
    >>> sorted(dpar_variables(m.design))
    ['b_sigma', 'r_Subject__sigma', 'sd_Subject__sigma', 'z_Subject__sigma']
    """
    names = set()
    for name, dd in (getattr(design, "dpars", None) or {}).items():
        names.add(f"b_{name}")
        for f in dd.factors:
            names |= {f"sd_{f.factor}", f"r_{f.factor}", f"z_{f.factor}"}
    return names


def dpar_values(draws, dd, groups: str = "include", effects: dict | None = None) -> np.ndarray:
    """Per-row draws (chain, draw, n) of one distributional parameter: inverse link of its predictor.

    ``draws`` is the fit's posterior (``fit.draws``). ``effects`` (factor -> (chain, draw, levels, terms)) replaces
    a factor's fitted effects with fitted + fresh ones for new levels (:func:`hmodels.predict.new_level_effects`,
    ``predict(groups="new")``); without it a level the fit has not seen gets a group effect of 0.

    Examples
    --------
    >>> sigma = dpar_values(fit.draws, fit.design.dpars["sigma"])  # doctest: +SKIP
    >>> sigma.shape  # doctest: +SKIP
    (4, 1000, 180)
    """
    b = np.asarray(draws[f"b_{dd.name}"].transpose("chain", "draw", ...).values)
    eta = np.einsum("cdp,np->cdn", b, dd.X)
    if groups == "include":
        for f in dd.factors:
            r = (effects[f.factor] if effects and f.factor in effects
                 else np.asarray(draws[f"r_{f.factor}"].transpose("chain", "draw", ...).values))
            codes = np.asarray(f.codes)
            seen = (codes >= 0) & (codes < r.shape[2])
            rr = r[:, :, np.where(seen, codes, 0), :] * seen[None, None, :, None]
            eta = eta + np.einsum("cdnk,nk->cdn", rr, f.Z)
    return inverse_link(dd.link, eta)


def _centring(X, terms, has_intercept: bool, centred: bool) -> tuple[np.ndarray, np.ndarray]:
    """A block's design centred at its predictors' means (intercept kept) and the map to raw coefficients.

    As the PyMC graph places an intercept prior: on the intercept at the predictors' means when the
    block has an intercept and other columns and ``intercept_prior="centered"``.
    """
    p = X.shape[1]
    T = np.eye(p)
    if not (has_intercept and centred and p > 1):
        return X, T
    means = X[:, 1:].mean(axis=0)
    T[0, 1:] = -means
    return np.column_stack([X[:, :1], X[:, 1:] - means]), T


def engine_rows(design, priors):
    """The model as blocks of rows of one linear predictor (for the compiled engine): the mean, then each dpar.

    Block 0 (rows ``0 .. n``) is the location's linear predictor (its columns and its factors), block
    ``j`` that of the ``j``-th parameter with a formula (its columns and its own factors, named
    ``<factor>__<name>``); each block is centred as the PyMC graph centres it (:func:`_centring`).

    Returns
    -------
    rows : Design
        Block-diagonal ``X`` (columns: the location's terms, then each parameter's) and factors.
    T : ndarray
        Sampled (centred) coefficients -> reported ones.
    blocks : list of (name, link, columns)
        Per parameter with a formula, in block order: its name, link and columns of ``rows.X``.
    by_param : dict
        Priors by key, with each renamed factor's SD keys (``sd(g__sigma, sigma_x)``).

    Examples
    --------
    >>> import hmodels as hm
    >>> m = hm.Model("Reaction ~ Days", hm.datasets.load("sleepstudy"), dpars={"sigma": "Days + (1 | Subject)"})
    >>> rows, T, blocks, _ = engine_rows(m.design, m.priors)
    >>> rows.X.shape, rows.fixed_terms, blocks[0][:2], rows.factors[0].factor
    ((360, 4), ['Intercept', 'Days', 'sigma_Intercept', 'sigma_Days'], ('sigma', 'log'), 'Subject__sigma')
    """
    from dataclasses import replace

    n = design.n
    centred = priors.intercept_prior == "centered"
    parts = [(design.X, list(design.fixed_terms), design.has_intercept, list(design.factors))]
    parts += [(dd.X, list(dd.fixed_terms), dd.has_intercept, list(dd.factors)) for dd in design.dpars.values()]
    m = len(parts)
    width = sum(X.shape[1] for X, *_ in parts)
    X = np.zeros((m * n, width))
    T = np.zeros((width, width))
    terms, factors, blocks, col = [], [], [], 0
    for j, (Xj, tj, has_int, fj) in enumerate(parts):
        Xc, Tj = _centring(Xj, tj, has_int, centred)
        cols = np.arange(col, col + Xj.shape[1])
        X[j * n:(j + 1) * n, cols] = Xc
        T[np.ix_(cols, cols)] = Tj
        terms += tj
        for f in fj:
            Z = np.zeros((m * n, f.Z.shape[1]))
            Z[j * n:(j + 1) * n] = f.Z
            factors.append(replace(f, codes=np.tile(np.asarray(f.codes), m), Z=Z))
        if j:
            dd = list(design.dpars.values())[j - 1]
            blocks.append((dd.name, dd.link, cols))
        col += Xj.shape[1]
    by_param = {r.slot.param: r.prior for r in priors}
    for dd in design.dpars.values():
        for f in dd.factors:
            for t in f.terms:
                by_param[f"sd({f.factor}, {t})"] = by_param[f"sd({dd.origin[f.factor]}, {t})"]
    rows = replace(design, y=np.tile(np.asarray(design.y), m), X=X, fixed_terms=terms, factors=factors,
                   x_means=X.mean(axis=0), x_sds=X.std(axis=0))
    return rows, T, blocks, by_param


def dpar_factor_meta(design) -> tuple[dict, dict]:
    """Summary metadata of the dpars' factors: ``{"g__sigma": {"terms", "cors"}}`` and renamed -> data factor."""
    meta, origin = {}, {}
    for dd in (getattr(design, "dpars", None) or {}).values():
        for f in dd.factors:
            n_cor = sum(f.correlated)
            cors = [(f"cor_{f.factor}" if n_cor == 1 else f"cor_{f.factor}_{k}", [f.terms[i] for i in b])
                    for k, (b, c) in enumerate(zip(f.blocks, f.correlated)) if c]
            meta[f.factor] = {"terms": list(f.terms), "cors": cors}
            origin[f.factor] = dd.origin[f.factor]
    return meta, origin

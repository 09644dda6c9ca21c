"""Model parameters as plain values: their labels, a user's dictionary of them, and draws from the priors.

Every parameter has the label it has in a Fit's tables — the row index of
:meth:`~hmodels.fit.Fit.fixed_effects` (``"Intercept"``, ``"Days"``) and of
:meth:`~hmodels.fit.Fit.variance_components` (``"sd(Subject, Intercept)"``,
``"cor(Subject, Intercept:Days)"``, ``"sigma"``, ``"nu"``, ``"alpha"``) — so that true values,
point estimates and posterior summaries line up row by row.

:class:`Params` holds one set of values in structured form (coefficients, per factor its SDs and
correlation matrix, the family's parameters); :func:`parse_params` reads a user's dictionary,
:func:`draw_from_priors` draws from a model's priors (the exact priors NUTS samples under).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from ..errors import SpecificationError, closest
from ..families.ordinal import threshold_shift_means

__all__ = ["Params", "ParamLabel", "parameter_labels", "parse_params", "draw_from_priors", "lkj_corr", "family_aux"]



def family_aux(design) -> tuple[str, ...]:
    """The family parameters a design's model estimates (``sigma`` unless standard errors are known).

    Examples
    --------
    >>> import hmodels as hm
    >>> family_aux(hm.Model("y | se(sigma) ~ 1 + (1 | school)", hm.datasets.load("eight_schools")).design)
    ()
    """
    from ..families import get_family

    aux = get_family(design.spec.family, design.spec.link).aux  # the registry's family parameters
    return tuple(a for a in aux if not (a == "sigma" and design.se is not None))


@dataclass(frozen=True)
class ParamLabel:
    """One scalar parameter: its table label and where it lives.

    Attributes
    ----------
    label : str
        Row label in the Fit's tables (``"sd(Subject, Days)"``).
    kind : str
        ``"fixed"``, ``"sd"``, ``"cor"``, ``"sigma"``, ``"nu"`` or ``"alpha"``.
    group, term : str
        Grouping factor and term (``""`` where they do not apply); a correlation's term is
        ``"Intercept:Days"``.
    index : tuple of int
        Position: the coefficient's column, the SD's term, the correlation's (row, column).
    """

    label: str
    kind: str
    group: str = ""
    term: str = ""
    index: tuple[int, ...] = ()


def parameter_labels(design) -> list[ParamLabel]:
    """The scalar parameters of a design's model, in the order of a Fit's tables.

    Examples
    --------
    >>> import hmodels as hm
    >>> d = hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy")).design
    >>> [p.label for p in parameter_labels(d)]
    ['Intercept', 'Days', 'sd(Subject, Intercept)', 'sd(Subject, Days)', 'cor(Subject, Intercept:Days)', 'sigma']
    """
    out = [ParamLabel(t, "fixed", "", t, (j,)) for j, t in enumerate(design.fixed_terms)]
    for f in design.factors:
        for j, t in enumerate(f.terms):
            out.append(ParamLabel(f"sd({f.factor}, {t})", "sd", f.factor, t, (j,)))
        for block, cor in zip(f.blocks, f.correlated):
            if not cor:
                continue
            for a in range(len(block)):
                for b in range(a + 1, len(block)):
                    i, j = block[a], block[b]
                    term = f"{f.terms[i]}:{f.terms[j]}"
                    out.append(ParamLabel(f"cor({f.factor}, {term})", "cor", f.factor, term, (i, j)))
    fam = _family(design)
    for a in family_aux(design):
        if fam.aux_spec(a).is_vector:  # the thresholds of an ordinal model, one label each (Intercept[1], ...)
            from ..families.ordinal import threshold_labels

            out += [ParamLabel(lab, a, "", "", (k,)) for k, lab in enumerate(threshold_labels(design.response_levels))]
        else:
            out.append(ParamLabel(a, a))
    return out


def _family(design):
    from ..families import get_family

    return get_family(design.spec.family, design.spec.link)


@dataclass
class Params:
    """One set of parameter values of a model, in structured form.

    Attributes
    ----------
    beta : ndarray (p,)
        Population-level coefficients, in the order of ``design.fixed_terms``.
    sd : dict
        Per grouping factor, the SDs of its group-specific terms (k,).
    cor : dict
        Per grouping factor, its (k, k) correlation matrix (0 between uncorrelated blocks).
    aux : dict
        ``sigma``, ``nu``, ``alpha`` as the family needs.
    """

    beta: np.ndarray
    sd: dict[str, np.ndarray] = field(default_factory=dict)
    cor: dict[str, np.ndarray] = field(default_factory=dict)
    aux: dict[str, float] = field(default_factory=dict)

    def covariance(self, factor: str) -> np.ndarray:
        """The (k, k) covariance matrix of one factor's group effects."""
        s = self.sd[factor]
        return s[:, None] * self.cor[factor] * s[None, :]

    def flat(self, design) -> dict[str, float]:
        """``{label: value}`` in the order of :func:`parameter_labels`."""
        out = {}
        for p in parameter_labels(design):
            if p.kind == "fixed":
                out[p.label] = float(self.beta[p.index[0]])
            elif p.kind == "sd":
                out[p.label] = float(self.sd[p.group][p.index[0]])
            elif p.kind == "cor":
                out[p.label] = float(self.cor[p.group][p.index])
            elif p.index:  # an element of a vector parameter (ordinal thresholds)
                out[p.label] = float(np.asarray(self.aux[p.kind])[p.index[0]])
            else:
                out[p.label] = float(self.aux[p.kind])
        return out

    def group_effects(self, design, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Draw every level's effects, ``N(0, Sigma_f)``: per factor an array (levels, k)."""
        out = {}
        for f in design.factors:
            S = self.covariance(f.factor)
            k = len(f.terms)
            # eigen-decomposition, so that singular covariances (an SD of 0, a correlation of 1) work
            vals, vecs = np.linalg.eigh(S)
            root = vecs * np.sqrt(np.clip(vals, 0.0, None))
            out[f.factor] = rng.standard_normal((f.n_levels, k)) @ root.T
        return out


def _canon(key: str) -> str:
    return "".join(str(key).split())


def _fmt_keys(keys) -> str:
    return ", ".join(repr(k) for k in keys)


def parse_params(design, values: Mapping, fill: Mapping | None = None, what: str = "params") -> Params:
    """Read a dictionary of parameter values into :class:`Params`, checking every key and value.

    Keys are the labels of a Fit's tables (:func:`parameter_labels`), whitespace-insensitive, plus
    shorthands: ``"sd(g)"`` for a factor with one group-specific term, ``"cor(g)"`` for a factor
    with one correlated block (a number for a pair of terms, or its correlation matrix).

    Parameters
    ----------
    design : Design
    values : mapping
        ``{label: value}``.
    fill : mapping, optional
        Defaults by kind for parameters missing from ``values``: ``{"fixed": 0.0, "cor": 0.0}``
        (used by :func:`hmodels.power`). Without it, every parameter must be given.
    what : str
        The argument's name, for messages.

    Returns
    -------
    Params

    Raises
    ------
    SpecificationError
        An unknown key (with the closest labels), a missing parameter, or an impossible value
        (negative SD, |correlation| > 1, a correlation matrix that is not positive semi-definite).

    Examples
    --------
    >>> import hmodels as hm
    >>> d = hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy")).design
    >>> p = parse_params(d, {"Intercept": 250, "Days": 10, "sd(Subject, Intercept)": 25,
    ...                      "sd(Subject, Days)": 6, "cor(Subject)": 0.1, "sigma": 25})
    >>> p.cor["Subject"]
    array([[1. , 0.1],
           [0.1, 1. ]])
    """
    if not isinstance(values, Mapping):
        raise SpecificationError(f"{what} must be a dict of parameter values by label, got {type(values).__name__}.")
    labels = parameter_labels(design)
    by_key = {_canon(p.label): p for p in labels}
    given: dict[str, float] = {}
    matrices: dict[str, np.ndarray] = {}
    for key, val in values.items():
        ck = _canon(key)
        if ck in by_key:
            given[by_key[ck].label] = _scalar(val, key, what)
            continue
        short = _shorthand(design, ck)
        if short is None:
            raise SpecificationError(
                f"{what} has {key!r}, which is not a parameter of this model."
                f"{closest(str(key), [p.label for p in labels])}"
                f" The parameters are: {_fmt_keys(p.label for p in labels)}."
            )
        kind, factor, block = short
        if kind == "sd":
            given[f"sd({factor}, {design.factor(factor).terms[0]})"] = _scalar(val, key, what)
        else:
            terms = [design.factor(factor).terms[i] for i in block]
            arr = np.asarray(val, dtype=float)
            if arr.ndim == 0:
                if len(block) != 2:
                    raise SpecificationError(
                        f"{what}[{key!r}] is one number, but {factor!r} has a correlated block of {len(block)} terms "
                        f"({', '.join(terms)}): give its {len(block)}x{len(block)} correlation matrix, or each "
                        f"correlation as 'cor({factor}, {terms[0]}:{terms[1]})'."
                    )
                given[f"cor({factor}, {terms[0]}:{terms[1]})"] = float(arr)
            elif arr.shape == (len(block), len(block)):
                matrices[factor] = arr
                for a in range(len(block)):
                    for b in range(a + 1, len(block)):
                        given[f"cor({factor}, {terms[a]}:{terms[b]})"] = float(arr[a, b])
            else:
                raise SpecificationError(
                    f"{what}[{key!r}] must be a number or a {len(block)}x{len(block)} correlation matrix (terms "
                    f"{', '.join(terms)}), got shape {arr.shape}."
                )
    fill = dict(fill or {})
    missing = [p.label for p in labels if p.label not in given and p.kind not in fill]
    if missing:
        raise SpecificationError(
            f"{what} is missing {_fmt_keys(missing)}. Give a value for every parameter of the model "
            f"({_fmt_keys(p.label for p in labels)})."
        )
    full = {p.label: given.get(p.label, fill.get(p.kind)) for p in labels}
    return _structure(design, labels, full, what)


def _scalar(val, key, what) -> float:
    try:
        v = float(val)
    except (TypeError, ValueError):
        raise SpecificationError(f"{what}[{key!r}] must be a number, got {val!r}.") from None
    if not np.isfinite(v):
        raise SpecificationError(f"{what}[{key!r}] must be a finite number, got {v}.")
    return v


def _shorthand(design, ck: str):
    """``("sd", factor, None)`` or ``("cor", factor, block)`` for ``sd(g)`` / ``cor(g)``, else None."""
    for f in design.factors:
        if ck == _canon(f"sd({f.factor})") and len(f.terms) == 1:
            return "sd", f.factor, None
        if ck == _canon(f"cor({f.factor})"):
            blocks = [b for b, c in zip(f.blocks, f.correlated) if c]
            if len(blocks) == 1:
                return "cor", f.factor, blocks[0]
    return None


def _structure(design, labels, full: dict, what: str) -> Params:
    p = len(design.fixed_terms)
    beta = np.zeros(p)
    sd, cor, aux = {}, {}, {}
    for f in design.factors:
        sd[f.factor] = np.zeros(len(f.terms))
        cor[f.factor] = np.eye(len(f.terms))
    for lab in labels:
        v = float(full[lab.label])
        if lab.kind == "fixed":
            beta[lab.index[0]] = v
        elif lab.kind == "sd":
            if v < 0:
                raise SpecificationError(f"{what}[{lab.label!r}] is an SD and must be >= 0, got {v}.")
            sd[lab.group][lab.index[0]] = v
        elif lab.kind == "cor":
            if not -1 <= v <= 1:
                raise SpecificationError(f"{what}[{lab.label!r}] is a correlation and must lie in [-1, 1], got {v}.")
            i, j = lab.index
            cor[lab.group][i, j] = cor[lab.group][j, i] = v
        elif lab.index:  # an element of a vector parameter (ordinal thresholds)
            aux.setdefault(lab.kind, np.zeros(sum(q.kind == lab.kind for q in labels)))[lab.index[0]] = v
        else:
            support = _family(design).aux_spec(lab.kind).support
            if support == "unit" and not 0 < v < 1:
                raise SpecificationError(f"{what}[{lab.label!r}] is a probability and must lie in (0, 1), got {v}.")
            if v <= 0:
                raise SpecificationError(f"{what}[{lab.label!r}] must be > 0, got {v}.")
            aux[lab.kind] = v
    for name, value in aux.items():
        if np.ndim(value) and np.any(np.diff(value) <= 0):
            labs = [q.label for q in labels if q.kind == name]
            raise SpecificationError(
                f"{what}: the thresholds {', '.join(labs)} must increase, got {', '.join(f'{x:g}' for x in value)}."
            )
    for name, R in cor.items():
        if np.linalg.eigvalsh(R).min() < -1e-10:
            raise SpecificationError(
                f"The correlations given for {name!r} do not form a valid correlation matrix (it is not positive "
                f"semi-definite):\n{np.round(R, 4)}\nChoose correlations that can hold together (e.g. smaller ones)."
            )
    return Params(beta, sd, cor, aux)


# ------------------------------------------------------------------------------------------------
# priors
# ------------------------------------------------------------------------------------------------
def lkj_corr(eta: float, m: int, rng: np.random.Generator) -> np.ndarray:
    """One m x m correlation matrix from ``LKJ(eta)`` (the onion method of Lewandowski et al. 2009).

    Row ``i`` of the Cholesky factor is ``(sqrt(y_i) u_i, sqrt(1 - y_i))`` with ``u_i`` uniform on
    the unit sphere of dimension ``i`` and ``y_i ~ Beta(i / 2, eta + (m - 2) / 2 - (i - 1) / 2)``.
    Every off-diagonal correlation then has the marginal ``2 Beta(b, b) - 1``, ``b = eta - 1 + m / 2``.

    Examples
    --------
    >>> R = lkj_corr(2.0, 3, np.random.default_rng(0))
    >>> bool(np.allclose(np.diag(R), 1) and np.linalg.eigvalsh(R).min() > 0)
    True
    """
    L = np.zeros((m, m))
    L[0, 0] = 1.0
    for i in range(1, m):
        y = rng.beta(i / 2, eta + (m - 2) / 2 - (i - 1) / 2)
        u = rng.standard_normal(i)
        u /= np.linalg.norm(u)
        L[i, :i] = np.sqrt(y) * u
        L[i, i] = np.sqrt(max(1.0 - y, 0.0))
    R = L @ L.T
    np.fill_diagonal(R, 1.0)
    return R


@functools.lru_cache(maxsize=256)
def _frozen(prior):
    """The prior's frozen scipy distribution (made once: freezing costs more than a draw)."""
    return prior.scipy()


def _cor_prior_label(f, block) -> str:
    if sum(f.correlated) == 1:
        return f"cor({f.factor})"
    return f"cor({f.factor}, {', '.join(f.terms[i] for i in block)})"


def draw_from_priors(design, priors, rng: np.random.Generator) -> Params:
    """One draw of every parameter from a model's priors (the priors its fit samples under).

    With ``intercept_prior="centered"`` the Intercept prior is on the intercept at the
    predictors' means, so the raw intercept is ``b0_c - sum_j mean_j b_j``, as in the sampler.

    Parameters
    ----------
    design : Design
    priors : PriorTable
        ``model.priors``.
    rng : numpy.random.Generator

    Examples
    --------
    >>> import hmodels as hm
    >>> m = hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy"))
    >>> p = draw_from_priors(m.design, m.priors, np.random.default_rng(1))
    >>> sorted(p.flat(m.design))[:2]
    ['Days', 'Intercept']
    """

    def draw(param):
        return float(np.asarray(_frozen(priors[param].prior).rvs(random_state=rng)))

    terms = list(design.fixed_terms)
    beta = np.array([draw(t) for t in terms]) if terms else np.zeros(0)
    if getattr(design, "expression", None) is not None:  # a nonlinear parameter's intercept: at its covariates' means
        from ..nonlinear.design import parameter_centring

        T = parameter_centring(design)[1]
        beta = beta if T is None else T @ beta
    if "Intercept" in terms and priors.intercept_prior == "centered":
        icol = terms.index("Intercept")
        means = np.where(np.arange(len(terms)) == icol, 0.0, design.X.mean(axis=0))
        beta[icol] -= float(means @ beta)
    sd, cor, aux = {}, {}, {}
    for f in design.factors:
        sd[f.factor] = np.array([draw(f"sd({f.factor}, {t})") for t in f.terms])
        R = np.eye(len(f.terms))
        for block, c in zip(f.blocks, f.correlated):
            if c:
                eta = float(priors[_cor_prior_label(f, block)].prior.params["eta"])
                idx = np.asarray(block)
                R[np.ix_(idx, idx)] = lkj_corr(eta, len(block), rng)
        cor[f.factor] = R
    fam = _family(design)
    for a in family_aux(design):
        if fam.aux_spec(a).is_vector:  # ordered thresholds: the sorted independent draws (see prior_checks)
            aux[a] = np.sort([draw(a) for _ in range(len(design.response_levels) - 1)])
            shift_means = threshold_shift_means(design, priors.intercept_prior)
            if shift_means is not None:  # the prior is on the thresholds at the predictors' means
                aux[a] = aux[a] + float(shift_means @ beta)
        else:
            aux[a] = draw(a)
    return Params(beta, sd, cor, aux)

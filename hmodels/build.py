"""ModelSpec + Design + priors -> ``pm.Model``.

One place decides the parameterisation of every grouping factor (non-centred by default).
Named dims: ``term`` (population-level terms), ``<factor>`` (levels), ``<factor>__term``
(group-specific terms), ``obs`` (observations).

Variables in the posterior:

- ``b`` (term): population-level coefficients; the Intercept is the raw intercept (predictors as
  given) whatever the intercept prior was placed on.
- ``sd_<factor>`` (<factor>__term): group SDs; ``cor_<factor>``: correlation matrix of a
  correlated block; ``r_<factor>`` (<factor>, <factor>__term): group-specific deviations.
- ``sigma``, ``nu``, ``alpha``: family parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import SpecificationError
from .parameterisation import resolve_centering
from .families import get_family, inverse_link
from .priors.distributions import Prior
from .priors.resolve import PriorTable

__all__ = ["BuiltModel", "build_model", "resolve_centering", "obs_name"]


@dataclass
class BuiltModel:
    """A PyMC model with the names hmodels needs to read its draws."""

    model: object
    centered: dict[str, bool]
    observed: str
    group_vars: dict[str, str] = field(default_factory=dict)
    cor_vars: dict[str, list[tuple[str, list[str]]]] = field(default_factory=dict)


def obs_name(spec) -> str:
    """Name of the observed variable (the response column)."""
    return spec.response


def _vector_rv(name: str, priors: list[Prior], dims: str | None, pm):
    """One RV when all priors are of one kind (vectorised parameters), else one per kind, stacked."""
    import pytensor.tensor as pt

    kinds: dict[str, list[int]] = {}
    for i, p in enumerate(priors):
        kinds.setdefault(p.name, []).append(i)
    if len(kinds) == 1:
        p0 = priors[0]
        params = {k: np.array([p.params[k] for p in priors]) for k in p0.params}
        return p0.pymc_class()(name, **params, dims=dims)
    parts = [None] * len(priors)
    for kind, idx in kinds.items():
        p0 = priors[idx[0]]
        params = {k: np.array([priors[i].params[k] for i in idx]) for k in p0.params}
        rv = p0.pymc_class()(f"{name}_{kind}", **params, shape=len(idx))
        for j, i in enumerate(idx):
            parts[i] = rv[j]
    return pm.Deterministic(name, pt.stack(parts), dims=dims)


def build_model(design, priors: PriorTable, centered=False) -> BuiltModel:
    """Build the PyMC model.

    Parameters
    ----------
    design : Design
    priors : PriorTable
    centered : bool, "auto" or dict
        Centred (``True``) or non-centred (``False``) group effects, globally or per factor; ``"auto"``
        decides per factor from the data (:mod:`hmodels.parameterisation`).

    Returns
    -------
    BuiltModel

    Examples
    --------
    >>> import hmodels as hm
    >>> m = hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy"))
    >>> sorted(m.pymc_model.coords)[:3]
    ['Subject', 'Subject__term', 'cor_Subject__col']
    """
    import pymc as pm
    import pytensor.tensor as pt

    spec = design.spec
    fam = get_family(spec.family, spec.link)
    centering = resolve_centering(design, centered)
    coords = {"term": list(design.fixed_terms), "obs": np.arange(design.n)}
    for f in design.factors:
        coords[f.factor] = list(f.levels)
        coords[f"{f.factor}__term"] = list(f.terms)
    by_param = {r.slot.param: r.prior for r in priors}
    built = BuiltModel(None, centering, obs_name(spec))
    with pm.Model(coords=coords) as model:
        eta = pt.zeros(design.n)
        # population level
        if design.fixed_terms:
            eta = eta + _fixed_effects(design, by_param, priors.intercept_prior, pm, pt)
        # group level
        for f in design.factors:
            r = _group_effects(f, by_param, centering[f.factor], built, pm, pt)
            Z = f.Z
            codes = f.codes
            if Z.shape[1] == 1 and np.all(Z[:, 0] == 1.0):
                eta = eta + r[codes, 0]
            else:
                eta = eta + (pt.as_tensor_variable(Z) * r[codes]).sum(axis=1)
        _likelihood(design, fam, eta, by_param, built.observed, pm, pt)
    built.model = model
    return built


def _fixed_effects(design, by_param, intercept_prior, pm, pt):
    X = design.X
    terms = design.fixed_terms
    has_int = design.has_intercept
    slopes = [t for t in terms if t != "Intercept"]
    if not has_int or intercept_prior == "raw":
        b = _vector_rv("b", [by_param[t] for t in terms], "term", pm)
        return pt.dot(pt.as_tensor_variable(X), b)
    # centred: prior on the intercept at the predictors' means
    means = design.x_means[1:]
    Xc = X[:, 1:] - means
    b0c = by_param["Intercept"].pymc_class()("Intercept_centered", **by_param["Intercept"].params)
    if slopes:
        coords_name = "slope_term"
        pm.modelcontext(None).add_coord(coords_name, slopes)
        bs = _vector_rv("b_slopes", [by_param[t] for t in slopes], coords_name, pm)
        b0 = b0c - pt.dot(means, bs)
        pm.Deterministic("b", pt.concatenate([b0[None], bs]), dims="term")
        return b0c + pt.dot(pt.as_tensor_variable(Xc), bs)
    pm.Deterministic("b", b0c[None], dims="term")
    return b0c + pt.zeros(design.n)


def _group_sd(f, by_param, pm):
    """``sd_<factor>``: the SDs of one factor's group-specific terms (shared with the collapsed model)."""
    return _vector_rv(f"sd_{f.factor}", [by_param[f"sd({f.factor}, {t})"] for t in f.terms], f"{f.factor}__term", pm)


def _cor_cholesky(f, k, block, n_cor, by_param, pm, pt):
    """LKJ prior on correlated block ``k`` of a factor: its Cholesky factor, ``cor_`` name and labels."""
    name = f.factor
    label = f"cor({name})" if n_cor == 1 else f"cor({name}, {', '.join(f.terms[i] for i in block)})"
    cname = f"cor_{name}" if n_cor == 1 else f"cor_{name}_{k}"
    eta = by_param[label].params["eta"]
    L = pm.LKJCorr(f"L_{cname}", n=len(block), eta=eta)
    model = pm.modelcontext(None)
    blabels = [f.terms[i] for i in block]
    model.add_coord(f"{cname}__row", blabels)
    model.add_coord(f"{cname}__col", blabels)
    pm.Deterministic(cname, pt.dot(L, L.T), dims=(f"{cname}__row", f"{cname}__col"))
    return L, cname, blabels


def _group_effects(f, by_param, centered, built, pm, pt):
    name = f.factor
    sd = _group_sd(f, by_param, pm)
    built.group_vars[name] = f"r_{name}"
    cors = []
    n_cor = sum(f.correlated)
    pieces = []
    if not centered:
        z = pm.Normal(f"z_{name}", 0.0, 1.0, dims=(name, f"{name}__term"))
    single = len(f.blocks) == 1
    for k, (block, cor) in enumerate(zip(f.blocks, f.correlated)):
        idx = np.array(block)
        rv_name = f"r_{name}" if single else f"r_{name}_{k}"
        rv_shape = {"dims": (name, f"{name}__term")} if single else {"shape": (len(f.levels), len(block))}
        if cor:
            L, cname, blabels = _cor_cholesky(f, k, block, n_cor, by_param, pm, pt)
            cors.append((cname, blabels))
            if centered:
                chol = sd[idx][:, None] * L
                piece = pm.MvNormal(rv_name, mu=np.zeros(len(block)), chol=chol, **rv_shape)
            else:
                piece = pt.dot(z[:, idx], L.T) * sd[idx]
        else:
            if centered:
                piece = pm.Normal(rv_name, 0.0, sd[idx], **rv_shape)
            else:
                piece = z[:, idx] * sd[idx]
        pieces.append(piece)
    built.cor_vars[name] = cors
    if centered and single:
        return pieces[0]  # the centred RV is r_<factor> itself
    r = pieces[0] if single else pt.concatenate(pieces, axis=1)
    return pm.Deterministic(f"r_{name}", r, dims=(name, f"{name}__term"))


def _likelihood(design, fam, eta, by_param, obs, pm, pt):
    y = design.y
    kw = {"observed": y, "dims": "obs"}
    aux = {}
    for a in fam.aux:
        if a == "sigma" and design.se is not None:
            continue
        p = by_param[a]
        aux[a] = p.pymc_class()(a, **p.params)
    if fam.name in ("gaussian", "student_t"):
        mu = eta if fam.link == "identity" else pt.exp(eta)
        sigma = aux.get("sigma", design.se)
        if fam.name == "gaussian":
            pm.Normal(obs, mu=mu, sigma=sigma, **kw)
        else:
            pm.StudentT(obs, nu=aux["nu"], mu=mu, sigma=sigma, **kw)
    elif fam.name == "bernoulli":
        if fam.link == "logit":
            pm.Bernoulli(obs, logit_p=eta, **kw)
        else:
            pm.Bernoulli(obs, p=_clip(inverse_link(fam.link, eta), pt), **kw)
    elif fam.name == "binomial":
        if fam.link == "logit":
            pm.Binomial(obs, n=design.trials, logit_p=eta, **kw)
        else:
            pm.Binomial(obs, n=design.trials, p=_clip(inverse_link(fam.link, eta), pt), **kw)
    elif fam.name == "poisson":
        pm.Poisson(obs, mu=pt.exp(eta), **kw)
    elif fam.name == "negativebinomial":
        pm.NegativeBinomial(obs, mu=pt.exp(eta), alpha=aux["alpha"], **kw)
    else:  # pragma: no cover - families are validated earlier
        raise SpecificationError(f"No likelihood for family {fam.name!r}.")


def _clip(p, pt):
    return pt.clip(p, 1e-12, 1 - 1e-12)

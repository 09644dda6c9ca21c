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

from .families import get_family
from .families.ordinal import threshold_shift_means
from .parameterisation import resolve_centering
from .priors.distributions import Prior
from .priors.resolve import PriorTable

__all__ = ["BuiltModel", "build_model", "resolve_centering", "obs_name", "collapsed_crossproducts"]


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


def _scaled(prior, scale):
    """Sampling-space options for a real-line prior: NUTS sees ``value / scale`` (unit scale), exactly.

    A coefficient of a response measured in nanoseconds (or of a predictor in years since 1970)
    lives on a scale of 1e-9 or 1e9; PyMC starts and adapts every sampled value near unit scale,
    so the graph samples ``value / scale`` through an exact linear transform instead. The prior is
    unchanged (the transform's Jacobian is accounted for). Bounded priors keep their own transform.
    """
    if scale is None or prior.support != "real" or prior.name == "Uniform":
        return {}
    from pymc.logprob.transforms import ScaleTransform

    inverse = np.asarray(1.0 / np.asarray(scale, dtype=float))
    return {"default_transform": ScaleTransform(lambda *inputs: inverse)}


def _vector_rv(name: str, priors: list[Prior], dims: str | None, pm, scales=None):
    """One RV when all priors are of one kind (vectorised parameters), else one per kind, stacked.

    ``scales`` (one per parameter): the natural scale of each, sampled as ``value / scale``.
    """
    import pytensor.tensor as pt

    kinds: dict[str, list[int]] = {}
    for i, p in enumerate(priors):
        kinds.setdefault(p.name, []).append(i)
    if len(kinds) == 1:
        p0 = priors[0]
        params = {k: np.array([p.params[k] for p in priors]) for k in p0.params}
        return p0.pymc_class()(name, **params, dims=dims, **_scaled(p0, scales))
    parts = [None] * len(priors)
    for kind, idx in kinds.items():
        p0 = priors[idx[0]]
        params = {k: np.array([priors[i].params[k] for i in idx]) for k in p0.params}
        sub = None if scales is None else np.asarray(scales)[idx]
        rv = p0.pymc_class()(f"{name}_{kind}", **params, shape=len(idx), **_scaled(p0, sub))
        for j, i in enumerate(idx):
            parts[i] = rv[j]
    return pm.Deterministic(name, pt.stack(parts), dims=dims)


def coefficient_scales(design) -> tuple[float, np.ndarray]:
    """Natural scales: of the response on the link scale (``sd(y)`` for identity links, else 1) and of each coefficient.

    A coefficient's scale is the response scale over its column's spread (about the column mean
    when there is an intercept); the intercept's is the response scale.
    """
    from .families import get_family

    fam = get_family(design.spec.family, design.spec.link)
    y = np.asarray(design.y, dtype=float)
    on_link = fam.link_scale_response(y, "") if fam.link == "identity" else None
    y = np.asarray(on_link[0], dtype=float) if on_link else y  # the lognormal: log y
    if design.offset is not None and fam.link == "identity":
        y = y - design.offset  # what the coefficients explain
    s_y = float(np.std(y)) if fam.link == "identity" and len(y) > 1 else 1.0
    s_y = s_y if np.isfinite(s_y) and s_y > 0 else 1.0
    X = design.X
    # about the column mean where the model has an intercept or ordinal thresholds (which take its place)
    about_mean = design.has_intercept or getattr(design, "response_levels", None) is not None
    spread = X.std(axis=0) if about_mean else np.sqrt((X**2).mean(axis=0))
    out = np.where(spread > 0, s_y / np.where(spread > 0, spread, 1.0), s_y)
    return s_y, out


def build_model(design, priors: PriorTable, centered=False, collapse: str | None = None,
                prior_only: bool = False, laplace: str | None = None) -> BuiltModel:
    """Build the PyMC model.

    Parameters
    ----------
    design : Design
    priors : PriorTable
    centered : bool, "auto" or dict
        Centred (``True``) or non-centred (``False``) group effects, globally or per factor; ``"auto"``
        decides per factor from the data (:mod:`hmodels.parameterisation`).
    collapse : str, optional
        A grouping factor whose effects are integrated out analytically (gaussian, identity link):
        the likelihood is then ``N(y | eta, Z_c Λ Λᵀ Z_cᵀ + σ² I)`` with ``eta`` every other term,
        evaluated on the residual ``y - eta`` row by row (no cross-products of the raw response, so
        the location of the data cannot cost precision). ``sd_<collapse>`` and ``cor_<collapse>``
        are sampled; its effects are drawn afterwards (:func:`hmodels.pymc_backend.sample_pymc`).
    prior_only : bool
        Leave the likelihood out: the model's draws are then draws from the priors (brms's
        ``sample_prior = "only"``).
    laplace : str, optional
        A factor with random intercepts only whose effects are integrated out by the Laplace
        approximation (:mod:`hmodels.laplace`); its SD is sampled, its effects drawn afterwards.

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
    s_y, _ = coefficient_scales(design)
    built = BuiltModel(None, centering, obs_name(spec))
    with pm.Model(coords=coords) as model:
        eta = pt.zeros(design.n)
        if design.offset is not None:  # coefficient exactly 1 (also in the collapsed likelihood, through y - eta)
            eta = eta + pt.as_tensor_variable(np.asarray(design.offset, dtype=float))
        # population level
        shift_means = threshold_shift_means(design, priors.intercept_prior)
        threshold_shift = None
        if shift_means is not None:  # ordinal: the thresholds' prior at the predictors' means (as brms)
            _, scales = coefficient_scales(design)
            b = _vector_rv("b", [by_param[t] for t in design.fixed_terms], "term", pm, scales=scales)
            eta = eta + pt.dot(pt.as_tensor_variable(design.X - shift_means), b)
            threshold_shift = pt.dot(shift_means, b)
        elif design.fixed_terms:
            eta = eta + _fixed_effects(design, by_param, priors.intercept_prior, pm, pt)
        # group level
        collapsed = lap = None
        for f in design.factors:
            if f.factor == collapse:
                collapsed = (f, _collapsed_B(f, by_param, built, pm, pt))
                continue
            if f.factor == laplace:  # its SD is sampled; its effects are integrated out approximately
                lap = (f, _group_sd(f, by_param, pm)[0])
                continue
            r = _group_effects(f, by_param, centering[f.factor], built, pm, pt, response_scale=s_y)
            Z = f.Z
            codes = f.codes
            if Z.shape[1] == 1 and np.all(Z[:, 0] == 1.0):
                eta = eta + r[codes, 0]
            else:
                eta = eta + (pt.as_tensor_variable(Z) * r[codes]).sum(axis=1)
        dvals = {}
        if getattr(design, "dpars", None):  # parameters with their own formula: per-row values
            from .dpars import inverse_link

            if collapse is not None:
                raise ValueError("A factor cannot be integrated out when a family parameter has its own formula.")
            for name, dd in design.dpars.items():
                dvals[name] = inverse_link(dd.link, pymc_dpar(design, dd, by_param, priors.intercept_prior, built,
                                                              pm, pt))
        if collapsed is None:
            _likelihood(design, fam, eta, by_param, built.observed, pm, pt, prior_only=prior_only, dpars=dvals,
                        threshold_shift=threshold_shift, laplace=lap)
        else:
            _collapsed_likelihood(design, *collapsed, eta, by_param, pm, pt)
    built.model = model
    return built


# -- distributional parameters with their own formulas (hmodels.dpars builds their designs)
def _param_map(dd, by_param: dict) -> dict:
    """by_param with each renamed factor's SD keys (``sd(g__sigma, sigma_x)``) pointing at ``sd(g, sigma_x)``."""
    out = dict(by_param)
    for f in dd.factors:
        g = dd.origin[f.factor]
        for t in f.terms:
            out[f"sd({f.factor}, {t})"] = by_param[f"sd({g}, {t})"]
    return out


def pymc_dpar(design, dd, by_param: dict, intercept_prior: str, built, pm, pt):
    """The PyMC linear predictor of one distributional parameter, on its link scale (n,).

    Examples
    --------
    >>> import hmodels as hm
    >>> m = hm.Model("Reaction ~ Days", hm.datasets.load("sleepstudy"), dpars={"sigma": "Days"})
    >>> sorted(v.name for v in m.pymc_model.free_RVs)
    ['Intercept_centered', 'Intercept_sigma_centered', 'b_sigma_slopes', 'b_slopes']
    """
    model = pm.modelcontext(None)
    name = dd.name
    dim = f"b_{name}__term"
    model.add_coord(dim, list(dd.fixed_terms))
    X = dd.X
    spread = X.std(axis=0) if dd.has_intercept else np.sqrt((X**2).mean(axis=0))
    scales = np.where(spread > 0, 1.0 / np.where(spread > 0, spread, 1.0), 1.0)
    priors = [by_param[t] for t in dd.fixed_terms]
    if not dd.has_intercept or intercept_prior == "raw" or len(dd.fixed_terms) == 1:
        b = _vector_rv(f"b_{name}", priors, dim, pm, scales=scales)
        eta = pt.dot(pt.as_tensor_variable(X), b)
    else:  # the intercept prior on the intercept at the predictors' means, as the mean's
        means = dd.x_means[1:]
        pi = priors[0]
        b0c = pi.pymc_class()(f"Intercept_{name}_centered", **pi.params, **_scaled(pi, 1.0))
        sdim = f"b_{name}__slope_term"
        model.add_coord(sdim, list(dd.fixed_terms[1:]))
        bs = _vector_rv(f"b_{name}_slopes", priors[1:], sdim, pm, scales=scales[1:])
        pm.Deterministic(f"b_{name}", pt.concatenate([(b0c - pt.dot(means, bs))[None], bs]), dims=dim)
        eta = b0c + pt.dot(pt.as_tensor_variable(X[:, 1:] - means), bs)
    mapped = _param_map(dd, by_param)
    for f in dd.factors:
        model.add_coord(f.factor, list(f.levels))
        model.add_coord(f"{f.factor}__term", list(f.terms))
        r = _group_effects(f, mapped, False, built, pm, pt, response_scale=1.0)
        eta = eta + (pt.as_tensor_variable(f.Z) * r[f.codes]).sum(axis=1)
    return eta


def _fixed_effects(design, by_param, intercept_prior, pm, pt):
    X = design.X
    terms = design.fixed_terms
    has_int = design.has_intercept
    slopes = [t for t in terms if t != "Intercept"]
    s_y, scales = coefficient_scales(design)
    if not has_int or intercept_prior == "raw":
        b = _vector_rv("b", [by_param[t] for t in terms], "term", pm, scales=scales)
        return pt.dot(pt.as_tensor_variable(X), b)
    # centred: prior on the intercept at the predictors' means
    means = design.x_means[1:]
    Xc = X[:, 1:] - means
    pi = by_param["Intercept"]
    b0c = pi.pymc_class()("Intercept_centered", **pi.params, **_scaled(pi, s_y))
    if slopes:
        coords_name = "slope_term"
        pm.modelcontext(None).add_coord(coords_name, slopes)
        bs = _vector_rv("b_slopes", [by_param[t] for t in slopes], coords_name, pm, scales=scales[1:])
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


def _vector_scale_transform():
    from pymc.logprob.transforms import ScaleTransform

    class VectorScale(ScaleTransform):
        """``value * scale`` per element of a multivariate value (Jacobian summed over its last axis)."""

        ndim_supp = 1

        def log_jac_det(self, value, *inputs):
            return super().log_jac_det(value, *inputs).sum(axis=-1)

    return VectorScale


def _VectorScale(fn):
    return _vector_scale_transform()(fn)


def _group_effects(f, by_param, centered, built, pm, pt, response_scale: float = 1.0):
    """Group effects of one factor (centred or non-centred), sampled at their natural scale."""
    from pymc.logprob.transforms import ScaleTransform

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
                rms = np.sqrt((f.Z[:, idx] ** 2).mean(axis=0))
                term_scale = response_scale / np.where(rms > 0, rms, 1.0)
                piece = pm.MvNormal(rv_name, mu=np.zeros(len(block)), chol=chol, **rv_shape,
                                    default_transform=_VectorScale(lambda *a, inv=1.0 / term_scale: inv))
            else:
                piece = pt.dot(z[:, idx], L.T) * sd[idx]
        else:
            if centered:
                rms = np.sqrt((f.Z[:, idx] ** 2).mean(axis=0))
                term_scale = response_scale / np.where(rms > 0, rms, 1.0)
                piece = pm.Normal(rv_name, 0.0, sd[idx], **rv_shape,
                                  default_transform=ScaleTransform(lambda *a, inv=1.0 / term_scale: inv))
            else:
                piece = z[:, idx] * sd[idx]
        pieces.append(piece)
    built.cor_vars[name] = cors
    if centered and single:
        return pieces[0]  # the centred RV is r_<factor> itself
    r = pieces[0] if single else pt.concatenate(pieces, axis=1)
    return pm.Deterministic(f"r_{name}", r, dims=(name, f"{name}__term"))


def _collapsed_B(f, by_param, built, pm, pt):
    """``B = diag(sd) L`` (k × k) of an integrated-out factor: its SDs and LKJ Cholesky factors."""
    sd = _group_sd(f, by_param, pm)
    n_cor = sum(f.correlated)
    B = pt.diag(sd)
    cors = []
    for j, (block, cor) in enumerate(zip(f.blocks, f.correlated)):
        if cor:
            idx = np.array(block)
            L, cname, blabels = _cor_cholesky(f, j, block, n_cor, by_param, pm, pt)
            cors.append((cname, blabels))
            B = pt.set_subtensor(B[idx[:, None], idx[None, :]], sd[idx][:, None] * L)
    built.cor_vars[f.factor] = cors
    return B


def collapsed_crossproducts(design, f) -> tuple[np.ndarray, np.ndarray]:
    """Row weights ``w`` (1, or 1/se²) and per-level ``A_l = Σ_i w_i z_i z_iᵀ`` (levels, k, k) of factor ``f``.

    These do not involve the response, so they are exact whatever its location and scale.
    """
    w = 1.0 / design.se**2 if design.se is not None else np.ones(design.n)
    k = f.Z.shape[1]
    A = np.zeros((f.n_levels, k, k))
    np.add.at(A, f.codes, (f.Z * w[:, None])[:, :, None] * f.Z[:, None, :])
    return w, A


def _collapsed_likelihood(design, f, B, eta, by_param, pm, pt):
    """``log N(y | eta, Z_c B Bᵀ Z_cᵀ + diag(1/(s w)))`` by Woodbury, per level of the integrated factor.

    With ``e = y - eta``, ``s = 1/σ²`` (1 for known se) and ``M_l = I + s Bᵀ A_l B``:
    ``log|V| = -n log s - Σ log w + Σ_l log|M_l|`` and
    ``eᵀV⁻¹e = s Σ w e² - s² Σ_l c_lᵀ M_l⁻¹ c_l`` with ``c_l = Bᵀ Σ_{i∈l} w_i z_i e_i``.
    """
    w, A = collapsed_crossproducts(design, f)
    n, k, L = design.n, f.Z.shape[1], f.n_levels
    if design.se is not None:
        s = pt.as_tensor_variable(1.0)
        logdet_noise = -float(np.log(w).sum())
    else:
        p = by_param["sigma"]
        sigma = p.pymc_class()("sigma", **p.params)
        s = 1.0 / sigma**2
        logdet_noise = 2.0 * n * pt.log(sigma) - float(np.log(w).sum())
    fam = get_family(design.spec.family, design.spec.link)
    y = np.asarray(fam.engine_outcome(design.y.astype(float)), dtype=float)  # log y for the lognormal
    const = fam.loglik_constant(design.y.astype(float), design.trials, w, design.se is not None, True)
    e = pt.as_tensor_variable(y) - eta
    eOe = (w * e**2).sum()
    Zte = pt.inc_subtensor(pt.zeros((L, k))[f.codes], pt.as_tensor_variable(f.Z * w[:, None]) * e[:, None])
    M = pt.eye(k) + s * pt.matmul(pt.matmul(B.T, A), B)  # (L, k, k)
    c = pt.dot(Zte, B)  # rows: Bᵀ (Zᵀ W e)_l
    if k == 1:
        m = M[:, 0, 0]
        logdet, quad = pt.log(m).sum(), (c[:, 0] ** 2 / m).sum()
    else:
        C = pt.linalg.cholesky(M)
        v = pt.linalg.solve_triangular(C, c[..., None], lower=True)
        logdet = 2.0 * pt.log(pt.diagonal(C, axis1=-2, axis2=-1)).sum()
        quad = (v**2).sum()
    pm.Potential("marginal_loglik", const
                 - 0.5 * (n * np.log(2 * np.pi) + logdet_noise + logdet + s * eOe - s**2 * quad))


def _likelihood(design, fam, eta, by_param, obs, pm, pt, prior_only: bool = False, dpars=None,
                threshold_shift=None, laplace=None):
    """The family's own parameters (with their priors) and its observed likelihood (the family owns it).

    ``dpars``: per-row values (n,) of the parameters with their own formula (:mod:`hmodels.dpars`).
    ``threshold_shift``: ``means @ b`` of an ordinal model whose ``eta`` uses centred predictors; the
    sampled ``cutpoints_centered`` carry the prior and ``cutpoints`` (as reported) are them plus the shift.
    ``laplace``: ``(factor, its SD)`` of a factor whose random intercepts the Laplace approximation integrates
    out (:func:`hmodels.laplace.laplace_marginal`) in place of the observed likelihood.
    """
    aux = {}
    for a in fam.aux:
        if a == "sigma" and design.se is not None:
            continue
        if a == "cutpoints" and threshold_shift is not None:
            aux[a] = fam.pymc_aux("cutpoints_centered", by_param[a], design)
            pm.Deterministic("cutpoints", aux[a] + threshold_shift, dims="cutpoint")
            continue
        aux[a] = dpars[a] if dpars and a in dpars else fam.pymc_aux(a, by_param[a], design)
    if prior_only:
        return
    if laplace is not None:
        from .laplace import laplace_marginal

        f, sd = laplace
        pm.Potential("laplace_marginal_loglik", laplace_marginal(fam, eta, aux, design.y, design.trials, f.codes,
                                                                 f.n_levels, sd))
        return
    spec = design.spec
    if spec.cens is None and spec.trunc is None and design.weights is None:
        fam.pymc_likelihood(obs, eta, aux, design.y, trials=design.trials, se=design.se)
        return
    # censoring / truncation / weights: the family's distribution object, wrapped (pm.Censored, pm.Truncated)
    dist = fam.pymc_dist(eta, aux, trials=design.trials, se=design.se)
    y = design.y
    if spec.trunc is not None and design.weights is not None:  # each row: (log f(y) - log P(lb <= y <= ub)) w
        # (pm.logp of a one-sided pm.Truncated has NaN gradients: the normaliser's infinite bound; built here)
        base = pm.modelcontext(None).replace_rvs_by_values([dist])[0]
        lp = pm.logp(base, y) - _truncation_log_mass(base, spec.trunc, fam.discrete)
        pm.Potential(f"{obs}_weighted_loglik", (design.weights * lp).sum())
        return
    if spec.trunc is not None:
        lb, ub = spec.trunc
        dist = pm.Truncated.dist(dist, lower=lb, upper=ub)
    if design.cens is not None:
        lower = np.where(design.cens == -1, y, -np.inf) if (design.cens == -1).any() else None
        upper = np.where(design.cens == 1, y, np.inf) if (design.cens == 1).any() else None
        dist = pm.Censored.dist(dist, lower=lower, upper=upper)
    if design.weights is None:
        pm.modelcontext(None).register_rv(dist, obs, observed=y, dims=("obs",))
    else:  # brms's weights(): each row's log-likelihood times its weight
        # the parameters' value variables in place of their random variables first: pm.logp of a Censored
        # (or Truncated) distribution clones ("lifts") them, and the clones would be drawn at random
        dist = pm.modelcontext(None).replace_rvs_by_values([dist])[0]
        pm.Potential(f"{obs}_weighted_loglik", (design.weights * pm.logp(dist, y)).sum())


def _truncation_log_mass(dist, trunc, discrete: bool):
    """PyTensor ``log P(lb <= y <= ub)`` under ``dist`` (counts: the bounds included), each side only where given."""
    import pymc as pm
    from pymc.math import logdiffexp

    lb, ub = trunc
    below = None if lb is None else (lb - 1 if discrete else lb)
    if ub is None:
        return pm.logccdf(dist, below)
    if below is None:
        return pm.logcdf(dist, ub)
    return logdiffexp(pm.logcdf(dist, ub), pm.logcdf(dist, below))

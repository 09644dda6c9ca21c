"""Centred or non-centred group effects, chosen per grouping factor from the data.

NUTS struggles with a hierarchical posterior in one of two shapes. When each level's data say
little about its effects, they are pinned to the population SD and the *centred* form
``r_l ~ N(0, sd)`` is a funnel; the *non-centred* form ``r_l = sd * z_l`` removes it. When each
level is well informed, the non-centred form couples ``z_l`` and ``sd`` tightly instead, and the
centred form is the easy one (Papaspiliopoulos, Roberts & Sköld 2007; Betancourt & Girolami 2015).

The deciding quantity is how informative a level's data are about each of its effects, relative
to the population distribution: ``ratio = tau_t^2 / v_lt``, where ``v_lt`` is the sampling
variance of level ``l``'s own estimate of term ``t`` (weighted least squares on the working
response of one IRLS step, so the same rule serves gaussian, binomial and count models; positive and
unit-interval continuous outcomes — gamma, lognormal, beta, ... — by least squares on the outcome
mapped onto the link scale, ``g(y)``) and
``tau_t^2`` a moment estimate of the between-level variance of that term (``var_l`` of the
estimates minus their mean sampling variance, floored at 0). ``centered="auto"`` centres a factor
when, for every one of its terms, the median ratio over levels is at least :data:`CENTRE_AT`;
otherwise — including whenever a term shows no between-level variation — it stays non-centred.
With crossed factors each factor's level estimates are taken net of the others (backfitting); a
factor that is integrated out analytically counts as noise for the others.

Measured with hmodels' sampler (4 x 1000 draws, min bulk ESS of coefficients and SDs): cbpp
``(1 | herd)`` ratio 2.8, centred 3164 vs non-centred 1411; penicillin ``(1 | sample)`` ratio
87, centred 3365 vs 306; pastes ``(1 | batch)`` with casks integrated out, ratio 1.3, non-centred
1178 (no divergences) vs centred 272 (divergences); a poisson ``(x | g)`` with no slope variance,
non-centred 669 vs centred 18.

Nested factors (issue 14; ``benchmarks/hard.py``, ``benchmarks/hard_nesting.py``, results in
``benchmarks/results/``). On the nested poisson GLMMs of ``tests/hard`` (120 broods of 1-6 rows
nested two per location in 60 locations; and lme4's grouseticks, 118 broods in 63 locations) the
rule centres the inner factor (broods, ratio 8-12) and leaves the outer one non-centred (its
backfitted level estimates carry no variation once the broods are fitted: ratio 0). Per-factor
choices, 4 x 1000 draws, seeds 1-2, min bulk ESS of coefficients and SDs: this rule 122-219
(R-hat up to 1.033, 1-6 divergences); all non-centred 125-278 (up to 1.030, 0-6); all centred
43-71 (up to 1.071). No per-factor choice converges, so the rule is unchanged; the bottleneck is
the outer SD. Hierarchical centring (the brood effects sampled centred on every term constant
within a brood: intercept, brood-level coefficients and the location effect; PyMC prototype in
``benchmarks/hard_nesting.py``) gave 374 and 657 on the simulation (vs 207 and 97 for this rule's
parameterisation in the same prototype) and 236 and 224 on grouseticks (vs 216 and 224), with no
divergences (vs 0-7); centring the location effects too failed (ESS 12, 318 divergences).

The compiled engine does this (:func:`hierarchical_factors`, ``hier_forward`` in
``hmodels/engine/kernels.c``): a centred intercept-only factor nested in another, with no factor
integrated out, is sampled as ``v_l = r_l + m_l``, ``m_l`` the level-constant coefficients' part of
the linear predictor plus the effects of the factors it is nested in; the outer factor keeps the
rule's choice. Measured (``benchmarks/results/hard_hier_*.md``; 4 x 1000 draws, min bulk ESS of
coefficients and SDs, off -> on): nested poisson seeds 1-4 219/146/86/452 -> 259/296/351/280,
grouseticks 122/184/171/102 -> 282/246/110/333, divergences 12 -> 0 in total, largest R-hat
1.063 -> 1.035, sampling 1.2-2.4 s -> 0.5-2.2 s. The bottleneck left is the outer SD (its
effects non-centred; centring them as well: ESS 13-160, R-hat up to 1.23). Nested models with
well-informed inner levels gain more: poisson with 20 rows per inner level 388/316 -> 1410/1047
(7 and 7 divergences -> 0), bernoulli with 30 rows 369/168 -> 727/615. No model of
``benchmarks/run.py`` qualifies (none is nested, and gaussian ones integrate a factor out), so it
is on (:data:`HIERARCHICAL`); pastes sampled jointly (``method="joint"``, not the default) is about even
(ESS 379/271 -> 294/305, divergences 0/6 -> 4/3).
"""

from __future__ import annotations

import numpy as np

from .errors import SpecificationError
from .families import LINKS, get_family

__all__ = ["resolve_centering", "information_ratios", "hierarchical_factors", "CENTRE_AT", "HIERARCHICAL"]

#: Median information ratio (for every term of a factor) from which ``centered="auto"`` centres it.
CENTRE_AT = 2.0

#: Whether the compiled engine samples a centred intercept-only factor nested in another one hierarchically
#: centred (:func:`hierarchical_factors`).
HIERARCHICAL = True


def _unit_weights(design) -> bool:
    """The working residuals have unit weights, rescaled by the within-level residual variance later."""
    fam = get_family(design.spec.family, design.spec.link)
    on_link = fam.link_scale_response(np.asarray(design.y, dtype=float), "")
    return design.se is None and (fam.link == "identity" or on_link is not None)


def _working(design):
    """Working residuals r = (y - mu) / mu'(eta) and weights w = mu'^2 / Var(y) of a pooled GLM fit."""
    fam = get_family(design.spec.family, design.spec.link)
    y = np.asarray(design.y, dtype=float)
    X = design.X if design.X.shape[1] else np.ones((len(y), 1))
    off = np.zeros(len(y)) if design.offset is None else np.asarray(design.offset, dtype=float)
    on_link = fam.link_scale_response(y, "")  # g(y) for positive / unit-interval continuous outcomes
    if fam.link == "identity" or on_link is not None:
        z = (y if on_link is None else on_link[0]) - off  # the offset enters with coefficient 1
        beta, *_ = np.linalg.lstsq(X, z, rcond=None)
        r = z - X @ beta
        if design.se is not None:
            return r, 1.0 / design.se**2
        return r, np.ones(len(y))  # rescaled by the within-level residual variance later
    trials = design.trials if design.trials is not None else np.ones_like(y)
    binary = fam.outcome in ("binary", "binomial")
    mean = (y.sum() + 0.5) / (trials.sum() + 1.0) if binary else (y.mean() + 0.1)
    eta = np.full(len(y), _link(fam.link, mean)) + off - off.mean()
    for _ in range(8):  # IRLS, with the offset (coefficient 1) in eta and out of the working response
        mu, dmu = _inverse(fam.link, eta)
        var = trials * mu * (1 - mu) if binary else mu
        w = np.maximum(dmu**2 * (trials**2 if binary else 1.0) / np.maximum(var, 1e-12), 1e-12)
        z = eta - off + (y - (trials * mu if binary else mu)) / np.maximum(dmu * (trials if binary else 1.0), 1e-12)
        sw = np.sqrt(w)
        beta, *_ = np.linalg.lstsq(X * sw[:, None], z * sw, rcond=None)
        eta = np.clip(X @ beta + off, -30, 30)
    mu, dmu = _inverse(fam.link, eta)
    scale = trials if binary else 1.0
    var = trials * mu * (1 - mu) if binary else mu
    r = (y - scale * mu) / np.maximum(dmu * scale, 1e-12)
    w = np.maximum((dmu * scale) ** 2 / np.maximum(var, 1e-12), 1e-12)
    if fam.hurdle:  # the zeros come from the hurdle alone: only the positive rows inform the location
        w = np.where(y > 0, w, 1e-12)
    return r, w


def _link(link, m):
    """The link of a pooled mean (probabilities kept inside [1e-3, 1 - 1e-3])."""
    m = m if link == "log" else min(max(m, 1e-3), 1 - 1e-3)
    return float(LINKS[link].link(m))


def _inverse(link, eta):
    """(mean, d mean / d eta); probabilities clipped to [1e-9, 1 - 1e-9]."""
    fn = LINKS[link]
    mu = fn.inverse(eta)
    if link != "log":
        mu = np.clip(mu, 1e-9, 1 - 1e-9)
    return mu, fn.dinverse(eta)


def _level_fits(f, r, w):
    """Per level: WLS estimates of the factor's terms on r, and their sampling variances (nan if singular)."""
    k = f.Z.shape[1]
    est = np.full((f.n_levels, k), np.nan)
    var = np.full((f.n_levels, k), np.nan)
    Zw = f.Z * w[:, None]
    A = np.zeros((f.n_levels, k, k))
    np.add.at(A, f.codes, Zw[:, :, None] * f.Z[:, None, :])
    b = np.zeros((f.n_levels, k))
    np.add.at(b, f.codes, Zw * r[:, None])
    eig = np.linalg.eigvalsh(A)  # batched over levels
    ok = (eig[:, 0] > 1e-10 * np.maximum(eig[:, -1], 1e-300)) & np.isfinite(eig).all(axis=1)
    if ok.any():
        cov = np.linalg.inv(A[ok])
        est[ok] = np.einsum("lij,lj->li", cov, b[ok])
        var[ok] = np.diagonal(cov, axis1=1, axis2=2)
    return est, var


def _tau2(est, var) -> float:
    ok = np.isfinite(est) & np.isfinite(var)
    if ok.sum() < 2:
        return 0.0
    return max(float(np.var(est[ok], ddof=1) - np.mean(var[ok])), 0.0)


def information_ratios(design, collapsed: str | None = None) -> dict[str, float]:
    """Per grouping factor: the smallest, over its terms, median-over-levels ``tau_t^2 / v_lt``.

    ``collapsed`` names a factor that is integrated out analytically: for the other factors its
    effects are noise, which lowers their information.

    Examples
    --------
    >>> import hmodels as hm
    >>> from hmodels.parameterisation import information_ratios
    >>> d = hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy")).design
    >>> information_ratios(d)["Subject"] > 2
    True
    """
    if not design.factors:
        return {}
    if getattr(design, "predictors", None) and getattr(design, "base", None) is not None:
        return _categorical_ratios(design, collapsed)
    r, w = _working(design)
    fits = {f.factor: np.zeros((f.n_levels, f.Z.shape[1])) for f in design.factors}
    results = {}
    for _ in range(10 if len(design.factors) > 1 else 1):  # backfitting over crossed / nested factors
        for f in design.factors:
            others = sum(((g.Z * fits[g.factor][g.codes]).sum(axis=1) for g in design.factors if g is not f),
                         np.zeros_like(r))
            est, var = _level_fits(f, r - others, w)
            fits[f.factor] = np.nan_to_num(est)
            results[f.factor] = (est, var)
    if _unit_weights(design):
        # sampling variances in units of the residual variance left by every factor's level fits
        fitted = sum(((f.Z * fits[f.factor][f.codes]).sum(axis=1) for f in design.factors), np.zeros_like(r))
        dof = len(r) - sum(f.n_levels * f.Z.shape[1] for f in design.factors)
        resid = r - fitted
        sigma2 = float(resid @ resid) / dof if dof > 0 else float(np.var(r))
        floor = 1e-12 * max(float(np.var(r)), np.finfo(float).tiny)  # relative: the choice must not depend on units
        results = {k: (e, v * max(sigma2, floor)) for k, (e, v) in results.items()}
    elif get_family(design.spec.family, design.spec.link).aux:
        # A count / binomial family with its own dispersion or zero process (negative binomial alpha,
        # beta-binomial phi, zero-inflated and hurdle counts): the poisson / binomial working weights
        # overstate each level's information. Scale the sampling variances by the Pearson dispersion
        # left after every factor's level fits (quasi-likelihood; never below 1). Measured (engine,
        # 4 x 1000): cbpp beta-binomial ratio 2.87 -> below 2 (non-centred: 0 divergences, ESS ~900,
        # against 27 divergences and ESS 8 centred); salamanders hurdle negative binomial, whose site SD
        # is near 0, no longer centred (centred: R-hat 1.24-1.58).
        fitted = sum(((f.Z * fits[f.factor][f.codes]).sum(axis=1) for f in design.factors), np.zeros_like(r))
        dof = len(r) - sum(f.n_levels * f.Z.shape[1] for f in design.factors) - design.X.shape[1]
        phi = float((w * (r - fitted) ** 2).sum()) / dof if dof > 0 else 1.0
        results = {k: (e, v * max(phi, 1.0)) for k, (e, v) in results.items()}
    out = {}
    for f in design.factors:
        est, var = results[f.factor]
        var = var.copy()
        if collapsed is not None and collapsed != f.factor:
            g = design.factor(collapsed)
            g_est, g_var = results[collapsed]
            tau_g = _tau2(g_est[:, 0], g_var[:, 0])
            pair = np.bincount(f.codes * g.n_levels + g.codes, weights=w,
                               minlength=f.n_levels * g.n_levels).reshape(f.n_levels, g.n_levels)
            share = pair / np.maximum(pair.sum(axis=1, keepdims=True), 1e-300)
            var = var + tau_g * (share**2).sum(axis=1)[:, None]
        ratios = []
        for t in range(est.shape[1]):
            tau = _tau2(est[:, t], var[:, t])
            ok = np.isfinite(var[:, t])
            ratios.append(float(np.median(tau / var[ok, t])) if ok.any() else 0.0)
        out[f.factor] = min(ratios)
    return out


def _categorical_ratios(design, collapsed: str | None = None) -> dict[str, float]:
    """A categorical model's ratios: per factor, the smallest over its categories' logistic regressions.

    Category ``k``'s linear predictor is the log-odds of ``k`` against the reference, so its effects are
    informed as in a bernoulli model of the rows of those two categories; a factor is centred only when
    every category's effects are well informed.
    """
    from dataclasses import replace

    base = design.base
    y = np.asarray(base.y)
    out = {f.factor: np.inf for f in base.factors}
    for k in range(2, len(design.predictors) + 2):
        rows = (y == 1) | (y == k)
        if rows.sum() < 2:
            return dict.fromkeys(out, 0.0)
        sub = replace(base, spec=replace(base.spec, family="bernoulli", link="logit"), y=(y[rows] == k).astype(float),
                      X=base.X[rows], trials=None, se=None, offset=None,
                      factors=[replace(f, codes=np.asarray(f.codes)[rows], Z=f.Z[rows]) for f in base.factors])
        for name, ratio in information_ratios(sub, collapsed).items():
            out[name] = min(out[name], ratio)
    return out


def resolve_centering(design, centered, collapsed: str | None = None) -> dict[str, bool]:
    """Per-factor centring from ``"auto"`` / ``False`` / ``True`` / ``{factor: bool or "auto"}``.

    Examples
    --------
    >>> import hmodels as hm
    >>> d = hm.Model("y | se(sigma) ~ 1 + (1 | school)", hm.datasets.load("eight_schools")).design
    >>> resolve_centering(d, "auto")
    {'school': False}
    """
    names = [f.factor for f in design.factors]
    if isinstance(centered, dict):
        unknown = [k for k in centered if k not in names]
        if unknown:
            raise SpecificationError(
                f"centered names {unknown[0]!r}, which is not a grouping factor; factors: {', '.join(names)}."
            )
        wanted = {n: centered.get(n, "auto") for n in names}
    elif isinstance(centered, bool) or centered == "auto":
        wanted = dict.fromkeys(names, centered)
    else:
        raise SpecificationError(
            f"centered must be 'auto', True, False or a dict per grouping factor, got {centered!r}."
        )
    ratios = information_ratios(design, collapsed) if any(v == "auto" for v in wanted.values()) else {}
    out = {}
    for n, v in wanted.items():
        if v == "auto":
            out[n] = bool(ratios[n] >= CENTRE_AT)
        elif isinstance(v, bool):
            out[n] = v
        else:
            raise SpecificationError(f"centered[{n!r}] must be True, False or 'auto', got {v!r}.")
    return out


def hierarchical_factors(design, centering: dict, collapsed: str | None = None) -> tuple[str, ...]:
    """The factors the compiled engine samples hierarchically centred (none when :data:`HIERARCHICAL` is False).

    A factor qualifies when it is centred in ``centering``, has one term, the intercept, no factor is
    integrated out (``collapsed`` is None), and its levels are nested in another grouping factor's
    (each of its levels sees one level of that factor). Its effects are then sampled as
    ``v_l = r_l + m_l``, with ``m_l`` every term constant within level ``l`` (see ``hier_forward`` in
    ``hmodels/engine/kernels.c``).

    Examples
    --------
    >>> import hmodels as hm
    >>> from hmodels.parameterisation import hierarchical_factors
    >>> d = hm.Model("TICKS ~ YEAR + (1 | BROOD) + (1 | LOCATION)", hm.datasets.load("grouseticks")).design
    >>> hierarchical_factors(d, {"BROOD": True, "LOCATION": False})
    ('BROOD',)
    >>> hierarchical_factors(d, {"BROOD": True, "LOCATION": False}, collapsed="LOCATION")
    ()
    """
    if not HIERARCHICAL or collapsed is not None:
        return ()
    return nested_candidates(design, centering)


def nested_candidates(design, centering: dict) -> tuple[str, ...]:
    """Centred intercept-only factors whose levels are nested in another factor's (see :func:`hierarchical_factors`).

    Examples
    --------
    >>> import hmodels as hm
    >>> from hmodels.parameterisation import nested_candidates
    >>> d = hm.Model("TICKS ~ YEAR + (1 | BROOD) + (1 | LOCATION)", hm.datasets.load("grouseticks")).design
    >>> nested_candidates(d, {"BROOD": True, "LOCATION": False})
    ('BROOD',)
    """
    out = []
    for f in design.factors:
        if not centering.get(f.factor, False) or list(f.terms) != ["Intercept"] or not np.all(f.Z == 1.0):
            continue
        for g in design.factors:
            if g is f:
                continue
            parent = np.full(f.n_levels, -1)
            parent[f.codes] = g.codes
            if np.array_equal(parent[f.codes], g.codes):  # one level of g per level of f
                out.append(f.factor)
                break
    return tuple(out)

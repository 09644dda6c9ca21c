"""Variance components beyond the core table: variance decomposition, ICC, R² and shrinkage.

Everything is computed per posterior draw from the Fit (never the PyMC model) and summarised
with :func:`hmodels.summary.summarise_draws`, so each quantity comes with its posterior mean, SD,
HDI, R-hat and ESS.

Variances (Nakagawa & Schielzeth 2013; Johnson 2014; Nakagawa, Johnson & Schielzeth 2017), per draw:

* fixed: the variance over the observed rows of the population-level linear predictor ``X b``
  (without an offset, see below);
* each grouping factor ``f``: ``mean_i z_i' Σ_f z_i`` (Johnson's extension to random slopes; for a
  random intercept only it is ``sd²``), with ``Σ_f = diag(sd) R diag(sd)``;
* residual (distribution-specific, latent scale):

  ==========================  ==========================================================
  gaussian (identity)         ``sigma²`` (``mean(se²)`` with known standard errors)
  student_t (identity)        ``sigma² nu / (nu - 2)`` (infinite for ``nu <= 2``)
  bernoulli / binomial        ``pi²/3`` (logit), 1 (probit), ``pi²/6`` (cloglog)
  poisson (log)               ``ln(1 + 1/lambda)`` (lognormal approximation; ``method``
                              ``"trigamma"``: ``psi1(lambda)``; ``"delta"``: ``1/lambda``)
  negativebinomial (log)      ``ln(1 + 1/lambda + 1/alpha)`` (``"trigamma"``:
                              ``psi1(1 / (1/lambda + 1/alpha))``; ``"delta"``: ``1/lambda + 1/alpha``)
  gamma (log)                 ``ln(1 + 1/shape)`` (``"trigamma"``: ``psi1(shape)``, the exact
                              variance of ``log y``; ``"delta"``: ``1/shape``)
  lognormal                   ``sigma²`` (the residual variance of ``log y``)
  weibull / exponential (log) ``pi²/(6 shape²)`` / ``pi²/6`` (the variance of ``log y``)
  ==========================  ==========================================================

  Not defined (:class:`~hmodels.errors.FamilyError`; Bayesian R² is): gaussian/student_t with a
  log link, gamma with an inverse or identity link, beta, beta_binomial, and the zero-inflated
  and hurdle families (two processes make the outcome).

  where ``lambda`` is the marginal expected count, ``mean_i exp(x_i b + o_i + v_i / 2)`` with ``v_i``
  the group-effect variance of row ``i`` (Nakagawa et al. 2017 use ``exp(b0 + sd²/2)``, the same
  with centred predictors).

Offsets (``offset(np.log(exposure))``, coefficient 1): the fixed variance is that of ``X b`` alone,
as MuMIn's ``r.squaredGLMM`` computes it from the model matrix — an offset is known, not explained
by the predictors, so it is in neither the numerator nor the denominator of R². It does enter
``lambda`` (the expected counts at the observed exposures set the distribution-specific variance)
and the fitted means of Bayesian R² and shrinkage, which are predictions of the outcome itself.

Response additions (``attrs["additions"]`` of every table here says which apply): with ``trunc()`` or
``cens()`` the variances, ICC and R² (Bayesian R² too) are those of the untruncated, uncensored
distribution the model describes — the family's mean and variance at each row — not of the recorded
outcome; ``weights()`` do not enter (every row counts once in the variance of ``X b`` and of the fitted
means). :func:`shrinkage` compares observed with expected group means and refuses a truncated outcome.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .errors import SpecificationError
from .linpred import aux_draws, fit_design, linear_predictor, mean_draws, refuse_truncated_mean
from .summary import summarise_draws

__all__ = ["variance_decomposition", "icc", "r2", "bayes_r2", "shrinkage", "extended_components", "additions_note"]

_METHODS = ("lognormal", "trigamma", "delta")


def _draws(fit, name) -> np.ndarray:
    return np.asarray(fit.draws[name].transpose("chain", "draw", ...).values, dtype=float)


def _factor_variances(fit, design) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per factor: (mean_i z_i' Σ z_i per draw, z_i' Σ z_i per draw and row)."""
    out = {}
    for fd in design.factors:
        f = fd.factor
        sd = _draws(fit, f"sd_{f}")  # (c, d, k)
        k = sd.shape[-1]
        R = np.broadcast_to(np.eye(k), sd.shape[:2] + (k, k)).copy()
        for var, terms in fit.meta["factors"][f]["cors"]:
            cor = _draws(fit, var)
            idx = [fd.terms.index(t) for t in terms]
            R[..., np.ix_(idx, idx)[0], np.ix_(idx, idx)[1]] = cor
        Sigma = sd[..., :, None] * R * sd[..., None, :]
        per_row = np.einsum("nj,cdjk,nk->cdn", fd.Z, Sigma, fd.Z, optimize=True)
        out[f] = (per_row.mean(axis=-1), per_row)
    return out


def _residual_variance(fit, design, eta_fixed, fvars, method: str) -> np.ndarray:
    """Latent residual variance per draw (the family owns the formula), shape (chain, draw)."""
    fam = fit.family
    if getattr(design, "dpars", None):  # a per-row family parameter: no single residual variance per draw
        raise SpecificationError(
            f"The variance decomposition (ICC, marginal/conditional R2) needs one residual variance per draw, but "
            f"{', '.join(design.dpars)} has its own formula and differs by row; use bayes_r2() instead.")
    aux = {k: v[..., 0] for k, v in aux_draws(fit).items()}
    if fam.link == "log" and fam.discrete:  # mean count at the fixed effects, over the group-effect variance
        v = sum((pr for _, pr in fvars.values()), np.zeros_like(eta_fixed))
        lam = np.exp(eta_fixed + 0.5 * v).mean(axis=-1)
    else:
        lam = np.ones(eta_fixed.shape[:2])
    return fam.latent_residual_variance(lam, aux, se=design.se, method=method)


def additions_note(fit) -> str:
    """What the variance decomposition, ICC and R² do with the outcome's ``trunc()``, ``cens()`` and ``weights()``.

    Empty when the model has none of them.
    """
    spec = fit.spec
    parts = []
    if getattr(spec, "trunc", None) is not None or getattr(spec, "cens", None) is not None:
        what = " and ".join(w for w, a in (("untruncated", "trunc"), ("uncensored", "cens"))
                            if getattr(spec, a, None) is not None)
        parts.append(f"computed for the {what} outcome distribution the model describes (the family's mean and "
                     "variance), not for the recorded outcome")
    if getattr(spec, "weights", None) is not None:
        parts.append(f"the observation weights ({spec.weights}) do not enter: every row counts once")
    return "; ".join(parts)


def _decomposition_draws(fit, method: str = "lognormal") -> dict[str, np.ndarray]:
    design = fit_design(fit)
    eta_fixed = linear_predictor(fit, design, groups="exclude")  # X b + offset
    fvars = _factor_variances(fit, design)
    xb = eta_fixed if design.offset is None else eta_fixed - design.offset  # an offset is not explained variance
    out = {"fixed": xb.var(axis=-1)}
    for f, (v, _) in fvars.items():
        out[f] = v
    out["residual"] = _residual_variance(fit, design, eta_fixed, fvars, method)
    return out


def variance_decomposition(fit, prob: float = 0.95, method: str = "lognormal") -> pd.DataFrame:
    """Variance explained by the fixed effects, by each grouping factor and left as residual.

    Parameters
    ----------
    fit : Fit
    prob : float
        HDI probability.
    method : {"lognormal", "trigamma", "delta"}
        Approximation of the distribution-specific variance for log-link count families.

    Returns
    -------
    pandas.DataFrame
        Rows ``fixed``, one per grouping factor, ``residual`` (latent scale for GLMMs); columns
        as :func:`~hmodels.summary.summarise_draws`.

    Examples
    --------
    >>> from hmodels.components import variance_decomposition
    >>> variance_decomposition(fit)  # doctest: +SKIP
    """
    d = _decomposition_draws(fit, method)
    t = summarise_draws(np.stack(list(d.values()), axis=-1), list(d), prob)
    t.index.name = "component"
    t.attrs["additions"] = additions_note(fit)
    return t


def icc(fit, prob: float = 0.95, method: str = "lognormal") -> pd.DataFrame:
    """Intraclass correlation per grouping factor, with intervals.

    ``ICC_f = var_f / (sum_g var_g + var_residual)`` per draw — the *adjusted* ICC of Nakagawa et
    al. (2017), which leaves the fixed-effect variance out; on the latent scale for GLMMs (see the
    module docstring for the residual variance of each family).

    Parameters
    ----------
    fit : Fit
    prob : float
        HDI probability.
    method : {"lognormal", "trigamma", "delta"}
        Approximation for log-link count families.

    Returns
    -------
    pandas.DataFrame
        One row per grouping factor (index ``group``), columns of
        :func:`~hmodels.summary.summarise_draws`.

    Examples
    --------
    >>> fit.icc()  # doctest: +SKIP
    """
    d = _decomposition_draws(fit, method)
    factors = list(fit.meta["factors"])
    if not factors:
        raise SpecificationError("The ICC needs at least one grouping factor; this model has none.")
    total = sum(d[f] for f in factors) + d["residual"]
    with np.errstate(invalid="ignore", divide="ignore"):
        draws = np.stack([d[f] / total for f in factors], axis=-1)
    t = summarise_draws(draws, factors, prob)
    t.index.name = "group"
    t.attrs["residual_variance"] = _residual_label(fit, method)
    t.attrs["additions"] = additions_note(fit)
    return t


def _residual_label(fit, method):
    fam = fit.family
    own = fam.latent_label(method)
    if own is not None:
        return own
    if fam.latent_variance is not None:
        return f"latent {fam.link}: {fam.latent_variance:.4g}"
    if fam.link == "log":
        return f"{method} approximation for {fam.name}"
    return "sigma^2" if fit.spec.se is None else "mean(se^2)"


def bayes_r2_draws(fit, groups: str = "include") -> np.ndarray:
    """Per-draw Bayesian R² of Gelman, Goodrich, Gabry & Vehtari (2019), shape (chain, draw)."""
    design = fit_design(fit)
    eta = linear_predictor(fit, design, groups=groups)
    mu = mean_draws(fit, eta)
    fam = fit.family
    aux = aux_draws(fit)
    res = np.broadcast_to(fam.variance(mu, aux, trials=design.trials, se=design.se), mu.shape)
    if design.trials is not None:  # the variance of the proportion, the scale of the expected outcome per trial
        res = res / np.asarray(design.trials, dtype=float) ** 2
    expected = np.broadcast_to(fam.response_mean(mu, aux), mu.shape)  # per trial; with zero-inflation, ...
    var_fit = expected.var(axis=-1, ddof=1)
    var_res = res.mean(axis=-1)
    return var_fit / (var_fit + var_res)


def r2(fit, prob: float = 0.95, method: str = "lognormal") -> pd.DataFrame:
    """Marginal and conditional R² (Nakagawa & Schielzeth) and Bayesian R² (Gelman et al.), with intervals.

    Parameters
    ----------
    fit : Fit
    prob : float
        HDI probability.
    method : {"lognormal", "trigamma", "delta"}
        Approximation for log-link count families (marginal / conditional R² only).

    Returns
    -------
    pandas.DataFrame
        Rows ``marginal`` (variance explained by the fixed effects), ``conditional`` (fixed plus
        group effects), ``bayes`` (Gelman et al. 2019: ``var(mu) / (var(mu) + mean residual
        variance)``, fitted means including group effects, on the response scale — proportions
        for binomial).

    Notes
    -----
    Per draw, with the variances of the module docstring:
    ``R²_m = v_fixed / (v_fixed + sum_f v_f + v_res)`` and
    ``R²_c = (v_fixed + sum_f v_f) / (v_fixed + sum_f v_f + v_res)``.

    Examples
    --------
    >>> fit.r2()  # doctest: +SKIP
    """
    d = _decomposition_draws(fit, method)
    vg = sum((d[f] for f in fit.meta["factors"]), np.zeros_like(d["fixed"]))
    total = d["fixed"] + vg + d["residual"]
    with np.errstate(invalid="ignore", divide="ignore"):
        draws = np.stack([d["fixed"] / total, (d["fixed"] + vg) / total, bayes_r2_draws(fit)], axis=-1)
    t = summarise_draws(draws, ["marginal", "conditional", "bayes"], prob)
    t.index.name = "r2"
    t.attrs["residual_variance"] = _residual_label(fit, method)
    t.attrs["additions"] = additions_note(fit)
    return t


def bayes_r2(fit, prob: float = 0.95, groups: str = "include") -> pd.DataFrame:
    """Bayesian R² alone (``groups="exclude"`` for population-level predictions).

    Examples
    --------
    >>> from hmodels.components import bayes_r2
    >>> bayes_r2(fit)  # doctest: +SKIP
    """
    t = summarise_draws(bayes_r2_draws(fit, groups)[..., None], ["bayes"], prob)
    t.attrs["additions"] = additions_note(fit)
    return t


def shrinkage(fit, factor: str) -> pd.DataFrame:
    """How far each group's fitted mean moved from its raw mean towards the population.

    Parameters
    ----------
    fit : Fit
    factor : str
        A grouping factor.

    Returns
    -------
    pandas.DataFrame
        One row per level: ``n`` (observations), ``raw_mean`` (observed mean of the outcome —
        the proportion ``sum(y) / sum(trials)`` for binomial), ``fitted_mean`` (posterior mean of the
        expected outcome with group effects), ``fitted_sd``, ``population_mean`` (expected outcome
        without group effects) and ``shrinkage = 1 - (fitted - population) / (raw - population)``:
        0 when the group keeps its raw mean, 1 when it is pulled all the way to the population
        (NaN when the raw mean equals the population mean).

    Examples
    --------
    >>> fit.shrinkage("Subject").head()  # doctest: +SKIP
    """
    if fit.family.outcome == "categorical":  # the mean category number of unordered categories means nothing
        from .errors import FamilyError

        raise FamilyError(
            "shrinkage compares each group's mean outcome with its fitted mean; a categorical outcome has no mean "
            "(its categories are unordered). Compare each group's category shares with fit.ppc() (rows "
            f"mean[{factor}=level](outcome = category)) and each category's effects with fit.group_effects({factor!r})."
        )
    refuse_truncated_mean(fit, "shrinkage")
    design = fit_design(fit)
    fd = design.factor(factor)
    y = np.asarray(design.y, dtype=float)
    w = np.asarray(design.trials, dtype=float) if design.trials is not None else np.ones_like(y)
    resp = y / w if design.trials is not None else y
    aux = aux_draws(fit)  # expected outcomes (per trial for binomial): zero-inflation, lognormal means, ...
    mu = fit.family.response_mean(mean_draws(fit, linear_predictor(fit, design, groups="include")), aux)
    mu0 = fit.family.response_mean(mean_draws(fit, linear_predictor(fit, design, groups="exclude")), aux)
    rows = []
    for i, level in enumerate(fd.levels):
        m = fd.codes == i
        if not m.any():
            continue
        ww = w[m] / w[m].sum()
        raw = float((resp[m] * ww).sum())
        fitted = (mu[..., m] * ww).sum(axis=-1)
        pop = float(((mu0[..., m] * ww).sum(axis=-1)).mean())
        fm = float(fitted.mean())
        with np.errstate(invalid="ignore", divide="ignore"):
            s = 1.0 - (fm - pop) / (raw - pop) if abs(raw - pop) > 1e-12 else np.nan
        rows.append((level, int(m.sum()), raw, fm, float(fitted.std(ddof=1)), pop, s))
    return pd.DataFrame(rows, columns=["level", "n", "raw_mean", "fitted_mean", "fitted_sd", "population_mean",
                                       "shrinkage"]).set_index("level")


def extended_components(fit, prob: float = 0.95, method: str = "lognormal") -> pd.DataFrame:
    """The core variance-component table plus variances, ICCs and R² rows.

    The first rows are exactly :meth:`Fit.variance_components` (kinds ``sd``, ``cor``,
    ``sigma``, ...); then kind ``var`` (variance decomposition), ``icc`` (per factor) and ``r2``.

    Examples
    --------
    >>> from hmodels.components import extended_components
    >>> extended_components(fit).query("kind == 'icc'")  # doctest: +SKIP
    """
    core = fit.variance_components(prob)
    parts = [core]
    extra = []
    try:
        vd = variance_decomposition(fit, prob, method)
        extra.append(vd.assign(group=[g if g in fit.meta["factors"] else "" for g in vd.index],
                               term=[g if g not in fit.meta["factors"] else "" for g in vd.index], kind="var"))
        if fit.meta["factors"]:
            ic = icc(fit, prob, method)
            extra.append(ic.assign(group=list(ic.index), term="", kind="icc"))
        rr = r2(fit, prob, method)
        extra.append(rr.assign(group="", term=list(rr.index), kind="r2"))
    except SpecificationError:
        pass
    for e in extra:
        e = e.copy()
        e.index = [f"{k}({g or t})" for g, t, k in zip(e["group"], e["term"], e["kind"])]
        parts.append(e[core.columns])
    return pd.concat(parts)

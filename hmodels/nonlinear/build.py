"""The PyMC graph of a nonlinear mixed model (``sampler="pymc"`` / ``"numpyro"``; expressions the engine cannot run).

The default sampler runs the compiled engine instead: the parameters' linear predictors as blocks of rows
(:func:`hmodels.nonlinear.design.predictor_rows`) and the expression as a program over them
(:mod:`hmodels.nonlinear.program`); its log density equals this graph's (tests/test_nonlinear_program.py).

The graph samples the same variables as every hmodels model — ``b`` (the stacked population-level
coefficients, ``lKa_Intercept``, ...), ``sd_<factor>``, ``cor_<factor>``, ``r_<factor>`` and the
family's parameters — with the priors, SDs and LKJ blocks of :mod:`hmodels.build` (its helpers are
reused, not copied). Only the mean differs: per parameter ``eta_k = X[:, cols_k] b[cols_k] +
sum_f (Z_f[:, terms_k] r_f[codes_f, terms_k]).sum(1)``, then ``mu = expression(eta_1..eta_K,
covariates)``, given to the family's likelihood as its linear predictor: the mean itself for identity
links (gaussian, student_t), the log mean for poisson / negative binomial (log link), the logit of
the probability for bernoulli / binomial, the mean of ``log y`` for the lognormal — as brms's
``nl = TRUE``.
"""

from __future__ import annotations

import numpy as np

from ..build import BuiltModel, _group_effects, _likelihood, _vector_rv, obs_name
from ..families import get_family
from .design import parameter_centring

__all__ = ["build_nonlinear_model"]


def sampling_scales(design, priors) -> np.ndarray:
    """The scale NUTS sees each coefficient at (``value / scale``): the nls standard error of its parameter.

    Samplers start from the initial point jittered by about one unit of the sampling space; at the
    prior's scale (ten SEs or more) that throws chains into other modes of a nonlinear curve (a
    logistic with its midpoint beyond the data), at the nls SE it keeps them near the population
    curve. Without a converged nls fit: a tenth of the prior scale.

    Examples
    --------
    >>> import hmodels as hm
    >>> m = hm.Model("conc ~ SSfol(Dose, Time, lKe, lKa, lCl)", hm.datasets.load("theoph"),
    ...              nonlinear={"lKa": "1 + (1 | Subject)"})
    >>> sampling_scales(m.design, m.priors).round(3)
    array([0.11 , 0.118, 0.074])
    """
    sv = getattr(priors, "start", None)
    out = np.ones(len(design.fixed_terms))
    for p in design.predictors:
        se = float(sv.ses.get(p.name, np.nan)) if sv is not None and sv.converged else np.nan
        for j in p.columns:
            prior_scale = max(priors[design.fixed_terms[j]].slot.scale, 1e-12)
            if not np.isfinite(se) or se <= 0:
                out[j] = prior_scale / 10.0
            elif design.fixed_terms[j] == f"{p.name}_Intercept":
                out[j] = se
            else:
                out[j] = se / (design.x_sds[j] if design.x_sds[j] > 0 else 1.0)
    return out


def build_nonlinear_model(design, priors, centered=None, prior_only: bool = False) -> BuiltModel:
    """Build the PyMC model of a :class:`~hmodels.nonlinear.design.NonlinearDesign`.

    Parameters
    ----------
    design : NonlinearDesign
    priors : PriorTable
    centered : dict, optional
        Centred (True) or non-centred (False) group effects per factor; default non-centred.
    prior_only : bool
        Leave the likelihood out.

    Returns
    -------
    BuiltModel

    Examples
    --------
    >>> import hmodels as hm
    >>> m = hm.Model("conc ~ SSfol(Dose, Time, lKe, lKa, lCl)", hm.datasets.load("theoph"),
    ...              nonlinear={"lKa": "1 + (1 | Subject)", "lCl": "1 + (1 | Subject)"})
    >>> built = build_nonlinear_model(m.design, m.priors)
    >>> [v.name for v in built.model.free_RVs]
    ['b', 'sd_Subject', 'z_Subject', 'L_cor_Subject', 'sigma']
    """
    import pymc as pm
    import pytensor.tensor as pt

    spec = design.spec
    fam = get_family(spec.family, spec.link)
    centering = {f.factor: False for f in design.factors}
    centering.update({k: bool(v) for k, v in dict(centered or {}).items() if k in centering})
    coords = {"term": list(design.fixed_terms), "obs": np.arange(design.n)}
    for f in design.factors:
        coords[f.factor] = list(f.levels)
        coords[f"{f.factor}__term"] = list(f.terms)
    by_param = {r.slot.param: r.prior for r in priors}
    built = BuiltModel(None, centering, obs_name(spec))
    Xc, T = parameter_centring(design)  # parameters with covariates: intercepts at the covariates' means
    with pm.Model(coords=coords) as model:
        scales = sampling_scales(design, priors)
        if T is None:
            b = _vector_rv("b", [by_param[t] for t in design.fixed_terms], "term", pm, scales=scales)
        else:
            b = _vector_rv("b_centered", [by_param[t] for t in design.fixed_terms], "term", pm, scales=scales)
            pm.Deterministic("b", pt.dot(pt.as_tensor_variable(T), b), dims="term")
        effects = {}
        for f in design.factors:
            effects[f.factor] = _group_effects(f, by_param, centering[f.factor], built, pm, pt, response_scale=1.0)
        env = {}
        for p in design.predictors:
            cols = np.array(p.columns, dtype=int)
            X = Xc[:, cols]
            if X.shape[1] == 1 and np.all(X[:, 0] == 1.0):
                eta = b[cols[0]] + pt.zeros(design.n)
            else:
                eta = pt.dot(pt.as_tensor_variable(X), b[cols])
            for f in design.factors:
                idx = np.array(p.terms.get(f.factor, ()), dtype=int)
                if idx.size == 0:
                    continue
                r = effects[f.factor][:, idx]
                Z = f.Z[:, idx]
                if Z.shape[1] == 1 and np.all(Z[:, 0] == 1.0):
                    eta = eta + r[f.codes, 0]
                else:
                    eta = eta + (pt.as_tensor_variable(Z) * r[f.codes]).sum(axis=1)
            env[p.name] = eta
        env.update({c: pt.as_tensor_variable(np.asarray(v, dtype=float)) for c, v in design.covariates.items()})
        mu = design.expression.evaluate(env, lib="pytensor")
        mu = pt.as_tensor_variable(mu) + pt.zeros(design.n)
        _likelihood(design, fam, mu, by_param, built.observed, pm, pt, prior_only=prior_only)
    built.model = model
    return built

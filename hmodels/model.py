"""The user-facing :class:`Model`: formula or spec + data -> validated design and priors."""

from __future__ import annotations

import math
import os

import pandas as pd

from .build import build_model
from .design import Design, make_design
from .errors import SpecificationError
from .families import Family, get_family
from .formula import parse_formula
from .parameterisation import resolve_centering
from .plan import make_plan
from .priors.resolve import PriorTable, resolve_priors
from .sampling import check_fit_memory, check_settings
from .spec import ModelSpec

__all__ = ["Model"]


class Model:
    """A Bayesian mixed model: specification, data and priors, ready to sample.

    Everything about the input is checked here, before any compilation: columns, types,
    missing rows, priors, family.

    Parameters
    ----------
    formula : str or ModelSpec
        lme4/brms-style formula (``"Reaction ~ Days + (Days | Subject)"``) or a spec from
        :func:`hmodels.spec`.
    data : pandas.DataFrame
    family : str
        ``gaussian`` (default), ``student_t``, ``bernoulli``, ``binomial``, ``poisson``,
        ``negativebinomial``, ``gamma``, ``lognormal``, ``beta``, ``beta_binomial``,
        ``zero_inflated_poisson``, ``zero_inflated_negativebinomial``, ``hurdle_poisson``,
        ``hurdle_negativebinomial``, ``exponential``, ``weibull``, ``cumulative`` (ordered outcomes; alias
        ``ordinal``), ``hurdle_gamma``, ``hurdle_lognormal``, ``zero_one_inflated_beta`` (each has a
        kernel in the compiled engine; a family registered without one runs on the PyMC graph and the
        plan says so; see
        :data:`hmodels.families.FAMILIES`). Ignored when ``formula`` is a ModelSpec (it carries its family).
    link : str, optional
        Link function; the family's default when omitted.
    priors : dict or str, optional
        Priors by parameter key — a term (``"Days"``), a class (``"Intercept"``, ``"fixed"``,
        ``"sd"``, ``"sd(Subject)"``, ``"sd(Subject, Days)"``, ``"cor"``, ``"cor(Subject)"``,
        ``"sigma"``, ``"nu"``, ``"alpha"``, ``"shape"``, ``"phi"``, ``"zi"``, ``"hu"``: the family's own
        parameters) — or the name/path of a prior set.
    prior_set : str, optional
        Named prior set under ``priors`` (default: ``"default"``, data-scaled weakly informative).
    centered : "auto", bool or dict
        Centred (``True``) or non-centred (``False``) group effects, globally or per factor
        (``{"Subject": True}``). ``"auto"`` (default) decides per factor from how informative each
        level's data are (:mod:`hmodels.parameterisation`); the choice is in ``model.plan()`` and
        ``fit.meta["plan"]``.
    intercept_prior : {"centered", "raw"}
        ``"centered"`` (default, as brms): the Intercept prior is on the intercept at the
        predictors' means; ``"raw"``: on the intercept with predictors as given. Either way the
        reported Intercept is the raw one.
    missing : {"drop", "raise"}
        Rows with missing values in used columns are dropped with a warning (default) or raise.
    nonlinear : dict, optional
        A nonlinear mixed model (:mod:`hmodels.nonlinear`): ``formula`` is then ``"response ~ expression"``
        and ``nonlinear`` maps each parameter of the expression to the formula of its linear
        predictor (``{"lKa": "1 + (1 | Subject)", "lKe": "1"}``); with a self-starting shape
        (``"SSlogis(age, Asym, xmid, scal)"``) unlisted parameters get ``"1"``.
    start : dict, optional
        Starting values of the nonlinear parameters' population values (``{"lKa": 0.5}``).
    dpars : dict, optional
        Family parameters with their own formula (:mod:`hmodels.dpars`; brms's
        ``bf(y ~ ..., sigma ~ x)``): ``{"sigma": "x + (1 | g)"}``, ``{"zi": "1 + x"}``. On the log
        (positive parameters) or logit (probabilities) scale; unlisted parameters stay scalars.

    Examples
    --------
    >>> import hmodels as hm
    >>> model = hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy"))
    >>> model.spec.factors
    ('Subject',)
    >>> fit = model.fit(draws=200, tune=200, chains=2, seed=1, progressbar=False)  # doctest: +SKIP
    """

    spec: ModelSpec
    family: Family
    design: Design
    priors: PriorTable

    def __init__(self, formula, data: pd.DataFrame, family: str = "gaussian", link: str | None = None,
                 priors=None, prior_set: str | None = None, centered="auto", intercept_prior: str = "centered",
                 missing: str = "drop", nonlinear: dict | None = None, start: dict | None = None,
                 dpars: dict | None = None):
        if nonlinear is not None:
            from .nonlinear.design import nonlinear_spec

            if not isinstance(formula, str):
                raise SpecificationError("nonlinear= needs a formula string 'response ~ expression'.")
            columns = list(data.columns) if isinstance(data, pd.DataFrame) else []
            self.spec = nonlinear_spec(formula, nonlinear, columns, family, link, start)
        elif start is not None:
            raise SpecificationError("start= gives starting values of nonlinear parameters; pass nonlinear= too.")
        elif isinstance(formula, ModelSpec):
            self.spec = formula
        elif isinstance(formula, str):
            self.spec = parse_formula(formula, family=family, link=link)
        else:
            raise SpecificationError(
                f"Model needs a formula string or an hm.spec(...) object, got {type(formula).__name__}."
            )
        if dpars:  # family parameters with their own formula (checked against the family by the spec)
            from dataclasses import replace as _replace

            self.spec = _replace(self.spec, dpars=tuple(dict(dpars).items()) if isinstance(dpars, dict) else dpars)
        self.family = get_family(self.spec.family, self.spec.link)
        if self.spec.nonlinear is not None:  # one linear predictor per parameter, stacked; start-scaled priors
            from .nonlinear.design import make_nonlinear_design
            from .nonlinear.priors import resolve_nonlinear_priors

            self.design = make_nonlinear_design(self.spec, data, missing=missing)
            self.priors = resolve_nonlinear_priors(self.design, priors, prior_set, intercept_prior)
            intercept_prior = self.priors.intercept_prior  # "centered" where a parameter has covariates, else "raw"
        elif self.family.outcome == "categorical":  # one stacked linear predictor per non-reference category
            from .categorical import resolve_categorical_priors, stack_categories

            self.design = stack_categories(make_design(self.spec, data, missing=missing))
            self.priors = resolve_categorical_priors(self.design, priors, prior_set, intercept_prior)
        else:
            self.design = make_design(self.spec, data, missing=missing)
            self.priors = resolve_priors(self.design, priors, prior_set, intercept_prior)
            if self.family.outcome == "ordinal" and intercept_prior == "raw":
                from .design import warn_uncentred_thresholds

                warn_uncentred_thresholds(self.design)
        if self.spec.nonlinear is not None and isinstance(centered, str) and centered == "auto":
            from .nonlinear.design import auto_centering  # the linear rule on the linearised model

            centered = auto_centering(self.design, getattr(self.priors, "start", None))
        self.centered_request = centered
        self.intercept_prior = intercept_prior
        self.prior_set = prior_set if prior_set is not None else (priors if isinstance(priors, str) else "default")
        self._centerings: dict = {}
        self._engine_models: dict = {}
        self._built: dict = {}
        if not (isinstance(centered, str) and centered == "auto"):
            resolve_centering(self.design, centered, None)  # a bad request fails here, before anything compiles

    def centering(self, collapsed: str | None = None) -> dict[str, bool]:
        """Centred (True) or not, per grouping factor, when ``collapsed`` is integrated out.

        Examples
        --------
        >>> import hmodels as hm
        >>> m = hm.Model("y | se(sigma) ~ 1 + (1 | school)", hm.datasets.load("eight_schools"))
        >>> m.centering(None)
        {'school': False}
        """
        if collapsed not in self._centerings:
            self._centerings[collapsed] = resolve_centering(self.design, self.centered_request, collapsed)
        return self._centerings[collapsed]

    def engine_model(self, collapsed: str | None = None):
        """The :class:`~hmodels.engine.layout.EngineModel` with ``collapsed`` integrated out (built once)."""
        if collapsed not in self._engine_models:
            from .engine.layout import EngineModel

            self._engine_models[collapsed] = EngineModel(self.design, self.priors, self.centering(collapsed),
                                                         collapse=collapsed)
        return self._engine_models[collapsed]

    def built_graph(self, collapsed: str | None = None, laplace: bool = False):
        """The :class:`~hmodels.build.BuiltModel` (PyMC graph) with ``collapsed`` integrated out (built once).

        With ``laplace``, ``collapsed`` is integrated out by the Laplace approximation (:mod:`hmodels.laplace`).
        """
        if laplace:
            key = ("laplace", collapsed)
            if key not in self._built:
                self._built[key] = build_model(self.design, self.priors, self.centering(collapsed), laplace=collapsed)
            return self._built[key]
        if collapsed not in self._built and self.spec.nonlinear is not None:
            from .nonlinear.build import build_nonlinear_model

            self._built[collapsed] = build_nonlinear_model(self.design, self.priors, self.centering(collapsed))
        if collapsed not in self._built and self.family.outcome == "categorical":
            from .categorical import build_categorical_model

            self._built[collapsed] = build_categorical_model(self.design, self.priors,
                                                             centering=self.centering(collapsed))
        if collapsed not in self._built:
            self._built[collapsed] = build_model(
                self.design, self.priors, self.centering(collapsed), collapse=collapsed
            )
        return self._built[collapsed]

    @property
    def built(self):
        """The joint :class:`~hmodels.build.BuiltModel` (built on first use)."""
        return self.built_graph(None)

    @property
    def pymc_model(self):
        """The joint PyMC model (built on first use)."""
        return self.built.model

    def plan(self, sampler: str | None = None, method: str = "auto", target_accept: float | None = None):
        """How :meth:`fit` would sample this model: the :class:`~hmodels.plan.FitPlan` (see :mod:`hmodels.plan`).

        Examples
        --------
        >>> import hmodels as hm
        >>> m = hm.Model("diameter ~ 1 + (1 | plate) + (1 | sample)", hm.datasets.load("penicillin"))
        >>> p = m.plan()
        >>> p.collapsed_factor, p.centering
        ('plate', {'sample': True})
        """
        from .sampling import default_sampler

        return make_plan(self, default_sampler() if sampler is None else str(sampler).lower(), method, target_accept)

    def fit(self, draws: int | None = None, tune: int | None = None, chains: int = 4, cores: int | None = None,
            seed: int | None = None, target_accept: float | None = None, sampler: str | None = None,
            progressbar: bool = True, log_likelihood: bool = False, method: str = "auto", prior_only: bool = False,
            until: str | None = "auto", max_time: float | None = None):
        """Sample the posterior with NUTS.

        One policy (:func:`hmodels.plan.make_plan`) decides how, for every sampler; the backend
        returns draws and :func:`hmodels.assemble.assemble_fit` builds the :class:`~hmodels.fit.Fit`.
        ``fit.meta["plan"]`` records the plan that was followed.

        Parameters
        ----------
        draws, tune, chains : int
            Draws kept per chain (default 1000), warm-up iterations per chain (default 1000), number of
            chains. Giving ``draws`` or ``tune`` fixes the draws (see ``until``).
        cores : int, optional
            Parallel chains (default: ``min(chains, CPU count)``).
        seed : int, optional
            Random seed; the same seed gives the same draws.
        target_accept : float, optional
            NUTS target acceptance rate. Default 0.8 for a (generalised) linear mixed model sampled
            with nothing integrated out or more than 200 parameters, else 0.9
            (:func:`hmodels.plan.auto_target_accept`). Raise towards 0.99 if there are divergences.
        sampler : {"nutpie", "numpyro", "pymc"}, optional
            ``"nutpie"`` (default): nutpie's NUTS on hmodels' compiled log density — compiled once
            per installation, so no model pays compilation. ``"numpyro"`` / ``"pymc"``: the
            PyMC graph (:mod:`hmodels.build`), compiled per model, following the same plan.
        progressbar : bool
        log_likelihood : bool
            Store pointwise log-likelihood (needed for LOO).
        method : {"auto", "joint", "collapsed"}
            Gaussian identity-link models can integrate a grouping factor's effects out
            analytically, so NUTS samples only the coefficients, SDs, correlations and sigma (and
            any other factor's effects), and the integrated-out effects are drawn exactly
            afterwards: the Fit holds the same variables either way. ``"auto"`` (default) and
            ``"collapsed"`` integrate out the factor with most effects; ``"joint"`` samples
            everything. Recorded in ``fit.meta["method"]`` and ``fit.meta["collapsed_factor"]``.
        prior_only : bool
            Sample the priors alone by NUTS (brms's ``sample_prior = "only"``): the PyMC graph without
            its likelihood, every factor non-centred (the prior of a hierarchical model is a funnel
            for centred effects). ``fit.meta["prior_only"]`` is True and the plan says so.
        until : {"auto", "converged", None}
            ``"converged"``: sample in rounds until the largest R-hat is at most 1.01 and the
            smallest bulk and tail ESS at least 400 over every coefficient, SD, correlation and
            family parameter, or ``max_time`` runs out (:func:`hmodels.sampling.sample_until`).
            Later rounds add draws to every chain after a fresh warm-up; a round with divergences
            is discarded and sampling restarts at the next ``target_accept`` of 0.9, 0.95, 0.99. What was done
            is in ``fit.meta["until"]`` and in :func:`hmodels.diagnostics.diagnose`.
            ``"auto"`` (default): the same when ``draws`` and ``tune`` are left at their defaults
            (a fit that meets the criteria at once is not changed; one that does not gets more
            rounds, up to :data:`~hmodels.sampling.UNTIL_AUTO_MAX_DRAWS` times the draws per chain
            and no time budget, so the same seed gives the same draws on any machine); ``None``
            otherwise. ``None``: exactly ``draws`` per chain.
        max_time : float, optional
            Seconds of sampling allowed to ``until="converged"`` (default 600; no limit for ``"auto"``).

        Returns
        -------
        Fit

        Examples
        --------
        >>> import hmodels as hm
        >>> m = hm.Model("y | se(sigma) ~ 1 + (1 | school)", hm.datasets.load("eight_schools"))
        >>> fit = m.fit(draws=300, tune=300, chains=2, seed=1, progressbar=False)
        >>> fit.divergences
        0
        """
        import time

        from .assemble import assemble_fit

        t0 = time.perf_counter()
        if until not in (None, "auto", "converged") or (until == "converged" and prior_only):
            raise SpecificationError(f"until must be 'auto', 'converged' or None (and not 'converged' with "
                                     f"prior_only=True), got until={until!r}.")
        max_draws, auto = None, until == "auto"
        if auto:  # run until converged unless the user fixed the draws (or samples the prior)
            from .sampling import UNTIL_AUTO_MAX_DRAWS

            fixed = draws is not None or tune is not None or prior_only
            until = None if fixed else "converged"
            max_draws = UNTIL_AUTO_MAX_DRAWS * 1000 if max_time is None else None
        draws = 1000 if draws is None else draws
        tune = 1000 if tune is None else tune
        cores = min(chains, os.cpu_count() or 1) if cores is None else cores
        settings = check_settings(sampler, draws, tune, chains, cores, seed, target_accept)
        check_fit_memory(self, settings, log_likelihood)  # refuse a request that cannot fit in memory
        if until == "converged":  # later rounds add draws: never more than memory holds
            from dataclasses import replace as _replace

            from .errors import SamplingError

            for mult in (64, 32, 16, 8, 4, 2, 1):
                if max_draws is not None and mult * draws > max_draws:
                    continue
                try:
                    check_fit_memory(self, _replace(settings, draws=mult * draws), log_likelihood)
                except SamplingError:
                    continue
                max_draws = mult * draws
                break
        plan = make_plan(self, settings.sampler, "joint" if prior_only else method, settings.target_accept)
        if prior_only:
            return self._fit_prior_only(plan, settings, progressbar, log_likelihood, t0)
        if plan.backend == "engine":
            from .engine.fit import sample_engine

            em = self.engine_model(plan.collapsed_factor)
            build_s = time.perf_counter() - t0

            def run(s, p):
                return sample_engine(em, p, s, progressbar=progressbar)
        else:
            from .pymc_backend import sample_pymc

            built = self.built_graph(plan.collapsed_factor, laplace=plan.method == "laplace")
            build_s = time.perf_counter() - t0

            def run(s, p):
                return sample_pymc(built, self.design, p, s, self.family.aux, progressbar=progressbar)
        record = None
        if until is None:
            result = run(settings, plan)
        else:
            from .sampling import sample_until

            budget = math.inf if auto and max_time is None else max_time  # (auto: capped in draws, not seconds)
            result, settings, record = sample_until(run, settings, plan, until, budget, max_draws=max_draws)
            record["mode"] = "auto" if auto else until
        fit = assemble_fit(self, result, settings, log_likelihood=log_likelihood, timing={"build_s": build_s})
        if record is not None:
            fit.meta["until"] = record
        fit.timing["total_s"] = time.perf_counter() - t0
        return fit

    def optimize(self, criterion: str = "reml"):
        """REML / ML point estimates as lme4 computes them; see :func:`hmodels.studies.pointfit.optimize_model`.

        Examples
        --------
        >>> import hmodels as hm
        >>> pf = hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy")).optimize("reml")
        >>> round(float(pf.variance_components().loc["sigma", "estimate"]), 4)
        25.5918
        """
        from .studies.pointfit import optimize_model

        return optimize_model(self, criterion)

    def _fit_prior_only(self, plan, settings, progressbar, log_likelihood, t0):
        """Draws from the priors by NUTS on the PyMC graph without its likelihood (see :meth:`fit`)."""
        import time
        from dataclasses import replace

        from .assemble import assemble_fit
        from .pymc_backend import sample_pymc

        if log_likelihood:
            raise SpecificationError("prior_only=True samples no likelihood; use log_likelihood=False.")
        centering = dict.fromkeys((f.factor for f in self.design.factors), False)
        if self.spec.nonlinear is not None:
            from .nonlinear.build import build_nonlinear_model

            built = build_nonlinear_model(self.design, self.priors, centering, prior_only=True)
        elif self.family.outcome == "categorical":
            from .categorical import build_categorical_model

            built = build_categorical_model(self.design, self.priors, prior_only=True)
        else:
            built = build_model(self.design, self.priors, centering, prior_only=True)
        followed = plan.for_backend("pymc")
        plan = replace(followed, sampler=settings.sampler, centered=tuple(centering.items()),
                       deviations=("prior_only: the PyMC graph without its likelihood, every factor non-centred",
                                   *followed.deviations))
        build_s = time.perf_counter() - t0
        result = sample_pymc(built, self.design, plan, settings, self.family.aux, progressbar=progressbar)
        fit = assemble_fit(self, result, settings, timing={"build_s": build_s})
        fit.meta["prior_only"] = True
        fit.timing["total_s"] = time.perf_counter() - t0
        return fit

    # -- priors (issue 4: hmodels.prior_checks)
    def explain_priors(self, prob: float = 0.95, draws: int = 4000, seed: int | None = 0):
        """Each prior, its source and data scale, and what it implies; see :func:`hmodels.prior_checks.explain_priors`.

        Examples
        --------
        >>> import hmodels as hm
        >>> m = hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy"))
        >>> "implies" in m.explain_priors().columns
        True
        """
        from .prior_checks import explain_priors

        return explain_priors(self, prob=prob, draws=draws, seed=seed)

    def prior_predictive(self, draws: int = 500, seed: int | None = None):
        """Prior predictive simulation, summary, flags and plot; see :func:`hmodels.prior_checks.prior_predictive`.

        Examples
        --------
        >>> pp = model.prior_predictive(draws=200, seed=1)  # doctest: +SKIP
        >>> pp.flags  # doctest: +SKIP
        []
        """
        from .prior_checks import prior_predictive

        return prior_predictive(self, draws=draws, seed=seed)

    def __repr__(self) -> str:
        d = self.design
        groups = ", ".join(f"{f.factor} ({f.n_levels} levels)" for f in d.factors) or "none"
        nl = self.spec.nonlinear
        params = "" if nl is None else "".join(f"\n  {k} ~ {v}" for k, v in nl.parameters)
        return (
            f"hmodels.Model: {self.spec.formula}{params}\n  family: {self.family.name} (link: {self.family.link})\n"
            f"  observations: {d.n}" + (f" ({d.n_dropped} dropped)" if d.n_dropped else "") +
            f"\n  grouping factors: {groups}\n  priors: {self.prior_set}"
        )

    def _repr_html_(self) -> str:
        from html import escape

        return "<pre>" + escape(repr(self)) + "</pre>" + self.priors._repr_html_()

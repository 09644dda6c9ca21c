"""The fit plan: how a model will be sampled, decided once, by one policy, for every backend.

A :class:`FitPlan` records every choice that shapes sampling but not the posterior: which
grouping factor is integrated out analytically (``method``), whether the population-level
coefficients are integrated out too, centred or non-centred group effects per sampled factor,
NUTS's target acceptance rate, the mass-matrix adaptation and whether identical rows are summed.
:func:`make_plan` is the only place these are decided. Every backend receives the same plan for
the same model and ``method``; where a backend cannot follow part of it, the plan it returns (from
:meth:`FitPlan.for_backend`) lists each deviation and why in ``deviations``, and the posterior
is the same in law either way. ``fit.meta["plan"]`` stores the plan a fit followed.

Policy (each rule measured; see ``benchmarks/README.md``):

- ``method="auto"`` integrates out, for a gaussian identity-link model, the factor with the most
  group effects (levels x terms); the others are sampled given it. ``"joint"`` integrates
  nothing out. ``"collapsed"`` asks for the integration and fails where it is not available.
- The coefficients are integrated out with the factor when every coefficient has a Normal prior.
- ``centered="auto"`` decides per sampled factor from level information ratios
  (:mod:`hmodels.parameterisation`), computed given what is integrated out.
- With nothing integrated out, the engine samples a centred intercept-only factor nested in another
  hierarchically centred (``hierarchical``; :func:`hmodels.parameterisation.hierarchical_factors`).
- ``target_accept`` 0.8 (:data:`JOINT_TARGET_ACCEPT`) for a (generalised) linear mixed model sampled
  jointly; 0.9 (:data:`TARGET_ACCEPT`) with a factor integrated out and for nonlinear or graph-only
  models, 0.8 above :data:`LARGE_DIM` sampled parameters. A divergent first round restarts at 0.9
  (``until="auto"``, :data:`hmodels.sampling.UNTIL_TARGETS`).
- nutpie adapts a low-rank mass matrix up to :data:`LOW_RANK_MAX_DIM` sampled parameters, a
  diagonal one above.

Examples
--------
>>> import hmodels as hm
>>> m = hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy"))
>>> plan = m.plan()
>>> plan.method, plan.collapsed_factor, plan.target_accept
('collapsed', 'Subject', 0.9)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from .errors import SpecificationError
from .families import get_family

if TYPE_CHECKING:  # annotations only
    from .model import Model

__all__ = ["FitPlan", "make_plan", "collapse_plan", "auto_target_accept", "mass_matrix_adaptation", "METHODS",
           "BACKENDS", "LOW_RANK_MAX_DIM", "TARGET_ACCEPT", "JOINT_TARGET_ACCEPT", "LARGE_DIM"]

METHODS = ("auto", "joint", "collapsed", "laplace")
#: Sampler name -> backend that runs it.
BACKENDS = {"nutpie": "engine", "numpyro": "pymc-graph", "pymc": "pymc-graph"}
#: Largest number of sampled parameters for which nutpie adapts a low-rank (correlation-aware)
#: mass matrix; above it the diagonal one (the low-rank update then costs more than it gains:
#: 3.5 s vs 1.0 s for the same ESS on a 125-parameter poisson GLMM). Issue 14 measured nutpie
#: 0.16's other adaptations on the nested poisson GLMMs of ``tests/hard`` (187 parameters, 4 x 1000
#: draws, seeds 1-2, ``benchmarks/results/hard_np_*.md``): diagonal (default) min bulk ESS 122-219,
#: R-hat 1.006-1.033, 1-6 divergences, 0.6-1.4 s; ``low_rank`` ESS 28-111, R-hat 1.03-1.11, 1-27
#: divergences, 60-107 s; ``draw_diag`` ESS 144-267 but 18-238 divergences; ``flow`` does not run on
#: the compiled log density (its adapter needs a JAX log density). tune=2000 (ESS 65-190) and
#: target_accept=0.95 (ESS 96-409, 0-2 divergences) did not win either, so the defaults stay.
LOW_RANK_MAX_DIM = 64
#: Default NUTS target acceptance rate with a factor integrated out (and for nonlinear or graph-only
#: models). 0.8 gave divergences in the tail of collapsed eight schools (1-6 in 4000 draws on each of
#: seeds 1-4) and orthodont (1 on one of 4 seeds); 0.9 gave none.
TARGET_ACCEPT = 0.9
#: Default for a (generalised) linear mixed model with nothing integrated out (Stan's, PyMC's and
#: nutpie's default). Measured against 0.9 on the 21 joint models of ``benchmarks/run.py`` and
#: ``tests/hard`` with at most 200 parameters (4 x 1000 draws, seeds 1-2): min ESS of the key parameters
#: per 1000 gradients 1.8x (median; 0.88-3.5x: e.g. gamma 250 vs 112, zero-inflated poisson 264 vs
#: 106, nested poisson 8.5 vs 4.3; only the binomial with 5 groups lost, 0.88x), with 1 divergence on
#: 4 of 42 runs (beta-binomial cbpp, grouseticks, the binomial with 5 groups twice; none at 0.9): at
#: the defaults such a round is discarded and sampling restarts at 0.9.
JOINT_TARGET_ACCEPT = 0.8
#: Above this many sampled parameters the default is 0.8 (Stan's): on the 73,000-row crossed model
#: (1,131 parameters) it needs 15 instead of 22 leapfrog steps per draw, with no divergences.
LARGE_DIM = 200


def collapse_plan(design, method: str) -> str | None:
    """The grouping factor to integrate out analytically under ``method``, or None.

    Examples
    --------
    >>> import hmodels as hm
    >>> d = hm.Model("diameter ~ 1 + (1 | plate) + (1 | sample)", hm.datasets.load("penicillin")).design
    >>> collapse_plan(d, "auto")
    'plate'
    >>> collapse_plan(d, "joint") is None
    True
    """
    if method not in METHODS:
        raise SpecificationError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}.")
    spec = design.spec
    additions = [w for a, w in (("cens", "censoring"), ("trunc", "truncation"), ("weights", "weights"))
                 if getattr(spec, a, None) is not None]
    if getattr(spec, "dpars", ()):
        additions.append("family parameters with their own formula (dpars)")
    ok = get_family(spec.family, spec.link).integrates_out and bool(design.factors) and not additions
    if method == "collapsed" and not ok:
        why = ("the model has no grouping factors" if not design.factors else
               f"the likelihood has {' and '.join(additions)}" if additions else
               f"group effects integrate out analytically only for the gaussian family with identity link, "
               f"not {spec.family} ({spec.link})")
        raise SpecificationError(f"method='collapsed' is not available: {why}. Use method='joint' or 'auto'.")
    if method == "joint" or not ok:
        return None
    sizes = [f.n_levels * len(f.terms) for f in design.factors]
    return design.factors[int(np.argmax(sizes))].factor


def auto_target_accept(ndim: int, joint: bool = False) -> float:
    """The default target acceptance rate.

    :data:`JOINT_TARGET_ACCEPT` (0.8) for a (generalised) linear mixed model sampled with nothing
    integrated out (``joint``) and above :data:`LARGE_DIM` parameters, else :data:`TARGET_ACCEPT` (0.9).

    Examples
    --------
    >>> auto_target_accept(6), auto_target_accept(6, joint=True), auto_target_accept(1000)
    (0.9, 0.8, 0.8)
    """
    return JOINT_TARGET_ACCEPT if joint or ndim > LARGE_DIM else TARGET_ACCEPT


def mass_matrix_adaptation(ndim: int) -> str:
    """``"low_rank"`` up to :data:`LOW_RANK_MAX_DIM` sampled parameters, else ``"diag"``.

    Low-rank adaptation learns the correlated directions of the posterior (an intercept against
    the mean of a few group effects): on penicillin it raised the coefficients' ESS from 391 to
    3251 in 4000 draws.

    Examples
    --------
    >>> mass_matrix_adaptation(6), mass_matrix_adaptation(500)
    ('low_rank', 'diag')
    """
    return "low_rank" if ndim <= LOW_RANK_MAX_DIM else "diag"


@dataclass(frozen=True)
class FitPlan:
    """How a model is sampled: every choice that shapes sampling but not the posterior.

    Attributes
    ----------
    sampler : str
        ``"nutpie"`` (hmodels' compiled log density), ``"numpyro"`` or ``"pymc"`` (the PyMC graph).
    backend : str
        ``"engine"`` or ``"pymc-graph"``.
    method : str
        ``"collapsed"`` (a factor's effects integrated out analytically) or ``"joint"``.
    collapsed_factor : str or None
        The integrated-out factor.
    integrate_coefficients : bool
        The population-level coefficients are integrated out with the factor (Normal priors).
    centered : tuple of (str, bool)
        Per sampled grouping factor: centred (True) or non-centred (False) group effects.
    target_accept : float
    mass_matrix : str
        ``"low_rank"``, ``"diag"`` (nutpie's adaptation) or as the backend notes.
    aggregate_rows : bool
        Identical rows of bernoulli/binomial/poisson models are summed (exact sufficient statistics).
    n_parameters : int
        Parameters NUTS samples under this plan.
    deviations : tuple of str
        Where the backend does not follow the policy, and why (empty for the engine).
    hierarchical : tuple of str
        Centred factors the engine samples hierarchically centred (each level's effect centred on
        everything constant within the level; the same posterior).
    """

    sampler: str
    backend: str
    method: str
    collapsed_factor: str | None
    integrate_coefficients: bool
    centered: tuple[tuple[str, bool], ...]
    target_accept: float
    mass_matrix: str
    aggregate_rows: bool
    n_parameters: int
    deviations: tuple[str, ...] = field(default_factory=tuple)
    hierarchical: tuple[str, ...] = field(default_factory=tuple)

    @property
    def centering(self) -> dict[str, bool]:
        """Centred (True) or not, per sampled grouping factor, as a dict."""
        return dict(self.centered)

    def to_dict(self) -> dict:
        """Plain data (stored in ``fit.meta["plan"]``)."""
        d = asdict(self)
        d["centered"] = dict(self.centered)
        d["deviations"] = list(self.deviations)
        d["hierarchical"] = list(self.hierarchical)
        return d

    def policy(self) -> dict:
        """The policy's decisions, without the backend's name and deviations (equal across backends)."""
        d = self.to_dict()
        for k in ("sampler", "backend", "deviations"):
            d.pop(k)
        return d

    def for_backend(self, sampler: str) -> FitPlan:
        """The plan a backend follows: the same decisions, with what it cannot follow listed.

        Examples
        --------
        >>> import hmodels as hm
        >>> m = hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy"))
        >>> m.plan().for_backend("pymc").deviations[0][:40]
        'the PyMC graph samples the coefficients '
        """
        backend = BACKENDS[sampler]
        if backend == "engine":
            return replace(self, sampler=sampler, backend=backend, deviations=())
        dev = []
        if self.integrate_coefficients:
            dev.append("the PyMC graph samples the coefficients (the engine integrates them out exactly); "
                       "the posterior is the same")
        if self.aggregate_rows:
            dev.append("the PyMC graph evaluates every row (the engine sums identical rows exactly)")
        if self.hierarchical:
            dev.append(f"the PyMC graph samples {', '.join(self.hierarchical)} centred (the engine samples them "
                       "hierarchically centred); the posterior is the same")
        if self.mass_matrix == "low_rank":
            dev.append(f"{sampler} adapts a diagonal mass matrix (nutpie's low-rank adaptation is engine-only)")
        return replace(self, sampler=sampler, backend=backend, deviations=tuple(dev))


def make_plan(model: Model, sampler: str, method: str = "auto", target_accept: float | None = None) -> FitPlan:
    """Decide how ``model`` is sampled (the one policy; see the module docstring).

    Parameters
    ----------
    model : Model
    sampler : {"nutpie", "numpyro", "pymc"}
    method : {"auto", "joint", "collapsed"}
    target_accept : float, optional
        Overrides the default rate.

    Returns
    -------
    FitPlan
        The plan the backend for ``sampler`` follows (deviations listed).

    Examples
    --------
    >>> import hmodels as hm
    >>> m = hm.Model("y | se(sigma) ~ 1 + (1 | school)", hm.datasets.load("eight_schools"))
    >>> a, b = make_plan(m, "nutpie"), make_plan(m, "pymc")
    >>> a.policy() == b.policy()
    True
    """
    if sampler not in BACKENDS:
        raise SpecificationError(f"Unknown sampler {sampler!r}; use one of {', '.join(BACKENDS)}.")
    if model.spec.nonlinear is not None:
        return _nonlinear_plan(model, sampler, method, target_accept)
    if method == "laplace":
        return _laplace_plan(model, sampler, target_accept)
    from .engine.layout import engine_gap

    gap = engine_gap(model.design)  # why the compiled engine cannot sample this model (None: it can)
    collapsed = collapse_plan(model.design, method)
    centering = model.centering(collapsed)
    if gap is not None:  # no compiled kernel: every sampler runs the PyMC graph
        ndim = int(sum(np.asarray(v).size for v in model.built_graph(collapsed).model.initial_point().values()))
        intbeta, aggregate, hierarchical = False, False, ()
    else:
        em = model.engine_model(collapsed)
        ndim, intbeta, aggregate = int(em.ndim), bool(em.intbeta), em.aggregated is not None
        hierarchical = tuple(f.name for f in em.factors if f.hier is not None)
    target = auto_target_accept(ndim, joint=collapsed is None) if target_accept is None else float(target_accept)
    plan = FitPlan(
        sampler="nutpie", backend="engine", method="joint" if collapsed is None else "collapsed",
        collapsed_factor=collapsed, integrate_coefficients=intbeta,
        centered=tuple((k, bool(v)) for k, v in centering.items() if k != collapsed),
        target_accept=target, mass_matrix=mass_matrix_adaptation(ndim), aggregate_rows=aggregate, n_parameters=ndim,
        hierarchical=hierarchical,
    )
    if gap is not None:
        plan = replace(plan, mass_matrix="diag")
        followed = plan.for_backend("pymc" if sampler == "nutpie" else sampler)
        note = f"{gap}, so {sampler} samples the PyMC graph (compiled for this model)"
        return replace(followed, sampler=sampler, deviations=(note, *followed.deviations))
    return plan.for_backend(sampler)


def _nonlinear_plan(model: Model, sampler: str, method: str, target_accept: float | None) -> FitPlan:
    """A nonlinear mean, nothing integrated out: the engine runs it (:mod:`hmodels.nonlinear.program`) where it can."""
    if method not in METHODS:
        raise SpecificationError(f"method must be one of {', '.join(map(repr, METHODS))}, got {method!r}.")
    if method in ("collapsed", "laplace"):
        how = "analytically" if method == "collapsed" else "by hmodels' Laplace approximation (a linear predictor's)"
        raise SpecificationError(f"method={method!r} is not available for a nonlinear model: its group effects enter "
                                 f"the mean nonlinearly, so they cannot be integrated out {how}. Use "
                                 "method='joint' or 'auto'.")
    from .engine.layout import engine_gap

    gap = engine_gap(model.design)
    if gap is None:  # the engine runs the expression as a program over the parameters' linear predictors
        centering = model.centering(None)
        ndim = int(model.engine_model(None).ndim)
        plan = FitPlan(
            sampler="nutpie", backend="engine", method="joint", collapsed_factor=None, integrate_coefficients=False,
            centered=tuple((k, bool(v)) for k, v in centering.items()),
            target_accept=auto_target_accept(ndim) if target_accept is None else float(target_accept),
            # diagonal: nutpie's low-rank adaptation gave 14 and 24 divergences (seeds 1, 2) and a chain with a 30%
            # wider sd(Subject, lKa) on Theoph with independent effects (tests/test_nonlinear_brms.py), diag 0 and 0
            mass_matrix="diag", aggregate_rows=False, n_parameters=ndim)
        return plan.for_backend(sampler)  # (other samplers run the PyMC graph of hmodels.nonlinear.build)
    note = (f"nonlinear mean: {gap}, so {sampler} samples the PyMC graph of hmodels.nonlinear.build (compiled for "
            "this model); no factor is integrated out")
    return _graph_plan(sampler, "joint", None, model.built_graph(None), model.centering(None), target_accept, note)


def _laplace_plan(model: Model, sampler: str, target_accept: float | None) -> FitPlan:
    """``method="laplace"``: the PyMC graph with one factor's random intercepts integrated out approximately."""
    from .laplace import laplace_factor

    factor = laplace_factor(model.design)  # a typed error naming why, when the model has no such factor
    centering = {k: v for k, v in model.centering(factor).items() if k != factor}
    note = (f"method='laplace' (opt-in): the effects of {factor!r} are integrated out by the Laplace approximation "
            f"inside NUTS, so {sampler} samples the PyMC graph (compiled for this model); they are drawn afterwards "
            "by importance resampling, which also checks the approximation (fit.meta['laplace'])")
    return _graph_plan(sampler, "laplace", factor, model.built_graph(factor, laplace=True), centering, target_accept,
                       note)


def _graph_plan(sampler: str, method: str, factor: str | None, built, centering: dict, target_accept: float | None,
                note: str) -> FitPlan:
    """A plan that only the PyMC graph (``built``) follows, with ``note`` first among its deviations."""
    ndim = int(sum(np.asarray(v).size for v in built.model.initial_point().values()))
    target = auto_target_accept(ndim) if target_accept is None else float(target_accept)
    followed = FitPlan(
        sampler="pymc", backend="pymc-graph", method=method, collapsed_factor=factor, integrate_coefficients=False,
        centered=tuple((k, bool(v)) for k, v in centering.items()), target_accept=target, mass_matrix="diag",
        aggregate_rows=False, n_parameters=ndim,
    ).for_backend("pymc")
    return replace(followed, sampler=sampler, deviations=(note, *followed.deviations))


@dataclass
class BackendResult:
    """What a backend returns: the canonical posterior, sample statistics, timing and its own facts.

    Attributes
    ----------
    posterior : xarray.Dataset
        The canonical variables only (dims ``chain``, ``draw``, ...): ``b`` (term), ``sd_<f>``,
        ``cor_<f>``, ``r_<f>`` (and ``z_<f>`` for standardised effects), ``sigma``, ``nu``,
        ``alpha`` — the same for every backend and plan.
    sample_stats : xarray.Dataset
        ArviZ names: ``diverging``, ``energy``, ``lp``, ``tree_depth``, ``acceptance_rate``, ...
    plan : FitPlan
        The plan the backend followed.
    timing : dict
        Seconds: ``build_s``, ``sample_s``, ``group_effects_s``.
    facts : dict
        ``engine`` (words), ``n_sampled_parameters``, ``aggregated_rows``.
    divergences : xarray.Dataset, optional
        Where divergent trajectories diverged (engine only).
    """

    posterior: object
    sample_stats: object
    plan: FitPlan
    timing: dict
    facts: dict
    divergences: object = None

"""The :class:`Fit`: posterior draws plus everything needed to read them, as plain data.

Downstream modules (summaries, diagnostics, checks, report, prediction, saving) read a Fit and
never the PyMC model, so a fit loaded from disk works the same as a fresh one.
"""

from __future__ import annotations

import warnings
from importlib import metadata

import numpy as np
import pandas as pd

from . import summary as _summary
from .errors import ConvergenceWarning, SpecificationError
from .families import get_family

__all__ = ["Fit", "package_versions"]

_PACKAGES = ("hmodels", "pymc", "pytensor", "arviz", "nutpie", "numpyro", "formulae", "numpy", "pandas")


def package_versions() -> dict[str, str]:
    """Versions of hmodels and the packages it samples and summarises with."""
    out = {}
    for p in _PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "not installed"
    return out


class Fit:
    """A fitted model: the ArviZ posterior with the spec, priors, data and sampler settings.

    Attributes
    ----------
    posterior : xarray.DataTree
        ArviZ data (``posterior``, ``sample_stats``, ``observed_data``, ...), dims named after
        terms and grouping factors.
    spec : ModelSpec
    priors : PriorTable
    settings : SamplerSettings
    meta : dict
        Plain-data description of the design (terms, factors, levels, correlation blocks).

    Examples
    --------
    >>> import hmodels as hm
    >>> fit = hm.Model("Yield ~ 1 + (1 | Batch)", hm.datasets.load("dyestuff")).fit(
    ...     draws=300, tune=300, chains=2, seed=1, progressbar=False)  # doctest: +SKIP
    >>> fit.fixed_effects().loc["Intercept", "mean"]  # doctest: +SKIP
    1527.4...
    """

    def __init__(self, posterior, spec, priors, settings, meta: dict, timing: dict | None = None,
                 versions: dict | None = None, data: pd.DataFrame | None = None, design=None, model=None):
        self.posterior = posterior
        self.spec = spec
        self.priors = priors
        self.settings = settings
        self.meta = meta
        self.timing = dict(timing or {})
        self.versions = dict(versions or package_versions())
        self.data = data
        self._design = design
        self._model = model

    @classmethod
    def from_sampling(cls, model, built, idata, settings, timing) -> Fit:
        """Assemble a Fit right after sampling and warn about convergence problems."""
        d = model.design
        meta = {
            "fixed_terms": list(d.fixed_terms),
            "factors": {
                f.factor: {
                    "levels": list(f.levels),
                    "terms": list(f.terms),
                    "cors": [[var, list(terms)] for var, terms in built.cor_vars.get(f.factor, [])],
                    "n_per_level": [int(x) for x in f.group_sizes()],
                }
                for f in d.factors
            },
            "centered": dict(built.centered),
            "intercept_prior": model.intercept_prior,
            "prior_set": str(model.prior_set),
            "observed": built.observed,
            "n_obs": d.n,
            "n_dropped": d.n_dropped,
            "dropped_rows": [int(i) for i in np.setdiff1d(np.arange(d.n + d.n_dropped), d.rows)],
        }
        fit = cls(idata, model.spec, model.priors, settings, meta, timing, data=d.data, design=d, model=model)
        for message in fit.convergence_messages():
            warnings.warn(message, ConvergenceWarning, stacklevel=3)
        return fit

    # -- summaries -------------------------------------------------------------------------
    @property
    def family(self):
        """The response family."""
        return get_family(self.spec.family, self.spec.link)

    @property
    def draws(self):
        """The ``posterior`` group (xarray Dataset of draws)."""
        return self.posterior["posterior"].to_dataset()

    def fixed_effects(self, prob: float = 0.95) -> pd.DataFrame:
        """Population-level effects: mean, sd, HDI, R-hat, ESS, one row per term.

        Parameters
        ----------
        prob : float
            Probability mass of the highest-density interval (default 0.95).

        Examples
        --------
        >>> fit.fixed_effects().loc["Days", ["mean", "hdi_low", "hdi_high"]]  # doctest: +SKIP
        """
        return _summary.fixed_effects(self.draws, self.meta["fixed_terms"], prob)

    def variance_components(self, prob: float = 0.95) -> pd.DataFrame:
        """Group SDs, correlations and residual/family parameters with intervals.

        Columns: group, term (``Intercept:Days`` for a correlation), kind (``sd``, ``cor``,
        ``sigma``, ``nu``, ``alpha``), mean, sd, hdi_low, hdi_high, r_hat, ess_bulk, ...

        Examples
        --------
        >>> fit.variance_components()  # doctest: +SKIP
        """
        meta = {f: {"terms": m["terms"], "cors": m["cors"]} for f, m in self.meta["factors"].items()}
        return _summary.variance_components(self.draws, meta, list(self.family.aux), prob)

    def group_effects(self, factor: str, prob: float = 0.95) -> pd.DataFrame:
        """Per-level deviations from the population effects for one grouping factor.

        Examples
        --------
        >>> fit.group_effects("Subject").head()  # doctest: +SKIP
        """
        if factor not in self.meta["factors"]:
            raise SpecificationError(
                f"{factor!r} is not a grouping factor of this model; factors: {', '.join(self.meta['factors']) or 'none'}."
            )
        return _summary.group_effects(self.draws, factor, prob)

    # -- convergence -----------------------------------------------------------------------
    @property
    def divergences(self) -> int:
        """Number of divergent transitions after warm-up."""
        ss = self.posterior["sample_stats"]
        if "diverging" not in ss:
            return 0
        return int(np.asarray(ss["diverging"].values).sum())

    def _key_vars(self) -> list[str]:
        post = self.draws
        names = ["b"] + [f"sd_{f}" for f in self.meta["factors"]] + [a for a in self.family.aux if a in post]
        for f, m in self.meta["factors"].items():
            names += [var for var, _ in m["cors"]]
        return [n for n in names if n in post]

    def _rhat_ess(self):
        import arviz as az

        post = self.draws[self._key_vars()]
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # constant cor diagonal
            rhat = az.rhat(post)
            ess = az.ess(post, method="bulk")
        worst_rhat, min_ess = 1.0, np.inf
        for v in post.data_vars:
            r = np.asarray(rhat[v].values, dtype=float)
            e = np.asarray(ess[v].values, dtype=float)
            if v.startswith("cor_"):  # the diagonal is constant 1
                off = ~np.eye(r.shape[-1], dtype=bool)
                r, e = r[off], e[off]
            if r.size:
                worst_rhat = max(worst_rhat, float(np.nanmax(r)))
                min_ess = min(min_ess, float(np.nanmin(e)))
        return worst_rhat, min_ess

    @property
    def converged(self) -> bool:
        """True when there are no divergences, R-hat <= 1.01 and bulk ESS >= 100 per chain."""
        rhat, ess = self._rhat_ess()
        chains = self.posterior["posterior"].sizes["chain"]
        return self.divergences == 0 and rhat <= 1.01 and ess >= 100 * chains

    def convergence_messages(self) -> list[str]:
        """Plain-language problems with the sampling, each with a remedy (empty when all is well)."""
        out = []
        n_div = self.divergences
        if n_div:
            out.append(
                f"{n_div} divergent transitions: the sampler could not explore part of the posterior, so "
                f"estimates may be biased. Refit with target_accept=0.95 or 0.99; if they persist, try "
                f"centered=True for factors with many observations per level, or simplify the random effects."
            )
        rhat, ess = self._rhat_ess()
        chains = self.posterior["posterior"].sizes["chain"]
        if rhat > 1.01:
            out.append(
                f"R-hat up to {rhat:.3f} (> 1.01): the chains disagree, so the posterior is not reliably "
                "estimated. Run more draws and tuning (draws=2000, tune=2000) or simplify the model."
            )
        if ess < 100 * chains:
            out.append(
                f"Bulk effective sample size as low as {ess:.0f} (< {100 * chains} for {chains} chains): "
                "intervals are imprecise. Run more draws, or rescale predictors to unit scale."
            )
        return out

    # -- diagnostics, checks, components, report (issue 3: hmodels.diagnostics/checks/components/report)
    def diagnose(self, group_effects: bool = True):
        """Convergence and singularity diagnosis with plain-language verdicts; see :func:`hmodels.diagnostics.diagnose`.

        Examples
        --------
        >>> fit.diagnose().ok  # doctest: +SKIP
        """
        from .diagnostics import diagnose

        return diagnose(self, group_effects=group_effects)

    def ppc(self, group=None, draws: int | None = None, seed: int = 0, prob: float = 0.95):
        """Posterior predictive check with Bayesian p-values; see :func:`hmodels.checks.ppc`.

        Examples
        --------
        >>> fit.ppc().table  # doctest: +SKIP
        """
        from .checks import ppc

        return ppc(self, group=group, draws=draws, seed=seed, prob=prob)

    def overdispersion(self, seed: int = 0):
        """Observed vs replicated dispersion (count / binomial families); see :func:`hmodels.checks.overdispersion`.

        Examples
        --------
        >>> fit.overdispersion().overdispersed  # doctest: +SKIP
        """
        from .checks import overdispersion

        return overdispersion(self, seed=seed)

    def residuals(self, seed: int = 0):
        """Fitted values and residuals per observation; see :func:`hmodels.checks.residuals`.

        Examples
        --------
        >>> fit.residuals().head()  # doctest: +SKIP
        """
        from .checks import residuals

        return residuals(self, seed=seed)

    def icc(self, prob: float = 0.95, method: str = "lognormal"):
        """Intraclass correlation per grouping factor; see :func:`hmodels.components.icc`.

        Examples
        --------
        >>> fit.icc()  # doctest: +SKIP
        """
        from .components import icc

        return icc(self, prob=prob, method=method)

    def r2(self, prob: float = 0.95, method: str = "lognormal"):
        """Marginal, conditional and Bayesian R²; see :func:`hmodels.components.r2`.

        Examples
        --------
        >>> fit.r2()  # doctest: +SKIP
        """
        from .components import r2

        return r2(self, prob=prob, method=method)

    def shrinkage(self, factor: str):
        """Raw vs fitted group means; see :func:`hmodels.components.shrinkage`.

        Examples
        --------
        >>> fit.shrinkage("Subject")  # doctest: +SKIP
        """
        from .components import shrinkage

        return shrinkage(self, factor)

    def report(self, format: str = "markdown", prob: float = 0.95, path=None, seed: int = 0):
        """Model report following the reporting checklist; see :func:`hmodels.report.report`.

        Examples
        --------
        >>> fit.report(format="html", path="report.html")  # doctest: +SKIP
        """
        from .report import report

        return report(self, format=format, prob=prob, path=path, seed=seed)

    # -- priors: prior vs posterior, sensitivity (issue 4: hmodels.prior_checks)
    def plot_prior_posterior(self, var_names=None, **kwargs):
        """Prior and posterior overlaid per parameter; see :func:`hmodels.prior_checks.plot_prior_posterior`.

        Examples
        --------
        >>> pc = fit.plot_prior_posterior(var_names=["sd_Subject"])  # doctest: +SKIP
        """
        from .prior_checks import plot_prior_posterior

        return plot_prior_posterior(self, var_names=var_names, **kwargs)

    def prior_contraction(self) -> pd.DataFrame:
        """``1 - var_post / var_prior`` per parameter; see :func:`hmodels.prior_checks.prior_contraction`.

        Examples
        --------
        >>> fit.prior_contraction()  # doctest: +SKIP
        """
        from .prior_checks import prior_contraction

        return prior_contraction(self)

    def prior_sensitivity(self, var_names=None, threshold: float = 0.05, prior_var_names=None) -> pd.DataFrame:
        """Power-scaling sensitivity with a verdict per parameter; see :func:`hmodels.prior_checks.prior_sensitivity`.

        Examples
        --------
        >>> fit.prior_sensitivity()  # doctest: +SKIP
        """
        from .prior_checks import prior_sensitivity

        return prior_sensitivity(self, var_names=var_names, threshold=threshold, prior_var_names=prior_var_names)

    # -- predict, loo, save (issue 5: hmodels.predict/comparison/io)
    def predict(self, newdata=None, kind: str = "mean", groups: str = "include", seed: int | None = None):
        """Posterior predictions; see :func:`hmodels.predict.predict`.

        Examples
        --------
        >>> fit.predict(newdata, groups="new", seed=1).summary()  # doctest: +SKIP
        """
        from .predict import predict

        return predict(self, newdata, kind=kind, groups=groups, seed=seed)

    def loo(self, by: str | None = None, pointwise: bool = True):
        """PSIS-LOO (or leave-one-group-out with ``by=``); see :func:`hmodels.comparison.loo`.

        Examples
        --------
        >>> fit.loo(by="Subject")  # doctest: +SKIP
        """
        from .comparison import loo

        return loo(self, by=by, pointwise=pointwise)

    def kfold(self, k: int = 10, by: str | None = None, seed: int | None = None, **fit_kwargs):
        """K-fold cross-validation by refitting; see :func:`hmodels.comparison.kfold`.

        Examples
        --------
        >>> fit.kfold(k=5, by="Subject", seed=1)  # doctest: +SKIP
        """
        from .comparison import kfold

        return kfold(self, k=k, by=by, seed=seed, **fit_kwargs)

    def save(self, path) -> None:
        """Save to a NetCDF file (plain data, no pickle); see :func:`hmodels.io.save`.

        Examples
        --------
        >>> fit.save("sleep.nc")  # doctest: +SKIP
        """
        from .io import save

        save(self, path)

    # -- plots (issue 6: hmodels.plots)
    def plot_effects(self, prob: float = 0.95, intercept: bool | None = None, **kwargs):
        """Forest plot of the fixed effects (ArviZ ``plot_forest``); see :func:`hmodels.plots.plot_effects`.

        Examples
        --------
        >>> fit.plot_effects()  # doctest: +SKIP
        """
        from .plots import plot_effects

        return plot_effects(self, prob=prob, intercept=intercept, **kwargs)

    def plot_groups(self, factor: str, term: str | None = None, prob: float = 0.95):
        """Caterpillar plot of one factor's group effects; see :func:`hmodels.plots.plot_groups`.

        Examples
        --------
        >>> fit.plot_groups("Subject")  # doctest: +SKIP
        """
        from .plots import plot_groups

        return plot_groups(self, factor, term=term, prob=prob)

    def plot_trajectories(self, x: str, by: str, prob: float = 0.95, levels=None, ncols: int | None = None):
        """Fitted lines per group over the data; see :func:`hmodels.plots.plot_trajectories`.

        Examples
        --------
        >>> fit.plot_trajectories("Days", by="Subject")  # doctest: +SKIP
        """
        from .plots import plot_trajectories

        return plot_trajectories(self, x, by=by, prob=prob, levels=levels, ncols=ncols)

    def plot_components(self, prob: float = 0.95):
        """Variance components with intervals; see :func:`hmodels.plots.plot_components`.

        Examples
        --------
        >>> fit.plot_components()  # doctest: +SKIP
        """
        from .plots import plot_components

        return plot_components(self, prob=prob)

    def plot_conditional(self, x: str, prob: float = 0.95, n_points: int = 50, data_points: bool = True):
        """Outcome vs one predictor on the response scale; see :func:`hmodels.plots.plot_conditional`.

        Examples
        --------
        >>> fit.plot_conditional("period")  # doctest: +SKIP
        """
        from .plots import plot_conditional

        return plot_conditional(self, x, prob=prob, n_points=n_points, data_points=data_points)


    # -- display ---------------------------------------------------------------------------
    def __repr__(self) -> str:
        s = self.settings
        head = (
            f"hmodels.Fit: {self.spec.formula}  [{self.family.name}, {self.family.link}]\n"
            f"  {self.meta['n_obs']} observations; NUTS ({s.sampler}) {s.chains} chains × {s.draws} draws "
            f"(+{s.tune} warm-up), seed {s.seed}; divergences: {self.divergences}"
        )
        fe = self.fixed_effects()[["mean", "sd", "hdi_low", "hdi_high", "r_hat", "ess_bulk"]].round(3)
        vc = self.variance_components()[["group", "term", "kind", "mean", "sd", "hdi_low", "hdi_high", "r_hat", "ess_bulk"]].round(3)
        return f"{head}\n\nFixed effects (95% HDI):\n{fe.to_string()}\n\nVariance components:\n{vc.to_string(index=False)}"

    def _repr_html_(self) -> str:
        from html import escape

        msgs = self.convergence_messages()
        warn = "".join(f'<p style="color:#b00"><b>Warning:</b> {escape(m)}</p>' for m in msgs)
        s = self.settings
        head = (f"<p><b>hmodels.Fit</b> <code>{escape(self.spec.formula)}</code> — {self.family.name} "
                f"({self.family.link}), {self.meta['n_obs']} obs, NUTS ({s.sampler}) {s.chains}×{s.draws}</p>")
        return (head + warn + "<h4>Fixed effects (95% HDI)</h4>" + self.fixed_effects().round(3).to_html()
                + "<h4>Variance components</h4>" + self.variance_components().round(3).to_html(index=False))

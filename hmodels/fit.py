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
from .errors import SpecificationError
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
        Plain-data description of the design (terms, factors, levels, correlation blocks) and of
        how it was sampled (``meta["plan"]``, :class:`~hmodels.plan.FitPlan`).

    The analysis methods (``diagnose``, ``ppc``, ``predict``, ``loo``, ``report``, ``save``,
    ``plot_*``, ...) are the functions of :mod:`hmodels.diagnostics`, :mod:`hmodels.checks`, ...
    themselves, attached by :mod:`hmodels.fit_methods`: same signature, same docstring.

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
        #: The :class:`~hmodels.model.Model` this fit came from (None for a fit loaded from a file).
        self.model = model

    @property
    def design(self):
        """The :class:`~hmodels.design.Design` of the fitted rows (rebuilt from spec and data for a loaded fit)."""
        if self._design is None:
            from .design import make_design

            if getattr(self.spec, "nonlinear", None) is not None:
                from .nonlinear.design import make_nonlinear_design

                self._design = make_nonlinear_design(self.spec, self.data, missing="drop")
            else:
                self._design = make_design(self.spec, self.data, missing="drop")
                if self._design.response_levels is not None and self.family.outcome == "categorical":
                    from .categorical import stack_categories

                    self._design = stack_categories(self._design)
        return self._design

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
        table = _summary.fixed_effects(self.draws, self.meta["fixed_terms"], prob)
        if "cutpoints" in self.family.aux and "cutpoints" in self.draws:  # ordinal thresholds, named as brms does
            import pandas as pd

            cut = self.draws["cutpoints"]
            thresholds = _summary.summarise_draws(_summary._stack(cut), [str(v) for v in cut.coords["cutpoint"].values],
                                                  prob)
            thresholds.index.name = "term"
            table = pd.concat([thresholds, table]) if len(table) else thresholds
        for name, _ in getattr(self.spec, "dpars", ()):  # a family parameter's coefficients (sigma_x), as brms
            var = f"b_{name}"
            if var in self.draws:
                import pandas as pd

                da = self.draws[var]
                extra = _summary.summarise_draws(_summary._stack(da), [str(v) for v in da.coords[da.dims[-1]].values],
                                                 prob)
                extra.index.name = "term"
                table = pd.concat([table, extra]) if len(table) else extra
        return table

    def variance_components(self, prob: float = 0.95) -> pd.DataFrame:
        """Group SDs, correlations and residual/family parameters with intervals.

        Columns: group, term (``Intercept:Days`` for a correlation), kind (``sd``, ``cor``,
        ``sigma``, ``nu``, ``alpha``), mean, sd, hdi_low, hdi_high, r_hat, ess_bulk, ...

        Examples
        --------
        >>> fit.variance_components()  # doctest: +SKIP
        """
        meta = {f: {"terms": m["terms"], "cors": m["cors"]} for f, m in self.meta["factors"].items()}
        scalar_aux = [a for a in self.family.aux if not self.family.aux_spec(a).is_vector]  # thresholds: fixed_effects
        table = _summary.variance_components(self.draws, meta, scalar_aux, prob)
        if getattr(self.spec, "dpars", ()):  # group SDs of family parameters with a formula: sd(g, sigma_Intercept)
            from .dpars import dpar_factor_meta

            dmeta, origin = dpar_factor_meta(self.design)
            if dmeta:
                import pandas as pd

                extra = _summary.variance_components(self.draws, dmeta, [], prob)
                extra["group"] = [origin[g] for g in extra["group"]]
                extra.index = [f"{k}({g}, {t})" for g, t, k in zip(extra["group"], extra["term"], extra["kind"])]
                table = pd.concat([table, extra])
        return table

    def group_effects(self, factor: str, prob: float = 0.95) -> pd.DataFrame:
        """Per-level deviations from the population effects for one grouping factor.

        Examples
        --------
        >>> fit.group_effects("Subject").head()  # doctest: +SKIP
        """
        if factor not in self.meta["factors"]:
            raise SpecificationError(
                f"{factor!r} is not a grouping factor of this model; "
                f"factors: {', '.join(self.meta['factors']) or 'none'}."
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
        if self._too_few_draws():
            return False
        rhat, ess = self._rhat_ess()
        chains = self.posterior["posterior"].sizes["chain"]
        return self.divergences == 0 and rhat <= 1.01 and ess >= 100 * chains

    def _too_few_draws(self) -> bool:
        """R-hat needs two chains and ESS a few draws per chain: with fewer, convergence is unknown."""
        sizes = self.posterior["posterior"].sizes
        return sizes["chain"] < 2 or sizes["draw"] < 4

    def convergence_messages(self) -> list[str]:
        """Plain-language problems with the sampling, each with a remedy (empty when all is well)."""
        out = []
        if self._too_few_draws():
            sizes = self.posterior["posterior"].sizes
            out.append(
                f"Convergence cannot be checked from {sizes['chain']} chain(s) of {sizes['draw']} draws (R-hat needs "
                "at least 2 chains, ESS at least 4 draws per chain), so nothing says this posterior is reliable. "
                "Refit with chains=4 and draws=1000."
            )
            return out
        n_div = self.divergences
        if n_div:
            out.append(
                f"{n_div} divergent transitions: the sampler could not explore part of the posterior, so "
                f"estimates may be biased. Refit with model.fit(target_accept=0.95) or 0.99; if they persist, "
                f"try centered=True for factors with many observations per level, or simplify the random effects."
            )
        rhat, ess = self._rhat_ess()
        chains = self.posterior["posterior"].sizes["chain"]
        until = self.meta.get("until")
        more = 'model.fit(until="converged")'
        if until and not until.get("converged"):  # rounds were added already: say so, and how to allow more
            budget = until.get("max_time")  # a budget that ran out: twice it (as diagnose() says), else 600 s
            budget = 2 * budget if budget is not None and np.isfinite(budget) else 600
            more = (f'model.fit(until="converged", max_time={budget:g}) (hmodels already sampled '
                    f'{until["n_rounds"]} round(s), {until["draws"]} draws per chain)')
        if rhat > 1.01:
            out.append(
                f"R-hat up to {rhat:.3f} (> 1.01): the chains disagree, so the posterior is not reliably "
                f"estimated. Refit with {more}, which adds draws until R-hat <= 1.01 and "
                "ESS >= 400 (or draws=2000, tune=2000); if it persists, simplify the model."
            )
        if ess < 100 * chains:
            out.append(
                f"Bulk effective sample size as low as {ess:.0f} (< {100 * chains} for {chains} chains): "
                f"intervals are imprecise. Refit with {more} or more draws, or rescale "
                "predictors to unit scale."
            )
        return out

    def __repr__(self) -> str:
        s = self.settings
        head = (
            f"hmodels.Fit: {self.spec.formula}  [{self.family.name}, {self.family.link}]\n"
            f"  {self.meta['n_obs']} observations; NUTS ({s.sampler}) {s.chains} chains × {s.draws} draws "
            f"(+{s.tune} warm-up), seed {s.seed}; divergences: {self.divergences}"
        )
        fe = self.fixed_effects()[["mean", "sd", "hdi_low", "hdi_high", "r_hat", "ess_bulk"]].round(3)
        vc_cols = ["group", "term", "kind", "mean", "sd", "hdi_low", "hdi_high", "r_hat", "ess_bulk"]
        vc = self.variance_components()[vc_cols].round(3)
        return (
            f"{head}\n\nFixed effects (95% HDI):\n{fe.to_string()}\n\n"
            f"Variance components:\n{vc.to_string(index=False)}"
        )

    def _repr_html_(self) -> str:
        from html import escape

        msgs = self.convergence_messages()
        warn = "".join(f'<p style="color:#b00"><b>Warning:</b> {escape(m)}</p>' for m in msgs)
        s = self.settings
        head = (f"<p><b>hmodels.Fit</b> <code>{escape(self.spec.formula)}</code> — {self.family.name} "
                f"({self.family.link}), {self.meta['n_obs']} obs, NUTS ({s.sampler}) {s.chains}×{s.draws}</p>")
        return (head + warn + "<h4>Fixed effects (95% HDI)</h4>" + self.fixed_effects().round(3).to_html()
                + "<h4>Variance components</h4>" + self.variance_components().round(3).to_html(index=False))

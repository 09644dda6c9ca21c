"""Simulation-based calibration (Talts et al. 2018; Modrák et al. 2023): does a fit recover its own priors.

Each replicate draws parameters from the model's priors, simulates a data set from them on the
model's design (:func:`hmodels.simulate`), fits it with the same priors and records, per parameter,
the rank of the true value among the (thinned) posterior draws. When the sampler computes the
posterior correctly, every rank is uniform. :func:`sbc` tests that twice:

- **chi-square** on the ranks in equal bins (``bins``), and
- the **ECDF-difference test** of Säilynoja, Bürkner & Vehtari (2022): the largest deviation of the
  ranks' empirical CDF from the uniform CDF, measured as the smallest two-sided binomial tail
  probability over ``K`` evaluation points, is compared with its distribution under uniformity
  (simulated); the same simulation gives the simultaneous band drawn by :meth:`SBCResult.plot`.

Ranks are made continuous (``u = (rank + U(0, 1)) / (L + 1)``, exactly uniform under calibration
whatever the number of draws ``L``), so parameters thinned differently are tested alike. Draws are
thinned to about their effective sample size (``thin="auto"``), since autocorrelated draws make
ranks clump at the extremes even for a correct sampler.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import SpecificationError
from ._dask import quiet, run_tasks
from ._settings import check_fit_kwargs
from .params import ParamLabel, draw_from_priors, parameter_labels
from .simulate import model_with_design, refuse_categorical, simulate_outcome, with_outcome

__all__ = ["sbc", "SBCResult", "draws_by_label", "ecdf_test", "ALPHA"]

#: Significance level of the verdict: a parameter is flagged when either test has p below it.
ALPHA = 0.01


# ------------------------------------------------------------------------------------------------
# posterior draws by label
# ------------------------------------------------------------------------------------------------
def draws_by_label(fit) -> dict[str, np.ndarray]:
    """Posterior draws of every parameter of a Fit, ``{label: (chain, draw) array}``.

    Examples
    --------
    >>> d = draws_by_label(fit)  # doctest: +SKIP
    >>> d["sd(Subject, Intercept)"].shape  # doctest: +SKIP
    (4, 1000)
    """
    post = fit.draws

    def arr(name):
        return np.asarray(post[name].transpose("chain", "draw", ...).values, dtype=float)

    out = {}
    if "b" in post:
        b = arr("b")
        for j, t in enumerate(fit.meta["fixed_terms"]):
            out[t] = b[..., j]
    for f, m in fit.meta["factors"].items():
        sd = arr(f"sd_{f}")
        for j, t in enumerate(m["terms"]):
            out[f"sd({f}, {t})"] = sd[..., j]
        for var, terms in m["cors"]:
            c = arr(var)
            for i in range(len(terms)):
                for j in range(i + 1, len(terms)):
                    out[f"cor({f}, {terms[i]}:{terms[j]})"] = c[..., i, j]
    for a in fit.family.aux:  # every family parameter (sigma, shape, phi, zi, ...; ordinal thresholds per label)
        if a in post:
            values = arr(a)
            if values.ndim == 2:
                out[a] = values
            else:
                labels = post[a].coords[post[a].dims[-1]].values
                out.update({str(lab): values[..., j] for j, lab in enumerate(labels)})
    return out


# ------------------------------------------------------------------------------------------------
# one replicate (runs on a Dask worker: plain inputs only)
# ------------------------------------------------------------------------------------------------
_BASE: dict[str, object] = {}


def _base_model(shared: dict):
    """The study's model, built once per worker process from plain inputs."""
    token = shared["token"]
    if token not in _BASE:
        if shared.get("model") is not None:
            _BASE[token] = shared["model"]
        else:
            from ..model import Model
            from ..spec import ModelSpec

            _BASE[token] = Model(ModelSpec.from_dict(shared["spec"]), shared["data"], priors=shared["priors"],
                                 centered=shared["centered"], intercept_prior=shared["intercept_prior"])
    return _BASE[token]


def _thin_draws(x: np.ndarray, thin) -> np.ndarray:
    """Pooled draws of one parameter, thinned by ``thin`` or to about its bulk ESS (``"auto"``)."""
    if thin == "auto":
        import arviz as az

        S = x.size
        with quiet(), np.errstate(all="ignore"):
            ess = float(az.ess(x)) if x.ndim == 2 and x.shape[1] >= 4 else float(S)
        t = int(max(1, np.floor(S / ess))) if np.isfinite(ess) and ess > 0 else 1
    else:
        t = int(thin)
    return x[..., ::t].ravel()


def _replicate(shared: dict, rep: int) -> pd.DataFrame:
    """Draw parameters from the priors, simulate, fit, and rank the truth: one row per parameter."""
    model = _base_model(shared)
    design = model.design
    labels: list[ParamLabel] = parameter_labels(design)
    ss = np.random.SeedSequence([shared["entropy"], rep])
    rng = np.random.default_rng(ss)
    fit_seed = int(ss.generate_state(1)[0] % (2**31 - 1))
    t0 = time.perf_counter()
    error, divergences = "", 0
    truth = {}
    try:
        params = draw_from_priors(design, model.priors, rng)
        truth = params.flat(design)
        y, _ = simulate_outcome(design, params, rng)
        rmodel = model_with_design(model, with_outcome(design, y))
        fitter = shared["fitter"]
        with quiet():
            if fitter is None:
                res = rmodel.fit(seed=fit_seed, progressbar=False, **shared["fit_kwargs"])
            else:
                res = fitter(rmodel, fit_seed)
        if isinstance(res, dict):
            draws = {k: np.atleast_2d(np.asarray(v, dtype=float)) for k, v in res.items()}
        else:
            draws = draws_by_label(res)
            divergences = int(getattr(res, "divergences", 0))
    except Exception as exc:  # a failed replicate is data: it is counted, never silently dropped
        error = f"{type(exc).__name__}: {exc}"[:500]
        draws = {}
    seconds = time.perf_counter() - t0
    rows = []
    for p in labels:
        x = draws.get(p.label)
        rank = n_ranks = u = mean = sd = np.nan
        err = error
        if x is not None and p.label in truth:
            xs = _thin_draws(x, shared["thin"])
            xs = xs[np.isfinite(xs)]
            if xs.size:
                t = truth[p.label]
                below, ties = int(np.sum(xs < t)), int(np.sum(xs == t))
                rank = below + (int(rng.integers(0, ties + 1)) if ties else 0)
                n_ranks = xs.size
                u = (rank + rng.uniform()) / (n_ranks + 1)
                mean, sd = float(np.mean(x)), float(np.std(x))
        elif not err:
            err = f"the fit returned no draws of {p.label!r}"
        rows.append({"replicate": int(rep), "parameter": p.label, "kind": p.kind, "truth": truth.get(p.label, np.nan),
                     "rank": float(rank), "n_ranks": float(n_ranks), "u": float(u), "post_mean": mean, "post_sd": sd,
                     "divergences": divergences, "seconds": seconds, "error": err})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------
# uniformity tests
# ------------------------------------------------------------------------------------------------
def _gamma(u_sorted: np.ndarray, z: np.ndarray, N: int) -> np.ndarray:
    """Smallest two-sided binomial tail probability of the ECDF over the points z, per sample (rows)."""
    counts = np.stack([np.searchsorted(row, z, side="right") for row in np.atleast_2d(u_sorted)])
    lo = stats.binom.cdf(counts, N, z)
    hi = stats.binom.sf(counts - 1, N, z)
    return np.min(2 * np.minimum(lo, hi), axis=1)


_NULL_CACHE: dict[tuple[int, int, int], np.ndarray] = {}


def _null_gammas(N: int, K: int, M: int = 2000) -> np.ndarray:
    key = (N, K, M)
    if key not in _NULL_CACHE:
        rng = np.random.default_rng(20220512)
        z = np.arange(1, K) / K
        sims = np.sort(rng.uniform(size=(M, N)), axis=1)
        _NULL_CACHE[key] = _gamma(sims, z, N)
    return _NULL_CACHE[key]


def ecdf_test(u: np.ndarray, K: int | None = None, alpha: float = ALPHA, M: int = 2000) -> dict:
    """The ECDF-difference test of uniformity of Säilynoja et al. (2022), by simulation.

    Parameters
    ----------
    u : ndarray
        Values in (0, 1), uniform under the null.
    K : int, optional
        Evaluation points ``z_k = k / K`` (default ``min(N, 100)``).
    alpha : float
        Level of the simultaneous band.
    M : int
        Simulated uniform samples for the null distribution.

    Returns
    -------
    dict
        ``p`` (the test's p-value), ``z`` (points), ``ecdf``, ``lower``, ``upper`` (the
        simultaneous ``1 - alpha`` band of the ECDF at z).

    Examples
    --------
    >>> r = ecdf_test(np.random.default_rng(1).uniform(size=100))
    >>> r["p"] > 0.01
    True
    >>> ecdf_test(np.random.default_rng(1).uniform(size=100) ** 2)["p"] < 0.01
    True
    """
    u = np.sort(np.asarray(u, dtype=float))
    N = u.size
    K = int(min(N, 100)) if K is None else int(K)
    z = np.arange(1, K) / K
    null = _null_gammas(N, K, M)
    g_obs = _gamma(u, z, N)[0]
    p = float(np.mean(null <= g_obs))
    g_star = float(np.quantile(null, alpha))
    lower = stats.binom.ppf(g_star / 2, N, z) / N
    upper = stats.binom.ppf(1 - g_star / 2, N, z) / N
    return {"p": p, "z": z, "ecdf": np.searchsorted(u, z, side="right") / N, "lower": lower, "upper": upper}


def _chi2(u: np.ndarray, bins: int) -> tuple[float, float]:
    counts = np.histogram(u, bins=bins, range=(0.0, 1.0))[0]
    res = stats.chisquare(counts)
    return float(res.statistic), float(res.pvalue)


def _shape_words(mean_u: float, var_u: float, N: int) -> str:
    """What a departure from uniformity looks like, in words."""
    words = []
    se_mean = np.sqrt(1 / 12 / N)
    if abs(mean_u - 0.5) > 2.5 * se_mean:
        if mean_u > 0.5:
            words.append("true values sit above most posterior draws (the posterior is biased low)")
        else:
            words.append("true values sit below most posterior draws (the posterior is biased high)")
    ratio = var_u * 12
    if ratio > 1.15:
        words.append("ranks pile up at both ends (the posterior is too narrow: overconfident)")
    elif ratio < 0.85:
        words.append("ranks bunch in the middle (the posterior is too wide: underconfident)")
    return "; ".join(words) or "the ranks depart from uniformity without a simple pattern"


# ------------------------------------------------------------------------------------------------
# the result
# ------------------------------------------------------------------------------------------------
@dataclass
class SBCResult:
    """The outcome of :func:`sbc`.

    Attributes
    ----------
    ranks : pandas.DataFrame
        One row per replicate and parameter: ``replicate``, ``parameter``, ``kind``, ``truth``,
        ``rank``, ``n_ranks`` (thinned draws L), ``u`` (continuous rank in (0, 1)),
        ``post_mean``, ``post_sd``, ``divergences``, ``seconds``, ``error``.
    table : pandas.DataFrame
        Per parameter: ``n`` (replicates with a rank), ``chi2``, ``p_chi2``, ``p_ecdf``,
        ``mean_u`` (0.5 when calibrated), ``var_ratio`` (``12 var(u)``, 1 when calibrated), ``flagged``.
    verdict : str
        The reading in words.
    alpha : float
    """

    ranks: pd.DataFrame
    table: pd.DataFrame
    verdict: str
    alpha: float = ALPHA
    settings: dict = field(default_factory=dict)

    @property
    def calibrated(self) -> bool:
        """No parameter flagged (and at least one replicate per parameter)."""
        return bool(len(self.table)) and not bool(self.table["flagged"].any())

    @property
    def failures(self) -> int:
        """Replicates whose simulation or fit raised an error."""
        r = self.ranks
        return int(r.loc[r["error"].astype(str) != "", "replicate"].nunique()) if len(r) else 0

    def __repr__(self) -> str:
        cols = ["n", "p_chi2", "p_ecdf", "mean_u", "var_ratio", "flagged"]
        return f"hmodels.SBCResult\n{self.table[cols].round(3).to_string()}\n\n{self.verdict}"

    def _repr_html_(self) -> str:
        from html import escape

        return self.table.round(3).to_html() + f"<p>{escape(self.verdict)}</p>"

    def plot(self, parameters=None, ncols: int = 3):
        """ECDF-difference plots with the simultaneous ``1 - alpha`` band, one panel per parameter.

        Returns
        -------
        matplotlib.figure.Figure

        Examples
        --------
        >>> fig = result.plot()  # doctest: +SKIP
        """
        import matplotlib.pyplot as plt

        params = list(self.table.index) if parameters is None else list(parameters)
        n = len(params)
        ncols = max(1, min(ncols, n))
        nrows = int(np.ceil(n / ncols))
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.8 * nrows), squeeze=False)
        for ax in axes.ravel()[n:]:
            ax.set_visible(False)
        for ax, p in zip(axes.ravel(), params):
            u = self.ranks.loc[(self.ranks["parameter"] == p), "u"].dropna().to_numpy()
            if not len(u):
                ax.set_title(f"{p}: no ranks")
                continue
            r = ecdf_test(u, alpha=self.alpha)
            z = r["z"]
            ax.fill_between(z, r["lower"] - z, r["upper"] - z, color="0.85", step="mid",
                            label=f"{1 - self.alpha:.0%} simultaneous band")
            ax.step(z, r["ecdf"] - z, where="mid", color="C3" if self.table.loc[p, "flagged"] else "C0")
            ax.axhline(0, color="0.4", lw=0.8)
            ax.set_title(f"{p}\np(ECDF) = {self.table.loc[p, 'p_ecdf']:.3f}", fontsize=9)
            ax.set_xlabel("fractional rank")
        axes[0, 0].set_ylabel("ECDF - uniform")
        fig.suptitle(f"SBC: {self.table['n'].max():.0f} replicates")
        fig.tight_layout()
        return fig


def _summarise(ranks: pd.DataFrame, order: list[str], alpha: float, bins: int | None) -> pd.DataFrame:
    rows = {}
    for p in order:
        u = ranks.loc[ranks["parameter"] == p, "u"].dropna().to_numpy()
        N = u.size
        if N < 2:
            rows[p] = dict(n=N, chi2=np.nan, p_chi2=np.nan, p_ecdf=np.nan, mean_u=np.nan, var_ratio=np.nan,
                           flagged=False)
            continue
        B = bins or int(max(2, min(20, N // 5)))
        chi2, p_chi2 = _chi2(u, B)
        p_ecdf = ecdf_test(u, alpha=alpha)["p"]
        rows[p] = dict(n=N, chi2=chi2, p_chi2=p_chi2, p_ecdf=p_ecdf, mean_u=float(u.mean()),
                       var_ratio=float(12 * u.var()), flagged=bool(min(p_chi2, p_ecdf) < alpha))
    t = pd.DataFrame.from_dict(rows, orient="index")
    t.index.name = "parameter"
    return t


def _verdict(table: pd.DataFrame, ranks: pd.DataFrame, alpha: float, n: int) -> str:
    reps = ranks["replicate"].nunique() if len(ranks) else 0
    failed = int(ranks.loc[ranks["error"].astype(str) != "", "replicate"].nunique()) if len(ranks) else 0
    div = int((ranks.groupby("replicate")["divergences"].first() > 0).sum()) if len(ranks) else 0
    notes = []
    if failed:
        notes.append(f"{failed} of {reps} replicates failed (see result.ranks['error']); failures can hide "
                     "miscalibration in the hardest regions of the prior")
    if div:
        notes.append(f"{div} of {reps} replicate fits had divergent transitions")
    tail = (" " + "; ".join(notes) + ".") if notes else ""
    if table.empty or table["n"].max() < 2:
        return "No ranks to test." + tail
    flagged = table[table["flagged"]]
    if flagged.empty:
        worst = table[["p_chi2", "p_ecdf"]].min(axis=1).idxmin()
        pmin = float(table.loc[worst, ["p_chi2", "p_ecdf"]].min())
        return (f"Calibrated: over {reps} replicates no parameter's ranks depart from uniformity (smallest p = "
                f"{pmin:.3f}, for {worst}; flagged below {alpha}). The fit recovers the priors it was given at "
                f"this design and sample size." + tail)
    parts = []
    for p, r in flagged.iterrows():
        parts.append(f"{p} (p chi-square = {r['p_chi2']:.2g}, p ECDF = {r['p_ecdf']:.2g}: "
                     f"{_shape_words(r['mean_u'], r['var_ratio'] / 12, int(r['n']))})")
    return (f"Not calibrated: {len(flagged)} of {len(table)} parameters have non-uniform ranks over {reps} "
            f"replicates: " + "; ".join(parts) + ". Posterior intervals for them cannot be trusted at this design "
            "and sample size: check the sampler settings (more warm-up, higher target_accept), the priors, or "
            "the model." + tail)


#: ``target_accept`` of the replicate fits unless given. Higher than a joint GLMM's default fit (0.8, which
#: restarts at 0.9 when it diverges): the replicates are short (250 warm-up draws) and unattended, their
#: truths come from the priors' tails, and a divergent replicate spoils the ranks (at 0.8, 3 of 40 fits of a
#: small poisson GLMM diverged; none at 0.9).
SBC_TARGET_ACCEPT = 0.9


def sbc(model, n: int = 200, draws: int = 250, tune: int = 250, chains: int = 2, thin="auto",
        seed: int | None = None, client=None, scheduler: str | None = None, resume=None, fitter: Callable | None = None,
        alpha: float = ALPHA, bins: int | None = None, progressbar: bool = False, **fit_kwargs) -> SBCResult:
    """Simulation-based calibration of a model's fit at its own design (see the module docstring).

    Parameters
    ----------
    model : Model
        Its priors generate the truths and are the priors of every refit; its design (predictors,
        groups, trials) is kept, the outcome is simulated.
    n : int
        Replicates.
    draws, tune, chains : int
        Sampler settings of each refit (``model.fit``); ``**fit_kwargs`` passes others
        (``target_accept``, ``method``, ``sampler``, ``cores``). ``target_accept`` is
        :data:`SBC_TARGET_ACCEPT` (0.9) unless given.
    thin : "auto" or int
        Thinning of the draws before ranking: to about the bulk ESS per parameter (default), or
        every ``thin``-th draw.
    seed : int, optional
        The study's seed: replicate ``i`` depends on (seed, i) only, so a resumed study draws the same data.
    client, scheduler :
        Where the replicates run (see :func:`hmodels.studies._dask.run_tasks`): a
        ``dask.distributed`` Client, a scheduler address, ``"local"`` (a LocalCluster of processes),
        or Dask's local ``scheduler`` (``"threads"`` default).
    resume : str or Path, optional
        Folder where results stream as Parquet; rerun the same call to finish an interrupted study.
    fitter : callable, optional
        ``fitter(model, seed) -> Fit or {label: draws}`` instead of ``model.fit``: calibrate another
        inference algorithm (its draws must be keyed by the labels of a Fit's tables). Must be
        picklable for process-based clusters (a module-level function).
    alpha : float
        A parameter is flagged when its chi-square or ECDF p-value is below ``alpha``.
    bins : int, optional
        Chi-square bins (default ``min(20, n // 5)``).
    progressbar : bool

    Returns
    -------
    SBCResult
        ``.table`` (p-values per parameter), ``.ranks``, ``.verdict``, ``.calibrated``, ``.plot()``.

    Examples
    --------
    >>> import hmodels as hm
    >>> m = hm.Model("y | se(sigma) ~ 1 + (1 | school)", hm.datasets.load("eight_schools"))
    >>> res = hm.sbc(m, n=30, draws=100, tune=150, seed=1)
    >>> res.calibrated, list(res.table.index)
    (True, ['Intercept', 'sd(school, Intercept)'])
    """
    from ..model import Model

    if not isinstance(model, Model):
        raise SpecificationError(f"sbc needs an hmodels Model, got {type(model).__name__}.")
    refuse_categorical(model.design)
    if model.spec.weights is not None:
        raise SpecificationError(
            "sbc calibrates a generative model, but a weighted likelihood (weights()) is not one: its posterior is "
            "not the posterior of data simulated from the model, so the ranks would not be uniform even for a "
            "correct sampler. Calibrate the model without weights()."
        )
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 2:
        raise SpecificationError(f"n must be an integer >= 2 (replicates), got {n!r}.")
    if not (thin == "auto" or (isinstance(thin, (int, np.integer)) and thin >= 1)):
        raise SpecificationError(f"thin must be 'auto' or a positive integer, got {thin!r}.")
    if fitter is not None and not callable(fitter):
        raise SpecificationError("fitter must be a callable fitter(model, seed) -> Fit or {label: draws}.")
    entropy = int(np.random.SeedSequence(seed).entropy) if seed is None else int(seed)
    fit_kwargs = {"draws": int(draws), "tune": int(tune), "chains": int(chains), **fit_kwargs}
    if fitter is None:
        fit_kwargs.setdefault("target_accept", SBC_TARGET_ACCEPT)
    check_fit_kwargs(fit_kwargs, "sbc")
    spec_dict = model.spec.to_dict()
    priors = {r.slot.param: r.prior for r in model.priors}
    data_hash = hashlib.sha256(pd.util.hash_pandas_object(model.design.data, index=False).values.tobytes()).hexdigest()
    config = {"spec": spec_dict, "priors": {k: v.identity for k, v in priors.items()}, "data": data_hash[:16],
              "seed": entropy, "fit": fit_kwargs, "thin": thin, "fitter": getattr(fitter, "__qualname__", None),
              "intercept_prior": model.intercept_prior, "centered": repr(model.centered_request)}
    token = hashlib.sha256(repr(sorted(config.items())).encode()).hexdigest()[:16]
    local = client is None and scheduler in (None, "threads", "synchronous", "sync", "single-threaded")
    shared = {"token": token, "spec": spec_dict, "data": model.design.data, "priors": priors,
              "centered": model.centered_request, "intercept_prior": model.intercept_prior,
              "entropy": entropy, "fit_kwargs": fit_kwargs, "thin": thin, "fitter": fitter,
              # in this process the model itself is reused (no rebuild); workers rebuild it from plain data
              "model": None}
    if local:
        _BASE[token] = model
    if seed is None:
        warnings.warn(f"sbc: no seed given; this study's seed is {entropy} (pass seed={entropy} to reproduce or "
                      "resume it).", UserWarning, stacklevel=2)
    tasks = [((i,), (i,)) for i in range(int(n))]
    try:
        ranks = run_tasks(_replicate, tasks, kind="sbc", config=config, key_columns=["replicate"],
                          client=client, scheduler=scheduler, resume=resume, progressbar=progressbar, shared=shared)
    finally:
        _BASE.pop(token, None)
    ranks = ranks[ranks["replicate"] < n] if len(ranks) else ranks
    order = [p.label for p in parameter_labels(model.design)]
    table = _summarise(ranks, order, alpha, bins)
    return SBCResult(ranks=ranks, table=table, verdict=_verdict(table, ranks, alpha, n), alpha=alpha,
                     settings={"n": n, "seed": entropy, **fit_kwargs, "thin": thin})

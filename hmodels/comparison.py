"""Predictive model comparison: PSIS-LOO, leave-one-group-out, K-fold, and comparison tables.

All estimates come from ArviZ (``az.loo``, ``az.loo_kfold``, ``az.compare``); this module builds
their input from the Fit alone — the pointwise log-likelihood is recomputed from the draws with
:func:`hmodels.linpred.pointwise_loglik`, so fits loaded from disk (or fitted without
``log_likelihood=True``) work too.

Leave-one-group-out (``by="Subject"``) sums each group's pointwise log-likelihood into one
log-likelihood per group, so PSIS estimates how well the model predicts a *whole new group*
(a new subject) rather than a new observation of a known one. Removing a whole group moves the
posterior more than removing one observation, so high Pareto k values are common there; when
they appear, :func:`kfold` (exact refits) is the reliable alternative.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import xarray as xr

from .errors import SamplingError, SpecificationError
from .linpred import fit_design, linear_predictor, pointwise_loglik

__all__ = ["loo", "kfold", "compare", "Comparison", "LOOWarning", "log_likelihood_tree"]


class LOOWarning(UserWarning):
    """PSIS-LOO is unreliable for some observations or groups (high Pareto k)."""


def _group_codes(fit, by: str) -> tuple[np.ndarray, list[str]]:
    design = fit_design(fit)
    if by in fit.meta["factors"]:
        f = design.factor(by)
        return f.codes, list(f.levels)
    data = fit.data if fit.data is not None else design.data
    if by in data.columns:
        codes, uniques = pd.factorize(data[by], sort=True)
        return codes.astype(np.int64), [str(u) for u in uniques]
    raise SpecificationError(
        f"by={by!r} is neither a grouping factor ({', '.join(fit.meta['factors']) or 'none'}) nor a column of "
        f"the fitted data ({', '.join(map(str, data.columns))})."
    )


def log_likelihood_tree(fit, by: str | None = None, weightless: bool = False) -> xr.DataTree:
    """ArviZ data with ``posterior`` and a ``log_likelihood`` group, per observation or per group.

    Rows (or groups) whose ``weights()`` are all 0 have no likelihood (0 in every draw): they are left
    out, as if dropped (PSIS cannot smooth a constant), unless ``weightless`` (K-fold, which needs every row).

    Examples
    --------
    >>> tree = log_likelihood_tree(fit, by="Subject")  # doctest: +SKIP
    >>> tree["log_likelihood"]["Reaction"].dims  # doctest: +SKIP
    ('chain', 'draw', 'Subject')
    """
    design = fit_design(fit)
    ll = pointwise_loglik(fit, linear_predictor(fit, design), design)
    name = fit.meta.get("observed") or fit.spec.response
    if by is None:
        dim, coords = "obs", np.arange(ll.shape[-1])
    else:
        codes, levels = _group_codes(fit, by)
        summed = np.stack([ll[..., codes == j].sum(axis=-1) for j in range(len(levels))], axis=-1)
        ll, dim, coords = summed, by, levels
    weights = getattr(design, "weights", None)
    if weights is not None and not weightless and (weights == 0).any():
        if by is None:
            keep = weights > 0
        else:
            keep = np.bincount(codes, weights=weights, minlength=len(coords)) > 0
        ll, coords = ll[..., keep], np.asarray(coords)[keep]
    c, d = ll.shape[:2]
    ds = xr.Dataset({name: (("chain", "draw", dim), ll)},
                    coords={"chain": np.arange(c), "draw": np.arange(d), dim: coords})
    post = fit.posterior["posterior"].to_dataset()
    post = post.assign_coords(chain=np.arange(c), draw=np.arange(d))
    return xr.DataTree.from_dict({"/posterior": post, "/log_likelihood": ds})


def loo(fit, by: str | None = None, pointwise: bool = True):
    """Pareto-smoothed importance-sampling leave-one-out cross-validation (ArviZ ``az.loo``).

    Parameters
    ----------
    fit : Fit
    by : str, optional
        A grouping factor or data column: leave one *group* out (the log-likelihood of all of a
        group's observations together), answering "how well do we predict a new group?".
    pointwise : bool
        Keep pointwise ``elpd_i`` and ``pareto_k``.

    Returns
    -------
    arviz_stats ELPDData
        ``elpd``, ``se``, ``p``, ``pareto_k``, ``good_k``, ... A :class:`LOOWarning` names the
        observations or groups with high Pareto k and suggests :func:`kfold`.

    Examples
    --------
    >>> fit.loo().elpd  # doctest: +SKIP
    >>> fit.loo(by="Subject").se  # doctest: +SKIP
    """
    import arviz as az

    tree = log_likelihood_tree(fit, by)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # replaced by the plain-language warning below
        res = az.loo(tree, pointwise=True)
    k = np.asarray(res.pareto_k.values) if res.pareto_k is not None else np.zeros(0)
    good = float(res.good_k) if res.good_k is not None else 0.7
    high = np.flatnonzero(k > good)
    if high.size:
        unit = f"groups of {by!r}" if by else "observations"
        labels = res.pareto_k.coords[res.pareto_k.dims[0]].values[high]
        shown = ", ".join(map(str, labels[:8])) + (" ..." if high.size > 8 else "")
        call = f"fit.kfold(k={min(10, k.size)}, by={by!r})" if by else "fit.kfold(k=10)"
        warnings.warn(
            f"PSIS-LOO is unreliable for {high.size} of {k.size} {unit} (Pareto k > {good:.2f}: {shown}); "
            f"those are so influential that leaving them out changes the posterior a lot, so this elpd may be "
            f"too optimistic. Use exact K-fold cross-validation instead: {call}.",
            LOOWarning, stacklevel=3,
        )
    if not pointwise:
        res.elpd_i = None
    return res


def _fold_assignments(n: int, k: int, groups: np.ndarray | None, seed: int | None) -> np.ndarray:
    """Fold number (1..k) of each row: random, balanced, whole groups together when ``groups`` is given."""
    rng = np.random.default_rng(271 if seed is None else seed)
    if groups is None:
        return (rng.permutation(n) % k) + 1
    uniq = np.unique(groups)
    fold_of_group = dict(zip(rng.permutation(uniq), (np.arange(len(uniq)) % k) + 1))
    return np.array([fold_of_group[g] for g in groups])


def _check_training_categories(spec, data: pd.DataFrame, train: pd.DataFrame) -> None:
    """A DataError when a categorical outcome's category is only in a fold's held-out rows."""
    from .design import _raw_response
    from .errors import DataError
    from .families.categorical import nominal_categories

    have = set(nominal_categories(_raw_response(spec, train), spec.response)[1])
    absent = [lv for lv in nominal_categories(_raw_response(spec, data), spec.response)[1] if lv not in have]
    if absent:
        raise DataError(
            f"the categories {', '.join(map(repr, absent))} of {spec.response!r} are only in the held-out rows, so "
            "the refitted model would have no linear predictor for them and could not score them."
        )


def _fold_loglik(spec_dict: dict, data: pd.DataFrame, priors: dict, fit_meta: dict, test_idx: np.ndarray,
                 fit_kwargs: dict, seed: int | None) -> np.ndarray:
    """Fit on all rows but ``test_idx`` and return the held-out rows' log likelihood (chain, draw, n_test).

    A module-level function of plain inputs, so that Dask can run it on any worker. Held-out rows of
    levels absent from the training rows get group effects drawn from the fitted population
    distribution (:func:`hmodels.predict.new_level_effects`).
    """
    from .model import Model
    from .predict import new_design, new_dpar_level_effects, new_level_effects
    from .spec import ModelSpec
    from .studies._dask import quiet

    keep = np.setdiff1d(np.arange(len(data)), test_idx)
    train, test = data.iloc[keep].reset_index(drop=True), data.iloc[test_idx].reset_index(drop=True)
    from .errors import DataError

    try:
        spec = ModelSpec.from_dict(spec_dict)
        if spec.family == "categorical":
            _check_training_categories(spec, data, train)  # else its priors name a category the refit lacks
        model = Model(spec, train, priors=priors,
                      centered=fit_meta.get("centered", "auto"), intercept_prior=fit_meta.get("intercept_prior",
                                                                                              "centered"))
    except DataError as exc:  # e.g. an ordinal category that only the held-out rows have
        raise DataError(
            f"K-fold: the model cannot be refitted without the {len(test_idx)} held-out rows of one fold: {exc} "
            "Use fewer folds (k=) or folds that keep every category and level in each training set (by=)."
        ) from None
    with quiet():
        refit = model.fit(seed=seed, **fit_kwargs)
    if refit.family.outcome in ("ordinal", "categorical") and refit.spec.response in test.columns:
        test = test.drop(columns=refit.spec.response)  # labels, not numbers: _held_out_outcome codes them
    design, unseen = new_design(refit, test, need_trials=True, need_se=True)
    design = _held_out_outcome(refit, design, data, test_idx)
    streams = np.random.SeedSequence(seed).spawn(2) if seed is not None else (None, None)
    effects = new_level_effects(refit, design, unseen, seed=seed) if unseen else None  # (as it always was)
    dpar_effects = new_dpar_level_effects(refit, design, unseen, seed=streams[1])
    return pointwise_loglik(refit, linear_predictor(refit, design, effects=effects), design, dpar_effects)


def _held_out_outcome(refit, design, data: pd.DataFrame, test_idx: np.ndarray):
    """The held-out rows' outcome as the likelihood reads it, from the fitted rows ``data``.

    An ordinal or categorical outcome as the refit's category numbers (``1..K``, not the raw ratings or
    labels), and the rows' censoring codes and weights: without them a censored row would be scored by its
    density and a weighted row unweighted.
    """
    from dataclasses import replace

    from .design import _raw_response, make_design
    from .errors import DataError

    spec, changes = refit.spec, {}
    if refit.family.outcome in ("ordinal", "categorical"):
        from .families.categorical import nominal_categories
        from .families.ordinal import ordinal_categories

        categories = ordinal_categories if refit.family.outcome == "ordinal" else nominal_categories
        codes, levels = categories(_raw_response(spec, data), spec.response)
        position = {lv: k for k, lv in enumerate(refit.design.response_levels, start=1)}
        held = [levels[c - 1] for c in codes[test_idx]]
        absent = sorted({str(lv) for lv in held if lv not in position})
        if absent:
            raise DataError(
                f"A held-out fold has categories of {spec.response!r} that its training rows lack "
                f"({', '.join(absent)}): the refitted model has no threshold (ordinal) or linear predictor "
                "(categorical) for them, so they cannot be scored. "
                "Use fewer folds (k) or merge rare categories."
            )
        changes["y"] = np.array([position[lv] for lv in held], dtype=np.int64)
    if getattr(spec, "cens", None) is not None or getattr(spec, "weights", None) is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            full = make_design(spec, data)  # the fitted rows: every one is complete
        if full.cens is not None:
            changes["cens"] = full.cens[test_idx]
        if full.weights is not None:
            changes["weights"] = full.weights[test_idx]
    return replace(design, **changes) if changes else design


def _fold_task(shared: dict, fold: int, test_idx: np.ndarray, seed: int | None) -> pd.DataFrame:
    """One fold as a study task: a row per held-out observation with its log likelihood per draw (flattened)."""
    ll = _fold_loglik(shared["spec"], shared["data"], shared["priors"], shared["meta"], test_idx, shared["kwargs"],
                      seed)
    chains, draws = ll.shape[:2]
    flat = ll.reshape(chains * draws, -1)
    return pd.DataFrame({"fold": int(fold), "obs": np.asarray(test_idx, dtype=np.int64), "chains": int(chains),
                         "loglik": [np.ascontiguousarray(flat[:, i]) for i in range(flat.shape[1])]})


def _precomputed_folds(results: dict):
    """An ArviZ SamplingWrapper that hands ``az.loo_kfold`` the held-out log likelihoods computed in parallel.

    ``results`` maps the sorted test rows of each fold (a tuple) to their (chain, draw, n_test) log likelihood.
    """
    from arviz_stats.loo import SamplingWrapper

    class PrecomputedFolds(SamplingWrapper):
        def __init__(self):
            super().__init__(model=None)

        def sel_observations(self, idx):
            key = tuple(int(i) for i in np.sort(np.asarray(idx, dtype=int)))
            return key, key

        def sample(self, modified_observed_data):
            return results[modified_observed_data]

        def get_inference_data(self, fitted_model):
            return fitted_model

        def log_likelihood__i(self, excluded_obs, idata__i):
            return xr.DataArray(idata__i, dims=("chain", "draw", "obs"))

    return PrecomputedFolds()


def kfold(fit, k: int = 10, by: str | None = None, seed: int | None = None, client=None, scheduler=None,
          resume=None, progressbar: bool = False, **fit_kwargs):
    """Exact K-fold cross-validation: refit on K-1 folds, score the held-out fold (``az.loo_kfold``).

    The K refits are independent tasks of the studies' Dask runner
    (:func:`hmodels.studies._dask.run_tasks`, as :func:`hmodels.sbc` and :func:`hmodels.power`):
    on local threads by default, on a ``dask.distributed`` cluster with ``client=`` (or when a
    distributed client is active), and with ``resume=folder`` every finished fold is written to
    Parquet as it arrives, so an interrupted cross-validation reruns only its missing folds.
    Each refit uses the fit's spec, its resolved priors (the same prior objects, not re-derived from
    the subset), centring and sampler settings; ArviZ then combines the held-out log likelihoods.
    Held-out rows of levels absent from the training folds get group effects drawn from the fitted
    population distribution (:func:`hmodels.predict.new_level_effects`), for the family parameters' own
    factors too (:func:`hmodels.predict.new_dpar_level_effects`).

    Parameters
    ----------
    fit : Fit
        Works for loaded fits too (the model is rebuilt from spec, data and priors).
    k : int
        Number of folds.
    by : str, optional
        Keep each group of this factor or column in one fold (leave-groups-out).
    seed : int, optional
        Seed of the fold split and the refits (fold ``j`` is refitted with ``seed + j + 1``);
        required with ``resume``.
    client : optional
        A ``dask.distributed`` Client, a scheduler address (``"tcp://scheduler:8786"``) or
        ``"local"`` (a LocalCluster of one process per core, closed afterwards).
    scheduler : str, optional
        Dask's local scheduler when no client is used: ``"threads"`` (default), ``"processes"``
        or ``"synchronous"``. (A distributed Client given here is used as ``client``.)
    resume : str or Path, optional
        Folder where the folds' results stream as Parquet; rerun the same call to finish an
        interrupted cross-validation. A folder of another study (other data, priors, folds, seed or
        sampler settings) is refused with a :class:`~hmodels.errors.SpecificationError`.
    progressbar : bool
        A progress bar over the folds.
    **fit_kwargs
        Overrides of the refits' sampler settings (e.g. ``draws=500, chains=2``).

    Returns
    -------
    arviz_stats ELPDData (kind ``"loo_kfold"``)

    Examples
    --------
    >>> fit.kfold(k=5, by="Subject", seed=1, draws=500)  # doctest: +SKIP
    >>> fit.kfold(k=10, seed=1, client="tcp://scheduler:8786", resume="kfold-sleep")  # doctest: +SKIP
    """
    import hashlib

    import arviz as az

    from .studies._dask import run_tasks
    from .studies._settings import check_fit_kwargs

    if not isinstance(k, int) or isinstance(k, bool) or k < 2:
        raise SpecificationError(f"k must be an integer >= 2, got {k!r}.")
    if resume is not None and seed is None:
        raise SpecificationError("kfold with resume= needs a seed (seed=...): the resumed folds must be the same "
                                 "split and the same refits as the stored ones.")
    if scheduler is not None and not isinstance(scheduler, str):
        client, scheduler = scheduler, None  # a distributed Client passed as the scheduler
    groups = _group_codes(fit, by)[0] if by is not None else None
    if groups is not None and k > len(np.unique(groups)):
        raise SpecificationError(f"k={k} folds but {by!r} has only {len(np.unique(groups))} groups; use k <= that.")
    data = fit.data if fit.data is not None else fit_design(fit).data
    folds = _fold_assignments(len(data), k, groups, seed)
    s = fit.settings
    kwargs = dict(draws=s.draws, tune=s.tune, chains=s.chains, cores=s.cores, target_accept=s.target_accept,
                  sampler=s.sampler, progressbar=False, method=fit.meta.get("method", "auto"))
    kwargs.update(fit_kwargs)
    check_fit_kwargs(kwargs, "kfold")
    priors = {r.slot.param: r.prior for r in fit.priors}
    meta = {"centered": fit.meta.get("centered", "auto"), "intercept_prior": fit.meta.get("intercept_prior",
                                                                                            "centered")}
    if fit.family.outcome == "categorical":  # always non-centred; the Model refuses any explicit centring
        meta["centered"] = "auto"
    tests = [np.flatnonzero(folds == j) for j in range(1, k + 1)]
    data_hash = hashlib.sha256(pd.util.hash_pandas_object(data, index=False).values.tobytes()).hexdigest()[:16]
    config = {"spec": fit.spec.to_dict(), "data": data_hash, "priors": {p: v.identity for p, v in priors.items()},
              "meta": meta, "k": k, "by": by, "folds": hashlib.sha256(folds.tobytes()).hexdigest()[:16],
              "seed": seed, "fit": kwargs}
    shared = {"spec": fit.spec.to_dict(), "data": data, "priors": priors, "meta": meta, "kwargs": kwargs}
    tasks = [((j + 1,), (j + 1, idx, None if seed is None else seed + j + 1)) for j, idx in enumerate(tests)]
    rows = run_tasks(_fold_task, tasks, kind="kfold", config=config, key_columns=["fold"], client=client,
                     scheduler=scheduler, resume=resume, progressbar=progressbar, shared=shared)
    missing = sorted(set(range(1, k + 1)) - set(int(f) for f in rows["fold"].unique()))
    if missing:
        raise SamplingError(
            f"Folds {missing} of {k} did not finish (their workers died); K-fold needs every fold. Run the same "
            "call again" + (" with the same resume= folder: only the missing folds are refitted." if resume
                            else " (pass resume=folder to keep finished folds across runs).")
        )
    results = {}
    for j, idx in enumerate(tests):
        r = rows[rows["fold"] == j + 1].sort_values("obs")
        chains = int(r["chains"].iloc[0])
        ll = np.stack([np.asarray(v, dtype=float) for v in r["loglik"]], axis=-1)
        results[tuple(int(i) for i in r["obs"])] = ll.reshape(chains, -1, ll.shape[-1])
    wrapper = _precomputed_folds(results)
    tree = log_likelihood_tree(fit, weightless=True)
    return az.loo_kfold(tree, wrapper, pointwise=True, k=k, folds=folds)


class Comparison:
    """ArviZ's comparison table of several fits with a plain-language reading.

    Attributes
    ----------
    table : pandas.DataFrame
        ``az.compare`` output: rank, elpd, p, elpd_diff, weight, se, dse, warning, ...
    reading : str
        What the table says, in words.
    elpd : dict
        The ELPDData of each model.

    Examples
    --------
    >>> cmp = hm.compare({"intercepts": f1, "slopes": f2})  # doctest: +SKIP
    >>> print(cmp.reading)  # doctest: +SKIP
    """

    def __init__(self, table: pd.DataFrame, reading: str, elpd: dict):
        self.table = table
        self.reading = reading
        self.elpd = elpd

    def __repr__(self) -> str:
        return f"{self.table.round(2).to_string()}\n\n{self.reading}"

    def _repr_html_(self) -> str:
        from html import escape

        return self.table.round(2).to_html() + f"<p>{escape(self.reading)}</p>"


def compare(fits: dict, by: str | None = None, method: str = "stacking") -> Comparison:
    """Compare fits of the same data by expected log predictive density (``az.compare``).

    Parameters
    ----------
    fits : dict
        Name -> Fit (or an ELPDData from :func:`loo` / :func:`kfold`), at least two.
    by : str, optional
        Compare by leave-one-group-out (see :func:`loo`).
    method : str
        ArviZ's weighting method (``"stacking"`` default, ``"bb-pseudo-bma"``, ``"pseudo-bma"``).

    Returns
    -------
    Comparison

    Examples
    --------
    >>> import hmodels as hm
    >>> cmp = hm.compare({"intercepts": fit1, "slopes": fit2}, by="Subject")  # doctest: +SKIP
    >>> cmp.table  # doctest: +SKIP
    """
    import arviz as az

    from .fit import Fit

    if not isinstance(fits, dict) or len(fits) < 2:
        raise SpecificationError(
            "compare needs a dict of at least two named fits, e.g. {'intercepts': f1, 'slopes': f2}."
        )
    ys = {}
    for name, f in fits.items():
        if isinstance(f, Fit):
            ys[name] = np.asarray(fit_design(f).y, dtype=float)
    if ys:
        first, y0 = next(iter(ys.items()))
        for name, y in ys.items():
            if y.shape != y0.shape or not np.allclose(y, y0, equal_nan=True):
                raise SpecificationError(
                    f"Models {first!r} and {name!r} were fitted to different data "
                    f"({y0.size} vs {y.size} observations); "
                    "predictive comparison needs the same observations in every model."
                )
    elpds = {name: (loo(f, by=by) if isinstance(f, Fit) else f) for name, f in fits.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.compare(elpds, method=method, round_to="none")
    return Comparison(table, _reading(table, by), elpds)


def _reading(table: pd.DataFrame, by: str | None) -> str:
    what = f"for a new group of {by!r} (leave-one-group-out)" if by else "for new observations (leave-one-out)"
    best = table.index[0]
    lines = [f"Best expected predictive accuracy {what}: {best!r}."]
    for name in table.index[1:]:
        diff, dse = abs(float(table.loc[name, "elpd_diff"])), float(table.loc[name, "dse"])
        if diff > 2 * dse and diff > 4:
            verdict = f"clearly worse (elpd lower by {diff:.1f} ± {dse:.1f}, more than 2 SE): prefer {best!r}"
        else:
            verdict = (f"not distinguishable (elpd difference {diff:.1f} ± {dse:.1f}, within 2 SE or below 4): "
                       "the data do not favour either; the simpler model is adequate")
        lines.append(f"{name!r} vs {best!r}: {verdict}.")
    if "warning" in table.columns and table["warning"].astype(bool).any():
        bad = ", ".join(map(repr, table.index[table["warning"].astype(bool)]))
        lines.append(f"High Pareto k for {bad}: confirm with K-fold cross-validation (fit.kfold).")
    return " ".join(lines)

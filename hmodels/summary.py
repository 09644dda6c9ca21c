"""Posterior summary tables (fixed effects, variance components, group effects).

Pure functions of draws; ArviZ computes every statistic (mean, sd, HDI, R-hat, ESS, MCSE).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["summarise_draws", "fixed_effects", "variance_components", "group_effects"]

COLUMNS = ["mean", "sd", "hdi_low", "hdi_high", "r_hat", "ess_bulk", "ess_tail", "mcse_mean"]


def summarise_draws(draws: np.ndarray, labels: list[str], prob: float = 0.95) -> pd.DataFrame:
    """Summarise draws of shape (chain, draw, row) into one row per label.

    Columns: mean, sd, hdi_low, hdi_high (highest-density interval of ``prob``), r_hat, ess_bulk,
    ess_tail, mcse_mean — all computed by ArviZ.

    Examples
    --------
    >>> import numpy as np
    >>> from hmodels.summary import summarise_draws
    >>> t = summarise_draws(np.random.default_rng(0).normal(size=(2, 500, 1)), ["x"])
    >>> list(t.columns)[:4]
    ['mean', 'sd', 'hdi_low', 'hdi_high']
    """
    import arviz as az

    draws = np.asarray(draws, dtype=float)
    ds = xr.Dataset({"x": (("chain", "draw", "row"), draws)}, coords={"row": np.arange(draws.shape[-1])})
    dt = xr.DataTree.from_dict({"posterior": ds})
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        s = az.summary(dt, ci_prob=prob, ci_kind="hdi", round_to="none")
    lb = [c for c in s.columns if c.startswith("hdi") and c.endswith("_lb")][0]
    ub = [c for c in s.columns if c.startswith("hdi") and c.endswith("_ub")][0]
    s = s.rename(columns={lb: "hdi_low", ub: "hdi_high"})
    s.index = list(labels)
    out = s[COLUMNS].astype(float)
    out.attrs["prob"] = prob
    return out


def _stack(da: xr.DataArray) -> np.ndarray:
    return np.asarray(da.transpose("chain", "draw", ...).values)


def fixed_effects(posterior, terms: list[str], prob: float = 0.95) -> pd.DataFrame:
    """One row per population-level term (index = term name)."""
    if not terms:
        return pd.DataFrame(columns=COLUMNS)
    draws = _stack(posterior["b"])
    t = summarise_draws(draws, terms, prob)
    t.index.name = "term"
    return t


def variance_components(posterior, design_meta: dict, family_aux: list[str], prob: float = 0.95) -> pd.DataFrame:
    """Group SDs, correlations and family parameters, one row each.

    ``design_meta`` maps factor -> {"terms": [...], "cors": [(var, [terms])]}.
    """
    rows, arrays = [], []
    for factor, meta in design_meta.items():
        sd = _stack(posterior[f"sd_{factor}"])
        for j, term in enumerate(meta["terms"]):
            rows.append((factor, term, "sd"))
            arrays.append(sd[..., j])
        for var, bterms in meta["cors"]:
            cor = _stack(posterior[var])
            for i in range(len(bterms)):
                for j in range(i + 1, len(bterms)):
                    rows.append((factor, f"{bterms[i]}:{bterms[j]}", "cor"))
                    arrays.append(cor[..., i, j])
    for a in family_aux:
        if a in posterior:
            rows.append(("", "", a))
            arrays.append(_stack(posterior[a]))
    if not rows:
        return pd.DataFrame(columns=["group", "term", "kind", *COLUMNS])
    draws = np.stack(arrays, axis=-1)
    labels = [f"{k}({g}, {t})" if g else k for g, t, k in rows]
    t = summarise_draws(draws, labels, prob)
    t.insert(0, "kind", [r[2] for r in rows])
    t.insert(0, "term", [r[1] for r in rows])
    t.insert(0, "group", [r[0] for r in rows])
    return t


def group_effects(posterior, factor: str, prob: float = 0.95) -> pd.DataFrame:
    """Per-level deviations of one grouping factor: one row per (level, term)."""
    r = posterior[f"r_{factor}"]
    levels = [str(v) for v in r.coords[factor].values]
    terms = [str(v) for v in r.coords[f"{factor}__term"].values]
    draws = _stack(r).reshape(r.sizes["chain"], r.sizes["draw"], -1)
    t = summarise_draws(draws, [f"{lv}|{tm}" for lv in levels for tm in terms], prob)
    t.insert(0, "term", [tm for _ in levels for tm in terms])
    t.insert(0, "level", [lv for lv in levels for _ in terms])
    return t.reset_index(drop=True)

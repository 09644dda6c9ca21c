"""Checks shared by the tests against R reference fits whose JSON entries share one layout.

``tests/reference/glmmtmb_more.json`` and ``tests/reference/r_more_families.json``: each entry has the hmodels
formula, family and dpars, the data file, R's estimates under hmodels' names (``fixed``, ``sd``,
``family_params``), the predicted group effects by level (``ranef``), the log-likelihood written by hand at the
estimates (``checks.conditional_loglik_by_hand``) and the simulated ``truth``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import hmodels as hm
from hmodels.families import get_family
from hmodels.linpred import linear_predictor, pointwise_loglik

ROOT = Path(__file__).parent.parent


def load(name: str) -> dict:
    """The reference file ``tests/reference/<name>.json``."""
    return json.loads((ROOT / "tests" / "reference" / f"{name}.json").read_text())


def check_provenance(ref: dict, keys: set[str]) -> None:
    """The file names glmmTMB 1.1.5 and R 4.2, holds exactly ``keys``, and every fit converged on its 400 rows."""
    assert "glmmTMB 1.1.5" in ref["about"] and ref["versions"]["R"].startswith("R version 4.2")
    assert set(ref["fits"]) == keys
    for key, entry in ref["fits"].items():
        assert entry["converged"] and entry.get("pdHess", True), key
        assert entry["nobs"] == 400 and len(pd.read_csv(ROOT / entry["data"])) == 400, key
        assert all(p["conversion"] for p in entry["family_params"].values()), key


def model_of(entry) -> hm.Model:
    return hm.Model(entry["hmodels_formula"], pd.read_csv(ROOT / entry["data"]), family=entry["hmodels_family"],
                    dpars=entry.get("hmodels_dpars") or None)


def dpar_terms(design) -> list[str]:
    return [t for dd in (getattr(design, "dpars", None) or {}).values() for t in dd.fixed_terms]


def ml_draws(entry, design) -> xr.Dataset:
    """R's estimates as a one-draw posterior: coefficients, group effects by level name, family parameters."""
    est = {r["hmodels_term"]: r["estimate"] for r in entry["fixed"]}
    out = {"b": xr.DataArray([[[est[t] for t in design.fixed_terms]]], dims=("chain", "draw", "term"))}
    for name, dd in (getattr(design, "dpars", None) or {}).items():
        out[f"b_{name}"] = xr.DataArray([[[est[t] for t in dd.fixed_terms]]], dims=("chain", "draw", f"b_{name}__term"))
    for factor in design.factors:
        r = np.array([entry["ranef"][level] for level in factor.levels])
        out[f"r_{factor.factor}"] = xr.DataArray(r[None, None, :, None], dims=("chain", "draw", "level", "term_g"))
    for name, p in entry["family_params"].items():
        out[name] = xr.DataArray([[p["estimate"]]], dims=("chain", "draw"))
    return xr.Dataset(out, coords={"chain": [0], "draw": [0]})


def check_loglik_at_ml(entry) -> None:
    """hmodels' pointwise log-likelihood (the one LOO uses) at R's estimates and group effects = R's (1e-6)."""
    design = model_of(entry).design
    assert sorted(design.fixed_terms + dpar_terms(design)) == sorted(r["hmodels_term"] for r in entry["fixed"])
    assert len(design.factors) == len(entry["sd"])
    fake = SimpleNamespace(draws=ml_draws(entry, design), design=design,
                           family=get_family(design.spec.family, design.spec.link))
    ll = pointwise_loglik(fake, linear_predictor(fake))
    assert ll.shape == (1, 1, entry["nobs"])
    assert float(ll.sum()) == pytest.approx(entry["checks"]["conditional_loglik_by_hand"], abs=1e-6, rel=1e-10)


def fit_at_defaults(entry) -> hm.Fit:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model_of(entry).fit(seed=1, progressbar=False)


def _table(fit) -> pd.DataFrame:
    return pd.concat([fit.fixed_effects(), fit.variance_components()])


def check_posterior_near_ml(key, entry, fit) -> None:
    """Every coefficient, group SD and family parameter within 1 posterior SD of R's estimate; nothing unmatched."""
    table = _table(fit)
    refs = {r["hmodels_term"]: r for r in entry["fixed"] + entry["sd"]} | entry["family_params"]
    assert sorted(table.index) == sorted(refs), (key, list(table.index))
    far = {}
    for label, ref in refs.items():
        post, ml = table.loc[label], ref["estimate"]
        z = (float(post["mean"]) - ml) / float(post["sd"])
        if abs(z) > 1:
            far[label] = f"posterior {post['mean']:.4g} (sd {post['sd']:.4g}) vs ML {ml:.4g}: {z:+.2f} SD"
    assert not far, (key, far)


def check_diagnostics(key, fit) -> None:
    table = _table(fit)
    assert float(table["r_hat"].max()) <= 1.01, (key, table["r_hat"].to_dict())
    assert fit.divergences == 0, key


def check_truth_recovered_by_r(key, entry) -> None:
    """The data are what the R script says: R recovers the truth within 2 SEs (a group SD on its log scale)."""
    rows = {r["hmodels_term"]: r for r in entry["fixed"] + entry["sd"]} | entry["family_params"]
    assert set(entry["truth"]) == set(rows)
    for name, value in entry["truth"].items():
        r = rows[name]
        if "log_sd_se" in r:
            assert abs(np.log(value) - r["log_sd_estimate"]) <= 2 * r["log_sd_se"], (key, name)
        else:
            assert abs(r["estimate"] - value) <= 2 * r["se"], (key, name, r["estimate"], value)

"""Hurdle gamma / lognormal, Student t, truncated and censored gaussian and the zero-one-inflated beta against R.

Reference: ``tests/reference/r_more_families.json``, made by ``tests/reference/r_more_families.R`` (R 4.2.2, glmmTMB
1.1.5, survival 3.5-3, default settings) on data it simulates and writes next to it (``r_more_families_<name>.csv``,
400 rows; ``y ~ x + (1 | g)`` with 40 groups x 10 rows, or ``y ~ x`` without a group term); the mapping of each R
parameter to hmodels' is in the script's header and each entry's ``conversion``, and the script stops unless its
hand-written log-likelihood with that mapping equals the package's own:

* ``glmmTMB(family = ziGamma(link = "log"), ziformula = ~1)``  vs ``hurdle_gamma`` (``hu`` = plogis(zi intercept),
  ``shape`` = exp(d~(Intercept)) = 1 / sigma(fit)^2); and with ``ziformula = ~x`` vs ``dpars={"hu": "1 + x"}``
  (``hu_Intercept``, ``hu_x`` = the zi coefficients);
* ``hurdle_lognormal``: glmmTMB 1.1.5 has no lognormal family, so the reference is the exact factorisation of the
  likelihood: ``glmmTMB(log(y) ~ x + (1 | g), gaussian)`` on the positive rows (``mu``, ``sigma``, the group SD) and
  ``hu`` = the share of zeros;
* ``glmmTMB(family = t_family())``  vs ``student_t`` (``sigma`` = sigma(fit), ``nu`` = the estimated df, exp(psi));
* an ``optim()`` fit of the left-truncated normal likelihood (truncreg's model)  vs ``y | trunc(lb=0) ~ x``;
* ``survreg(Surv(y, event) ~ x, dist = "gaussian")``  vs ``y | cens(censored) ~ x`` with ``censored = 1 - event``
  (hmodels' cens() codes 1 = right-censored, as brms), and ``Surv(y, observed, type = "left")`` vs ``cens = -1`` at the
  left-censored rows;
* ``zero_one_inflated_beta``: glmmTMB's ``beta_family`` on the rows inside (0, 1) plus the shares of 0s/1s (the
  factorised ML fit), checked in R against an optim() fit of gamlss.dist's BEINF likelihood mapped by
  ``zoi = (nu + tau) / (1 + nu + tau)``, ``coi = tau / (nu + tau)``, ``phi = (1 - sigma^2) / sigma^2``.

The same two kinds of check as ``test_reference_more.py``:

* **Parameterisation, exactly** (no sampling): hmodels' pointwise log-likelihood (``hmodels.linpred``, the one LOO
  uses) at R's estimates (and predicted group effects) equals R's log-likelihood there (1e-6).
* **Posterior vs ML** (default priors, ``model.fit(seed=1, progressbar=False)``): every coefficient, the group SD and
  the family parameters within 1 posterior SD of the ML estimate; R-hat <= 1.01 and no divergences.
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

HERE = Path(__file__).parent / "reference"
REF = json.loads((HERE / "r_more_families.json").read_text())
FITS = REF["fits"]
ROOT = HERE.parent.parent


def _model(entry) -> hm.Model:
    return hm.Model(entry["hmodels_formula"], pd.read_csv(ROOT / entry["data"]), family=entry["hmodels_family"],
                    dpars=entry.get("hmodels_dpars") or None)


def _dpar_terms(design) -> list[str]:
    return [t for dd in (getattr(design, "dpars", None) or {}).values() for t in dd.fixed_terms]


def test_reference_file_records_its_provenance():
    assert "glmmTMB 1.1.5" in REF["about"] and REF["versions"]["R"].startswith("R version 4.2")
    assert set(FITS) == {"hurdle_gamma", "hurdle_gamma_hu_x", "hurdle_lognormal", "student_t", "trunc_gaussian",
                         "cens_gaussian", "cens_gaussian_left", "zoib"}
    for key, entry in FITS.items():
        assert entry["converged"] and entry.get("pdHess", True), key
        assert entry["nobs"] == 400 and len(pd.read_csv(ROOT / entry["data"])) == 400, key
        assert all(p["conversion"] for p in entry["family_params"].values()), key


def _ml_draws(entry, design) -> xr.Dataset:
    """R's estimates as a one-draw posterior: coefficients, group effects by level name, family parameters."""
    est = {r["hmodels_term"]: r["estimate"] for r in entry["fixed"]}
    one = {"chain": [0], "draw": [0]}
    out = {"b": xr.DataArray([[[est[t] for t in design.fixed_terms]]], dims=("chain", "draw", "term"))}
    for name, dd in (getattr(design, "dpars", None) or {}).items():
        out[f"b_{name}"] = xr.DataArray([[[est[t] for t in dd.fixed_terms]]], dims=("chain", "draw", f"b_{name}__term"))
    for factor in design.factors:
        r = np.array([entry["ranef"][level] for level in factor.levels])
        out[f"r_{factor.factor}"] = xr.DataArray(r[None, None, :, None], dims=("chain", "draw", "level", "term_g"))
    for name, p in entry["family_params"].items():
        out[name] = xr.DataArray([[p["estimate"]]], dims=("chain", "draw"))
    return xr.Dataset(out, coords=one)


@pytest.mark.parametrize("key", list(FITS))
def test_log_likelihood_at_the_ml_estimates_matches_r(key):
    """hmodels' pointwise log-likelihood at R's estimates (and group effects) = R's log-likelihood there."""
    entry = FITS[key]
    design = _model(entry).design
    assert sorted(design.fixed_terms + _dpar_terms(design)) == sorted(r["hmodels_term"] for r in entry["fixed"])
    assert len(design.factors) == len(entry["sd"])
    fake = SimpleNamespace(draws=_ml_draws(entry, design), design=design,
                           family=get_family(design.spec.family, design.spec.link))
    ll = pointwise_loglik(fake, linear_predictor(fake))
    assert ll.shape == (1, 1, 400)
    assert float(ll.sum()) == pytest.approx(entry["checks"]["conditional_loglik_by_hand"], abs=1e-6, rel=1e-10)


def test_censoring_indicator_is_brms_coded():
    """``censored`` = 1 - survreg's event: 1 = right-censored (-1 = left); the event column in cens() gets a warning."""
    entry = FITS["cens_gaussian"]
    data = pd.read_csv(ROOT / entry["data"])
    assert (data["censored"] == 1 - data["event"]).all() and data["censored"].sum() == entry["checks"]["n_censored"]
    left = pd.read_csv(ROOT / FITS["cens_gaussian_left"]["data"])
    assert (left["censored"] == left["observed"] - 1).all()
    assert (left["censored"] != 0).sum() == FITS["cens_gaussian_left"]["checks"]["n_censored"]
    with pytest.warns(UserWarning, match="event"):
        hm.Model("y | cens(event) ~ x", data, family="gaussian")


def test_zoib_mapping_to_gamlss_beinf():
    """The BEINF fit (optim in R) maps onto the factorised fit with zoi = (nu+tau)/(1+nu+tau), coi = tau/(nu+tau)."""
    entry = FITS["zoib"]
    raw, checks = entry["checks"]["beinf_optim_raw"], entry["checks"]
    params = {k: v["estimate"] for k, v in entry["family_params"].items()}
    nu, tau, s = raw["nu"], raw["tau"], raw["sigma"]
    assert (nu + tau) / (1 + nu + tau) == pytest.approx(params["zoi"], rel=1e-4)
    assert tau / (nu + tau) == pytest.approx(params["coi"], rel=1e-4)
    assert (1 - s**2) / s**2 == pytest.approx(params["phi"], rel=1e-3)
    assert checks["beinf_loglik_at_mapped_estimates"] == pytest.approx(checks["conditional_loglik_by_hand"], abs=1e-8)


@pytest.fixture(scope="session", params=list(FITS))
def fitted(request):
    """(key, reference entry, Fit): each reference model fitted once per session at hmodels' defaults."""
    key = request.param
    entry = FITS[key]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = _model(entry).fit(seed=1, progressbar=False)
    return key, entry, fit


def _table(fit) -> pd.DataFrame:
    return pd.concat([fit.fixed_effects(), fit.variance_components()])


def test_posterior_agrees_with_the_ml_estimates(fitted):
    key, entry, fit = fitted
    table = _table(fit)
    refs = {r["hmodels_term"]: r for r in entry["fixed"] + entry["sd"]} | entry["family_params"]
    assert sorted(table.index) == sorted(refs), (key, list(table.index))  # nothing unmatched
    far = {}
    for label, ref in refs.items():
        post, ml = table.loc[label], ref["estimate"]
        z = (float(post["mean"]) - ml) / float(post["sd"])
        if abs(z) > 1:
            far[label] = f"posterior {post['mean']:.4g} (sd {post['sd']:.4g}) vs ML {ml:.4g}: {z:+.2f} SD"
    assert not far, (key, far)


def test_sampling_diagnostics_are_clean(fitted):
    key, _entry, fit = fitted
    table = _table(fit)
    assert float(table["r_hat"].max()) <= 1.01, (key, table["r_hat"].to_dict())
    assert fit.divergences == 0, key


@pytest.mark.parametrize("key", list(FITS))
def test_simulated_truth_is_recovered_by_r(key):
    """The data are what the R script says: R recovers the truth within 2 SEs (the group SD on its log scale)."""
    entry = FITS[key]
    rows = {r["hmodels_term"]: r for r in entry["fixed"] + entry["sd"]} | entry["family_params"]
    assert set(entry["truth"]) == set(rows)
    for name, value in entry["truth"].items():
        r = rows[name]
        if "log_sd_se" in r:
            assert abs(np.log(value) - r["log_sd_estimate"]) <= 2 * r["log_sd_se"], (key, name)
        else:
            assert abs(r["estimate"] - value) <= 2 * r["se"], (key, name, r["estimate"], value)

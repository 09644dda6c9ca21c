"""Truncation, a hurdle formula, the beta-binomial, weights and a gamma dispersion formula against glmmTMB / glmer.

Reference: ``tests/reference/glmmtmb_more.json``, made by ``tests/reference/glmmtmb_more.R`` (R 4.2.2, glmmTMB
1.1.5, lme4 1.1-31, default settings) on data it simulates and writes next to it (``glmmtmb_more_<name>.csv``,
40 groups x 10 rows, ``y ~ x + (1 | g)``); the mapping of each glmmTMB parameter to hmodels' is in the script's
header and each entry's ``conversion``, and the script stops unless its hand-written log-likelihood with that
mapping equals TMB's own:

* ``truncated_poisson`` / ``truncated_nbinom2`` (no zi)  vs ``y | trunc(lb=1) ~ x + (1 | g)``, poisson /
  negativebinomial (``alpha`` = glmmTMB's theta = ``sigma(fit)``);
* ``truncated_poisson``, ``ziformula = ~ x``  vs ``hurdle_poisson``, ``dpars={"hu": "1 + x"}`` (glmmTMB's zi of a
  truncated family is P(y = 0): same coefficients);
* ``betabinomial``  vs ``beta_binomial`` (``phi`` = ``sigma(fit)``: ``Beta(mu phi, (1 - mu) phi)``);
* ``glmer(..., weights = w)`` with integer ``w`` (bernoulli, poisson)  vs ``y | weights(w) ~ ...`` (the script checks
  glmer's fit equals the fit on rows replicated ``w`` times);
* ``Gamma(link = "log")``, ``dispformula = ~ x``  vs ``gamma``, ``dpars={"shape": "x"}``: glmmTMB 1.1.5 models
  ``log(shape)`` (``sigma(fit) = 1 / sqrt(shape)``), so ``shape_Intercept`` / ``shape_x`` are its ``d~`` coefficients
  unchanged.

Two kinds of check, as ``test_reference_families.py``:

* **Parameterisation, exactly** (no sampling): hmodels' pointwise log-likelihood (``hmodels.linpred``, the one LOO
  uses) at R's estimates and predicted group effects equals R's conditional log-likelihood there (1e-6).
* **Posterior vs ML** (default priors, ``model.fit(seed=1, progressbar=False)``): every coefficient (the
  distributional parameters' included), the group SD and the family parameter within 1 posterior SD of the ML
  estimate; R-hat <= 1.01 and no divergences.
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
REF = json.loads((HERE / "glmmtmb_more.json").read_text())
FITS = REF["fits"]
ROOT = HERE.parent.parent


def _model(entry) -> hm.Model:
    return hm.Model(entry["hmodels_formula"], pd.read_csv(ROOT / entry["data"]), family=entry["hmodels_family"],
                    dpars=entry["hmodels_dpars"] or None)


def test_reference_file_records_its_provenance():
    assert "glmmTMB 1.1.5" in REF["about"] and REF["versions"]["R"].startswith("R version 4.2")
    assert set(FITS) == {"trunc_poisson", "trunc_nb", "hurdle_poisson", "beta_binomial", "weights_bernoulli",
                         "weights_poisson", "gamma_shape_x"}
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
    (factor,) = design.factors
    r = np.array([entry["ranef"][level] for level in factor.levels])
    out[f"r_{factor.factor}"] = xr.DataArray(r[None, None, :, None], dims=("chain", "draw", "level", "term_g"))
    for name, p in entry["family_params"].items():
        out[name] = xr.DataArray([[p["estimate"]]], dims=("chain", "draw"))
    return xr.Dataset(out, coords=one)


@pytest.mark.parametrize("key", list(FITS))
def test_log_likelihood_at_the_ml_estimates_matches_r(key):
    """hmodels' pointwise log-likelihood at R's estimates and group effects = R's conditional log-likelihood."""
    entry = FITS[key]
    design = _model(entry).design
    assert sorted(design.fixed_terms + [t for dd in (getattr(design, "dpars", None) or {}).values()
                                        for t in dd.fixed_terms]) == sorted(r["hmodels_term"] for r in entry["fixed"])
    fake = SimpleNamespace(draws=_ml_draws(entry, design), design=design,
                           family=get_family(design.spec.family, design.spec.link))
    ll = pointwise_loglik(fake, linear_predictor(fake))
    assert ll.shape == (1, 1, 400)
    assert float(ll.sum()) == pytest.approx(entry["checks"]["conditional_loglik_by_hand"], abs=1e-6, rel=1e-10)


@pytest.fixture(scope="session", params=list(FITS))
def fitted(request):
    """(key, reference entry, Fit): each reference model fitted once per session at hmodels' defaults."""
    key = request.param
    entry = FITS[key]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = _model(entry).fit(seed=1, progressbar=False)
    return key, entry, fit


def test_posterior_agrees_with_the_ml_estimates(fitted):
    key, entry, fit = fitted
    table = pd.concat([fit.fixed_effects(), fit.variance_components()])
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
    table = pd.concat([fit.fixed_effects(), fit.variance_components()])
    assert float(table["r_hat"].max()) <= 1.01, (key, table["r_hat"].to_dict())
    assert fit.divergences == 0, key


@pytest.mark.parametrize("key", [k for k in FITS if not k.startswith("weights_")])
def test_simulated_truth_is_recovered_by_r(key):
    """The data are what the R script says: glmmTMB recovers the truth within 2 SEs (the SD on its log scale).

    Not for the weighted fits: a weight replicates a row, so their ML fits estimate a different model than the
    one simulated (replicated Bernoulli outcomes inflate the group SD: 1.0 against 0.6).
    """
    entry = FITS[key]
    rows = {r["hmodels_term"]: r for r in entry["fixed"] + entry["sd"]} | entry["family_params"]
    assert set(entry["truth"]) == set(rows)
    for name, value in entry["truth"].items():
        r = rows[name]
        if "log_sd_se" in r:
            assert abs(np.log(value) - r["log_sd_estimate"]) <= 2 * r["log_sd_se"], (key, name)
        else:
            assert abs(r["estimate"] - value) <= 2 * r["se"], (key, name, r["estimate"], value)

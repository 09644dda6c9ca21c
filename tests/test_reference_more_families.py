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

import pandas as pd
import pytest
from _r_reference import (
    ROOT,
    check_diagnostics,
    check_loglik_at_ml,
    check_posterior_near_ml,
    check_provenance,
    check_truth_recovered_by_r,
    fit_at_defaults,
    load,
)

import hmodels as hm

REF = load("r_more_families")
FITS = REF["fits"]


def test_reference_file_records_its_provenance():
    check_provenance(REF, {"hurdle_gamma", "hurdle_gamma_hu_x", "hurdle_lognormal", "student_t", "trunc_gaussian",
                           "cens_gaussian", "cens_gaussian_left", "zoib"})


@pytest.mark.parametrize("key", list(FITS))
def test_log_likelihood_at_the_ml_estimates_matches_r(key):
    """hmodels' pointwise log-likelihood at R's estimates (and group effects) = R's log-likelihood there."""
    check_loglik_at_ml(FITS[key])


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
    return request.param, FITS[request.param], fit_at_defaults(FITS[request.param])


def test_posterior_agrees_with_the_ml_estimates(fitted):
    check_posterior_near_ml(*fitted)


def test_sampling_diagnostics_are_clean(fitted):
    check_diagnostics(fitted[0], fitted[2])


@pytest.mark.parametrize("key", list(FITS))
def test_simulated_truth_is_recovered_by_r(key):
    """The data are what the R script says: R recovers the truth within 2 SEs (the group SD on its log scale)."""
    check_truth_recovered_by_r(key, FITS[key])

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

import pytest
from _r_reference import (
    check_diagnostics,
    check_loglik_at_ml,
    check_posterior_near_ml,
    check_provenance,
    check_truth_recovered_by_r,
    fit_at_defaults,
    load,
)

REF = load("glmmtmb_more")
FITS = REF["fits"]


def test_reference_file_records_its_provenance():
    check_provenance(REF, {"trunc_poisson", "trunc_nb", "hurdle_poisson", "beta_binomial", "weights_bernoulli",
                           "weights_poisson", "gamma_shape_x"})


@pytest.mark.parametrize("key", list(FITS))
def test_log_likelihood_at_the_ml_estimates_matches_r(key):
    """hmodels' pointwise log-likelihood at R's estimates and group effects = R's conditional log-likelihood."""
    check_loglik_at_ml(FITS[key])


@pytest.fixture(scope="session", params=list(FITS))
def fitted(request):
    """(key, reference entry, Fit): each reference model fitted once per session at hmodels' defaults."""
    return request.param, FITS[request.param], fit_at_defaults(FITS[request.param])


def test_posterior_agrees_with_the_ml_estimates(fitted):
    check_posterior_near_ml(*fitted)


def test_sampling_diagnostics_are_clean(fitted):
    check_diagnostics(fitted[0], fitted[2])


@pytest.mark.parametrize("key", [k for k in FITS if not k.startswith("weights_")])
def test_simulated_truth_is_recovered_by_r(key):
    """The data are what the R script says: glmmTMB recovers the truth within 2 SEs (the SD on its log scale).

    Not for the weighted fits: a weight replicates a row, so their ML fits estimate a different model than the
    one simulated (replicated Bernoulli outcomes inflate the group SD: 1.0 against 0.6).
    """
    check_truth_recovered_by_r(key, FITS[key])

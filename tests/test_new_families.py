"""Families sampled through the PyMC graph: recovery, support checks, their own parameters, downstream use.

Gamma, lognormal, beta, beta_binomial, zero-inflated and hurdle counts, exponential, weibull: recovery of a
simulated truth, support checks, the generic machinery of the families' own parameters (slots, default priors,
prior-set overrides, the Beta prior) and what downstream functions make of them. The per-family checks
(log-likelihood vs PyMC, simulation moments, fit → predict / ppc / loo / save-load) are in the generated
``test_family_conformance.py``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

import hmodels as hm
from hmodels import components
from hmodels.checks import overdispersion, residuals
from hmodels.families import AUX_SPECS, FAMILIES, Family, get_family, register_family, unregister_family
from hmodels.linpred import aux_draws, linear_predictor, mean_draws

NEW = ("gamma", "lognormal", "beta", "beta_binomial", "zero_inflated_poisson", "zero_inflated_negativebinomial",
       "hurdle_poisson", "hurdle_negativebinomial", "exponential", "weibull")


def _fit(model, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(**{"draws": 500, "tune": 500, "chains": 2, "seed": 11, "progressbar": False, **kw})


def _glmm(family, n_groups=30, per_group=10, b=(1.0, 0.5), sd=0.4, aux=None, seed=0):
    """``y ~ x + (1 | g)`` simulated from ``family`` with known coefficients, group SD and parameters."""
    fam = get_family(family)
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per_group)
    x = rng.normal(size=g.size)
    eta = b[0] + b[1] * x + rng.normal(0, sd, n_groups)[g]
    y = fam.simulate(rng, fam.mean(eta), aux or {})
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g]})


def _within(fit, truth: dict, k: float = 3.0) -> dict:
    """|posterior mean - truth| in posterior SDs, per parameter (asserted <= k)."""
    fe = fit.fixed_effects()
    vc = fit.variance_components()
    out = {}
    for name, value in truth.items():
        row = fe.loc[name] if name in fe.index else vc.loc[name]
        out[name] = abs(float(row["mean"]) - value) / float(row["sd"])
    assert max(out.values()) <= k, out
    return out


# -- recovery of a simulated truth ------------------------------------------------------------------------------
def test_gamma_glmm_recovers_the_truth():
    """Gamma (log link), 30 groups x 10 rows, shape 5: every parameter within 3 posterior SDs of the truth."""
    data = _glmm("gamma", b=(1.0, 0.5), sd=0.4, aux={"shape": 5.0}, seed=1)
    fit = _fit(hm.Model("y ~ x + (1 | g)", data, family="gamma"))
    assert fit.meta["plan"]["backend"] == "engine"
    _within(fit, {"Intercept": 1.0, "x": 0.5, "sd(g, Intercept)": 0.4, "shape": 5.0})
    # ICC / R² are defined for the log link (the residual variance of log y given the mean)
    assert 0 < float(components.icc(fit).loc["g", "mean"]) < 1
    exact = components.icc(fit, method="trigamma").attrs["residual_variance"]
    assert "trigamma(shape)" in exact
    assert np.isfinite(components.r2(fit)["mean"]).all()
    with pytest.raises(hm.SpecificationError, match="count and binomial"):
        overdispersion(fit)
    res = residuals(fit)
    assert np.isfinite(res[["fitted", "pearson", "quantile"]].to_numpy()).all()


def test_beta_glmm_recovers_the_truth():
    """Beta (logit link), 30 groups x 10 rows, phi 20: every parameter within 3 posterior SDs of the truth."""
    data = _glmm("beta", b=(-0.5, 0.8), sd=0.5, aux={"phi": 20.0}, seed=2)
    fit = _fit(hm.Model("y ~ x + (1 | g)", data, family="beta"))
    _within(fit, {"Intercept": -0.5, "x": 0.8, "sd(g, Intercept)": 0.5, "phi": 20.0})
    with pytest.raises(hm.FamilyError, match="not defined for the beta family"):
        components.icc(fit)
    assert 0 < float(components.bayes_r2(fit)["mean"].iloc[0]) < 1
    assert fit.ppc(seed=1).table.loc["mean", "p_value"] > 0.01


# -- a zero-inflated fit: everything downstream asks the family -----------------------------------------------
@pytest.fixture(scope="module")
def zip_fit():
    data = _glmm("zero_inflated_poisson", n_groups=8, per_group=8, b=(1.0, 0.3), sd=0.3, aux={"zi": 0.3}, seed=3)
    return _fit(hm.Model("y ~ x + (1 | g)", data, family="zip"), draws=200, tune=200)


def test_zero_inflated_fit_downstream(zip_fit):
    fam = zip_fit.family
    assert fam.name == "zero_inflated_poisson" and "zi" in zip_fit.draws
    assert zip_fit.meta["plan"]["backend"] == "engine"  # its C kernel (tests/test_engine.py checks it)
    with pytest.raises(hm.FamilyError, match="two processes"):
        components.icc(zip_fit)
    r2 = components.bayes_r2(zip_fit)
    assert 0 < float(r2["mean"].iloc[0]) < 1
    od = overdispersion(zip_fit)  # Pearson check against the zero-inflated mean and variance
    assert 0.2 < od.ratio < 5
    assert fam.dispersion_checkable  # zi explains the zeros, not the spread of the counts: reports run the check
    assert not get_family("zinb").dispersion_checkable and not get_family("beta_binomial").dispersion_checkable
    assert fam.overdispersed_alternative == "zero_inflated_negativebinomial"
    assert "share_zeros" in zip_fit.ppc(seed=1).table.index
    res = residuals(zip_fit)
    eta = linear_predictor(zip_fit)
    expected = fam.response_mean(mean_draws(zip_fit, eta), aux_draws(zip_fit)).mean(axis=(0, 1))
    np.testing.assert_allclose(res["fitted"], expected)
    assert (expected < mean_draws(zip_fit, eta).mean(axis=(0, 1))).all()  # (1 - zi) mu < mu
    shrink = components.shrinkage(zip_fit, "g")
    assert np.isfinite(shrink["fitted_mean"]).all()


def test_predict_mean_is_the_expected_outcome_including_zero_inflation(zip_fit):
    new = zip_fit.data.head(5)
    pred = np.asarray(zip_fit.predict(new, kind="mean").draws)
    eta = np.asarray(zip_fit.predict(new, kind="link").draws)
    np.testing.assert_allclose(pred, zip_fit.family.response_mean(np.exp(eta), aux_draws(zip_fit)))


# -- support checks -------------------------------------------------------------------------------------------
def _data(y):
    return pd.DataFrame({"y": y, "x": np.linspace(0, 1, len(y)), "g": ["a", "b"] * (len(y) // 2)})


@pytest.mark.parametrize("family", ["gamma", "lognormal", "exponential", "weibull"])
def test_positive_families_refuse_zero_or_negative_outcomes_naming_rows(family):
    y = np.array([1.0, 2.0, 0.0, 3.0, -1.0, 2.5])
    with pytest.raises(hm.DataError, match=r"zero or negative in 2 rows \(index 2, 4\).*hurdle"):
        hm.Model("y ~ x + (1 | g)", _data(y), family=family)


def test_gamma_inverse_and_identity_links_refuse_zeros_too():
    with pytest.raises(hm.DataError, match=r"1 row \(index 0\)"):
        hm.Model("y ~ x", _data(np.array([0.0, 1.0, 2.0, 3.0])), family="gamma", link="inverse")


def test_beta_refuses_exact_zero_or_one_naming_rows_and_the_fixes():
    y = np.array([0.2, 0.0, 0.5, 1.0, 0.3, 0.7])
    with pytest.raises(hm.DataError, match=r"exactly 0 or 1 in 2 rows \(index 1, 3\)") as err:
        hm.Model("y ~ x + (1 | g)", _data(y), family="beta")
    assert "zero_one_inflated_beta" in str(err.value) and "(y * (n - 1) + 0.5) / n" in str(err.value)


def test_beta_refuses_values_outside_the_unit_interval():
    with pytest.raises(hm.DataError, match=r"outside \[0, 1\] in 1 row \(index 2\).*percentages"):
        hm.Model("y ~ x", _data(np.array([0.2, 0.4, 45.0, 0.5])), family="beta")


@pytest.mark.parametrize("family", ["zero_inflated_poisson", "zero_inflated_negativebinomial", "hurdle_poisson",
                                    "hurdle_negativebinomial"])
def test_excess_zero_families_refuse_negative_and_fractional_counts(family):
    with pytest.raises(hm.DataError, match=r"non-negative whole numbers.*1 row \(index 1\)"):
        hm.Model("y ~ x", _data(np.array([0.0, -2.0, 3.0, 1.0])), family=family)
    with pytest.raises(hm.DataError, match=r"whole numbers.*1 row \(index 2\)"):
        hm.Model("y ~ x", _data(np.array([0.0, 2.0, 1.5, 1.0])), family=family)


def test_beta_binomial_needs_successes_within_trials():
    data = _data(np.array([1, 5, 2, 3]))
    data["n"] = [4, 4, 4, 4]
    with pytest.raises(hm.DataError, match="exceed the trials"):
        hm.Model("p(y, n) ~ x", data, family="beta_binomial")


# -- the families' own parameters: slots, defaults, sets, the Beta prior --------------------------------------
def _positive(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"y": rng.gamma(3.0, 500.0, n), "x": rng.normal(size=n), "g": np.repeat(list("abcd"), n // 4)})


def _counts(n=40, seed=0):
    rng = np.random.default_rng(seed)
    y = np.where(rng.uniform(size=n) < 0.3, 0, rng.poisson(3.0, n))
    return pd.DataFrame({"y": y, "x": rng.normal(size=n), "g": np.repeat(list("abcd"), n // 4)})


@pytest.mark.parametrize("name", NEW)
def test_every_parameter_gets_a_slot_from_the_family_declaration(name):
    fam = FAMILIES[name]
    for a in fam.aux:
        spec = fam.aux_spec(a)
        assert spec.support in ("positive", "unit") and spec.rationale and spec.meaning
        assert spec.default_prior.support == ("unit" if spec.support == "unit" else "positive")


def test_default_set_entries_match_the_declared_defaults():
    """priors/default.toml and the shared declarations agree (sigma, nu, alpha exactly as before)."""
    default = hm.priors.load_set("default")
    for name, spec in AUX_SPECS.items():
        entry = default.entries[name]
        assert entry.prior == spec.default_prior and entry.scale == spec.scale, name
    assert repr(default.entries["sigma"].prior) == "HalfNormal(1)" and default.entries["sigma"].scale == "data"
    assert repr(default.entries["nu"].prior) == "Gamma(2, 0.1)"
    assert repr(default.entries["alpha"].prior) == "Exponential(0.1)"


def test_new_parameters_resolve_from_sets_users_and_the_family():
    m = hm.Model("y ~ x + (1 | g)", _counts(), family="zinb")
    assert [r.slot.param for r in m.priors][-2:] == ["alpha", "zi"]
    assert repr(m.priors["zi"].prior) == "Beta(1, 1)" and m.priors["zi"].source == "default"
    assert m.priors["zi"].slot.support == "unit"
    assert repr(hm.Model("y ~ x + (1 | g)", _counts(), family="zinb", prior_set="regularizing").priors["zi"].prior) \
        == "Beta(1, 3)"
    m = hm.Model("y ~ x + (1 | g)", _counts(), family="zinb", priors={"zi": hm.Beta(1, 4), "alpha": "Gamma(2, 1)"})
    assert repr(m.priors["zi"].prior) == "Beta(1, 4)" and m.priors["zi"].source == "user"
    assert hm.Model("y ~ x", _counts(), family="hurdle_poisson", priors={"hu": hm.Uniform(0, 1)}).priors["hu"].prior \
        == hm.Uniform(0, 1)
    gm = hm.Model("y ~ x + (1 | g)", _positive(), family="gamma", prior_set="rstanarm-like")
    assert repr(gm.priors["shape"].prior) == "Exponential(1)" and gm.priors["shape"].source == "set rstanarm-like"


def test_a_set_without_the_entry_falls_back_to_the_family_declaration(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('[priors.sd]\nprior = "HalfNormal(1)"\nscale = "data"\nrationale = "mine"\n\n'
                    '[priors.shape]\nprior = "Gamma(2, 0.5)"\nscale = "none"\nrationale = "mine"\n')
    m = hm.Model("y ~ x + (1 | g)", _positive(), family="gamma", priors=str(path))
    assert repr(m.priors["shape"].prior) == "Gamma(2, 0.5)"

    @dataclass(frozen=True, repr=False)
    class Toy(Family):
        links: ClassVar = ("log",)
        default_link: ClassVar = "log"
        aux: ClassVar = ("tau",)
        aux_specs: ClassVar = {"tau": hm.families.AuxSpec("positive", "Exponential(2)", "toy", "toy scale")}

    register_family("toy_tau", Toy)
    try:
        m = hm.Model("y ~ x", _positive(), family="toy_tau")
        row = m.priors["tau"]
        assert repr(row.prior) == "Exponential(2)" and row.source == "family" and "declared" in row.derivation
    finally:
        unregister_family("toy_tau")


def test_a_family_parameter_without_a_specification_is_refused():
    @dataclass(frozen=True, repr=False)
    class NoSpec(Family):
        links: ClassVar = ("log",)
        default_link: ClassVar = "log"
        aux: ClassVar = ("kappa",)

    with pytest.raises(hm.FamilyError, match="kappa.*aux_specs"):
        register_family("nospec", NoSpec)


def test_probability_parameters_need_priors_on_the_unit_interval():
    with pytest.raises(hm.PriorError, match="zi is a probability.*hm.Beta"):
        hm.Model("y ~ x", _counts(), family="zip", priors={"zi": hm.HalfNormal(1)})
    with pytest.raises(hm.PriorError, match="probability"):
        hm.Model("y ~ x", _counts(), family="zip", priors={"zi": hm.Uniform(0, 2)})


@pytest.mark.parametrize("key", ["sd", "Days", "Intercept", "sigma"])
def test_a_beta_prior_never_reaches_the_compiled_engine(key):
    """Beta is a prior for probabilities only: refused for coefficients, SDs and gaussian sigma."""
    with pytest.raises(hm.PriorError, match=r"Beta\(2, 2\) is a prior for probabilities"):
        hm.Model("Reaction ~ Days + (1 | Subject)", hm.datasets.load("sleepstudy"), priors={key: hm.Beta(2, 2)})


def test_beta_prior_reads_back_from_text_and_saves():
    assert hm.priors.from_string("Beta(1, 3)") == hm.Beta(1, 3)
    assert hm.Beta(1, 3).scipy().mean() == pytest.approx(0.25)


# -- data scales of the priors ---------------------------------------------------------------------------------
def test_lognormal_priors_are_scaled_on_the_log_scale():
    data = _positive()
    m = hm.Model("y ~ x + (1 | g)", data, family="lognormal")
    ly = np.log(data["y"])
    assert m.priors["Intercept"].prior.params["mu"] == pytest.approx(ly.mean())
    assert m.priors["sigma"].prior.params["sigma"] == pytest.approx(ly.std(ddof=1))
    assert "sd(log(y))" in m.priors["sigma"].derivation
    brms = hm.Model("y ~ x + (1 | g)", data, family="lognormal", prior_set="brms-like").priors["Intercept"]
    assert "median(log(y))" in brms.derivation


def test_gamma_inverse_link_intercept_is_located_at_the_inverse_mean():
    data = _positive()
    m = hm.Model("y ~ x + (1 | g)", data, family="gamma", link="inverse")
    assert m.priors["Intercept"].prior.params["mu"] == pytest.approx(1 / data["y"].mean())


def test_explain_priors_words_for_the_new_parameters():
    tab = hm.Model("y ~ x + (1 | g)", _counts(), family="hurdle_negativebinomial").explain_priors(draws=200)
    implies = dict(zip(tab["parameter"], tab["implies"]))
    assert implies["hu"] == "probability of a zero (the hurdle)"
    tab = hm.Model("y ~ x + (1 | g)", _positive(), family="lognormal").explain_priors(draws=200)
    implies = dict(zip(tab["parameter"], tab["implies"]))
    assert implies["sigma"].startswith("SD of log(y)") and implies["Intercept"].startswith("mean log(y)")


def test_family_parameters_are_reserved_names():
    data = _positive().rename(columns={"g": "shape"})
    with pytest.raises(hm.SpecificationError, match="'shape'"):
        hm.Model("y ~ x + (1 | shape)", data, family="gamma")
    hm.Model("y ~ x + (1 | shape)", data, family="lognormal")  # no shape parameter there


# -- latent-scale variances: defined where they exist, a clear error elsewhere -------------------------------
@pytest.mark.parametrize("name,aux,expected", [
    ("gamma", {"shape": 4.0}, np.log1p(0.25)),
    ("lognormal", {"sigma": 0.5}, 0.25),
    ("exponential", {}, np.pi**2 / 6),
    ("weibull", {"shape": 2.0}, np.pi**2 / 24),
])
def test_latent_residual_variance_where_defined(name, aux, expected):
    assert float(get_family(name).latent_residual_variance(np.ones(1), aux)[0]) == pytest.approx(expected)


@pytest.mark.parametrize("name,link", [("beta", None), ("beta_binomial", None), ("zero_inflated_poisson", None),
                                       ("hurdle_negativebinomial", None), ("gamma", "inverse"), ("gamma", "identity")])
def test_latent_residual_variance_is_refused_where_not_defined(name, link):
    with pytest.raises(hm.FamilyError, match="not defined"):
        get_family(name, link).latent_residual_variance(np.ones(1), {"phi": 1.0, "zi": 0.1, "hu": 0.1, "alpha": 1.0,
                                                                      "shape": 1.0})


def test_new_families_run_on_the_compiled_engine_and_the_plan_says_so():
    for name in NEW:
        assert FAMILIES[name].engine_code is not None
    plan = hm.Model("y ~ x + (1 | g)", _positive(), family="weibull").plan()
    assert plan.backend == "engine" and not any("PyMC graph" in d for d in plan.deviations)


def test_marginal_means_of_a_zero_inflated_model_include_the_zeros(zip_fit):
    """marginal_means on the response scale is the expected outcome: (1 - zi) * E[exp(eta + group effect)]."""
    mm = zip_fit.marginal_means(groups="exclude")
    eta = float(np.asarray(zip_fit.marginal_means(groups="exclude", scale="link").table["estimate"])[0])
    zi = float(zip_fit.draws["zi"].mean())
    assert float(np.asarray(mm.table["estimate"])[0]) < np.exp(eta)  # the zeros pull the mean down
    assert abs(float(np.asarray(mm.table["estimate"])[0]) - (1 - zi) * np.exp(eta)) < 0.2 * np.exp(eta)

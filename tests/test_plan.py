"""One plan for every backend (hmodels.plan) and one assembler (hmodels.assemble)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import hmodels as hm
from hmodels.errors import SpecificationError
from hmodels.plan import BACKENDS, FitPlan, collapse_plan, make_plan

# one model per bundled dataset (every dataset is covered: test_every_dataset_has_a_plan_case)
DATASET_MODELS = {
    "sleepstudy": ("Reaction ~ Days + (Days | Subject)", "gaussian"),
    "cbpp": ("p(incidence, size) ~ period + (1 | herd)", "binomial"),
    "penicillin": ("diameter ~ 1 + (1 | plate) + (1 | sample)", "gaussian"),
    "pastes": ("strength ~ 1 + (1 | batch/cask)", "gaussian"),
    "dyestuff": ("Yield ~ 1 + (1 | Batch)", "gaussian"),
    "orthodont": ("distance ~ age * Sex + (age | Subject)", "gaussian"),
    "radon": ("log_radon ~ floor + (floor | county)", "gaussian"),
    "eight_schools": ("y | se(sigma) ~ 1 + (1 | school)", "gaussian"),
    "chickweight": ("weight ~ Time * Diet + (Time | Chick)", "gaussian"),
    "theoph": ("conc ~ Time + (1 | Subject)", "gaussian"),
    "orange": ("circumference ~ age + (1 | Tree)", "gaussian"),
    "co2": ("uptake ~ conc + Type * Treatment + (1 | Plant)", "gaussian"),
    "grouseticks": ("TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | LOCATION)", "poisson"),
    "salamanders": ("count ~ mined + (1 | site)", "zero_inflated_poisson"),
    "owls": ("SiblingNegotiation ~ FoodTreatment + offset(np.log(BroodSize)) + (1 | Nest)", "negativebinomial"),
    "wine": ("rating ~ temp + contact + (1 | judge)", "cumulative"),
}


def test_every_dataset_has_a_plan_case():
    assert set(DATASET_MODELS) == set(hm.datasets.list())


@pytest.mark.parametrize("name", list(DATASET_MODELS))
@pytest.mark.parametrize("method", ["auto", "joint"])
def test_every_sampler_gets_the_same_plan(name, method):
    formula, family = DATASET_MODELS[name]
    m = hm.Model(formula, hm.datasets.load(name), family=family)
    plans = {s: make_plan(m, s, method) for s in BACKENDS}
    policies = {s: p.policy() for s, p in plans.items()}
    assert policies["pymc"] == policies["nutpie"] == policies["numpyro"]
    assert plans["nutpie"].deviations == ()
    for s in ("pymc", "numpyro"):  # a backend that cannot follow part of the plan says so
        p = plans[s]
        assert bool(p.deviations) == (p.integrate_coefficients or p.aggregate_rows or p.mass_matrix == "low_rank")
    if method == "joint":
        assert plans["nutpie"].collapsed_factor is None
    # the centring is given for exactly the sampled factors
    sampled = {f.factor for f in m.design.factors} - {plans["nutpie"].collapsed_factor}
    assert set(plans["nutpie"].centering) == sampled


def test_plan_rules():
    sleep = hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy"))
    p = sleep.plan()
    assert (p.method, p.collapsed_factor, p.integrate_coefficients) == ("collapsed", "Subject", True)
    assert p.target_accept == 0.9 and p.mass_matrix == "low_rank" and p.n_parameters == 4
    assert sleep.plan(target_accept=0.95).target_accept == 0.95
    schools = hm.Model("y | se(sigma) ~ 1 + (1 | school)", hm.datasets.load("eight_schools"))
    assert schools.plan("pymc").collapsed_factor == "school"  # one rule for every sampler
    cbpp = hm.Model("p(incidence, size) ~ period + (1 | herd)", hm.datasets.load("cbpp"), family="binomial")
    assert cbpp.plan().method == "joint" and cbpp.plan().aggregate_rows is False
    with pytest.raises(SpecificationError, match="gaussian"):
        cbpp.plan(method="collapsed")
    with pytest.raises(SpecificationError, match="method must be"):
        collapse_plan(sleep.design, "marginal")
    with pytest.raises(SpecificationError, match="Unknown sampler"):
        make_plan(sleep, "stan")
    d = p.to_dict()
    assert isinstance(d["centered"], dict) and isinstance(d["deviations"], list)
    with pytest.raises(Exception):  # frozen
        p.method = "joint"
    assert isinstance(p, FitPlan)


def _fit(model, sampler):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(draws=600, tune=600, chains=2, seed=3, sampler=sampler, progressbar=False,
                         log_likelihood=True)


@pytest.fixture(scope="module")
def backend_fits():
    out = {}
    for name in ("sleepstudy", "penicillin", "cbpp", "eight_schools"):
        formula, family = DATASET_MODELS[name]
        m = hm.Model(formula, hm.datasets.load(name), family=family)
        out[name] = {s: _fit(m, s) for s in ("nutpie", "pymc")}
        out[name]["model"] = m
    return out


@pytest.mark.parametrize("name", ["sleepstudy", "penicillin", "cbpp", "eight_schools"])
def test_backends_share_plan_meta_and_posterior(backend_fits, name):
    fits = backend_fits[name]
    ours, theirs = fits["nutpie"], fits["pymc"]
    assert sorted(ours.meta) == sorted(theirs.meta)  # one assembler, one schema
    assert ours.meta["plan"] == fits["model"].plan().to_dict()
    a, b = dict(ours.meta["plan"]), dict(theirs.meta["plan"])
    assert (a.pop("backend"), b.pop("backend")) == ("engine", "pymc-graph")
    for k in ("sampler", "deviations"):
        a.pop(k), b.pop(k)
    assert a == b
    assert ours.meta["centered"] == theirs.meta["centered"] == fits["model"].plan().centering
    assert set(ours.draws.data_vars) == set(theirs.draws.data_vars)  # the canonical variables only
    assert set(ours.posterior.children) - {"divergences"} == set(theirs.posterior.children) - {"divergences"}
    for table in ("fixed_effects", "variance_components"):
        x, y = getattr(ours, table)(), getattr(theirs, table)()
        tol = 4.5 * np.hypot(x["mcse_mean"], y["mcse_mean"])
        diff = (x["mean"] - y["mean"]).abs()
        assert (diff <= tol).all(), (name, table, diff, tol)
    # the report states what was integrated out, whatever the backend
    if ours.meta["collapsed_factor"]:
        assert ours.meta["collapsed_factor"] in theirs.report()


def test_collapsed_effects_of_the_pymc_backend_are_exact(backend_fits):
    """r = B z for the integrated-out factor, drawn given the other factor's effects (penicillin)."""
    fit = backend_fits["penicillin"]["pymc"]
    assert fit.meta["collapsed_factor"] == "plate"
    r, z = fit.draws["r_plate"].values, fit.draws["z_plate"].values
    sd = fit.draws["sd_plate"].values
    assert np.allclose(r, z * sd[:, :, None, :])

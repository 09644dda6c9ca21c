"""Session-scoped fitted models shared by the tests (each reference model is fitted once)."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

import hmodels as hm  # noqa: E402

REF_DIR = Path(__file__).parent / "reference"

# Priors of the brms reference fits (tests/reference/r_reference_fits.json, field brms_call).
# brms normal(0, s) on class sd / sigma is half-normal (lower bound 0); cauchy(0, 5) on sd is half-Cauchy.
REFERENCE_MODELS = {
    "sleepstudy": dict(
        formula="Reaction ~ Days + (Days | Subject)", data="sleepstudy", family="gaussian",
        priors={"fixed": hm.Normal(0, 100), "Intercept": hm.Normal(0, 100), "sd": hm.HalfNormal(50),
                "cor": hm.LKJ(2), "sigma": hm.HalfNormal(50)},
        target_accept=0.9,
    ),
    "penicillin": dict(
        formula="diameter ~ 1 + (1 | plate) + (1 | sample)", data="penicillin", family="gaussian",
        priors={"Intercept": hm.Normal(0, 100), "sd": hm.HalfNormal(5), "sigma": hm.HalfNormal(5)},
        target_accept=0.95,
    ),
    "pastes": dict(
        formula="strength ~ 1 + (1 | batch/cask)", data="pastes", family="gaussian",
        priors={"Intercept": hm.Normal(0, 100), "sd": hm.HalfNormal(5), "sigma": hm.HalfNormal(5)},
        target_accept=0.99,
    ),
    "cbpp": dict(
        formula="p(incidence, size) ~ period + (1 | herd)", data="cbpp", family="binomial",
        priors={"Intercept": hm.Normal(0, 5), "fixed": hm.Normal(0, 5), "sd": hm.HalfNormal(5)},
        target_accept=0.9,
    ),
    "eight_schools": dict(
        formula="y | se(sigma) ~ 1 + (1 | school)", data="eight_schools", family="gaussian",
        priors={"Intercept": hm.Normal(0, 5), "sd": hm.HalfCauchy(5)},
        target_accept=0.9,
    ),
    "orthodont": dict(
        formula="distance ~ age * Sex + (age | Subject)", data="orthodont", family="gaussian",
        priors={"Intercept": hm.Normal(0, 50), "fixed": hm.Normal(0, 50), "sd": hm.HalfNormal(10),
                "cor": hm.LKJ(2), "sigma": hm.HalfNormal(5)},
        target_accept=0.95,
    ),
    "radon": dict(
        formula="log_radon ~ floor + (floor | county)", data="radon", family="gaussian",
        priors={"Intercept": hm.Normal(0, 10), "fixed": hm.Normal(0, 10), "sd": hm.HalfNormal(1),
                "cor": hm.LKJ(2), "sigma": hm.HalfNormal(1)},
        target_accept=0.95,
    ),
}

_FITS: dict[str, hm.Fit] = {}


def reference_fit(name: str) -> hm.Fit:
    """Fit a reference model once per session (4 chains × 1000 draws, seed 1)."""
    if name not in _FITS:
        cfg = REFERENCE_MODELS[name]
        model = hm.Model(cfg["formula"], hm.datasets.load(cfg["data"]), family=cfg["family"],
                         priors=cfg["priors"], intercept_prior="raw")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _FITS[name] = model.fit(draws=1000, tune=1000, chains=4, seed=1, target_accept=cfg["target_accept"],
                                    progressbar=False)
    return _FITS[name]


@pytest.fixture(scope="session")
def r_reference():
    """R reference fits (lme4 / brms)."""
    return json.loads((REF_DIR / "r_reference_fits.json").read_text())


@pytest.fixture(scope="session")
def posteriordb_eight_schools():
    """posteriordb's reference posterior for eight schools."""
    return json.loads((REF_DIR / "eight_schools.json").read_text())


@pytest.fixture(scope="session")
def sleep_fit():
    return reference_fit("sleepstudy")


@pytest.fixture(scope="session")
def cbpp_fit():
    return reference_fit("cbpp")


@pytest.fixture(scope="session")
def schools_fit():
    return reference_fit("eight_schools")

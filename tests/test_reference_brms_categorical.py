"""The categorical family against brms under identical priors (issue 12: within 0.1 posterior SD).

Reference: ``tests/reference/brms_categorical.R`` -> ``brms_categorical.json`` (R 4.2.2, brms 2.18.0, rstan 2.21.7;
4 chains x 2000 draws after 1000 warm-up, seed 1, adapt_delta 0.95; posterior mean, SD, MCSE and R-hat of every
coefficient and group SD, the Stan code, compile and sampling seconds), on ``brms_categorical.csv``: lme4's VerbAgg,
the 12 "do" items (3792 answers "no" / "perhaps" / "yes" of 316 persons). The same model and priors here, hmodels'
default sampler (nutpie on the PyMC graph; 4 chains x 1000 draws after 1000 tune, seed 1):
``resp ~ Anger + btype + (1 | id)``, family ``categorical``: "no" is the reference, the predictors ``muperhaps`` and
``muyes`` (brms's dpars of the same names) each have the three coefficients and an independent person intercept.

Priors, copied to both categories: ``Intercept`` StudentT(3, 0, 2.5) on each category's intercept at the
predictors' means (brms's class Intercept per dpar is the intercept of its mean-centred design; hmodels' default
``intercept_prior="centered"``); ``fixed`` Normal(0, 1); ``sd`` HalfNormal(1) (brms's normal(0, 1), lower bound 0).
Both programs report each raw intercept at predictor value 0; nothing is converted.

The tolerance is the issue's, 0.1 brms posterior SD on every mean; the two runs' Monte-Carlo errors (about 0.01 and
0.03 SD at these draws) fit inside it. Posterior SDs must agree to 10%.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd
import pytest
from _brms_reference import assert_matches_brms

import hmodels as hm
from hmodels.families.categorical import category_predictor_names

HERE = Path(__file__).parent / "reference"
REF = json.loads((HERE / "brms_categorical.json").read_text())
ENTRY = REF["fits"]["categorical"]
FORMULA = "resp ~ Anger + btype + (1 | id)"
PRIORS = {"Intercept": hm.StudentT(3, 0, 2.5), "fixed": hm.Normal(0, 1), "sd": hm.HalfNormal(1)}


def _data() -> pd.DataFrame:
    return pd.read_csv(HERE / "brms_categorical.csv")


def _model(priors=PRIORS) -> hm.Model:
    return hm.Model(FORMULA, _data(), family="categorical", priors=priors)


@pytest.fixture(scope="module")
def fit():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hm.ConvergenceWarning)
        return _model().fit(draws=1000, tune=1000, chains=4, seed=1, progressbar=False)


def test_reference_file_records_its_provenance():
    assert "brms 2.18.0" in REF["about"] and REF["versions"]["R"].startswith("R version 4.2")
    s = ENTRY["settings"]
    assert (s["chains"], s["warmup"], s["draws_per_chain"], s["seed"], s["adapt_delta"]) == (4, 1000, 2000, 1, 0.95)
    assert ENTRY["divergences"] == 0 and ENTRY["max_rhat"] <= 1.01
    assert ENTRY["hmodels_formula"] == FORMULA and ENTRY["hmodels_family"] == "categorical"
    assert ENTRY["parameterisation"] and ENTRY["compile_s"] > 0 and ENTRY["sampling_s"] > 0
    assert {v["variable"] for v in ENTRY["posterior"].values()} == set(ENTRY["names"])
    assert "categorical" in ENTRY["brms_family"]


def test_data_is_the_fitted_data_with_brms_names():
    d = _data()
    assert len(d) == 3792 and d["id"].nunique() == 316
    assert d["resp"].value_counts().to_dict() == {"no": 2199, "perhaps": 960, "yes": 633}
    model = _model()
    assert model.design.response_levels == ("no", "perhaps", "yes")
    assert category_predictor_names(model.design.response_levels) == ["muperhaps", "muyes"]
    # brms's names (b_<dpar>_<coef>, sd_<group>__<dpar>_<coef>) of every coefficient and group SD, one to one
    expected = {}
    for dp in ("muperhaps", "muyes"):
        expected |= {f"b_{dp}_Intercept": f"{dp}_Intercept", f"b_{dp}_Anger": f"{dp}_Anger",
                     f"b_{dp}_btypescold": f"{dp}_btype[scold]", f"b_{dp}_btypeshout": f"{dp}_btype[shout]",
                     f"sd_id__{dp}_Intercept": f"sd(id, {dp}_Intercept)"}
    assert ENTRY["names"] == expected
    sds = [r.slot.param for r in model.priors if r.slot.cls == "sd"]
    assert sorted(expected.values()) == sorted(model.design.fixed_terms + sds)


def test_priors_used_are_the_brms_priors_per_category():
    """The priors hmodels uses are the stated ones, and brms's Stan code puts the same on each dpar."""
    model = _model()
    assert model.priors.intercept_prior == "centered"
    brms_priors = {(p["class"], p["dpar"], p["prior"]) for p in ENTRY["brms_priors"]}
    want = {"Intercept": "StudentT(3, 0, 2.5)", "fixed": "Normal(0, 1)", "sd": "HalfNormal(1)"}
    stan = {"Intercept": "student_t(3, 0, 2.5)", "fixed": "normal(0, 1)", "sd": "normal(0, 1)"}
    classes = {"Intercept": "Intercept", "fixed": "b", "sd": "sd"}
    rows = list(model.priors)
    assert len(rows) == 10
    for r in rows:
        assert r.source == "user", r
        assert repr(r.prior) == want[r.slot.cls], (r.slot.param, repr(r.prior))
        dpar = next(nm for nm in ("muperhaps", "muyes") if nm + "_" in r.slot.param)
        assert (classes[r.slot.cls], dpar, stan[r.slot.cls]) in brms_priors, (r.slot.param, brms_priors)
    code = ENTRY["stan_code"]
    for dpar in ("muperhaps", "muyes"):
        assert f"lprior += normal_lpdf(b_{dpar} | 0, 1);" in code
        assert f"lprior += student_t_lpdf(Intercept_{dpar} | 3, 0, 2.5);" in code
        assert f"{dpar} += Intercept_{dpar} + Xc_{dpar} * b_{dpar};" in code
    assert code.count("lprior += normal_lpdf(sd_") == 2  # one independent SD per category, no correlation
    assert "L_1" not in code


def test_posterior_equals_brms_under_identical_priors(fit):
    assert_matches_brms(fit, ENTRY)

"""Shipped prior sets: each loads, validates and builds gaussian, binomial and poisson models.

brms-like and rstanarm-like reproduce those packages' documented defaults; malformed files fail
with the file, key and fix named.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import hmodels as hm
from hmodels.errors import PriorError

SETS = ["brms-like", "default", "regularizing", "rstanarm-like", "vague", "weakly-informative"]


def _counts() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(8), 10)
    x = rng.normal(size=g.size)
    y = rng.poisson(np.exp(1.0 + 0.3 * x + rng.normal(0, 0.5, 8)[g]))
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g]})


SPECS = {
    "gaussian": ("Reaction ~ Days + (Days | Subject)", lambda: hm.datasets.load("sleepstudy"), "gaussian"),
    "binomial": ("p(incidence, size) ~ period + (1 | herd)", lambda: hm.datasets.load("cbpp"), "binomial"),
    "poisson": ("y ~ x + (1 | g)", _counts, "poisson"),
}


def test_all_sets_are_listed():
    assert hm.priors.list() == SETS


@pytest.mark.parametrize("name", SETS)
def test_set_loads_with_rationale_per_entry(name):
    s = hm.priors.load_set(name)
    assert s.description
    assert {"Intercept", "fixed", "sd", "cor", "sigma", "nu", "alpha"} <= set(s.entries)
    for key, e in s.entries.items():
        assert e.rationale.strip(), f"{name}: {key} has no rationale"
        assert "\n" not in e.rationale


@pytest.mark.parametrize("name", SETS)
@pytest.mark.parametrize("kind", list(SPECS))
def test_set_builds_model(name, kind):
    formula, data, family = SPECS[kind]
    m = hm.Model(formula, data(), family=family, prior_set=name)
    expected = "default" if name == "default" else f"set {name}"
    assert {r.source for r in m.priors} == {expected}
    free = {rv.name for rv in m.pymc_model.free_RVs}
    assert any(n.startswith("sd_") for n in free)
    for r in m.priors:  # every prior has a finite density at its own median
        if r.prior.support != "cor":
            assert np.isfinite(r.prior.scipy().logpdf(r.prior.interval(0.0)[0]))


@pytest.mark.parametrize("kind", list(SPECS))
def test_brms_like_model_has_finite_log_density(kind):
    formula, data, family = SPECS[kind]
    m = hm.Model(formula, data(), family=family, prior_set="brms-like")
    logp = m.pymc_model.compile_logp(mode="FAST_COMPILE")(m.pymc_model.initial_point())
    assert np.isfinite(logp)


def test_brms_like_matches_brms_get_prior_on_sleepstudy():
    # brms::get_prior(Reaction ~ Days + (Days | Subject), sleepstudy):
    # Intercept student_t(3, 288.7, 59.3); sd and sigma student_t(3, 0, 59.3); cor lkj(1); b flat
    m = hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy"), priors="brms-like")
    assert m.priors["Intercept"].prior == hm.StudentT(3, 288.7, 59.3)
    assert m.priors["sd(Subject, Intercept)"].prior == hm.HalfStudentT(3, 59.3)
    assert m.priors["sd(Subject, Days)"].prior == hm.HalfStudentT(3, 59.3)
    assert m.priors["sigma"].prior == hm.HalfStudentT(3, 59.3)
    assert m.priors["cor(Subject)"].prior == hm.LKJ(1)
    assert m.priors["Days"].prior == hm.Normal(0, 1e6)


def test_brms_like_uses_fixed_scale_on_logit_link():
    # brms: student_t(3, 0, 2.5) for the Intercept and SDs when the link is not identity/log
    m = hm.Model("p(incidence, size) ~ period + (1 | herd)", hm.datasets.load("cbpp"), family="binomial",
                 priors="brms-like")
    assert m.priors["Intercept"].prior == hm.StudentT(3, 0, 2.5)
    assert m.priors["sd(herd, Intercept)"].prior == hm.HalfStudentT(3, 2.5)


def test_rstanarm_like_autoscales():
    d = hm.datasets.load("sleepstudy")
    m = hm.Model("Reaction ~ Days + (1 | Subject)", d, priors="rstanarm-like")
    sy, sx = d["Reaction"].std(ddof=1), m.design.x_sds[1]  # hmodels' sd(x) is the population SD (ddof=0)
    assert m.priors["sigma"].prior.params["lam"] == pytest.approx(1 / sy, rel=1e-9)
    assert m.priors["Days"].prior.params["sigma"] == pytest.approx(2.5 * sy / sx, rel=1e-9)
    assert m.priors["Intercept"].prior.params["mu"] == pytest.approx(d["Reaction"].mean(), rel=1e-9)


def test_regularizing_is_tighter_than_default_and_vague_wider():
    d = hm.datasets.load("sleepstudy")
    widths = {}
    for s in ("regularizing", "default", "vague"):
        m = hm.Model("Reaction ~ Days + (1 | Subject)", d, prior_set=s)
        lo, hi = m.priors["sd(Subject, Intercept)"].prior.interval(0.95)
        widths[s] = hi - lo
    assert widths["regularizing"] < widths["default"] < widths["vague"]


def test_user_toml_file_and_overrides(tmp_path):
    p = tmp_path / "mine.toml"
    p.write_text('description = "mine"\n[priors.sd]\nprior = "HalfNormal(2)"\nscale = "none"\nrationale = "test"\n')
    d = hm.datasets.load("sleepstudy")
    m = hm.Model("Reaction ~ Days + (1 | Subject)", d, priors=str(p))
    assert m.priors["sd(Subject, Intercept)"].prior == hm.HalfNormal(2)
    assert m.priors["sd(Subject, Intercept)"].source == "set mine"
    assert m.priors["sigma"].source == "default"
    m2 = hm.Model("Reaction ~ Days + (1 | Subject)", d, prior_set="regularizing", priors={"Days": "Normal(0, 1)"})
    assert m2.priors["Days"].prior == hm.Normal(0, 1) and m2.priors["Days"].source == "user"
    assert m2.priors["sigma"].source == "set regularizing"


@pytest.mark.parametrize(
    "body, needle",
    [
        ('[priors.sd]\nprior = "HalfNormal(1)"\nscael = "data"\n', ["[priors.sd]", "scael", "scale"]),
        ('[priors.fixed]\nprior = "Normol(0, 1)"\n', ["[priors.fixed]", "Normol", "Normal"]),
        ('[priors.sigma]\nprior = "HalfNormal(-1)"\n', ["[priors.sigma]", "positive"]),
        ('[priors.sd]\nprior = "HalfNormal(1)"\nscale = "sd"\n', ["[priors.sd]", "'data', 'mad' or 'none'"]),
        ('[priors.sd]\nprior = "HalfNormal(1)"\nscale = "data"\nmin_scale = 2\n', ["[priors.sd]", "min_scale"]),
        ('colour = "red"\n', ["unknown top-level key 'colour'"]),
    ],
)
def test_malformed_toml_names_file_key_and_line(tmp_path, body, needle):
    p = tmp_path / "bad.toml"
    p.write_text('description = "bad"\n' + body)
    with pytest.raises(PriorError) as exc:
        hm.priors.load_set(p)
    msg = str(exc.value)
    assert str(p) in msg
    for n in needle:
        assert n in msg
    assert math.isfinite(int(msg.split(str(p) + ":")[1].split(":")[0].split()[0]))  # a line number


def test_key_of_set_that_matches_no_parameter(tmp_path):
    p = tmp_path / "odd.toml"
    p.write_text('[priors."sd(School)"]\nprior = "HalfNormal(1)"\n')
    with pytest.raises(PriorError, match=r"sd\(School\)"):
        hm.Model("Reaction ~ Days + (1 | Subject)", hm.datasets.load("sleepstudy"), priors=str(p))


def test_toml_that_is_not_utf8_names_the_file(tmp_path):
    p = tmp_path / "latin1.toml"
    p.write_bytes('description = "priors für Kühe"\n'.encode("latin-1"))
    with pytest.raises(PriorError, match="not UTF-8") as exc:
        hm.Model("Reaction ~ Days + (1 | Subject)", hm.datasets.load("sleepstudy"), priors=str(p))
    assert f"{p}:1:" in str(exc.value)


def test_directory_given_as_a_toml_path(tmp_path):
    d = tmp_path / "sets.toml"
    d.mkdir()
    with pytest.raises(PriorError, match="is a directory") as exc:
        hm.Model("Reaction ~ Days + (1 | Subject)", hm.datasets.load("sleepstudy"), priors=str(d))
    assert str(d) in str(exc.value)


def test_uniform_in_a_set_too_wide_for_the_data(tmp_path):
    p = tmp_path / "flat.toml"
    p.write_text('[priors.fixed]\nprior = "Uniform(-1e10, 1e10)"\nscale = "none"\n')
    with pytest.raises(PriorError, match=r"Uniform\(-10000000000, 10000000000\) for Days \(from prior set flat\) "
                                         r"is too wide"):
        hm.Model("Reaction ~ Days + (1 | Subject)", hm.datasets.load("sleepstudy"), priors=str(p))

"""Prior objects, resolution order and provenance."""

import numpy as np
import pytest

import hmodels as hm
from hmodels.priors import from_string


def test_priors_print_as_written():
    assert repr(hm.Normal(0, 10)) == "Normal(0, 10)"
    assert repr(hm.StudentT(3, 0, 2.5)) == "StudentT(3, 0, 2.5)"
    assert repr(hm.HalfStudentT(3, 5)) == "HalfStudentT(3, 5)"
    assert from_string("HalfCauchy(beta=5)") == hm.HalfCauchy(5)


@pytest.mark.parametrize("bad", [lambda: hm.HalfNormal(-1), lambda: hm.Normal(0, 0), lambda: hm.LKJ(0),
                                 lambda: hm.Uniform(2, 1), lambda: hm.Normal(0)])
def test_improper_parameters(bad):
    with pytest.raises(hm.PriorError):
        bad()


def test_negative_scale_message_names_parameter():
    with pytest.raises(hm.PriorError, match="sigma=-1 must be positive"):
        hm.HalfNormal(-1)


def test_unknown_distribution_text():
    with pytest.raises(hm.PriorError, match="Unknown prior distribution 'Normla'.*Normal"):
        from_string("Normla(0, 1)")
    with pytest.raises(hm.PriorError, match="must be numbers"):
        from_string("Normal(__import__('os'), 1)")


@pytest.fixture(scope="module")
def sleep():
    return hm.datasets.load("sleepstudy")


def test_default_priors_scaled_to_data(sleep):
    m = hm.Model("Reaction ~ Days + (Days | Subject)", sleep)
    sy = sleep.Reaction.std()
    sd_days = sleep.Days.std(ddof=0)
    p = m.priors
    assert p["sigma"].prior == hm.HalfNormal(sy) or np.isclose(p["sigma"].prior.params["sigma"], sy)
    assert np.isclose(p["Days"].prior.params["sigma"], 2.5 * sy / sd_days)
    assert np.isclose(p["sd(Subject, Days)"].prior.params["sigma"], sy / sd_days)
    assert np.isclose(p["Intercept"].prior.params["mu"], sleep.Reaction.mean())
    assert p["cor(Subject)"].prior == hm.LKJ(2)
    assert all(r.source == "default" for r in p)
    assert "sd(Reaction)" in p["sigma"].derivation


def test_resolution_order(sleep):
    m = hm.Model("Reaction ~ Days + (Days | Subject)", sleep,
                 priors={"sd": hm.HalfNormal(30), "sd(Subject, Days)": hm.HalfNormal(7), "Days": "Normal(0, 20)"})
    p = m.priors
    assert p["sd(Subject, Days)"].prior == hm.HalfNormal(7)
    assert p["sd(Subject, Intercept)"].prior == hm.HalfNormal(30)
    assert p["Days"].prior == hm.Normal(0, 20) and p["Days"].source == "user"
    assert p["sigma"].source == "default"


def test_raw_intercept_prior_is_wider(sleep):
    c = hm.Model("Reaction ~ Days + (1 | Subject)", sleep).priors["Intercept"].prior.params["sigma"]
    raw = hm.Model("Reaction ~ Days + (1 | Subject)", sleep, intercept_prior="raw")
    r = raw.priors["Intercept"].prior.params["sigma"]
    assert r > c


def test_unknown_prior_key(sleep):
    with pytest.raises(hm.PriorError, match=r"Unknown prior key 'sd\(Subjet\)'.*Did you mean 'sd\(Subject\)'"):
        hm.Model("Reaction ~ Days + (1 | Subject)", sleep, priors={"sd(Subjet)": hm.HalfNormal(1)})


def test_support_mismatch(sleep):
    with pytest.raises(hm.PriorError, match="must be positive.*HalfNormal\\(50\\)"):
        hm.Model("Reaction ~ Days + (1 | Subject)", sleep, priors={"sd": hm.Normal(0, 50)})
    with pytest.raises(hm.PriorError, match="LKJ"):
        hm.Model("Reaction ~ Days + (Days | Subject)", sleep, priors={"cor": hm.HalfNormal(1)})


def test_mixed_prior_kinds_build(sleep):
    """Different distributions within one parameter vector are stacked, not rejected."""
    m = hm.Model("Reaction ~ Days + (Days | Subject)", sleep,
                 priors={"sd(Subject, Days)": hm.HalfCauchy(5), "sd(Subject, Intercept)": hm.HalfNormal(40)})
    names = {v.name for v in m.pymc_model.free_RVs}
    assert {"sd_Subject_HalfCauchy", "sd_Subject_HalfNormal"} <= names
    assert "sd_Subject" in m.pymc_model.named_vars


def test_prior_table_display(sleep):
    m = hm.Model("Reaction ~ Days + (Days | Subject)", sleep)
    text = repr(m.priors)
    assert "centred" in text and "HalfNormal" in text
    frame = m.priors.to_frame()
    assert list(frame.parameter) == ["Intercept", "Days", "sd(Subject, Intercept)", "sd(Subject, Days)",
                                     "cor(Subject)", "sigma"]


def test_family_parameters_have_priors():
    import pandas as pd

    df = pd.DataFrame({"y": [1, 0, 4, 2, 7, 3], "g": list("aabbcc")})
    p = hm.Model("y ~ 1 + (1 | g)", df, family="negativebinomial").priors
    assert p["alpha"].prior == hm.Exponential(0.1)
    df["y"] = df["y"] + 0.5
    t = hm.Model("y ~ 1 + (1 | g)", df, family="student_t").priors
    assert t["nu"].prior == hm.Gamma(2, 0.1)

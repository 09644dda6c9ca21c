"""Posteriors against independent reference fits of real data (brms 2.18 / Stan, posteriordb).

Tolerance (stated in posterior-SD and MCSE units): for every parameter the posterior mean must be
within 0.1 reference posterior SD of the reference mean, or — only where the reference's own
Monte Carlo error makes 0.1 SD unattainable — within 3 combined MCSEs
(sqrt(mcse_hmodels² + mcse_ref²)); posterior SDs within 15 %. Both fits use the same priors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import reference_fit


def _ours(fit, name):
    """Map a brms parameter name to hmodels' summary row (mean, sd, mcse_mean)."""
    fe = fit.fixed_effects()
    vc = fit.variance_components()
    if name.startswith("b_"):
        term = name[2:]
        term = {"SexMale": "Sex[Male]", "age:SexMale": "age:Sex[Male]"}.get(term, term)
        if term.startswith("period"):
            term = f"period[{term[6:]}]"
        row = fe.loc[term]
    elif name.startswith("sd_"):
        group, term = name[3:].split("__")
        row = vc[(vc.kind == "sd") & (vc.group == group) & (vc.term == term)].iloc[0]
    elif name.startswith("cor_"):
        group, t1, t2 = name[4:].split("__")
        row = vc[(vc.kind == "cor") & (vc.group == group) & (vc.term == f"{t1}:{t2}")].iloc[0]
    else:
        row = vc[vc.kind == name].iloc[0]
    return float(row["mean"]), float(row["sd"]), float(row["mcse_mean"])


def _compare(fit, ref_summary, names=None):
    rows = []
    for name, ref in ref_summary.items():
        if names is not None and name not in names:
            continue
        if name.startswith("r_"):
            continue
        mean, sd, mcse = _ours(fit, name)
        diff_sd = (mean - ref["mean"]) / ref["sd"]
        mc_tol = 3 * math.sqrt(mcse**2 + ref.get("mcse_mean", 0.0) ** 2) / ref["sd"]
        rows.append((name, mean, ref["mean"], diff_sd, max(0.1, mc_tol), sd / ref["sd"]))
    return rows


def _assert_rows(rows):
    bad = [r for r in rows if abs(r[3]) > r[4] or not (0.85 <= r[5] <= 1.15)]
    table = "\n".join(f"{n:35s} ours {m:10.4f} ref {rm:10.4f} diff {d:+.3f} SD (tol {t:.3f}) sd ratio {s:.3f}"
                      for n, m, rm, d, t, s in rows)
    assert not bad, f"Parameters off the reference:\n{table}"


@pytest.mark.parametrize("name", ["sleepstudy", "penicillin", "pastes", "cbpp", "orthodont", "radon"])
def test_matches_brms(name, r_reference):
    fit = reference_fit(name)
    ref_key = {"radon": "radon_mn"}.get(name, name)
    rows = _compare(fit, r_reference["brms"][ref_key]["summary"])
    assert len(rows) >= 3
    _assert_rows(rows)
    assert fit.divergences <= 2, f"{fit.divergences} divergences"


def test_eight_schools_matches_posteriordb(schools_fit, posteriordb_eight_schools):
    ref = posteriordb_eight_schools["summary"]
    post = schools_fit.draws
    mu = post["b"].sel(term="Intercept")
    tau = post["sd_school"].sel(school__term="Intercept")
    theta = mu + post["r_school"].sel(school__term="Intercept")
    quantities = {"mu": mu, "tau": tau}
    for j, level in enumerate(theta.coords["school"].values):
        quantities[f"theta[{j + 1}]"] = theta.sel(school=level)
    import arviz as az

    for name, da in quantities.items():
        draws = da.values
        mean, sd = float(draws.mean()), float(draws.std())
        ess = float(az.ess(da.to_dataset(name="x"))["x"])
        mcse = sd / math.sqrt(ess)
        r = ref[name]
        tol = max(0.1, 3 * math.sqrt(mcse**2 + (r["sd"] / math.sqrt(r["n"])) ** 2) / r["sd"])
        assert abs(mean - r["mean"]) / r["sd"] <= tol, (name, mean, r["mean"])
        assert 0.85 <= sd / r["sd"] <= 1.15, (name, sd, r["sd"])
    assert schools_fit.divergences == 0


def test_eight_schools_default_settings_no_divergences():
    """Non-centred eight schools at default settings (default priors too): zero divergences."""
    import hmodels as hm

    fit = hm.Model("y | se(sigma) ~ 1 + (1 | school)", hm.datasets.load("eight_schools")).fit(
        draws=1000, chains=4, seed=3, progressbar=False)
    assert fit.divergences == 0


def test_penicillin_pastes_close_to_lme4(r_reference):
    """Fixed intercepts and residual SD near lme4's REML estimates (within 1 posterior SD)."""
    for name in ("penicillin", "pastes"):
        fit = reference_fit(name)
        reml = r_reference["lme4"][name]["fits"]["lme4_REML"]
        fe = fit.fixed_effects()
        assert abs(fe.loc["Intercept", "mean"] - reml["fixed"]["(Intercept)"]["estimate"]) < fe.loc["Intercept", "sd"]
        vc = fit.variance_components()
        sig = vc[vc.kind == "sigma"].iloc[0]
        assert abs(sig["mean"] - reml["sigma"]) < sig["sd"]


def test_summary_tables_follow_contract(sleep_fit):
    fe = sleep_fit.fixed_effects()
    assert list(fe.index) == ["Intercept", "Days"]
    for col in ["mean", "sd", "hdi_low", "hdi_high", "r_hat", "ess_bulk"]:
        assert col in fe.columns
    vc = sleep_fit.variance_components()
    assert set(vc.kind) == {"sd", "cor", "sigma"}
    cor = vc[vc.kind == "cor"].iloc[0]
    assert cor.group == "Subject" and cor.term == "Intercept:Days"
    ge = sleep_fit.group_effects("Subject")
    assert len(ge) == 18 * 2 and {"level", "term", "mean", "hdi_low", "hdi_high"} <= set(ge.columns)
    assert np.all(fe.hdi_low < fe["mean"]) and np.all(fe["mean"] < fe.hdi_high)
    assert sleep_fit.converged
    assert sleep_fit.divergences == 0

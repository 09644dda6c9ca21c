"""``model.fit(until="converged")``: sampling in rounds until R-hat and ESS meet their targets (issue 14)."""

import warnings

import numpy as np
import pytest
import xarray as xr

import hmodels as hm
from hmodels.diagnostics import diagnose
from hmodels.plan import BackendResult, FitPlan
from hmodels.sampling import UNTIL_ESS, UNTIL_RHAT, SamplerSettings, convergence_summary, sample_until


@pytest.fixture(scope="module")
def dyestuff_model():
    return hm.Model("Yield ~ 1 + (1 | Batch)", hm.datasets.load("dyestuff"))


def _fit(model, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(progressbar=False, **kw)


@pytest.fixture(scope="module")
def rounds_fit(dyestuff_model):
    # 2 chains x 100 draws cannot reach 400 effective draws: a second round is needed
    return _fit(dyestuff_model, draws=100, tune=300, chains=2, seed=3, until="converged", max_time=120)


def test_a_short_fit_gets_more_rounds_until_it_converges(rounds_fit):
    u = rounds_fit.meta["until"]
    assert u["n_rounds"] >= 2 and u["converged"]
    assert u["rounds"][0]["draws"] == 100 and u["rounds"][0]["ess_bulk_min"] < UNTIL_ESS
    kept = sum(r["draws"] for r in u["rounds"] if r["kept"])
    assert rounds_fit.posterior["posterior"].sizes["draw"] == kept == u["draws"] == rounds_fit.settings.draws
    assert rounds_fit.posterior["posterior"].sizes["chain"] == 2
    # checked independently of the loop's own summary: the diagnose table over coefficients, SDs, sigma
    table = diagnose(rounds_fit, group_effects=False).table
    assert table["r_hat"].max() <= UNTIL_RHAT
    assert table["ess_bulk"].min() >= UNTIL_ESS and table["ess_tail"].min() >= UNTIL_ESS
    assert rounds_fit.divergences == 0


def test_diagnose_reports_the_rounds(rounds_fit):
    d = diagnose(rounds_fit)
    assert d.until["n_rounds"] == rounds_fit.meta["until"]["n_rounds"]
    assert "Sampled until converged" in repr(d) and "converged: max R-hat" in repr(d)


def test_the_record_survives_save_and_load(rounds_fit, tmp_path):
    hm.io.save(rounds_fit, tmp_path / "fit.nc")
    back = hm.io.load(tmp_path / "fit.nc")
    assert back.meta["until"] == rounds_fit.meta["until"]
    assert back.settings.draws == rounds_fit.settings.draws


def test_same_seed_same_rounds(dyestuff_model, rounds_fit):
    again = _fit(dyestuff_model, draws=100, tune=300, chains=2, seed=3, until="converged", max_time=120)
    assert again.meta["until"]["n_rounds"] == rounds_fit.meta["until"]["n_rounds"]
    np.testing.assert_array_equal(again.draws["b"].values, rounds_fit.draws["b"].values)


def test_time_budget_stops_and_the_remedy_says_how_to_continue(dyestuff_model):
    fit = _fit(dyestuff_model, draws=50, tune=100, chains=2, seed=1, until="converged", max_time=1e-3)
    u = fit.meta["until"]
    assert u["n_rounds"] == 1 and not u["converged"]
    rem = [v.remedy for v in diagnose(fit).verdicts if v.problem in ("ess_bulk", "ess_tail", "r_hat")]
    assert rem and all('model.fit(until="converged", max_time=0.002)' in r for r in rem)


def test_remedy_names_until_converged(dyestuff_model):
    fit = _fit(dyestuff_model, draws=50, tune=100, chains=2, seed=1)
    rem = [v.remedy for v in diagnose(fit).verdicts if v.problem in ("ess_bulk", "ess_tail")]
    assert rem and all('model.fit(until="converged")' in r for r in rem)


@pytest.mark.parametrize("kwargs, error, fragment", [
    ({"until": "forever"}, hm.SpecificationError, "until must be 'auto', 'converged' or None"),
    ({"until": "converged", "prior_only": True}, hm.SpecificationError, "prior_only"),
    ({"until": "converged", "max_time": -1}, hm.SamplingError, "max_time must be a positive"),
])
def test_bad_until_requests(dyestuff_model, kwargs, error, fragment):
    with pytest.raises(error, match=fragment):
        dyestuff_model.fit(draws=10, tune=10, chains=1, progressbar=False, **kwargs)


# -- until="auto", the default --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def default_fit(dyestuff_model):
    return _fit(dyestuff_model, seed=2)  # nothing but the seed: draws, tune and until at their defaults


def test_the_default_fit_runs_until_converged(default_fit, tmp_path):
    u = default_fit.meta["until"]
    assert u["mode"] == "auto" and u["rounds"][0]["draws"] == 1000 and u["rounds"][0]["tune"] == 1000
    assert u["max_draws"] == 8000 and u["max_time"] == float("inf")
    assert u["converged"] and default_fit.settings.draws == u["draws"] <= 8000
    table = diagnose(default_fit, group_effects=False).table  # checked apart from the loop's own summary
    assert table["r_hat"].max() <= UNTIL_RHAT and table["ess_tail"].min() >= UNTIL_ESS
    assert "Sampled until converged (the default)" in repr(diagnose(default_fit))
    hm.io.save(default_fit, tmp_path / "fit.nc")
    assert hm.io.load(tmp_path / "fit.nc").meta["until"] == u


def test_giving_draws_or_tune_fixes_the_draws(dyestuff_model):
    for kw in ({"draws": 150}, {"tune": 150}):
        fit = _fit(dyestuff_model, chains=2, seed=1, **kw)
        assert "until" not in fit.meta and fit.settings.draws == kw.get("draws", 1000)


def test_the_default_cap_is_in_draws_so_rounds_do_not_depend_on_speed():
    def run(settings, plan):
        return _round(settings, plan)

    s = SamplerSettings("nutpie", 20, 100, 2, 1, 5, None)  # 40 draws in all: ESS far below 400
    result, final, record = sample_until(run, s, _plan(), max_time=float("inf"), max_draws=50)
    assert not record["converged"] and final.draws <= 50 and record["max_draws"] == 50
    assert result.posterior.sizes["draw"] == final.draws


# -- the loop itself, on synthetic rounds ------------------------------------------------------------------

def _plan(target=0.9):
    return FitPlan("nutpie", "engine", "joint", None, False, (), target, "diag", False, 2)


def _round(settings, plan, diverging=0):
    """Independent normal draws (a perfectly mixing sampler), with ``diverging`` divergent draws."""
    rng = np.random.default_rng(settings.seed)
    C, D = settings.chains, settings.draws
    post = xr.Dataset({"b": (("chain", "draw", "term"), rng.normal(size=(C, D, 2))),
                       "sd_g": (("chain", "draw", "g__term"), np.exp(rng.normal(size=(C, D, 1))))},
                      coords={"chain": np.arange(C), "draw": np.arange(D)})
    div = np.zeros((C, D), bool)
    div.flat[:diverging] = True
    stats = xr.Dataset({"diverging": (("chain", "draw"), div)}, coords={"chain": np.arange(C), "draw": np.arange(D)})
    return BackendResult(post, stats, plan, {"sample_s": 0.01}, {})


def test_divergent_rounds_are_discarded_and_the_target_raised():
    calls = []

    def run(settings, plan):
        calls.append((settings.draws, plan.target_accept))
        return _round(settings, plan, diverging=3 if plan.target_accept < 0.95 else 0)

    s = SamplerSettings("nutpie", 300, 100, 4, 1, 11, None)
    result, final, record = sample_until(run, s, _plan(0.9), max_time=60)
    assert [c[1] for c in calls] == [0.9, 0.95]
    assert [r["kept"] for r in record["rounds"]] == [False, True]
    assert record["converged"] and record["draws"] == 300 == final.draws
    assert final.target_accept == 0.95 and result.plan.target_accept == 0.95
    assert int(result.sample_stats["diverging"].values.sum()) == 0


def test_a_divergent_round_at_the_joint_default_restarts_at_0_9():
    calls = []

    def run(settings, plan):
        calls.append(plan.target_accept)
        return _round(settings, plan, diverging=2 if plan.target_accept < 0.9 else 0)

    s = SamplerSettings("nutpie", 300, 100, 4, 1, 11, None)
    result, final, record = sample_until(run, s, _plan(0.8), max_time=60)
    assert calls == [0.8, 0.9] and final.target_accept == 0.9 and record["converged"]


def test_later_rounds_continue_each_chain():
    first = {}

    def run(settings, plan):
        res = _round(settings, plan)
        first.setdefault("b", res.posterior["b"].values.copy())
        return res

    s = SamplerSettings("nutpie", 40, 100, 4, 1, 5, None)  # 160 draws: ESS < 400, so more rounds
    result, final, record = sample_until(run, s, _plan(), max_time=60)
    assert record["n_rounds"] >= 2 and record["converged"]
    assert result.posterior.sizes["chain"] == 4 and result.posterior.sizes["draw"] == final.draws
    np.testing.assert_array_equal(result.posterior["b"].values[:, :40], first["b"])  # round 1 kept, first
    assert list(result.posterior["draw"].values) == list(range(final.draws))


def test_convergence_summary_flags_chains_that_disagree():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(4, 500, 1))
    x[0] += 3.0  # one chain elsewhere
    s = convergence_summary(xr.Dataset({"b": (("chain", "draw", "term"), x)}))
    assert s["rhat_max"] > 1.2  # far above UNTIL_RHAT (1.48 here)
    s = convergence_summary(xr.Dataset({"b": (("chain", "draw", "term"), rng.normal(size=(4, 500, 1)))}))
    assert s["rhat_max"] < UNTIL_RHAT and s["ess_bulk_min"] > UNTIL_ESS


def test_a_restart_drops_the_earlier_rounds_and_the_record_says_so():
    """Round 1 kept, round 2 divergent: the restart discards both, and the record marks both not kept."""
    calls = []

    def run(settings, plan):
        calls.append(plan.target_accept)
        return _round(settings, plan, diverging=3 if len(calls) == 2 else 0)

    s = SamplerSettings("nutpie", 40, 100, 4, 1, 5, None)  # 160 draws: ESS < 400, so a second round
    result, final, record = sample_until(run, s, _plan(0.9), max_time=60)
    assert calls[:3] == [0.9, 0.9, 0.95] and record["converged"]
    assert [r["kept"] for r in record["rounds"][:2]] == [False, False]
    kept = sum(r["draws"] for r in record["rounds"] if r["kept"])
    assert kept == record["draws"] == final.draws == result.posterior.sizes["draw"]


def test_update_of_a_default_fit_runs_until_converged_again(dyestuff_model, default_fit):
    again = default_fit.update(progressbar=False)  # same data, same seed: the same rounds and draws
    assert again.meta["until"]["mode"] == "auto"
    assert again.meta["until"]["rounds"][0]["draws"] == 1000 and again.settings.draws == default_fit.settings.draws
    np.testing.assert_array_equal(again.draws["b"].values, default_fit.draws["b"].values)
    fixed = default_fit.update(draws=150, progressbar=False)  # draws given: exactly those
    assert "until" not in fixed.meta and fixed.settings.draws == 150


def test_the_warning_after_a_spent_budget_asks_for_more_time(dyestuff_model):
    fit = _fit(dyestuff_model, draws=50, tune=100, chains=2, seed=1, until="converged", max_time=1e-3)
    msgs = [m for m in fit.convergence_messages() if "until=" in m]
    assert msgs and all('model.fit(until="converged", max_time=0.002)' in m for m in msgs)  # not the same 600 s


def test_the_command_line_fit_runs_until_converged_by_default():
    from hmodels.cli import _parser

    args = _parser().parse_args(["fit", "y ~ 1", "--data", "dyestuff"])
    assert args.draws is None and args.tune is None  # Model.fit's defaults: until="auto"
    args = _parser().parse_args(["fit", "y ~ 1", "--data", "dyestuff", "--draws", "200"])
    assert args.draws == 200


def test_stopping_on_divergences_is_not_reported_as_a_spent_cap():
    """Divergences at the highest target end the rounds: the record's sentence says so, not 'cap reached'."""
    from hmodels.diagnostics import _until_line

    s = SamplerSettings("nutpie", 40, 100, 2, 1, 5, None)
    _, _, record = sample_until(lambda st, p: _round(st, p, diverging=2), s, _plan(0.9), max_time=float("inf"),
                                max_draws=8000)
    assert not record["converged"] and record["rounds"][-1]["target_accept"] == 0.99
    line = _until_line(record)
    assert "divergences remained at target_accept 0.99" in line and "cap" not in line

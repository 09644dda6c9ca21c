"""Side-by-side benchmark: hmodels vs bambi (same models, priors, chains, draws) and frequentist references.

Every fit runs in its own fresh subprocess. The Bayesian tools (hmodels's default sampler, bambi
with the PyMC, nutpie and numpyro samplers) run in two cache states:

* ``cold``: the tool's on-disk compile caches (``HMODELS_CACHE_DIR``, PyTensor's ``base_compiledir``
  and ``compiledir``, ``NUMBA_CACHE_DIR``) point at fresh, empty temporary directories;
* ``warm``: a second new process with the same cache directories, so whatever the cold run
  compiled is reused.

statsmodels' MixedLM (gaussian models) and lme4 (via ``Rscript``) are timed once per repetition
as frequentist references. Tools alternate order on every repetition. Results go to
``<out>/<stamp>.{json,md}`` and ``<out>/latest.{json,md}``; see ``benchmarks/README.md`` for the
columns and the exact definitions.

Usage::

    python benchmarks/run.py                                   # small models, every tool, cold + warm
    python benchmarks/run.py --models sleepstudy cbpp --tools hmodels bambi-nutpie lme4 --reps 2
    python benchmarks/run.py --models insteval                 # 73,421 rows; 300 + 300 draws for every tool

bambi 0.21's ``(x | g)`` has no correlation, so hmodels (and lme4, statsmodels) fit ``(x || g)``
here; bambi receives hmodels's resolved default priors (same families and scales).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from importlib import metadata
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

MODELS = {
    "sleepstudy": dict(
        formula="Reaction ~ Days + (Days || Subject)", bambi="Reaction ~ Days + (Days | Subject)",
        lme4="Reaction ~ Days + (Days || Subject)", data="sleepstudy", family="gaussian",
        statsmodels=dict(formula="Reaction ~ Days", groups="Subject", re_formula="~Days", independent=True)),
    "radon": dict(
        formula="log_radon ~ floor + (floor || county)", bambi="log_radon ~ floor + (floor | county)",
        lme4="log_radon ~ floor + (floor || county)", data="radon", family="gaussian",
        statsmodels=dict(formula="log_radon ~ floor", groups="county", re_formula="~floor", independent=True)),
    "penicillin": dict(
        formula="diameter ~ 1 + (1 | plate) + (1 | sample)", bambi="diameter ~ 1 + (1 | plate) + (1 | sample)",
        lme4="diameter ~ 1 + (1 | plate) + (1 | sample)", data="penicillin", family="gaussian",
        statsmodels=dict(formula="diameter ~ 1", re_formula="0",
                         vc_formula={"plate": "0 + C(plate)", "sample": "0 + C(sample)"})),
    "cbpp": dict(
        formula="p(incidence, size) ~ period + (1 | herd)", bambi="p(incidence, size) ~ period + (1 | herd)",
        lme4="cbind(incidence, size - incidence) ~ period + (1 | herd)", data="cbpp", family="binomial"),
    "poisson_crossed": dict(
        formula="y ~ x + (1 | site) + (1 | item)", bambi="y ~ x + (1 | site) + (1 | item)",
        lme4="y ~ x + (1 | site) + (1 | item)", data="sim_poisson", family="poisson"),
    "insteval": dict(
        formula="y ~ x + (1 | s) + (1 | d)", bambi="y ~ x + (1 | s) + (1 | d)", lme4="y ~ x + (1 | s) + (1 | d)",
        data="sim_insteval", family="gaussian", draws=300, tune=300,
        statsmodels_skip=("not attempted: MixedLM needs the crossed design as one dense 73,421 x 4,100 "
                          "variance-component matrix (~2.4 GB), far beyond a couple of minutes")),
}
# The families of issue 12, beside bambi where bambi has the same family (same link, same priors).
# ``aux`` maps hmodels's family parameter to bambi's, with ``flip`` when bambi's is one minus ours
# (bambi's ``psi`` is the probability of the count part; hmodels's ``zi`` / ``hu`` of the zero).
for _name, _fam, _formula, _bambi_aux, _lme4 in [
    ("gamma", "gamma", "y ~ x + (1 | g)", {"shape": ("alpha", False)},
     "glmer(y ~ x + (1 | g), data = bench_data, family = Gamma(link = 'log'))"),
    ("lognormal", "lognormal", "y ~ x + (1 | g)", {"sigma": ("sigma", False)},
     "lmer(log(y) ~ x + (1 | g), data = bench_data, REML = FALSE)"),
    ("beta", "beta", "y ~ x + (1 | g)", {"phi": ("kappa", False)}, None),
    ("zero_inflated_poisson", "zero_inflated_poisson", "y ~ x + (1 | g)", {"zi": ("psi", True)}, None),
    ("hurdle_poisson", "hurdle_poisson", "y ~ x + (1 | g)", {"hu": ("psi", True)}, None),
    ("zero_inflated_negativebinomial", "zero_inflated_negativebinomial", "y ~ x + (1 | g)",
     {"zi": ("psi", True), "alpha": ("alpha", False)}, None),
    ("hurdle_negativebinomial", "hurdle_negativebinomial", "y ~ x + (1 | g)",
     {"hu": ("psi", True), "alpha": ("alpha", False)}, None),
    ("hurdle_lognormal", "hurdle_lognormal", "y ~ x + (1 | g)", {"hu": ("psi", True), "sigma": ("sigma", False)},
     None),
    ("hurdle_gamma", "hurdle_gamma", "y ~ x + (1 | g)", {"hu": ("psi", True), "shape": ("alpha", False)}, None),
    ("exponential", "exponential", "y ~ x + (1 | g)", {}, None),
]:
    MODELS[_name] = dict(formula=_formula, bambi=_formula, lme4=None, lme4_call=_lme4, data=f"sim_{_name}",
                         family=_fam, link="log" if _fam == "gamma" else None, bambi_aux=_bambi_aux)
MODELS["cbpp_beta_binomial"] = dict(
    formula="p(incidence, size) ~ period + (1 | herd)", bambi="p(incidence, size) ~ period + (1 | herd)",
    lme4=None, data="cbpp", family="beta_binomial", bambi_aux={"phi": ("kappa", False)})
MODELS["wine_cumulative"] = dict(
    formula="rating ~ temp + contact + (1 | judge)", bambi="rating ~ temp + contact + (1 | judge)", lme4=None,
    data="wine", family="cumulative", bambi_aux={"cutpoints": ("threshold", False)})
# Issue 14's hard cases (tests/hard, seed 1), beside bambi on the same model and priors
for _name, _formula, _fam in [
        ("nested_poisson", "y ~ year + h + (1 | brood) + (1 | loc)", "poisson"),
        ("grouseticks", "TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | LOCATION)", "poisson"),
        ("toenail_like", "y ~ treat * month + (1 | id)", "bernoulli"),
        ("slope_near_zero", "y ~ x + (x | g)", "poisson"),
        ("binomial_few_groups", "p(k, n) ~ x + (1 | g)", "binomial"),
        ("negbin_obs_effect", "y ~ x + (1 | g) + (1 | row)", "negativebinomial"),
        ("crossed_bernoulli", "y ~ x + (1 | a) + (1 | g)", "bernoulli"),
        ("crossed_bernoulli_rare", "y ~ x + (1 | a) + (1 | g)", "bernoulli")]:
    MODELS[f"hard_{_name}"] = dict(formula=_formula, bambi=_formula, lme4=None, data=f"hard:{_name}", family=_fam,
                                   bambi_aux={"alpha": ("alpha", False)} if _fam == "negativebinomial" else {})
MODELS["categorical"] = dict(
    formula="y ~ x + (1 | g)", bambi="y ~ x + (1 | g)", lme4=None, data="sim_categorical", family="categorical")
SMALL = ["sleepstudy", "radon", "penicillin", "cbpp", "poisson_crossed"]
HARD_MODELS = ["hard_nested_poisson", "hard_grouseticks", "hard_toenail_like", "hard_slope_near_zero",
               "hard_binomial_few_groups", "hard_negbin_obs_effect"]
FAMILY_MODELS = ["gamma", "lognormal", "beta", "zero_inflated_poisson", "hurdle_poisson", "cbpp_beta_binomial",
                 "wine_cumulative", "categorical", "zero_inflated_negativebinomial", "hurdle_negativebinomial",
                 "hurdle_lognormal", "hurdle_gamma", "exponential"]
BAYES_TOOLS = ["hmodels", "bambi-pymc", "bambi-nutpie", "bambi-numpyro"]
FREQ_TOOLS = ["statsmodels", "lme4"]
STATES = ["cold", "warm"]
DEFAULT_DRAWS = DEFAULT_TUNE = 1000
#: statsmodels is a reference, not a contender: a fit that needs longer than this is recorded as timed out.
STATSMODELS_TIMEOUT = 120
#: Seed of the row bootstrap that makes the data of hmodels's second fit.
SECOND_FIT_SEED = 20240603
PACKAGES = ["hmodels", "bambi", "pymc", "pytensor", "nutpie", "numpyro", "jax", "arviz", "numba", "statsmodels"]


# -- data -----------------------------------------------------------------------------------------
def load_data(name: str):
    """Bundled data, or simulated data for the synthetic models (fixed seeds)."""
    import pandas as pd

    if name == "sim_poisson":  # two crossed factors, 40 x 25 levels, 2 rows per cell
        rng = np.random.default_rng(20240601)
        a, b = np.meshgrid(np.arange(40), np.arange(25), indexing="ij")
        a, b = np.tile(a.ravel(), 2), np.tile(b.ravel(), 2)
        x = rng.normal(size=a.size)
        eta = 0.5 + 0.3 * x + rng.normal(0, 0.6, 40)[a] + rng.normal(0, 0.4, 25)[b]
        return pd.DataFrame({"y": rng.poisson(np.exp(eta)), "x": x, "site": a.astype(str), "item": b.astype(str)})
    if name == "sim_insteval":  # InstEval's shape: 73,421 rows, 2,972 students x 1,128 lecturers
        rng = np.random.default_rng(20240602)
        n, ns, nd = 73421, 2972, 1128
        s, d = rng.integers(0, ns, n), rng.integers(0, nd, n)
        x = rng.integers(0, 2, n).astype(float)
        y = 3.2 + 0.1 * x + rng.normal(0, 0.33, ns)[s] + rng.normal(0, 0.52, nd)[d] + rng.normal(0, 1.18, n)
        return pd.DataFrame({"y": y, "x": x, "s": s.astype(str), "d": d.astype(str)})
    if name.startswith("sim_") and name[4:] in FAMILY_MODELS:
        return simulate_family_data(name[4:])
    if name.startswith("hard:"):  # tests/hard's simulators (seed 1)
        sys.path.insert(0, str(HERE.parent / "tests"))
        from hard import make_case

        return make_case(name[5:], seed=1).data
    import hmodels as hm

    return hm.datasets.load(name)


def simulate_family_data(family: str):
    """1,000 rows in 50 groups from a random-intercept GLMM of ``family`` (fixed seed, known truth).

    Truth: Intercept 0.5 (beta: -0.5, zero-inflated and hurdle counts: 1.0), x 0.3, sd(g) 0.4; gamma shape 3,
    lognormal sigma 0.5, beta phi 20, negative binomial shape 3, zero inflation / hurdle probability 0.3; the
    hurdles' positive parts: zero-truncated negative binomial, lognormal (sigma 0.5), gamma (shape 3);
    exponential with mean exp(eta). Categorical: three
    categories ``a`` (the reference), ``b``, ``c`` with ``eta_b = 0.3 + 0.4 x + u_b``, ``eta_c = -0.2 - 0.3 x + u_c``,
    independent group effects of SD 0.5.
    """
    import pandas as pd

    rng = np.random.default_rng(20261130)
    n, n_groups = 1000, 50
    g = np.repeat(np.arange(n_groups), n // n_groups)
    x = rng.normal(size=n)
    if family == "categorical":
        eta = np.column_stack([np.zeros(n), 0.3 + 0.4 * x + rng.normal(0, 0.5, n_groups)[g],
                               -0.2 - 0.3 * x + rng.normal(0, 0.5, n_groups)[g]])
        p = np.exp(eta - eta.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        y = np.array(["a", "b", "c"])[(rng.random(n)[:, None] > p.cumsum(axis=1)).sum(axis=1)]
        return pd.DataFrame({"y": y, "x": x, "g": [f"g{i:02d}" for i in g]})
    intercept = {"beta": -0.5, "zero_inflated_poisson": 1.0, "hurdle_poisson": 1.0,
                 "zero_inflated_negativebinomial": 1.0, "hurdle_negativebinomial": 1.0}.get(family, 0.5)
    eta = intercept + 0.3 * x + rng.normal(0, 0.4, n_groups)[g]
    zero = rng.random(n) < 0.3  # the zero / hurdle process of the two-part families
    if family == "zero_inflated_negativebinomial":  # NB(mean exp(eta), shape 3), zero with probability 0.3
        y = np.where(zero, 0, rng.negative_binomial(3.0, 3.0 / (3.0 + np.exp(eta))))
        return pd.DataFrame({"y": y, "x": x, "g": [f"g{i:02d}" for i in g]})
    if family in ("hurdle_negativebinomial", "hurdle_lognormal", "hurdle_gamma"):
        if family == "hurdle_negativebinomial":  # the positive part: NB(mean exp(eta), shape 3) given y > 0
            pos = rng.negative_binomial(3.0, 3.0 / (3.0 + np.exp(eta)))
            while (pos == 0).any():
                redo = pos == 0
                pos[redo] = rng.negative_binomial(3.0, 3.0 / (3.0 + np.exp(eta[redo])))
        elif family == "hurdle_lognormal":
            pos = np.exp(rng.normal(eta, 0.5))
        else:
            pos = rng.gamma(3.0, np.exp(eta) / 3.0)
        y = np.where(zero, 0, pos)
        return pd.DataFrame({"y": y, "x": x, "g": [f"g{i:02d}" for i in g]})
    if family == "exponential":
        return pd.DataFrame({"y": rng.exponential(np.exp(eta)), "x": x, "g": [f"g{i:02d}" for i in g]})
    if family == "gamma":
        y = rng.gamma(3.0, np.exp(eta) / 3.0)
    elif family == "lognormal":
        y = np.exp(rng.normal(eta, 0.5))
    elif family == "beta":
        mu = 1 / (1 + np.exp(-eta))
        y = rng.beta(mu * 20, (1 - mu) * 20)
    elif family == "zero_inflated_poisson":
        y = np.where(rng.random(n) < 0.3, 0, rng.poisson(np.exp(eta)))
    else:  # hurdle poisson: a zero with probability 0.3, else a zero-truncated poisson count
        lam = np.exp(eta)
        u = rng.uniform(np.exp(-lam), 1.0)  # inverse-CDF draw of the poisson conditioned on y > 0
        from scipy import stats

        y = np.where(rng.random(n) < 0.3, 0, stats.poisson.ppf(u, lam).astype(int))
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i:02d}" for i in g]})


def bootstrap_within(data, factor: str, seed: int = SECOND_FIT_SEED):
    """Rows resampled with replacement within each level of ``factor`` (same rows per level, fixed seed)."""
    rng = np.random.default_rng(seed)
    groups = data.groupby(data[factor].astype(str), sort=True, observed=True).indices
    idx = np.concatenate([rng.choice(ix, size=ix.size, replace=True) for ix in groups.values()])
    return data.iloc[np.sort(idx)].reset_index(drop=True)


def design_shape(model) -> tuple:
    """What fixes the size of an hmodels model: rows, levels per factor, population-level terms."""
    d = model.design
    return d.n, tuple((f.factor, f.n_levels, len(f.terms)) for f in d.factors), tuple(d.fixed_terms)


def draws_tune(name: str, args) -> tuple[int, int]:
    """Draws and warm-up for a model: the CLI values, else the model's own default, else 1000 + 1000."""
    cfg = MODELS[name]
    draws = args.draws if args.draws is not None else cfg.get("draws", DEFAULT_DRAWS)
    tune = args.tune if args.tune is not None else cfg.get("tune", DEFAULT_TUNE)
    return draws, tune


# -- priors: hmodels's resolved table, handed to bambi ---------------------------------------------
def bambi_priors(model, aux: dict | None = None):
    """bambi priors equal to an hmodels Model's resolved priors (fixed terms, group SDs, family parameters).

    A categorical term's levels share one bambi prior; where hmodels's scales differ by level
    they are passed as arrays (in the design's level order, which bambi shares). ``aux`` maps a
    family parameter to bambi's name and whether bambi's is one minus hmodels's.
    """
    import bambi as bmb

    aux = aux or {}
    out, levels = {}, {}
    rows = list(model.priors)
    if model.family.outcome == "categorical":  # the first category's priors, under the formula's own names
        first = f"{model.design.predictor_names[0]}_"
        rows = [replace(r, slot=replace(r.slot, param=r.slot.param.replace(first, ""))) for r in rows
                if first in r.slot.param or r.slot.param in ("Intercept", "fixed")]
    for row in rows:
        key, p = row.slot.param, row.prior
        if key.startswith("sd("):
            factor, term = [s.strip() for s in key[3:-1].split(",")]
            name = f"1|{factor}" if term == "Intercept" else f"{term}|{factor}"
            out[name] = bmb.Prior("Normal", mu=0, sigma=bmb.Prior(p.pymc_class().__name__, **p.params))
        elif key in aux:
            bname, flip = aux[key]
            params = dict(p.params)
            if key == "cutpoints":  # the thresholds: ordered, started increasing (bambi's own start fails)
                from pymc.distributions.transforms import ordered

                k = len(model.design.response_levels) - 1
                out[bname] = bmb.Prior(p.pymc_class().__name__, **params, transform=ordered,
                                       initval=np.linspace(-2.0, 2.0, k))
                continue
            if flip:  # Beta(a, b) on zi is Beta(b, a) on bambi's psi = 1 - zi
                if p.pymc_class().__name__ != "Beta":
                    raise ValueError(f"cannot hand the prior {p} of {key} to bambi's {bname}")
                params = {"alpha": params["beta"], "beta": params["alpha"]}
            out[bname] = bmb.Prior(p.pymc_class().__name__, **params)
        elif key == "sigma":
            out["sigma"] = bmb.Prior(p.pymc_class().__name__, **p.params)
        elif key in model.design.fixed_terms or key in getattr(getattr(model.design, "base", None), "fixed_terms", ()):
            levels.setdefault(key.split("[")[0], []).append(p)
    for base, ps in levels.items():
        dist = ps[0].pymc_class().__name__
        if len(ps) == 1 or all(q.params == ps[0].params for q in ps):
            out[base] = bmb.Prior(dist, **ps[0].params)
        else:
            out[base] = bmb.Prior(dist, **{k: np.array([q.params[k] for q in ps]) for k in ps[0].params})
    return out


# -- posterior summaries --------------------------------------------------------------------------
def ess_rhat(post, names: list[str]) -> tuple[float, float]:
    """Minimum bulk ESS and maximum R-hat over the non-constant elements of ``names`` (ArviZ)."""
    import arviz as az

    ds = post[names]
    with np.errstate(invalid="ignore", divide="ignore"):
        ess = az.ess(ds, method="bulk")
        rhat = az.rhat(ds)
    e, r = [], []
    for v in ds.data_vars:
        ev, rv = np.asarray(ess[v].values, float).ravel(), np.asarray(rhat[v].values, float).ravel()
        keep = np.isfinite(rv) & (np.asarray(ds[v].std(("chain", "draw")).values).ravel() > 0)
        e += list(ev[keep])
        r += list(rv[keep])
    return float(np.min(e)), float(np.max(r))


def flat_means(post, names: list[str]) -> dict[str, tuple[float, float]]:
    """(posterior mean, sd) per scalar element, a vector's elements named ``var[label]``."""
    out = {}
    for v in names:
        da = post[v]
        extra = [d for d in da.dims if d not in ("chain", "draw")]
        if not extra:
            out[v] = (float(da.mean()), float(da.std()))
            continue
        for lab in da[extra[0]].values:
            x = da.sel({extra[0]: lab})
            out[f"{v}[{lab}]"] = (float(x.mean()), float(x.std()))
    return out


def bambi_to_hmodels(name: str, categorical: bool = False) -> str:
    """bambi's name of a parameter in hmodels's naming (``Days|Subject_sigma`` -> ``sd(Subject, Days)``).

    A categorical model's parameters carry the category (``x[b]`` -> ``mub_x``, ``1|g_sigma[b]`` ->
    ``sd(g, mub_Intercept)``).
    """
    if categorical and name.endswith("]"):
        base, cat = name[:-1].split("[", 1)
        from hmodels.families.categorical import category_predictor_names

        mu = category_predictor_names(("reference", cat))[0]
        if "|" in base and base.endswith("_sigma"):
            term, factor = base[: -len("_sigma")].split("|")
            return f"sd({factor}, {mu}_{'Intercept' if term == '1' else term})"
        return f"{mu}_{base}"
    if "|" in name and name.endswith("_sigma"):
        term, factor = name[: -len("_sigma")].split("|")
        return f"sd({factor}, {'Intercept' if term == '1' else term})"
    return name


def sampling_time(idata) -> float | None:
    """The ``sampling_time`` attribute PyMC/nutpie leave on the posterior or sample_stats group, if any."""
    for group in ("sample_stats", "posterior"):
        if group in idata.children and "sampling_time" in idata[group].attrs:
            return float(idata[group].attrs["sampling_time"])
    return None


def peak_mb(children: bool = False) -> float:
    """Peak resident memory of this process (plus its largest finished child) in MB."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if children:
        kb += resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return kb / 1024


# -- workers: one fit in this (fresh) process -----------------------------------------------------
def worker_hmodels(name: str, draws: int, tune: int, chains: int, seed: int) -> dict:
    """hmodels with its default sampler, timed by phase, then a second fit of the same structure."""
    cfg = MODELS[name]
    t0 = time.perf_counter()
    import nutpie  # noqa: F401  (the sampler; imported lazily by fit(), timed here with the imports)

    import hmodels as hm
    from hmodels.engine import native

    t1 = time.perf_counter()
    data = load_data(cfg["data"])
    t2 = time.perf_counter()
    model = hm.Model(cfg["formula"], data, family=cfg["family"], link=cfg.get("link"))
    t3 = time.perf_counter()
    native.library()
    t4 = time.perf_counter()
    fit = model.fit(draws=draws, tune=tune, chains=chains, seed=seed, progressbar=False)
    t5 = time.perf_counter()
    post = fit.draws
    keys = fit._key_vars()
    ess_key, rhat = ess_rhat(post, keys)
    ess_all, _ = ess_rhat(post, [v for v in post.data_vars if not v.startswith("z_")])
    fe, vc = fit.fixed_effects(), fit.variance_components()
    means = {t: (float(fe.loc[t, "mean"]), float(fe.loc[t, "sd"])) for t in fe.index}
    means.update({k: (float(vc.loc[k, "mean"]), float(vc.loc[k, "sd"])) for k in vc.index
                  if vc.loc[k, "kind"] in ("sd", "sigma")})
    for a in model.family.aux:  # the family's own parameters (shape, phi, zi, ...)
        if a in post and a not in means:
            means[a] = (float(post[a].mean()), float(post[a].std()))
    res = dict(build_s=t3 - t2, compile_s=t4 - t3, sampling_s=t5 - t4, total_s=t5 - t2, ess_key=ess_key,
               ess_all=ess_all, max_rhat=rhat, divergences=fit.divergences, peak_mb=peak_mb(), means=means,
               import_s=t1 - t0, data_s=t2 - t1, fit_timing=dict(fit.timing),
               method=fit.meta["method"], collapsed_factor=fit.meta.get("collapsed_factor"),
               centered=fit.meta["centered"], target_accept=fit.settings.target_accept,
               mass_matrix=fit.meta.get("mass_matrix"),
               kernels="installed" if native.loaded_path() == native.prebuilt_path() else "cache")
    res.update(second_fit(cfg, model, draws, tune, chains, seed))
    return res


def second_fit(cfg: dict, model, draws: int, tune: int, chains: int, seed: int) -> dict:
    """A second hmodels fit in the same process, of the same structure on new data: Model + fit wall time.

    The data are the first fit's rows bootstrapped within the levels of the first grouping factor
    (fixed seed), so the rows, levels and terms (the shape) stay the same and the posterior similar.
    ``second_fit_new_cache_files`` counts what was added to hmodels's kernel cache (0: nothing compiled).
    """
    import hmodels as hm
    from hmodels.engine import native

    data = bootstrap_within(model.design.data, model.design.factors[0].factor)
    cache_before = set(os.listdir(native.cache_dir()))
    t0 = time.perf_counter()
    model2 = hm.Model(cfg["formula"], data, family=cfg["family"], link=cfg.get("link"))
    fit2 = model2.fit(draws=draws, tune=tune, chains=chains, seed=seed + 1, progressbar=False)
    t1 = time.perf_counter()
    return dict(second_fit_s=t1 - t0, second_fit_sample_s=fit2.timing["sample_s"],
                second_fit_same_shape=design_shape(model2) == design_shape(model),
                second_fit_new_cache_files=len(set(os.listdir(native.cache_dir())) - cache_before))


def worker_bambi(name: str, sampler: str, draws: int, tune: int, chains: int, seed: int) -> dict:
    """bambi with one PyMC sampler backend; the priors are hmodels's resolved defaults."""
    cfg = MODELS[name]
    t0 = time.perf_counter()
    import bambi as bmb

    if sampler == "nutpie":
        import nutpie  # noqa: F401
    elif sampler == "numpyro":
        import numpyro  # noqa: F401
        import pymc.sampling.jax  # noqa: F401
    t1 = time.perf_counter()
    import hmodels as hm  # only for its resolved priors: counted with data loading, not in the total

    data = load_data(cfg["data"])
    aux = cfg.get("bambi_aux", {})
    priors = bambi_priors(hm.Model(cfg["formula"], data, family=cfg["family"], link=cfg.get("link")), aux)
    t2 = time.perf_counter()
    link = {"link": cfg["link"]} if cfg.get("link") else {}
    if cfg["family"] == "cumulative":  # bambi reads the categories from an ordered Categorical
        import pandas as pd

        response = cfg["bambi"].split("~")[0].strip()
        data = data.assign(**{response: pd.Categorical(data[response], ordered=True)})
    model = bmb.Model(cfg["bambi"], data, family=cfg["family"], priors=priors, **link)
    model.build()
    t3 = time.perf_counter()
    idata = model.fit(draws=draws, tune=tune, chains=chains, cores=min(chains, os.cpu_count() or 1),
                      random_seed=seed, inference_method=sampler, progressbar=False)
    t4 = time.perf_counter()
    post = idata["posterior"].to_dataset()
    keys = [v for v in post.data_vars
            if ("|" not in v or v.endswith("_sigma")) and not v.endswith("_offset") and v not in ("mu", "p")]
    ess_key, rhat = ess_rhat(post, keys)
    ess_all, _ = ess_rhat(post, [v for v in post.data_vars if not v.endswith("_offset") and v not in ("mu", "p")])
    means = {bambi_to_hmodels(k, cfg["family"] == "categorical"): v for k, v in flat_means(post, keys).items()}
    for ours, (theirs, flip) in aux.items():  # the family's parameter under hmodels's name and meaning
        if theirs in means:
            m, sd = means.pop(theirs)
            means[ours] = (1.0 - m, sd) if flip else (m, sd)
    fit_s, sample_s = t4 - t3, sampling_time(idata)
    return dict(build_s=t3 - t2, compile_s=None if sample_s is None else fit_s - sample_s,
                sampling_s=fit_s if sample_s is None else sample_s, total_s=t4 - t2, ess_key=ess_key, ess_all=ess_all,
                max_rhat=rhat, divergences=int(np.asarray(idata["sample_stats"]["diverging"].values).sum()),
                peak_mb=peak_mb(), means=means, import_s=t1 - t0, data_s=t2 - t1, fit_s=fit_s,
                method=sampler, target_accept=0.8)


def worker_statsmodels(name: str) -> dict:
    """statsmodels MixedLM by REML (uncorrelated random effects where the model says ``||``)."""
    spec = MODELS[name]["statsmodels"]
    t0 = time.perf_counter()
    import statsmodels.formula.api as smf
    from statsmodels.regression.mixed_linear_model import MixedLMParams

    t1 = time.perf_counter()
    data = load_data(MODELS[name]["data"])
    groups = data[spec["groups"]] if "groups" in spec else np.ones(len(data))  # crossed: one all-rows group
    t2 = time.perf_counter()
    model = smf.mixedlm(spec["formula"], data, groups=groups, re_formula=spec.get("re_formula"),
                        vc_formula=spec.get("vc_formula"))
    free = MixedLMParams.from_components(np.ones(model.k_fe), np.eye(model.k_re)) if spec.get("independent") else None
    t3 = time.perf_counter()
    res = model.fit(reml=True, free=free)
    t4 = time.perf_counter()
    fe = {k.replace("[T.", "["): (float(res.fe_params[k]), float(res.bse_fe[k])) for k in res.fe_params.index}
    return dict(build_s=t3 - t2, fit_s=t4 - t3, total_s=t4 - t2, fixed=fe, converged=bool(res.converged),
                peak_mb=peak_mb(),
                import_s=t1 - t0, data_s=t2 - t1, method="MixedLM REML")


R_SCRIPT = r"""
args <- commandArgs(trailingOnly = TRUE)
t0 <- proc.time()[["elapsed"]]
suppressPackageStartupMessages(library(lme4))
import_s <- proc.time()[["elapsed"]] - t0
bench_data <- read.csv(args[1], colClasses = COLCLASSES)
warns <- character(0)
st <- system.time(m <- withCallingHandlers(FIT, warning = function(w) {
  warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning")
}))
fe <- fixef(m)
se <- sqrt(diag(as.matrix(vcov(m))))
con <- file(args[2], "w")
writeLines(sprintf("import\t%.6f", import_s), con)
writeLines(sprintf("elapsed\t%.6f", st[["elapsed"]]), con)
for (i in seq_along(fe)) writeLines(sprintf("fixef\t%s\t%.17g\t%.17g", names(fe)[i], fe[[i]], se[[i]]), con)
for (w in warns) writeLines(paste0("warning\t", gsub("[\t\n]", " ", w)), con)
writeLines(paste0("version\t", R.version$major, ".", R.version$minor, "\t", packageVersion("lme4")), con)
close(con)
"""


def lme4_call(name: str) -> tuple[str, str]:
    """The R colClasses vector and the lmer (REML) / glmer call for a model."""
    from pandas.api.types import is_numeric_dtype

    cfg = MODELS[name]
    data = load_data(cfg["data"])
    factors = [c for c in data.columns if not is_numeric_dtype(data[c])]
    colclasses = "c(" + ", ".join(f'{c} = "factor"' for c in factors) + ")" if factors else "NA"
    if cfg.get("lme4_call"):
        call = cfg["lme4_call"]
    elif cfg["family"] == "gaussian":
        call = f"lmer({cfg['lme4']}, data = bench_data, REML = TRUE)"
    else:
        call = f"glmer({cfg['lme4']}, data = bench_data, family = {cfg['family']})"
    return colclasses, call


def r_to_hmodels(term: str, data) -> str:
    """lme4's coefficient name in hmodels's naming (``(Intercept)`` -> ``Intercept``, ``period2`` -> ``period[2]``)."""
    from pandas.api.types import is_numeric_dtype

    if term == "(Intercept)":
        return "Intercept"
    for c in data.columns:
        if term.startswith(c) and term != c and not is_numeric_dtype(data[c]):
            return f"{c}[{term[len(c):]}]"
    return term


def worker_lme4(name: str) -> dict:
    """lme4 in a child Rscript: the data go through a temporary CSV; R times the fit with system.time."""
    t0 = time.perf_counter()
    data = load_data(MODELS[name]["data"])
    colclasses, call = lme4_call(name)
    with tempfile.TemporaryDirectory(prefix="hmbench-r-") as tmp:
        csv, script, out = Path(tmp) / "data.csv", Path(tmp) / "fit.R", Path(tmp) / "out.tsv"
        data.to_csv(csv, index=False)
        script.write_text(R_SCRIPT.replace("COLCLASSES", colclasses).replace("FIT", call))
        t1 = time.perf_counter()
        proc = subprocess.run(["Rscript", str(script), str(csv), str(out)], capture_output=True, text=True)
        t2 = time.perf_counter()
        if proc.returncode != 0:
            raise RuntimeError(f"Rscript failed: {proc.stderr.strip()[-500:]}")
        lines = [ln.split("\t") for ln in out.read_text().splitlines()]
    fixed = {r_to_hmodels(p[1], data): (float(p[2]), float(p[3])) for p in lines if p[0] == "fixef"}
    info = {p[0]: p[1:] for p in lines if p[0] != "fixef"}
    elapsed = float(info["elapsed"][0])  # lmer/glmer build and fit in one call
    return dict(fit_s=elapsed, total_s=elapsed, fixed=fixed, peak_mb=peak_mb(children=True),
                r_peak_mb=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                import_s=float(info["import"][0]), data_s=t1 - t0, rscript_wall_s=t2 - t1, method=call.split("(")[0],
                warnings=[p[1] for p in lines if p[0] == "warning"], r_version=info["version"][0],
                lme4_version=info["version"][1])


def worker(tool: str, name: str, args) -> dict:
    """Run one fit of ``tool`` on model ``name`` in this process (adds ESS per second of total time)."""
    import warnings

    warnings.simplefilter("ignore")
    draws, tune = draws_tune(name, args)
    if tool == "hmodels":
        res = worker_hmodels(name, draws, tune, args.chains, args.seed)
    elif tool.startswith("bambi-"):
        res = worker_bambi(name, tool.split("-", 1)[1], draws, tune, args.chains, args.seed)
    elif tool == "statsmodels":
        res = worker_statsmodels(name)
    else:
        res = worker_lme4(name)
    if "ess_key" in res:
        res["ess_per_s"] = res["ess_key"] / res["total_s"]
    return res


# -- orchestration: one subprocess per fit ---------------------------------------------------------
def cache_env(root: Path) -> dict:
    """Environment that points hmodels's, PyTensor's and numba's compile caches under ``root``.

    PyTensor keeps its numba cache in ``base_compiledir/numba``, not in ``compiledir``, so both are set.
    """
    dirs = {k: root / k for k in ("hmodels", "pytensor", "numba")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    ours = f"base_compiledir={dirs['pytensor']},compiledir={dirs['pytensor'] / 'compiledir'}"
    flags = ",".join(f for f in (os.environ.get("PYTENSOR_FLAGS"), ours) if f)
    return {"HMODELS_CACHE_DIR": str(dirs["hmodels"]), "PYTENSOR_FLAGS": flags, "NUMBA_CACHE_DIR": str(dirs["numba"])}


def run_fit(tool: str, name: str, args, env: dict, timeout: float) -> dict:
    """One fit in a fresh subprocess; returns its record (status ok / error / timeout) with the process wall time."""
    with tempfile.TemporaryDirectory(prefix="hmbench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, __file__, "--worker", tool, name, "--result", str(out), "--chains", str(args.chains),
               "--seed", str(args.seed)]
        for flag in ("draws", "tune"):
            if getattr(args, flag) is not None:
                cmd += [f"--{flag}", str(getattr(args, flag))]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONWARNINGS": "ignore", **env}, start_new_session=True)
        try:
            _, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the worker's own process group: it and its children (R, chains)
            proc.communicate()
            return dict(status="timeout", error=f"timed out after {timeout:.0f} s", process_s=time.perf_counter() - t0)
        wall = time.perf_counter() - t0
        if out.exists():
            res = json.loads(out.read_text())
        else:
            tail = [ln for ln in stderr.strip().splitlines() if ln.strip()][-3:]
            res = dict(status="error", error=" | ".join(tail) or f"exit code {proc.returncode}")
    res["process_s"] = wall
    return res


def worker_main(args) -> None:
    """Entry point of a worker process: run the fit, write the record (or the error) to ``--result``."""
    tool, name = args.worker
    try:
        res = dict(status="ok", **worker(tool, name, args))
    except Exception as exc:  # recorded, never dropped: the table shows the error
        traceback.print_exc()
        res = dict(status="error", error=f"{type(exc).__name__}: {str(exc).strip()[:400]}")
    Path(args.result).write_text(json.dumps(res))


def lme4_unavailable() -> str | None:
    """Why lme4 cannot run here (no Rscript, or R without lme4), or None."""
    if shutil.which("Rscript") is None:
        return "Rscript not found"
    proc = subprocess.run(["Rscript", "-e", 'quit(status = !requireNamespace("lme4", quietly = TRUE))'],
                          capture_output=True, text=True)
    return None if proc.returncode == 0 else "R package lme4 not installed"


def skip_reason(tool: str, name: str, unavailable: dict) -> str | None:
    """Why a frequentist ``tool`` is not run on model ``name`` (recorded as skipped), or None."""
    if tool in unavailable:
        return f"unavailable: {unavailable[tool]}"
    if tool == "lme4" and not (MODELS[name].get("lme4") or MODELS[name].get("lme4_call")):
        return f"not applicable: lme4 has no {MODELS[name]['family']} family"
    if tool == "statsmodels" and "statsmodels" not in MODELS[name]:
        return MODELS[name].get("statsmodels_skip", "not applicable: MixedLM is for gaussian models only")
    return None


def run_all(args) -> list[dict]:
    """Every (model, repetition, tool, state) fit, tools alternating order on every repetition."""
    unavailable = {}
    if "lme4" in args.tools and (why := lme4_unavailable()):
        unavailable["lme4"] = why
    results = []

    def record(res, **key):
        res = {**key, **res}
        results.append(res)
        status = (f"{res['total_s']:7.1f} s" + (f"  ESS {res['ess_key']:.0f}" if "ess_key" in res else "")
                  if res["status"] == "ok" else f"{res['status'].upper()}: {res.get('error', '')}")
        print(f"{key['model']:16s} {key['tool']:14s} {key['state']:5s} rep {key['rep']}: {status}", flush=True)

    for name in args.models:
        for rep in range(args.reps):
            order = args.tools if rep % 2 == 0 else args.tools[::-1]
            for tool in order:
                key = dict(model=name, tool=tool, rep=rep)
                if tool in FREQ_TOOLS:
                    timeout = min(args.timeout, STATSMODELS_TIMEOUT) if tool == "statsmodels" else args.timeout
                    why = skip_reason(tool, name, unavailable)
                    res = dict(status="skipped", error=why) if why else run_fit(tool, name, args, {}, timeout)
                    record(res, state="-", **key)
                    continue
                root = Path(tempfile.mkdtemp(prefix="hmbench-cache-"))
                try:
                    env = cache_env(root)
                    for state in STATES[: 1 + ("warm" in args.states)]:  # warm needs the cold run first
                        res = run_fit(tool, name, args, env, args.timeout)
                        if state in args.states:
                            record(res, state=state, **key)
                finally:
                    shutil.rmtree(root, ignore_errors=True)
    return results


# -- report ---------------------------------------------------------------------------------------
def agreement(ref: dict, other: dict) -> tuple[float, str] | None:
    """Largest |mean difference| / reference posterior SD over shared parameters, and which parameter."""
    common = [k for k in ref if k in other]
    if not common:
        return None
    worst = max(common, key=lambda k: abs(ref[k][0] - other[k][0]) / ref[k][1])
    return abs(ref[worst][0] - other[worst][0]) / ref[worst][1], worst


def attach_agreement(results: list[dict]) -> None:
    """Agreement with hmodels (same model, repetition and state; the frequentist tools: cold, else warm)."""
    hm = {(r["model"], r["rep"], r["state"]): r for r in results if r["tool"] == "hmodels" and r["status"] == "ok"}
    for r in results:
        if r["tool"] == "hmodels" or r["status"] != "ok":
            continue
        h = hm.get((r["model"], r["rep"], r["state"])) or hm.get((r["model"], r["rep"], "cold")) \
            or hm.get((r["model"], r["rep"], "warm"))
        a = h and agreement(h["means"], r.get("means") or r["fixed"])
        if a:
            r["agreement"], r["agreement_worst"] = a


def median(rs: list[dict], field: str) -> float | None:
    """Median of a numeric field over successful runs (None when no run has it)."""
    vals = [r[field] for r in rs if r["status"] == "ok" and r.get(field) is not None]
    return float(np.median(vals)) if vals else None


def fmt(x, spec: str = ".1f") -> str:
    """A number for the tables ('' when missing)."""
    return "" if x is None else format(x, spec)


def grouped(results: list[dict], state: str) -> dict:
    """Runs of one state by (model, tool), in first-seen order."""
    out = {}
    for r in results:
        if r["state"] == state:
            out.setdefault((r["model"], r["tool"]), []).append(r)
    return out


def failures(rs: list[dict]) -> str:
    """The errors of the failed/skipped runs of one row."""
    return "; ".join(sorted({f"{r['status']}: {r['error']}" for r in rs if r["status"] != "ok"}))


def ok_runs(rs: list[dict]) -> str:
    """``ok/attempted`` for one row (skipped runs are not attempts), or ``skipped``."""
    tried = [r for r in rs if r["status"] != "skipped"]
    return f"{sum(r['status'] == 'ok' for r in tried)}/{len(tried)}" if tried else "skipped"


def setup_of(r: dict) -> str:
    """How a Bayesian run sampled: hmodels's method, collapsed factor, mass matrix and target_accept."""
    if r["tool"] != "hmodels":
        return f"ta {r['target_accept']} (default)"
    method = r["method"] + (f"({r['collapsed_factor']})" if r.get("collapsed_factor") else "")
    kernels = f", kernels {r['kernels']}" if r.get("kernels") else ""  # installed (hatch_build.py) or cache
    return f"{method}, {r['mass_matrix']}, ta {r['target_accept']}{kernels}"


def bayes_table(results: list[dict], state: str) -> str:
    """Main table of one cache state: one row per (model, tool), medians over successful repetitions."""
    head = ["model", "tool", "setup", "ok/runs", "import s", "build s", "compile s", "sampling s", "total s",
            "min ESS key", "min ESS all", "ESS/s", "max R-hat", "div", "peak MB", "hm ESS/s ÷ this",
            "max Δmean/sd", "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    groups = grouped(results, state)
    for (model, tool), rs in groups.items():
        ok = [r for r in rs if r["status"] == "ok"]
        h = groups.get((model, "hmodels"), [])
        hm_rate, rate = median(h, "ess_per_s"), median(rs, "ess_per_s")
        ratio = hm_rate / rate if tool != "hmodels" and hm_rate and rate else None
        agree = max((r["agreement"] for r in ok if "agreement" in r), default=None)
        cells = [model, tool, setup_of(ok[0]) if ok else "", ok_runs(rs),
                 fmt(median(rs, "import_s")), fmt(median(rs, "build_s"), ".2f"), fmt(median(rs, "compile_s")),
                 fmt(median(rs, "sampling_s")), fmt(median(rs, "total_s")), fmt(median(rs, "ess_key"), ".0f"),
                 fmt(median(rs, "ess_all"), ".0f"), fmt(rate, ".0f"), fmt(median(rs, "max_rhat"), ".3f"),
                 fmt(median(rs, "divergences"), ".0f"), fmt(median(rs, "peak_mb"), ".0f"), fmt(ratio, ".2f"),
                 fmt(agree, ".3f"), failures(rs)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def freq_table(results: list[dict]) -> str:
    """Frequentist references: time (R's system.time for lme4), fixed effects, agreement with hmodels."""
    head = ["model", "tool", "ok/runs", "import s", "build s", "fit s", "total s", "process s", "peak MB",
            "fixed effects (estimate ± se)", "max Δfixed/sd vs hmodels", "notes"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (model, tool), rs in grouped(results, "-").items():
        ok = [r for r in rs if r["status"] == "ok"]
        fixed = ", ".join(f"{k} {v[0]:.4g} ± {v[1]:.2g}" for k, v in ok[0]["fixed"].items()) if ok else ""
        notes = [failures(rs)] + sorted({w for r in ok for w in r.get("warnings", [])})
        notes += ["not converged"] if any(r.get("converged") is False for r in ok) else []
        agree = max((r["agreement"] for r in ok if "agreement" in r), default=None)
        cells = [model, tool, ok_runs(rs), fmt(median(rs, "import_s")), fmt(median(rs, "build_s"), ".2f"),
                 fmt(median(rs, "fit_s"), ".2f"), fmt(median(rs, "total_s"), ".2f"),
                 fmt(median(rs, "process_s")), fmt(median(rs, "peak_mb"), ".0f"), fixed, fmt(agree, ".3f"),
                 "; ".join(n for n in notes if n)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_table(results: list[dict], models: list[str]) -> str:
    """Per model: hmodels vs the best bambi sampler (cold, warm), agreement, second fit, lme4."""
    head = ["model", "hm ESS/s cold", "best bambi ESS/s cold", "ratio cold", "hm ESS/s warm",
            "best bambi ESS/s warm", "ratio warm", "max Δmean/sd (bambi)", "hm second fit s", "lme4 s",
            "hm total / lme4 cold", "hm total / lme4 warm"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model in models:
        cells = [model]
        for state in STATES:
            g = {tool: rs for (m, tool), rs in grouped(results, state).items() if m == model}
            hm_rate = median(g.get("hmodels", []), "ess_per_s")
            bambi = {t: median(rs, "ess_per_s") for t, rs in g.items() if t.startswith("bambi-")}
            bambi = {t: v for t, v in bambi.items() if v is not None}
            best = max(bambi, key=bambi.get) if bambi else None
            cells += [fmt(hm_rate, ".0f"), f"{bambi[best]:.0f} ({best[6:]})" if best else "",
                      fmt(hm_rate / bambi[best] if best and hm_rate else None, ".2f")]
        agree = [r["agreement"] for r in results
                 if r["model"] == model and r["tool"].startswith("bambi-") and "agreement" in r]
        hm_runs = [r for r in results if r["model"] == model and r["tool"] == "hmodels"]
        lme4 = median([r for r in results if r["model"] == model and r["tool"] == "lme4"], "total_s")
        cells += [fmt(max(agree, default=None), ".3f"), fmt(median(hm_runs, "second_fit_s")), fmt(lme4, ".2f")]
        for state in STATES:
            hm_total = median([r for r in hm_runs if r["state"] == state], "total_s")
            cells.append(fmt(hm_total / lme4 if hm_total and lme4 else None, ".1f"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine_info() -> dict:
    """CPU count and model, platform, Python and package versions."""
    cpu = ""
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = "not installed"
    return dict(cpus=os.cpu_count(), cpu=cpu or platform.processor(), platform=platform.platform(),
                python=sys.version.split()[0], versions=versions)


def markdown(settings: dict, machine: dict, results: list[dict], models: list[str]) -> str:
    """The Markdown report: settings and machine, one table per cache state, frequentist references, summary."""
    per_model = ", ".join(f"{m} {d} + {t}" for m, (d, t) in settings["draws_tune"].items())
    lme4 = next((r for r in results if r["tool"] == "lme4" and r["status"] == "ok"), None)
    versions = dict(machine["versions"])
    if lme4:
        versions.update(R=lme4["r_version"], lme4=lme4["lme4_version"])
    out = [
        f"# hmodels vs bambi benchmark ({settings['stamp']})", "",
        f"* Settings: {settings['chains']} chains, seed {settings['seed']}, {settings['reps']} repetition(s), "
        f"timeout {settings['timeout']} s per fit (statsmodels {min(settings['timeout'], STATSMODELS_TIMEOUT)} s).",
        f"* Draws + warm-up per chain (the same for every tool on a model): {per_model}.",
        f"* Machine: {machine['cpus']} CPUs ({machine['cpu']}), {machine['platform']}, Python {machine['python']}.",
        "* Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        "* Times in seconds, medians over successful repetitions; total = build + compile + sampling "
        "(imports and data loading apart). See benchmarks/README.md for every column.", "",
    ]
    for state in settings["states"]:
        out += [f"## Bayesian fits, {state} caches", "", bayes_table(results, state), ""]
    if any(r["state"] == "-" for r in results):
        out += ["## Frequentist references (no compile cache; one process per fit)", "", freq_table(results), ""]
    out += ["## Summary per model", "",
            "ratio = hmodels ESS/s ÷ best bambi ESS/s; hm total / lme4 = hmodels total s ÷ lme4 fit s "
            "(the insteval target is < 3); second fit = hmodels's in-process refit on bootstrapped rows.", "",
            summary_table(results, models), ""]
    return "\n".join(out)


def main(argv=None):
    """Parse the CLI; run a worker, or the whole benchmark and write the reports."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", nargs=2, metavar=("TOOL", "MODEL"), help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--models", nargs="+", default=SMALL, choices=list(MODELS) + ["families", "hard"],
                    help=f"models to run; 'families' = {' '.join(FAMILY_MODELS)}; 'hard' = {' '.join(HARD_MODELS)}")
    ap.add_argument("--tools", nargs="+", default=BAYES_TOOLS + FREQ_TOOLS, choices=BAYES_TOOLS + FREQ_TOOLS)
    ap.add_argument("--states", nargs="+", default=STATES, choices=STATES)
    ap.add_argument("--draws", type=int, default=None, help="draws per chain (default 1000; insteval 300)")
    ap.add_argument("--tune", type=int, default=None, help="warm-up per chain (default 1000; insteval 300)")
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=900, help="seconds per fit")
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    groups = {"families": FAMILY_MODELS, "hard": HARD_MODELS}
    args.models = [m for name in args.models for m in groups.get(name, [name])]
    if args.worker:
        worker_main(args)
        return
    stamp = time.strftime("%Y%m%d-%H%M%S")
    settings = dict(stamp=stamp, models=args.models, tools=args.tools, states=args.states, chains=args.chains,
                    seed=args.seed, reps=args.reps, timeout=args.timeout,
                    draws_tune={m: draws_tune(m, args) for m in args.models})
    machine = machine_info()
    results = run_all(args)
    attach_agreement(results)
    md = markdown(settings, machine, results, args.models)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = json.dumps({"settings": settings, "machine": machine, "results": results}, indent=1)
    for stem in (stamp, "latest"):
        (out / f"{stem}.json").write_text(payload)
        (out / f"{stem}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()

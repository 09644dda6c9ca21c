"""Side-by-side benchmark: hmodels vs bambi on the same models, same priors, chains and draws.

Every fit runs in its own subprocess (cold process: imports, graph building and JIT compilation
all paid), tools alternate within each repetition, and the worker reports wall time split into
import (libraries and data; not in the total), build (model construction) and fit (compile +
sampling; ``total_s`` = build + fit), minimum bulk ESS and maximum
R-hat over the population-level effects, group SDs, correlations and sigma, divergences and peak
resident memory (``ru_maxrss`` of the worker). Output: ``benchmarks/results/<stamp>.json`` and
``.md`` (and ``latest.*``).

Usage::

    python benchmarks/run.py                          # small models, 4 chains x 1000 + 1000
    python benchmarks/run.py --models sleepstudy radon --reps 2 --bambi-samplers numpyro nutpie
    python benchmarks/run.py --models insteval        # the large crossed model (slow for bambi)

bambi's ``(x | g)`` has no correlation, so hmodels fits ``(x || g)`` here (like with like);
bambi receives hmodels's resolved default priors (same families and scales).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

MODELS = {
    "sleepstudy": dict(formula="Reaction ~ Days + (Days || Subject)", bambi="Reaction ~ Days + (Days | Subject)",
                       data="sleepstudy", family="gaussian"),
    "radon": dict(formula="log_radon ~ floor + (floor || county)", bambi="log_radon ~ floor + (floor | county)",
                  data="radon", family="gaussian"),
    "penicillin": dict(formula="diameter ~ 1 + (1 | plate) + (1 | sample)",
                       bambi="diameter ~ 1 + (1 | plate) + (1 | sample)", data="penicillin", family="gaussian"),
    "cbpp": dict(formula="p(incidence, size) ~ period + (1 | herd)", bambi="p(incidence, size) ~ period + (1 | herd)",
                 data="cbpp", family="binomial"),
    "poisson_crossed": dict(formula="y ~ x + (1 | site) + (1 | item)", bambi="y ~ x + (1 | site) + (1 | item)",
                            data="sim_poisson", family="poisson"),
    "insteval": dict(formula="y ~ x + (1 | s) + (1 | d)", bambi="y ~ x + (1 | s) + (1 | d)",
                     data="sim_insteval", family="gaussian"),
}
SMALL = ["sleepstudy", "radon", "penicillin", "cbpp", "poisson_crossed"]


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
    import hmodels as hm

    return hm.datasets.load(name)


# -- priors: hmodels's resolved table, handed to bambi ---------------------------------------------
def bambi_priors(model):
    """bambi priors equal to an hmodels Model's resolved priors (fixed terms, group SDs, sigma)."""
    import bambi as bmb

    def bp(p):
        return bmb.Prior(p.pymc_class().__name__, **p.params)

    out = {}
    for row in model.priors:
        key, p = row.slot.param, row.prior
        if key.startswith("sd("):
            factor, term = [s.strip() for s in key[3:-1].split(",")]
            name = f"1|{factor}" if term == "Intercept" else f"{term}|{factor}"
            out[name] = bmb.Prior("Normal", mu=0, sigma=bp(p))
        elif key == "sigma":
            out["sigma"] = bp(p)
        elif key in model.design.fixed_terms:
            base = key.split("[")[0]
            out.setdefault(base, bp(p))
    return out


# -- worker: one fit in this process --------------------------------------------------------------
def _key_summary(post, names):
    import arviz as az

    ds = post[names]
    ess = az.ess(ds, method="bulk")
    rhat = az.rhat(ds)
    e, r = [], []
    for v in ds.data_vars:
        ev, rv = np.asarray(ess[v].values, float).ravel(), np.asarray(rhat[v].values, float).ravel()
        keep = np.isfinite(rv) & (np.asarray(ds[v].std(("chain", "draw")).values).ravel() > 0)
        e += list(ev[keep])
        r += list(rv[keep])
    return float(np.min(e)), float(np.max(r))


def worker(tool: str, name: str, sampler: str, draws: int, tune: int, chains: int, seed: int) -> dict:
    import warnings

    warnings.simplefilter("ignore")
    cfg = MODELS[name]
    t0 = time.perf_counter()
    import hmodels as hm

    data = load_data(cfg["data"])
    hmodel = hm.Model(cfg["formula"], data, family=cfg["family"])
    if tool == "bambi":
        import bambi as bmb

        priors = bambi_priors(hmodel)
        t1 = time.perf_counter()
        m = bmb.Model(cfg["bambi"], data, family=cfg["family"], priors=priors)
        m.build()
        t2 = time.perf_counter()
        idata = m.fit(draws=draws, tune=tune, chains=chains, random_seed=seed, inference_method=sampler,
                      progressbar=False)
        t3 = time.perf_counter()
        post = idata["posterior"].to_dataset()
        names = [v for v in post.data_vars if ("|" not in v or v.endswith("_sigma")) and not v.endswith("_offset")
                 and v not in ("mu", "p")]
        div = int(np.asarray(idata["sample_stats"]["diverging"].values).sum())
        means = _flat_means(post, [v for v in names if "|" not in v and v != "sigma"])
        method = sampler
    else:
        t1 = time.perf_counter()
        _ = hmodel.priors
        t2 = time.perf_counter()
        fit = hmodel.fit(draws=draws, tune=tune, chains=chains, seed=seed, sampler=sampler, progressbar=False)
        t3 = time.perf_counter()
        post = fit.draws
        names = fit._key_vars()
        div = fit.divergences
        fe = fit.fixed_effects()
        means = {t: (float(fe.loc[t, "mean"]), float(fe.loc[t, "sd"])) for t in fe.index}
        method = f"{sampler}/{fit.meta['method']}"
    min_ess, max_rhat = _key_summary(post, names)
    total = t3 - t1  # build + compile + sampling; imports and data loading are reported apart
    return dict(tool=tool, model=name, method=method, import_s=t1 - t0, build_s=t2 - t1, fit_s=t3 - t2,
                total_s=total, min_ess=min_ess, ess_per_s=min_ess / total, max_rhat=max_rhat, divergences=div,
                peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, means=means)


def _flat_means(post, names):
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


def run_one(tool, name, sampler, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", tool, name, sampler, "--draws", str(args.draws), "--tune",
           str(args.tune), "--chains", str(args.chains), "--seed", str(args.seed)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return dict(tool=tool, model=name, method=sampler, error=proc.stderr.strip().splitlines()[-1:], wall_s=wall)
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["process_s"] = wall
    return res


def agreement(h: dict, b: dict) -> float | None:
    """Largest |mean difference| / hmodels posterior SD over the shared population-level terms."""
    common = [k for k in h if k in b]
    if not common:
        return None
    return max(abs(h[k][0] - b[k][0]) / h[k][1] for k in common)


def table(results: list[dict]) -> str:
    head = ("| model | tool | sampler/method | build s | fit s | total s | min ESS | ESS/s | max R-hat | div "
            "| peak MB | ESS/s ratio hm/bambi | max Δmean/sd |\n|" + "---|" * 13)
    lines = [head]
    by_model = {}
    for r in results:
        by_model.setdefault(r["model"], []).append(r)
    for model, rs in by_model.items():
        hm_ok = [r for r in rs if r["tool"] == "hmodels" and "error" not in r]
        for r in rs:
            if "error" in r:
                lines.append(f"| {model} | {r['tool']} | {r['method']} | error: {r['error']} |" + " |" * 9)
                continue
            ratio, agree = "", ""
            if r["tool"] == "bambi" and hm_ok:
                h = hm_ok[0]
                ratio = f"{h['ess_per_s'] / r['ess_per_s']:.2f}" if r["ess_per_s"] > 0 else ""
                a = agreement(h["means"], r["means"])
                agree = "" if a is None else f"{a:.3f}"
            lines.append(
                f"| {model} | {r['tool']} | {r['method']} | {r['build_s']:.2f} | {r['fit_s']:.1f} | {r['total_s']:.1f} "
                f"| {r['min_ess']:.0f} | {r['ess_per_s']:.0f} | {r['max_rhat']:.3f} | {r['divergences']} "
                f"| {r['peak_mb']:.0f} | {ratio} | {agree} |"
            )
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", nargs=3, metavar=("TOOL", "MODEL", "SAMPLER"))
    ap.add_argument("--models", nargs="+", default=SMALL, choices=list(MODELS))
    ap.add_argument("--bambi-samplers", nargs="+", default=["numpyro"])
    ap.add_argument("--hmodels-sampler", default="numpyro")
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args(argv)
    if args.worker:
        tool, name, sampler = args.worker
        print(json.dumps(worker(tool, name, sampler, args.draws, args.tune, args.chains, args.seed)))
        return
    runs = [("hmodels", args.hmodels_sampler)] + [("bambi", s) for s in args.bambi_samplers]
    results = []
    for name in args.models:
        for rep in range(args.reps):
            order = runs if rep % 2 == 0 else runs[::-1]  # alternate who goes first
            for tool, sampler in order:
                r = run_one(tool, name, sampler, args)
                r["rep"] = rep
                results.append(r)
                print(f"{name:16s} {tool:8s} {sampler:8s} rep {rep}: "
                      + (f"{r['total_s']:.1f} s, min ESS {r['min_ess']:.0f}, div {r['divergences']}, "
                         f"R-hat {r['max_rhat']:.3f}" if "error" not in r else f"ERROR {r['error']}"), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    meta = dict(draws=args.draws, tune=args.tune, chains=args.chains, seed=args.seed, cpus=os.cpu_count(),
                python=sys.version.split()[0])
    payload = {"settings": meta, "results": results}
    md = (f"Settings: {meta}\n\n" + table(results) + "\n")
    for stem in (stamp, "latest"):
        (out / f"{stem}.json").write_text(json.dumps(payload, indent=1))
        (out / f"{stem}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()

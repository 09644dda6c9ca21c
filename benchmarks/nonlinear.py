"""Nonlinear mixed models: hmodels vs brms (compile + sampling, same draws, identical priors) and nlme's point fit.

Issue 13's speed targets: total time (build + compile + sampling) at most 1/5 of brms's, 0 divergences and
R-hat <= 1.01 at default settings, and a refit on new data of the same shape. Models: Orange (logistic growth,
random Asym per tree) and Theoph (first-order compartment model, independent random lKa and lCl per subject),
with the priors of tests/reference/brms_nonlinear.R in both programs. Every fit runs in a fresh process:
hmodels twice (``cold``: empty PyTensor / numba / hmodels caches; ``warm``: the same caches again), brms once
(``Rscript benchmarks/nonlinear_brms.R``: Stan compile timed apart from sampling; 4 chains one after another,
brms's default ``cores = 1``; hmodels runs its chains on the available cores, as it does by default), nlme once
(ML). Results go to ``<out>/nonlinear-<stamp>.{json,md}`` and ``<out>/nonlinear-latest.{json,md}``.

Usage::

    python benchmarks/nonlinear.py                       # both models, 4 chains x (1000 warm-up + 2000 draws)
    python benchmarks/nonlinear.py --models orange --draws 500 --tune 500 --out /tmp/bench
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from run import cache_env, machine_info  # noqa: E402  (the same cache handling and machine record)

MODELS = {
    "orange": dict(
        data="orange", formula="circumference ~ Asym / (1 + exp((xmid - age) / scal))",
        nonlinear={"Asym": "1 + (1 | Tree)", "xmid": "1", "scal": "1"},
        priors={"Asym": ("Normal", 200, 50), "xmid": ("Normal", 700, 200), "scal": ("Normal", 350, 100),
                "sd": ("HalfNormal", 50), "sigma": ("HalfNormal", 20)},
        start={"Asym": 200.0, "xmid": 700.0, "scal": 350.0}, group="Tree"),
    "theoph": dict(
        data="theoph",
        formula=("conc ~ Dose * exp(lKe + lKa - lCl) * (exp(-exp(lKe) * Time) - exp(-exp(lKa) * Time)) "
                 "/ (exp(lKa) - exp(lKe))"),
        nonlinear={"lKe": "1", "lKa": "1 + (1 || Subject)", "lCl": "1 + (1 || Subject)"},
        priors={"lKe": ("Normal", -2.5, 1), "lKa": ("Normal", 0.5, 1), "lCl": ("Normal", -3, 1),
                "sd": ("HalfNormal", 1), "sigma": ("HalfNormal", 2)},
        start={"lKe": -2.5, "lKa": 0.5, "lCl": -3.0}, group="Subject"),
}


def _model(name: str, data=None):
    import hmodels as hm

    cfg = MODELS[name]
    priors = {k: getattr(hm, v[0])(*v[1:]) for k, v in cfg["priors"].items()}
    data = hm.datasets.load(cfg["data"]) if data is None else data
    return hm.Model(cfg["formula"], data, nonlinear=cfg["nonlinear"], priors=priors, start=cfg["start"])


def worker_hmodels(name: str, draws: int, tune: int, seed: int) -> dict:
    """hmodels with its default sampler: build, fit (compile + sampling) timed apart, then a refit on new rows."""
    t0 = time.perf_counter()
    import hmodels as hm

    t1 = time.perf_counter()
    model = _model(name)
    t2 = time.perf_counter()
    fit = model.fit(draws=draws, tune=tune, chains=4, seed=seed, progressbar=False)
    t3 = time.perf_counter()
    rhat, ess = fit._rhat_ess()
    fe, vc = fit.fixed_effects(), fit.variance_components()
    means = {**{k: float(fe.loc[k, "mean"]) for k in fe.index}, **{k: float(vc.loc[k, "mean"]) for k in vc.index}}
    # refit on new data of the same shape: the rows bootstrapped within the grouping factor (fixed seed)
    from run import bootstrap_within

    data = bootstrap_within(model.design.data, MODELS[name]["group"])
    t4 = time.perf_counter()
    refit = _model(name, data).fit(draws=draws, tune=tune, chains=4, seed=seed + 1, progressbar=False)
    t5 = time.perf_counter()
    return dict(import_s=t1 - t0, build_s=t2 - t1, fit_s=t3 - t2, total_s=t3 - t1, sample_s=fit.timing.get("sample_s"),
                min_ess_bulk=float(ess), max_rhat=float(rhat), divergences=int(fit.divergences), means=means,
                refit_s=t5 - t4, refit_divergences=int(refit.divergences), version=hm.__version__,
                backend=fit.meta["plan"]["backend"], sampler=fit.meta["plan"]["sampler"])


def run_hmodels(name: str, args, env: dict) -> dict:
    with tempfile.TemporaryDirectory(prefix="hmbench-nl-") as tmp:
        out = Path(tmp) / "r.json"
        cmd = [sys.executable, __file__, "--worker", name, "--result", str(out), "--draws", str(args.draws),
               "--tune", str(args.tune), "--seed", str(args.seed)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env={**os.environ, "PYTHONWARNINGS": "ignore", **env}, capture_output=True,
                              text=True, cwd=ROOT, timeout=args.timeout)
        wall = time.perf_counter() - t0
        if not out.exists():
            return dict(status="error", error=proc.stderr.strip()[-400:], process_s=wall)
        return dict(status="ok", process_s=wall, **json.loads(out.read_text()))


def run_r(name: str, tool: str, args) -> dict:
    if shutil.which("Rscript") is None:
        return dict(status="skipped", error="Rscript not found")
    with tempfile.TemporaryDirectory(prefix="hmbench-nl-r-") as tmp:
        out = Path(tmp) / "r.json"
        t0 = time.perf_counter()
        proc = subprocess.run(["Rscript", str(HERE / "nonlinear_brms.R"), name, tool, str(args.draws), str(args.tune),
                               str(args.seed), str(out)], capture_output=True, text=True, cwd=ROOT,
                              timeout=args.timeout)
        wall = time.perf_counter() - t0
        if not out.exists():
            return dict(status="error", error=proc.stderr.strip()[-400:], process_s=wall)
        res = json.loads(out.read_text())
    res.pop("model", None), res.pop("tool", None)
    if tool == "brms":
        res["min_ess_bulk"], res["max_rhat"] = float(res["min_ess_bulk"]), float(res["max_rhat"])
    return dict(status="ok", process_s=wall, **res)


def _fmt(x, spec=".1f"):
    return "" if x is None else format(x, spec)


def markdown(settings, machine, results) -> str:
    lines = [f"# Nonlinear mixed models: hmodels vs brms and nlme ({settings['stamp']})", "",
             f"* 4 chains x ({settings['tune']} warm-up + {settings['draws']} draws), seed {settings['seed']}; "
             "identical priors (tests/reference/brms_nonlinear.R). brms: Stan compile + sampling (chains one after "
             "another, brms's default adapt_delta 0.8; Theoph started at the priors' means, as hmodels' start=). "
             "hmodels: its default sampler (nutpie on the compiled engine, the expression run as a program over the "
             "parameters' linear predictors: nothing is compiled per model; a cold cache compiles the engine's one "
             "library, about 1 s, counted in sampling s), cold and warm caches. refit s: a second "
             "fit in the same process on the rows bootstrapped within the grouping factor.",
             f"* Machine: {machine['cpus']} CPUs, Python {machine['python']}.", "",
             "| model | tool | state | build s | compile s | sampling s | total s | min bulk ESS | ESS/s | max R-hat | "
             "div | refit s | notes |", "|" + "---|" * 13]
    for r in results:
        if r["status"] != "ok":
            lines.append(f"| {r['model']} | {r['tool']} | {r.get('state', '')} |  |  |  |  |  |  |  |  |  | "
                         f"{r['status']}: {r.get('error', '')[:80]} |")
            continue
        total = r.get("total_s") if r["tool"] != "nlme" else r.get("fit_s")
        ess = r.get("min_ess_bulk")
        compile_s = r.get("compile_s") if r["tool"] == "brms" else None  # hmodels: inside sampling (below)
        sampling = r.get("sampling_s") if r["tool"] == "brms" else r.get("sample_s")
        lines.append(f"| {r['model']} | {r['tool']} | {r.get('state', '-')} | {_fmt(r.get('build_s'), '.2f')} | "
                     f"{_fmt(compile_s)} | {_fmt(sampling)} | {_fmt(total, '.2f')} | {_fmt(ess, '.0f')} | "
                     f"{_fmt(ess / total if ess and total else None, '.0f')} | {_fmt(r.get('max_rhat'), '.3f')} | "
                     f"{_fmt(r.get('divergences'), '.0f')} | {_fmt(r.get('refit_s'))} | |")
    lines += ["", "## Ratios", "", "| model | hmodels total / brms total (cold) | (warm) | hmodels ESS/s / brms ESS/s "
              "(cold) | (warm) | hmodels total / nlme fit |", "|---|---|---|---|---|---|"]
    for name in settings["models"]:
        by = {(r["tool"], r.get("state", "-")): r for r in results if r["model"] == name and r["status"] == "ok"}
        brms, nlme = by.get(("brms", "-")), by.get(("nlme", "-"))
        cells = [name]
        for measure in ("time", "rate"):
            for state in ("cold", "warm"):
                h = by.get(("hmodels", state))
                if h and brms:
                    cells.append(_fmt(h["total_s"] / brms["total_s"], ".3f") if measure == "time" else
                                 _fmt((h["min_ess_bulk"] / h["total_s"]) / (brms["min_ess_bulk"] / brms["total_s"]),
                                      ".1f"))
                else:
                    cells.append("")
        h = by.get(("hmodels", "warm")) or by.get(("hmodels", "cold"))
        cells.append(_fmt(h["total_s"] / nlme["fit_s"], ".0f") if h and nlme else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def rerender(path: Path) -> str:
    """The Markdown report again from a saved JSON (``python benchmarks/nonlinear.py --rerender FILE``)."""
    saved = json.loads(Path(path).read_text())
    return markdown(saved["settings"], saved.get("machine") or machine_info(), saved["results"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--tools", nargs="+", default=["hmodels", "brms", "nlme"], choices=["hmodels", "brms", "nlme"])
    ap.add_argument("--draws", type=int, default=2000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--rerender", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rerender:
        md = rerender(Path(args.rerender))
        Path(args.rerender).with_suffix(".md").write_text(md)
        print(md)
        return
    if args.worker:
        import warnings

        warnings.simplefilter("ignore")
        Path(args.result).write_text(json.dumps(worker_hmodels(args.worker, args.draws, args.tune, args.seed)))
        return
    stamp = time.strftime("%Y%m%d-%H%M%S")
    settings = dict(stamp=stamp, models=args.models, draws=args.draws, tune=args.tune, seed=args.seed)
    results = []
    for name in args.models:
        if "hmodels" in args.tools:
            root = Path(tempfile.mkdtemp(prefix="hmbench-nl-cache-"))
            try:
                env = cache_env(root)
                for state in ("cold", "warm"):
                    res = run_hmodels(name, args, env)
                    results.append(dict(model=name, tool="hmodels", state=state, **res))
                    print(name, "hmodels", state, res.get("total_s"), res.get("status"), flush=True)
            finally:
                shutil.rmtree(root, ignore_errors=True)
        for tool in ("brms", "nlme"):
            if tool in args.tools:
                res = run_r(name, tool, args)
                results.append(dict(model=name, tool=tool, state="-", **res))
                print(name, tool, res.get("total_s", res.get("fit_s")), res.get("status"), flush=True)
    md = markdown(settings, machine_info(), results)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = json.dumps({"settings": settings, "machine": machine_info(), "results": results}, indent=1,
                         default=float)
    for stem in (f"nonlinear-{stamp}", "nonlinear-latest"):
        (out / f"{stem}.json").write_text(payload)
        (out / f"{stem}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()

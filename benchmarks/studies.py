"""Speed of the many-fit studies (issue 15 targets), measured, not asserted.

* SBC of the sleepstudy-shaped model: 200 replicates x 4 chains x 500 draws (target: < 3 minutes on 2 cores);
* a power grid of 4 x 3 cells x 200 replicates with REML fits (target: < 2 minutes);
* K-fold cross-validation (10 refits) and compare_priors (3 refits) on the same runner;
* replicates per second per core, and Dask's overhead per task (the same replicates run in-process
  with ``scheduler="synchronous"`` vs the default threads).

Usage: ``python benchmarks/studies.py [--reps-sbc 200] [--reps-power 200]``; writes
``benchmarks/results/studies-<stamp>.md``.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import hmodels as hm

HERE = Path(__file__).resolve().parent


def _crt(n_groups, n_per_group):
    return hm.design_grid(n_groups, n_per_group, group="cluster", between={"treat": [0, 1]})


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps-sbc", type=int, default=200)
    ap.add_argument("--reps-power", type=int, default=200)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    cores = os.cpu_count() or 1
    rows = []

    model = hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy"))
    t = time.perf_counter()
    sbc = hm.sbc(model, n=args.reps_sbc, draws=500, tune=500, chains=4, seed=1)
    dt = time.perf_counter() - t
    rows.append(("SBC sleepstudy, 4 chains x 500 draws", args.reps_sbc, dt, 180.0, sbc.verdict.split(":")[0]))

    t = time.perf_counter()
    pw = hm.power("y ~ treat + (1 | cluster)", _crt, effects={"treat": 0.4},
                  variances={"sd(cluster)": 0.5, "sigma": 1.0}, n_groups=[10, 20, 30, 40], n_per_group=[5, 10, 20],
                  reps=args.reps_power, fit="reml", seed=1)
    dt = time.perf_counter() - t
    rows.append(("power 4 x 3 cells, REML", 12 * args.reps_power, dt, 120.0,
                 f"power {pw.table.power.min():.2f}-{pw.table.power.max():.2f}"))

    # K-fold (10 refits) and a prior comparison (3 refits) on the same runner
    fit = model.fit(draws=500, tune=500, chains=2, seed=1, progressbar=False)
    t = time.perf_counter()
    kf = fit.kfold(k=10, by="Subject", seed=1)
    dt = time.perf_counter() - t
    rows.append(("K-fold sleepstudy, 10 folds by Subject, 2 chains x 500 draws", 10, dt, float("nan"),
                 f"elpd {kf.elpd:.1f} ± {kf.se:.1f}"))
    t = time.perf_counter()
    hm.compare_priors(model, draws=500, tune=500, chains=2, seed=1)
    dt = time.perf_counter() - t
    rows.append(("compare_priors sleepstudy, 3 sets, 2 chains x 500 draws", 3, dt, float("nan"), ""))

    # Dask overhead per task: the same 200 REML replicates, threads vs in-process
    times = {}
    for scheduler in ("synchronous", "threads"):
        t = time.perf_counter()
        hm.power("y ~ treat + (1 | cluster)", _crt, effects={"treat": 0.4},
                 variances={"sd(cluster)": 0.5, "sigma": 1.0}, n_groups=[20], n_per_group=[5], reps=200,
                 fit="reml", seed=2, scheduler=scheduler)
        times[scheduler] = time.perf_counter() - t

    stamp = time.strftime("%Y%m%d-%H%M%S")
    lines = [f"# hmodels studies benchmark ({stamp})", "", f"* {cores} cores; hmodels {hm.__version__}.", "",
             "| study | replicates | seconds | target s | replicates / s / core | result |",
             "|---|---|---|---|---|---|"]
    for name, n, dt, target, note in rows:
        goal = "-" if target != target else f"{target:.0f}"  # NaN: no target
        lines.append(f"| {name} | {n} | {dt:.1f} | {goal} | {n / dt / cores:.2f} | {note} |")
    lines += ["", f"Dask overhead: 200 REML replicates in-process {times['synchronous']:.2f} s, on Dask threads "
              f"{times['threads']:.2f} s: {(times['threads'] - times['synchronous']) / 200 * 1000:.1f} ms per task "
              "(negative: the threads' parallelism outweighs the overhead)."]
    out = HERE / "results" / f"studies-{stamp}.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

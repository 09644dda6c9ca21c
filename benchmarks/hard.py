"""Hard-GLMM suite (issue 14): every case of ``tests/hard`` at default settings, two seeds each.

For each case and seed it fits ``model.fit(seed=...)`` (default priors, plan and sampler: 4 chains x
1000 + 1000 draws, with more rounds until converged, ``until="auto"``) and records, over every coefficient,
SD, correlation and family
parameter (group effects excluded, as in the issue's targets): the largest R-hat, the smallest
bulk and tail ESS, min bulk ESS per second of sampling (``fit.timing["sample_s"]``), divergences,
the sampling and total wall time, and the largest |posterior mean - truth| / posterior SD over the
coefficients (``truth_z_b``) and over the SDs (``truth_z_sd``; one data set informs an SD only
through its few realised effects, so this one can be large: 4.5 for 5 groups whose effects
happened to be close together). For grouseticks "truth" is lme4's Laplace fit.
The table goes to stdout and to ``benchmarks/results/hard_<label>.{json,md}``.

Variants for the measurements of sampler settings (not defaults) are chosen with options:
``--adaptation`` (nutpie's ``diag``, ``draw_diag``, ``low_rank`` or ``flow``, replacing the plan's
choice), ``--tune``, ``--target-accept``, ``--centered`` (``auto``, ``true``, ``false``) and
``--until`` (``converged``, with ``--max-time``).

Usage::

    python benchmarks/hard.py                                      # every case, seeds 1 and 2
    python benchmarks/hard.py --cases nested_poisson grouseticks --seeds 1 2 --label np_lowrank \
        --adaptation low_rank
    python benchmarks/hard.py --cases nested_poisson grouseticks --seeds 1 --compare-reference
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from hard import CASES, make_case  # noqa: E402  (tests/hard: the simulators)

COLUMNS = ["case", "seed", "rhat_max", "ess_bulk_min", "ess_tail_min", "ess_per_s", "divergences", "sample_s",
           "total_s", "truth_z_b", "truth_z_sd", "rounds", "draws"]


def summarise(case, fit) -> dict:
    """The suite's figures for one fit (group effects excluded)."""
    from hmodels.diagnostics import diagnose

    table = diagnose(fit, group_effects=False).table
    ss = fit.posterior["sample_stats"]
    sample_s = float(fit.timing.get("sample_s", np.nan))
    row = {"rhat_max": float(table["r_hat"].max()), "ess_bulk_min": float(table["ess_bulk"].min()),
           "ess_tail_min": float(table["ess_tail"].min()), "divergences": int(ss["diverging"].values.sum()),
           "sample_s": sample_s, "total_s": float(fit.timing.get("total_s", np.nan))}
    row["ess_per_s"] = row["ess_bulk_min"] / sample_s if sample_s > 0 else np.nan
    truth = case.truth if case.truth is not None else case.extra.get("lme4")
    z, zsd = [], []
    if truth is not None:
        for term, v in truth["b"].items():
            if term in table.index:
                z.append(abs(table.loc[term, "mean"] - v) / table.loc[term, "sd"])
        for f, terms in truth["sd"].items():
            for t, v in terms.items():
                label = f"sd({f}, {t})"
                if label in table.index:
                    zsd.append(abs(table.loc[label, "mean"] - v) / table.loc[label, "sd"])
    row["truth_z_b"] = float(max(z)) if z else np.nan
    row["truth_z_sd"] = float(max(zsd)) if zsd else np.nan
    until = fit.meta.get("until") or {}
    row["rounds"] = int(until.get("n_rounds", 1))
    row["draws"] = int(fit.posterior["posterior"].sizes["draw"])
    return row


def run_one(name: str, seed: int, args) -> dict:
    import hmodels.plan as plan_mod

    if args.adaptation:
        plan_mod.mass_matrix_adaptation = lambda ndim: args.adaptation  # measurement override only
    case = make_case(name, seed=seed)
    centered = {"auto": "auto", "true": True, "false": False}[args.centered]
    t0 = time.perf_counter()
    model = case.model(centered=centered)
    kwargs = dict(seed=seed, progressbar=False)  # draws and tune only when given: the default runs until converged
    kwargs.update({k: v for k, v in (("tune", args.tune), ("draws", args.draws)) if v is not None})
    if args.target_accept is not None:
        kwargs["target_accept"] = args.target_accept
    if args.until:
        kwargs.update(until=args.until, max_time=args.max_time)
    fit = model.fit(**kwargs)
    row = {"case": name, "seed": seed, **summarise(case, fit)}
    row["total_s"] = time.perf_counter() - t0
    row["plan"] = fit.meta.get("plan")
    return row


def compare_reference(names, seeds, defaults: bool = False) -> dict:
    """A fit against a long reference run (4 x 10,000 draws, target_accept 0.99).

    The fit is ``until="converged"``, or with ``defaults`` ``fit(seed=...)`` as a user calls it.
    Per coefficient and SD: |mean difference| / reference posterior SD, and |SD difference| / reference SD.
    """
    import warnings

    from hmodels.diagnostics import diagnose

    out = {}
    for name in names:
        for seed in seeds:
            case = make_case(name, seed=seed)
            model = case.model()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref = model.fit(seed=seed + 100, draws=10000, tune=2000, target_accept=0.99, progressbar=False)
                fit = (model.fit(seed=seed, progressbar=False) if defaults else
                       model.fit(seed=seed, until="converged", max_time=300, progressbar=False))
            tr = diagnose(ref, group_effects=False).table
            tu = diagnose(fit, group_effects=False).table
            out[f"{name}/{seed}"] = {
                "ref_rhat_max": float(tr["r_hat"].max()), "ref_ess_bulk_min": float(tr["ess_bulk"].min()),
                "ref_divergences": int(ref.divergences), "divergences": int(fit.divergences),
                "rhat_max": float(tu["r_hat"].max()), "ess_bulk_min": float(tu["ess_bulk"].min()),
                "ess_tail_min": float(tu["ess_tail"].min()),
                "mean_diff_sd": ((tu["mean"] - tr["mean"]).abs() / tr["sd"]).to_dict(),
                "sd_rel_diff": ((tu["sd"] - tr["sd"]).abs() / tr["sd"]).to_dict()}
            print(json.dumps({f"{name}/{seed}": out[f"{name}/{seed}"]}), flush=True)
    return out


def markdown(rows) -> str:
    head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    lines = []
    for r in rows:
        cells = []
        for c in COLUMNS:
            v = r.get(c)
            cells.append(f"{v:.3f}" if c == "rhat_max" else f"{v:.1f}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", nargs="*", default=list(CASES))
    p.add_argument("--seeds", nargs="*", type=int, default=[1, 2])
    p.add_argument("--label", default="defaults")
    p.add_argument("--adaptation", default=None, choices=[None, "diag", "draw_diag", "low_rank", "flow"])
    p.add_argument("--tune", type=int, default=None, help="fixes the warm-up (default: the fit's own, 1000)")
    p.add_argument("--draws", type=int, default=None, help="fixes the draws (default: until converged, as fit())")
    p.add_argument("--target-accept", type=float, default=None)
    p.add_argument("--centered", default="auto", choices=["auto", "true", "false"])
    p.add_argument("--until", default=None)
    p.add_argument("--max-time", type=float, default=600.0)
    p.add_argument("--compare-reference", action="store_true",
                   help="compare until=converged with a long reference run (results/hard_until_vs_long_reference.json)")
    p.add_argument("--defaults-vs-reference", action="store_true",
                   help="compare the default fit with a long reference run; adds to "
                        "results/hard_defaults_vs_long_reference.json")
    args = p.parse_args(argv)
    if args.compare_reference:
        out = compare_reference(args.cases, args.seeds)
        (HERE / "results" / "hard_until_vs_long_reference.json").write_text(json.dumps(out, indent=1))
        return
    if args.defaults_vs_reference:
        path = HERE / "results" / "hard_defaults_vs_long_reference.json"
        for name in args.cases:  # one case at a time, kept as it finishes
            out = json.loads(path.read_text()) if path.exists() else {}
            out.update(compare_reference([name], args.seeds, defaults=True))
            path.write_text(json.dumps(out, indent=1))
        return
    rows = []
    for name in args.cases:
        for seed in args.seeds:
            try:
                row = run_one(name, seed, args)
            except Exception as exc:  # record the failure and go on with the suite
                row = {"case": name, "seed": seed, "error": f"{type(exc).__name__}: {exc}"}
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "plan"}, default=str), flush=True)
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    (out / f"hard_{args.label}.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1,
                                                            default=str))
    md = markdown([r for r in rows if "error" not in r])
    (out / f"hard_{args.label}.md").write_text(f"# hard suite: {args.label}\n\n`{' '.join(sys.argv[1:])}`\n\n" + md)
    print(md)


if __name__ == "__main__":
    main()

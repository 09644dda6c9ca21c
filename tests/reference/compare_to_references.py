"""Print hmodels vs reference posteriors (brms / posteriordb) as a Markdown table, with fit times.

Run: ``python tests/reference/compare_to_references.py [--method joint|collapsed|auto]``.
Uses the same models, priors and settings as the test suite (tests/conftest.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from conftest import REFERENCE_MODELS  # noqa: E402
from test_reference_fits import _ours  # noqa: E402

import hmodels as hm  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", default="auto")
    ap.add_argument("models", nargs="*", default=list(REFERENCE_MODELS))
    args = ap.parse_args()
    ref = json.loads((HERE / "r_reference_fits.json").read_text())
    pdb = json.loads((HERE / "eight_schools.json").read_text())["summary"]
    print("| model | parameter | hmodels mean (sd) | reference mean (sd) | diff (ref SD) | sd ratio |")
    print("|---|---|---|---|---|---|")
    times = {}
    for name in args.models:
        cfg = REFERENCE_MODELS[name]
        model = hm.Model(cfg["formula"], hm.datasets.load(cfg["data"]), family=cfg["family"],
                         priors=cfg["priors"], intercept_prior="raw")
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = model.fit(draws=1000, tune=1000, chains=4, seed=1, target_accept=cfg["target_accept"],
                            progressbar=False, method=args.method)
        times[name] = (time.perf_counter() - t0, fit.divergences, fit.meta.get("method", "joint"))
        if name == "eight_schools":
            post = fit.draws
            mu = post["b"].sel(term="Intercept")
            tau = post["sd_school"].sel(school__term="Intercept")
            theta = mu + post["r_school"].sel(school__term="Intercept")
            qs = {"mu": mu, "tau": tau}
            qs.update({f"theta[{j + 1}]": theta.isel(school=j) for j in range(8)})
            for p, da in qs.items():
                m, s = float(da.mean()), float(da.std())
                r = pdb[p]
                print(f"| {name} (posteriordb) | {p} | {m:.3f} ({s:.3f}) | {r['mean']:.3f} ({r['sd']:.3f}) | "
                      f"{(m - r['mean']) / r['sd']:+.3f} | {s / r['sd']:.3f} |")
            continue
        key = {"radon": "radon_mn"}.get(name, name)
        for p, r in ref["brms"][key]["summary"].items():
            if p.startswith("r_"):
                continue
            m, s, _ = _ours(fit, p)
            print(f"| {name} (brms) | {p} | {m:.3f} ({s:.3f}) | {r['mean']:.3f} ({r['sd']:.3f}) | "
                  f"{(m - r['mean']) / r['sd']:+.3f} | {s / r['sd']:.3f} |")
    print("\n| model | method | wall time incl. compile (s) | divergences |")
    print("|---|---|---|---|")
    for name, (t, d, meth) in times.items():
        print(f"| {name} | {meth} | {t:.1f} | {d} |")


if __name__ == "__main__":
    main()

"""Prototype (issue 14): hierarchical centring of a nested factor, measured on the nested poisson case.

When factor B (broods) is nested in A (locations), hierarchical centring samples B's effects
centred on A's: ``v_j ~ N(r_A[a(j)], sd_B)`` with ``r_A = sd_A * z_A`` (A non-centred) and the
linear predictor using ``v`` alone, instead of ``r_B`` and ``r_A`` added separately. The
posterior is the same in law; only the coordinates NUTS moves in change. This script builds the
same model (hmodels' default priors) in PyMC in three parameterisations and samples each with
nutpie (4 chains x 1000 + 1000, target_accept 0.9, diagonal mass matrix):

* ``engine``: hmodels' ``centered="auto"`` choice (brood centred, loc non-centred, added);
* ``hier``: brood centred on the location effect (hierarchical centring), loc non-centred;
* ``hier_int``: as ``hier``, with the brood effects centred on the intercept too;
* ``hier_full``: brood effects centred on every term constant within a brood (intercept, year, h, loc);
* ``hier_both``: as ``hier_full`` with the location effects centred too, on the intercept and h.

Usage: ``python benchmarks/hard_nesting.py --cases nested_poisson grouseticks --seeds 1 2``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))

from hard import make_case  # noqa: E402


def build(case, variant: str):
    import pymc as pm

    m = case.model()
    d = m.design
    inner, outer = d.factors[0], d.factors[1]
    X = np.asarray(d.X, dtype=float)
    names = list(d.fixed_terms)
    Xc = X[:, 1:] - X[:, 1:].mean(axis=0)
    y = np.asarray(d.y)
    ib, ia = inner.codes, outer.codes
    a_of_b = np.zeros(inner.n_levels, dtype=int)
    a_of_b[ib] = ia
    assert (a_of_b[ib] == ia).all(), "inner factor must be nested in the outer one"
    loc0 = float(np.log(y.mean()))
    scales = [2.5 / np.std(Xc[:, j]) for j in range(Xc.shape[1])]
    del names
    with pm.Model() as model:
        b0 = pm.Normal("b0", loc0, 2.5)
        b = pm.Normal("b", 0, np.array(scales), shape=Xc.shape[1])
        sd_b = pm.HalfNormal("sd_b", 1.0)
        sd_a = pm.HalfNormal("sd_a", 1.0)
        z_a = pm.Normal("z_a", 0, 1, shape=outer.n_levels)
        r_a = sd_a * z_a
        if variant == "engine":
            r_b = pm.Normal("r_b", 0, sd_b, shape=inner.n_levels)
            eta = b0 + Xc @ b + r_b[ib] + r_a[ia]
        elif variant == "hier":
            v = pm.Normal("v", r_a[a_of_b], sd_b, shape=inner.n_levels)
            eta = b0 + Xc @ b + v[ib]
        elif variant == "hier_int":
            v = pm.Normal("v", b0 + r_a[a_of_b], sd_b, shape=inner.n_levels)
            eta = Xc @ b + v[ib]
        elif variant == "hier_full":  # centred on every term constant within a brood (intercept, year, h, loc)
            const = np.array([np.allclose(np.bincount(ib, Xc[:, j] ** 2) * np.bincount(ib),
                                          np.bincount(ib, Xc[:, j]) ** 2) for j in range(Xc.shape[1])])
            Xb = np.zeros((inner.n_levels, Xc.shape[1]))
            Xb[ib] = Xc
            mean_b = b0 + Xb[:, const] @ b[const] + r_a[a_of_b]
            v = pm.Normal("v", mean_b, sd_b, shape=inner.n_levels)
            eta = v[ib] + (Xc[:, ~const] @ b[~const] if (~const).any() else 0.0)
        elif variant == "hier_both":  # as hier_full, and the location effects centred on the intercept and h
            def constant(codes, j):
                n_l, s1 = np.bincount(codes), np.bincount(codes, Xc[:, j])
                return np.allclose(np.bincount(codes, Xc[:, j] ** 2) * n_l, s1**2)
            cb = np.array([constant(ib, j) for j in range(Xc.shape[1])])
            ca = np.array([constant(ia, j) for j in range(Xc.shape[1])])
            Xb = np.zeros((inner.n_levels, Xc.shape[1]))
            Xb[ib] = Xc
            Xa = np.zeros((outer.n_levels, Xc.shape[1]))
            Xa[ia] = Xc
            w = pm.Normal("w", b0 + Xa[:, ca] @ b[ca], sd_a, shape=outer.n_levels)
            only_b = cb & ~ca
            v = pm.Normal("v", w[a_of_b] + Xb[:, only_b] @ b[only_b], sd_b, shape=inner.n_levels)
            eta = v[ib] + (Xc[:, ~cb] @ b[~cb] if (~cb).any() else 0.0)
        else:
            raise ValueError(variant)
        pm.Poisson("y", pm.math.exp(eta), observed=y)
    return model


def run(case, variant, seed):
    import arviz as az
    import nutpie

    model = build(case, variant)
    compiled = nutpie.compile_pymc_model(model, backend="numba")
    t0 = time.perf_counter()
    tr = nutpie.sample(compiled, draws=1000, tune=1000, chains=4, cores=2, seed=seed, target_accept=0.9,
                       progress_bar=False)
    dt = time.perf_counter() - t0
    post = tr["posterior"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = az.summary(tr, var_names=["b0", "b", "sd_b", "sd_a"]) if hasattr(az, "summary") else None
    div = int(tr["sample_stats"]["diverging"].values.sum())
    row = {"case": case.name, "variant": variant, "seed": seed, "rhat_max": float(s["r_hat"].max()),
           "ess_bulk_min": float(s["ess_bulk"].min()), "ess_tail_min": float(s["ess_tail"].min()),
           "divergences": div, "sample_s": dt, "sd_a_mean": float(post["sd_a"].mean()),
           "worst": str(s["ess_bulk"].idxmin())}
    row["ess_per_s"] = row["ess_bulk_min"] / dt
    return row


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cases", nargs="*", default=["nested_poisson", "grouseticks"])
    p.add_argument("--seeds", nargs="*", type=int, default=[1, 2])
    p.add_argument("--variants", nargs="*", default=["engine", "hier", "hier_int", "hier_full"])
    args = p.parse_args()
    rows = []
    for name in args.cases:
        for seed in args.seeds:
            case = make_case(name, seed)
            for v in args.variants:
                rows.append(run(case, v, seed))
                print(json.dumps(rows[-1]), flush=True)
    (HERE / "results").mkdir(exist_ok=True)
    with open(HERE / "results" / "hard_nesting.jsonl", "a") as fh:  # appended: earlier runs are kept
        fh.writelines(json.dumps(r) + "\n" for r in rows)


if __name__ == "__main__":
    main()

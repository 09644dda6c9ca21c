"""Comparison of an hmodels fit with a brms reference fit under identical priors (shared by the reference tests).

The issue's standard: every mapped parameter's posterior mean within 0.1 brms posterior SD, posterior SDs within
10%, no divergences and R-hat <= 1.01.
"""

from __future__ import annotations

import numpy as np
import pytest


def posterior_table(fit) -> dict:
    """Fixed effects and variance components of a fit by label (rows of their summary tables)."""
    fe, vc = fit.fixed_effects(), fit.variance_components()
    return {**{k: fe.loc[k] for k in fe.index}, **{k: vc.loc[k] for k in vc.index}}


def assert_matches_brms(fit, entry: dict) -> None:
    """``fit`` agrees with the brms reference ``entry`` (``posterior`` by variable, ``names`` brms -> hmodels)."""
    ref = {v["variable"]: v for v in entry["posterior"].values()}
    ours = posterior_table(fit)
    assert set(entry["names"].values()) <= set(ours), sorted(ours)
    far, sds = {}, {}
    for brms_name, our_name in entry["names"].items():
        r, o = ref[brms_name], ours[our_name]
        z = (float(o["mean"]) - r["mean"]) / r["sd"]
        if abs(z) > 0.1:
            far[our_name] = (round(float(o["mean"]), 4), round(r["mean"], 4), round(z, 3))
        if not float(o["sd"]) == pytest.approx(r["sd"], rel=0.1):
            sds[our_name] = (float(o["sd"]), r["sd"])
    assert not far, far
    assert not sds, sds
    assert fit.divergences == 0
    assert max(float(np.nanmax(np.asarray(ours[n]["r_hat"], dtype=float))) for n in entry["names"].values()) <= 1.01

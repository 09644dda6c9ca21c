"""method="laplace" (hmodels.laplace): exact for a gaussian model, a typed error where it cannot apply.

The poisson and negative-binomial hard cases are measured in benchmarks (closing note of issue 14), not
here: each takes 30 s to minutes to compile and sample.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytensor.tensor as pt
import pytest
from scipy import stats

import hmodels as hm
from hmodels.families import get_family
from hmodels.laplace import laplace_marginal


def test_marginal_is_exact_for_a_gaussian_and_close_for_poisson_counts():
    y = np.array([1.0, 2.0, 3.0, 4.0, 0.5])
    codes = np.array([0, 0, 1, 1, 1])
    lp = laplace_marginal(get_family("gaussian"), pt.zeros(5), {"sigma": pt.constant(0.7)}, y, None, codes, 2,
                          pt.constant(1.3)).eval()
    exact = sum(stats.multivariate_normal(np.zeros(k), 0.49 * np.eye(k) + 1.69).logpdf(y[codes == j])
                for j, k in ((0, 2), (1, 3)))
    assert float(lp) == pytest.approx(exact, rel=1e-10)
    # poisson with many counts per level: the Laplace marginal is within 0.01 of quadrature
    counts = np.array([12.0, 9, 15, 11, 3, 5, 4, 2])
    g = np.repeat([0, 1], 4)
    eta0 = np.log(np.array([10.0] * 4 + [4.0] * 4))
    lp = laplace_marginal(get_family("poisson"), pt.as_tensor_variable(eta0), {}, counts, None, g, 2,
                          pt.constant(0.5)).eval()
    u = np.linspace(-4, 4, 20001)
    quad = 0.0
    for j in (0, 1):
        ll = stats.poisson.logpmf(counts[g == j][:, None], np.exp(eta0[g == j][:, None] + u)).sum(0)
        quad += np.log(np.trapezoid(np.exp(ll) * stats.norm.pdf(u, 0, 0.5), u))
    assert float(lp) == pytest.approx(quad, abs=0.01)


def test_gaussian_laplace_fit_equals_the_joint_posterior():
    m = hm.Model("Yield ~ 1 + (1 | Batch)", hm.datasets.load("dyestuff"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", hm.ConvergenceWarning)
        lap = m.fit(method="laplace", draws=1000, tune=1000, chains=2, seed=1, progressbar=False)
        joint = m.fit(draws=1000, tune=1000, chains=2, seed=1, progressbar=False)
    assert lap.meta["plan"]["method"] == "laplace" and lap.meta["laplace"]["close"]
    assert lap.meta["laplace"]["pareto_k"] < 0.7
    for table in ("fixed_effects", "variance_components"):
        a, b = getattr(lap, table)(), getattr(joint, table)()
        for row in a.index:
            mcse = np.hypot(a.loc[row, "mcse_mean"], b.loc[row, "mcse_mean"])
            assert abs(a.loc[row, "mean"] - b.loc[row, "mean"]) < 4 * mcse + 0.05 * b.loc[row, "sd"], row
    r_lap = lap.draws["r_Batch"].mean(("chain", "draw")).values
    r_joint = joint.draws["r_Batch"].mean(("chain", "draw")).values
    np.testing.assert_allclose(r_lap, r_joint, atol=0.15 * float(joint.draws["r_Batch"].std()))


def test_laplace_needs_a_random_intercept_factor():
    m = hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy"))
    with pytest.raises(hm.SpecificationError, match="method='laplace' is not available"):
        m.plan(method="laplace")

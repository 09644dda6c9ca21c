"""Studies on a real dask.distributed LocalCluster of two worker processes, and a worker killed mid-study."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pandas as pd
import pytest

import hmodels as hm

distributed = pytest.importorskip("distributed")


def crt(n_groups, n_per_group):
    return hm.design_grid(n_groups, n_per_group, group="cluster", between={"treat": [0, 1]})


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def _model():
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(6), 4)
    return hm.Model("y ~ 1 + (1 | g)", pd.DataFrame({"y": rng.normal(size=24) + rng.normal(size=6)[g], "g": g}))


def test_sbc_on_a_cluster_equals_the_local_study(client, tmp_path):
    m = _model()
    kw = dict(n=8, seed=4, draws=80, tune=100, chains=2)
    remote = hm.sbc(m, client=client, resume=tmp_path / "sbc", **kw)
    local = hm.sbc(m, scheduler="synchronous", **kw)
    assert remote.ranks["replicate"].nunique() == 8 and remote.failures == 0
    # replicate i depends on (seed, i) only: the same ranks wherever it ran
    assert np.allclose(remote.ranks["u"], local.ranks["u"])
    assert len(client.run(os.getpid)) == 2


def test_a_killed_worker_loses_and_duplicates_nothing(client, tmp_path, monkeypatch):
    monkeypatch.setattr(hm.studies._dask, "FLUSH_SECONDS", 0.05)
    folder = tmp_path / "power"
    kw = dict(effects={"treat": 0.5}, variances={"sd(cluster)": 0.5, "sigma": 1.0}, n_groups=[10, 20],
              n_per_group=[5], reps=150, seed=9)
    out = {}

    def run():
        out["res"] = hm.power("y ~ treat + (1 | cluster)", crt, client=client, resume=folder, **kw)

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 120
    while not list(folder.glob("part-*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.05)
    victim = next(iter(client.run(os.getpid).values()))
    assert t.is_alive()  # mid-study
    os.kill(victim, signal.SIGKILL)  # the nanny restarts it; its tasks are rescheduled
    t.join(timeout=300)
    assert not t.is_alive()
    rows = out["res"].replicates
    assert len(rows) == 2 * 150 and not rows.duplicated(["cell", "replicate"]).any()
    stored = pd.concat([pd.read_parquet(p) for p in folder.glob("part-*.parquet")])
    assert not stored.duplicated(["cell", "replicate"]).any() and len(stored) == 300
    local = hm.power("y ~ treat + (1 | cluster)", crt, scheduler="synchronous", **kw)
    assert np.allclose(local.replicates["estimate"], rows["estimate"])


def test_kfold_on_a_cluster_equals_the_local_cross_validation(client, tmp_path):
    import warnings

    data = hm.datasets.load("dyestuff")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = hm.Model("Yield ~ 1 + (1 | Batch)", data).fit(draws=100, tune=150, chains=2, seed=1, progressbar=False)
        kw = dict(k=3, by="Batch", seed=2, draws=100, tune=150)
        remote = fit.kfold(client=client, resume=tmp_path / "kfold", **kw)
        local = fit.kfold(scheduler="synchronous", **kw)
    np.testing.assert_array_equal(remote.elpd_i.values, local.elpd_i.values)
    assert len(list((tmp_path / "kfold").glob("part-*.parquet"))) >= 1


def test_compare_priors_on_a_cluster_equals_the_local_table(client, tmp_path):
    m = hm.Model("y | se(sigma) ~ 1 + (1 | school)", hm.datasets.load("eight_schools"))
    kw = dict(draws=100, tune=150, chains=2, seed=3)
    remote = hm.compare_priors(m, ["default", "vague"], client=client, resume=tmp_path / "priors", **kw)
    local = hm.compare_priors(m, ["default", "vague"], scheduler="synchronous", **kw)
    assert remote.equals(local)


def test_a_task_that_fails_raises_its_error_not_a_lost_worker_warning(client):
    import operator

    from hmodels.studies._dask import run_tasks

    with pytest.raises(ZeroDivisionError):  # operator.truediv(shared=1, 0) on a worker
        run_tasks(operator.truediv, [((0,), (0,))], kind="demo", config={}, key_columns=["k"], client=client,
                  shared=1)

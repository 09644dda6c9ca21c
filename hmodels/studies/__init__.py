"""Studies that need many fits: simulation, simulation-based calibration, power, and point fits.

- :func:`simulate` / :func:`design_grid` — data sets from given parameters or the priors, on the
  model's design or a planned one (:mod:`hmodels.studies.simulate`).
- :func:`sbc` — simulation-based calibration (:mod:`hmodels.studies.sbc`).
- :func:`power` — power, interval width, type S / M errors over a grid of designs
  (:mod:`hmodels.studies.power`).
- :func:`optimize` (``model.optimize``), :class:`PointFit`, :func:`compare_estimates` — REML / ML /
  Laplace point fits as lme4 computes them (:mod:`hmodels.studies.pointfit`).

The replicates of SBC and power studies, the refits of :func:`compare_priors` (and of
:func:`hmodels.comparison.kfold`) run as Dask tasks, locally or on a ``dask.distributed``
cluster, and stream to a resumable Parquet folder (:mod:`hmodels.studies._dask`).
"""

from .pointfit import PointFit, compare_estimates
from .pointfit import optimize_model as optimize
from .power import PowerResult, power
from .prior_compare import compare_priors
from .sbc import SBCResult, sbc
from .simulate import design_grid, simulate

__all__ = ["simulate", "design_grid", "sbc", "SBCResult", "power", "PowerResult", "optimize", "PointFit",
           "compare_estimates", "compare_priors"]

"""Refit one model under several prior sets: moved to :mod:`hmodels.studies.prior_compare` (the Dask runner).

Kept so that ``from hmodels.prior_compare import compare_priors`` still works.
"""

from .studies.prior_compare import compare_priors

__all__ = ["compare_priors"]

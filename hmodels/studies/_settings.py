"""Check the sampler settings a many-fit study passes to every refit, before any task runs.

A module of its own (not :mod:`hmodels.studies._dask`): it needs :class:`hmodels.model.Model`, which
imports the point fits, which import the runner.
"""

from __future__ import annotations

import os
import warnings

from ..errors import SpecificationError

__all__ = ["check_fit_kwargs"]


def check_fit_kwargs(fit_kwargs: dict, what: str) -> None:
    """Check the sampler settings a study passes to every refit, here, before any task runs.

    A misspelt keyword raises :class:`~hmodels.errors.SpecificationError` naming it; bad values
    raise what :meth:`Model.fit <hmodels.model.Model.fit>` would (``check_settings``).

    Examples
    --------
    >>> check_fit_kwargs({"draws": 100, "chains": 2}, "sbc")
    >>> check_fit_kwargs({"draw": 100}, "sbc")
    Traceback (most recent call last):
    ...
    hmodels.errors.SpecificationError: sbc passes 'draw' to model.fit, which has no such setting; ...
    """
    import inspect

    from ..model import Model
    from ..sampling import check_settings

    sig = inspect.signature(Model.fit)
    for key in fit_kwargs:
        if key not in sig.parameters or key == "self":
            raise SpecificationError(
                f"{what} passes {key!r} to model.fit, which has no such setting; its settings are "
                f"{', '.join(k for k in sig.parameters if k != 'self')}."
            )
    b = {k: v.default for k, v in sig.parameters.items() if k != "self"} | dict(fit_kwargs)
    chains = b["chains"]
    cores = b["cores"]
    if cores is None and isinstance(chains, int):
        cores = min(chains, os.cpu_count() or 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_settings(b["sampler"], 1000 if b["draws"] is None else b["draws"],  # (fit's own defaults)
                       1000 if b["tune"] is None else b["tune"], chains, cores, b["seed"], b["target_accept"])

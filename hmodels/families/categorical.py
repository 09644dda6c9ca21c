"""Unordered categorical outcomes (choices, diagnoses, species): the multinomial-logit (categorical) model.

With ``K`` categories, the first is the reference and each other category ``k`` has its own linear
predictor ``eta_k`` (its own coefficients and group effects, brms's ``mu<k>``):
``P(y = k) = exp(eta_k) / (1 + sum_j exp(eta_j))``, ``eta_1 = 0``. The model's location ``mu`` is the
array of those ``K - 1`` linear predictors on a trailing axis, ``(..., n, K - 1)``.

The outcome is a pandas ``Categorical`` (its declared categories, in order: the first is the
reference; unused categories are refused), strings or booleans (their sorted distinct values, as R's
``factor`` orders them) or whole numbers (their sorted distinct values). The model's outcome is the
category number ``1, ..., K``; ``predict(kind="probs")`` gives the probability of every category and
``kind="response"`` draws category numbers. A nominal outcome has no mean and no latent scale: there
is no ``kind="mean"``, ICC or latent R², and the checks compare category counts (bars).

Examples
--------
>>> import numpy as np
>>> import hmodels as hm
>>> fam = hm.families.get_family("categorical")
>>> p = np.exp(fam.loglik(np.array([1, 2, 3]), np.array([[0.0, np.log(2.0)]] * 3), {}))
>>> np.round(p, 4)  # P = (1, 1, 2) / 4
array([0.25, 0.25, 0.5 ])
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from ..engine import codes as K
from ..errors import DataError
from .base import Family

__all__ = ["Categorical", "nominal_categories", "category_predictor_names"]


def nominal_categories(raw: pd.Series, column: str, labels=None) -> tuple[np.ndarray, tuple]:
    """Category numbers ``1..K`` of an unordered outcome and its categories (the first is the reference).

    Examples
    --------
    >>> codes, levels = nominal_categories(pd.Series(["b", "a", "c", "a"]), "y")
    >>> codes.tolist(), levels
    ([2, 1, 3, 1], ('a', 'b', 'c'))
    """
    from ..errors import row_labels

    labels = np.arange(len(raw)) if labels is None else labels
    if isinstance(raw.dtype, pd.CategoricalDtype):
        levels = tuple(raw.cat.categories)
        codes = raw.cat.codes.to_numpy().astype(np.int64) + 1
        unused = [lv for i, lv in enumerate(levels, start=1) if not (codes == i).any()]
        if unused:
            raise DataError(
                f"The categorical outcome {column!r} declares categories that no row has: "
                f"{', '.join(map(str, unused))} (rows with missing values in the model's columns are dropped "
                f"first). Their probabilities could only come from the prior. Drop them, after any such rows: "
                f"data = data.dropna(subset=[<the model's columns>]); "
                f"data[{column!r}] = data[{column!r}].cat.remove_unused_categories()."
            )
    elif pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        y = raw.to_numpy(dtype=float)
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            raise DataError(
                f"The categorical outcome {column!r} holds numbers that are not whole (category codes): "
                f"{', '.join(f'{v:g}' for v in y[bad][:3])} in {row_labels(labels, bad)}. Code the categories as "
                "whole numbers or strings, or use a family for continuous outcomes."
            )
        values = np.unique(y)
        levels = tuple(int(v) for v in values)
        codes = np.searchsorted(values, y).astype(np.int64) + 1
    else:
        kinds = raw.map(lambda v: "text" if isinstance(v, str) else type(v).__name__)
        if kinds.nunique() > 1:  # e.g. 1 and "1" would silently become one category, 2.5 the text "2.5"
            first = kinds.drop_duplicates()
            found = ", ".join(f"{raw[i]!r} ({k}) in {row_labels(labels, (kinds == k).to_numpy())}"
                              for i, k in first.items())
            raise DataError(
                f"The categorical outcome {column!r} mixes values of different types ({found}"
                f"). Make them one type, e.g. data[{column!r}] = data[{column!r}].astype(str), after checking that "
                "equal-looking values are meant to be the same category."
            )
        values = raw.astype(str) if not pd.api.types.is_bool_dtype(raw) else raw
        levels = tuple(sorted(pd.unique(values)))
        position = {lv: k for k, lv in enumerate(levels, start=1)}
        codes = np.array([position[v] for v in values], dtype=np.int64)
    if len(levels) < 2:
        raise DataError(
            f"The categorical outcome {column!r} has a single category ({levels[0]!r}) in every row: there is "
            "nothing to model. Check the column and any filtering of the rows."
        )
    return codes, levels


def category_predictor_names(levels) -> list[str]:
    """brms's names of the linear predictors, one per non-reference category: ``mu<category>``.

    Characters other than letters, digits and ``_`` are dropped (brms does the same), and names
    made equal by that get a suffix, so every predictor has its own name.

    Examples
    --------
    >>> category_predictor_names(("none", "mild", "very severe"))
    ['mumild', 'muverysevere']
    """
    out: list[str] = []
    for lv in list(levels)[1:]:
        base = "mu" + re.sub(r"[^0-9A-Za-z_]", "", str(lv))
        name, i = base, 2
        while name in out:
            name, i = f"{base}_{i}", i + 1
        out.append(name)
    return out


def _log_probs(mu, lib=np):
    """log P(y = k), k = 1..K, from the K - 1 linear predictors on the last axis (reference first)."""
    if lib is np:
        mu = np.asarray(mu, dtype=float)
        full = np.concatenate([np.zeros(mu.shape[:-1] + (1,)), mu], axis=-1)
        m = full.max(axis=-1, keepdims=True)
        return full - (m + np.log(np.exp(full - m).sum(axis=-1, keepdims=True)))
    import pytensor.tensor as pt

    full = pt.concatenate([pt.zeros_like(mu[..., :1]), mu], axis=-1)
    return full - pt.logsumexp(full, axis=-1, keepdims=True)


@dataclass(frozen=True, repr=False)
class Categorical(Family):
    """Multinomial logit: one linear predictor per non-reference category (see the module docstring).

    Examples
    --------
    >>> import hmodels as hm
    >>> fam = hm.families.get_family("categorical")
    >>> fam.outcome, fam.ppc_kind, fam.engine_code is not None
    ('categorical', 'bars', True)
    """

    links: ClassVar = ("logit",)
    default_link: ClassVar = "logit"
    aux: ClassVar = ()
    outcome: ClassVar = "categorical"
    aliases: ClassVar = ("multinomial", "multinomial_logit", "nominal")
    # kernels.c: categorical_loglik, on the K - 1 linear predictors stacked as row blocks (categorical.engine_rows)
    engine_code: ClassVar = K.FAM_CATEGORICAL
    ppc_kind: ClassVar = "bars"
    discrete: ClassVar = True
    prediction_kinds: ClassVar = ("response", "link", "probs")  # no mean: the categories are unordered
    no_latent_scale: ClassVar = ("an unordered outcome has K - 1 linear predictors and no single latent scale; "
                                 "report the group SDs of each category's predictor (variance_components()) instead.")

    @property
    def example_eta(self):
        """Two non-reference categories' linear predictors (three categories), for examples and generated tests."""
        return np.array([0.3, -0.4])

    @property
    def dispersion_checkable(self) -> bool:
        """No Pearson dispersion check: a nominal outcome has no mean and variance to compare."""
        return False

    def mean(self, eta, aux=None, trials=None):
        """The location: the ``K - 1`` linear predictors themselves (last axis)."""
        return eta

    def probabilities(self, mu, aux=None):
        """``P(y = k)`` per category (last axis, K)."""
        return np.exp(_log_probs(mu))

    def loglik(self, y, mu, aux, trials=None, se=None):  # noqa: D102
        lp = _log_probs(mu)
        y = np.broadcast_to(np.asarray(y, dtype=np.int64) - 1, lp.shape[:-1])
        return np.take_along_axis(lp, y[..., None], axis=-1)[..., 0]

    def simulate(self, rng, mu, aux, trials=None, se=None):  # noqa: D102
        cdf = np.cumsum(self.probabilities(mu), axis=-1)
        u = rng.random(cdf.shape[:-1])[..., None]
        return np.minimum((u > cdf).sum(axis=-1), cdf.shape[-1] - 1) + 1

    def response_mean(self, mu, aux, trials=None):
        """Expected category number (for the generated moment checks; a nominal outcome has no mean)."""
        p = self.probabilities(mu)
        return (p * np.arange(1, p.shape[-1] + 1)).sum(axis=-1)

    def variance(self, mu, aux, trials=None, se=None):  # noqa: D102
        p = self.probabilities(mu)
        k = np.arange(1, p.shape[-1] + 1)
        m = (p * k).sum(axis=-1)
        return (p * k**2).sum(axis=-1) - m**2

    def pymc_likelihood(self, name, eta, aux, y, trials=None, se=None, dims="obs"):  # noqa: D102
        import pymc as pm

        return pm.Categorical(name, logit_p=_log_probs(eta, lib="pytensor"),
                              observed=np.asarray(y, dtype=np.int64) - 1, dims=dims)

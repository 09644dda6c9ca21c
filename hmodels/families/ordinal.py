"""Ordered categorical outcomes (ratings, Likert items, severity grades): the cumulative model.

A latent variable ``y* = eta + e`` with ``e`` logistic (``link="logit"``, the proportional-odds
model) or standard normal (``link="probit"``) is cut at ordered thresholds ``c_1 < ... < c_{K-1}``:
``P(y <= k) = F(c_k - eta)``. As in brms and ordinal's ``clm``/``clmm``, the linear predictor has
no intercept (the thresholds take its place) and a positive coefficient moves the outcome up the
scale. The thresholds are the family's parameter ``cutpoints`` (reported as ``Intercept[1]``,
``Intercept[2]``, ... in :meth:`hmodels.fit.Fit.fixed_effects`, as brms does), with brms's default
prior ``StudentT(3, 0, 2.5)`` on each, and ordered by construction.

The outcome is an ordered pandas ``Categorical`` (its declared order; unobserved categories are
refused, since nothing could be learned about their thresholds) or whole numbers (the sorted
distinct values). Strings without an order are refused: alphabetical order would silently
reinterpret the scale. The model's outcome is the category number ``1, ..., K`` (its position on
the scale): replicated data, ``predict(kind="response")`` and the expected response
(``predict(kind="mean")``, the expected category number) are on that scale.
``predict(kind="probs")`` gives the probability of every category.

Examples
--------
>>> import numpy as np
>>> import hmodels as hm
>>> fam = hm.families.get_family("cumulative")
>>> p = np.exp(fam.loglik(np.arange(1, 4), 0.0, {"cutpoints": np.array([-1.0, 1.0])}))
>>> np.round(p, 4)  # logistic(-1), logistic(1) - logistic(-1), 1 - logistic(1)
array([0.2689, 0.4621, 0.2689])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from ..engine import codes as K
from ..errors import DataError
from .auxiliary import AuxSpec
from .base import Family

__all__ = ["Cumulative", "ordinal_categories"]


def ordinal_categories(raw: pd.Series, column: str, labels=None) -> tuple[np.ndarray, tuple]:
    """Category numbers ``1..K`` and the ordered category labels of an ordinal outcome (raise DataError if not one).

    Examples
    --------
    >>> import pandas as pd
    >>> codes, levels = ordinal_categories(pd.Series([3, 1, 2, 3]), "rating")
    >>> codes.tolist(), levels
    ([3, 1, 2, 3], (1, 2, 3))
    """
    from ..errors import row_labels

    labels = np.arange(len(raw)) if labels is None else labels
    if isinstance(raw.dtype, pd.CategoricalDtype):
        if not raw.cat.ordered:
            raise DataError(
                f"The ordinal outcome {column!r} is an unordered categorical: hmodels will not guess the order of its "
                f"categories ({', '.join(map(str, raw.cat.categories[:6]))}). Declare it, e.g. "
                f"data[{column!r}] = pd.Categorical(data[{column!r}], categories=[...lowest to highest...], "
                "ordered=True)."
            )
        levels = tuple(raw.cat.categories)
        codes = raw.cat.codes.to_numpy().astype(np.int64) + 1
        unused = [lv for i, lv in enumerate(levels, start=1) if not (codes == i).any()]
        if unused:
            raise DataError(
                f"The ordinal outcome {column!r} declares categories that no row has: {', '.join(map(str, unused))}. "
                "Their thresholds could only come from the prior. Drop them (data[col] = "
                "data[col].cat.remove_unused_categories()) or merge them with a neighbour."
            )
    elif pd.api.types.is_bool_dtype(raw) or pd.api.types.is_numeric_dtype(raw):
        y = raw.to_numpy(dtype=float)
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            raise DataError(
                f"The ordinal outcome {column!r} must hold whole numbers (ratings) or an ordered categorical; found "
                f"values such as {', '.join(f'{v:g}' for v in y[bad][:3])} in {row_labels(labels, bad)}."
            )
        values = np.unique(y)
        levels = tuple(int(v) for v in values)
        missing = sorted(set(range(levels[0], levels[-1] + 1)) - set(levels))
        if missing:
            raise DataError(
                f"The ordinal outcome {column!r} holds the whole numbers {', '.join(map(str, levels[:8]))}: the "
                f"ratings {', '.join(map(str, missing[:8]))} between them never occur. hmodels will not silently "
                "renumber the scale (predictions would then come back on the wrong numbers). If those ratings exist "
                "but were not used, their thresholds cannot be estimated: merge them with a neighbour; if the scale "
                f"has only these values, say so: data[{column!r}] = pd.Categorical(data[{column!r}], "
                f"categories={list(levels)[:8]}, ordered=True)."
            )
        codes = np.searchsorted(values, y).astype(np.int64) + 1
    else:
        raise DataError(
            f"The ordinal outcome {column!r} holds {raw.dtype} values such as {raw.iloc[0]!r} without an order: "
            "hmodels will not guess it (alphabetical order would silently reinterpret the scale). Make it an ordered "
            f"categorical, e.g. data[{column!r}] = pd.Categorical(data[{column!r}], categories=[...lowest to "
            "highest...], ordered=True), or code it as whole numbers."
        )
    if len(levels) < 2:
        raise DataError(
            f"The ordinal outcome {column!r} has a single category ({levels[0]!r}) in every row: there is nothing to "
            "model. Check the column and any filtering of the rows."
        )
    return codes, levels


def _log_cdf(link: str, x, lib=np):
    """log F(x) of the latent error (logistic or standard normal), stable in both tails."""
    if link == "logit":
        if lib is np:
            return -np.logaddexp(0.0, -x)
        return -lib.softplus(-x)
    if lib is np:
        from scipy.special import log_ndtr

        return log_ndtr(x)
    # log Phi(x) through erfcx in the lower tail: PyMC's Normal logcdf is off by ~1e-8 near 0
    return lib.switch(x < -1, lib.log(lib.erfcx(-x / np.sqrt(2.0)) / 2) - x**2 / 2,
                      lib.log1p(-lib.erfc(x / np.sqrt(2.0)) / 2))


def _log1mexp(x, lib=np):
    """log(1 - exp(x)) for x < 0."""
    if lib is np:
        with np.errstate(divide="ignore"):
            return np.where(x > -0.693, np.log(-np.expm1(x)), np.log1p(-np.exp(x)))
    return lib.log1mexp(x)


def category_logp(link: str, eta, cutpoints, lib=np):
    """``log P(y = k)`` for every category ``k`` (last axis, length K), stable in the tails.

    ``eta`` (..., n) and ``cutpoints`` (..., 1, K-1) broadcast; interior categories use
    ``log(F(b) - F(a))`` written through the lower tail when the interval lies below 0 and the
    upper tail (``1 - F(x) = F(-x)``, both latent distributions being symmetric) above it.
    """
    if lib is np:
        eta = np.asarray(eta, dtype=float)[..., None]
        cut = np.asarray(cutpoints, dtype=float)
        z = cut - eta  # (..., n, K-1)
        first = _log_cdf(link, z[..., :1])
        last = _log_cdf(link, -z[..., -1:])
        a, b = z[..., :-1], z[..., 1:]
        lower = _log_cdf(link, b) + _log1mexp(_log_cdf(link, a) - _log_cdf(link, b))
        upper = _log_cdf(link, -a) + _log1mexp(_log_cdf(link, -b) - _log_cdf(link, -a))
        interior = np.where(a + b > 0, upper, lower)
        return np.concatenate([np.broadcast_to(first, interior.shape[:-1] + (1,)), interior,
                               np.broadcast_to(last, interior.shape[:-1] + (1,))], axis=-1)
    pt = lib
    z = cutpoints[None, :] - eta[:, None]
    first = _log_cdf(link, z[:, :1], pt)
    last = _log_cdf(link, -z[:, -1:], pt)
    parts = [first]
    if cutpoints.type.shape[0] is None or cutpoints.type.shape[0] > 1:
        a, b = z[:, :-1], z[:, 1:]
        lower = _log_cdf(link, b, pt) + _log1mexp(_log_cdf(link, a, pt) - _log_cdf(link, b, pt), pt)
        upper = _log_cdf(link, -a, pt) + _log1mexp(_log_cdf(link, -b, pt) - _log_cdf(link, -a, pt), pt)
        parts.append(pt.switch(a + b > 0, upper, lower))
    parts.append(last)
    return pt.concatenate(parts, axis=1)


@dataclass(frozen=True, repr=False)
class Cumulative(Family):
    """An ordered categorical outcome (cumulative logit = proportional odds, or cumulative probit).

    ``mu`` is the latent location ``eta`` itself; the family's parameter ``cutpoints`` holds the
    ``K - 1`` ordered thresholds on its last axis; outcomes are category numbers ``1, ..., K``.

    Examples
    --------
    >>> import hmodels as hm
    >>> fam = hm.families.get_family("cumulative", "probit")
    >>> fam.aux, fam.ppc_kind, fam.latent_variance
    (('cutpoints',), 'bars', 1.0)
    """

    links: ClassVar = ("logit", "probit")
    default_link: ClassVar = "logit"
    aux: ClassVar = ("cutpoints",)
    aux_specs: ClassVar = {
        "cutpoints": AuxSpec(
            "ordered", "StudentT(3, 0, 2.5)",
            "brms's default for the thresholds of an ordinal model, placed (as brms places it) on the thresholds at "
            "the predictors' means: on the latent (logit/probit) scale, category boundaries within about +-10 with "
            "heavier tails, whatever the predictors' location.",
            "thresholds between adjacent categories of {response} on the latent scale", example=(-1.0, 0.2, 1.5)),
    }
    outcome: ClassVar = "ordinal"
    aliases: ClassVar = ("ordinal", "cumulative_logit", "ordered", "ordered_logistic")
    engine_code: ClassVar = K.FAM_CUMULATIVE  # kernels.c: cumulative_loglik; thresholds through the ordered transform
    ppc_kind: ClassVar = "bars"
    discrete: ClassVar = True
    prediction_kinds: ClassVar = ("mean", "response", "link", "probs")

    def mean(self, eta, aux=None, trials=None):
        """The latent location: ``eta`` itself (the thresholds turn it into probabilities)."""
        return eta

    @property
    def latent_variance(self) -> float | None:
        """``pi^2/3`` (logit) or 1 (probit): the variance of the latent error, for ICC and R²."""
        return self.link_fn.latent_variance

    def latent_label(self, method: str) -> str | None:  # noqa: D102
        return f"variance of the latent {'logistic' if self.link == 'logit' else 'normal'} error"

    def probabilities(self, mu, aux):
        """``P(y = k)`` per category (last axis, K)."""
        return np.exp(category_logp(self.link, mu, aux["cutpoints"]))

    def loglik(self, y, mu, aux, trials=None, se=None):  # noqa: D102
        mu = np.broadcast_arrays(np.asarray(mu, dtype=float), np.asarray(y))[0]  # a scalar mu serves every y
        lp = category_logp(self.link, mu, aux["cutpoints"])
        y = np.broadcast_to(np.asarray(y, dtype=np.int64) - 1, lp.shape[:-1])
        return np.take_along_axis(lp, y[..., None], axis=-1)[..., 0]

    def simulate(self, rng, mu, aux, trials=None, se=None):  # noqa: D102
        cdf = np.cumsum(self.probabilities(mu, aux), axis=-1)
        u = rng.random(cdf.shape[:-1])[..., None]
        return np.minimum((u > cdf).sum(axis=-1), cdf.shape[-1] - 1) + 1

    def response_mean(self, mu, aux, trials=None):
        """Expected category number on ``1, ..., K``."""
        p = self.probabilities(mu, aux)
        return (p * np.arange(1, p.shape[-1] + 1)).sum(axis=-1)

    def variance(self, mu, aux, trials=None, se=None):  # noqa: D102
        p = self.probabilities(mu, aux)
        k = np.arange(1, p.shape[-1] + 1)
        m = (p * k).sum(axis=-1)
        return (p * k**2).sum(axis=-1) - m**2

    def check_response(self, y, column, labels) -> None:  # noqa: D102
        """Codes are checked when they are made (:func:`ordinal_categories`)."""

    def pymc_aux(self, name, prior, design):
        """The thresholds: ``K - 1`` values with the prior on each, ordered by PyMC's ``ordered`` transform."""
        import pymc as pm
        from pymc.distributions.transforms import ordered

        levels = design.response_levels
        k = len(levels) - 1
        pm.modelcontext(None).add_coord("cutpoint", threshold_labels(levels))
        start = np.log(np.arange(1, k + 1) / (k + 1 - np.arange(1, k + 1)))  # logits of equal category shares
        return prior.pymc_class()(name, **prior.params, dims="cutpoint", transform=ordered, initval=start)

    def pymc_likelihood(self, name, eta, aux, y, trials=None, se=None, dims="obs"):  # noqa: D102
        import pymc as pm
        import pytensor.tensor as pt

        logp = category_logp(self.link, eta, aux["cutpoints"], lib=pt)
        return pm.Categorical(name, logit_p=logp, observed=np.asarray(y, dtype=np.int64) - 1, dims=dims)


def threshold_shift_means(design, intercept_prior: str = "centered") -> np.ndarray | None:
    """The predictor means at which an ordinal model's thresholds get their prior, or None.

    With ``intercept_prior="centered"`` (the default) the thresholds' prior applies to the thresholds
    at the predictors' means, ``c_k - sum_j mean_j b_j``, exactly as brms centres the design of a
    cumulative model: adding a constant to a predictor then leaves the posterior of its effect
    unchanged. The sampled (centred) thresholds are ``c_k - means @ b``; the reported ones are
    ``c_k`` (at predictor value 0, as brms and ``clmm`` report them). None for other families, for
    ``intercept_prior="raw"`` and for a model without predictors.

    Examples
    --------
    >>> import hmodels as hm
    >>> m = hm.Model("rating ~ temp + contact", hm.datasets.load("wine"), family="cumulative")
    >>> threshold_shift_means(m.design).round(2).tolist()
    [0.5, 0.5]
    """
    # the spec holds the family's registered name (aliases resolved); a categorical outcome has levels too
    ordinal = design.response_levels is not None and design.spec.family == "cumulative"
    if not ordinal or intercept_prior != "centered" or not design.X.shape[1]:
        return None
    return np.asarray(design.x_means, dtype=float)


def rating_offset(levels) -> int | None:
    """``r - k`` when the categories are the consecutive whole numbers ``r = k + offset`` (``k = 1..K``), else None.

    Predictions of such an outcome (``kind="mean"`` and ``"response"``) are returned on the rating
    scale itself rather than as category numbers.

    Examples
    --------
    >>> rating_offset((0, 1, 2, 3)), rating_offset((1, 2, 3)), rating_offset(("low", "high"))
    (-1, 0, None)
    """
    if levels is None or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in levels):
        return None
    first = int(levels[0])
    return first - 1 if list(levels) == list(range(first, first + len(levels))) else None


def threshold_labels(levels) -> list[str]:
    """brms's names of the thresholds: ``Intercept[1]``, ..., ``Intercept[K-1]``.

    Examples
    --------
    >>> threshold_labels(("low", "mid", "high"))
    ['Intercept[1]', 'Intercept[2]']
    """
    return [f"Intercept[{k}]" for k in range(1, len(levels))]

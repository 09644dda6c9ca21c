"""Prior distribution objects: readable, validated, turned into PyMC only when a model is built.

Each prior is a small immutable object (``Normal(0, 10)``) that knows its support (real
line, positive half-line, correlation matrices), checks its parameters on construction, and
prints as it is written. ``from_string("HalfNormal(5)")`` reads the same text back.
"""

from __future__ import annotations

import ast
import math
import re

import numpy as np

from ..engine import codes as K
from ..errors import PriorError

__all__ = [
    "Prior", "Normal", "StudentT", "Cauchy", "Laplace", "HalfNormal", "HalfStudentT", "HalfCauchy",
    "Exponential", "Gamma", "InverseGamma", "LogNormal", "Uniform", "Beta", "LKJ", "from_string", "PRIOR_CLASSES",
]


class Prior:
    """Base class of prior distributions.

    Subclasses declare ``_params`` (PyMC parameter names, in positional order), ``_positive``
    (parameters that must be > 0) and ``support`` (``"real"``, ``"positive"``, ``"unit"`` (the
    interval (0, 1)), ``"cor"``).
    """

    _params: tuple[str, ...] = ()
    _positive: tuple[str, ...] = ()
    support = "real"
    #: Code of the prior's log density in the compiled kernels (parameters passed in ``_params`` order).
    engine_code: int | None = None
    #: Valid parameters for an example (the generated conformance tests use them).
    example_args: tuple[float, ...] = ()

    def __init__(self, *args, **kwargs):
        name = type(self).__name__
        if len(args) > len(self._params):
            raise PriorError(
                f"{name} takes {len(self._params)} parameters ({', '.join(self._params)}), got {len(args)}."
            )
        values = dict(zip(self._params, args))
        for k, v in kwargs.items():
            if k not in self._params:
                raise PriorError(f"{name} has no parameter {k!r}; its parameters are {', '.join(self._params)}.")
            if k in values:
                raise PriorError(f"{name} got parameter {k!r} twice.")
            values[k] = v
        missing = [p for p in self._params if p not in values]
        if missing:
            raise PriorError(f"{name} needs parameter(s) {', '.join(missing)}, e.g. {self._example()}.")
        for k, v in values.items():
            try:
                fv = float(v)
            except (TypeError, ValueError):
                raise PriorError(f"{name}: parameter {k}={v!r} must be a number.") from None
            if not math.isfinite(fv):
                raise PriorError(f"{name}: parameter {k}={v!r} must be finite.")
            if k in self._positive and fv <= 0:
                raise PriorError(
                    f"{name}: parameter {k}={v!r} must be positive (it is a scale or shape). "
                    f"Example: {self._example()}."
                )
            values[k] = fv
        self._values = values
        self._check()

    def _check(self) -> None:
        """Extra validation for subclasses."""

    @classmethod
    def _example(cls) -> str:
        return f"hm.{cls.__name__}({', '.join('1' for _ in cls._params)})"

    @property
    def params(self) -> dict[str, float]:
        """Parameter values by PyMC name, as float64 (PyTensor would make a float32 constant of a Python float)."""
        return {k: np.float64(v) for k, v in self._values.items()}

    @property
    def name(self) -> str:
        """Distribution name (``"Normal"``)."""
        return type(self).__name__

    def __repr__(self) -> str:
        return f"{self.name}({', '.join(_fmt(self._values[p]) for p in self._params)})"

    @property
    def identity(self) -> list:
        """``[name, {parameter: value}]`` with every digit (the repr keeps 4): what a resumable study keys on.

        Examples
        --------
        >>> Normal(0, 2.50001).identity
        ['Normal', {'mu': 0.0, 'sigma': 2.50001}]
        """
        return [self.name, {k: float(v) for k, v in self._values.items()}]

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and self._values == other._values

    def __hash__(self) -> int:
        return hash((self.name, tuple(self._values.items())))

    def scaled(self, factor: float) -> Prior:
        """Return the prior with its location and scale multiplied by ``factor`` (> 0)."""
        vals = {k: (v * factor if k in self._scaling else v) for k, v in self._values.items()}
        return type(self)(**vals)

    _scaling: tuple[str, ...] = ()

    def pymc_class(self):
        """The PyMC distribution class."""
        import pymc as pm

        return getattr(pm, self._pymc_name)

    @property
    def _pymc_name(self) -> str:
        return self.name

    def to_dict(self) -> dict:
        """Plain-data form (``{"dist": "Normal", "mu": 0.0, "sigma": 10.0}``)."""
        return {"dist": self.name, **self._values}

    def interval(self, prob: float = 0.95) -> tuple[float, float]:
        """Central interval of the prior (for explaining what it implies)."""
        d = self.scipy()
        lo, hi = d.ppf([(1 - prob) / 2, (1 + prob) / 2])
        return float(lo), float(hi)

    def scipy(self):
        """The equivalent frozen scipy.stats distribution."""
        raise PriorError(f"{self.name} has no scipy equivalent here.")


def _fmt(v: float) -> str:
    if float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.4g}"


class Normal(Prior):
    """Normal prior ``Normal(mu, sigma)`` on the real line.

    Examples
    --------
    >>> import hmodels as hm
    >>> hm.Normal(0, 10)
    Normal(0, 10)
    """

    _params = ("mu", "sigma")
    engine_code = K.NORMAL
    example_args = (1.0, 2.0)
    _positive = ("sigma",)
    _scaling = ("mu", "sigma")

    def scipy(self):
        """The frozen ``scipy.stats.norm(mu, sigma)``."""
        from scipy import stats

        return stats.norm(self._values["mu"], self._values["sigma"])


class StudentT(Prior):
    """Student-t prior ``StudentT(nu, mu, sigma)``.

    Examples
    --------
    >>> import hmodels as hm
    >>> hm.StudentT(3, 0, 2.5)
    StudentT(3, 0, 2.5)
    """

    _params = ("nu", "mu", "sigma")
    engine_code = K.STUDENT_T
    example_args = (3.0, -1.0, 2.0)
    _positive = ("nu", "sigma")
    _scaling = ("mu", "sigma")

    def scipy(self):
        """The frozen ``scipy.stats.t(nu, mu, sigma)``."""
        from scipy import stats

        v = self._values
        return stats.t(v["nu"], v["mu"], v["sigma"])


class Cauchy(Prior):
    """Cauchy prior ``Cauchy(alpha, beta)`` (location, scale).

    Examples
    --------
    >>> import hmodels as hm
    >>> hm.Cauchy(0, 2.5)
    Cauchy(0, 2.5)
    """

    _params = ("alpha", "beta")
    engine_code = K.CAUCHY
    example_args = (0.5, 1.5)
    _positive = ("beta",)
    _scaling = ("alpha", "beta")

    def scipy(self):
        """The frozen ``scipy.stats.cauchy(alpha, beta)``."""
        from scipy import stats

        return stats.cauchy(self._values["alpha"], self._values["beta"])


class Laplace(Prior):
    """Laplace (double exponential) prior ``Laplace(mu, b)``.

    Examples
    --------
    >>> import hmodels as hm
    >>> hm.Laplace(0, 1)
    Laplace(0, 1)
    """

    _params = ("mu", "b")
    engine_code = K.LAPLACE
    example_args = (0.0, 2.0)
    _positive = ("b",)
    _scaling = ("mu", "b")

    def scipy(self):
        """The frozen ``scipy.stats.laplace(mu, b)``."""
        from scipy import stats

        return stats.laplace(self._values["mu"], self._values["b"])


class HalfNormal(Prior):
    """Half-normal prior ``HalfNormal(sigma)`` on positive values.

    Examples
    --------
    >>> import hmodels as hm
    >>> hm.HalfNormal(5)
    HalfNormal(5)
    """

    _params = ("sigma",)
    engine_code = K.HALF_NORMAL
    example_args = (3.0,)
    _positive = ("sigma",)
    _scaling = ("sigma",)
    support = "positive"

    def scipy(self):
        """The frozen ``scipy.stats.halfnorm(0, sigma)``."""
        from scipy import stats

        return stats.halfnorm(0, self._values["sigma"])


class HalfStudentT(Prior):
    """Half-Student-t prior ``HalfStudentT(nu, sigma)`` on positive values.

    Examples
    --------
    >>> import hmodels as hm
    >>> hm.HalfStudentT(3, 5)
    HalfStudentT(3, 5)
    """

    _params = ("nu", "sigma")
    engine_code = K.HALF_STUDENT_T
    example_args = (4.0, 2.0)
    _positive = ("nu", "sigma")
    _scaling = ("sigma",)
    support = "positive"

    def scipy(self):
        """A Student-t ``t(nu, 0, sigma)`` folded onto the positive half-line."""
        from scipy import stats

        v = self._values
        return _Folded(stats.t(v["nu"], 0, v["sigma"]))


class HalfCauchy(Prior):
    """Half-Cauchy prior ``HalfCauchy(beta)`` on positive values.

    Examples
    --------
    >>> import hmodels as hm
    >>> hm.HalfCauchy(5)
    HalfCauchy(5)
    """

    _params = ("beta",)
    engine_code = K.HALF_CAUCHY
    example_args = (2.0,)
    _positive = ("beta",)
    _scaling = ("beta",)
    support = "positive"

    def scipy(self):
        """The frozen ``scipy.stats.halfcauchy(0, beta)``."""
        from scipy import stats

        return stats.halfcauchy(0, self._values["beta"])


class Exponential(Prior):
    """Exponential prior ``Exponential(lam)`` (rate ``lam``, mean ``1/lam``).

    Examples
    --------
    >>> import hmodels as hm
    >>> hm.Exponential(1)
    Exponential(1)
    """

    _params = ("lam",)
    engine_code = K.EXPONENTIAL
    example_args = (0.7,)
    _positive = ("lam",)
    support = "positive"

    def scaled(self, factor: float) -> Prior:  # the scale is 1/lam
        """Return the prior with its scale multiplied by ``factor`` (rate ``lam / factor``)."""
        return Exponential(self._values["lam"] / factor)

    def scipy(self):
        """The frozen ``scipy.stats.expon`` with scale ``1/lam``."""
        from scipy import stats

        return stats.expon(0, 1 / self._values["lam"])


class Gamma(Prior):
    """Gamma prior ``Gamma(alpha, beta)`` (shape, rate).

    Examples
    --------
    >>> import hmodels as hm
    >>> hm.Gamma(2, 0.1)
    Gamma(2, 0.1)
    """

    _params = ("alpha", "beta")
    engine_code = K.GAMMA
    example_args = (2.0, 3.0)
    _positive = ("alpha", "beta")
    support = "positive"

    def scaled(self, factor: float) -> Prior:
        """Return the prior with its scale multiplied by ``factor`` (rate ``beta / factor``)."""
        return Gamma(self._values["alpha"], self._values["beta"] / factor)

    def scipy(self):
        """The frozen ``scipy.stats.gamma`` with shape ``alpha`` and scale ``1/beta``."""
        from scipy import stats

        return stats.gamma(self._values["alpha"], scale=1 / self._values["beta"])


class InverseGamma(Prior):
    """Inverse-gamma prior ``InverseGamma(alpha, beta)`` (shape, scale).

    Examples
    --------
    >>> import hmodels as hm
    >>> hm.InverseGamma(3, 2)
    InverseGamma(3, 2)
    """

    _params = ("alpha", "beta")
    engine_code = K.INVERSE_GAMMA
    example_args = (3.0, 2.0)
    _positive = ("alpha", "beta")
    _scaling = ("beta",)
    support = "positive"

    def scipy(self):
        """The frozen ``scipy.stats.invgamma`` with shape ``alpha`` and scale ``beta``."""
        from scipy import stats

        return stats.invgamma(self._values["alpha"], scale=self._values["beta"])


class LogNormal(Prior):
    """Log-normal prior ``LogNormal(mu, sigma)`` on positive values.

    Examples
    --------
    >>> import hmodels as hm
    >>> hm.LogNormal(0, 1)
    LogNormal(0, 1)
    """

    _params = ("mu", "sigma")
    engine_code = K.LOGNORMAL
    example_args = (0.2, 0.8)
    _positive = ("sigma",)
    support = "positive"

    def scaled(self, factor: float) -> Prior:
        """Return the prior scaled by ``factor`` (``mu + log(factor)``, same ``sigma``)."""
        return LogNormal(self._values["mu"] + math.log(factor), self._values["sigma"])

    def scipy(self):
        """The frozen ``scipy.stats.lognorm`` with shape ``sigma`` and scale ``exp(mu)``."""
        from scipy import stats

        return stats.lognorm(self._values["sigma"], scale=math.exp(self._values["mu"]))


class Uniform(Prior):
    """Uniform prior ``Uniform(lower, upper)``.

    Examples
    --------
    >>> import hmodels as hm
    >>> hm.Uniform(0, 100)
    Uniform(0, 100)
    """

    _params = ("lower", "upper")
    engine_code = K.UNIFORM
    example_args = (0.5, 4.0)
    _scaling = ("lower", "upper")

    def _check(self) -> None:
        lo, hi = self._values["lower"], self._values["upper"]
        if lo >= hi:
            raise PriorError(f"Uniform: lower ({lo}) must be below upper ({hi}).")
        if not math.isfinite(hi - lo):
            raise PriorError(
                f"Uniform({_fmt(lo)}, {_fmt(hi)}): the width upper - lower is not a finite number, so the prior "
                "cannot be sampled. Use bounds that could plausibly hold the value, or a wide proper prior such as "
                "hm.Normal(0, 100 * your outcome's SD)."
            )

    @property
    def support(self) -> str:  # type: ignore[override]
        """``"positive"`` when ``lower >= 0``, otherwise ``"real"``."""
        return "positive" if self._values["lower"] >= 0 else "real"

    def scipy(self):
        """The frozen ``scipy.stats.uniform`` on ``[lower, upper]``."""
        from scipy import stats

        lo, hi = self._values["lower"], self._values["upper"]
        return stats.uniform(lo, hi - lo)


class Beta(Prior):
    """Beta prior ``Beta(alpha, beta)`` on probabilities in (0, 1) (``zi``, ``hu``; ``Beta(1, 1)`` is uniform).

    Only parameters that are probabilities take it (support ``"unit"``); the compiled engine samples
    them on the logit scale, and the support check keeps the prior from every other parameter.

    Examples
    --------
    >>> import hmodels as hm
    >>> hm.Beta(1, 1)
    Beta(1, 1)
    >>> hm.Beta(2, 8).interval(0.5)[0] < 0.2
    True
    """

    _params = ("alpha", "beta")
    engine_code = K.BETA
    example_args = (2.0, 3.0)
    _positive = ("alpha", "beta")
    support = "unit"

    def scaled(self, factor: float) -> Prior:
        """Return the prior unchanged: probabilities have no data scale."""
        return self

    def scipy(self):
        """The frozen ``scipy.stats.beta(alpha, beta)``."""
        from scipy import stats

        return stats.beta(self._values["alpha"], self._values["beta"])


class LKJ(Prior):
    """LKJ prior ``LKJ(eta)`` on correlation matrices (``eta=1`` uniform; larger shrinks to 0).

    Examples
    --------
    >>> import hmodels as hm
    >>> hm.LKJ(2)
    LKJ(2)
    """

    _params = ("eta",)
    engine_code = None  # the engine's LKJ is built into its correlation blocks
    example_args = (2.0,)
    _positive = ("eta",)
    support = "cor"

    def scaled(self, factor: float) -> Prior:
        """Return the prior unchanged: correlations have no scale."""
        return self

    def scipy(self):
        """Marginal of one correlation of a 2×2 LKJ: ``2 * Beta(eta, eta) - 1``."""
        from scipy import stats

        e = self._values["eta"]
        return stats.beta(e, e, loc=-1, scale=2)


class _Folded:
    """|X| for a symmetric scipy distribution centred at 0 (ppf, rvs, logpdf, mean, var)."""

    def __init__(self, base):
        self.base = base

    def logpdf(self, x):
        x = np.asarray(x, dtype=float)
        return np.where(x >= 0, math.log(2) + self.base.logpdf(x), -np.inf)

    def mean(self):
        from scipy import integrate

        if not np.isfinite(self.base.mean()):  # e.g. a t with nu <= 1
            return np.inf
        return 2 * integrate.quad(lambda t: t * self.base.pdf(t), 0, np.inf)[0]

    def var(self):
        m2 = self.base.var()  # E[X^2] of the symmetric base, centred at 0
        return float(m2 - self.mean() ** 2) if np.isfinite(m2) else np.inf

    def ppf(self, q):
        return self.base.ppf(0.5 + np.asarray(q) / 2)

    def rvs(self, size=None, random_state=None):
        return np.abs(self.base.rvs(size=size, random_state=random_state))


PRIOR_CLASSES: dict[str, type[Prior]] = {
    c.__name__: c
    for c in (Normal, StudentT, Cauchy, Laplace, HalfNormal, HalfStudentT, HalfCauchy, Exponential, Gamma,
              InverseGamma, LogNormal, Uniform, Beta, LKJ)
}
_CALL = re.compile(r"^\s*([A-Za-z_]\w*)\s*\((.*)\)\s*$", re.S)


def from_string(text: str) -> Prior:
    """Read a prior written as text, e.g. ``"Normal(0, 10)"`` or ``"HalfStudentT(nu=3, sigma=5)"``.

    Only the prior classes of hmodels and numeric literals are accepted; nothing is evaluated.

    Examples
    --------
    >>> from hmodels.priors import from_string
    >>> from_string("StudentT(3, 0, 2.5)")
    StudentT(3, 0, 2.5)
    """
    if isinstance(text, Prior):
        return text
    m = _CALL.match(str(text))
    if not m:
        raise PriorError(f"Cannot read the prior {text!r}; write it like 'Normal(0, 10)' or 'HalfNormal(5)'.")
    name, inner = m.group(1), m.group(2)
    cls = {k.lower(): v for k, v in PRIOR_CLASSES.items()}.get(name.lower())
    if cls is None:
        from ..errors import closest

        raise PriorError(
            f"Unknown prior distribution {name!r} in {text!r}. Available: {', '.join(PRIOR_CLASSES)}."
            f"{closest(name, PRIOR_CLASSES)}"
        )
    try:
        call = ast.parse(f"f({inner})", mode="eval").body
        args = [ast.literal_eval(a) for a in call.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    except (SyntaxError, ValueError):
        raise PriorError(
            f"Cannot read the parameters of {text!r}; they must be numbers, e.g. 'Normal(0, 10)'."
        ) from None
    return cls(*args, **kwargs)

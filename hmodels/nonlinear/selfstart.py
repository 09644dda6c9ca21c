"""R's self-starting nonlinear shapes and the population nonlinear least-squares fit.

A *self-starting* shape is a named curve with R's parameterisation (``SSlogis``, ``SSfpl``, ``SSasymp``,
``SSasympOrig``, ``SSasympOff``, ``SSmicmen``, ``SSgompertz``, ``SSweibull``, ``SSfol``, ``SSbiexp``) that
computes its own starting values from the data. ``SelfStart.initial`` follows R's algorithms (R 4.2's
``getInitial`` methods, ``stats:::sortedXyData`` and friends) step by step: the same averaging of y over
repeated x, the same linearising regressions, and the same final partially-linear least-squares fit
(R's ``nls(..., algorithm = "plinear")``), here solved by variable projection: the linear coefficients are
profiled out by least squares and the nonlinear ones found by :func:`scipy.optimize.least_squares`. The
converged values agree with R's ``getInitial`` to about 1e-6 relative (``tests/reference/nlme_nonlinear.json``).

:func:`expand_self_start` turns ``"SSlogis(age, Asym, xmid, scal)"`` into the expression
``"Asym / (1 + exp((xmid - age) / scal))"``; :func:`nls_start` fits any
:class:`~hmodels.nonlinear.expression.NonlinearExpression` to the pooled data with its exact sympy Jacobian
(R's ``nls``), for default priors and initial values.
"""

from __future__ import annotations

import ast
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import optimize

from ..errors import DataError, DataWarning, FormulaError, SpecificationError, closest, row_labels

__all__ = ["SELF_STARTS", "NlsResult", "SelfStart", "expand_self_start", "nls_start"]


class _StartFailure(ArithmeticError):
    """One step of a starting-value algorithm failed (R would stop with an error there)."""


# ----------------------------------------------------------------------------------------------------
# R's helpers (stats:::sortedXyData, NLSstRtAsymptote, NLSstLfAsymptote, NLSstAsymptotic)


def _sorted_xy(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct x in increasing order and the mean y at each (R's ``sortedXyData``)."""
    x = np.asarray(x, dtype=float).ravel()
    y = np.broadcast_to(np.asarray(y, dtype=float), x.shape)
    ok = np.isfinite(x) & np.isfinite(y)
    xs, inv = np.unique(x[ok], return_inverse=True)
    ys = np.bincount(inv, weights=y[ok], minlength=xs.size) / np.bincount(inv, minlength=xs.size)
    return xs, ys


def _rt_asymptote(y: np.ndarray) -> float:
    """R's ``NLSstRtAsymptote``: a guess of the right asymptote, 1/8 of the range beyond the last value's side."""
    lo, hi = float(np.min(y)), float(np.max(y))
    d = hi - lo
    return hi + d / 8 if abs(hi - y[-1]) < abs(lo - y[-1]) else lo - d / 8


def _lf_asymptote(y: np.ndarray) -> float:
    """R's ``NLSstLfAsymptote``: the same guess for the left asymptote."""
    lo, hi = float(np.min(y)), float(np.max(y))
    d = hi - lo
    return hi + d / 8 if abs(hi - y[0]) < abs(lo - y[0]) else lo - d / 8


def _lm(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Intercept and slope of the least-squares line of y on x (R's ``coef(lm(y ~ x))``)."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y)  # lm's na.omit
    if ok.sum() < 2 or np.ptp(x[ok]) == 0:
        raise _StartFailure("too few finite points for a linearising regression")
    A = np.column_stack([np.ones(ok.sum()), x[ok]])
    coef = np.linalg.lstsq(A, y[ok], rcond=None)[0]
    return float(coef[0]), float(coef[1])


def _plinear(basis: Callable[[np.ndarray], np.ndarray], theta0, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Partially linear least squares, R's ``nls(algorithm = "plinear")``.

    ``basis(theta)`` is the (n, k) matrix whose columns multiply the linear coefficients; returns the
    nonlinear parameters ``theta`` and the linear coefficients. R's Golub-Pereyra Gauss-Newton iteration
    is followed exactly (forward-difference derivatives as ``numericDeriv``, step halving down to 1/1024,
    at most 50 iterations, R's relative-offset convergence criterion with tolerance 1e-5), so the values
    agree with R's even where R stops before the least-squares optimum. Where R's iteration fails, the
    least-squares optimum is found by variable projection with :func:`scipy.optimize.least_squares`.
    """
    theta0 = np.atleast_1d(np.asarray(theta0, dtype=float))
    if not np.all(np.isfinite(theta0)):
        raise _StartFailure(f"non-finite start {theta0}")
    try:
        return _gauss_newton_plinear(basis, theta0, y)
    except (_StartFailure, np.linalg.LinAlgError):
        pass

    def resid(theta):
        with np.errstate(all="ignore"):
            M = np.asarray(basis(theta), dtype=float).reshape(y.size, -1)
        if not np.all(np.isfinite(M)):
            return np.full(y.size, np.nan)
        beta = np.linalg.lstsq(M, y, rcond=None)[0]
        return y - M @ beta

    if not np.all(np.isfinite(resid(theta0))):
        raise _StartFailure("the partially linear model is not finite at its start")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = optimize.least_squares(resid, theta0, method="trf", jac="3-point", x_scale="jac",
                                     xtol=1e-13, ftol=1e-13, gtol=1e-13, max_nfev=2000)
    if res.status <= 0 or not np.all(np.isfinite(res.x)):
        raise _StartFailure(f"the partially linear least-squares fit did not converge ({res.message})")
    M = np.asarray(basis(res.x), dtype=float).reshape(y.size, -1)
    beta = np.linalg.lstsq(M, y, rcond=None)[0]
    return res.x, beta


def _gauss_newton_plinear(basis, theta, y, maxiter: int = 50, tol: float = 1e-5, min_factor: float = 1 / 1024):
    """R's ``nls_iter`` with ``nlsModel.plinear`` (R 4.2, ``stats/src/nls.c`` and ``stats/R/nls.R``)."""
    from scipy.linalg import solve_triangular

    n = y.size
    step = np.sqrt(np.finfo(float).eps)

    def rhs(t):
        with np.errstate(all="ignore"):
            return np.asarray(basis(t), dtype=float).reshape(n, -1)

    def state(t):
        M = rhs(t)
        if not np.all(np.isfinite(M)):
            return None
        Q, R = np.linalg.qr(M, mode="complete")
        p1 = M.shape[1]
        d = np.abs(np.diag(R[:p1, :p1]))
        if np.any(d <= 1e-7 * max(1.0, np.linalg.norm(M, axis=0).max())):
            raise _StartFailure("singular gradient")
        qty = Q.T @ y
        lin = solve_triangular(R[:p1, :p1], qty[:p1])
        res = y - M @ lin
        G = np.empty((n, p1, t.size))
        for j in range(t.size):  # numericDeriv: forward differences, delta = |theta| * sqrt(eps)
            tj = t.copy()
            delta = abs(t[j]) * step if t[j] != 0 else step
            tj[j] += delta
            G[:, :, j] = (rhs(tj) - M) / delta
        if not np.all(np.isfinite(G)):
            raise _StartFailure("non-finite derivatives")
        return {"theta": t, "Q": Q, "R": R, "qty": qty, "lin": lin, "dev": float(res @ res), "G": G, "p1": p1}

    def conv_incr(s):
        p1, p2 = s["p1"], s["theta"].size
        fac = (n - p1 - p2) / (p1 + p2)
        cc = np.concatenate([np.zeros(p1), s["qty"][p1:]])
        rr = s["Q"] @ cc
        B = s["Q"].T @ np.einsum("nkj,k->nj", s["G"], s["lin"])
        B[:p1, :] = np.einsum("nkj,n->kj", s["G"], rr)
        B[:p1, :] = solve_triangular(s["R"][:p1, :p1].T, B[:p1, :], lower=True)
        QB, RB = np.linalg.qr(B, mode="complete")
        norms = np.linalg.norm(B, axis=0)
        if np.any(np.abs(np.diag(RB)) <= 1e-7 * np.where(norms > 0, norms, 1.0)):  # qr()'s rank tolerance
            raise _StartFailure("singular gradient (qr.solve: singular matrix)")
        r2 = QB.T @ cc
        crit = np.sqrt(fac * np.sum(r2[:p1] ** 2) / np.sum(r2[p1:] ** 2))
        incr = np.linalg.lstsq(B, cc, rcond=None)[0]
        return crit, incr

    s = state(theta)
    if s is None:
        raise _StartFailure("the partially linear model is not finite at its start")
    fac = 1.0
    for _ in range(maxiter):
        crit, incr = conv_incr(s)
        if crit <= tol:
            return s["theta"], s["lin"]
        while fac >= min_factor:
            new = state(s["theta"] + fac * incr)
            if new is not None and new["dev"] <= s["dev"]:
                s = new
                fac = min(2 * fac, 1.0)
                break
            fac /= 2
        if fac < min_factor:
            raise _StartFailure(f"step factor reduced below minFactor of {min_factor}")
    raise _StartFailure(f"number of iterations exceeded maximum of {maxiter}")


def _asymptotic(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """R's ``NLSstAsymptotic``: ``y ~ b0 + b1 * (1 - exp(-exp(lrc) * x))``; returns (b0, b1, lrc)."""
    rt = _rt_asymptote(y)
    with np.errstate(all="ignore"):
        lrc0 = np.log(-_lm(x, np.log(np.abs(y - rt)))[1])
    th, lin = _plinear(lambda t: np.column_stack([np.ones_like(x), 1 - np.exp(-np.exp(t[0]) * x)]), [lrc0], y)
    return float(lin[0]), float(lin[1]), float(th[0])


# ----------------------------------------------------------------------------------------------------
# the algorithms of R's getInitial methods; each returns the values by R's parameter names and records
# its first (linearising) guesses in ``start`` before the final least-squares step


def _init_logis(cov, y, start):
    x, yy = cov["input"]
    rng = np.ptp(yy)
    z = (yy - yy.min() + 0.05 * rng) / (1.1 * rng)
    xmid, scal = _lm(np.log(z / (1 - z)), x)
    start.update(xmid=xmid, scal=scal)
    th, lin = _plinear(lambda t: 1 / (1 + np.exp((t[0] - x) / t[1])), [xmid, scal], yy)
    return {"Asym": lin[0], "xmid": th[0], "scal": th[1]}


def _init_fpl(cov, y, start):
    x, yy = cov["input"]
    rng = np.ptp(yy)
    prop = (yy - yy.min() + 0.05 * rng) / (1.1 * rng)
    a, b = _lm(np.log(prop / (1 - prop)), x)
    start.update(xmid=a, scal=abs(b))
    th, lin = _plinear(lambda t: np.column_stack([np.ones_like(x), 1 / (1 + np.exp((t[0] - x) / np.exp(t[1])))]),
                       [a, np.log(abs(b))], yy)
    return {"A": lin[0], "B": lin[0] + lin[1], "xmid": th[0], "scal": float(np.exp(th[1]))}


def _init_asymp(cov, y, start):
    x, yy = cov["input"]
    if x.size == 3:  # R's closed form for exactly three distinct x
        yd = np.diff(yy)
        if np.prod(yd) <= 0:
            raise DataError("SSasymp cannot start from three distinct input values whose mean responses are not "
                            "monotone; pass start= values or use more distinct input values.")
        xd = np.diff(x)
        if xd[0] != xd[1]:
            raise DataError("SSasymp needs more than three distinct input values unless they are equally spaced; "
                            "pass start= values or use more distinct input values.")
        frac = (yy[2] - yy[0]) / (yy[1] - yy[0])
        expm_rd = frac - 1
        rc = -np.log(expm_rd) / xd[0]
        e1 = np.exp(-rc * x[0])
        bma = yd[0] / (e1 * (expm_rd - 1))
        asym = yy[0] - bma * e1
        return {"Asym": asym, "R0": bma + asym, "lrc": np.log(rc)}
    with np.errstate(all="ignore"):
        lrc = np.log(-_lm(x, np.log(np.abs(yy - _rt_asymptote(yy))))[1])
    start.update(lrc=lrc)
    th, lin = _plinear(lambda t: np.column_stack([1 - np.exp(-np.exp(t[0]) * x), np.exp(-np.exp(t[0]) * x)]),
                       [lrc], yy)
    return {"Asym": lin[0], "R0": lin[1], "lrc": th[0]}


def _init_asymp_orig(cov, y, start):
    x, yy = cov["input"]
    a0 = _rt_asymptote(yy)
    with np.errstate(all="ignore"):
        r = np.log(1 - yy / a0) / x
    r = r[~np.isnan(r)]  # mean(..., na.rm = TRUE)
    lrc = float(np.log(abs(np.mean(r)))) if r.size else np.nan
    start.update(Asym=a0, lrc=lrc)
    th, lin = _plinear(lambda t: 1 - np.exp(-np.exp(t[0]) * x), [lrc], yy)
    return {"Asym": lin[0], "lrc": th[0]}


def _init_asymp_off(cov, y, start):
    x, yy = cov["input"]
    with np.errstate(all="ignore"):
        lrc = np.log(-_lm(x, np.log(np.abs(yy - _rt_asymptote(yy))))[1])
    start.update(lrc=lrc)
    th, lin = _plinear(lambda t: np.column_stack([np.ones_like(x), np.exp(-np.exp(t[0]) * x)]), [lrc], yy)
    with np.errstate(all="ignore"):
        c0 = np.exp(-th[0]) * np.log(-lin[1] / lin[0])
    return {"Asym": lin[0], "lrc": th[0], "c0": c0}


def _init_micmen(cov, y, start):
    x, yy = cov["input"]
    with np.errstate(all="ignore"):
        a, b = _lm(1 / x, 1 / yy)
    k = abs(b / a)
    start.update(K=k)
    th, lin = _plinear(lambda t: x / (t[0] + x), [k], yy)
    return {"Vm": lin[0], "K": th[0]}


def _init_gompertz(cov, y, start):
    x, yy = cov["x"]
    with np.errstate(all="ignore"):
        _b0, b1, lrc = _asymptotic(x, np.log(np.abs(yy)))
    b3 = float(np.exp(-np.exp(lrc)))
    start.update(b2=b1, b3=b3)
    th, lin = _plinear(lambda t: np.exp(-t[0] * t[1] ** x), [b1, b3], yy)
    return {"Asym": lin[0], "b2": th[0], "b3": th[1]}


def _init_weibull(cov, y, start):
    x, yy = cov["x"]
    if np.any(x < 0):
        raise DataError("SSweibull needs non-negative values of its input x (R: all 'x' values must be "
                        "non-negative to fit the Weibull growth model); shift or rescale the column.")
    ra, la = _rt_asymptote(yy), _lf_asymptote(yy)
    pos = x > 0
    with np.errstate(all="ignore"):
        lrc, pwr = _lm(np.log(x[pos]), np.log(-np.log((ra - yy[pos]) / (ra - la))))
    start.update(Asym=ra, Drop=ra - la, lrc=lrc, pwr=pwr)
    th, lin = _plinear(lambda t: np.column_stack([np.ones_like(x), -np.exp(-np.exp(t[0]) * x ** t[1])]),
                       [lrc, pwr], yy)
    return {"Asym": lin[0], "Drop": lin[1], "lrc": th[0], "pwr": th[1]}


def _init_biexp(cov, y, start):
    x, yy = cov["input"]
    n = x.size
    nlast = max(3, round(n / 2))  # R's round() rounds half to even, as Python's
    with np.errstate(all="ignore"):
        i2, s2 = _lm(x[n - nlast:], np.log(yy[n - nlast:]))
        lrc2 = float(np.log(abs(s2)))
        res = yy - np.exp(i2) * np.exp(-np.exp(lrc2) * x)
        _i1, s1 = _lm(x[: n - nlast], np.log(np.abs(res[: n - nlast])))
        lrc1 = float(np.log(abs(s1)))
    start.update(lrc1=lrc1, lrc2=lrc2)
    th, lin = _plinear(lambda t: np.column_stack([np.exp(-np.exp(t[0]) * x), np.exp(-np.exp(t[1]) * x)]),
                       [lrc1, lrc2], yy)
    return {"A1": lin[0], "lrc1": th[0], "A2": lin[1], "lrc2": th[1]}


def _init_fol(cov, y, start):
    dose, t = cov["Dose"], cov["input"]
    resp = np.asarray(y, dtype=float)
    n = resp.size
    imax = int(np.argmax(resp))
    with np.errstate(all="ignore"):
        lke = -2.5 if imax == n - 1 else float(np.log((np.log(resp[imax]) - np.log(resp[-1])) / (t[-1] - t[imax])))
    start.update(lKe=lke)
    th1, _ = _plinear(lambda p: (np.exp(-t * np.exp(lke)) - np.exp(-t * np.exp(p[0]))) * dose, [lke + 1], resp)
    start.update(lKa=th1[0])
    th, lin = _plinear(lambda p: dose * (np.exp(-t * np.exp(p[1])) - np.exp(-t * np.exp(p[0])))
                       / (np.exp(p[0]) - np.exp(p[1])), [th1[0], lke], resp)
    lka, lke2 = th
    with np.errstate(all="ignore"):
        lcl = lke2 + lka - np.log(lin[0])
    return {"lKe": lke2, "lKa": lka, "lCl": lcl}


# ----------------------------------------------------------------------------------------------------
# the shapes


@dataclass(frozen=True)
class SelfStart:
    """A self-starting nonlinear shape with R's name, argument order and parameterisation.

    Attributes
    ----------
    name : str
        R's name, e.g. ``"SSlogis"``.
    covariate_args : tuple of str
        R's argument names of the inputs, e.g. ``("input",)``, or ``("Dose", "input")`` for ``SSfol``.
    parameter_args : tuple of str
        R's parameter names in R's order, e.g. ``("Asym", "xmid", "scal")``.
    template : str
        The expression with ``{argument}`` placeholders.
    min_distinct : int
        The fewest distinct input values R's starting-value algorithm accepts (for ``SSfol``: observations).
    meanings : tuple of (str, str)
        R parameter name -> what it means, with ``{argument}`` placeholders.
    parameters, columns : tuple of str
        Set by :func:`expand_self_start` ("bound"): the user's parameter names and data columns, in R's
        argument order. A bound shape names :meth:`initial`'s results with the user's names.

    Examples
    --------
    >>> ss = SELF_STARTS["SSlogis"]
    >>> ss.expression(["age"], ["Asym", "xmid", "scal"])
    'Asym / (1 + exp((xmid - age) / scal))'
    >>> import numpy as np
    >>> age = np.array([118., 484, 664, 1004, 1231, 1372, 1582])
    >>> circ = np.array([30., 58, 87, 115, 120, 142, 145])
    >>> {k: round(v, 1) for k, v in ss.initial({"input": age}, circ).items()}
    {'Asym': 154.2, 'xmid': 627.2, 'scal': 362.6}
    """

    name: str
    covariate_args: tuple[str, ...]
    parameter_args: tuple[str, ...]
    template: str = field(repr=False)
    min_distinct: int = field(repr=False)
    meanings: tuple[tuple[str, str], ...] = field(repr=False)
    algorithm: Callable = field(repr=False, compare=False)
    parameters: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()

    def _fill(self, text: str, covariates: Sequence[str], parameters: Sequence[str]) -> str:
        return text.format(**dict(zip(self.covariate_args, covariates)), **dict(zip(self.parameter_args, parameters)))

    def expression(self, covariates: Sequence[str], parameters: Sequence[str]) -> str:
        """The formula text of the shape for the given covariate columns and parameter names.

        Parameters
        ----------
        covariates : sequence of str
            Data columns in R's argument order (:attr:`covariate_args`).
        parameters : sequence of str
            Parameter names in R's order (:attr:`parameter_args`).

        Examples
        --------
        >>> SELF_STARTS["SSfol"].expression(["Dose", "Time"], ["lKe", "lKa", "lCl"])
        'Dose * exp(lKe + lKa - lCl) * (exp(-exp(lKe) * Time) - exp(-exp(lKa) * Time)) / (exp(lKa) - exp(lKe))'
        """
        covariates, parameters = list(covariates), list(parameters)
        if len(covariates) != len(self.covariate_args) or len(parameters) != len(self.parameter_args):
            raise SpecificationError(f"{self.signature()} takes {len(self.covariate_args)} input(s) and "
                                     f"{len(self.parameter_args)} parameters; got {covariates} and {parameters}.")
        return self._fill(self.template, covariates, parameters)

    def signature(self) -> str:
        """R's call, e.g. ``"SSlogis(input, Asym, xmid, scal)"``."""
        return f"{self.name}({', '.join(self.covariate_args + self.parameter_args)})"

    def _inputs(self, covariates: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        keys = list(covariates)
        if all(a in covariates for a in self.covariate_args):
            order = list(self.covariate_args)
        elif self.columns and all(c in covariates for c in self.columns):
            order = list(self.columns)
        elif len(keys) == len(self.covariate_args):
            order = keys
        else:
            raise SpecificationError(
                f"{self.name}.initial needs the input(s) {', '.join(self.covariate_args)} (R's argument names) "
                f"or {len(self.covariate_args)} arrays in that order; got {', '.join(keys) or 'none'}.")
        return [np.asarray(covariates[k], dtype=float).ravel() for k in order]

    def check_data(self, covariates: Mapping[str, np.ndarray], y=None) -> None:
        """Raise a :class:`~hmodels.errors.DataError` when the data have too few distinct input values.

        R's algorithm needs :attr:`min_distinct` distinct values of the (first varying) input, with a
        finite response (``SSfol``: that many observations).

        Examples
        --------
        >>> SELF_STARTS["SSlogis"].check_data({"input": [1.0, 2.0, 2.0, 3.0]})
        Traceback (most recent call last):
        ...
        hmodels.errors.DataError: SSlogis needs at least 4 distinct values of its input 'input' ...
        """
        ins = self._inputs(covariates)
        x = ins[-1]
        ok = np.isfinite(x) if y is None else np.isfinite(x) & np.isfinite(np.broadcast_to(y, x.shape))
        label = self.columns[-1] if self.columns else self.covariate_args[-1]
        if self.name == "SSfol":
            if ok.sum() < self.min_distinct:
                raise DataError(f"SSfol needs at least {self.min_distinct} observations with a finite response "
                                f"to compute starting values; the data have {int(ok.sum())}. Pass start= values "
                                "or add observations.")
            return
        k = np.unique(x[ok]).size
        if k < self.min_distinct:
            raise DataError(
                f"{self.name} needs at least {self.min_distinct} distinct values of its input {label!r} to compute "
                f"starting values (R: too few distinct input values); the data have {k}. Use a shape with fewer "
                "parameters, add measurements at other input values, or write the expression out and pass start=.")

    def initial(self, covariates: Mapping[str, np.ndarray], y: np.ndarray) -> dict[str, float]:
        """Starting values from the data, as R's ``getInitial`` computes them.

        Parameters
        ----------
        covariates : mapping
            The inputs by R's argument name (:attr:`covariate_args`), by the bound data columns, or
            as many arrays as inputs in R's order.
        y : array
            The response.

        Returns
        -------
        dict
            Parameter -> starting value, in R's order, named by the user's names when the shape is bound
            (:func:`expand_self_start`), else by R's names.

        Raises
        ------
        DataError
            Too few distinct input values (checked first), or data the algorithm cannot start from.

        Notes
        -----
        Where R's Gauss-Newton iteration fails (R stops with an error), its partially linear model is fitted
        by variable projection instead; where that fails too, the values of the linearising regressions
        that precede it are returned (NaN for the rest) with a :class:`~hmodels.errors.DataWarning`.

        Examples
        --------
        >>> import numpy as np
        >>> conc = np.array([0.02, 0.02, 0.06, 0.06, 0.11, 0.11, 0.22, 0.22, 0.56, 0.56, 1.1, 1.1])
        >>> rate = np.array([76., 47, 97, 107, 123, 139, 159, 152, 191, 201, 207, 200])
        >>> {k: round(v, 4) for k, v in SELF_STARTS["SSmicmen"].initial({"input": conc}, rate).items()}
        {'Vm': 212.6837, 'K': 0.0641}
        """
        self.check_data(covariates, y)
        ins = self._inputs(covariates)
        y = np.broadcast_to(np.asarray(y, dtype=float), ins[-1].shape)
        if self.name == "SSfol":
            ok = np.all([np.isfinite(v) for v in ins], axis=0) & np.isfinite(y)
            cov = {"Dose": ins[0][ok], "input": ins[1][ok]}
            yy = y[ok]
        else:
            cov = {self.covariate_args[0]: _sorted_xy(ins[0], y)}
            yy = y
        start: dict = {}
        try:
            with np.errstate(all="ignore"):
                vals = self.algorithm(cov, yy, start)
            vals = {k: float(vals[k]) for k in self.parameter_args}
            if not all(np.isfinite(v) for v in vals.values()):
                raise _StartFailure("non-finite values")
        except (_StartFailure, np.linalg.LinAlgError, ValueError) as exc:
            if isinstance(exc, DataError):
                raise
            finite = {k: float(v) for k, v in start.items() if np.isfinite(v)}
            if not finite:
                raise DataError(
                    f"{self.name} could not compute starting values from these data ({exc}): the response does not "
                    f"look like {self.name}'s curve. Pass start= values for "
                    f"{', '.join(self.parameters or self.parameter_args)}.") from None
            warnings.warn(
                f"{self.name}'s starting-value fit did not converge on these data ({exc}); using its first guesses "
                f"{finite} for those parameters. Pass start= values if the fit struggles.", DataWarning, stacklevel=2)
            vals = {k: finite.get(k, np.nan) for k in self.parameter_args}
        names = self.parameters or self.parameter_args
        return {n: vals[k] for n, k in zip(names, self.parameter_args)}

    def rationale(self, parameter: str) -> str:
        """What the parameter means, for the sentence that explains its prior.

        Parameters
        ----------
        parameter : str
            R's parameter name, or the user's name when the shape is bound.

        Examples
        --------
        >>> SELF_STARTS["SSlogis"].rationale("xmid")
        'xmid is the value of input at which the curve reaches half of its asymptote Asym (the inflection point)'
        """
        meanings = dict(self.meanings)
        names = list(self.parameters or self.parameter_args)
        if parameter in names:
            key = self.parameter_args[names.index(parameter)]
        elif parameter in meanings:
            key = parameter
        else:
            raise SpecificationError(f"{parameter!r} is not a parameter of {self.name}.{closest(parameter, names)} "
                                     f"Its parameters are: {', '.join(names)}.")
        covs = self.columns or self.covariate_args
        return self._fill(f"{{{key}}} {meanings[key]}", covs, names)


def _ss(name, covs, pars, template, min_distinct, meanings, algorithm) -> SelfStart:
    return SelfStart(name, tuple(covs), tuple(pars), template, min_distinct, tuple(meanings.items()), algorithm)


SELF_STARTS: dict[str, SelfStart] = {s.name: s for s in [
    _ss("SSlogis", ["input"], ["Asym", "xmid", "scal"],
        "{Asym} / (1 + exp(({xmid} - {input}) / {scal}))", 4,
        {"Asym": "is the upper asymptote: the value the curve approaches as {input} grows",
         "xmid": "is the value of {input} at which the curve reaches half of its asymptote {Asym} (the inflection "
                 "point)",
         "scal": "is the scale of {input}: the curve rises from 27% to 73% of {Asym} between {xmid} - {scal} and "
                 "{xmid} + {scal}"},
        _init_logis),
    _ss("SSfpl", ["input"], ["A", "B", "xmid", "scal"],
        "{A} + ({B} - {A}) / (1 + exp(({xmid} - {input}) / {scal}))", 5,
        {"A": "is the left asymptote: the value of the curve as {input} goes to minus infinity",
         "B": "is the right asymptote: the value of the curve as {input} grows",
         "xmid": "is the value of {input} at which the curve is half-way between {A} and {B} (the inflection point)",
         "scal": "is the scale of {input}: the curve covers the middle 46% of its rise between {xmid} - {scal} and "
                 "{xmid} + {scal}"},
        _init_fpl),
    _ss("SSasymp", ["input"], ["Asym", "R0", "lrc"],
        "{Asym} + ({R0} - {Asym}) * exp(-exp({lrc}) * {input})", 3,
        {"Asym": "is the horizontal asymptote: the value the curve approaches as {input} grows",
         "R0": "is the value of the curve at {input} = 0",
         "lrc": "is the natural log of the rate constant: the curve closes half of its remaining distance to "
                "{Asym} every log(2) / exp({lrc}) units of {input}"},
        _init_asymp),
    _ss("SSasympOrig", ["input"], ["Asym", "lrc"],
        "{Asym} * (1 - exp(-exp({lrc}) * {input}))", 3,
        {"Asym": "is the horizontal asymptote: the value the curve approaches as {input} grows (it starts at 0 "
                 "at {input} = 0)",
         "lrc": "is the natural log of the rate constant: the half-life in {input} is log(2) / exp({lrc})"},
        _init_asymp_orig),
    _ss("SSasympOff", ["input"], ["Asym", "lrc", "c0"],
        "{Asym} * (1 - exp(-exp({lrc}) * ({input} - {c0})))", 4,
        {"Asym": "is the horizontal asymptote: the value the curve approaches as {input} grows",
         "lrc": "is the natural log of the rate constant: the half-life in {input} is log(2) / exp({lrc})",
         "c0": "is the value of {input} at which the curve is 0 (the offset)"},
        _init_asymp_off),
    _ss("SSmicmen", ["input"], ["Vm", "K"],
        "{Vm} * {input} / ({K} + {input})", 3,
        {"Vm": "is the maximum value (the asymptote as {input} grows)",
         "K": "is the value of {input} at which the curve reaches half of {Vm} (the half-saturation constant)"},
        _init_micmen),
    _ss("SSgompertz", ["x"], ["Asym", "b2", "b3"],
        "{Asym} * exp(-{b2} * {b3} ** {x})", 4,
        {"Asym": "is the upper asymptote: the value the curve approaches as {x} grows (for 0 < {b3} < 1)",
         "b2": "sets the value at {x} = 0: the curve is {Asym} * exp(-{b2}) there",
         "b3": "is the rate: the curve's distance to log({Asym}) shrinks by the factor {b3} per unit of {x}"},
        _init_gompertz),
    _ss("SSweibull", ["x"], ["Asym", "Drop", "lrc", "pwr"],
        "{Asym} - {Drop} * exp(-exp({lrc}) * {x} ** {pwr})", 5,
        {"Asym": "is the horizontal asymptote: the value the curve approaches as {x} grows",
         "Drop": "is the difference between the asymptote and the value at {x} = 0",
         "lrc": "is the natural log of the rate constant",
         "pwr": "is the power to which {x} is raised (the shape of the rise)"},
        _init_weibull),
    _ss("SSfol", ["Dose", "input"], ["lKe", "lKa", "lCl"],
        "{Dose} * exp({lKe} + {lKa} - {lCl}) * (exp(-exp({lKe}) * {input}) - exp(-exp({lKa}) * {input})) "
        "/ (exp({lKa}) - exp({lKe}))", 4,
        {"lKe": "is the log elimination rate constant: the elimination half-life in {input} is log(2) / exp({lKe})",
         "lKa": "is the log absorption rate constant: the absorption half-life in {input} is log(2) / exp({lKa})",
         "lCl": "is the log clearance: {Dose} / exp({lCl}) is the area under the concentration curve"},
        _init_fol),
    _ss("SSbiexp", ["input"], ["A1", "lrc1", "A2", "lrc2"],
        "{A1} * exp(-exp({lrc1}) * {input}) + {A2} * exp(-exp({lrc2}) * {input})", 5,
        {"A1": "is the coefficient of the fast-decaying exponential (its value at {input} = 0)",
         "lrc1": "is the natural log of the rate constant of the fast exponential (the larger rate)",
         "A2": "is the coefficient of the slow-decaying exponential (its value at {input} = 0)",
         "lrc2": "is the natural log of the rate constant of the slow exponential"},
        _init_biexp),
]}


def expand_self_start(rhs: str, columns) -> tuple[str, tuple[str, ...], SelfStart | None, tuple[str, ...]]:
    """Expand a right-hand side that is one self-starting call into its expression.

    Parameters
    ----------
    rhs : str
        The right-hand side of the formula, e.g. ``"SSlogis(age, Asym, xmid, scal)"``; arguments by
        position or by R's argument names (``SSlogis(input = age, Asym = A, xmid = m, scal = s)``).
    columns : iterable of str
        The data columns (the inputs must be columns; the parameters must not be).

    Returns
    -------
    tuple
        ``(expression text, parameter names as the user wrote them, the bound SelfStart, covariate
        column names)`` when the whole ``rhs`` is one ``SSxxx(...)`` call, else ``(rhs, (), None, ())``.

    Raises
    ------
    FormulaError
        An unknown ``SS`` shape, wrong arguments, an input that is not a column.

    Examples
    --------
    >>> text, params, ss, covs = expand_self_start("SSlogis(age, Asym, xmid, scal)", ["age", "circumference"])
    >>> text, params, ss.name, covs
    ('Asym / (1 + exp((xmid - age) / scal))', ('Asym', 'xmid', 'scal'), 'SSlogis', ('age',))
    >>> expand_self_start("a * exp(-b * t)", ["t"])
    ('a * exp(-b * t)', (), None, ())
    """
    columns = [str(c) for c in columns]
    try:
        tree = ast.parse(" ".join(str(rhs).split()), mode="eval")
    except SyntaxError:
        return rhs, (), None, ()
    call = tree.body
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id.startswith("SS")):
        return rhs, (), None, ()
    name = call.func.id
    if name not in SELF_STARTS:
        raise FormulaError(f"{name!r} is not a self-starting shape.{closest(name, SELF_STARTS)} Available: "
                           f"{', '.join(SELF_STARTS)}.")
    ss = SELF_STARTS[name]
    argn = list(ss.covariate_args + ss.parameter_args)
    if len(call.args) > len(argn) or any(isinstance(a, ast.Starred) for a in call.args):
        raise FormulaError(f"{rhs!r}: {ss.signature()} takes {len(argn)} arguments, got {len(call.args)}.")
    given: dict[str, ast.AST] = dict(zip(argn, call.args))
    for kw in call.keywords:
        if kw.arg is None or kw.arg not in argn:
            raise FormulaError(f"{rhs!r}: {kw.arg!r} is not an argument of {ss.signature()}."
                               f"{closest(str(kw.arg), argn)}")
        if kw.arg in given:
            raise FormulaError(f"{rhs!r}: the argument {kw.arg!r} of {ss.signature()} is given twice.")
        given[kw.arg] = kw.value
    missing = [a for a in argn if a not in given]
    if missing:
        raise FormulaError(f"{rhs!r}: {ss.signature()} is missing the argument(s) {', '.join(missing)}.")
    names = {}
    for a in argn:
        node = given[a]
        if not isinstance(node, ast.Name):
            kind = "input" if a in ss.covariate_args else "parameter"
            fix = ("add a column with these values (e.g. data['x'] = ...) and pass its name" if kind == "input"
                   else "pass a plain name")
            raise FormulaError(f"{rhs!r}: the {kind} {a!r} of {name} must be a name, got {ast.unparse(node)!r}; "
                               f"{fix}.")
        names[a] = node.id
    covs = tuple(names[a] for a in ss.covariate_args)
    params = tuple(names[a] for a in ss.parameter_args)
    for a, c in zip(ss.covariate_args, covs):
        if c not in columns:
            raise FormulaError(f"{rhs!r}: the input {a!r} of {name} is {c!r}, which is not a data column."
                               f"{closest(c, columns)} Available columns: {', '.join(columns)}.")
    for p in params:
        if p in columns:
            raise SpecificationError(f"{rhs!r}: the parameter {p!r} of {name} has the name of a data column; give "
                                     "the parameter another name.")
    dup = [p for p in dict.fromkeys(params) if params.count(p) > 1]
    if dup:
        raise FormulaError(f"{rhs!r}: the parameter name(s) {', '.join(map(repr, dup))} are used twice in {name}; "
                           "give every parameter its own name.")
    bound = replace(ss, parameters=params, columns=covs)
    return ss.expression(covs, params), params, bound, covs


# ----------------------------------------------------------------------------------------------------
# population nonlinear least squares


@dataclass(frozen=True)
class NlsResult:
    """A population-level nonlinear least-squares fit (R's ``nls``).

    Attributes
    ----------
    parameters : tuple of str
    estimates, standard_errors : dict
        Parameter -> estimate and its asymptotic standard error (as ``summary(nls)``).
    residual_sd : float
        ``sqrt(rss / (n - p))`` (R's ``sigma``).
    rss : float
    n, df : int
        Observations, and residual degrees of freedom ``n - p``.
    cov : numpy.ndarray
        Asymptotic covariance of the estimates, ``residual_sd**2 * inv(J'J)``.
    converged : bool
    message : str
    nfev : int
        Function evaluations used.
    """

    parameters: tuple[str, ...]
    estimates: dict
    standard_errors: dict
    residual_sd: float
    rss: float
    n: int
    df: int
    cov: np.ndarray = field(repr=False, compare=False)
    converged: bool = True
    message: str = ""
    nfev: int = 0


def _values_text(start: Mapping[str, float]) -> str:
    return ", ".join(f"{k} = {float(v):.4g}" for k, v in start.items())


def nls_start(expr, data: Mapping[str, np.ndarray], y, start: Mapping[str, float], labels=None) -> NlsResult:
    """Population-level nonlinear least squares from ``start``, with the exact Jacobian.

    Parameters
    ----------
    expr : NonlinearExpression
    data : mapping
        Covariate column -> values (n,).
    y : array
        The response (n,).
    start : mapping
        Parameter -> starting value, for every parameter of ``expr``.
    labels : sequence, optional
        Row labels for messages (default 0..n-1).

    Returns
    -------
    NlsResult

    Raises
    ------
    DataError
        The expression or its gradient is not finite at the start values (the rows are named), or the
        response is not finite.
    SpecificationError
        A start value is missing, the fit did not converge, or the gradient is singular at the solution
        (the message says what to pass).

    Examples
    --------
    >>> import hmodels as hm
    >>> from hmodels.nonlinear import parse_expression
    >>> d = hm.datasets.load("orange")
    >>> e = parse_expression("Asym / (1 + exp((xmid - age) / scal))", d.columns, ["Asym", "xmid", "scal"])
    >>> r = nls_start(e, {"age": d["age"].to_numpy(float)}, d["circumference"].to_numpy(float),
    ...               {"Asym": 170.0, "xmid": 600.0, "scal": 300.0})
    >>> {k: round(v, 2) for k, v in r.estimates.items()}, round(r.residual_sd, 3)
    ({'Asym': 192.69, 'xmid': 728.76, 'scal': 353.53}, 23.372)
    """
    params = list(expr.parameters)
    missing = [p for p in params if p not in start]
    if missing:
        raise SpecificationError(f"Starting values are missing for {', '.join(map(repr, missing))}: pass "
                                 f"start={{{', '.join(f'{p!r}: ...' for p in params)}}}.")
    y = np.asarray(y, dtype=float).ravel()
    n = y.size
    labels = np.arange(n) if labels is None else np.asarray(labels)
    if not np.all(np.isfinite(y)):
        raise DataError(f"The response is not finite in {row_labels(labels, ~np.isfinite(y))}; remove those rows.")
    covs = {c: np.asarray(data[c], dtype=float) for c in expr.covariates}
    p = len(params)
    if n <= p:
        raise DataError(f"Nonlinear least squares needs more observations ({n}) than parameters ({p}).")

    def env(theta):
        return {**covs, **{k: float(v) for k, v in zip(params, theta)}}

    def resid(theta):
        return y - np.broadcast_to(np.asarray(expr.evaluate(env(theta)), dtype=float), (n,))

    def jac(theta):
        g = expr.gradient(env(theta))
        J = -np.column_stack([np.broadcast_to(g[k], (n,)) for k in params])
        # 0 * inf at removable singularities (x ** pwr * log(x) at x = 0): the limit is 0
        return np.where(np.isfinite(J), J, 0.0)

    theta0 = np.array([float(start[k]) for k in params])
    r0 = resid(theta0)
    bad = ~np.isfinite(r0)
    if bad.any():
        raise DataError(
            f"The nonlinear expression {expr.text!r} is not finite at the starting values ({_values_text(start)}) "
            f"in {row_labels(labels, bad)}: check those rows (a division by 0, the log of a non-positive value) or "
            "pass other starting values with start={...}.")
    g0 = expr.gradient(env(theta0))
    badg = ~np.all([np.isfinite(np.broadcast_to(g0[k], (n,))) for k in params], axis=0)
    if badg.all():
        raise DataError(f"The derivatives of {expr.text!r} are not finite at the starting values "
                        f"({_values_text(start)}) in any row; pass other starting values with start={{...}}.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = optimize.least_squares(resid, theta0, jac=jac, method="trf", x_scale="jac",
                                     xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=200 * (p + 1))
    est = dict(zip(params, map(float, res.x)))
    if res.status <= 0 or not np.all(np.isfinite(res.x)) or not np.all(np.isfinite(res.fun)):
        raise SpecificationError(
            f"Nonlinear least squares of {expr.text!r} did not converge from ({_values_text(start)}) "
            f"({res.message}; last values {_values_text(est)}): pass better starting values with start={{...}} or "
            "priors for the parameters.")
    J = jac(res.x)
    rss = float(res.fun @ res.fun)
    df = n - p
    sigma = float(np.sqrt(rss / df))
    JtJ = J.T @ J
    if np.linalg.matrix_rank(JtJ, tol=np.finfo(float).eps ** 0.5 * np.abs(JtJ).max()) < p:
        _u, _s, vt = np.linalg.svd(J, full_matrices=False)
        involved = [params[i] for i in np.flatnonzero(np.abs(vt[-1]) > 0.1)]
        raise SpecificationError(
            f"Nonlinear least squares of {expr.text!r} stopped at a singular gradient ({_values_text(est)}): the "
            f"parameters {', '.join(involved)} are not identified separately by the population curve. Fix one of "
            "them, reparameterise, or give them informative priors.")
    cov = np.linalg.inv(JtJ) * sigma**2
    se = dict(zip(params, map(float, np.sqrt(np.diag(cov)))))
    return NlsResult(tuple(params), est, se, sigma, rss, n, df, cov, True, str(res.message), int(res.nfev))

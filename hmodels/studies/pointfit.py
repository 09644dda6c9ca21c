r"""Point fits: REML / ML for linear mixed models and Laplace ML for GLMMs, as lme4 computes them.

Linear mixed models (gaussian, identity link) follow lme4's profiled deviance (Bates et al. 2015):
the group effects are ``b = Lambda(theta) u`` with ``u ~ N(0, sigma^2 I)``, where ``Lambda`` is
block-diagonal with one lower-triangular relative covariance factor ``T_f`` per grouping factor
(repeated for each level). For a given ``theta`` the penalised least-squares problem is solved by
two Cholesky factorisations,

.. math::

    L L^T = \Lambda^T Z^T Z \Lambda + I, \quad R_X R_X^T = X^T X - R_{ZX}^T R_{ZX}, \quad
    R_{ZX} = L^{-1} \Lambda^T Z^T X,

and the coefficients and sigma are profiled out:

.. math::

    d_{ML}(\theta) = \log|L|^2 + n \left(1 + \log \frac{2 \pi r^2(\theta)}{n}\right), \quad
    d_{REML}(\theta) = \log|L|^2 + \log|R_X|^2 + (n - p)\left(1 + \log \frac{2 \pi r^2(\theta)}{n - p}\right)

with ``r^2`` the penalised residual sum of squares. ``theta`` (diagonal of each ``T_f`` >= 0) is
found by L-BFGS-B (:func:`scipy.optimize.minimize`), polished by Nelder-Mead. Dense matrices are
used (fine up to a few thousand rows and a few hundred group effects). Known standard errors
(``y | se(s)``) fix the residual variance: rows are weighted and sigma is not profiled.

GLMMs (bernoulli / binomial with the logit link, poisson with the log link) use the Laplace
approximation of lme4's ``glmer`` (``nAGQ = 1``): for given ``(theta, beta)`` the conditional mode
of ``u`` is found by penalised Newton iterations, and

.. math::

    d(\theta, \beta) = -2 \log p(y \mid \hat u) + \hat u^T \hat u + \log|L|^2,
    \quad L L^T = \Lambda^T Z^T W Z \Lambda + I,

is minimised over ``theta`` and ``beta`` together. Standard errors of the coefficients come from
the numerical Hessian of this deviance (as ``vcov`` of lme4 with ``use.hessian = TRUE``); those of
variance components from the numerical Hessian of the (restricted) deviance over SDs,
correlations and sigma (Wald; not available from lme4, and unreliable near a boundary).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import linalg, optimize, special

from ..errors import SpecificationError
from ._dask import quiet
from .params import parameter_labels

__all__ = ["PointFit", "optimize_model", "point_fit", "compare_estimates", "SINGULAR_TOL", "MAX_DENSE"]

#: A fit is singular when a diagonal element of a relative covariance factor is below this (lme4's ``isSingular``).
SINGULAR_TOL = 1e-4
#: Largest number of entries (rows x group effects) of the dense Z matrix; beyond it use a Bayesian fit.
MAX_DENSE = 50_000_000
CRITERIA = ("reml", "ml")
_LAPLACE = {("bernoulli", "logit"), ("binomial", "logit"), ("poisson", "log")}


# ------------------------------------------------------------------------------------------------
# the random-effects structure: theta <-> Lambda, SDs and correlations
# ------------------------------------------------------------------------------------------------
class _Structure:
    """Z (dense), the theta layout of lme4 and the map theta -> Lambda for one design."""

    def __init__(self, design):
        n = design.n
        self.factors = design.factors
        self.offsets, q = [], 0
        for f in design.factors:
            self.offsets.append(q)
            q += f.n_levels * len(f.terms)
        self.q = q
        if n * max(q, 1) > MAX_DENSE:
            raise SpecificationError(
                f"This model has {n} rows and {q} group effects: too large for the dense point fit "
                f"({n * q:,} entries > {MAX_DENSE:,}). Fit it with model.fit() instead."
            )
        Z = np.zeros((n, q))
        rows = np.arange(n)
        for f, off in zip(design.factors, self.offsets):
            k = len(f.terms)
            for j in range(k):
                Z[rows, off + f.codes * k + j] = f.Z[:, j]
        self.Z = Z
        # theta: per factor, per block, lower triangle column by column (lme4's order within a factor)
        self.tpos: list[list[tuple[int, int]]] = []  # per factor: (row, col) of each theta element in T_f
        lower, t = [], 0
        self.theta_index = []
        for f in design.factors:
            pos = []
            for block, cor in zip(f.blocks, f.correlated):
                if cor:
                    for jc in range(len(block)):
                        for ir in range(jc, len(block)):
                            pos.append((block[ir], block[jc]))
                else:
                    pos.extend((b, b) for b in block)
            self.tpos.append(pos)
            self.theta_index.append(list(range(t, t + len(pos))))
            lower.extend(0.0 if r == c else -np.inf for r, c in pos)
            t += len(pos)
        self.n_theta = t
        self.lower = np.array(lower)
        # Lambda's non-zeros: for every level of every factor, each theta element's (row, col) in Lambda
        li, lj, lt = [], [], []
        for fi, (f, off) in enumerate(zip(design.factors, self.offsets)):
            k = len(f.terms)
            base = off + np.arange(f.n_levels) * k
            for e, (r, c) in zip(self.theta_index[fi], self.tpos[fi]):
                li.append(base + r)
                lj.append(base + c)
                lt.append(np.full(f.n_levels, e))
        self._li = np.concatenate(li) if li else np.zeros(0, int)
        self._lj = np.concatenate(lj) if lj else np.zeros(0, int)
        self._lt = np.concatenate(lt) if lt else np.zeros(0, int)

    def start(self) -> np.ndarray:
        """lme4's starting point: identity relative covariance factors."""
        return np.where(np.isfinite(self.lower), 1.0, 0.0)

    def Lambda(self, theta: np.ndarray) -> np.ndarray:
        L = np.zeros((self.q, self.q))
        L[self._li, self._lj] = theta[self._lt]
        return L

    def right(self, A: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """``A @ Lambda`` without forming Lambda: per factor, each level's columns times ``T_f`` (O(r q k))."""
        out = np.empty_like(A)
        for fi, (f, off) in enumerate(zip(self.factors, self.offsets)):
            k, L = len(f.terms), f.n_levels
            blk = A[:, off:off + L * k].reshape(A.shape[0], L, k)
            out[:, off:off + L * k] = (blk @ self.T(theta, fi)).reshape(A.shape[0], L * k)
        return out

    def left_t(self, B: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """``Lambda.T @ B`` without forming Lambda."""
        B2 = B.reshape(B.shape[0], -1)
        out = np.empty_like(B2)
        for fi, (f, off) in enumerate(zip(self.factors, self.offsets)):
            k, L = len(f.terms), f.n_levels
            blk = B2[off:off + L * k].reshape(L, k, B2.shape[1])
            out[off:off + L * k] = np.einsum("ij,lic->ljc", self.T(theta, fi), blk).reshape(L * k, B2.shape[1])
        return out.reshape(B.shape)

    def T(self, theta: np.ndarray, fi: int) -> np.ndarray:
        k = len(self.factors[fi].terms)
        T = np.zeros((k, k))
        for e, (r, c) in zip(self.theta_index[fi], self.tpos[fi]):
            T[r, c] = theta[e]
        return T

    def natural(self, theta: np.ndarray, sigma: float) -> tuple[dict, dict]:
        """Per factor: SDs (k,) and the correlation matrix (k, k), from theta and sigma."""
        sds, cors = {}, {}
        for fi, f in enumerate(self.factors):
            T = self.T(theta, fi)
            S = sigma**2 * (T @ T.T)
            sd = np.sqrt(np.clip(np.diag(S), 0.0, None))
            with np.errstate(invalid="ignore", divide="ignore"):
                R = S / np.outer(sd, sd)
            R[~np.isfinite(R)] = 0.0
            np.fill_diagonal(R, 1.0)
            sds[f.factor], cors[f.factor] = sd, R
        return sds, cors

    def theta_from_natural(self, sds: dict, cors: dict, sigma: float) -> np.ndarray | None:
        """theta from SDs and correlations (None when a covariance block is not positive definite)."""
        theta = np.zeros(self.n_theta)
        for fi, f in enumerate(self.factors):
            S = np.outer(sds[f.factor], sds[f.factor]) * cors[f.factor] / sigma**2
            for block, cor in zip(f.blocks, f.correlated):
                idx = np.asarray(block)
                if cor:
                    try:
                        C = np.linalg.cholesky(S[np.ix_(idx, idx)])
                    except np.linalg.LinAlgError:
                        return None
                    for e, (r, c) in zip(self.theta_index[fi], self.tpos[fi]):
                        if r in block and c in block:
                            theta[e] = C[block.index(r), block.index(c)]
                else:
                    for e, (r, c) in zip(self.theta_index[fi], self.tpos[fi]):
                        if r == c and r in block:
                            theta[e] = math.sqrt(max(S[r, r], 0.0))
        return theta

    def singular(self, theta: np.ndarray) -> bool:
        diag = np.isfinite(self.lower)
        return bool(np.any(theta[diag] < SINGULAR_TOL))


# ------------------------------------------------------------------------------------------------
# linear mixed models
# ------------------------------------------------------------------------------------------------
class _LMM:
    """lme4's profiled (restricted) deviance of a gaussian linear mixed model, for dense matrices."""

    def __init__(self, design, reml: bool):
        self.s = _Structure(design)
        self.reml = reml
        y = np.asarray(design.y, dtype=float)
        if getattr(design, "offset", None) is not None:  # an offset is a known part of the mean
            y = y - design.offset
        X = np.asarray(design.X, dtype=float)
        self.known = design.se is not None
        w = 1.0 / np.asarray(design.se, dtype=float) ** 2 if self.known else np.ones(len(y))
        self.sum_log_w = float(np.log(w).sum())
        sw = np.sqrt(w)
        # an exact reparameterisation: coefficients relative to the least-squares fit, so that the
        # penalised residual sum of squares never subtracts two large numbers
        self.bref = np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)[0] if X.shape[1] else np.zeros(0)
        yr = (y - X @ self.bref) * sw
        Xw, Zw = X * sw[:, None], self.s.Z * sw[:, None]
        self.n, self.p = X.shape
        self.ZtZ, self.ZtX, self.XtX = Zw.T @ Zw, Zw.T @ Xw, Xw.T @ Xw
        self.Zty, self.Xty, self.yty = Zw.T @ yr, Xw.T @ yr, float(yr @ yr)
        self.nfev = 0

    def solve(self, theta: np.ndarray) -> dict:
        """The penalised least-squares solution at theta (factors, coefficients, PRSS)."""
        st = self.s
        if st.q == 0:  # no grouping factors: least squares
            L, cu, RZX = np.zeros((0, 0)), np.zeros(0), np.zeros((0, self.p))
        else:
            M = st.left_t(st.right(self.ZtZ, theta), theta)
            M[np.diag_indices_from(M)] += 1.0
            L = linalg.cholesky(M, lower=True, check_finite=False)
            cu = linalg.solve_triangular(L, st.left_t(self.Zty, theta), lower=True, check_finite=False)
            RZX = linalg.solve_triangular(L, st.left_t(self.ZtX, theta), lower=True, check_finite=False)
        A = self.XtX - RZX.T @ RZX
        if self.p:
            RX = linalg.cholesky(A, lower=True, check_finite=False)
            cb = linalg.solve_triangular(RX, self.Xty - RZX.T @ cu, lower=True, check_finite=False)
            beta_r = linalg.solve_triangular(RX.T, cb, lower=False, check_finite=False)
        else:
            RX, cb, beta_r = np.zeros((0, 0)), np.zeros(0), np.zeros(0)
        prss = max(self.yty - cu @ cu - cb @ cb, 1e-300)
        return {"L": L, "RX": RX, "RZX": RZX, "cu": cu, "beta_r": beta_r, "prss": prss, "theta": theta,
                "logdetL": 2 * np.log(np.diag(L)).sum(),
                "logdetRX": 2 * np.log(np.diag(RX)).sum() if self.p else 0.0}

    @property
    def dof(self) -> int:
        return self.n - self.p if self.reml else self.n

    def deviance(self, theta: np.ndarray) -> float:
        """The profiled criterion (REML criterion or -2 log-likelihood) at theta."""
        self.nfev += 1
        try:
            s = self.solve(theta)
        except (np.linalg.LinAlgError, linalg.LinAlgError):
            return np.inf
        return self._dev(s, None)

    def _dev(self, s: dict, sigma: float | None) -> float:
        d = s["logdetL"] + (s["logdetRX"] if self.reml else 0.0)
        m = self.dof
        if self.known:  # residual variance known: nothing to profile
            return float(d + s["prss"] + m * math.log(2 * math.pi) - self.sum_log_w)
        if sigma is None:  # profiled
            return float(d + m * (1.0 + math.log(2 * math.pi * s["prss"] / m)))
        return float(d + s["prss"] / sigma**2 + m * math.log(2 * math.pi * sigma**2))

    def sigma(self, s: dict) -> float:
        return 1.0 if self.known else math.sqrt(s["prss"] / self.dof)

    def deviance_natural(self, phi: np.ndarray) -> float:
        """The unprofiled criterion at SDs, correlations (and sigma): for standard errors."""
        sds, cors, sigma = self._unpack(phi)
        theta = self.s.theta_from_natural(sds, cors, sigma)
        if theta is None or sigma <= 0 or any(np.any(v < 0) for v in sds.values()):
            return np.nan
        try:
            s = self.solve(theta)
        except (np.linalg.LinAlgError, linalg.LinAlgError):
            return np.nan
        return self._dev(s, None if self.known else sigma)

    def _unpack(self, phi):
        sds, cors, i = _sds_and_cors(self.s.factors, phi)
        sigma = 1.0 if self.known else float(phi[i])
        return sds, cors, sigma


def _sds_and_cors(factors, values) -> tuple[dict, dict, int]:
    """SDs per factor, then correlation matrices per factor, read in order from ``values``.

    Returns ``(sds, cors, i)``: ``i`` is the position of the first value not read (sigma, if any).
    """
    sds, cors, i = {}, {}, 0
    for f in factors:
        k = len(f.terms)
        sds[f.factor] = np.asarray(values[i:i + k], dtype=float)
        i += k
    for f in factors:
        R = np.eye(len(f.terms))
        for block, cor in zip(f.blocks, f.correlated):
            if cor:
                for a in range(len(block)):
                    for b in range(a + 1, len(block)):
                        R[block[a], block[b]] = R[block[b], block[a]] = values[i]
                        i += 1
        cors[f.factor] = R
    return sds, cors, i


def _lam_times(structure, theta: np.ndarray, u: np.ndarray) -> np.ndarray:
    """``Lambda @ u``: per factor and level, ``T_f`` times the level's spherical effects."""
    b = np.empty_like(u)
    for fi, (f, off) in enumerate(zip(structure.factors, structure.offsets)):
        k, L = len(f.terms), f.n_levels
        b[off:off + L * k] = (u[off:off + L * k].reshape(L, k) @ structure.T(theta, fi).T).ravel()
    return b


def _natural_vector(structure, sds: dict, cors: dict, sigma: float | None) -> np.ndarray:
    """SDs (factor by factor), then correlations, then sigma: the order of the variance table."""
    v = [x for f in structure.factors for x in sds[f.factor]]
    for f in structure.factors:
        for block, cor in zip(f.blocks, f.correlated):
            if cor:
                for a in range(len(block)):
                    for b in range(a + 1, len(block)):
                        v.append(cors[f.factor][block[a], block[b]])
    if sigma is not None:
        v.append(sigma)
    return np.asarray(v, dtype=float)


def _minimise(fun, x0: np.ndarray, lower: np.ndarray, polish: bool = True) -> tuple[np.ndarray, dict]:
    """L-BFGS-B within the bounds, out of boundary traps, then (``polish``) a bounded Nelder-Mead polish.

    A relative covariance factor enters the deviance through ``T T'`` only, so at ``theta_i = 0`` the
    derivative along ``theta_i`` vanishes: L-BFGS-B, once a step lands on the bound, stops there
    although the optimum is inside (it did in 4 of 8 simulated cluster trials). Every diagonal
    element found at its bound is therefore probed at positive values, and the search restarted
    from a better point when one exists (at most three times).
    """
    bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]
    diag = np.flatnonzero(np.isfinite(lower))
    opts = {"ftol": 1e-15, "gtol": 1e-9, "maxiter": 2000, "maxfun": 20000}
    nfev = nit = 0
    x = np.asarray(x0, dtype=float)
    with quiet():
        for _ in range(4):
            r1 = optimize.minimize(fun, x, method="L-BFGS-B", bounds=bounds, options=opts)
            nfev, nit = nfev + r1.nfev, nit + r1.nit
            x, fx = np.asarray(r1.x, dtype=float), float(r1.fun)
            at_bound = [i for i in diag if x[i] <= 1e-6]
            better = None
            for i in at_bound:
                for v in (0.05, 0.3, 1.0):
                    probe = x.copy()
                    probe[i] = v
                    fp = fun(probe)
                    nfev += 1
                    if fp < fx - 1e-10 * (1 + abs(fx)) and (better is None or fp < better[1]):
                        better = (probe, fp)
            if better is None:
                break
            x = better[0]
    report = {"optimizer": "L-BFGS-B (scipy.optimize.minimize)", "converged": bool(r1.success and np.isfinite(fx)),
              "message": f"L-BFGS-B: {_msg(r1.message)}", "n_evaluations": int(nfev), "n_iterations": int(nit),
              "criterion": fx}
    if not polish:
        return x, report
    with quiet():
        nm_bounds = [(lo if np.isfinite(lo) else None, None) for lo in lower]
        step = np.maximum(np.abs(x), 1e-2) * 0.05
        simplex = np.vstack([x] + [x + np.eye(len(x))[i] * step[i] for i in range(len(x))])
        simplex = np.maximum(simplex, np.where(np.isfinite(lower), lower, -np.inf))
        r2 = optimize.minimize(fun, x, method="Nelder-Mead", bounds=nm_bounds,
                               options={"xatol": 1e-10, "fatol": 1e-13, "maxiter": 20000, "maxfev": 40000,
                                        "initial_simplex": simplex})
    best = np.asarray(r2.x, dtype=float) if r2.fun <= fx else x
    # A flat optimum: L-BFGS-B's line search can end "ABNORMAL" and Nelder-Mead run out of evaluations while
    # chasing xatol where the criterion no longer changes in its last digits; the minimum is then found all the
    # same when the final simplex's values agree to 1e-9 (relative) and the polish improved nothing beyond that.
    fsim = np.asarray(r2.final_simplex[1], dtype=float)
    tol = 1e-9 * (1.0 + abs(float(min(r2.fun, fx))))
    flat = bool(np.all(np.isfinite(fsim))) and float(np.ptp(fsim)) <= tol and fx - float(r2.fun) <= tol
    report.update({
        "optimizer": "L-BFGS-B, polished by Nelder-Mead (scipy.optimize.minimize)",
        "converged": bool(report["converged"] or r2.success or flat) and bool(np.isfinite(min(r2.fun, fx))),
        "message": f"{report['message']}; Nelder-Mead: {_msg(r2.message)}",
        "n_evaluations": int(nfev + r2.nfev), "n_iterations": int(nit + r2.nit),
        "criterion": float(min(r2.fun, fx)),
        "polish_improvement": float(fx - r2.fun) if np.isfinite(fx) and np.isfinite(r2.fun) else np.nan,
    })
    return best, report


def _msg(m) -> str:
    return m.decode() if isinstance(m, bytes) else str(m)


def _hessian(fun, x: np.ndarray, rel: float = 1e-3) -> np.ndarray:
    """Central-difference Hessian of ``fun`` at ``x`` (NaN where a step leaves the domain)."""
    k = len(x)
    h = rel * np.maximum(np.abs(x), 0.1)
    H = np.full((k, k), np.nan)
    f0 = fun(x)
    for i in range(k):
        ei = np.zeros(k)
        ei[i] = h[i]
        H[i, i] = (fun(x + ei) - 2 * f0 + fun(x - ei)) / h[i] ** 2
        for j in range(i):
            ej = np.zeros(k)
            ej[j] = h[j]
            H[i, j] = H[j, i] = (fun(x + ei + ej) - fun(x + ei - ej) - fun(x - ei + ej) + fun(x - ei - ej)) / (
                4 * h[i] * h[j])
    return H


def _inverse_diag(H: np.ndarray, scale: float = 2.0) -> np.ndarray:
    """``sqrt(diag(scale * H^-1))`` over the rows and columns of H that are finite; NaN elsewhere."""
    se = np.full(H.shape[0], np.nan)
    ok = np.isfinite(H).all(axis=1)
    if ok.any():
        try:
            V = scale * np.linalg.inv(H[np.ix_(ok, ok)])
            with np.errstate(invalid="ignore"):
                se[ok] = np.where(np.diag(V) > 0, np.sqrt(np.diag(V)), np.nan)
        except np.linalg.LinAlgError:
            pass
    return se


def _richardson_hessian(fun, x: np.ndarray, rel: float = 1e-3) -> np.ndarray:
    """Hessian by central differences at steps h and h/2, Richardson-extrapolated (error O(h^4), as numDeriv)."""
    return (4 * _hessian(fun, x, rel / 2) - _hessian(fun, x, rel)) / 3


def _richardson_jacobian(fun, x: np.ndarray, rel: float = 1e-3) -> list[np.ndarray]:
    """d fun / d x_i (fun array-valued) by Richardson-extrapolated central differences."""
    out = []
    for i in range(len(x)):
        def d(h):
            e = np.zeros(len(x))
            e[i] = h
            return (fun(x + e) - fun(x - e)) / (2 * h)

        h = rel * max(abs(x[i]), 0.1)
        out.append((4 * d(h / 2) - d(h)) / 3)
    return out


def _satterthwaite(lmm: _LMM, theta: np.ndarray, sigma: float) -> np.ndarray:
    """Satterthwaite degrees of freedom of each coefficient, as lmerTest computes them (Kuznetsova et al. 2017).

    With ``phi = (theta, sigma)`` (theta alone when the residual SDs are known), ``C(phi)`` the
    coefficients' covariance and ``A = 2 H^-1`` the asymptotic covariance of ``phi`` from the Hessian
    ``H`` of the unprofiled (REML) deviance, coefficient ``j`` has
    ``df_j = 2 C_jj^2 / (g_j^T A g_j)`` with ``g_j = d C_jj / d phi``. NaN where ``H`` is not
    positive definite (a variance component on its boundary).
    """
    p = lmm.p
    if not p:
        return np.zeros(0)
    k = len(theta)

    def split(phi):
        return phi[:k], (1.0 if lmm.known else float(phi[k]))

    def dev(phi):
        th, sg = split(phi)
        if sg <= 0:
            return np.nan
        try:
            sol = lmm.solve(th)
        except (np.linalg.LinAlgError, linalg.LinAlgError):
            return np.nan
        return lmm._dev(sol, None if lmm.known else sg)

    def cov_diag(phi):
        th, sg = split(phi)
        sol = lmm.solve(th)
        RXinv = linalg.solve_triangular(sol["RX"], np.eye(p), lower=True)
        return sg**2 * np.einsum("ij,ij->j", RXinv, RXinv)

    phi = np.concatenate([theta, [] if lmm.known else [sigma]])
    nan = np.full(p, np.nan)
    if not len(phi):
        return nan
    try:
        H = _richardson_hessian(dev, phi)
        if not np.isfinite(H).all():
            return nan
        w = np.linalg.eigvalsh((H + H.T) / 2)
        if w.min() <= 1e-8 * max(w.max(), 1e-300):
            return nan
        A = 2 * np.linalg.inv(H)
        G = np.stack(_richardson_jacobian(cov_diag, phi), axis=0)  # (n_phi, p)
        var = cov_diag(phi)
        with np.errstate(divide="ignore"):  # a variance that does not depend on phi: infinite df (the z interval)
            return 2 * var**2 / np.einsum("ij,ik,kj->j", G, A, G)
    except (np.linalg.LinAlgError, linalg.LinAlgError):
        return nan


def _fit_lmm(design, criterion: str, polish: bool = True, component_se: bool = True) -> dict:
    lmm = _LMM(design, reml=criterion == "reml")
    s = lmm.s
    t0 = time.perf_counter()
    if s.n_theta:
        theta, report = _minimise(lmm.deviance, s.start(), s.lower, polish)
        theta = np.where(np.isfinite(s.lower), np.maximum(theta, 0.0), theta)
    else:
        theta, report = np.zeros(0), {"optimizer": "none (no variance parameters besides sigma)",
                                      "converged": True, "message": "closed form", "n_evaluations": 1,
                                      "n_iterations": 0}
    sol = lmm.solve(theta)
    dev = lmm._dev(sol, None)
    report["criterion"] = dev
    sigma = lmm.sigma(sol)
    beta = lmm.bref + sol["beta_r"]
    RXinv = linalg.solve_triangular(sol["RX"], np.eye(lmm.p), lower=True) if lmm.p else np.zeros((0, 0))
    vcov = sigma**2 * RXinv.T @ RXinv
    sds, cors = s.natural(theta, sigma)
    singular = s.singular(theta)
    # standard errors of the variance components: Hessian of the unprofiled criterion
    phi = _natural_vector(s, sds, cors, None if lmm.known else sigma)
    H = _hessian(lmm.deviance_natural, phi) if len(phi) and component_se else np.full((len(phi), len(phi)), np.nan)
    se_phi = _inverse_diag(H)
    # conditional modes of the group effects
    u = (linalg.solve_triangular(sol["L"].T, sol["cu"] - sol["RZX"] @ sol["beta_r"], lower=False) if s.q
         else np.zeros(0))
    b = _lam_times(s, theta, u)
    df = _satterthwaite(lmm, theta, sigma) if component_se else np.full(lmm.p, np.nan)
    report["seconds"] = time.perf_counter() - t0
    n_par = lmm.p + s.n_theta + (0 if lmm.known else 1)
    loglik = -0.5 * dev
    return dict(beta=beta, vcov=vcov, df=df, sds=sds, cors=cors, sigma=None if lmm.known else sigma, se_phi=se_phi,
                theta=theta, singular=singular, loglik=loglik, criterion_value=dev, n_par=n_par, report=report,
                b=b, structure=s)


# ------------------------------------------------------------------------------------------------
# GLMMs: Laplace approximation
# ------------------------------------------------------------------------------------------------
class _Laplace:
    """lme4's Laplace deviance of a bernoulli/binomial (logit) or poisson (log) GLMM."""

    def __init__(self, design):
        self.s = _Structure(design)
        self.family = design.spec.family
        self.y = np.asarray(design.y, dtype=float)
        # the optimiser works on centred, scaled columns X_s = X M (coefficients gamma, beta = M gamma): on the raw
        # columns a predictor such as x + 1e6 or x * 1e6 made the deviance so ill-conditioned that L-BFGS-B and
        # Nelder-Mead ran for many minutes (a shift or change of units of a predictor changes nothing here now)
        self.X, self.M = _standardised(np.asarray(design.X, dtype=float))
        self.n, self.p = self.X.shape
        self.offset = np.zeros(self.n) if getattr(design, "offset", None) is None else np.asarray(design.offset)
        if self.family == "poisson":
            self.trials = np.ones(self.n)
            self.const = float(-special.gammaln(self.y + 1).sum())
        else:
            self.trials = np.ones(self.n) if design.trials is None else np.asarray(design.trials, dtype=float)
            t, y = self.trials, self.y
            self.const = float((special.gammaln(t + 1) - special.gammaln(y + 1) - special.gammaln(t - y + 1)).sum())
        self._u = np.zeros(self.s.q)
        self.nfev = 0

    def _loglik(self, eta):
        if self.family == "poisson":
            mu = np.exp(eta)
            return float((self.y * eta - mu).sum() + self.const), self.y - mu, mu
        mu = special.expit(eta)
        ll = float((self.y * eta - self.trials * np.logaddexp(0.0, eta)).sum() + self.const)
        return ll, self.y - self.trials * mu, self.trials * mu * (1 - mu)

    def mode(self, theta, beta, u0=None):
        """Conditional mode of u by penalised Newton steps with step halving; (u, L, loglik)."""
        ZL = self.s.right(self.s.Z, theta)
        off = self.X @ beta + self.offset
        u = np.zeros(self.s.q) if u0 is None else u0.copy()

        def objective(u):
            ll, g, w = self._loglik(off + ZL @ u)
            return -2 * ll + u @ u, g, w

        obj, g, w = objective(u)
        for _ in range(100):
            grad = ZL.T @ g - u
            H = ZL.T @ (ZL * w[:, None])
            H[np.diag_indices_from(H)] += 1.0
            step = linalg.cho_solve(linalg.cho_factor(H, lower=True, check_finite=False), grad, check_finite=False)
            t = 1.0
            while True:
                new = objective(u + t * step)
                if new[0] <= obj + 1e-12 * abs(obj) or t < 1e-10:
                    break
                t /= 2
            u = u + t * step
            done = abs(obj - new[0]) < 1e-12 * (abs(obj) + 1) and np.max(np.abs(t * step)) < 1e-9
            obj, g, w = new
            if done:
                break
        H = ZL.T @ (ZL * w[:, None])
        H[np.diag_indices_from(H)] += 1.0
        L = linalg.cholesky(H, lower=True, check_finite=False)
        ll = self._loglik(off + ZL @ u)[0]
        return u, L, ll

    def deviance(self, x: np.ndarray) -> float:
        self.nfev += 1
        theta, beta = x[:self.s.n_theta], x[self.s.n_theta:]
        if not np.all(np.isfinite(x)):
            return np.inf
        try:
            u, L, ll = self.mode(theta, beta, self._u)
        except (np.linalg.LinAlgError, linalg.LinAlgError, FloatingPointError):
            return np.inf
        self._u = u
        return float(-2 * ll + u @ u + 2 * np.log(np.diag(L)).sum())

    def deviance_natural(self, x: np.ndarray) -> float:
        """The deviance at SDs, correlations and coefficients (for the Hessian)."""
        k = len(x) - self.p
        sds, cors, i = _sds_and_cors(self.s.factors, x)
        if any(np.any(v < 0) for v in sds.values()):
            return np.nan
        theta = self.s.theta_from_natural(sds, cors, 1.0)
        if theta is None:
            return np.nan
        return self.deviance(np.concatenate([theta, x[k:]]))

    def glm_start(self) -> np.ndarray:
        """Coefficients of the GLM without group effects (Newton), the starting point."""
        beta = np.zeros(self.p)
        for _ in range(50):
            _, g, w = self._loglik(self.X @ beta + self.offset)
            H = self.X.T @ (self.X * w[:, None]) + 1e-10 * np.eye(self.p)
            step = np.linalg.solve(H, self.X.T @ g)
            beta = beta + step
            if np.max(np.abs(step)) < 1e-10:
                break
        return beta


def _standardised(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``X_s`` and ``M`` with ``X_s = X M``: the columns of ``X`` centred and scaled for the optimiser.

    Each non-constant column is scaled to SD 1 and, when a constant column (the intercept) is present, centred
    (up to rounding); coefficients ``gamma`` of ``X_s`` are ``beta = M gamma``.

    Examples
    --------
    >>> X = np.column_stack([np.ones(4), 1e6 + np.arange(4.0)])
    >>> Xs, M = _standardised(X)
    >>> np.allclose(Xs @ np.linalg.solve(M, [2.0, 3.0]), X @ [2.0, 3.0])
    True
    """
    p = X.shape[1]
    M = np.eye(p)
    if p == 0 or X.shape[0] == 0:
        return X, M
    mean, sd = X.mean(axis=0), X.std(axis=0)
    const = np.flatnonzero((sd == 0) & (mean != 0))
    Xs = X.copy()
    for j in np.flatnonzero(sd > 0):
        M[j, j] = 1.0 / sd[j]
        if const.size:
            k = const[0]
            M[k, j] = -mean[j] / (sd[j] * mean[k])
            Xs[:, j] = (X[:, j] - mean[j]) / sd[j]
        else:
            Xs[:, j] = X[:, j] / sd[j]
    return Xs, M


def _fit_laplace(design, polish: bool = True) -> dict:
    lap = _Laplace(design)
    s = lap.s
    t0 = time.perf_counter()
    x0 = np.concatenate([s.start(), lap.glm_start()])
    lower = np.concatenate([s.lower, np.full(lap.p, -np.inf)])
    x, report = _minimise(lap.deviance, x0, lower, polish)
    theta = np.where(np.isfinite(s.lower), np.maximum(x[:s.n_theta], 0.0), x[:s.n_theta])
    beta = x[s.n_theta:]
    lap._u = np.zeros(s.q)
    dev = lap.deviance(np.concatenate([theta, beta]))
    report["criterion"] = dev
    sds, cors = s.natural(theta, 1.0)
    phi = _natural_vector(s, sds, cors, None)
    H = _hessian(lap.deviance_natural, np.concatenate([phi, beta]))
    se_all = _inverse_diag(H)
    k = len(phi)
    ok = np.isfinite(H).all(axis=1)
    vcov = np.full((lap.p, lap.p), np.nan)
    try:
        Vfull = np.full(H.shape, np.nan)
        Vfull[np.ix_(ok, ok)] = 2 * np.linalg.inv(H[np.ix_(ok, ok)])
        vcov = Vfull[k:, k:]
    except np.linalg.LinAlgError:
        pass
    u, _, _ = lap.mode(theta, beta)
    b = _lam_times(s, theta, u)
    report["seconds"] = time.perf_counter() - t0
    beta, vcov = lap.M @ beta, lap.M @ vcov @ lap.M.T  # back from the standardised columns
    return dict(beta=beta, vcov=vcov, sds=sds, cors=cors, sigma=None, se_phi=se_all[:k], theta=theta,
                singular=s.singular(theta), loglik=-0.5 * dev, criterion_value=dev, n_par=lap.p + s.n_theta,
                report=report, b=b, structure=s)


# ------------------------------------------------------------------------------------------------
# the result
# ------------------------------------------------------------------------------------------------
@dataclass
class PointFit:
    """A REML / ML / Laplace point fit, with tables whose rows match a Fit's.

    Attributes
    ----------
    criterion : str
        ``"reml"``, ``"ml"`` or ``"laplace"`` (ML by the Laplace approximation, for GLMMs).
    loglik : float
        Log restricted likelihood (REML) or log-likelihood (ML, Laplace), with every constant (as lme4).
    aic, bic : float
        ``-2 loglik + 2 k`` and ``-2 loglik + k log(n)``, ``k`` = coefficients + variance parameters.
    singular : bool
        A variance component is on its boundary (an SD of ~0 or a correlation of ±1; lme4's
        ``isSingular``): the model is over-specified for these data.
    converged : bool
    optimizer : dict
        The optimiser's report: message, evaluations, iterations, final criterion.
    theta : ndarray
        lme4's relative covariance factor parameters (same order within a factor).
    vcov : ndarray
        Covariance matrix of the coefficients.
    df : ndarray or None
        Satterthwaite degrees of freedom of each coefficient (gaussian models, as lmerTest); NaN
        where they are not available (Laplace fits, fast fits of power studies, or a variance
        component on its boundary).
    """

    spec: object
    criterion: str
    fixed_terms: list
    beta: np.ndarray
    vcov: np.ndarray
    components: pd.DataFrame
    loglik: float
    n_obs: int
    n_parameters: int
    singular: bool
    converged: bool
    optimizer: dict
    theta: np.ndarray
    group_modes: dict = field(default_factory=dict)
    df: np.ndarray | None = None

    @property
    def aic(self) -> float:
        """Akaike's information criterion."""
        return -2 * self.loglik + 2 * self.n_parameters

    @property
    def bic(self) -> float:
        """Bayesian (Schwarz) information criterion."""
        return -2 * self.loglik + self.n_parameters * math.log(self.n_obs)

    @property
    def deviance(self) -> float:
        """``-2 loglik`` (the REML criterion for REML fits, as lme4's ``REMLcrit``)."""
        return -2 * self.loglik

    def fixed_effects(self, prob: float = 0.95) -> pd.DataFrame:
        """Coefficients: estimate, se, Satterthwaite ``df`` and the interval (``lower``, ``upper``) of ``prob``.

        For gaussian models the interval is ``estimate ± t_df se`` with Satterthwaite's degrees of
        freedom (lmerTest's ``summary(fit, ddf = "Satterthwaite")``, Kuznetsova et al. 2017);
        where ``df`` is NaN (GLMMs, a variance component on its boundary) it is the Wald
        interval ``estimate ± z se``. The index is the term.

        Examples
        --------
        >>> import hmodels as hm
        >>> pf = hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy")).optimize()
        >>> pf.fixed_effects().round(2)
                   estimate    se    df   lower   upper
        term
        Intercept    251.41  6.82  17.0  237.01  265.80
        Days          10.47  1.55  17.0    7.21   13.73
        """
        from scipy.stats import norm
        from scipy.stats import t as student_t

        se = np.sqrt(np.clip(np.diag(self.vcov), 0.0, None)) if len(self.beta) else np.zeros(0)
        df = np.full(len(self.beta), np.nan) if self.df is None else np.asarray(self.df, dtype=float)
        q = np.where(np.isfinite(df), student_t.ppf(0.5 + prob / 2, np.where(np.isfinite(df), df, 1.0)),
                     norm.ppf(0.5 + prob / 2))
        t = pd.DataFrame({"estimate": self.beta, "se": se, "df": df, "lower": self.beta - q * se,
                          "upper": self.beta + q * se}, index=pd.Index(list(self.fixed_terms), name="term"))
        return t

    def variance_components(self) -> pd.DataFrame:
        """SDs, correlations and family parameters: group, term, kind, estimate, se (Wald, from the Hessian).

        Examples
        --------
        >>> import hmodels as hm
        >>> pf = hm.Model("Reaction ~ Days + (Days | Subject)", hm.datasets.load("sleepstudy")).optimize()
        >>> pf.variance_components()["estimate"].round(2)
        sd(Subject, Intercept)          24.74
        sd(Subject, Days)                5.92
        cor(Subject, Intercept:Days)     0.07
        sigma                           25.59
        Name: estimate, dtype: float64
        """
        return self.components.copy()

    def group_effects(self, factor: str) -> pd.DataFrame:
        """Conditional modes of one factor's group effects (lme4's ``ranef``): a row per level, a column per term."""
        if factor not in self.group_modes:
            raise SpecificationError(f"{factor!r} is not a grouping factor of this model; factors: "
                                     f"{', '.join(self.group_modes) or 'none'}.")
        return self.group_modes[factor].copy()

    def estimates(self) -> dict[str, float]:
        """``{label: estimate}`` for every parameter (the labels of a Fit's tables)."""
        out = {t: float(b) for t, b in zip(self.fixed_terms, self.beta)}
        out.update({k: float(v) for k, v in self.components["estimate"].items()})
        return out

    def __repr__(self) -> str:
        name = {"reml": "REML", "ml": "ML", "laplace": "ML (Laplace approximation)"}[self.criterion]
        fe = self.fixed_effects().round(4).to_string()
        vc = self.components[["estimate", "se"]].round(4).to_string()
        flags = []
        if self.singular:
            flags.append("singular fit: a variance component is on its boundary (SD ~ 0 or |cor| ~ 1)")
        if not self.converged:
            flags.append(f"the optimiser did not report convergence: {self.optimizer.get('message')}")
        note = "".join(f"\n  warning: {f}" for f in flags)
        return (f"hmodels.PointFit: {self.spec.formula}  [{name}]\n  {self.n_obs} observations; log-likelihood "
                f"{self.loglik:.3f}; AIC {self.aic:.2f}; BIC {self.bic:.2f}{note}\n\nFixed effects:\n{fe}\n\n"
                f"Variance components:\n{vc}")


def point_fit(design, criterion: str = "reml", polish: bool = True, component_se: bool = True) -> PointFit:
    """Fit a design by REML / ML (gaussian) or Laplace ML (GLMMs); see :func:`optimize_model`.

    ``polish=False`` skips the Nelder-Mead polish after L-BFGS-B, and ``component_se=False`` the
    Hessian for the variance components' standard errors (NaN then): about 3x faster, for power
    studies. (GLMM coefficients always need the Hessian for their standard errors.)
    """
    from threadpoolctl import threadpool_limits

    spec = design.spec
    crit = str(criterion).lower()
    if crit not in CRITERIA:
        raise SpecificationError(f"criterion must be 'reml' or 'ml', got {criterion!r}.")
    # one BLAS thread: the matrices are small and many; threaded BLAS on them was 60x slower on a busy
    # 2-core machine (19 s instead of 0.3 s for 150 groups x 2 terms)
    with threadpool_limits(limits=1, user_api="blas"):
        return _point_fit(design, spec, crit, polish, component_se)


def _unsupported(spec) -> str | None:
    """What in ``spec`` the point fits do not model (words), or None: they would silently fit another model."""
    if getattr(spec, "nonlinear", None) is not None:
        return "a nonlinear model (its parameters enter through the expression, not one linear predictor)"
    parts = [f"{what} ({text})" for what, text in (("weights", "weights(...)"), ("cens", "cens(...)"),
                                                   ("trunc", "trunc(...)")) if getattr(spec, what, None) is not None]
    if getattr(spec, "dpars", ()):
        parts.append(f"a formula for {', '.join(name for name, _ in spec.dpars)} (dpars=)")
    return ", ".join(parts) or None


def _point_fit(design, spec, crit: str, polish: bool, component_se: bool) -> PointFit:
    gap = _unsupported(spec)
    if gap is not None:
        raise SpecificationError(
            f"Point fits (REML / ML) do not model {gap}: they would fit the model without it and report the "
            "estimates as if it were there. Use model.fit() for this model."
        )
    if spec.family == "gaussian" and spec.link == "identity":
        r = _fit_lmm(design, crit, polish, component_se)
        kind = crit
    elif (spec.family, spec.link) in _LAPLACE:
        if crit == "reml":
            raise SpecificationError(
                f"REML is defined for gaussian models; for this {spec.family} model use criterion='ml' (maximum "
                "likelihood by the Laplace approximation, as lme4's glmer)."
            )
        if not design.factors:
            raise SpecificationError("The Laplace point fit needs at least one grouping factor.")
        r = _fit_laplace(design, polish)
        kind = "laplace"
    else:
        raise SpecificationError(
            f"Point fits are available for gaussian (identity link) models and for bernoulli/binomial (logit) and "
            f"poisson (log) GLMMs, not {spec.family} ({spec.link}). Use model.fit() for this model."
        )
    labels = [p for p in parameter_labels(design) if p.kind != "fixed"]
    sds, cors = r["sds"], r["cors"]
    est, kinds, groups, terms = [], [], [], []
    for p in labels:
        if p.kind == "sd":
            v = sds[p.group][p.index[0]]
        elif p.kind == "cor":
            v = cors[p.group][p.index]
        else:
            v = r["sigma"]
        est.append(float(v))
        kinds.append(p.kind)
        groups.append(p.group)
        terms.append(p.term)
    se = list(r["se_phi"]) + [np.nan] * (len(labels) - len(r["se_phi"]))
    comps = pd.DataFrame({"group": groups, "term": terms, "kind": kinds, "estimate": est, "se": se[:len(labels)]},
                         index=[p.label for p in labels])
    modes = {}
    s = r["structure"]
    for f, off in zip(design.factors, s.offsets):
        k = len(f.terms)
        block = r["b"][off:off + f.n_levels * k].reshape(f.n_levels, k)
        modes[f.factor] = pd.DataFrame(block, index=pd.Index(f.levels, name=f.factor), columns=list(f.terms))
    return PointFit(spec=spec, criterion=kind, fixed_terms=list(design.fixed_terms), beta=np.asarray(r["beta"]),
                    vcov=np.asarray(r["vcov"]), components=comps, loglik=float(r["loglik"]), n_obs=design.n,
                    n_parameters=int(r["n_par"]), singular=bool(r["singular"]),
                    converged=bool(r["report"]["converged"]), optimizer=r["report"], theta=np.asarray(r["theta"]),
                    group_modes=modes, df=None if r.get("df") is None else np.asarray(r["df"], dtype=float))


def optimize_model(model, criterion: str = "reml") -> PointFit:
    """Maximum (restricted) likelihood point estimates of a model, as lme4 computes them.

    Parameters
    ----------
    model : Model
    criterion : {"reml", "ml"}
        REML (default) or ML for gaussian models; GLMMs (bernoulli/binomial with logit,
        poisson with log) take ``"ml"``: the Laplace approximation of lme4's ``glmer``.

    Returns
    -------
    PointFit
        ``fixed_effects()`` and ``variance_components()`` with the row labels of a Fit's tables,
        ``loglik``, ``aic``, ``bic``, ``singular``, ``converged`` and the optimiser's report.

    Raises
    ------
    SpecificationError
        An unknown criterion, REML for a GLMM, or a family without a point fit.

    Examples
    --------
    >>> import hmodels as hm
    >>> pf = hm.Model("diameter ~ 1 + (1 | plate) + (1 | sample)", hm.datasets.load("penicillin")).optimize()
    >>> round(pf.loglik, 3), pf.singular
    (-165.43, False)
    >>> cbpp = hm.Model("p(incidence, size) ~ period + (1 | herd)", hm.datasets.load("cbpp"), family="binomial")
    >>> round(float(cbpp.optimize("ml").variance_components().loc["sd(herd, Intercept)", "estimate"]), 4)
    0.6423
    """
    return point_fit(model.design, criterion)


def compare_estimates(fit, point: PointFit, prob: float = 0.95) -> pd.DataFrame:
    """Bayesian posterior summaries and point estimates side by side, one row per parameter.

    Parameters
    ----------
    fit : Fit
    point : PointFit
        From :meth:`Model.optimize <hmodels.model.Model.optimize>` on the same model.
    prob : float
        HDI probability of the posterior interval.

    Returns
    -------
    pandas.DataFrame
        Index: the parameters' labels. Columns: ``posterior_mean``, ``posterior_sd``, ``hdi_low``,
        ``hdi_high``, ``estimate``, ``se`` (the point fit's), ``difference`` (posterior mean -
        estimate), ``in_hdi`` (the point estimate lies in the posterior interval).

    Examples
    --------
    >>> fit = model.fit(seed=1)  # doctest: +SKIP
    >>> hm.compare_estimates(fit, model.optimize("reml"))  # doctest: +SKIP
    """
    fe = fit.fixed_effects(prob)
    vc = fit.variance_components(prob)
    post = pd.concat([fe[["mean", "sd", "hdi_low", "hdi_high"]], vc[["mean", "sd", "hdi_low", "hdi_high"]]])
    post.columns = ["posterior_mean", "posterior_sd", "hdi_low", "hdi_high"]
    pt = pd.concat([point.fixed_effects()[["estimate", "se"]], point.variance_components()[["estimate", "se"]]])
    missing = [i for i in post.index if i not in pt.index]
    if missing:
        raise SpecificationError(
            "The fit and the point fit are not of the same model: the point fit has no "
            f"{', '.join(map(repr, missing))}."
        )
    out = post.join(pt, how="left")
    out["difference"] = out["posterior_mean"] - out["estimate"]
    out["in_hdi"] = (out["estimate"] >= out["hdi_low"]) & (out["estimate"] <= out["hdi_high"])
    out.index.name = "parameter"
    return out

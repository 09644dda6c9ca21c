"""Compiled (numba) log density and gradient of every model hmodels builds.

One generic function, :func:`logp_grad`, reads the model from two flat buffers — ``F``
(float64: data, cross-products, prior parameters) and ``I`` (int64: a header of offsets, level
codes, factor and block tables) — written by :mod:`hmodels.engine.layout`. Because the model is
data, not code, it is compiled once per installation (numba's on-disk cache) and reused for every
model, data set and prior: a new fit pays no compilation.

Parameterisation (the unconstrained vector ``x`` that NUTS moves in):

* population-level coefficients ``beta`` on the *centred* design (``X - mean(X)`` for every
  column but the intercept), identity transform (interval transform under a Uniform prior);
* per grouping factor: the SDs (log transform, interval under a Uniform prior), the
  correlations of each correlated block through Stan's Cholesky-factor transform of the LKJ
  (``tanh`` of canonical partial correlations), and — unless the factor is integrated out —
  the group effects, standardised (non-centred, ``z``) or not (centred, ``r``);
* family parameters ``sigma``, ``nu``, ``alpha`` (log transform).

A gaussian (identity-link) model can integrate one factor out analytically, and with it the
population-level coefficients when their priors are all Normal (see :func:`gaussian_marginal`);
with no other sampled factor the likelihood then reads only cross-products, so a gradient costs
nothing per observation.

Every gradient here is derived by hand; ``tests/test_engine.py`` checks each against central
finite differences and the log density against PyMC's for the same model.
"""

from __future__ import annotations

import math

import numba
import numba.extending
import numpy as np

# ---- header slots of the int buffer I --------------------------------------------------------------
H_N = 0  # observations
H_P = 1  # population-level columns
H_FAMILY = 2
H_LINK = 3
H_NFAC = 4  # grouping factors
H_COLLAPSED = 5  # index of the integrated-out factor, -1 for none
H_KNOWN_SE = 6
H_INTERCEPT = 7  # 0: beta on X as given; 1: centred X, prior on centred intercept; 2: centred X, prior on raw
H_INT_COL = 8  # intercept column of X, -1 for none
H_FULL = 9  # 1: collapsed and no sampled factor (cross-product path)
H_NDIM = 10
O_Y = 11  # F: outcome (n)
O_X = 12  # F: centred X (n * p, row-major)
O_XMEANS = 13  # F: column means of X (0 for the intercept) (p)
O_W = 14  # F: weights 1/se^2 (n) for known standard errors
O_TRIALS = 15  # F: binomial trials (n)
O_PRIORS = 16  # F: prior table, PW floats per row
O_FAC = 17  # I: factor table, FW ints per factor
O_BLK = 18  # I: block table, BW ints per block
X_BETA = 19  # x offset of beta
X_SIGMA = 20  # x offsets of the family parameters (-1 when absent)
X_NU = 21
X_ALPHA = 22
P_BETA = 23  # prior row of beta[0] (beta[j] uses P_BETA + j)
P_SIGMA = 24
P_NU = 25
P_ALPHA = 26
O_CROSS = 27  # F: XtWX (p*p), XtWy (p), ytWy, sum(log w)  (full collapse)
O_CONST = 28  # F: constant of the log likelihood (log factorials, binomial coefficients)
H_INTBETA = 29  # 1: the coefficients are integrated out too (gaussian, Normal priors on all of them)
O_M0 = 30  # F: prior mean of the centred coefficients (p)
O_L0 = 31  # F: Cholesky factor of their prior covariance (p * p)
HEADER = 32

# ---- factor table (FW ints per factor) ---------------------------------------------------------------
F_L = 0  # levels
F_K = 1  # terms
F_CODES = 2  # I offset of level codes (n)
F_Z = 3  # F offset of Z (n * k)
F_XSD = 4  # x offset of the k SDs
F_PSD = 5  # prior row of sd[0]
F_XEFF = 6  # x offset of the L * k effects (-1 when integrated out)
F_CENTRED = 7
F_NBLK = 8
F_BLK0 = 9  # first row of the factor's blocks in the block table
F_A = 10  # F offset of per-level Z'WZ (L * k * k), integrated-out factor
F_ZTY = 11  # F offset of per-level Z'Wy (L * k), full collapse
F_ZTX = 12  # F offset of per-level Z'WX (L * k * p), full collapse
F_ONES = 13  # 1 when Z is a single column of ones
FW = 16

# ---- block table (BW ints per block) -----------------------------------------------------------------
B_START = 0  # first term of the block
B_SIZE = 1
B_COR = 2  # 1 when correlated (LKJ)
B_XLKJ = 3  # x offset of the m(m-1)/2 unconstrained correlations
B_PLKJ = 4  # prior row of the LKJ (parameter 1 = eta, parameter 2 = log normalising constant)
BW = 6

# ---- prior table (PW floats per row) ----------------------------------------------------------------
PW = 7  # code, p1, p2, p3, transform, lower, upper
NORMAL, STUDENT_T, CAUCHY, LAPLACE, HALF_NORMAL, HALF_STUDENT_T, HALF_CAUCHY = 0, 1, 2, 3, 4, 5, 6
EXPONENTIAL, GAMMA, INVERSE_GAMMA, LOGNORMAL, UNIFORM, LKJ = 7, 8, 9, 10, 11, 12
T_IDENTITY, T_LOG, T_INTERVAL = 0, 1, 2

# ---- families and links ------------------------------------------------------------------------------
GAUSSIAN, STUDENT, BERNOULLI, BINOMIAL, POISSON, NEGBIN = 0, 1, 2, 3, 4, 5
IDENTITY, LOG, LOGIT, PROBIT, CLOGLOG = 0, 1, 2, 3, 4

LOG_2PI = math.log(2.0 * math.pi)
LOG_2 = math.log(2.0)
LOG_PI = math.log(math.pi)
SQRT_2 = math.sqrt(2.0)

jit = numba.njit(cache=True, fastmath=False, error_model="numpy")


# ---- special functions -------------------------------------------------------------------------------
@jit
def digamma(x):
    """psi(x) for x > 0 (recurrence to x >= 6, then the asymptotic series); nan otherwise."""
    if not (x > 0.0 and x < np.inf):
        return np.nan if not x == np.inf else np.inf
    result = 0.0
    while x < 6.0:
        result -= 1.0 / x
        x += 1.0
    f = 1.0 / (x * x)
    return result + math.log(x) - 0.5 / x - f * (1.0 / 12 - f * (1.0 / 120 - f * (1.0 / 252 - f * (1.0 / 240 - f / 132))))


@jit
def log1pexp(x):
    """log(1 + exp(x)) without overflow."""
    if x > 35.0:
        return x
    if x < -35.0:
        return math.exp(x)
    return math.log1p(math.exp(x))


@jit
def sigmoid(x):
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@jit
def log_ndtr_and_mills(x):
    """(log Phi(x), phi(x) / Phi(x)) accurately in both tails."""
    if x > -37.0:
        cdf = 0.5 * math.erfc(-x / SQRT_2)
        pdf = math.exp(-0.5 * x * x - 0.5 * LOG_2PI)
        return math.log(cdf), pdf / cdf
    # asymptotic (Abramowitz & Stegun 26.2.12)
    z = 1.0 / (x * x)
    series = 1.0 - z + 3.0 * z * z - 15.0 * z * z * z
    return -0.5 * x * x - 0.5 * LOG_2PI - math.log(-x) + math.log(series), -x / series


# ---- priors and transforms ---------------------------------------------------------------------------
@jit
def prior_logp(code, p1, p2, p3, v):
    """(log density, derivative) of a scalar prior at v (constrained scale)."""
    if code == NORMAL or code == HALF_NORMAL:
        t = (v - p1) / p2 if code == NORMAL else v / p1
        s = p2 if code == NORMAL else p1
        lp = -0.5 * t * t - math.log(s) - 0.5 * LOG_2PI
        if code == HALF_NORMAL:
            lp += LOG_2
        return lp, -t / s
    if code == STUDENT_T or code == HALF_STUDENT_T:
        nu = p1
        if code == STUDENT_T:
            mu, s = p2, p3
        else:
            mu, s = 0.0, p2
        t = (v - mu) / s
        lp = (math.lgamma(0.5 * (nu + 1.0)) - math.lgamma(0.5 * nu) - 0.5 * math.log(nu * math.pi) - math.log(s)
              - 0.5 * (nu + 1.0) * math.log1p(t * t / nu))
        if code == HALF_STUDENT_T:
            lp += LOG_2
        return lp, -(nu + 1.0) * t / (s * (nu + t * t))
    if code == CAUCHY or code == HALF_CAUCHY:
        if code == CAUCHY:
            mu, s = p1, p2
        else:
            mu, s = 0.0, p1
        t = (v - mu) / s
        lp = -LOG_PI - math.log(s) - math.log1p(t * t)
        if code == HALF_CAUCHY:
            lp += LOG_2
        return lp, -2.0 * t / (s * (1.0 + t * t))
    if code == LAPLACE:
        d = v - p1
        sgn = 1.0 if d > 0 else (-1.0 if d < 0 else 0.0)
        return -math.log(2.0 * p2) - abs(d) / p2, -sgn / p2
    if code == EXPONENTIAL:
        return math.log(p1) - p1 * v, -p1
    if code == GAMMA:
        return p1 * math.log(p2) - math.lgamma(p1) + (p1 - 1.0) * math.log(v) - p2 * v, (p1 - 1.0) / v - p2
    if code == INVERSE_GAMMA:
        return (p1 * math.log(p2) - math.lgamma(p1) - (p1 + 1.0) * math.log(v) - p2 / v,
                -(p1 + 1.0) / v + p2 / (v * v))
    if code == LOGNORMAL:
        lv = math.log(v)
        t = (lv - p1) / p2
        return -lv - math.log(p2) - 0.5 * LOG_2PI - 0.5 * t * t, -1.0 / v - t / (p2 * v)
    if code == UNIFORM:
        return -math.log(p2 - p1), 0.0
    return -np.inf, 0.0


@jit
def constrain(x, transform, lower, upper):
    """(value, d value / d x, log Jacobian, d log Jacobian / d x)."""
    if transform == T_LOG:
        v = math.exp(x)
        return v, v, x, 1.0
    if transform == T_INTERVAL:
        s = sigmoid(x)
        width = upper - lower
        return lower + width * s, width * s * (1.0 - s), math.log(width) - log1pexp(-x) - log1pexp(x), 1.0 - 2.0 * s
    return x, 1.0, 0.0, 0.0


@jit
def scalar_param(x, grad, ix, F, prow, jacobian):
    """Constrain x[ix] under prior row ``prow``; add the prior (and Jacobian) to grad[ix].

    Returns (value, d value / d x, log prior + log Jacobian). The caller adds the likelihood's
    derivative with respect to the value times ``d value / d x`` to ``grad[ix]``.
    """
    r = prow
    code = int(F[r])
    v, dv, lj, dlj = constrain(x[ix], int(F[r + 4]), F[r + 5], F[r + 6])
    lp, dlp = prior_logp(code, F[r + 1], F[r + 2], F[r + 3], v)
    grad[ix] += dlp * dv
    if jacobian:
        lp += lj
        grad[ix] += dlj
    return v, dv, lp


# ---- LKJ Cholesky factor ------------------------------------------------------------------------------
@jit
def lkj_forward(y, m, L, w):
    """Stan's transform: y (m(m-1)/2 reals) -> lower Cholesky factor L (m x m) of a correlation matrix.

    ``w[i, j]`` is ``1 - sum_{c<j} L[i, c]^2`` (``w[i, i] = L[i, i]^2``). Returns the log Jacobian.
    """
    lj = 0.0
    for i in range(m):
        for j in range(m):
            L[i, j] = 0.0
    L[0, 0] = 1.0
    w[0, 0] = 1.0
    k = 0
    for i in range(1, m):
        acc = 1.0
        for j in range(i):
            z = math.tanh(y[k])
            lj += math.log1p(-z * z)
            w[i, j] = acc
            if j > 0:
                lj += 0.5 * math.log(acc)
            L[i, j] = z * math.sqrt(acc)
            acc -= L[i, j] * L[i, j]
            k += 1
        w[i, i] = acc
        L[i, i] = math.sqrt(acc)
    return lj


@jit
def lkj_backward(y, m, L, w, gL, eta, gy, jacobian):
    """Add to gy the gradient of  G(L) + LKJ(eta) log density [+ log Jacobian]  given gL = dG/dL.

    Returns the LKJ log density without its normalising constant (the caller adds it).
    """
    lp = 0.0
    k0 = 0
    for i in range(1, m):
        # exponent of log L[i, i] in the LKJ density of the Cholesky factor (0-based i)
        c = m - i - 1 + 2.0 * eta - 2.0
        lp += 0.5 * c * math.log(w[i, i])
        adj_w = gL[i, i] / (2.0 * L[i, i]) + 0.5 * c / w[i, i]
        for j in range(i - 1, -1, -1):
            kk = k0 + j
            z = math.tanh(y[kk])
            sw = math.sqrt(w[i, j])
            # w[i, j + 1] = w[i, j] - L[i, j]^2
            adj_L = gL[i, j] - 2.0 * L[i, j] * adj_w
            adj_wj = adj_w
            if jacobian and j > 0:
                adj_wj += 0.5 / w[i, j]
            adj_z = adj_L * sw
            adj_wj += adj_L * z / (2.0 * sw)
            gy[kk] += adj_z * (1.0 - z * z)
            if jacobian:
                gy[kk] += -2.0 * z
            adj_w = adj_wj
        k0 += i
    return lp


# ---- families: log likelihood of one observation and its derivative in eta ------------------------
@jit
def _mean(link, eta):
    """(mu, d mu / d eta) for identity and log links."""
    if link == LOG:
        m = math.exp(eta)
        return m, m
    return eta, 1.0


@jit
def _binary_parts(link, eta):
    """(log p, log(1-p), d log p / d eta, d log(1-p) / d eta) for logit, probit, cloglog."""
    if link == LOGIT:
        lp1 = -log1pexp(-eta)
        lp0 = -log1pexp(eta)
        p = sigmoid(eta)
        return lp1, lp0, 1.0 - p, -p
    if link == PROBIT:
        a, ma = log_ndtr_and_mills(eta)
        b, mb = log_ndtr_and_mills(-eta)
        return a, b, ma, -mb
    # cloglog: p = 1 - exp(-exp(eta))
    e = math.exp(eta) if eta < 700.0 else np.inf
    lp0 = -e
    if e < 1e-8:
        lp1 = math.log(e) - 0.5 * e
        d1 = 1.0 - 0.5 * e
    else:
        lp1 = math.log(-math.expm1(-e))
        d1 = e * math.exp(-e) / (-math.expm1(-e)) if e < 700.0 else 0.0
    return lp1, lp0, d1, -e


@jit
def family_loglik(family, link, y, eta, trials, w, aux, g_eta, g_aux, known_se):
    """Sum of the log likelihood over observations (without the constant); fills g_eta, g_aux.

    aux = (sigma, nu, alpha); g_aux receives d/d sigma, d/d nu, d/d alpha.
    """
    n = y.shape[0]
    ll = 0.0
    if family == GAUSSIAN:
        sigma = aux[0]
        if known_se:
            for i in range(n):
                mu, dmu = _mean(link, eta[i])
                r = y[i] - mu
                ll += -0.5 * w[i] * r * r
                g_eta[i] = w[i] * r * dmu
            return ll - 0.5 * n * LOG_2PI
        inv = 1.0 / (sigma * sigma)
        ss = 0.0
        for i in range(n):
            mu, dmu = _mean(link, eta[i])
            r = y[i] - mu
            ss += r * r
            g_eta[i] = inv * r * dmu
        g_aux[0] += ss / (sigma * sigma * sigma) - n / sigma
        return -0.5 * inv * ss - n * math.log(sigma) - 0.5 * n * LOG_2PI
    if family == STUDENT:
        sigma, nu = aux[0], aux[1]
        c = math.lgamma(0.5 * (nu + 1.0)) - math.lgamma(0.5 * nu) - 0.5 * math.log(nu * math.pi) - math.log(sigma)
        dc_dnu = 0.5 * digamma(0.5 * (nu + 1.0)) - 0.5 * digamma(0.5 * nu) - 0.5 / nu
        gs = 0.0
        gn = 0.0
        for i in range(n):
            mu, dmu = _mean(link, eta[i])
            t = (y[i] - mu) / sigma
            q = t * t / nu
            ll += c - 0.5 * (nu + 1.0) * math.log1p(q)
            dl_dt = -(nu + 1.0) * t / (nu + t * t)
            g_eta[i] = -dl_dt / sigma * dmu
            gs += -1.0 / sigma - dl_dt * t / sigma
            gn += dc_dnu - 0.5 * math.log1p(q) + 0.5 * (nu + 1.0) * q / (nu * (1.0 + q))
        g_aux[0] += gs
        g_aux[1] += gn
        return ll
    if family == BERNOULLI:
        for i in range(n):
            lp1, lp0, d1, d0 = _binary_parts(link, eta[i])
            if y[i] > 0.5:
                ll += lp1
                g_eta[i] = d1
            else:
                ll += lp0
                g_eta[i] = d0
        return ll
    if family == BINOMIAL:
        for i in range(n):
            lp1, lp0, d1, d0 = _binary_parts(link, eta[i])
            k = y[i]
            f = trials[i] - k
            ll += k * lp1 + f * lp0
            g_eta[i] = k * d1 + f * d0
        return ll
    if family == POISSON:
        for i in range(n):
            mu = math.exp(eta[i])
            ll += y[i] * eta[i] - mu
            g_eta[i] = y[i] - mu
        return ll
    if family == NEGBIN:
        alpha = aux[2]
        la = math.log(alpha)
        lga = math.lgamma(alpha)
        dga = digamma(alpha)
        ga = 0.0
        for i in range(n):
            mu = math.exp(eta[i])
            lam = math.log(alpha + mu)
            ll += math.lgamma(y[i] + alpha) - lga + alpha * (la - lam) + y[i] * (eta[i] - lam)
            g_eta[i] = y[i] - mu * (alpha + y[i]) / (alpha + mu)
            ga += digamma(y[i] + alpha) - dga + la - lam + 1.0 - (alpha + y[i]) / (alpha + mu)
        g_aux[2] += ga
        return ll
    return -np.inf


# ---- the group-effects factor (k x k) matrix B = diag(sd) Lc ----------------------------------------
@jit
def factor_B(x, grad, F, I, fac, sd, Lc, W, jacobian):
    """SDs (with priors) and correlation Cholesky factors (LKJ) of one factor: fills sd, Lc (k x k).

    W[b] keeps each block's LKJ work matrix. Returns the log prior (+ Jacobian) of SDs and LKJs.
    """
    k = I[fac + F_K]
    xs = I[fac + F_XSD]
    ps = I[fac + F_PSD]
    pr = I[O_PRIORS]
    lp = 0.0
    for j in range(k):
        v, dv, l = scalar_param(x, grad, xs + j, F, pr + (ps + j) * PW, jacobian)
        sd[j] = v
        lp += l
    for a in range(k):
        for b in range(k):
            Lc[a, b] = 0.0
    nb = I[fac + F_NBLK]
    b0 = I[O_BLK] + I[fac + F_BLK0] * BW
    for bi in range(nb):
        row = b0 + bi * BW
        start, m = I[row + B_START], I[row + B_SIZE]
        if I[row + B_COR] == 1:
            xl = I[row + B_XLKJ]
            Lb = np.empty((m, m))
            lj = lkj_forward(x[xl:xl + m * (m - 1) // 2], m, Lb, W[bi])
            if jacobian:
                lp += lj
            for a in range(m):
                for b in range(m):
                    Lc[start + a, start + b] = Lb[a, b]
        else:
            for a in range(m):
                Lc[start + a, start + a] = 1.0
    return lp


@jit
def factor_B_backward(x, grad, F, I, fac, sd, Lc, W, gB, jacobian):
    """Push dG/dB (k x k, B = diag(sd) Lc) back to the SDs and LKJ parameters; returns LKJ log density."""
    k = I[fac + F_K]
    xs = I[fac + F_XSD]
    pr = I[O_PRIORS]
    ps = I[fac + F_PSD]
    for a in range(k):
        gsd = 0.0
        for b in range(k):
            gsd += gB[a, b] * Lc[a, b]
        r = pr + (ps + a) * PW
        dv = constrain(x[xs + a], int(F[r + 4]), F[r + 5], F[r + 6])[1]
        grad[xs + a] += gsd * dv
    lp = 0.0
    nb = I[fac + F_NBLK]
    b0 = I[O_BLK] + I[fac + F_BLK0] * BW
    for bi in range(nb):
        row = b0 + bi * BW
        if I[row + B_COR] != 1:
            continue
        start, m = I[row + B_START], I[row + B_SIZE]
        xl = I[row + B_XLKJ]
        prow = pr + I[row + B_PLKJ] * PW
        eta = F[prow + 1]
        gL = np.empty((m, m))
        Lb = np.empty((m, m))
        for a in range(m):
            for b in range(m):
                gL[a, b] = gB[start + a, start + b] * sd[start + a]
                Lb[a, b] = Lc[start + a, start + b]
        lp += F[prow + 2] + lkj_backward(x[xl:xl + m * (m - 1) // 2], m, Lb, W[bi], gL, eta,
                                         grad[xl:xl + m * (m - 1) // 2], jacobian)
    return lp


# ---- group effects of a sampled factor ----------------------------------------------------------------
@jit
def effects_forward(x, F, I, fac, B, r):
    """Group effects r (L x k) from x: r = x (centred) or r_l = B z_l (non-centred)."""
    L, k = I[fac + F_L], I[fac + F_K]
    xe = I[fac + F_XEFF]
    centred = I[fac + F_CENTRED] == 1
    for lv in range(L):
        base = xe + lv * k
        for a in range(k):
            if centred:
                r[lv, a] = x[base + a]
            else:
                acc = 0.0
                for b in range(a + 1):
                    acc += B[a, b] * x[base + b]
                r[lv, a] = acc


@jit
def effects_backward(x, grad, F, I, fac, B, r, gr, gB):
    """Given d loglik / d r (gr), add the gradient of loglik + the effects' prior to grad and gB.

    Returns the log prior of the effects (standard normal for z; MVN(0, B B') for centred r).
    """
    L, k = I[fac + F_L], I[fac + F_K]
    xe = I[fac + F_XEFF]
    centred = I[fac + F_CENTRED] == 1
    lp = 0.0
    if not centred:
        for lv in range(L):
            base = xe + lv * k
            for a in range(k):
                z = x[base + a]
                lp += -0.5 * z * z
                acc = -z
                for b in range(a, k):
                    acc += B[b, a] * gr[lv, b]
                grad[base + a] += acc
                for b in range(a + 1):
                    gB[a, b] += gr[lv, a] * x[base + b]
        return lp - 0.5 * L * k * LOG_2PI
    # centred: r_l ~ N(0, B B'), B lower triangular
    wv = np.empty(k)
    vv = np.empty(k)
    logdiag = 0.0
    for a in range(k):
        logdiag += math.log(B[a, a])
    for lv in range(L):
        base = xe + lv * k
        for a in range(k):  # forward solve B w = r
            acc = r[lv, a]
            for b in range(a):
                acc -= B[a, b] * wv[b]
            wv[a] = acc / B[a, a]
        for a in range(k - 1, -1, -1):  # back solve B' v = w
            acc = wv[a]
            for b in range(a + 1, k):
                acc -= B[b, a] * vv[b]
            vv[a] = acc / B[a, a]
        for a in range(k):
            lp += -0.5 * wv[a] * wv[a]
            grad[base + a] += gr[lv, a] - vv[a]
            for b in range(a + 1):
                gB[a, b] += vv[a] * wv[b]
    for a in range(k):
        gB[a, a] -= L / B[a, a]
    return lp - L * logdiag - 0.5 * L * k * LOG_2PI


# ---- one factor integrated out ---------------------------------------------------------------------
@jit
def _chol_inverse(M, k, C, Minv):
    """Cholesky C of the SPD k x k matrix M and its inverse Minv; returns log det M (or nan)."""
    logdet = 0.0
    for a in range(k):
        for b in range(a + 1):
            acc = M[a, b]
            for c in range(b):
                acc -= C[a, c] * C[b, c]
            if a == b:
                if acc <= 0.0:
                    return np.nan
                C[a, a] = math.sqrt(acc)
                logdet += 2.0 * math.log(C[a, a])
            else:
                C[a, b] = acc / C[b, b]
        for b in range(a + 1, k):
            C[a, b] = 0.0
    # inverse of C (lower), then Minv = C^-T C^-1
    Ci = np.zeros((k, k))
    for a in range(k):
        Ci[a, a] = 1.0 / C[a, a]
        for b in range(a):
            acc = 0.0
            for c in range(b, a):
                acc -= C[a, c] * Ci[c, b]
            Ci[a, b] = acc / C[a, a]
    for a in range(k):
        for b in range(k):
            acc = 0.0
            for c in range(max(a, b), k):
                acc += Ci[c, a] * Ci[c, b]
            Minv[a, b] = acc
    return logdet


@jit
def _chol(M, k, C):
    """Lower Cholesky factor C of the SPD k x k matrix M; returns log det M (nan if not SPD)."""
    logdet = 0.0
    for a in range(k):
        for b in range(a + 1):
            acc = M[a, b]
            for c in range(b):
                acc -= C[a, c] * C[b, c]
            if a == b:
                if acc <= 0.0:
                    return np.nan
                C[a, a] = math.sqrt(acc)
                logdet += 2.0 * math.log(C[a, a])
            else:
                C[a, b] = acc / C[b, b]
        for b in range(a + 1, k):
            C[a, b] = 0.0
    return logdet


@jit
def _chol_inverse(M, k, C, Minv):
    """Cholesky C of M and its inverse Minv; returns log det M (or nan)."""
    logdet = _chol(M, k, C)
    Ci = np.zeros((k, k))
    for a in range(k):
        Ci[a, a] = 1.0 / C[a, a]
        for b in range(a):
            acc = 0.0
            for c in range(b, a):
                acc -= C[a, c] * Ci[c, b]
            Ci[a, b] = acc / C[a, a]
    for a in range(k):
        for b in range(k):
            acc = 0.0
            for c in range(max(a, b), k):
                acc += Ci[c, a] * Ci[c, b]
            Minv[a, b] = acc
    return logdet


# ---- one factor (and the coefficients) integrated out --------------------------------------------------
@jit
def _level_factorisations(F, I, fac, B, s, Minv, BAB, gB):
    """Per level M_l = I + s B' A_l B: fills Minv, BAB; adds d(-1/2 sum log|M_l|)/dB to gB.

    Returns (sum_l log|M_l|, d(-1/2 sum log|M_l|)/ds).
    """
    L, k = I[fac + F_L], I[fac + F_K]
    Aoff = I[fac + F_A]
    logdet = 0.0
    gs = 0.0
    if k == 1:
        b = B[0, 0]
        for lv in range(L):
            a = F[Aoff + lv]
            m = 1.0 + s * b * b * a
            Minv[lv, 0, 0] = 1.0 / m
            BAB[lv, 0, 0] = b * b * a
            logdet += math.log(m)
            gs += -0.5 * b * b * a / m
            gB[0, 0] += -s * a * b / m
        return logdet, gs
    A = np.empty((k, k))
    AB = np.empty((k, k))
    M = np.empty((k, k))
    C = np.empty((k, k))
    for lv in range(L):
        base = Aoff + lv * k * k
        for a in range(k):
            for b in range(k):
                A[a, b] = F[base + a * k + b]
        for a in range(k):  # AB = A B (B lower triangular)
            for b in range(k):
                acc = 0.0
                for t in range(b, k):
                    acc += A[a, t] * B[t, b]
                AB[a, b] = acc
        for a in range(k):  # B' A B
            for b in range(k):
                acc = 0.0
                for t in range(a, k):
                    acc += B[t, a] * AB[t, b]
                BAB[lv, a, b] = acc
                M[a, b] = s * acc + (1.0 if a == b else 0.0)
        logdet += _chol_inverse(M, k, C, Minv[lv])
        tr = 0.0
        for a in range(k):
            for b in range(k):
                tr += Minv[lv, a, b] * BAB[lv, b, a]
        gs += -0.5 * tr
        for a in range(k):  # -s A B M^-1
            for b in range(k):
                acc = 0.0
                for t in range(k):
                    acc += AB[a, t] * Minv[lv, t, b]
                gB[a, b] += -s * acc
    return logdet, gs


@jit
def _quad_part(F, I, fac, B, s, Minv, BAB, g, wWw, gB, u):
    """Q = w' V^-1 w = s w'Ww - s^2 sum_l c_l' M_l^-1 c_l  (c_l = B' g_l, g_l = Z_l' W w).

    Adds d(-Q/2)/dB (w fixed) to gB, fills u_l = M_l^-1 c_l, returns (Q, d(-Q/2)/ds).
    """
    L, k = I[fac + F_L], I[fac + F_K]
    Aoff = I[fac + F_A]
    Q = s * wWw
    gs = -0.5 * wWw
    if k == 1:
        b = B[0, 0]
        for lv in range(L):
            c = b * g[lv, 0]
            uu = Minv[lv, 0, 0] * c
            u[lv, 0] = uu
            Q -= s * s * c * uu
            a = F[Aoff + lv]
            gs += s * c * uu - 0.5 * s * s * uu * uu * b * b * a
            gB[0, 0] += s * s * g[lv, 0] * uu - s * s * s * a * b * uu * uu
        return Q, gs
    c = np.empty(k)
    ABu = np.empty(k)
    for lv in range(L):
        base = Aoff + lv * k * k
        for a in range(k):
            acc = 0.0
            for t in range(a, k):
                acc += B[t, a] * g[lv, t]
            c[a] = acc
        cu = 0.0
        for a in range(k):
            acc = 0.0
            for b in range(k):
                acc += Minv[lv, a, b] * c[b]
            u[lv, a] = acc
            cu += c[a] * acc
        Q -= s * s * cu
        uBABu = 0.0
        for a in range(k):
            for b in range(k):
                uBABu += u[lv, a] * BAB[lv, a, b] * u[lv, b]
        gs += s * cu - 0.5 * s * s * uBABu
        for a in range(k):  # (A B u)_a
            acc = 0.0
            for t in range(k):
                bu = 0.0
                for b in range(t + 1):
                    bu += B[t, b] * u[lv, b]
                acc += F[base + a * k + t] * bu
            ABu[a] = acc
        for a in range(k):
            for b in range(k):
                gB[a, b] += s * s * g[lv, a] * u[lv, b] - s * s * s * ABu[a] * u[lv, b]
    return Q, gs


@jit
def gaussian_marginal(F, I, fac, B, s, logdet_noise, eWe, XtWe, ge, gB, a_out, ut, v_out, LP):
    """log N(e | 0, Z B B' Z' + W^-1/s), with the coefficients integrated out too when H_INTBETA.

    ``e`` is the residual from the sampled part of the mean (given through eWe = e'We,
    XtWe = Xc'We and ge_l = Z_l'We). With the coefficients integrated out (prior
    beta = m0 + L0 zeta, zeta ~ N(0, I)), P = I + L0' Xc'V^-1 Xc L0, h = L0' Xc' V^-1 e,
    v = P^-1 h (the posterior mean of zeta) and the log likelihood gains -1/2 log|P| + 1/2 h'v.

    Returns (log likelihood, d/ds); adds d/dB to gB. Fills a_out = L0 v (so that the residual
    at the coefficients' posterior mean is e - Xc a_out), ut = M^-1 c(that residual), v_out and
    LP (Cholesky factor of P) for drawing the coefficients.
    """
    n, p = I[H_N], I[H_P]
    L, k = I[fac + F_L], I[fac + F_K]
    Minv = np.empty((L, k, k))
    BAB = np.empty((L, k, k))
    logdetM, gs = _level_factorisations(F, I, fac, B, s, Minv, BAB, gB)
    ll = -0.5 * (n * LOG_2PI + logdet_noise + logdetM)
    for j in range(p):
        a_out[j] = 0.0
    if I[H_INTBETA] != 1:
        Q, gq = _quad_part(F, I, fac, B, s, Minv, BAB, ge, eWe, gB, ut)
        return ll - 0.5 * Q, gs + gq
    cr = I[O_CROSS]
    XtX = F[cr:cr + p * p].reshape((p, p))
    ZtX = F[I[fac + F_ZTX]:I[fac + F_ZTX] + L * k * p].reshape((L, k, p))
    L0 = F[I[O_L0]:I[O_L0] + p * p].reshape((p, p))
    # K = Xc'V^-1 Xc and ke = Xc'V^-1 e
    Km = np.empty((p, p))
    ke = np.empty(p)
    for a in range(p):
        ke[a] = s * XtWe[a]
        for b in range(p):
            Km[a, b] = s * XtX[a, b]
    T = np.empty((k, p))
    ce = np.empty(k)
    MT = np.empty((k, p))
    for lv in range(L):
        for a in range(k):  # T = B' ZtX_l, ce = B' ge_l
            acc2 = 0.0
            for t in range(a, k):
                acc2 += B[t, a] * ge[lv, t]
            ce[a] = acc2
            for j in range(p):
                acc = 0.0
                for t in range(a, k):
                    acc += B[t, a] * ZtX[lv, t, j]
                T[a, j] = acc
        for a in range(k):
            for j in range(p):
                acc = 0.0
                for b in range(k):
                    acc += Minv[lv, a, b] * T[b, j]
                MT[a, j] = acc
        for i in range(p):
            acc2 = 0.0
            for a in range(k):
                acc2 += MT[a, i] * ce[a]
            ke[i] -= s * s * acc2
            for j in range(p):
                acc = 0.0
                for a in range(k):
                    acc += T[a, i] * MT[a, j]
                Km[i, j] -= s * s * acc
    # P = I + L0' K L0, h = L0' ke
    KL = np.empty((p, p))
    for i in range(p):
        for j in range(p):
            acc = 0.0
            for t in range(p):
                acc += Km[i, t] * L0[t, j]
            KL[i, j] = acc
    P = np.empty((p, p))
    h = np.empty(p)
    for i in range(p):
        acc2 = 0.0
        for t in range(p):
            acc2 += L0[t, i] * ke[t]
        h[i] = acc2
        for j in range(p):
            acc = 0.0
            for t in range(p):
                acc += L0[t, i] * KL[t, j]
            P[i, j] = acc + (1.0 if i == j else 0.0)
    logdetP = _chol(P, p, LP)
    # v = P^-1 h
    wv = np.empty(p)
    for i in range(p):
        acc = h[i]
        for j in range(i):
            acc -= LP[i, j] * wv[j]
        wv[i] = acc / LP[i, i]
    for i in range(p - 1, -1, -1):
        acc = wv[i]
        for j in range(i + 1, p):
            acc -= LP[j, i] * v_out[j]
        v_out[i] = acc / LP[i, i]
    vv = 0.0
    for i in range(p):
        vv += v_out[i] * v_out[i]
        acc = 0.0
        for j in range(p):
            acc += L0[i, j] * v_out[j]
        a_out[i] = acc
    # the residual at the coefficients' posterior mean, as sufficient statistics
    gt = np.empty((L, k))
    for lv in range(L):
        for t in range(k):
            acc = ge[lv, t]
            for j in range(p):
                acc -= ZtX[lv, t, j] * a_out[j]
            gt[lv, t] = acc
    tWt = eWe
    for i in range(p):
        acc = 0.0
        for j in range(p):
            acc += XtX[i, j] * a_out[j]
        tWt += -2.0 * a_out[i] * XtWe[i] + a_out[i] * acc
    Qt, gq = _quad_part(F, I, fac, B, s, Minv, BAB, gt, tWt, gB, ut)
    ll += -0.5 * (Qt + vv) - 0.5 * logdetP
    gs += gq
    # -1/2 log|P|: one quadratic part per column of Xc L0 LP^-T (ve = LP^-T e_j)
    scratch = np.empty((L, k))
    gj = np.empty((L, k))
    ve = np.empty(p)
    aj = np.empty(p)
    for jcol in range(p):
        for i in range(p - 1, -1, -1):
            acc = 1.0 if i == jcol else 0.0
            for j in range(i + 1, p):
                acc -= LP[j, i] * ve[j]
            ve[i] = acc / LP[i, i]
        for i in range(p):
            acc = 0.0
            for j in range(p):
                acc += L0[i, j] * ve[j]
            aj[i] = acc
        wWw = 0.0
        for i in range(p):
            acc = 0.0
            for j in range(p):
                acc += XtX[i, j] * aj[j]
            wWw += aj[i] * acc
        for lv in range(L):
            for t in range(k):
                acc = 0.0
                for j in range(p):
                    acc += ZtX[lv, t, j] * aj[j]
                gj[lv, t] = acc
        gs += _quad_part(F, I, fac, B, s, Minv, BAB, gj, wWw, gB, scratch)[1]
    return ll, gs


@jit
def _noise_terms(F, I, aux, known_se):
    """(s = 1/sigma^2, log det of the residual covariance W^-1 / s)."""
    n, p = I[H_N], I[H_P]
    if known_se:
        return 1.0, -F[I[O_CROSS] + p * p + p + 1]
    sigma = aux[0]
    return 1.0 / (sigma * sigma), 2.0 * n * math.log(sigma)


@jit
def _residual_stats(F, I, fac, y, offset, known_se, e, XtWe, ge):
    """e = y - offset and its statistics e'We, Xc'We, Z_l'We over rows; returns e'We."""
    n, p = I[H_N], I[H_P]
    k = I[fac + F_K]
    codes = I[I[fac + F_CODES]:I[fac + F_CODES] + n]
    ones = I[fac + F_ONES] == 1
    Z = F[I[fac + F_Z]:I[fac + F_Z] + n * k].reshape((n, k))
    Xc = F[I[O_X]:I[O_X] + n * p].reshape((n, p))
    w = F[I[O_W]:I[O_W] + n]
    for j in range(p):
        XtWe[j] = 0.0
    eWe = 0.0
    for i in range(n):
        e[i] = y[i] - offset[i]
        we = (w[i] if known_se else 1.0) * e[i]
        eWe += we * e[i]
        for j in range(p):
            XtWe[j] += Xc[i, j] * we
        if ones:
            ge[codes[i], 0] += we
        else:
            for a in range(k):
                ge[codes[i], a] += Z[i, a] * we
    return eWe


@jit
def _cross_stats(F, I, fac, beta, XtWe, ge):
    """e = y - Xc beta from cross-products: fills Xc'We and Z_l'We, returns e'We."""
    p = I[H_P]
    L, k = I[fac + F_L], I[fac + F_K]
    cr = I[O_CROSS]
    XtX = F[cr:cr + p * p].reshape((p, p))
    Xty = F[cr + p * p:cr + p * p + p]
    eWe = F[cr + p * p + p]
    ZtX = F[I[fac + F_ZTX]:I[fac + F_ZTX] + L * k * p].reshape((L, k, p))
    Zty = F[I[fac + F_ZTY]:I[fac + F_ZTY] + L * k].reshape((L, k))
    for a in range(p):
        acc = 0.0
        for b in range(p):
            acc += XtX[a, b] * beta[b]
        XtWe[a] = Xty[a] - acc
        eWe += -2.0 * beta[a] * Xty[a] + beta[a] * acc
    for lv in range(L):
        for a in range(k):
            acc = Zty[lv, a]
            for b in range(p):
                acc -= ZtX[lv, a, b] * beta[b]
            ge[lv, a] = acc
    return eWe


# ---- the whole model ------------------------------------------------------------------------------------
@jit
def _coefficients(x, grad, F, I, jacobian, beta, dbeta):
    """Population-level coefficients (centred design) with their priors; returns the log prior.

    With the coefficients integrated out, beta is their prior mean and nothing is sampled.
    """
    p = I[H_P]
    pr = I[O_PRIORS]
    if I[H_INTBETA] == 1:
        for j in range(p):
            beta[j] = F[I[O_M0] + j]
            dbeta[j] = 0.0
        return 0.0
    xb = I[X_BETA]
    mode = I[H_INTERCEPT]
    icol = I[H_INT_COL]
    lp = 0.0
    for j in range(p):
        if mode == 2 and j == icol:  # prior on the raw intercept, added below
            beta[j] = x[xb + j]
            dbeta[j] = 1.0
            continue
        v, dv, l = scalar_param(x, grad, xb + j, F, pr + (I[P_BETA] + j) * PW, jacobian)
        beta[j] = v
        dbeta[j] = dv
        lp += l
    if mode == 2:
        xmeans = F[I[O_XMEANS]:I[O_XMEANS] + p]
        raw = beta[icol]
        for j in range(p):
            if j != icol:
                raw -= xmeans[j] * beta[j]
        r0 = pr + (I[P_BETA] + icol) * PW
        l, dl = prior_logp(int(F[r0]), F[r0 + 1], F[r0 + 2], F[r0 + 3], raw)
        lp += l
        grad[xb + icol] += dl
        for j in range(p):
            if j != icol:
                grad[xb + j] += -xmeans[j] * dl * dbeta[j]
    return lp


@jit
def _linear_predictor(x, F, I, beta, BM, R, collapsed, eta):
    """eta = Xc beta + the sampled factors' effects (fills R with their values)."""
    n, p = I[H_N], I[H_P]
    Xc = F[I[O_X]:I[O_X] + n * p].reshape((n, p))
    for i in range(n):
        acc = 0.0
        for j in range(p):
            acc += Xc[i, j] * beta[j]
        eta[i] = acc
    for f in range(I[H_NFAC]):
        if f == collapsed:
            continue
        fac = I[O_FAC] + f * FW
        k = I[fac + F_K]
        r = R[f]
        effects_forward(x, F, I, fac, BM[f], r)
        codes = I[I[fac + F_CODES]:I[fac + F_CODES] + n]
        if I[fac + F_ONES] == 1:
            for i in range(n):
                eta[i] += r[codes[i], 0]
        else:
            Z = F[I[fac + F_Z]:I[fac + F_Z] + n * k].reshape((n, k))
            for i in range(n):
                acc = 0.0
                for a in range(k):
                    acc += Z[i, a] * r[codes[i], a]
                eta[i] += acc


@jit
def _factors(x, grad, F, I, jacobian, SD, LC, BM, WK):
    """SDs, correlations and B = diag(sd) Lc of every factor; returns their log prior."""
    lp = 0.0
    for f in range(I[H_NFAC]):
        fac = I[O_FAC] + f * FW
        k = I[fac + F_K]
        lp += factor_B(x, grad, F, I, fac, SD[f], LC[f], WK[f], jacobian)
        for a in range(k):
            for b in range(k):
                BM[f, a, b] = SD[f, a] * LC[f, a, b]
    return lp


@jit
def _dims(I):
    """(largest number of terms, largest number of levels) over the factors."""
    kmax = 1
    lmax = 1
    for f in range(I[H_NFAC]):
        kmax = max(kmax, I[I[O_FAC] + f * FW + F_K])
        lmax = max(lmax, I[I[O_FAC] + f * FW + F_L])
    return kmax, lmax


@jit
def logp_grad(x, grad, F, I, jacobian=True):
    """Log posterior density (up to a constant when ``jacobian``) and its gradient at x."""
    n, p = I[H_N], I[H_P]
    nfac = I[H_NFAC]
    collapsed = I[H_COLLAPSED]
    known_se = I[H_KNOWN_SE] == 1
    pr = I[O_PRIORS]
    for j in range(grad.shape[0]):
        grad[j] = 0.0
    beta = np.empty(p)
    dbeta = np.empty(p)
    lp = _coefficients(x, grad, F, I, jacobian, beta, dbeta)
    aux = np.zeros(3)
    daux = np.zeros(3)  # d value / d x
    g_aux = np.zeros(3)
    for slot in range(3):
        xs = I[X_SIGMA + slot]
        if xs >= 0:
            v, dv, l = scalar_param(x, grad, xs, F, pr + I[P_SIGMA + slot] * PW, jacobian)
            aux[slot] = v
            daux[slot] = dv
            lp += l
    kmax, lmax = _dims(I)
    SD = np.zeros((nfac, kmax))
    LC = np.zeros((nfac, kmax, kmax))
    BM = np.zeros((nfac, kmax, kmax))
    GB = np.zeros((nfac, kmax, kmax))
    WK = np.zeros((nfac, kmax, kmax, kmax))
    R = np.zeros((nfac, lmax, kmax))
    lp += _factors(x, grad, F, I, jacobian, SD, LC, BM, WK)
    y = F[I[O_Y]:I[O_Y] + n]
    g_eta = np.zeros(n)
    xb = I[X_BETA]
    if collapsed >= 0:
        fac = I[O_FAC] + collapsed * FW
        L, k = I[fac + F_L], I[fac + F_K]
        s, logdet_noise = _noise_terms(F, I, aux, known_se)
        XtWe = np.empty(p)
        ge = np.zeros((L, k))
        a = np.empty(p)
        ut = np.empty((L, k))
        v = np.empty(p)
        LP = np.empty((p, p))
        full = I[H_FULL] == 1
        if full:
            eWe = _cross_stats(F, I, fac, beta, XtWe, ge)
        else:
            eta = np.empty(n)
            _linear_predictor(x, F, I, beta, BM, R, collapsed, eta)
            e = np.empty(n)
            eWe = _residual_stats(F, I, fac, y, eta, known_se, e, XtWe, ge)
        ll, gs = gaussian_marginal(F, I, fac, BM[collapsed], s, logdet_noise, eWe, XtWe, ge, GB[collapsed],
                                   a, ut, v, LP)
        lp += ll
        if not known_se:
            gs += 0.5 * n / s  # -n log(sigma) = (n/2) log s
            grad[I[X_SIGMA]] += gs * (-2.0 * s / aux[0]) * daux[0]
        B = BM[collapsed]
        if full:
            if I[H_INTBETA] != 1:  # d/dbeta = Xc'V^-1 e = s Xc'We - s^2 sum_l ZtX_l' B u_l
                ZtX = F[I[fac + F_ZTX]:I[fac + F_ZTX] + L * k * p].reshape((L, k, p))
                for j in range(p):
                    acc = s * XtWe[j]
                    for lv in range(L):
                        for t in range(k):
                            bu = 0.0
                            for b in range(t + 1):
                                bu += B[t, b] * ut[lv, b]
                            acc -= s * s * ZtX[lv, t, j] * bu
                    grad[xb + j] += acc * dbeta[j]
        else:
            # d loglik / d offset_i = s w_i et_i - s^2 w_i Z_i' B u_l, et = e - Xc a
            codes = I[I[fac + F_CODES]:I[fac + F_CODES] + n]
            Z = F[I[fac + F_Z]:I[fac + F_Z] + n * k].reshape((n, k))
            Xc = F[I[O_X]:I[O_X] + n * p].reshape((n, p))
            w = F[I[O_W]:I[O_W] + n]
            Bu = np.empty((L, k))
            for lv in range(L):
                for t in range(k):
                    acc = 0.0
                    for b in range(t + 1):
                        acc += B[t, b] * ut[lv, b]
                    Bu[lv, t] = acc
            for i in range(n):
                et = e[i]
                for j in range(p):
                    et -= Xc[i, j] * a[j]
                acc = 0.0
                for t in range(k):
                    acc += Z[i, t] * Bu[codes[i], t]
                g_eta[i] = (w[i] if known_se else 1.0) * (s * et - s * s * acc)
    else:
        eta = np.empty(n)
        _linear_predictor(x, F, I, beta, BM, R, -1, eta)
        w = F[I[O_W]:I[O_W] + n] if known_se else y
        trials = F[I[O_TRIALS]:I[O_TRIALS] + n] if I[H_FAMILY] == BINOMIAL else y
        lp += family_loglik(I[H_FAMILY], I[H_LINK], y, eta, trials, w, aux, g_eta, g_aux, known_se)
        for slot in range(3):
            xs = I[X_SIGMA + slot]
            if xs >= 0:
                grad[xs] += g_aux[slot] * daux[slot]
    if collapsed < 0 or I[H_FULL] != 1:
        # back to the coefficients and the sampled group effects
        if I[H_INTBETA] != 1:
            Xc = F[I[O_X]:I[O_X] + n * p].reshape((n, p))
            for j in range(p):
                acc = 0.0
                for i in range(n):
                    acc += Xc[i, j] * g_eta[i]
                grad[xb + j] += acc * dbeta[j]
        for f in range(nfac):
            if f == collapsed:
                continue
            fac = I[O_FAC] + f * FW
            L, k = I[fac + F_L], I[fac + F_K]
            codes = I[I[fac + F_CODES]:I[fac + F_CODES] + n]
            gr = np.zeros((L, k))
            if I[fac + F_ONES] == 1:
                for i in range(n):
                    gr[codes[i], 0] += g_eta[i]
            else:
                Z = F[I[fac + F_Z]:I[fac + F_Z] + n * k].reshape((n, k))
                for i in range(n):
                    for a in range(k):
                        gr[codes[i], a] += Z[i, a] * g_eta[i]
            lp += effects_backward(x, grad, F, I, fac, BM[f], R[f][:L, :k], gr, GB[f][:k, :k])
    for f in range(nfac):
        fac = I[O_FAC] + f * FW
        lp += factor_B_backward(x, grad, F, I, fac, SD[f], LC[f], WK[f], GB[f], jacobian)
    return lp + F[I[O_CONST]]


# ---- exact draws of what was integrated out ---------------------------------------------------------------
@jit
def conditional_draws(xd, F, I, noise_beta, noise, beta_out, zout, rout):
    """For each draw of x (rows of xd), the integrated-out coefficients and effects, exactly.

    Coefficients (when integrated out): zeta ~ N(v, P^-1), beta = m0 + L0 zeta. Then for each
    level of the integrated-out factor: z_l ~ N(s M_l^-1 c_l, M_l^-1), r_l = B z_l, with c_l
    computed from the residual given the drawn coefficients. ``beta_out`` receives the centred
    coefficients (drawn, or copied from x).
    """
    S = xd.shape[0]
    n, p = I[H_N], I[H_P]
    nfac = I[H_NFAC]
    c = I[H_COLLAPSED]
    known_se = I[H_KNOWN_SE] == 1
    full = I[H_FULL] == 1
    intbeta = I[H_INTBETA] == 1
    pr = I[O_PRIORS]
    fac = I[O_FAC] + c * FW
    L, k = I[fac + F_L], I[fac + F_K]
    scratch = np.zeros(xd.shape[1])
    kmax, lmax = _dims(I)
    y = F[I[O_Y]:I[O_Y] + n]
    Aoff = I[fac + F_A]
    L0 = F[I[O_L0]:I[O_L0] + p * p].reshape((p, p))
    M = np.empty((k, k))
    C = np.empty((k, k))
    Minv = np.empty((k, k))
    cv = np.empty(k)
    vz = np.empty(k)
    for d in range(S):
        x = xd[d]
        beta = np.empty(p)
        dbeta = np.empty(p)
        _coefficients(x, scratch, F, I, False, beta, dbeta)
        aux = np.zeros(3)
        if not known_se:
            aux[0] = scalar_param(x, scratch, I[X_SIGMA], F, pr + I[P_SIGMA] * PW, False)[0]
        s, logdet_noise = _noise_terms(F, I, aux, known_se)
        SD = np.zeros((nfac, kmax))
        LC = np.zeros((nfac, kmax, kmax))
        BM = np.zeros((nfac, kmax, kmax))
        WK = np.zeros((nfac, kmax, kmax, kmax))
        R = np.zeros((nfac, lmax, kmax))
        _factors(x, scratch, F, I, False, SD, LC, BM, WK)
        B = BM[c]
        XtWe = np.empty(p)
        ge = np.zeros((L, k))
        if full:
            eWe = _cross_stats(F, I, fac, beta, XtWe, ge)
        else:
            eta = np.empty(n)
            _linear_predictor(x, F, I, beta, BM, R, c, eta)
            e = np.empty(n)
            eWe = _residual_stats(F, I, fac, y, eta, known_se, e, XtWe, ge)
        if intbeta:
            a = np.empty(p)
            ut = np.empty((L, k))
            v = np.empty(p)
            LP = np.empty((p, p))
            gaussian_marginal(F, I, fac, B, s, logdet_noise, eWe, XtWe, ge, np.zeros((k, k)), a, ut, v, LP)
            zeta = np.empty(p)
            for i in range(p - 1, -1, -1):  # zeta = v + LP^-T xi
                acc = noise_beta[d, i]
                for j in range(i + 1, p):
                    acc -= LP[j, i] * zeta[j]
                zeta[i] = acc / LP[i, i]
            for i in range(p):
                zeta[i] += v[i]
            shift = np.empty(p)  # drawn beta - m0
            for i in range(p):
                acc = 0.0
                for j in range(p):
                    acc += L0[i, j] * zeta[j]
                shift[i] = acc
                beta[i] += acc
            # residual statistics at the drawn coefficients
            ZtX = F[I[fac + F_ZTX]:I[fac + F_ZTX] + L * k * p].reshape((L, k, p))
            for lv in range(L):
                for t in range(k):
                    acc = 0.0
                    for j in range(p):
                        acc += ZtX[lv, t, j] * shift[j]
                    ge[lv, t] -= acc
        for j in range(p):
            beta_out[d, j] = beta[j]
        for lv in range(L):
            base = Aoff + lv * k * k
            for a_ in range(k):
                for b in range(k):
                    acc = 0.0
                    for t in range(a_, k):
                        for u in range(b, k):
                            acc += B[t, a_] * F[base + t * k + u] * B[u, b]
                    M[a_, b] = s * acc + (1.0 if a_ == b else 0.0)
            _chol_inverse(M, k, C, Minv)
            for a_ in range(k):
                acc = 0.0
                for t in range(a_, k):
                    acc += B[t, a_] * ge[lv, t]
                cv[a_] = acc
            for a_ in range(k - 1, -1, -1):  # C^-T xi
                acc = noise[d, lv, a_]
                for b in range(a_ + 1, k):
                    acc -= C[b, a_] * vz[b]
                vz[a_] = acc / C[a_, a_]
            for a_ in range(k):
                acc = 0.0
                for b in range(k):
                    acc += Minv[a_, b] * cv[b]
                zout[d, lv, a_] = s * acc + vz[a_]
            for a_ in range(k):
                acc = 0.0
                for b in range(a_ + 1):
                    acc += B[a_, b] * zout[d, lv, b]
                rout[d, lv, a_] = acc


# ---- C entry points for nutpie ------------------------------------------------------------------------
# They live in this file so that numba's cache, which is keyed on this file, is invalidated with
# any change of the kernels they call.
@numba.extending.intrinsic
def _address_as_void_pointer(typingctx, src):
    """A void pointer from an integer address (to read the model's buffers from user data)."""
    from numba.core import cgutils, types

    sig = types.voidptr(src)

    def codegen(cgctx, builder, sig, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return sig, codegen


_LOGP_SIG = numba.types.int64(numba.types.uint64, numba.types.CPointer(numba.types.double),
                              numba.types.CPointer(numba.types.double), numba.types.CPointer(numba.types.double),
                              numba.types.voidptr)
_EXPAND_SIG = numba.types.int64(numba.types.uint64, numba.types.uint64, numba.types.CPointer(numba.types.double),
                                numba.types.CPointer(numba.types.double), numba.types.voidptr)


@numba.cfunc(_LOGP_SIG, cache=True, error_model="numpy")
def logp_cfunc(dim, x_, out_, logp_, user_data):
    """nutpie's logp signature; ``user_data`` points at [F address, F size, I address, I size]."""
    meta = numba.carray(user_data, (4,), np.int64)
    F = numba.carray(_address_as_void_pointer(meta[0]), (meta[1],), np.float64)
    I = numba.carray(_address_as_void_pointer(meta[2]), (meta[3],), np.int64)
    x = numba.carray(x_, (dim,))
    out = numba.carray(out_, (dim,))
    lp = numba.carray(logp_, ())
    value = logp_grad(x, out, F, I, True)
    lp[()] = value
    if not np.isfinite(value):
        return 4
    for i in range(dim):
        if not np.isfinite(out[i]):
            return 3
    return 0


@numba.cfunc(_EXPAND_SIG, cache=True)
def expand_cfunc(dim, n_expanded, x_, out_, user_data):
    """Store the unconstrained draw as is (hmodels constrains the draws afterwards, vectorised)."""
    x = numba.carray(x_, (dim,))
    out = numba.carray(out_, (n_expanded,))
    for i in range(dim):
        out[i] = x[i]
    return 0

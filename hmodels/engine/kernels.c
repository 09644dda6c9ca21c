/*
 * hmodels: log posterior density and gradient of every model hmodels builds, in C.
 *
 * One generic function, hm_logp_grad, reads the model from two flat buffers written by
 * hmodels/engine/layout.py: F (double: data, cross-products, prior parameters) and I (int64:
 * header of offsets, level codes, factor and block tables). The layout constants (H_*, O_*,
 * F_*, B_*, PW, prior / family / link codes) are prepended as #define lines generated from
 * hmodels/engine/codes.py. Because the model is data, not code, this file is compiled once per
 * installation and reused for every model, data set and prior.
 *
 * Parameterisation of the unconstrained vector x that NUTS moves in:
 *  - population-level coefficients beta on the centred design, unless integrated out (H_INTBETA):
 *    standardised by the data, beta = centre + scale * x (T_AFFINE; the centre is the least-squares
 *    fit for an identity link), so that their location and scale never reach the sampler; interval
 *    under a Uniform prior;
 *  - per grouping factor: SDs (log; interval under a Uniform prior), each correlated block's
 *    Cholesky factor through Stan's transform (tanh of canonical partial correlations), and,
 *    unless the factor is integrated out, its effects: standardised z (non-centred, r_l = B z_l)
 *    or w = Q' r / scale (centred; Q a Householder reflection across levels, see reflect(); scale the
 *    data scale of each term, F_ESCALE), or, for an intercept-only factor, hierarchically centred
 *    (v = r + m, m everything constant within a level: level-constant coefficients and the effects of
 *    the factors it is nested in; see hier_forward);
 *  - family parameters (the table at I[O_AUX], one row per name of AUX_NAMES in codes.py: sigma, nu, alpha,
 *    shape, phi, zi, hu, zoi, coi, cutpoints): log transform for positive ones, logit (T_INTERVAL) for the
 *    probabilities zi, hu, zoi, coi; the H_NCUT ordinal thresholds through PyMC's ordered transform
 *    (c_1 = x_1, c_j = c_{j-1} + exp(x_j); log Jacobian sum_{j>=2} x_j), the prior row applying to each.
 * Families (family_loglik): gaussian, student_t, bernoulli, binomial, poisson, negativebinomial, gamma (log,
 * inverse, identity links), beta, beta_binomial, zero-inflated and hurdle poisson and negative binomial,
 * exponential, weibull, hurdle gamma, hurdle lognormal, zero-one-inflated beta; the cumulative (ordinal)
 * family in cumulative_loglik (logit, probit); the lognormal is the gaussian kernel on log y (layout.py
 * writes log y into O_Y).
 * A gaussian identity-link model integrates one factor out analytically (block Woodbury), and with
 * it the coefficients when their priors are all Normal (gaussian_marginal). Its cross-products are
 * of y_r = y - Xc b_ref (O_BREF, the least-squares fit) and it works with beta - b_ref throughout:
 * sums of squares of a response far from zero (y ~ 1e9 gives y'y ~ 1e20) would otherwise cancel
 * catastrophically in e'e = y'y - 2 beta'X'y + beta'X'X beta. An offset (O_OFFSET, coefficient 1) is added to
 * the linear predictor of every family; an integrated-out model reads y - offset instead (layout.py).
 *
 * Every gradient is derived by hand; tests/test_engine.py checks each against central finite
 * differences, the log density against PyMC's and a dense multivariate normal, priors against
 * scipy, and the conditional draws against the dense Gaussian conditional.
 *
 * Thread safety: no global state; nutpie calls hm_logp from several threads at once.
 */
#define _DEFAULT_SOURCE
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#define LOG_2PI 1.8378770664093453
#define LOG_2 0.6931471805599453
#define LOG_PI 1.1447298858494002
#define SQRT_2 1.4142135623730951

typedef int64_t i64;

static inline double lgam(double x) { int s; return lgamma_r(x, &s); }

/* ---- special functions ---------------------------------------------------------------------- */
static double digamma(double x) {
    if (!(x > 0.0 && x < INFINITY)) return x == INFINITY ? INFINITY : NAN;
    double result = 0.0;
    while (x < 6.0) { result -= 1.0 / x; x += 1.0; }
    double f = 1.0 / (x * x);
    return result + log(x) - 0.5 / x
        - f * (1.0 / 12 - f * (1.0 / 120 - f * (1.0 / 252 - f * (1.0 / 240 - f / 132))));
}

static inline double log1pexp(double x) {
    if (x > 35.0) return x;
    if (x < -35.0) return exp(x);
    return log1p(exp(x));
}

static inline double sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

/* A probability carried by its logit t (the family parameters zi, hu, zoi, coi): p = sigmoid(t), q = 1 - p,
 * log p and log q, each exact to the last digits at any t (q is not formed as 1 - p, which is 0 past t ~ 37).
 * d log p / dt = q, d log q / dt = -p. One exp and one log1p. */
static inline void logit_parts(double t, double *p, double *q, double *lp, double *lq) {
    double e = exp(-fabs(t)), l = log1p(e), r = 1.0 / (1.0 + e);
    if (t >= 0.0) { *p = r; *q = e * r; *lp = -l; *lq = -t - l; }
    else { *p = e * r; *q = r; *lp = t - l; *lq = -l; }
}

/* log Phi(x) and phi(x) / Phi(x), accurate in both tails */
static void log_ndtr_and_mills(double x, double *logcdf, double *mills) {
    if (x > -37.0) {
        double cdf = 0.5 * erfc(-x / SQRT_2);
        double pdf = exp(-0.5 * x * x - 0.5 * LOG_2PI);
        *logcdf = log(cdf);
        *mills = pdf / cdf;
        return;
    }
    double z = 1.0 / (x * x);  /* asymptotic series (Abramowitz & Stegun 26.2.12) */
    double series = 1.0 - z + 3.0 * z * z - 15.0 * z * z * z;
    *logcdf = -0.5 * x * x - 0.5 * LOG_2PI - log(-x) + log(series);
    *mills = -x / series;
}

/* ---- priors and transforms -------------------------------------------------------------------- */
/* log density of a scalar prior at v (constrained scale) and its derivative */
static double prior_logp(int code, double p1, double p2, double p3, double v, double *dlp) {
    double t, s, mu, nu, lp;
    switch (code) {
    case NORMAL:
    case HALF_NORMAL:
        if (code == NORMAL) { t = (v - p1) / p2; s = p2; } else { t = v / p1; s = p1; }
        lp = -0.5 * t * t - log(s) - 0.5 * LOG_2PI + (code == HALF_NORMAL ? LOG_2 : 0.0);
        *dlp = -t / s;
        return lp;
    case STUDENT_T:
    case HALF_STUDENT_T:
        nu = p1;
        if (code == STUDENT_T) { mu = p2; s = p3; } else { mu = 0.0; s = p2; }
        t = (v - mu) / s;
        lp = lgam(0.5 * (nu + 1.0)) - lgam(0.5 * nu) - 0.5 * log(nu * M_PI) - log(s)
            - 0.5 * (nu + 1.0) * log1p(t * t / nu) + (code == HALF_STUDENT_T ? LOG_2 : 0.0);
        *dlp = -(nu + 1.0) * t / (s * (nu + t * t));
        return lp;
    case CAUCHY:
    case HALF_CAUCHY:
        if (code == CAUCHY) { mu = p1; s = p2; } else { mu = 0.0; s = p1; }
        t = (v - mu) / s;
        lp = -LOG_PI - log(s) - log1p(t * t) + (code == HALF_CAUCHY ? LOG_2 : 0.0);
        *dlp = -2.0 * t / (s * (1.0 + t * t));
        return lp;
    case LAPLACE:
        t = v - p1;
        *dlp = -(t > 0 ? 1.0 : (t < 0 ? -1.0 : 0.0)) / p2;
        return -log(2.0 * p2) - fabs(t) / p2;
    case EXPONENTIAL:
        *dlp = -p1;
        return log(p1) - p1 * v;
    case GAMMA:
        *dlp = (p1 - 1.0) / v - p2;
        return p1 * log(p2) - lgam(p1) + (p1 - 1.0) * log(v) - p2 * v;
    case INVERSE_GAMMA:
        *dlp = -(p1 + 1.0) / v + p2 / (v * v);
        return p1 * log(p2) - lgam(p1) - (p1 + 1.0) * log(v) - p2 / v;
    case LOGNORMAL: {
        double lv = log(v);
        t = (lv - p1) / p2;
        *dlp = -1.0 / v - t / (p2 * v);
        return -lv - log(p2) - 0.5 * LOG_2PI - 0.5 * t * t;
    }
    case UNIFORM:
        *dlp = 0.0;
        return -log(p2 - p1);
    case BETA:  /* a probability: Beta(p1, p2) on (0, 1) */
        *dlp = (p1 - 1.0) / v - (p2 - 1.0) / (1.0 - v);
        return (p1 - 1.0) * log(v) + (p2 - 1.0) * log1p(-v) - lgam(p1) - lgam(p2) + lgam(p1 + p2);
    }
    *dlp = 0.0;
    return -INFINITY;
}

/* value = g(x) for the transform; fills dv = dg/dx, lj = log Jacobian, dlj = d lj / dx */
static double constrain(double x, int transform, double lower, double upper,
                        double *dv, double *lj, double *dlj) {
    if (transform == T_LOG) {
        double v = exp(x);
        *dv = v; *lj = x; *dlj = 1.0;
        return v;
    }
    if (transform == T_INTERVAL) {
        double s = sigmoid(x), width = upper - lower;
        *dv = width * s * (1.0 - s);
        *lj = log(width) - log1pexp(-x) - log1pexp(x);
        *dlj = 1.0 - 2.0 * s;
        return lower + width * s;
    }
    if (transform == T_AFFINE) {  /* lower = centre, upper = scale: x is the value standardised by the data */
        *dv = upper; *lj = log(upper); *dlj = 0.0;
        return lower + upper * x;
    }
    *dv = 1.0; *lj = 0.0; *dlj = 0.0;
    return x;
}

/* The family parameters that are probabilities: the likelihood takes them by their logit (logit_parts) */
static inline int is_probability(int a) { return a == A_ZI || a == A_HU || a == A_ZOI || a == A_COI; }

/* The logit of a probability v = constrain(x) under prior row r, and d logit / dx into *dv (replacing d v / dx):
 * x itself where the transform is the logit onto (0, 1), as it is for every probability hmodels samples */
static inline double logit_of(double x, const double *r, double v, double *dv) {
    if ((int)r[4] == T_INTERVAL && r[5] == 0.0 && r[6] == 1.0) { *dv = 1.0; return x; }
    *dv = *dv / (v * (1.0 - v));
    return log(v) - log1p(-v);
}

/* Constrain x[ix] under prior row prow (offset into F); add prior (and Jacobian) gradient to grad[ix].
 * Returns the value; *dv = d value / dx; *lp += log prior (+ log Jacobian). */
static double scalar_param(const double *x, double *grad, i64 ix, const double *F, i64 prow,
                           int jacobian, double *dv, double *lp) {
    const double *r = F + prow;
    double lj, dlj, dlp;
    double v = constrain(x[ix], (int)r[4], r[5], r[6], dv, &lj, &dlj);
    *lp += prior_logp((int)r[0], r[1], r[2], r[3], v, &dlp);
    grad[ix] += dlp * (*dv);
    if (jacobian) { *lp += lj; grad[ix] += dlj; }
    return v;
}

/* ---- LKJ Cholesky factor (m x m, row-major) ---------------------------------------------------- */
/* Stan's transform y -> L; w[i*m+j] = 1 - sum_{c<j} L[i,c]^2 (w[i,i] = L[i,i]^2). Returns log Jacobian. */
static double lkj_forward(const double *y, i64 m, double *L, double *w) {
    double lj = 0.0;
    memset(L, 0, sizeof(double) * m * m);
    L[0] = 1.0;
    w[0] = 1.0;
    i64 k = 0;
    for (i64 i = 1; i < m; i++) {
        double acc = 1.0;
        for (i64 j = 0; j < i; j++) {
            double z = tanh(y[k]);
            lj += log1p(-z * z);
            w[i * m + j] = acc;
            if (j > 0) lj += 0.5 * log(acc);
            L[i * m + j] = z * sqrt(acc);
            acc -= L[i * m + j] * L[i * m + j];
            k++;
        }
        w[i * m + i] = acc;
        L[i * m + i] = sqrt(acc);
    }
    return lj;
}

/* Add to gy the gradient of G(L) + LKJ(eta) log density [+ log Jacobian] given gL = dG/dL.
 * Returns the LKJ log density without its normalising constant. */
static double lkj_backward(const double *y, i64 m, const double *L, const double *w, const double *gL,
                           double eta, double *gy, int jacobian) {
    double lp = 0.0;
    i64 k0 = 0;
    for (i64 i = 1; i < m; i++) {
        double c = (double)(m - i - 1) + 2.0 * eta - 2.0;  /* exponent of log L[i,i] */
        lp += 0.5 * c * log(w[i * m + i]);
        double adj_w = gL[i * m + i] / (2.0 * L[i * m + i]) + 0.5 * c / w[i * m + i];
        for (i64 j = i - 1; j >= 0; j--) {
            i64 kk = k0 + j;
            double z = tanh(y[kk]);
            double sw = sqrt(w[i * m + j]);
            double adj_L = gL[i * m + j] - 2.0 * L[i * m + j] * adj_w;  /* w[i,j+1] = w[i,j] - L[i,j]^2 */
            double adj_wj = adj_w;
            if (jacobian && j > 0) adj_wj += 0.5 / w[i * m + j];
            double adj_z = adj_L * sw;
            adj_wj += adj_L * z / (2.0 * sw);
            gy[kk] += adj_z * (1.0 - z * z);
            if (jacobian) gy[kk] += -2.0 * z;
            adj_w = adj_wj;
        }
        k0 += i;
    }
    return lp;
}

/* log Gamma(x + m) - log Gamma(x) and digamma(x + m) - digamma(x) for a count m >= 0: a sum of m logs (taken as
 * a few logs of products) and reciprocals when m is a small integer -- exact (also for a tiny x, where the
 * difference of lgammas loses digits) and cheaper than four special functions -- else, for x > 1e5, Stirling's
 * series differenced term by term, and otherwise the differences. */
static double log_rising(double x, double m, double *dsum) {
    if (!(m >= 0.0 && m <= 48.0 && m == floor(m) && x > 0.0 && x < 1e40)) {
        if (x > 1e5 && m > 0.0 && m < INFINITY) {  /* Stirling's series, differenced term by term: the difference of
                                                    * lgammas near 1e10 loses ~1e-5 (the next terms are < 1e-17) */
            double z = x + m, l = log1p(m / x);
            *dsum = l + 0.5 * m / (x * z) + m * (2.0 * x + m) / (12.0 * x * x * z * z);
            return (x - 0.5) * l + m * log(z) - m - m / (12.0 * x * z);
        }
        *dsum = digamma(x + m) - digamma(x);
        return lgam(x + m) - lgam(x);
    }
    double prod = 1.0, acc = 0.0, ds = 0.0;
    for (int j = 0; j < (int)m; j++) {
        double t = x + j;
        prod *= t;
        ds += 1.0 / t;
        if (prod > 1e250 || prod < 1e-250) { acc += log(prod); prod = 1.0; }
    }
    *dsum = ds;
    return acc + log(prod);
}

/* ---- families ------------------------------------------------------------------------------------ */
static inline double mean_of(int link, double eta, double *dmu) {
    if (link == LOG) { double m = exp(eta); *dmu = m; return m; }
    if (link == INVERSE) { double m = 1.0 / eta; *dmu = -m * m; return m; }
    *dmu = 1.0;
    return eta;
}

#define P_EPS 1e-12  /* probabilities are clipped to [eps, 1 - eps], as the families' PyMC likelihoods do */

/* mean of a logit-link proportion (clipped as PyMC's likelihood clips it: no gradient outside) */
static inline double proportion_of(double eta, double *dmu) {
    double m = sigmoid(eta);
    if (m < P_EPS) { *dmu = 0.0; return P_EPS; }
    if (m > 1.0 - P_EPS) { *dmu = 0.0; return 1.0 - P_EPS; }
    *dmu = m * (1.0 - m);
    return m;
}

/* log f(0) of the negative binomial with mean mu = exp(eta) and shape alpha, and its derivatives */
static inline double nb_log_p0(double alpha, double mu, double *d_eta, double *d_alpha) {
    double l = log1p(mu / alpha);  /* log((alpha + mu) / alpha), accurate for mu << alpha */
    *d_eta = -alpha * mu / (alpha + mu);
    *d_alpha = -l + mu / (alpha + mu);
    return -alpha * l;
}

/* log p, log(1-p) and their derivatives in eta for logit, probit, cloglog */
static void binary_parts(int link, double eta, double *lp1, double *lp0, double *d1, double *d0) {
    if (link == LOGIT) {  /* one exp and one log1p: softplus(+-eta) = max(+-eta, 0) + log1p(exp(-|eta|)) */
        double e = exp(-fabs(eta)), l = log1p(e), r = 1.0 / (1.0 + e);
        double p = eta >= 0.0 ? r : e * r, q = eta >= 0.0 ? e * r : r;  /* p = sigmoid(eta), q = 1 - p, both exact */
        *lp1 = -((eta < 0.0 ? -eta : 0.0) + l);
        *lp0 = -((eta > 0.0 ? eta : 0.0) + l);
        *d1 = q; *d0 = -p;
        return;
    }
    if (link == PROBIT) {
        double ma, mb;
        log_ndtr_and_mills(eta, lp1, &ma);
        log_ndtr_and_mills(-eta, lp0, &mb);
        *d1 = ma; *d0 = -mb;
        return;
    }
    double e = eta < 700.0 ? exp(eta) : INFINITY;  /* cloglog: p = 1 - exp(-exp(eta)) */
    *lp0 = -e;
    *d0 = -e;
    if (e < 1e-8) {
        *lp1 = log(e) - 0.5 * e;
        *d1 = 1.0 - 0.5 * e;
    } else {
        double q = -expm1(-e);
        *lp1 = log(q);
        *d1 = e < 700.0 ? e * exp(-e) / q : 0.0;
    }
}

/* Sum of log likelihood over observations (without the constant, O_CONST); fills g_eta and adds to g_aux
 * the derivatives in the family parameters (aux and g_aux are indexed by the A_* slots of AUX_NAMES; a
 * probability — zi, hu, zoi, coi — is passed by its logit, and its derivative is in that logit).
 * logy: log y (n) then log(1 - y) (n), for the positive and unit-interval families. */
static double family_loglik(int family, int link, i64 n, const double *y, const double *eta,
                            const double *trials, const double *w, const double *aux, double *g_eta,
                            double *g_aux, int known_se, const double *logy) {
    double ll = 0.0, dmu;
    if (family == GAUSSIAN) {
        if (known_se) {
            for (i64 i = 0; i < n; i++) {
                double r = y[i] - mean_of(link, eta[i], &dmu);
                ll += -0.5 * w[i] * r * r;
                g_eta[i] = w[i] * r * dmu;
            }
            return ll - 0.5 * n * LOG_2PI;
        }
        double sigma = aux[A_SIGMA], inv = 1.0 / (sigma * sigma), ss = 0.0;
        for (i64 i = 0; i < n; i++) {
            double r = y[i] - mean_of(link, eta[i], &dmu);
            ss += r * r;
            g_eta[i] = inv * r * dmu;
        }
        g_aux[A_SIGMA] += ss / (sigma * sigma * sigma) - n / sigma;
        return -0.5 * inv * ss - n * log(sigma) - 0.5 * n * LOG_2PI;
    }
    if (family == STUDENT) {
        double sigma = aux[A_SIGMA], nu = aux[A_NU];
        double c = lgam(0.5 * (nu + 1.0)) - lgam(0.5 * nu) - 0.5 * log(nu * M_PI) - log(sigma);
        double dc = 0.5 * digamma(0.5 * (nu + 1.0)) - 0.5 * digamma(0.5 * nu) - 0.5 / nu;
        double gs = 0.0, gn = 0.0;
        for (i64 i = 0; i < n; i++) {
            double t = (y[i] - mean_of(link, eta[i], &dmu)) / sigma;
            double q = t * t / nu;
            ll += c - 0.5 * (nu + 1.0) * log1p(q);
            double dl_dt = -(nu + 1.0) * t / (nu + t * t);
            g_eta[i] = -dl_dt / sigma * dmu;
            gs += -1.0 / sigma - dl_dt * t / sigma;
            gn += dc - 0.5 * log1p(q) + 0.5 * (nu + 1.0) * q / (nu * (1.0 + q));
        }
        g_aux[A_SIGMA] += gs;
        g_aux[A_NU] += gn;
        return ll;
    }
    if (family == BERNOULLI || family == BINOMIAL) {
        for (i64 i = 0; i < n; i++) {
            double lp1, lp0, d1, d0;
            binary_parts(link, eta[i], &lp1, &lp0, &d1, &d0);
            if (family == BERNOULLI) {
                if (y[i] > 0.5) { ll += lp1; g_eta[i] = d1; } else { ll += lp0; g_eta[i] = d0; }
            } else {
                double k = y[i], f = trials[i] - y[i];
                ll += k * lp1 + f * lp0;
                g_eta[i] = k * d1 + f * d0;
            }
        }
        return ll;
    }
    if (family == POISSON) {  /* w: number of identical rows aggregated into this one (1 otherwise) */
        for (i64 i = 0; i < n; i++) {
            double mu = w[i] * exp(eta[i]);
            ll += y[i] * eta[i] - mu;
            g_eta[i] = y[i] - mu;
        }
        return ll;
    }
    if (family == NEGBIN) {
        double alpha = aux[A_ALPHA], ga = 0.0;
        for (i64 i = 0; i < n; i++) {
            double mu = exp(eta[i]), lam = log(alpha + mu), l1 = log1p(mu / alpha), dr, lr = log_rising(alpha, y[i], &dr);
            ll += lr - alpha * l1 + y[i] * (eta[i] - lam);  /* alpha log(alpha / (alpha + mu)) as -alpha log1p(mu / alpha) */
            g_eta[i] = y[i] - mu * (alpha + y[i]) / (alpha + mu);
            ga += dr - l1 + (mu - y[i]) / (alpha + mu);
        }
        g_aux[A_ALPHA] += ga;
        return ll;
    }
    const double *ly = logy, *l1y = logy + n;
    if (family == FAM_GAMMA) {  /* mean mu, shape k: k log k - lgamma(k) + k log y - k log mu - k y / mu (- log y) */
        double k = aux[A_SHAPE], gk = 0.0;
        for (i64 i = 0; i < n; i++) {
            double mu, lmu, ymu;
            if (link == LOG) {
                lmu = eta[i]; ymu = y[i] * exp(-eta[i]);
                g_eta[i] = k * (ymu - 1.0);
            } else {
                mu = mean_of(link, eta[i], &dmu);
                if (!(mu > 0.0)) return -INFINITY;
                lmu = log(mu); ymu = y[i] / mu;
                g_eta[i] = k * (ymu - 1.0) / mu * dmu;
            }
            ll += k * (ly[i] - lmu - ymu);
            gk += ly[i] - lmu - ymu;
        }
        ll += n * (k * log(k) - lgam(k));
        g_aux[A_SHAPE] += gk + n * (log(k) + 1.0 - digamma(k));
        return ll;
    }
    if (family == FAM_EXPONENTIAL) {  /* mean exp(eta): -eta - y exp(-eta) */
        for (i64 i = 0; i < n; i++) {
            double ymu = y[i] * exp(-eta[i]);
            ll += -eta[i] - ymu;
            g_eta[i] = ymu - 1.0;
        }
        return ll;
    }
    if (family == FAM_WEIBULL) {  /* mean exp(eta), shape k: scale lam = mu / Gamma(1 + 1/k), z = (y / lam)^k:
                                   * log k - k log lam + k log y - z (- log y) */
        double k = aux[A_SHAPE], c = lgam(1.0 + 1.0 / k), dL = digamma(1.0 + 1.0 / k) / (k * k), gk = 0.0;
        for (i64 i = 0; i < n; i++) {
            double L = eta[i] - c, u = ly[i] - L, z = exp(k * u);
            ll += -k * L + k * ly[i] - z;
            g_eta[i] = k * (z - 1.0);
            gk += -L - k * dL + ly[i] - z * (u - k * dL);
        }
        ll += n * log(k);
        g_aux[A_SHAPE] += gk + n / k;
        return ll;
    }
    if (family == FAM_BETA) {  /* Beta(mu phi, (1 - mu) phi): lgamma(phi) - lgamma(a) - lgamma(b) + a log y + b log(1-y)
                                * (- log y - log(1 - y)) */
        double phi = aux[A_PHI], gp = 0.0;
        for (i64 i = 0; i < n; i++) {
            double mu = proportion_of(eta[i], &dmu), a = mu * phi, b = phi - a;
            double da = ly[i] - digamma(a), db = l1y[i] - digamma(b);
            ll += a * ly[i] + b * l1y[i] - lgam(a) - lgam(b);
            g_eta[i] = phi * (da - db) * dmu;
            gp += mu * da + (1.0 - mu) * db;
        }
        ll += n * lgam(phi);
        g_aux[A_PHI] += gp + n * digamma(phi);
        return ll;
    }
    if (family == BETABINOMIAL) {  /* lbeta(k + a, n - k + b) - lbeta(a, b) (+ log binomial coefficient) */
        double phi = aux[A_PHI], gp = 0.0;
        for (i64 i = 0; i < n; i++) {
            double mu = proportion_of(eta[i], &dmu), a = mu * phi, b = phi - a, k = y[i], f = trials[i] - y[i];
            double da, db, dab;  /* lbeta(k + a, f + b) - lbeta(a, b), term by term */
            ll += log_rising(a, k, &da) + log_rising(b, f, &db) - log_rising(phi, trials[i], &dab);
            g_eta[i] = phi * (da - db) * dmu;
            gp += mu * da + (1.0 - mu) * db - dab;
        }
        g_aux[A_PHI] += gp;
        return ll;
    }
    if (family == ZIPOISSON || family == ZINEGBIN) {
        /* y = 0: log(zi + (1 - zi) f(0)); y > 0: log(1 - zi) + log f(y) (- log y!) */
        /* zi by its logit (aux[A_ZI]); g_aux[A_ZI] is the derivative in that logit */
        double zi, q, lzi, l1zi, gz = 0.0, ga = 0.0;
        logit_parts(aux[A_ZI], &zi, &q, &lzi, &l1zi);
        int nb = family == ZINEGBIN;
        double alpha = nb ? aux[A_ALPHA] : 0.0;
        for (i64 i = 0; i < n; i++) {
            double mu = exp(eta[i]);
            if (y[i] == 0.0) {
                double de, dal, lf0 = nb ? nb_log_p0(alpha, mu, &de, &dal) : -mu;
                if (!nb) { de = -mu; dal = 0.0; }
                double f0 = exp(lf0), cnt = q * f0, tot = zi + cnt, l0, pc, dz;  /* P(0) = zi + (1 - zi) f(0) */
                if (tot > 1e-290) {  /* a sum of two non-negative terms: its log loses nothing */
                    double inv = 1.0 / tot;
                    l0 = log(tot);
                    pc = cnt * inv;  /* share of the zero from the count part */
                    dz = zi * q * inv;
                } else {  /* both terms underflow: in logs */
                    double c = l1zi + lf0, hi = lzi > c ? lzi : c, lo = lzi > c ? c : lzi;
                    l0 = hi + log1p(exp(lo - hi));
                    pc = exp(c - l0);
                    dz = exp(lzi + l1zi - l0);
                }
                ll += l0;
                g_eta[i] = pc * de;
                ga += pc * dal;
                gz += -expm1(lf0) * dz;  /* d l0 / d logit(zi) = zi (1 - zi) (1 - f(0)) / P(0) */
            } else if (nb) {
                double lam = log(alpha + mu), l1 = log1p(mu / alpha), dr, lr = log_rising(alpha, y[i], &dr);
                ll += l1zi + lr - alpha * l1 + y[i] * (eta[i] - lam);
                g_eta[i] = y[i] - mu * (alpha + y[i]) / (alpha + mu);
                ga += dr - l1 + (mu - y[i]) / (alpha + mu);
                gz -= zi;
            } else {
                ll += l1zi + y[i] * eta[i] - mu;
                g_eta[i] = y[i] - mu;
                gz -= zi;
            }
        }
        g_aux[A_ZI] += gz;
        if (nb) g_aux[A_ALPHA] += ga;
        return ll;
    }
    if (family == HURDLEPOISSON || family == HURDLENEGBIN) {
        /* y = 0: log hu; y > 0: log(1 - hu) + log f(y) - log(1 - f(0)) (- log y!) */
        double hu, qh, lhu, l1hu, gh = 0.0, ga = 0.0;  /* hu by its logit, as zi above */
        logit_parts(aux[A_HU], &hu, &qh, &lhu, &l1hu);
        int nb = family == HURDLENEGBIN;
        double alpha = nb ? aux[A_ALPHA] : 0.0;
        for (i64 i = 0; i < n; i++) {
            if (y[i] == 0.0) {
                ll += lhu;
                g_eta[i] = 0.0;
                gh += qh;
                continue;
            }
            double mu = exp(eta[i]);
            gh -= hu;
            if (nb) {
                double de, dal, lf0 = nb_log_p0(alpha, mu, &de, &dal), lam = log(alpha + mu), l1 = log1p(mu / alpha);
                double r = 1.0 / expm1(-lf0);  /* f(0) / (1 - f(0)) */
                double dr, lr = log_rising(alpha, y[i], &dr);
                ll += l1hu + lr - alpha * l1 + y[i] * (eta[i] - lam) - log(-expm1(lf0));
                g_eta[i] = y[i] - mu * (alpha + y[i]) / (alpha + mu) + r * de;
                ga += dr - l1 + (mu - y[i]) / (alpha + mu) + r * dal;
            } else {
                ll += l1hu + y[i] * eta[i] - mu - log(-expm1(-mu));
                g_eta[i] = y[i] - mu - (mu < 700.0 ? mu / expm1(mu) : 0.0);
            }
        }
        g_aux[A_HU] += gh;
        if (nb) g_aux[A_ALPHA] += ga;
        return ll;
    }
    if (family == FAM_HURDLEGAMMA || family == FAM_HURDLELOGNORMAL) {
        /* y = 0: log hu; y > 0: log(1 - hu) + the continuous log density at y (as PyMC's hurdle mixture:
         * a continuous part puts no mass at 0, so it is not truncated). Gamma (log link): mean exp(eta), shape k;
         * lognormal (identity link): log y ~ N(eta, sigma) */
        double hu, qh, lhu, l1hu, gh, gp = 0.0;  /* hu by its logit */
        logit_parts(aux[A_HU], &hu, &qh, &lhu, &l1hu);
        int gam = family == FAM_HURDLEGAMMA;
        double k = gam ? aux[A_SHAPE] : 0.0, sigma = gam ? 0.0 : aux[A_SIGMA];
        double ck = gam ? k * log(k) - lgam(k) : -log(sigma) - 0.5 * LOG_2PI;
        double dck = gam ? log(k) + 1.0 - digamma(k) : 0.0;
        i64 npos = 0;
        for (i64 i = 0; i < n; i++) {
            if (y[i] == 0.0) {
                ll += lhu;
                g_eta[i] = 0.0;
                continue;
            }
            npos++;
            if (gam) {
                double ymu = y[i] * exp(-eta[i]);
                ll += (k - 1.0) * ly[i] - k * eta[i] - k * ymu;
                g_eta[i] = k * (ymu - 1.0);
                gp += ly[i] - eta[i] - ymu;
            } else {
                double r = ly[i] - eta[i];
                ll += -ly[i] - 0.5 * r * r / (sigma * sigma);
                g_eta[i] = r / (sigma * sigma);
                gp += r * r / (sigma * sigma * sigma);
            }
        }
        ll += (double)npos * (l1hu + ck);
        gh = (double)(n - npos) * qh - (double)npos * hu;
        g_aux[A_HU] += gh;
        if (gam) g_aux[A_SHAPE] += gp + (double)npos * dck;
        else g_aux[A_SIGMA] += gp - (double)npos / sigma;
        return ll;
    }
    if (family == FAM_ZOIB) {
        /* y in {0, 1}: log zoi + log coi (y = 1) or log(1 - coi) (y = 0); otherwise
         * log(1 - zoi) + log Beta(y | mu phi, (1 - mu) phi), mu = logistic(eta) clipped as in PyMC's likelihood */
        double phi = aux[A_PHI], zoi, qz, lzoi, l1zoi, coi, qc, lcoi, l1coi, gp = 0.0;  /* zoi, coi by their logits */
        logit_parts(aux[A_ZOI], &zoi, &qz, &lzoi, &l1zoi);
        logit_parts(aux[A_COI], &coi, &qc, &lcoi, &l1coi);
        double lgphi = lgam(phi), dgphi = digamma(phi);
        i64 n0 = 0, n1 = 0, nin = 0;
        for (i64 i = 0; i < n; i++) {
            if (y[i] == 0.0 || y[i] == 1.0) {
                if (y[i] == 1.0) n1++; else n0++;
                g_eta[i] = 0.0;
                continue;
            }
            nin++;
            double mu = proportion_of(eta[i], &dmu), a = mu * phi, b = phi - a;
            double da = ly[i] - digamma(a), db = l1y[i] - digamma(b);
            ll += (a - 1.0) * ly[i] + (b - 1.0) * l1y[i] - lgam(a) - lgam(b) + lgphi;
            g_eta[i] = phi * (da - db) * dmu;
            gp += mu * da + (1.0 - mu) * db + dgphi;
        }
        ll += (double)nin * l1zoi + (double)(n0 + n1) * lzoi + (double)n1 * lcoi + (double)n0 * l1coi;
        g_aux[A_PHI] += gp;
        g_aux[A_ZOI] += (double)(n0 + n1) * qz - (double)nin * zoi;
        g_aux[A_COI] += (double)n1 * qc - (double)n0 * coi;
        return ll;
    }
    return -INFINITY;
}

/* ---- the cumulative (ordinal) family -------------------------------------------------------------- */
/* log Phi(x), accurate in both tails */
static inline double log_ndtr(double x) {
    if (x > 0.0) return log1p(-0.5 * erfc(x / SQRT_2));
    double lc, m;
    log_ndtr_and_mills(x, &lc, &m);
    return lc;
}

/* log F(x) and log f(x) of the latent error: logistic (LOGIT) or standard normal (PROBIT) */
static inline void latent_log_cdf_pdf(int link, double x, double *lF, double *lf) {
    if (link == LOGIT) {
        *lF = -log1pexp(-x);
        *lf = -log1pexp(x) - log1pexp(-x);
        return;
    }
    *lF = log_ndtr(x);
    *lf = -0.5 * x * x - 0.5 * LOG_2PI;
}

/* log(1 + exp(x)) and the logistic F(x) = 1 / (1 + exp(-x)) from one exponential */
static inline double softplus_sigmoid(double x, double *sig) {
    if (x >= 0.0) {
        double e = exp(-x);
        *sig = 1.0 / (1.0 + e);
        return x + log1p(e);
    }
    double e = exp(x);
    *sig = e / (1.0 + e);
    return log1p(e);
}

/* log(1 - exp(u)) for u < 0 */
static inline double log1mexp(double u) {
    return u > -LOG_2 ? log(-expm1(u)) : log1p(-exp(u));
}

/* Sum over observations of log P(y_i = k) = log(F(c_k - eta_i) - F(c_{k-1} - eta_i)) (c_0 = -inf, c_K = +inf),
 * written as hmodels.families.ordinal.category_logp writes it: through the lower tail when the interval lies
 * below 0 and the upper tail (1 - F(x) = F(-x)) above it. Fills g_eta and adds d/dc to g_cut. */
static double cumulative_loglik(int link, i64 n, const double *y, const double *eta, const double *cut, i64 ncut,
                                double *g_eta, double *g_cut) {
    double ll = 0.0;
    if (link == LOGIT) {  /* closed form: F(b) - F(a) = F(b) F(-a) (1 - exp(a - b)), each factor exact in the tails */
        for (i64 i = 0; i < n; i++) {
            i64 k = (i64)y[i];
            double L = 0.0, da = 0.0, db = 0.0, sa, sb;
            if (k > 1) {  /* the lower threshold a = c_{k-1} - eta: -log(1 + exp(a)), d/da = -F(a) */
                double a = cut[k - 2] - eta[i];
                L -= softplus_sigmoid(a, &sa);
                da = -sa;
                if (k <= ncut) {  /* log(1 - exp(a - b)), d/da = -1 / expm1(b - a) = -d/db */
                    double d = cut[k - 1] - cut[k - 2], r = d < 700.0 ? 1.0 / expm1(d) : 0.0;
                    L += log(-expm1(-d));
                    da -= r;
                    db = r;
                }
            }
            if (k <= ncut) {  /* the upper threshold b = c_k - eta: -log(1 + exp(-b)), d/db = F(-b) */
                double b = cut[k - 1] - eta[i];
                L -= softplus_sigmoid(-b, &sb);
                db += sb;
            }
            if (k > 1) g_cut[k - 2] += da;
            if (k <= ncut) g_cut[k - 1] += db;
            ll += L;
            g_eta[i] = -(da + db);
        }
        return ll;
    }
    for (i64 i = 0; i < n; i++) {
        i64 k = (i64)y[i];  /* 1..K */
        double L, da = 0.0, db = 0.0, lFa, lfa, lFb, lfb;
        if (k <= 1) {  /* log F(b), b = c_1 - eta */
            double b = cut[0] - eta[i];
            latent_log_cdf_pdf(link, b, &lFb, &lfb);
            L = lFb;
            db = exp(lfb - L);
            g_cut[0] += db;
        } else if (k > ncut) {  /* log(1 - F(a)) = log F(-a), a = c_{K-1} - eta */
            double a = cut[ncut - 1] - eta[i];
            latent_log_cdf_pdf(link, -a, &lFa, &lfa);
            L = lFa;
            da = -exp(lfa - L);
            g_cut[ncut - 1] += da;
        } else {
            double a = cut[k - 2] - eta[i], b = cut[k - 1] - eta[i];
            if (a + b > 0.0) {
                latent_log_cdf_pdf(link, -a, &lFa, &lfa);
                latent_log_cdf_pdf(link, -b, &lFb, &lfb);
                L = lFa + log1mexp(lFb - lFa);
            } else {
                latent_log_cdf_pdf(link, a, &lFa, &lfa);
                latent_log_cdf_pdf(link, b, &lFb, &lfb);
                L = lFb + log1mexp(lFa - lFb);
            }
            /* the densities are symmetric: f(-x) = f(x) */
            da = -exp(lfa - L);
            db = exp(lfb - L);
            g_cut[k - 2] += da;
            g_cut[k - 1] += db;
        }
        ll += L;
        g_eta[i] = -(da + db);
    }
    return ll;
}

/* The thresholds from x (PyMC's ordered transform: c_1 = x_1, c_j = c_{j-1} + exp(x_j)) with the prior of each
 * (row prow) and the log Jacobian sum_{j >= 2} x_j. Fills cut; g_cut receives d log prior / dc. */
static double cutpoints_forward(const double *x, i64 xs, i64 ncut, const double *prow, int jacobian, double *cut,
                                double *g_cut) {
    double lp = 0.0, d;
    for (i64 j = 0; j < ncut; j++) {
        cut[j] = j == 0 ? x[xs] : cut[j - 1] + exp(x[xs + j]);
        lp += prior_logp((int)prow[0], prow[1], prow[2], prow[3], cut[j], &d);
        g_cut[j] = d;
        if (jacobian && j > 0) lp += x[xs + j];
    }
    return lp;
}

/* d/dx of everything that reached the thresholds through g_cut (and of the Jacobian) */
static void cutpoints_backward(const double *x, double *grad, i64 xs, i64 ncut, const double *g_cut, int jacobian) {
    double tail = 0.0;
    for (i64 j = ncut - 1; j >= 1; j--) {
        tail += g_cut[j];  /* sum_{m >= j} g_cut[m] */
        grad[xs + j] += exp(x[xs + j]) * tail + (jacobian ? 1.0 : 0.0);
    }
    grad[xs] += tail + g_cut[0];
}

/* ---- the categorical (multinomial-logit) family ---------------------------------------------------- */
/* The m = K - 1 linear predictors of observation i are eta[j * nobs + i] (j = 0..m-1, category j + 2; the
 * first category is the reference, eta = 0), y[i] = 1..K. Sum over observations of
 * log P(y_i) = eta_{y_i} - log(1 + sum_j exp(eta_j)); g_eta = 1{y_i = j + 2} - softmax_j. */
static double categorical_loglik(i64 n, i64 m, const double *y, const double *eta, double *g_eta) {
    i64 nobs = n / m;
    double ll = 0.0, prod = 1.0;  /* sum of log s_i as the log of products (1 <= s_i <= K): one log per ~100 rows */
    for (i64 i = 0; i < nobs; i++) {
        double top = 0.0;  /* the reference category's eta */
        for (i64 j = 0; j < m; j++) if (eta[j * nobs + i] > top) top = eta[j * nobs + i];
        double s = exp(-top);
        for (i64 j = 0; j < m; j++) {
            double e = exp(eta[j * nobs + i] - top);
            g_eta[j * nobs + i] = e;  /* kept for the gradient: softmax_j = e_j / s */
            s += e;
        }
        i64 k = (i64)y[i] - 2;
        ll += (k >= 0 ? eta[k * nobs + i] : 0.0) - top;
        prod *= s;
        if (prod > 1e200) { ll -= log(prod); prod = 1.0; }
        double inv = 1.0 / s;
        for (i64 j = 0; j < m; j++) g_eta[j * nobs + i] = (j == k ? 1.0 : 0.0) - g_eta[j * nobs + i] * inv;
    }
    return ll - log(prod);
}

/* z = (y / lambda)^k of the weibull (lambda = mean / Gamma(1 + 1/k)) or y / mean of the exponential at log y, and its
 * derivatives in eta and k */
static double weibull_z(int family, double logy, double eta, const double *aux, double *dz_eta, double *dz_k) {
    if (family == FAM_EXPONENTIAL) {
        double z = exp(logy - eta);
        *dz_eta = -z;
        *dz_k = 0.0;
        return z;
    }
    double k = aux[A_SHAPE], cc = lgam(1.0 + 1.0 / k), dL = digamma(1.0 + 1.0 / k) / (k * k);
    double u = logy - (eta - cc), z = exp(k * u);
    *dz_eta = -k * z;
    *dz_k = z * (u - k * dL);
    return z;
}

/* ---- censored observations (cens()): log survival (right) or log CDF (left) ----------------------------- */
/* For the families whose engine kernel has a closed-form CDF: gaussian (and the lognormal, a gaussian model of
 * log y), exponential and weibull (both with mean exp(eta)). c = 1: log P(Y > y); c = -1: log P(Y <= y). Fills
 * d/d eta in *ge and adds d/d parameter to gi (slots of AUX_NAMES); returns NAN for another family. */
static double censored_loglik(int family, int link, int c, double y, double logy, double eta, const double *aux,
                              double *ge, double *gi) {
    if (family == GAUSSIAN) {
        double dmu, mu = mean_of(link, eta, &dmu), s = aux[A_SIGMA], z = (y - mu) / s, lc, mills;
        double arg = c > 0 ? -z : z;  /* right: Phi(-z); left: Phi(z) */
        log_ndtr_and_mills(arg, &lc, &mills);
        double sign = c > 0 ? 1.0 : -1.0;  /* d arg / d mu = sign / s; d arg / d s = sign * z / s */
        *ge = mills * sign / s * dmu;
        gi[A_SIGMA] += mills * sign * z / s;
        return lc;
    }
    if (family == FAM_EXPONENTIAL || family == FAM_WEIBULL) {
        double dz_eta, dz_k, z = weibull_z(family, logy, eta, aux, &dz_eta, &dz_k);
        if (c > 0) {  /* log S = -z */
            *ge = -dz_eta;
            if (family == FAM_WEIBULL) gi[A_SHAPE] += -dz_k;
            return -z;
        }
        double r = 1.0 / expm1(z);  /* log F = log(1 - exp(-z)); d/dz = 1 / expm1(z) */
        *ge = r * dz_eta;
        if (family == FAM_WEIBULL) gi[A_SHAPE] += r * dz_k;
        return log(-expm1(-z));
    }
    return NAN;
}

/* ---- truncation (trunc()): log P(lb <= y <= ub), the normalising constant of a truncated likelihood ------ */
/* log(Phi(b) - Phi(a)) for a < b (either infinite), in the tail that keeps its precision, and its derivatives. */
static double log_normal_mass(double a, double b, double *da, double *db) {
    double lo, hi, m, lp;
    if (a > 0.0) {  /* both in the upper tail: Phi(-a) - Phi(-b) */
        log_ndtr_and_mills(-a, &hi, &m);
        lo = -INFINITY;
        if (b < INFINITY) log_ndtr_and_mills(-b, &lo, &m);
    } else {
        hi = 0.0;
        if (b < INFINITY) log_ndtr_and_mills(b, &hi, &m);
        lo = -INFINITY;
        if (a > -INFINITY) log_ndtr_and_mills(a, &lo, &m);
    }
    lp = lo == -INFINITY ? hi : hi + log(-expm1(lo - hi));
    *da = isfinite(a) ? -exp(-0.5 * a * a - 0.5 * LOG_2PI - lp) : 0.0;
    *db = isfinite(b) ? exp(-0.5 * b * b - 0.5 * LOG_2PI - lp) : 0.0;
    return lp;
}

/* log of the sum of a count pmf (poisson, or negative binomial with shape a) over the integers of [lo, hi] (hi may
 * be inf), and its derivatives in mu and a: the terms relative to the one at the mode clamped into [lo, hi], summed
 * outward from there (they only fall) until they no longer count. NaN (the sampler rejects the point) where that
 * takes more than COUNT_MAXTERMS terms (a mean near 1e12, or a negative binomial tail ~1e6 long), never a sum cut
 * short. */
#define COUNT_MAXTERMS 1048576.0
static double count_log_sum(int nb, double mu, double a, double lo, double hi, double *dmu, double *da) {
    if (!(mu > 0.0 && mu < 1e15) || (nb && !(a > 0.0 && a < INFINITY))) {  /* no sum to take (NaN: rejected) */
        *dmu = *da = NAN;
        return NAN;
    }
    double mode = nb ? (a > 1.0 ? floor((a - 1.0) * mu / a) : 0.0) : floor(mu);
    double m0 = fmin(fmax(mode, lo), hi);
    double lq = nb ? -log1p(mu / a) : 0.0, lr = nb ? -log1p(a / mu) : log(mu), up = nb ? mu / (a + mu) : mu;
    /* dg: digamma(k + a) - digamma(a) at the term k, from log_rising at m0 (exact at a huge a), then by steps */
    double dg0 = 0.0, lp0 = nb ? log_rising(a, m0, &dg0) - lgam(m0 + 1.0) + a * lq + m0 * lr
                               : m0 * lr - mu - lgam(m0 + 1.0);
    double amu = nb ? a + mu : 1.0;
#define TRUNC_DMU(k) (nb ? (k) / mu - ((k) + a) / amu : (k) / mu - 1.0)
#define TRUNC_DA(k, dg) (nb ? (dg) + lq + (mu - (k)) / amu : 0.0)
    double s = 1.0, smu = TRUNC_DMU(m0), sa = TRUNC_DA(m0, dg0), t = 1.0, dg = dg0, left = COUNT_MAXTERMS;
    for (double k = m0 + 1.0; k <= hi; k += 1.0) {  /* upward: pmf(k) / pmf(k - 1) = (k - 1 + a) / k * mu / (a + mu) */
        t *= nb ? (k - 1.0 + a) / k * up : up / k;
        dg += nb ? 1.0 / (k - 1.0 + a) : 0.0;
        s += t;
        smu += t * TRUNC_DMU(k);
        sa += t * TRUNC_DA(k, dg);
        if (t < 1e-17 * s) break;
        if (--left <= 0.0) { *dmu = *da = NAN; return NAN; }  /* never a sum cut short: the point is rejected */
    }
    t = 1.0;
    dg = dg0;
    for (double k = m0 - 1.0; k >= lo; k -= 1.0) {  /* downward: the inverse ratio */
        t *= nb ? (k + 1.0) / (k + a) / up : (k + 1.0) / up;
        dg -= nb ? 1.0 / (k + a) : 0.0;
        s += t;
        smu += t * TRUNC_DMU(k);
        sa += t * TRUNC_DA(k, dg);
        if (t < 1e-17 * s) break;
        if (--left <= 0.0) { *dmu = *da = NAN; return NAN; }
    }
#undef TRUNC_DMU
#undef TRUNC_DA
    *dmu = smu / s;
    *da = sa / s;
    return lp0 + log(s);
}

/* log P(lb <= y <= ub) of one observation (bounds on the kernel's outcome scale: log y for the lognormal; counts:
 * integers, both included, P = F(ub) - F(lb - 1)); SUBTRACTS its derivatives from *ge (eta) and gi (parameters),
 * as the observation's log-likelihood is the family's less it. Gaussian: log(Phi(b) - Phi(a)); exponential, weibull:
 * log(S(lb) - S(ub)); poisson, negative binomial: the pmf summed over [lb, ub], or, with no upper bound, 1 - its
 * sum below lb (see the cases below). */
static double truncation_logmass(int family, int link, double lb, double ub, double eta, const double *aux,
                                 double *ge, double *gi) {
    double dmu, mu = mean_of(link, eta, &dmu);
    if (family == GAUSSIAN) {
        double s = aux[A_SIGMA], a = (lb - mu) / s, b = (ub - mu) / s, da, db;
        double lp = log_normal_mass(a, b, &da, &db);
        *ge -= -(da + db) / s * dmu;
        gi[A_SIGMA] -= -((isfinite(a) ? da * a : 0.0) + (isfinite(b) ? db * b : 0.0)) / s;
        return lp;
    }
    if (family == FAM_EXPONENTIAL || family == FAM_WEIBULL) {
        double za = 0.0, zb = INFINITY, ea = 0.0, ka = 0.0, eb = 0.0, kb = 0.0;
        if (lb > 0.0) za = weibull_z(family, log(lb), eta, aux, &ea, &ka);
        if (ub < INFINITY) zb = weibull_z(family, log(ub), eta, aux, &eb, &kb);
        double lp = -za + log(-expm1(za - zb));
        double dza = 1.0 / expm1(za - zb), dzb = zb < INFINITY ? 1.0 / expm1(zb - za) : 0.0;
        *ge -= dza * ea + dzb * eb;
        if (family == FAM_WEIBULL) gi[A_SHAPE] -= dza * ka + dzb * kb;
        return lp;
    }
    if (family == POISSON || family == NEGBIN) {
        int nb = family == NEGBIN;
        double a = nb ? aux[A_ALPHA] : 0.0, lo = fmax(lb, 0.0), lp, dm, dal;
        if (ub == INFINITY && lo > 0.0) {
            double lc = count_log_sum(nb, mu, a, 0.0, lo - 1.0, &dm, &dal);  /* log F(lb - 1) */
            /* P = 1 - F(lb - 1): below 1/2; or lb = 1, where log F(0) = a log(a / (a + mu)) (-mu) is exact; or a
             * negative binomial tail too long to sum (~40 / log(1 + a / mu) terms: millions as the sampler tries a
             * small alpha), where P keeps ~1e-16 |log F| / P of relative precision */
            if (lc < -LOG_2 || lo == 1.0 || (nb && 40.0 / log1p(a / mu) > 1e5)) {
                double r = -exp(lc) / -expm1(lc);  /* d log P / d log F */
                lp = log(-expm1(lc));
                dm *= r;
                dal *= r;
            } else {
                lp = count_log_sum(nb, mu, a, lo, ub, &dm, &dal);
            }
        } else {
            lp = count_log_sum(nb, mu, a, lo, ub, &dm, &dal);
        }
        *ge -= dm * dmu;
        if (nb) gi[A_ALPHA] -= dal;
        return lp;
    }
    return NAN;
}

/* ---- observation by observation: family parameters with their own formula, observation weights ----------- */
/* With H_NDPAR > 0, block 0 of the rows is the location's linear predictor and block j (1..H_NDPAR) that of the
 * parameter in slot dp[2(j-1)] of AUX_NAMES through link dp[2(j-1)+1] (LOG: exp; LOGIT: the logistic). Each
 * observation's likelihood is the family's with that row's parameters; d/d eta_j = d loglik / d parameter *
 * d parameter / d eta_j. With H_WEIGHTED, each observation's log-likelihood (and so every derivative) is times its
 * weight (brms's weights()). The scalar parameters' derivatives are summed into g_aux as family_loglik does. */
static double rowwise_loglik(const double *F, const i64 *I, i64 n, const double *y, const double *eta,
                             const double *trials, const double *w, const double *aux, double *g_eta, double *g_aux,
                             int known_se) {
    i64 nd = I[H_NDPAR], nobs = I[H_NPRED] > 0 ? n / I[H_NPRED] : n;
    const i64 *dp = I + I[O_DPARS];
    const double *logy = F + I[O_LOGY], *ow = I[H_WEIGHTED] == 1 ? F + I[O_OBSW] : NULL;
    const double *cens = I[H_CENSORED] == 1 ? F + I[O_CENS] : NULL, *trunc = I[H_TRUNC] == 1 ? F + I[O_TRUNC] : NULL;
    int family = (int)I[H_FAMILY], link = (int)I[H_LINK];
    double ll = 0.0;
    for (i64 i = 0; i < nobs; i++) {
        double ai[NAUX], gi[NAUX], dv[NAUX], ly[2] = {logy[i], logy[nobs + i]}, ge = 0.0;
        for (int a = 0; a < NAUX; a++) { ai[a] = aux[a]; gi[a] = 0.0; }
        for (i64 j = 0; j < nd; j++) {
            i64 a = dp[2 * j];
            double e = eta[(j + 1) * nobs + i];
            if (dp[2 * j + 1] == LOG) { ai[a] = exp(e); dv[j] = ai[a]; }
            else { ai[a] = e; dv[j] = 1.0; }  /* a probability is passed by its logit (logit_parts) */
        }
        double wi = ow ? ow[i] : 1.0;
        int ci = cens ? (int)cens[i] : 0;
        double li = ci == 0 ? family_loglik(family, link, 1, y + i, eta + i, trials + i, w + i, ai, &ge, gi, known_se, ly)
                            : censored_loglik(family, link, ci, y[i], ly[0], eta[i], ai, &ge, gi);
        if (trunc) li -= truncation_logmass(family, link, trunc[0], trunc[1], eta[i], ai, &ge, gi);
        ll += wi * li;
        g_eta[i] = wi * ge;
        for (i64 j = 0; j < nd; j++) g_eta[(j + 1) * nobs + i] = wi * gi[dp[2 * j]] * dv[j];
        for (int a = 0; a < NAUX; a++) g_aux[a] += wi * gi[a];
    }
    return ll;
}

/* ---- the nonlinear mean: a program over the parameters' linear predictors ----------------------------- */
/* Parameter j's value on observation i is eta[j * nobs + i] (its block of rows). The program (O_NLOPS, postfix,
 * NLW ints per operation) is run on each observation by a stack machine in forward mode: every value carries
 * its derivatives in the m parameters. Fills mu (nobs) and D[j * nobs + i] = d mu_i / d param_j. Returns 0 when
 * a value is not finite (the log density is then -inf, as for the PyMC graph). */
static int nl_forward(const double *F, const i64 *I, i64 nobs, i64 m, const double *eta, double *mu, double *D) {
    const i64 *ops = I + I[O_NLOPS];
    const double *consts = F + I[O_NLCONST], *cov = F + I[O_NLCOV];
    i64 nops = I[H_NLOPS];
    double v[NL_MAXDEPTH], d[NL_MAXDEPTH][NL_MAXPAR];
    for (i64 i = 0; i < nobs; i++) {
        int sp = 0;
        for (i64 o = 0; o < nops; o++) {
            i64 code = ops[o * NLW], arg = ops[o * NLW + 1];
            if (code <= NL_COV) {  /* push */
                v[sp] = code == NL_CONST ? consts[arg] : code == NL_PARAM ? eta[arg * nobs + i] : cov[arg * nobs + i];
                for (i64 j = 0; j < m; j++) d[sp][j] = (code == NL_PARAM && j == arg) ? 1.0 : 0.0;
                sp++;
                continue;
            }
            if (code >= NL_ADD && code <= NL_POW) {  /* binary: a (sp - 2) op b (sp - 1) -> sp - 2 */
                double a = v[sp - 2], b = v[sp - 1], *da = d[sp - 2], *db = d[sp - 1], r;
                if (code == NL_ADD) { r = a + b; for (i64 j = 0; j < m; j++) da[j] += db[j]; }
                else if (code == NL_SUB) { r = a - b; for (i64 j = 0; j < m; j++) da[j] -= db[j]; }
                else if (code == NL_MUL) { r = a * b; for (i64 j = 0; j < m; j++) da[j] = da[j] * b + a * db[j]; }
                else if (code == NL_DIV) { r = a / b; for (i64 j = 0; j < m; j++) da[j] = (da[j] - r * db[j]) / b; }
                else {  /* a ** b: b * a^(b-1) da + a^b log(a) db (the log term only where b varies) */
                    r = pow(a, b);
                    int varies = 0;
                    for (i64 j = 0; j < m; j++) varies |= db[j] != 0.0;
                    /* a zero base (a covariate at 0): 0^b has derivative 0 in b, and no term where da is 0 */
                    double ca = b == 0.0 ? 0.0 : b * pow(a, b - 1.0), cb = (varies && r != 0.0) ? r * log(a) : 0.0;
                    for (i64 j = 0; j < m; j++)
                        da[j] = (da[j] == 0.0 ? 0.0 : ca * da[j]) + (db[j] == 0.0 ? 0.0 : cb * db[j]);
                }
                v[sp - 2] = r;
                sp--;
                continue;
            }
            if (code == NL_WHERE) {  /* c (sp - 3), a (sp - 2), b (sp - 1) */
                int take_a = v[sp - 3] != 0.0;
                int src = take_a ? sp - 2 : sp - 1;
                v[sp - 3] = v[src];
                for (i64 j = 0; j < m; j++) d[sp - 3][j] = d[src][j];
                sp -= 2;
                continue;
            }
            if (code >= NL_LT) {  /* comparisons: 0 or 1, no derivative */
                double a = v[sp - 2], b = v[sp - 1];
                int t = code == NL_LT ? a < b : code == NL_LE ? a <= b : code == NL_GT ? a > b
                      : code == NL_GE ? a >= b : code == NL_EQ ? a == b : a != b;
                v[sp - 2] = t ? 1.0 : 0.0;
                for (i64 j = 0; j < m; j++) d[sp - 2][j] = 0.0;
                sp--;
                continue;
            }
            double a = v[sp - 1], r, g;  /* unary: value r and derivative g = dr/da */
            switch (code) {
                case NL_NEG: r = -a; g = -1.0; break;
                case NL_EXP: r = exp(a); g = r; break;
                case NL_LOG: r = log(a); g = 1.0 / a; break;
                case NL_LOG1P: r = log1p(a); g = 1.0 / (1.0 + a); break;
                case NL_EXPM1: r = expm1(a); g = r + 1.0; break;
                case NL_SQRT: r = sqrt(a); g = 0.5 / r; break;
                case NL_INVLOGIT: r = sigmoid(a); g = r * (1.0 - r); break;
                case NL_LOGIT: r = log(a) - log1p(-a); g = 1.0 / (a * (1.0 - a)); break;
                case NL_ABS: r = fabs(a); g = a > 0.0 ? 1.0 : (a < 0.0 ? -1.0 : 0.0); break;
                case NL_PHI: r = 0.5 * erfc(-a / SQRT_2); g = exp(-0.5 * a * a - 0.5 * LOG_2PI); break;
                case NL_LGAMMA: r = lgam(a); g = digamma(a); break;
                default: return 0;
            }
            v[sp - 1] = r;
            for (i64 j = 0; j < m; j++) d[sp - 1][j] *= g;
        }
        if (sp != 1 || !isfinite(v[0])) return 0;
        mu[i] = v[0];
        for (i64 j = 0; j < m; j++) {
            if (!isfinite(d[0][j])) return 0;
            D[j * nobs + i] = d[0][j];
        }
    }
    return 1;
}

/* ---- one factor's B = diag(sd) Lc (k x k, kmax stride) -------------------------------------------- */
typedef struct {
    i64 k, L;
    double sd[16];        /* k SDs */
    double Lc[256];       /* correlation Cholesky factors, block diagonal (k x k, stride k) */
    double B[256];        /* diag(sd) Lc */
    double gB[256];       /* d(log density) / dB */
    double W[16 * 256];   /* per block: LKJ work matrix */
} Factor;


/* SDs (with priors) and LKJ correlation factors of one factor. Returns their log prior (+ Jacobian). */
static double factor_B(const double *x, double *grad, const double *F, const i64 *I, i64 fac, Factor *fc,
                       int jacobian) {
    i64 k = I[fac + F_K];
    i64 xs = I[fac + F_XSD], ps = I[fac + F_PSD], pr = I[O_PRIORS];
    double lp = 0.0, dv;
    fc->k = k;
    fc->L = I[fac + F_L];
    for (i64 j = 0; j < k; j++)
        fc->sd[j] = scalar_param(x, grad, xs + j, F, pr + (ps + j) * PW, jacobian, &dv, &lp);
    memset(fc->Lc, 0, sizeof(double) * k * k);
    memset(fc->gB, 0, sizeof(double) * k * k);
    i64 nb = I[fac + F_NBLK];
    i64 b0 = I[O_BLK] + I[fac + F_BLK0] * BW;
    double Lb[256];
    for (i64 bi = 0; bi < nb; bi++) {
        i64 row = b0 + bi * BW, start = I[row + B_START], m = I[row + B_SIZE];
        if (I[row + B_COR] == 1) {
            double lj = lkj_forward(x + I[row + B_XLKJ], m, Lb, fc->W + bi * 256);
            if (jacobian) lp += lj;
            for (i64 a = 0; a < m; a++)
                for (i64 b = 0; b < m; b++) fc->Lc[(start + a) * k + start + b] = Lb[a * m + b];
        } else {
            for (i64 a = 0; a < m; a++) fc->Lc[(start + a) * k + start + a] = 1.0;
        }
    }
    for (i64 a = 0; a < k; a++)
        for (i64 b = 0; b < k; b++) fc->B[a * k + b] = fc->sd[a] * fc->Lc[a * k + b];
    return lp;
}

/* Push gB (dG/dB) back to the SDs and LKJ parameters; returns the LKJ log densities. */
static double factor_B_backward(const double *x, double *grad, const double *F, const i64 *I, i64 fac,
                                const Factor *fc, int jacobian) {
    i64 k = fc->k, xs = I[fac + F_XSD], ps = I[fac + F_PSD], pr = I[O_PRIORS];
    for (i64 a = 0; a < k; a++) {
        double gsd = 0.0;
        for (i64 b = 0; b < k; b++) gsd += fc->gB[a * k + b] * fc->Lc[a * k + b];
        const double *r = F + pr + (ps + a) * PW;
        double dv, lj, dlj;
        constrain(x[xs + a], (int)r[4], r[5], r[6], &dv, &lj, &dlj);
        grad[xs + a] += gsd * dv;
    }
    double lp = 0.0;
    i64 nb = I[fac + F_NBLK];
    i64 b0 = I[O_BLK] + I[fac + F_BLK0] * BW;
    double gL[256], Lb[256];
    for (i64 bi = 0; bi < nb; bi++) {
        i64 row = b0 + bi * BW;
        if (I[row + B_COR] != 1) continue;
        i64 start = I[row + B_START], m = I[row + B_SIZE], xl = I[row + B_XLKJ];
        const double *prow = F + pr + I[row + B_PLKJ] * PW;
        for (i64 a = 0; a < m; a++)
            for (i64 b = 0; b < m; b++) {
                gL[a * m + b] = fc->gB[(start + a) * k + start + b] * fc->sd[start + a];
                Lb[a * m + b] = fc->Lc[(start + a) * k + start + b];
            }
        lp += prow[2] + lkj_backward(x + xl, m, Lb, fc->W + bi * 256, gL, prow[1], grad + xl, jacobian);
    }
    return lp;
}

/* ---- group effects of a sampled factor ------------------------------------------------------------ */
/* out = Q v, Q the Householder reflection mapping e_1 to ones / sqrt(L) (Q = Q' = Q^-1). Centred
 * effects are sampled as w = Q' r, so that their common mode (which an intercept absorbs, leaving it
 * weakly identified) is one coordinate, w_1, and the others stay close to the individual levels. */
static void reflect(const double *v, i64 L, i64 stride, double *out, i64 ostride) {
    double ra = 1.0 / sqrt((double)L), c2 = 2.0 - 2.0 * ra, total = 0.0;
    for (i64 i = 0; i < L; i++) total += v[i * stride];
    double f = 2.0 * (v[0] - ra * total) / c2;
    double first = v[0] - f * (1.0 - ra);
    for (i64 i = 1; i < L; i++) out[i * ostride] = v[i * stride] + f * ra;
    out[0] = first;
}

/* effects r (L x k, row-major) from x: r = scale_t Q x per term t (centred) or r_l = B z_l (non-centred) */
static void effects_forward(const double *x, const double *F, const i64 *I, i64 fac, const Factor *fc, double *r) {
    i64 L = fc->L, k = fc->k, xe = I[fac + F_XEFF];
    if (I[fac + F_CENTRED] == 1) {
        const double *esc = F + I[fac + F_ESCALE];
        for (i64 a = 0; a < k; a++) {
            reflect(x + xe + a, L, k, r + a, k);
            for (i64 lv = 0; lv < L; lv++) r[lv * k + a] *= esc[a];
        }
        return;
    }
    if (I[fac + F_CENTRED] == 2) {  /* hierarchically centred: v = scale x here; hier_forward subtracts m */
        double esc = F[I[fac + F_ESCALE]];
        for (i64 lv = 0; lv < L; lv++) r[lv] = esc * x[xe + lv];
        return;
    }
    for (i64 lv = 0; lv < L; lv++) {
        const double *z = x + xe + lv * k;
        for (i64 a = 0; a < k; a++) {
            double acc = 0.0;
            for (i64 b = 0; b <= a; b++) acc += fc->B[a * k + b] * z[b];
            r[lv * k + a] = acc;
        }
    }
}

/* Given gr = d loglik / d r, add the gradient of loglik + the effects' prior to grad and fc->gB.
 * Returns the effects' log prior: N(0, 1) for z; MVN(0, B B') on the rows of w = Q'r (= the density of r),
 * plus, with the Jacobian, the constant L sum_t log scale_t of sampling x = w / scale. */
static double effects_backward(const double *x, double *grad, const double *F, const i64 *I, i64 fac, Factor *fc,
                               const double *gr, int jacobian) {
    i64 L = fc->L, k = fc->k, xe = I[fac + F_XEFF];
    const double *B = fc->B;
    double *gB = fc->gB, lp = 0.0;
    if (I[fac + F_CENTRED] != 1) {
        for (i64 lv = 0; lv < L; lv++) {
            const double *z = x + xe + lv * k;
            for (i64 a = 0; a < k; a++) {
                lp += -0.5 * z[a] * z[a];
                double acc = -z[a];
                for (i64 b = a; b < k; b++) acc += B[b * k + a] * gr[lv * k + b];
                grad[xe + lv * k + a] += acc;
                for (i64 b = 0; b <= a; b++) gB[a * k + b] += gr[lv * k + a] * z[b];
            }
        }
        return lp - 0.5 * L * k * LOG_2PI;
    }
    const double *esc = F + I[fac + F_ESCALE];
    for (i64 a = 0; a < k; a++) {  /* adds below */
        reflect(gr + a, L, k, grad + xe + a, k);
        for (i64 lv = 0; lv < L; lv++) grad[xe + lv * k + a] *= esc[a];
    }
    /* reflect() wrote Q gr into grad (overwriting): the effects' entries of grad were 0 before */
    double wv[KMAX], vv[KMAX], w[KMAX], logdiag = 0.0;
    for (i64 a = 0; a < k; a++) logdiag += log(B[a * k + a]);
    if (jacobian)
        for (i64 a = 0; a < k; a++) lp += L * log(esc[a]);
    for (i64 lv = 0; lv < L; lv++) {
        for (i64 a = 0; a < k; a++) w[a] = esc[a] * x[xe + lv * k + a];
        for (i64 a = 0; a < k; a++) {  /* B u = w */
            double acc = w[a];
            for (i64 b = 0; b < a; b++) acc -= B[a * k + b] * wv[b];
            wv[a] = acc / B[a * k + a];
        }
        for (i64 a = k - 1; a >= 0; a--) {  /* B' v = u */
            double acc = wv[a];
            for (i64 b = a + 1; b < k; b++) acc -= B[b * k + a] * vv[b];
            vv[a] = acc / B[a * k + a];
        }
        for (i64 a = 0; a < k; a++) {
            lp += -0.5 * wv[a] * wv[a];
            grad[xe + lv * k + a] -= vv[a] * esc[a];
            for (i64 b = 0; b <= a; b++) gB[a * k + b] += vv[a] * wv[b];
        }
    }
    for (i64 a = 0; a < k; a++) gB[a * k + a] -= L / B[a * k + a];
    return lp - L * logdiag - 0.5 * L * k * LOG_2PI;
}

/* ---- hierarchical centring (F_CENTRED == 2) ------------------------------------------------------------ */
/* A factor with one intercept term can be sampled centred on everything that is constant within its levels
 * (Gelfand, Sahu & Carlin 1995): the sampler moves v_l = r_l + m_l (as x_l = v_l / scale, F_ESCALE), where
 * m_l = sum_c Xh[l, c] beta_c + sum_parents sum_t Zh_q[l, t] r_q[a_q(l), t], Xh the level-constant columns of
 * Xc (0 elsewhere; F_HX) and r_q the effects of a factor q whose level a_q(l) and level-constant Z columns are
 * fixed within level l (a factor the levels are nested in; F_HPAR). The map (x_l, rest) -> (r_l, rest) is a
 * shift of r by a function of the other coordinates: triangular with unit diagonal, so the density is the
 * same up to the constant L log scale (as for centred effects) and the likelihood, which sees
 * Xc beta + r_q + r_l = v_l + (the rest), is unchanged. The gradient: with g_l = d log p / d r_l (likelihood
 * and the N(0, sd) prior of r_l), d/dx_l = scale g_l, and r_l = v_l - m_l adds -g_l dm_l/d(beta, r_q) to the
 * coefficients' and the parents' gradients, which is why the parents' backward pass comes after this one.
 * Parents are never hierarchically centred themselves (layout.py), so hier_forward reads their final effects.
 * A hierarchically centred factor takes no part in the intercept shift (H_SHIFT): its v already absorbs it. */
static void hier_forward(const double *F, const i64 *I, const double *beta, double **R) {
    i64 p = I[H_P];
    for (i64 f = 0; f < I[H_NFAC]; f++) {
        i64 fac = I[O_FAC] + f * FW;
        if (I[fac + F_CENTRED] != 2) continue;
        i64 L = I[fac + F_L];
        const double *Xh = F + I[fac + F_HX];
        const i64 *par = I + I[fac + F_HPAR];
        double *r = R[f];
        for (i64 lv = 0; lv < L; lv++) {
            double m = 0.0;
            for (i64 c = 0; c < p; c++) m += Xh[lv * p + c] * beta[c];
            r[lv] -= m;
        }
        for (i64 q = 0; q < par[0]; q++) {
            i64 fa = par[1 + 3 * q], kq = I[I[O_FAC] + fa * FW + F_K];
            const i64 *pl = I + par[2 + 3 * q];
            const double *Zh = F + par[3 + 3 * q], *rq = R[fa];
            for (i64 lv = 0; lv < L; lv++)
                for (i64 t = 0; t < kq; t++) r[lv] -= Zh[lv * kq + t] * rq[pl[lv] * kq + t];
        }
    }
}

/* The backward pass of one hierarchically centred factor f, given gr[f] = d loglik / d r: adds its prior
 * N(0, sd) (and, with the Jacobian, L log scale), the gradient of x_l, d/d sd into fc->gB, and -g through m
 * to the coefficients (grad, via dbeta) and to the parents' d/d r (gr[q]). Returns the log prior. */
static double hier_backward(double *grad, const double *F, const i64 *I, i64 f, Factor *fc, const double *r,
                            double **gr, const double *dbeta, int jacobian) {
    i64 fac = I[O_FAC] + f * FW, L = I[fac + F_L], xe = I[fac + F_XEFF], p = I[H_P], xb = I[X_BETA];
    double sd = fc->B[0], esc = F[I[fac + F_ESCALE]], *g = gr[f], ss = 0.0;
    for (i64 lv = 0; lv < L; lv++) {
        double u = r[lv] / sd;
        ss += u * u;
        g[lv] -= u / sd;
        grad[xe + lv] += esc * g[lv];
    }
    fc->gB[0] += ss / sd - L / sd;
    const double *Xh = F + I[fac + F_HX];
    if (I[H_INTBETA] != 1)
        for (i64 c = 0; c < p; c++) {
            double acc = 0.0;
            for (i64 lv = 0; lv < L; lv++) acc += Xh[lv * p + c] * g[lv];
            grad[xb + c] -= acc * dbeta[c];
        }
    const i64 *par = I + I[fac + F_HPAR];
    for (i64 q = 0; q < par[0]; q++) {
        i64 fa = par[1 + 3 * q], kq = I[I[O_FAC] + fa * FW + F_K];
        const i64 *pl = I + par[2 + 3 * q];
        const double *Zh = F + par[3 + 3 * q];
        double *gq = gr[fa];
        for (i64 lv = 0; lv < L; lv++)
            for (i64 t = 0; t < kq; t++) gq[pl[lv] * kq + t] -= Zh[lv * kq + t] * g[lv];
    }
    return -0.5 * ss - L * log(sd) - 0.5 * L * LOG_2PI + (jacobian ? L * log(esc) : 0.0);
}

/* ---- small dense linear algebra (row-major) --------------------------------------------------------- */
/* lower Cholesky factor C of the SPD k x k matrix M; returns log det M (NAN if not SPD) */
static double chol(const double *M, i64 k, double *C) {
    double logdet = 0.0;
    for (i64 a = 0; a < k; a++) {
        for (i64 b = 0; b <= a; b++) {
            double acc = M[a * k + b];
            for (i64 c = 0; c < b; c++) acc -= C[a * k + c] * C[b * k + c];
            if (a == b) {
                if (!(acc > 0.0)) return NAN;
                C[a * k + a] = sqrt(acc);
                logdet += 2.0 * log(C[a * k + a]);
            } else {
                C[a * k + b] = acc / C[b * k + b];
            }
        }
        for (i64 b = a + 1; b < k; b++) C[a * k + b] = 0.0;
    }
    return logdet;
}

/* Cholesky C of M and the inverse Minv; returns log det M */
static double chol_inverse(const double *M, i64 k, double *C, double *Minv) {
    double logdet = chol(M, k, C);
    double Ci[256];
    for (i64 a = 0; a < k; a++) {
        Ci[a * k + a] = 1.0 / C[a * k + a];
        for (i64 b = 0; b < a; b++) {
            double acc = 0.0;
            for (i64 c = b; c < a; c++) acc -= C[a * k + c] * Ci[c * k + b];
            Ci[a * k + b] = acc / C[a * k + a];
        }
        for (i64 b = a + 1; b < k; b++) Ci[a * k + b] = 0.0;
    }
    for (i64 a = 0; a < k; a++)
        for (i64 b = 0; b < k; b++) {
            double acc = 0.0;
            for (i64 c = (a > b ? a : b); c < k; c++) acc += Ci[c * k + a] * Ci[c * k + b];
            Minv[a * k + b] = acc;
        }
    return logdet;
}

/* ---- one factor (and the coefficients) integrated out ----------------------------------------------- */
/* Per level M_l = I + s B'A_l B: fills Minv, BAB (L x k x k); adds d(-1/2 sum log|M_l|)/dB to gB.
 * Returns sum_l log|M_l|; *gs = d(-1/2 sum log|M_l|)/ds. */
static double level_factorisations(const double *F, const i64 *I, i64 fac, const double *B, i64 k, double s,
                                   double *Minv, double *BAB, double *gB, double *gs) {
    i64 L = I[fac + F_L];
    const double *A0 = F + I[fac + F_A];
    double logdet = 0.0;
    *gs = 0.0;
    if (k == 1) {
        double b = B[0];
        for (i64 lv = 0; lv < L; lv++) {
            double a = A0[lv], m = 1.0 + s * b * b * a;
            Minv[lv] = 1.0 / m;
            BAB[lv] = b * b * a;
            logdet += log(m);
            *gs += -0.5 * b * b * a / m;
            gB[0] += -s * a * b / m;
        }
        return logdet;
    }
    double AB[256], M[256], C[256];
    for (i64 lv = 0; lv < L; lv++) {
        const double *A = A0 + lv * k * k;
        double *mi = Minv + lv * k * k, *bab = BAB + lv * k * k;
        for (i64 a = 0; a < k; a++)
            for (i64 b = 0; b < k; b++) {
                double acc = 0.0;
                for (i64 t = b; t < k; t++) acc += A[a * k + t] * B[t * k + b];
                AB[a * k + b] = acc;
            }
        for (i64 a = 0; a < k; a++)
            for (i64 b = 0; b < k; b++) {
                double acc = 0.0;
                for (i64 t = a; t < k; t++) acc += B[t * k + a] * AB[t * k + b];
                bab[a * k + b] = acc;
                M[a * k + b] = s * acc + (a == b ? 1.0 : 0.0);
            }
        logdet += chol_inverse(M, k, C, mi);
        double tr = 0.0;
        for (i64 a = 0; a < k; a++)
            for (i64 b = 0; b < k; b++) tr += mi[a * k + b] * bab[b * k + a];
        *gs += -0.5 * tr;
        for (i64 a = 0; a < k; a++)
            for (i64 b = 0; b < k; b++) {
                double acc = 0.0;
                for (i64 t = 0; t < k; t++) acc += AB[a * k + t] * mi[t * k + b];
                gB[a * k + b] += -s * acc;
            }
    }
    return logdet;
}

/* Q = w'V^-1 w = s w'Ww - s^2 sum_l c_l' M_l^-1 c_l (c_l = B'g_l, g_l = Z_l'Ww). Adds d(-Q/2)/dB
 * (w fixed) to gB, fills u_l = M_l^-1 c_l, returns Q; *gs = d(-Q/2)/ds. */
static double quad_part(const double *F, const i64 *I, i64 fac, const double *B, i64 k, double s,
                        const double *Minv, const double *BAB, const double *g, double wWw, double *gB,
                        double *u, double *gs) {
    i64 L = I[fac + F_L];
    const double *A0 = F + I[fac + F_A];
    double Q = s * wWw;
    *gs = -0.5 * wWw;
    if (k == 1) {
        double b = B[0];
        for (i64 lv = 0; lv < L; lv++) {
            double c = b * g[lv], uu = Minv[lv] * c, a = A0[lv];
            u[lv] = uu;
            Q -= s * s * c * uu;
            *gs += s * c * uu - 0.5 * s * s * uu * uu * b * b * a;
            gB[0] += s * s * g[lv] * uu - s * s * s * a * b * uu * uu;
        }
        return Q;
    }
    double c[KMAX], Bu[KMAX], ABu[KMAX];
    for (i64 lv = 0; lv < L; lv++) {
        const double *A = A0 + lv * k * k, *mi = Minv + lv * k * k, *bab = BAB + lv * k * k, *gl = g + lv * k;
        double *ul = u + lv * k;
        for (i64 a = 0; a < k; a++) {
            double acc = 0.0;
            for (i64 t = a; t < k; t++) acc += B[t * k + a] * gl[t];
            c[a] = acc;
        }
        double cu = 0.0;
        for (i64 a = 0; a < k; a++) {
            double acc = 0.0;
            for (i64 b = 0; b < k; b++) acc += mi[a * k + b] * c[b];
            ul[a] = acc;
            cu += c[a] * acc;
        }
        Q -= s * s * cu;
        double uBABu = 0.0;
        for (i64 a = 0; a < k; a++)
            for (i64 b = 0; b < k; b++) uBABu += ul[a] * bab[a * k + b] * ul[b];
        *gs += s * cu - 0.5 * s * s * uBABu;
        for (i64 t = 0; t < k; t++) {
            double acc = 0.0;
            for (i64 b = 0; b <= t; b++) acc += B[t * k + b] * ul[b];
            Bu[t] = acc;
        }
        for (i64 a = 0; a < k; a++) {
            double acc = 0.0;
            for (i64 t = 0; t < k; t++) acc += A[a * k + t] * Bu[t];
            ABu[a] = acc;
        }
        for (i64 a = 0; a < k; a++)
            for (i64 b = 0; b < k; b++) gB[a * k + b] += s * s * gl[a] * ul[b] - s * s * s * ABu[a] * ul[b];
    }
    return Q;
}

/* Work arrays of gaussian_marginal, sized for one model (L levels, k terms, p coefficients). */
typedef struct {
    double *Minv, *BAB, *gt, *gj, *scratch;  /* L*k*k, L*k*k, L*k, L*k, L*k */
    double *Km, *KL, *P;                     /* p*p */
    double *ke, *h, *wv, *ve, *aj, *xe0;     /* p */
    double *T, *MT;                          /* k*p */
} MarginalWork;

/* log N(e | 0, Z B B'Z' + W^-1/s), with the coefficients integrated out too when H_INTBETA.
 * e is the residual from the sampled part of the mean, given by eWe = e'We, XtWe = Xc'We and
 * ge_l = Z_l'We. With the coefficients integrated out (beta = m0 + L0 zeta, zeta ~ N(0, I)), e is the
 * residual at beta = b_ref (O_BREF) instead, and e0 = e - Xc d0 (d0 = m0 - b_ref) the one at the prior
 * mean: P = I + L0'Xc'V^-1 Xc L0, h = L0'Xc'V^-1 e0, v = P^-1 h, and the log likelihood is that of the
 * residual at the coefficients' posterior mean, e - Xc a_out with a_out = d0 + L0 v, less 1/2 (v'v + log|P|).
 * Forming that residual's statistics from e (not e0) keeps them exact when the prior mean is far from
 * the data. Returns the log likelihood; *gs = d/ds; adds d/dB to gB. Fills a_out, ut = M^-1 c(the residual
 * e - Xc a_out), v_out and LP (Cholesky factor of P, p x p) for drawing the coefficients. */
static double gaussian_marginal(const double *F, const i64 *I, i64 fac, const double *B, i64 k, double s,
                                double logdet_noise, double eWe, const double *XtWe, const double *ge,
                                double *gB, double *a_out, double *ut, double *v_out, double *LP,
                                MarginalWork *mw, double *gs_out) {
    i64 n = I[H_N], p = I[H_P], L = I[fac + F_L];
    double gs, gq;
    double logdetM = level_factorisations(F, I, fac, B, k, s, mw->Minv, mw->BAB, gB, &gs);
    double ll = -0.5 * (n * LOG_2PI + logdet_noise + logdetM);
    for (i64 j = 0; j < p; j++) a_out[j] = 0.0;
    if (I[H_INTBETA] != 1) {
        double Q = quad_part(F, I, fac, B, k, s, mw->Minv, mw->BAB, ge, eWe, gB, ut, &gq);
        *gs_out = gs + gq;
        return ll - 0.5 * Q;
    }
    i64 cr = I[O_CROSS];
    const double *XtX = F + cr;
    const double *ZtX = F + I[fac + F_ZTX];
    const double *L0 = F + I[O_L0], *d0 = F + I[O_D0];
    double *Km = mw->Km, *ke = mw->ke, *T = mw->T, *MT = mw->MT, *xe0 = mw->xe0, *ge0 = mw->gt, ce[KMAX];
    for (i64 a = 0; a < p; a++) {  /* statistics of e0 = e - Xc d0 */
        double acc = XtWe[a];
        for (i64 b = 0; b < p; b++) acc -= XtX[a * p + b] * d0[b];
        xe0[a] = acc;
    }
    for (i64 q = 0; q < L * k; q++) {
        double acc = ge[q];
        for (i64 j = 0; j < p; j++) acc -= ZtX[q * p + j] * d0[j];
        ge0[q] = acc;
    }
    for (i64 a = 0; a < p; a++) {
        ke[a] = s * xe0[a];
        for (i64 b = 0; b < p; b++) Km[a * p + b] = s * XtX[a * p + b];
    }
    for (i64 lv = 0; lv < L; lv++) {
        const double *mi = mw->Minv + lv * k * k, *zx = ZtX + lv * k * p, *gl = ge0 + lv * k;
        for (i64 a = 0; a < k; a++) {  /* T = B' ZtX_l (k x p), ce = B' ge_l */
            double acc2 = 0.0;
            for (i64 t = a; t < k; t++) acc2 += B[t * k + a] * gl[t];
            ce[a] = acc2;
            for (i64 j = 0; j < p; j++) {
                double acc = 0.0;
                for (i64 t = a; t < k; t++) acc += B[t * k + a] * zx[t * p + j];
                T[a * p + j] = acc;
            }
        }
        for (i64 a = 0; a < k; a++)
            for (i64 j = 0; j < p; j++) {
                double acc = 0.0;
                for (i64 b = 0; b < k; b++) acc += mi[a * k + b] * T[b * p + j];
                MT[a * p + j] = acc;
            }
        for (i64 i = 0; i < p; i++) {
            double acc2 = 0.0;
            for (i64 a = 0; a < k; a++) acc2 += MT[a * p + i] * ce[a];
            ke[i] -= s * s * acc2;
            for (i64 j = 0; j < p; j++) {
                double acc = 0.0;
                for (i64 a = 0; a < k; a++) acc += T[a * p + i] * MT[a * p + j];
                Km[i * p + j] -= s * s * acc;
            }
        }
    }
    double *KL = mw->KL, *P = mw->P, *h = mw->h;
    for (i64 i = 0; i < p; i++)
        for (i64 j = 0; j < p; j++) {
            double acc = 0.0;
            for (i64 t = 0; t < p; t++) acc += Km[i * p + t] * L0[t * p + j];
            KL[i * p + j] = acc;
        }
    for (i64 i = 0; i < p; i++) {
        double acc2 = 0.0;
        for (i64 t = 0; t < p; t++) acc2 += L0[t * p + i] * ke[t];
        h[i] = acc2;
        for (i64 j = 0; j < p; j++) {
            double acc = 0.0;
            for (i64 t = 0; t < p; t++) acc += L0[t * p + i] * KL[t * p + j];
            P[i * p + j] = acc + (i == j ? 1.0 : 0.0);
        }
    }
    double logdetP = chol(P, p, LP);
    double *wv = mw->wv;
    for (i64 i = 0; i < p; i++) {  /* v = P^-1 h */
        double acc = h[i];
        for (i64 j = 0; j < i; j++) acc -= LP[i * p + j] * wv[j];
        wv[i] = acc / LP[i * p + i];
    }
    for (i64 i = p - 1; i >= 0; i--) {
        double acc = wv[i];
        for (i64 j = i + 1; j < p; j++) acc -= LP[j * p + i] * v_out[j];
        v_out[i] = acc / LP[i * p + i];
    }
    double vv = 0.0;
    for (i64 i = 0; i < p; i++) {
        vv += v_out[i] * v_out[i];
        double acc = d0[i];
        for (i64 j = 0; j < p; j++) acc += L0[i * p + j] * v_out[j];
        a_out[i] = acc;
    }
    /* the residual at the coefficients' posterior mean, as sufficient statistics */
    for (i64 lv = 0; lv < L; lv++)
        for (i64 t = 0; t < k; t++) {
            double acc = ge[lv * k + t];
            for (i64 j = 0; j < p; j++) acc -= ZtX[(lv * k + t) * p + j] * a_out[j];
            mw->gt[lv * k + t] = acc;
        }
    double tWt = eWe;
    for (i64 i = 0; i < p; i++) {
        double acc = 0.0;
        for (i64 j = 0; j < p; j++) acc += XtX[i * p + j] * a_out[j];
        tWt += -2.0 * a_out[i] * XtWe[i] + a_out[i] * acc;
    }
    double Qt = quad_part(F, I, fac, B, k, s, mw->Minv, mw->BAB, mw->gt, tWt, gB, ut, &gq);
    ll += -0.5 * (Qt + vv) - 0.5 * logdetP;
    gs += gq;
    /* -1/2 log|P|: one quadratic part per column of Xc L0 LP^-T */
    double *ve = mw->ve, *aj = mw->aj;
    for (i64 jcol = 0; jcol < p; jcol++) {
        for (i64 i = p - 1; i >= 0; i--) {
            double acc = i == jcol ? 1.0 : 0.0;
            for (i64 j = i + 1; j < p; j++) acc -= LP[j * p + i] * ve[j];
            ve[i] = acc / LP[i * p + i];
        }
        for (i64 i = 0; i < p; i++) {
            double acc = 0.0;
            for (i64 j = 0; j < p; j++) acc += L0[i * p + j] * ve[j];
            aj[i] = acc;
        }
        double wWw = 0.0;
        for (i64 i = 0; i < p; i++) {
            double acc = 0.0;
            for (i64 j = 0; j < p; j++) acc += XtX[i * p + j] * aj[j];
            wWw += aj[i] * acc;
        }
        for (i64 lv = 0; lv < L; lv++)
            for (i64 t = 0; t < k; t++) {
                double acc = 0.0;
                for (i64 j = 0; j < p; j++) acc += ZtX[(lv * k + t) * p + j] * aj[j];
                mw->gj[lv * k + t] = acc;
            }
        quad_part(F, I, fac, B, k, s, mw->Minv, mw->BAB, mw->gj, wWw, gB, mw->scratch, &gq);
        gs += gq;
    }
    *gs_out = gs;
    return ll;
}

/* s = 1/sigma^2 (1 with known SEs) and log det of the residual covariance W^-1/s */
static double noise_terms(const double *F, const i64 *I, const double *aux, int known_se, double *logdet) {
    i64 n = I[H_N], p = I[H_P];
    if (known_se) {
        *logdet = -F[I[O_CROSS] + p * p + p + 1];
        return 1.0;
    }
    *logdet = 2.0 * n * log(aux[A_SIGMA]);
    return 1.0 / (aux[A_SIGMA] * aux[A_SIGMA]);
}

/* e = y - offset and e'We, Xc'We, Z_l'We (of the integrated-out factor) over rows; returns e'We */
static double residual_stats(const double *F, const i64 *I, i64 fac, const double *y, const double *offset,
                             int known_se, double *e, double *XtWe, double *ge) {
    i64 n = I[H_N], p = I[H_P], k = I[fac + F_K], L = I[fac + F_L];
    const i64 *codes = I + I[fac + F_CODES];
    const double *Z = F + I[fac + F_Z], *Xc = F + I[O_X], *w = F + I[O_W];
    int ones = I[fac + F_ONES] == 1;
    double eWe = 0.0;
    for (i64 j = 0; j < p; j++) XtWe[j] = 0.0;
    memset(ge, 0, sizeof(double) * L * k);
    for (i64 i = 0; i < n; i++) {
        e[i] = y[i] - offset[i];
        double we = (known_se ? w[i] : 1.0) * e[i];
        eWe += we * e[i];
        for (i64 j = 0; j < p; j++) XtWe[j] += Xc[i * p + j] * we;
        if (ones) ge[codes[i]] += we;
        else
            for (i64 a = 0; a < k; a++) ge[codes[i] * k + a] += Z[i * k + a] * we;
    }
    return eWe;
}

/* e = y - Xc beta = y_r - Xc (beta - b_ref) from the cross-products of y_r: Xc'We, Z_l'We; returns e'We.
 * y_r is the least-squares residual, so e'We = y_r'Wy_r - 2 d'Xc'Wy_r + d'Xc'WXc d (d = beta - b_ref)
 * sums terms of the size of the result: nothing cancels, wherever the data lie. dv: work space (p). */
static double cross_stats(const double *F, const i64 *I, i64 fac, const double *beta, double *dv, double *XtWe,
                          double *ge) {
    i64 p = I[H_P], L = I[fac + F_L], k = I[fac + F_K], cr = I[O_CROSS];
    const double *XtX = F + cr, *Xty = F + cr + p * p, *bref = F + I[O_BREF];
    const double *ZtX = F + I[fac + F_ZTX], *Zty = F + I[fac + F_ZTY];
    double eWe = F[cr + p * p + p];
    for (i64 b = 0; b < p; b++) dv[b] = beta[b] - bref[b];
    for (i64 a = 0; a < p; a++) {
        double acc = 0.0;
        for (i64 b = 0; b < p; b++) acc += XtX[a * p + b] * dv[b];
        XtWe[a] = Xty[a] - acc;
        eWe += -2.0 * dv[a] * Xty[a] + dv[a] * acc;
    }
    for (i64 lv = 0; lv < L; lv++)
        for (i64 a = 0; a < k; a++) {
            double acc = Zty[lv * k + a];
            for (i64 b = 0; b < p; b++) acc -= ZtX[(lv * k + a) * p + b] * dv[b];
            ge[lv * k + a] = acc;
        }
    return eWe;
}

/* ---- a sampled factor beside integrated-out coefficients: fused passes over the rows ------------------- */
/* With the coefficients integrated out, the residual is e = y0 - sum_f Z_f r_f (y0 = y - Xc m0, stored)
 * and Xc'We follows from per-level cross-products (Z_f'WXc), so neither pass reads Xc: one forward pass
 * (e, e'We, Z_c'We) and one backward pass (d/d offset scattered into the sampled factors' gradients). */
#define MAXSAMPLED 8

typedef struct {
    i64 ns, k[MAXSAMPLED], L[MAXSAMPLED], f[MAXSAMPLED];
    const i64 *codes[MAXSAMPLED];
    const double *Z[MAXSAMPLED], *ZWX[MAXSAMPLED];
    int ones[MAXSAMPLED];
} Sampled;

static int sampled_factors(const double *F, const i64 *I, i64 c, Sampled *sf) {
    sf->ns = 0;
    for (i64 f = 0; f < I[H_NFAC]; f++) {
        if (f == c) continue;
        if (sf->ns == MAXSAMPLED) return 0;
        i64 fac = I[O_FAC] + f * FW, q = sf->ns++;
        sf->f[q] = f;
        sf->k[q] = I[fac + F_K];
        sf->L[q] = I[fac + F_L];
        sf->codes[q] = I + I[fac + F_CODES];
        sf->Z[q] = F + I[fac + F_Z];
        sf->ZWX[q] = F + I[fac + F_ZWX];
        sf->ones[q] = I[fac + F_ONES] == 1;
    }
    return 1;
}

static double fused_forward(const double *F, const i64 *I, i64 c, const Sampled *sf, double **R, int known_se,
                            double *e, double *XtWe, double *ge) {
    i64 n = I[H_N], p = I[H_P], fac = I[O_FAC] + c * FW, k = I[fac + F_K], L = I[fac + F_L];
    const double *y0 = F + I[O_Y0], *w = F + I[O_W], *Zc = F + I[fac + F_Z], *xwy0 = F + I[O_XWY0];
    const i64 *codes_c = I + I[fac + F_CODES];
    int ones_c = I[fac + F_ONES] == 1;
    double eWe = 0.0;
    memset(ge, 0, sizeof(double) * L * k);
    if (sf->ns == 1 && sf->ones[0] && ones_c && !known_se) {  /* the common case, as a tight loop */
        const double *restrict r = R[sf->f[0]];
        const i64 *restrict cf = sf->codes[0];
        double *restrict er = e, *restrict gr_ = ge;
        for (i64 i = 0; i < n; i++) {
            double ei = y0[i] - r[cf[i]];
            er[i] = ei;
            eWe += ei * ei;
            gr_[codes_c[i]] += ei;
        }
    } else for (i64 i = 0; i < n; i++) {
        double ei = y0[i];
        for (i64 q = 0; q < sf->ns; q++) {
            const double *r = R[sf->f[q]];
            i64 kq = sf->k[q], lv = sf->codes[q][i];
            if (sf->ones[q]) ei -= r[lv];
            else for (i64 a = 0; a < kq; a++) ei -= sf->Z[q][i * kq + a] * r[lv * kq + a];
        }
        e[i] = ei;
        double we = (known_se ? w[i] : 1.0) * ei;
        eWe += we * ei;
        if (ones_c) ge[codes_c[i]] += we;
        else for (i64 a = 0; a < k; a++) ge[codes_c[i] * k + a] += Zc[i * k + a] * we;
    }
    for (i64 j = 0; j < p; j++) XtWe[j] = xwy0[j];
    for (i64 q = 0; q < sf->ns; q++) {
        const double *r = R[sf->f[q]];
        for (i64 m = 0; m < sf->L[q] * sf->k[q]; m++)
            for (i64 j = 0; j < p; j++) XtWe[j] -= sf->ZWX[q][m * p + j] * r[m];
    }
    return eWe;
}

/* gr_f += d loglik / d r_f for every sampled factor, given Bu_l = B u_l and a (see gaussian_marginal) */
static void fused_backward(const double *F, const i64 *I, i64 c, const Sampled *sf, const double *e,
                           const double *Bu, const double *a, double s, int known_se, double **gr) {
    i64 n = I[H_N], p = I[H_P], fac = I[O_FAC] + c * FW, k = I[fac + F_K];
    const double *w = F + I[O_W], *Zc = F + I[fac + F_Z];
    const i64 *codes_c = I + I[fac + F_CODES];
    int ones_c = I[fac + F_ONES] == 1;
    if (sf->ns == 1 && sf->ones[0] && ones_c && !known_se) {  /* the common case, as a tight loop */
        double *restrict gq = gr[sf->f[0]];
        const i64 *restrict cf = sf->codes[0];
        const double *restrict bu = Bu;
        double s2 = s * s;
        for (i64 i = 0; i < n; i++) gq[cf[i]] += s * e[i] - s2 * bu[codes_c[i]];
    } else for (i64 i = 0; i < n; i++) {
        double acc = 0.0;
        if (ones_c) acc = Bu[codes_c[i]];
        else for (i64 t = 0; t < k; t++) acc += Zc[i * k + t] * Bu[codes_c[i] * k + t];
        double g = (known_se ? w[i] : 1.0) * (s * e[i] - s * s * acc);
        for (i64 q = 0; q < sf->ns; q++) {
            double *gq = gr[sf->f[q]];
            i64 kq = sf->k[q], lv = sf->codes[q][i];
            if (sf->ones[q]) gq[lv] += g;
            else for (i64 t = 0; t < kq; t++) gq[lv * kq + t] += sf->Z[q][i * kq + t] * g;
        }
    }
    for (i64 q = 0; q < sf->ns; q++) {  /* the -s w Xc a part of d/d offset, through Z_f'WXc */
        double *gq = gr[sf->f[q]];
        for (i64 m = 0; m < sf->L[q] * sf->k[q]; m++) {
            double acc = 0.0;
            for (i64 j = 0; j < p; j++) acc += sf->ZWX[q][m * p + j] * a[j];
            gq[m] -= s * acc;
        }
    }
}

/* ---- the whole model -------------------------------------------------------------------------------- */
/* Coefficients on the centred design with their priors (or, when they are integrated out, the reference
 * b_ref, relative to which gaussian_marginal works). */
static double coefficients(const double *x, double *grad, const double *F, const i64 *I, int jacobian,
                           double *beta, double *dbeta) {
    i64 p = I[H_P], pr = I[O_PRIORS];
    if (I[H_INTBETA] == 1) {
        for (i64 j = 0; j < p; j++) { beta[j] = F[I[O_BREF] + j]; dbeta[j] = 0.0; }
        return 0.0;
    }
    i64 xb = I[X_BETA], mode = I[H_INTERCEPT], icol = I[H_INT_COL];
    double lp = 0.0;
    for (i64 j = 0; j < p; j++) {
        if (mode == 2 && j == icol) {  /* the centred intercept, standardised; its prior is on the raw one */
            const double *r = F + pr + (I[P_BETA] + j) * PW;
            double lj, dlj;
            beta[j] = constrain(x[xb + j], (int)r[4], r[5], r[6], &dbeta[j], &lj, &dlj);
            if (jacobian) lp += lj;
            continue;
        }
        beta[j] = scalar_param(x, grad, xb + j, F, pr + (I[P_BETA] + j) * PW, jacobian, &dbeta[j], &lp);
    }
    if (mode == 2) {  /* prior on the raw intercept: b0 = beta_c0 - sum_j mean_j beta_j */
        const double *xmeans = F + I[O_XMEANS];
        double raw = beta[icol], dl;
        for (i64 j = 0; j < p; j++) if (j != icol) raw -= xmeans[j] * beta[j];
        const double *r0 = F + pr + (I[P_BETA] + icol) * PW;
        lp += prior_logp((int)r0[0], r0[1], r0[2], r0[3], raw, &dl);
        grad[xb + icol] += dl * dbeta[icol];
        for (i64 j = 0; j < p; j++) if (j != icol) grad[xb + j] += -xmeans[j] * dl * dbeta[j];
    }
    return lp;
}

/* Sampler coordinates -> model coordinates. With H_SHIFT, the sampled intercept is the grand mean
 * the data see, beta0' = beta0 + sum_f w1_f / sqrt(L_f), where w1_f is the common-mode coordinate of a
 * centred factor's intercepts (r = Q w puts w1 / sqrt(L) on every level). The likelihood depends on
 * beta0' and the contrasts only, so beta0' is well identified while w1_f is informed by its prior:
 * without the shift the intercept and the factors' common modes form a ridge. The map is linear with
 * unit Jacobian: xx = x except xx[beta0] = x[beta0] - sum_f c_f x[w1_f] / sqrt(L_f), where c_f converts
 * the standardised coordinates (scale of the factor's intercepts / scale of the intercept; 1 as laid out). */
static double shift_factor(const double *F, const i64 *I, i64 fac, i64 t) {
    const double *r = F + I[O_PRIORS] + (I[P_BETA] + I[H_INT_COL]) * PW;
    double ub = (int)r[4] == T_AFFINE ? r[6] : 1.0;
    return F[I[fac + F_ESCALE] + t] / ub / sqrt((double)I[fac + F_L]);
}

static void shift_coordinates(const double *x, const double *F, const i64 *I, i64 ndim, double *xx) {
    memcpy(xx, x, sizeof(double) * ndim);
    if (I[H_SHIFT] != 1) return;
    i64 ib = I[X_BETA] + I[H_INT_COL];
    for (i64 f = 0; f < I[H_NFAC]; f++) {
        i64 fac = I[O_FAC] + f * FW, t = I[fac + F_INTTERM];
        if (I[fac + F_CENTRED] == 1 && t >= 0 && I[fac + F_XEFF] >= 0)
            xx[ib] -= x[I[fac + F_XEFF] + t] * shift_factor(F, I, fac, t);
    }
}

/* gradient in model coordinates -> gradient in sampler coordinates (the chain rule of the map above) */
static void shift_gradient(const double *F, const i64 *I, double *grad) {
    if (I[H_SHIFT] != 1) return;
    double g0 = grad[I[X_BETA] + I[H_INT_COL]];
    for (i64 f = 0; f < I[H_NFAC]; f++) {
        i64 fac = I[O_FAC] + f * FW, t = I[fac + F_INTTERM];
        if (I[fac + F_CENTRED] == 1 && t >= 0 && I[fac + F_XEFF] >= 0)
            grad[I[fac + F_XEFF] + t] -= g0 * shift_factor(F, I, fac, t);
    }
}

/* eta = Xc beta + offset (O_OFFSET, coefficient 1; a constant, so no gradient) + the sampled factors' effects R[f] */
static void linear_predictor(const double *F, const i64 *I, const double *beta, double **R, i64 collapsed,
                             double *eta) {
    i64 n = I[H_N], p = I[H_P], nfac = I[H_NFAC];
    const double *Xc = F + I[O_X];
    const double *off = I[O_OFFSET] >= 0 ? F + I[O_OFFSET] : NULL;
    for (i64 i = 0; i < n; i++) {
        double acc = off ? off[i] : 0.0;
        for (i64 j = 0; j < p; j++) acc += Xc[i * p + j] * beta[j];
        eta[i] = acc;
    }
    for (i64 f = 0; f < nfac; f++) {
        if (f == collapsed) continue;
        i64 fac = I[O_FAC] + f * FW, k = I[fac + F_K];
        const i64 *codes = I + I[fac + F_CODES];
        const double *r = R[f];
        if (I[fac + F_ONES] == 1) {
            for (i64 i = 0; i < n; i++) eta[i] += r[codes[i]];
        } else {
            const double *Z = F + I[fac + F_Z];
            for (i64 i = 0; i < n; i++) {
                double acc = 0.0;
                for (i64 a = 0; a < k; a++) acc += Z[i * k + a] * r[codes[i] * k + a];
                eta[i] += acc;
            }
        }
    }
}

/* ---- per-thread work space ------------------------------------------------------------------------------ */
/* Every call needs arrays of the model's size (n-vectors for a 73,000-row model). Allocating them per
 * call costs page faults that dominated large models, so each thread (nutpie runs one chain per
 * thread) keeps one growing arena, freed when the thread ends. */
typedef struct { char *buf; size_t cap, used; } Arena;
static pthread_key_t arena_key;
static pthread_once_t arena_once = PTHREAD_ONCE_INIT;

static void arena_destroy(void *p) {
    Arena *a = p;
    if (a) { free(a->buf); free(a); }
}
static void arena_key_init(void) { pthread_key_create(&arena_key, arena_destroy); }

/* this thread's arena with room for at least `need` bytes (contents undefined); NULL on failure */
static Arena *arena(size_t need) {
    pthread_once(&arena_once, arena_key_init);
    Arena *a = pthread_getspecific(arena_key);
    if (!a) {
        a = calloc(1, sizeof(Arena));
        if (!a || pthread_setspecific(arena_key, a) != 0) { free(a); return NULL; }
    }
    if (a->cap < need) {
        free(a->buf);
        a->buf = malloc(need);
        a->cap = a->buf ? need : 0;
        if (!a->buf) return NULL;
    }
    a->used = 0;
    return a;
}

#define ALIGNED(b) (((b) + 63) & ~(size_t)63)
static void *carve(Arena *a, size_t bytes) {
    void *p = a->buf + a->used;
    a->used += ALIGNED(bytes);
    return p;
}

/* All per-call state of hm_logp_grad and hm_conditional_draws, carved from the thread's arena. */
typedef struct {
    i64 nfac;
    Factor *fc;               /* nfac */
    double **R, **gr;         /* per factor: effects and d loglik / d effects (L x k) */
    double *eta, *g_eta, *e;  /* n */
    double *nl;               /* 2 (n + 1): a nonlinear model's mean and d loglik / d mean */
    double *ge, *ut;          /* L_c * k_c */
    double *x, *scratch;      /* ndim */
    double *cut, *gcut;       /* ndim (the ordinal thresholds and d/dc: H_NCUT of them) */
    double *beta, *dbeta, *XtWe, *a, *v, *accp, *zeta, *shift;  /* p */
    double *LP;               /* p*p */
    MarginalWork mw;
} State;

static size_t state_bytes(const i64 *I, i64 ndim) {
    i64 n = I[H_N], nfac = I[H_NFAC], c = I[H_COLLAPSED], p = I[H_P];
    size_t b = ALIGNED(sizeof(Factor) * (nfac + 1)) + 2 * ALIGNED(sizeof(double *) * (nfac + 1))
        + 5 * ALIGNED(sizeof(double) * (n + 1)) + 4 * ALIGNED(sizeof(double) * (ndim + 1))
        + 8 * ALIGNED(sizeof(double) * (p + 1)) + ALIGNED(sizeof(double) * (p * p + 1));
    for (i64 f = 0; f < nfac; f++) {
        i64 fac = I[O_FAC] + f * FW;
        b += 2 * ALIGNED(sizeof(double) * I[fac + F_L] * I[fac + F_K]);
    }
    if (c >= 0) {
        i64 fac = I[O_FAC] + c * FW, lk = I[fac + F_L] * I[fac + F_K];
        b += 5 * ALIGNED(sizeof(double) * lk) + 2 * ALIGNED(sizeof(double) * lk * I[fac + F_K])
            + 2 * ALIGNED(sizeof(double) * lk) + 3 * ALIGNED(sizeof(double) * (p * p + 1))
            + 6 * ALIGNED(sizeof(double) * (p + 1)) + 2 * ALIGNED(sizeof(double) * (I[fac + F_K] * p + 1));
    }
    return b;
}

/* Carve the state; zeroes what is accumulated into (gr, g_eta). Returns 0 if a factor has more than
 * KMAX terms (checked by the Python layout before any fit) or memory is short. */
static int state_alloc(State *st, const i64 *I, i64 ndim) {
    i64 n = I[H_N], nfac = I[H_NFAC], c = I[H_COLLAPSED], p = I[H_P];
    Arena *a = arena(state_bytes(I, ndim));
    if (!a) return 0;
    st->nfac = nfac;
    st->fc = carve(a, sizeof(Factor) * (nfac + 1));
    st->R = carve(a, sizeof(double *) * (nfac + 1));
    st->gr = carve(a, sizeof(double *) * (nfac + 1));
    st->eta = carve(a, sizeof(double) * (n + 1));
    st->g_eta = carve(a, sizeof(double) * (n + 1));
    st->e = carve(a, sizeof(double) * (n + 1));
    st->nl = carve(a, 2 * sizeof(double) * (n + 1));
    st->x = carve(a, sizeof(double) * (ndim + 1));
    st->scratch = carve(a, sizeof(double) * (ndim + 1));
    st->cut = carve(a, sizeof(double) * (ndim + 1));
    st->gcut = carve(a, sizeof(double) * (ndim + 1));
    double **pv[8] = {&st->beta, &st->dbeta, &st->XtWe, &st->a, &st->v, &st->accp, &st->zeta, &st->shift};
    for (int q = 0; q < 8; q++) *pv[q] = carve(a, sizeof(double) * (p + 1));
    st->LP = carve(a, sizeof(double) * (p * p + 1));
    memset(st->g_eta, 0, sizeof(double) * n);
    memset(st->scratch, 0, sizeof(double) * ndim);
    for (i64 f = 0; f < nfac; f++) {
        i64 fac = I[O_FAC] + f * FW, lk = I[fac + F_L] * I[fac + F_K];
        if (I[fac + F_K] > KMAX) return 0;
        st->R[f] = carve(a, sizeof(double) * lk);
        st->gr[f] = carve(a, sizeof(double) * lk);
        memset(st->gr[f], 0, sizeof(double) * lk);
    }
    st->ge = st->ut = NULL;
    if (c >= 0) {
        i64 fac = I[O_FAC] + c * FW, k = I[fac + F_K], lk = I[fac + F_L] * k;
        st->ge = carve(a, sizeof(double) * lk);
        st->ut = carve(a, sizeof(double) * lk);
        st->mw.Minv = carve(a, sizeof(double) * lk * k);
        st->mw.BAB = carve(a, sizeof(double) * lk * k);
        st->mw.gt = carve(a, sizeof(double) * lk);
        st->mw.gj = carve(a, sizeof(double) * lk);
        st->mw.scratch = carve(a, sizeof(double) * lk);
        st->mw.Km = carve(a, sizeof(double) * (p * p + 1));
        st->mw.KL = carve(a, sizeof(double) * (p * p + 1));
        st->mw.P = carve(a, sizeof(double) * (p * p + 1));
        double **mp[6] = {&st->mw.ke, &st->mw.h, &st->mw.wv, &st->mw.ve, &st->mw.aj, &st->mw.xe0};
        for (int q = 0; q < 6; q++) *mp[q] = carve(a, sizeof(double) * (p + 1));
        st->mw.T = carve(a, sizeof(double) * (k * p + 1));
        st->mw.MT = carve(a, sizeof(double) * (k * p + 1));
    }
    return 1;
}

/* Log posterior density (up to a constant when jacobian) at x; fills grad. NAN on failure. */
double hm_logp_grad(const double *x_sampler, double *grad, const double *F, const i64 *I, i64 ndim, int jacobian) {
    i64 n = I[H_N], p = I[H_P], nfac = I[H_NFAC], c = I[H_COLLAPSED], pr = I[O_PRIORS];
    int known_se = I[H_KNOWN_SE] == 1;
    State st;
    if (!state_alloc(&st, I, ndim)) return NAN;
    double *x = st.x;
    shift_coordinates(x_sampler, F, I, ndim, x);
    for (i64 j = 0; j < ndim; j++) grad[j] = 0.0;
    double *beta = st.beta, *dbeta = st.dbeta;
    double lp = coefficients(x, grad, F, I, jacobian, beta, dbeta);
    double aux[NAUX], daux[NAUX], g_aux[NAUX];
    const i64 *auxt = I + I[O_AUX];  /* the family-parameter table: x offset and prior row per A_* slot */
    for (int a = 0; a < NAUX; a++) {
        aux[a] = daux[a] = g_aux[a] = 0.0;
        i64 xs = auxt[a * AW + AX_X];
        if (xs >= 0 && a != A_CUT)
            aux[a] = scalar_param(x, grad, xs, F, pr + auxt[a * AW + AX_PRIOR] * PW, jacobian, &daux[a], &lp);
        if (xs >= 0 && is_probability(a)) aux[a] = logit_of(x[xs], F + pr + auxt[a * AW + AX_PRIOR] * PW, aux[a], &daux[a]);
    }
    i64 ncut = I[H_NCUT], xcut = auxt[A_CUT * AW + AX_X];
    if (ncut > 0)
        lp += cutpoints_forward(x, xcut, ncut, F + pr + auxt[A_CUT * AW + AX_PRIOR] * PW, jacobian, st.cut, st.gcut);
    for (i64 f = 0; f < nfac; f++) lp += factor_B(x, grad, F, I, I[O_FAC] + f * FW, &st.fc[f], jacobian);
    for (i64 f = 0; f < nfac; f++)
        if (f != c) effects_forward(x, F, I, I[O_FAC] + f * FW, &st.fc[f], st.R[f]);
    hier_forward(F, I, beta, st.R);
    const double *y = F + I[O_Y];
    i64 xb = I[X_BETA];
    int full = I[H_FULL] == 1, fused = 0;
    if (c >= 0) {
        i64 fac = I[O_FAC] + c * FW, L = I[fac + F_L], k = I[fac + F_K];
        Factor *fcc = &st.fc[c];
        double logdet_noise, eWe, *XtWe = st.XtWe, *a = st.a, *v = st.v, *LP = st.LP, gs;
        double s = noise_terms(F, I, aux, known_se, &logdet_noise);
        Sampled sf;
        fused = !full && I[H_INTBETA] == 1 && sampled_factors(F, I, c, &sf);
        if (full) {
            eWe = cross_stats(F, I, fac, beta, st.accp, XtWe, st.ge);
        } else if (fused) {
            eWe = fused_forward(F, I, c, &sf, st.R, known_se, st.e, XtWe, st.ge);
        } else {
            linear_predictor(F, I, beta, st.R, c, st.eta);
            eWe = residual_stats(F, I, fac, y, st.eta, known_se, st.e, XtWe, st.ge);
        }
        lp += gaussian_marginal(F, I, fac, fcc->B, k, s, logdet_noise, eWe, XtWe, st.ge, fcc->gB, a, st.ut, v, LP,
                                &st.mw, &gs);
        if (!known_se) {
            gs += 0.5 * n / s;  /* -n log(sigma) = (n/2) log s */
            grad[auxt[A_SIGMA * AW + AX_X]] += gs * (-2.0 * s / aux[A_SIGMA]) * daux[A_SIGMA];
        }
        const double *B = fcc->B;
        double *Bu = st.ge;  /* ge is no longer needed: reuse for B u_l */
        for (i64 lv = 0; lv < L; lv++)
            for (i64 t = 0; t < k; t++) {
                double acc = 0.0;
                for (i64 b = 0; b <= t; b++) acc += B[t * k + b] * st.ut[lv * k + b];
                Bu[lv * k + t] = acc;
            }
        if (full) {
            if (I[H_INTBETA] != 1) {  /* d/dbeta = Xc'V^-1 e = s Xc'We - s^2 sum_l ZtX_l' B u_l */
                const double *ZtX = F + I[fac + F_ZTX];
                for (i64 j = 0; j < p; j++) {
                    double acc = s * XtWe[j];
                    for (i64 q = 0; q < L * k; q++) acc -= s * s * ZtX[q * p + j] * Bu[q];
                    grad[xb + j] += acc * dbeta[j];
                }
            }
        } else if (fused) {
            fused_backward(F, I, c, &sf, st.e, Bu, a, s, known_se, st.gr);
        } else {  /* d loglik / d offset_i = s w_i et_i - s^2 w_i Z_i'B u_l, et = e - Xc a */
            const i64 *codes = I + I[fac + F_CODES];
            const double *Z = F + I[fac + F_Z], *Xc = F + I[O_X], *w = F + I[O_W];
            int ones = I[fac + F_ONES] == 1;
            for (i64 i = 0; i < n; i++) {
                double et = st.e[i];
                for (i64 j = 0; j < p; j++) et -= Xc[i * p + j] * a[j];
                double acc = 0.0;
                if (ones) acc = Bu[codes[i]];
                else for (i64 t = 0; t < k; t++) acc += Z[i * k + t] * Bu[codes[i] * k + t];
                st.g_eta[i] = (known_se ? w[i] : 1.0) * (s * et - s * s * acc);
            }
        }
    } else {
        linear_predictor(F, I, beta, st.R, -1, st.eta);
        const double *w = F + I[O_W], *trials = F + I[O_TRIALS];
        if (I[H_FAMILY] == FAM_CUMULATIVE) {
            lp += cumulative_loglik((int)I[H_LINK], n, y, st.eta, st.cut, ncut, st.g_eta, st.gcut);
        } else if (I[H_FAMILY] == FAM_CATEGORICAL) {
            lp += categorical_loglik(n, I[H_NPRED], y, st.eta, st.g_eta);
        } else if (I[H_NDPAR] > 0 || I[H_WEIGHTED] == 1 || I[H_CENSORED] == 1 || I[H_TRUNC] == 1) {
            lp += rowwise_loglik(F, I, n, y, st.eta, trials, w, aux, st.g_eta, g_aux, known_se);
        } else if (I[H_NLOPS] > 0) {  /* nonlinear: the family's likelihood of mu = program(parameters), chain rule */
            i64 m = I[H_NPRED], nobs = n / m;
            double *mu = st.nl, *gmu = st.nl + nobs, *D = st.e;
            if (!nl_forward(F, I, nobs, m, st.eta, mu, D)) return NAN;
            memset(gmu, 0, sizeof(double) * nobs);
            lp += family_loglik((int)I[H_FAMILY], (int)I[H_LINK], nobs, y, mu, trials, w, aux, gmu, g_aux, known_se,
                                F + I[O_LOGY]);
            for (i64 j = 0; j < m; j++)
                for (i64 i = 0; i < nobs; i++) st.g_eta[j * nobs + i] = gmu[i] * D[j * nobs + i];
        } else {
            lp += family_loglik((int)I[H_FAMILY], (int)I[H_LINK], n, y, st.eta, trials, w, aux, st.g_eta, g_aux,
                                known_se, F + I[O_LOGY]);
        }
        for (int a = 0; a < NAUX; a++) {
            i64 xs = auxt[a * AW + AX_X];
            if (xs >= 0 && a != A_CUT) grad[xs] += g_aux[a] * daux[a];
        }
        if (ncut > 0) cutpoints_backward(x, grad, xcut, ncut, st.gcut, jacobian);
    }
    if (c < 0 || !full) {  /* back to the coefficients and the sampled group effects */
        if (I[H_INTBETA] != 1) {
            const double *Xc = F + I[O_X];
            double *acc = st.accp;
            for (i64 j = 0; j < p; j++) acc[j] = 0.0;
            for (i64 i = 0; i < n; i++)
                for (i64 j = 0; j < p; j++) acc[j] += Xc[i * p + j] * st.g_eta[i];
            for (i64 j = 0; j < p; j++) grad[xb + j] += acc[j] * dbeta[j];
        }
        for (i64 f = 0; f < nfac; f++) {
            if (f == c) continue;
            i64 fac = I[O_FAC] + f * FW, k = I[fac + F_K];
            const i64 *codes = I + I[fac + F_CODES];
            double *gr = st.gr[f];
            if (fused) {
                /* fused_backward filled gr already */
            } else if (I[fac + F_ONES] == 1) {
                for (i64 i = 0; i < n; i++) gr[codes[i]] += st.g_eta[i];
            } else {
                const double *Z = F + I[fac + F_Z];
                for (i64 i = 0; i < n; i++)
                    for (i64 a2 = 0; a2 < k; a2++) gr[codes[i] * k + a2] += Z[i * k + a2] * st.g_eta[i];
            }
        }
        /* hierarchically centred factors first: they add to their parents' d/d r (hier_backward) */
        for (i64 f = 0; f < nfac; f++)
            if (f != c && I[I[O_FAC] + f * FW + F_CENTRED] == 2)
                lp += hier_backward(grad, F, I, f, &st.fc[f], st.R[f], st.gr, dbeta, jacobian);
        for (i64 f = 0; f < nfac; f++)
            if (f != c && I[I[O_FAC] + f * FW + F_CENTRED] != 2)
                lp += effects_backward(x, grad, F, I, I[O_FAC] + f * FW, &st.fc[f], st.gr[f], jacobian);
    }
    for (i64 f = 0; f < nfac; f++) lp += factor_B_backward(x, grad, F, I, I[O_FAC] + f * FW, &st.fc[f], jacobian);
    shift_gradient(F, I, grad);
    return lp + F[I[O_CONST]];
}

/* ---- C entry points for nutpie (its logp / expand signatures) --------------------------------------- */
/* user_data points at four int64: address and size of F, address and size of I */
int64_t hm_logp(uint64_t dim, const double *x, double *grad, double *logp, void *user_data) {
    const i64 *meta = (const i64 *)user_data;
    const double *F = (const double *)(intptr_t)meta[0];
    const i64 *I = (const i64 *)(intptr_t)meta[2];
    if ((i64)dim != I[H_NDIM]) return -1;
    double value = hm_logp_grad(x, grad, F, I, (i64)dim, 1);
    *logp = value;
    if (!isfinite(value)) return 4;
    for (uint64_t i = 0; i < dim; i++) if (!isfinite(grad[i])) return 3;
    return 0;
}

/* nutpie's expand: store the unconstrained draw as is (hmodels constrains draws afterwards) */
int64_t hm_expand(uint64_t dim, uint64_t n_expanded, const double *x, double *out, void *user_data) {
    (void)user_data;
    if (n_expanded != dim) return -1;
    memcpy(out, x, sizeof(double) * dim);
    return 0;
}

/* ---- exact draws of what was integrated out ------------------------------------------------------------ */
/* For each of S draws of x (rows of xd, ndim each): the integrated-out coefficients (zeta ~ N(v, P^-1),
 * beta = m0 + L0 zeta, formed as b_ref + (d0 + L0 zeta)) and the integrated-out factor's effects
 * (z_l ~ N(s M_l^-1 c_l, M_l^-1), r_l = B z_l, c_l from the residual given the drawn coefficients).
 * beta_out (S x p) receives the centred coefficients (drawn, or as sampled); zout, rout are S x L x k.
 * Returns 0 on success. */
int64_t hm_conditional_draws(const double *xd, i64 S, i64 ndim, const double *F, const i64 *I,
                             const double *noise_beta, const double *noise, double *beta_out, double *zout,
                             double *rout) {
    i64 p = I[H_P], nfac = I[H_NFAC], c = I[H_COLLAPSED], pr = I[O_PRIORS];
    if (c < 0) return -1;
    int known_se = I[H_KNOWN_SE] == 1, full = I[H_FULL] == 1, intbeta = I[H_INTBETA] == 1;
    i64 fac = I[O_FAC] + c * FW, L = I[fac + F_L], k = I[fac + F_K];
    const double *A0 = F + I[fac + F_A], *L0 = F + I[O_L0], *ZtX = F + I[fac + F_ZTX], *y = F + I[O_Y];
    State st;
    if (!state_alloc(&st, I, ndim)) return -2;
    double *scratch = st.scratch, *x = st.x;
    double M[256], C[256], Minv[256], cv[KMAX], vz[KMAX];
    for (i64 d = 0; d < S; d++) {
        shift_coordinates(xd + d * ndim, F, I, ndim, x);
        double *beta = st.beta, *dbeta = st.dbeta, aux[NAUX], dv, lpd = 0.0, logdet_noise;
        const i64 *auxt = I + I[O_AUX];
        for (int a = 0; a < NAUX; a++) aux[a] = 0.0;
        coefficients(x, scratch, F, I, 0, beta, dbeta);
        if (!known_se)
            aux[A_SIGMA] = scalar_param(x, scratch, auxt[A_SIGMA * AW + AX_X], F, pr + auxt[A_SIGMA * AW + AX_PRIOR] * PW,
                                        0, &dv, &lpd);
        double s = noise_terms(F, I, aux, known_se, &logdet_noise);
        for (i64 f = 0; f < nfac; f++) factor_B(x, scratch, F, I, I[O_FAC] + f * FW, &st.fc[f], 0);
        for (i64 f = 0; f < nfac; f++)
            if (f != c) effects_forward(x, F, I, I[O_FAC] + f * FW, &st.fc[f], st.R[f]);
        const double *B = st.fc[c].B;
        double *XtWe = st.XtWe, eWe;
        Sampled sf;
        if (full) {
            eWe = cross_stats(F, I, fac, beta, st.accp, XtWe, st.ge);
        } else if (intbeta && sampled_factors(F, I, c, &sf)) {
            eWe = fused_forward(F, I, c, &sf, st.R, known_se, st.e, XtWe, st.ge);
        } else {
            linear_predictor(F, I, beta, st.R, c, st.eta);
            eWe = residual_stats(F, I, fac, y, st.eta, known_se, st.e, XtWe, st.ge);
        }
        if (intbeta) {
            double *a = st.a, *v = st.v, *LP = st.LP, gs, *zeta = st.zeta, gBs[256];
            memset(gBs, 0, sizeof(gBs));
            gaussian_marginal(F, I, fac, B, k, s, logdet_noise, eWe, XtWe, st.ge, gBs, a, st.ut, v, LP, &st.mw, &gs);
            for (i64 i = p - 1; i >= 0; i--) {  /* zeta - v = LP^-T xi */
                double acc = noise_beta[d * p + i];
                for (i64 j = i + 1; j < p; j++) acc -= LP[j * p + i] * zeta[j];
                zeta[i] = acc / LP[i * p + i];
            }
            /* beta = m0 + L0 zeta = b_ref + shift, shift = a + L0 (zeta - v) (a = d0 + L0 v, gaussian_marginal);
             * beta was b_ref (coefficients()) and the statistics are those of the residual at b_ref */
            double *shift = st.shift;
            for (i64 i = 0; i < p; i++) {
                double acc = a[i];
                for (i64 j = 0; j < p; j++) acc += L0[i * p + j] * zeta[j];
                shift[i] = acc;
                beta[i] += acc;
            }
            for (i64 q = 0; q < L * k; q++) {  /* residual statistics at the drawn coefficients */
                double acc = 0.0;
                for (i64 j = 0; j < p; j++) acc += ZtX[q * p + j] * shift[j];
                st.ge[q] -= acc;
            }
        }
        for (i64 j = 0; j < p; j++) beta_out[d * p + j] = beta[j];
        for (i64 lv = 0; lv < L; lv++) {
            const double *A = A0 + lv * k * k;
            for (i64 a2 = 0; a2 < k; a2++)
                for (i64 b = 0; b < k; b++) {
                    double acc = 0.0;
                    for (i64 t = a2; t < k; t++)
                        for (i64 u = b; u < k; u++) acc += B[t * k + a2] * A[t * k + u] * B[u * k + b];
                    M[a2 * k + b] = s * acc + (a2 == b ? 1.0 : 0.0);
                }
            chol_inverse(M, k, C, Minv);
            for (i64 a2 = 0; a2 < k; a2++) {
                double acc = 0.0;
                for (i64 t = a2; t < k; t++) acc += B[t * k + a2] * st.ge[lv * k + t];
                cv[a2] = acc;
            }
            const double *xi = noise + (d * L + lv) * k;
            for (i64 a2 = k - 1; a2 >= 0; a2--) {  /* C^-T xi */
                double acc = xi[a2];
                for (i64 b = a2 + 1; b < k; b++) acc -= C[b * k + a2] * vz[b];
                vz[a2] = acc / C[a2 * k + a2];
            }
            double *zl = zout + (d * L + lv) * k, *rl = rout + (d * L + lv) * k;
            for (i64 a2 = 0; a2 < k; a2++) {
                double acc = 0.0;
                for (i64 b = 0; b < k; b++) acc += Minv[a2 * k + b] * cv[b];
                zl[a2] = s * acc + vz[a2];
            }
            for (i64 a2 = 0; a2 < k; a2++) {
                double acc = 0.0;
                for (i64 b = 0; b <= a2; b++) acc += B[a2 * k + b] * zl[b];
                rl[a2] = acc;
            }
        }
    }
    return 0;
}

/* ---- for tests: one prior's log density and derivative ------------------------------------------------ */
double hm_prior_logp(int64_t code, double p1, double p2, double p3, double v, double *dlp) {
    return prior_logp((int)code, p1, p2, p3, v, dlp);
}

/* ---- for tests: a nonlinear program on nobs observations (mu, and D = d mu / d parameters) ---------------- */
int64_t hm_nl_forward(const double *F, const i64 *I, i64 nobs, i64 m, const double *eta, double *mu, double *D) {
    return nl_forward(F, I, nobs, m, eta, mu, D);
}

/* ---- for tests: log P(lb <= y <= ub) of one observation; grad[0] = d/d eta, grad[1 + a] = d/d aux[a] ------ */
double hm_truncation_logmass(int64_t family, int64_t link, double lb, double ub, double eta, const double *aux,
                             double *grad) {
    double ge = 0.0, gi[NAUX] = {0.0};
    double lp = truncation_logmass((int)family, (int)link, lb, ub, eta, aux, &ge, gi);
    grad[0] = -ge;  /* truncation_logmass subtracts its derivatives (the log-likelihood is less it) */
    for (int a = 0; a < NAUX; a++) grad[1 + a] = -gi[a];
    return lp;
}

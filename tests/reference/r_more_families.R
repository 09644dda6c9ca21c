# Maximum-likelihood reference fits, made in R, of hmodels families that had no independent reference: the hurdle
# gamma, the hurdle lognormal, the Student t (df estimated), a left-truncated gaussian, a right-censored gaussian and
# the zero-one-inflated beta. The reference for tests/test_reference_more_families.py.
#
# Run from the repository root:  Rscript tests/reference/r_more_families.R
# Writes tests/reference/r_more_families.json and, first, the data it fits (simulated here with set.seed below; the
# truth is in the JSON): tests/reference/r_more_families_<name>.csv. It reads every data set back from its CSV file,
# so R and hmodels fit identical data. R never runs in the tests.
# Made with R 4.2.2, glmmTMB 1.1.5, survival 3.5-3 (Debian bookworm: r-cran-glmmtmb, r-cran-survival), default
# settings. truncreg and gamlss are not packaged for bookworm, so the truncated gaussian is an optim() fit of the
# likelihood written out below, and the zero-one-inflated beta is fitted in its factorised form (see there).
#
# Parameter mappings (R -> hmodels); each is checked below against a log-likelihood written out by hand (stopifnot),
# so a wrong reading of a package's parameterisation stops the script:
#   hurdle_gamma:     glmmTMB(family = ziGamma(link = "log"), ziformula = ~1). For a continuous family glmmTMB's zi is
#                     P(y = 0) (the gamma density is 0 at 0 for shape > 1), i.e. a hurdle: hu = plogis(zi~(Intercept)).
#                     glmmTMB 1.1.5's Gamma dispersion parameter is log(shape) (Var = mu^2 / shape; sigma(fit) =
#                     1 / sqrt(shape) is the CV): shape = exp(d~(Intercept)) = 1 / sigma(fit)^2. Coefficients unchanged.
#                     Also with ziformula = ~x on the same data (hurdle_gamma_hu_x): dpars hu: "1 + x", zi~(Intercept)
#                     -> hu_Intercept, zi~x -> hu_x, unchanged.
#   hurdle_lognormal: glmmTMB 1.1.5 has no lognormal family (it arrived in 1.1.8, and there it is parameterised by the
#                     mean and SD on the original scale, which has no exact counterpart in hmodels' constant log-scale
#                     sigma). The hurdle lognormal with an intercept-only hu factorises exactly into (a) a gaussian
#                     mixed model of log(y) on the positive rows, glmmTMB(log(y) ~ x + (1 | g), family = gaussian), ML:
#                     hmodels' mu (Intercept, x), sd(g) and sigma = sigma(fit) unchanged, and (b) hu = the share of
#                     zeros (its ML estimate, also glmmTMB(y == 0 ~ 1, binomial)). logLik = logLik(a) - sum(log y > 0)
#                     + n0 log(hu) + n+ log(1 - hu). So the mapping is exact and the coefficients are compared.
#   student_t:        glmmTMB(family = t_family()): sigma = sigma(fit) = exp(d~(Intercept)) is the t scale (not the
#                     SD); the df is exp(psi) (family_params(fit), "Student-t df") -> hmodels nu = df, sigma = sigma.
#   trunc gaussian:   y ~ N(mu, sigma) given y > 0: log dnorm(y, mu, s) - log(1 - pnorm(0, mu, s)), maximised with
#                     optim() (the model of truncreg(y ~ x, point = 0, direction = "left")) -> y | trunc(lb=0) ~ x.
#   cens gaussian:    survreg(Surv(y, event) ~ x, dist = "gaussian"): event = 1 observed, 0 right-censored at y;
#                     sigma = fit$scale. hmodels' cens() follows brms (1 = right-censored, 0 = observed), so the
#                     model is y | cens(censored) ~ x with censored = 1 - event (a column in the CSV file).
#                     Left-censored (cens_gaussian_left): survreg(Surv(y, observed, type = "left") ~ x): a row with
#                     observed = 0 has y* <= y -> hmodels' censored = -1 (brms's left-censoring code).
#   zoib:             gamlss.dist's BEINF(mu, sigma, nu, tau): P(0) = nu / (1 + nu + tau), P(1) = tau / (1 + nu + tau),
#                     else Beta(a, b) with a = mu (1 - sigma^2) / sigma^2, b = (1 - mu) (1 - sigma^2) / sigma^2.
#                     hmodels: zoi = P(0 or 1) = (nu + tau) / (1 + nu + tau), coi = P(1 | 0 or 1) = tau / (nu + tau),
#                     phi = a + b = (1 - sigma^2) / sigma^2 (sigma = 1 / sqrt(1 + phi)), mu the same; conversely
#                     nu = zoi (1 - coi) / (1 - zoi), tau = zoi coi / (1 - zoi). With constant zoi, coi the likelihood
#                     factorises: mu, phi are the ML beta regression on the rows inside (0, 1) (glmmTMB(y ~ x,
#                     beta_family()), phi = sigma(fit)), zoi and coi are shares. The script also maximises dBEINF
#                     (written out from gamlss.dist's definition) with optim() and checks the mapping reproduces both
#                     the estimates and the log-likelihood.

suppressPackageStartupMessages({
  library(glmmTMB)
  library(survival)
  library(jsonlite)
})

ref_dir <- "tests/reference"
csv <- function(name) file.path(ref_dir, sprintf("r_more_families_%s.csv", name))

# -- data -------------------------------------------------------------------------------------------------------------
set.seed(20261202)
n_groups <- 40
per_group <- 10
n <- n_groups * per_group
sim_base <- function(b, sd_g) {
  g <- rep(seq_len(n_groups), each = per_group)
  x <- round(rnorm(n), 6)
  u <- rnorm(n_groups, 0, sd_g)
  list(g = sprintf("g%02d", g), x = x, eta = b[1] + b[2] * x + u[g])
}

truth <- list()
s <- sim_base(c(1.0, 0.5), 0.4)
y <- ifelse(runif(n) < plogis(-0.8), 0, signif(rgamma(n, shape = 2.5, rate = 2.5 / exp(s$eta)), 10))
write.csv(data.frame(y = y, x = s$x, g = s$g), csv("hurdle_gamma"), row.names = FALSE)
truth$hurdle_gamma <- list(Intercept = 1.0, x = 0.5, `sd(g, Intercept)` = 0.4, shape = 2.5, hu = plogis(-0.8))

s <- sim_base(c(0.5, 0.4), 0.4)
y <- ifelse(runif(n) < plogis(-1), 0, signif(exp(rnorm(n, s$eta, 0.6)), 10))
write.csv(data.frame(y = y, x = s$x, g = s$g), csv("hurdle_lognormal"), row.names = FALSE)
truth$hurdle_lognormal <- list(Intercept = 0.5, x = 0.4, `sd(g, Intercept)` = 0.4, sigma = 0.6, hu = plogis(-1))

s <- sim_base(c(1.0, 0.5), 0.5)
y <- round(s$eta + 0.8 * rt(n, 4), 6)
write.csv(data.frame(y = y, x = s$x, g = s$g), csv("student_t"), row.names = FALSE)
truth$student_t <- list(Intercept = 1.0, x = 0.5, `sd(g, Intercept)` = 0.5, sigma = 0.8, nu = 4)

# left-truncated at 0: rejection sampling, row by row
x <- round(rnorm(n), 6)
mu <- 0.5 + 1.0 * x
y <- numeric(n)
for (i in seq_len(n)) repeat { v <- rnorm(1, mu[i], 1.2); if (v > 0) { y[i] <- round(v, 6); break } }
write.csv(data.frame(y = y, x = x), csv("trunc_gaussian"), row.names = FALSE)
truth$trunc_gaussian <- list(Intercept = 0.5, x = 1.0, sigma = 1.2)

# right-censored: observed min(y*, c), event = y* <= c
x <- round(rnorm(n), 6)
ystar <- rnorm(n, 1.0 + 0.8 * x, 1.5)
cens_at <- rnorm(n, 2.0, 1.0)
y <- round(pmin(ystar, cens_at), 6)
event <- as.integer(ystar <= cens_at)
write.csv(data.frame(y = y, event = event, censored = 1L - event, x = x), csv("cens_gaussian"), row.names = FALSE)
truth$cens_gaussian <- list(Intercept = 1.0, x = 0.8, sigma = 1.5)

# zero-one-inflated beta: zoi = 0.2, coi = 0.4, mu = plogis(0.3 + 0.7 x), phi = 6
x <- round(rnorm(n), 6)
m <- plogis(0.3 + 0.7 * x)
edge <- runif(n) < 0.2
one <- runif(n) < 0.4
inner <- rbeta(n, m * 6, (1 - m) * 6)
inner <- pmin(pmax(signif(inner, 10), 1e-10), 1 - 1e-10)
y <- ifelse(edge, as.numeric(one), inner)
write.csv(data.frame(y = y, x = x), csv("zoib"), row.names = FALSE)
truth$zoib <- list(Intercept = 0.3, x = 0.7, phi = 6, zoi = 0.2, coi = 0.4)

# left-censored: observed max(y*, c), observed = y* >= c (a detection limit that varies by row)
x <- round(rnorm(n), 6)
ystar <- rnorm(n, 1.0 + 0.8 * x, 1.5)
cens_at <- rnorm(n, 0.0, 1.0)
y <- round(pmax(ystar, cens_at), 6)
observed <- as.integer(ystar >= cens_at)
write.csv(data.frame(y = y, observed = observed, censored = ifelse(observed == 1, 0L, -1L), x = x),
          csv("cens_gaussian_left"), row.names = FALSE)
truth$cens_gaussian_left <- list(Intercept = 1.0, x = 0.8, sigma = 1.5)
truth$hurdle_gamma_hu_x <- c(truth$hurdle_gamma[c("Intercept", "x", "sd(g, Intercept)", "shape")],
                             list(hu_Intercept = -0.8, hu_x = 0))

read <- function(name) {
  d <- read.csv(csv(name), stringsAsFactors = FALSE)
  if (!is.null(d$g)) d$g <- factor(d$g)
  d
}

# -- summaries --------------------------------------------------------------------------------------------------------
# 95% profile-likelihood interval of the group SD (as in glmmtmb_more.R): refit with log(SD) fixed and solve
# 2 (logLik_max - logLik(SD)) = qchisq(0.95, 1); the lower limit is 0 when log(SD) = -12 is inside.
profile_sd_ci <- function(ll_max, log_sd_hat, nll_at) {
  crit <- qchisq(0.95, 1) / 2
  dev <- function(ls) ll_max + nll_at(ls) - crit
  lower <- if (dev(-12) < 0) 0 else exp(uniroot(dev, c(-12, log_sd_hat), tol = 1e-6)$root)
  upper <- exp(uniroot(dev, c(log_sd_hat, log_sd_hat + 1), tol = 1e-6, extendInt = "upX")$root)
  c(lower, upper)
}

term_name <- function(nm) if (nm == "(Intercept)") "Intercept" else nm

fixed_rows <- function(est, se) {
  lapply(names(est), function(nm) list(r_term = nm, hmodels_term = term_name(nm), estimate = unname(est[nm]),
                                       se = unname(se[nm])))
}

# a family parameter from its estimate on a link scale: estimate, delta-method SE, the link-scale values
family_param <- function(name, link_est, link_se, inv, dinv, conversion) {
  list(name = name, estimate = inv(link_est), se = abs(dinv(link_est)) * link_se, link_estimate = link_est,
       link_se = link_se, conversion = conversion)
}
exp_param <- function(name, est, se, conversion) family_param(name, est, se, exp, exp, conversion)
logit_param <- function(name, est, se, conversion) family_param(name, est, se, plogis, dlogis, conversion)

# the fixed-parameter estimates and SEs of a glmmTMB fit, by TMB's parameter names (beta, betazi, betad, theta, psi)
tmb_fixed <- function(fit) {
  s <- summary(fit$sdr, "fixed")
  list(est = setNames(s[, 1], rownames(s)), se = setNames(s[, 2], rownames(s)))
}

group_sd <- function(fit) {
  p <- tmb_fixed(fit)
  th <- unname(p$est["theta"]); th_se <- unname(p$se["theta"])
  refit <- function(ls) update(fit, map = list(theta = factor(NA)), start = list(theta = ls))$fit$objective
  list(list(group = "g", hmodels_term = "sd(g, Intercept)", estimate = exp(th), log_sd_estimate = th,
            log_sd_se = th_se, profile_ci95 = profile_sd_ci(as.numeric(logLik(fit)), th, refit)))
}

# glmmTMB's log-likelihood at its estimates, conditional on its predicted group effects, recomputed by hand with the
# stated mapping from the linear predictor (predict(type = "link") includes the group effects) must equal the data
# term of TMB's joint log-likelihood (its objective at the optimum minus the normal log density of the group
# effects), or the script stops.
check_conditional <- function(fit, loglik_by_hand) {
  ll_hand <- sum(loglik_by_hand(predict(fit, type = "link")))
  u <- fit$obj$env$last.par.best[names(fit$obj$env$last.par.best) == "b"]
  sd_g <- exp(fit$fit$par[names(fit$fit$par) == "theta"][1])
  joint <- -fit$obj$env$f(fit$obj$env$last.par.best)
  ll_data_tmb <- joint - sum(dnorm(u, 0, sd_g, log = TRUE))
  stopifnot(abs(ll_hand - ll_data_tmb) < 1e-6 * max(1, abs(ll_hand)))
  list(conditional_loglik_by_hand = ll_hand, conditional_loglik_tmb = ll_data_tmb)
}

ranef_list <- function(fit) as.list(setNames(ranef(fit)$cond$g[, 1], rownames(ranef(fit)$cond$g)))

entry <- function(name, hm_formula, hm_family, call, fixed, sd, params, ll, df, nobs, converged, checks, ...) {
  c(list(data = csv(name), hmodels_formula = hm_formula, hmodels_family = hm_family, call = call,
         fixed = fixed, sd = sd, family_params = params, logLik = ll, df = df, nobs = nobs, converged = converged,
         truth = truth[[name]], checks = checks), list(...))
}
deparse1l <- function(cl) paste(deparse(cl, width.cutoff = 500), collapse = "")
no_sd <- list()

fits <- list()

# -- hurdle gamma -----------------------------------------------------------------------------------------------------
d <- read("hurdle_gamma")
f <- glmmTMB(y ~ x + (1 | g), ziformula = ~1, data = d, family = ziGamma(link = "log"))
p <- tmb_fixed(f)
shape <- unname(exp(p$est["betad"]))
stopifnot(abs(sigma(f) - 1 / sqrt(shape)) < 1e-10)
hu <- unname(plogis(p$est["betazi"]))
stopifnot(abs(predict(f, type = "zprob")[1] - hu) < 1e-12)
chk <- check_conditional(f, function(eta) ifelse(d$y == 0, log(hu), log1p(-hu) +
                                                    dgamma(d$y, shape = shape, rate = shape / exp(eta), log = TRUE)))
ll <- logLik(f)
fits$hurdle_gamma <- entry(
  "hurdle_gamma", "y ~ x + (1 | g)", "hurdle_gamma", deparse1l(f$call),
  fixed_rows(setNames(p$est[names(p$est) == "beta"], names(fixef(f)$cond)),
             setNames(p$se[names(p$se) == "beta"], names(fixef(f)$cond))),
  group_sd(f),
  list(shape = exp_param("shape", unname(p$est["betad"]), unname(p$se["betad"]),
                         "exp(glmmTMB d~(Intercept)) = 1 / sigma(fit)^2 (glmmTMB's sigma() of a Gamma is the CV)"),
       hu = logit_param("hu", unname(p$est["betazi"]), unname(p$se["betazi"]),
                        "plogis(glmmTMB zi~(Intercept)): P(y = 0) for a continuous family")),
  as.numeric(ll), attr(ll, "df"), nobs(f), f$fit$convergence == 0, chk,
  pdHess = f$sdr$pdHess, ranef = ranef_list(f))
message("hurdle_gamma")

# the same data with a hurdle formula, ziformula = ~x (simulated with hu constant: truth hu_x = 0) -> dpars hu: "1 + x"
f <- glmmTMB(y ~ x + (1 | g), ziformula = ~x, data = d, family = ziGamma(link = "log"))
p <- tmb_fixed(f)
shape <- unname(exp(p$est["betad"]))
hu <- drop(plogis(model.matrix(~x, d) %*% p$est[names(p$est) == "betazi"]))
stopifnot(max(abs(predict(f, type = "zprob") - hu)) < 1e-12)
chk <- check_conditional(f, function(eta) ifelse(d$y == 0, log(hu), log1p(-hu) +
                                                    dgamma(d$y, shape = shape, rate = shape / exp(eta), log = TRUE)))
ll <- logLik(f)
zi_rows <- fixed_rows(setNames(p$est[names(p$est) == "betazi"], names(fixef(f)$zi)),
                      setNames(p$se[names(p$se) == "betazi"], names(fixef(f)$zi)))
zi_rows <- lapply(zi_rows, function(r) { r$r_term <- paste0("zi~", r$r_term); r$hmodels_term <- paste0("hu_", r$hmodels_term); r })
fits$hurdle_gamma_hu_x <- entry(
  "hurdle_gamma", "y ~ x + (1 | g)", "hurdle_gamma", deparse1l(f$call),
  c(fixed_rows(setNames(p$est[names(p$est) == "beta"], names(fixef(f)$cond)),
               setNames(p$se[names(p$se) == "beta"], names(fixef(f)$cond))), zi_rows),
  group_sd(f),
  list(shape = exp_param("shape", unname(p$est["betad"]), unname(p$se["betad"]),
                         "exp(glmmTMB d~(Intercept)) = 1 / sigma(fit)^2 (glmmTMB's sigma() of a Gamma is the CV)")),
  as.numeric(ll), attr(ll, "df"), nobs(f), f$fit$convergence == 0, chk,
  pdHess = f$sdr$pdHess, ranef = ranef_list(f), hmodels_dpars = list(hu = "1 + x"))
fits$hurdle_gamma_hu_x$truth <- truth$hurdle_gamma_hu_x
message("hurdle_gamma_hu_x")

# -- hurdle lognormal -------------------------------------------------------------------------------------------------
d <- read("hurdle_lognormal")
pos <- d[d$y > 0, ]
stopifnot(all(levels(d$g) %in% unique(as.character(pos$g))))  # every group keeps positive rows
f <- glmmTMB(log(y) ~ x + (1 | g), data = pos, family = gaussian)
f_hu <- glmmTMB(I(y == 0) ~ 1, data = d, family = binomial)
p <- tmb_fixed(f)
ph <- tmb_fixed(f_hu)
hu <- unname(plogis(ph$est["beta"]))
n0 <- sum(d$y == 0)
stopifnot(abs(hu - n0 / nrow(d)) < 1e-6)
sg <- sigma(f)
mu_pos <- predict(f, type = "link")
ll_hand <- sum(dlnorm(pos$y, mu_pos, sg, log = TRUE)) + n0 * log(hu) + nrow(pos) * log1p(-hu)
# TMB's data log-likelihood of log(y) minus the Jacobian sum(log y), plus the zeros' part
u <- f$obj$env$last.par.best[names(f$obj$env$last.par.best) == "b"]
ll_tmb <- -f$obj$env$f(f$obj$env$last.par.best) -
  sum(dnorm(u, 0, exp(f$fit$par[names(f$fit$par) == "theta"][1]), log = TRUE)) - sum(log(pos$y)) +
  as.numeric(logLik(f_hu))
stopifnot(abs(ll_hand - ll_tmb) < 1e-6 * abs(ll_hand))
ll_marg <- as.numeric(logLik(f)) - sum(log(pos$y)) + as.numeric(logLik(f_hu))
fits$hurdle_lognormal <- entry(
  "hurdle_lognormal", "y ~ x + (1 | g)", "hurdle_lognormal",
  paste(deparse1l(f$call), "on the rows with y > 0;", deparse1l(f_hu$call)),
  fixed_rows(setNames(p$est[names(p$est) == "beta"], names(fixef(f)$cond)),
             setNames(p$se[names(p$se) == "beta"], names(fixef(f)$cond))),
  group_sd(f),
  list(sigma = exp_param("sigma", unname(p$est["betad"]) / 2, unname(p$se["betad"]) / 2,
                         "sigma(fit) of the gaussian fit of log(y) = exp(d~(Intercept) / 2) (glmmTMB 1.1.5's gaussian dispersion parameter is log(sigma^2))"),
       hu = logit_param("hu", unname(ph$est["beta"]), unname(ph$se["beta"]),
                        "plogis(intercept of glmmTMB(y == 0 ~ 1, binomial)) = share of zeros")),
  ll_marg, attr(logLik(f), "df") + 1, nrow(d), f$fit$convergence == 0 && f_hu$fit$convergence == 0,
  list(conditional_loglik_by_hand = ll_hand, conditional_loglik_tmb = ll_tmb, n_zero = n0),
  pdHess = f$sdr$pdHess, ranef = ranef_list(f))
stopifnot(abs(exp(unname(p$est["betad"]) / 2) - sg) < 1e-10)
message("hurdle_lognormal")

# -- student t --------------------------------------------------------------------------------------------------------
d <- read("student_t")
f <- glmmTMB(y ~ x + (1 | g), data = d, family = t_family())
p <- tmb_fixed(f)
sg <- unname(exp(p$est["betad"]))
nu <- unname(exp(p$est["psi"]))
stopifnot(abs(sigma(f) - sg) < 1e-10, abs(unname(family_params(f)) - nu) < 1e-10)
chk <- check_conditional(f, function(eta) dt((d$y - eta) / sg, df = nu, log = TRUE) - log(sg))
ll <- logLik(f)
fits$student_t <- entry(
  "student_t", "y ~ x + (1 | g)", "student_t", deparse1l(f$call),
  fixed_rows(setNames(p$est[names(p$est) == "beta"], names(fixef(f)$cond)),
             setNames(p$se[names(p$se) == "beta"], names(fixef(f)$cond))),
  group_sd(f),
  list(sigma = exp_param("sigma", unname(p$est["betad"]), unname(p$se["betad"]),
                         "sigma(fit) = exp(glmmTMB d~(Intercept)): the t scale"),
       nu = exp_param("nu", unname(p$est["psi"]), unname(p$se["psi"]),
                      "family_params(fit)['Student-t df'] = exp(glmmTMB psi)")),
  as.numeric(ll), attr(ll, "df"), nobs(f), f$fit$convergence == 0, chk,
  pdHess = f$sdr$pdHess, ranef = ranef_list(f))
message("student_t")

# -- truncated gaussian (optim) ---------------------------------------------------------------------------------------
d <- read("trunc_gaussian")
X <- model.matrix(~x, d)
tg_ll <- function(par) {
  mu <- drop(X %*% par[1:2]); s <- exp(par[3])
  dnorm(d$y, mu, s, log = TRUE) - pnorm(0, mu, s, lower.tail = FALSE, log.p = TRUE)
}
start <- c(coef(lm(y ~ x, d)), log(sd(d$y)))
o <- optim(start, function(p) -sum(tg_ll(p)), method = "BFGS", control = list(reltol = 1e-15, maxit = 1000))
o2 <- optim(o$par, function(p) -sum(tg_ll(p)), method = "Nelder-Mead", control = list(reltol = 1e-15, maxit = 5000))
if (o2$value < o$value) o <- o2
H <- optimHess(o$par, function(p) -sum(tg_ll(p)))
V <- solve(H)
se <- sqrt(diag(V))
names(o$par) <- names(se) <- c("(Intercept)", "x", "log_sigma")
g_norm <- max(abs(sapply(1:3, function(j) { h <- 1e-6; e <- replace(numeric(3), j, h)
  (sum(tg_ll(o$par + e)) - sum(tg_ll(o$par - e))) / (2 * h) })))
stopifnot(o$convergence == 0, g_norm < 1e-3)
ll_hand <- sum(tg_ll(o$par))
fits$trunc_gaussian <- entry(
  "trunc_gaussian", "y | trunc(lb=0) ~ x", "gaussian",
  "optim() of sum(dnorm(y, mu, s, log = TRUE) - pnorm(0, mu, s, lower.tail = FALSE, log.p = TRUE)), mu = b0 + b1 x (the model of truncreg(y ~ x, point = 0, direction = 'left'))",
  fixed_rows(o$par[1:2], se[1:2]), no_sd,
  list(sigma = exp_param("sigma", unname(o$par[3]), unname(se[3]), "exp(log sigma) of the normal before truncation")),
  ll_hand, 3L, nrow(d), TRUE, list(conditional_loglik_by_hand = ll_hand, max_abs_gradient = g_norm))
message("trunc_gaussian")

# -- censored gaussian (survreg) --------------------------------------------------------------------------------------
d <- read("cens_gaussian")
f <- survreg(Surv(y, event) ~ x, data = d, dist = "gaussian")
b <- coef(f); V <- vcov(f); se <- sqrt(diag(V))
mu <- drop(model.matrix(~x, d) %*% b)
ll_hand <- sum(ifelse(d$event == 1, dnorm(d$y, mu, f$scale, log = TRUE),
                      pnorm(d$y, mu, f$scale, lower.tail = FALSE, log.p = TRUE)))
stopifnot(abs(ll_hand - as.numeric(logLik(f))) < 1e-8 * abs(ll_hand), all(d$censored == 1 - d$event))
fits$cens_gaussian <- entry(
  "cens_gaussian", "y | cens(censored) ~ x", "gaussian", deparse1l(f$call),
  fixed_rows(b, se[names(b)]), no_sd,
  list(sigma = exp_param("sigma", log(f$scale), unname(se["Log(scale)"]), "survreg's scale (fit$scale)")),
  as.numeric(logLik(f)), attr(logLik(f), "df"), nrow(d), f$iter < 30,
  list(conditional_loglik_by_hand = ll_hand, n_censored = sum(d$censored)))
message("cens_gaussian")

# left-censored (a detection limit): survreg(Surv(y, observed, type = "left")); hmodels' cens() = -1 at those rows
d <- read("cens_gaussian_left")
f <- survreg(Surv(y, observed, type = "left") ~ x, data = d, dist = "gaussian")
b <- coef(f); V <- vcov(f); se <- sqrt(diag(V))
mu <- drop(model.matrix(~x, d) %*% b)
ll_hand <- sum(ifelse(d$observed == 1, dnorm(d$y, mu, f$scale, log = TRUE), pnorm(d$y, mu, f$scale, log.p = TRUE)))
stopifnot(abs(ll_hand - as.numeric(logLik(f))) < 1e-8 * abs(ll_hand), all(d$censored == -(1 - d$observed)))
fits$cens_gaussian_left <- entry(
  "cens_gaussian_left", "y | cens(censored) ~ x", "gaussian", deparse1l(f$call),
  fixed_rows(b, se[names(b)]), no_sd,
  list(sigma = exp_param("sigma", log(f$scale), unname(se["Log(scale)"]), "survreg's scale (fit$scale)")),
  as.numeric(logLik(f)), attr(logLik(f), "df"), nrow(d), f$iter < 30,
  list(conditional_loglik_by_hand = ll_hand, n_censored = sum(d$censored != 0)))
message("cens_gaussian_left")

# -- zero-one-inflated beta -------------------------------------------------------------------------------------------
d <- read("zoib")
inside <- d$y > 0 & d$y < 1
f <- glmmTMB(y ~ x, data = d[inside, ], family = beta_family())
p <- tmb_fixed(f)
phi <- unname(exp(p$est["betad"]))
stopifnot(abs(sigma(f) - phi) < 1e-10)
n_edge <- sum(!inside); n_one <- sum(d$y == 1)
zoi <- n_edge / nrow(d); coi <- n_one / n_edge
mu <- plogis(drop(model.matrix(~x, d) %*% p$est[names(p$est) == "beta"]))
ll_beta <- sum(dbeta(d$y[inside], mu[inside] * phi, (1 - mu[inside]) * phi, log = TRUE))
stopifnot(abs(ll_beta - as.numeric(logLik(f))) < 1e-8 * abs(ll_beta))
ll_hand <- ll_beta + n_edge * log(zoi) + sum(inside) * log1p(-zoi) + n_one * log(coi) + (n_edge - n_one) * log1p(-coi)
# gamlss.dist::dBEINF written out (gamlss is not packaged for Debian bookworm)
dBEINF_log <- function(y, mu, sigma, nu, tau) {
  a <- mu * (1 - sigma^2) / sigma^2; b <- a / mu - a
  out <- ifelse(y > 0 & y < 1, dbeta(pmin(pmax(y, 1e-300), 1 - 1e-16), a, b, log = TRUE), 0)
  out <- ifelse(y == 0, log(nu), out)
  out <- ifelse(y == 1, log(tau), out)
  out - log(1 + nu + tau)
}
beinf_nll <- function(par) -sum(dBEINF_log(d$y, plogis(par[1] + par[2] * d$x), plogis(par[3]), exp(par[4]), exp(par[5])))
ob <- optim(c(0, 0, 0, 0, 0), beinf_nll, method = "BFGS", control = list(reltol = 1e-15, maxit = 2000))
ob <- optim(ob$par, beinf_nll, method = "Nelder-Mead", control = list(reltol = 1e-15, maxit = 10000))
ob <- optim(ob$par, beinf_nll, method = "BFGS", control = list(reltol = 1e-15, maxit = 2000))
s_b <- plogis(ob$par[3]); nu_b <- exp(ob$par[4]); tau_b <- exp(ob$par[5])
beinf_mapped <- list(Intercept = ob$par[1], x = ob$par[2], phi = (1 - s_b^2) / s_b^2,
                     zoi = (nu_b + tau_b) / (1 + nu_b + tau_b), coi = tau_b / (nu_b + tau_b))
factorised <- list(Intercept = unname(p$est["beta"][1]), x = unname(p$est[names(p$est) == "beta"][2]), phi = phi,
                   zoi = zoi, coi = coi)
stopifnot(abs(-ob$value - ll_hand) < 1e-6,
          max(abs(unlist(beinf_mapped) - unlist(factorised)) / c(0.1, 0.1, phi, 0.1, 0.1)) < 1e-3)
# the log-likelihood at the factorised estimates, written as BEINF with the inverse mapping
ll_beinf_at_factorised <- -beinf_nll(c(factorised$Intercept, factorised$x, qlogis(1 / sqrt(1 + phi)),
                                       log(zoi * (1 - coi) / (1 - zoi)), log(zoi * coi / (1 - zoi))))
stopifnot(abs(ll_beinf_at_factorised - ll_hand) < 1e-8 * abs(ll_hand))
fits$zoib <- entry(
  "zoib", "y ~ x", "zero_one_inflated_beta",
  paste(deparse1l(f$call), "on the rows inside (0, 1); zoi, coi = shares of the rows at 0 or 1"),
  fixed_rows(setNames(p$est[names(p$est) == "beta"], names(fixef(f)$cond)),
             setNames(p$se[names(p$se) == "beta"], names(fixef(f)$cond))), no_sd,
  list(phi = exp_param("phi", unname(p$est["betad"]), unname(p$se["betad"]),
                       "sigma(fit) of glmmTMB's beta_family = exp(d~(Intercept)); BEINF sigma = 1 / sqrt(1 + phi)"),
       zoi = list(name = "zoi", estimate = zoi, se = sqrt(zoi * (1 - zoi) / nrow(d)),
                  conversion = "share of rows at 0 or 1 (its ML estimate); BEINF (nu + tau) / (1 + nu + tau)"),
       coi = list(name = "coi", estimate = coi, se = sqrt(coi * (1 - coi) / n_edge),
                  conversion = "share of ones among the rows at 0 or 1; BEINF tau / (nu + tau)")),
  ll_hand, 5L, nrow(d), f$fit$convergence == 0,
  list(conditional_loglik_by_hand = ll_hand, beinf_optim_logLik = -ob$value,
       beinf_loglik_at_mapped_estimates = ll_beinf_at_factorised, beinf_optim_mapped = beinf_mapped,
       beinf_optim_raw = list(mu_Intercept = ob$par[[1]], mu_x = ob$par[[2]], sigma = s_b, nu = nu_b, tau = tau_b)))
message("zoib")

out <- list(
  about = paste0(
    "Maximum-likelihood reference fits made by tests/reference/r_more_families.R with ", R.version.string,
    ", glmmTMB ", packageVersion("glmmTMB"), ", TMB ", packageVersion("TMB"), ", survival ",
    packageVersion("survival"), " on ", format(Sys.Date()), ", at the packages' default settings, on data ",
    "simulated by the script (", n, " rows each; ", n_groups, " groups x ", per_group, " rows where there is a group ",
    "term; truth in 'truth'). Family parameters are in hmodels' parameterisation (see 'conversion' and the script's ",
    "header; 'se' by the delta method). 'checks': the log-likelihood at the estimates (conditional on the predicted ",
    "group effects where there are any) recomputed by hand with the stated mapping."),
  versions = list(R = R.version.string, glmmTMB = format(packageVersion("glmmTMB")),
                  TMB = format(packageVersion("TMB")), survival = format(packageVersion("survival"))),
  fits = fits
)
writeLines(toJSON(out, auto_unbox = TRUE, digits = 15, pretty = TRUE, null = "null", na = "null"),
           file.path(ref_dir, "r_more_families.json"))
cat("wrote", file.path(ref_dir, "r_more_families.json"), "\n")

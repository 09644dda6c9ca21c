# glmmTMB / glmer maximum-likelihood fits of hmodels features that had no independent reference: zero-truncated
# counts, a hurdle formula, the beta-binomial on simulated data, observation weights and a gamma dispersion formula.
# The reference for tests/test_reference_more.py.
#
# Run from the repository root:  Rscript tests/reference/glmmtmb_more.R
# Writes tests/reference/glmmtmb_more.json and, first, the data it fits (simulated here with set.seed below; the
# truth is in the JSON): tests/reference/glmmtmb_more_<name>.csv. It reads every data set back from its CSV file,
# so R and hmodels fit identical data. R never runs in the tests.
# Made with R 4.2.2, glmmTMB 1.1.5, lme4 1.1-31 (Debian bookworm: r-cran-glmmtmb, r-cran-lme4), default settings.
#
# Parameter mappings (glmmTMB -> hmodels); each is checked below against a log-likelihood written out by hand
# (stopifnot), so a wrong reading of glmmTMB's parameterisation stops the script:
#   truncated_poisson, ziformula ~0:  zero-truncated poisson, P(y | y >= 1)  -> y | trunc(lb=1) ~ ..., poisson
#   truncated_nbinom2, ziformula ~0:  zero-truncated NB2, Var = mu + mu^2 / theta (before truncation),
#                                     sigma(fit) = theta                  -> trunc(lb=1), negativebinomial, alpha = theta
#   truncated_poisson, ziformula ~x:  hurdle, P(y = 0) = plogis(zi predictor) -> hurdle_poisson, dpars hu: "1 + x",
#                                     coefficients unchanged (zi~(Intercept) -> hu_Intercept, zi~x -> hu_x)
#   betabinomial:                     p ~ Beta(mu phi, (1 - mu) phi), sigma(fit) = phi -> beta_binomial, phi = phi
#   glmer(weights = w), integer w:    each row's log-likelihood times w (= w replicated rows; checked below by a fit
#                                     on replicated rows)                  -> y | weights(w) ~ ...
#   Gamma(link = "log"), dispformula ~x: glmmTMB 1.1.5 models the *shape* on the log scale,
#                                     log(shape_i) = d0 + d1 x_i (Var = mu^2 / shape; sigma(fit) = 1 / sqrt(shape)
#                                     is the CV, so log sigma^2 = -(d0 + d1 x)) -> gamma, dpars shape: "x",
#                                     shape_Intercept = d0, shape_x = d1 (no sign change)

suppressPackageStartupMessages({
  library(glmmTMB)
  library(lme4)
  library(jsonlite)
})

ref_dir <- "tests/reference"
csv <- function(name) file.path(ref_dir, sprintf("glmmtmb_more_%s.csv", name))

# -- data -------------------------------------------------------------------------------------------------------------
set.seed(20261201)
n_groups <- 40
per_group <- 10
sim_base <- function(b, sd_g) {
  g <- rep(seq_len(n_groups), each = per_group)
  x <- round(rnorm(n_groups * per_group), 6)
  u <- rnorm(n_groups, 0, sd_g)
  list(g = sprintf("g%02d", g), x = x, eta = b[1] + b[2] * x + u[g])
}
# zero-truncated draws by inversion: F^-1(U) with U uniform on (F(0), 1)
rztpois <- function(mu) qpois(runif(length(mu), ppois(0, mu), 1), mu)
rztnb <- function(mu, size) qnbinom(runif(length(mu), pnbinom(0, size = size, mu = mu), 1), size = size, mu = mu)

truth <- list()
s <- sim_base(c(0.5, 0.6), 0.4)
y <- pmax(rztpois(exp(s$eta)), 1)
write.csv(data.frame(y = y, x = s$x, g = s$g), csv("trunc_poisson"), row.names = FALSE)
truth$trunc_poisson <- list(Intercept = 0.5, x = 0.6, `sd(g, Intercept)` = 0.4)

s <- sim_base(c(1.0, 0.5), 0.4)
y <- pmax(rztnb(exp(s$eta), 2.5), 1)
write.csv(data.frame(y = y, x = s$x, g = s$g), csv("trunc_nb"), row.names = FALSE)
truth$trunc_nb <- list(Intercept = 1.0, x = 0.5, `sd(g, Intercept)` = 0.4, alpha = 2.5)

s <- sim_base(c(0.8, 0.5), 0.4)
hu <- plogis(-0.3 + 0.9 * s$x)
y <- ifelse(runif(length(hu)) < hu, 0, pmax(rztpois(exp(s$eta)), 1))
write.csv(data.frame(y = y, x = s$x, g = s$g), csv("hurdle_poisson"), row.names = FALSE)
truth$hurdle_poisson <- list(Intercept = 0.8, x = 0.5, `sd(g, Intercept)` = 0.4, hu_Intercept = -0.3, hu_x = 0.9)

s <- sim_base(c(-0.4, 0.7), 0.5)
trials <- sample(5:20, length(s$eta), replace = TRUE)
p <- rbeta(length(s$eta), plogis(s$eta) * 8, (1 - plogis(s$eta)) * 8)
k <- rbinom(length(p), trials, p)
write.csv(data.frame(k = k, n = trials, x = s$x, g = s$g), csv("beta_binomial"), row.names = FALSE)
truth$beta_binomial <- list(Intercept = -0.4, x = 0.7, `sd(g, Intercept)` = 0.5, phi = 8)

s <- sim_base(c(-0.2, 0.9), 0.6)
w <- sample(1:4, length(s$eta), replace = TRUE)
y <- rbinom(length(s$eta), 1, plogis(s$eta))
write.csv(data.frame(y = y, w = w, x = s$x, g = s$g), csv("weights_bernoulli"), row.names = FALSE)
truth$weights_bernoulli <- list(Intercept = -0.2, x = 0.9, `sd(g, Intercept)` = 0.6)

s <- sim_base(c(0.7, 0.4), 0.4)
w <- sample(1:4, length(s$eta), replace = TRUE)
y <- rpois(length(s$eta), exp(s$eta))
write.csv(data.frame(y = y, w = w, x = s$x, g = s$g), csv("weights_poisson"), row.names = FALSE)
truth$weights_poisson <- list(Intercept = 0.7, x = 0.4, `sd(g, Intercept)` = 0.4)

s <- sim_base(c(1.0, 0.5), 0.4)
shape <- exp(1.2 + 0.5 * s$x)
y <- signif(rgamma(length(s$eta), shape = shape, rate = shape / exp(s$eta)), 10)
write.csv(data.frame(y = y, x = s$x, g = s$g), csv("gamma_shape_x"), row.names = FALSE)
truth$gamma_shape_x <- list(Intercept = 1.0, x = 0.5, `sd(g, Intercept)` = 0.4, shape_Intercept = 1.2, shape_x = 0.5)

read <- function(name) {
  d <- read.csv(csv(name), stringsAsFactors = FALSE)
  d$g <- factor(d$g)
  d
}

# -- summaries --------------------------------------------------------------------------------------------------------
# 95% profile-likelihood interval of the group SD (as in glmmtmb_families.R): refit with log(SD) fixed and solve
# 2 (logLik_max - logLik(SD)) = qchisq(0.95, 1); the lower limit is 0 when log(SD) = -12 is inside.
profile_sd_ci <- function(ll_max, log_sd_hat, nll_at) {
  crit <- qchisq(0.95, 1) / 2
  dev <- function(ls) ll_max + nll_at(ls) - crit
  lower <- if (dev(-12) < 0) 0 else exp(uniroot(dev, c(-12, log_sd_hat), tol = 1e-6)$root)
  upper <- exp(uniroot(dev, c(log_sd_hat, log_sd_hat + 1), tol = 1e-6, extendInt = "upX")$root)
  c(lower, upper)
}

term_name <- function(part, nm) {
  base <- if (nm == "(Intercept)") "Intercept" else nm
  if (part == "cond") base else paste0(part, "_", base)
}

tmb_entry <- function(fit, data_name, hm_formula, hm_family, hm_dpars, parts, family_param, truth, checks) {
  V <- vcov(fit, full = TRUE)
  se_all <- sqrt(diag(V))
  cf <- fixef(fit)
  prefix <- c(cond = "", zi = "zi~", disp = "d~")
  fixed <- list()
  for (part in names(parts)) {
    b <- cf[[part]]
    for (nm in names(b)) {
      key <- paste0(prefix[[part]], nm)
      fixed[[length(fixed) + 1]] <- list(glmmTMB_term = key, hmodels_term = term_name(parts[[part]], nm),
                                         estimate = unname(b[nm]), se = unname(se_all[key]))
    }
  }
  th <- unname(fit$fit$par[names(fit$fit$par) == "theta"][1])
  th_se <- unname(se_all[grep("^theta_", names(se_all))][1])
  refit <- function(ls) update(fit, map = list(theta = factor(NA)), start = list(theta = ls))$fit$objective
  sd <- list(list(group = "g", hmodels_term = "sd(g, Intercept)", estimate = exp(th), log_sd_estimate = th,
                  log_sd_se = th_se, profile_ci95 = profile_sd_ci(as.numeric(logLik(fit)), th, refit)))
  params <- setNames(list(), character(0))  # {} in the JSON when empty
  if (!is.null(family_param)) {
    est <- unname(cf$disp[1]); se <- unname(se_all["d~(Intercept)"])
    params[[family_param]] <- list(name = family_param, estimate = exp(est), se = exp(est) * se,
                                   link_estimate = est, link_se = se,
                                   conversion = "exp(glmmTMB log-scale dispersion parameter) = sigma(fit)")
  }
  ll <- logLik(fit)
  list(data = data_name, hmodels_formula = hm_formula, hmodels_family = hm_family, hmodels_dpars = hm_dpars,
       call = paste(deparse(fit$call, width.cutoff = 500), collapse = ""),
       fixed = fixed, sd = sd, family_params = params, logLik = as.numeric(ll), df = attr(ll, "df"),
       nobs = nobs(fit), converged = fit$fit$convergence == 0, pdHess = fit$sdr$pdHess,
       ranef = as.list(setNames(ranef(fit)$cond$g[, 1], rownames(ranef(fit)$cond$g))),
       truth = truth, checks = checks)
}

# glmmTMB's log-likelihood at its estimates, conditional on its predicted group effects, recomputed by hand with the
# stated mapping from the conditional model's linear predictor (predict(type = "link") includes the group effects;
# type = "conditional" of a truncated family is the truncated mean, not mu) must equal the data term of TMB's joint
# log-likelihood (its objective at the optimum minus the normal log density of the group effects), or the script stops.
check_conditional <- function(fit, loglik_by_hand, inv_link = exp) {
  mu <- inv_link(predict(fit, type = "link"))
  ll_hand <- sum(loglik_by_hand(mu))
  # TMB's objective at the optimum = - (data log-likelihood + log density of the random effects) before Laplace:
  u <- fit$obj$env$last.par.best[names(fit$obj$env$last.par.best) == "b"]
  sd_g <- exp(fit$fit$par[names(fit$fit$par) == "theta"][1])
  joint <- -fit$obj$env$f(fit$obj$env$last.par.best)
  ll_data_tmb <- joint - sum(dnorm(u, 0, sd_g, log = TRUE))
  stopifnot(abs(ll_hand - ll_data_tmb) < 1e-6 * max(1, abs(ll_hand)))
  list(conditional_loglik_by_hand = ll_hand, conditional_loglik_tmb = ll_data_tmb)
}

fits <- list()

d <- read("trunc_poisson")
f <- glmmTMB(y ~ x + (1 | g), data = d, family = truncated_poisson)
chk <- check_conditional(f, function(mu) dpois(d$y, mu, log = TRUE) - log1p(-exp(-mu)))
fits$trunc_poisson <- tmb_entry(f, csv("trunc_poisson"), "y | trunc(lb=1) ~ x + (1 | g)", "poisson", NULL,
                                list(cond = "cond"), NULL, truth$trunc_poisson, chk)
message("trunc_poisson")

d <- read("trunc_nb")
f <- glmmTMB(y ~ x + (1 | g), data = d, family = truncated_nbinom2)
th <- sigma(f)
chk <- check_conditional(f, function(mu) dnbinom(d$y, size = th, mu = mu, log = TRUE) -
                           log1p(-dnbinom(0, size = th, mu = mu)))
fits$trunc_nb <- tmb_entry(f, csv("trunc_nb"), "y | trunc(lb=1) ~ x + (1 | g)", "negativebinomial", NULL,
                           list(cond = "cond"), "alpha", truth$trunc_nb, chk)
message("trunc_nb")

d <- read("hurdle_poisson")
f <- glmmTMB(y ~ x + (1 | g), ziformula = ~x, data = d, family = truncated_poisson)
# the count model's mean from predict(type = "link") (group effects included) and P(y = 0) from type = "zprob".
mu_c <- exp(predict(f, type = "link"))
hu <- predict(f, type = "zprob")
ll_hand <- sum(ifelse(d$y == 0, log(hu), log1p(-hu) + dpois(d$y, mu_c, log = TRUE) - log1p(-exp(-mu_c))))
u <- f$obj$env$last.par.best[names(f$obj$env$last.par.best) == "b"]
ll_tmb <- -f$obj$env$f(f$obj$env$last.par.best) - sum(dnorm(u, 0, exp(f$fit$par[names(f$fit$par) == "theta"][1]),
                                                                log = TRUE))
stopifnot(abs(ll_hand - ll_tmb) < 1e-6 * abs(ll_hand))
fits$hurdle_poisson <- tmb_entry(f, csv("hurdle_poisson"), "y ~ x + (1 | g)", "hurdle_poisson",
                                 list(hu = "1 + x"), list(cond = "cond", zi = "hu"), NULL, truth$hurdle_poisson,
                                 list(conditional_loglik_by_hand = ll_hand, conditional_loglik_tmb = ll_tmb))
message("hurdle_poisson")

d <- read("beta_binomial")
f <- glmmTMB(cbind(k, n - k) ~ x + (1 | g), data = d, family = betabinomial)
ph <- sigma(f)
chk <- check_conditional(f, function(mu) {
  a <- mu * ph; b <- (1 - mu) * ph
  lchoose(d$n, d$k) + lbeta(d$k + a, d$n - d$k + b) - lbeta(a, b)
}, inv_link = plogis)
fits$beta_binomial <- tmb_entry(f, csv("beta_binomial"), "p(k, n) ~ x + (1 | g)", "beta_binomial", NULL,
                                list(cond = "cond"), "phi", truth$beta_binomial, chk)
message("beta_binomial")

d <- read("gamma_shape_x")
f <- glmmTMB(y ~ x + (1 | g), dispformula = ~x, data = d, family = Gamma(link = "log"))
dpred <- drop(model.matrix(~x, d) %*% fixef(f)$disp)
chk <- check_conditional(f, function(mu) dgamma(d$y, shape = exp(dpred), rate = exp(dpred) / mu, log = TRUE))
chk$predict_disp <- "shape_i = exp(d~(Intercept) + d~x * x_i); checked against TMB's conditional log-likelihood"
fits$gamma_shape_x <- tmb_entry(f, csv("gamma_shape_x"), "y ~ x + (1 | g)", "gamma", list(shape = "x"),
                                list(cond = "cond", disp = "shape"), NULL, truth$gamma_shape_x, chk)
message("gamma_shape_x")

# observation weights: glmer (Laplace, lme4's defaults) with integer weights; the same model on the rows replicated
# w times must give the same estimates and log-likelihood (checked here), so weights(w) = replicated rows.
glmer_entry <- function(name, formula, family, hm_formula, hm_family) {
  d <- read(name)
  f <- glmer(formula, data = d, family = family, weights = w)
  rep_d <- d[rep(seq_len(nrow(d)), d$w), ]
  rep_d$w <- 1
  f_rep <- glmer(formula, data = rep_d, family = family)
  stopifnot(max(abs(fixef(f) - fixef(f_rep))) < 1e-4, abs(logLik(f) - logLik(f_rep)) < 1e-4)
  co <- summary(f)$coefficients
  fixed <- lapply(rownames(co), function(nm) list(glmer_term = nm, hmodels_term = term_name("cond", nm),
                                                  estimate = co[nm, 1], se = co[nm, 2]))
  sd_hat <- getME(f, "theta")[[1]]
  ll <- logLik(f)
  mu <- fitted(f)  # conditional on the predicted group effects
  ll_cond <- sum(d$w * if (stats::family(f)$family == "binomial") dbinom(d$y, 1, mu, log = TRUE) else
                   dpois(d$y, mu, log = TRUE))
  re <- ranef(f)$g
  # the profile on a fit of its own: profiling a merMod changes the state its ranef() reads (lme4's mutable
  # reference classes), which gave the group effects of the last profiled SD instead of the ML ones
  f_prof <- glmer(formula, data = d, family = family, weights = w)
  ci <- unname(confint(f_prof, parm = "theta_", method = "profile", oldNames = FALSE)[1, ])
  stopifnot(max(abs(ranef(f)$g[, 1] - re[, 1])) == 0)
  list(data = csv(name), hmodels_formula = hm_formula, hmodels_family = hm_family, hmodels_dpars = NULL,
       call = paste(deparse(f@call, width.cutoff = 500), collapse = ""),
       fixed = fixed, sd = list(list(group = "g", hmodels_term = "sd(g, Intercept)", estimate = sd_hat,
                                     profile_ci95 = ci)),
       family_params = setNames(list(), character(0)), logLik = as.numeric(ll), df = attr(ll, "df"),
       nobs = nrow(d), converged = is.null(f@optinfo$conv$lme4$messages),
       ranef = as.list(setNames(re[, 1], rownames(re))), truth = truth[[name]],
       checks = list(conditional_loglik_by_hand = ll_cond, replicated_rows = nrow(rep_d),
                     replicated_logLik = as.numeric(logLik(f_rep)), replicated_fixef = as.list(fixef(f_rep))))
}
fits$weights_bernoulli <- glmer_entry("weights_bernoulli", y ~ x + (1 | g), binomial,
                                      "y | weights(w) ~ x + (1 | g)", "bernoulli")
message("weights_bernoulli")
fits$weights_poisson <- glmer_entry("weights_poisson", y ~ x + (1 | g), poisson,
                                    "y | weights(w) ~ x + (1 | g)", "poisson")
message("weights_poisson")

out <- list(
  about = paste0(
    "Maximum-likelihood reference fits made by tests/reference/glmmtmb_more.R with ", R.version.string,
    ", glmmTMB ", packageVersion("glmmTMB"), ", TMB ", packageVersion("TMB"), ", lme4 ", packageVersion("lme4"),
    " on ", format(Sys.Date()), ", at the packages' default settings, on data simulated by the script (",
    n_groups, " groups x ", per_group, " rows each; truth in 'truth'). Coefficients of a distributional ",
    "parameter carry hmodels' names (hu_x, shape_x); family parameters are in hmodels' parameterisation (see ",
    "'conversion'; 'se' by the delta method). 'checks': the conditional log-likelihood at the estimates ",
    "recomputed by hand with the stated mapping (glmmTMB) or the fit on replicated rows (glmer weights)."),
  versions = list(R = R.version.string, glmmTMB = format(packageVersion("glmmTMB")),
                  TMB = format(packageVersion("TMB")), lme4 = format(packageVersion("lme4"))),
  fits = fits
)
writeLines(toJSON(out, auto_unbox = TRUE, digits = 15, pretty = TRUE, null = "null", na = "null"),
           file.path(ref_dir, "glmmtmb_more.json"))
cat("wrote", file.path(ref_dir, "glmmtmb_more.json"), "\n")

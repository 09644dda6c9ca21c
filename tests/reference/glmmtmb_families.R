# glmmTMB (and lmer / survreg) maximum-likelihood fits of hmodels' non-gaussian families: the independent reference
# for tests/test_reference_families.py.
#
# Run from the repository root:  Rscript tests/reference/glmmtmb_families.R
# Writes tests/reference/glmmtmb_families.json, and (first) the data it fits:
#   hmodels/datasets/data/salamanders.csv, hmodels/datasets/data/owls.csv  (glmmTMB's Salamanders and Owls, bundled),
#   tests/reference/glmmtmb_sim_gamma.csv, tests/reference/glmmtmb_sim_beta.csv   (simulated here, set.seed below).
# It then reads every dataset back from those CSV files (and the bundled cbpp.csv, sleepstudy.csv), so R and
# hmodels fit identical data. R never runs in the tests.
# Made with R 4.2.2, glmmTMB 1.1.5, lme4 1.1-31, survival 3.4-0 (Debian bookworm: r-cran-glmmtmb, r-cran-lme4).
#
# Every family parameter is stored in hmodels' parameterisation (the conversion is written next to it):
#   nbinom2 (glmmTMB):    Var = mu + mu^2 / theta, sigma(fit) = theta       -> hmodels alpha = theta
#   beta_family:          Var = mu (1 - mu) / (1 + phi), sigma(fit) = phi    -> hmodels phi = phi
#   betabinomial:         shapes mu phi, (1 - mu) phi, sigma(fit) = phi      -> hmodels phi = phi
#   Gamma:                dispersion parameter exp(betad) = shape (Var = mu^2 / shape); sigma(fit) = 1/sqrt(shape),
#                         the coefficient of variation          -> hmodels shape = exp(betad) = 1 / sigma(fit)^2
#   ziformula (zi fams):  zi = plogis(zi intercept), probability of a structural zero -> hmodels zi
#   ziformula (truncated_*): zi = P(y = 0), the hurdle                       -> hmodels hu
#   lognormal:            lmer(log(y) ~ ..., REML = FALSE): same model, logLik(lognormal) = logLik(lmer) - sum(log y)
#   survreg weibull:      log T = X b + s W; shape k = 1/s, hmodels mean mu = exp(X b) Gamma(1 + s)
#                         -> hmodels Intercept = (Intercept) + lgamma(1 + s), slopes unchanged, shape = 1/s
# Each model is also fitted without its group term ("glm"): tests recompute that log-likelihood with hmodels'
# family classes at these estimates, an exact check of the parameterisation (it has no integral over groups).

suppressPackageStartupMessages({
  library(glmmTMB)
  library(lme4)
  library(survival)
  library(jsonlite)
})

data_dir <- "hmodels/datasets/data"
ref_dir <- "tests/reference"

# -- data -------------------------------------------------------------------------------------------------------------
sal <- glmmTMB::Salamanders
sal$site <- as.character(sal$site)  # an ordered factor in glmmTMB; only a grouping factor here
write.csv(sal, file.path(data_dir, "salamanders.csv"), row.names = FALSE)
write.csv(glmmTMB::Owls, file.path(data_dir, "owls.csv"), row.names = FALSE)

set.seed(20261130)
sim_glmm <- function(n_groups, per_group, b, sd_g) {
  g <- rep(seq_len(n_groups), each = per_group)
  x <- round(rnorm(n_groups * per_group), 6)
  u <- rnorm(n_groups, 0, sd_g)
  list(g = sprintf("g%02d", g), x = x, eta = b[1] + b[2] * x + u[g])
}
s <- sim_glmm(40, 10, c(1.0, 0.5), 0.4)          # gamma: log link, shape 4
shape_true <- 4
y <- signif(rgamma(length(s$eta), shape = shape_true, rate = shape_true / exp(s$eta)), 10)
write.csv(data.frame(y = y, x = s$x, g = s$g), file.path(ref_dir, "glmmtmb_sim_gamma.csv"), row.names = FALSE)
s <- sim_glmm(40, 10, c(-0.5, 0.8), 0.5)         # beta: logit link, phi 15
phi_true <- 15
mu <- plogis(s$eta)
y <- signif(rbeta(length(mu), mu * phi_true, (1 - mu) * phi_true), 10)
write.csv(data.frame(y = y, x = s$x, g = s$g), file.path(ref_dir, "glmmtmb_sim_beta.csv"), row.names = FALSE)
truth <- list(
  sim_gamma = list(Intercept = 1.0, x = 0.5, `sd(g, Intercept)` = 0.4, shape = shape_true),
  sim_beta = list(Intercept = -0.5, x = 0.8, `sd(g, Intercept)` = 0.5, phi = phi_true)
)

read <- function(path) read.csv(path, stringsAsFactors = FALSE)
sal <- read(file.path(data_dir, "salamanders.csv"))
# hmodels (formulae 0.6) puts the levels of an unordered factor in sorted order, whatever the pandas category
# order: 'no' is the reference here (glmmTMB's own Salamanders has 'yes' first), so the coefficient is minedyes.
sal$mined <- factor(sal$mined, levels = c("no", "yes"))
sal$site <- factor(sal$site)
owls <- read(file.path(data_dir, "owls.csv"))
owls$Nest <- factor(owls$Nest)
owls$FoodTreatment <- factor(owls$FoodTreatment, levels = c("Deprived", "Satiated"))
cbpp <- read(file.path(data_dir, "cbpp.csv"))
cbpp$herd <- factor(cbpp$herd)
cbpp$period <- factor(cbpp$period)
sleep <- read(file.path(data_dir, "sleepstudy.csv"))
sleep$Subject <- factor(sleep$Subject)
sim_gamma <- read(file.path(ref_dir, "glmmtmb_sim_gamma.csv"))
sim_beta <- read(file.path(ref_dir, "glmmtmb_sim_beta.csv"))
lung2 <- subset(survival::lung, status == 2 & !is.na(age), select = c(time, age, sex))  # deaths only (uncensored)

# -- summaries --------------------------------------------------------------------------------------------------------
fixed_table <- function(est, se, names_map) {
  lapply(seq_along(est), function(i) {
    nm <- names(est)[i]
    list(term = nm, hmodels_term = unname(names_map[nm]), estimate = unname(est[i]), se = unname(se[i]))
  })
}

# a family parameter from its link-scale estimate and SE: value (hmodels scale) and delta-method SE
family_param <- function(name, link_est, link_se, how) {
  val <- switch(how,
    exp = exp(link_est), shape = exp(link_est), plogis = plogis(link_est))
  dval <- switch(how,
    exp = exp(link_est), shape = exp(link_est), plogis = plogis(link_est) * (1 - plogis(link_est)))
  list(name = name, estimate = val, se = dval * link_se, link_estimate = link_est, link_se = link_se,
       conversion = switch(how,
         exp = "exp(glmmTMB log-scale dispersion parameter)",
         plogis = "plogis(glmmTMB zi intercept)",
         shape = "exp(glmmTMB dispersion parameter) = 1 / sigma(fit)^2 (glmmTMB's sigma() of a Gamma is the CV)"))
}

# 95% profile-likelihood interval of a single group SD: refit with log(SD) fixed (map) and solve
# 2 (logLik_max - logLik(SD)) = qchisq(0.95, 1) on each side; the lower limit is 0 when log(SD) = -12 is inside.
profile_sd_ci <- function(fit, log_sd_hat, refit) {
  ll_max <- as.numeric(logLik(fit))
  crit <- qchisq(0.95, 1) / 2
  dev <- function(ls) ll_max + refit(ls)$fit$objective - crit  # objective: minus the log-likelihood
  lower <- if (dev(-12) < 0) 0 else exp(uniroot(dev, c(-12, log_sd_hat), tol = 1e-6)$root)
  upper <- exp(uniroot(dev, c(max(log_sd_hat, -12), max(log_sd_hat, -3) + 1), tol = 1e-6, extendInt = "upX")$root)
  c(lower, upper)
}

tmb_summary <- function(fit, hm_formula, hm_family, data_name, names_map, group, aux, refit = NULL) {
  V <- vcov(fit, full = TRUE)
  se_all <- sqrt(diag(V))
  cf <- fixef(fit)
  b <- cf$cond
  sds <- list()
  if (!is.null(group)) {
    th <- fit$fit$par[names(fit$fit$par) == "theta"]
    th_se <- se_all[grep("^theta_", names(se_all))]
    prof <- profile_sd_ci(fit, unname(th[1]), refit)
    sds[[1]] <- list(group = group, term = "(Intercept)", hmodels_term = sprintf("sd(%s, Intercept)", group),
                     estimate = exp(unname(th[1])), log_sd_estimate = unname(th[1]), log_sd_se = unname(th_se[1]),
                     profile_ci95 = prof)
  }
  params <- list()
  for (a in aux) {
    if (a$part == "disp") {
      est <- unname(cf$disp[1]); se <- unname(se_all[grep("^d~", names(se_all))][1])
    } else {
      est <- unname(cf$zi[1]); se <- unname(se_all[grep("^zi~", names(se_all))][1])
    }
    params[[a$name]] <- family_param(a$name, est, se, a$how)
  }
  ll <- logLik(fit)
  list(
    data = data_name,
    hmodels_formula = hm_formula,
    hmodels_family = hm_family,
    call = paste(deparse(fit$call, width.cutoff = 500), collapse = ""),
    fixed = fixed_table(b, se_all[seq_along(b)], names_map),
    sd = sds,
    family_params = params,
    logLik = as.numeric(ll), df = attr(ll, "df"), nobs = nobs(fit),
    converged = fit$fit$convergence == 0, pdHess = fit$sdr$pdHess
  )
}

fit_pair <- function(id, formula, formula_glm, data, family, zi, hm_formula, hm_formula_glm, hm_family, data_name,
                     names_map, group, aux) {
  f <- glmmTMB(formula, data = data, family = family, ziformula = zi)
  message(id)
  f0 <- glmmTMB(formula_glm, data = data, family = family, ziformula = zi)
  refit <- function(ls) glmmTMB(formula, data = data, family = family, ziformula = zi,
                                map = list(theta = factor(NA)), start = list(theta = ls))
  out <- tmb_summary(f, hm_formula, hm_family, data_name, names_map, group, aux, refit)
  out$glm <- tmb_summary(f0, hm_formula_glm, hm_family, data_name, names_map, NULL, aux)
  out
}

fits <- list()
zi1 <- ~1
nm_sal <- c("(Intercept)" = "Intercept", minedyes = "mined[yes]")
fits$salamanders_zip <- fit_pair("salamanders_zip", count ~ mined + (1 | site), count ~ mined, sal, poisson, zi1,
  "count ~ mined + (1 | site)", "count ~ mined", "zero_inflated_poisson", "salamanders", nm_sal, "site",
  list(list(name = "zi", part = "zi", how = "plogis")))
fits$salamanders_zinb <- fit_pair("salamanders_zinb", count ~ mined + (1 | site), count ~ mined, sal, nbinom2, zi1,
  "count ~ mined + (1 | site)", "count ~ mined", "zero_inflated_negativebinomial", "salamanders", nm_sal, "site",
  list(list(name = "alpha", part = "disp", how = "exp"), list(name = "zi", part = "zi", how = "plogis")))
fits$salamanders_hurdle_poisson <- fit_pair("salamanders_hurdle_poisson", count ~ mined + (1 | site), count ~ mined,
  sal, truncated_poisson, zi1, "count ~ mined + (1 | site)", "count ~ mined", "hurdle_poisson", "salamanders",
  nm_sal, "site", list(list(name = "hu", part = "zi", how = "plogis")))
fits$salamanders_hurdle_nb <- fit_pair("salamanders_hurdle_nb", count ~ mined + (1 | site), count ~ mined,
  sal, truncated_nbinom2, zi1, "count ~ mined + (1 | site)", "count ~ mined", "hurdle_negativebinomial",
  "salamanders", nm_sal, "site",
  list(list(name = "alpha", part = "disp", how = "exp"), list(name = "hu", part = "zi", how = "plogis")))
fits$owls_nb_offset <- fit_pair("owls_nb_offset",
  SiblingNegotiation ~ FoodTreatment + offset(log(BroodSize)) + (1 | Nest),
  SiblingNegotiation ~ FoodTreatment + offset(log(BroodSize)), owls, nbinom2, ~0,
  "SiblingNegotiation ~ FoodTreatment + offset(np.log(BroodSize)) + (1 | Nest)",
  "SiblingNegotiation ~ FoodTreatment + offset(np.log(BroodSize))", "negativebinomial", "owls",
  c("(Intercept)" = "Intercept", FoodTreatmentSatiated = "FoodTreatment[Satiated]"), "Nest",
  list(list(name = "alpha", part = "disp", how = "exp")))
fits$cbpp_betabinomial <- fit_pair("cbpp_betabinomial",
  cbind(incidence, size - incidence) ~ period + (1 | herd), cbind(incidence, size - incidence) ~ period,
  cbpp, betabinomial, ~0, "p(incidence, size) ~ period + (1 | herd)", "p(incidence, size) ~ period",
  "beta_binomial", "cbpp",
  c("(Intercept)" = "Intercept", period2 = "period[2]", period3 = "period[3]", period4 = "period[4]"), "herd",
  list(list(name = "phi", part = "disp", how = "exp")))
fits$sim_gamma <- fit_pair("sim_gamma", y ~ x + (1 | g), y ~ x, sim_gamma, Gamma(link = "log"), ~0,
  "y ~ x + (1 | g)", "y ~ x", "gamma", "tests/reference/glmmtmb_sim_gamma.csv",
  c("(Intercept)" = "Intercept", x = "x"), "g", list(list(name = "shape", part = "disp", how = "shape")))
fits$sim_gamma$truth <- truth$sim_gamma
fits$sim_beta <- fit_pair("sim_beta", y ~ x + (1 | g), y ~ x, sim_beta, beta_family(link = "logit"), ~0,
  "y ~ x + (1 | g)", "y ~ x", "beta", "tests/reference/glmmtmb_sim_beta.csv",
  c("(Intercept)" = "Intercept", x = "x"), "g", list(list(name = "phi", part = "disp", how = "exp")))
fits$sim_beta$truth <- truth$sim_beta

# lognormal: lmer on log(Reaction), ML
lm1 <- lmer(log(Reaction) ~ Days + (1 | Subject), data = sleep, REML = FALSE)
lm0 <- lm(log(Reaction) ~ Days, data = sleep)
jac <- -sum(log(sleep$Reaction))
nm_sl <- c("(Intercept)" = "Intercept", Days = "Days")
vc <- as.data.frame(VarCorr(lm1))
co <- summary(lm1)$coefficients
sig0 <- sqrt(mean(residuals(lm0)^2))  # the ML sigma of the lm
fits$sleepstudy_lognormal <- list(
  data = "sleepstudy", hmodels_formula = "Reaction ~ Days + (1 | Subject)", hmodels_family = "lognormal",
  call = "lmer(log(Reaction) ~ Days + (1 | Subject), data = sleepstudy, REML = FALSE)",
  fixed = fixed_table(co[, 1], co[, 2], nm_sl),
  sd = list(list(group = "Subject", term = "(Intercept)", hmodels_term = "sd(Subject, Intercept)",
                 estimate = vc$sdcor[vc$grp == "Subject"],
                 profile_ci95 = unname(confint(lm1, parm = 1, method = "profile", oldNames = FALSE)[1, ]))),
  family_params = list(sigma = list(name = "sigma", estimate = sigma(lm1),
                                    conversion = "sigma(lmer fit): residual SD of log(Reaction)")),
  logLik = as.numeric(logLik(lm1)) + jac, logLik_lmer_log_scale = as.numeric(logLik(lm1)),
  df = attr(logLik(lm1), "df"), nobs = nobs(lm1), converged = TRUE,
  glm = list(hmodels_formula = "Reaction ~ Days", hmodels_family = "lognormal",
             fixed = fixed_table(coef(lm0), sqrt(diag(vcov(lm0))), nm_sl),
             family_params = list(sigma = list(name = "sigma", estimate = sig0,
                                               conversion = "ML residual SD of lm(log(Reaction) ~ Days)")),
             logLik = as.numeric(logLik(lm0)) + jac, df = 3, nobs = nrow(sleep))
)

# exponential and weibull: survreg on the uncensored lung-cancer deaths (no group term: glmmTMB 1.1.5 has neither
# family, and survreg has no ML random effects). Reference for fixed effects and the weibull shape only.
sr_summary <- function(fit, hm_family) {
  b <- coef(fit)
  V <- vcov(fit)
  se <- sqrt(diag(V))[seq_along(b)]
  s <- fit$scale
  nm <- c("(Intercept)" = "Intercept", age = "age", sex = "sex")
  shift <- if (hm_family == "weibull") lgamma(1 + s) else 0
  est <- b
  est[1] <- est[1] + shift
  params <- list()
  if (hm_family == "weibull") {
    ls <- log(s); ls_se <- sqrt(V["Log(scale)", "Log(scale)"])
    params$shape <- list(name = "shape", estimate = 1 / s, se = ls_se / s, link_estimate = -ls, link_se = ls_se,
                         conversion = "shape = 1 / survreg scale")
    # SE of the shifted intercept: d/dlog(s) lgamma(1 + s) = s digamma(1 + s)
    g <- c(1, rep(0, length(b) - 1), s * digamma(1 + s))
    Vfull <- V[c(names(b), "Log(scale)"), c(names(b), "Log(scale)")]
    se[1] <- sqrt(drop(t(g) %*% Vfull %*% g))
  }
  ll <- logLik(fit)
  list(data = "tests/reference/survreg_lung_deaths.csv",
       source = "survival::lung, deaths only (status == 2; columns time, age, sex)",
       hmodels_formula = "time ~ age + sex", hmodels_family = hm_family,
       call = paste(deparse(fit$call, width.cutoff = 500), collapse = ""),
       intercept_conversion = if (hm_family == "weibull") "hmodels Intercept = (Intercept) + lgamma(1 + scale)" else
         "none (exponential: mean = exp(X b))",
       fixed = fixed_table(est, se, nm), sd = list(), family_params = params,
       logLik = as.numeric(ll), df = attr(ll, "df"), nobs = nrow(lung2), converged = TRUE)
}
write.csv(lung2, file.path(ref_dir, "survreg_lung_deaths.csv"), row.names = FALSE)
fits$lung_exponential <- sr_summary(survreg(Surv(time) ~ age + sex, data = lung2, dist = "exponential"),
                                    "exponential")
fits$lung_weibull <- sr_summary(survreg(Surv(time) ~ age + sex, data = lung2, dist = "weibull"), "weibull")

out <- list(
  about = paste0(
    "Maximum-likelihood reference fits made by tests/reference/glmmtmb_families.R with ", R.version.string,
    ", glmmTMB ", packageVersion("glmmTMB"), ", TMB ", packageVersion("TMB"), ", lme4 ", packageVersion("lme4"),
    ", survival ", packageVersion("survival"), " on ", format(Sys.Date()), ". Family parameters are in hmodels' ",
    "parameterisation (see each 'conversion'); 'se' of a family parameter is the delta-method SE from glmmTMB's ",
    "link-scale SE. Group SDs carry the SE of log(SD). 'glm' is the same model without its group term."),
  versions = list(R = R.version.string, glmmTMB = format(packageVersion("glmmTMB")),
                  TMB = format(packageVersion("TMB")), lme4 = format(packageVersion("lme4")),
                  survival = format(packageVersion("survival"))),
  fits = fits
)
writeLines(toJSON(out, auto_unbox = TRUE, digits = 15, pretty = TRUE, null = "null", na = "null"),
           file.path(ref_dir, "glmmtmb_families.json"))
cat("wrote", file.path(ref_dir, "glmmtmb_families.json"), "\n")

# Reference fits for censored outcomes (hmodels' cens()): survival::survreg maximum likelihood on the
# NCCTG lung cancer data (survival::lung; status 1 = censored, 2 = dead), converted to hmodels'
# parameterisations. Run: Rscript tests/reference/survreg_censored.R (from the repository root).
#
# * weibull: survreg's log T = b0 + x'b + s * e (e standard minimum extreme value) is a Weibull with
#   shape k = 1/s and scale exp(b0 + x'b); hmodels' weibull has mean mu = exp(eta) = scale * Gamma(1 + 1/k),
#   so its Intercept is b0 + lgamma(1 + 1/k), its slopes are survreg's, its shape is 1/s.
# * exponential: the same coefficients (mean exp(eta) in both).
# * lognormal: log T ~ N(b0 + x'b, s): hmodels' lognormal with mu = eta and sigma = s.
# Standard errors of the converted intercept and shape come from survreg's covariance by the delta method.
suppressPackageStartupMessages({library(survival); library(jsonlite)})
d <- lung[complete.cases(lung[, c("time", "status", "age", "sex")]), c("time", "status", "age", "sex")]
d$censored <- as.integer(d$status == 1)
write.csv(d[, c("time", "censored", "age", "sex")], "tests/reference/lung.csv", row.names = FALSE)
out <- list(source = "survival::lung (NCCTG Lung Cancer Data), complete cases of time, status, age, sex",
            R = R.version.string, survival = as.character(packageVersion("survival")),
            n = nrow(d), n_censored = sum(d$censored), fits = list())
for (dist in c("weibull", "exponential", "lognormal")) {
  f <- survreg(Surv(time, status == 2) ~ age + sex, data = d, dist = dist)
  b <- coef(f); V <- vcov(f)
  fixed <- list(age = list(estimate = unname(b["age"]), se = sqrt(V["age", "age"])),
                sex = list(estimate = unname(b["sex"]), se = sqrt(V["sex", "sex"])))
  aux <- setNames(list(), character(0))  # {} in JSON when the family has no parameter
  if (dist == "weibull") {
    s <- f$scale; k <- 1 / s
    # d/d b0 of b0 + lgamma(1 + s) is 1; d/d log(s) is s * digamma(1 + s)
    g <- c(1, 0, 0, s * digamma(1 + s))
    fixed$Intercept <- list(estimate = unname(b[1] + lgamma(1 + s)), se = sqrt(drop(t(g) %*% V %*% g)))
    aux$shape <- list(estimate = k, se = k * sqrt(V["Log(scale)", "Log(scale)"]))
  } else {
    fixed$Intercept <- list(estimate = unname(b[1]), se = sqrt(V[1, 1]))
    if (dist == "lognormal") aux$sigma <- list(estimate = f$scale, se = f$scale * sqrt(V["Log(scale)", "Log(scale)"]))
  }
  out$fits[[dist]] <- list(call = sprintf("survreg(Surv(time, status == 2) ~ age + sex, data = lung, dist = '%s')", dist),
                           hmodels = sprintf("time | cens(censored) ~ age + sex, family = '%s'", dist),
                           fixed = fixed, aux = aux, logLik = as.numeric(logLik(f)))
}
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "tests/reference/survreg_censored.json")

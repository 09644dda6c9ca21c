# ordinal::clmm reference fits of the wine data (cumulative logit and probit with a judge intercept).
#
# Run from the repository root:  Rscript tests/reference/ordinal_clmm.R
# Writes hmodels/datasets/data/wine.csv (ordinal's wine, bundled) and tests/reference/ordinal_clmm.json, fitting
# the CSV it wrote so that R and hmodels fit identical data. R never runs in the tests.
# Made with R 4.2.2 and ordinal 2022.11-16 (Debian bookworm: r-cran-ordinal).
#
# Parameterisation: clmm's  logit P(Y <= j) = theta_j - eta  (eta = X b + judge effect), the same as brms's
# cumulative family and hmodels' "cumulative": thresholds theta_1 < ... < theta_4 are brms's Intercept[1..4];
# coefficients b have the same sign; the judge SD is the SD of the judge intercepts on the latent scale.

suppressPackageStartupMessages({
  library(ordinal)
  library(jsonlite)
})

w <- ordinal::wine
write.csv(data.frame(response = w$response, rating = as.integer(as.character(w$rating)),
                     temp = as.character(w$temp), contact = as.character(w$contact),
                     bottle = as.character(w$bottle), judge = as.character(w$judge)),
          "hmodels/datasets/data/wine.csv", row.names = FALSE)
wine <- read.csv("hmodels/datasets/data/wine.csv")
wine$rating <- factor(wine$rating, levels = 1:5, ordered = TRUE)
wine$temp <- factor(wine$temp, levels = c("cold", "warm"))
wine$contact <- factor(wine$contact, levels = c("no", "yes"))
wine$judge <- factor(wine$judge)

summarise <- function(fit, link) {
  co <- summary(fit)$coefficients
  V <- vcov(fit)
  alpha <- names(fit$alpha)
  beta <- names(fit$beta)
  hm_names <- c(setNames(sprintf("Intercept[%d]", seq_along(alpha)), alpha),
                tempwarm = "temp[warm]", contactyes = "contact[yes]")
  rows <- lapply(c(alpha, beta), function(n) {
    list(term = n, hmodels_term = unname(hm_names[n]), estimate = co[n, "Estimate"], se = co[n, "Std. Error"])
  })
  # judge SD: fit$ST holds it directly; its SE from the Hessian of log(SD) (the last parameter of vcov)
  log_sd_se <- sqrt(V[nrow(V), ncol(V)])
  ll <- logLik(fit)
  list(
    link = link,
    hmodels_formula = "rating ~ temp + contact + (1 | judge)",
    hmodels_family = "cumulative",
    call = paste(deparse(fit$call, width.cutoff = 500), collapse = ""),
    thresholds = rows[seq_along(alpha)],
    fixed = rows[-seq_along(alpha)],
    sd = list(list(group = "judge", term = "(Intercept)", hmodels_term = "sd(judge, Intercept)",
                   estimate = unname(fit$ST$judge[1, 1]), log_sd_estimate = log(unname(fit$ST$judge[1, 1])),
                   log_sd_se = log_sd_se,
                   wald_log_ci95 = exp(log(unname(fit$ST$judge[1, 1])) + c(-1, 1) * qnorm(0.975) * log_sd_se))),
    logLik = as.numeric(ll), df = attr(ll, "df"), nobs = nrow(wine),
    converged = fit$optRes$convergence == 0, max_abs_gradient = max(abs(fit$gradient)),
    settings = "clmm defaults: Laplace approximation (nAGQ = 1), nlminb"
  )
}

fits <- list(
  wine_logit = summarise(clmm(rating ~ temp + contact + (1 | judge), data = wine, link = "logit"), "logit"),
  wine_probit = summarise(clmm(rating ~ temp + contact + (1 | judge), data = wine, link = "probit"), "probit")
)
out <- list(
  about = paste0("ordinal::clmm fits made by tests/reference/ordinal_clmm.R with ", R.version.string, ", ordinal ",
                 packageVersion("ordinal"), " on ", format(Sys.Date()), ". clmm: logit/probit P(Y <= j) = ",
                 "theta_j - eta; thresholds are brms's / hmodels' Intercept[j]. 'sd' carries the SE of log(SD) ",
                 "(clmm's vcov) and the Wald 95% interval on the log scale (ordinal 2022.11 has no profile method for clmm)."),
  versions = list(R = R.version.string, ordinal = format(packageVersion("ordinal"))),
  data = "wine (hmodels bundled; ordinal::wine, Randall 1989)",
  fits = fits
)
writeLines(toJSON(out, auto_unbox = TRUE, digits = 15, pretty = TRUE, null = "null", na = "null"),
           "tests/reference/ordinal_clmm.json")
cat("wrote tests/reference/ordinal_clmm.json\n")

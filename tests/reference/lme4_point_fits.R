# lme4 point fits (REML, ML, Laplace) of the bundled datasets: the reference for hmodels' model.optimize().
#
# Run from the repository root:  Rscript tests/reference/lme4_point_fits.R
# Writes tests/reference/lme4_point_fits.json (read by tests/test_studies_pointfit.py; R never runs in tests).
# Reads the same CSV files hmodels bundles (hmodels/datasets/data/), so both fit identical data.
# Made with R 4.2.2 and lme4 1.1-31 (Debian bookworm packages r-base-core, r-cran-lme4, r-cran-jsonlite).

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

data_dir <- "hmodels/datasets/data"
read <- function(name) read.csv(file.path(data_dir, paste0(name, ".csv")), stringsAsFactors = TRUE)

sleepstudy <- read("sleepstudy")
sleepstudy$Subject <- factor(sleepstudy$Subject)
penicillin <- read("penicillin")
pastes <- read("pastes")
dyestuff <- read("dyestuff")
orthodont <- read("orthodont")
orthodont$Subject <- factor(orthodont$Subject)
cbpp <- read("cbpp")
cbpp$herd <- factor(cbpp$herd)
cbpp$period <- factor(cbpp$period)

summarise <- function(fit, hm_formula) {
  vc <- as.data.frame(VarCorr(fit))
  sds <- list()
  cors <- list()
  sigma <- NULL
  for (i in seq_len(nrow(vc))) {
    r <- vc[i, ]
    grp <- as.character(r$grp)
    if (grp == "Residual") {
      sigma <- r$sdcor
    } else if (is.na(r$var2)) {
      # lme4 names uncorrelated terms of one factor "Subject", "Subject.1", ...
      sds[[length(sds) + 1]] <- list(group = sub("\\.[0-9]+$", "", grp), term = as.character(r$var1), sd = r$sdcor)
    } else {
      cors[[length(cors) + 1]] <- list(group = sub("\\.[0-9]+$", "", grp), term1 = as.character(r$var1),
                                       term2 = as.character(r$var2), cor = r$sdcor)
    }
  }
  co <- summary(fit)$coefficients
  fixed <- lapply(seq_len(nrow(co)), function(i) list(term = rownames(co)[i], estimate = co[i, 1], se = co[i, 2]))
  ll <- logLik(fit)
  list(
    hmodels_formula = hm_formula,
    lme4_formula = paste(deparse(formula(fit)), collapse = ""),
    reml = isREML(fit),
    fixed = fixed,
    sd = sds,
    cor = cors,
    sigma = if (is.null(sigma)) NA else sigma,
    theta = unname(getME(fit, "theta")),
    logLik = as.numeric(ll),
    df = attr(ll, "df"),
    AIC = AIC(fit),
    BIC = BIC(fit),
    criterion = unname(if (isREML(fit)) fit@devcomp$cmp["REML"] else deviance(fit)),
    singular = isSingular(fit),
    nobs = nobs(fit),
    optimizer_messages = fit@optinfo$conv$lme4$messages
  )
}

out <- list(
  about = paste("lme4 point fits made by tests/reference/lme4_point_fits.R with", R.version.string,
                "and lme4", as.character(packageVersion("lme4")), "(default optimizer settings)."),
  fits = list()
)

lmm <- list(
  sleepstudy = list(data = sleepstudy, f = Reaction ~ Days + (Days | Subject),
                    hm = "Reaction ~ Days + (Days | Subject)"),
  sleepstudy_uncorrelated = list(data = sleepstudy, f = Reaction ~ Days + (Days || Subject),
                                 hm = "Reaction ~ Days + (Days || Subject)"),
  penicillin = list(data = penicillin, f = diameter ~ 1 + (1 | plate) + (1 | sample),
                    hm = "diameter ~ 1 + (1 | plate) + (1 | sample)"),
  pastes = list(data = pastes, f = strength ~ 1 + (1 | batch / cask), hm = "strength ~ 1 + (1 | batch/cask)"),
  dyestuff = list(data = dyestuff, f = Yield ~ 1 + (1 | Batch), hm = "Yield ~ 1 + (1 | Batch)"),
  orthodont = list(data = orthodont, f = distance ~ age * Sex + (age | Subject),
                   hm = "distance ~ age * Sex + (age | Subject)")
)
# "_tight": the same fits with the optimiser (and, for glmer, the inner PIRLS) run to much tighter
# tolerances. lme4's defaults stop early on orthodont (REML) and cbpp: the tight fits reach a higher
# (restricted) likelihood, and are the reference for the 1e-4 agreement of hmodels' point fits.
tight_lmer <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10, maxfun = 1e5))
tight_glmer <- glmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10, maxfun = 1e5), tolPwrss = 1e-12)
for (name in names(lmm)) {
  m <- lmm[[name]]
  for (reml in c(TRUE, FALSE)) {
    key <- paste0(name, if (reml) "_REML" else "_ML")
    fit <- lmer(m$f, data = m$data, REML = reml)
    out$fits[[key]] <- summarise(fit, m$hm)
    fit <- lmer(m$f, data = m$data, REML = reml, control = tight_lmer)
    out$fits[[paste0(key, "_tight")]] <- summarise(fit, m$hm)
  }
}

glmms <- list(
  cbpp_Laplace = list(f = cbind(incidence, size - incidence) ~ period + (1 | herd), family = binomial,
                      hm = "p(incidence, size) ~ period + (1 | herd)", hm_family = "binomial"),
  cbpp_poisson_Laplace = list(f = incidence ~ period + (1 | herd), family = poisson,
                              hm = "incidence ~ period + (1 | herd)", hm_family = "poisson")
)
for (name in names(glmms)) {
  m <- glmms[[name]]
  fit <- glmer(m$f, data = cbpp, family = m$family)
  out$fits[[name]] <- c(summarise(fit, m$hm), family = m$hm_family)
  fit <- glmer(m$f, data = cbpp, family = m$family, control = tight_glmer)
  out$fits[[paste0(name, "_tight")]] <- c(summarise(fit, m$hm), family = m$hm_family)
}

writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null", na = "null"),
           "tests/reference/lme4_point_fits.json")
cat("wrote tests/reference/lme4_point_fits.json\n")

# Satterthwaite degrees of freedom of the fixed effects (lmerTest), the reference for hmodels' REML / ML point fits.
#
# Run from the repository root:  Rscript tests/reference/lmertest_satterthwaite.R
# Writes tests/reference/lmertest_satterthwaite.json (read by tests/test_studies_pointfit.py; R never runs in tests).
# Reads the CSV files hmodels bundles (hmodels/datasets/data/). The fits use tight optimiser tolerances, so that
# both programs are at the same optimum (the degrees of freedom depend on it through the Hessian).
# Made with R 4.2.2, lme4 and lmerTest (Debian bookworm packages r-cran-lme4, r-cran-lmertest, r-cran-jsonlite).

suppressPackageStartupMessages({
  library(lmerTest)
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

tight <- lmerControl(optimizer = "bobyqa", optCtrl = list(rhoend = 1e-10, maxfun = 1e5))
models <- list(
  sleepstudy = list(data = sleepstudy, f = Reaction ~ Days + (Days | Subject),
                    hm = "Reaction ~ Days + (Days | Subject)", dataset = "sleepstudy"),
  sleepstudy_uncorrelated = list(data = sleepstudy, f = Reaction ~ Days + (Days || Subject),
                                 hm = "Reaction ~ Days + (Days || Subject)", dataset = "sleepstudy"),
  penicillin = list(data = penicillin, f = diameter ~ 1 + (1 | plate) + (1 | sample),
                    hm = "diameter ~ 1 + (1 | plate) + (1 | sample)", dataset = "penicillin"),
  pastes = list(data = pastes, f = strength ~ 1 + (1 | batch / cask), hm = "strength ~ 1 + (1 | batch/cask)",
                dataset = "pastes"),
  dyestuff = list(data = dyestuff, f = Yield ~ 1 + (1 | Batch), hm = "Yield ~ 1 + (1 | Batch)", dataset = "dyestuff"),
  orthodont = list(data = orthodont, f = distance ~ age * Sex + (age | Subject),
                   hm = "distance ~ age * Sex + (age | Subject)", dataset = "orthodont")
)

out <- list(
  about = paste("Satterthwaite degrees of freedom made by tests/reference/lmertest_satterthwaite.R with",
                R.version.string, ", lme4", as.character(packageVersion("lme4")), "and lmerTest",
                as.character(packageVersion("lmerTest")), "(bobyqa, rhoend = 1e-10)."),
  fits = list()
)
for (name in names(models)) {
  m <- models[[name]]
  for (reml in c(TRUE, FALSE)) {
    fit <- lmer(m$f, data = m$data, REML = reml, control = tight)
    co <- summary(fit, ddf = "Satterthwaite")$coefficients
    fixed <- lapply(seq_len(nrow(co)), function(i) list(term = rownames(co)[i], estimate = co[i, "Estimate"],
                                                         se = co[i, "Std. Error"], df = co[i, "df"],
                                                         t = co[i, "t value"], p = co[i, "Pr(>|t|)"]))
    out$fits[[paste0(name, if (reml) "_REML" else "_ML")]] <- list(hmodels_formula = m$hm, dataset = m$dataset,
                                                                  reml = reml, fixed = fixed)
  }
}

writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null", na = "null"),
           "tests/reference/lmertest_satterthwaite.json")
cat("wrote tests/reference/lmertest_satterthwaite.json\n")

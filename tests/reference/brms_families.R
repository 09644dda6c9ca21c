# brms reference posteriors of four families with stated priors, identical to the hmodels priors in
# tests/test_reference_brms_families.py (issue 12: "brms fits with identical priors", |delta mean| <= 0.1 posterior SD).
#
# Run from the repository root:  Rscript tests/reference/brms_families.R [gamma beta zip cumulative]
# (no arguments: all four). Writes tests/reference/brms_families.json after each model (a model named on the command
# line replaces its entry; the others are kept). R never runs in the tests.
# Made with R 4.2.2, brms 2.18.0, rstan 2.21 (Debian bookworm: r-cran-brms).
#
# Data: the simulated gamma / beta CSVs next to this script (written by glmmtmb_families.R) and hmodels' bundled
# salamanders.csv and wine.csv (hm.datasets.load returns exactly these rows), so both programs fit identical data.
#
# Each model: 4 chains x (1000 warm-up + 2000 kept draws), seed 1, adapt_delta 0.95, chains one after another
# (cores = 1) on a shared 2-core machine. The Stan program is compiled once (rstan::stan_model on brms's
# make_stancode; compile_s) and sampled once (rstan::sampling on make_standata; sampling_s); the stanfit is put into
# an empty brmsfit (brm(empty = TRUE), rename_pars) so that the summaries carry brms's names.
#
# Priors and parameterisations (each the same density as hmodels'; see "parameterisation" in each entry):
#   class b        normal(0, 1)             = hmodels "fixed": hm.Normal(0, 1)
#   class Intercept student_t(3, 0, 2.5)    = hmodels "Intercept": hm.StudentT(3, 0, 2.5). brms puts it on the
#                   intercept of the mean-centred design (Intercept = b_Intercept + means(X) . b), hmodels' default
#                   intercept_prior="centered" on the intercept at the predictors' means: the same parameter.
#                   Cumulative: on each threshold of the centred design (Stan `ordered`), = hmodels "cutpoints"
#                   (PyMC's ordered transform; the prior on the thresholds at the predictors' means, as brms).
#   class sd       normal(0, 1), lb 0       = hmodels "sd": hm.HalfNormal(1) (the truncation constant is constant)
#   gamma shape    gamma(2, 0.1) (shape, rate) = hm.Gamma(2, 0.1) (alpha shape, beta rate); both families are
#                   y ~ Gamma(shape, rate = shape / mu), mu = exp(eta)
#   beta phi       gamma(2, 0.1)            = hm.Gamma(2, 0.1); both y ~ Beta(mu phi, (1 - mu) phi), mu = logit^-1(eta)
#   zip zi         beta(1, 1)               = hm.Beta(1, 1); both zi = P(structural zero):
#                   P(0) = zi + (1 - zi) exp(-mu), P(k > 0) = (1 - zi) Poisson(k | mu), mu = exp(eta)
# brms reports b_Intercept (cumulative: b_Intercept[k]) at predictor value 0, hmodels Intercept / Intercept[k] too.

suppressPackageStartupMessages({
  library(brms)
  library(rstan)
  library(posterior)
  library(jsonlite)
})

data_dir <- "hmodels/datasets/data"
ref_dir <- "tests/reference"
out_path <- file.path(ref_dir, "brms_families.json")

BOOST <- if (nzchar(system.file("include", package = "BH"))) system.file("include", package = "BH") else "/usr/include"
CHAINS <- 4
WARMUP <- 1000
DRAWS <- 2000
SEED <- 1
ADAPT_DELTA <- 0.95
KEEP <- "^(b_|sd_|shape$|phi$|zi$)"

sim_gamma <- read.csv(file.path(ref_dir, "glmmtmb_sim_gamma.csv"))
sim_gamma$g <- factor(sim_gamma$g)
sim_beta <- read.csv(file.path(ref_dir, "glmmtmb_sim_beta.csv"))
sim_beta$g <- factor(sim_beta$g)
sal <- read.csv(file.path(data_dir, "salamanders.csv"))
sal$mined <- factor(sal$mined, levels = c("no", "yes"))  # hmodels' level order: the coefficient is minedyes
sal$site <- factor(sal$site)
wine <- read.csv(file.path(data_dir, "wine.csv"))
wine$rating <- factor(wine$rating, levels = 1:5, ordered = TRUE)
wine$temp <- factor(wine$temp, levels = c("cold", "warm"))
wine$contact <- factor(wine$contact, levels = c("no", "yes"))
wine$judge <- factor(wine$judge)

p_common <- c(prior(normal(0, 1), class = "b"),
              prior(student_t(3, 0, 2.5), class = "Intercept"),
              prior(normal(0, 1), class = "sd", lb = 0))

run <- function(formula, data, family, prior, hm) {
  code <- make_stancode(formula, data = data, family = family, prior = prior)
  sdata <- make_standata(formula, data = data, family = family, prior = prior)
  load_start <- readLines("/proc/loadavg")
  t_compile <- system.time(sm <- rstan::stan_model(model_code = code, boost_lib = BOOST))[["elapsed"]]
  t_sample <- system.time(
    sf <- rstan::sampling(sm, data = sdata, chains = CHAINS, iter = WARMUP + DRAWS, warmup = WARMUP, seed = SEED,
                          cores = 1, refresh = 0, control = list(adapt_delta = ADAPT_DELTA))
  )[["elapsed"]]
  fit <- brm(formula, data = data, family = family, prior = prior, empty = TRUE)
  fit$fit <- sf
  fit <- rename_pars(fit)
  dr <- as_draws_df(fit)
  keep <- grep(KEEP, variables(dr), value = TRUE)
  summ <- as.data.frame(summarise_draws(subset_draws(dr, variable = keep), "mean", "sd", "median",
                                        ~quantile(.x, probs = c(0.025, 0.975)), "rhat", "ess_bulk", "ess_tail",
                                        "mcse_mean"))
  el <- rstan::get_elapsed_time(sf)
  sp <- rstan::get_sampler_params(sf, inc_warmup = FALSE)
  list(
    data = hm$data,
    hmodels_formula = hm$formula,
    hmodels_family = hm$family,
    hmodels_priors = hm$priors,
    parameterisation = hm$parameterisation,
    brms_formula = paste(capture.output(print(formula)), collapse = "\n"),
    brms_family = paste(capture.output(print(family)), collapse = "\n"),
    brms_priors = lapply(seq_len(nrow(prior)), function(i) {
      list(prior = prior$prior[i], class = prior$class[i], coef = prior$coef[i], lb = prior$lb[i])
    }),
    names = hm$names,
    settings = list(chains = CHAINS, warmup = WARMUP, draws_per_chain = DRAWS, seed = SEED, cores = 1,
                    adapt_delta = ADAPT_DELTA, max_treedepth = 10, init = "random inits in (-2, 2)"),
    posterior = lapply(split(summ, seq_len(nrow(summ))), function(r) as.list(r)),
    compile_s = t_compile,
    sampling_s = t_sample,
    stan_elapsed_per_chain = list(warmup_s = unname(el[, "warmup"]), sampling_s = unname(el[, "sample"])),
    load_average_at_start = load_start,
    divergences = sum(sapply(sp, function(x) sum(x[, "divergent__"]))),
    max_treedepth_hits = sum(sapply(sp, function(x) sum(x[, "treedepth__"] >= 10))),
    max_rhat = max(summ$rhat), min_ess_bulk = min(summ$ess_bulk), min_ess_tail = min(summ$ess_tail),
    stan_code = code
  )
}

MODELS <- list(
  gamma = function() run(
    bf(y ~ x + (1 | g)), sim_gamma, Gamma(link = "log"),
    c(p_common, prior(gamma(2, 0.1), class = "shape")),
    list(data = "tests/reference/glmmtmb_sim_gamma.csv", formula = "y ~ x + (1 | g)", family = "gamma",
         priors = paste("Intercept StudentT(3, 0, 2.5) (centred), fixed Normal(0, 1), sd HalfNormal(1),",
                        "shape Gamma(2, 0.1)"),
         parameterisation = paste("brms Gamma(link = 'log'): y ~ Gamma(shape, shape / mu); hmodels gamma: the same",
                                  "(shape = glmmTMB 1 / sigma^2). No conversion."),
         names = list(b_Intercept = "Intercept", b_x = "x", sd_g__Intercept = "sd(g, Intercept)",
                      shape = "shape"))),
  beta = function() run(
    bf(y ~ x + (1 | g)), sim_beta, Beta(link = "logit"),
    c(p_common, prior(gamma(2, 0.1), class = "phi")),
    list(data = "tests/reference/glmmtmb_sim_beta.csv", formula = "y ~ x + (1 | g)", family = "beta",
         priors = paste("Intercept StudentT(3, 0, 2.5) (centred), fixed Normal(0, 1), sd HalfNormal(1),",
                        "phi Gamma(2, 0.1)"),
         parameterisation = paste("brms Beta(link = 'logit'): y ~ Beta(mu phi, (1 - mu) phi); hmodels beta: the",
                                  "same precision phi. No conversion."),
         names = list(b_Intercept = "Intercept", b_x = "x", sd_g__Intercept = "sd(g, Intercept)", phi = "phi"))),
  zip = function() run(
    bf(count ~ mined + (1 | site)), sal, zero_inflated_poisson(),
    c(p_common, prior(beta(1, 1), class = "zi")),
    list(data = "salamanders", formula = "count ~ mined + (1 | site)", family = "zero_inflated_poisson",
         priors = paste("Intercept StudentT(3, 0, 2.5) (centred), fixed Normal(0, 1), sd HalfNormal(1),",
                        "zi Beta(1, 1)"),
         parameterisation = paste("brms zero_inflated_poisson, zi a scalar in (0, 1) (no zi formula: zi is",
                                  "sampled on the probability scale, as in hmodels) = P(structural zero); hmodels",
                                  "zi the same. No conversion."),
         names = list(b_Intercept = "Intercept", b_minedyes = "mined[yes]",
                      sd_site__Intercept = "sd(site, Intercept)", zi = "zi"))),
  cumulative = function() run(
    bf(rating ~ temp + contact + (1 | judge)), wine, cumulative(link = "logit"),
    p_common,
    list(data = "wine", formula = "rating ~ temp + contact + (1 | judge)", family = "cumulative",
         priors = paste("cutpoints StudentT(3, 0, 2.5) on each threshold of the centred design (brms class",
                        "Intercept), fixed Normal(0, 1), sd HalfNormal(1)"),
         parameterisation = paste("brms cumulative('logit'): P(y <= k) = logistic(Intercept[k] - eta), thresholds",
                                  "of the centred design carry the prior; b_Intercept[k] = Intercept[k] +",
                                  "means(X) . b is reported at predictor value 0; hmodels cumulative: the same",
                                  "(cutpoints_centered carry the prior, Intercept[k] reported). disc = 1 fixed."),
         names = list(`b_Intercept[1]` = "Intercept[1]", `b_Intercept[2]` = "Intercept[2]",
                      `b_Intercept[3]` = "Intercept[3]", `b_Intercept[4]` = "Intercept[4]",
                      b_tempwarm = "temp[warm]", b_contactyes = "contact[yes]",
                      sd_judge__Intercept = "sd(judge, Intercept)")))
)

args <- commandArgs(trailingOnly = TRUE)
todo <- if (length(args)) args else names(MODELS)
stopifnot(all(todo %in% names(MODELS)))
fits <- if (file.exists(out_path)) fromJSON(out_path, simplifyVector = FALSE)$fits else list()
for (key in todo) {
  message("fitting ", key)
  fits[[key]] <- MODELS[[key]]()
  fits <- fits[intersect(names(MODELS), names(fits))]
  out <- list(
    about = paste0("brms posteriors made by tests/reference/brms_families.R with ", R.version.string, ", brms ",
                   packageVersion("brms"), ", rstan ", packageVersion("rstan"), ", StanHeaders ",
                   packageVersion("StanHeaders"), "; each fit's date and load average in its entry (2 shared cores: ",
                   "times are indicative)."),
    versions = list(R = R.version.string, brms = format(packageVersion("brms")),
                    rstan = format(packageVersion("rstan")), StanHeaders = format(packageVersion("StanHeaders")),
                    posterior = format(packageVersion("posterior"))),
    fits = fits
  )
  out$fits[[key]]$date <- format(Sys.time(), tz = "UTC", usetz = TRUE)
  fits[[key]]$date <- out$fits[[key]]$date
  writeLines(toJSON(out, auto_unbox = TRUE, digits = 15, pretty = TRUE, null = "null", na = "null"), out_path)
  message("wrote ", out_path, " (", key, ")")
}

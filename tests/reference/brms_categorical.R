# brms reference posterior of a categorical (multinomial-logit) mixed model with stated priors, identical to the
# hmodels priors in tests/test_reference_brms_categorical.py (issue 12: "brms fits with identical priors",
# |delta mean| <= 0.1 posterior SD), as brms_families.R does for four other families.
#
# Run from the repository root:  Rscript tests/reference/brms_categorical.R
# Writes tests/reference/brms_categorical.csv (the data) and tests/reference/brms_categorical.json (same layout as
# brms_families.json: about, versions, fits$categorical). R never runs in the tests.
# Made with R 4.2.2, brms 2.18.0, rstan 2.21 (Debian bookworm: r-cran-brms).
#
# Data: lme4's VerbAgg (verbal aggression questionnaire, De Boeck & Wilson 2004): 316 persons answered 24 items
# "no" / "perhaps" / "yes". Kept: the 12 "do" items (mode == "do"), 3792 rows. The outcome is modelled as nominal
# (the categorical family; its first category "no" is the reference), with trait anger (Anger, continuous, a
# person's score 11..39), the behaviour type (btype: curse / scold / shout; curse is the reference level) and a
# random intercept per person (id, 316 levels) in each non-reference category's linear predictor.
# The CSV holds exactly the rows fitted (resp as text; hmodels orders the categories alphabetically: no < perhaps
# < yes, the same order as VerbAgg's factor, so both programs use "no" as the reference and name the predictors
# muperhaps / muyes).
#
# Run settings as brms_families.R: 4 chains x (1000 warm-up + 2000 kept draws), seed 1, adapt_delta 0.95, chains one
# after another (cores = 1) on a shared 2-core machine. The Stan program is compiled once (rstan::stan_model on
# brms's make_stancode; compile_s) and sampled once (rstan::sampling on make_standata; sampling_s); the stanfit is put
# into an empty brmsfit (brm(empty = TRUE), rename_pars) so that the summaries carry brms's names.
#
# Priors (set per dpar, muperhaps and muyes alike; the generated Stan code is stored in the JSON, stan_code):
#   class b         normal(0, 1)          = hmodels "fixed": hm.Normal(0, 1), copied to every category
#   class Intercept student_t(3, 0, 2.5)  = hmodels "Intercept": hm.StudentT(3, 0, 2.5). brms puts it on each
#                   category's intercept of the mean-centred design (Intercept_mu<k> = b_mu<k>_Intercept +
#                   means(X) . b_mu<k>), hmodels' default intercept_prior="centered" on each category's intercept
#                   at the predictors' means: the same parameter.
#   class sd        normal(0, 1), lb 0    = hmodels "sd": hm.HalfNormal(1) (the truncation constant is constant)
# brms's categorical family: P(y = k) = softmax(0, mu_perhaps, mu_yes)_k, the group effects of the two predictors
# independent (brms's default without an ID in (1 | ID | id)), non-centred; hmodels' categorical: the same.
# brms reports b_mu<k>_Intercept at predictor value 0, hmodels mu<k>_Intercept too. No conversion.

suppressPackageStartupMessages({
  library(brms)
  library(rstan)
  library(posterior)
  library(jsonlite)
  library(lme4)
})

ref_dir <- "tests/reference"
csv_path <- file.path(ref_dir, "brms_categorical.csv")
out_path <- file.path(ref_dir, "brms_categorical.json")

BOOST <- if (nzchar(system.file("include", package = "BH"))) system.file("include", package = "BH") else "/usr/include"
CHAINS <- 4
WARMUP <- 1000
DRAWS <- 2000
SEED <- 1
ADAPT_DELTA <- 0.95
KEEP <- "^(b_|sd_)"

data("VerbAgg", package = "lme4")
va <- VerbAgg[VerbAgg$mode == "do", c("resp", "Anger", "btype", "id")]
va <- data.frame(resp = as.character(va$resp), Anger = va$Anger, btype = as.character(va$btype),
                 id = paste0("p", as.character(va$id)), stringsAsFactors = FALSE)
write.csv(va, csv_path, row.names = FALSE)
d <- read.csv(csv_path)  # fit what the CSV holds
d$resp <- factor(d$resp, levels = c("no", "perhaps", "yes"))
d$btype <- factor(d$btype, levels = c("curse", "scold", "shout"))
d$id <- factor(d$id)

formula <- bf(resp ~ Anger + btype + (1 | id))
family <- categorical(link = "logit")
prior <- c(prior(normal(0, 1), class = "b", dpar = "muperhaps"),
           prior(normal(0, 1), class = "b", dpar = "muyes"),
           prior(student_t(3, 0, 2.5), class = "Intercept", dpar = "muperhaps"),
           prior(student_t(3, 0, 2.5), class = "Intercept", dpar = "muyes"),
           prior(normal(0, 1), class = "sd", dpar = "muperhaps", lb = 0),
           prior(normal(0, 1), class = "sd", dpar = "muyes", lb = 0))

code <- make_stancode(formula, data = d, family = family, prior = prior)
sdata <- make_standata(formula, data = d, family = family, prior = prior)
# the generated code carries exactly these priors, each on its own dpar (checked, not assumed)
for (dp in c("muperhaps", "muyes")) {
  stopifnot(grepl(sprintf("lprior += normal_lpdf(b_%s | 0, 1);", dp), code, fixed = TRUE),
            grepl(sprintf("lprior += student_t_lpdf(Intercept_%s | 3, 0, 2.5);", dp), code, fixed = TRUE))
}
stopifnot(grepl("lprior += normal_lpdf(sd_1 | 0, 1)", code, fixed = TRUE),
          grepl("lprior += normal_lpdf(sd_2 | 0, 1)", code, fixed = TRUE),
          grepl("categorical_logit_lpmf", code, fixed = TRUE))
load_start <- readLines("/proc/loadavg")
t_compile <- system.time(sm <- rstan::stan_model(model_code = code, boost_lib = BOOST))[["elapsed"]]
t_sample <- system.time(
  sf <- rstan::sampling(sm, data = sdata, chains = CHAINS, iter = WARMUP + DRAWS, warmup = WARMUP, seed = SEED,
                        cores = 1, refresh = 0, control = list(adapt_delta = ADAPT_DELTA))
)[["elapsed"]]
fit <- brm(formula, data = d, family = family, prior = prior, empty = TRUE)
fit$fit <- sf
fit <- rename_pars(fit)
dr <- as_draws_df(fit)
keep <- grep(KEEP, variables(dr), value = TRUE)
summ <- as.data.frame(summarise_draws(subset_draws(dr, variable = keep), "mean", "sd", "median",
                                      ~quantile(.x, probs = c(0.025, 0.975)), "rhat", "ess_bulk", "ess_tail",
                                      "mcse_mean"))
el <- rstan::get_elapsed_time(sf)
sp <- rstan::get_sampler_params(sf, inc_warmup = FALSE)

names_map <- list()
for (dp in c("muperhaps", "muyes")) {
  names_map[[sprintf("b_%s_Intercept", dp)]] <- sprintf("%s_Intercept", dp)
  names_map[[sprintf("b_%s_Anger", dp)]] <- sprintf("%s_Anger", dp)
  names_map[[sprintf("b_%s_btypescold", dp)]] <- sprintf("%s_btype[scold]", dp)
  names_map[[sprintf("b_%s_btypeshout", dp)]] <- sprintf("%s_btype[shout]", dp)
  names_map[[sprintf("sd_id__%s_Intercept", dp)]] <- sprintf("sd(id, %s_Intercept)", dp)
}
stopifnot(setequal(summ$variable, names(names_map)))

entry <- list(
  data = "tests/reference/brms_categorical.csv",
  data_source = paste("lme4::VerbAgg (lme4", format(packageVersion("lme4")), "), rows with mode == 'do' (3792),",
                      "columns resp, Anger, btype, id (id written as 'p<id>')"),
  hmodels_formula = "resp ~ Anger + btype + (1 | id)",
  hmodels_family = "categorical",
  hmodels_priors = paste("Intercept StudentT(3, 0, 2.5) (centred, each category), fixed Normal(0, 1),",
                         "sd HalfNormal(1), copied to every category"),
  parameterisation = paste("brms categorical(link = 'logit'): P(y = k) = softmax(0, mu_perhaps, mu_yes)_k, reference",
                           "'no', independent non-centred group effects per dpar, Intercept_mu<k> of the centred",
                           "design carries the prior, b_mu<k>_Intercept reported at predictor value 0; hmodels",
                           "categorical: the same (b_centered carries the prior, mu<k>_Intercept reported).",
                           "No conversion."),
  brms_formula = paste(capture.output(print(formula)), collapse = "\n"),
  brms_family = paste(capture.output(print(family)), collapse = "\n"),
  brms_priors = lapply(seq_len(nrow(prior)), function(i) {
    list(prior = prior$prior[i], class = prior$class[i], coef = prior$coef[i], dpar = prior$dpar[i],
         lb = prior$lb[i])
  }),
  names = names_map,
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
  stan_code = code,
  date = format(Sys.time(), tz = "UTC", usetz = TRUE)
)
out <- list(
  about = paste0("brms posterior made by tests/reference/brms_categorical.R with ", R.version.string, ", brms ",
                 packageVersion("brms"), ", rstan ", packageVersion("rstan"), ", StanHeaders ",
                 packageVersion("StanHeaders"), "; date and load average in the entry (2 shared cores: ",
                 "times are indicative)."),
  versions = list(R = R.version.string, brms = format(packageVersion("brms")),
                  rstan = format(packageVersion("rstan")), StanHeaders = format(packageVersion("StanHeaders")),
                  posterior = format(packageVersion("posterior")), lme4 = format(packageVersion("lme4"))),
  fits = list(categorical = entry)
)
writeLines(toJSON(out, auto_unbox = TRUE, digits = 15, pretty = TRUE, null = "null", na = "null"), out_path)
message("wrote ", out_path)

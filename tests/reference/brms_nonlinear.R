# brms nonlinear reference posteriors (Orange logistic growth, Theoph first-order absorption) with stated priors:
# the reference and the speed comparison of issue 13.
#
# Run from the repository root:  Rscript tests/reference/brms_nonlinear.R
# Writes tests/reference/brms_nonlinear.json. Reads hmodels' bundled orange.csv and theoph.csv, so both programs
# fit identical data. R never runs in the tests.
# Made with R 4.2.2, brms 2.18.0, rstan 2.21 (Debian bookworm: r-cran-brms).
#
# Each model: 4 chains x (1000 warm-up + 2000 kept draws), seed 1, chains run one after another (cores = 1) on a
# shared 2-core machine. The Stan program is compiled once (rstan::stan_model on brms's make_stancode; timed as
# compile_s) and sampled twice (rstan::sampling on make_standata; each timed as sampling_s, with Stan's own
# per-chain warm-up / sampling seconds): brms's default settings (default_settings_run: diagnostics and times
# only) and the reference run (adapt_delta 0.95, Theoph chains started in the main mode; see below), whose
# stanfit is put into an empty brmsfit (brm(empty = TRUE), rename_pars) so that the summaries carry brms's names. brms puts a normal(0, s) prior on an sd or sigma class with its lower
# bound 0: a half-normal.

suppressPackageStartupMessages({
  library(brms)
  library(rstan)
  library(posterior)
  library(jsonlite)
})

data_dir <- "hmodels/datasets/data"
orange <- read.csv(file.path(data_dir, "orange.csv"))
orange$Tree <- factor(orange$Tree)
theoph <- read.csv(file.path(data_dir, "theoph.csv"))
theoph$Subject <- factor(theoph$Subject)

BOOST <- if (nzchar(system.file("include", package = "BH"))) system.file("include", package = "BH") else "/usr/include"
LOADAVG <- readLines("/proc/loadavg")
CHAINS <- 4
WARMUP <- 1000
DRAWS <- 2000
SEED <- 1

diagnostics <- function(sf, t_sample) {
  summ <- as.data.frame(summarise_draws(as_draws_array(as.array(sf)), "rhat", "ess_bulk", "ess_tail"))
  summ <- summ[grepl("^(b_|sd_|sigma)", summ$variable), ]
  el <- rstan::get_elapsed_time(sf)
  sp <- rstan::get_sampler_params(sf, inc_warmup = FALSE)
  list(sampling_s = t_sample,
       stan_elapsed_per_chain = list(warmup_s = unname(el[, "warmup"]), sampling_s = unname(el[, "sample"])),
       divergences = sum(sapply(sp, function(x) sum(x[, "divergent__"]))),
       max_treedepth_hits = sum(sapply(sp, function(x) sum(x[, "treedepth__"] >= 10))),
       max_rhat = max(summ$rhat), min_ess_bulk = min(summ$ess_bulk), min_ess_tail = min(summ$ess_tail),
       min_ess_bulk_per_s = min(summ$ess_bulk) / t_sample,
       chain_means = lapply(seq_len(CHAINS), function(k) {
         m <- colMeans(as.matrix(sf)[seq_len(DRAWS) + (k - 1) * DRAWS, grepl("^(b_|sd_|sigma)", names(sf)),
                                     drop = FALSE])
         as.list(m)
       }))
}

# Two runs of one compiled program: brms's defaults (adapt_delta 0.8, random inits in (-2, 2)), recorded for the
# speed comparison with its diagnostics; and the reference run (adapt_delta 0.95, and `init` where given), whose
# posterior summary is the reference.
run <- function(formula, data, prior, hm_formula, hm_priors, init = "random", init_note = "random inits in (-2, 2)") {
  code <- make_stancode(formula, data = data, prior = prior)
  sdata <- make_standata(formula, data = data, prior = prior)
  # Debian's r-cran-bh ships no headers of its own (it uses libboost-dev's /usr/include/boost), so rstan is told where
  t_compile <- system.time(sm <- rstan::stan_model(model_code = code, boost_lib = BOOST))[["elapsed"]]
  sample <- function(adapt_delta, init) {
    t <- system.time(
      sf <- rstan::sampling(sm, data = sdata, chains = CHAINS, iter = WARMUP + DRAWS, warmup = WARMUP, seed = SEED,
                            cores = 1, refresh = 0, init = init, control = list(adapt_delta = adapt_delta))
    )[["elapsed"]]
    list(sf = sf, t = t)
  }
  dflt <- sample(0.8, "random")
  ref <- sample(0.95, init)
  fit <- brm(formula, data = data, prior = prior, empty = TRUE)
  fit$fit <- ref$sf
  fit <- rename_pars(fit)
  dr <- as_draws_df(fit)
  keep <- grep("^(b_|sd_|sigma$)", variables(dr), value = TRUE)
  summ <- summarise_draws(subset_draws(dr, variable = keep), "mean", "sd", "median",
                          ~quantile(.x, probs = c(0.025, 0.05, 0.25, 0.75, 0.95, 0.975)), "rhat", "ess_bulk",
                          "ess_tail", "mcse_mean")
  summ <- as.data.frame(summ)
  list(
    hmodels_formula = hm_formula,
    hmodels_priors = hm_priors,
    brms_formula = paste(capture.output(print(formula)), collapse = "\n"),
    brms_priors = lapply(seq_len(nrow(prior)), function(i) {
      list(prior = prior$prior[i], class = prior$class[i], nlpar = prior$nlpar[i], lb = prior$lb[i])
    }),
    settings = list(chains = CHAINS, warmup = WARMUP, draws_per_chain = DRAWS, seed = SEED, cores = 1,
                    adapt_delta = 0.95, max_treedepth = 10, init = init_note),
    posterior = lapply(split(summ, seq_len(nrow(summ))), function(r) as.list(r)),
    compile_s = t_compile,
    reference_run = diagnostics(ref$sf, ref$t),
    default_settings_run = c(list(settings = "brms defaults: adapt_delta 0.8, random inits in (-2, 2); same seed"),
                             diagnostics(dflt$sf, dflt$t)),
    stan_code = code
  )
}

f_orange <- bf(circumference ~ Asym / (1 + exp((xmid - age) / scal)),
               Asym ~ 1 + (1 | Tree), xmid ~ 1, scal ~ 1, nl = TRUE)
p_orange <- c(prior(normal(200, 50), nlpar = "Asym"),
              prior(normal(700, 200), nlpar = "xmid"),
              prior(normal(350, 100), nlpar = "scal"),
              prior(normal(0, 50), class = "sd", nlpar = "Asym", lb = 0),
              prior(normal(0, 20), class = "sigma", lb = 0))
orange_fit <- run(f_orange, orange, p_orange,
  "circumference ~ Asym / (1 + exp((xmid - age) / scal)); Asym ~ 1 + (1 | Tree), xmid ~ 1, scal ~ 1",
  "Asym Normal(200, 50), xmid Normal(700, 200), scal Normal(350, 100), sd(Tree, Asym) HalfNormal(50), sigma HalfNormal(20)")

# lKa and lCl each get their own (1 | Subject): brms correlates group terms only within one formula or across
# formulas that share an |ID|, so these two are independent (nlme's pdDiag(lKa + lCl ~ 1)).
f_theoph <- bf(conc ~ Dose * exp(lKe + lKa - lCl) * (exp(-exp(lKe) * Time) - exp(-exp(lKa) * Time)) /
                 (exp(lKa) - exp(lKe)),
               lKe ~ 1, lKa ~ 1 + (1 | Subject), lCl ~ 1 + (1 | Subject), nl = TRUE)
p_theoph <- c(prior(normal(-2.5, 1), nlpar = "lKe"),
              prior(normal(0.5, 1), nlpar = "lKa"),
              prior(normal(-3, 1), nlpar = "lCl"),
              prior(normal(0, 1), class = "sd", nlpar = "lKa", lb = 0),
              prior(normal(0, 1), class = "sd", nlpar = "lCl", lb = 0),
              prior(normal(0, 2), class = "sigma", lb = 0))
theoph_fit <- run(f_theoph, theoph, p_theoph,
  paste("conc ~ Dose * exp(lKe + lKa - lCl) * (exp(-exp(lKe) * Time) - exp(-exp(lKa) * Time)) /",
        "(exp(lKa) - exp(lKe)); lKe ~ 1, lKa ~ 1 + (1 | Subject), lCl ~ 1 + (1 | Subject)"),
  "lKe Normal(-2.5, 1), lKa Normal(0.5, 1), lCl Normal(-3, 1), sd(Subject, lKa) and sd(Subject, lCl) HalfNormal(1), sigma HalfNormal(2)",
  # The model's curve is unchanged when ke and ka swap (flip-flop kinetics), so the posterior has a second mode
  # with lKe and lKa exchanged; from brms's random inits some chains settle there (R-hat 1.53 in the default run).
  # The reference chains start the three population parameters at their prior means, in the main mode.
  init = function() list(b_lKe = as.array(-2.5), b_lKa = as.array(0.5), b_lCl = as.array(-3)),
  init_note = "b_lKe = -2.5, b_lKa = 0.5, b_lCl = -3 (prior means); the rest random in (-2, 2)")

out <- list(
  about = paste0("brms posteriors made by tests/reference/brms_nonlinear.R with ", R.version.string, ", brms ",
                 packageVersion("brms"), ", rstan ", packageVersion("rstan"), ", StanHeaders ",
                 packageVersion("StanHeaders"), " on ", format(Sys.time(), tz = "UTC", usetz = TRUE),
                 "; load average at start ", LOADAVG,
                 " (2 shared cores: times are indicative)."),
  versions = list(R = R.version.string, brms = format(packageVersion("brms")),
                  rstan = format(packageVersion("rstan")), StanHeaders = format(packageVersion("StanHeaders"))),
  fits = list(orange = orange_fit, theoph = theoph_fit)
)
writeLines(toJSON(out, auto_unbox = TRUE, digits = 15, pretty = TRUE, null = "null", na = "null"),
           "tests/reference/brms_nonlinear.json")
cat("wrote tests/reference/brms_nonlinear.json\n")

# One brms (or nlme) fit of a nonlinear benchmark model, timed by phase; called by benchmarks/nonlinear.py.
#
#   Rscript benchmarks/nonlinear_brms.R MODEL TOOL DRAWS TUNE SEED OUT.json
#
# MODEL: orange | theoph; TOOL: brms | nlme. brms compiles its Stan program once (rstan::stan_model on
# make_stancode, timed as compile_s) and samples 4 chains one after another (rstan::sampling, timed as
# sampling_s) with brms's default adapt_delta 0.8; Theoph's chains start at the priors' means (as hmodels'
# start=), because random inits let a chain settle in the flip-flop mode where absorption and elimination swap.
# The priors are those of tests/reference/brms_nonlinear.R (normal(0, s) on sd / sigma with lower bound 0 is a
# half-normal), identical to hmodels' in benchmarks/nonlinear.py.
args <- commandArgs(trailingOnly = TRUE)
model <- args[1]; tool <- args[2]; draws <- as.integer(args[3]); tune <- as.integer(args[4])
seed <- as.integer(args[5]); out <- args[6]
t0 <- proc.time()[["elapsed"]]
suppressPackageStartupMessages({library(jsonlite); library(nlme)})
data_dir <- "hmodels/datasets/data"
if (model == "orange") {
  d <- read.csv(file.path(data_dir, "orange.csv")); d$Tree <- factor(d$Tree)
} else {
  d <- read.csv(file.path(data_dir, "theoph.csv")); d$Subject <- factor(d$Subject)
}
res <- list(model = model, tool = tool, R = R.version.string)
if (tool == "nlme") {
  import_s <- proc.time()[["elapsed"]] - t0
  st <- system.time(fit <- if (model == "orange") {
    nlme(circumference ~ SSlogis(age, Asym, xmid, scal), data = d, fixed = Asym + xmid + scal ~ 1,
         random = Asym ~ 1 | Tree, start = c(Asym = 192, xmid = 728, scal = 353), method = "ML")
  } else {
    nlme(conc ~ SSfol(Dose, Time, lKe, lKa, lCl), data = d, fixed = lKe + lKa + lCl ~ 1,
         random = pdDiag(lKa + lCl ~ 1), groups = ~Subject, start = c(lKe = -2.4, lKa = 0.45, lCl = -3.2),
         method = "ML")
  })
  res$fit_s <- st[["elapsed"]]; res$import_s <- import_s
  res$fixed <- as.list(fixef(fit)); res$nlme <- as.character(packageVersion("nlme"))
} else {
  suppressPackageStartupMessages({library(brms); library(rstan); library(posterior)})
  import_s <- proc.time()[["elapsed"]] - t0
  if (model == "orange") {
    f <- bf(circumference ~ Asym / (1 + exp((xmid - age) / scal)), Asym ~ 1 + (1 | Tree), xmid ~ 1, scal ~ 1,
            nl = TRUE)
    pr <- c(prior(normal(200, 50), nlpar = "Asym"), prior(normal(700, 200), nlpar = "xmid"),
            prior(normal(350, 100), nlpar = "scal"), prior(normal(0, 50), class = "sd", nlpar = "Asym", lb = 0),
            prior(normal(0, 20), class = "sigma", lb = 0))
    init <- "random"
  } else {
    f <- bf(conc ~ Dose * exp(lKe + lKa - lCl) * (exp(-exp(lKe) * Time) - exp(-exp(lKa) * Time)) /
              (exp(lKa) - exp(lKe)), lKe ~ 1, lKa ~ 1 + (1 | Subject), lCl ~ 1 + (1 | Subject), nl = TRUE)
    pr <- c(prior(normal(-2.5, 1), nlpar = "lKe"), prior(normal(0.5, 1), nlpar = "lKa"),
            prior(normal(-3, 1), nlpar = "lCl"), prior(normal(0, 1), class = "sd", nlpar = "lKa", lb = 0),
            prior(normal(0, 1), class = "sd", nlpar = "lCl", lb = 0), prior(normal(0, 2), class = "sigma", lb = 0))
    init <- function() list(b_lKe = array(-2.5), b_lKa = array(0.5), b_lCl = array(-3))
  }
  boost <- if (nzchar(system.file("include", package = "BH"))) system.file("include", package = "BH") else "/usr/include"
  t1 <- proc.time()[["elapsed"]]
  code <- make_stancode(f, data = d, prior = pr)
  sdata <- make_standata(f, data = d, prior = pr)
  build_s <- proc.time()[["elapsed"]] - t1
  compile_s <- system.time(sm <- rstan::stan_model(model_code = code, boost_lib = boost))[["elapsed"]]
  sampling_s <- system.time(
    sf <- rstan::sampling(sm, data = sdata, chains = 4, iter = tune + draws, warmup = tune, seed = seed,
                          cores = 1, refresh = 0, init = init)
  )[["elapsed"]]
  summ <- as.data.frame(summarise_draws(as_draws_array(as.array(sf)), "mean", "sd", "rhat", "ess_bulk"))
  summ <- summ[grepl("^(b_|sd_|sigma)", summ$variable), ]
  sp <- rstan::get_sampler_params(sf, inc_warmup = FALSE)
  res <- c(res, list(import_s = import_s, build_s = build_s, compile_s = compile_s, sampling_s = sampling_s,
                     total_s = build_s + compile_s + sampling_s, min_ess_bulk = min(summ$ess_bulk),
                     max_rhat = max(summ$rhat), divergences = sum(sapply(sp, function(x) sum(x[, "divergent__"]))),
                     means = setNames(as.list(summ$mean), summ$variable), brms = as.character(packageVersion("brms")),
                     rstan = as.character(packageVersion("rstan"))))
}
writeLines(toJSON(res, auto_unbox = TRUE, digits = NA), out)

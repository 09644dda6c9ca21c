# Reference values for hmodels' nonlinear layer (hmodels/nonlinear/): R's self-starting models, their
# starting values (getInitial), nls fits, and nlme fits (ML and REML) of Theoph, Orange, CO2 and ChickWeight.
#
# Run from the repository root:  Rscript tests/reference/nlme_nonlinear.R
# Writes tests/reference/nlme_nonlinear.json (read by tests/test_nonlinear_*.py; R never runs in tests).
# Reads the CSV files hmodels bundles (hmodels/datasets/data/) for theoph, orange, co2 and chickweight, so
# both sides fit identical data; the small getInitial cases (Loblolly, Puromycin, DNase, Indometh, ...) come
# from R's datasets package and their x/y values are written into the JSON.
# Made with R 4.2.2 and nlme 3.1-162 (Debian bookworm packages r-base-core, r-cran-nlme, r-cran-jsonlite).

suppressPackageStartupMessages({
  library(nlme)
  library(jsonlite)
})

data_dir <- "hmodels/datasets/data"
read <- function(name) read.csv(file.path(data_dir, paste0(name, ".csv")), stringsAsFactors = TRUE)

theoph <- read("theoph")
theoph$Subject <- factor(theoph$Subject)
orange <- read("orange")
orange$Tree <- factor(orange$Tree)
co2 <- read("co2")
co2$Type <- factor(co2$Type, levels = c("Quebec", "Mississippi"))
co2$Treatment <- factor(co2$Treatment, levels = c("nonchilled", "chilled"))
chick <- read("chickweight")
chick$Chick <- factor(chick$Chick)

# ---------------------------------------------------------------------------------------------------
# 1. the self-starting functions evaluated at fixed points (value and R's analytic gradient)
shapes <- list(
  SSlogis = list(cov = list(input = c(0, 250, 800, 1500)), par = list(Asym = 190, xmid = 700, scal = 350)),
  SSfpl = list(cov = list(input = c(0, 5, 12, 21)), par = list(A = 27, B = 349, xmid = 19, scal = 6.7)),
  SSasymp = list(cov = list(input = c(3, 10, 20, 25)), par = list(Asym = 94, R0 = -8.3, lrc = -3.2)),
  SSasympOrig = list(cov = list(input = c(3, 10, 20, 25)), par = list(Asym = 130, lrc = -3.6)),
  SSasympOff = list(cov = list(input = c(95, 250, 500, 1000)), par = list(Asym = 38, lrc = -4.4, c0 = 51)),
  SSmicmen = list(cov = list(input = c(0.02, 0.11, 0.56, 1.1)), par = list(Vm = 213, K = 0.064)),
  SSgompertz = list(cov = list(x = c(-3, -1, 0.5, 2.5)), par = list(Asym = 4.6, b2 = 2.3, b3 = 0.72)),
  SSweibull = list(cov = list(x = c(2, 6, 12, 21)), par = list(Asym = 160, Drop = 115, lrc = -5.9, pwr = 2.4)),
  SSfol = list(cov = list(Dose = c(4.02, 4.4, 5.5, 3.1), input = c(0.25, 1, 5, 24)),
               par = list(lKe = -2.5, lKa = 0.5, lCl = -3.2)),
  SSbiexp = list(cov = list(input = c(0.25, 1, 3, 8)), par = list(A1 = 2.3, lrc1 = 0.9, A2 = 0.5, lrc2 = -1.4))
)
values <- list()
for (nm in names(shapes)) {
  s <- shapes[[nm]]
  env <- c(s$cov, s$par)
  call <- as.call(c(as.name(nm), lapply(names(env), as.name)))
  v <- eval(call, env)
  g <- attr(v, "gradient")
  values[[nm]] <- list(
    covariate_args = I(names(s$cov)), parameter_args = I(names(s$par)), covariates = s$cov, parameters = s$par,
    value = as.vector(v),
    gradient = setNames(lapply(names(s$par), function(p) as.vector(g[, p])), names(s$par))
  )
}

# ---------------------------------------------------------------------------------------------------
# 2. getInitial on real data sets
initial_case <- function(label, shape, data, resp, covs, pars, note) {
  f <- as.formula(paste0(resp, " ~ ", shape, "(", paste(c(covs, pars), collapse = ", "), ")"))
  ini <- getInitial(f, data = data)
  out <- list(label = label, shape = shape, formula = deparse(f), note = note,
              y = data[[resp]],
              covariates = setNames(lapply(covs, function(v) data[[v]]), covs),
              initial = as.list(ini[pars]))
  out
}
Lob.329 <- Loblolly[Loblolly$Seed == "329", ]
Chick.1 <- ChickWeight[ChickWeight$Chick == 1, ]
Chick.6 <- subset(ChickWeight, (Chick == 6) & (Time > 0))
PurTrt <- Puromycin[Puromycin$state == "treated", ]
DNase.1 <- subset(DNase, Run == 1)
DNase.1$logconc <- log(DNase.1$conc)
Indo.1 <- Indometh[Indometh$Subject == 1, ]
CO2.Qn1 <- CO2[CO2$Plant == "Qn1", ]
theoph1 <- theoph[theoph$Subject == "1", ]
three <- data.frame(x = c(1, 2, 3, 1, 2, 3), y = c(1, 1.5, 1.75, 1.1, 1.4, 1.75))
initials <- list(
  initial_case("orange_pooled", "SSlogis", orange, "circumference", "age", c("Asym", "xmid", "scal"),
               "Orange, all trees (?SSlogis)"),
  initial_case("chick1_logis", "SSlogis", Chick.1, "weight", "Time", c("Asym", "xmid", "scal"),
               "ChickWeight chick 1 (?SSlogis)"),
  initial_case("chick1_fpl", "SSfpl", Chick.1, "weight", "Time", c("A", "B", "xmid", "scal"),
               "ChickWeight chick 1 (?SSfpl)"),
  initial_case("lob329_asymp", "SSasymp", Lob.329, "height", "age", c("Asym", "R0", "lrc"),
               "Loblolly seed 329 (?SSasymp)"),
  initial_case("loblolly_asymp", "SSasymp", Loblolly, "height", "age", c("Asym", "R0", "lrc"),
               "Loblolly, all seeds (averaged per age by sortedXyData)"),
  initial_case("three_asymp", "SSasymp", three, "y", "x", c("Asym", "R0", "lrc"),
               "three equally spaced x values: R's closed-form branch"),
  initial_case("lob329_asymporig", "SSasympOrig", Lob.329, "height", "age", c("Asym", "lrc"),
               "Loblolly seed 329 (?SSasympOrig)"),
  initial_case("co2qn1_asympoff", "SSasympOff", CO2.Qn1, "uptake", "conc", c("Asym", "lrc", "c0"),
               "CO2 plant Qn1 (?SSasympOff)"),
  initial_case("puromycin_micmen", "SSmicmen", PurTrt, "rate", "conc", c("Vm", "K"),
               "Puromycin, treated (?SSmicmen)"),
  initial_case("dnase1_gompertz", "SSgompertz", DNase.1, "density", "logconc", c("Asym", "b2", "b3"),
               "DNase run 1, x = log(conc) (?SSgompertz)"),
  initial_case("chick6_weibull", "SSweibull", Chick.6, "weight", "Time", c("Asym", "Drop", "lrc", "pwr"),
               "ChickWeight chick 6, Time > 0 (?SSweibull)"),
  initial_case("theoph1_fol", "SSfol", theoph1, "conc", c("Dose", "Time"), c("lKe", "lKa", "lCl"),
               "Theoph subject 1 (?SSfol)"),
  initial_case("theoph_fol", "SSfol", theoph, "conc", c("Dose", "Time"), c("lKe", "lKa", "lCl"),
               "Theoph, all subjects in data order"),
  initial_case("indo1_biexp", "SSbiexp", Indo.1, "conc", "time", c("A1", "lrc1", "A2", "lrc2"),
               "Indometh subject 1 (?SSbiexp)")
)
names(initials) <- vapply(initials, function(z) z$label, "")

# ---------------------------------------------------------------------------------------------------
# 3. nls point fits (population level)
nls_summary <- function(fit) {
  s <- summary(fit)
  tt <- coef(s)
  list(estimates = as.list(tt[, "Estimate"]), se = as.list(tt[, "Std. Error"]), sigma = s$sigma,
       df = s$df[2], rss = deviance(fit))
}
nls_fits <- list(
  orange_pooled = c(list(formula = "circumference ~ SSlogis(age, Asym, xmid, scal)"),
                    nls_summary(nls(circumference ~ SSlogis(age, Asym, xmid, scal), orange))),
  orange_pooled_written = c(list(formula = "circumference ~ Asym / (1 + exp((xmid - age) / scal))",
                                 start = list(Asym = 170, xmid = 600, scal = 300)),
                            nls_summary(nls(circumference ~ Asym / (1 + exp((xmid - age) / scal)), orange,
                                            start = list(Asym = 170, xmid = 600, scal = 300)))),
  theoph1_fol = c(list(formula = "conc ~ SSfol(Dose, Time, lKe, lKa, lCl)", subject = "1"),
                  nls_summary(nls(conc ~ SSfol(Dose, Time, lKe, lKa, lCl), theoph1)))
)

# ---------------------------------------------------------------------------------------------------
# 4. nlme fits, ML and REML
nlme_summary <- function(fit) {
  s <- summary(fit)
  tt <- s$tTable
  # full precision (VarCorr() returns formatted strings): pdMatrix is relative to sigma^2
  cov <- pdMatrix(fit$modelStruct$reStruct[[1]]) * fit$sigma^2
  sds <- setNames(as.list(sqrt(diag(cov))), rownames(cov))
  cors <- setNames(list(), character(0))
  cm <- cov2cor(cov)
  for (i in seq_len(nrow(cm))) for (j in seq_len(i - 1)) {
    if (cm[i, j] != 0) cors[[paste(rownames(cm)[j], rownames(cm)[i], sep = ":")]] <- cm[i, j]
  }
  re <- ranef(fit)
  list(fixed = as.list(tt[, "Value"]), fixed_se = as.list(tt[, "Std.Error"]), random_sd = sds,
       random_cor = cors, sigma = fit$sigma, logLik = as.numeric(logLik(fit)), df = attr(logLik(fit), "df"),
       n_groups = as.list(fit$dims$ngrps[seq_len(fit$dims$Q)]), n_obs = fit$dims$N,
       ranef = list(levels = rownames(re), values = as.list(re)))
}
fit_both <- function(call_text, ...) {
  out <- list(call = call_text)
  for (m in c("ML", "REML")) {
    fit <- eval(parse(text = sub("\\)$", paste0(", method = '", m, "')"), call_text)))
    out[[m]] <- nlme_summary(fit)
  }
  out
}
theoph_call <- paste0(
  "nlme(conc ~ SSfol(Dose, Time, lKe, lKa, lCl), data = theoph, fixed = lKe + lKa + lCl ~ 1, ",
  "random = pdDiag(lKa + lCl ~ 1), groups = ~Subject, start = c(lKe = -2.4, lKa = 0.45, lCl = -3.2))")
orange_call <- paste0(
  "nlme(circumference ~ SSlogis(age, Asym, xmid, scal), data = orange, fixed = Asym + xmid + scal ~ 1, ",
  "random = Asym ~ 1 | Tree, start = c(Asym = 192, xmid = 728, scal = 353))")
co2_call <- paste0(
  "nlme(uptake ~ SSasymp(conc, Asym, R0, lrc), data = co2, ",
  "fixed = list(Asym ~ Type * Treatment, R0 + lrc ~ 1), random = Asym ~ 1 | Plant, ",
  "start = c(Asym = c(39, -7, -5, -7), R0 = -20, lrc = -4.6))")
chick_call <- paste0(
  "nlme(weight ~ SSlogis(Time, Asym, xmid, scal), data = chick, fixed = Asym + xmid + scal ~ 1, ",
  "random = Asym ~ 1 | Chick, start = c(Asym = 290, xmid = 15, scal = 6))")
theoph_symm_call <- paste0(
  "nlme(conc ~ SSfol(Dose, Time, lKe, lKa, lCl), data = theoph, fixed = lKe + lKa + lCl ~ 1, ",
  "random = pdSymm(lKa + lCl ~ 1), groups = ~Subject, start = c(lKe = -2.4, lKa = 0.45, lCl = -3.2))")
nlme_fits <- list(
  theoph_symm = c(list(formula = "conc ~ SSfol(Dose, Time, lKe, lKa, lCl)",
                       nonlinear = list(lKe = "1", lKa = "1 + (1 | Subject)", lCl = "1 + (1 | Subject)"),
                       note = "random lKa and lCl correlated (pdSymm), hmodels' default for one factor"),
                  fit_both(theoph_symm_call)),
  theoph = c(list(formula = "conc ~ SSfol(Dose, Time, lKe, lKa, lCl)",
                  nonlinear = list(lKe = "1", lKa = "1 + (1 | Subject)", lCl = "1 + (1 | Subject)"),
                  note = "random lKa and lCl uncorrelated (pdDiag), Pinheiro & Bates ch. 8"),
             fit_both(theoph_call)),
  orange = c(list(formula = "circumference ~ SSlogis(age, Asym, xmid, scal)",
                  nonlinear = list(Asym = "1 + (1 | Tree)", xmid = "1", scal = "1")),
             fit_both(orange_call)),
  co2 = c(list(formula = "uptake ~ SSasymp(conc, Asym, R0, lrc)",
               nonlinear = list(Asym = "1 + Type * Treatment + (1 | Plant)", R0 = "1", lrc = "1"),
               note = "Type and Treatment treatment-coded with Quebec and nonchilled as reference levels"),
          fit_both(co2_call)),
  chickweight = c(list(formula = "weight ~ SSlogis(Time, Asym, xmid, scal)",
                       nonlinear = list(Asym = "1 + (1 | Chick)", xmid = "1", scal = "1")),
                  fit_both(chick_call))
)

out <- list(
  meta = list(R = R.version.string, nlme = as.character(packageVersion("nlme")),
              stats = as.character(packageVersion("stats")),
              jsonlite = as.character(packageVersion("jsonlite")),
              script = "tests/reference/nlme_nonlinear.R"),
  self_start_values = values,
  get_initial = initials,
  nls = nls_fits,
  nlme = nlme_fits
)
writeLines(toJSON(out, auto_unbox = TRUE, digits = I(15), pretty = TRUE),
           "tests/reference/nlme_nonlinear.json")
cat("wrote tests/reference/nlme_nonlinear.json\n")

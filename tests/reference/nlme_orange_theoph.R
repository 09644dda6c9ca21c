# Reference fits for tests/test_nonlinear.py (nlme, method = "ML"); writes nlme_orange_theoph.json.
# Theoph: first-order one-compartment model, random lKa and lCl without correlation (pdDiag), as M8 of
# /work/shared/reference (lme4.theoph "nlme_ML_reduced_random_lKa_lCl"). Orange: logistic growth, random Asym.
library(nlme)
library(jsonlite)
out <- list()
fit1 <- nlme(conc ~ SSfol(Dose, Time, lKe, lKa, lCl), data = Theoph, fixed = lKe + lKa + lCl ~ 1,
             random = pdDiag(lKa + lCl ~ 1), groups = ~ Subject, start = c(lKe = -2.4, lKa = 0.45, lCl = -3.2),
             method = "ML")
fit2 <- nlme(circumference ~ SSlogis(age, Asym, xmid, scal), data = Orange, fixed = Asym + xmid + scal ~ 1,
             random = Asym ~ 1 | Tree, start = c(Asym = 170, xmid = 700, scal = 350), method = "ML")
summ <- function(fit) {
  tt <- summary(fit)$tTable
  sds <- as.numeric(VarCorr(fit)[, "StdDev"])
  names(sds) <- rownames(VarCorr(fit))
  list(fixed = lapply(setNames(rownames(tt), rownames(tt)), function(r) list(estimate = tt[r, "Value"], se = tt[r, "Std.Error"])),
       random_sd = as.list(sds[names(sds) != "Residual"]), sigma = fit$sigma, logLik = as.numeric(logLik(fit)))
}
out$theoph <- summ(fit1)
out$orange <- summ(fit2)
out$about <- "nlme 'ML' fits by tests/reference/nlme_orange_theoph.R (R datasets Theoph and Orange)"
write_json(out, "nlme_orange_theoph.json", auto_unbox = TRUE, digits = NA, pretty = TRUE)

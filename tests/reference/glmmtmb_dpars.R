# Reference for tests/test_dpars.py: glmmTMB's ML fit of a zero-inflated negative binomial (nbinom2)
# with its own zero-inflation formula (ziformula = ~ mined) on glmmTMB's Salamanders data.
# Run: Rscript tests/reference/glmmtmb_dpars.R  (writes glmmtmb_dpars.json and glmmtmb_dpars.csv)
suppressMessages({library(glmmTMB); library(jsonlite)})
data(Salamanders, package = "glmmTMB")
d <- Salamanders[, c("count", "mined", "site")]
m <- glmmTMB(count ~ mined + (1 | site), ziformula = ~ mined, family = nbinom2, data = d)
cf <- fixef(m)
se_c <- sqrt(diag(vcov(m)$cond)); se_z <- sqrt(diag(vcov(m)$zi))
out <- list(
  glmmTMB = as.character(packageVersion("glmmTMB")),
  formula = "count ~ mined + (1 | site), ziformula = ~ mined, family = nbinom2",
  cond = as.list(cf$cond), cond_se = as.list(se_c),
  zi = as.list(cf$zi), zi_se = as.list(se_z),
  alpha = sigma(m),
  sd_site = attr(VarCorr(m)$cond$site, "stddev")[[1]],
  logLik = as.numeric(logLik(m))
)
write(toJSON(out, auto_unbox = TRUE, digits = 10, pretty = TRUE), "glmmtmb_dpars.json")
write.csv(d, "glmmtmb_dpars.csv", row.names = FALSE)

## make_lme4.R -- reference fits of the random-intercept LMM from lme4.
##
##   y = X a + D b + e,   b ~ N(0, s2 I),   e ~ N(0, t2 I)
##
## Run from this directory (tests/data/mixed/), AFTER
##   python3 make_statsmodels.py simulate      (writes walkthrough.csv, sim45.csv)
## with
##   Rscript make_lme4.R
##
## Writes
##   dyestuff.csv, dyestuff2.csv, sleepstudy.csv   (data copied from lme4)
##   lme4_<data>_<reml|ml>.json                    (one file per fit)
## for <data> in dyestuff, dyestuff2, sleepstudy, walkthrough, sim45.
##
## Every fit is done on the data as read back from the CSV file, so the JSON
## numbers belong exactly to the CSV in this directory (columns: group, ...).
##
## Optimum accuracy.  lme4 profiles out the fixed effects and the residual
## variance; the only free parameter is theta = sqrt(s2 / t2).  Any optimizer
## that uses function values only (bobyqa, Nelder-Mead, nloptwrap) can locate a
## minimum of a smooth 1-D function only to about sqrt(machine eps) ~ 1e-8
## relative in theta: with default settings lme4 1.1.31 gets Dyestuff REML
## theta right to ~5e-8, even with rhoend = 1e-12.  So each fit is done in two steps:
##   1. lmer(..., control = lmerControl(optimizer = "bobyqa",
##            optCtrl = list(rhobeg = 0.1, rhoend = 1e-12, maxfun = 1e5)))
##   2. Newton refinement of theta on the profiled deviance function
##      (lmer(..., devFunOnly = TRUE)), with the first and second derivatives
##      from Richardson-extrapolated central differences, until the Newton step
##      is below 1e-11 relative (the
##      rounding-noise floor of the differences).  If theta is 0 (the boundary, Dyestuff2) and
##      the one-sided derivative in theta^2 there is > 0, theta = 0 is kept: that is the
##      constrained optimum.
##   The refined theta is then turned into a full merMod with lme4's own
##   modular API (mkMerMod), so every reported quantity (fixef, vcov, VarCorr,
##   sigma, logLik, ranef, condVar) is computed by lme4 at the refined theta.
##   Both the raw bobyqa theta and the refined theta are stored in the JSON
##   ("optimizer" block).  The refined optimum is cross-checked by compare.py
##   against an independent high-precision (mpmath) profiled-likelihood fit.
##
## Numbers are written with 17 significant digits (sprintf "%.17g"), which
## round-trips IEEE doubles exactly; jsonlite's own writer stops at 15.

suppressPackageStartupMessages(library(lme4))

## ---------------------------------------------------------------- JSON writer
## Small writer so that every double is printed with %.17g.
##   named list            -> object
##   unnamed list          -> array
##   named atomic vector   -> object
##   atomic of length 1    -> scalar  (wrap in as.list() to force an array)
##   unnamed atomic vector -> array
json_num <- function(v) {
  ifelse(is.na(v), "null", ifelse(v == 0, "0", sprintf("%.17g", v)))
}
json_str <- function(s) {
  s <- gsub("\\\\", "\\\\\\\\", s)
  s <- gsub("\"", "\\\\\"", s)
  paste0("\"", s, "\"")
}
to_json <- function(x, ind = "") {
  ind2 <- paste0(ind, "  ")
  if (is.null(x)) return("null")
  if (is.list(x)) {
    if (length(x) == 0) return(if (is.null(names(x))) "[]" else "{}")
    items <- vapply(x, to_json, "", ind = ind2)
    if (!is.null(names(x))) items <- paste0(json_str(names(x)), ": ", items)
    br <- if (is.null(names(x))) c("[", "]") else c("{", "}")
    return(paste0(br[1], "\n", ind2, paste(items, collapse = paste0(",\n", ind2)),
                  "\n", ind, br[2]))
  }
  if (is.factor(x)) x <- as.character(x)
  vals <- if (is.numeric(x)) json_num(as.double(x))
          else if (is.logical(x)) ifelse(x, "true", "false")
          else json_str(as.character(x))
  if (!is.null(names(x)))
    return(paste0("{", paste0(json_str(names(x)), ": ", vals, collapse = ", "), "}"))
  if (length(x) == 1) return(vals)
  paste0("[", paste(vals, collapse = ", "), "]")
}
write_json17 <- function(x, path) {
  writeLines(to_json(x), path)
  ## round-trip check of the numbers we wrote
  back <- jsonlite::fromJSON(path, simplifyVector = FALSE)
  stopifnot(isTRUE(all.equal(back$loglik, x$loglik, tolerance = 0)))
}

## ---------------------------------------------------------------- data
versions <- list(R = R.version.string,
                 lme4 = as.character(packageVersion("lme4")),
                 Matrix = as.character(packageVersion("Matrix")),
                 minqa = as.character(packageVersion("minqa")))

## copy lme4's data sets to CSV (group column renamed to "group", original name kept
## as the data frame's grouping column in the formula below)
write_csv17 <- function(df, path) {
  out <- df
  for (nm in names(out)) if (is.numeric(out[[nm]])) out[[nm]] <- json_num(out[[nm]])
  write.csv(out, path, row.names = FALSE, quote = FALSE)
}
write_csv17(data.frame(group = Dyestuff$Batch, Yield = Dyestuff$Yield), "dyestuff.csv")
write_csv17(data.frame(group = Dyestuff2$Batch, Yield = Dyestuff2$Yield), "dyestuff2.csv")
write_csv17(data.frame(group = sleepstudy$Subject, Days = sleepstudy$Days,
                       Reaction = sleepstudy$Reaction), "sleepstudy.csv")

read_data <- function(path) {
  d <- read.csv(path, colClasses = c(group = "character"))
  ## keep group labels in order of first appearance (= sorted for all our files)
  d$group <- factor(d$group, levels = unique(d$group))
  for (nm in names(d)) if (is.integer(d[[nm]])) d[[nm]] <- as.double(d[[nm]])
  d
}
## sanity: read-back CSV equals lme4's data exactly
stopifnot(identical(read_data("dyestuff.csv")$Yield, Dyestuff$Yield),
          identical(read_data("dyestuff2.csv")$Yield, Dyestuff2$Yield),
          identical(read_data("sleepstudy.csv")$Reaction, sleepstudy$Reaction))

## name, csv, formula (group is always the grouping factor)
specs <- list(
  list(name = "dyestuff",    csv = "dyestuff.csv",    formula = Yield ~ 1 + (1 | group),
       orig = "Dyestuff: Yield ~ 1 + (1|Batch)"),
  list(name = "dyestuff2",   csv = "dyestuff2.csv",   formula = Yield ~ 1 + (1 | group),
       orig = "Dyestuff2: Yield ~ 1 + (1|Batch)"),
  list(name = "sleepstudy",  csv = "sleepstudy.csv",  formula = Reaction ~ Days + (1 | group),
       orig = "sleepstudy: Reaction ~ Days + (1|Subject)"),
  list(name = "walkthrough", csv = "walkthrough.csv", formula = y ~ x + (1 | group),
       orig = "walkthrough (simulated, make_statsmodels.py): y ~ x + (1|group)"),
  list(name = "sim45",       csv = "sim45.csv",       formula = y ~ x1 + x2 + (1 | group),
       orig = "sim45 (simulated, make_statsmodels.py): y ~ x1 + x2 + (1|group)")
)

ctrl <- lmerControl(optimizer = "bobyqa",
                    optCtrl = list(rhobeg = 0.1, rhoend = 1e-12, maxfun = 1e5),
                    check.conv.singular = "ignore")

## ---------------------------------------------------------------- refinement
## Richardson-extrapolated central differences of the deviance f at theta.
derivs <- function(f, th) {
  h <- 1e-3 * max(th, 1e-2)
  f0 <- f(th)
  D <- function(h) (f(th + h) - f(th - h)) / (2 * h)
  S <- function(h) (f(th + h) - 2 * f0 + f(th - h)) / h^2
  c(g = (4 * D(h / 2) - D(h)) / 3, H = (4 * S(h / 2) - S(h)) / 3)
}
refine_theta <- function(devfun, th0) {
  th <- th0
  log <- list()
  if (th == 0) {
    ## boundary: the deviance depends on theta through r = theta^2, so check the
    ## one-sided derivative in r: (f(sqrt(dr)) - f(0)) / dr must be > 0
    dr <- 1e-8
    g1 <- (devfun(sqrt(dr)) - devfun(0)) / dr
    stopifnot(g1 > 0)
    return(list(theta = 0, boundary = TRUE, one_sided_derivative = g1,
                iterations = list()))
  }
  for (it in 1:20) {
    d <- derivs(devfun, th)
    step <- -d[["g"]] / d[["H"]]
    log[[it]] <- list(theta = th, gradient = d[["g"]], hessian = d[["H"]], step = step)
    th <- th + step
    if (abs(step) < 1e-11 * th) break   # finite-difference noise floor ~1e-11
  }
  stopifnot(th > 0)
  list(theta = th, boundary = FALSE, iterations = log)
}

fit_one <- function(sp, reml) {
  dat <- read_data(sp$csv)
  fit0 <- lmer(sp$formula, data = dat, REML = reml, control = ctrl)
  th0 <- unname(getME(fit0, "theta"))
  ## modular re-fit at the refined theta
  lf <- lFormula(sp$formula, data = dat, REML = reml, control = ctrl)
  devfun <- do.call(mkLmerDevfun, lf)
  ref <- refine_theta(devfun, th0)
  opt <- list(par = ref$theta, fval = devfun(ref$theta),   # last call sets the state
              conv = 0, feval = NA, message = "Newton-refined", warnings = list())
  fit <- mkMerMod(environment(devfun), opt, lf$reTrms, fr = lf$fr)

  fe <- fixef(fit)
  V <- as.matrix(vcov(fit))
  vc <- as.data.frame(VarCorr(fit))
  s2g <- vc$vcov[vc$grp == "group"]
  s2r <- sigma(fit)^2
  re <- ranef(fit, condVar = TRUE)$group
  pv <- attr(re, "postVar")[1, 1, ]
  ll <- logLik(fit)
  crit <- if (reml) REMLcrit(fit) else deviance(fit)
  X <- getME(fit, "X")

  out <- list(
    data = sp$name,
    csv = sp$csv,
    description = sp$orig,
    formula = paste(deparse(sp$formula), collapse = ""),
    method = if (reml) "REML" else "ML",
    n = nrow(dat),
    n_groups = nlevels(dat$group),
    p = ncol(X),
    fixef = as.list(fe),
    fixef_se = as.list(sqrt(diag(V))),
    vcov_fixef = lapply(seq_len(nrow(V)), function(i) as.list(setNames(V[i, ], colnames(V)))),
    sigma2_group = s2g,
    sigma2_resid = s2r,
    theta = ref$theta,
    loglik = as.numeric(ll),
    loglik_df = attr(ll, "df"),
    loglik_note = if (reml)
      "REML log-likelihood as lme4 reports it: logLik(fit) = -REMLcrit/2. It omits the +1/2 log|X'X| term that GEMMA's REML likelihood includes."
      else "ML log-likelihood: logLik(fit) = -deviance/2.",
    REMLcrit = if (reml) crit else NULL,
    deviance = if (!reml) crit else NULL,
    minus_half_criterion = -crit / 2,
    is_singular = isSingular(fit, tol = 1e-8),
    ranef = as.list(setNames(re[, 1], rownames(re))),
    ranef_condvar = as.list(setNames(pv, rownames(re))),
    ranef_condvar_note = "attr(ranef(fit, condVar=TRUE)$group, 'postVar'): Var(b_j | y) with the fixed effects held at their estimates, = sigma2_resid * theta^2 / (1 + n_j theta^2)",
    group_sizes = as.list(setNames(as.numeric(table(dat$group)), levels(dat$group))),
    optimizer = list(
      first_stage = "lmer(..., control = lmerControl(optimizer='bobyqa', optCtrl=list(rhobeg=0.1, rhoend=1e-12, maxfun=1e5)))",
      first_stage_theta = th0,
      first_stage_criterion = if (reml) REMLcrit(fit0) else deviance(fit0),
      first_stage_feval = fit0@optinfo$feval,
      refinement = "Newton on the profiled deviance (devFunOnly), Richardson central differences, stop at |step| < 1e-11 theta (noise floor of the differences); boundary theta=0 kept if one-sided derivative in theta^2 > 0",
      refined_theta = ref$theta,
      boundary = ref$boundary,
      one_sided_derivative_in_theta2_at_0 = if (ref$boundary) ref$one_sided_derivative else NULL,
      newton_iterations = ref$iterations,
      relative_change_theta = if (ref$theta > 0) (ref$theta - th0) / ref$theta else th0
    ),
    versions = versions,
    generated_by = "Rscript make_lme4.R"
  )
  out <- out[!vapply(out, is.null, NA)]
  ## self-consistency checks
  stopifnot(abs(out$loglik + crit / 2) <= 1e-12 * abs(crit))
  if (ref$theta > 0)
    stopifnot(abs(s2g - s2r * ref$theta^2) <= 1e-12 * s2g)
  stopifnot(max(abs(pv - s2r * ref$theta^2 / (1 + as.numeric(table(dat$group)) * ref$theta^2))) <= 1e-12 * max(s2r, 1))
  path <- sprintf("lme4_%s_%s.json", sp$name, if (reml) "reml" else "ml")
  write_json17(out, path)
  cat(sprintf("%-28s theta0=%.17g theta=%.17g rel.change=%.2e loglik=%.17g\n",
              path, th0, ref$theta, out$optimizer$relative_change_theta, out$loglik))
}

for (sp in specs) {
  if (!file.exists(sp$csv)) stop(sp$csv, " missing: run `python3 make_statsmodels.py simulate` first")
  for (reml in c(TRUE, FALSE)) fit_one(sp, reml)
}

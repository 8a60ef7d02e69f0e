// Maximising a log-likelihood over the variance ratio lambda in
// [l_min, l_max], finding the optimum GEMMA 0.98.5's CalcLambda finds
// (reference section 5) with far fewer evaluations:
//
// - the same log-spaced grid of n_region intervals, whose derivative signs
//   locate the candidate maxima (the caller computes them cheaply);
// - per bracket holding a sign change from + to -, a safeguarded Newton
//   iteration in t = log(lambda), started from a caller-supplied guess (the
//   null-model lambda for a SNP) or by regula falsi, converged to the root
//   (GEMMA instead stops at a 1e-5 relative step and reports the previous
//   iterate, and returns NaN when Newton leaves the range: this never does);
// - the best bracket, then the two bounds, compared by value as GEMMA does.
//
// Brackets where the derivative goes from - to + hold only minima; GEMMA runs
// Newton on them too, but a minimum never beats the bounds, so they are
// skipped.
#pragma once

#include <cmath>
#include <limits>
#include <vector>

#include "likelihood.hpp"

namespace lmmscan {

struct LambdaOptions {
  double l_min = 1e-5;
  double l_max = 1e5;
  int n_region = 10;
  double rel_tol = 1e-8;  // stop when the Newton step in log(lambda) is below this
  int max_iter = 100;
};

// GEMMA's grid, computed exactly as GEMMA does (l_min * exp(step * i)).
inline std::vector<double> lambda_grid(const LambdaOptions& opt) {
  std::vector<double> grid(static_cast<size_t>(opt.n_region) + 1);
  // GEMMA's log of the ratio.  Where the ratio overflows (l_min 1e-300,
  // l_max 1e10) it was log(inf): every grid point but the first inf, and the
  // search returned l_max; and where exp(step * i) does (l_min 1e-320), so
  // were the points.  Logarithms are used only there.
  const double ratio = opt.l_max / opt.l_min;
  if (std::isfinite(ratio)) {
    const double step = std::log(ratio) / opt.n_region;
    for (int i = 0; i <= opt.n_region; ++i) grid[i] = opt.l_min * std::exp(step * i);
  } else {
    const double lo = std::log(opt.l_min);
    const double step = (std::log(opt.l_max) - lo) / opt.n_region;
    for (int i = 0; i <= opt.n_region; ++i) grid[i] = std::exp(lo + step * i);
    grid.front() = opt.l_min;
  }
  // GEMMA's last point is l_min*exp(step*n_region), a rounding above l_max
  // (1e5 * (1 + 7e-16)); ending the grid on l_max keeps every lambda in range.
  grid.back() = opt.l_max;
  return grid;
}

struct Optimum {
  double lambda = std::numeric_limits<double>::quiet_NaN();
  double logf = std::numeric_limits<double>::quiet_NaN();
  int evaluations = 0;  // full (derivative) evaluations used by the Newton steps
};

// deriv(lambda) -> Derivatives: a full evaluation at lambda (dev1, dev2).
// value_last() -> the log-likelihood at the lambda of the last deriv call.
// value_bound(0 | 1) -> the log-likelihood at l_min | l_max.
// dev1_grid: (n_region + 1,) derivative at each grid point.
// start: a guess for the optimum, used if it falls inside a bracket (or NaN).
template <class Deriv, class ValueLast, class ValueBound>
Optimum maximise_lambda(const std::vector<double>& grid, const double* dev1_grid, double start,
                        const LambdaOptions& opt, Deriv&& deriv, ValueLast&& value_last,
                        ValueBound&& value_bound) {
  Optimum best;
  bool have = false;
  const int npts = static_cast<int>(grid.size());
  for (int g = 0; g + 1 < npts; ++g) {
    const double d_lo = dev1_grid[g], d_hi = dev1_grid[g + 1];
    if (!(d_lo * d_hi <= 0.0) || (d_lo < 0.0 && d_hi > 0.0)) continue;
    double t_lo = std::log(grid[g]), t_hi = std::log(grid[g + 1]);
    double t;
    if (start > grid[g] && start < grid[g + 1]) {
      t = std::log(start);
    } else {
      const double g_lo = grid[g] * d_lo, g_hi = grid[g + 1] * d_hi;
      t = g_lo != g_hi ? t_lo + (t_hi - t_lo) * g_lo / (g_lo - g_hi) : 0.5 * (t_lo + t_hi);
      if (!(t > t_lo && t < t_hi)) t = 0.5 * (t_lo + t_hi);
    }
    double lambda = std::exp(t);
    bool ok = false;
    for (int it = 0; it < opt.max_iter; ++it) {
      lambda = std::exp(t);
      const Derivatives dv = deriv(lambda);
      ++best.evaluations;
      const double g1 = lambda * dv.dev1;
      const double g2 = lambda * dv.dev1 + lambda * lambda * dv.dev2;
      if (!std::isfinite(g1)) break;
      if (g1 == 0.0) {
        ok = true;
        break;
      }
      if (g1 > 0.0)
        t_lo = t;
      else
        t_hi = t;
      double t_new = (g2 < 0.0 && std::isfinite(g2)) ? t - g1 / g2 : NAN;
      if (!(t_new > t_lo && t_new < t_hi)) t_new = 0.5 * (t_lo + t_hi);
      if (std::fabs(t_new - t) < opt.rel_tol) {
        ok = true;
        break;
      }
      t = t_new;
    }
    if (!ok) continue;
    const double f = value_last();
    if (!have || f > best.logf) {
      best.lambda = lambda;
      best.logf = f;
      have = true;
    }
  }
  const double f_min = value_bound(0), f_max = value_bound(1);
  if (!have) {
    // No interior candidate: the larger bound, ties to l_min (GEMMA).
    if (f_min >= f_max) {
      best.lambda = opt.l_min;
      best.logf = f_min;
    } else {
      best.lambda = opt.l_max;
      best.logf = f_max;
    }
    return best;
  }
  if (f_min > best.logf) {
    best.lambda = opt.l_min;
    best.logf = f_min;
  }
  if (f_max > best.logf) {
    best.lambda = opt.l_max;
    best.logf = f_max;
  }
  return best;
}

}  // namespace lmmscan

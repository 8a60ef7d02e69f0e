// Per-SNP tests of the alternative model y = W a + x b + g + e (reference
// section 6), for a block of rotated SNPs, over threads.
//
// Cost per SNP.  Everything that does not depend on the SNP is computed once
// per scan (ScanContext): the pairwise products of the covariates and the
// phenotype, and at a fixed set of lambdas (GEMMA's grid, the null REML and ML
// lambdas) the weights h, the covariate/phenotype Gram sums and their
// projection (CovariateLevels: per SNP, at those lambdas, only the entries
// with the SNP are projected, O(c) per level instead of O(c^2)).  Per SNP the
// only O(n) work is then:
//   - the c + 2 products of x with W, x and y (once);
//   - at each fixed lambda, the sums of those products weighted by h, h^2
//     (and h^3 where a Newton step starts): the grid locates the maxima for
//     REML and ML at once, the null-ML point gives the score test;
//   - a few full evaluations for the Newton steps away from the null lambda.
// Workspaces are allocated once per thread; nothing is allocated per SNP.
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <vector>

#include "kernels.hpp"
#include "lambda_search.hpp"
#include "likelihood.hpp"
#include "null_model.hpp"

namespace lmmscan {

struct ScanOptions {
  LambdaOptions lambda;
  bool wald = true;   // REML lambda per SNP, Wald F test
  bool lrt = true;    // ML lambda per SNP, likelihood-ratio test
  bool score = true;  // score test at the null ML lambda
  // EMMAX / FaST-LMM style: no per-SNP lambda search; the Wald test at the
  // null REML lambda and the likelihood ratio at the null ML lambda.
  bool fixed_lambda = false;
  // At the fixed lambdas, project the covariates once for all SNPs
  // (CovariateLevels): the same bits as projecting them per SNP, which
  // false does (kept so the tests can check that).
  bool reuse_covariate_levels = true;
};

// Fixed-lambda scans of whitened data.  At one lambda, v~ = L^-1 v with
// L L' = lambda K + I makes every weight h equal to 1, and L^-1 X costs n^2
// flops per SNP against 2 n^2 for U'X.  The vectors given to the context
// and to scan_block are then the whitened ones; the REML log-likelihood's
// log|V'V| needs the plain Gram matrix of the unwhitened vectors: W and y
// here, each SNP's raw x in scan_block.  d stays the eigenvalues of K, for
// sum_i log(1 + lambda d_i) = log|lambda K + I|.
struct Whitened {
  const double* W = nullptr;  // (n, c) column-major, unwhitened
  const double* y = nullptr;  // (n,)
  double lambda = NAN;        // the lambda of L
  bool active() const { return W != nullptr; }
};

// Columns of the per-SNP result matrix (B, kResultColumns).
enum ResultColumn : int {
  kBeta = 0,      // GLS effect at the REML lambda (Wald step)
  kSe,            //   and its standard error
  kLoglReml,      // REML log-likelihood at l_remle
  kLoglMle,       // ML log-likelihood at l_mle
  kLambdaReml,    // l_remle
  kLambdaMle,     // l_mle
  kFWald,         // Wald F statistic, F(1, n - c - 1)
  kFScore,        // score F statistic, F(1, n - c - 1)
  kBetaScore,     // GLS effect at the null ML lambda (score step)
  kSeScore,       //   and its standard error
  kEvaluations,   // full likelihood evaluations used by the Newton steps
  kResultColumns
};

class ScanContext {
 public:
  // d: (k,), UtW: (k, c) column-major, Uty: (k,): all must outlive the
  // context.  comp: the zero-eigenvalue complement of the null vectors, as
  // for fit_null (default: none, k = n); each SNP then needs its own
  // complement entries (see scan_block).
  // wh: whitened data (see Whitened); UtW and Uty are then L^-1 W and L^-1 y.
  ScanContext(const double* d, const double* UtW, const double* Uty, Eigen::Index n, int c,
              const NullFit& null, const ScanOptions& opt, const Complement& comp = {},
              const Whitened& wh = {})
      : d_(d),
        W_(UtW),
        y_(Uty),
        n_(n),
        N_(comp.n > 0 ? comp.n : n),
        ld_(kernels::padded(n)),
        c_(c),
        opt_(opt),
        null_(null),
        wh_(wh) {
    if (N_ < n_) throw std::invalid_argument("complement: total samples below the rank");
    if (wh.active()) {
      if (!opt.fixed_lambda || comp.n > 0 || wh.y == nullptr)
        throw std::invalid_argument("whitened data need fixed_lambda and no complement");
      if ((opt.wald && null.lambda_remle != wh.lambda) ||
          ((opt.lrt || opt.score) && null.lambda_mle != wh.lambda))
        throw std::invalid_argument(
            "whitened data serve only the tests at the lambda they were whitened at");
    }
    std::vector<double> V(static_cast<size_t>(n) * (c + 1));
    std::copy(UtW, UtW + n * c, V.begin());
    std::copy(Uty, Uty + n, V.begin() + n * c);
    wy_ = std::make_unique<PairGram>(V.data(), n, c + 1);
    // Null vectors (W_0..W_{c-1}, y) sit at (0..c-1, c+1) among the
    // alternative's (W, x, y).
    to_alt_.resize(c + 1);
    for (int a = 0; a < c; ++a) to_alt_[a] = a;
    to_alt_[c] = c + 1;

    grid_ = lambda_grid(opt.lambda);
    points_ = grid_;
    points_.push_back(null.lambda_remle);
    points_.push_back(null.lambda_mle);
    const int np = static_cast<int>(points_.size());
    const int pairs = wy_->pairs();
    w_.resize(static_cast<size_t>(3) * ld_ * np);
    wy_sums_.resize(static_cast<size_t>(3) * pairs * np);
    spec_.resize(np);
    wy_comp_.assign(pairs, 0.0);
    if (comp.gram != nullptr)
      for (int p = 0; p < pairs; ++p)
        wy_comp_[p] = comp.gram[wy_->pair_a(p) * (c + 1) + wy_->pair_b(p)];
    for (int q = 0; q < np; ++q) {
      const double lam = std::isfinite(points_[q]) ? points_[q] : 1.0;
      double* w = w_.data() + static_cast<size_t>(3) * q * ld_;
      if (wh.active()) {  // h = 1 and g = 0 in the whitened basis
        std::fill(w, w + n, 1.0);
        std::fill(w + ld_, w + ld_ + n, 0.0);
        std::fill(w + 2 * ld_, w + 2 * ld_ + n, 0.0);
      } else {
        kernels::power_weights(d, lam, n, w, ld_, &spec_[q].sum_g, &spec_[q].sum_g2);
      }
      double* sums = wy_sums_.data() + static_cast<size_t>(3) * pairs * q;
      wy_->weighted_sums(w, ld_, 3, sums);
      add_wy_complement(sums);
      std::vector<double> S(static_cast<size_t>(3) * (c + 2) * (c + 2), 0.0);
      wy_->scatter(sums, 3, to_alt_.data(), c + 2, S.data());
      levels_.push_back(covariate_levels(S.data(), c));
      spec_[q].log1p = kernels::log1p_scaled_sum(d, lam, n);
    }
    // The null model's REML flat in lambda too (K's columns inside span W,
    // tr(P_W K) rounding): no SNP's Wald test is then undetermined (its F is
    // the same at every lambda); see flat_reml().
    if (!wh.active()) {
      const double A0 = spec_[0].sum_g - levels_[0].trace_TP;
      null_flat_ = !(std::fabs(A0) > flat_tolerance() * spec_[0].sum_g);
    }
    wy_plain_.resize(pairs);
    if (wh.active()) {
      std::copy(wh.W, wh.W + n * c, V.begin());
      std::copy(wh.y, wh.y + n, V.begin() + n * c);
      PairGram(V.data(), n, c + 1).plain_sums(wy_plain_.data());
    } else {
      wy_->plain_sums(wy_plain_.data());
    }
    add_wy_complement(wy_plain_.data());
  }

  // The S_1 sums (pairs,) += the complement (h = 1 and g = 0 there).
  void add_wy_complement(double* sums) const {
    for (int p = 0; p < wy_->pairs(); ++p) sums[p] += wy_comp_[p];
  }

  Eigen::Index n() const { return n_; }      // rotated length k
  Eigen::Index total() const { return N_; }  // samples
  Eigen::Index ld() const { return ld_; }    // per-sample rows' stride (kernels::padded)
  bool has_complement() const { return N_ > n_; }
  int c() const { return c_; }
  int m() const { return c_ + 2; }
  const ScanOptions& options() const { return opt_; }
  const NullFit& null() const { return null_; }
  const std::vector<double>& grid() const { return grid_; }
  int n_grid() const { return static_cast<int>(grid_.size()); }
  int point_reml() const { return n_grid(); }
  int point_ml() const { return n_grid() + 1; }
  double point_lambda(int q) const { return points_[q]; }
  // The weights h, h g, h g^2 at point q (kernels::power_weights), rows ld() apart.
  const double* point_w(int q) const { return w_.data() + static_cast<size_t>(3) * q * ld_; }
  const double* point_wy_sums(int q) const {
    return wy_sums_.data() + static_cast<size_t>(3) * wy_->pairs() * q;
  }
  const SpectralSums& point_spec(int q) const { return spec_[q]; }
  // The covariates' projection at point q, shared by every SNP.
  const CovariateLevels& point_levels(int q) const { return levels_[q]; }
  const PairGram& wy() const { return *wy_; }
  const int* to_alt() const { return to_alt_.data(); }
  const double* wy_plain() const { return wy_plain_.data(); }
  const double* d() const { return d_; }
  const double* W() const { return W_; }
  const double* y() const { return y_; }
  const Whitened& whitened() const { return wh_; }
  bool null_flat() const { return null_flat_; }
  // Rounding's size in tr(P K) relative to its terms: (N + 64) eps.
  double flat_tolerance() const {
    return (static_cast<double>(N_) + 64.0) * std::numeric_limits<double>::epsilon();
  }

 private:
  const double *d_, *W_, *y_;
  Eigen::Index n_, N_, ld_;
  int c_;
  ScanOptions opt_;
  NullFit null_;
  Whitened wh_;
  std::unique_ptr<PairGram> wy_;
  std::vector<int> to_alt_;
  kernels::AlignedVector w_;  // (points, 3, ld_)
  std::vector<double> grid_, points_, wy_sums_, wy_plain_, wy_comp_;
  std::vector<SpectralSums> spec_;
  std::vector<CovariateLevels> levels_;
  bool null_flat_ = false;
};

// One thread's state: evaluates the alternative model of one SNP at a time.
class SnpWorker {
 public:
  explicit SnpWorker(const ScanContext& ctx)
      : ctx_(ctx),
        n_(ctx.n()),
        N_(ctx.total()),
        ld_(ctx.ld()),
        c_(ctx.c()),
        m_(ctx.m()),
        xp_(static_cast<size_t>(ctx.ld()) * ctx.m()),
        xraw_(ctx.whitened().active() ? static_cast<size_t>(ctx.ld()) * ctx.m() : 0),
        w_(3 * static_cast<size_t>(ctx.ld())),
        xs_(3 * ctx.m()),
        xe_(3 * ctx.m(), 0.0),
        xc_(ctx.m(), 0.0),
        wys_(3 * ctx.wy().pairs()),
        S_(3 * ctx.m() * ctx.m(), 0.0),
        dev_reml_(ctx.n_grid()),
        dev_ml_(ctx.n_grid()) {}

  // x: (k,) one rotated SNP.  xc: (m,) its complement entries x'(I - UU')v
  // for v = W_0..W_{c-1}, x, y, or null without a complement.  xraw: the
  // unwhitened SNP when the context is whitened, else null.  out: row of
  // kResultColumns values (stride ld).
  void run(const double* x, const double* xc, const double* xraw, double* out,
           Eigen::Index ld) {
    for (int k = 0; k < kResultColumns; ++k) out[k * ld] = NAN;
    if (xc != nullptr) std::copy(xc, xc + m_, xc_.begin());
    load(x, xraw);
    const ScanOptions& opt = ctx_.options();
    const double n = double(N_), df = double(N_ - c_ - 1);
    int evaluations = 0;

    if (opt.score) {
      const Projection& p = evaluate_point(ctx_.point_ml(), 1);
      out[kFScore * ld] = n * p.P_xy * p.P_xy / (p.P_yy_split * p.P_xx);
      out[kBetaScore * ld] = p.P_xy / p.P_xx;
      out[kSeScore * ld] = std::sqrt(p.P_yy / (df * p.P_xx));
    }
    if (!opt.wald && !opt.lrt) return;
    if (opt.fixed_lambda) {
      if (opt.wald) {
        const Projection& p = evaluate_point(ctx_.point_reml(), 1);
        wald_at(p, df, out, ld);
        out[kLambdaReml * ld] = ctx_.point_lambda(ctx_.point_reml());
        out[kLoglReml * ld] = value(true, p, spec_.log1p);
      }
      if (opt.lrt) {
        const Projection& p = evaluate_point(ctx_.point_ml(), 1);
        out[kLambdaMle * ld] = ctx_.point_lambda(ctx_.point_ml());
        out[kLoglMle * ld] = value(false, p, spec_.log1p);
      }
      out[kEvaluations * ld] = 0;
      return;
    }
    scan_grid();
    if (opt.wald && flat_) {
      // lambda undetermined: beta, se, F and l_remle NaN (as GEMMA prints);
      // the REML value is the same at every lambda
      out[kLoglReml * ld] = bound_reml_[0];
    } else if (opt.wald) {
      const Optimum o = maximise(true);
      evaluations += o.evaluations;
      out[kLambdaReml * ld] = o.lambda;
      out[kLoglReml * ld] = o.logf;
      if (std::isfinite(o.lambda)) wald_at(at(o.lambda, 1), df, out, ld);
    }
    if (opt.lrt) {
      const Optimum o = maximise(false);
      evaluations += o.evaluations;
      out[kLambdaMle * ld] = o.lambda;
      out[kLoglMle * ld] = o.logf;
    }
    out[kEvaluations * ld] = evaluations;
  }

 private:
  // GEMMA's CalcRLWald at the projection's lambda.
  static void wald_at(const Projection& p, double df, double* out, Eigen::Index ld) {
    const double tau = df / p.P_yy;
    out[kBeta * ld] = p.P_xy / p.P_xx;
    out[kSe * ld] = std::sqrt(1.0 / (tau * p.P_xx));
    out[kFWald * ld] = (p.P_yy_split - p.P_yy) * tau;
  }

  // Products of x with W, x and y into out (n, m), columns ld_ apart.
  void products(const double* x, const double* W, const double* y, double* out) const {
    kernels::products_with(x, W, n_, n_, c_, out, ld_);
    kernels::products_with(x, x, n_, n_, 1, out + static_cast<size_t>(c_) * ld_, ld_);
    kernels::products_with(x, y, n_, n_, 1, out + static_cast<size_t>(c_ + 1) * ld_, ld_);
  }

  void load(const double* x, const double* xraw) {
    products(x, ctx_.W(), ctx_.y(), xp_.data());
    // log|V'V| of the alternative's vectors (lambda-free, for REML): of the
    // unwhitened vectors when the context is whitened.
    const double* plain = xp_.data();
    if (xraw != nullptr) {
      products(xraw, ctx_.whitened().W, ctx_.whitened().y, xraw_.data());
      plain = xraw_.data();
    }
    kernels::column_sums(plain, n_, ld_, m_, xs_.data());
    std::fill(S_.begin(), S_.begin() + m_ * m_, 0.0);
    ctx_.wy().scatter(ctx_.wy_plain(), 1, ctx_.to_alt(), m_, S_.data());
    scatter_x(xs_.data(), 1);
    logdet_gram_ = gram_logdet(S_.data(), m_);
    cached_lambda_ = NAN;
  }

  // Entry (x, b) of S_{k+1} from the x-column sums xs (kmax, m): the
  // complement adds to S_1 only (h = 1, g = 0 there).
  double x_entry(const double* xs, int k, int b) const {
    return xs[k * m_ + b] + (k == 0 ? xc_[b] : 0.0);
  }

  // x-column sums (kmax, m) into S: column x (index c) of each matrix.
  void scatter_x(const double* xs, int kmax) {
    for (int k = 0; k < kmax; ++k) {
      double* S = S_.data() + k * m_ * m_;
      for (int b = 0; b < m_; ++b) {
        // pair (x, b): x sits at index c
        const int a = std::min(c_, b), bb = std::max(c_, b);
        S[a * m_ + bb] = x_entry(xs, k, b);
      }
    }
  }

  // Projection at one of the context's fixed lambdas.
  const Projection& evaluate_point(int q, int kmax) {
    kernels::powered_sums(ctx_.point_w(q), ld_, n_, xp_.data(), ld_, m_, kmax, xs_.data());
    if (ctx_.options().reuse_covariate_levels) {
      // the SNP's entries as scatter_x() writes them, then only their recursion
      for (int k = 0; k < kmax; ++k)
        for (int b = 0; b < m_; ++b) xe_[k * m_ + b] = x_entry(xs_.data(), k, b);
      project_snp(ctx_.point_levels(q), xe_.data(), kmax, proj_, S_.data());
    } else {
      ctx_.wy().scatter(ctx_.point_wy_sums(q), kmax, ctx_.to_alt(), m_, S_.data());
      scatter_x(xs_.data(), kmax);
      project(S_.data(), m_, kmax, c_, proj_, false);
    }
    spec_ = ctx_.point_spec(q);
    cached_lambda_ = ctx_.point_lambda(q);
    cached_kmax_ = kmax;
    return proj_;
  }

  // Projection at any lambda, reusing the last one or a fixed point.
  const Projection& at(double lambda, int kmax) {
    if (lambda == cached_lambda_ && kmax <= cached_kmax_) return proj_;
    for (int q : {ctx_.point_reml(), ctx_.point_ml()})
      if (lambda == ctx_.point_lambda(q)) return evaluate_point(q, kmax);
    kernels::power_weights(ctx_.d(), lambda, n_, w_.data(), ld_, &spec_.sum_g, &spec_.sum_g2);
    spec_.log1p = NAN;  // computed on demand
    // the SNP's products and the covariate pairs in one pass where the
    // instruction set allows (the same sums as two calls)
    const PairGram& wy = ctx_.wy();
    kernels::powered_sums(w_.data(), ld_, n_, xp_.data(), ld_, m_, xs_.data(), wy.products(),
                          wy.ld(), wy.pairs(), wys_.data(), kmax);
    ctx_.add_wy_complement(wys_.data());
    wy.scatter(wys_.data(), kmax, ctx_.to_alt(), m_, S_.data());
    scatter_x(xs_.data(), kmax);
    project(S_.data(), m_, kmax, c_, proj_, false);
    cached_lambda_ = lambda;
    cached_kmax_ = kmax;
    return proj_;
  }

  double log1p_at_cached() {
    if (std::isnan(spec_.log1p))
      spec_.log1p = kernels::log1p_scaled_sum(ctx_.d(), cached_lambda_, n_);
    return spec_.log1p;
  }

  // The log-likelihood of p, the projection last computed (its pivots are
  // still in S_: projections here skip log|V'H^-1 V| until a REML value
  // needs it).
  double value(bool reml, const Projection& p, double log1p) const {
    if (!reml) return ml_loglik(double(N_), log1p, p);
    Projection q = p;
    q.logdet_P = pivot_logdet(S_.data(), m_);
    return reml_loglik(double(N_ - c_ - 1), log1p, logdet_gram_, q);
  }
  Derivatives derivatives(bool reml, double lambda, const Projection& p) const {
    return reml ? reml_derivatives(lambda, double(N_ - c_ - 1), spec_, p)
                : ml_derivatives(lambda, double(N_), spec_, p);
  }

  // dev1 on the grid for both criteria, and both criteria at the bounds.
  void scan_grid() {
    const int G = ctx_.n_grid();
    for (int g = 0; g < G; ++g) {
      const Projection& p = evaluate_point(g, 2);
      if (g == 0) flat_ = flat_reml(p);
      dev_reml_[g] = derivatives(true, ctx_.point_lambda(g), p).dev1;
      dev_ml_[g] = derivatives(false, ctx_.point_lambda(g), p).dev1;
      if (g == 0 || g == G - 1) {
        const int side = g == 0 ? 0 : 1;
        bound_reml_[side] = value(true, p, spec_.log1p);
        bound_ml_[side] = value(false, p, spec_.log1p);
      }
    }
    cached_lambda_ = NAN;
  }

  // Whether the alternative's REML is flat in lambda: after projecting out
  // W and x, P K P = 0 (K's columns inside span[W, x]: a rank-1 kinship v v'
  // and a SNP affine in v, clones and a family SNP), so tr(P K) = sum_g -
  // trace_TP is rounding at every lambda and the Wald test, taken at the REML
  // lambda, is whatever rounding makes it (it varied across recodings of one
  // SNP; GEMMA prints NaN).  Read at the grid's first point, where h ~ 1:
  // |tr(P K)| P_xx <= (N + 64) eps sum_g S1_xx, with S1_xx x's weighted sum
  // before the projection (P_xx / S1_xx ~ 1 - R^2 of x on W).  Real SNPs sit
  // 1e8 (simulations) to 1e11 (mouse_hs1940) times above it, degenerate ones
  // below 0.25 (helper 59).  Not where the null model is flat too.
  bool flat_reml(const Projection& p) const {
    if (ctx_.null_flat()) return false;
    const double sum_g = spec_.sum_g, s1_xx = x_entry(xs_.data(), 0, c_);
    // (past the collinear limit, 1 - R^2 ~ P_xx / S1_xx below 1e-11, the SNP
    // is untestable anyway: pvalues.COLLINEAR_1_MINUS_R2)
    if (!(sum_g > 0.0) || !(s1_xx > 0.0) || !(p.P_xx > 1e-11 * s1_xx)) return false;
    const double tr_pk = sum_g - p.trace_TP;
    return std::fabs(tr_pk) * p.P_xx <= ctx_.flat_tolerance() * sum_g * s1_xx;
  }

  Optimum maximise(bool reml) {
    const ScanOptions& opt = ctx_.options();
    const double start = reml ? ctx_.null().lambda_remle : ctx_.null().lambda_mle;
    const double* bounds = reml ? bound_reml_ : bound_ml_;
    return maximise_lambda(
        ctx_.grid(), reml ? dev_reml_.data() : dev_ml_.data(), start, opt.lambda,
        [&](double lam) { return derivatives(reml, lam, at(lam, 3)); },
        [&]() { return value(reml, proj_, log1p_at_cached()); },
        [&](int which) { return bounds[which]; });
  }

  const ScanContext& ctx_;
  Eigen::Index n_, N_, ld_;
  int c_, m_;
  kernels::AlignedVector xp_, xraw_, w_;  // (m, ld_), (m, ld_), (3, ld_)
  std::vector<double> xs_, xe_, xc_, wys_, S_, dev_reml_, dev_ml_;
  double bound_reml_[2] = {NAN, NAN}, bound_ml_[2] = {NAN, NAN};
  double logdet_gram_ = NAN;
  bool flat_ = false;  // this SNP's REML is flat in lambda (flat_reml)
  Projection proj_;
  SpectralSums spec_;
  double cached_lambda_ = NAN;
  int cached_kmax_ = 0;
};

// What scan_block throws when its caller's stop() said to stop.
struct Cancelled : std::runtime_error {
  Cancelled() : std::runtime_error("scan cancelled") {}
};

// Scan the b SNPs of UtX (k, b), column-major with leading dimension ldx,
// writing row j of `out` (b, kResultColumns), column-major with leading
// dimension ldo.  UtX is double, or float (a single-precision rotation): each
// float SNP is widened to double (exactly) before it is tested, so the
// statistics are those of the widened values.  With a complement, comp (m, b) column-major
// (leading dimension m) holds each SNP's x'(I - UU')v for v = W_0..W_{c-1}, x, y; otherwise
// comp is null.  A whitened context (Whitened) also needs the raw SNPs X (k, b), column-major
// with leading dimension ldr; otherwise X is null.  Runs on `threads` threads (>= 1); the
// result does not depend on the thread count.  Throws std::invalid_argument if a SNP has a
// non-finite entry (checked per SNP, in the threads).  stop (optional): asked
// by the calling thread every 50 ms while the threads work (the calling
// thread then only waits for them); once it returns true, the threads stop
// after their current SNPs and scan_block throws Cancelled, `out` partly
// written.  A block's tests can take minutes (hundreds of covariates): a
// caller that must answer a signal meanwhile asks it there.
template <typename Scalar>
inline void scan_block(const ScanContext& ctx, const Scalar* UtX, Eigen::Index ldx,
                       Eigen::Index b, const double* comp, double* out, Eigen::Index ldo,
                       int threads, const double* X = nullptr, Eigen::Index ldr = 0,
                       const std::function<bool()>* stop = nullptr) {
  static_assert(std::is_same_v<Scalar, double> || std::is_same_v<Scalar, float>,
                "UtX is double or float");
  if (ctx.has_complement() && comp == nullptr)
    throw std::invalid_argument("this scan needs the complement entries of each SNP");
  if (ctx.whitened().active() != (X != nullptr))
    throw std::invalid_argument("the raw SNPs go with whitened data, and only with them");
  threads = std::max(1, std::min<int>(threads, static_cast<int>((b + 15) / 16)));
  std::atomic<Eigen::Index> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&]() {
    try {
      SnpWorker worker(ctx);
      std::vector<double> widened(std::is_same_v<Scalar, float> ? ctx.n() : 0);
      constexpr Eigen::Index kChunk = 16;
      for (;;) {
        const Eigen::Index start = next.fetch_add(kChunk);
        if (start >= b) break;
        const Eigen::Index stop = std::min(b, start + kChunk);
        for (Eigen::Index j = start; j < stop; ++j) {
          const double* x;
          if constexpr (std::is_same_v<Scalar, double>) {
            x = UtX + j * ldx;
          } else {
            std::copy(UtX + j * ldx, UtX + j * ldx + ctx.n(), widened.begin());
            x = widened.data();
          }
          const double* xraw = X ? X + j * ldr : nullptr;
          if (!kernels::all_finite(x, ctx.n()) || (xraw && !kernels::all_finite(xraw, ctx.n())))
            throw std::invalid_argument("UtX must be finite");
          worker.run(x, comp ? comp + j * ctx.m() : nullptr, xraw, out + j, ldo);
        }
      }
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
      next.store(b);
    }
  };
  const bool polled = stop != nullptr && *stop;
  if (threads == 1 && !polled) {
    work();
  } else {
    std::mutex done_mutex;
    std::condition_variable done;
    int running = threads;
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&]() {
        work();
        std::lock_guard<std::mutex> lock(done_mutex);
        if (--running == 0) done.notify_one();
      });
    bool cancelled = false;
    if (polled) {
      std::unique_lock<std::mutex> lock(done_mutex);
      while (
          !done.wait_for(lock, std::chrono::milliseconds(50), [&]() { return running == 0; })) {
        if (cancelled) continue;
        lock.unlock();  // stop() may wait for its own locks (a Python caller's GIL)
        cancelled = (*stop)();
        if (cancelled) next.store(b);
        lock.lock();
      }
    }
    for (auto& th : pool) th.join();
    if (cancelled) throw Cancelled();  // (the signal before a SNP's error)
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace lmmscan

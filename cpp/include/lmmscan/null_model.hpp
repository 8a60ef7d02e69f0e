// The null model y = W a + g + e in the rotated basis: REML and ML lambda,
// variance components, pve and the covariate effects (reference section 7.1).
#pragma once

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <memory>
#include <stdexcept>
#include <vector>

#include "kernels.hpp"
#include "lambda_search.hpp"
#include "likelihood.hpp"

namespace lmmscan {

using RowMajorMatrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Element-wise products of every pair (a <= b) of the columns of V, and the
// weighted Gram matrices built from them.  V: (n, m) column-major.
class PairGram {
 public:
  PairGram(const double* V, Eigen::Index n, int m) : n_(n), ld_(kernels::padded(n)), m_(m) {
    for (int a = 0; a < m; ++a)
      for (int b = a; b < m; ++b) {
        pair_a_.push_back(a);
        pair_b_.push_back(b);
      }
    products_.resize(static_cast<size_t>(ld_) * pairs());
    for (int p = 0; p < pairs(); ++p) {
      const double* va = V + pair_a_[p] * n;
      const double* vb = V + pair_b_[p] * n;
      double* out = products_.data() + static_cast<size_t>(p) * ld_;
      for (Eigen::Index i = 0; i < n; ++i) out[i] = va[i] * vb[i];
    }
  }
  int m() const { return m_; }
  int pairs() const { return static_cast<int>(pair_a_.size()); }
  int pair_a(int p) const { return pair_a_[p]; }
  int pair_b(int p) const { return pair_b_[p]; }
  Eigen::Index n() const { return n_; }
  const double* products() const { return products_.data(); }
  Eigen::Index ld() const { return ld_; }  // the products' rows' stride (kernels::padded)

  // sums: (kmax, pairs()) of sum_i h_i g_i^(k-1) products_p(i); w: the rows
  // of kernels::power_weights, ldw apart.
  void weighted_sums(const double* w, Eigen::Index ldw, int kmax, double* sums) const {
    kernels::powered_sums(w, ldw, n_, products_.data(), ld_, pairs(), kmax, sums);
  }
  void plain_sums(double* sums) const {
    kernels::column_sums(products_.data(), n_, ld_, pairs(), sums);
  }
  // Scatter (kmax, pairs()) sums into kmax upper-triangular (m, m) matrices,
  // vector a of this set landing at index map[a] of a larger set of size M.
  void scatter(const double* sums, int kmax, const int* map, int M, double* S) const {
    for (int k = 0; k < kmax; ++k)
      for (int p = 0; p < pairs(); ++p)
        S[k * M * M + map[pair_a_[p]] * M + map[pair_b_[p]]] = sums[k * pairs() + p];
  }

 private:
  Eigen::Index n_, ld_;
  int m_;
  std::vector<int> pair_a_, pair_b_;
  kernels::AlignedVector products_;  // (pairs, ld_): one pair's products per row
};

struct NullFit {
  Eigen::Index n = 0;
  int c = 0;
  double trace_G = 0.0;  // mean eigenvalue
  // REML
  double lambda_remle = NAN, logl_remle = NAN;
  double vg = NAN, ve = NAN, pve = NAN, pve_se = NAN;
  Eigen::VectorXd beta, beta_se;
  // ML (ve with denominator n: the ML estimate lme4 and statsmodels report)
  double lambda_mle = NAN, logl_mle = NAN;
  double vg_mle = NAN, ve_mle = NAN;
  Eigen::VectorXd beta_mle, beta_se_mle;
  double yPy_remle = NAN, yPy_mle = NAN;  // P_yy at each lambda
  int evaluations = 0;
};

// The eigen-directions a model is evaluated on.  The first k directions carry
// the eigenvalues d (k,) and the rotated data; the other n - k directions
// (k < n: a low-rank kinship, or the within-group contrasts of K = D D')
// have eigenvalue 0, so every weight h there is 1 and they enter only
// through the complement Gram matrix C = V' (I - U U') V of the data vectors.
struct Complement {
  Eigen::Index n = 0;           // total samples (n >= k)
  const double* gram =
      nullptr; // (m, m) row-major C of the null vectors (W, y); null if n == k
};

// Evaluates the null model (vectors W, y) at any lambda.
class NullEvaluator {
 public:
  // d: (k,), UtW: (k, c) column-major, Uty: (k,); `comp` as above (comp.n = 0
  // means full rank, n = k).
  NullEvaluator(const double* d, const double* UtW, const double* Uty, Eigen::Index n, int c,
                const Complement& comp = {})
      : d_(d),
        n_(n),
        N_(comp.n > 0 ? comp.n : n),
        c_(c),
        m_(c + 1),
        V_(static_cast<size_t>(n) * (c + 1)),
        C_(static_cast<size_t>(c + 1) * (c + 1), 0.0) {
    if (N_ < n_) throw std::invalid_argument("complement: total samples below the rank");
    if (comp.gram != nullptr) std::copy(comp.gram, comp.gram + C_.size(), C_.begin());
    std::copy(UtW, UtW + n * c, V_.begin());
    std::copy(Uty, Uty + n, V_.begin() + n * c);
    gram_ = std::make_unique<PairGram>(V_.data(), n, m_);
    w_.resize(3 * static_cast<size_t>(kernels::padded(n)));
    sums_.resize(3 * gram_->pairs());
    S_.assign(3 * m_ * m_, 0.0);
    identity_.resize(m_);
    for (int a = 0; a < m_; ++a) identity_[a] = a;
    std::vector<double> plain(gram_->pairs());
    gram_->plain_sums(plain.data());
    std::vector<double> G(m_ * m_, 0.0);
    gram_->scatter(plain.data(), 1, identity_.data(), m_, G.data());
    add_complement(G.data());
    logdet_gram_ = gram_logdet(G.data(), m_);
  }

  // S_1 += C (upper triangle): h = 1 and g = d h = 0 on the complement, so
  // it adds to S_1 only.
  void add_complement(double* S) const {
    for (int a = 0; a < m_; ++a)
      for (int b = a; b < m_; ++b) S[a * m_ + b] += C_[a * m_ + b];
  }

  // Full evaluation at lambda; results kept as the "last" point.
  const Projection& evaluate(double lambda, int kmax) {
    kernels::power_weights(d_, lambda, n_, w_.data(), ldw(), &spec_.sum_g, &spec_.sum_g2);
    gram_->weighted_sums(w_.data(), ldw(), kmax, sums_.data());
    gram_->scatter(sums_.data(), kmax, identity_.data(), m_, S_.data());
    add_complement(S_.data());
    project(S_.data(), m_, kmax, -1, proj_);
    spec_.log1p = kernels::log1p_scaled_sum(d_, lambda, n_);
    lambda_ = lambda;
    return proj_;
  }
  // S_1 after the last evaluation is overwritten by the projection; this
  // recomputes the (c, c) block W'H^-1 W and W'H^-1 y at lambda.
  void gls(double lambda, Eigen::MatrixXd& WHW, Eigen::VectorXd& WHy) {
    double sum_g, sum_g2;
    kernels::power_weights(d_, lambda, n_, w_.data(), ldw(), &sum_g, &sum_g2);
    gram_->weighted_sums(w_.data(), ldw(), 1, sums_.data());
    WHW.resize(c_, c_);
    WHy.resize(c_);
    for (int p = 0; p < gram_->pairs(); ++p) {
      const int a = gram_->pair_a(p), b = gram_->pair_b(p);
      if (b < c_) {
        WHW(a, b) = WHW(b, a) = sums_[p] + C_[a * m_ + b];
      } else if (a < c_) {
        WHy(a) = sums_[p] + C_[a * m_ + b];
      }
    }
  }

  double ml(const Projection& p) const { return ml_loglik(double(N_), spec_.log1p, p); }
  double reml(const Projection& p) const {
    return reml_loglik(double(N_ - c_), spec_.log1p, logdet_gram_, p);
  }
  Derivatives ml_dev(const Projection& p) const {
    return ml_derivatives(lambda_, double(N_), spec_, p);
  }
  Derivatives reml_dev(const Projection& p) const {
    return reml_derivatives(lambda_, double(N_ - c_), spec_, p);
  }
  Eigen::Index total() const { return N_; }
  double lambda() const { return lambda_; }
  const Projection& last() const { return proj_; }

 private:
  const double* d_;
  Eigen::Index n_, N_;
  int c_, m_;
  std::vector<double> V_, C_;
  Eigen::Index ldw() const { return kernels::padded(n_); }

  std::unique_ptr<PairGram> gram_;
  kernels::AlignedVector w_;  // (3, ldw()): the weights at the last lambda
  std::vector<double> sums_, S_;
  std::vector<int> identity_;
  double logdet_gram_ = 0.0;
  Projection proj_;
  SpectralSums spec_;
  double lambda_ = NAN;
};

// d: (k,) eigenvalues (already zeroed below 1e-10), UtW: (k, c) column-major,
// Uty: (k,), comp: the zero-eigenvalue complement (default: none, k = n).
// Requires n > c + 1 and c >= 1.
inline NullFit fit_null(const double* d, const double* UtW, const double* Uty, Eigen::Index k,
                        int c, const LambdaOptions& opt, const Complement& comp = {}) {
  if (c < 1)
    throw std::invalid_argument("at least one covariate column (the intercept) is needed");
  NullEvaluator ev(d, UtW, Uty, k, c, comp);
  const Eigen::Index n = ev.total();
  if (n < c + 2) throw std::invalid_argument("fewer samples than covariates + 2");
  NullFit fit;
  fit.n = n;
  fit.c = c;
  double sum_d = 0.0;
  for (Eigen::Index i = 0; i < k; ++i) sum_d += d[i];
  fit.trace_G = sum_d / double(n);

  const std::vector<double> grid = lambda_grid(opt);
  std::vector<double> dev_reml(grid.size()), dev_ml(grid.size());
  double bounds_reml[2], bounds_ml[2];
  for (size_t g = 0; g < grid.size(); ++g) {
    const Projection& p = ev.evaluate(grid[g], 2);
    dev_reml[g] = ev.reml_dev(p).dev1;
    dev_ml[g] = ev.ml_dev(p).dev1;
    if (g == 0 || g + 1 == grid.size()) {
      bounds_reml[g == 0 ? 0 : 1] = ev.reml(p);
      bounds_ml[g == 0 ? 0 : 1] = ev.ml(p);
    }
  }
  auto run = [&](const std::vector<double>& dev, const double* bounds, bool reml) {
    return maximise_lambda(
        grid, dev.data(), NAN, opt,
        [&](double lam) {
          const Projection& p = ev.evaluate(lam, 3);
          return reml ? ev.reml_dev(p) : ev.ml_dev(p);
        },
        [&]() { return reml ? ev.reml(ev.last()) : ev.ml(ev.last()); },
        [&](int which) { return bounds[which]; });
  };
  const Optimum reml = run(dev_reml, bounds_reml, true);
  const Optimum ml = run(dev_ml, bounds_ml, false);
  fit.lambda_remle = reml.lambda;
  fit.logl_remle = reml.logf;
  fit.lambda_mle = ml.lambda;
  fit.logl_mle = ml.logf;
  fit.evaluations = reml.evaluations + ml.evaluations + 2 * static_cast<int>(grid.size());

  auto components = [&](double lambda, double denom, double& yPy, double& vg, double& ve,
                        Eigen::VectorXd& beta, Eigen::VectorXd& se) {
    const Projection& p = ev.evaluate(lambda, 1);
    yPy = p.P_yy;
    ve = p.P_yy / denom;
    vg = lambda * ve;
    Eigen::MatrixXd WHW;
    Eigen::VectorXd WHy;
    ev.gls(lambda, WHW, WHy);
    // Solved scaled to a unit diagonal: FullPivLU takes a pivot below eps
    // times the largest as zero, and covariates whose scales differ by 1e8
    // (x * 1e8 beside the intercept) gave the intercept beta = se = 0.
    const Eigen::VectorXd d = WHW.diagonal().cwiseSqrt().cwiseInverse();
    Eigen::FullPivLU<Eigen::MatrixXd> lu(d.asDiagonal() * WHW * d.asDiagonal());
    beta = d.cwiseProduct(lu.solve(d.cwiseProduct(WHy)));
    se = (ve * d.array().square() * lu.inverse().diagonal().array()).sqrt();
  };
  if (std::isfinite(fit.lambda_remle))
    components(fit.lambda_remle, double(n - c), fit.yPy_remle, fit.vg, fit.ve, fit.beta,
               fit.beta_se);
  if (std::isfinite(fit.lambda_mle))
    components(fit.lambda_mle, double(n), fit.yPy_mle, fit.vg_mle, fit.ve_mle, fit.beta_mle,
               fit.beta_se_mle);
  if (std::isfinite(fit.lambda_remle)) {
    const double lam = fit.lambda_remle;
    const Projection& p = ev.evaluate(lam, 3);
    const double dev2 = ev.reml_dev(p).dev2;
    const double se_lambda = gemma_safe_sqrt(-1.0 / dev2);
    const double t = fit.trace_G;
    fit.pve = t * lam / (t * lam + 1.0);
    fit.pve_se = t / ((t * lam + 1.0) * (t * lam + 1.0)) * se_lambda;
  }
  return fit;
}

}  // namespace lmmscan

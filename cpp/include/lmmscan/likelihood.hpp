// The likelihood of the spectral LMM from weighted Gram matrices, following
// GEMMA 0.98.5's definitions (shared/reference/gemma-lmm-0.98.5.md, section 4).
//
// Setting: after rotation by the eigenvectors of K, the covariance of y is
// ve * diag(lambda d_i + 1).  With h_i = 1 / (lambda d_i + 1) and index vectors
// v_0 .. v_{m-1} (covariates, then optionally the SNP, the phenotype last),
// the weighted Gram matrices are S_k[a][b] = sum_i h_i^k v_ai v_bi, k = 1..3.
// Projecting out v_0 .. v_{j-1} one at a time (a Gram-Schmidt recursion)
// gives P = v_a' P_j v_b, PP = v_a' P_j P_j v_b and PPP = v_a' P_j^3 v_b, from
// which every log-likelihood, derivative and test statistic follows.
#pragma once

#include <cmath>
#include <vector>

namespace lmmscan {

// What one projection yields.  Pivots are taken just before projecting each
// of the first nc = m - 1 vectors; "yy" entries are at level nc.
struct Projection {
  double logdet_P = 0.0;    // sum_j log P_j[j][j]            (log|V'H^-1 V|)
  double trace_QP = 0.0;    // sum_j PP_j[j][j] / P_j[j][j]
  double trace_QQ_R = 0.0;  // sum_j (PP/P)^2 - 2 PPP/P at the pivots
  double P_yy = 0.0, Q_yy = 0.0, R_yy = 0.0;
  // At level `split` (before projecting vector `split`, the SNP): the GLS
  // quantities of the SNP adjusted for the covariates.
  double P_xx = 0.0, P_xy = 0.0, P_yy_split = 0.0;
};

// In-place GEMMA projection recursion.
//   S: (3, m, m) upper triangles (row-major a*m+b, a <= b) of S_1, S_2, S_3;
//      overwritten.  kmax in 1..3 says which of S_1..S_kmax are meaningful
//      (PP needs k >= 2, PPP needs k = 3).
//   split: index of the SNP vector (its level-`split` entries with the last
//      vector are recorded), or -1.
inline void project(double* S, int m, int kmax, int split, Projection& out) {
  double* P = S;
  double* Q = S + m * m;
  double* R = S + 2 * m * m;
  const int nc = m - 1;
  out.logdet_P = out.trace_QP = out.trace_QQ_R = 0.0;
  for (int w = 0; w < nc; ++w) {
    if (w == split) {
      out.P_xx = P[w * m + w];
      out.P_xy = P[w * m + nc];
      out.P_yy_split = P[nc * m + nc];
    }
    const double pw = P[w * m + w];
    out.logdet_P += std::log(pw);
    if (kmax >= 2) {
      const double qw = Q[w * m + w];
      out.trace_QP += qw / pw;
      if (kmax >= 3) out.trace_QQ_R += qw * qw / (pw * pw) - 2.0 * R[w * m + w] / pw;
    }
    if (pw == 0.0) continue;  // GEMMA: an all-zero vector leaves the rest as it is
    const double qw = kmax >= 2 ? Q[w * m + w] : 0.0;
    const double rw = kmax >= 3 ? R[w * m + w] : 0.0;
    for (int a = w + 1; a < m; ++a) {
      const double pa = P[w * m + a];
      const double qa = kmax >= 2 ? Q[w * m + a] : 0.0;
      const double ra = kmax >= 3 ? R[w * m + a] : 0.0;
      for (int b = a; b < m; ++b) {
        const double pb = P[w * m + b];
        const int ab = a * m + b;
        P[ab] -= pa * pb / pw;
        if (kmax >= 2) {
          const double qb = Q[w * m + b];
          Q[ab] += pa * pb * qw / (pw * pw) - (pa * qb + pb * qa) / pw;
          if (kmax >= 3) {
            const double rb = R[w * m + b];
            R[ab] += -pa * pb * qw * qw / (pw * pw * pw) - (pa * rb + pb * ra + qa * qb) / pw +
                     (pa * qb * qw + pb * qa * qw + pa * pb * rw) / (pw * pw);
          }
        }
      }
    }
  }
  out.P_yy = P[nc * m + nc];
  out.Q_yy = kmax >= 2 ? Q[nc * m + nc] : 0.0;
  out.R_yy = kmax >= 3 ? R[nc * m + nc] : 0.0;
  // GEMMA 0.98.5 guards only an exact zero.
  if (out.P_yy == 0.0) out.P_yy = 1e-8;
}

// Sum of log pivots of the unweighted Gram matrix (h = 1): log|V'V|.
// G: (m, m) upper triangle, overwritten.
inline double gram_logdet(double* G, int m) {
  const int nc = m - 1;
  double logdet = 0.0;
  for (int w = 0; w < nc; ++w) {
    const double pw = G[w * m + w];
    logdet += std::log(pw);
    if (pw == 0.0) continue;
    for (int a = w + 1; a < m; ++a)
      for (int b = a; b < m; ++b) G[a * m + b] -= G[w * m + a] * G[w * m + b] / pw;
  }
  return logdet;
}

constexpr double kLog2Pi = 1.8378770664093454836;

// lambda-dependent but data-free sums over the eigenvalues.
struct SpectralSums {
  double sum_h = 0.0, sum_h2 = 0.0;  // sum_i h_i, sum_i h_i^2
  double log1p = 0.0;                // sum_i log(1 + lambda d_i); NaN if not needed
};

// Profile log-likelihood (ML), GEMMA's LogL_f.
inline double ml_loglik(double n, double log1p_sum, const Projection& p) {
  return 0.5 * n * (std::log(n) - kLog2Pi - 1.0) - 0.5 * log1p_sum - 0.5 * n * std::log(p.P_yy);
}

// Restricted log-likelihood (REML) including +1/2 log|V'V|, GEMMA's LogRL_f.
// df = n - (number of fixed effects), logdet_gram = log|V'V|.
inline double reml_loglik(double df, double log1p_sum, double logdet_gram,
                          const Projection& p) {
  return 0.5 * df * (std::log(df) - kLog2Pi - 1.0) - 0.5 * log1p_sum -
         0.5 * (p.logdet_P - logdet_gram) - 0.5 * df * std::log(p.P_yy);
}

struct Derivatives {
  double dev1 = NAN, dev2 = NAN;  // d/dlambda and d^2/dlambda^2 of the log-likelihood
};

// GEMMA's LogL_dev12 (ML) and LogRL_dev12 (REML).  Needs a projection with
// kmax >= 2 for dev1 and kmax = 3 for dev2.
inline Derivatives ml_derivatives(double lambda, double n, const SpectralSums& s,
                                  const Projection& p) {
  const double tr_HK = (n - s.sum_h) / lambda;
  const double tr_HKHK = (n + s.sum_h2 - 2.0 * s.sum_h) / (lambda * lambda);
  const double yPKPy = (p.P_yy - p.Q_yy) / lambda;
  const double yPKPKPy = (p.P_yy + p.R_yy - 2.0 * p.Q_yy) / (lambda * lambda);
  Derivatives d;
  d.dev1 = -0.5 * tr_HK + 0.5 * n * yPKPy / p.P_yy;
  d.dev2 = 0.5 * tr_HKHK -
           0.5 * n * (2.0 * yPKPKPy * p.P_yy - yPKPy * yPKPy) / (p.P_yy * p.P_yy);
  return d;
}

inline Derivatives reml_derivatives(double lambda, double df, const SpectralSums& s,
                                    const Projection& p) {
  const double trace_P = s.sum_h - p.trace_QP;
  const double trace_PP = s.sum_h2 + p.trace_QQ_R;
  const double tr_PK = (df - trace_P) / lambda;
  const double tr_PKPK = (df + trace_PP - 2.0 * trace_P) / (lambda * lambda);
  const double yPKPy = (p.P_yy - p.Q_yy) / lambda;
  const double yPKPKPy = (p.P_yy + p.R_yy - 2.0 * p.Q_yy) / (lambda * lambda);
  Derivatives d;
  d.dev1 = -0.5 * tr_PK + 0.5 * df * yPKPy / p.P_yy;
  d.dev2 = 0.5 * tr_PKPK -
           0.5 * df * (2.0 * yPKPKPy * p.P_yy - yPKPy * yPKPy) / (p.P_yy * p.P_yy);
  return d;
}

// GEMMA's safe_sqrt as shipped in 0.98.5: any d < 0.001 (negative included)
// is replaced by |d| before the square root.  Kept so se(pve) matches.
inline double gemma_safe_sqrt(double d) { return std::sqrt(d < 0.001 ? std::fabs(d) : d); }

}  // namespace lmmscan

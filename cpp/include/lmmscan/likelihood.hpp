// The likelihood of the spectral LMM from weighted Gram matrices, following
// GEMMA 0.98.5's definitions (shared/reference/gemma-lmm-0.98.5.md, section 4).
//
// Setting: after rotation by the eigenvectors of K, the covariance of y is
// ve * diag(lambda d_i + 1).  With h_i = 1 / (lambda d_i + 1), g_i = d_i h_i
// and index vectors v_0 .. v_{m-1} (covariates, then optionally the SNP, the
// phenotype last), the weighted Gram matrices are
//   S_1[a][b] = sum_i h_i v_ai v_bi           (v_a' H^-1 v_b)
//   S_2[a][b] = sum_i h_i g_i v_ai v_bi       (v_a' H^-1 K H^-1 v_b)
//   S_3[a][b] = sum_i h_i g_i^2 v_ai v_bi     (v_a' H^-1 K H^-1 K H^-1 v_b).
// Projecting out v_0 .. v_{j-1} one at a time (a Gram-Schmidt recursion)
// gives P = v_a' P_j v_b, T = v_a' P_j K P_j v_b and T2 = v_a' P_j K P_j K P_j
// v_b, from which every log-likelihood, derivative and test statistic
// follows.
//
// GEMMA (reference 4.3, 4.7) runs the same recursion on powers of h (PP =
// P P, PPP = P P P) and forms P K P as (P - PP) / lambda, which cancels
// catastrophically for small lambda (its derivatives are noise below about
// 1e-3).  Since P_j H P_j = P_j, P - PP = lambda P K P exactly, and the
// recursion has the same form for P K P as for P P, so working with the
// weights g gives GEMMA's quantities without the cancellation.
#pragma once

#include <cmath>
#include <vector>

namespace lmmscan {

// What one projection yields.  Pivots are taken just before projecting each
// of the first nc = m - 1 vectors; "yy" entries are at level nc.
struct Projection {
  double logdet_P = 0.0;     // sum_j log P_j[j][j]            (log|V'H^-1 V|)
  double trace_TP = 0.0;     // sum_j T_j[j][j] / P_j[j][j]
  double trace_TT_T2 = 0.0;  // sum_j (T/P)^2 - 2 T2/P at the pivots
  double P_yy = 0.0, T_yy = 0.0, T2_yy = 0.0;
  // At level `split` (before projecting vector `split`, the SNP): the GLS
  // quantities of the SNP adjusted for the covariates.
  double P_xx = 0.0, P_xy = 0.0, P_yy_split = 0.0;
};

// logdet_P = sum_w log P_w[w][w] of the projection project() left in S:
// level w never changes its own pivot P[w][w], so the pivots stay on S_1's
// diagonal and the sum can be taken after the projection (project() takes it
// there too), at any time until S is overwritten.
inline double pivot_logdet(const double* S, int m) {
  double logdet = 0.0;
  for (int w = 0; w < m - 1; ++w) logdet += std::log(S[w * m + w]);
  return logdet;
}

// The projection recursion below runs in two ways (project(), and
// covariate_levels() + project_snp()) that must give the same bits.  GCC
// contracts a * b + c into a fused multiply-add across statements where the
// target has one (aarch64; x86-64 from v3), and where project_snp() passes
// one value as both operands it may first fold a * b + a * b into 2 (a * b):
// the two ways would then round differently.  So no contraction here, with
// GCC; Clang contracts only within one expression, the same in both.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif

namespace detail {
// Level w's terms of the traces (pivots pw, qw, rw of P, T, T2).
inline void add_level_traces(double pw, double qw, double rw, int kmax, Projection& out) {
  if (kmax >= 2) {
    out.trace_TP += qw / pw;
    if (kmax >= 3) out.trace_TT_T2 += qw * qw / (pw * pw) - 2.0 * rw / pw;
  }
}

// Level w's update of entry (a, b), a <= b: pa, qa, ra are row w's entries
// (w, a) of P, T, T2, and pb, qb, rb its entries (w, b).
inline void update_entry(double pa, double pb, double qa, double qb, double ra, double rb,
                         double pw, double qw, double rw, int kmax, double& P, double& Q,
                         double& R) {
  P -= pa * pb / pw;
  if (kmax >= 2) {
    Q += pa * pb * qw / (pw * pw) - (pa * qb + pb * qa) / pw;
    if (kmax >= 3)
      R += -pa * pb * qw * qw / (pw * pw * pw) - (pa * rb + pb * ra + qa * qb) / pw +
           (pa * qb * qw + pb * qa * qw + pa * pb * rw) / (pw * pw);
  }
}
}  // namespace detail

// In-place GEMMA projection recursion.
//   S: (3, m, m) upper triangles (row-major a*m+b, a <= b) of S_1, S_2, S_3;
//      overwritten.  kmax in 1..3 says which of S_1..S_kmax are meaningful
//      (T needs k >= 2, T2 needs k = 3).
//   split: index of the SNP vector (its level-`split` entries with the last
//      vector are recorded), or -1.
//   logdet: whether to sum log|V'H^-1 V| (a logarithm per pivot, only the
//      REML value needs it); if not, logdet_P is NaN and pivot_logdet(S, m)
//      gives it later.
// Level w reads only row w, which no later level changes: after the
// recursion, row w of S holds the entries level w used.
inline void project(double* S, int m, int kmax, int split, Projection& out,
                    bool logdet = true) {
  double* P = S;
  double* Q = S + m * m;      // T = P K P
  double* R = S + 2 * m * m;  // T2 = P K P K P
  const int nc = m - 1;
  out.trace_TP = out.trace_TT_T2 = 0.0;
  for (int w = 0; w < nc; ++w) {
    if (w == split) {
      out.P_xx = P[w * m + w];
      out.P_xy = P[w * m + nc];
      out.P_yy_split = P[nc * m + nc];
    }
    const double pw = P[w * m + w];
    const double qw = kmax >= 2 ? Q[w * m + w] : 0.0;
    const double rw = kmax >= 3 ? R[w * m + w] : 0.0;
    detail::add_level_traces(pw, qw, rw, kmax, out);
    if (pw == 0.0) continue;  // GEMMA: an all-zero vector leaves the rest as it is
    for (int a = w + 1; a < m; ++a) {
      const double pa = P[w * m + a];
      const double qa = kmax >= 2 ? Q[w * m + a] : 0.0;
      const double ra = kmax >= 3 ? R[w * m + a] : 0.0;
      for (int b = a; b < m; ++b) {
        const int ab = a * m + b;
        detail::update_entry(pa, P[w * m + b], qa, kmax >= 2 ? Q[w * m + b] : 0.0, ra,
                             kmax >= 3 ? R[w * m + b] : 0.0, pw, qw, rw, kmax, P[ab], Q[ab],
                             R[ab]);
      }
    }
  }
  out.P_yy = P[nc * m + nc];
  out.T_yy = kmax >= 2 ? Q[nc * m + nc] : 0.0;
  out.T2_yy = kmax >= 3 ? R[nc * m + nc] : 0.0;
  // GEMMA 0.98.5 guards only an exact zero.
  if (out.P_yy == 0.0) out.P_yy = 1e-8;
  out.logdet_P = logdet ? pivot_logdet(S, m) : NAN;
}

// project() of the vectors (W_0 .. W_{c-1}, x, y) in two parts, for many SNPs
// at one lambda.  The entries among the covariates and y never involve the
// SNP x, so their recursion is run once (CovariateLevels, shared by every
// SNP); per SNP, project_snp() runs only the entries with x: O(c) per level
// instead of O(c^2).  Every entry is computed by the same operations in the
// same order as project(), so the Projection is bit for bit project()'s.
struct CovariateLevels {
  int c = 0;
  std::vector<double> S;  // (3, m, m), m = c + 2: project()'s S with the x entries zero
  double trace_TP = 0.0, trace_TT_T2 = 0.0;  // the covariate levels' terms, in order
};

// S: (3, m, m) upper triangles of the covariate and phenotype sums (vector
// c, the SNP, may hold anything: it is zeroed); all three powers.
inline CovariateLevels covariate_levels(const double* S, int c) {
  const int m = c + 2;
  CovariateLevels cov;
  cov.c = c;
  cov.S.assign(S, S + 3 * m * m);
  for (int k = 0; k < 3; ++k)
    for (int a = 0; a < m; ++a) {
      double* row = cov.S.data() + k * m * m + a * m;
      if (a <= c) row[c] = 0.0;
      if (a == c) row[c + 1] = 0.0;
    }
  Projection all;
  project(cov.S.data(), m, 3, c, all, false);  // x's pivot is zero: level c changes nothing
  const double* P = cov.S.data();
  Projection t;
  for (int w = 0; w < c; ++w)
    detail::add_level_traces(P[w * m + w], P[m * m + w * m + w], P[2 * m * m + w * m + w], 3,
                             t);
  cov.trace_TP = t.trace_TP;
  cov.trace_TT_T2 = t.trace_TT_T2;
  return cov;
}

// The SNP's part of project() at the covariates' lambda.  xe: (3, m) the
// entries (b, x) of S_1, S_2, S_3 for b = 0..m-1 (b < c: the pair (W_b, x);
// b = c: (x, x); b = c + 1: (x, y)), of which the first kmax rows are
// meaningful; overwritten.  S1: an (m, m) matrix whose diagonal receives the
// pivots of S_1 (what pivot_logdet() reads); nothing else of it is written.
inline void project_snp(const CovariateLevels& cov, double* xe, int kmax, Projection& out,
                        double* S1) {
  const int c = cov.c, m = c + 2;
  const double* P = cov.S.data();
  const double* Q = P + m * m;
  const double* R = P + 2 * m * m;
  double* xP = xe;
  double* xQ = xe + m;
  double* xR = xe + 2 * m;
  for (int w = 0; w < c; ++w) {
    const double pw = P[w * m + w];
    S1[w * m + w] = pw;
    if (pw == 0.0) continue;
    const double qw = kmax >= 2 ? Q[w * m + w] : 0.0;
    const double rw = kmax >= 3 ? R[w * m + w] : 0.0;
    const double px = xP[w], qx = kmax >= 2 ? xQ[w] : 0.0, rx = kmax >= 3 ? xR[w] : 0.0;
    for (int a = w + 1; a < c; ++a)  // (W_a, x)
      detail::update_entry(P[w * m + a], px, kmax >= 2 ? Q[w * m + a] : 0.0, qx,
                           kmax >= 3 ? R[w * m + a] : 0.0, rx, pw, qw, rw, kmax, xP[a], xQ[a],
                           xR[a]);
    detail::update_entry(px, px, qx, qx, rx, rx, pw, qw, rw, kmax, xP[c], xQ[c],
                         xR[c]);  // (x, x)
    detail::update_entry(px, P[w * m + c + 1], qx, kmax >= 2 ? Q[w * m + c + 1] : 0.0, rx,
                         kmax >= 3 ? R[w * m + c + 1] : 0.0, pw, qw, rw, kmax, xP[c + 1],
                         xQ[c + 1], xR[c + 1]);  // (x, y)
  }
  // level c: the SNP
  const int yy = (c + 1) * m + c + 1;
  out.P_xx = xP[c];
  out.P_xy = xP[c + 1];
  out.P_yy_split = P[yy];
  out.trace_TP = kmax >= 2 ? cov.trace_TP : 0.0;
  out.trace_TT_T2 = kmax >= 3 ? cov.trace_TT_T2 : 0.0;
  const double pw = xP[c];
  const double qw = kmax >= 2 ? xQ[c] : 0.0;
  const double rw = kmax >= 3 ? xR[c] : 0.0;
  S1[c * m + c] = pw;
  detail::add_level_traces(pw, qw, rw, kmax, out);
  double Pyy = P[yy], Qyy = Q[yy], Ryy = R[yy];
  if (pw != 0.0) {
    const double py = xP[c + 1], qy = kmax >= 2 ? xQ[c + 1] : 0.0,
                 ry = kmax >= 3 ? xR[c + 1] : 0.0;
    detail::update_entry(py, py, qy, qy, ry, ry, pw, qw, rw, kmax, Pyy, Qyy, Ryy);
  }
  out.P_yy = Pyy;
  out.T_yy = kmax >= 2 ? Qyy : 0.0;
  out.T2_yy = kmax >= 3 ? Ryy : 0.0;
  if (out.P_yy == 0.0) out.P_yy = 1e-8;  // as project()
  out.logdet_P = NAN;
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

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
  double sum_g = 0.0, sum_g2 = 0.0;  // tr(H^-1 K) = sum_i g_i, tr((H^-1 K)^2) = sum_i g_i^2
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

// GEMMA's LogL_dev12 (ML) and LogRL_dev12 (REML), in the cancellation-free
// form (yPKPy = T_yy, yPKPKPy = T2_yy, tr(PK) and tr(PKPK) from g).  Needs a
// projection with kmax >= 2 for dev1 and kmax = 3 for dev2.  lambda is unused
// but kept so the signature says at which lambda the projection was taken.
inline Derivatives ml_derivatives(double /*lambda*/, double n, const SpectralSums& s,
                                  const Projection& p) {
  Derivatives d;
  d.dev1 = -0.5 * s.sum_g + 0.5 * n * p.T_yy / p.P_yy;
  d.dev2 =
      0.5 * s.sum_g2 - 0.5 * n * (2.0 * p.T2_yy * p.P_yy - p.T_yy * p.T_yy) / (p.P_yy * p.P_yy);
  return d;
}

inline Derivatives reml_derivatives(double /*lambda*/, double df, const SpectralSums& s,
                                    const Projection& p) {
  const double tr_PK = s.sum_g - p.trace_TP;
  const double tr_PKPK = s.sum_g2 + p.trace_TT_T2;
  Derivatives d;
  d.dev1 = -0.5 * tr_PK + 0.5 * df * p.T_yy / p.P_yy;
  d.dev2 =
      0.5 * tr_PKPK - 0.5 * df * (2.0 * p.T2_yy * p.P_yy - p.T_yy * p.T_yy) / (p.P_yy * p.P_yy);
  return d;
}

// GEMMA's safe_sqrt as shipped in 0.98.5: any d < 0.001 (negative included)
// is replaced by |d| before the square root.  Kept so se(pve) matches.
inline double gemma_safe_sqrt(double d) { return std::sqrt(d < 0.001 ? std::fabs(d) : d); }

}  // namespace lmmscan

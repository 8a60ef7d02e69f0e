// Hot loops over the n samples. Everything else in the core is O(m^3) work on
// tiny matrices; these loops are where a scan spends its time.
//
// The wheel is built with portable x86-64 flags; on GCC/x86-64 each loop is
// also compiled for x86-64-v3 (AVX2 + FMA) and the best clone is picked at
// load time (target_clones), so no -march=native is needed.
#pragma once

#include <cmath>
#include <cstddef>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    !defined(LMMSCAN_NO_CLONES)
#define LMMSCAN_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define LMMSCAN_CLONES
#endif

namespace lmmscan::kernels {

using Index = std::ptrdiff_t;

// h_i = 1 / (lambda d_i + 1) and g_i = d_i h_i.  d, h, g: (n,); may not alias.
LMMSCAN_CLONES static void inverse_weights(const double* d, double lambda, Index n, double* h,
                                           double* g) {
#pragma omp simd
  for (Index i = 0; i < n; ++i) {
    h[i] = 1.0 / (lambda * d[i] + 1.0);
    g[i] = d[i] * h[i];
  }
}

// Weighted column sums.  h, g: (n,), P: (n, s) column-major with leading
// dimension ld.  For column j, with k = 1..kmax (kmax in 1..3):
//   out[j] = sum_i h_i P_ij,  out[s + j] = sum_i h_i g_i P_ij,
//   out[2s + j] = sum_i h_i g_i^2 P_ij.
LMMSCAN_CLONES static void powered_sums(const double* h, const double* g, const double* P,
                                        Index n, Index ld, int s, int kmax, double* out) {
  for (int j = 0; j < s; ++j) {
    const double* p = P + j * ld;
    double a1 = 0.0, a2 = 0.0, a3 = 0.0;
    if (kmax == 1) {
#pragma omp simd reduction(+ : a1)
      for (Index i = 0; i < n; ++i) a1 += h[i] * p[i];
    } else if (kmax == 2) {
#pragma omp simd reduction(+ : a1, a2)
      for (Index i = 0; i < n; ++i) {
        const double q = h[i] * p[i];
        a1 += q;
        a2 += q * g[i];
      }
    } else {
#pragma omp simd reduction(+ : a1, a2, a3)
      for (Index i = 0; i < n; ++i) {
        const double q = h[i] * p[i];
        const double q2 = q * g[i];
        a1 += q;
        a2 += q2;
        a3 += q2 * g[i];
      }
    }
    out[j] = a1;
    if (kmax >= 2) out[s + j] = a2;
    if (kmax >= 3) out[2 * s + j] = a3;
  }
}

// sum_i g_i and sum_i g_i^2 (g = d h): tr(H^-1 K) and tr(H^-1 K H^-1 K).
LMMSCAN_CLONES static void weight_moments(const double* g, Index n, double* sum_g,
                                          double* sum_g2) {
  double a1 = 0.0, a2 = 0.0;
#pragma omp simd reduction(+ : a1, a2)
  for (Index i = 0; i < n; ++i) {
    a1 += g[i];
    a2 += g[i] * g[i];
  }
  *sum_g = a1;
  *sum_g2 = a2;
}

// Column sums of P (n, s) and products of column `x` with every column:
// used for the lambda-free Gram entries.
LMMSCAN_CLONES static void column_sums(const double* P, Index n, Index ld, int s,
                                       double* out) {
  for (int j = 0; j < s; ++j) {
    const double* p = P + j * ld;
    double a = 0.0;
#pragma omp simd reduction(+ : a)
    for (Index i = 0; i < n; ++i) a += p[i];
    out[j] = a;
  }
}

// Element-wise products out[:, j] = x * V[:, j] for the m columns of V (n, m),
// V column-major with leading dimension ldv, out with leading dimension n.
LMMSCAN_CLONES static void products_with(const double* x, const double* V, Index n, Index ldv,
                                         int m, double* out) {
  for (int j = 0; j < m; ++j) {
    const double* v = V + j * ldv;
    double* o = out + j * n;
#pragma omp simd
    for (Index i = 0; i < n; ++i) o[i] = x[i] * v[i];
  }
}

// sum_i log(1 + lambda d_i) with d_i >= 0.  Multiplies 16 factors per lane
// before taking a logarithm (1 log per 16 terms instead of 1 per term);
// falls back to term-wise logs for a chunk whose product leaves the range.
LMMSCAN_CLONES static double log1p_scaled_sum(const double* d, double lambda, Index n) {
  constexpr Index kLanes = 4, kDepth = 16, kChunk = kLanes * kDepth;
  double total = 0.0;
  Index start = 0;
  for (; start + kChunk <= n; start += kChunk) {
    double prod[kLanes] = {1.0, 1.0, 1.0, 1.0};
    for (Index r = 0; r < kDepth; ++r) {
      const double* dd = d + start + r * kLanes;
      for (Index l = 0; l < kLanes; ++l) prod[l] *= lambda * dd[l] + 1.0;
    }
    double chunk = 0.0;
    bool finite = true;
    for (Index l = 0; l < kLanes; ++l) {
      finite = finite && std::isfinite(prod[l]) && prod[l] > 0.0;
      chunk += std::log(prod[l]);
    }
    if (!finite) {
      chunk = 0.0;
      for (Index i = start; i < start + kChunk; ++i) chunk += std::log1p(lambda * d[i]);
    }
    total += chunk;
  }
  for (Index i = start; i < n; ++i) total += std::log1p(lambda * d[i]);
  return total;
}

}  // namespace lmmscan::kernels

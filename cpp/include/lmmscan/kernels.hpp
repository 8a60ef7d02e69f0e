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

// The reductions below keep kLanes independent partial sums (lane l takes the
// elements i = l mod kLanes, in order) and add the lanes up in a fixed order.
// A single accumulator would make every addition wait for the previous one
// (4 cycles each); kLanes = 16 is four AVX2 vectors per sum.  The order, and
// so the rounding, is the same for every clone, thread count and block size.
constexpr Index kLanes = 16;

template <Index L = kLanes>
__attribute__((always_inline)) inline double sum_lanes(const double* a) {
  double s[L / 2];
  for (Index l = 0; l < L / 2; ++l) s[l] = a[l] + a[l + L / 2];
  for (Index w = L / 4; w >= 1; w /= 2)
    for (Index l = 0; l < w; ++l) s[l] += s[l + w];
  return s[0];
}

// The weights of one lambda, as three rows of w (3, n): with
// h_i = 1 / (lambda d_i + 1) and g_i = d_i h_i,
//   w[0] = h,  w[1] = h g,  w[2] = h g^2;
// and the spectral sums sum_i g_i (tr H^-1 K) and sum_i g_i^2.
LMMSCAN_CLONES static void power_weights(const double* d, double lambda, Index n, double* w,
                                         double* sum_g, double* sum_g2) {
  double* h = w;
  double* hg = w + n;
  double* hgg = w + 2 * n;
  const Index nb = n - n % kLanes;
  double a1[kLanes] = {}, a2[kLanes] = {};
  for (Index i = 0; i < nb; i += kLanes)
#pragma omp simd
    for (Index l = 0; l < kLanes; ++l) {
      const double hi = 1.0 / (lambda * d[i + l] + 1.0);
      const double gi = d[i + l] * hi;
      h[i + l] = hi;
      hg[i + l] = hi * gi;
      hgg[i + l] = hi * gi * gi;
      a1[l] += gi;
      a2[l] += gi * gi;
    }
  for (Index i = nb; i < n; ++i) {
    const double hi = 1.0 / (lambda * d[i] + 1.0);
    const double gi = d[i] * hi;
    h[i] = hi;
    hg[i] = hi * gi;
    hgg[i] = hi * gi * gi;
    a1[i - nb] += gi;
    a2[i - nb] += gi * gi;
  }
  *sum_g = sum_lanes(a1);
  *sum_g2 = sum_lanes(a2);
}

namespace detail {
// Columns j0 .. j0 + NC - 1 of powered_sums in one pass over the samples, so
// that each weight is loaded once for NC columns.  K weights x NC columns x
// 2 vectors of partial sums stay in registers (at most 12 of AVX2's 16).
template <int K, int NC>
__attribute__((always_inline)) inline void powered_group(const double* w, Index n,
                                                         const double* P, Index ld, int s,
                                                         int j0, double* out) {
  constexpr Index L = 8;
  double a[K][NC][L] = {};
  const Index nb = n - n % L;
  for (Index i = 0; i < nb; i += L)
    for (int k = 0; k < K; ++k)
      for (int c = 0; c < NC; ++c) {
        const double* wk = w + k * n + i;
        const double* p = P + (j0 + c) * ld + i;
#pragma omp simd
        for (Index l = 0; l < L; ++l) a[k][c][l] += wk[l] * p[l];
      }
  for (Index i = nb; i < n; ++i)
    for (int k = 0; k < K; ++k)
      for (int c = 0; c < NC; ++c) a[k][c][i - nb] += w[k * n + i] * P[(j0 + c) * ld + i];
  for (int k = 0; k < K; ++k)
    for (int c = 0; c < NC; ++c) out[k * s + j0 + c] = sum_lanes<L>(a[k][c]);
}

template <int K, int NC>
__attribute__((always_inline)) inline void powered_columns(const double* w, Index n,
                                                           const double* P, Index ld, int s,
                                                           double* out) {
  int j = 0;
  for (; j + NC <= s; j += NC) powered_group<K, NC>(w, n, P, ld, s, j, out);
  for (; j < s; ++j) powered_group<K, 1>(w, n, P, ld, s, j, out);
}
}  // namespace detail

// Weighted column sums.  w: (3, n) from power_weights, P: (n, s) column-major
// with leading dimension ld.  For column j, with k = 1..kmax (kmax in 1..3):
//   out[(k - 1) s + j] = sum_i w[k - 1]_i P_ij
// i.e. sum_i h_i P_ij, sum_i h_i g_i P_ij, sum_i h_i g_i^2 P_ij.  Each
// column's sum is taken in the same order whatever the grouping of columns.
LMMSCAN_CLONES static void powered_sums(const double* w, Index n, const double* P, Index ld,
                                        int s, int kmax, double* out) {
  if (kmax == 1)
    detail::powered_columns<1, 4>(w, n, P, ld, s, out);
  else if (kmax == 2)
    detail::powered_columns<2, 3>(w, n, P, ld, s, out);
  else
    detail::powered_columns<3, 2>(w, n, P, ld, s, out);
}

namespace detail {
// sum_i term(i) over i < n in kLanes partial sums (the order described above).
template <class Term>
__attribute__((always_inline)) inline double lane_sum(Index n, Term term) {
  const Index nb = n - n % kLanes;
  double a[kLanes] = {};
  for (Index i = 0; i < nb; i += kLanes)
#pragma omp simd
    for (Index l = 0; l < kLanes; ++l) a[l] += term(i + l);
  for (Index i = nb; i < n; ++i) a[i - nb] += term(i);
  return sum_lanes(a);
}
}  // namespace detail

// True when every x_i is finite (x_i * 0 is NaN exactly for inf and NaN).
LMMSCAN_CLONES static bool all_finite(const double* x, Index n) {
  return detail::lane_sum(n, [x](Index i) { return x[i] * 0.0; }) == 0.0;
}

// Column sums of P (n, s) and products of column `x` with every column:
// used for the lambda-free Gram entries.
LMMSCAN_CLONES static void column_sums(const double* P, Index n, Index ld, int s, double* out) {
  for (int j = 0; j < s; ++j) {
    const double* p = P + j * ld;
    out[j] = detail::lane_sum(n, [p](Index i) { return p[i]; });
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

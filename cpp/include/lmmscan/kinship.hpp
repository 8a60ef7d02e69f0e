// Kinship arithmetic (reference section 2).
//
// kinship_columns: GEMMA's kinship columns of a genotype block, each chosen
// SNP centred by its mean over every sample, a missing value set to the mean
// (so to 0 once centred).
//
// The mean is numpy's: the column with missing values as 0, summed the way
// numpy's add.reduce sums a contiguous column (pairwise: runs of at most 128
// values summed in 8 running sums, longer runs halved at a multiple of 8),
// divided by the count of observed values.  The columns are therefore those
// lmmscan built with numpy before this kernel, bit for bit, and they do not
// depend on the thread count (threads take whole columns).
#pragma once

#include <algorithm>
#include <cstdint>

#include "kernels.hpp"
#include "snp_filter.hpp"

namespace lmmscan {
namespace detail {

inline double observed_or_zero(double x) { return x == x ? x : 0.0; }

// numpy's pairwise sum of a[0..n), missing (NaN) as 0.
inline double pairwise_observed_sum(const double* a, kernels::Index n) {
  using kernels::Index;
  if (n < 8) {
    double res = 0.0;
    for (Index i = 0; i < n; ++i) res += observed_or_zero(a[i]);
    return res;
  }
  if (n <= 128) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = observed_or_zero(a[j]);
    Index i = 8;
    for (; i < n - n % 8; i += 8)
      for (int j = 0; j < 8; ++j) r[j] += observed_or_zero(a[i + j]);
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += observed_or_zero(a[i]);
    return res;
  }
  Index n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_observed_sum(a, n2) + pairwise_observed_sum(a + n2, n - n2);
}

}  // namespace detail

// For each of the k columns cols[p] of the column-major X (n x b, ld >= n):
// mean[p] = the mean of its observed values over all n rows (NaN when none
// is), and column p of Z (n_rows x k, column-major) = its rows rows[0..n_rows)
// (every row when rows is null; then n_rows = n), each missing value set to
// the mean, minus the mean.  numpy: with Xk = X[:, cols],
//     mean = np.where(np.isnan(Xk), 0, Xk).sum(axis=0) / (n - np.isnan(Xk).sum(axis=0))
//     Z = (np.where(np.isnan(Xk), mean, Xk) - mean)[rows]
inline void kinship_columns(const GenotypeBlock& X, const std::int64_t* cols, kernels::Index k,
                            const std::int64_t* rows, kernels::Index n_rows, int threads,
                            double* mean, double* Z) {
  using kernels::Index;
  const Index n = X.n;
  detail::split(k, threads, [&](int, Index p0, Index p1) {
    for (Index p = p0; p < p1; ++p) {
      const double* x = X.x + static_cast<Index>(cols[p]) * X.ld;
      Index missing = 0;
      for (Index i = 0; i < n; ++i) missing += x[i] != x[i];
      // 0.0 + the sum: numpy's reduction starts from its identity, +0
      const double m =
          (0.0 + detail::pairwise_observed_sum(x, n)) / static_cast<double>(n - missing);
      mean[p] = m;
      double* z = Z + p * n_rows;
      if (rows == nullptr) {
        for (Index i = 0; i < n; ++i) z[i] = (x[i] == x[i] ? x[i] : m) - m;
      } else {
        for (Index r = 0; r < n_rows; ++r) {
          const double v = x[rows[r]];
          z[r] = (v == v ? v : m) - m;
        }
      }
    }
  });
}

// LOCO's kinship of all chromosomes but one: K = (S - S_c) / p, row-major
// n x n and symmetric, from the upper triangles (i <= j, at i + j n) of the
// column-major sums S and S_c; their lower triangles are not read.  Tiles
// above the diagonal are read down their columns and written to both
// triangles.  Each entry is one subtraction and one division, as numpy's
// (S - S_c) / p.
inline void loco_difference(const double* S, const double* S_c, kernels::Index n, double p,
                            double* K) {
  using kernels::Index;
  constexpr Index tile = 64;
  for (Index j0 = 0; j0 < n; j0 += tile) {
    const Index j1 = std::min(n, j0 + tile);
    for (Index i0 = 0; i0 <= j0; i0 += tile) {
      for (Index j = j0; j < j1; ++j) {
        const Index i1 = std::min(i0 + tile, j + 1);
        const double* s = S + j * n;
        const double* c = S_c + j * n;
        double* row_j = K + j * n;
        for (Index i = i0; i < i1; ++i) {
          const double d = (s[i] - c[i]) / p;
          row_j[i] = d;
          K[i * n + j] = d;
        }
      }
    }
  }
}

}  // namespace lmmscan

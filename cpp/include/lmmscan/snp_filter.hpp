// GEMMA's per-SNP filters and mean imputation of a genotype block, in two
// passes over the block (reference section 1.2-1.3).
//
// A block X is n samples x b SNPs, NaN for a missing genotype, stored either
// column-major (one SNP contiguous, as bed-reader returns it) or row-major.
// Pass 1 gives every SNP its missing count, allele frequency and verdict;
// pass 2 copies the kept SNPs, missing values set to 2 af, into an (n, k)
// block of the same storage order, and, when asked, what the covariate r2
// filter and the caller's scale check need of each kept SNP (KeptProducts),
// while its values are in the cache.
//
// Every SNP's statistics are summed in one fixed order whatever the thread
// count (threads take whole SNPs), so results never depend on it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <thread>
#include <vector>

#include "kernels.hpp"

namespace lmmscan {

// Why a SNP is left out: the first filter it fails, in GEMMA's order.
enum class SnpVerdict : std::int8_t { kept = 0, miss = 1, maf = 2, monomorphic = 3 };

struct SnpFilterOptions {
  double maf = 0.01;   // exclude af < maf or af > 1 - maf; negative: no maf filter
  double miss = 0.05;  // exclude n_miss / n > miss
};

struct GenotypeBlock {
  const double* x = nullptr;
  kernels::Index n = 0, b = 0;
  kernels::Index ld = 0;  // leading dimension (n for column-major, b for row-major)
  bool column_major = true;
};

// Optional outputs of filter_impute's imputation pass, for the k kept SNPs:
// x'x (xx, k), W'x (wx, (c, k) row-major) for the c columns of W (n, c;
// column-major, n rows) and max |x_i| (amax, k) of the imputed values.
struct KeptProducts {
  const double* W = nullptr;
  int c = 0;
  double* xx = nullptr;
  double* wx = nullptr;
  double* amax = nullptr;
  bool active() const { return xx != nullptr; }
};

namespace detail {

inline SnpVerdict judge(std::int64_t n_miss, double sum, double lo, double hi, kernels::Index n,
                        const SnpFilterOptions& opt, double* af) {
  *af = sum / (2.0 * static_cast<double>(n - n_miss));  // NaN when every value is missing
  // n = 0 gives NaN here and below, as the Python reference does (0 / 0)
  if (static_cast<double>(n_miss) / static_cast<double>(n) > opt.miss) return SnpVerdict::miss;
  if (opt.maf >= 0.0 && !(*af >= opt.maf && *af <= 1.0 - opt.maf)) return SnpVerdict::maf;
  if (n == 0 || !(hi > lo)) return SnpVerdict::monomorphic;
  return SnpVerdict::kept;
}

}  // namespace detail
}  // namespace lmmscan

namespace lmmscan::detail::isa_base {
#include "snp_filter_isa.inc"
}  // namespace lmmscan::detail::isa_base

#if LMMSCAN_DISPATCH_X86_64_V3
LMMSCAN_X86_64_V3_BEGIN
namespace lmmscan::detail::isa_x86_64_v3 {
#include "snp_filter_isa.inc"
}  // namespace lmmscan::detail::isa_x86_64_v3
LMMSCAN_X86_64_V3_END
#endif

namespace lmmscan {
namespace detail {

// The loops as filter_block calls them (comments in snp_filter_isa.inc).
inline void column_stats(const double* x, kernels::Index n, std::int64_t* n_miss, double* sum,
                         double* lo, double* hi) {
  LMMSCAN_ISA_CALL(::lmmscan::detail, column_stats, x, n, n_miss, sum, lo, hi);
}
inline void copy_filled(const double* x, kernels::Index n, double fill, double* out) {
  LMMSCAN_ISA_CALL(::lmmscan::detail, copy_filled, x, n, fill, out);
}
inline void row_stats(const GenotypeBlock& X, kernels::Index j0, kernels::Index j1,
                      std::int64_t* n_miss, double* sum, double* lo, double* hi) {
  LMMSCAN_ISA_CALL(::lmmscan::detail, row_stats, X, j0, j1, n_miss, sum, lo, hi);
}
inline void narrow(const double* x, kernels::Index n, float* out) {
  LMMSCAN_ISA_CALL(::lmmscan::detail, narrow, x, n, out);
}
inline void kept_products(const double* o, kernels::Index n, const double* W, int c, double* xx,
                          double* wx, kernels::Index stride, double* amax) {
  LMMSCAN_ISA_CALL(::lmmscan::detail, kept_products, o, n, W, c, xx, wx, stride, amax);
}
inline void kept_products_rows(const double* out, kernels::Index n, kernels::Index k,
                               kernels::Index p0, kernels::Index p1, const double* W, int c,
                               double* xx, double* wx, double* amax) {
  LMMSCAN_ISA_CALL(::lmmscan::detail, kept_products_rows, out, n, k, p0, p1, W, c, xx, wx,
                   amax);
}

// Runs body(t, lo, hi) for [0, count) cut into `threads` contiguous parts.
template <class Body>
void split(kernels::Index count, int threads, Body&& body) {
  using kernels::Index;
  const int t_use = static_cast<int>(std::max<Index>(1, std::min<Index>(threads, count / 64)));
  if (t_use <= 1) {
    body(0, Index{0}, count);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(t_use) - 1);
  for (int t = 1; t < t_use; ++t)
    pool.emplace_back([&, t] { body(t, count * t / t_use, count * (t + 1) / t_use); });
  body(0, Index{0}, count / t_use);
  for (auto& th : pool) th.join();
}

}  // namespace detail

// Pass 1: n_miss, af and verdict of every SNP (arrays of length b); returns
// the number kept.  Pass 2, when out or out32 is given: the kept SNPs, missing
// values set to 2 af, as an (n, kept) block in X's storage order (ld n or
// kept), and the kept SNPs' products when `products` is active (sized for b
// SNPs).  With out32 the block is written there in float32 (each value
// rounded from the double one; the products are of the double values, as
// without it).  A column-major X then needs no double block (out may be
// null: each SNP is imputed in a per-thread column); a row-major one is
// imputed into out (or a block of its own when out is null) and converted
// from there.
inline kernels::Index filter_impute(const GenotypeBlock& X, const SnpFilterOptions& opt,
                                    int threads, std::int64_t* n_miss, double* af,
                                    SnpVerdict* verdict, double* out,
                                    const KeptProducts& products = {}, float* out32 = nullptr) {
  using kernels::Index;
  const Index n = X.n, b = X.b;
  std::vector<double> sum(static_cast<size_t>(b)), lo(static_cast<size_t>(b)),
      hi(static_cast<size_t>(b));
  detail::split(b, threads, [&](int, Index j0, Index j1) {
    if (X.column_major) {
      for (Index j = j0; j < j1; ++j)
        detail::column_stats(X.x + j * X.ld, n, &n_miss[j], &sum[j], &lo[j], &hi[j]);
    } else {
      detail::row_stats(X, j0, j1, n_miss, sum.data(), lo.data(), hi.data());
    }
    for (Index j = j0; j < j1; ++j)
      verdict[j] = detail::judge(n_miss[j], sum[j], lo[j], hi[j], n, opt, &af[j]);
  });
  std::vector<Index> kept;
  kept.reserve(static_cast<size_t>(b));
  for (Index j = 0; j < b; ++j)
    if (verdict[j] == SnpVerdict::kept) kept.push_back(j);
  const Index k = static_cast<Index>(kept.size());
  if ((out == nullptr && out32 == nullptr) || k == 0) return k;
  if (X.column_major) {
    detail::split(k, threads, [&](int, Index p0, Index p1) {
      // in float32, each SNP is imputed in this column (in the cache) first
      std::vector<double> column(out32 != nullptr ? static_cast<size_t>(n) : 0);
      for (Index p = p0; p < p1; ++p) {
        const Index j = kept[p];
        double* o = out32 != nullptr ? column.data() : out + p * n;
        detail::copy_filled(X.x + j * X.ld, n, 2.0 * af[j], o);
        if (products.active())
          detail::kept_products(o, n, products.W, products.c, &products.xx[p], products.wx + p,
                                k, &products.amax[p]);
        if (out32 != nullptr) detail::narrow(o, n, out32 + p * n);
      }
    });
  } else {
    std::vector<double> own;  // the double block, when only out32 was given
    if (out == nullptr) {
      own.resize(static_cast<size_t>(n) * static_cast<size_t>(k));
      out = own.data();
    }
    std::vector<double> fill(static_cast<size_t>(k));
    for (Index p = 0; p < k; ++p) fill[p] = 2.0 * af[kept[p]];
    detail::split(n, threads, [&](int, Index r0, Index r1) {
      for (Index i = r0; i < r1; ++i) {
        const double* row = X.x + i * X.ld;
        double* o = out + i * k;
        for (Index p = 0; p < k; ++p) {
          const double v = row[kept[p]];
          o[p] = v == v ? v : fill[p];
        }
      }
    });
    // by SNPs, not rows: each SNP's sums in one order whatever the threads
    if (products.active())
      detail::split(k, threads, [&](int, Index p0, Index p1) {
        detail::kept_products_rows(out, n, k, p0, p1, products.W, products.c, products.xx,
                                   products.wx, products.amax);
      });
    if (out32 != nullptr)
      detail::split(n, threads, [&](int, Index r0, Index r1) {
        detail::narrow(out + r0 * k, (r1 - r0) * k, out32 + r0 * k);
      });
  }
  return k;
}

}  // namespace lmmscan

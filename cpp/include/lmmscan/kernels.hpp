// Hot loops over the n samples. Everything else in the core is O(m^3) work on
// tiny matrices; these loops are where a scan spends its time.
//
// The wheel is built with portable x86-64 flags; on x86-64 (GCC or Clang)
// each loop is also compiled for x86-64-v3 (AVX2 + FMA: kernels_isa.inc
// included twice, the second time under a target pragma) and the first call
// picks one by asking the CPU (cpuid), so no -march=native is needed.  Not
// target_clones: its ifunc resolver asks the compiler runtime, which is a
// stub in zig's toolchain (the manylinux wheel: every CPU took the baseline
// loops, 2x slower) and absent on musl (no ifunc).  The weighted sums, where
// a scan spends most of its time, also have an x86-64-v4 (AVX-512) version
// with the same bits as the v3 one (namespace isa_x86_64_v4 below).
#pragma once

#include <atomic>
#include <cmath>
#include <cstddef>
#include <new>
#include <vector>

#if (defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))) && \
    !defined(LMMSCAN_NO_CLONES)
#define LMMSCAN_DISPATCH_X86_64_V3 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define LMMSCAN_DISPATCH_X86_64_V3 0
#endif

namespace lmmscan::kernels {

using Index = std::ptrdiff_t;

// The reductions below keep kLanes independent partial sums (lane l takes the
// elements i = l mod kLanes, in order) and add the lanes up in a fixed order.
// A single accumulator would make every addition wait for the previous one
// (4 cycles each); kLanes = 16 is four AVX2 vectors per sum.  The order, and
// so the rounding, is the same for every clone, thread count and block size.
constexpr Index kLanes = 16;

// Per-sample vectors (the weights, a SNP's products, the covariate pairs) are
// kept as rows of padded(n) doubles in 64-byte aligned buffers, so that every
// row starts on a cache line: at n = 481 (rows 3,848 bytes apart) half of
// the sums' 32-byte loads straddled two lines and the sums ran at half the
// speed.  The padding is never read.
constexpr Index kRowAlign = 8;
inline Index padded(Index n) { return (n + kRowAlign - 1) / kRowAlign * kRowAlign; }

template <class T>
struct CacheAligned {
  using value_type = T;
  CacheAligned() = default;
  template <class U>
  CacheAligned(const CacheAligned<U>&) {}  // NOLINT: rebinding, as allocators do
  T* allocate(std::size_t count) {
    return static_cast<T*>(::operator new(count * sizeof(T), std::align_val_t{64}));
  }
  void deallocate(T* p, std::size_t) { ::operator delete(p, std::align_val_t{64}); }
  template <class U>
  bool operator==(const CacheAligned<U>&) const {
    return true;
  }
  template <class U>
  bool operator!=(const CacheAligned<U>&) const {
    return false;
  }
};
using AlignedVector = std::vector<double, CacheAligned<double>>;

template <Index L = kLanes>
__attribute__((always_inline)) inline double sum_lanes(const double* a) {
  double s[L / 2];
  for (Index l = 0; l < L / 2; ++l) s[l] = a[l] + a[l + L / 2];
  for (Index w = L / 4; w >= 1; w /= 2)
    for (Index l = 0; l < w; ++l) s[l] += s[l + w];
  return s[0];
}

namespace detail {
// One step of powered_group: lane l of a[k][c] += wk[k][i + l] * pc[c][i + l].
template <int K, int NC>
__attribute__((always_inline)) inline void powered_step(const double* const* wk,
                                                        const double* const* pc, Index i,
                                                        double (&a)[K][NC][8]) {
  for (int k = 0; k < K; ++k)
    for (int c = 0; c < NC; ++c) {
#pragma omp simd
      for (Index l = 0; l < 8; ++l) a[k][c][l] += wk[k][i + l] * pc[c][i + l];
    }
}

// Columns j0 .. j0 + NC - 1 of powered_sums in one pass over the samples, so
// that each weight is loaded once for NC columns.  K weights x NC columns x
// 2 vectors of partial sums stay in registers (at most 12 of AVX2's 16).
// The last n mod 8 samples go to lanes 0.. in one more step over zero-padded
// copies (a + 0 * 0 is a: a lane's sum starts at +0 and is never -0), so the
// partial sums are only ever indexed by constants and stay in registers.
template <int K, int NC>
__attribute__((always_inline)) inline void powered_group(const double* w, Index ldw, Index n,
                                                         const double* P, Index ld, int s,
                                                         int j0, double* out) {
  constexpr Index L = 8;
  double a[K][NC][L] = {};
  const double* wk[K];
  const double* pc[NC];
  for (int k = 0; k < K; ++k) wk[k] = w + k * ldw;
  for (int c = 0; c < NC; ++c) pc[c] = P + (j0 + c) * ld;
  const Index nb = n - n % L;
  for (Index i = 0; i < nb; i += L) powered_step<K, NC>(wk, pc, i, a);
  if (nb < n) {
    const Index rest = n - nb;
    double wt[K][L], pt[NC][L];
    const double* wtp[K];
    const double* ptp[NC];
    for (int k = 0; k < K; ++k) {
      for (Index l = 0; l < L; ++l) wt[k][l] = l < rest ? wk[k][nb + l] : 0.0;
      wtp[k] = wt[k];
    }
    for (int c = 0; c < NC; ++c) {
      for (Index l = 0; l < L; ++l) pt[c][l] = l < rest ? pc[c][nb + l] : 0.0;
      ptp[c] = pt[c];
    }
    powered_step<K, NC>(wtp, ptp, 0, a);
  }
  for (int k = 0; k < K; ++k)
    for (int c = 0; c < NC; ++c) out[k * s + j0 + c] = sum_lanes<L>(a[k][c]);
}

// Columns j0.. in groups of NC; the rest (fewer than NC) in one narrower
// group, found by the same loop one width down.
template <int K, int NC>
__attribute__((always_inline)) inline void powered_columns(const double* w, Index ldw, Index n,
                                                           const double* P, Index ld, int s,
                                                           double* out, int j0 = 0) {
  int j = j0;
  for (; j + NC <= s; j += NC) powered_group<K, NC>(w, ldw, n, P, ld, s, j, out);
  if constexpr (NC > 1) {
    if (j < s) powered_columns<K, NC - 1>(w, ldw, n, P, ld, s, out, j);
  }
}
}  // namespace detail

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

#if LMMSCAN_DISPATCH_X86_64_V3
// x86-64-v3 as the psABI defines it: AVX, AVX2, BMI1, BMI2, F16C, FMA, LZCNT,
// MOVBE, and an OS that saves the YMM registers (OSXSAVE, XCR0 bits 1-2).
inline bool detect_x86_64_v3() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
  const unsigned need1 = (1u << 12) | (1u << 22) | (1u << 27) | (1u << 28) | (1u << 29);
  if ((c & need1) != need1) return false;  // FMA, MOVBE, OSXSAVE, AVX, F16C
  unsigned xcr0_lo, xcr0_hi;
  __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  if ((xcr0_lo & 6u) != 6u) return false;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const unsigned need7 = (1u << 3) | (1u << 5) | (1u << 8);  // BMI1, AVX2, BMI2
  if ((b & need7) != need7) return false;
  if (!__get_cpuid(0x80000001u, &a, &b, &c, &d)) return false;
  return (c & (1u << 5)) != 0;  // LZCNT
}

// x86-64-v4: v3 and AVX512F, AVX512BW, AVX512CD, AVX512DQ, AVX512VL, with
// the OS saving the opmask and ZMM registers (XCR0 bits 5-7).
inline bool detect_x86_64_v4() {
  if (!detect_x86_64_v3()) return false;
  unsigned a, b, c, d;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const unsigned need7 = (1u << 16) | (1u << 17) | (1u << 28) | (1u << 30) | (1u << 31);
  if ((b & need7) != need7) return false;
  unsigned xcr0_lo, xcr0_hi;
  __asm__("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  return (xcr0_lo & 0xe6u) == 0xe6u;
}
#endif

// The instruction-set levels the kernels come in.
enum Isa : int { kIsaBase = 0, kIsaV3 = 1, kIsaV4 = 2 };

// The highest level this CPU runs, asked once per process (a thread-safe static).
inline int detected_isa() {
#if LMMSCAN_DISPATCH_X86_64_V3
  static const int level = detect_x86_64_v4() ? kIsaV4 : detect_x86_64_v3() ? kIsaV3 : kIsaBase;
  return level;
#else
  return kIsaBase;
#endif
}

// A ceiling on the level the kernels use (default none): with kIsaBase, a
// machine computes the bits a CPU without AVX2 computes.
inline std::atomic<int>& isa_limit() {
  static std::atomic<int> limit{kIsaV4};
  return limit;
}

// The level the kernels use now; a well-predicted branch per call.
inline int isa() {
  const int limit = isa_limit().load(std::memory_order_relaxed);
  const int level = detected_isa();
  return level < limit ? level : limit;
}

#if LMMSCAN_DISPATCH_X86_64_V3
inline bool has_x86_64_v3() { return isa() >= kIsaV3; }
#endif

}  // namespace lmmscan::kernels

namespace lmmscan::kernels::isa_base {
#include "kernels_isa.inc"
}  // namespace lmmscan::kernels::isa_base

#if LMMSCAN_DISPATCH_X86_64_V3
// Every function between a level's BEGIN and END is compiled for it: GCC by
// the level's name; Clang (22, zig's) ignores target("arch=x86-64-v3")
// without a word, so it gets the level's features by name.
#define LMMSCAN_PRAGMA(text) _Pragma(#text)
#if defined(__clang__)
#define LMMSCAN_TARGET_BEGIN(arch, features) \
  LMMSCAN_PRAGMA(clang attribute push(__attribute__((target(features))), apply_to = function))
#define LMMSCAN_TARGET_END _Pragma("clang attribute pop")
#else
#define LMMSCAN_TARGET_BEGIN(arch, features) \
  _Pragma("GCC push_options") LMMSCAN_PRAGMA(GCC target(arch))
#define LMMSCAN_TARGET_END _Pragma("GCC pop_options")
#endif
#define LMMSCAN_X86_64_V3_BEGIN \
  LMMSCAN_TARGET_BEGIN("arch=x86-64-v3", "avx,avx2,bmi,bmi2,f16c,fma,lzcnt,movbe,xsave")
#define LMMSCAN_X86_64_V3_END LMMSCAN_TARGET_END
#define LMMSCAN_X86_64_V4_BEGIN                                                \
  LMMSCAN_TARGET_BEGIN("arch=x86-64-v4",                                       \
                       "avx,avx2,bmi,bmi2,f16c,fma,lzcnt,movbe,xsave,avx512f," \
                       "avx512bw,avx512cd,avx512dq,avx512vl")
#define LMMSCAN_X86_64_V4_END LMMSCAN_TARGET_END

LMMSCAN_X86_64_V3_BEGIN
namespace lmmscan::kernels::isa_x86_64_v3 {
#include "kernels_isa.inc"
}  // namespace lmmscan::kernels::isa_x86_64_v3
LMMSCAN_X86_64_V3_END

// powered_sums for x86-64-v4.  A sum's 8 lanes (kernels_isa.inc) are one
// 512-bit register instead of two 256-bit ones: each lane takes the same
// fused multiply-adds in the same order, so the bits are those of the v3
// version (checked on random shapes by the tests).  With 32 registers a group
// holds up to 18 sums, so each weight is loaded once for 6-8 columns, and a
// 512-bit FMA does twice the work of a 256-bit one on CPUs with two 512-bit
// FMA units.  The last n mod 8 samples are loaded under a mask, as zeros
// beyond n (the v3 version's zero-padded step).
LMMSCAN_X86_64_V4_BEGIN
namespace lmmscan::kernels::isa_x86_64_v4 {
// Columns of one or two sets, each with its own output: column t of the
// combined list is column t of set 1 (P1, ld1, s1 -> out1, (kmax, s1)) for
// t < s1, else column t - s1 of set 2.
struct ColumnSets {
  const double* P1;
  Index ld1;
  int s1;
  double* out1;
  const double* P2;
  Index ld2;
  int s2;
  double* out2;
  int total() const { return s1 + s2; }
  const double* column(int t) const { return t < s1 ? P1 + t * ld1 : P2 + (t - s1) * ld2; }
  double* out(int t, int k) const {
    return t < s1 ? out1 + k * s1 + t : out2 + k * s2 + t - s1;
  }
};

template <int K, int NC>
__attribute__((always_inline)) inline void powered_group(const double* w, Index ldw, Index n,
                                                         const ColumnSets& sets, int t0) {
  __m512d a[K][NC];
  for (int k = 0; k < K; ++k)
    for (int c = 0; c < NC; ++c) a[k][c] = _mm512_setzero_pd();
  const double* wk[K];
  const double* pc[NC];
  for (int k = 0; k < K; ++k) wk[k] = w + k * ldw;
  for (int c = 0; c < NC; ++c) pc[c] = sets.column(t0 + c);
  const Index nb = n - n % 8;
  for (Index i = 0; i < nb; i += 8) {
    __m512d wv[K];
    for (int k = 0; k < K; ++k) wv[k] = _mm512_loadu_pd(wk[k] + i);
    for (int c = 0; c < NC; ++c) {
      __m512d p = _mm512_loadu_pd(pc[c] + i);
      // in a register: otherwise the compiler folds the load into each of
      // the K multiply-adds, and the loads, not the FMAs, set the pace
      __asm__("" : "+v"(p));
      for (int k = 0; k < K; ++k) a[k][c] = _mm512_fmadd_pd(wv[k], p, a[k][c]);
    }
  }
  if (nb < n) {
    const __mmask8 mask = static_cast<__mmask8>((1u << (n - nb)) - 1u);
    __m512d wv[K];
    for (int k = 0; k < K; ++k) wv[k] = _mm512_maskz_loadu_pd(mask, wk[k] + nb);
    for (int c = 0; c < NC; ++c) {
      const __m512d p = _mm512_maskz_loadu_pd(mask, pc[c] + nb);
      for (int k = 0; k < K; ++k) a[k][c] = _mm512_fmadd_pd(wv[k], p, a[k][c]);
    }
  }
  for (int k = 0; k < K; ++k)
    for (int c = 0; c < NC; ++c) {
      alignas(64) double lanes[8];
      _mm512_store_pd(lanes, a[k][c]);
      *sets.out(t0 + c, k) = sum_lanes<8>(lanes);
    }
}

// Columns t0.. in groups of NC; the rest (fewer than NC) in one narrower
// group, found by the same loop one width down.
template <int K, int NC>
inline void powered_columns(const double* w, Index ldw, Index n, const ColumnSets& sets,
                            int t0 = 0) {
  const int s = sets.total();
  int t = t0;
  for (; t + NC <= s; t += NC) powered_group<K, NC>(w, ldw, n, sets, t);
  if constexpr (NC > 1) {
    if (t < s) powered_columns<K, NC - 1>(w, ldw, n, sets, t);
  }
}

// 18 sums at kmax = 3 (a mouse_hs1940 SNP's 3 products and the 3 covariate
// pairs in one group), 16 at kmax 1 and 2.
inline void powered_sums(const double* w, Index ldw, Index n, const ColumnSets& sets,
                         int kmax) {
  if (kmax == 1)
    powered_columns<1, 8>(w, ldw, n, sets);
  else if (kmax == 2)
    powered_columns<2, 8>(w, ldw, n, sets);
  else
    powered_columns<3, 6>(w, ldw, n, sets);
}
}  // namespace lmmscan::kernels::isa_x86_64_v4
LMMSCAN_X86_64_V4_END
// f(args) of the CPU's instruction set (ns: the namespace holding isa_*)
#define LMMSCAN_ISA_CALL(ns, f, ...)                                       \
  (::lmmscan::kernels::has_x86_64_v3() ? ns::isa_x86_64_v3::f(__VA_ARGS__) \
                                       : ns::isa_base::f(__VA_ARGS__))
#else
#define LMMSCAN_ISA_CALL(ns, f, ...) ns::isa_base::f(__VA_ARGS__)
#endif

namespace lmmscan::kernels {

// The kernels as the core calls them (the comments in kernels_isa.inc).
inline void power_weights(const double* d, double lambda, Index n, double* w, Index ldw,
                          double* sum_g, double* sum_g2) {
  LMMSCAN_ISA_CALL(::lmmscan::kernels, power_weights, d, lambda, n, w, ldw, sum_g, sum_g2);
}
inline void powered_sums(const double* w, Index ldw, Index n, const double* P, Index ld, int s,
                         int kmax, double* out) {
#if LMMSCAN_DISPATCH_X86_64_V3
  if (isa() >= kIsaV4)
    return isa_x86_64_v4::powered_sums(w, ldw, n, {P, ld, s, out, nullptr, 0, 0, nullptr},
                                       kmax);
#endif
  LMMSCAN_ISA_CALL(::lmmscan::kernels, powered_sums, w, ldw, n, P, ld, s, kmax, out);
}
// powered_sums of two sets of columns at the same weights: (P1, ld1, s1) into
// out1 (kmax, s1) and (P2, ld2, s2) into out2 (kmax, s2).  The same values as
// two calls; with AVX-512 one pass, so each weight is loaded once for both.
inline void powered_sums(const double* w, Index ldw, Index n, const double* P1, Index ld1,
                         int s1, double* out1, const double* P2, Index ld2, int s2,
                         double* out2, int kmax) {
#if LMMSCAN_DISPATCH_X86_64_V3
  if (isa() >= kIsaV4)
    return isa_x86_64_v4::powered_sums(w, ldw, n, {P1, ld1, s1, out1, P2, ld2, s2, out2}, kmax);
#endif
  powered_sums(w, ldw, n, P1, ld1, s1, kmax, out1);
  powered_sums(w, ldw, n, P2, ld2, s2, kmax, out2);
}
inline bool all_finite(const double* x, Index n) {
  return LMMSCAN_ISA_CALL(::lmmscan::kernels, all_finite, x, n);
}
inline void column_sums(const double* P, Index n, Index ld, int s, double* out) {
  LMMSCAN_ISA_CALL(::lmmscan::kernels, column_sums, P, n, ld, s, out);
}
inline void products_with(const double* x, const double* V, Index n, Index ldv, int m,
                          double* out, Index ldo) {
  LMMSCAN_ISA_CALL(::lmmscan::kernels, products_with, x, V, n, ldv, m, out, ldo);
}
inline double log1p_scaled_sum(const double* d, double lambda, Index n) {
  return LMMSCAN_ISA_CALL(::lmmscan::kernels, log1p_scaled_sum, d, lambda, n);
}

}  // namespace lmmscan::kernels

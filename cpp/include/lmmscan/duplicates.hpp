// Identical SNPs of a block, found so that each distinct genotype vector is
// rotated and tested once.
//
// Dense arrays hold many SNPs whose imputed genotypes are bit for bit the
// same (in perfect LD, coded alike): 24% of mouse_hs1940's kept SNPs.  Their
// rotated vectors and every test statistic are functions of those bits
// alone (the rotation's GEMM sums each column in an order that does not
// depend on the other columns of the block: spectral.rows_product), so one
// computation serves them all, with the same bits.
//
// Columns are hashed (threads take whole columns) and the candidates of one
// hash compared byte for byte: a collision costs a comparison, never a wrong
// match.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "snp_filter.hpp"

namespace lmmscan {

namespace detail {

// A hash of a column's bytes (n values of T), read as 64-bit words: four
// independent multiply-xor lanes (one word per cycle, not one multiply's
// latency per word), mixed at the end.
template <class T>
std::uint64_t column_hash(const T* x, kernels::Index n) {
  constexpr std::uint64_t kMul = 0x9E3779B97F4A7C15ull;
  std::uint64_t h[4] = {0x243F6A8885A308D3ull, 0x13198A2E03707344ull, 0xA4093822299F31D0ull,
                        0x082EFA98EC4E6C89ull};
  const auto* bytes = reinterpret_cast<const unsigned char*>(x);
  const size_t size = static_cast<size_t>(n) * sizeof(T), words = size / 8;
  size_t i = 0;
  for (; i + 4 <= words; i += 4) {
    for (size_t l = 0; l < 4; ++l) {
      std::uint64_t w;
      std::memcpy(&w, bytes + 8 * (i + l), sizeof w);
      h[l] = (h[l] ^ w) * kMul;
    }
  }
  for (; i < words; ++i) {
    std::uint64_t w;
    std::memcpy(&w, bytes + 8 * i, sizeof w);
    h[0] = (h[0] ^ w) * kMul;
  }
  if (size > 8 * words) {  // a float32 column of odd length: its last 4 bytes
    std::uint64_t w = 0;
    std::memcpy(&w, bytes + 8 * words, size - 8 * words);
    h[1] = (h[1] ^ w) * kMul;
  }
  std::uint64_t out = static_cast<std::uint64_t>(n);
  for (int l = 0; l < 4; ++l) {
    out = (out ^ h[l]) * kMul;
    out ^= out >> 29;
  }
  return out;
}

}  // namespace detail

// For the k columns of X (n, k; float64 or float32), column-major with leading dimension ld:
// first[j] = the smallest j' <= j whose column has the same bytes as column j
// (j itself for the first of its kind).  Returns the number of distinct
// columns.  Threads hash; the matching is one pass in column order.
template <class T>
kernels::Index identical_columns(const T* X, kernels::Index n, kernels::Index k,
                                 kernels::Index ld, int threads, std::int64_t* first) {
  using kernels::Index;
  std::vector<std::uint64_t> hash(static_cast<size_t>(k));
  detail::split(k, threads, [&](int, Index j0, Index j1) {
    for (Index j = j0; j < j1; ++j) hash[j] = detail::column_hash(X + j * ld, n);
  });
  // open addressing on the hashes: a slot holds a distinct column; the probe
  // for column j passes every distinct column with j's hash (equal hashes of
  // different bytes, a collision, each get their own slot)
  size_t slots = 16;
  while (slots < 2 * static_cast<size_t>(k)) slots *= 2;
  const size_t mask = slots - 1;
  std::vector<Index> table(slots, -1);
  const size_t bytes = static_cast<size_t>(n) * sizeof(T);
  Index distinct = 0;
  for (Index j = 0; j < k; ++j) {
    const T* x = X + j * ld;
    const std::uint64_t h = hash[j];
    size_t s = static_cast<size_t>(h) & mask;
    Index match = -1;
    for (; table[s] >= 0; s = (s + 1) & mask) {
      const Index r = table[s];
      if (hash[r] == h && std::memcmp(X + r * ld, x, bytes) == 0) {
        match = r;
        break;
      }
    }
    if (match < 0) {
      table[s] = j;
      first[j] = j;
      ++distinct;
    } else {
      first[j] = match;
    }
  }
  return distinct;
}

// Moves the distinct columns (first[j] == j) of X (n, k; column-major, ld)
// to its front, in order, and rewrites first[j] as the new position of
// column j's representative.  Columns only move towards the front, so this
// is done in place.
template <class T>
void keep_distinct_columns(T* X, kernels::Index n, kernels::Index k, kernels::Index ld,
                           std::int64_t* first) {
  using kernels::Index;
  std::vector<Index> slot(static_cast<size_t>(k), -1);
  Index next = 0;
  for (Index j = 0; j < k; ++j) {
    if (first[j] == j) {
      if (next != j)
        std::memmove(X + next * ld, X + j * ld, static_cast<size_t>(n) * sizeof(T));
      slot[j] = next++;
    }
    first[j] = slot[first[j]];
  }
}

}  // namespace lmmscan

// GEMMA's association table as text, a block of rows at a time, without a
// Python object per number: the numbers are printed by std::to_chars with a
// precision where the build found it links (LMMSCAN_HAVE_FLOAT_TO_CHARS, set
// by CMakeLists.txt; not on Apple, whose libc++ has it from macOS 13.3 only),
// else by printf in the "C" locale.  Both round the exact binary value to the
// nearest decimal (ties to even) as Python's format() does, so the bytes are
// those of the Python formatting this replaces (lmmscan/output.py).  to_chars
// takes ~4x less time than snprintf under uselocale.
//
// A column is one of:
//   's'  text tokens, one after the other, each ended by '\n' (chr, rs, alleles)
//   'i'  int64 printed in decimal (ps, n_miss)
//   'f'  double as "%.3f" (af)
//   'e'  double as "%.6e" (beta, se, logl_H1, l_remle, l_mle; "nan", "inf", "-inf"
//        for non-finite values, as Python prints them)
//   'p'  a p-value as "%.6e", except below `tiny` with a finite -log10 p (the
//        second array): then spelled from -log10 p, never 0; and a p of 0
//        without one: "nan"
// No pybind11, no files: the binding hands in pointers and gets a string back.
#pragma once

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#if defined(__APPLE__)
#include <xlocale.h>
#else
#include <locale.h>
#endif

namespace lmmscan::text {

struct Column {
  char kind = 's';
  const char* text = nullptr;  // 's': the tokens, '\n'-ended
  std::size_t text_size = 0;
  const std::int64_t* ints = nullptr;   // 'i'
  const double* values = nullptr;       // 'f', 'e', 'p'
  const double* log10p = nullptr;       // 'p'
};

namespace detail {

// printf in the "C" locale whatever the process's LC_NUMERIC is
inline int print(char* buf, std::size_t size, const char* fmt, double v) {
#if defined(__APPLE__)
  static const locale_t c_locale = newlocale(LC_ALL_MASK, "C", nullptr);
  return snprintf_l(buf, size, c_locale, fmt, v);
#else
  static const locale_t c_locale = newlocale(LC_ALL_MASK, "C", locale_t{});
  locale_t old = uselocale(c_locale);
  int n = std::snprintf(buf, size, fmt, v);
  uselocale(old);
  return n;
#endif
}

inline bool append_special(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "nan";  // Python never prints a sign on NaN
    return true;
  }
  if (std::isinf(v)) {
    out += v > 0 ? "inf" : "-inf";
    return true;
  }
  return false;
}

// v as "%.6e" (scientific) or "%.3f" (fixed), finite or not.
inline void append_fmt(std::string& out, bool scientific, double v) {
  if (append_special(out, v)) return;
#if !defined(LMMSCAN_HAVE_FLOAT_TO_CHARS) || defined(__APPLE__)
  const char* fmt = scientific ? "%.6e" : "%.3f";
  char buf[64];
  int n = print(buf, sizeof buf, fmt, v);
  if (n < 0 || static_cast<std::size_t>(n) >= sizeof buf) {
    // %.3f of a huge value: the exact digits, however many
    std::vector<char> big(static_cast<std::size_t>(n > 0 ? n : 400) + 1);
    n = print(big.data(), big.size(), fmt, v);
    out.append(big.data(), static_cast<std::size_t>(n));
    return;
  }
  out.append(buf, static_cast<std::size_t>(n));
#else
  // %.3f of the largest double has 309 integer digits: 320 bytes hold any
  char buf[320];
  const auto r = scientific
                     ? std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific, 6)
                     : std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed, 3);
  if (r.ec != std::errc()) throw std::runtime_error("a number did not fit its text buffer");
  out.append(buf, static_cast<std::size_t>(r.ptr - buf));
#endif
}

inline void append_int(std::string& out, std::int64_t v) {
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, static_cast<std::size_t>(r.ptr - buf));
}

// p = 10^(-log10p) as "%.6e", from its logarithm (p below the smallest double)
inline void append_from_log10(std::string& out, double log10p) {
  double q = -log10p;
  double e = std::floor(q);
  double mant = std::pow(10.0, q - e);
  char buf[64];
  int n = print(buf, sizeof buf, "%.6f", mant);
  std::string m(buf, static_cast<std::size_t>(n));
  long long exp = static_cast<long long>(e);
  if (m.size() >= 2 && m[0] == '1' && m[1] == '0') {  // rounded up to 10.000000
    m = "1.000000";
    exp += 1;
  }
  out += m;
  n = std::snprintf(buf, sizeof buf, "e%+03lld", exp);
  out.append(buf, static_cast<std::size_t>(n));
}

inline void append_p(std::string& out, double p, double log10p, double tiny) {
  bool spelled = p < tiny && std::isfinite(log10p);
  if (spelled) {
    append_from_log10(out, log10p);
  } else if (p == 0.0) {
    out += "nan";
  } else {
    append_fmt(out, true, p);
  }
}

}  // namespace detail

// The rows (each '\n'-ended, fields '\t'-separated) of n table rows.
inline std::string format_rows(std::size_t n, const std::vector<Column>& cols, double tiny) {
  std::vector<std::size_t> cursor(cols.size(), 0);
  std::string out;
  out.reserve(n * (16 * cols.size()));
  for (std::size_t r = 0; r < n; ++r) {
    for (std::size_t c = 0; c < cols.size(); ++c) {
      if (c) out += '\t';
      const Column& col = cols[c];
      switch (col.kind) {
        case 's': {
          std::size_t start = cursor[c];
          std::size_t end = start;
          while (end < col.text_size && col.text[end] != '\n') ++end;
          if (end >= col.text_size)
            throw std::invalid_argument("a text column has too few tokens");
          out.append(col.text + start, end - start);
          cursor[c] = end + 1;
          break;
        }
        case 'i':
          detail::append_int(out, col.ints[r]);
          break;
        case 'f':
          detail::append_fmt(out, false, col.values[r]);
          break;
        case 'e':
          detail::append_fmt(out, true, col.values[r]);
          break;
        case 'p':
          detail::append_p(out, col.values[r], col.log10p[r], tiny);
          break;
        default:
          throw std::invalid_argument("unknown column kind");
      }
    }
    out += '\n';
  }
  return out;
}

// The same bytes, formatted on `threads` threads: the rows are cut into
// ranges, each text column's tokens at each cut found by counting newlines,
// each range printed into its own string, and the strings joined in order.
inline std::string format_rows(std::size_t n, const std::vector<Column>& cols, double tiny,
                               int threads) {
  constexpr std::size_t kMinRows = 512;  // ~1 ms of printing: a thread costs ~0.05 ms
  const std::size_t parts =
      std::max<std::size_t>(1, std::min<std::size_t>(threads > 0 ? threads : 1, n / kMinRows));
  if (parts == 1) return format_rows(n, cols, tiny);
  // the columns of each range, their pointers advanced to its first row
  std::vector<std::vector<Column>> part_cols(parts, cols);
  std::vector<std::size_t> first(parts + 1);
  for (std::size_t p = 0; p <= parts; ++p) first[p] = n * p / parts;
  for (std::size_t c = 0; c < cols.size(); ++c) {
    const Column& col = cols[c];
    if (col.kind != 's') {
      for (std::size_t p = 0; p < parts; ++p) {
        Column& pc = part_cols[p][c];
        if (pc.ints) pc.ints += first[p];
        if (pc.values) pc.values += first[p];
        if (pc.log10p) pc.log10p += first[p];
      }
      continue;
    }
    std::size_t offset = 0, row = 0;
    for (std::size_t p = 1; p < parts; ++p) {
      while (row < first[p]) {  // skip to the token of row first[p]
        const void* nl = std::memchr(col.text + offset, '\n', col.text_size - offset);
        if (nl == nullptr) throw std::invalid_argument("a text column has too few tokens");
        offset = static_cast<std::size_t>(static_cast<const char*>(nl) - col.text) + 1;
        ++row;
      }
      part_cols[p][c].text = col.text + offset;
      part_cols[p][c].text_size = col.text_size - offset;
    }
  }
  std::vector<std::string> pieces(parts);
  std::vector<std::exception_ptr> errors(parts);
  std::vector<std::thread> pool;
  for (std::size_t p = 0; p < parts; ++p)
    pool.emplace_back([&, p]() {
      try {
        pieces[p] = format_rows(first[p + 1] - first[p], part_cols[p], tiny);
      } catch (...) {
        errors[p] = std::current_exception();
      }
    });
  for (auto& t : pool) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
  std::size_t total = 0;
  for (const auto& piece : pieces) total += piece.size();
  std::string out;
  out.reserve(total);
  for (const auto& piece : pieces) out += piece;
  return out;
}

}  // namespace lmmscan::text

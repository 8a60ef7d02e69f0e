// A number parser for the text readers (textio.py): the values of a chunk of
// whitespace/comma separated lines, parsed with the GIL released, optionally
// on several threads.  Python keeps the files, the chunking, the shape
// checks and the error messages; this only turns bytes into doubles.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "lmmscan/text_format.hpp"
#include "lmmscan/text_split.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#if defined(__GLIBC__)
#include <locale.h>
#elif defined(__APPLE__)
#include <xlocale.h>
#endif
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace py = pybind11;

namespace {

// byte classes: 0 token byte, 1 separator (space, tab, comma, CR), 2 newline
constexpr std::array<std::uint8_t, 256> kClass = [] {
  std::array<std::uint8_t, 256> c{};
  c[' '] = c['\t'] = c[','] = c['\r'] = 1;
  c['\n'] = 2;
  return c;
}();

bool is_digit(char c) { return c >= '0' && c <= '9'; }

bool equal_nocase(const char* s, std::size_t n, const char* word) {
  if (std::strlen(word) != n) return false;
  for (std::size_t i = 0; i < n; ++i) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != word[i]) return false;
  }
  return true;
}

bool equal(const char* s, std::size_t n, const char* word) {
  return std::strlen(word) == n && std::memcmp(s, word, n) == 0;
}

// The decimal number at s (n bytes, already matched by is_decimal), correctly
// rounded by the C library's strtod in the "C" locale: an overflow gives
// +-inf, an underflow 0 or a denormal.  Not std::from_chars: its double
// overload needs libstdc++ 3.4.29 (GCC 11; absent from RHEL 8's libstdc++,
// so a wheel using it cannot be manylinux_2_28) and libc++ 20 (absent from
// the macOS SDKs and the clang of zig's glibc-2.28 toolchain).  Both are
// correctly rounded, so the doubles are the same bit for bit.
double decimal_value(const char* s, std::size_t n) {
  // strtod needs a terminating NUL; tokens are short, so a stack copy
  char small[64];
  std::string large;
  const char* tok = small;
  if (n < sizeof small) {
    std::memcpy(small, s, n);
    small[n] = '\0';
  } else {
    large.assign(s, n);
    tok = large.c_str();
  }
#if defined(__GLIBC__) || defined(__APPLE__)
  static const locale_t c_locale = newlocale(LC_ALL_MASK, "C", locale_t{});
  return strtod_l(tok, nullptr, c_locale);
#else
  return std::strtod(tok, nullptr);
#endif
}

// [+-]? (digits [. digits?] | . digits) ([eE] [+-]? digits)?, the whole of
// [s, end): the decimal syntax both from_chars and strtod read alike (strtod
// alone also reads hex, inf, nan and leading spaces, which never get here).
bool is_decimal(const char* p, const char* end) {
  if (p < end && (*p == '+' || *p == '-')) ++p;
  const char* const digits_start = p;
  while (p < end && is_digit(*p)) ++p;
  bool mantissa = p > digits_start;
  if (p < end && *p == '.') {
    ++p;
    const char* const frac_start = p;
    while (p < end && is_digit(*p)) ++p;
    mantissa = mantissa || p > frac_start;
  }
  if (!mantissa) return false;
  if (p < end && (*p == 'e' || *p == 'E')) {
    ++p;
    if (p < end && (*p == '+' || *p == '-')) ++p;
    const char* const exp_start = p;
    while (p < end && is_digit(*p)) ++p;
    if (p == exp_start) return false;
  }
  return p == end;
}

// The tokens that are numbers (the ones pandas' C parser read with the NaN
// spellings below, minus its quoting and stray whitespace):
//   [+-]? (digits [. digits?] | . digits) ([eE] [+-]? digits)?   correctly rounded
//   [+-]? (inf | infinity), any case                              +-inf
//   NA  nan  NaN  -nan  -NaN                                      NaN
// (only NA when not nan_words).  Anything else (including "NAN", "+nan",
// "1_0", "0x10") is not a number.
bool parse_token(const char* s, std::size_t n, bool nan_words, double& out) {
  const char* p = s;
  const char* end = s + n;
  bool negative = false;
  if (*p == '+' || *p == '-') {
    negative = *p == '-';
    ++p;
  }
  if (p < end && (is_digit(*p) || *p == '.')) {
    if (!is_decimal(s, end)) return false;
    out = decimal_value(s, n);
    return true;
  }
  const std::size_t rest = static_cast<std::size_t>(end - p);
  if (equal_nocase(p, rest, "inf") || equal_nocase(p, rest, "infinity")) {
    out = negative ? -HUGE_VAL : HUGE_VAL;
    return true;
  }
  if (equal(s, n, "NA") || (nan_words && (equal(s, n, "nan") || equal(s, n, "NaN") ||
                                          equal(s, n, "-nan") || equal(s, n, "-NaN")))) {
    out = std::numeric_limits<double>::quiet_NaN();
    return true;
  }
  return false;
}

// Clinger's fast path, fused with finding the token's end: a token of at most
// 19 digits m and a decimal exponent e, where m < 2^53 and
// |e| <= 22, is m * 10^e or m / 10^-e: one correctly rounded operation on
// exact operands, so the result is correctly rounded (strtod's).  GEMMA's
// %.10g values all take it.  Returns false (p unchanged) for anything else.
constexpr double kPow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                             1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                             1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

constexpr auto kPow10Int = [] {
  std::array<std::uint64_t, 17> t{};
  std::uint64_t v = 1;
  for (std::uint64_t& x : t) {
    x = v;
    v *= 10;
  }
  return t;
}();

// Appends the digits at p to m (the number of digits read goes into
// `digits`); false when that would pass 19 digits (m might overflow).  On a
// little-endian machine, 8 bytes a step without a branch per digit: the run
// of leading digits is found with one mask (a carry or borrow only moves
// towards later bytes, past the first non-digit) and the digits are
// combined with fast_float's SWAR multiplications.
bool read_digits(const char*& p, const char* end, std::uint64_t& m, int& digits) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  while (end - p >= 8) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    const std::uint64_t other =
        ((w + 0x4646464646464646) | (w - 0x3030303030303030)) & 0x8080808080808080;
    const int n = other ? __builtin_ctzll(other) >> 3 : 8;
    if (n == 0) return true;
    if ((digits += n) > 19) return false;
    // the n digits as the last n bytes of 8 (the others 0: leading zeros)
    std::uint64_t v = (w - 0x3030303030303030) << (8 * (8 - n));
    v = v * 10 + (v >> 8);
    v = (((v & 0x000000FF000000FF) * 0x000F424000000064) +
         (((v >> 16) & 0x000000FF000000FF) * 0x0000271000000001)) >>
        32;
    m = m * kPow10Int[n] + v;
    p += n;
    if (n < 8) return true;
  }
#endif
  while (p < end && is_digit(*p)) {
    if (++digits > 19) return false;
    m = m * 10 + static_cast<std::uint64_t>(*p - '0');
    ++p;
  }
  return true;
}

// m * 10^exp10 (negated when negative) into out when Clinger's fast path
// gives it correctly rounded; false otherwise.
__attribute__((always_inline)) inline bool clinger(std::uint64_t m, int exp10, bool negative,
                                                   double& out) {
  double v = 0.0;
  if (m != 0) {
    if (m > (std::uint64_t{1} << 53) || exp10 < -22 || exp10 > 22) return false;
    v = static_cast<double>(m);
    v = exp10 < 0 ? v / kPow10[-exp10] : v * kPow10[exp10];
  }
  out = negative ? -v : v;
  return true;
}

bool fast_number_scalar(const char*& pos, const char* end, double& out) {
  const char* p = pos;
  bool negative = false;
  if (p < end && (*p == '-' || *p == '+')) {
    negative = *p == '-';
    ++p;
  }
  std::uint64_t m = 0;
  int digits = 0;  // digits in m (leading zeros included)
  int exp10 = 0;
  const char* first = p;
  if (!read_digits(p, end, m, digits)) return false;
  bool any = p > first;
  if (p < end && *p == '.') {
    ++p;
    const char* frac = p;
    if (!read_digits(p, end, m, digits)) return false;
    exp10 = -static_cast<int>(p - frac);
    any = any || p > frac;
  }
  if (!any) return false;
  if (p < end && (*p == 'e' || *p == 'E')) {
    ++p;
    bool eneg = false;
    if (p < end && (*p == '-' || *p == '+')) {
      eneg = *p == '-';
      ++p;
    }
    const char* e_first = p;
    std::uint64_t e = 0;
    int e_digits = 0;
    if (!read_digits(p, end, e, e_digits) || p == e_first || e > 100000) return false;
    exp10 += eneg ? -static_cast<int>(e) : static_cast<int>(e);
  }
  if (p < end && kClass[static_cast<unsigned char>(*p)] == 0) return false;
  if (!clinger(m, exp10, negative, out)) return false;
  pos = p;
  return true;
}

#if defined(__SSE2__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define LMMSCAN_WIDE_NUMBER 1
// The length (0-16) of the run of digits in the 16 bytes at p.
__attribute__((always_inline)) inline int digit_run(const char* p) {
  const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  // signed compares: bytes >= 0x80 are negative, so below '0'
  const __m128i other = _mm_or_si128(_mm_cmplt_epi8(x, _mm_set1_epi8('0')),
                                     _mm_cmpgt_epi8(x, _mm_set1_epi8('9')));
  return __builtin_ctz(static_cast<unsigned>(_mm_movemask_epi8(other)) | 0x10000u);
}

// The value of the first n (0-8) bytes at p, all digits; the bytes after
// them (which are read) do not matter.  No branch on n.
__attribute__((always_inline)) inline std::uint64_t digits_value(const char* p, int n) {
  std::uint64_t w;
  std::memcpy(&w, p, 8);
  // the n digits as the last n bytes of 8 (a borrow only moves towards later
  // bytes, which the shift drops); n = 0 gives 0
  const std::uint64_t d = w - 0x3030303030303030;
  std::uint64_t v = n > 0 ? d << ((8 * (8 - n)) & 63) : 0;
  v = v * 10 + (v >> 8);
  return (((v & 0x000000FF000000FF) * 0x000F424000000064) +
          (((v >> 16) & 0x000000FF000000FF) * 0x0000271000000001)) >>
         32;
}

// The value of the first n (0-16) digits at p.
__attribute__((always_inline)) inline std::uint64_t run_value(const char* p, int n) {
  const int low = n > 8 ? n - 8 : 0;
  return digits_value(p, n - low) * kPow10Int[low] + digits_value(p + 8, low);
}

// fast_number_scalar's fast path with the integer and fraction digits found
// 16 bytes at a time and converted with no branch on their count (the
// lengths of GEMMA's %.10g values vary from one value to the next).  Needs
// 48 readable bytes at pos; false (pos unchanged) where the scalar fast path
// might not take the token, which then goes to it.
__attribute__((always_inline)) inline bool fast_number_wide(const char*& pos, const char* end,
                                                            double& out) {
  const char* p = pos;
  const bool negative = *p == '-';
  p += negative || *p == '+';
  const int int_digits = digit_run(p);
  if (int_digits == 16) return false;
  std::uint64_t m = run_value(p, int_digits);
  p += int_digits;
  int frac_digits = 0;
  if (*p == '.') {
    ++p;
    frac_digits = digit_run(p);
    if (frac_digits == 16 || int_digits + frac_digits > 19) return false;
    m = m * kPow10Int[frac_digits] + run_value(p, frac_digits);
    p += frac_digits;
  }
  if (int_digits + frac_digits == 0) return false;
  int exp10 = -frac_digits;
  if (*p == 'e' || *p == 'E') {
    ++p;
    bool eneg = false;
    if (*p == '-' || *p == '+') {
      eneg = *p == '-';
      ++p;
    }
    const int e_digits = digit_run(p);
    if (e_digits == 0 || e_digits > 5) return false;
    const auto e = static_cast<int>(digits_value(p, e_digits));
    p += e_digits;
    exp10 += eneg ? -e : e;
  }
  if (p < end && kClass[static_cast<unsigned char>(*p)] == 0) return false;
  if (!clinger(m, exp10, negative, out)) return false;
  pos = p;
  return true;
}
#endif

// The number at pos when Clinger's fast path takes it (see
// fast_number_scalar): false (pos unchanged) otherwise.
bool fast_number(const char*& pos, const char* end, double& out) {
#if defined(LMMSCAN_WIDE_NUMBER)
  if (end - pos >= 48 && fast_number_wide(pos, end, out)) return true;
#endif
  return fast_number_scalar(pos, end, out);
}

bool is_separator(unsigned char c) {
  return c == ' ' || c == '\t' || c == ',' || c == '\r' || c == '\n';
}

// The number of tokens in data[begin, end): the first pass, which sizes the
// output so that the second writes each value once, in place.  SSE2 (every
// x86-64): 16 bytes a step, a token start being a non-separator after a
// separator (or at begin).
std::size_t count_tokens(const char* data, std::size_t begin, std::size_t end) {
  const auto* d = reinterpret_cast<const unsigned char*>(data);
  std::size_t n = 0;
  unsigned prev_sep = 1;
  std::size_t i = begin;
#if defined(__SSE2__)
  const __m128i space = _mm_set1_epi8(' '), tab = _mm_set1_epi8('\t'),
                comma = _mm_set1_epi8(','), cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n');
  __m128i prev = _mm_set1_epi8(-1);  // 0xFF: the byte before begin is a separator
  while (i + 16 <= end) {
    // 0/1 token starts summed per byte lane over up to 255 steps, then added up
    __m128i lanes = _mm_setzero_si128();
    for (int step = 0; step < 255 && i + 16 <= end; ++step, i += 16) {
      const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(d + i));
      const __m128i sep = _mm_or_si128(
          _mm_or_si128(_mm_cmpeq_epi8(x, space), _mm_cmpeq_epi8(x, tab)),
          _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, comma), _mm_cmpeq_epi8(x, cr)),
                       _mm_cmpeq_epi8(x, lf)));
      const __m128i before = _mm_or_si128(_mm_slli_si128(sep, 1), _mm_srli_si128(prev, 15));
      lanes = _mm_sub_epi8(lanes, _mm_andnot_si128(sep, before));
      prev = sep;
    }
    const __m128i sums = _mm_sad_epu8(lanes, _mm_setzero_si128());
    n += static_cast<std::size_t>(_mm_cvtsi128_si64(sums)) +
         static_cast<std::size_t>(_mm_cvtsi128_si64(_mm_unpackhi_epi64(sums, sums)));
  }
  prev_sep = i > begin ? is_separator(d[i - 1]) : 1u;
#endif
  for (; i < end; ++i) {
    const unsigned sep = is_separator(d[i]);
    n += !sep & prev_sep;
    prev_sep = sep;
  }
  return n;
}

// One thread's piece of the buffer: whole lines data[begin, end).
struct Part {
  std::size_t begin = 0;
  std::size_t end = 0;
  std::size_t n_values = 0;          // tokens (first pass)
  std::vector<std::int64_t> counts;  // tokens on each line
  std::int64_t bad = -1;             // offset (in the whole buffer) of the first bad token
  bool mismatch = false;             // not as many values as counted (a bug; never expected)
};

// The second pass: the values of the part into dst[0, n_values) and the
// tokens per line (a line ends with '\n' or at the part's end).
void parse_part(const char* data, Part& part, bool nan_words, double* dst) {
  std::int64_t count = 0;
  std::size_t written = 0;
  const std::size_t end = part.end;
  std::size_t i = part.begin;
  while (i < end) {
    const std::uint8_t cls = kClass[static_cast<unsigned char>(data[i])];
    if (cls == 1) {
      ++i;
      continue;
    }
    if (cls == 2) {
      part.counts.push_back(count);
      count = 0;
      ++i;
      continue;
    }
    double v;
    const char* p = data + i;
    if (fast_number(p, data + end, v)) {
      i = static_cast<std::size_t>(p - data);
    } else {
      std::size_t j = i + 1;
      while (j < end && kClass[static_cast<unsigned char>(data[j])] == 0) ++j;
      double slow;
      if (!parse_token(data + i, j - i, nan_words, slow)) {
        part.bad = static_cast<std::int64_t>(i);
        return;
      }
      v = slow;
      i = j;
    }
    if (written == part.n_values) {
      part.mismatch = true;
      return;
    }
    dst[written++] = v;
    ++count;
  }
  if (end > part.begin && data[end - 1] != '\n') part.counts.push_back(count);
  part.mismatch = written != part.n_values;
}

// Runs fn(part_index) for every part, parts 1.. on their own threads (here,
// if a thread cannot be started).
template <typename Fn>
void for_parts(std::size_t n_parts, Fn fn) {
  std::vector<std::thread> workers;
  std::size_t started = 1;
  try {
    for (; started < n_parts; ++started) workers.emplace_back(fn, started);
  } catch (const std::system_error&) {
  }
  for (std::size_t k = started; k < n_parts; ++k) fn(k);
  if (n_parts > 0) fn(0);
  for (std::thread& t : workers) t.join();
}

using OutArray = py::array_t<double, py::array::c_style>;

py::tuple parse_numbers(const py::buffer& buf, int threads, std::optional<OutArray> out,
                        bool nan_words) {
  if (threads < 1) throw py::value_error("threads must be at least 1");
  const py::buffer_info info = buf.request();
  if (info.ndim != 1 || info.itemsize != 1 || (info.shape[0] > 1 && info.strides[0] != 1))
    throw py::value_error("parse_numbers needs contiguous bytes");
  if (out && (out->ndim() != 1 || !out->writeable()))
    throw py::value_error("out must be a writable 1-D float64 array");
  const char* data = static_cast<const char*>(info.ptr);
  const std::size_t size = static_cast<std::size_t>(info.shape[0]);

  // parts end just after a newline (or at the end), so that no line is split
  std::vector<Part> parts;
  std::size_t begin = 0;
  for (int k = 1; k <= threads && begin < size; ++k) {
    std::size_t at = std::max(begin, size * static_cast<std::size_t>(k) / threads);
    if (at > 0 && at < size) {
      const void* nl = std::memchr(data + at - 1, '\n', size - (at - 1));
      at = nl ? static_cast<std::size_t>(static_cast<const char*>(nl) - data) + 1 : size;
    }
    if (k == threads) at = size;
    if (at > begin) {
      parts.emplace_back();
      parts.back().begin = begin;
      parts.back().end = at;
      begin = at;
    }
  }
  {
    py::gil_scoped_release release;
    for_parts(parts.size(), [&](std::size_t k) {
      parts[k].n_values = count_tokens(data, parts[k].begin, parts[k].end);
    });
  }
  std::size_t total = 0;
  for (const Part& p : parts) total += p.n_values;
  // the values go into out when they fit, else into a new array
  py::array_t<double> values;
  if (out && static_cast<std::size_t>(out->size()) >= total)
    values = py::array_t<double>({static_cast<py::ssize_t>(total)}, {sizeof(double)},
                                 out->mutable_data(), *out);
  else
    values = py::array_t<double>(static_cast<py::ssize_t>(total));
  double* dst = values.mutable_data();
  {
    py::gil_scoped_release release;
    std::vector<std::size_t> offset(parts.size() + 1, 0);
    for (std::size_t k = 0; k < parts.size(); ++k)
      offset[k + 1] = offset[k] + parts[k].n_values;
    for_parts(parts.size(),
              [&](std::size_t k) { parse_part(data, parts[k], nan_words, dst + offset[k]); });
  }
  for (const Part& p : parts) {
    if (p.bad >= 0)
      return py::make_tuple(py::array_t<double>(0), py::array_t<std::int64_t>(0), p.bad);
    if (p.mismatch)
      throw std::logic_error("parse_numbers: not as many values as tokens counted");
  }
  std::size_t n_lines = 0;
  for (const Part& p : parts) n_lines += p.counts.size();
  py::array_t<std::int64_t> counts(static_cast<py::ssize_t>(n_lines));
  std::int64_t* c = counts.mutable_data();
  for (const Part& p : parts) c = std::copy(p.counts.begin(), p.counts.end(), c);
  return py::make_tuple(values, counts, std::int64_t{-1});
}

// The binding of lmmscan::text::format_rows: columns as (kind, data) pairs.
py::bytes format_rows(const py::list& columns, std::size_t n, double tiny, int threads) {
  std::vector<lmmscan::text::Column> cols;
  std::vector<py::object> keep;  // the buffers, alive while the GIL is released
  for (const py::handle item : columns) {
    auto pair = item.cast<py::tuple>();
    if (pair.size() != 2) throw std::invalid_argument("a column is a (kind, data) pair");
    auto kind = pair[0].cast<std::string>();
    lmmscan::text::Column col;
    if (kind.size() != 1) throw std::invalid_argument("a column kind is one letter");
    col.kind = kind[0];
    auto need = [n](py::ssize_t size) {
      if (static_cast<std::size_t>(size) != n)
        throw std::invalid_argument("a column's length is not the number of rows");
    };
    if (col.kind == 's') {
      auto b = pair[1].cast<py::bytes>();
      char* data = nullptr;
      py::ssize_t size = 0;
      if (PyBytes_AsStringAndSize(b.ptr(), &data, &size) != 0) throw py::error_already_set();
      col.text = data;
      col.text_size = static_cast<std::size_t>(size);
      keep.push_back(b);
    } else if (col.kind == 'i') {
      auto a =
          py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>::ensure(pair[1]);
      if (!a) throw std::invalid_argument("an 'i' column needs integers");
      need(a.size());
      col.ints = a.data();
      keep.push_back(a);
    } else if (col.kind == 'p') {
      auto pl = pair[1].cast<py::tuple>();
      auto p = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(pl[0]);
      auto l = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(pl[1]);
      if (!p || !l) throw std::invalid_argument("a 'p' column needs (p, log10p) arrays");
      need(p.size());
      need(l.size());
      col.values = p.data();
      col.log10p = l.data();
      keep.push_back(p);
      keep.push_back(l);
    } else {
      auto a = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(pair[1]);
      if (!a) throw std::invalid_argument("a number column needs floats");
      need(a.size());
      col.values = a.data();
      keep.push_back(a);
    }
    cols.push_back(col);
  }
  std::string text;
  {
    py::gil_scoped_release release;
    text = lmmscan::text::format_rows(n, cols, tiny, threads);
  }
  return py::bytes(text);
}

// A vector or string moved to the heap, owned by the numpy array that views it.
template <typename T, typename Container>
py::array_t<T> owned_array(Container&& values) {
  auto* heap = new Container(std::move(values));
  py::capsule owner(heap, [](void* p) { delete static_cast<Container*>(p); });
  return py::array_t<T>({static_cast<py::ssize_t>(heap->size())}, {sizeof(T)},
                        reinterpret_cast<const T*>(heap->data()), owner);
}

// The binding of lmmscan::text::split_fields: None, or (n_lines, n_fields,
// columns) with a (uint8 text, int64 offsets) pair per 's' field, an int64
// array per 'i' field and None per '-' field.
py::object split_fields(const py::bytes& buf, const std::string& kinds,
                        std::int64_t int_limit) {
  for (char k : kinds)
    if (k != 's' && k != 'i' && k != '-')
      throw std::invalid_argument("split_fields: a kind is one of 's', 'i', '-'");
  if (int_limit < 0) throw std::invalid_argument("split_fields: int_limit must be >= 0");
  char* data = nullptr;
  py::ssize_t size = 0;
  if (PyBytes_AsStringAndSize(buf.ptr(), &data, &size) != 0) throw py::error_already_set();
  lmmscan::text::SplitColumns cols;
  bool plain = false;
  {
    py::gil_scoped_release release;
    plain = lmmscan::text::split_fields(data, static_cast<std::size_t>(size), kinds, int_limit,
                                        cols);
  }
  if (!plain) return py::none();
  py::list columns;
  for (std::size_t k = 0; k < kinds.size(); ++k) {
    if (kinds[k] == 's')
      columns.append(py::make_tuple(owned_array<std::uint8_t>(std::move(cols.text[k])),
                                    owned_array<std::int64_t>(std::move(cols.offsets[k]))));
    else if (kinds[k] == 'i')
      columns.append(owned_array<std::int64_t>(std::move(cols.ints[k])));
    else
      columns.append(py::none());
  }
  return py::make_tuple(cols.n_lines, cols.n_fields, columns);
}

}  // namespace

void register_text(py::module_& m) {
  m.def("format_rows", &format_rows, py::arg("columns"), py::arg("n"), py::arg("tiny"),
        py::arg("threads") = 1,
        R"doc(n rows of a table as bytes: fields tab-separated, rows newline-ended.

``columns``: (kind, data) pairs, in order: 's' bytes of newline-ended
tokens; 'i' int64; 'f' float64 as %.3f; 'e' float64 as %.6e; 'p' a
(p, log10p) pair, %.6e, spelled from -log10 p below ``tiny``.  Printed by
printf in the "C" locale: Python's format() digits.  The GIL is released;
``threads`` > 1 formats that many ranges of rows in parallel (the same
bytes).)doc");
  m.def("parse_numbers", &parse_numbers, py::arg("buf"), py::arg("threads") = 1,
        py::arg("out").noconvert() = py::none(), py::arg("nan_words") = true,
        R"doc(The numbers of a chunk of text lines: (values, tokens per line, bad).

Tokens are separated by any of space, tab, comma and CR; lines by LF (a last
line without LF counts).  Numbers are C's decimal floats (a leading '+'
allowed, correctly rounded), [+-]inf/infinity in any case, and NaN for NA
(and for nan, NaN, -nan and -NaN when ``nan_words``).  ``bad`` is -1, or the
byte offset of the first token that is not a number (then the arrays are
empty).  The GIL is released; ``threads`` > 1 parses that many pieces, cut
after newlines, in parallel.  ``out`` (a writable contiguous float64
vector, never converted): the values are written at its start when they fit
(``values`` is then a view of it), else into a new array.)doc");
  m.def("split_fields", &split_fields, py::arg("buf"), py::arg("kinds"), py::arg("int_limit"),
        R"doc(Plain text lines split into columns: None, or (n_lines, n_fields, columns).

``kinds``: one letter per leading field, 's' text, 'i' integer, '-' skipped
(later fields are skipped too).  A text column is (uint8 bytes of its
tokens, each ended by newline; int64 offsets, n_lines + 1, from 0); an
integer column int64 values.  None unless the text is plain: ASCII, fields
separated by runs of spaces or tabs, LF line ends, every line with the first
line's number of fields (at least len(kinds)), no blank line, no whitespace
at a line's start or end, no '"', integers [+-]digits within +-int_limit.
The GIL is released while splitting.)doc");
}

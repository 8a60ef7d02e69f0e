// A number parser for the text readers (textio.py): the values of a chunk of
// whitespace/comma separated lines, parsed with the GIL released, optionally
// on several threads.  Python keeps the files, the chunking, the shape
// checks and the error messages; this only turns bytes into doubles.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#if defined(__GLIBC__)
#include <locale.h>
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

// A finite or infinite value out of double's range ("1e999", "1e-400"):
// from_chars reports it without a value; strtod rounds it (to +-inf, 0 or a
// denormal), in the "C" locale.
double out_of_range(const char* s, std::size_t n) {
  const std::string tok(s, n);
#if defined(__GLIBC__)
  static const locale_t c_locale = newlocale(LC_ALL_MASK, "C", locale_t{});
  return strtod_l(tok.c_str(), nullptr, c_locale);
#else
  return std::strtod(tok.c_str(), nullptr);
#endif
}

// The tokens that are numbers (the ones pandas' C parser read with the NaN
// spellings below, minus its quoting and stray whitespace):
//   [+-]? (digits [. digits?] | . digits) ([eE] [+-]? digits)?   correctly rounded
//   [+-]? (inf | infinity), any case                              +-inf
//   NA  nan  NaN  -nan  -NaN                                      NaN
// Anything else (including "NAN", "+nan", "1_0", "0x10") is not a number.
bool parse_token(const char* s, std::size_t n, double& out) {
  const char* p = s;
  const char* end = s + n;
  bool negative = false;
  if (*p == '+' || *p == '-') {
    negative = *p == '-';
    ++p;
  }
  if (p < end && (is_digit(*p) || *p == '.')) {
    // from_chars takes no '+' and reads a '-' itself
    const char* first = negative ? s : p;
    auto r = std::from_chars(first, end, out, std::chars_format::general);
    if (r.ptr != end) return false;
    if (r.ec == std::errc::result_out_of_range) {
      out = out_of_range(first, static_cast<std::size_t>(end - first));
      return true;
    }
    return r.ec == std::errc{};
  }
  const std::size_t rest = static_cast<std::size_t>(end - p);
  if (equal_nocase(p, rest, "inf") || equal_nocase(p, rest, "infinity")) {
    out = negative ? -HUGE_VAL : HUGE_VAL;
    return true;
  }
  if (equal(s, n, "NA") || equal(s, n, "nan") || equal(s, n, "NaN") || equal(s, n, "-nan") ||
      equal(s, n, "-NaN")) {
    out = std::numeric_limits<double>::quiet_NaN();
    return true;
  }
  return false;
}

// Clinger's fast path, fused with finding the token's end: a token of at most
// 19 significant digits m and a decimal exponent e, where m < 2^53 and
// |e| <= 22, is m * 10^e or m / 10^-e: one correctly rounded operation on
// exact operands, so the result is correctly rounded (strtod's).  GEMMA's
// %.10g values all take it.  Returns false (p unchanged) for anything else.
constexpr double kPow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                             1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                             1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

// Eight ASCII digits at p, as a number (fast_float's SWAR tricks, little endian).
bool eight_digits(const char* p, std::uint64_t& value) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  std::uint64_t v;
  std::memcpy(&v, p, 8);
  if (((v + 0x4646464646464646) | (v - 0x3030303030303030)) & 0x8080808080808080) return false;
  v -= 0x3030303030303030;
  v = v * 10 + (v >> 8);
  value = (((v & 0x000000FF000000FF) * 0x000F424000000064) +
           (((v >> 16) & 0x000000FF000000FF) * 0x0000271000000001)) >> 32;
  return true;
#else
  (void)p;
  (void)value;
  return false;
#endif
}

// Appends the digits at p to m; false when m would pass 19 significant digits.
bool read_digits(const char*& p, const char* end, std::uint64_t& m, int& digits) {
  std::uint64_t eight;
  while (end - p >= 8 && eight_digits(p, eight)) {
    if ((digits += 8) > 19) return false;
    m = m * 100000000 + eight;
    p += 8;
  }
  while (p < end && is_digit(*p)) {
    if (++digits > 19) return false;
    m = m * 10 + static_cast<std::uint64_t>(*p - '0');
    ++p;
  }
  return true;
}

bool fast_number(const char*& pos, const char* end, double& out) {
  const char* p = pos;
  bool negative = false;
  if (p < end && (*p == '-' || *p == '+')) {
    negative = *p == '-';
    ++p;
  }
  std::uint64_t m = 0;
  int digits = 0;  // significant digits in m
  int exp10 = 0;
  const char* first = p;
  while (p < end && *p == '0') ++p;  // leading zeros
  if (!read_digits(p, end, m, digits)) return false;
  bool any = p > first;
  if (p < end && *p == '.') {
    ++p;
    const char* frac = p;
    if (m == 0)
      while (p < end && *p == '0') ++p;
    if (!read_digits(p, end, m, digits)) return false;
    exp10 -= static_cast<int>(p - frac);
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
    if (p == end || !is_digit(*p)) return false;
    int e = 0;
    while (p < end && is_digit(*p)) {
      if (e > 10000) return false;
      e = e * 10 + (*p - '0');
      ++p;
    }
    exp10 += eneg ? -e : e;
  }
  if (p < end && kClass[static_cast<unsigned char>(*p)] == 0) return false;
  double v;
  if (m == 0) {
    v = 0.0;
  } else {
    if (m > (std::uint64_t{1} << 53) || exp10 < -22 || exp10 > 22) return false;
    v = static_cast<double>(m);
    v = exp10 < 0 ? v / kPow10[-exp10] : v * kPow10[exp10];
  }
  out = negative ? -v : v;
  pos = p;
  return true;
}

struct Part {
  std::vector<double> values;
  std::vector<std::int64_t> counts;  // tokens on each line
  std::int64_t bad = -1;             // offset (in the whole buffer) of the first bad token
};

// Parses data[begin, end): every line ends with '\n' or at `end`.
void parse_part(const char* data, std::size_t begin, std::size_t end, Part& part) {
  // a %.10g kinship has about 12 bytes per value
  part.values.reserve((end - begin) / 8 + 16);
  std::int64_t count = 0;
  std::size_t i = begin;
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
      part.values.push_back(v);
      ++count;
      i = static_cast<std::size_t>(p - data);
      continue;
    }
    std::size_t j = i + 1;
    while (j < end && kClass[static_cast<unsigned char>(data[j])] == 0) ++j;
    if (!parse_token(data + i, j - i, v)) {
      part.bad = static_cast<std::int64_t>(i);
      return;
    }
    part.values.push_back(v);
    ++count;
    i = j;
  }
  if (end > begin && data[end - 1] != '\n') part.counts.push_back(count);
}

template <typename T>
py::array_t<T> to_array(const std::vector<Part>& parts, std::vector<T> Part::*field) {
  std::size_t total = 0;
  for (const Part& p : parts) total += (p.*field).size();
  py::array_t<T> out(static_cast<py::ssize_t>(total));
  T* dst = out.mutable_data();
  for (const Part& p : parts) {
    const auto& src = p.*field;
    if (!src.empty()) std::memcpy(dst, src.data(), src.size() * sizeof(T));
    dst += src.size();
  }
  return out;
}

py::tuple parse_numbers(const py::buffer& buf, int threads) {
  if (threads < 1) throw py::value_error("threads must be at least 1");
  const py::buffer_info info = buf.request();
  if (info.ndim != 1 || info.itemsize != 1 || (info.shape[0] > 1 && info.strides[0] != 1))
    throw py::value_error("parse_numbers needs contiguous bytes");
  const char* data = static_cast<const char*>(info.ptr);
  const std::size_t size = static_cast<std::size_t>(info.shape[0]);

  // parts end just after a newline (or at the end), so that no line is split
  std::vector<std::size_t> cuts{0};
  for (int k = 1; k < threads; ++k) {
    std::size_t at = std::max(cuts.back(), size * static_cast<std::size_t>(k) / threads);
    if (at > 0 && at < size) {
      const void* nl = std::memchr(data + at - 1, '\n', size - (at - 1));
      at = nl ? static_cast<std::size_t>(static_cast<const char*>(nl) - data) + 1 : size;
    }
    if (at > cuts.back() && at < size) cuts.push_back(at);
  }
  cuts.push_back(size);
  std::vector<Part> parts(cuts.size() - 1);
  {
    py::gil_scoped_release release;
    std::vector<std::thread> workers;
    for (std::size_t k = 1; k < parts.size(); ++k)
      workers.emplace_back(parse_part, data, cuts[k], cuts[k + 1], std::ref(parts[k]));
    parse_part(data, cuts[0], cuts[1], parts[0]);
    for (std::thread& t : workers) t.join();
  }
  for (const Part& p : parts)
    if (p.bad >= 0)
      return py::make_tuple(py::array_t<double>(0), py::array_t<std::int64_t>(0), p.bad);
  return py::make_tuple(to_array(parts, &Part::values), to_array(parts, &Part::counts),
                        std::int64_t{-1});
}

}  // namespace

void register_text(py::module_& m) {
  m.def("parse_numbers", &parse_numbers, py::arg("buf"), py::arg("threads") = 1,
        R"doc(The numbers of a chunk of text lines: (values, tokens per line, bad).

Tokens are separated by any of space, tab, comma and CR; lines by LF (a last
line without LF counts).  Numbers are C's decimal floats (a leading '+'
allowed, correctly rounded), [+-]inf/infinity in any case, and NaN for NA,
nan, NaN, -nan and -NaN.  ``bad`` is -1, or the byte offset of the first
token that is not a number (then the arrays are empty).  The GIL is released;
``threads`` > 1 parses that many pieces, cut after newlines, in parallel.)doc");
}

// A variant table's text (a PLINK .bim, for one) split into columns without a
// Python object per field: each text column is one buffer of its tokens, each
// ended by '\n' (the form text_format.hpp prints from), with the offset where
// each token starts; integer columns are int64.
//
// Only plain text is split: ASCII, fields separated by runs of spaces or
// tabs, lines ended by LF (the last one may lack it), every line with the
// first line's number of fields, no blank line, no whitespace before the
// first or after the last field, no '"'.  Anything else makes split_fields
// return false, and the caller reads the file the general way (pandas), which
// accepts more and names the line at fault: on plain text the two give the
// same tokens.  An 'i' field is [+-]digits with a magnitude at most
// `int_limit`, else the text is not plain either.
//
// No pybind11, no files: the binding hands in the bytes and gets the columns.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace lmmscan::text {

struct SplitColumns {
  std::size_t n_lines = 0;
  std::size_t n_fields = 0;  // on every line
  // per kept field, in the order of `kinds`: text columns fill `text` and
  // `offsets` (n_lines + 1, from 0), integer columns `ints`
  std::vector<std::string> text;
  std::vector<std::vector<std::int64_t>> offsets;
  std::vector<std::vector<std::int64_t>> ints;
};

// `kinds`: one letter per leading field: 's' text, 'i' integer, '-' skipped;
// fields past them are skipped; a line needs at least kinds.size() fields.
inline bool split_fields(const char* data, std::size_t size, const std::string& kinds,
                         std::int64_t int_limit, SplitColumns& out) {
  const std::size_t want = kinds.size();
  out = SplitColumns{};
  out.text.resize(want);
  out.offsets.resize(want);
  out.ints.resize(want);
  // a first guess at the line count (from the first line's length) sizes the buffers
  std::size_t first_len = 0;
  while (first_len < size && data[first_len] != '\n') ++first_len;
  const std::size_t guess = size / (first_len + 1) + 1;
  for (std::size_t k = 0; k < want; ++k) {
    if (kinds[k] == 's') {
      out.offsets[k].reserve(guess + 1);
      out.offsets[k].push_back(0);
      out.text[k].reserve(size / (want + 1));
    } else if (kinds[k] == 'i') {
      out.ints[k].reserve(guess);
    }
  }
  std::size_t pos = 0;
  std::size_t fields_first = 0;
  while (pos < size) {
    std::size_t field = 0;
    const char c0 = data[pos];
    if (c0 == '\n' || c0 == ' ' || c0 == '\t') return false;  // blank line, leading space
    while (true) {
      const std::size_t begin = pos;
      while (pos < size) {
        const unsigned char c = static_cast<unsigned char>(data[pos]);
        if (c == ' ' || c == '\t' || c == '\n') break;
        if (c >= 0x80 || c == '"' || c == '\r' || c < 0x20) return false;
        ++pos;
      }
      const std::size_t end = pos;
      if (field < want) {
        const char kind = kinds[field];
        if (kind == 's') {
          out.text[field].append(data + begin, end - begin);
          out.text[field].push_back('\n');
          out.offsets[field].push_back(static_cast<std::int64_t>(out.text[field].size()));
        } else if (kind == 'i') {
          std::size_t i = begin;
          bool negative = false;
          if (i < end && (data[i] == '+' || data[i] == '-')) negative = data[i++] == '-';
          if (i == end) return false;
          std::int64_t value = 0;
          for (; i < end; ++i) {
            const char c = data[i];
            if (c < '0' || c > '9') return false;
            const std::int64_t digit = c - '0';
            if (value > int_limit / 10 || (value == int_limit / 10 && digit > int_limit % 10))
              return false;  // past the limit
            value = value * 10 + digit;
          }
          out.ints[field].push_back(negative ? -value : value);
        }
      }
      ++field;
      if (pos == size || data[pos] == '\n') break;
      // a run of spaces and tabs, then another field (not the line's end)
      while (pos < size && (data[pos] == ' ' || data[pos] == '\t')) ++pos;
      if (pos == size || data[pos] == '\n') return false;  // trailing whitespace
    }
    if (out.n_lines == 0) {
      fields_first = field;
      if (fields_first < want) return false;
    } else if (field != fields_first) {
      return false;
    }
    ++out.n_lines;
    if (pos < size) ++pos;  // the '\n'
  }
  out.n_fields = fields_first;
  return out.n_lines > 0;
}

}  // namespace lmmscan::text

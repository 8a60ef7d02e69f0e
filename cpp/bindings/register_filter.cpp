// Binding of the genotype block filter (cpp/include/lmmscan/snp_filter.hpp):
// array checks and the GIL; filters.py keeps the r2 filter, the counts and
// the buffers.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <vector>

#include <lmmscan/duplicates.hpp>
#include <lmmscan/hwe.hpp>
#include <lmmscan/snp_filter.hpp>

namespace py = pybind11;

namespace {

py::tuple filter_impute(const py::array& X_in, double maf, double miss,
                        std::optional<py::array> out, int threads,
                        std::optional<py::array_t<double, py::array::f_style>> W,
                        std::optional<py::array_t<double, py::array::c_style>> work) {
  if (X_in.ndim() != 2) throw py::value_error("X must be 2-dimensional (samples x SNPs)");
  if (!py::isinstance<py::array_t<double>>(X_in)) throw py::value_error("X must be float64");
  const bool f_order = (X_in.flags() & py::array::f_style) != 0;
  const bool c_order = (X_in.flags() & py::array::c_style) != 0;
  if (!f_order && !c_order) throw py::value_error("X must be C- or Fortran-contiguous");
  lmmscan::GenotypeBlock X;
  X.x = static_cast<const double*>(X_in.data());
  X.n = X_in.shape(0);
  X.b = X_in.shape(1);
  X.column_major = f_order && !c_order;
  X.ld = X.column_major ? X.n : X.b;
  double* dst = nullptr;
  float* dst32 = nullptr;
  if (out) {
    const bool f64 = py::isinstance<py::array_t<double>>(*out);
    if ((!f64 && !py::isinstance<py::array_t<float>>(*out)) || out->ndim() != 1 ||
        out->size() < X.n * X.b || (out->flags() & py::array::c_style) == 0 ||
        !out->writeable())
      throw py::value_error(
          "out must be a flat, writeable float64 or float32 buffer of at least n * b values");
    if (f64)
      dst = static_cast<double*>(out->mutable_data());
    else
      dst32 = static_cast<float*>(out->mutable_data());
  }
  if (work) {
    // a row-major block's double imputation, before it is rounded into out
    if (dst32 == nullptr || X.column_major)
      throw py::value_error("work goes with a float32 out and a C-ordered X only");
    if (work->ndim() != 1 || work->size() < X.n * X.b)
      throw py::value_error("work must be a flat float64 buffer of at least n * b values");
    dst = work->mutable_data();
  }
  if (threads < 1) throw py::value_error("threads must be at least 1");
  if (W && !out) throw py::value_error("W needs out (the products are of the imputed SNPs)");
  if (W && (W->ndim() != 2 || W->shape(0) != X.n))
    throw py::value_error("W must be (samples, c), with X's samples");
  lmmscan::SnpFilterOptions opt;
  opt.maf = maf;
  opt.miss = miss;
  py::array_t<std::int64_t> n_miss(X.b);
  py::array_t<double> af(X.b);
  py::array_t<std::int8_t> verdict(X.b);
  auto* nm = n_miss.mutable_data();
  auto* a = af.mutable_data();
  auto* v = reinterpret_cast<lmmscan::SnpVerdict*>(verdict.mutable_data());
  lmmscan::KeptProducts products;
  py::array_t<double> xx, wx, amax;
  const int c = W ? static_cast<int>(W->shape(1)) : 0;
  if (W) {
    // sized for every SNP; the first k entries (k kept) are written, and the
    // first c * k of wx as (c, k)
    xx = py::array_t<double>(X.b);
    wx = py::array_t<double>(static_cast<py::ssize_t>(c) * X.b);
    amax = py::array_t<double>(X.b);
    products = {W->data(), c, xx.mutable_data(), wx.mutable_data(), amax.mutable_data()};
  }
  lmmscan::kernels::Index k = 0;
  {
    py::gil_scoped_release release;
    k = lmmscan::filter_impute(X, opt, threads, nm, a, v, dst, products, dst32);
  }
  if (!W) return py::make_tuple(n_miss, af, verdict);
  // the kept SNPs' products: x'x (k,), W'x (c, k) and max |x_i| (k,)
  py::array_t<double> wx_k({static_cast<py::ssize_t>(c), static_cast<py::ssize_t>(k)});
  std::copy(wx.data(), wx.data() + c * k, wx_k.mutable_data());
  return py::make_tuple(n_miss, af, verdict,
                        py::make_tuple(xx[py::slice(0, k, 1)], wx_k, amax[py::slice(0, k, 1)]));
}

py::array_t<double> hwe_exact(const py::array_t<std::int64_t, py::array::c_style>& hom1,
                              const py::array_t<std::int64_t, py::array::c_style>& het,
                              const py::array_t<std::int64_t, py::array::c_style>& hom2) {
  if (hom1.ndim() != 1 || het.ndim() != 1 || hom2.ndim() != 1 || het.size() != hom1.size() ||
      hom2.size() != hom1.size())
    throw py::value_error("hom1, het and hom2 must be 1-D arrays of one length");
  const auto m = hom1.size();
  py::array_t<double> p(m);
  const auto* a = hom1.data();
  const auto* h = het.data();
  const auto* b = hom2.data();
  for (py::ssize_t j = 0; j < m; ++j)
    if (a[j] < 0 || h[j] < 0 || b[j] < 0) throw py::value_error("genotype counts must be >= 0");
  auto* out = p.mutable_data();
  {
    py::gil_scoped_release release;
    std::vector<double> scratch;
    for (py::ssize_t j = 0; j < m; ++j)
      out[j] = lmmscan::hwe_exact_p(a[j], h[j], b[j], scratch);
  }
  return p;
}

// Identical columns of an imputed block, moved out in place when there are at
// least min_duplicates of them (see duplicates.hpp).
template <class T>
lmmscan::kernels::Index distinct_in_place(py::array& X, std::int64_t min_duplicates,
                                          int threads, std::int64_t* first) {
  const auto n = X.shape(0), k = X.shape(1);
  auto* x = static_cast<T*>(X.mutable_data());
  py::gil_scoped_release release;
  const auto distinct = lmmscan::identical_columns(x, n, k, n, threads, first);
  if (k - distinct >= min_duplicates && distinct < k)
    lmmscan::keep_distinct_columns(x, n, k, n, first);
  return distinct;
}

py::object distinct_columns(py::array X, std::int64_t min_duplicates, int threads) {
  const bool f64 = py::isinstance<py::array_t<double>>(X);
  if (X.ndim() != 2 || !(f64 || py::isinstance<py::array_t<float>>(X)))
    throw py::value_error(
        "X must be a 2-dimensional float64 or float32 array (samples x SNPs)");
  if ((X.flags() & py::array::f_style) == 0 || !X.writeable())
    throw py::value_error(
        "X must be Fortran-contiguous and writeable (it is compacted in place)");
  if (threads < 1) throw py::value_error("threads must be at least 1");
  const auto k = X.shape(1);
  py::array_t<std::int64_t> first(k);
  auto* f = first.mutable_data();
  const auto distinct = f64 ? distinct_in_place<double>(X, min_duplicates, threads, f)
                            : distinct_in_place<float>(X, min_duplicates, threads, f);
  if (k - distinct < min_duplicates || distinct == k) return py::none();
  return py::make_tuple(static_cast<py::ssize_t>(distinct), first);
}

}  // namespace

void register_filter(py::module_& m) {
  m.def("filter_impute", &filter_impute, py::arg("X"), py::arg("maf"), py::arg("miss"),
        py::arg("out") = py::none(), py::arg("threads") = 1, py::arg("W") = py::none(),
        py::arg("work") = py::none(),
        "GEMMA's miss, maf and monomorphic filters of a float64 block X (samples x SNPs,\n"
        "NaN missing, C or Fortran order): returns (n_miss, af, verdict) per SNP, verdict\n"
        "0 kept, 1 miss, 2 maf, 3 monomorphic (the first filter failed); maf < 0 turns\n"
        "the maf filter off.  With out (a flat float64 or float32 buffer of n * b values),\n"
        "the kept SNPs with missing values set to 2 af are written to its start as an\n"
        "(n, kept) block in X's order (float32: each value rounded from the double one).\n"
        "With W (samples x c, Fortran order) as well, a fourth item (xx, WtX, amax) holds\n"
        "each kept SNP's x'x, W'x (c, kept) and max |x_i| of the imputed double values.\n"
        "work (a flat float64 buffer of n * b values; a float32 out and a C-ordered X only):\n"
        "where the double block is imputed before it is rounded (else a block of its own).");
  m.def("distinct_columns", &distinct_columns, py::arg("X"), py::arg("min_duplicates"),
        py::arg("threads") = 1,
        "The SNPs of an imputed block X (samples x SNPs, float64 or float32, Fortran\n"
        "order) whose values are bit for bit those of an earlier SNP.  With fewer than\n"
        "min_duplicates of them: None, X untouched.  Otherwise the distinct SNPs are\n"
        "moved, in order, to the front of X, in place, and (d, inverse) returned:\n"
        "X[:, :d] holds them and SNP j's values are column inverse[j] of it.");
  m.def("hwe_exact", &hwe_exact, py::arg("hom1"), py::arg("het"), py::arg("hom2"),
        "The exact Hardy-Weinberg p-value (Wigginton et al. 2005) of each SNP's genotype\n"
        "counts (int64 arrays: one homozygote, heterozygotes, the other homozygote), as\n"
        "GEMMA's -hwe; 1 for a SNP without genotypes.");
}

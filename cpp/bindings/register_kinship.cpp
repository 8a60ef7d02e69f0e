// Bindings of the kinship kernels (cpp/include/lmmscan/kinship.hpp): array
// checks and the GIL; kinship.py keeps the filters, the -gk 2 scaling and the
// buffers, loco.py the sums.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>

#include <lmmscan/kinship.hpp>

namespace py = pybind11;

namespace {

py::tuple kinship_columns(const py::array_t<double, py::array::f_style>& X,
                          const py::array_t<std::int64_t, py::array::c_style>& cols,
                          std::optional<py::array_t<std::int64_t, py::array::c_style>> rows,
                          py::array_t<double, py::array::c_style> out, int threads) {
  if (X.ndim() != 2) throw py::value_error("X must be 2-dimensional (samples x SNPs)");
  if (cols.ndim() != 1 || (rows && rows->ndim() != 1))
    throw py::value_error("cols and rows must be 1-D");
  if (threads < 1) throw py::value_error("threads must be at least 1");
  lmmscan::GenotypeBlock block;
  block.x = X.data();
  block.n = X.shape(0);
  block.b = X.shape(1);
  block.ld = block.n;
  const py::ssize_t k = cols.size();
  const auto* c = cols.data();
  for (py::ssize_t p = 0; p < k; ++p)
    if (c[p] < 0 || c[p] >= block.b) throw py::value_error("cols out of range");
  const py::ssize_t n_rows = rows ? rows->size() : block.n;
  const std::int64_t* r = rows ? rows->data() : nullptr;
  for (py::ssize_t i = 0; r != nullptr && i < n_rows; ++i)
    if (r[i] < 0 || r[i] >= block.n) throw py::value_error("rows out of range");
  if (out.ndim() != 1 || out.size() < n_rows * k)
    throw py::value_error("out must be a flat float64 buffer of at least rows * cols values");
  py::array_t<double> mean(k);
  double* m = mean.mutable_data();
  double* z = out.mutable_data();
  {
    py::gil_scoped_release release;
    lmmscan::kinship_columns(block, c, k, r, n_rows, threads, m, z);
  }
  return py::make_tuple(mean, out);
}

py::array_t<double> loco_difference(const py::array_t<double, py::array::f_style>& S,
                                    const py::array_t<double, py::array::f_style>& S_c,
                                    double p) {
  if (S.ndim() != 2 || S.shape(0) != S.shape(1) || S_c.ndim() != 2 ||
      S_c.shape(0) != S.shape(0) || S_c.shape(1) != S.shape(1))
    throw py::value_error("S and S_c must be square matrices of one order");
  const py::ssize_t n = S.shape(0);
  py::array_t<double> K({n, n});
  double* k = K.mutable_data();
  {
    py::gil_scoped_release release;
    lmmscan::loco_difference(S.data(), S_c.data(), n, p, k);
  }
  return K;
}

}  // namespace

void register_kinship(py::module_& m) {
  m.def("kinship_columns", &kinship_columns, py::arg("X").noconvert(),
        py::arg("cols").noconvert(), py::arg("rows").noconvert(), py::arg("out").noconvert(),
        py::arg("threads") = 1,
        "GEMMA's kinship columns of a Fortran-ordered float64 block X (samples x SNPs,\n"
        "NaN missing): for the columns cols (int64), each one's mean of its observed values\n"
        "over all samples, and the column with missing values set to the mean, minus the\n"
        "mean, at the rows rows (int64; None: every row), written to the start of out (a\n"
        "flat float64 buffer) as a (rows, cols) Fortran-ordered block.  numpy's pairwise\n"
        "sums: the same bits as numpy's column means.  Returns (mean, out).");
  m.def("loco_difference", &loco_difference, py::arg("S").noconvert(),
        py::arg("S_c").noconvert(), py::arg("p"),
        "(S - S_c) / p, symmetric and C-ordered, from the upper triangles of the\n"
        "Fortran-ordered kinship sums S and S_c (dsyrk's output; the lower triangles\n"
        "are not read).");
}

// The private extension lmmscan._core: thin conversions around the
// header-only core in cpp/include/lmmscan.  Policy (filters, alignment,
// p-values, files) lives in the Python package.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void register_lmm(py::module_& m);
void register_text(py::module_& m);
void register_filter(py::module_& m);

PYBIND11_MODULE(_core, m) {
  m.doc() = "lmmscan numerical core (C++/Eigen); use the lmmscan package, not this module";
  register_lmm(m);
  register_text(m);
  register_filter(m);
}

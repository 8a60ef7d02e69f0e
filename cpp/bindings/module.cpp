// The private extension lmmscan._core: thin conversions around the
// header-only core in cpp/include/lmmscan.  Policy (filters, alignment,
// p-values, files) lives in the Python package.
#include <pybind11/pybind11.h>

#include <exception>
#include <stdexcept>

namespace py = pybind11;

void register_lmm(py::module_& m);
void register_text(py::module_& m);
void register_filter(py::module_& m);
void register_kinship(py::module_& m);

namespace {

// The core's argument errors (std::invalid_argument from cpp/include, and the
// bindings' own checks) reach Python as lmmscan.InputError, a ValueError that
// the command line reports as bad input, instead of a bare ValueError.
void raise_input_error(const char* message) {
  py::object error = py::module_::import("lmmscan._errors").attr("InputError");
  PyErr_SetObject(error.ptr(), py::str(message).ptr());
}

void translate(std::exception_ptr p) {
  try {
    if (p) std::rethrow_exception(p);
  } catch (const py::value_error& e) {
    raise_input_error(e.what());
  } catch (const std::invalid_argument& e) {
    raise_input_error(e.what());
  }
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "lmmscan numerical core (C++/Eigen); use the lmmscan package, not this module";
  py::register_exception_translator(&translate);
  register_lmm(m);
  register_text(m);
  register_filter(m);
  register_kinship(m);
}

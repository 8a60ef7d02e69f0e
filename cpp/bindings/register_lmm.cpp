// Bindings of the null-model fit and the per-SNP scan.
#include <pybind11/eigen.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>

#include <lmmscan/null_model.hpp>
#include <lmmscan/scan.hpp>

namespace py = pybind11;
using lmmscan::RowMajorMatrix;
using ConstVec = Eigen::Ref<const Eigen::VectorXd>;
using ConstMat = Eigen::Ref<const Eigen::MatrixXd>;        // (n, c) Fortran order
using ConstRowMat = Eigen::Ref<const RowMajorMatrix>;     // (b, n) C order
template <typename Scalar>
using ConstRows = Eigen::Ref<const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic,
                                                 Eigen::RowMajor>>;  // (b, n) C order

namespace {

lmmscan::LambdaOptions lambda_options(double l_min, double l_max, int n_region) {
  if (!(l_min > 0.0) || !(l_max > l_min) || !std::isfinite(l_max))
    throw py::value_error("lambda bounds must satisfy 0 < l_min < l_max < inf");
  // each interval is one more evaluation per SNP and three more rows of n
  // weights per scanner (the command line's --region stops at the same
  // bound, and its memory plan counts those rows)
  if (n_region < 1 || n_region > 10000)
    throw py::value_error("n_region must be between 1 and 10000");
  lmmscan::LambdaOptions opt;
  opt.l_min = l_min;
  opt.l_max = l_max;
  opt.n_region = n_region;
  return opt;
}

void check_shapes(const ConstVec& d, const ConstMat& UtW, const ConstVec& Uty) {
  if (UtW.rows() != d.size() || Uty.size() != d.size())
    throw py::value_error("d, UtW and Uty must have the same number of rows");
  if (!d.allFinite() || !UtW.allFinite() || !Uty.allFinite())
    throw py::value_error("d, UtW and Uty must be finite");
  if (UtW.cols() < 1) throw py::value_error("UtW needs at least one column (the intercept)");
  if (d.size() > 0 && d.minCoeff() < 0.0)
    throw py::value_error("eigenvalues d must be >= 0 (zero the negative ones first)");
}

// The zero-eigenvalue complement: n_total samples and C (c+1, c+1), the Gram
// matrix of (W, y) on the directions orthogonal to the k given ones.
struct ComplementArg {
  Eigen::Index n_total = 0;
  RowMajorMatrix gram;
  lmmscan::Complement view() const {
    lmmscan::Complement c;
    c.n = n_total;
    c.gram = n_total > 0 ? gram.data() : nullptr;
    return c;
  }
};

ComplementArg complement_arg(const ConstVec& d, const ConstMat& UtW, Eigen::Index n_total,
                             const std::optional<RowMajorMatrix>& gram) {
  ComplementArg out;
  if (n_total == 0 && !gram) return out;
  if (n_total < d.size()) throw py::value_error("n_total must be at least len(d)");
  const Eigen::Index m = UtW.cols() + 1;
  out.n_total = n_total;
  out.gram = gram ? *gram : RowMajorMatrix::Zero(m, m);
  if (out.gram.rows() != m || out.gram.cols() != m)
    throw py::value_error("complement must be (c + 1, c + 1)");
  if (!out.gram.allFinite()) throw py::value_error("complement must be finite");
  return out;
}

// Owns the rotated data the ScanContext points into.
class Scanner {
 public:
  Scanner(ConstVec d, ConstMat UtW, ConstVec Uty, const lmmscan::NullFit& null, bool wald,
          bool lrt, bool score, double l_min, double l_max, int n_region, Eigen::Index n_total,
          std::optional<RowMajorMatrix> complement, bool fixed_lambda,
          std::optional<Eigen::MatrixXd> raw_W, std::optional<Eigen::VectorXd> raw_y,
          double whitened_lambda, bool reuse_covariate_levels)
      : d_(d), W_(UtW), y_(Uty) {
    check_shapes(d, UtW, Uty);
    comp_ = complement_arg(d, UtW, n_total, complement);
    lmmscan::Whitened wh;
    if (raw_W || raw_y) {
      if (!raw_W || !raw_y) throw py::value_error("give both raw_W and raw_y, or neither");
      raw_W_ = std::move(*raw_W);
      raw_y_ = std::move(*raw_y);
      if (raw_W_.rows() != d.size() || raw_W_.cols() != UtW.cols() || raw_y_.size() != d.size())
        throw py::value_error("raw_W and raw_y must have the shapes of UtW and Uty");
      if (!raw_W_.allFinite() || !raw_y_.allFinite())
        throw py::value_error("raw_W and raw_y must be finite");
      wh.W = raw_W_.data();
      wh.y = raw_y_.data();
      wh.lambda = whitened_lambda;
    }
    lmmscan::ScanOptions opt;
    opt.lambda = lambda_options(l_min, l_max, n_region);
    opt.wald = wald;
    opt.lrt = lrt;
    opt.score = score;
    opt.fixed_lambda = fixed_lambda;
    opt.reuse_covariate_levels = reuse_covariate_levels;
    ctx_ = std::make_unique<lmmscan::ScanContext>(d_.data(), W_.data(), y_.data(), d_.size(),
                                                  static_cast<int>(W_.cols()), null, opt,
                                                  comp_.view(), wh);
  }

  // UtX float64, or float32 from a single-precision rotation (see scan_block)
  template <typename Scalar>
  Eigen::MatrixXd scan(ConstRows<Scalar> UtX, std::optional<ConstRowMat> comp, int threads,
                       std::optional<ConstRowMat> X) const {
    if (UtX.cols() != ctx_->n())
      throw py::value_error("UtX must have one column per rotated direction");
    if (threads < 1) throw py::value_error("threads must be at least 1");
    const double* raw = nullptr;
    if (ctx_->whitened().active()) {
      if (!X || X->rows() != UtX.rows() || X->cols() != UtX.cols())
        throw py::value_error("a whitened scan needs X (b, n): the raw SNPs of UtX");
      raw = X->data();
    } else if (X) {
      throw py::value_error("X (the raw SNPs) goes only with whitened data");
    }
    const double* comp_ptr = nullptr;
    if (ctx_->has_complement()) {
      if (!comp || comp->rows() != UtX.rows() || comp->cols() != ctx_->m())
        throw py::value_error("comp must be (b, c + 2): each SNP's complement entries");
      comp_ptr = comp->data();
    }
    // UtX is checked for finiteness SNP by SNP inside scan_block (in parallel).
    Eigen::MatrixXd out(UtX.rows(), lmmscan::kResultColumns);
    // Python runs a signal's handler on the main thread, between bytecodes:
    // while the block is tested it is asked every 50 ms (a block with
    // hundreds of covariates held SIGTERM for minutes).  Its exception
    // (KeyboardInterrupt) stops the threads and is raised here.
    bool signalled = false;
    const std::function<bool()> signal_raised = [&signalled]() {
      py::gil_scoped_acquire acquire;
      signalled = PyErr_CheckSignals() != 0;
      return signalled;
    };
    {
      py::gil_scoped_release release;
      try {
        lmmscan::scan_block(*ctx_, UtX.data(), UtX.outerStride(), UtX.rows(), comp_ptr,
                            out.data(), out.rows(), threads, raw, raw ? X->outerStride() : 0,
                            &signal_raised);
      } catch (const lmmscan::Cancelled&) {
      }
    }
    if (signalled) throw py::error_already_set();
    return out;
  }

 private:
  Eigen::VectorXd d_;
  Eigen::MatrixXd W_;
  Eigen::VectorXd y_;
  Eigen::MatrixXd raw_W_;
  Eigen::VectorXd raw_y_;
  ComplementArg comp_;
  std::unique_ptr<lmmscan::ScanContext> ctx_;
};

}  // namespace

void register_lmm(py::module_& m) {
  py::class_<lmmscan::NullFit>(m, "NullFit", "Null-model fit (GEMMA's definitions)")
      .def_readonly("n", &lmmscan::NullFit::n)
      .def_readonly("c", &lmmscan::NullFit::c)
      .def_readonly("trace_G", &lmmscan::NullFit::trace_G)
      .def_readonly("lambda_remle", &lmmscan::NullFit::lambda_remle)
      .def_readonly("logl_remle", &lmmscan::NullFit::logl_remle)
      .def_readonly("vg", &lmmscan::NullFit::vg)
      .def_readonly("ve", &lmmscan::NullFit::ve)
      .def_readonly("pve", &lmmscan::NullFit::pve)
      .def_readonly("pve_se", &lmmscan::NullFit::pve_se)
      .def_readonly("beta", &lmmscan::NullFit::beta)
      .def_readonly("beta_se", &lmmscan::NullFit::beta_se)
      .def_readonly("lambda_mle", &lmmscan::NullFit::lambda_mle)
      .def_readonly("logl_mle", &lmmscan::NullFit::logl_mle)
      .def_readonly("vg_mle", &lmmscan::NullFit::vg_mle)
      .def_readonly("ve_mle", &lmmscan::NullFit::ve_mle)
      .def_readonly("beta_mle", &lmmscan::NullFit::beta_mle)
      .def_readonly("beta_se_mle", &lmmscan::NullFit::beta_se_mle)
      .def_readonly("yPy_remle", &lmmscan::NullFit::yPy_remle)
      .def_readonly("yPy_mle", &lmmscan::NullFit::yPy_mle)
      .def_readonly("evaluations", &lmmscan::NullFit::evaluations)
      // Pickles as its fields (a NullModel can then go to Dask workers or disk).
      .def(py::pickle(
          [](const lmmscan::NullFit& f) {
            return py::make_tuple(1, f.n, f.c, f.trace_G, f.lambda_remle, f.logl_remle, f.vg,
                                  f.ve, f.pve, f.pve_se, f.beta, f.beta_se, f.lambda_mle,
                                  f.logl_mle, f.vg_mle, f.ve_mle, f.beta_mle, f.beta_se_mle,
                                  f.yPy_remle, f.yPy_mle, f.evaluations);
          },
          [](const py::tuple& t) {
            if (t.size() != 21 || t[0].cast<int>() != 1)
              throw std::runtime_error("not a pickled lmmscan NullFit of this version");
            lmmscan::NullFit f;
            size_t i = 1;  // the fields in __getstate__'s order
            auto take = [&](auto& field) {
              field = t[i++].cast<std::remove_reference_t<decltype(field)>>();
            };
            take(f.n);
            take(f.c);
            take(f.trace_G);
            take(f.lambda_remle);
            take(f.logl_remle);
            take(f.vg);
            take(f.ve);
            take(f.pve);
            take(f.pve_se);
            take(f.beta);
            take(f.beta_se);
            take(f.lambda_mle);
            take(f.logl_mle);
            take(f.vg_mle);
            take(f.ve_mle);
            take(f.beta_mle);
            take(f.beta_se_mle);
            take(f.yPy_remle);
            take(f.yPy_mle);
            take(f.evaluations);
            return f;
          }));

  m.def(
      "fit_null",
      [](ConstVec d, ConstMat UtW, ConstVec Uty, double l_min, double l_max, int n_region,
         Eigen::Index n_total, std::optional<RowMajorMatrix> complement) {
        check_shapes(d, UtW, Uty);
        const auto opt = lambda_options(l_min, l_max, n_region);
        const ComplementArg comp = complement_arg(d, UtW, n_total, complement);
        py::gil_scoped_release release;
        return lmmscan::fit_null(d.data(), UtW.data(), Uty.data(), d.size(),
                                 static_cast<int>(UtW.cols()), opt, comp.view());
      },
      py::arg("d").noconvert(), py::arg("UtW").noconvert(), py::arg("Uty").noconvert(),
      py::arg("l_min") = 1e-5, py::arg("l_max") = 1e5, py::arg("n_region") = 10,
      py::arg("n_total") = 0, py::arg("complement") = py::none(),
      "Fit the null model from eigenvalues d (k,), rotated covariates UtW (k, c; "
      "Fortran order) and rotated phenotype Uty (k,).  With k < n samples, n_total = n "
      "and complement = the (c+1, c+1) Gram matrix of (W, y) on the other directions.");

  m.def(
      "null_loglik",
      [](ConstVec d, ConstMat UtW, ConstVec Uty, double lambda, Eigen::Index n_total,
         std::optional<RowMajorMatrix> complement) {
        check_shapes(d, UtW, Uty);
        const ComplementArg comp = complement_arg(d, UtW, n_total, complement);
        lmmscan::NullEvaluator ev(d.data(), UtW.data(), Uty.data(), d.size(),
                                  static_cast<int>(UtW.cols()), comp.view());
        if (ev.total() < UtW.cols() + 2) throw py::value_error("need n >= c + 2");
        const lmmscan::Projection& p = ev.evaluate(lambda, 3);
        const auto ml = ev.ml_dev(p), reml = ev.reml_dev(p);
        py::dict out;
        out["ml"] = ev.ml(p);
        out["reml"] = ev.reml(p);
        out["ml_dev1"] = ml.dev1;
        out["ml_dev2"] = ml.dev2;
        out["reml_dev1"] = reml.dev1;
        out["reml_dev2"] = reml.dev2;
        out["P_yy"] = p.P_yy;
        return out;
      },
      py::arg("d").noconvert(), py::arg("UtW").noconvert(), py::arg("Uty").noconvert(),
      py::arg("lambda_"), py::arg("n_total") = 0, py::arg("complement") = py::none(),
      "GEMMA's ML and REML log-likelihoods of the null model and their first two "
      "derivatives in lambda, at one lambda (for checks against dense formulas).");

  py::class_<Scanner>(m, "Scanner", "Per-SNP tests against a fitted null model")
      .def(py::init<ConstVec, ConstMat, ConstVec, const lmmscan::NullFit&, bool, bool, bool,
                    double, double, int, Eigen::Index, std::optional<RowMajorMatrix>, bool,
                    std::optional<Eigen::MatrixXd>, std::optional<Eigen::VectorXd>, double,
                    bool>(),
           py::arg("d").noconvert(), py::arg("UtW").noconvert(), py::arg("Uty").noconvert(),
           py::arg("null"), py::arg("wald") = true, py::arg("lrt") = true,
           py::arg("score") = true, py::arg("l_min") = 1e-5, py::arg("l_max") = 1e5,
           py::arg("n_region") = 10, py::arg("n_total") = 0, py::arg("complement") = py::none(),
           py::arg("fixed_lambda") = false, py::arg("raw_W") = py::none(),
           py::arg("raw_y") = py::none(), py::arg("whitened_lambda") = std::nan(""),
           py::arg("_reuse_covariate_levels") = true,
           "With raw_W and raw_y (the unwhitened W and y), UtW and Uty are whitened: "
           "L^-1 W and L^-1 y with L L' = whitened_lambda K + I (fixed_lambda only). "
           "_reuse_covariate_levels=False projects the covariates per SNP at the fixed "
           "lambdas (the same bits; for the tests).")
      .def("scan", &Scanner::scan<double>, py::arg("UtX").noconvert(),
           py::arg("comp") = py::none(), py::arg("threads") = 1, py::arg("X") = py::none(),
           "Test the SNPs of UtX (b, k; C order, one rotated SNP per row; float64, or "
           "float32 from a single-precision rotation, widened exactly per SNP); with a "
           "complement, comp (b, c + 2) holds each SNP's x'(I - UU')v for v = W..., x, y; "
           "whitened, X (b, n; C order) holds the raw SNPs. "
           "Returns (b, len(RESULT_COLUMNS)).")
      .def("scan", &Scanner::scan<float>, py::arg("UtX").noconvert(),
           py::arg("comp") = py::none(), py::arg("threads") = 1, py::arg("X") = py::none());

  // The kernels' instruction-set level (lmmscan/kernels.hpp): the one in use,
  // and a ceiling on it, for the tests that compare the levels' bits.
  static const char* const kIsaNames[] = {"x86-64", "x86-64-v3", "x86-64-v4"};
  m.def(
      "_isa", []() { return std::string(kIsaNames[lmmscan::kernels::isa()]); },
      "The instruction-set level the kernels use now.");
  m.def(
      "_limit_isa",
      [](const std::string& name) {
        for (int level = 0; level < 3; ++level)
          if (name == kIsaNames[level]) {
            lmmscan::kernels::isa_limit().store(level);
            return;
          }
        throw std::invalid_argument("unknown instruction-set level '" + name + "'");
      },
      py::arg("level"),
      "Use at most this level (x86-64, x86-64-v3 or x86-64-v4) from now on in this process.");

  m.attr("RESULT_COLUMNS") =
      py::make_tuple("beta", "se", "logl_reml", "logl_mle", "l_remle", "l_mle", "f_wald",
                     "f_score", "beta_score", "se_score", "evaluations");
}

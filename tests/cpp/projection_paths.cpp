// project() against covariate_levels() + project_snp() on random problems:
// prints the number of values whose bits differ.  Built by
// tests/test_covariate_levels.py as the package is (C++17, the compiler's
// default contraction) with FMA instructions: GCC then fuses multiply-adds
// across statements and may round the two ways differently unless
// likelihood.hpp prevents it.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "lmmscan/likelihood.hpp"

namespace {
std::uint64_t bits(double v) {
  std::uint64_t u;
  std::memcpy(&u, &v, sizeof u);
  return u;
}
}  // namespace

int main() {
  using namespace lmmscan;
  std::mt19937_64 rng(7);
  std::normal_distribution<double> normal;
  long differ = 0, compared = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    const int c = trial % 10, m = c + 2, n = 24;
    std::vector<double> V(static_cast<size_t>(n) * m), h(n), g(n);
    for (double& v : V) v = normal(rng);
    if (trial % 7 == 3)
      for (int i = 0; i < n; ++i) V[c * n + i] = 0.0;  // a SNP whose pivot is zero
    for (int i = 0; i < n; ++i) {
      const double d = std::exp(normal(rng));
      h[i] = 1.0 / (0.3 * d + 1.0);
      g[i] = d * h[i];
    }
    std::vector<double> S(3 * m * m, 0.0);  // S_k[a][b] = sum_i h g^(k-1) v_a v_b
    for (int k = 0; k < 3; ++k)
      for (int a = 0; a < m; ++a)
        for (int b = a; b < m; ++b) {
          double s = 0.0;
          for (int i = 0; i < n; ++i) {
            double w = h[i];
            for (int j = 0; j < k; ++j) w *= g[i];
            s += w * V[a * n + i] * V[b * n + i];
          }
          S[k * m * m + a * m + b] = s;
        }
    const CovariateLevels levels = covariate_levels(S.data(), c);
    for (int kmax = 1; kmax <= 3; ++kmax) {
      std::vector<double> full = S;
      Projection pf;
      project(full.data(), m, kmax, c, pf, false);
      std::vector<double> xe(3 * m, 0.0), S1(m * m, 0.0);
      for (int k = 0; k < kmax; ++k)
        for (int b = 0; b < m; ++b)
          xe[k * m + b] = S[k * m * m + (b < c ? b : c) * m + (b < c ? c : b)];
      Projection ps;
      project_snp(levels, xe.data(), kmax, ps, S1.data());
      const double one[] = {pf.P_xx,     pf.P_xy,        pf.P_yy_split,
                            pf.P_yy,     pf.T_yy,        pf.T2_yy,
                            pf.trace_TP, pf.trace_TT_T2, pivot_logdet(full.data(), m)};
      const double two[] = {ps.P_xx,     ps.P_xy,        ps.P_yy_split,
                            ps.P_yy,     ps.T_yy,        ps.T2_yy,
                            ps.trace_TP, ps.trace_TT_T2, pivot_logdet(S1.data(), m)};
      for (int f = 0; f < 9; ++f) {
        ++compared;
        if (bits(one[f]) != bits(two[f]) && !(std::isnan(one[f]) && std::isnan(two[f])))
          ++differ;
      }
    }
  }
  std::printf("%ld %ld\n", differ, compared);
  return 0;
}

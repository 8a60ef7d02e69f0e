// Hardy-Weinberg equilibrium: the exact test of Wigginton, Cutler and
// Abecasis (2005, Am J Hum Genet 76:887), as GEMMA 0.98.5's -hwe applies it
// (mathfunc.cpp CalcHWE).  Conditional on the allele counts, the number of
// heterozygotes has a known distribution; its probabilities follow from a
// ratio between neighbours, so they are built outward from one near the mode
// (set to 1) and normalised at the end.  The p-value is the total probability
// of the heterozygote counts no more likely than the one observed.
#pragma once

#include <cstdint>
#include <vector>

namespace lmmscan {

// p-value of genotype counts (hom1, het, hom2); 1 when there is no genotype.
// `probs` is scratch space (resized as needed), so that a loop over SNPs
// allocates once.
inline double hwe_exact_p(std::int64_t hom1, std::int64_t het, std::int64_t hom2,
                          std::vector<double>& probs) {
  const std::int64_t total = hom1 + het + hom2;
  if (total <= 0) return 1.0;
  const std::int64_t hom_rare = hom1 < hom2 ? hom1 : hom2;
  const std::int64_t hom_common = hom1 < hom2 ? hom2 : hom1;
  const std::int64_t rare = 2 * hom_rare + het;  // copies of the rarer allele
  probs.assign(static_cast<std::size_t>(rare) + 1, 0.0);

  // a heterozygote count of the same parity as `rare`, near the mode
  std::int64_t mid = rare * (2 * total - rare) / (2 * total);
  if ((rare & 1) != (mid & 1)) ++mid;

  probs[mid] = 1.0;
  double sum = 1.0;
  // fewer heterozygotes: each step down by 2 adds one homozygote of each kind
  {
    std::int64_t r = (rare - mid) / 2;
    std::int64_t c = total - mid - r;
    for (std::int64_t h = mid; h > 1; h -= 2) {
      probs[h - 2] = probs[h] * h * (h - 1.0) / (4.0 * (r + 1.0) * (c + 1.0));
      sum += probs[h - 2];
      ++r;
      ++c;
    }
  }
  // more heterozygotes: each step up by 2 takes one homozygote of each kind
  {
    std::int64_t r = (rare - mid) / 2;
    std::int64_t c = total - mid - r;
    for (std::int64_t h = mid; h <= rare - 2; h += 2) {
      probs[h + 2] = probs[h] * 4.0 * r * c / ((h + 2.0) * (h + 1.0));
      sum += probs[h + 2];
      --r;
      --c;
    }
  }
  for (double& p : probs) p /= sum;
  const double observed = probs[het];
  double p_value = 0.0;
  for (const double p : probs)
    if (p <= observed) p_value += p;
  return p_value > 1.0 ? 1.0 : p_value;
}

}  // namespace lmmscan

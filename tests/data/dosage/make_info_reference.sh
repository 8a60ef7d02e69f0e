#!/usr/bin/env bash
# The IMPUTE2 INFO score of study_gp.vcf.gz's biallelic variants over the 391
# individuals with a phenotype (study.pheno.txt not NA), by bcftools'
# +impute-info plugin: the reference for lmmscan's --info
# (tests/test_formats_gemma.py).
#
# Requires: Debian's bcftools (1.16, with its plugins).  Output, here:
#   info_gp.tsv   ID and INFO (bcftools' text) per biallelic variant
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
bcftools query -l "$HERE/study_gp.vcf.gz" > "$TMP/all.txt"
paste "$TMP/all.txt" "$HERE/study.pheno.txt" | awk '$2 != "NA" { print $1 }' > "$TMP/kept.txt"
test "$(wc -l < "$TMP/kept.txt")" -eq 391
{
  printf 'ID\tINFO\n'
  bcftools view --no-version -M2 -S "$TMP/kept.txt" "$HERE/study_gp.vcf.gz" \
    | bcftools +impute-info \
    | bcftools query -f '%ID\t%INFO/INFO\n'
} > "$HERE/info_gp.tsv"

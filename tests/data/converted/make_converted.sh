#!/usr/bin/env bash
# mouse_hs1940's hard calls (../mouse_hs1940/*.gz) converted by Debian's plink2
# into every genotype format lmmscan reads; tests/test_formats.py checks that
# each gives the .bed path's numbers.
#
# Requires: Debian's plink2 (PLINK v2.00a3.5; PLINK2=/path/to/plink2 to
# override), gzip.  Outputs, in this directory:
#   mouse2k.pgen/.pvar/.psam     the first 2,000 SNPs (.pgen gzipped: .pgen.gz)
#   mouse2k.vcf.gz               the same, bgzipped VCF (GT)
#   mouse2k.bgen/.sample         the same, BGEN v1.2, 8 bits, REF first (the
#                                second allele, which lmmscan counts, is ALT)
#   mouse300.bcf                 the first 300 SNPs as BCF
#   mouse300_v11.bgen            the first 300 SNPs as BGEN v1.1 (layout 1), no IDs
#   mouse300_v13.bgen            the first 300 SNPs as BGEN v1.3 (zstd), 16 bits
#   mouse300.sample              their samples (v1.1 embeds no IDs)
# plink2 reads the .bed with column 6 as REF, so ALT is column 5, the allele
# GEMMA counts.  Logs are not kept (they hold timestamps).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PLINK2=${PLINK2:-plink2}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
for ext in bed bim fam; do
  gzip -dc "$HERE/../mouse_hs1940/mouse_hs1940.$ext.gz" > "$TMP/m.$ext"
done
awk 'NR <= 2000 { print $2 }' "$TMP/m.bim" > "$TMP/first2k.txt"
awk 'NR <= 300 { print $2 }' "$TMP/m.bim" > "$TMP/first300.txt"
p2() { "$PLINK2" --bfile "$TMP/m" --silent "$@"; }
p2 --extract "$TMP/first2k.txt" --make-pgen --out "$TMP/mouse2k"
p2 --extract "$TMP/first2k.txt" --export vcf bgz --out "$TMP/mouse2k"
p2 --extract "$TMP/first2k.txt" --export bgen-1.2 bits=8 ref-first --out "$TMP/mouse2k"
p2 --extract "$TMP/first300.txt" --export bcf --out "$TMP/mouse300"
p2 --extract "$TMP/first300.txt" --export bgen-1.1 ref-first --out "$TMP/mouse300_v11"
p2 --extract "$TMP/first300.txt" --export bgen-1.3 bits=16 ref-first --out "$TMP/mouse300_v13"
gzip -9 -n -c "$TMP/mouse2k.pgen" > "$HERE/mouse2k.pgen.gz"
cp "$TMP"/mouse2k.{pvar,psam,vcf.gz,bgen,sample} "$TMP"/mouse300.bcf \
  "$TMP"/mouse300_v11.bgen "$TMP"/mouse300_v13.bgen "$HERE/"
cp "$TMP/mouse300_v13.sample" "$HERE/mouse300.sample"

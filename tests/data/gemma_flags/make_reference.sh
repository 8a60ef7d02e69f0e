#!/usr/bin/env bash
# GEMMA 0.98.5 references for the variant lists and filters lmmscan took from
# GEMMA: -snps, -ksnps, -hwe, -lmin/-lmax/-region (tests/test_gemma_flags.py).
#
# Requires: Debian's `gemma` 0.98.5 (GEMMA=/path/to/gemma to override), python3
# with numpy.  Inputs: tests/data/mouse_hs1940/*.gz (GEMMA's example).
# Outputs, in this directory:
#   mouse_snps.txt          every 9th SNP ID of mouse_hs1940.bim (made here)
#   NAME.kin.tsv.gz         a GEMMA kinship's diagonal and row sums: header
#                           "i diag rowsum"; diag is GEMMA's text token,
#                           rowsum math.fsum of row i's values (%.17g)
#   NAME.assoc.txt.gz       GEMMA's -lmm table (gzip -9 -n)
#   NAME.log.txt            GEMMA's log (counts, null model)
# Every GEMMA run happens in a temp dir; the commands are in README.md.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DATA=$(cd "$HERE/.." && pwd)
GEMMA=${GEMMA:-gemma}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
OUT=$TMP/output
mkdir -p "$OUT"
"$GEMMA" -license 2>&1 | awk 'NR == 1'

for ext in bed bim fam pheno.txt anno.txt; do
  gzip -dc "$DATA/mouse_hs1940/mouse_hs1940.$ext.gz" > "$TMP/mouse_hs1940.$ext"
done
cp "$DATA/mouse_hs1940/mouse_hs1940.geno.txt.gz" "$TMP/"
awk 'NR % 9 == 1 { print $2 }' "$TMP/mouse_hs1940.bim" > "$HERE/mouse_snps.txt"
cp "$HERE/mouse_snps.txt" "$TMP/"

run_gemma() {
  echo "+ gemma $*" >&2
  (cd "$TMP" && "$GEMMA" "$@" -outdir "$OUT" > "$OUT/last_stdout.txt" 2>&1) || {
    cat "$OUT/last_stdout.txt" >&2; return 1; }
}
keep_kin() {  # $1 = matrix, $2 = name
  python3 - "$1" "$HERE/$2.kin.tsv.gz" <<'PY'
import gzip, math, sys
rows = [line.split() for line in open(sys.argv[1])]
with gzip.GzipFile(sys.argv[2], "wb", compresslevel=9, mtime=0) as f:
    f.write(b"i\tdiag\trowsum\n")
    f.write("".join("%d\t%s\t%.17g\n" % (i, r[i], math.fsum(float(t) for t in r))
                    for i, r in enumerate(rows)).encode())
PY
  cp "$OUT/$2.log.txt" "$HERE/"
}
keep_assoc() {
  gzip -9 -n -c "$OUT/$1.assoc.txt" > "$HERE/$1.assoc.txt.gz"
  cp "$OUT/$1.log.txt" "$HERE/"
}

# -hwe on PLINK hard calls: the kinship, then -lmm 4 of the listed SNPs with it
run_gemma -bfile mouse_hs1940 -hwe 0.001 -gk 1 -o hwe_gk1
keep_kin "$OUT/hwe_gk1.cXX.txt" hwe_gk1
cp "$OUT/hwe_gk1.cXX.txt" "$TMP/"
run_gemma -bfile mouse_hs1940 -hwe 0.001 -snps mouse_snps.txt -k hwe_gk1.cXX.txt -lmm 4 -o hwe_snps_lmm4
keep_assoc hwe_snps_lmm4

# -snps in the kinship (PLINK)
run_gemma -bfile mouse_hs1940 -snps mouse_snps.txt -gk 1 -o snps_gk1
keep_kin "$OUT/snps_gk1.cXX.txt" snps_gk1

# BIMBAM: the listed SNPs' kinship (GEMMA 0.98.5's help lists -ksnps, but its
# parser refuses it, "unrecognized option"; -snps FILE -gk is the same kinship,
# which lmmscan's --ksnps FILE must give) and -hwe on binned dosages
run_gemma -g mouse_hs1940.geno.txt.gz -p mouse_hs1940.pheno.txt -a mouse_hs1940.anno.txt \
  -snps mouse_snps.txt -gk 1 -o bimbam_snps_gk1
keep_kin "$OUT/bimbam_snps_gk1.cXX.txt" bimbam_snps_gk1
run_gemma -g mouse_hs1940.geno.txt.gz -p mouse_hs1940.pheno.txt -a mouse_hs1940.anno.txt \
  -hwe 0.001 -gk 1 -o bimbam_hwe_gk1
keep_kin "$OUT/bimbam_hwe_gk1.cXX.txt" bimbam_hwe_gk1

# -lmin/-lmax/-region: a narrower lambda search, with the first kinship
run_gemma -bfile mouse_hs1940 -snps mouse_snps.txt -k hwe_gk1.cXX.txt -lmm 4 \
  -lmin 0.5 -lmax 3 -region 6 -o lrange_lmm4
keep_assoc lrange_lmm4

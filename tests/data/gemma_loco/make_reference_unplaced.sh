#!/usr/bin/env bash
# Regenerate the GEMMA 0.98.5 -loco reference for SNPs on no chromosome, in
# tests/data/gemma_loco/ (used by tests/test_loco.py).
#
# Requires the real `gemma` binary (Debian package gemma 0.98.5; override with
# GEMMA=/path/to/gemma).  Input: tests/data/mouse_hs1940/ (BIMBAM genotypes,
# phenotype column 1) with an annotation derived from mouse_hs1940.anno.txt:
# every third SNP of chromosome 2 has the chromosome NA, every third SNP of
# chromosome 3 is left out.  GEMMA reads an NA chromosome as the name "-9":
# those SNPs are in every other chromosome's kinship and are tested by
# -loco -9; a SNP the annotation does not list is in no kinship and never
# tested.  For c in 1 and -9:
#
#   gemma -g geno -p pheno -a unplaced.anno -loco c -gk 1 -o u_c
#   gemma -g geno -p pheno -a unplaced.anno -n 1 -loco c -k u_c.cXX.txt -lmm 4 -o u_c
#
# Outputs: unplaced.anno.txt.gz (the derived annotation) and
# loco_unplaced.assoc.txt.gz (the two .assoc.txt files, one header).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DATA=$(cd "$HERE/.." && pwd)/mouse_hs1940
GEMMA=${GEMMA:-gemma}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
OUT=$TMP/output
mkdir -p "$OUT"

"$GEMMA" -license 2>&1 | awk 'NR == 1'
gzip -dc "$DATA/mouse_hs1940.pheno.txt.gz" > "$TMP/pheno.txt"
cp "$DATA/mouse_hs1940.geno.txt.gz" "$TMP/"
gzip -dc "$DATA/mouse_hs1940.anno.txt.gz" | awk '
  $3 == "2" && ++two % 3 == 0 { print $1, $2, "NA"; next }
  $3 == "3" && ++three % 3 == 0 { next }
  { print }' > "$TMP/unplaced.anno.txt"
gzip -9 -n -c "$TMP/unplaced.anno.txt" > "$HERE/unplaced.anno.txt.gz"

run_gemma() {
  echo "+ gemma $*" >&2
  (cd "$TMP" && "$GEMMA" "$@" -outdir "$OUT" > "$OUT/last_stdout.txt" 2>&1) || {
    cat "$OUT/last_stdout.txt" >&2; return 1; }
}

G=(-g mouse_hs1940.geno.txt.gz -p pheno.txt -a unplaced.anno.txt)
for c in 1 -9; do
  run_gemma "${G[@]}" -loco "$c" -gk 1 -o "u_$c"
  run_gemma "${G[@]}" -n 1 -loco "$c" -k "$OUT/u_$c.cXX.txt" -lmm 4 -o "u_$c"
done
{ cat "$OUT/u_1.assoc.txt"; tail -n +2 "$OUT/u_-9.assoc.txt"; } > "$TMP/all.assoc.txt"
gzip -9 -n -c "$TMP/all.assoc.txt" > "$HERE/loco_unplaced.assoc.txt.gz"
echo "rows: $(($(wc -l < "$TMP/all.assoc.txt") - 1))" >&2

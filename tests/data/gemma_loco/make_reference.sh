#!/usr/bin/env bash
# Regenerate GEMMA 0.98.5 -loco references in tests/data/gemma_loco/.
#
# Requires the real `gemma` binary (Debian package gemma 0.98.5; override with
# GEMMA=/path/to/gemma) and python3.  Input: tests/data/mouse_hs1940/ (BIMBAM
# genotypes + mouse_hs1940.anno.txt, phenotype column 1), verbatim copies of
# gemma-doc's example.  For every chromosome c of the annotation file:
#
#   gemma -g geno -p pheno -a anno -loco c -gk 1 -o loco_c        (K: SNPs off c)
#   gemma -g geno -p pheno -a anno -n 1 -loco c -k loco_c.cXX.txt -lmm 4 -o loco_c
#
# GEMMA's LOCO kinship uses the SNPs that pass the filters and sit on the
# *other* chromosomes of the -a file; its -lmm run tests only the SNPs of c.
# Outputs (and, at the end, the reference for SNPs on no chromosome):
#   loco_lmm4.assoc.txt.gz  the 19 per-chromosome .assoc.txt files concatenated
#                           (one header; chromosome order = file order here)
#   loco_null.tsv           per chromosome: the null-model lines of its log
#   loco1_kinship.tsv.gz    K for -loco 1 (all 1940 individuals): the diagonal
#                           and row 0, GEMMA's %.10g tokens verbatim
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DATA=$(cd "$HERE/.." && pwd)/mouse_hs1940
GEMMA=${GEMMA:-gemma}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
OUT=$TMP/output
mkdir -p "$OUT"

"$GEMMA" -license 2>&1 | awk 'NR == 1'
gzip -dc "$DATA/mouse_hs1940.pheno.txt.gz" > "$TMP/mouse_hs1940.pheno.txt"
gzip -dc "$DATA/mouse_hs1940.anno.txt.gz"  > "$TMP/mouse_hs1940.anno.txt"
cp "$DATA/mouse_hs1940.geno.txt.gz" "$TMP/"

run_gemma() {
  echo "+ gemma $*" >&2
  (cd "$TMP" && "$GEMMA" "$@" -outdir "$OUT" > "$OUT/last_stdout.txt" 2>&1) || {
    cat "$OUT/last_stdout.txt" >&2; return 1; }
}

CHRS=$(awk '{print $3}' "$TMP/mouse_hs1940.anno.txt" | awk '!seen[$0]++')
G=(-g mouse_hs1940.geno.txt.gz -p mouse_hs1940.pheno.txt -a mouse_hs1940.anno.txt)
printf 'chr\tanalyzed_snps\tloglik_reml\tloglik_ml\tpve\tpve_se\tvg\tve\n' > "$HERE/loco_null.tsv"
first=1
for c in $CHRS; do
  run_gemma "${G[@]}" -loco "$c" -gk 1 -o "loco_$c"
  run_gemma "${G[@]}" -n 1 -loco "$c" -k "$OUT/loco_$c.cXX.txt" -lmm 4 -o "loco_$c"
  if [[ $first == 1 ]]; then
    cp "$OUT/loco_$c.assoc.txt" "$TMP/all.assoc.txt"; first=0
  else
    tail -n +2 "$OUT/loco_$c.assoc.txt" >> "$TMP/all.assoc.txt"
  fi
  awk -v c="$c" -F' = ' '
    /number of analyzed SNPs/ {s=$2} /REMLE log-likelihood in the null/ {r=$2}
    /MLE log-likelihood in the null/ && !/REMLE/ {m=$2} /pve estimate in the null/ {p=$2}
    /se\(pve\) in the null/ {ps=$2} /vg estimate in the null/ {vg=$2}
    /ve estimate in the null/ {ve=$2}
    END {gsub(/ /,"",s); printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c, s, r, m, p, ps, vg, ve}' \
    "$OUT/loco_$c.log.txt" >> "$HERE/loco_null.tsv"
  if [[ "$c" == 1 ]]; then
    python3 - "$OUT/loco_1.cXX.txt" "$HERE/loco1_kinship.tsv.gz" <<'PY'
import gzip, sys
rows = [line.split() for line in open(sys.argv[1])]
with gzip.GzipFile(sys.argv[2], "wb", compresslevel=9, mtime=0) as f:
    f.write(b"i\tdiag\trow0\n")
    f.write("".join(f"{i}\t{rows[i][i]}\t{rows[0][i]}\n" for i in range(len(rows))).encode())
PY
  fi
  rm -f "$OUT/loco_$c.cXX.txt"
done
gzip -9 -n -c "$TMP/all.assoc.txt" > "$HERE/loco_lmm4.assoc.txt.gz"
echo "rows: $(($(wc -l < "$TMP/all.assoc.txt") - 1))" >&2

# SNPs on no chromosome: the annotation with every third SNP of chromosome 2
# on chromosome NA, and every third SNP of chromosome 3 left out.  GEMMA reads
# an NA chromosome as the name "-9": those SNPs are in every other chromosome's
# kinship and are tested by -loco -9; a SNP the annotation does not list is in
# no kinship and never tested.  Outputs: unplaced.anno.txt.gz (the derived
# annotation) and loco_unplaced.assoc.txt.gz (-loco 1 and -loco -9, one header).
gzip -dc "$DATA/mouse_hs1940.anno.txt.gz" | awk '
  $3 == "2" && ++two % 3 == 0 { print $1, $2, "NA"; next }
  $3 == "3" && ++three % 3 == 0 { next }
  { print }' > "$TMP/unplaced.anno.txt"
gzip -9 -n -c "$TMP/unplaced.anno.txt" > "$HERE/unplaced.anno.txt.gz"
U=(-g mouse_hs1940.geno.txt.gz -p mouse_hs1940.pheno.txt -a unplaced.anno.txt)
for c in 1 -9; do
  run_gemma "${U[@]}" -loco "$c" -gk 1 -o "u_$c"
  run_gemma "${U[@]}" -n 1 -loco "$c" -k "$OUT/u_$c.cXX.txt" -lmm 4 -o "u_$c"
done
{ cat "$OUT/u_1.assoc.txt"; tail -n +2 "$OUT/u_-9.assoc.txt"; } > "$TMP/unplaced.assoc.txt"
gzip -9 -n -c "$TMP/unplaced.assoc.txt" > "$HERE/loco_unplaced.assoc.txt.gz"
echo "unplaced rows: $(($(wc -l < "$TMP/unplaced.assoc.txt") - 1))" >&2

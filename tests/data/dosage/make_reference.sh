#!/usr/bin/env bash
# A simulated "dosage study" (400 related samples x 3,003 variants, quarter-step
# dosages) written in every format lmmscan reads, plus GEMMA 0.98.5 references
# on its BIMBAM version: the reference for the .pgen, BGEN and VCF/BCF readers'
# dosage paths.
#
# Requires: python3 with numpy (PYTHON=... to override), Debian's plink2
# (PLINK v2.00a3.5; PLINK2=...), Debian's gemma 0.98.5 (GEMMA=...), and
# bgzip, tabix (Debian `tabix`) and bcftools (Debian `bcftools`, 1.16).
# Outputs, in this directory (README.md lists them with their commands):
#   study.vcf.gz, .tbi      FORMAT DS (ALT dosage), bgzipped and tabix-indexed
#   study.bcf               its chromosome 2 as BCF (bcftools view -r 2 -Ob)
#   study_gp.vcf.gz         chromosome 2, FORMAT GT:DS:GP, GP consistent with
#                           DS (for INFO-score tests)
#   study.pgen/.pvar/.psam  plink2 --vcf ... dosage=DS, all 3,003 variants (the
#                           multi-allelic ones as hard calls, see below)
#   study.bgen/.sample      plink2 --export bgen-1.2 bits=16 ref-first, the
#                           3,000 biallelic variants
#   study.geno.txt.gz       BIMBAM dosages of the 3,000 biallelic variants:
#                           rs, ALT, REF, ALT dosage per sample (NA missing)
#   study.anno.txt          rs pos chr (BIMBAM annotation)
#   study.pheno.txt         phenotype, NA missing
#   study.covar.txt         covariates: 1, then a random one
#   plink2.log.txt          plink2's logs without time, RAM and thread lines
#   dos_gk1.kin.tsv.gz      the -gk 1 kinship's diagonal and row sums ("i diag
#                           rowsum"; diag GEMMA's token, rowsum math.fsum %.17g)
#   dos_gk1.cXX.txt.gz      that kinship in full (gzip -9 -n)
#   dos_gk1.log.txt         GEMMA's log
#   dos_lmm4.assoc.txt.gz   GEMMA -lmm 4 with the covariates (gzip -9 -n)
#   dos_lmm4.log.txt        GEMMA's log (counts, null model)
# Every run happens in a temp dir.  All outputs but the GEMMA logs (dates,
# times, the temp dir's name) are byte-identical from run to run.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYTHON=${PYTHON:-python3}
PLINK2=${PLINK2:-plink2}
GEMMA=${GEMMA:-gemma}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
OUT=$TMP/output
mkdir -p "$OUT"
"$GEMMA" -license 2>&1 | awk 'NR == 1'
"$PLINK2" --version

# 1-3. Simulation: study.vcf (DS), study_gp.vcf (GT:DS:GP), BIMBAM files
"$PYTHON" - "$TMP" <<'PY'
import sys
import numpy as np

tmp = sys.argv[1]
rng = np.random.default_rng(2026)
N_FAM, FAM_SIZE, N_POP = 40, 10, 4      # 4 subpopulations of 10 families
n = N_FAM * FAM_SIZE                    # ind1, ind2 founders; ind3..10 their children
M_CHR, CHROMS = 1000, (1, 2, 3)
m = M_CHR * len(CHROMS)
FST = 0.05
QSTR = ["0", "0.25", "0.5", "0.75", "1", "1.25", "1.5", "1.75", "2"]

ids = ["fam%d_ind%d" % (f + 1, i + 1) for f in range(N_FAM) for i in range(FAM_SIZE)]
fam = np.repeat(np.arange(N_FAM), FAM_SIZE)
pop = fam // (N_FAM // N_POP)
founder = np.tile(np.arange(FAM_SIZE) < 2, N_FAM)

# variants: positions, alleles, ancestral ALT frequencies (minor in half, major in the rest)
chrom = np.repeat(CHROMS, M_CHR)
pos = np.concatenate([10000 + np.cumsum(rng.integers(2000, 60000, M_CHR)) for _ in CHROMS])
BASES = np.array(list("ACGT"))
pairs = np.array([rng.permutation(4)[:2] for _ in range(m)])
ref, alt = BASES[pairs[:, 0]], BASES[pairs[:, 1]]
maf = rng.uniform(0.02, 0.5, m)
p_alt = np.where(rng.random(m) < 0.5, maf, 1 - maf)
special = rng.choice(m, 14, replace=False)
mono0, mono2, rare = special[:4], special[4:6], special[6:]   # ALT absent / fixed / 1-4 carriers

# founders' genotypes from Balding-Nichols subpopulation frequencies, children by Mendel
a, b = p_alt * (1 - FST) / FST, (1 - p_alt) * (1 - FST) / FST
p_pop = rng.beta(a[None, :], b[None, :], (N_POP, m)).clip(0.001, 0.999)
hap = np.zeros((n, 2, m), dtype=np.int8)
for f in range(N_FAM):
    i0 = f * FAM_SIZE
    pp = p_pop[f // (N_FAM // N_POP)]
    hap[i0:i0 + 2] = rng.random((2, 2, m)) < pp
    for c in range(i0 + 2, i0 + FAM_SIZE):
        for par in (0, 1):
            pick = rng.integers(0, 2, m)
            hap[c, par] = hap[i0 + par, pick, np.arange(m)]
g = hap.sum(axis=1).astype(np.int64)            # n x m, ALT counts
g[:, mono0] = 0
g[:, mono2] = 2
g[:, rare] = 0
for j in rare:
    g[rng.choice(n, rng.integers(1, 5), replace=False), j] = 1

# dosages on the quarter grid: q = 4 * dosage in 0..8, from g + N(0, 0.07^2) + a
# +-0.5 jump in 1% of calls (6.5% of dosages fractional), rounded and clipped; rare/monomorphic ones exact
noise = rng.normal(0, 0.07, g.shape) + 0.5 * rng.choice([-1, 0, 1], g.shape, p=[0.005, 0.99, 0.005])
q = np.clip(np.rint(4 * (g + noise)), 0, 8).astype(np.int64)
q[:, special] = 4 * g[:, special]
miss = rng.random(g.shape) < 0.01
q_na = np.where(miss, -1, q)

# phenotype: polygenic (300 variants + 2 larger QTL) + family effect + covariate
common = np.setdiff1d(np.arange(m), special)
causal = rng.choice(common, 300, replace=False)
gs = (g - g.mean(0)) / np.where(g.std(0) > 0, g.std(0), 1)
poly = gs[:, causal] @ rng.normal(0, 1, 300)
poly *= np.sqrt(0.35) / poly.std()
qtl = gs[:, causal[:2]] @ np.array([0.35, -0.3])
famfx = rng.normal(0, np.sqrt(0.2), N_FAM)[fam]
cov = rng.normal(0, 1, n)
y = 1.0 + poly + qtl + famfx + 0.4 * cov + rng.normal(0, np.sqrt(0.35), n)
y_na = rng.random(n) < 0.02

# 3 multi-allelic variants in the middle of chromosome 2 (hard calls only)
k = M_CHR + M_CHR // 2 - 1                  # after the 500th variant of chromosome 2
MA = [("ma1", pos[k] + 11, "G", ["A", "T"], [0.6, 0.3, 0.1]),
      ("ma2", pos[k] + 23, "C", ["A", "T"], [0.5, 0.25, 0.25]),
      ("ma3", pos[k] + 37, "A", ["C", "G", "T"], [0.55, 0.2, 0.15, 0.1])]
ma_rows = []
for vid, p, r, alts, fr in MA:
    h = rng.choice(len(fr), (n, 2), p=fr)
    h.sort(axis=1)
    ma_rows.append((vid, p, r, alts, h, rng.random(n) < 0.01))

# ---- writers ----
def gp_tokens(qq):
    # GP from a dosage d: d <= 1 -> (1-d, d, 0); d >= 1 -> (0, 2-d, d-1); GT the argmax, ties -> 0/1
    out = []
    for x in qq:
        if x < 0:
            out.append("./.:.:.")
            continue
        if x <= 4:
            gp = (4 - x, x, 0)
        else:
            gp = (0, 8 - x, x - 4)
        best = max(range(3), key=lambda t: (gp[t], t == 1))
        gt = ("0/0", "0/1", "1/1")[best]
        out.append("%s:%s:%s" % (gt, QSTR[x], ",".join(QSTR[v] for v in gp)))
    return out

def ma_tokens(h, mm, nalt, with_gp):
    out = []
    for (j, kk), mi in zip(h, mm):
        if mi:
            out.append("./.:" + ",".join("." * nalt) + ":." if with_gp else
                       ",".join("." * nalt))
            continue
        ds = ",".join(str(int(j == a_) + int(kk == a_)) for a_ in range(1, nalt + 1))
        if not with_gp:
            out.append(ds)
            continue
        gp = ["0"] * ((nalt + 1) * (nalt + 2) // 2)
        gp[kk * (kk + 1) // 2 + j] = "1"
        out.append("%d/%d:%s:%s" % (j, kk, ds, ",".join(gp)))
    return out

contig_len = {c: int(pos[chrom == c].max()) + 1000 for c in CHROMS}
def header(with_gp):
    h = ["##fileformat=VCFv4.2",
         "##source=tests/data/dosage/make_reference.sh (numpy default_rng(2026))"]
    h += ["##contig=<ID=%d,length=%d>" % (c, contig_len[c]) for c in CHROMS]
    if with_gp:
        h.append('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">')
    h.append('##FORMAT=<ID=DS,Number=A,Type=Float,Description="Dosage of each ALT allele">')
    if with_gp:
        h.append('##FORMAT=<ID=GP,Number=G,Type=Float,Description="Genotype probabilities">')
    h.append("\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO",
                        "FORMAT"] + ids))
    return h

for name, with_gp in (("study.vcf", False), ("study_gp.vcf", True)):
    fmt = "GT:DS:GP" if with_gp else "DS"
    lines = header(with_gp)
    for j in range(m):
        if with_gp and chrom[j] != 2:   # GP: chromosome 2 only (size)
            continue
        fixed = ["%d" % chrom[j], "%d" % pos[j], "snp%04d" % (j + 1), ref[j], alt[j],
                 ".", ".", ".", fmt]
        col = q_na[:, j]
        toks = gp_tokens(col) if with_gp else [QSTR[x] if x >= 0 else "." for x in col]
        lines.append("\t".join(fixed + toks))
        if j == k:
            for vid, p, r, alts, h, mm in ma_rows:
                fixed = ["2", "%d" % p, vid, r, ",".join(alts), ".", ".", ".", fmt]
                lines.append("\t".join(fixed + ma_tokens(h, mm, len(alts), with_gp)))
    with open("%s/%s" % (tmp, name), "w") as f:
        f.write("\n".join(lines) + "\n")

with open(tmp + "/study.geno.txt", "w") as f:
    for j in range(m):
        col = q_na[:, j]
        f.write(", ".join(["snp%04d" % (j + 1), alt[j], ref[j]] +
                          [QSTR[x] if x >= 0 else "NA" for x in col]) + "\n")
with open(tmp + "/study.anno.txt", "w") as f:
    for j in range(m):
        f.write("snp%04d\t%d\t%d\n" % (j + 1, pos[j], chrom[j]))
with open(tmp + "/study.pheno.txt", "w") as f:
    f.write("".join("NA\n" if na else "%.6f\n" % v for v, na in zip(y, y_na)))
with open(tmp + "/study.covar.txt", "w") as f:
    f.write("".join("1\t%.6f\n" % c for c in cov))
PY

cd "$TMP"
bgzip -c study.vcf > study.vcf.gz
tabix -p vcf study.vcf.gz
bgzip -c study_gp.vcf > study_gp.vcf.gz
bcftools view --no-version -r 2 -Ob -o study.bcf study.vcf.gz   # chromosome 2 (size)
gzip -9 -n -c study.geno.txt > study.geno.txt.gz

# 4. plink2: .pgen from the DS VCF, then BGEN 1.2 (16 and 8 bits, REF first)
p2() {  # plink2 quietly; its log kept without the time, RAM and thread lines
  local out=${*: -1} rc=0
  "$PLINK2" --threads 1 "$@" > /dev/null || rc=$?
  grep -v -e '^Start time:' -e '^End time:' -e 'RAM detected' -e '^Using ' \
    -e '^Random number seed' -e '^Hostname:' -e '^Working directory:' "$out.log" >> plink2.log.txt
  echo >> plink2.log.txt
  return $rc
}
: > plink2.log.txt
# plink2 v2.00a3.5 refuses multi-allelic dosages ("Error: GparseWriteByteCt
# multiallelic dosage size request."), with or without --max-alleles 2, so the
# one-step import fails (its log is kept) ...
if p2 --vcf study.vcf.gz dosage=DS --make-pgen --out direct 2> /dev/null; then
  echo "plink2 imported the multi-allelic dosages: update README.md" >&2; exit 1
fi
# ... and study.pgen is concatenated from the biallelic dosages (bcftools view
# -M2) and the 3 multi-allelic variants as GT hard calls (from study_gp.vcf.gz;
# their DS are whole numbers, so nothing is lost).  plink2's --pmerge-list can
# only concatenate, so the biallelic part is split around them.
bcftools view --no-version -M2 -Oz -o bi.vcf.gz study.vcf.gz
p2 --vcf bi.vcf.gz dosage=DS --make-pgen --out bi
p2 --vcf study_gp.vcf.gz --min-alleles 3 --make-pgen --out ma
awk '!/^#/ { print $3 > ($3 <= "snp1500" ? "a.ids" : "b.ids") }' bi.pvar
p2 --pfile bi --extract a.ids --make-pgen --out bi_a
p2 --pfile bi --extract b.ids --make-pgen --out bi_b
printf 'ma\nbi_b\n' > merge_list.txt
p2 --pfile bi_a --pmerge-list merge_list.txt --out study
# BGEN export refuses multi-allelic variants ("--export bgen-1.2/1.3
# multiallelic variant support is under development"): the biallelic ones only
p2 --pfile study --max-alleles 2 --export bgen-1.2 bits=16 ref-first --out study
p2 --pfile study --max-alleles 2 --export bgen-1.2 bits=8 ref-first --out study_8bit
cmp study.sample study_8bit.sample   # the 8-bit BGEN is not kept (630 kB)
# checks: the .pgen and both BGENs give back the BIMBAM dosages
p2 --pfile study --max-alleles 2 --export A-transpose --out check_pgen
p2 --bgen study.bgen ref-first --sample study.sample --export A-transpose --out check_bgen16
p2 --bgen study_8bit.bgen ref-first --sample study.sample --export A-transpose --out check_bgen8

keep_kin() {  # $1 = matrix, $2 = name
  "$PYTHON" - "$1" "$HERE/$2.kin.tsv.gz" <<'PY'
import gzip, math, sys
rows = [line.split() for line in open(sys.argv[1])]
with gzip.GzipFile(sys.argv[2], "wb", compresslevel=9, mtime=0) as f:
    f.write(b"i\tdiag\trowsum\n")
    f.write("".join("%d\t%s\t%.17g\n" % (i, r[i], math.fsum(float(t) for t in r))
                    for i, r in enumerate(rows)).encode())
PY
}

# checks: .pgen and 16-bit BGEN give back the BIMBAM dosages exactly; 8-bit's error
"$PYTHON" - <<'PY'
import numpy as np
bim = {}
for line in open("study.geno.txt"):
    t = line.rstrip("\n").split(", ")
    bim[t[0]] = (t[1], np.array([np.nan if x == "NA" else float(x) for x in t[3:]]))
def traw(path):
    rows = [l.rstrip("\n").split("\t") for l in open(path)]
    out = {}
    for r in rows[1:]:
        x = np.array([np.nan if v == "NA" else float(v) for v in r[6:]])
        out[r[1]] = x if r[4] == bim[r[1]][0] else 2 - x   # as ALT dosage
    return out
for name in ("pgen", "bgen16", "bgen8"):
    t = traw("check_%s.traw" % name)
    assert sorted(t) == sorted(bim), name
    err = max(np.nanmax(np.abs(t[k] - bim[k][1]), initial=0) for k in bim)
    same_na = all((np.isnan(t[k]) == np.isnan(bim[k][1])).all() for k in bim)
    print("check %s: %d variants, missing identical %s, max |dosage - BIMBAM| %.6g"
          % (name, len(t), same_na, err))
    if name != "bgen8":
        assert same_na and err == 0, name
PY

# 6. GEMMA on the BIMBAM version
run_gemma() {
  echo "+ gemma $*" >&2
  "$GEMMA" "$@" -outdir "$OUT" > "$OUT/last_stdout.txt" 2>&1 || {
    cat "$OUT/last_stdout.txt" >&2; return 1; }
}
run_gemma -g study.geno.txt.gz -p study.pheno.txt -a study.anno.txt -gk 1 -o dos_gk1
cp "$OUT/dos_gk1.cXX.txt" .
run_gemma -g study.geno.txt.gz -p study.pheno.txt -a study.anno.txt -c study.covar.txt \
  -k dos_gk1.cXX.txt -lmm 4 -o dos_lmm4

# 7. Keep
keep_kin dos_gk1.cXX.txt dos_gk1
gzip -9 -n -c dos_gk1.cXX.txt > "$HERE/dos_gk1.cXX.txt.gz"
gzip -9 -n -c "$OUT/dos_lmm4.assoc.txt" > "$HERE/dos_lmm4.assoc.txt.gz"
cp "$OUT/dos_gk1.log.txt" "$OUT/dos_lmm4.log.txt" "$HERE/"
cp study.vcf.gz study.vcf.gz.tbi study.bcf study_gp.vcf.gz study.pgen study.pvar \
  study.psam study.bgen study.sample study.geno.txt.gz study.anno.txt study.pheno.txt \
  study.covar.txt plink2.log.txt "$HERE/"

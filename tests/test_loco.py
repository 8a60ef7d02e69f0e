"""Leave-one-chromosome-out scans: against GEMMA 0.98.5 -loco on mouse_hs1940
BIMBAM (fixtures from tests/data/gemma_loco/make_reference.sh), and against
dense per-chromosome kinships built the long way."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import lmmscan
from lmmscan.loco import _chromosomes, _difference, _KinshipSums, chromosome_names
from lmmscan.samples import analysed_samples

from .conftest import DATA
from .gemma_files import read_assoc

LOCO = DATA / "gemma_loco"
MOUSE = DATA / "mouse_hs1940"


def read_mouse_bimbam() -> tuple[lmmscan.ArrayGenotypes, np.ndarray]:
    """mouse_hs1940 BIMBAM dosages + annotation (chr, ps), phenotype column 1.

    A minimal reader for these files (comma-separated geno, NA missing), so
    that this test does not depend on the package's BIMBAM reader.
    """
    geno = pd.read_csv(
        MOUSE / "mouse_hs1940.geno.txt.gz",
        sep=",",
        header=None,
        skipinitialspace=True,
        na_values=["NA"],
        keep_default_na=False,
        dtype={0: str, 1: str, 2: str},
    )
    anno = pd.read_csv(
        MOUSE / "mouse_hs1940.anno.txt.gz", sep=r"\s+", header=None, dtype={0: str, 2: str}
    ).set_index(0)
    rs = geno[0].to_numpy()
    snps = pd.DataFrame(
        {
            "chr": anno[2].reindex(rs).fillna("-9").to_numpy(),
            "rs": rs,
            "ps": anno[1].reindex(rs).fillna(-9).astype(np.int64).to_numpy(),
            "allele1": geno[1].to_numpy(),
            "allele0": geno[2].to_numpy(),
        }
    )
    X = np.ascontiguousarray(geno.iloc[:, 3:].to_numpy(dtype=np.float64).T)
    pheno = pd.read_csv(
        MOUSE / "mouse_hs1940.pheno.txt.gz", sep=r"\s+", header=None, na_values=["NA"]
    )
    return lmmscan.ArrayGenotypes(X, snps), pheno[0].to_numpy(dtype=np.float64)


@pytest.fixture(scope="module")
def mouse_bimbam():
    return read_mouse_bimbam()


@pytest.fixture(scope="module")
def gemma_loco():
    ref = read_assoc(LOCO / "loco_lmm4.assoc.txt.gz")
    nulls = pd.read_csv(LOCO / "loco_null.tsv", sep="\t", dtype={"chr": str})
    return ref, nulls.set_index("chr")


def compare_with_gemma(ours: pd.DataFrame, ref: pd.DataFrame) -> None:
    """The tolerances of the core GEMMA comparison (tests/test_gemma_plink.py)."""
    assert list(ours.columns) == list(ref.columns)
    assert len(ours) == len(ref)
    for col in ("chr", "rs", "allele1", "allele0"):
        assert (ours[col].astype(str).to_numpy() == ref[col].astype(str).to_numpy()).all(), col
    assert (ours["ps"].to_numpy() == ref["ps"].to_numpy()).all()
    assert (ours["n_miss"].to_numpy() == ref["n_miss"].to_numpy()).all()
    np.testing.assert_allclose(ours["af"], ref["af"], rtol=0, atol=0.0005 + 1e-12)
    for p in ("p_wald", "p_lrt", "p_score"):
        d = np.abs(np.log10(ours[p].to_numpy()) - np.log10(ref[p].to_numpy()))
        assert d.max() <= 1e-4, (p, d.max(), ref["rs"].iloc[int(d.argmax())])
    for col in ("se", "logl_H1"):
        np.testing.assert_allclose(ours[col], ref[col], rtol=1e-5, err_msg=col)
    dbeta = np.abs(ours["beta"].to_numpy() - ref["beta"].to_numpy()) / ref["se"].to_numpy()
    assert dbeta.max() <= 1e-4, dbeta.max()
    for col in ("l_remle", "l_mle"):
        big = ref[col].to_numpy() > 1e-3
        np.testing.assert_allclose(ours[col][big], ref[col][big], rtol=1e-3, err_msg=col)


def compare_nulls(null_models: dict, nulls: pd.DataFrame) -> None:
    for chrom, model in null_models.items():
        row = nulls.loc[chrom]
        for ours, key in (
            (model.loglik_reml, "loglik_reml"),
            (model.loglik_ml, "loglik_ml"),
            (model.pve, "pve"),
            (model.pve_se, "pve_se"),
            (model.vg, "vg"),
            (model.ve, "ve"),
        ):
            # GEMMA's log has 6 significant digits
            assert ours == pytest.approx(row[key], rel=1e-5), (chrom, key)


def test_loco_equals_gemma_on_three_chromosomes(mouse_bimbam, gemma_loco):
    """Chromosomes 1 (the largest), 17 (lowest null pve) and 19 (the last):
    each tested with the kinship of the 18 others, as gemma -loco c."""
    source, y = mouse_bimbam
    ref, nulls = gemma_loco
    nm: dict = {}
    ours = lmmscan.loco_scan(source, y, chromosomes=["1", "17", "19"], null_models=nm)
    assert sorted(nm) == ["1", "17", "19"]
    compare_with_gemma(
        ours, ref[ref["chr"].astype(str).isin(["1", "17", "19"])].reset_index(drop=True)
    )
    compare_nulls(nm, nulls)


@pytest.mark.slow
def test_loco_equals_gemma_everywhere(mouse_bimbam, gemma_loco):
    """All 19 chromosomes through scan(loco=True), genotypes streamed from the
    gzipped BIMBAM file by the package's reader: one table in file order."""
    from lmmscan.bimbam import read_bimbam

    _, y = mouse_bimbam
    source = read_bimbam(MOUSE / "mouse_hs1940.geno.txt.gz", MOUSE / "mouse_hs1940.anno.txt.gz")
    ref, nulls = gemma_loco
    report = lmmscan.ScanReport()
    ours = lmmscan.scan(source, y, loco=True, report=report)
    assert report.filters.total == 12226
    assert report.filters.kept == 10768
    compare_with_gemma(ours, ref)
    assert len(report.null_models) == 19
    compare_nulls(report.null_models, nulls)


def test_loco_kinship_equals_gemma(mouse_bimbam):
    """K for -loco 1 (SNPs off chromosome 1) as GEMMA wrote it (%.10g), on the
    analysed samples: the full sums minus chromosome 1's, counts adjusted."""
    source, y = mouse_bimbam
    ref = pd.read_csv(LOCO / "loco1_kinship.tsv.gz", sep="\t")
    mask, _, W, _, _ = analysed_samples(y, None)
    names = chromosome_names(source)
    chroms = _chromosomes(names)
    report = lmmscan.ScanReport()
    sums = _KinshipSums(
        source, mask, W, chroms, names, "centered", 0.01, 0.05, 0.9999, 4096, True, report
    )
    K = sums.loco_kinship(chroms[0])
    assert chroms[0].name == "1"
    idx = np.flatnonzero(mask)
    np.testing.assert_allclose(np.diag(K), ref["diag"].to_numpy()[idx], rtol=1e-9, atol=1e-10)
    assert mask[0]
    np.testing.assert_allclose(K[0], ref["row0"].to_numpy()[idx], rtol=0, atol=1e-9)


def simulate(
    seed: int,
    n: int = 120,
    per_chrom: tuple[int, ...] = (40, 30, 50),
    shuffle: bool = False,
    missing: bool = True,
):
    rng = np.random.default_rng(seed)
    m = sum(per_chrom)
    af = rng.uniform(0.05, 0.5, m)
    G = rng.binomial(2, af, size=(n, m)).astype(np.float64)
    if missing:
        G[rng.random(G.shape) < 0.01] = np.nan
    chrom = np.repeat([str(i + 1) for i in range(len(per_chrom))], per_chrom)
    order = rng.permutation(m) if shuffle else np.arange(m)
    G, chrom = G[:, order], chrom[order]
    snps = pd.DataFrame(
        {
            "chr": chrom,
            "rs": [f"rs{i}" for i in range(m)],
            "ps": np.arange(m, dtype=np.int64) * 100,
            "allele1": "A",
            "allele0": "G",
        }
    )
    Gi = np.where(np.isnan(G), np.nanmean(G, axis=0), G)
    y = (Gi - Gi.mean(axis=0)) @ rng.normal(scale=0.15, size=m) + rng.normal(size=n)
    cov = rng.normal(size=(n, 1))
    return lmmscan.ArrayGenotypes(G, snps), y, cov


@pytest.mark.parametrize("method", ["centered", "standardized"])
@pytest.mark.parametrize("shuffle", [False, True])
def test_loco_equals_dense_kinships(method, shuffle):
    """Each chromosome against the kinship computed from the other chromosomes'
    SNPs directly; SNPs of interleaved chromosomes come back in file order."""
    source, y, cov = simulate(3, shuffle=shuffle, missing=False)
    ours = lmmscan.scan(source, y, covariates=cov, loco=True, kinship=method)
    chrom = source.snps["chr"].to_numpy()
    G = source.read(0, source.n_snps)
    pieces = []
    for c in ("1", "2", "3"):
        on = np.flatnonzero(chrom == c)
        K = lmmscan.kinship(G[:, chrom != c], method)
        sub = lmmscan.ArrayGenotypes(G[:, on], source.snps.iloc[on].reset_index(drop=True))
        table = lmmscan.scan(sub, y, kinship=K, covariates=cov)
        assert len(table) == len(on)  # every simulated SNP passes the filters
        table.index = on
        pieces.append(table)
    dense = pd.concat(pieces).sort_index().reset_index(drop=True)
    assert (ours["rs"].to_numpy() == source.snps["rs"].to_numpy()).all()
    assert (ours["rs"].to_numpy() == dense["rs"].to_numpy()).all()
    for col in ("beta", "se", "logl_H1", "l_remle", "l_mle", "p_wald", "p_lrt", "p_score"):
        np.testing.assert_allclose(ours[col], dense[col], rtol=1e-7, err_msg=col)


@pytest.mark.parametrize("n", [1, 2, 63, 64, 65, 128, 129, 600])
def test_difference_is_the_symmetric_difference(n):
    """The LOCO kinship (S - S_c) / p, built in tiles from the upper
    triangles, holds the same bits as the symmetric matrix built with numpy
    from np.triu, in the same (C) order; the lower triangles are not read."""
    rng = np.random.default_rng(n)
    S, S_c = np.full((n, n), np.nan, order="F"), np.full((n, n), np.nan, order="F")
    upper = np.triu_indices(n)
    S[upper] = rng.normal(size=upper[0].size)
    S_c[upper] = rng.normal(size=upper[0].size)
    D = np.triu(np.nan_to_num(S) - np.nan_to_num(S_c))
    expected = (D + np.triu(D, 1).T) / 7
    got = _difference(S, S_c, 7)
    assert got.flags.c_contiguous
    assert got.tobytes() == expected.tobytes()


def test_memory_limited_path_matches():
    """With no room for per-chromosome sums, each chromosome's sum is rebuilt
    from its own SNPs: same results."""
    source, y, cov = simulate(5, shuffle=True)
    a = lmmscan.loco_scan(source, y, cov, block_size=16)
    b = lmmscan.loco_scan(source, y, cov, block_size=16, memory_limit=0)
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9)


def test_unplaced_snps_are_neither_in_kinships_nor_tested():
    """On no chromosome: a missing name (a BIMBAM SNP the annotation does not
    list: tests/test_loco.py::test_an_na_chromosome_is_gemmas_minus_9)."""
    source, y, cov = simulate(7)
    snps = source.snps.copy()
    snps.loc[[0, 5, 77], "chr"] = None
    G = source.read(0, source.n_snps)
    report = lmmscan.ScanReport()
    table = lmmscan.scan(
        lmmscan.ArrayGenotypes(G, snps), y, covariates=cov, loco=True, report=report
    )
    assert not set(table["rs"]) & {"rs0", "rs5", "rs77"}
    assert report.filters.total == source.n_snps
    # counted, so that the summary's counts add up (they were in none)
    assert list(report.filters.removed)[0] == "unplaced" and report.filters.removed["unplaced"] == 3
    assert report.filters.kept + sum(report.filters.removed.values()) == source.n_snps
    # dropping them from the input gives the same answer
    keep = np.setdiff1d(np.arange(source.n_snps), [0, 5, 77])
    alone = lmmscan.scan(
        lmmscan.ArrayGenotypes(G[:, keep], snps.iloc[keep].reset_index(drop=True)),
        y,
        covariates=cov,
        loco=True,
    )
    pd.testing.assert_frame_equal(table, alone, check_exact=False, rtol=1e-12)


def test_a_chromosome_named_minus_9_or_0_is_a_chromosome():
    """GEMMA's -loco treats "-9" (an annotation's NA) as a name like any
    other; PLINK's unplaced "0" too.  They were left out of every kinship, and
    so was a BGEN's empty chromosome name."""
    source, y, cov = simulate(7)
    G = source.read(0, source.n_snps)
    tables = {}
    for name in ("-9", "0", "", "U"):
        snps = source.snps.copy()
        snps.loc[[0, 5, 77], "chr"] = name
        tables[name] = lmmscan.scan(lmmscan.ArrayGenotypes(G, snps), y, covariates=cov, loco=True)
    assert {"rs0", "rs5", "rs77"} <= set(tables["-9"]["rs"])
    for name in ("-9", "0", ""):
        pd.testing.assert_frame_equal(tables[name].drop(columns="chr"),
                                      tables["U"].drop(columns="chr"))  # fmt: skip


def test_an_na_chromosome_is_gemmas_minus_9(tmp_path):
    """The annotation made at the end of tests/data/gemma_loco/make_reference.sh: every
    third SNP of chromosome 2 on chromosome NA, every third of chromosome 3
    unlisted.  GEMMA puts the NA ones in every other kinship and tests them
    with -loco -9; lmmscan left them out of every kinship: every p moved
    (up to 0.23 in log10 on a simulation)."""
    from lmmscan.cli import main

    out = tmp_path / "u"
    argv = ["scan", "--bimbam-geno", MOUSE / "mouse_hs1940.geno.txt.gz", "--bimbam-anno",
            LOCO / "unplaced.anno.txt.gz", "--pheno", MOUSE / "mouse_hs1940.pheno.txt.gz",
            "--loco", "--test", "all", "--quiet", "--out", out]  # fmt: skip
    assert main([str(a) for a in argv]) == 0
    ours = read_assoc(f"{out}.assoc.txt")
    ref = read_assoc(LOCO / "loco_unplaced.assoc.txt.gz")
    assert (ref["chr"].astype(str) == "-9").sum() > 100
    for chrom in ("1", "-9"):
        compare_with_gemma(
            ours[ours["chr"].astype(str) == chrom].reset_index(drop=True),
            ref[ref["chr"].astype(str) == chrom].reset_index(drop=True),
        )
    anno = pd.read_csv(LOCO / "unplaced.anno.txt.gz", sep=r"\s+", header=None, usecols=[0])
    geno_rs = pd.read_csv(MOUSE / "mouse_hs1940.geno.txt.gz", sep=",", header=None, usecols=[0])
    unlisted = set(geno_rs[0]) - set(anno[0])
    assert len(unlisted) > 100 and not unlisted & set(ours["rs"])


def test_chromosome_with_no_kinship_snp():
    """A chromosome none of whose SNPs pass the filters has a zero sum: its
    kinship is that of all the other SNPs, as when the sums are rebuilt from
    each chromosome's SNPs (the memory-limited path), and it is not tested."""
    source, y, cov = simulate(11, per_chrom=(40, 10, 50))
    G = source.read(0, source.n_snps)
    G[:, source.snps["chr"].to_numpy() == "2"] = 1.0  # monomorphic: filtered out
    snps = source.snps
    a = lmmscan.loco_scan(lmmscan.ArrayGenotypes(G, snps), y, cov, block_size=16)
    b = lmmscan.loco_scan(lmmscan.ArrayGenotypes(G, snps), y, cov, block_size=16, memory_limit=0)
    assert "2" not in set(a["chr"].astype(str))
    pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-9)


def test_reported_null_models_release_their_eigenvectors():
    """A LOCO scan's report keeps each chromosome's null model without its
    n x n eigenvectors (all of them would stay in memory to the end, beyond
    what the memory plan counts); loco_scan(null_models=...) keeps them whole."""
    import gc

    from lmmscan.spectral import ReleasedSpectral, Spectral

    source, y, cov = simulate(12)
    n = len(y)
    gc.collect()
    before = {id(o) for o in gc.get_objects() if isinstance(o, Spectral)}
    report = lmmscan.ScanReport()
    table = lmmscan.scan(source, y, covariates=cov, loco=True, report=report)
    gc.collect()
    alive = [o for o in gc.get_objects() if isinstance(o, Spectral) and id(o) not in before]
    assert [o for o in alive if o.U.shape == (n, n)] == []
    whole: dict = {}
    again = lmmscan.loco_scan(
        source, y, cov, null_models=whole, report=(r2 := lmmscan.ScanReport())
    )
    pd.testing.assert_frame_equal(table, again)
    assert sorted(report.null_models) == sorted(whole) == ["1", "2", "3"]
    for chrom, kept in whole.items():
        light = report.null_models[chrom]
        assert isinstance(light.spectral, ReleasedSpectral)
        assert isinstance(r2.null_models[chrom].spectral, ReleasedSpectral)
        assert isinstance(kept.spectral, Spectral)
        assert light.spectral.d.tobytes() == kept.spectral.d.tobytes()
        assert light.lambda_ == kept.lambda_ and light.warnings == kept.warnings
        assert light.eigenvalues.tobytes() == kept.eigenvalues.tobytes()
        for a, b in zip(
            light.fixed_effects_posterior(), kept.fixed_effects_posterior(), strict=True
        ):
            assert a.tobytes() == b.tobytes()  # the eigenvalues are all it needs
        kept.random_effects()  # whole: works
        with pytest.raises(lmmscan.InputError, match="eigenvalues but not its eigenvectors"):
            light.random_effects()
        with pytest.raises(lmmscan.InputError, match="loco_scan"):
            light.fitted()
        with pytest.raises(AttributeError, match="null_models"):
            _ = light.eigenvectors


def test_several_phenotypes_in_one_loco_scan_equal_one_scan_each():
    """loco_scan and scan(loco=True) took one phenotype: an n x 2 y was
    refused as "y has shape (120, 2) but genotypes have 120 samples", though
    the engine (and the command line's --pheno-col 1,2) scans several in one
    pass.  Two phenotypes with different missing samples: two sample groups."""
    source, y, cov = simulate(14)
    rng = np.random.default_rng(3)
    Y = np.column_stack([y, y + rng.normal(size=len(y)), rng.normal(size=len(y))])
    Y[5, 1] = np.nan
    stats: list = []
    wholes: list = []
    report = lmmscan.ScanReport()
    tables = lmmscan.scan(source, Y, covariates=cov, loco=True, statistics=stats, report=report)
    again = lmmscan.loco_scan(source, Y, cov, null_models=wholes)
    assert len(tables) == len(again) == len(stats) == len(wholes) == 3
    first: dict = {}
    for k in range(3):
        own_stats: dict = {}
        one = lmmscan.loco_scan(source, Y[:, k], cov, statistics=own_stats, null_models=first)
        for t in (tables[k], again[k]):
            assert list(t.columns) == list(one.columns)
            for col in one.columns:
                assert np.array_equal(t[col].to_numpy(), one[col].to_numpy()), col
        assert all(np.array_equal(stats[k][c], own_stats[c]) for c in own_stats)
        assert sorted(wholes[k]) == sorted(first) == ["1", "2", "3"]
        assert all(wholes[k][c].lambda_ == first[c].lambda_ for c in first)
    assert all(report.null_models[c].lambda_ == wholes[0][c].lambda_ for c in first)


def test_loco_refuses_a_phenotype_its_covariates_explain_before_the_kinship_pass(
    monkeypatch,
):
    """The refusal came from the first chromosome's null fit, after the whole
    kinship pass, and named no phenotype among several."""
    from lmmscan import loco

    source, y, cov = simulate(15)
    Y = np.column_stack([y, 3 * cov[:, 0] - 1])

    def no_pass(*args, **kwargs):
        raise AssertionError("the kinship pass ran")

    monkeypatch.setattr(loco, "KinshipPasses", no_pass)
    with pytest.raises(lmmscan.InputError, match="^phenotype 2: the covariates explain y"):
        lmmscan.loco_scan(source, Y, cov)
    with pytest.raises(lmmscan.InputError, match="^the covariates explain y exactly"):
        lmmscan.scan(source, Y[:, 1], covariates=cov, loco=True)
    with pytest.raises(lmmscan.InputError, match="give 120 values"):
        lmmscan.loco_scan(source, Y[:60], cov[:60])


def test_loco_refuses_what_it_cannot_do():
    source, y, cov = simulate(9)
    G = source.read(0, source.n_snps)
    with pytest.raises(lmmscan.InputError, match="chromosome of each SNP"):
        lmmscan.scan(G, y, loco=True)  # a bare array: chr "-9" everywhere
    one = source.snps.assign(chr="1")
    with pytest.raises(lmmscan.InputError, match="at least two chromosomes"):
        lmmscan.scan(lmmscan.ArrayGenotypes(G, one), y, loco=True)
    with pytest.raises(lmmscan.InputError, match="method"):
        lmmscan.scan(source, y, loco=True, kinship=np.eye(len(y)))
    null = lmmscan.fit_null(y, kinship=lmmscan.kinship(G))
    with pytest.raises(lmmscan.InputError, match="builds its own kinships"):
        lmmscan.scan(source, y, loco=True, null_model=null)
    with pytest.raises(lmmscan.InputError, match="no SNP on chromosome"):
        lmmscan.loco_scan(source, y, chromosomes=["7"])


def test_cli_memory_limit_chooses_kept_or_rebuilt_sums(tmp_path, capsys, monkeypatch):
    """``scan --loco``: each chromosome's kinship sum is kept when the plan
    with them fits in --memory-limit (or the memory available), else rebuilt
    per chromosome, which is planned and run, not refused; the tables agree."""
    import json
    from pathlib import Path

    from bed_reader import open_bed, to_bed

    from lmmscan import loco, memory
    from lmmscan.cli import main

    demo = Path(lmmscan.__file__).parent / "data" / "demo"
    with open_bed(f"{demo}.bed") as bed:
        X = bed.read(dtype="float32")
        props = {"fid": bed.fid, "iid": bed.iid, "sid": bed.sid,
                 "bp_position": bed.bp_position, "allele_1": bed.allele_1,
                 "allele_2": bed.allele_2}  # fmt: skip
    # 22 chromosomes: their sums (22 x 8 n^2) dwarf a rebuilt sum's copies
    props["chromosome"] = (np.arange(X.shape[1]) * 22 // X.shape[1] + 1).astype(str)
    prefix = tmp_path / "g"
    to_bed(f"{prefix}.bed", X, properties=props)

    plans, kept = [], []
    real_plan, real_init = memory.scan_plan, loco._KinshipSums.__init__

    def spy_plan(**kw):
        plans.append(kw)
        return real_plan(**kw)

    def spy_init(self, *args, **kw):
        kept.append(args[10])  # keep_each
        real_init(self, *args, **kw)

    monkeypatch.setattr(memory, "scan_plan", spy_plan)
    monkeypatch.setattr(loco._KinshipSums, "__init__", spy_init)

    def run(name, *limit):
        out = tmp_path / name
        argv = ["scan", "--bfile", prefix, "--pheno", f"{demo}.pheno.txt", "--loco",
                "--eigh-driver", "evr", "--block-size", "64", "--quiet", "--out", out,
                *limit]  # fmt: skip
        status = main([str(a) for a in argv])
        err = capsys.readouterr().err
        assert status == 0, err
        plan = json.loads(Path(f"{out}.null.json").read_text())["memory"]
        table = pd.read_csv(f"{out}.assoc.txt", sep="\t")
        return plan["phases"]["kinship"]["per-chromosome sums"], table

    sums, table = run("default")
    assert sums > 0 and kept == [True]
    kw = {k: v for k, v in plans[-1].items() if k != "loco_sums"}
    with_sums = real_plan(**kw, loco_sums=sums).peak
    rebuilt = real_plan(**kw, loco_sums=0).peak
    assert rebuilt < with_sums

    # room for the plan that rebuilds them, not for the one that keeps them
    sums_small, table_small = run("small", "--memory-limit", (rebuilt + with_sums) // 2)
    assert sums_small == 0 and kept[-1] is False
    # the sums add the same products in another order (~1e-16 apart), which
    # can carry a printed %.6e value across a rounding boundary on some CPU's
    # kernels: one unit in the 7th significant digit, at most 1e-6 relative
    pd.testing.assert_frame_equal(table_small, table, check_exact=False, rtol=2e-6)
    # room for them: kept
    sums_big, table_big = run("big", "--memory-limit", with_sums + (1 << 20))
    assert sums_big == sums and kept[-1] is True
    pd.testing.assert_frame_equal(table_big, table, check_exact=True)

"""Python API arguments that gave a silent wrong answer or left the process
changed (found by an adversarial run of the API): each is refused by name,
or now does what it says."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

import lmmscan
from lmmscan import InputError


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    n, m = 100, 40
    G = rng.binomial(2, 0.3, (n, m)).astype(float)
    Z = G - G.mean(axis=0)
    K = Z @ Z.T / m
    y = 0.5 * G[:, 0] + rng.normal(size=n)
    return G, K, y


def test_null_model_with_y_kinship_or_covariates_is_refused(data):
    """scan(G, other_y, null_model=m) scanned m's phenotype, silently."""
    G, K, y = data
    null = lmmscan.fit_null(y, kinship=K)
    for extra in ({"y": -y}, {"kinship": K}, {"covariates": np.ones(len(y))}):
        args = {"y": extra.pop("y")} if "y" in extra else {}
        with pytest.raises(InputError, match="null_model carries its phenotype"):
            lmmscan.scan(G, **args, null_model=null, **extra)


@pytest.mark.parametrize("what", ["y", "kinship", "genotypes", "covariates"])
def test_complex_numbers_are_refused_not_cut_to_their_real_part(data, what):
    G, K, y = data
    args = {"y": y, "kinship": K, "genotypes": G, "covariates": np.ones((len(y), 1))}
    args[what] = args[what] + 1j
    with pytest.raises(InputError, match=f"{what} holds complex numbers"):
        lmmscan.scan(args["genotypes"], args["y"], kinship=args["kinship"],
                     covariates=args["covariates"])  # fmt: skip
    if what in ("y", "covariates"):
        with pytest.raises(InputError, match=f"{what} holds complex numbers"):
            lmmscan.fit_null(args["y"], kinship=K, covariates=args["covariates"])


@pytest.mark.parametrize(
    "option, value",
    [("miss", -1), ("miss", 2), ("miss", float("nan")), ("r2", -1), ("hwe", 2),
     ("hwe", float("nan")), ("maf", float("nan")), ("maf", "0.1")],
)  # fmt: skip
def test_filter_thresholds_the_command_line_refuses_are_refused(data, option, value):
    """r2=-1 or miss=-1 gave an empty table, maf=nan filtered nothing."""
    G, K, y = data
    with pytest.raises(InputError, match=f"{option} must be a number"):
        lmmscan.scan(G, y, kinship=K, **{option: value})


def test_lambda_bounds_must_be_finite_and_can_be_a_tuple(data):
    """An infinite l_max gave lambda = inf and every SNP tested at the bound;
    a tuple was an AttributeError."""
    G, K, y = data
    with pytest.raises(InputError, match="0 < l_min < l_max < inf"):
        lmmscan.LambdaBounds(1e-5, np.inf, 10)
    with pytest.raises(InputError, match="n_region must be an integer"):
        lmmscan.LambdaBounds(1e-5, 1e5, 2.5)
    a = lmmscan.scan(G, y, kinship=K, bounds=(1e-5, 1e5, 10))
    b = lmmscan.scan(G, y, kinship=K, bounds=lmmscan.LambdaBounds(1e-5, 1e5, 10))
    assert a.equals(b)
    with pytest.raises(InputError, match="bounds must be a LambdaBounds"):
        lmmscan.fit_null(y, kinship=K, bounds="wide")


def test_loco_chromosomes_as_one_name_not_its_characters():
    """chromosomes="21" tested chromosomes 2 and 1."""
    rng = np.random.default_rng(5)
    n, m = 80, 60
    G = rng.binomial(2, 0.3, (n, m)).astype(float)
    import pandas as pd

    chrom = ["1"] * 20 + ["2"] * 20 + ["21"] * 20
    rs = [f"s{i}" for i in range(m)]
    snps = pd.DataFrame(
        {"chr": chrom, "rs": rs, "ps": np.arange(m), "allele1": "A", "allele0": "G"}
    )
    source = lmmscan.ArrayGenotypes(G, snps)
    y = rng.normal(size=n)
    table = lmmscan.loco_scan(source, y, chromosomes="21")
    assert set(table["chr"]) == {"21"}
    with pytest.raises(InputError, match="chromosomes is empty"):
        lmmscan.loco_scan(source, y, chromosomes=[])


def test_concurrent_scans_leave_blas_threads_as_they_were(data):
    """threadpoolctl's limits are the process's: two scans at once left BLAS
    on one thread for good."""
    from threadpoolctl import threadpool_info

    G, K, y = data

    def counts():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    from lmmscan._lapack64 import scipy_library

    scipy_library()  # a scan loads scipy's BLAS too: count it before as after
    before = counts()
    for _ in range(3):
        pool = [threading.Thread(target=lmmscan.scan, args=(G, y), kwargs={"kinship": K,
                "threads": 1}) for _ in range(3)]  # fmt: skip
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    assert counts() == before


def test_pandas_half_imported_by_another_thread_is_no_pandas_yet(monkeypatch):
    """Three scans started at once on threads, pandas not yet imported: one
    thread's check of pandas inputs found the module another thread was
    importing ("partially initialized module 'pandas' has no attribute
    'Series'")."""
    import sys
    import types
    from importlib.machinery import ModuleSpec

    from lmmscan.samples import check_same_rows, loaded_pandas

    half = types.ModuleType("pandas")
    half.__spec__ = ModuleSpec("pandas", None)
    half.__spec__._initializing = True  # as importlib marks a module it runs
    monkeypatch.setitem(sys.modules, "pandas", half)
    assert loaded_pandas() is None
    check_same_rows(y=np.zeros(3), covariates=None)  # no AttributeError
    monkeypatch.undo()
    import pandas

    assert loaded_pandas() is pandas


def test_a_blas_limit_on_another_thread_holds_after_one_on_this_thread():
    """threadpoolctl 3.6+ lets one thread at a time set OpenBLAS's process-wide
    threads; restoring the original count made this thread that one for
    good, and every later blas_threads(1) on another thread did nothing (a
    fit on a worker thread took two threads and other last bits)."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_info

    from lmmscan._threads import blas_threads

    def counts():
        with blas_threads(1):
            return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    assert counts() == {1}  # this thread sets and restores
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(counts).result() == {1}


def test_blas_limits_that_overlap_on_two_threads_hold_until_both_leave():
    """Each blas_threads block put back, on leaving, the count it found: when
    one of two overlapping blocks left, the other ran on two BLAS threads
    though still inside its blas_threads(1) (a Dask task's product, other
    last bits)."""
    import time

    from threadpoolctl import threadpool_info

    from lmmscan._threads import blas_threads

    def counts():
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    before = counts()
    a_in, a_out, seen = threading.Event(), threading.Event(), {}

    def first():
        with blas_threads(1):
            a_in.set()
            time.sleep(0.2)
        a_out.set()

    def second():
        a_in.wait()
        with blas_threads(1):
            seen["both inside"] = counts()
            a_out.wait()
            seen["the first left"] = counts()

    pool = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert seen == {"both inside": {1}, "the first left": {1}}
    assert counts() == before


def test_an_l_max_past_the_double_precision_range_is_refused(tmp_path, capsys):
    """--lmax 1e20 fitted a false null optimum (lambda 2.9e16, a log-likelihood
    above the true one) and gave 68 genome-wide hits on the demo, exit 0."""
    from lmmscan.cli import main
    from lmmscan.demo import copy_study

    with pytest.raises(InputError, match="l_max 1e\\+20 is beyond 1e\\+10"):
        lmmscan.LambdaBounds(1e-5, 1e20, 10)
    lmmscan.LambdaBounds(1e-5, 1e10, 10)
    study = copy_study(tmp_path / "in")
    argv = ["scan", "--bfile", str(study), "--pheno", f"{study}.pheno.txt", "--lmax", "1e20",
            "--out", str(tmp_path / "r")]  # fmt: skip
    assert main(argv) == 2
    assert "--lmax 1e+20 is beyond 1e+10" in capsys.readouterr().err


def test_an_eigendecomposition_built_with_a_foreign_u_is_refused(data):
    """load_eigen checked U'U = I; an object built in memory was used as is."""
    G, K, y = data
    eig = lmmscan.eigendecompose(K, [str(i) for i in range(len(y))])
    noise = np.random.default_rng(0).normal(size=eig.U.shape)
    with pytest.raises(InputError, match="not orthonormal"):
        lmmscan.Eigendecomposition(eig.d, noise, eig.sample_ids)


def test_pandas_rows_labelled_in_other_orders_are_refused(data):
    """Rows are matched by position: a phenotype Series in another order than
    the genotypes' DataFrame gave each sample another's value, silently."""
    import pandas as pd

    G, K, y = data
    ids = [f"s{i}" for i in range(len(y))]
    perm = np.random.default_rng(1).permutation(len(y))
    genotypes = pd.DataFrame(G, index=ids)
    shuffled = pd.Series(y, index=ids).iloc[perm]
    with pytest.raises(InputError, match="genotypes and y are pandas objects whose rows"):
        lmmscan.scan(genotypes, shuffled, kinship=K)
    with pytest.raises(InputError, match="y and kinship are pandas objects"):
        lmmscan.fit_null(shuffled, kinship=pd.DataFrame(K, index=ids, columns=ids))
    with pytest.raises(InputError, match="columns are not its index"):
        lmmscan.fit_null(y, kinship=pd.DataFrame(K, index=ids, columns=np.array(ids)[perm]))
    # one order everywhere, or default indexes: the arrays' table
    same = lmmscan.scan(genotypes, pd.Series(y, index=ids), kinship=K)
    assert same.equals(lmmscan.scan(G, y, kinship=K))
    assert lmmscan.scan(pd.DataFrame(G), pd.Series(y), kinship=K).equals(same)


def test_a_default_index_beside_the_same_integers_in_another_order_is_refused(data):
    """A y Series with the default index (0 .. n-1) beside covariates, groups
    or a kinship labelled by those integers in another order (a frame sorted
    by a column): the default index was taken to say nothing, and the rows
    were matched by position (helper 49: the slope 0.11 for 1.98)."""
    import pandas as pd

    G, K, y = data
    n = len(y)
    perm = np.random.default_rng(2).permutation(n)
    x = pd.DataFrame({"x": G[:, 1]})
    groups = pd.Series(np.arange(n) % 7)
    with pytest.raises(InputError, match="y and covariates are pandas objects"):
        lmmscan.fit_null(pd.Series(y), x.iloc[perm], kinship=K)
    with pytest.raises(InputError, match="y and groups are pandas objects"):
        lmmscan.fit_null(pd.Series(y), groups=groups.iloc[perm])
    with pytest.raises(InputError, match="y and kinship are pandas objects"):
        lmmscan.fit_null(pd.Series(y), kinship=pd.DataFrame(K).iloc[perm, perm])
    with pytest.raises(InputError, match="columns are not its index"):
        lmmscan.fit_null(y, kinship=pd.DataFrame(K).iloc[:, perm])
    # ... and beside an input with no labels, an array (helper 70: vg 0.000
    # for 0.830, exit 0), matched by position all the same
    with pytest.raises(InputError, match="groups is a pandas object .* beside y, an array"):
        lmmscan.fit_null(y, groups=groups.iloc[perm])
    with pytest.raises(InputError, match="y is a pandas object .* beside covariates"):
        lmmscan.fit_null(pd.Series(y).iloc[perm], G[:, 1], kinship=K)
    # not beside a genotype file, whose sample IDs may be those integers in
    # that order (check_labels_follow_samples compares them; helper 71)
    from lmmscan.genotypes import as_source
    from lmmscan.samples import check_same_rows

    check_same_rows(genotypes=as_source(G), y=pd.Series(y).iloc[perm])
    # the same order, or labels that are not those integers: fitted as before
    same = pytest.approx(lmmscan.fit_null(y, G[:, 1], kinship=K).lambda_, rel=1e-12)
    assert lmmscan.fit_null(pd.Series(y), x, kinship=pd.DataFrame(K)).lambda_ == same
    assert lmmscan.fit_null(pd.Series(y), x.set_axis(perm + n), kinship=K).lambda_ == same


def test_a_basis_argument_of_another_kind_is_refused_in_one_line(data):
    """kinship=Eigendecomposition raised a TypeError, spectral= an
    Eigendecomposition, a model or a low-rank kinship an AttributeError."""
    G, K, y = data
    eig = lmmscan.eigendecompose(K)
    model = lmmscan.fit_null(y, kinship=K)
    for kwargs, needle in [
        ({"kinship": eig}, "kinship is an Eigendecomposition"),
        ({"spectral": eig}, "spectral is an Eigendecomposition"),
        ({"spectral": model}, "got NullModel"),
        ({"spectral": lmmscan.low_rank_kinship(G)}, "got LowRankKinship"),
        ({"spectral": model.without_eigenvectors().spectral}, "released basis"),
    ]:
        with pytest.raises(InputError, match=needle):
            lmmscan.fit_null(y, **kwargs)
    assert lmmscan.fit_null(y, spectral=eig.spectral()).lambda_ == pytest.approx(model.lambda_)
    # scan takes an eigendecomposition as eigen=; as kinship= it said "must hold numbers"
    with pytest.raises(InputError, match="lmmscan.scan takes it as eigen="):
        lmmscan.scan(G, y, kinship=eig)


@pytest.mark.parametrize("center", ["no", "False", None, 0.0, 2])
def test_center_is_a_bool(data, center):
    """center="no" double-centred the kinship, None did not (fit_null and
    eigendecompose); 1 and 0 are still taken as True and False."""
    G, K, y = data
    with pytest.raises(InputError, match="center must be True or False"):
        lmmscan.fit_null(y, kinship=K, center=center)
    with pytest.raises(InputError, match="center must be True or False"):
        lmmscan.eigendecompose(K, center=center)
    assert lmmscan.fit_null(y, kinship=K, center=0).lambda_ == pytest.approx(
        lmmscan.fit_null(y, kinship=K, center=False).lambda_, rel=1e-12
    )


def test_values_beyond_double_range_are_refused_by_name(data):
    """A y of subnormal values raised OverflowError (its power-of-two scale);
    a covariate near 1e-156 got beta_se inf, near 1e-165 was called zero."""
    G, K, y = data
    with pytest.raises(InputError, match="below the smallest normal double"):
        lmmscan.fit_null(y * 1e-310, kinship=K)
    for scale in (1e-156, 1e-170):
        with pytest.raises(InputError, match="covariates column 1 .* variance overflows"):
            lmmscan.fit_null(y, G[:, 1] * scale, kinship=K)
    # a representable scale is fitted exactly as the unscaled covariate
    a, b = lmmscan.fit_null(y, G[:, 1], kinship=K), lmmscan.fit_null(y, G[:, 1] * 1e-150, kinship=K)
    assert b.beta_se[0] * 1e-150 == pytest.approx(a.beta_se[0], rel=1e-12)


def test_nullable_pandas_columns_with_missing_values_are_read_as_nan(data):
    """Two Int64/Float64 columns with pd.NA were refused ("float() argument
    must be ... not 'NAType'"); one column already read pd.NA as missing."""
    import pandas as pd

    G, K, y = data
    W = pd.DataFrame({"a": G[:, 1], "b": G[:, 2] + 0.5}).convert_dtypes()
    W.iloc[3, 0] = pd.NA
    plain = W.astype("float64")
    assert np.isnan(plain.iloc[3, 0])
    got = lmmscan.fit_null(y, W, kinship=K)
    want = lmmscan.fit_null(y, plain, kinship=K)
    assert got.n_analyzed == len(y) - 1
    np.testing.assert_array_equal(got.beta, want.beta)


def test_pve_is_zero_when_the_group_variance_is_snapped_to_zero():
    """A group model whose variance is estimated at 0 reported pve 1e-10."""
    for seed in range(100):
        rng = np.random.default_rng(seed)
        g = rng.integers(0, 20, 300)
        x = rng.standard_normal(300)
        m = lmmscan.fit_null(1 + 0.5 * x + rng.standard_normal(300), x, groups=g)
        if m.vg == 0.0:
            break
    assert m.vg == 0.0 and m.lambda_ == 0.0 and m.pve == 0.0


def test_pandas_rows_labelled_by_the_files_ids_in_another_order_are_refused(tmp_path):
    """A phenotype Series indexed by the .fam's IIDs (or FID, IID) in another
    order than the file's was used row by row: log10 p off by 6 (helper run).
    Labels in the file's order, or labels that are not its IDs, pass."""
    import shutil

    import pandas as pd

    demo = Path(lmmscan.__file__).parent / "data" / "demo"
    for ext in (".bed", ".bim", ".fam"):
        shutil.copy(f"{demo}{ext}", tmp_path / f"d{ext}")
    source = lmmscan.read_plink(str(tmp_path / "d"))
    fid, iid = source.samples["fid"].to_numpy(), source.samples["iid"].to_numpy()
    y = np.genfromtxt(f"{demo}.pheno.txt", usecols=0)
    cov = np.genfromtxt(f"{demo}.covar.txt")
    K = lmmscan.kinship(source, filter_samples=np.ones(source.n_samples, bool))
    perm = np.random.default_rng(2).permutation(iid.size)
    pairs = pd.MultiIndex.from_arrays([fid, iid])
    for name, kwargs in [
        ("y", {"y": pd.Series(y, index=iid).iloc[perm]}),
        ("y", {"y": pd.Series(y, index=pairs).iloc[perm]}),
        ("covariates", {"y": y, "covariates": pd.DataFrame(cov, index=iid).iloc[perm]}),
    ]:
        with pytest.raises(InputError, match=f"^{name} is labelled by the genotypes' sample"):
            lmmscan.scan(source, kinship=K, **kwargs)
    with pytest.raises(InputError, match="^y is labelled by the genotypes' sample"):
        lmmscan.loco_scan(source, pd.Series(y, index=iid).iloc[perm])
    table = lmmscan.scan(source, y, kinship=K)
    assert lmmscan.scan(source, pd.Series(y, index=iid), kinship=K).equals(table)
    other = pd.Series(y, index=[f"x{i}" for i in perm])  # not the file's IDs: not compared
    assert lmmscan.scan(source, other, kinship=K).equals(table)


@pytest.mark.parametrize(
    "selection, message",
    [
        (np.arange(100) % 2, "names a sample twice"),  # a 0/1 mask given as integers
        (np.array([-1, -2, 0]), "indices outside 0..99"),
        (np.array([0, 150]), "indices outside 0..99"),
        (np.array([0.9, 1.9]), "boolean mask or 1-D integer indices"),
        (np.ones(50, dtype=bool), "as a mask must have 100 entries"),
    ],
)
def test_sample_selections_are_checked(data, selection, message):
    """An int 0/1 mask was taken as the indices {0, 1}, negative indices
    wrapped, floats were truncated, out of range was a bare IndexError."""
    G, K, y = data
    with pytest.raises(InputError, match=message):
        lmmscan.kinship(G, filter_samples=selection)
    with pytest.raises(InputError, match=message):
        lmmscan.eigendecompose(K, samples=selection)
    idx = np.array([5, 3, 9])
    assert lmmscan.eigendecompose(K, samples=idx).sample_ids.tolist() == ["5", "3", "9"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"threads": 1.5}, "threads must be a positive integer"),
        ({"block_size": 1.5}, "block_size must be a positive integer"),
        ({"threads": True}, "threads must be a positive integer"),
    ],
)
def test_threads_and_block_size_are_whole_numbers(data, kwargs, message):
    """Before: a pybind TypeError naming filter_impute, or Python's own."""
    G, K, y = data
    with pytest.raises(InputError, match=message):
        lmmscan.scan(G, y, kinship=K, **kwargs)


@pytest.mark.parametrize("null_model", [[], "x", 3, [1, 2]])
def test_null_model_must_be_null_models(data, null_model):
    """Before: IndexError, AttributeError or TypeError from inside the scan."""
    G, K, y = data
    with pytest.raises(InputError, match="null_model must be a NullModel"):
        lmmscan.scan(G, null_model=null_model)


def test_second_review_mends(data, tmp_path):
    """A kinship DataFrame read back from CSV (int index, text columns) and a
    default-like int index are not labels; maf=-inf is no filter; bounds
    beside null_model are refused; chromosomes may be any iterable."""
    import pandas as pd

    G, K, y = data
    n = len(y)
    ids = list(range(1001, 1001 + n))
    path = tmp_path / "k.csv"
    pd.DataFrame(K, index=ids, columns=ids).to_csv(path)
    from_csv = pd.read_csv(path, index_col=0)
    assert lmmscan.scan(G, y, kinship=from_csv).equals(lmmscan.scan(G, y, kinship=K))
    cov = pd.DataFrame({"x": np.ones(n)}, index=pd.Index(np.arange(n)))
    lmmscan.scan(G, pd.Series(y, index=[f"s{i}" for i in range(n)]), kinship=K, covariates=cov)
    assert lmmscan.scan(G, y, kinship=K, maf=-np.inf).equals(lmmscan.scan(G, y, kinship=K, maf=-1))
    null = lmmscan.fit_null(y, kinship=K)
    with pytest.raises(InputError, match="without bounds"):
        lmmscan.scan(G, null_model=null, bounds=lmmscan.LambdaBounds(0.5, 0.6, 2))


def test_a_lambda_on_a_chosen_bound_does_not_blame_the_kinship(data):
    """The warning said the kinship explains almost none (or all) of the
    variance when the lambda sat on a bound the user chose."""
    G, K, y = data
    chosen = lmmscan.fit_null(y, kinship=K, bounds=lmmscan.LambdaBounds(5.0, 6.0, 2))
    assert chosen.warnings and all("a bound of the range chosen" in w for w in chosen.warnings)
    wide = lmmscan.fit_null(y * 0 + np.arange(len(y)) % 2, kinship=np.eye(len(y)) * 1e-3)
    assert all("range chosen" not in w for w in wide.warnings)


def test_api_leftovers_are_refused_by_name_or_done(data, tmp_path):
    """Left alone by the last round (tracebacks, a file that could not be
    read back): each is now refused by name, or does what its docstring says."""
    import pandas as pd

    G, K, y = data
    pheno = tmp_path / "p.txt"
    np.savetxt(pheno, np.column_stack([y, -y]))
    # a column number, not only a list of them ('int' object is not iterable)
    np.testing.assert_array_equal(lmmscan.read_pheno(pheno, 2), lmmscan.read_pheno(pheno, [2]))
    np.testing.assert_array_equal(
        lmmscan.read_pheno(pheno, np.array(2)), pheno_2 := lmmscan.read_pheno(pheno, [2])
    )
    assert pheno_2.shape == (len(y), 1)
    for bad in ("1", [1.5], [], True):
        with pytest.raises(InputError, match="columns must be a column number or a list"):
            lmmscan.read_pheno(pheno, bad)
    # what read_kinship would refuse is not written
    for bad, message in ((np.ones((3, 4)), "square"), (np.full((3, 3), np.nan), "NaN")):
        for name in ("k.txt", "k.npy"):
            with pytest.raises(InputError, match=message):
                lmmscan.write_kinship(tmp_path / name, bad)
    assert not list(tmp_path.glob("k*"))
    # a directory is no .npz name (dir.npz was written beside it), and the
    # file appears whole or not at all
    eig = lmmscan.eigendecompose(K)
    (tmp_path / "e").mkdir()
    with pytest.raises(InputError, match="is a directory"):
        lmmscan.save_eigen(tmp_path / "e", eig)
    assert lmmscan.save_eigen(tmp_path / "f", eig) == tmp_path / "f.npz"
    assert not list(tmp_path.glob(".f*"))
    # a rank is a whole number (2.5 and True were taken)
    for bad in (2.5, True):
        with pytest.raises(InputError, match="rank must be a whole number"):
            lmmscan.low_rank_kinship(G, rank=bad)
    # snps lacking a column get GEMMA's defaults for it (a KeyError in the scan)
    snps = pd.DataFrame({"chr": ["1"] * G.shape[1], "rs": [f"r{j}" for j in range(G.shape[1])]})
    table = lmmscan.scan(lmmscan.ArrayGenotypes(G, snps=snps), y, kinship=K, test="wald")
    assert list(table["ps"].unique()) == [-9] and list(table["allele1"].unique()) == ["-9"]
    assert list(table["rs"][:2]) == ["r0", "r1"]
    lmmscan.write_table(table, tmp_path / "t.txt")
    with pytest.raises(InputError, match="snps must be a pandas DataFrame"):
        lmmscan.ArrayGenotypes(G, snps={"rs": ["a"] * G.shape[1]})


def test_arguments_of_the_wrong_kind_are_named(data):
    """Helper 70: test=["wald", "lrt"] raised TypeError (unhashable) from
    inside, report=5 an AttributeError after the scan, and sample_ids
    without eigen= was ignored."""
    G, K, y = data
    with pytest.raises(InputError, match="test must be one of"):
        lmmscan.scan(G, y, kinship=K, test=["wald", "lrt"])
    with pytest.raises(InputError, match="report must be an lmmscan.ScanReport"):
        lmmscan.scan(G, y, kinship=K, report=5)
    with pytest.raises(InputError, match="report must be an lmmscan.ScanReport"):
        lmmscan.loco_scan(G, y, report=5)
    with pytest.raises(InputError, match="sample_ids goes with eigen="):
        lmmscan.scan(G, y, kinship=K, sample_ids=["a"] * len(y))


def test_variances_past_double_range_are_refused_where_they_are_needed(data):
    """y near 1e200 is fitted in its own units (λ, pve and the tests do not
    depend on its scale), but its variances near 1e400 overflow: the
    posterior of the fixed effects raised numpy's LinAlgError (helper 70)."""
    G, K, y = data
    groups = np.arange(len(y)) % 10
    model = lmmscan.fit_null(y * 1e200, G[:, 1], groups=groups)
    plain = lmmscan.fit_null(y, G[:, 1], groups=groups)
    assert model.lambda_ == pytest.approx(plain.lambda_, rel=1e-9) and np.isinf(model.ve)
    for call in (model.fixed_effects_posterior, model.random_effects):
        with pytest.raises(InputError, match="overflow a double at y's scale"):
            call()


def test_write_table_compresses_a_gz_name(data, tmp_path):
    """write_table wrote plain text under a .gz name (helper 70); it now
    gzips it, the same bytes for the same table."""
    import gzip

    G, K, y = data
    table = lmmscan.scan(G, y, kinship=K)
    plain = lmmscan.write_table(table, tmp_path / "t.txt").read_bytes()
    packed = lmmscan.write_table(table, tmp_path / "t.txt.gz").read_bytes()
    assert gzip.decompress(packed) == plain
    assert lmmscan.write_table(table, tmp_path / "u.txt.gz").read_bytes() == packed

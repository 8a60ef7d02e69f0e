"""Saved eigendecompositions: exact round trip, reuse equals recomputation,
and a different set of analysed samples is refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import lmmscan
from lmmscan.eigen import sample_ids_of


@pytest.fixture(scope="module")
def study():
    rng = np.random.default_rng(42)
    n, m = 150, 400
    G = rng.binomial(2, rng.uniform(0.05, 0.5, m), size=(n, m)).astype(np.float64)
    y = G[:, :50] @ rng.normal(scale=0.1, size=50) + rng.normal(size=n)
    y[[3, 17, 40]] = np.nan
    ids = np.array([f"ind{i:03d}" for i in range(n)])
    return G, y, lmmscan.kinship(G), ids


def test_round_trip_is_exact(study, tmp_path):
    G, y, K, ids = study
    mask = ~np.isnan(y)
    eig = lmmscan.eigendecompose(K, ids, samples=mask, meta={"kinship": "centered"})
    assert eig.n_samples == mask.sum() and not eig.low_rank
    path = eig.save(tmp_path / "study")
    assert path.name == "study.npz"
    back = lmmscan.load_eigen(path)
    assert back.d.tobytes() == eig.d.tobytes()
    assert back.U.tobytes() == eig.U.tobytes()
    assert (back.sample_ids == ids[mask]).all()
    assert back.meta == {"center": "True", "kinship": "centered"}


def test_reuse_equals_recomputing(study, tmp_path):
    G, y, K, ids = study
    path = lmmscan.save_eigen(
        tmp_path / "e.npz", lmmscan.eigendecompose(K, ids, samples=~np.isnan(y))
    )
    direct = lmmscan.scan(G, y, kinship=K)
    reused = lmmscan.scan(G, y, eigen=path, sample_ids=ids)
    pd.testing.assert_frame_equal(direct, reused, check_exact=True)


def test_same_samples_in_another_order_are_reordered(study):
    """A permuted sample order is the same model: the rows of U follow."""
    G, y, K, ids = study
    eig = lmmscan.eigendecompose(K, ids, samples=~np.isnan(y))
    perm = np.random.default_rng(1).permutation(len(y))
    a = lmmscan.scan(G, y, eigen=eig, sample_ids=ids)
    b = lmmscan.scan(G[perm], y[perm], eigen=eig, sample_ids=ids[perm])
    for col in ("beta", "se", "logl_H1", "p_wald", "p_lrt", "p_score"):
        np.testing.assert_allclose(a[col], b[col], rtol=1e-8, err_msg=col)


def test_other_samples_are_refused(study):
    G, y, K, ids = study
    eig = lmmscan.eigendecompose(K, ids, samples=~np.isnan(y))
    y2 = y.copy()
    y2[[5, 6]] = np.nan  # this phenotype analyses two samples fewer
    with pytest.raises(lmmscan.InputError, match=r"2 of its samples not analysed.*ind005"):
        lmmscan.scan(G, y2, eigen=eig, sample_ids=ids)
    # all samples analysed, but the decomposition lacks three of them
    y3 = np.where(np.isnan(y), 0.0, y)
    with pytest.raises(lmmscan.InputError, match=r"3 analysed sample\(s\) not in it"):
        lmmscan.scan(G, y3, eigen=eig, sample_ids=ids)
    with pytest.raises(lmmscan.InputError, match="sample_ids must have"):
        lmmscan.scan(G, y, eigen=eig, sample_ids=ids[:-1])
    # without IDs an array's samples are its positions: the check still bites
    with pytest.raises(lmmscan.InputError, match="not in it"):
        lmmscan.scan(G, y, eigen=eig)


def test_low_rank_round_trip_and_reuse(study, tmp_path):
    G, y, _, ids = study
    lr = lmmscan.low_rank_kinship(G[:, :60])
    mask = ~np.isnan(y)
    spec = lr.spectral(mask)
    eig = lmmscan.Eigendecomposition.from_spectral(spec, ids[mask])
    assert eig.low_rank
    back = lmmscan.load_eigen(eig.save(tmp_path / "lr.npz"))
    assert isinstance(back.spectral(), lmmscan.LowRankSpectral)
    a = lmmscan.scan(G, y, kinship=lr)
    b = lmmscan.scan(G, y, eigen=back, sample_ids=ids)
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_bad_files_are_named(tmp_path):
    with pytest.raises(lmmscan.InputError, match="not found"):
        lmmscan.load_eigen(tmp_path / "nope.npz")
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    with pytest.raises(lmmscan.InputError, match="not an lmmscan eigendecomposition"):
        lmmscan.load_eigen(other)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file")
    with pytest.raises(lmmscan.InputError, match="cannot read"):
        lmmscan.load_eigen(junk)
    with pytest.raises(lmmscan.InputError, match="repeated"):
        lmmscan.eigendecompose(np.eye(3), ["a", "b", "a"])


def _edited(path, tmp_path, name, **change):
    """A copy of the saved file ``path`` with some of its arrays replaced."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(change)
    out = tmp_path / name
    np.savez(out, **arrays)
    return out


def test_edited_files_are_refused_naming_the_file(study, tmp_path):
    """Before: a U whose columns were scaled (or replaced by noise) was used
    without a word; a negative eigenvalue was blamed on the phenotype, and the
    arrays' shape and ID checks named no file."""
    G, y, K, ids = study
    path = lmmscan.eigendecompose(K, ids).save(tmp_path / "e")
    with np.load(path) as z:
        d, U, sid = z["d"], z["U"], z["sample_ids"]
    scaled = U.copy()
    scaled[:, 0] *= 3
    noise = np.random.default_rng(3).normal(size=U.shape)
    negative = d.copy()
    negative[-1] = -5.0
    cases = {
        "scaled.npz": ({"U": scaled}, "not orthonormal"),
        "noise.npz": ({"U": noise}, "not orthonormal"),
        "negative.npz": ({"d": negative}, r"eigenvalues \(d\) include -5"),
        "short.npz": ({"d": d[:-1]}, r"need d \(k,\) and U \(n, k\)"),
        "repeated.npz": ({"sample_ids": np.r_[sid[:-1], sid[:1]]}, "repeated IDs"),
    }
    for name, (change, message) in cases.items():
        bad = _edited(path, tmp_path, name, **change)
        with pytest.raises(lmmscan.InputError, match=message) as err:
            lmmscan.load_eigen(bad)
        assert str(err.value).startswith(f"{bad}: "), err.value
    # a low-rank basis (U'U = I with fewer columns) and rows in another order load
    low = _edited(path, tmp_path, "low.npz", d=d[-20:], U=U[:, -20:])
    assert lmmscan.load_eigen(low).low_rank
    order = np.random.default_rng(4).permutation(len(sid))
    lmmscan.load_eigen(_edited(path, tmp_path, "perm.npz", U=U[order], sample_ids=sid[order]))


def test_a_member_with_a_damaged_header_is_named(study, tmp_path):
    """U.npy's header without its closing brace, in a zip whose CRCs are
    right: tokenize.TokenError, a traceback (helper 43)."""
    import zipfile

    G, y, K, ids = study
    path = lmmscan.eigendecompose(K, ids).save(tmp_path / "e")
    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item, data.replace(b"}", b" ", 1) if item.filename == "U.npy" else data)
    with pytest.raises(lmmscan.InputError, match=r"bad.npz: cannot read the eigendecomposition: "):
        lmmscan.load_eigen(bad)


def test_an_npz_named_npy_is_not_a_kinship(study, tmp_path):
    """Before: an AttributeError traceback ('NpzFile' object has no attribute 'dtype')."""
    G, y, K, ids = study
    path = lmmscan.eigendecompose(K, ids).save(tmp_path / "e")
    renamed = tmp_path / "k.npy"
    renamed.write_bytes(path.read_bytes())
    with pytest.raises(lmmscan.InputError, match=r"k.npy: an .npz archive, not a kinship"):
        lmmscan.read_kinship(renamed)


def test_plink_sample_ids_are_the_iids(mouse_plink):
    ids = sample_ids_of(mouse_plink)
    assert ids.shape == (1940,)
    assert ids[0] == mouse_plink.samples["iid"].iloc[0]

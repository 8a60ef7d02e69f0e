"""Eigendecompositions saved with the samples they belong to (GEMMA's -d/-u).

GEMMA double-centres the kinship over the *analysed* samples before
decomposing it, so an eigendecomposition belongs to one set of samples: the
ones whose phenotype and covariates are present.  :class:`Eigendecomposition`
keeps that sample list beside U and d, :meth:`Eigendecomposition.save` writes
one ``.npz`` (float64 arrays stored bit for bit, no pickle), and
:meth:`Eigendecomposition.spectral_for` hands a reusable spectral object to
:func:`lmmscan.fit_null` / :func:`lmmscan.scan` only when the analysed samples
are the same set (rows are reordered when only the order differs) and
refuses with an :class:`~lmmscan.InputError` otherwise.

A saved decomposition may be low-rank (U is n x k, k < n: see
:mod:`lmmscan.lowrank`); it then comes back as a
:class:`~lmmscan.lowrank.LowRankSpectral`.
"""

from __future__ import annotations

import contextlib
import os
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ._errors import InputError, one_line
from .lowrank import LowRankSpectral
from .model import Spectral, check_center, check_kinship, decompose_kinship
from .samples import as_sample_mask

FORMAT = "lmmscan-eigen"
FORMAT_VERSION = 1


def sample_ids_of(source: object, n: int | None = None) -> np.ndarray:
    """Sample IDs of a genotype source: PLINK IIDs (FID:IID when IIDs repeat);
    otherwise the positions "0", "1", ... (arrays carry no IDs)."""
    samples = getattr(source, "samples", None)
    if samples is not None and hasattr(samples, "columns") and "iid" in samples.columns:
        iid = samples["iid"].astype(str).to_numpy()
        if len(set(iid)) == len(iid):
            return iid.astype(str)
        if "fid" in samples.columns:
            ids = (samples["fid"].astype(str) + ":" + samples["iid"].astype(str)).to_numpy()
            if len(set(ids)) == len(ids):
                return ids.astype(str)
        twice = next(i for i, c in Counter(iid.tolist()).items() if c > 1)
        raise InputError(
            f"sample IDs are not unique (IID {twice!r} appears twice, also with its FID): "
            "make the .fam's IDs unique (from Python: give sample_ids=)"
        )
    count = n if n is not None else int(source.n_samples)  # type: ignore[attr-defined]
    return np.arange(count).astype(str)


def _as_ids(ids: object, n: int, what: str) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise InputError(f"{what} must have one ID per sample ({n}), got shape {arr.shape}")
    arr = arr.astype(str)
    if len(set(arr.tolist())) != n:
        raise InputError(f"{what} contains repeated IDs")
    return arr


@dataclass
class Eigendecomposition:
    """K = U diag(d) U' over the samples ``sample_ids`` (rows of U, in order).

    ``d`` (k,) with eigenvalues below 1e-10 already zeroed, ``U`` (n, k);
    k = n for a full decomposition, k < n for a low-rank one (the other
    n - k eigenvalues are 0).  ``meta`` holds free-form strings (how K was
    made), saved with it.
    """

    d: np.ndarray
    U: np.ndarray
    sample_ids: np.ndarray
    meta: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.d = np.ascontiguousarray(self.d, dtype=np.float64)
        self.U = np.asarray(self.U, dtype=np.float64)  # keep LAPACK's order: same bits as fit_null
        if self.d.ndim != 1 or self.U.ndim != 2 or self.U.shape[1] != self.d.shape[0]:
            raise InputError(f"need d (k,) and U (n, k), got {self.d.shape} and {self.U.shape}")
        if self.U.shape[1] > self.U.shape[0]:
            raise InputError("U has more columns than rows")
        self.sample_ids = _as_ids(self.sample_ids, self.U.shape[0], "sample_ids")
        _check_eigenvectors(self.U)

    @property
    def n_samples(self) -> int:
        return int(self.U.shape[0])

    @property
    def low_rank(self) -> bool:
        return self.U.shape[1] < self.U.shape[0]

    @classmethod
    def from_spectral(
        cls, spectral: Spectral | LowRankSpectral, sample_ids: object, meta: dict | None = None
    ) -> Eigendecomposition:
        """From a fitted model's ``null.spectral`` and the IDs of its analysed samples."""
        if not isinstance(spectral, (Spectral, LowRankSpectral)):
            raise InputError(
                f"only kinship eigendecompositions can be saved, not {type(spectral).__name__}"
            )
        return cls(spectral.d, spectral.U, np.asarray(sample_ids), dict(meta or {}))

    def spectral(self) -> Spectral | LowRankSpectral:
        if self.low_rank:
            return LowRankSpectral(self.d, self.U)
        return Spectral(d=self.d, U=self.U)

    def spectral_for(self, sample_ids: object) -> Spectral | LowRankSpectral:
        """The decomposition for exactly these analysed samples, in their order.

        Raises InputError naming the samples that differ when the sets are not
        equal: the kinship was double-centred and decomposed over its own
        samples, so a different set needs a new decomposition.
        """
        want = np.asarray(sample_ids).astype(str)
        if want.ndim != 1:
            raise InputError("sample_ids must be one-dimensional")
        have = self.sample_ids
        if want.shape == have.shape and np.array_equal(want, have):
            return self.spectral()
        pos = {s: i for i, s in enumerate(have.tolist())}
        missing = [s for s in want.tolist() if s not in pos]
        wanted = set(want.tolist())
        extra = [s for s in have.tolist() if s not in wanted]
        if missing or extra or len(wanted) != want.shape[0]:
            parts = [
                f"the eigendecomposition belongs to {have.shape[0]} samples but "
                f"{want.shape[0]} are analysed"
            ]
            if missing:
                parts.append(f"{len(missing)} analysed sample(s) not in it (first: {missing[:3]})")
            if extra:
                parts.append(f"{len(extra)} of its samples not analysed (first: {extra[:3]})")
            if len(wanted) != want.shape[0]:
                parts.append("the analysed sample IDs repeat")
            raise InputError(
                "; ".join(parts) + ". GEMMA-style kinships are centred over the analysed samples: "
                "decompose the kinship again for this phenotype's samples"
            )
        order = np.array([pos[s] for s in want.tolist()])
        U = self.U[order]
        return LowRankSpectral(self.d, U) if self.low_rank else Spectral(d=self.d.copy(), U=U)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write an uncompressed ``.npz`` (exact float64; no pickled objects)."""
        out = save_eigen(path, self)
        assert out is not None
        return out


def eigendecompose(
    kinship: object,
    sample_ids: object = None,
    *,
    samples: np.ndarray | None = None,
    center: bool = True,
    meta: dict | None = None,
    overwrite_kinship: bool = False,
) -> Eigendecomposition:
    """Decompose a kinship as GEMMA does before -lmm: restricted to ``samples``
    (boolean mask or indices: the analysed ones; default all), double-centred
    (``center``), eigenvalues below 1e-10 set to 0.

    ``sample_ids``: one ID per row of ``kinship`` (default "0", "1", ...).
    ``overwrite_kinship``: decompose a float64 ``kinship`` (of exactly the
    samples wanted) in its own memory, which is destroyed, as
    :func:`fit_null`'s option: one n x n copy less.
    """
    check_center(center)
    K = np.asarray(kinship, dtype=np.float64)
    n = K.shape[0] if K.ndim == 2 else 0
    K = check_kinship(K, n)
    ids = _as_ids(np.arange(n).astype(str) if sample_ids is None else sample_ids, n, "sample_ids")
    if samples is not None:
        sel = np.asarray(samples)
        # indices keep their order (the ids follow them); checked as a mask would be
        as_sample_mask(sel, n, "samples")
        idx = np.flatnonzero(sel) if sel.dtype == bool else sel.astype(np.int64)
        if idx.size == 0:
            raise InputError("samples selects no sample")
        K = K[np.ix_(idx, idx)]  # a private copy: decomposed in its own buffer
        ids = ids[idx]
    spec = decompose_kinship(
        K, center=center, overwrite_kinship=overwrite_kinship or samples is not None
    )
    info = {"center": str(bool(center))}
    info.update(meta or {})
    return Eigendecomposition(spec.d, spec.U, ids, info)


def save_eigen(path: str | os.PathLike[str] | BinaryIO, eig: Eigendecomposition) -> Path | None:
    """Save ``eig`` to ``path`` (``.npz``; the suffix is added if missing) or
    to an open binary file.  ``save_eigen(eig, path)`` works too: the order is
    unambiguous (``save_eigen(eig, "K.npz")`` raised a TypeError)."""
    if isinstance(path, Eigendecomposition) and not isinstance(eig, Eigendecomposition):
        path, eig = eig, path
    if not isinstance(eig, Eigendecomposition):
        raise InputError(f"save_eigen needs an Eigendecomposition, got {type(eig).__name__}")
    if hasattr(path, "write"):
        _write_npz(path, eig)  # type: ignore[arg-type]
        return None
    from .output import atomic_path

    path = Path(path)  # type: ignore[arg-type]
    if path.is_dir():
        raise InputError("is a directory: name the .npz file to write", path=str(path))
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:  # whole or not at all
        _write_npz(fh, eig)
    return path


def _write_npz(fh: BinaryIO, eig: Eigendecomposition) -> None:
    meta_keys = np.array(list(eig.meta.keys()), dtype=str)
    meta_vals = np.array([str(v) for v in eig.meta.values()], dtype=str)
    np.savez(
        fh,
        format=np.array(FORMAT),
        version=np.array(FORMAT_VERSION),
        d=eig.d,
        U=eig.U,
        sample_ids=eig.sample_ids.astype(str),
        meta_keys=meta_keys,
        meta_values=meta_vals,
    )


_NOT_EIGEN = "not an lmmscan eigendecomposition (.npz from `lmmscan eigen` or save_eigen)"


def load_eigen(path: str | os.PathLike[str]) -> Eigendecomposition:
    """Read a file written by :func:`save_eigen`; InputError if it is not one."""
    path = Path(path)
    if not path.exists():
        raise InputError("eigendecomposition file not found", path=str(path))
    with contextlib.suppress(OSError), open(path, "rb") as fh:
        if fh.read(4) != b"PK\x03\x04":  # every .npz is a zip
            raise InputError(
                "not an lmmscan eigendecomposition (.npz from `lmmscan eigen` or save_eigen): "
                "cannot read it as an .npz file",
                path=str(path),
            )
    try:
        # opened here, so that a file numpy fails to read is closed too
        with open(path, "rb") as fh:
            z = np.load(fh, allow_pickle=False)
            if not isinstance(z, np.lib.npyio.NpzFile):  # a plain .npy array
                raise InputError(_NOT_EIGEN, path=str(path))
            with z:
                if "format" not in z.files or str(z["format"]) != FORMAT:
                    raise InputError(_NOT_EIGEN, path=str(path))
                version = int(z["version"])
                if version > FORMAT_VERSION:
                    raise InputError(
                        f"written by a newer lmmscan (format {version})", path=str(path)
                    )
                meta = dict(zip(z["meta_keys"].tolist(), z["meta_values"].tolist(), strict=True))
                eig = Eigendecomposition(z["d"], z["U"], z["sample_ids"], meta)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        # a truncated or corrupt file: a bad zip directory or a member's CRC
        if isinstance(exc, InputError):
            if exc.path is not None:
                raise
            # the arrays' own checks (shapes, repeated IDs): name the file
            raise InputError(str(exc), path=str(path)) from None
        raise InputError(f"cannot read the eigendecomposition: {exc}", path=str(path)) from None
    except MemoryError:  # a real lack of memory is said as such
        raise
    except Exception as exc:  # numpy's header parser: tokenize.TokenError, SyntaxError, ...
        raise InputError(
            f"cannot read the eigendecomposition: {type(exc).__name__}: {one_line(exc)}",
            path=str(path),
        ) from None
    if not np.isfinite(eig.d).all():
        raise InputError("its eigenvalues (d) are not all finite", path=str(path))
    if (eig.d < 0).any():  # save_eigen writes them with those below 1e-10 zeroed
        raise InputError(
            f"its eigenvalues (d) include {eig.d.min():.6g}: a kinship's are >= 0",
            path=str(path),
        )
    return eig


def _check_eigenvectors(U: np.ndarray) -> None:
    """Refuse a U that is not finite, or whose columns are not orthonormal
    (U'U = I): a file edited or damaged past its CRC, or an object built by
    hand, would otherwise give other numbers without a word.  U'(U v) = v
    for one random v: two passes over U, and any U'U other than I moves a
    random v (a float32 U is still far inside 1e-4)."""
    for j in range(0, U.shape[1], 1024):  # a small temporary, not one of U's size
        if not np.isfinite(U[:, j : j + 1024]).all():
            raise InputError("the eigenvectors (U) are not all finite")
    v = np.random.default_rng(0).standard_normal(U.shape[1])
    back = U.T @ (U @ v)
    if not np.linalg.norm(back - v) <= 1e-4 * np.linalg.norm(v):
        raise InputError(
            "the eigenvectors (U) are not orthonormal (U'U is not the identity): not an "
            "eigendecomposition as `lmmscan eigen` writes it"
        )

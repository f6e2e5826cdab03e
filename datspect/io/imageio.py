"""Load scans from NIfTI or DICOM with one clear error per problem; write outputs atomically.

Every output goes through :func:`atomic_output`: the writer fills a hidden temporary file in the
target's directory, which is flushed to disk and then renamed over the target.  A job killed
half-way therefore leaves at most a hidden ``.NAME.*.tmp*`` file, never a complete-looking
output that Snakemake or a user would trust.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import zlib
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from datspect.errors import InputError
from datspect.io.dicom import one_line, read_dicom

#: Above this share of the absolute image mass being negative, an image is not an activity
#: image (a difference, z-score or inverted image).  FBP reconstructions have some negative
#: voxels, but only a few per cent of the mass.
MAX_NEGATIVE_FRACTION = 0.25
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".zip")
_NIFTI_READ_ERRORS = (
    OSError,
    EOFError,
    ValueError,
    zlib.error,
    ImageFileError,
    HeaderDataError,
)


def load_scan(
    path: str | Path, *, max_negative_fraction: float = MAX_NEGATIVE_FRACTION
) -> nib.Nifti1Image:
    """Load a 3D scan from NIfTI (.nii, .nii.gz), a DICOM file or a folder of DICOM files.

    Parameters
    ----------
    path : str or Path
        The image as the cohort sheet lists it.
    max_negative_fraction : float
        Largest accepted share of the absolute image mass in negative voxels.

    Returns
    -------
    nibabel.Nifti1Image
        3D float32 image with the source's affine (any orientation and voxel size); a 4D image
        with one volume is squeezed to 3D.

    Raises
    ------
    InputError
        One message naming the file, the problem and the fix: missing or unreadable file, not 3D,
        NaN/Inf voxels, all-zero or mostly negative data, singular or non-finite affine.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(
            f"{path}: image not found; check the 'image' column of the cohort sheet (relative "
            "paths are relative to the working directory)."
        )
    name = path.name.lower()
    if path.is_dir() or (not name.endswith((".nii", ".nii.gz")) and _looks_like_dicom(path)):
        img = read_dicom(path)
        data, affine, codes = np.asarray(img.dataobj, dtype=np.float32), img.affine, (1, 1)
    elif name.endswith((".nii", ".nii.gz")):
        data, affine, codes = _read_nifti(path)
    else:
        raise InputError(
            f"{path}: unsupported image format; list a .nii or .nii.gz file, a DICOM file or a "
            "folder of DICOM files."
        )
    data = _validated_data(data, path, max_negative_fraction)
    _check_affine(affine, path)
    out = nib.Nifti1Image(data, affine)
    out.header.set_xyzt_units("mm")
    # Keep what the affine means (scanner, aligned, MNI, ...); 1 (scanner) when unset.
    out.header.set_sform(affine, code=codes[0])
    out.header.set_qform(affine, code=codes[1])
    return out


def _looks_like_dicom(path: Path) -> bool:
    """DICOM Part 10 files carry 'DICM' after a 128-byte preamble, whatever their name."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError as err:
        raise InputError(
            f"{path}: cannot read the file ({one_line(err)}); check permissions."
        ) from err
    return head[128:132] == b"DICM"


def _read_nifti(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Data (float32), affine and (sform, qform) codes of a NIfTI file."""
    try:
        img = nib.load(path)
        # nib.load reads only the header; reading the data catches truncated or corrupt files.
        data = img.get_fdata(dtype=np.float32)
    except _NIFTI_READ_ERRORS as err:
        hint = " (a .nii.gz must be gzip-compressed)" if path.name.lower().endswith(".gz") else ""
        raise InputError(
            f"{path}: unreadable NIfTI file ({type(err).__name__}: {one_line(err)}); the file is "
            f"probably truncated, corrupt or misnamed{hint}; copy or export it again."
        ) from err
    sform, qform = int(img.header["sform_code"]), int(img.header["qform_code"])
    return (
        data,
        np.asarray(img.affine, dtype=np.float64),
        (sform or qform or 1, qform or sform or 1),
    )


def _validated_data(data: np.ndarray, path: Path, max_negative_fraction: float) -> np.ndarray:
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]  # a 4D (or 5D) file holding a single volume
    if data.ndim > 3:
        raise InputError(
            f"{path}: {data.ndim}D image of shape {data.shape} ({int(np.prod(data.shape[3:]))} "
            "volumes, e.g. a dynamic or gated series); extract the one reconstructed volume "
            "(e.g. fslroi or nibabel) and list that file."
        )
    if data.ndim < 3 or min(data.shape) < 2:
        raise InputError(
            f"{path}: 2D image of shape {data.shape}, but a 3D volume is needed; list the full "
            "reconstructed volume instead of a single slice."
        )
    n_bad = int(np.count_nonzero(~np.isfinite(data)))
    if n_bad:
        raise InputError(
            f"{path}: {n_bad} voxels are NaN or infinite; export the image again, or replace them "
            "with 0 (e.g. numpy.nan_to_num) if they mark the outside of the field of view."
        )
    if not np.any(data):
        raise InputError(
            f"{path}: every voxel is 0 (an empty export or a failed reconstruction); list the "
            "reconstructed scan instead."
        )
    negative = float(-data[data < 0].sum(dtype=np.float64))
    total = float(np.abs(data).sum(dtype=np.float64))
    if negative > max_negative_fraction * total:
        raise InputError(
            f"{path}: {100 * negative / total:.0f} % of the image mass is negative (above "
            f"{100 * max_negative_fraction:.0f} %), so this is not an activity image (difference, "
            "z-score or inverted image?); list the reconstructed counts image."
        )
    return data


def _check_affine(affine: np.ndarray, path: Path) -> None:
    # A voxel of 0.1 mm on every side has det 1e-3; 1e-6 only rejects degenerate matrices.
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-6:
        raise InputError(
            f"{path}: the voxel-to-world affine is singular or not finite ({affine[:3].tolist()}), "
            "so voxel size and orientation are unknown; fix the header's sform/qform (e.g. "
            "nibabel set_sform, fslorient) or export the image again."
        )


def save_nifti(img: nib.spatialimages.SpatialImage, path: str | Path, dtype=np.float32) -> Path:
    """Write ``img`` as NIfTI-1 (``.nii`` or ``.nii.gz``) atomically, creating parent folders.

    Parameters
    ----------
    img : nibabel image
        Image to write; its affine and sform/qform codes are kept.
    path : str or Path
        Target file; the extension selects compression.
    dtype : numpy dtype
        On-disk data type (integers get a scale factor from nibabel).

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    if not path.name.lower().endswith((".nii", ".nii.gz")):
        raise ValueError(f"{path}: save_nifti writes single-file NIfTI; use .nii or .nii.gz")
    out = nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine, header=img.header)
    out.set_data_dtype(dtype)
    if np.issubdtype(np.dtype(dtype), np.floating):
        out.header.set_slope_inter(1.0, 0.0)  # floats need no scaling; drop stale factors
    with atomic_output(path) as tmp:
        nib.save(out, tmp)
    return path


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` only on success.

    The temporary name is hidden and ends with the target's extension (``.nii.gz``,
    ``.tsv``, ``.npy``, ``.png``), so writers that infer the format from it (nibabel, pandas
    ``to_csv``, ``np.save``, matplotlib ``savefig``) behave as for the target.  On success the file
    is fsynced and renamed over ``path`` (``os.replace`` is atomic within a file system); on error
    it is removed and ``path`` is left as it was.  Hidden temporary files of an earlier, killed
    writer of the same target are removed first.

    Parameters
    ----------
    path : str or Path
        The final output file; missing parent folders are created.

    Yields
    ------
    Path
        Where the caller writes.
    """
    # Own code: atomicwrites, the usual package, was archived in 2022 and points to os.replace.
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffixes = (
        path.suffixes[-2:] if path.suffix.lower() in _COMPRESSION_SUFFIXES else path.suffixes[-1:]
    )
    ext = "".join(suffixes)
    # Leftovers of a writer of this target that was killed (Snakemake runs one job per output).
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp*"):
        stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp{ext}")
    try:
        yield tmp
        if not tmp.is_file():
            raise FileNotFoundError(f"the writer created no file at {tmp} for {path}")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())  # data on disk before the rename makes it visible
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself; not every platform or file system allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_output`)."""
    path = Path(path)
    with atomic_output(path) as tmp, open(tmp, "xb") as fh:
        fh.write(data)
    return path


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_output`)."""
    return atomic_write_bytes(path, text.encode(encoding))

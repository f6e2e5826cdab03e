"""Load scans from NIfTI or DICOM with one clear error per problem; write outputs atomically.

Every output goes through :func:`atomic_output`: the writer fills a hidden temporary file in the
target's directory, which is flushed to disk and then renamed over the target.  A job killed
half-way therefore leaves at most a hidden ``.NAME.*.tmp*`` file, never a complete-looking
output that Snakemake or a user would trust.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import secrets
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.openers import ImageOpener
from nibabel.orientations import aff2axcodes
from nibabel.spatialimages import HeaderDataError

from datspect import schema
from datspect.errors import InputError
from datspect.io.dicom import check_size, one_line, read_dicom

#: Above this share of the absolute image mass being negative, an image is not an activity
#: image (a difference, z-score or inverted image).  FBP reconstructions have some negative
#: voxels, but only a few per cent of the mass.
MAX_NEGATIVE_FRACTION = 0.25
#: Most voxels a user's image may declare: the default of config ``images.max_voxels``.
MAX_VOXELS: int = schema.defaults("images")["max_voxels"]
#: Registration smooths the scan, which ITK refuses below 4 voxels along an axis.
MIN_VOXELS_PER_AXIS = 4
#: NIfTI header and extensions together (dcm2niix and AFNI write a few kB); nibabel reads every
#: extension into memory, so a larger claim is refused before nibabel opens the file.
MAX_HEADER_BYTES = 16 * 2**20
#: sform and qform may differ by rounding (the qform is a float32 quaternion); by more than this
#: share of a voxel at a corner of the volume they describe two different placements.
_FORM_TOL_VOXELS = 0.5
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
    path: str | Path,
    *,
    max_negative_fraction: float = MAX_NEGATIVE_FRACTION,
    max_voxels: int | None = MAX_VOXELS,
) -> nib.Nifti1Image:
    """Load a 3D scan from NIfTI (.nii, .nii.gz), a DICOM file or a folder of DICOM files.

    Parameters
    ----------
    path : str or Path
        The image as the cohort sheet lists it.
    max_negative_fraction : float
        Largest accepted share of the absolute image mass in negative voxels.
    max_voxels : int or None
        Most voxels the header may declare (config ``images.max_voxels``), checked before any
        data is read or decompressed; None (no limit) only for the workflow's own files.

    Returns
    -------
    nibabel.Nifti1Image
        3D float32 image with the source's affine (any orientation and voxel size); a 4D image
        with one volume is squeezed to 3D.

    Raises
    ------
    InputError
        One message naming the file, the problem and the fix: missing or unreadable file, more
        voxels than ``max_voxels``, complex or colour data, an axis of length 0 or below
        :data:`MIN_VOXELS_PER_AXIS`, not 3D, NaN/Inf voxels, all-zero or mostly negative data,
        singular or non-finite affine, sform and qform that disagree.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(
            f"{path}: image not found; check the 'image' column of the cohort sheet (relative "
            "paths are relative to the working directory)."
        )
    name = path.name.lower()
    if path.is_dir() or (not name.endswith((".nii", ".nii.gz")) and _looks_like_dicom(path)):
        img = read_dicom(path, max_voxels=max_voxels)
        data, affine, codes = np.asarray(img.dataobj, dtype=np.float32), img.affine, (1, 1)
    elif name.endswith((".nii", ".nii.gz")):
        data, affine, codes = _read_nifti(path, max_voxels)
    else:
        raise InputError(
            f"{path}: unsupported image format; list a .nii or .nii.gz file, a DICOM file or a "
            "folder of DICOM files."
        )
    data = _validated_data(data, path, max_negative_fraction)
    _check_affine(affine, path)
    if min(data.shape) < MIN_VOXELS_PER_AXIS:
        raise InputError(
            f"{path}: image of shape {data.shape} is too small to register to the template "
            f"(at least {MIN_VOXELS_PER_AXIS} voxels along every axis; a SPECT reconstruction "
            "has 64 or more); list the full reconstructed volume, not a crop or a thumbnail."
        )
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


def _unreadable(path: Path, err: BaseException) -> InputError:
    hint = " (a .nii.gz must be gzip-compressed)" if path.name.lower().endswith(".gz") else ""
    return InputError(
        f"{path}: unreadable NIfTI file ({type(err).__name__}: {one_line(err)}); the file is "
        f"probably truncated, corrupt or misnamed{hint}; copy or export it again."
    )


def nifti_header(path: str | Path, max_voxels: int | None) -> nib.Nifti1Header:
    """The header of a NIfTI-1/2 file, checked before nibabel reads anything else.

    Only the fixed header is decompressed; its declared data size, extensions, data type and
    orientation are checked here, so a hostile or corrupt header costs no memory.

    Raises
    ------
    InputError
        Unreadable header, more voxels than ``max_voxels``, extensions beyond
        :data:`MAX_HEADER_BYTES`, an axis of length 0, complex or colour data, sform and qform
        that disagree.
    """
    path = Path(path)
    try:
        with ImageOpener(path) as fh:
            raw = fh.read(544)  # the larger (NIfTI-2) header and the extension flag
            sizeof = {struct.unpack(e + "i", raw[:4])[0] for e in "<>"} & {348, 540}
            if not sizeof:
                raise HeaderDataError("no NIfTI header (sizeof_hdr is neither 348 nor 540)")
            klass = nib.Nifti1Header if sizeof == {348} else nib.Nifti2Header
            size = klass.template_dtype.itemsize
            header = klass(raw[:size], check=False)
            shape = header.get_data_shape()
            dtype = header.get_data_dtype()
            offset = int(header["vox_offset"])
            oversized = None
            if header["magic"] in (b"n+1", b"n+2") and raw[size : size + 1] not in (b"", b"\0"):
                oversized = _oversized_extension(fh, size + 4, offset, header.endianness)
    except _NIFTI_READ_ERRORS as err:
        raise _unreadable(path, err) from err
    if oversized is not None:
        raise InputError(
            f"{path}: a header extension claims {oversized:,} bytes, beyond the start of the "
            f"data at byte {offset:,}, so nothing was read; the header is corrupt: export the "
            "scan again."
        )
    if offset > MAX_HEADER_BYTES:
        raise InputError(
            f"{path}: the header places the data {offset:,} bytes into the file (above "
            f"{MAX_HEADER_BYTES // 2**20} MiB of header extensions), so nothing was read; the "
            "header is corrupt: export the scan again."
        )
    if dtype.kind == "c" or dtype.names:
        what = "complex-valued" if dtype.kind == "c" else "colour"
        raise InputError(
            f"{path}: {what} data (NIfTI type {header.get_value_label('datatype')}), not a "
            "counts image; export the "
            "reconstructed grey-scale volume (magnitude, real values) as float or integer."
        )
    if dtype.itemsize > 8:
        raise InputError(
            f"{path}: data type {dtype} ({8 * dtype.itemsize}-bit) is not supported; save the "
            "image as float32 (e.g. nibabel set_data_dtype)."
        )
    check_size(path, shape, dtype.itemsize, max_voxels)
    if min(shape, default=0) < 1:
        raise InputError(
            f"{path}: the header declares shape {shape}, with an axis of length 0, so the image "
            "holds no voxels; export the scan again."
        )
    _check_forms(header, path)
    return header


def _oversized_extension(fh, start: int, offset: int, endianness: str) -> int | None:
    """The size claimed by an extension that runs past the data (nibabel reads the size an
    extension claims, however big), else None."""
    position = start
    fh.seek(position)
    while offset - position >= 16:
        raw = fh.read(8)
        if len(raw) < 8:
            return None  # nibabel reports the truncated header
        esize = struct.unpack(endianness + "i", raw[:4])[0]
        if esize > offset - position:
            return esize
        position += max(esize, 16)  # nibabel's own checks refuse the smaller ones
        fh.seek(position)
    return None


def _check_forms(header: nib.Nifti1Header, path: Path) -> None:
    """sform and qform, when both are set, must place the volume alike.

    nibabel trusts the sform, other tools (some viewers, FSL in places) the qform: when they
    disagree, which is left and which is right depends on the tool.
    """
    if not (int(header["sform_code"]) and int(header["qform_code"])):
        return
    sform, qform = header.get_sform(), header.get_qform()
    shape = header.get_data_shape()[:3]
    corners = np.array(list(itertools.product(*[(0, n - 1) for n in shape])))
    corners = np.c_[corners, np.ones(len(corners))].T
    worst = float(np.max(np.linalg.norm((sform @ corners - qform @ corners)[:3], axis=0)))
    voxel = float(np.max(np.linalg.norm(sform[:3, :3], axis=0)))
    if not np.all(np.isfinite([worst, voxel])) or worst > _FORM_TOL_VOXELS * voxel:
        codes = [
            "".join(aff2axcodes(form)) if np.linalg.matrix_rank(form[:3, :3]) == 3 else "singular"
            for form in (sform, qform)
        ]
        flip = np.sign(np.linalg.det(sform[:3, :3])) != np.sign(np.linalg.det(qform[:3, :3]))
        how = "left and right swapped between them" if flip else f"up to {worst:.1f} mm apart"
        raise InputError(
            f"{path}: the sform ({codes[0]}) and the qform ({codes[1]}) disagree ({how}), so "
            "tools that read one or the other swap or shift the hemispheres and the left/right "
            "SBRs; find which is right (e.g. from the DICOM) and copy it into the other: nibabel "
            "img.set_qform(img.get_sform()) or fslorient -copysform2qform (or set_sform / "
            "-copyqform2sform), then list the fixed file."
        )


def _read_nifti(
    path: Path, max_voxels: int | None
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Data (float32), affine and (sform, qform) codes of a NIfTI file."""
    nifti_header(path, max_voxels)
    try:
        img = nib.load(path)
        # nib.load reads only the header; reading the data catches truncated or corrupt files.
        data = img.get_fdata(dtype=np.float32)
    except _NIFTI_READ_ERRORS as err:
        raise _unreadable(path, err) from err
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

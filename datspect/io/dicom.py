"""Read DaTscan DICOM into a NIfTI image whose affine maps voxels to RAS millimetres.

Two layouts occur in practice:

* **NM multi-frame** (PPMI, most gamma cameras): one file of SOP class NM Image Storage whose
  ``NumberOfFrames`` frames are the transverse slices.  Its geometry sits at the top level or in
  ``DetectorInformationSequence``: ``ImagePositionPatient`` of the first frame,
  ``ImageOrientationPatient``, ``PixelSpacing`` and ``SpacingBetweenSlices`` (or
  ``SliceThickness``).  Frame ``k`` lies at ``IPP + k * spacing * (row x column direction)``.
* **One file per slice** (secondary capture, NM/PT exports): every file carries its own
  ``ImagePositionPatient``; slices are sorted by their position along the slice normal.

DICOM patient coordinates are LPS (x to the patient's left, y posterior); NIfTI world
coordinates are RAS, so the first two world axes change sign.  The voxel axes of the result are
(column, row, slice): ``data[i, j, k]`` is pixel (row ``j``, column ``i``) of slice ``k``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from datspect.errors import InputError

NM_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.20"
_DIRECTORY_SOP_CLASS = "1.2.840.10008.1.3.10"  # DICOMDIR
#: Modalities of DICOM objects without pixels that may sit next to a series (reports, key
#: objects, presentation states, registrations); they are skipped when reading a folder.
_NON_IMAGE_MODALITIES = frozenset({"SR", "KO", "PR", "DOC", "REG"})
#: Modalities a reconstructed DaTscan may carry: NM, PT (some SPECT/CT exports), and none or
#: OT (secondary captures).  Anything else (CT, MR, X-ray, ...) is no emission image.
_EMISSION_MODALITIES = frozenset({"NM", "PT", "OT", ""})
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: Direction cosines are stored as decimal strings with ~6 digits; larger differences mean a
#: different orientation.
_ORIENTATION_TOL = 1e-3
#: Slice positions may differ from a regular grid by this fraction of the slice spacing.
_SPACING_REL_TOL = 0.01
_FIX_CONVERT = "or convert the series to NIfTI with dcm2niix and list the .nii.gz instead"


def one_line(err: BaseException) -> str:
    """An exception's message on one line (library messages may span several)."""
    return " ".join(str(err).split())


def check_size(where, shape, bytes_per_voxel: float, max_voxels: int | None) -> None:
    """Refuse an image whose header declares more than ``max_voxels`` voxels (None: no limit).

    Called on the header alone, before the data is read or decompressed: a corrupt or hostile
    header (or a small .nii.gz of zeros) would otherwise allocate gigabytes.
    """
    n = math.prod(int(v) for v in shape)
    if max_voxels is not None and n > max_voxels:
        dims = " x ".join(str(int(v)) for v in shape) + " = " if len(shape) > 1 else ""
        raise InputError(
            f"{where}: the header declares {dims}{n:,} voxels "
            f"({n * bytes_per_voxel / 2**20:,.0f} MiB of data), above the limit of "
            f"{max_voxels:,} voxels (config images.max_voxels), so nothing was read; a SPECT "
            "reconstruction has a few million voxels: export the scan again (the header is "
            "corrupt or this is not a SPECT volume), or raise images.max_voxels if it is real."
        )


@dataclass
class _Slice:
    """One 2D slice in DICOM terms (LPS), before stacking."""

    source: str
    position: np.ndarray  # ImagePositionPatient: centre of the first pixel, mm (LPS)
    row_dir: np.ndarray  # direction of increasing column index (IOP[:3])
    col_dir: np.ndarray  # direction of increasing row index (IOP[3:])
    pixel_spacing: tuple[float, float]  # (between rows, between columns), mm
    pixels: np.ndarray  # (rows, columns), rescaled, float64


def read_dicom(path: str | Path, *, max_voxels: int | None = None) -> nib.Nifti1Image:
    """Read a DICOM file (NM multi-frame) or a folder holding one series.

    Parameters
    ----------
    path : str or Path
        A multi-frame DICOM file, or a folder (searched recursively) with the files of exactly one
        image series: either one multi-frame file or one file per slice.  Non-DICOM files, a
        DICOMDIR and non-image objects (reports, presentation states) are ignored.
    max_voxels : int or None
        Most voxels (Rows x Columns x frames, summed over a folder's slices) the headers may
        declare before any pixel data is decoded; None: no limit.

    Returns
    -------
    nibabel.Nifti1Image
        3D float32 image, rescale slope/intercept applied, affine from voxel (column, row, slice)
        to RAS millimetres.

    Raises
    ------
    InputError
        Unreadable or truncated file, pixel data not matching the header's size, more voxels
        than ``max_voxels``, a single 2D image, several series in one folder, inconsistent
        slices, missing geometry, or a non-reconstructed NM object.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: DICOM file or folder not found; check the path.")
    if path.is_dir():
        return _read_folder(path, max_voxels)
    ds = _read_file(path)
    _require_emission_image(ds, path)
    check_size(path, _dims(ds), _bytes_per_pixel(ds), max_voxels)
    if _n_frames(ds) > 1:
        return _from_multiframe(ds, path)
    raise InputError(
        f"{path}: a single 2D DICOM image ({ds.Rows}x{ds.Columns} pixels), not a volume; list "
        "the folder that holds every slice of the series instead of one file."
    )


def _read_file(path: Path) -> pydicom.Dataset:
    try:
        return pydicom.dcmread(path)
    except InvalidDicomError as err:
        raise InputError(
            f"{path}: not a DICOM file (no 'DICM' header); list a DICOM file or folder, a .nii "
            f"or a .nii.gz instead ({one_line(err)})."
        ) from err
    except Exception as err:  # pydicom raises many types for damaged files
        raise InputError(
            f"{path}: unreadable DICOM file ({type(err).__name__}: {one_line(err)}); the file "
            "is probably truncated or corrupt, copy or export it again."
        ) from err


def _require_emission_image(ds: pydicom.Dataset, path: Path) -> None:
    modality = str(ds.get("Modality", "")).strip().upper()
    if modality not in _EMISSION_MODALITIES:
        raise InputError(
            f"{path}: DICOM image of modality {modality}, not a nuclear-medicine (NM) image; "
            "list the reconstructed DaTscan SPECT series instead (from a SPECT/CT study, the NM "
            f"series, not the {modality} series)."
        )
    if "PixelData" not in ds or "Rows" not in ds or "Columns" not in ds:
        raise InputError(
            f"{path}: DICOM file without pixel data (a truncated file or a non-image object); "
            "copy or export the image again."
        )
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        raise InputError(
            f"{path}: colour DICOM image (SamplesPerPixel={ds.SamplesPerPixel}), probably a "
            "screen capture; export the reconstructed grey-scale volume instead."
        )


def _n_frames(ds: pydicom.Dataset) -> int:
    return int(ds.get("NumberOfFrames", 1) or 1)


def _dims(ds: pydicom.Dataset) -> tuple[int, int, int]:
    return _n_frames(ds), int(ds.Rows), int(ds.Columns)


def _bytes_per_pixel(ds: pydicom.Dataset) -> float:
    return int(ds.get("BitsAllocated", 16) or 16) / 8


def _check_pixel_length(ds: pydicom.Dataset, path: Path) -> None:
    """Uncompressed pixel data must hold exactly the frames the header declares.

    pydicom silently drops surplus bytes, so frames beyond NumberOfFrames would be lost.
    """
    syntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
    if syntax is not None and syntax.is_encapsulated:
        return  # encapsulated: the decoder checks each frame
    frames, rows, columns = _dims(ds)
    bits = int(ds.get("BitsAllocated", 16) or 16)
    frame_bytes = rows * columns * bits / 8
    expected = math.ceil(frames * frame_bytes)
    actual = len(ds.PixelData)
    if actual in (expected, expected + expected % 2):  # padded to an even length
        return
    held = actual / frame_bytes if frame_bytes else 0.0
    cause = (
        "the file is truncated, copy it again"
        if actual < expected
        else "NumberOfFrames is too small, so frames would be dropped: export the series again"
    )
    raise InputError(
        f"{path}: cannot decode the DICOM pixel data: it holds {actual:,} bytes ({held:g} "
        f"frames), but Rows x Columns x NumberOfFrames x BitsAllocated/8 = {rows} x {columns} x "
        f"{frames} x {bits}/8 = {expected:,} bytes; {cause} ({_FIX_CONVERT})."
    )


def _pixels(ds: pydicom.Dataset, path: Path) -> np.ndarray:
    """Pixel array (frames, rows, columns) or (rows, columns), rescaled, float64."""
    _check_pixel_length(ds, path)
    try:
        arr = ds.pixel_array
    except Exception as err:  # truncated data, or a compressed syntax without a decoder
        raise InputError(
            f"{path}: cannot decode the DICOM pixel data ({type(err).__name__}: "
            f"{one_line(err)}); if the file is truncated copy it again, if it is compressed "
            "decompress it first "
            f"(e.g. 'gdcmconv --raw'), {_FIX_CONVERT}."
        ) from err
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    return arr.astype(np.float64) * slope + intercept


def _geometry_source(ds: pydicom.Dataset) -> pydicom.Dataset | None:
    """The dataset that holds ImagePositionPatient/ImageOrientationPatient, if any.

    NM objects keep them in ``DetectorInformationSequence``; other objects at the top level.
    """
    if "ImageOrientationPatient" in ds and "ImagePositionPatient" in ds:
        return ds
    for item in ds.get("DetectorInformationSequence", []):
        if "ImageOrientationPatient" in item and "ImagePositionPatient" in item:
            return item
    return None


def _orientation(values, path: Path) -> tuple[np.ndarray, np.ndarray]:
    iop = np.asarray([float(v) for v in values], dtype=np.float64)
    if iop.shape != (6,) or not np.all(np.isfinite(iop)):
        raise InputError(
            f"{path}: ImageOrientationPatient must hold 6 finite numbers, got {list(values)}; "
            f"fix the header {_FIX_CONVERT}."
        )
    row_dir, col_dir = iop[:3], iop[3:]
    norms = np.linalg.norm(row_dir), np.linalg.norm(col_dir)
    if min(norms) < 0.5 or abs(np.dot(row_dir, col_dir)) > 0.01 * norms[0] * norms[1]:
        raise InputError(
            f"{path}: ImageOrientationPatient {iop.tolist()} is not two perpendicular "
            f"directions; fix the header {_FIX_CONVERT}."
        )
    # Stored cosines are rounded; renormalise so the voxel sizes are exactly the spacings.
    return row_dir / norms[0], col_dir / norms[1]


def _pixel_spacing(ds: pydicom.Dataset, path: Path) -> tuple[float, float]:
    spacing = ds.get("PixelSpacing")
    if spacing is None or len(spacing) != 2 or min(float(v) for v in spacing) <= 0:
        raise InputError(
            f"{path}: PixelSpacing is missing or not positive ({spacing}); the voxel size is "
            f"unknown. Export the series with its geometry {_FIX_CONVERT}."
        )
    return float(spacing[0]), float(spacing[1])


def _from_multiframe(ds: pydicom.Dataset, path: Path) -> nib.Nifti1Image:
    modality = str(ds.get("Modality", ""))
    is_nm = modality == "NM" or str(ds.get("SOPClassUID", "")) == NM_SOP_CLASS
    image_type = [str(v).upper() for v in ds.get("ImageType", [])]
    if is_nm and len(image_type) >= 3 and "RECON" not in image_type[2]:
        raise InputError(
            f"{path}: NM object of type {image_type[2]!r}, not a reconstructed volume (RECON "
            "TOMO); reconstruct the projections on the camera workstation and export the "
            "reconstruction."
        )
    n_frames = _n_frames(ds)
    n_slices = ds.get("NumberOfSlices")
    if n_slices is not None and int(n_slices) != n_frames:
        raise InputError(
            f"{path}: {n_frames} frames but NumberOfSlices={n_slices} (gated or multi-window "
            "reconstruction); export a single static reconstruction."
        )
    pixel_spacing = _pixel_spacing(ds, path)
    step = ds.get("SpacingBetweenSlices") or ds.get("SliceThickness")
    if step is None or float(step) == 0:
        raise InputError(
            f"{path}: neither SpacingBetweenSlices nor SliceThickness is set, so the slice "
            f"distance is unknown; export the series with its geometry {_FIX_CONVERT}."
        )
    step = float(step)  # NM allows a negative spacing: slices then run against the normal
    pixels = _pixels(ds, path)
    geo = _geometry_source(ds)
    if geo is None:
        if not is_nm:
            raise InputError(
                f"{path}: multi-frame {modality or 'unknown-modality'} object without "
                "ImagePositionPatient/ImageOrientationPatient, so its orientation is unknown; "
                f"export the series with its geometry {_FIX_CONVERT}."
            )
        # Reconstructed NM transverse slices without geometry: the camera convention is
        # rows anterior->posterior, columns right->left.  Centre the volume on the origin.
        warnings.warn(
            f"{path}: NM volume without ImagePositionPatient/ImageOrientationPatient; assuming "
            "standard transverse slices centred on the origin.",
            stacklevel=3,
        )
        row_dir, col_dir = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
        half = np.array([ds.Columns - 1, ds.Rows - 1, n_frames - 1]) / 2.0
        first = -half * np.array([pixel_spacing[1], pixel_spacing[0], step])
    else:
        row_dir, col_dir = _orientation(geo.ImageOrientationPatient, path)
        first = _position(geo.ImagePositionPatient, path)
    normal = np.cross(row_dir, col_dir)
    slices = [
        _Slice(
            f"{path} frame {k + 1}",
            first + k * step * normal,
            row_dir,
            col_dir,
            pixel_spacing,
            pixels[k],
        )
        for k in range(n_frames)
    ]
    return _stack(slices, str(path))


def _position(values, path: Path) -> np.ndarray:
    pos = np.asarray([float(v) for v in values], dtype=np.float64)
    if pos.shape != (3,) or not np.all(np.isfinite(pos)):
        raise InputError(
            f"{path}: ImagePositionPatient must hold 3 finite numbers, got {list(values)}; fix "
            f"the header {_FIX_CONVERT}."
        )
    return pos


def _read_folder(folder: Path, max_voxels: int | None) -> nib.Nifti1Image:
    images: list[tuple[Path, pydicom.Dataset]] = []
    n_voxels = 0
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path)
        except InvalidDicomError:
            continue  # README, thumbnails, .DS_Store: not DICOM at all
        except Exception as err:
            raise InputError(
                f"{path}: unreadable DICOM file in {folder} ({type(err).__name__}: "
                f"{one_line(err)}); the file is probably truncated or corrupt, copy or export "
                "the series again."
            ) from err
        sop_class = str(
            ds.get("SOPClassUID", "") or ds.file_meta.get("MediaStorageSOPClassUID", "")
        )
        if (
            sop_class == _DIRECTORY_SOP_CLASS
            or str(ds.get("Modality", "")) in _NON_IMAGE_MODALITIES
        ):
            continue
        _require_emission_image(ds, path)
        # Before the next file is read: the folder's total is what would be decoded.
        n_voxels += math.prod(_dims(ds))
        check_size(f"{folder} (after {path.name})", (n_voxels,), _bytes_per_pixel(ds), max_voxels)
        images.append((path, ds))
    if not images:
        raise InputError(
            f"{folder}: no DICOM images found in this folder (or below); list the folder that "
            "holds the DICOM files of the scan."
        )
    series: dict[str, list[tuple[Path, pydicom.Dataset]]] = {}
    for path, ds in images:
        series.setdefault(str(ds.get("SeriesInstanceUID", "<no SeriesInstanceUID>")), []).append(
            (path, ds)
        )
    if len(series) > 1:
        listing = "; ".join(
            f"series {uid} '{members[0][1].get('SeriesDescription', '')}' ({len(members)} files, "
            f"e.g. {members[0][0]})"
            for uid, members in series.items()
        )
        raise InputError(
            f"{folder}: holds {len(series)} different DICOM series ({listing}); move each series "
            "into its own folder and list the one with the reconstructed DaTscan."
        )
    (members,) = series.values()
    multi = [path for path, ds in members if _n_frames(ds) > 1]
    if multi:
        if len(members) > 1:
            raise InputError(
                f"{folder}: one series holds {len(members)} files of which "
                f"{len(multi)} are multi-frame (e.g. {multi[0]}); keep only the multi-frame "
                "reconstruction in the folder, or list that file directly."
            )
        return _from_multiframe(members[0][1], members[0][0])
    if len(members) == 1:
        path, ds = members[0]
        raise InputError(
            f"{folder}: holds a single 2D DICOM image ({path}, {ds.Rows}x{ds.Columns}), not a "
            "volume; copy every slice of the series into the folder."
        )
    slices = []
    for path, ds in members:
        geo = _geometry_source(ds)
        if geo is None:
            raise InputError(
                f"{path}: slice without ImagePositionPatient/ImageOrientationPatient, so the "
                f"slices of {folder} cannot be ordered; export the series with its geometry "
                f"{_FIX_CONVERT}."
            )
        row_dir, col_dir = _orientation(geo.ImageOrientationPatient, path)
        slices.append(
            _Slice(
                str(path),
                _position(geo.ImagePositionPatient, path),
                row_dir,
                col_dir,
                _pixel_spacing(ds, path),
                _pixels(ds, path),
            )
        )
    return _stack(slices, str(folder))


def _stack(slices: list[_Slice], where: str) -> nib.Nifti1Image:
    """Check that the slices form one regular grid and build the RAS image."""
    ref = slices[0]
    for s in slices[1:]:
        if s.pixels.shape != ref.pixels.shape:
            raise InputError(
                f"{where}: slices differ in size ({ref.source}: {ref.pixels.shape}, {s.source}: "
                f"{s.pixels.shape}); the folder mixes images, keep one series only."
            )
        if not np.allclose(s.pixel_spacing, ref.pixel_spacing, rtol=1e-4, atol=1e-4):
            raise InputError(
                f"{where}: slices differ in PixelSpacing ({ref.source}: {ref.pixel_spacing}, "
                f"{s.source}: {s.pixel_spacing}); keep one series only."
            )
        if not (
            np.allclose(s.row_dir, ref.row_dir, atol=_ORIENTATION_TOL)
            and np.allclose(s.col_dir, ref.col_dir, atol=_ORIENTATION_TOL)
        ):
            raise InputError(
                f"{where}: slices differ in ImageOrientationPatient ({ref.source} vs "
                f"{s.source}); keep one series only."
            )
    normal = np.cross(ref.row_dir, ref.col_dir)
    order = np.argsort([float(np.dot(s.position, normal)) for s in slices], kind="stable")
    slices = [slices[i] for i in order]
    positions = np.array([s.position for s in slices])
    steps = np.diff(positions, axis=0)
    step_len = np.linalg.norm(steps, axis=1)
    for i, length in enumerate(step_len):
        if length < 1e-3:
            raise InputError(
                f"{where}: {slices[i].source} and {slices[i + 1].source} lie at the same "
                f"position {positions[i].tolist()} (duplicate or repeated acquisition); keep "
                "one copy of each slice."
            )
    # A regular grid: every step equals the mean step (a gap or a missing slice breaks this).
    mean_step = (positions[-1] - positions[0]) / (len(slices) - 1)
    tol = _SPACING_REL_TOL * float(np.linalg.norm(mean_step))
    bad = np.flatnonzero(np.linalg.norm(steps - mean_step, axis=1) > tol)
    if bad.size:
        i = int(bad[0])
        raise InputError(
            f"{where}: slice spacing is not uniform (mean {np.linalg.norm(mean_step):.3f} mm, "
            f"{step_len[i]:.3f} mm between {slices[i].source} and {slices[i + 1].source}); a "
            "slice is missing or the folder mixes series, copy the complete series."
        )
    d_row, d_col = ref.pixel_spacing
    lps = np.eye(4)
    lps[:3, 0] = ref.row_dir * d_col  # voxel axis 0: along a row, i.e. column index
    lps[:3, 1] = ref.col_dir * d_row  # voxel axis 1: row index
    lps[:3, 2] = mean_step
    lps[:3, 3] = positions[0]
    affine = LPS_TO_RAS @ lps
    # (rows, cols) per slice -> (cols, rows, slices) so that voxel (i, j, k) = column, row, slice.
    data = np.stack([s.pixels.T for s in slices], axis=2).astype(np.float32)
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm")
    img.header.set_qform(affine, code=1)  # scanner-based coordinates
    img.header.set_sform(affine, code=1)
    return img

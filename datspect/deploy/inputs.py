"""The three input kinds of ``classify``: what a scan is, and what an exported model does with it.

A scan is read and its kind detected from the file alone (:func:`read_input`):

* ``native``: a 3D scan in its own space (NIfTI, DICOM file or folder).  It is registered to the
  export's template, exactly as the workflow's ``normalize`` rule does it.
* ``mni``: a 3D scan already on the MNI 2 mm grid: shape (91, 109, 91) *and* an affine equal to
  the grid's (:data:`datspect.space.anatomy.MNI_AFFINE`) within :data:`GRID_TOLERANCE_MM` in
  every entry (:func:`on_mni_grid`).  Registration is skipped (``--register`` forces it); the
  template-correlation QC still applies.  The shape alone is not enough: a (91, 109, 91) image
  with another affine (e.g. the same grid in RAS order) is a ``native`` scan.
* ``slab``: a published-style 2D slab (the mean of the putamen slices on the MNI grid): a
  109 x 91 greyscale PNG (:func:`datspect.cohorts.slab_folder.read_slab_png`), or a one-slice
  NIfTI as the workflow stores slabs, shape (91, 109, 1) with the affine of
  :func:`datspect.space.slab_grid.slab_affine` for the model's ``slab.n_slices``.  A PNG carries
  no thickness: it is taken to average the model's ``slab.n_slices`` slices (5 for the
  published set).  No registration and no QC (there is no 3D image to check).

What an export does with each kind (:func:`plan`) depends on what it was developed on, which its
manifest records as ``input.kind`` (:func:`model_input`):

* ``volume`` (3D scans, simulated or a sheet): its SBR cutoffs are 3D SBRs.  A 3D scan (native or
  MNI) gets the 3D SBRs and the CNN; a slab gets the CNN only, since the CNN's input is the same
  quantity for both (:func:`datspect.features.slab.scale_slab`), but a slab SBR is another
  measurement than the 3D SBR, so no 3D cutoff calls it.
* ``slab`` (published slabs): its cutoffs are slab SBRs.  A slab gets the slab SBRs and the CNN;
  a 3D scan is normalized (or taken as normalized) and its slab made
  (:func:`datspect.features.slab.make_slab`), which then gets the slab SBRs and the CNN: the
  same quantities the slab cutoffs and CNNs were fitted on.

Every export's CNN takes the slab (the export refuses ``cnn.input: box``); should a model take
the 3D striatal box, a slab has no box, and :func:`check_fits` says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from datspect.errors import InputError
from datspect.io import imageio
from datspect.space import anatomy, slab_grid

#: Scan kinds, as the ``input_kind`` column of ``classification.tsv`` names them.
KINDS = ("native", "mni", "slab")
#: What a model was developed on (the manifest's ``input.kind``).
MODEL_KINDS = ("volume", "slab")
#: Largest difference of any affine entry (mm) from the MNI grid's for a scan to be on it.
GRID_TOLERANCE_MM = 0.01
#: The SBR that each model kind's cutoffs are (the manifest's ``sbr.measurement``).
SBR_MEASUREMENT = {"volume": "3D", "slab": "slab"}
#: One line per scan kind and model kind: what ``classify`` does (manifest and README).
HANDLING = {
    "volume": {
        "native": "registered to the template, QC, 3D SBRs and the CNN on its slab",
        "mni": "registration skipped (--register forces it), QC, 3D SBRs and the CNN",
        "slab": "the CNN only: the SBR cutoffs are 3D SBRs, a slab SBR is another measurement",
    },
    "slab": {
        "native": "registered to the template, QC, then slab SBRs and the CNN on its slab",
        "mni": "registration skipped (--register forces it), QC, slab SBRs and the CNN",
        "slab": "slab SBRs and the CNN (no registration, no QC)",
    },
}


@dataclass
class ScanInput:
    """A scan read by :func:`read_input`: a 3D image (``native``/``mni``) or a 2D slab."""

    path: Path
    kind: str
    image: nib.Nifti1Image | None = None  # 3D kinds
    slab: np.ndarray | None = None  # (109, 91), the slab kind
    source: str = ""  # "png" or "nifti" for a slab


def on_mni_grid(img: nib.Nifti1Image) -> bool:
    """Whether a 3D image lies on the MNI 2 mm grid: its shape and affine (within tolerance)."""
    return tuple(img.shape) == anatomy.MNI_SHAPE and bool(
        np.all(np.abs(np.asarray(img.affine) - anatomy.MNI_AFFINE) <= GRID_TOLERANCE_MM)
    )


def _one_slice_nifti(path: Path, max_voxels: int | None) -> nib.Nifti1Image | None:
    """The NIfTI at ``path`` if it holds one slice (2D, or a third axis of 1), else None (a 3D
    scan, or not a readable NIfTI: :func:`datspect.io.imageio.load_scan` says why)."""
    if not path.name.lower().endswith((".nii", ".nii.gz")) or not path.is_file():
        return None
    imageio.nifti_header(path, max_voxels)  # size, type and orientation before any data
    try:
        img = nib.load(path)
        shape = tuple(img.shape)
    except Exception:  # noqa: BLE001 - load_scan gives the one clear message
        return None
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) == 2 or (len(shape) == 3 and shape[2] == 1):
        return img
    return None


def _slab_from_nifti(img: nib.Nifti1Image, path: Path, n_slices: int) -> np.ndarray:
    expected = slab_grid.slab_affine(n_slices)
    stored = (slab_grid.SLAB_SHAPE[1], slab_grid.SLAB_SHAPE[0], 1)
    shape = tuple(img.shape[:3]) if len(img.shape) >= 3 else (*img.shape, 1)
    if shape != stored:
        raise InputError(
            f"{path}: a one-slice image of shape {shape} is not a slab; a slab NIfTI "
            f"has shape {stored} (x, y, one slice of the MNI 2 mm grid), as the workflow stores "
            "slabs (preprocessed/<cohort>/<id>/original_slab.nii), or give a 109 x 91 PNG"
        )
    if not np.all(np.abs(np.asarray(img.affine) - expected) <= GRID_TOLERANCE_MM):
        rows = "; ".join(" ".join(f"{v:g}" for v in row) for row in np.asarray(img.affine)[:3])
        want = "; ".join(" ".join(f"{v:g}" for v in row) for row in expected[:3])
        raise InputError(
            f"{path}: a one-slice NIfTI with affine [{rows}] is not a slab of this model: its "
            f"slabs average the {n_slices} putamen slices of the MNI 2 mm grid (slab.n_slices), "
            f"affine [{want}] (datspect.space.slab_grid.slab_to_nifti writes it)"
        )
    try:
        pixels = np.asarray(img.dataobj, dtype=np.float64).reshape(stored)
    except Exception as err:  # noqa: BLE001 - truncated or corrupt data
        raise InputError(
            f"{path}: unreadable NIfTI data ({type(err).__name__}); copy or export it again"
        ) from err
    if not np.all(np.isfinite(pixels)) or not pixels.max() > 0:
        raise InputError(
            f"{path}: the slab has non-finite values (NaN/inf) or no positive value; check the "
            "export"
        )
    return slab_grid.as_slab(pixels)


def read_input(path, *, n_slices: int, max_voxels: int | None = imageio.MAX_VOXELS) -> ScanInput:
    """Read a scan and detect its kind (module notes).

    Parameters
    ----------
    path : str or Path
        PNG slab, NIfTI file (3D scan or one-slice slab), DICOM file or DICOM folder.
    n_slices : int
        The model's ``slab.n_slices``: the thickness a one-slice NIfTI must have.
    max_voxels : int or None
        Most voxels the image's header may declare (config ``images.max_voxels``).

    Raises
    ------
    InputError
        One message naming the file: unreadable or invalid image, a PNG that is not a 109 x 91
        greyscale slab, a one-slice image that is not a slab on the MNI grid of ``n_slices``.
    """
    from datspect.cohorts import slab_folder  # PIL: only for PNGs

    path = Path(path)
    if path.name.lower().endswith(".png"):
        if not path.is_file():
            raise InputError(f"{path}: image not found; check the path")
        return ScanInput(path, "slab", slab=slab_folder.read_slab_png(path), source="png")
    one_slice = _one_slice_nifti(path, max_voxels)
    if one_slice is not None:
        pixels = _slab_from_nifti(one_slice, path, n_slices)
        return ScanInput(path, "slab", slab=pixels, source="nifti")
    img = imageio.load_scan(path, max_voxels=max_voxels)
    if on_mni_grid(img):
        # exactly the grid's affine, as the rest of the pipeline checks it
        img = nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32), anatomy.MNI_AFFINE)
        return ScanInput(path, "mni", image=img)
    return ScanInput(path, "native", image=img)


def model_input(manifest: dict) -> str:
    """What an export's models were developed on: ``volume`` or ``slab``.

    Exports before the slab exports recorded nothing: they were all developed on 3D scans.
    """
    kind = manifest.get("input", {}).get("kind", "volume")
    if kind not in MODEL_KINDS:
        raise InputError(
            f"manifest input.kind {kind!r} is not one of {', '.join(MODEL_KINDS)}; re-export the "
            "model with this datspect version"
        )
    return kind


def check_fits(scan: ScanInput, cnn_input: str) -> None:
    """Raise one clear :class:`InputError` when the model's CNN cannot take ``scan``."""
    if cnn_input != "slab" and scan.kind == "slab":
        raise InputError(
            f"{scan.path}: a 2D slab, but this model's CNN takes the 3D striatal box (cnn.input: "
            f"{cnn_input}), which a slab does not hold; give the 3D scan (native, or on the MNI "
            "2 mm grid)"
        )


@dataclass(frozen=True)
class Plan:
    """What ``classify`` does with a scan of one kind under one model (module notes)."""

    register: bool  # estimate the transform to the template (else: already on the grid)
    sbr: str | None  # "3D", "slab", or None (not measured)


def plan(scan_kind: str, model_kind: str, *, register: bool = False) -> Plan:
    """The steps for a scan kind under a model kind; ``register`` forces registration of an
    ``mni`` scan (a ``native`` one is always registered, a slab never: it has no 3D image)."""
    do_register = scan_kind == "native" or (scan_kind == "mni" and register)
    if model_kind == "slab":
        return Plan(register=do_register, sbr="slab")
    return Plan(register=do_register, sbr=None if scan_kind == "slab" else "3D")


def sbr_skipped_note(model_kind: str) -> str:
    """The note of a slab under a model whose cutoffs are 3D SBRs."""
    return (
        f"SBR not measured: this model's cutoffs are {SBR_MEASUREMENT[model_kind]} SBRs and a "
        "slab SBR is another measurement; a model exported from a run on slabs (e.g. "
        "configs/ppmi-slabs.yaml) calls slab SBRs"
    )

"""Jobs that run in the warm worker pool: the per-image steps, and the per-split fits whose
start-up (imports of scikit-learn, torch) would otherwise cost more than their work.

Each function takes plain paths and parameters (what a Snakemake rule has), writes its outputs
atomically and returns a text summary for the job's log.  They run in the warm worker pool
locally and in the job's own process on a cluster (:mod:`datspect.workflow.jobpool`).
"""

from __future__ import annotations

import json
import time

import nibabel as nib
import numpy as np
import pandas as pd
from nibabel.affines import voxel_sizes

from datspect.cohorts import simulate as simulator
from datspect.cohorts import slab_folder
from datspect.features import sbr, slab
from datspect.io import imageio
from datspect.io.tsv import read_tsv, write_tsv
from datspect.preprocess import register
from datspect.preprocess.smooth import smooth_fwhm, smooth_fwhm_2d
from datspect.space import slab_grid
from datspect.space.template import load_template


def _write_json(path, data) -> None:
    imageio.atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def touch(path) -> str:
    """A no-op step that writes an empty file (bench/job_overhead.py measures the pool with it)."""
    imageio.atomic_write_text(path, "")
    return path


def simulate(subject_id, label, cohort, physics, seed, image_out, truth_out) -> str:
    img, truth = simulator.simulate_subject(subject_id, int(label), cohort, physics, int(seed))
    imageio.save_nifti(img, image_out, dtype=img.get_data_dtype())
    _write_json(truth_out, truth)
    return f"{subject_id}: label {label}, pattern {truth['pattern']}, shape {img.shape}"


def ingest(source, out) -> str:
    """Validate a user scan (NIfTI or DICOM) and store it as NIfTI."""
    img = imageio.load_scan(source)
    imageio.save_nifti(img, out)
    zooms = voxel_sizes(img.affine)
    return f"{source}: shape {img.shape}, voxel {np.round(zooms, 2).tolist()} mm"


def template_image(path, fwhm_mm, striatal_sbr, scalp_uptake, out) -> str:
    img = load_template(path, fwhm_mm=fwhm_mm, striatal_sbr=striatal_sbr, scalp_uptake=scalp_uptake)
    imageio.save_nifti(img, out)
    return f"template from {path or 'anatomy'}"


def smooth(image, fwhm_mm, out) -> str:
    img = smooth_fwhm(imageio.load_scan(image), float(fwhm_mm))
    imageio.save_nifti(img, out)
    return f"smoothed with FWHM {fwhm_mm} mm"


def normalize(
    original,
    smoothed,
    template,
    registration,
    min_correlation,
    seed,
    threads,
    out_original,
    out_smoothed,
    out_transform,
    out_qc,
) -> str:
    """Estimate the transform on the original scan; apply it to both images; QC both."""
    tmpl = nib.load(template)
    orig = imageio.load_scan(original)
    native_from_mni = register.estimate_from_config(
        orig, tmpl, registration, seed=seed, threads=threads
    )
    qc = {}
    for setting, source, out in (
        ("original", orig, out_original),
        ("smoothed", imageio.load_scan(smoothed), out_smoothed),
    ):
        mni = register.resample_to_mni(source, native_from_mni)
        imageio.save_nifti(mni, out)
        check = register.normalization_qc(
            mni, tmpl, min_correlation=min_correlation, native_from_mni=native_from_mni
        )
        check["striatum_dice"] = register.striatum_dice(mni)
        qc[setting] = check
    imageio.atomic_write_text(out_transform, _matrix_text(native_from_mni))
    _write_json(out_qc, qc)
    return json.dumps(qc)


def _matrix_text(matrix) -> str:
    header = "# native_from_mni: 4x4 affine, MNI world mm (RAS) -> native scanner mm (RAS)\n"
    return header + "\n".join(" ".join(f"{v:.8g}" for v in row) for row in matrix) + "\n"


def _load_mni(path) -> np.ndarray:
    img = nib.load(path)
    return np.asarray(img.dataobj, dtype=np.float32)


def _load_grid(path) -> np.ndarray:
    """A normalized MNI volume (91, 109, 91), or a stored 2D slab as (109, 91)."""
    arr = _load_mni(path)
    return slab_grid.as_slab(arr) if slab_grid.is_slab(arr) else arr


def prepare_slab(source, fwhm_mm: float, n_slices: int, out_original, out_smoothed) -> str:
    """Store a PNG slab and its in-plane smoothed version (the 2D analogue of the 3D setting).

    The 2D Gaussian of ``fwhm_mm`` acts on the slab's plane only: smoothing the 3D volume
    before averaging the slices would also blur along z, mixing in the slices above and below
    the putamen (lower striatal contrast). That information is not in a published slab.
    """
    pixels = slab_folder.read_slab_png(source)
    smoothed = smooth_fwhm_2d(pixels, float(fwhm_mm), slab_grid.PIXEL_MM)
    imageio.save_nifti(slab_grid.slab_to_nifti(pixels, n_slices), out_original)
    imageio.save_nifti(slab_grid.slab_to_nifti(smoothed, n_slices), out_smoothed)
    return f"{source}: slab max {pixels.max():g}, smoothed with FWHM {fwhm_mm} mm in-plane"


def _sbr_rows(images, cohort, subject_id, measure, out) -> pd.DataFrame:
    """One row per image setting of ``measure(image, name)``'s regional SBRs (volume or slab)."""
    rows = [
        {
            "cohort": cohort,
            "subject_id": subject_id,
            "image_setting": setting,
            **measure(_load_grid(path), path),
        }
        for setting, path in sorted(images.items())
    ]
    table = pd.DataFrame(rows)
    write_tsv(table, out)
    return table


def sbr_aal(images, cohort, subject_id, reference, combine, n_slices, out) -> str:
    """AAL putamen SBR; ``n_slices`` (the slices a slab averages) is used for slabs only."""

    def measure(image, name):
        if image.ndim == 2:
            return sbr.aal_sbr_slab(
                image, n_slices=n_slices, reference=reference, combine=combine, name=name
            )
        return sbr.aal_sbr(image, reference=reference, combine=combine, name=name)

    table = _sbr_rows(images, cohort, subject_id, measure, out)
    return f"putamen SBR {table['putamen'].round(3).tolist()}"


def sbr_hv(
    images,
    cohort,
    subject_id,
    reference,
    combine,
    volume_ml,
    area_mm2,
    n_slices,
    margin_mm,
    exclude_caudate,
    out,
) -> str:
    """Hottest-voxels SBR: ``volume_ml`` for volumes, ``area_mm2`` and ``n_slices`` for slabs."""

    def measure(image, name):
        if image.ndim == 2:
            return sbr.hv_sbr_slab(
                image,
                area_mm2=area_mm2,
                n_slices=n_slices,
                margin_mm=margin_mm,
                reference=reference,
                combine=combine,
                exclude_caudate=exclude_caudate,
                name=name,
            )
        return sbr.hv_sbr(
            image,
            volume_ml=volume_ml,
            margin_mm=margin_mm,
            exclude_caudate=exclude_caudate,
            reference=reference,
            combine=combine,
            name=name,
        )

    table = _sbr_rows(images, cohort, subject_id, measure, out)
    return f"HV putamen SBR {table['hv_putamen'].round(3).tolist()}"


def cnn_input(images, cohort, subject_id, kind, n_slices, box_margin_mm, reference, out) -> str:
    """The CNN inputs of one subject: a 2D slab or a 3D striatal box per image setting."""
    arrays = {}
    for setting, path in sorted(images.items()):
        image = _load_grid(path)
        if image.ndim == 2:  # a slab cohort: scale by the slab's own reference mean
            ref = sbr.slab_reference_mean(image, n_slices=n_slices, reference=reference, name=path)
            arrays[setting] = (image / ref).astype(np.float32)
        else:
            arrays[setting] = slab.cnn_input(
                image,
                kind,
                n_slices=n_slices,
                box_margin_mm=box_margin_mm,
                reference=reference,
                name=path,
            )
    with imageio.atomic_output(out) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
    return f"{kind} inputs {sorted(arrays)} of shape {next(iter(arrays.values())).shape}"


def fit_sbr_cutoff(
    sbr_table, splits, cutoff, predictions, development, independent, method, setting, split
) -> str:
    """Youden cutoff of one SBR method on the training part of one split and setting."""
    from datspect.evaluation import scoring  # scikit-learn: only workers that fit import it

    model, table = scoring.fit_sbr_cutoff(
        read_tsv(sbr_table),
        read_tsv(splits),
        method=method,
        setting=setting,
        split=int(split),
        development=development,
        independent=independent,
    )
    imageio.atomic_write_text(cutoff, json.dumps(model, indent=1) + "\n")
    write_tsv(table, predictions)
    return str(model)


def train_cnn(
    inputs,
    dev_sheet,
    independent_sheets,
    splits,
    weights,
    sidecar,
    history,
    predictions,
    input_kind,
    arch,
    train,
    device,
    seed,
    setting,
    split,
    threads,
    log_path,
) -> str:
    """Train, select and test one CNN (setting, split): checkpoint ``weights`` (with its
    ``sidecar``), per-epoch ``history`` and test ``predictions``; progress goes to ``log_path``
    as it happens."""
    from datspect.cnn import experiment  # torch: only workers that train import it
    from datspect.features.cnn_bundle import load_inputs

    def log(line):
        with open(log_path, "a", encoding="utf-8") as handle:
            handle.write(f"{time.strftime('%H:%M:%S')} {line}\n")

    table, epochs, best = experiment.run(
        dev_sheet=read_tsv(dev_sheet),
        independent_sheets=[read_tsv(s) for s in independent_sheets],
        inputs=load_inputs(inputs),
        splits=read_tsv(splits),
        setting=setting,
        split=int(split),
        input_kind=input_kind,
        arch=arch,
        train_cfg=train,
        seed=seed,
        threads=threads,
        device=device,
        weights_out=weights,
        log=log,
    )
    write_tsv(epochs, history)
    write_tsv(table, predictions)
    return f"selected: {best}"

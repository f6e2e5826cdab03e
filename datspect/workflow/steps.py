"""Jobs that run in the warm worker pool: the per-image steps, and the per-split fits whose
start-up (imports of scikit-learn, torch) would otherwise cost more than their work.

Each function is the step of the ``run:`` rule of the same name: its arguments are named exactly
like the rule's named input, output, params and wildcards (``run_rule`` in rules/common.smk
passes them all; a ``code`` param keys provenance only), plus ``threads`` and ``log`` (the
rule's log file) for the steps that take them.  Each takes plain paths and values, writes its
outputs atomically and returns a text summary for the job's log.  They run in the warm worker
pool locally and in the job's own process on a cluster (:mod:`datspect.workflow.jobpool`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from nibabel.affines import voxel_sizes

from datspect.cohorts import simulate as simulator
from datspect.cohorts import slab_folder
from datspect.evaluation import splits as split_rules
from datspect.features import sbr as sbr_measures
from datspect.features import slab
from datspect.io import imageio
from datspect.io.tsv import read_tsv, write_tsv
from datspect.preprocess import register
from datspect.preprocess.smooth import smooth_fwhm, smooth_fwhm_2d
from datspect.space import slab_grid
from datspect.space.template import load_template


def _write_json(path, data) -> None:
    imageio.atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def simulate_subject(image, truth, label, simulate, physics, seed, cohort, subject) -> str:
    """One subject of a simulated cohort (``simulate``: the cohort's config section)."""
    img, facts = simulator.simulate_subject(subject, int(label), simulate, physics, int(seed))
    imageio.save_nifti(img, image, dtype=img.get_data_dtype())
    _write_json(truth, facts)
    return f"{cohort}/{subject}: label {label}, pattern {facts['pattern']}, shape {img.shape}"


def ingest_scan(source, image, cohort, subject, max_voxels=imageio.MAX_VOXELS) -> str:
    """Validate a user scan (NIfTI or DICOM) and store it as NIfTI."""
    img = imageio.load_scan(source, max_voxels=max_voxels)
    imageio.save_nifti(img, image)
    zooms = np.round(voxel_sizes(img.affine), 2).tolist()
    return f"{cohort}/{subject} from {source}: shape {img.shape}, voxel {zooms} mm"


def template(image, path, fwhm_mm, striatal_sbr, scalp_uptake) -> str:
    img = load_template(path, fwhm_mm=fwhm_mm, striatal_sbr=striatal_sbr, scalp_uptake=scalp_uptake)
    imageio.save_nifti(img, image)
    return f"template from {path or 'anatomy'}"


def smooth(original, smoothed, fwhm_mm, cohort, subject) -> str:
    # The workflow's own copy, checked against images.max_voxels when it was ingested.
    img = smooth_fwhm(imageio.load_scan(original, max_voxels=None), float(fwhm_mm))
    imageio.save_nifti(img, smoothed)
    return f"{cohort}/{subject}: smoothed with FWHM {fwhm_mm} mm"


def normalize(
    original,
    smoothed,
    template,
    original_mni,
    smoothed_mni,
    transform,
    qc,
    registration,
    min_correlation,
    seed,
    cohort,
    subject,
    threads,
) -> str:
    """Estimate the transform on the original scan; apply it to both images; QC it on the
    original (both images' correlations are recorded)."""
    stored = nib.load(template)  # read once: the registration and both QCs use it
    tmpl = nib.Nifti1Image(np.asarray(stored.dataobj, dtype=np.float32), stored.affine)
    orig = imageio.load_scan(original, max_voxels=None)  # checked at ingestion, as in smooth
    native_from_mni = register.estimate_from_config(
        orig, tmpl, registration, seed=seed, threads=threads
    )
    checks = {}
    for setting, source, out in (
        ("original", orig, original_mni),
        ("smoothed", imageio.load_scan(smoothed, max_voxels=None), smoothed_mni),
    ):
        mni = register.resample_to_mni(source, native_from_mni, threads=threads)
        imageio.save_nifti(mni, out)
        check = register.normalization_qc(
            mni, tmpl, min_correlation=min_correlation, native_from_mni=native_from_mni
        )
        check["striatum_dice"] = register.striatum_dice(mni)
        checks[setting] = check
    # One transform, one verdict: compared with the unsmoothed template, a smoothed image
    # correlates less however well it is registered, so it takes the original's flag.
    checks["smoothed"]["flag"] = checks["original"]["flag"]
    imageio.atomic_write_text(transform, _matrix_text(native_from_mni))
    _write_json(qc, checks)
    return f"{cohort}/{subject}: {json.dumps(checks)}"


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


def prepare_slab(source, original, smoothed, fwhm_mm: float, n_slices: int, cohort, subject) -> str:
    """Store a PNG slab and its in-plane smoothed version (the 2D analogue of the 3D setting).

    The 2D Gaussian of ``fwhm_mm`` acts on the slab's plane only: smoothing the 3D volume
    before averaging the slices would also blur along z, mixing in the slices above and below
    the putamen (lower striatal contrast). That information is not in a published slab.
    """
    pixels = slab_folder.read_slab_png(source)
    blurred = smooth_fwhm_2d(pixels, float(fwhm_mm), slab_grid.PIXEL_MM)
    imageio.save_nifti(slab_grid.slab_to_nifti(pixels, n_slices), original)
    imageio.save_nifti(slab_grid.slab_to_nifti(blurred, n_slices), smoothed)
    return (
        f"{cohort}/{subject} from {source}: slab max {pixels.max():g}, smoothed with FWHM "
        f"{fwhm_mm} mm in-plane"
    )


def _sbr_rows(images, cohort, subject, measure, table) -> pd.DataFrame:
    """One row per image setting of ``measure(image, name)``'s regional SBRs (volume or slab)."""
    rows = pd.DataFrame(
        [
            {
                "cohort": cohort,
                "subject_id": subject,
                "image_setting": setting,
                **measure(_load_grid(path), path),
            }
            for setting, path in sorted(images.items())
        ]
    )
    write_tsv(rows, table)
    return rows


def sbr_aal(original, smoothed, table, sbr, n_slices, cohort, subject) -> str:
    """AAL putamen SBR of both images; ``sbr``: :func:`datspect.features.sbr_config.sbr_arguments`,
    ``n_slices`` (the slices a slab averages) is used for slabs only."""

    def measure(image, name):
        if image.ndim == 2:
            return sbr_measures.aal_sbr_slab(image, n_slices=n_slices, **sbr, name=name)
        return sbr_measures.aal_sbr(image, **sbr, name=name)

    images = {"original": original, "smoothed": smoothed}
    rows = _sbr_rows(images, cohort, subject, measure, table)
    return f"{cohort}/{subject}: putamen SBR {rows['putamen'].round(3).tolist()}"


def sbr_hv(original, smoothed, table, sbr, n_slices, cohort, subject) -> str:
    """Hottest-voxels SBR of both images; ``sbr`` as for :func:`sbr_aal` (``volume_ml`` for
    volumes, ``area_mm2`` for slabs)."""

    def measure(image, name):
        if image.ndim == 2:
            return sbr_measures.hv_sbr_slab(image, n_slices=n_slices, **sbr, name=name)
        return sbr_measures.hv_sbr(image, **sbr, name=name)

    images = {"original": original, "smoothed": smoothed}
    rows = _sbr_rows(images, cohort, subject, measure, table)
    return f"{cohort}/{subject}: HV putamen SBR {rows['hv_putamen'].round(3).tolist()}"


def cnn_input(
    original, smoothed, arrays, kind, n_slices, box_margin_mm, reference, cohort, subject
) -> str:
    """The CNN inputs of one subject: a 2D slab or a 3D striatal box per image setting.

    A stored slab (slab cohort) is scaled as a 3D volume's slab is (:func:`slab.scale_slab`, the
    one definition of the 2D input), so models of either kind of cohort score the other's.
    """
    inputs = {}
    for setting, path in (("original", original), ("smoothed", smoothed)):
        image = _load_grid(path)
        if image.ndim == 2:  # a slab cohort
            inputs[setting] = slab.scale_slab(
                image, n_slices=n_slices, reference=reference, name=path
            )
        else:
            inputs[setting] = slab.cnn_input(
                image,
                kind,
                n_slices=n_slices,
                box_margin_mm=box_margin_mm,
                reference=reference,
                name=path,
            )
    with imageio.atomic_output(arrays) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **inputs)
    shape = next(iter(inputs.values())).shape
    return f"{cohort}/{subject}: {kind} inputs {sorted(inputs)} of shape {shape}"


def qc_exclusions(tables, excluded, on_fail) -> str:
    """``results/qc/excluded.tsv`` from the cohorts' normalization QC tables: the scans with a
    flagged image, left out of fitting and scoring unless ``on_fail`` (``qc.on_fail``) is
    ``keep``; with ``stop`` the job fails listing them."""
    frames = {str(t): read_tsv(t) for t in tables}
    qc = pd.concat(frames.values(), ignore_index=True) if frames else pd.DataFrame()
    where = ", ".join(t for t, frame in frames.items() if (frame["flag"] != "ok").any())
    table = split_rules.qc_exclusions(qc, on_fail, where=where)
    write_tsv(table, excluded)
    if table.empty:
        return "no scan failed normalization QC"
    return f"qc.on_fail {on_fail}: {split_rules.listing(table)}"


def fit_sbr_cutoff(
    sbr_table,
    splits,
    excluded,
    cutoff,
    predictions,
    development,
    independent,
    band,
    method,
    setting,
    split,
) -> str:
    """Youden cutoff of one SBR method on the training part of one split and setting, and its
    borderline band on the validation part (``band``: ``evaluation.uncertainty``); scans QC
    ``excluded`` are neither fitted nor scored."""
    from datspect.evaluation import scoring  # scikit-learn: only workers that fit import it

    model, table = scoring.fit_sbr_cutoff(
        split_rules.drop_excluded(read_tsv(sbr_table), read_tsv(excluded)),
        read_tsv(splits),
        method=method,
        setting=setting,
        split=int(split),
        development=development,
        independent=independent,
        band=band,
    )
    imageio.atomic_write_text(cutoff, json.dumps(model, indent=1) + "\n")
    write_tsv(table, predictions)
    return str(model)


def _train_and_score(*, inputs, weights, sidecar, history, scores, log, **run) -> str:
    """One CNN through :func:`datspect.cnn.experiment.run` (``run``: its data and training
    arguments): the checkpoint ``weights`` with its ``sidecar``, the per-epoch ``history`` and
    the uncalibrated ``scores``; progress is appended to the job's ``log`` as it happens."""
    from datspect.cnn import experiment  # torch: only workers that train import it
    from datspect.cnn.checkpoint import sidecar_path
    from datspect.features.cnn_bundle import load_inputs

    if Path(sidecar) != sidecar_path(weights):  # the checkpoint names its sidecar itself
        raise ValueError(f"train_cnn: sidecar {sidecar} must be {sidecar_path(weights)}")

    def progress(line):
        with open(log, "a", encoding="utf-8") as handle:
            handle.write(f"{time.strftime('%H:%M:%S')} {line}\n")

    table, epochs, best = experiment.run(
        inputs=load_inputs(inputs), weights_out=weights, log=progress, **run
    )
    write_tsv(epochs, history)
    write_tsv(table, scores)
    return f"selected: {best}"


def train_cnn(
    inputs,
    dev_sheet,
    independent_sheets,
    splits,
    excluded,
    weights,
    sidecar,
    history,
    scores,
    input_kind,
    arch,
    train,
    device,
    seed,
    mc_dropout_samples,
    setting,
    split,
    threads,
    log,
) -> str:
    """Train, select and test one CNN (setting, split): checkpoint ``weights`` with its
    ``sidecar``, per-epoch ``history`` and the uncalibrated ``scores`` (single pass and
    ``mc_dropout_samples`` MC-dropout passes) of the validation and test parts (and independent
    cohorts); scans QC ``excluded`` are neither trained on nor scored; progress is appended to
    the job's ``log`` as it happens."""
    left_out = read_tsv(excluded)
    return _train_and_score(
        inputs=inputs,
        weights=weights,
        sidecar=sidecar,
        history=history,
        scores=scores,
        log=log,
        dev_sheet=split_rules.drop_excluded(read_tsv(dev_sheet), left_out),
        independent_sheets=[
            split_rules.drop_excluded(read_tsv(s), left_out) for s in independent_sheets
        ],
        splits=read_tsv(splits),
        setting=setting,
        split=int(split),
        input_kind=input_kind,
        arch=arch,
        train_cfg=train,
        seed=seed,
        mc_dropout_samples=int(mc_dropout_samples),
        threads=threads,
        device=device,
    )


def train_camera_cnn(
    inputs,
    sheets,
    splits,
    excluded,
    weights,
    sidecar,
    history,
    scores,
    training_cameras,
    training_subjects,
    subset_seed,
    input_kind,
    arch,
    train,
    device,
    seed,
    mc_dropout_samples,
    setting,
    training_set,
    split,
    threads,
    log,
) -> str:
    """One CNN of the camera experiment: trained and selected on the ``training_cameras``'
    training and validation parts (their own splits, ``splits``), scored on their test parts and
    on every scan of the other camera cohorts (``sheets``); with a budget of
    ``training_subjects``, on the subsample of the training parts that
    :func:`datspect.evaluation.cameras.limit_training` keeps (``subset_seed``); otherwise as
    :func:`train_cnn`."""
    from datspect.evaluation import cameras

    left_out = read_tsv(excluded)
    by_camera = {}
    for path in sheets:
        sheet = split_rules.drop_excluded(read_tsv(path), left_out)
        by_camera[str(sheet["cohort"].iloc[0])] = sheet
    training, view = cameras.training_data(
        by_camera, read_tsv(splits), training_cameras, int(split), training_subjects, subset_seed
    )
    return _train_and_score(
        inputs=inputs,
        weights=weights,
        sidecar=sidecar,
        history=history,
        scores=scores,
        log=log,
        dev_sheet=training,
        independent_sheets=[s for c, s in by_camera.items() if c not in training_cameras],
        splits=view,
        setting=setting,
        split=int(split),
        input_kind=input_kind,
        arch=arch,
        train_cfg=train,
        seed=seed,
        mc_dropout_samples=int(mc_dropout_samples),
        threads=threads,
        device=device,
    )


def calibrate_cnn(scores, calibration, predictions, method, band, setting, split) -> str:
    """Calibrate one CNN's probabilities on its validation rows (``method``: temperature, platt
    or none) and choose its inconclusive band there (``band``: ``evaluation.uncertainty``): the
    fitted map and band in ``calibration``, the test and independent rows with the calibrated
    ``p_reduced`` and the inconclusive call in ``predictions``."""
    from datspect.evaluation import scoring

    model, table = scoring.calibrate_cnn(read_tsv(scores), method, band)
    _write_json(calibration, model)
    write_tsv(table, predictions)
    fit = model["calibration"]
    before, after = fit["val_raw"], fit["val_calibrated"]
    return (
        f"cnn {setting} split {split}: {method} {json.dumps(fit, sort_keys=True)}; validation "
        f"log loss {before['log_loss']:.4f} -> {after['log_loss']:.4f}, ECE "
        f"{before['ece']:.4f} -> {after['ece']:.4f}; inconclusive band "
        f"{json.dumps(model['inconclusive'], sort_keys=True)}"
    )

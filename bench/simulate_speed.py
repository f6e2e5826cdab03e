"""Speed of the synthetic-cohort simulator, including writing ``.nii.gz`` and the truth JSON.

1. Serial: the median time per subject over ``--n`` subjects of both cohorts (after one warm-up
   subject that builds the per-process caches).
2. Parallel: ``--n-parallel`` subjects with ``--processes`` fresh worker processes (imports and
   caches included), extrapolated linearly to the default 943 subjects.

    .venv/bin/python bench/simulate_speed.py --n 40 --n-parallel 120 --processes 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import nibabel as nib

from datspect import schema
from datspect.cohorts import simulate
from datspect.cohorts.synthetic_subjects import cohort_design

#: The default run: config.yaml, with the schema's defaults filled in.
DEFAULT_RUN = schema.with_defaults(schema.load_yaml(Path(__file__).parents[1] / "config.yaml"))
COHORTS = {name: c["simulate"] for name, c in DEFAULT_RUN["cohorts"].items()}
N_DEFAULT = sum(c["n_normal"] + c["n_reduced"] for c in COHORTS.values())


def _jobs(seed: int) -> list:
    """Both default cohorts interleaved, so any prefix mixes the two cameras."""
    per_cohort = [
        [(sid, lab, name) for sid, lab in cohort_design(name, c["n_normal"], c["n_reduced"], seed)]
        for name, c in COHORTS.items()
    ]
    out = []
    for i in range(max(map(len, per_cohort))):
        out.extend(jobs[i] for jobs in per_cohort if i < len(jobs))
    return out


def _one(job, seed: int, outdir: str) -> tuple[float, float]:
    """Simulate and write one subject; returns (wall, CPU) seconds."""
    subject_id, label, cohort_name = job
    t0, c0 = time.perf_counter(), time.process_time()
    img, truth = simulate.simulate_subject(
        subject_id, label, COHORTS[cohort_name], DEFAULT_RUN["simulation"], seed
    )
    nib.save(img, Path(outdir) / f"{subject_id}.nii.gz")
    (Path(outdir) / f"{subject_id}.json").write_text(json.dumps(truth))
    return time.perf_counter() - t0, time.process_time() - c0


def _worker(args) -> tuple[float, float]:
    return _one(*args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40, help="subjects timed serially")
    ap.add_argument("--n-parallel", type=int, default=120, help="subjects in the parallel run")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--seed", type=int, default=20260101)
    args = ap.parse_args()

    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {platform.platform()}"
    )
    print(f"load average at the start (other work slows the timings): {os.getloadavg()}")
    jobs = _jobs(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        _one(jobs[0], args.seed, tmp)
        print(f"warm-up (caches of the first camera): {time.perf_counter() - t0:.2f} s")
        runs = [_one(job, args.seed, tmp) for job in jobs[1 : args.n + 1]]
    wall_s, cpu_s = (statistics.median(r[i] for r in runs) for i in (0, 1))
    print(f"serial: median {wall_s:.3f} s/subject wall, {cpu_s:.3f} s CPU (n={len(runs)})")

    with tempfile.TemporaryDirectory() as tmp:
        subset = jobs[: args.n_parallel]
        t0 = time.perf_counter()
        # spawn: fresh processes pay imports and cache building, as Snakemake jobs would.
        with mp.get_context("spawn").Pool(args.processes) as pool:
            runs = pool.map(_worker, [(job, args.seed, tmp) for job in subset], chunksize=8)
        wall = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in Path(tmp).glob("*.nii.gz")) / len(subset)
    cpu_par = statistics.median(r[1] for r in runs)
    print(
        f"parallel: {len(subset)} subjects with {args.processes} processes in {wall:.1f} s "
        f"({wall / len(subset):.3f} s/subject wall, median CPU {cpu_par:.3f} s/subject); "
        f"mean .nii.gz {size / 1e6:.2f} MB"
    )
    print(
        f"extrapolated {N_DEFAULT} subjects with {args.processes} processes: "
        f"{wall / len(subset) * N_DEFAULT:.0f} s measured rate; "
        f"{cpu_par * N_DEFAULT / args.processes:.0f} s + start-up on idle cores (CPU-bound)"
    )
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()

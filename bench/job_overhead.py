"""Per-job overhead of Snakemake rules on this machine: why per-image rules use a warm pool.

Runs a throw-away workflow of N trivial per-image jobs three ways with `--cores 2` and reports
the wall time per job (median of several repeats):
  script  - a `script:` job importing numpy, scipy.ndimage, nibabel, SimpleITK (a new Python
            process per job, as a thin Snakemake script would);
  pool    - a `run:` job handing the same trivial step (a `touch` of this bench, not of the
            package) to datspect.workflow.jobpool's warm processes, whose workers import the
            workflow's steps as they do for the per-image rules locally;
  shell   - a `shell:` echo (the floor: Snakemake's own scheduling).
All N jobs are ready at once, as the default run's simulate jobs are: Snakemake's scheduling
rounds scan the ready jobs, so the overhead per job grows with N; ``--subsample`` compares
Snakemake's ``--scheduler-subsample`` (each round considers that many ready jobs at random).
Usage: .venv/bin/python bench/job_overhead.py [--jobs 60] [--repeats 3] [--kinds pool]
       [--subsample 0 50]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SNAKEFILE = """
import datspect.workflow.jobpool as jobpool
N = range({jobs})
rule all:
    input: expand("{{kind}}/{{i}}.txt", kind=["{kind}"], i=N)
rule script:
    output: "script/{{i}}.txt"
    script: "step.py"
rule pool:
    output: "pool/{{i}}.txt"
    run:
        jobpool.run("touch", {{"path": output[0]}}, "", in_pool=workflow.is_main_process,
                    workers=workflow.cores, module="overhead_steps")
rule shell:
    output: "shell/{{i}}.txt"
    shell: "echo x > {{output:q}}"
"""

STEP = """
import numpy, scipy.ndimage, nibabel, SimpleITK
open(snakemake.output[0], "w").write("x")
"""

# The pool's step, importable by its workers: Snakemake puts the Snakefile's folder on sys.path.
POOL_STEP = """
def touch(path):
    open(path, "w").write("x")
"""


def run_once(kind: str, jobs: int, subsample: int | None = None) -> float:
    folder = Path(tempfile.mkdtemp(prefix=f"overhead-{kind}-"))
    try:
        (folder / "Snakefile").write_text(SNAKEFILE.format(jobs=jobs, kind=kind))
        (folder / "step.py").write_text(STEP)
        (folder / "overhead_steps.py").write_text(POOL_STEP)
        cmd = [str(Path(sys.executable).with_name("snakemake")), "--cores", "2", "--quiet"]
        cmd += ["--force-use-threads", "--workflow-profile", "none", "--scheduler", "greedy"]
        if subsample:
            cmd += ["--scheduler-subsample", str(subsample)]
        start = time.perf_counter()
        subprocess.run(cmd, cwd=folder, check=True, capture_output=True)
        return time.perf_counter() - start
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kinds", nargs="+", default=["shell", "pool", "script"])
    parser.add_argument(
        "--subsample",
        type=int,
        nargs="+",
        default=[0],
        help="Snakemake --scheduler-subsample values to compare (0: off)",
    )
    args = parser.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}"
    )
    base = statistics.median(run_once("shell", 1) for _ in range(args.repeats))
    print(f"start-up of an empty workflow: {base:.2f} s")
    for kind in args.kinds:
        for subsample in args.subsample:
            times = [run_once(kind, args.jobs, subsample) for _ in range(args.repeats)]
            per_job = (statistics.median(times) - base) / args.jobs
            print(
                f"{kind:7s} subsample {subsample or 'off':>4} {per_job * 1000:7.0f} ms wall per "
                "job  (runs: " + ", ".join(f"{t:.1f}" for t in times) + " s)"
            )


if __name__ == "__main__":
    main()

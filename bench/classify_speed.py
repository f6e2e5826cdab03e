"""Speed of the ``classify`` command per scan after start-up (target: under 10 s).

Simulates ``--n`` scans (both cameras, normal and reduced), then in this one process: times the
start-up (imports and loading the export, with every hash check), then classifies every scan
``--repeats`` times and reports the median per scan of the computation (load, registration, QC,
SBR, CNN ensemble, saliency) and of the report page, wall and CPU.  Needs an export with the
default CNN architecture, e.g. from ``bench/classify_model.yaml`` (see there):

    .venv/bin/python bench/classify_speed.py --model DIR/results/model --n 6 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _scans(folder: Path, n: int, seed: int) -> list[Path]:
    """``n`` scans alternating cohorts (cameras) and labels."""
    from datspect import schema
    from datspect.cohorts import simulate
    from datspect.io import imageio

    # The default run's cohorts and physics: config.yaml, with the schema's defaults filled in.
    run = schema.with_defaults(schema.load_yaml(Path(__file__).parents[1] / "config.yaml"))
    paths = []
    for i in range(n):
        name = ("ppmi", "clinical")[i % 2]
        cohort = run["cohorts"][name]["simulate"]
        img, _ = simulate.simulate_subject(
            f"bench-{i}", (i // 2) % 2, cohort, run["simulation"], seed
        )
        paths.append(imageio.save_nifti(img, folder / f"bench {i}.nii.gz"))
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, type=Path, help="an export folder")
    ap.add_argument("--n", type=int, default=6, help="scans")
    ap.add_argument("--repeats", type=int, default=3, help="runs per scan")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=20260101)
    args = ap.parse_args()
    t_import = time.perf_counter()  # imported here, so that the start-up can be timed
    import torch

    from datspect.deploy import classify, export
    from datspect.figures.slab import classification_page

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = export.load_model(args.model)
    loaded = time.perf_counter()
    print(
        f"machine: {_cpu_name()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"torch {torch.__version__}, {args.threads} thread(s)"
    )
    print(f"load average at the start (other work slows the timings): {os.getloadavg()}")
    arch = model.manifest["cnn"]["arch"]
    print(
        f"model: {len(model.cnns)} CNNs, channels {arch['channels']}, dense {arch['dense_units']}"
    )
    print(
        f"start-up: imports {t0 - t_import:.2f} s, load_model (hash checks, {len(model.cnns)} "
        f"CNNs, template) {loaded - t0:.2f} s"
    )
    with tempfile.TemporaryDirectory() as tmp:
        scans = _scans(Path(tmp), args.n, args.seed)
        t1 = time.perf_counter()
        classify.classify_scan(scans[0], model, threads=args.threads)  # per-process caches
        print(
            f"first scan (builds the atlas, mask and VOI caches): {time.perf_counter() - t1:.2f} s"
        )
        compute, page, cpu = [], [], []
        for _ in range(args.repeats):
            for scan in scans:
                w0, c0 = time.perf_counter(), time.process_time()
                result = classify.classify_scan(scan, model, threads=args.threads)
                w1 = time.perf_counter()
                classification_page(result, model, Path(tmp) / "page.png", title="x")
                compute.append(w1 - w0)
                page.append(time.perf_counter() - w1)
                cpu.append(time.process_time() - c0)
    total = [a + b for a, b in zip(compute, page, strict=True)]
    print(
        f"per scan, median of {len(total)} ({args.n} scans x {args.repeats}): "
        f"{statistics.median(total):.2f} s wall (computation {statistics.median(compute):.2f} s, "
        f"report page {statistics.median(page):.2f} s), {statistics.median(cpu):.2f} s CPU; "
        f"max {max(total):.2f} s wall"
    )
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()

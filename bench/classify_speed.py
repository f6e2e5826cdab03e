"""Speed of the ``classify`` command per scan after start-up, per input kind.

Targets: a native 3D scan under 10 s, a 3D scan already on the MNI grid under 1.5 s, a slab
under 1 s.  Simulates ``--n`` scans (both cameras, normal and reduced) and makes each input kind
of every one: the native scan, the scan resampled onto the MNI 2 mm grid with its true pose
(``mni``: registration skipped), and its slab as an 8-bit PNG as published (``slab``).  Then in
this one process: times the start-up (imports and loading the export, with every hash check),
then classifies every scan of each kind ``--repeats`` times and reports per kind the median per
scan of the computation (load, registration, QC, SBR, CNN ensemble, saliency) and of the report
page, wall and CPU.  Under a model exported from 3D scans a slab gets no SBR; the slab SBRs a
slab-trained export adds are timed on their own and reported beside it.  Needs an export with
the default CNN architecture, e.g. from ``bench/classify_model.yaml`` (see there):

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


def _scans(folder: Path, n: int, seed: int) -> dict[str, list[Path]]:
    """``n`` scans alternating cohorts (cameras) and labels, of each input kind."""
    import numpy as np
    from PIL import Image

    from datspect import schema
    from datspect.cohorts import simulate
    from datspect.features.slab import project_to_slab
    from datspect.io import imageio
    from datspect.preprocess import register

    # The default run's cohorts and physics: config.yaml, with the schema's defaults filled in.
    run = schema.with_defaults(schema.load_yaml(Path(__file__).parents[1] / "config.yaml"))
    paths = {kind: [] for kind in KINDS}
    for i in range(n):
        name = ("ppmi", "clinical")[i % 2]
        cohort = run["cohorts"][name]["simulate"]
        img, truth = simulate.simulate_subject(
            f"bench-{i}", (i // 2) % 2, cohort, run["simulation"], seed
        )
        paths["native"].append(imageio.save_nifti(img, folder / f"bench {i}.nii.gz"))
        mni = register.resample_to_mni(img, np.asarray(truth["native_from_mni"]))
        paths["mni"].append(imageio.save_nifti(mni, folder / f"bench {i} mni.nii.gz"))
        pixels = project_to_slab(np.asarray(mni.dataobj, dtype=np.float64), 5)
        png = folder / f"bench {i}.png"
        Image.fromarray(np.round(pixels / pixels.max() * 255).astype(np.uint8)).save(png)
        paths["slab"].append(png)
    return paths


KINDS = ("native", "mni", "slab")
TARGET_S = {"native": 10.0, "mni": 1.5, "slab": 1.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, type=Path, help="an export folder")
    ap.add_argument("--n", type=int, default=6, help="scans")
    ap.add_argument("--repeats", type=int, default=3, help="runs per scan")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=20260101)
    ap.add_argument("--kinds", default=",".join(KINDS), help="input kinds, comma-separated")
    args = ap.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    if set(kinds) - set(KINDS):
        ap.error(f"--kinds: {args.kinds!r}; choose from {', '.join(KINDS)}")
    t_import = time.perf_counter()  # imported here, so that the start-up can be timed
    import torch

    from datspect.deploy import classify, export, inputs
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
        first = scans[kinds[0]][0]
        classify.classify_scan(first, model, threads=args.threads)  # per-process caches
        print(
            f"first scan (builds the atlas, mask and VOI caches): {time.perf_counter() - t1:.2f} s"
        )
        for kind in kinds:
            compute, page, cpu, slab_sbr = [], [], [], []
            for _ in range(args.repeats):
                for scan in scans[kind]:
                    w0, c0 = time.perf_counter(), time.process_time()
                    result = classify.classify_scan(scan, model, threads=args.threads)
                    w1 = time.perf_counter()
                    classification_page(result, model, Path(tmp) / "page.png", title="x")
                    compute.append(w1 - w0)
                    page.append(time.perf_counter() - w1)
                    cpu.append(time.process_time() - c0)
                    if kind == "slab" and not result.row.get("sbr_measurement"):
                        s0 = time.perf_counter()  # what a slab-trained export adds
                        pixels = inputs.read_input(scan, n_slices=5).slab
                        classify.measure_slab_sbr(model, pixels, str(scan))
                        slab_sbr.append(time.perf_counter() - s0)
            total = [a + b for a, b in zip(compute, page, strict=True)]
            extra = (
                f"; slab SBRs (not measured under this 3D model) would add "
                f"{statistics.median(slab_sbr):.3f} s"
                if slab_sbr
                else ""
            )
            print(
                f"{kind}: per scan, median of {len(total)} ({args.n} scans x {args.repeats}): "
                f"{statistics.median(total):.2f} s wall (computation "
                f"{statistics.median(compute):.2f} s, report page {statistics.median(page):.2f} "
                f"s), {statistics.median(cpu):.2f} s CPU; max {max(total):.2f} s wall; target "
                f"{TARGET_S[kind]:g} s{extra}"
            )
    print(f"load average at the end: {os.getloadavg()}")


if __name__ == "__main__":
    main()

"""Speed and sanity bench of the CNN on real PPMI slabs (CPU).

Measures, per candidate configuration, the time per epoch and per training, the peak memory
(``resource.getrusage`` of a fresh process per training) and the validation/test accuracy of a
training on a random *image* split of the real PPMI slabs in ``../shared/data/ppmi-slabs``.
The set holds two images per subject (original and smoothed), so these accuracies are optimistic
(a subject's twin image may sit in another part): a sanity check, not a result.

The default run of the workflow trains 30 models (3 settings x 10 splits) on ~387 (original,
smoothed) or ~774 (mixed) images with ~129 / ~258 validation images.  ``--workload`` times
trainings of exactly those sizes and extrapolates to the 30 trainings.

Usage (from the repository root)::

    .venv/bin/python bench/cnn_speed.py                      # compare the candidates
    .venv/bin/python bench/cnn_speed.py --candidates ds2 --workload --jobs 2 --threads 1

The slabs are normalised crudely for the bench only: each image divided by the mean of its
nonzero pixels outside a box around the striata.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA = REPO.parent / "shared" / "data" / "ppmi-slabs"
TARGET_PARAMS = 2_872_642  # the study's CNN
# rows/cols of the striata on the MNI 2 mm grid (AAL: y 51..77, x 27..62) plus 6 voxels
STRIATAL_BOX = (slice(45, 84), slice(21, 69))

#: Candidate architectures (overrides of the schema's cnn.arch defaults); dense units are set to
#: hit ~2.9 M.
CANDIDATES = {
    "full": {"downsample": 1, "channels": [16, 32, 64, 64]},
    "ds2": {"downsample": 2, "channels": [32, 64, 96, 128]},
    "crop": {"crop": [[26, 90], [13, 77]], "downsample": 1, "channels": [16, 32, 64, 128]},
    "crop_ds2": {"crop": [[26, 90], [13, 77]], "downsample": 2, "channels": [32, 64, 96, 128]},
    "crop_ds2_narrow": {
        "crop": [[26, 90], [13, 77]],
        "downsample": 2,
        "channels": [16, 32, 64, 128],
    },
    "crop_ds2_deep": {
        "crop": [[26, 90], [13, 77]],
        "downsample": 2,
        "channels": [16, 32, 64, 128],
        "convs_per_block": 2,
    },
}


def load_slabs(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """All PNG slabs as float32 (N, 109, 91), reference-normalised, and labels (HC 0, PD 1)."""
    from PIL import Image

    xs, ys = [], []
    for label, sub in ((0, "HC"), (1, "PD")):
        for f in sorted((folder / sub).glob("*.png")):
            img = np.asarray(Image.open(f), dtype=np.float32)
            outside = np.ones(img.shape, bool)
            outside[STRIATAL_BOX] = False
            ref = img[outside & (img > 0)].mean()
            xs.append(img / ref)
            ys.append(label)
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def split_indices(y: np.ndarray, fractions, seed: int) -> list[np.ndarray]:
    """Stratified random split of image indices into parts of the given fractions."""
    rng = np.random.default_rng(seed)
    parts = [[] for _ in fractions]
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        bounds = np.round(np.cumsum(fractions) / np.sum(fractions) * len(idx)).astype(int)
        for k, chunk in enumerate(np.split(idx, bounds[:-1])):
            parts[k].extend(chunk.tolist())
    return [np.sort(np.asarray(p)) for p in parts]


def with_target_params(arch: dict, input_shape, target: int = TARGET_PARAMS) -> dict:
    """``arch`` with one dense layer sized so that the model has ~``target`` parameters."""
    from datspect.cnn.model import build_model, count_parameters

    probe = dict(arch, dense_units=[1])
    n1 = count_parameters(build_model(probe, input_shape))
    n2 = count_parameters(build_model(dict(arch, dense_units=[2]), input_shape))
    per_unit = n2 - n1
    units = max(1, round((target - (n1 - per_unit)) / per_unit))
    return dict(arch, dense_units=[int(units)])


def step_times(arch: dict, input_shape, threads: int, batch_size: int = 32, repeats: int = 7):
    """Wall and CPU ms per training step (forward, backward, Adam) on random data.

    Returns the minimum wall time and the minimum process CPU time over ``repeats``.  With other
    load on the machine the minimum is the figure to compare candidates by, and with one thread
    the CPU time is nearly immune to that load.
    """
    import torch

    from datspect.cnn.model import build_model

    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)
    model = build_model(arch, input_shape).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    crit = torch.nn.CrossEntropyLoss()
    x = torch.rand(batch_size, 1, *input_shape)
    y = torch.arange(batch_size) % 2
    wall, cpu = [], []
    for i in range(repeats + 2):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(5):
            opt.zero_grad(set_to_none=True)
            crit(model(x), y).backward()
            opt.step()
        if i >= 2:  # warm-up
            wall.append((time.perf_counter() - t0) / 5 * 1e3)
            cpu.append((time.process_time() - c0) / 5 * 1e3)
    return float(np.min(wall)), float(np.min(cpu))


def _run_one(task: dict) -> dict:
    """One training in a fresh process; returns timings, memory and accuracies."""
    import torch

    from datspect.cnn.train import predict, train_model

    x, y, parts = task["x"], task["y"], task["parts"]
    items = [[(x[i], int(y[i])) for i in p] for p in parts]
    lines: list[str] = []
    t0, c0 = time.perf_counter(), time.process_time()
    model, history, best = train_model(
        items[0],
        items[1],
        arch=task["arch"],
        train_cfg=task["train"],
        seed=task["seed"],
        threads=task["threads"],
        device="cpu",
        log=lines.append,
    )
    seconds = time.perf_counter() - t0
    out = {
        "cpu_seconds": time.process_time() - c0,
        "loadavg_end": os.getloadavg()[0],
        "name": task["name"],
        "seed": task["seed"],
        "n_train": len(parts[0]),
        "n_val": len(parts[1]),
        "threads": task["threads"],
        "torch_threads": torch.get_num_threads(),
        "seconds": seconds,
        "epochs_run": best["epochs_run"],
        "best_epoch": best["epoch"],
        "sec_per_epoch": float(np.mean([h["seconds"] for h in history])),
        "val_accuracy": best["val_accuracy"],
        "val_loss": best["val_loss"],
        "n_parameters": best["n_parameters"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if len(parts) > 2:
        p = predict(model, items[2], device="cpu")
        out["test_accuracy"] = float(np.mean((p >= 0.5) == y[parts[2]]))
    return out


def run_tasks(tasks: list[dict], jobs: int, report) -> list[dict]:
    """Run trainings, ``jobs`` at a time, each in its own process (clean peak memory);
    ``report(result)`` is called as each finishes, in task order."""
    ctx = get_context("spawn")
    results = []
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, max_tasks_per_child=1) as ex:
        for r in ex.map(_run_one, tasks):
            report(r)
            results.append(r)
    return results


def box_step_times(threads: int, shape=(24, 40, 48)) -> None:
    """Print step times of the 3D variant for a plausible striatal box (random data)."""
    for name, arch in {
        "box": {"crop": None, "downsample": 1, "channels": [16, 32, 64, 128]},
        "box_ds2": {"crop": None, "downsample": 2, "channels": [16, 32, 64]},
    }.items():
        arch = with_target_params(arch, shape)
        wall, cpu = step_times(arch, shape, threads, repeats=3)
        print(f"  {name:10s} {wall:7.1f} / {cpu:7.1f}  (box {shape}, {arch})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--candidates", default="full,crop,ds2,crop_ds2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=1, help="trainings run at the same time")
    ap.add_argument("--seeds", type=int, default=1, help="trainings per candidate")
    ap.add_argument("--train", default="{}", help="JSON overrides of the training config")
    ap.add_argument("--arch", default="{}", help="JSON overrides applied to every candidate")
    ap.add_argument(
        "--workload",
        action="store_true",
        help="time trainings of the default run's sizes (387/129 and 774/258) instead of the "
        "60/20/20 sanity split, and extrapolate to its 30 trainings",
    )
    ap.add_argument(
        "--steps-only", action="store_true", help="only time training steps (no trainings)"
    )
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    args = ap.parse_args(argv)

    if not args.data.is_dir():
        print(f"SKIP: PPMI slab folder {args.data} not found; the bench needs the real slabs.")
        return 0
    from datspect.cnn.train import resolve_train_cfg

    names = args.candidates.split(",")
    archs = {
        n: with_target_params(dict(CANDIDATES[n], **json.loads(args.arch)), (109, 91))
        for n in names
    }
    print(f"load average {os.getloadavg()[0]:.2f}; ms per step of 32 (min wall / min CPU):")
    steps = {}
    for n in names:
        steps[n] = step_times(archs[n], (109, 91), args.threads)
        print(f"  {n:10s} {steps[n][0]:7.1f} / {steps[n][1]:7.1f}  ({archs[n]})")
    if args.steps_only:
        box_step_times(args.threads)
        return 0
    x, y = load_slabs(args.data)
    print(f"{len(y)} slabs ({(y == 0).sum()} HC, {(y == 1).sum()} PD), shape {x.shape[1:]}")
    train_cfg = resolve_train_cfg(json.loads(args.train))
    print("train config:", json.dumps(train_cfg))
    if args.workload:
        n = len(y)
        # original/smoothed-sized and mixed-sized trainings (test part unused)
        sizes = {"387": (387 / n, 129 / n), "774": (774 / n, 258 / n)}
    else:
        sizes = {"60/20/20": (0.6, 0.2, 0.2)}
    tasks = []
    for name in names:
        arch = archs[name]
        for size, fr in sizes.items():
            fr = fr if len(fr) == 3 else (*fr, 1 - sum(fr))
            for s in range(args.seeds):
                parts = split_indices(y, fr, seed=100 + s)
                if args.workload:
                    parts = parts[:2]
                tasks.append(
                    {
                        "name": f"{name}@{size}",
                        "arch": arch,
                        "train": train_cfg,
                        "seed": s,
                        "threads": args.threads,
                        "x": x,
                        "y": y,
                        "parts": parts,
                    }
                )
    cols = [
        "name",
        "seed",
        "n_train",
        "n_parameters",
        "epochs_run",
        "best_epoch",
        "sec_per_epoch",
        "seconds",
        "cpu_seconds",
        "val_accuracy",
        "test_accuracy",
        "peak_rss_mb",
        "loadavg_end",
    ]
    print("\t".join(cols), flush=True)

    def report(r):
        cells = [r.get(c, "") for c in cols]
        print("\t".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in cells), flush=True)

    t0 = time.perf_counter()
    results = run_tasks(tasks, args.jobs, report)
    wall = time.perf_counter() - t0
    print(
        f"wall {wall:.1f}s for {len(tasks)} trainings, {args.jobs} at a time, "
        f"{args.threads} thread(s) each"
    )
    if args.workload:
        # 10 splits x (original + smoothed at 387, mixed at 774); jobs run side by side
        for name in names:
            t = {
                size: np.mean([r["seconds"] for r in results if r["name"] == f"{name}@{size}"])
                for size in sizes
            }
            total = 10 * (2 * t["387"] + t["774"]) / args.jobs
            print(
                f"{name}: {t['387']:.1f}s (387 images), {t['774']:.1f}s (774 images) per "
                f"training -> default run of 30 trainings ~ {total / 60:.1f} min "
                f"({args.jobs} job(s) x {args.threads} thread(s))"
            )
    if args.out:
        args.out.write_text(
            json.dumps(
                {"wall": wall, "jobs": args.jobs, "steps_ms": steps, "results": results}, indent=2
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

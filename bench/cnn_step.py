"""Where a CNN training step and the MC-dropout scoring spend their time, against plain PyTorch.

On one thread (as in the workflow), the default architecture, random 109 x 91 slabs:
  - a training step (batch 32: forward, backward, fused Adam) with ``torch.nn.MaxPool2d`` and
    with :class:`datspect.cnn.model.MaxPool2d`;
  - the augmentation of a batch: the whole slab through ``affine_grid`` / ``grid_sample`` and
    only the model's crop (:func:`datspect.cnn.data.augment_batch` with ``window``);
  - 20 MC-dropout passes over 512 slabs: the whole network per pass and
    :func:`datspect.cnn.train.mc_dropout_logits` (the layers before the first dropout once).
Each variant checks that it gives the same values as plain PyTorch; timings are medians of
``--repeats`` rounds.

Usage: .venv/bin/python bench/cnn_step.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from datspect.cnn.data import _affine_theta, _draw_params, augment_batch, resolve_augment  # noqa: E402
from datspect.cnn.model import MaxPool2d, build_model  # noqa: E402
from datspect.cnn.train import _log_odds, mc_dropout_logits  # noqa: E402

SLAB = (109, 91)


def _median_ms(fn, repeats: int, inner: int) -> float:
    fn()
    rounds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        rounds.append((time.perf_counter() - start) / inner)
    return statistics.median(rounds) * 1e3


def _model(plain_pool: bool):
    torch.manual_seed(0)
    model = build_model(None, SLAB)
    if plain_pool:
        for i, layer in enumerate(model.features):
            if isinstance(layer, MaxPool2d):
                model.features[i] = torch.nn.MaxPool2d(layer.kernel_size)
    return model


def training_steps(repeats: int) -> tuple[list, bool]:
    """The two variants take turns, round by round, so that neither is timed on a colder
    machine; each round both draw the same dropout masks."""
    x, y = torch.rand(32, 1, *SLAB), torch.randint(0, 2, (32,))
    variants = {}
    for plain_pool in (True, False):
        model = _model(plain_pool).train()
        variants[plain_pool] = (model, torch.optim.Adam(model.parameters(), fused=True))

    def steps(plain_pool, seed, n=10):
        torch.manual_seed(seed)
        model, opt = variants[plain_pool]
        for _ in range(n):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()

    for plain_pool in variants:
        steps(plain_pool, 0, 3)
    times = {plain_pool: [] for plain_pool in variants}
    for round_ in range(1, repeats + 1):
        for plain_pool in variants:
            start = time.perf_counter()
            steps(plain_pool, round_)
            times[plain_pool].append((time.perf_counter() - start) / 10 * 1e3)
    plain, ours = ([p.detach() for p in variants[v][0].parameters()] for v in (True, False))
    same = all(torch.equal(a, b) for a, b in zip(plain, ours, strict=True))
    rows = [
        ("training step, torch.nn.MaxPool2d", statistics.median(times[True])),
        ("training step, datspect MaxPool2d", statistics.median(times[False])),
    ]
    return rows, same


def augmentation(repeats: int) -> tuple[list, bool]:
    x = torch.rand(32, 1, *SLAB)
    p = _draw_params(32, 2, resolve_augment({}), torch.Generator().manual_seed(2))
    crop = [[26, 90], [13, 77]]

    def whole():
        flipped = torch.where(p["flip"].view(-1, 1, 1, 1), torch.flip(x, dims=[-1]), x)
        theta = _affine_theta(SLAB, p["shift"], p["angle"])
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out = F.grid_sample(
            flipped, grid, mode="bilinear", padding_mode="border", align_corners=False
        )
        return out * p["scale"].float().view(-1, 1, 1, 1)

    def window():
        return augment_batch(x, **p, window=crop)

    inside = (slice(None), slice(None), slice(26, 90), slice(13, 77))
    same = torch.equal(whole()[inside], window()[inside])
    rows = [
        ("augmentation of a batch, whole slab (affine_grid)", _median_ms(whole, repeats, 10)),
        ("augmentation of a batch, the model's crop only", _median_ms(window, repeats, 10)),
    ]
    return rows, same


def mc_dropout(repeats: int) -> tuple[list, bool]:
    model = _model(plain_pool=True).eval()
    fast = _model(plain_pool=False).eval()
    fast.load_state_dict(model.state_dict())
    slabs = list(np.random.default_rng(3).random((512, *SLAB), dtype=np.float32))
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]

    def naive():
        torch.manual_seed(4)
        for m in dropouts:
            m.train()
        x = torch.from_numpy(np.stack(slabs)).unsqueeze(1)
        with torch.no_grad():
            passes = [
                torch.cat([_log_odds(model(x[i : i + 128])) for i in range(0, len(x), 128)])
                for _ in range(20)
            ]
        model.eval()
        return torch.stack(passes, 1).numpy()

    def ours():
        return mc_dropout_logits(fast, slabs, 20, seed=4, device="cpu")

    same = np.array_equal(naive(), ours())
    rows = [
        ("20 MC-dropout passes, 512 slabs, whole network per pass", _median_ms(naive, repeats, 1)),
        ("20 MC-dropout passes, 512 slabs, mc_dropout_logits", _median_ms(ours, repeats, 1)),
    ]
    return rows, same


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    print(f"# CNN step ({platform.machine()}, torch {torch.__version__}, 1 thread)\n")
    print("| what | median ms |\n|---|---|")
    checks = {}
    for name, part in (
        ("training", training_steps),
        ("augmentation", augmentation),
        ("mc_dropout", mc_dropout),
    ):
        rows, checks[name] = part(args.repeats)
        for label, ms in rows:
            print(f"| {label} | {ms:.1f} |")
    print("\nsame values as plain PyTorch: " + ", ".join(f"{k} {v}" for k, v in checks.items()))
    if not all(checks.values()):
        raise SystemExit("a fast path gave other values than plain PyTorch")


if __name__ == "__main__":
    main()

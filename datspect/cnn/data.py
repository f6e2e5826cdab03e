"""Inputs for the CNN: loading slabs/boxes and seeded, DAT-SPECT-valid augmentation.

Axis convention (shared with the slab/box producers): a slab is ``(H, W)`` = (anterior-posterior,
left-right); a box is ``(D, H, W)`` = (inferior-superior, anterior-posterior, left-right).  The
last axis is always left-right, and rotations turn the image in the transversal (H, W) plane,
about the image centre.

Augmentation is valid for DAT-SPECT because none of it changes the label: PD loss is
asymmetric but either side counts (left-right flip), spatial normalisation leaves millimetre
shifts and degree rotations (small shift/rotation), and the reference normalisation leaves a
few percent of global scale (intensity scaling).  All random draws come from one
``torch.Generator`` per (dataset seed, epoch), so an epoch's augmentation is reproducible and
does not depend on the order in which samples are read, nor on any global RNG.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from datspect import schema
from datspect.errors import InputError


def resolve_augment(augment: dict | None) -> dict:
    """Merge ``augment`` over the schema's defaults of ``cnn.train.augment`` and validate it.

    Raises
    ------
    InputError
        On an unknown key or a negative / out-of-range value.
    """
    augment = dict(augment or {})
    out = schema.defaults("cnn", "train", "augment")
    unknown = sorted(set(augment) - set(out))
    if unknown:
        raise InputError(f"cnn.augment: unknown key(s) {unknown}; allowed keys are {sorted(out)}")
    out.update(augment)
    if not isinstance(out["enabled"], bool):
        raise InputError(f"cnn.augment.enabled must be true or false, not {out['enabled']!r}")
    for key in ("flip_lr", "shift_vox", "rotate_deg", "intensity_scale"):
        if not isinstance(out[key], (int, float)) or out[key] < 0:
            raise InputError(f"cnn.augment.{key} must be a number >= 0, not {out[key]!r}")
    if out["flip_lr"] > 1 or out["intensity_scale"] >= 1:
        raise InputError("cnn.augment: flip_lr must be <= 1 and intensity_scale < 1")
    return out


def make_input_spec(kind: str, shape, normalization: str = "reference_mean") -> dict:
    """Describe the model input for the checkpoint sidecar.

    Parameters
    ----------
    kind : {"slab", "box"}
        Input type (config ``cnn.input``).
    shape : sequence of int
        Spatial shape of one input, e.g. ``(109, 91)``.
    normalization : str
        How intensities were scaled before they reached the CNN (the producer's wording).
    """
    shape = [int(s) for s in shape]
    if kind not in ("slab", "box") or len(shape) != (2 if kind == "slab" else 3):
        raise InputError(
            f"cnn.input must be 'slab' with a 2D shape or 'box' with a 3D shape; got {kind!r} "
            f"with shape {shape}"
        )
    axes = ["anterior-posterior", "left-right"]
    if kind == "box":
        axes = ["inferior-superior", *axes]
    return {"type": kind, "shape": shape, "axes": axes, "normalization": normalization}


def _item_array(x, where: str) -> np.ndarray:
    if isinstance(x, (str, Path)):
        path = Path(x)
        if path.suffix != ".npy":
            raise InputError(f"{path}: CNN inputs must be .npy arrays (got {path.suffix!r})")
        try:
            x = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: cannot read the CNN input array ({exc})") from exc
        where = str(path)
    arr = np.asarray(x, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise InputError(f"{where}: CNN input contains NaN or infinite values; fix the slab")
    return arr


def load_items(items, input_shape=None) -> tuple[np.ndarray, np.ndarray | None]:
    """Stack items into arrays.

    Parameters
    ----------
    items : sequence
        ``(array or .npy path, label)`` pairs; for prediction the bare arrays/paths are
        accepted too (labels are then ``None``).
    input_shape : sequence of int, optional
        Required spatial shape; by default that of the first item.

    Returns
    -------
    x : np.ndarray
        float32, shape ``(N, *input_shape)``.
    y : np.ndarray or None
        int64 labels (0 normal, 1 reduced), or ``None`` when no item has a label.

    Raises
    ------
    InputError
        On an empty list, unreadable file, non-finite values, a wrong shape or a label not 0/1.
    """
    if len(items) == 0:
        raise InputError("CNN: empty list of images (check the split / cohort sheet)")
    arrays, labels = [], []
    for i, item in enumerate(items):
        if isinstance(item, (tuple, list)) and len(item) == 2:
            x, label = item
        else:
            x, label = item, None
        where = str(x) if isinstance(x, (str, Path)) else f"item {i}"
        arr = _item_array(x, where)
        if input_shape is None:
            input_shape = arr.shape
        if arr.shape != tuple(input_shape):
            raise InputError(
                f"{where}: CNN input has shape {arr.shape}, expected {tuple(input_shape)}; all "
                "images must come from the same slab/box extraction"
            )
        if label is not None and label not in (0, 1):
            raise InputError(f"{where}: label must be 0 (normal) or 1 (reduced), not {label!r}")
        arrays.append(arr)
        labels.append(label)
    has = [lab is not None for lab in labels]
    if any(has) and not all(has):
        raise InputError("CNN: some items have labels and some do not; give all or none")
    y = np.asarray(labels, dtype=np.int64) if all(has) else None
    return np.stack(arrays), y


def _draw_params(n: int, ndim: int, cfg: dict, gen: torch.Generator) -> dict:
    """All random augmentation parameters of one epoch, drawn at once."""

    def uniform(shape, half_width):
        return (torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1) * half_width

    return {
        "flip": torch.rand(n, generator=gen, dtype=torch.float64) < cfg["flip_lr"],
        "shift": uniform((n, ndim), cfg["shift_vox"]),
        "angle": uniform(n, math.radians(cfg["rotate_deg"])),
        "scale": 1.0 + uniform(n, cfg["intensity_scale"]),
    }


def _affine_theta(shape, shift: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """``affine_grid`` matrices (normalised coordinates), ``(N, ndim, ndim + 1)``, for rotations
    in the (H, W) plane by ``angle`` (N,) and shifts ``shift`` (N, ndim) in voxels; voxel units
    are converted so that non-square images rotate rigidly."""
    ndim = len(shape)
    n = len(angle)
    # affine_grid orders coordinates (W, H[, D]); half-extent in voxels per normalised unit
    half = torch.tensor([s / 2.0 for s in reversed(shape)], dtype=torch.float64)
    lin = torch.eye(ndim, dtype=torch.float64).repeat(n, 1, 1)
    c, s = torch.cos(angle), torch.sin(angle)
    lin[:, 0, 0], lin[:, 0, 1], lin[:, 1, 0], lin[:, 1, 1] = c, -s, s, c
    lin = lin * half.reciprocal()[None, :, None] * half[None, None, :]
    trans = torch.flip(shift, dims=[1]) / half
    return torch.cat([lin, trans[:, :, None]], dim=2).to(torch.float32)


def augment_batch(x: torch.Tensor, flip, shift, angle, scale) -> torch.Tensor:
    """Apply per-sample augmentation draws to a batch ``x`` of shape ``(N, 1, *spatial)``.

    ``flip`` (N,) bool, ``shift`` (N, ndim) voxels, ``angle`` (N,) radians, ``scale`` (N,).
    Done batch-wise: resampling one image at a time costs ~0.7 ms on this CPU, about as much
    as that image's share of a training step, against <0.1 ms per image for a batch.
    """
    x = torch.where(flip.view(-1, *[1] * (x.ndim - 1)), torch.flip(x, dims=[-1]), x)
    if bool((angle != 0).any()) or bool((shift != 0).any()):
        theta = _affine_theta(x.shape[2:], shift, angle)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        # border padding: slabs are not zero at their edges
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return x * scale.to(x.dtype).view(-1, *[1] * (x.ndim - 1))


class ImageDataset(Dataset):
    """Slabs or boxes with labels, augmented per (seed, epoch) when ``augment`` is enabled.

    Parameters
    ----------
    x : np.ndarray
        float32 images, ``(N, *spatial)``.
    y : np.ndarray
        int64 labels, ``(N,)``.
    augment : dict or None
        Augmentation config (keys of ``cnn.train.augment``, over its defaults); None or
        ``enabled: false`` = none.
    seed : int
        Seed of this dataset's augmentation stream.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, augment: dict | None = None, seed: int = 0):
        self.x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).unsqueeze(1)
        self.y = torch.from_numpy(np.asarray(y, dtype=np.int64))
        self.augment = resolve_augment(augment) if augment is not None else None
        self.seed = int(seed)
        self.params = None
        if self.augment is not None and self.augment["enabled"]:
            self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Draw the augmentation of ``epoch`` from a generator seeded by (seed, epoch)."""
        if self.augment is None or not self.augment["enabled"]:
            return
        state = np.random.SeedSequence([self.seed, int(epoch)]).generate_state(1, np.uint64)[0]
        gen = torch.Generator().manual_seed(int(state >> np.uint64(1)))  # fits in int64
        self.params = _draw_params(len(self), self.x.ndim - 2, self.augment, gen)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.__getitems__([i])[0]

    def __getitems__(self, indices):
        # the DataLoader fetches whole batches through this, so augmentation runs batch-wise
        idx = torch.as_tensor(indices, dtype=torch.long)
        x = self.x[idx]
        if self.params is not None:
            p = self.params
            x = augment_batch(x, p["flip"][idx], p["shift"][idx], p["angle"][idx], p["scale"][idx])
        return list(zip(x, self.y[idx], strict=True))

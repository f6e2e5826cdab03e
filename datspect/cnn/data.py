"""Inputs for the CNN: loading slabs/boxes and seeded, DAT-SPECT-valid augmentation.

Axis convention (shared with the slab/box producers): a slab is ``(H, W)`` = (anterior-posterior,
left-right); a box is ``(D, H, W)`` = (inferior-superior, anterior-posterior, left-right).  The
last axis is always left-right, and rotations turn the image in the transversal (H, W) plane,
about the image centre.

Augmentation is valid for DAT-SPECT because none of it changes the label: PD loss is
asymmetric but either side counts (left-right flip), spatial normalisation leaves millimetre
shifts and degree rotations (small shift/rotation), and the reference normalisation leaves a
few percent of global scale (intensity scaling).  The ``augmented`` setting's degradation
(:func:`degrade_batch`: Gaussian blur and additive noise far beyond these) is label-preserving
in another sense: it teaches that resolution and noise do not carry the label.  All random draws
come from ``torch.Generator`` streams seeded per (dataset seed, epoch), so an epoch's
augmentation is reproducible and does not depend on the order in which samples are read, nor on
any global RNG.
"""

from __future__ import annotations

import functools
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


def resolve_degrade(degrade: dict | None) -> dict:
    """Merge ``degrade`` over the schema's defaults of ``cnn.degrade`` and validate it.

    Raises
    ------
    InputError
        On an unknown key or a range that is not ``[low, high]`` with ``0 <= low <= high``.
    """
    degrade = dict(degrade or {})
    out = schema.defaults("cnn", "degrade")
    unknown = sorted(set(degrade) - set(out))
    if unknown:
        raise InputError(f"cnn.degrade: unknown key(s) {unknown}; allowed keys are {sorted(out)}")
    out.update(degrade)
    if not isinstance(out["probability"], (int, float)) or not 0 <= out["probability"] <= 1:
        raise InputError(f"cnn.degrade.probability must be in [0, 1], not {out['probability']!r}")
    for key in ("blur_fwhm_mm", "noise_sd"):
        value = out[key]
        if not (
            isinstance(value, (list, tuple))
            and len(value) == 2
            and all(isinstance(v, (int, float)) for v in value)
            and 0 <= value[0] <= value[1]
        ):
            raise InputError(f"cnn.degrade.{key} must be [low, high] with 0 <= low <= high")
    return out


#: Pixel spacing of every CNN input (the MNI 2 mm grid), for blur widths given in mm.
INPUT_SPACING_MM = 2.0


def _gaussian_kernels(sigma: torch.Tensor, max_sigma: float) -> torch.Tensor:
    """Normalised 1D Gaussian kernels, one row per ``sigma`` (pixels; 0 gives the identity),
    all as wide as ``max_sigma`` needs (3 sigma each side)."""
    radius = max(1, math.ceil(3 * max_sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    safe = sigma.clamp_min(1e-6)[:, None]
    k = torch.exp(-0.5 * (t[None, :] / safe) ** 2)
    return (k / k.sum(dim=1, keepdim=True)).to(torch.float32)


def blur_batch(
    x: torch.Tensor, fwhm_px: torch.Tensor, max_fwhm_px: float | None = None
) -> torch.Tensor:
    """Each image of ``x`` ``(N, 1, *spatial)`` smoothed by a separable Gaussian of its own FWHM
    ``fwhm_px`` (N,) in pixels over every spatial axis; edges replicated (inputs are not zero at
    their borders), so a flat image stays flat.  Kernels are as wide as ``max_fwhm_px`` (default:
    the batch's largest) needs: a fixed width makes an image's blur independent of its batch."""
    n, spatial = x.shape[0], x.shape[2:]
    to_sigma = 1 / (2 * math.sqrt(2 * math.log(2)))
    widest = float(fwhm_px.max()) if max_fwhm_px is None else max_fwhm_px
    kernels = _gaussian_kernels(fwhm_px.to(torch.float64) * to_sigma, widest * to_sigma)
    radius = (kernels.shape[1] - 1) // 2
    conv = {2: F.conv2d, 3: F.conv3d}[len(spatial)]  # a slab or a box
    y = x.reshape(1, n, *spatial)  # one channel per image: a grouped convolution blurs all
    for axis in range(len(spatial)):
        shape = [n, 1] + [1] * len(spatial)
        shape[2 + axis] = kernels.shape[1]
        pad = [0, 0] * len(spatial)
        pad[2 * (len(spatial) - 1 - axis)] = pad[2 * (len(spatial) - 1 - axis) + 1] = radius
        y = conv(F.pad(y, pad, mode="replicate"), kernels.view(shape), groups=n)
    return y.reshape(x.shape)


def degrade_batch(
    x: torch.Tensor, fwhm_px: torch.Tensor, noise: torch.Tensor, max_fwhm_px: float
) -> torch.Tensor:
    """Blur each image of ``x`` by ``fwhm_px`` (N,) (kernels for ``max_fwhm_px``) and add
    ``noise`` (shaped as ``x``)."""
    return blur_batch(x, fwhm_px, max_fwhm_px) + noise


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


def _generator(*key: int) -> torch.Generator:
    state = np.random.SeedSequence([int(k) for k in key]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state >> np.uint64(1)))  # fits in int64


#: Stream key of the degradation, apart from the augmentation's (seed, epoch).
_DEGRADE_STREAM = 1


def _draw_degradation(n: int, cfg: dict, seed: int, epoch: int) -> dict:
    """One epoch's degradation: per image a blur FWHM (pixels), a noise SD (0 for the images
    left as acquired, as for blur) and the seed of its noise field, so that an image's noise does
    not depend on the batch it is read in."""
    gen = _generator(seed, epoch, _DEGRADE_STREAM)

    def uniform(low_high):
        low, high = low_high
        return low + torch.rand(n, generator=gen, dtype=torch.float64) * (high - low)

    chosen = torch.rand(n, generator=gen, dtype=torch.float64) < cfg["probability"]
    fwhm_px = uniform(cfg["blur_fwhm_mm"]) / INPUT_SPACING_MM
    noise_sd = uniform(cfg["noise_sd"])
    return {
        "fwhm_px": torch.where(chosen, fwhm_px, 0.0),
        "noise_sd": torch.where(chosen, noise_sd, 0.0).to(torch.float32),
        "noise_seed": torch.randint(0, 2**62, (n,), generator=gen),
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


@functools.cache
def _base_grid(shape: tuple[int, ...]) -> torch.Tensor:
    """``affine_grid``'s base grid (``align_corners=False``) for a spatial ``shape``: per pixel
    its normalised coordinates, last axis first, and a 1; shape ``(*shape, ndim + 1)``."""
    axes = [torch.linspace(-1, 1, s) * (s - 1) / s for s in shape]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([*reversed(mesh), torch.ones(shape)], dim=-1)


def augment_batch(x: torch.Tensor, flip, shift, angle, scale, window=None) -> torch.Tensor:
    """Apply per-sample augmentation draws to a batch ``x`` of shape ``(N, 1, *spatial)``.

    ``flip`` (N,) bool, ``shift`` (N, ndim) voxels, ``angle`` (N,) radians, ``scale`` (N,).
    ``window``, per spatial axis ``[start, stop)`` (the model's crop), resamples only the pixels
    the model reads and leaves the others 0: the same values there as resampling the whole
    image (its sampling grid, sliced; ``affine_grid``'s arithmetic), in 2.0 instead of 5.0 ms
    per batch of 32 slabs (``bench/cnn_step.py``).
    Done batch-wise: resampling one image at a time costs ~0.7 ms on this CPU, about as much
    as that image's share of a training step, against <0.1 ms per image for a batch.
    """
    x = torch.where(flip.view(-1, *[1] * (x.ndim - 1)), torch.flip(x, dims=[-1]), x)
    scale = scale.to(x.dtype).view(-1, *[1] * (x.ndim - 1))
    if not (bool((angle != 0).any()) or bool((shift != 0).any())):
        return x * scale
    spatial = tuple(x.shape[2:])
    inside = (
        tuple(slice(None) for _ in spatial) if window is None else tuple(slice(*w) for w in window)
    )
    theta = _affine_theta(spatial, shift, angle)
    base = _base_grid(spatial)[inside]
    grid = base.reshape(1, -1, len(spatial) + 1).expand(len(x), -1, -1).bmm(theta.transpose(1, 2))
    # border padding: slabs are not zero at their edges
    sampled = F.grid_sample(
        x,
        grid.view(len(x), *base.shape[:-1], len(spatial)),
        mode="bilinear",
        padding_mode="border",
        align_corners=False,
    )
    if window is None:
        return sampled * scale
    out = x.new_zeros(x.shape)
    out[(slice(None), slice(None), *inside)] = sampled * scale
    return out


class ImageDataset(Dataset):
    """Slabs or boxes with labels, augmented per (seed, epoch) when ``augment`` is enabled and
    degraded first when ``degrade`` is given.

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
    degrade : dict or None
        Degradation config (keys of ``cnn.degrade``, over its defaults); None = none.  Drawn from
        streams of its own, so the augmentation of a dataset is the same with or without it.
    window : list or None
        The pixels the model reads (its crop, per spatial axis ``[start, stop)``): augmentation
        resamples only those (:func:`augment_batch`); None = all.
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        augment: dict | None = None,
        seed: int = 0,
        degrade: dict | None = None,
        window: list | None = None,
    ):
        self.x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).unsqueeze(1)
        self.y = torch.from_numpy(np.asarray(y, dtype=np.int64))
        self.augment = resolve_augment(augment) if augment is not None else None
        self.degrade = resolve_degrade(degrade) if degrade is not None else None
        self.seed = int(seed)
        self.window = window
        self.params = None
        self.degradation = None
        if (self.augment is not None and self.augment["enabled"]) or self.degrade is not None:
            self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Draw the augmentation (and degradation) of ``epoch`` from generators seeded by (seed,
        epoch)."""
        if self.augment is not None and self.augment["enabled"]:
            self.params = _draw_params(
                len(self), self.x.ndim - 2, self.augment, _generator(self.seed, epoch)
            )
        if self.degrade is not None:
            self.degradation = _draw_degradation(len(self), self.degrade, self.seed, epoch)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.__getitems__([i])[0]

    def __getitems__(self, indices):
        # the DataLoader fetches whole batches through this, so augmentation runs batch-wise
        idx = torch.as_tensor(indices, dtype=torch.long)
        x = self.x[idx]
        if self.degradation is not None:
            d = self.degradation
            noise = torch.stack(
                [
                    torch.randn(x.shape[1:], generator=torch.Generator().manual_seed(int(seed)))
                    for seed in d["noise_seed"][idx]
                ]
            )
            sd = d["noise_sd"][idx].view(-1, *[1] * (x.ndim - 1))
            widest = self.degrade["blur_fwhm_mm"][1] / INPUT_SPACING_MM
            x = degrade_batch(x, d["fwhm_px"][idx], noise * sd, widest)
        if self.params is not None:
            p = self.params
            x = augment_batch(
                x,
                p["flip"][idx],
                p["shift"][idx],
                p["angle"][idx],
                p["scale"][idx],
                window=self.window,
            )
        return list(zip(x, self.y[idx], strict=True))

"""The study's deep CNN for DaTscan slabs (2D) and striatal boxes (3D).

The network is a light convolutional trunk followed by a wide dense head: the discriminating
signal (shape and contrast of putamen versus caudate) is low-level and sits in a small region,
so a few narrow convolution blocks see all of it, while the dense layer carries most of the
study's ~2.9 M parameters at almost no compute cost.  That keeps a training on two CPU cores
within seconds per epoch.

Everything that defines the network lives in one plain, JSON-serialisable ``arch`` dict (the
config's ``cnn.arch``; the schema, :mod:`datspect.schema`, holds its defaults and describes each
key), so a checkpoint can rebuild the model from its sidecar.  The optional
crop and downsampling of the input are part of the model, so training, validation and later
prediction always see the same input geometry.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from datspect import schema
from datspect.errors import InputError


def resolve_arch(arch: dict | None) -> dict:
    """Merge ``arch`` over the schema's defaults of ``cnn.arch`` and validate it.

    Parameters
    ----------
    arch : dict or None
        Architecture keys to override (a subset of ``cnn.arch``).

    Returns
    -------
    dict
        A complete, validated copy (JSON-serialisable).

    Raises
    ------
    InputError
        On an unknown key or a value of the wrong kind.
    """
    arch = dict(arch or {})
    out = schema.defaults("cnn", "arch")
    unknown = sorted(set(arch) - set(out))
    if unknown:
        raise InputError(f"cnn.arch: unknown key(s) {unknown}; allowed keys are {sorted(out)}")
    out.update(copy.deepcopy(arch))

    def positive_ints(key, value):
        vals = list(value) if isinstance(value, (list, tuple)) else None
        if not vals or not all(isinstance(v, int) and v > 0 for v in vals):
            raise InputError(f"cnn.arch.{key} must be a non-empty list of positive integers")
        return vals

    out["channels"] = positive_ints("channels", out["channels"])
    if out["dense_units"] != []:
        out["dense_units"] = positive_ints("dense_units", out["dense_units"])
    for key in ("convs_per_block", "kernel_size", "pool", "downsample", "n_classes"):
        if not isinstance(out[key], int) or out[key] < 1:
            raise InputError(f"cnn.arch.{key} must be a positive integer, not {out[key]!r}")
    if out["kernel_size"] % 2 == 0:
        raise InputError(
            f"cnn.arch.kernel_size must be odd (same padding), not {out['kernel_size']}"
        )
    if out["n_classes"] < 2:
        raise InputError("cnn.arch.n_classes must be at least 2")
    for key in ("dropout_conv", "dropout_dense"):
        if not isinstance(out[key], (int, float)) or not 0.0 <= out[key] < 1.0:
            raise InputError(f"cnn.arch.{key} must be a number in [0, 1), not {out[key]!r}")
    if out["crop"] is not None:
        crop = out["crop"]
        ok = isinstance(crop, (list, tuple)) and all(
            isinstance(r, (list, tuple))
            and len(r) == 2
            and all(isinstance(v, int) for v in r)
            and 0 <= r[0] < r[1]
            for r in crop
        )
        if not ok:
            raise InputError(
                "cnn.arch.crop must be null or a list of [start, stop] integer pairs, one per "
                f"spatial axis, with 0 <= start < stop; got {crop!r}"
            )
        out["crop"] = [list(r) for r in crop]
    return out


def _spatial_after(arch: dict, input_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Spatial size of the trunk's output for an input of ``input_shape`` (no channel axis)."""
    shape = list(input_shape)
    if arch["crop"] is not None:
        if len(arch["crop"]) != len(shape):
            raise InputError(
                f"cnn.arch.crop has {len(arch['crop'])} ranges but the input has "
                f"{len(shape)} spatial axes (shape {tuple(input_shape)}); give one range per "
                "axis, or null (e.g. for a box that is already cropped)"
            )
        for i, (start, stop) in enumerate(arch["crop"]):
            if stop > shape[i]:
                raise InputError(
                    f"cnn.arch.crop range {[start, stop]} exceeds axis {i} of the input "
                    f"(size {shape[i]}); shrink the crop or check cnn.input_shape"
                )
        shape = [stop - start for start, stop in arch["crop"]]
    shape = [s // arch["downsample"] for s in shape]
    for _ in arch["channels"]:
        shape = [s // arch["pool"] for s in shape]
    if min(shape) < 1:
        raise InputError(
            f"cnn.arch: input {tuple(input_shape)} is too small for {len(arch['channels'])} "
            f"pooling blocks (pool {arch['pool']}, downsample {arch['downsample']}); use fewer "
            "channels entries, a smaller pool/downsample or a larger crop"
        )
    return tuple(shape)


class InputAdapter(nn.Module):
    """Crop and average-pool the input; both fixed, so they belong to the model."""

    def __init__(self, crop: list | None, downsample: int, ndim: int):
        super().__init__()
        self.slices = (
            None if crop is None else (slice(None), slice(None), *(slice(a, b) for a, b in crop))
        )
        pool = nn.AvgPool2d if ndim == 2 else nn.AvgPool3d
        self.pool = pool(downsample) if downsample > 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.slices is not None:
            x = x[self.slices]
        return self.pool(x)


class _ChannelsLastMaxPool(torch.autograd.Function):
    """Non-overlapping 2D max pooling of a contiguous ``(N, C, H, W)`` tensor, computed in
    channels-last memory; the backward pass routes the gradient through the same indices with
    the ``(N, C, H, W)`` kernel.  PyTorch's CPU forward kernel is 4-20x slower for contiguous
    tensors than for channels-last ones, its channels-last backward slower than the contiguous
    one: this takes the fast half of each, with the same values and gradients (the four pools
    of a training step 5.9 -> 2.2 ms, the step 34.9 -> 32.1 ms; ``bench/cnn_step.py``)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, size: int) -> torch.Tensor:
        out, indices = F.max_pool2d(
            x.contiguous(memory_format=torch.channels_last), size, return_indices=True
        )
        indices = indices.contiguous()
        ctx.save_for_backward(x, indices)
        ctx.size = size
        return out.contiguous()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, indices = ctx.saved_tensors
        k = [ctx.size, ctx.size]
        return (
            torch.ops.aten.max_pool2d_with_indices_backward(
                grad.contiguous(), x, k, k, [0, 0], [1, 1], False, indices
            ),
            None,
        )


class MaxPool2d(nn.MaxPool2d):
    """``nn.MaxPool2d(size)`` (stride = size) through :class:`_ChannelsLastMaxPool` on the CPU."""

    def __init__(self, size: int):
        super().__init__(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            return super().forward(x)
        return _ChannelsLastMaxPool.apply(x, self.kernel_size)


class DatCNN(nn.Module):
    """Convolution blocks + dense head, for 2D slabs or 3D boxes.

    Parameters
    ----------
    arch : dict
        A resolved architecture (:func:`resolve_arch`).
    input_shape : tuple of int
        Spatial shape of one input without channel axis: ``(H, W)`` for a slab or
        ``(D, H, W)`` for a box.  Its length selects 2D or 3D layers.
    """

    def __init__(self, arch: dict, input_shape: tuple[int, ...]):
        super().__init__()
        ndim = len(input_shape)
        if ndim not in (2, 3):
            raise InputError(
                f"cnn input must be 2D (slab) or 3D (box); got shape {tuple(input_shape)}"
            )
        conv, norm, pool, drop = (
            (nn.Conv2d, nn.BatchNorm2d, MaxPool2d, nn.Dropout2d)
            if ndim == 2
            else (nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d, nn.Dropout3d)
        )
        self.input_shape = tuple(int(s) for s in input_shape)
        self.crop = arch["crop"]  # the input pixels the model reads (None: all)
        self.adapter = InputAdapter(arch["crop"], arch["downsample"], ndim)
        layers: list[nn.Module] = []
        c_in = 1
        k = arch["kernel_size"]
        for c_out in arch["channels"]:
            for _ in range(arch["convs_per_block"]):
                # bias is redundant in front of batch norm
                layers += [conv(c_in, c_out, k, padding=k // 2, bias=False), norm(c_out)]
                layers.append(nn.ReLU(inplace=True))
                c_in = c_out
            layers.append(pool(arch["pool"]))
            if arch["dropout_conv"] > 0:
                layers.append(drop(arch["dropout_conv"]))
        self.features = nn.Sequential(*layers)
        n_flat = c_in * math.prod(_spatial_after(arch, self.input_shape))
        head: list[nn.Module] = [nn.Flatten()]
        for units in arch["dense_units"]:
            head += [nn.Linear(n_flat, units), nn.ReLU(inplace=True)]
            if arch["dropout_dense"] > 0:
                head.append(nn.Dropout(arch["dropout_dense"]))
            n_flat = units
        head.append(nn.Linear(n_flat, arch["n_classes"]))
        self.head = nn.Sequential(*head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits, shape ``(N, n_classes)``, for ``x`` of shape ``(N, 1, *input_shape)``."""
        return self.head(self.features(self.adapter(x)))

    def split_at_first_dropout(self) -> tuple[nn.Sequential, nn.Sequential]:
        """``(prefix, rest)``: the layers before the first dropout layer and the others, sharing
        this model's modules; ``rest(prefix(x))`` is ``forward(x)``.  In MC dropout the prefix
        gives the same output in every pass, so it is computed once."""
        layers = [self.adapter, *self.features, *self.head]
        first = next(
            (i for i, m in enumerate(layers) if isinstance(m, nn.modules.dropout._DropoutNd)),
            len(layers),
        )
        return nn.Sequential(*layers[:first]), nn.Sequential(*layers[first:])


def build_model(arch: dict | None, input_shape) -> DatCNN:
    """Build the CNN from a plain architecture dict.

    Parameters
    ----------
    arch : dict or None
        Overrides of the defaults of ``cnn.arch`` (validated by :func:`resolve_arch`).
    input_shape : sequence of int
        Spatial shape of one input: ``(H, W)`` (slab) or ``(D, H, W)`` (box).

    Returns
    -------
    DatCNN
        The untrained model (weights from torch's current random state).
    """
    return DatCNN(resolve_arch(arch), tuple(int(s) for s in input_shape))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

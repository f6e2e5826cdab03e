"""Tests of the CNN package on small synthetic slabs (fast, CPU)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from datspect import schema
from datspect.cnn import (
    ImageDataset,
    build_model,
    count_parameters,
    load_checkpoint,
    make_input_spec,
    predict,
    save_checkpoint,
    train_model,
)
from datspect.cnn.checkpoint import sidecar_path
from datspect.cnn.data import (
    _affine_theta,
    _draw_params,
    augment_batch,
    load_items,
    resolve_augment,
)
from datspect.cnn.model import MaxPool2d
from datspect.errors import InputError

SLAB = (109, 91)
SMALL = {
    "crop": [[40, 88], [21, 69]],
    "downsample": 2,
    "channels": [8, 16],
    "dense_units": [16],
    "dropout_conv": 0.1,
}
FAST = {"epochs": 2, "batch_size": 16, "patience": 5}


def blob_slabs(n: int, seed: int, contrast: float = 1.0):
    """Slabs with two putamen-like blobs; label 1 (reduced) has dimmer blobs.

    ``contrast`` scales the normal-vs-reduced difference (0 = none).
    """
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[: SLAB[0], : SLAB[1]]
    y = np.arange(n) % 2
    x = np.empty((n, *SLAB), np.float32)
    for i in range(n):
        peak = 3.0 - contrast * 1.5 * y[i] + rng.normal(0, 0.2)
        img = np.ones(SLAB) + rng.normal(0, 0.1, SLAB)
        for c in (33, 58):
            r0, c0 = 64 + rng.normal(0, 1.5), c + rng.normal(0, 1.5)
            img += peak * np.exp(-((rows - r0) ** 2 / 60 + (cols - c0) ** 2 / 20))
        x[i] = img
    return [(x[i], int(y[i])) for i in range(n)]


def test_default_arch_has_about_the_studys_parameter_count():
    n = count_parameters(build_model(schema.defaults("cnn", "arch"), SLAB))
    assert 2_500_000 <= n <= 3_300_000


@pytest.mark.parametrize("shape", [SLAB, (12, 40, 48)])
def test_output_shapes_slab_and_box(shape):
    arch = dict(SMALL, crop=None)  # the slab crop does not apply to a box
    model = build_model(arch, shape).eval()
    out = model(torch.zeros(3, 1, *shape))
    assert out.shape == (3, 2)
    assert count_parameters(model) > 0


def test_crop_and_bad_arch_are_checked():
    model = build_model(dict(SMALL, crop=[[30, 94], [13, 77]]), SLAB).eval()
    assert model(torch.zeros(2, 1, *SLAB)).shape == (2, 2)
    with pytest.raises(InputError, match="crop"):
        build_model(dict(SMALL, crop=[[30, 140], [13, 77]]), SLAB)
    with pytest.raises(InputError, match="spatial axes"):
        build_model(SMALL, (12, 40, 48))
    with pytest.raises(InputError, match="unknown key"):
        build_model({"chanels": [8]}, SLAB)
    with pytest.raises(InputError, match="too small"):
        build_model(dict(SMALL, channels=[8] * 8), SLAB)


def test_augmentation_is_seeded_and_order_independent():
    x = np.random.default_rng(0).random((6, *SLAB), dtype=np.float32)
    y = np.zeros(6, np.int64)
    a = ImageDataset(x, y, augment={}, seed=3)
    b = ImageDataset(x, y, augment={}, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    batch_a = torch.stack([s[0] for s in a.__getitems__([0, 1, 2, 3, 4, 5])])
    batch_b = torch.stack([b[i][0] for i in (5, 4, 3, 2, 1, 0)][::-1])
    assert torch.equal(batch_a, batch_b)
    b.set_epoch(3)
    assert not torch.equal(batch_a, torch.stack([b[i][0] for i in range(6)]))
    plain = ImageDataset(x, y)
    assert torch.equal(plain[1][0][0], torch.from_numpy(x[1]))


def _reference_augmentation(x, flip, shift, angle, scale):
    """The whole image resampled through ``affine_grid`` (the augmentation's definition)."""
    x = torch.where(flip.view(-1, 1, 1, 1), torch.flip(x, dims=[-1]), x)
    theta = _affine_theta(x.shape[2:], shift, angle)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return x * scale.to(x.dtype).view(-1, 1, 1, 1)


def test_augmenting_the_models_window_gives_the_whole_images_values_there():
    x = torch.from_numpy(np.random.default_rng(1).random((8, 1, *SLAB), dtype=np.float32))
    params = _draw_params(8, 2, resolve_augment({}), torch.Generator().manual_seed(4))
    window = [[26, 90], [13, 77]]
    inside = (slice(None), slice(None), slice(26, 90), slice(13, 77))
    reference = _reference_augmentation(x, **params)
    assert torch.equal(augment_batch(x, **params), reference)
    windowed = augment_batch(x, **params, window=window)
    assert torch.equal(windowed[inside], reference[inside])
    windowed[inside] = 0
    assert not windowed.any()  # the model never reads the rest


@pytest.mark.parametrize("shape", [(4, 3, 32, 32), (2, 5, 33, 17)])
def test_max_pooling_matches_torchs_values_and_gradients(shape):
    x = torch.relu(torch.randn(shape, generator=torch.Generator().manual_seed(0)))
    ours, theirs = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, ref = MaxPool2d(2)(ours), torch.nn.MaxPool2d(2)(theirs)
    assert torch.equal(out, ref)
    grad = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1))
    out.backward(grad)
    ref.backward(grad)
    assert torch.equal(ours.grad, theirs.grad)


def test_the_layers_before_the_first_dropout_and_the_rest_make_the_model():
    torch.manual_seed(0)
    model = build_model(SMALL, SLAB).eval()
    prefix, rest = model.split_at_first_dropout()
    assert not any(isinstance(m, torch.nn.Dropout2d) for m in prefix.modules())
    assert isinstance(rest[0], torch.nn.Dropout2d)
    x = torch.rand(3, 1, *SLAB)
    with torch.no_grad():
        assert torch.equal(rest(prefix(x)), model(x))


def test_flip_only_augmentation_mirrors_left_right():
    x = np.zeros((1, *SLAB), np.float32)
    x[0, 60, 10] = 1.0
    ds = ImageDataset(
        x,
        np.zeros(1, np.int64),
        augment={"flip_lr": 1.0, "shift_vox": 0, "rotate_deg": 0, "intensity_scale": 0},
    )
    out = ds[0][0][0].numpy()
    assert out[60, SLAB[1] - 1 - 10] == 1.0 and out.sum() == 1.0


def test_same_seed_gives_identical_weights_and_other_seed_does_not():
    train, val = blob_slabs(40, 1), blob_slabs(16, 2)

    def weights(seed):
        model, history, best = train_model(
            train, val, arch=SMALL, train_cfg=FAST, seed=seed, threads=1, device="cpu", log=str
        )
        assert len(history) == 2 and best["epoch"] in (1, 2)
        return model.state_dict()

    w1, w2, w3 = weights(7), weights(7), weights(8)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert not all(torch.equal(w1[k], w3[k]) for k in w1)


@pytest.mark.parametrize(
    "cfg",
    [
        {"select_on": "loss", "balance": "class_weights"},
        {"select_on": "accuracy", "balance": "sampler", "optimizer": "adamw"},
    ],
)
def test_selection_picks_the_best_validation_epoch(cfg):
    train, val = blob_slabs(32, 5, contrast=0.3), blob_slabs(16, 6, contrast=0.3)
    model, history, best = train_model(
        train,
        val,
        arch=SMALL,
        train_cfg=dict(cfg, epochs=4, batch_size=16, patience=4),
        seed=1,
        threads=1,
        device="cpu",
        log=str,
    )
    key = "val_loss" if cfg["select_on"] == "loss" else "val_accuracy"
    pick = min if key == "val_loss" else max
    assert best[key] == pick(h[key] for h in history)
    assert history[best["epoch"] - 1][key] == best[key]
    assert len(history) == 4 and not model.training


def test_checkpoint_round_trip_and_hash_check(tmp_path):
    train, val = blob_slabs(32, 3), blob_slabs(12, 4)
    model, history, best = train_model(
        train, val, arch=SMALL, train_cfg=FAST, seed=0, threads=1, device="cpu", log=str
    )
    paths = []
    for i, (x, _) in enumerate(val):
        paths.append(tmp_path / f"slab{i}.npy")
        np.save(paths[-1], x)
    p_before = predict(model, paths, device="cpu")
    weights = tmp_path / "model.pt"
    spec = make_input_spec("slab", SLAB)
    save_checkpoint(
        model,
        weights,
        arch=SMALL,
        input_spec=spec,
        train_cfg=FAST,
        seed=0,
        metrics=best,
        history=history,
    )
    meta = json.loads(sidecar_path(weights).read_text())
    assert meta["input"]["shape"] == list(SLAB) and meta["n_parameters"] == count_parameters(model)
    again = tmp_path / "again" / "model.pt"  # the same weights are the same file, wherever saved
    save_checkpoint(
        model, again, arch=SMALL, input_spec=spec, train_cfg=FAST, seed=0, metrics=best,
        history=history,
    )  # fmt: skip
    assert again.read_bytes() == weights.read_bytes()
    assert meta["arch"]["channels"] == SMALL["channels"] and meta["seed"] == 0
    assert not list(tmp_path.glob("*.tmp"))

    loaded, meta2 = load_checkpoint(weights)
    assert meta2 == meta
    np.testing.assert_array_equal(predict(loaded, val, device="cpu"), p_before)

    raw = bytearray(weights.read_bytes())
    raw[-10] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(InputError, match="model.pt"):
        load_checkpoint(weights)


def test_learns_bright_versus_dim_putamen():
    train, val, test = blob_slabs(64, 10), blob_slabs(32, 11), blob_slabs(64, 12)
    model, _, best = train_model(
        train,
        val,
        arch=SMALL,
        train_cfg={"epochs": 6, "batch_size": 16, "patience": 6, "lr": 3e-3},
        seed=0,
        threads=1,
        device="cpu",
        log=str,
    )
    labels = np.array([lab for _, lab in test])
    acc = np.mean((predict(model, test, device="cpu") >= 0.5) == labels)
    assert acc > 0.9, (acc, best)


def test_bad_inputs_raise_input_error(tmp_path):
    with pytest.raises(InputError, match="shape"):
        load_items([(np.zeros(SLAB), 0), (np.zeros((10, 10)), 1)])
    bad = tmp_path / "bad.npy"
    np.save(bad, np.full(SLAB, np.nan, np.float32))
    with pytest.raises(InputError, match="bad.npy"):
        load_items([(bad, 0)])
    with pytest.raises(InputError, match="both classes"):
        train_model(
            [(np.zeros(SLAB), 0)] * 4,
            [(np.zeros(SLAB), 0)] * 2,
            arch=SMALL,
            train_cfg=FAST,
            seed=0,
            threads=1,
            device="cpu",
            log=str,
        )
    with pytest.raises(InputError, match="missing"):
        load_checkpoint(tmp_path / "nothing.pt")


def test_split_parts_checks_the_split_against_the_sheet():
    import pandas as pd

    from datspect.cnn.experiment import split_parts

    splits = pd.DataFrame(
        {"split": 0, "subject_id": ["a", "b", "c", "a"], "part": ["train", "val", "test", "test"]}
    )
    sheet = pd.DataFrame({"subject_id": ["a", "b", "c"], "image": ["a.nii", "b.nii", "c.nii"]})
    with pytest.raises(InputError, match="subject 'a' appears more than once in split 0"):
        split_parts(splits, 0, sheet)
    parts = split_parts(splits.iloc[:3], 0, sheet)
    assert parts == {"train": {"a"}, "val": {"b"}, "test": {"c"}}
    grouped = sheet.assign(group=["g", "g", "c"])  # a and b: one person, two parts
    with pytest.raises(InputError, match="group 'g' is spread over several parts"):
        split_parts(splits.iloc[:3], 0, grouped)
    with pytest.raises(InputError, match="lacks 1 subject"):
        split_parts(splits.iloc[1:3], 0, sheet)

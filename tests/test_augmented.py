"""The augmented setting (issue 18 part 1): its blur and noise degradation, the comparison table
and the summary's verdict; the setting's place in the workflow is run by the small run."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from test_bad_input import Case, assert_one_clear_message, config_case

from datspect import schema
from datspect.cnn.data import (
    INPUT_SPACING_MM,
    ImageDataset,
    _draw_degradation,
    blur_batch,
    resolve_degrade,
)
from datspect.errors import InputError
from datspect.evaluation import augmentation
from datspect.report.summary import augmentation_line


def _images(n=40, shape=(24, 20), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.gamma(4.0, 0.25, size=(n, *shape)).astype(np.float32)
    return x, np.arange(n) % 2


def _epoch(ds, epoch):
    ds.set_epoch(epoch)
    return [(x.clone(), int(y)) for x, y in ds.__getitems__(list(range(len(ds))))]


def test_degradation_is_seeded_per_epoch_and_labels_stay():
    x, y = _images()
    cfg = {"probability": 1.0, "blur_fwhm_mm": [4.0, 20.0], "noise_sd": [0.05, 0.1]}
    first = _epoch(ImageDataset(x, y, degrade=cfg, seed=3), 1)
    again = _epoch(ImageDataset(x, y, degrade=cfg, seed=3), 1)
    other_epoch = _epoch(ImageDataset(x, y, degrade=cfg, seed=3), 2)
    other_seed = _epoch(ImageDataset(x, y, degrade=cfg, seed=4), 1)
    stack = lambda items: torch.stack([a for a, _ in items])  # noqa: E731
    assert torch.equal(stack(first), stack(again))
    assert not torch.allclose(stack(first), stack(other_epoch))
    assert not torch.allclose(stack(first), stack(other_seed))
    assert [label for _, label in first] == list(y)
    assert not torch.allclose(stack(first), torch.from_numpy(x).unsqueeze(1))
    # read in another batch, an image is degraded the same way (to the convolution's rounding)
    ds = ImageDataset(x, y, degrade=cfg, seed=3)
    ds.set_epoch(1)
    ((single, label),) = ds.__getitems__([7])
    assert torch.allclose(single, first[7][0], atol=1e-6) and label == y[7]


def test_degradation_leaves_the_augmentation_stream_as_it_was():
    x, y = _images()
    plain = ImageDataset(x, y, augment={}, seed=5)
    degraded = ImageDataset(x, y, augment={}, seed=5, degrade={})
    for epoch in (1, 2):
        plain.set_epoch(epoch)
        degraded.set_epoch(epoch)
        for key in ("flip", "shift", "angle", "scale"):
            assert torch.equal(plain.params[key], degraded.params[key])


def test_blur_fwhm_draws_follow_the_config():
    cfg = resolve_degrade({"probability": 0.7, "blur_fwhm_mm": [6.0, 18.0], "noise_sd": [0, 0.2]})
    draws = _draw_degradation(20000, cfg, seed=11, epoch=3)
    fwhm_mm = draws["fwhm_px"].numpy() * INPUT_SPACING_MM
    chosen = fwhm_mm > 0
    assert abs(chosen.mean() - 0.7) < 0.015
    assert fwhm_mm[chosen].min() >= 6.0 and fwhm_mm[chosen].max() <= 18.0
    # uniform on [6, 18]: mean 12, SD 12 / sqrt(12)
    assert abs(fwhm_mm[chosen].mean() - 12.0) < 0.1
    assert abs(fwhm_mm[chosen].std() - 12.0 / math.sqrt(12)) < 0.1
    noise = draws["noise_sd"].numpy()
    assert (noise[~chosen] == 0).all() and noise[chosen].max() <= 0.2


@pytest.mark.parametrize("shape", [(61, 61), (41, 41, 41)])
def test_blur_gives_the_drawn_fwhm_and_keeps_flat_images_flat(shape):
    centre = tuple(s // 2 for s in shape)
    delta = torch.zeros(2, 1, *shape)
    delta[(slice(None), 0, *centre)] = 1.0
    fwhm_px = torch.tensor([0.0, 5.0])
    out = blur_batch(delta, fwhm_px)
    assert torch.equal(out[0], delta[0])  # FWHM 0 leaves the image as it is
    profile = out[1, 0][(slice(None), *centre[1:])].double()
    axis = torch.arange(shape[0], dtype=torch.float64) - centre[0]
    sigma = math.sqrt(float((profile * axis**2).sum() / profile.sum()))
    assert abs(sigma * 2 * math.sqrt(2 * math.log(2)) - 5.0) < 0.05
    assert abs(float(out[1].sum()) - 1.0) < 1e-5
    flat = torch.full((1, 1, *shape), 2.5)
    assert torch.allclose(blur_batch(flat, torch.tensor([9.0])), flat)


def test_degrade_config_is_checked():
    assert resolve_degrade(None) == schema.defaults("cnn", "degrade")
    with pytest.raises(InputError, match=r"cnn.degrade.blur_fwhm_mm must be \[low, high\]"):
        resolve_degrade({"blur_fwhm_mm": [10.0, 5.0]})
    with pytest.raises(InputError, match=r"unknown key\(s\) \['sigma'\]"):
        resolve_degrade({"sigma": 1.0})


@pytest.mark.parametrize(
    "case",
    [
        Case(
            "augmented without the CNN",
            config_case(
                "settings: [original, mixed, augmented]\nmethods: [sbr_aal, sbr_hv]\n",
                "settings",
            ),
            r"settings lists augmented, a way to train the CNN, but methods has no 'cnn'",
            r"add 'cnn' to methods or remove it from settings",
        ),
        Case(
            "degrade range reversed",
            config_case("cnn:\n  degrade:\n    blur_fwhm_mm: [20.0, 5.0]\n", "blur_fwhm_mm"),
            r"cnn.degrade.blur_fwhm_mm is \[20.0, 5.0\], not \[low, high\]",
            r"swap them",
        ),
    ],
    ids=lambda case: case.name,
)
def test_bad_augmented_config_gives_one_clear_message(case, tmp_path):
    assert_one_clear_message(case, tmp_path)


def _predictions(accuracy: dict, n: int = 20) -> pd.DataFrame:
    """CNN predictions whose accuracy per (cohort, image, setting, split) is as given."""
    rows = []
    for (cohort, image, setting, split), acc in accuracy.items():
        for i in range(n):
            label = i % 2
            right = i < round(acc * n)
            rows.append(
                {
                    "cohort": cohort,
                    "subject_id": f"s{i}",
                    "image_setting": image,
                    "label": label,
                    "prediction": label if right else 1 - label,
                    "method": "cnn",
                    "setting": setting,
                    "split": split,
                }
            )
    return pd.DataFrame(rows)


def _splits(n_train=60, n_test=20):
    parts = ["train"] * n_train + ["val"] * n_test + ["test"] * n_test
    return pd.DataFrame(
        {"split": 0, "subject_id": [f"s{i}" for i in range(len(parts))], "part": parts}
    )


def test_comparison_pairs_each_kind_of_image_over_splits():
    acc = {}
    for split in (0, 1, 2):
        acc |= {
            ("dev", "original", "augmented", split): 0.95,
            ("dev", "smoothed", "augmented", split): 0.90,
            ("dev", "original", "mixed", split): 0.95,
            ("dev", "smoothed", "mixed", split): 0.95,
            ("dev", "original", "original", split): 0.90,
            ("clinic", "original", "augmented", split): 0.85,
            ("clinic", "original", "mixed", split): 0.80,
        }
    robustness = pd.DataFrame(
        [
            {"fwhm": f, "method": m, "trained_setting": s, "split": k, "accuracy": a}
            for k in (0, 1, 2)
            for f, s, a in (
                (0.0, "augmented", 0.95),
                (0.0, "mixed", 0.95),
                (18.0, "augmented", 0.90),
                (18.0, "mixed", 0.95),
                (18.0, "original", 0.70),
                (24.0, "augmented", 0.60),
                (24.0, "mixed", 0.90),
            )
            for m in ("cnn", "sbr_aal")
        ]
    )
    table = augmentation.compare(_predictions(acc), _splits(), "dev", robustness=robustness)
    keys = list(zip(table["cohort"], table["images"], table["setting_b"], strict=True))
    assert keys == [
        ("dev", "original", "mixed"),
        ("dev", "original", "original"),
        ("dev", "smoothed", "mixed"),  # the original models never saw smoothed test images
        ("dev", "fwhm-0", "mixed"),
        ("dev", "fwhm-18", "mixed"),
        ("dev", "fwhm-18", "original"),
        ("dev", "fwhm-24", "mixed"),
        ("clinic", "all", "mixed"),
    ]
    by = table.set_index(["cohort", "images", "setting_b"])
    assert by.loc[("dev", "smoothed", "mixed"), "mean_diff"] == pytest.approx(-0.05)
    assert by.loc[("dev", "fwhm-18", "original"), "mean_diff"] == pytest.approx(0.20)
    assert by.loc[("clinic", "all", "mixed"), "accuracy_a"] == pytest.approx(0.85)
    assert (table["n_splits"] == 3).all()
    # the target reads the curve only up to the smoothed setting's FWHM
    gaps = augmentation.gaps(table, "dev", max_fwhm=18.0)
    assert gaps == pytest.approx({"smoothed": 0.05, "curve": 0.05, "clinic": -0.05})
    line = augmentation_line(table, "dev", 18.0)
    assert "smoothed test images +0.0500" in line and "**does not hold**" in line
    close = table.assign(mean_diff=table["mean_diff"].clip(lower=0))
    assert "**holds**" in augmentation_line(close, "dev", 18.0)

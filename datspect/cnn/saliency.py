"""Where the CNN looks: integrated gradients of the log-odds of "reduced" on the input slab.

Integrated gradients (Sundararajan et al. 2017) attribute ``f(x) - f(baseline)`` to the input
pixels: ``(x - baseline) * mean over the straight path of df/dx``.  ``f`` is the log-odds
``logit_reduced - logit_normal``, so a positive attribution is evidence for "reduced" and a
negative one for "normal".  The baseline is an all-zero slab (no counts), so the attributions of
a scan add up to how far its log-odds lie from that of an empty image.  Grad-CAM is not used:
after the crop, the downsampling and four pooling blocks the last feature map of the default
network is 2 x 2 pixels, far too coarse to tell putamen from caudate.

Pixels outside the network's crop get exactly zero attribution (the crop is part of the model).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

#: Points on the straight path (midpoint rule); the completeness error at 32 steps is a few per
#: cent of f(x) - f(baseline) for the study's network.
STEPS = 32


def integrated_gradients(model: torch.nn.Module, slab2d, *, steps: int = STEPS) -> np.ndarray:
    """Integrated gradients of the log-odds of "reduced" for one input, zero baseline.

    Parameters
    ----------
    model : torch.nn.Module
        A trained model in eval mode returning two logits (normal, reduced).
    slab2d : array_like
        One input of the model's input shape (no batch or channel axis).
    steps : int
        Points on the path from the baseline to the input.

    Returns
    -------
    numpy.ndarray
        float32, the input's shape; sums to about ``f(x) - f(0)``.
    """
    x = torch.as_tensor(np.asarray(slab2d, dtype=np.float32))
    alphas = (torch.arange(steps, dtype=torch.float32) + 0.5) / steps
    path = (alphas.view(-1, *([1] * x.ndim)) * x).unsqueeze(1).requires_grad_(True)
    model.eval()
    logits = model(path)
    log_odds = logits[:, 1] - logits[:, 0]
    (grads,) = torch.autograd.grad(log_odds.sum(), path)
    return (x * grads.mean(dim=0)[0]).detach().numpy().astype(np.float32)


def log_odds(model: torch.nn.Module, inputs) -> np.ndarray:
    """``logit_reduced - logit_normal`` for a stack of inputs (for checks of completeness)."""
    x = torch.as_tensor(np.asarray(inputs, dtype=np.float32)).unsqueeze(1)
    with torch.no_grad():
        logits = model.eval()(x)
    return (logits[:, 1] - logits[:, 0]).numpy()


def ensemble_saliency(models: Sequence[torch.nn.Module], slab2d, *, steps: int = STEPS):
    """Mean integrated gradients over the models of an ensemble for one input."""
    return np.mean([integrated_gradients(m, slab2d, steps=steps) for m in models], axis=0)


def class_average(
    models: dict[int, torch.nn.Module],
    test_images: pd.DataFrame,
    inputs: dict[tuple[str, str], np.ndarray],
    *,
    steps: int = STEPS,
) -> dict[int, dict[str, np.ndarray | int]]:
    """Class-average saliency over test images, each image explained by its own split's model.

    Parameters
    ----------
    models : dict
        ``{split: model}``.
    test_images : pandas.DataFrame
        One row per (split, test image): ``split, subject_id, image_setting, label``.
    inputs : dict
        ``{(subject_id, image_setting): slab}``.
    steps : int
        Integrated-gradients path points.

    Returns
    -------
    dict
        Per label (0 normal, 1 reduced): ``signed`` (mean attribution), ``absolute`` (mean of
        its absolute value) and ``n`` (images averaged).
    """
    sums: dict[int, dict] = {}
    for row in test_images.itertuples():
        attr = integrated_gradients(
            models[int(row.split)], inputs[(row.subject_id, row.image_setting)], steps=steps
        )
        acc = sums.setdefault(int(row.label), {"signed": 0.0, "absolute": 0.0, "n": 0})
        acc["signed"] = acc["signed"] + attr
        acc["absolute"] = acc["absolute"] + np.abs(attr)
        acc["n"] += 1
    return {
        label: {
            "signed": (acc["signed"] / acc["n"]).astype(np.float32),
            "absolute": (acc["absolute"] / acc["n"]).astype(np.float32),
            "n": acc["n"],
        }
        for label, acc in sorted(sums.items())
    }


def test_images(sheet: pd.DataFrame, splits: pd.DataFrame, setting: str = "mixed") -> pd.DataFrame:
    """The test images of every split: ``split, subject_id, image_setting, label``.

    ``sheet`` is the development cohort's sheet, ``splits`` the workflow's ``splits.tsv``.
    """
    from datspect.vocabulary import IMAGES_OF_SETTING

    test = splits.loc[splits["part"] == "test", ["split", "subject_id"]]
    rows = test.merge(sheet[["subject_id", "label"]], on="subject_id", validate="many_to_one")
    images = pd.DataFrame({"image_setting": IMAGES_OF_SETTING[setting]})
    rows = rows.merge(images, how="cross")
    return rows.sort_values(["split", "subject_id", "image_setting"], ignore_index=True)

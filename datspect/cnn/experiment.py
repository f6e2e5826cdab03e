"""One CNN model of the experiment: train on a split's training part, select on its validation
part (both on the setting's training images), score its validation and test parts (the test part
on the setting's test images) and every scan of the independent cohorts it is given (the study's
robust settings get them; the camera experiment's models get the cameras they did not see); the
validation scores are what the calibration is fitted on.

Inputs come from the per-cohort bundles of :mod:`datspect.features.cnn_bundle`.
"""

from __future__ import annotations

import pandas as pd
from scipy.special import expit

from datspect.cnn.checkpoint import save_checkpoint
from datspect.cnn.data import make_input_spec
from datspect.cnn.train import mc_dropout_logits, predict_logits, train_model
from datspect.evaluation.splits import PARTS, check_no_leakage
from datspect.seeds import derive_seed
from datspect.vocabulary import (
    IMAGES_OF_SETTING,
    INDEPENDENT_IMAGES,
    TRAINING_IMAGES,
)


def _rows(sheet: pd.DataFrame, subjects, image_settings, inputs) -> list[dict]:
    """One row per image of ``subjects``; a sheet may pool cohorts (the camera experiment's)."""
    labels = dict(zip(sheet["subject_id"], sheet["label"], strict=True))
    cohorts = dict(zip(sheet["subject_id"], sheet["cohort"].astype(str), strict=True))
    rows = []
    for subject in sorted(subjects):
        cohort = cohorts[subject]
        for setting in image_settings:
            array = inputs[(cohort, subject)][setting]
            rows.append(
                {
                    "cohort": cohort,
                    "subject_id": subject,
                    "image_setting": setting,
                    "label": int(labels[subject]),
                    "array": array,
                }
            )
    return rows


def split_parts(splits: pd.DataFrame, split: int, sheet: pd.DataFrame) -> dict[str, set[str]]:
    """Subjects per part of one split, checked against the development ``sheet`` first
    (:func:`~datspect.evaluation.splits.check_no_leakage`: each scan's subject once, groups in
    one part)."""
    this = splits[splits["split"] == split]
    columns = ["image", "subject_id"] + (["group"] if "group" in sheet else [])
    check_no_leakage(this, sheet[columns].rename(columns={"image": "image_id"}))
    return {p: set(this.loc[this["part"] == p, "subject_id"]) for p in PARTS}


def run(
    *,
    dev_sheet: pd.DataFrame,
    independent_sheets: list[pd.DataFrame],
    inputs: dict,
    splits: pd.DataFrame,
    setting: str,
    split: int,
    input_kind: str,
    arch: dict,
    train_cfg: dict,
    seed: int,
    mc_dropout_samples: int,
    threads: int,
    device: str,
    weights_out,
    log,
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Train, select and score one (setting, split) model; save its checkpoint.

    ``train_cfg`` may carry the ``augmented`` setting's ``degrade`` (``cnn.degrade``) beside the
    keys of ``cnn.train``; the sidecar records it.

    Returns the raw scores (validation and test part, and the ``independent_sheets``; column
    ``part`` says which, ``logit`` is the log-odds of reduced and ``score`` its uncalibrated
    probability; ``logit_mc`` and ``logit_mc_sd`` the mean and SD of the logits of
    ``mc_dropout_samples`` MC-dropout passes),
    the per-epoch history and the selected epoch's summary.
    The probabilities are calibrated later, on the validation rows
    (:func:`datspect.evaluation.scoring.calibrate_cnn`).
    """
    parts = split_parts(splits, split, dev_sheet)
    data = {
        p: _rows(
            dev_sheet,
            parts[p],
            (IMAGES_OF_SETTING if p == "test" else TRAINING_IMAGES)[setting],
            inputs,
        )
        for p in PARTS
    }
    items = {p: [(r["array"], r["label"]) for r in data[p]] for p in PARTS}
    log(
        f"setting {setting}, split {split}: "
        + ", ".join(f"{p} {len(data[p])} images" for p in PARTS)
    )
    train_cfg = dict(train_cfg)
    degrade = train_cfg.pop("degrade", None)
    model, history, best = train_model(
        items["train"],
        items["val"],
        arch=arch,
        train_cfg=train_cfg,
        degrade=degrade,
        seed=seed,
        threads=threads,
        device=device,
        log=log,
    )
    scored = [r | {"part": part} for part in ("val", "test") for r in data[part]]
    for sheet in independent_sheets:
        rows = _rows(sheet, sheet["subject_id"], INDEPENDENT_IMAGES, inputs)
        scored += [r | {"part": "independent"} for r in rows]
    arrays = [r["array"] for r in scored]
    logits = predict_logits(model, arrays, device=device)
    mc = mc_dropout_logits(
        model, arrays, mc_dropout_samples, seed=derive_seed(seed, "mc_dropout"), device=device
    )
    p_reduced = expit(logits)
    predictions = pd.DataFrame([{k: v for k, v in r.items() if k != "array"} for r in scored])
    predictions = predictions.assign(
        score=p_reduced,
        score_reduced=p_reduced,
        prediction=(logits >= 0).astype(int),
        method="cnn",
        setting=setting,
        split=split,
        logit=logits,
        logit_mc=mc.mean(axis=1),
        logit_mc_sd=mc.std(axis=1, ddof=1),
    )
    shape = next(iter(items["train"]))[0].shape
    save_checkpoint(
        model,
        weights_out,
        arch=arch,
        input_spec=make_input_spec(input_kind, shape),
        train_cfg=train_cfg,
        seed=seed,
        metrics=best,
        history=history,
        degrade=degrade,
    )
    return predictions, pd.DataFrame(history), best

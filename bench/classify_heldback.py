"""An exported model applied by ``classify`` to a held-back set of labelled slabs it never saw.

The check of issue 17 for real data: the model a ``configs/ppmi-slabs.yaml`` run exports,
applied through the ``classify`` path (calibrated ensemble probability, inconclusive band,
slab SBRs and their borderline band) to the publisher's validation part of the PPMI slabs
(``all_2d_val/{HC,PD}``, which this project does not keep and no run reads).  Prints accuracy,
share flagged, accuracy on the conclusive scans and the share of errors flagged for the CNN
ensemble and both SBR methods, and the ECE / Brier score / log loss of the ensemble's mean
P(reduced)::

    .venv/bin/python bench/classify_heldback.py --model RUN/results/model --slabs DIR --out OUT

``DIR`` holds ``HC/*.png`` (label 0) and ``PD/*.png`` (label 1).  ``OUT`` gets classify's
table and pages, and ``heldback.tsv`` with the figures printed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd


def labelled_slabs(folder: Path) -> tuple[list[Path], np.ndarray]:
    scans, labels = [], []
    for label, sub in ((0, "HC"), (1, "PD")):
        found = sorted((folder / sub).glob("*.png"))
        if not found:
            raise SystemExit(f"{folder / sub}: no PNG slabs; give a folder with HC/ and PD/")
        scans += found
        labels += [label] * len(found)
    return scans, np.array(labels)


def call_metrics(calls: pd.Series, labels: np.ndarray, first_calls: pd.Series) -> dict:
    """Accuracy (of the call before the band), share flagged, accuracy on the conclusive
    scans and the share of errors flagged."""
    predicted = (first_calls == "reduced").to_numpy().astype(int)
    correct = predicted == labels
    flagged = (calls == "inconclusive").to_numpy()
    errors = ~correct
    return {
        "n": len(labels),
        "accuracy": correct.mean(),
        "share_flagged": flagged.mean(),
        "accuracy_conclusive": correct[~flagged].mean(),
        "n_errors": int(errors.sum()),
        "share_errors_flagged": (flagged & errors).sum() / errors.sum() if errors.any() else np.nan,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--slabs", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from datspect.deploy import classify
    from datspect.evaluation.calibration import probability_metrics

    scans, labels = labelled_slabs(args.slabs)
    table = classify.run(scans, model_dir=args.model, out_dir=args.out, log=lambda line: None)
    rows = []
    cnn_first = np.where(table["cnn_p_mean"] >= 0.5, "reduced", "normal")
    rows.append(
        {"method": "cnn"}
        | call_metrics(table["cnn_call"], labels, pd.Series(cnn_first))
        | probability_metrics(labels, table["cnn_p_mean"].to_numpy())
    )
    for method in ("sbr_aal", "sbr_hv"):
        value, cut = table[f"{method}_putamen"], table[f"{method}_cutoff"]
        first = pd.Series(np.where(value < cut, "reduced", "normal"))
        rows.append({"method": method} | call_metrics(table[f"{method}_call"], labels, first))
    out = pd.DataFrame(rows)
    out.to_csv(args.out / "heldback.tsv", sep="\t", index=False)
    print(f"{len(scans)} held-back slabs ({int((labels == 0).sum())} HC, {int(labels.sum())} PD)")
    print(out.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


if __name__ == "__main__":
    main()

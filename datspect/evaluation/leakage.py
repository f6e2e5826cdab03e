"""What splitting images instead of subjects would do to accuracy: a leakage report.

Two images of one subject are nearly the same picture, so a classifier that remembers its
training images scores a test image whose sibling it saw. The report trains two pixel
classifiers on the CNN inputs, once with the workflow's grouped splits and once with splits that
ignore the groups (every image on its own), and compares their test accuracy:

- 1-nearest-neighbour by correlation, a pure memoriser: the most sensitive to leakage;
- L2 logistic regression on 2x2-pooled pixels, its strength chosen on the validation part.

The ungrouped numbers are leakage, reported to show its size; nothing else uses them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from datspect.evaluation.splits import make_splits
from datspect.vocabulary import IMAGES_OF_SETTING

C_GRID = (0.001, 0.01, 0.1)


def image_table(sheet: pd.DataFrame, inputs: dict, setting: str) -> tuple[pd.DataFrame, np.ndarray]:
    """One row per image of ``setting`` (``unit``, ``subject_id``, ``label``) and its features."""
    cohort = str(sheet["cohort"].iloc[0])
    rows, features = [], []
    for sid, label in zip(sheet["subject_id"], sheet["label"], strict=True):
        for image in IMAGES_OF_SETTING[setting]:
            rows.append({"unit": f"{sid}|{image}", "subject_id": sid, "label": int(label)})
            features.append(_pool(inputs[(cohort, sid)][image]))
    return pd.DataFrame(rows), np.stack(features)


def _pool(array: np.ndarray) -> np.ndarray:
    """2x2 mean pooling (odd edges dropped), flattened."""
    h, w = (s - s % 2 for s in array.shape)
    a = array[:h, :w]
    return a.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)).ravel()


def nearest_neighbour_accuracy(x_train, y_train, x_test, y_test) -> float:
    """Accuracy of 1-NN by Pearson correlation."""

    def unit(x):
        z = x - x.mean(axis=1, keepdims=True)
        return z / np.linalg.norm(z, axis=1, keepdims=True)

    nearest = (unit(x_test) @ unit(x_train).T).argmax(axis=1)
    return float(np.mean(y_train[nearest] == y_test))


def logistic_accuracy(x_train, y_train, x_val, y_val, x_test, y_test, seed: int) -> float:
    """Test accuracy of L2 logistic regression with C chosen on the validation part."""
    scaler = StandardScaler().fit(x_train)
    xs = {k: scaler.transform(v) for k, v in (("train", x_train), ("val", x_val), ("test", x_test))}
    best = None
    for c in C_GRID:
        model = LogisticRegression(C=c, max_iter=2000, random_state=seed)
        model.fit(xs["train"], y_train)
        score = model.score(xs["val"], y_val)
        if best is None or score > best[0]:
            best = (score, model)
    return float(best[1].score(xs["test"], y_test))


def leakage_report(
    sheet: pd.DataFrame,
    inputs: dict,
    splits: pd.DataFrame,
    settings,
    fractions,
    seed: int,
) -> pd.DataFrame:
    """Test accuracy per (setting, scheme, classifier, split), grouped vs ungrouped splits."""
    n_splits = int(splits["split"].max()) + 1
    rows = []
    for setting in settings:
        images, x = image_table(sheet, inputs, setting)
        y = images["label"].to_numpy()
        ungrouped = make_splits(
            images[["unit", "label"]].rename(columns={"unit": "subject_id"}),
            n_splits=n_splits,
            fractions=tuple(fractions),
            seed=seed,
        )
        for k in range(n_splits):
            grouped_part = splits[splits["split"] == k].set_index("subject_id")["part"]
            ungrouped_part = ungrouped[ungrouped["split"] == k].set_index("subject_id")["part"]
            for scheme, part in (
                ("grouped", images["subject_id"].map(grouped_part)),
                ("ungrouped", images["unit"].map(ungrouped_part)),
            ):
                sel = {p: (part == p).to_numpy() for p in ("train", "val", "test")}
                tr, va, te = sel["train"], sel["val"], sel["test"]
                scores = {
                    "nearest_neighbour": nearest_neighbour_accuracy(x[tr], y[tr], x[te], y[te]),
                    "logistic_regression": logistic_accuracy(
                        x[tr], y[tr], x[va], y[va], x[te], y[te], seed
                    ),
                }
                rows += [
                    {
                        "setting": setting,
                        "scheme": scheme,
                        "classifier": name,
                        "split": k,
                        "accuracy": acc,
                        "n_test": int(te.sum()),
                    }
                    for name, acc in scores.items()
                ]
    return pd.DataFrame(rows)


def inflation(report: pd.DataFrame) -> pd.DataFrame:
    """Mean accuracy per (setting, classifier) with and without groups, and the difference."""
    mean = report.pivot_table(
        index=["setting", "classifier"], columns="scheme", values="accuracy", aggfunc="mean"
    )
    return mean.assign(inflation=mean["ungrouped"] - mean["grouped"]).reset_index()

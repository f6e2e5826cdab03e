"""What splitting images instead of subjects would do to accuracy: a leakage report.

Two images of one subject are nearly the same picture, so a classifier that remembers its
training images scores a test image whose sibling it saw. The report trains two pixel
classifiers on the CNN inputs, once with the workflow's grouped splits and once with splits that
ignore the groups (every image on its own), and compares their test accuracy:

- 1-nearest-neighbour by correlation, a pure memoriser: the most sensitive to leakage;
- L2 logistic regression on 2x2-pooled pixels, its strength chosen on the validation part.

The ungrouped numbers are leakage, reported to show its size; nothing else uses them.

Grouping protects only what the sheet declares: one scan listed under two subject ids would
still straddle parts, so :func:`check_duplicate_scans` stops a sheet cohort that holds one.
"""

from __future__ import annotations

from collections.abc import Mapping

import nibabel as nib
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from datspect.cohorts.slab_folder import correlation_matrix, pixel_hash
from datspect.errors import InputError
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


#: Voxels per axis of the grid every scan is compared on, whatever its own shape.
FINGERPRINT_SIZE = 16


def scan_fingerprint(array: np.ndarray) -> tuple[str, np.ndarray]:
    """The hash of a scan's voxel values and its volume on a small grid over its mean.

    The hash ignores the file (a re-gzipped NIfTI or a renamed DICOM gives the same voxels once
    ingested); the small volume catches copies whose voxels differ slightly (re-exported as
    integers, re-filtered, resliced).
    """
    from scipy import ndimage  # only the cohort_sheet job of a sheet cohort needs it

    array = np.asarray(array, dtype=np.float64)
    small = ndimage.zoom(array, [FINGERPRINT_SIZE / n for n in array.shape], order=1)
    return pixel_hash(array), (small / (abs(small.mean()) or 1.0)).ravel()


def duplicate_scans(fingerprints, *, min_correlation: float) -> list[tuple[int, int, float]]:
    """Index pairs ``(a, b, correlation)``, ``a < b``, of fingerprints that are one scan.

    Identical voxels give correlation 1.0. The others are compared as slab cohorts compare their
    images (:func:`datspect.cohorts.slab_folder.similarity_pairs`): the cohort's mean volume is
    removed first, so the head shape everyone shares does not make different subjects alike
    (simulated subjects of one camera: at most 0.93; a copy re-exported as int16, 1.0; filtered
    with a 4 mm Gaussian, 0.99; shifted by one voxel, 0.96).
    """
    hashes = [h for h, _ in fingerprints]
    first = {}
    pairs = []
    for b, h in enumerate(hashes):
        pairs += [(a, b, 1.0) for a in range(b) if hashes[a] == h]
        first.setdefault(h, b)
    reps = sorted(first.values())
    if len(reps) > 2:  # with two, removing their mean leaves them anti-correlated
        features = np.stack([fingerprints[i][1] for i in reps])
        corr = correlation_matrix(features - features.mean(axis=0))
        for i, j in zip(*np.nonzero(np.triu(corr > min_correlation, k=1)), strict=True):
            copies_a = [k for k, h in enumerate(hashes) if h == hashes[reps[i]]]
            copies_b = [k for k, h in enumerate(hashes) if h == hashes[reps[j]]]
            pairs += [(min(a, b), max(a, b), float(corr[i, j])) for a in copies_a for b in copies_b]
    return sorted(pairs)


def check_duplicate_scans(
    sheet: pd.DataFrame, ingested: Mapping[str, str], *, sheet_path, min_correlation: float
) -> int:
    """Stop a sheet cohort that lists one scan under two subject ids (identical or
    near-identical ingested voxels, :func:`duplicate_scans`), unless both rows share a group.

    ``sheet`` is :func:`datspect.cohorts.sheet.read_sheet`'s table (rows in file order),
    ``ingested`` maps each subject id to its ingested NIfTI. Stopping, not dropping a copy: which
    row (and label) is right only the user knows, and either fix is one edit. Returns the number
    of pairs accepted because they share a group.

    Raises
    ------
    InputError
        Naming the sheet, both rows, ids and files of the first pair, and the fix.
    """
    ids = list(sheet["subject_id"])
    prints = [scan_fingerprint(np.asarray(nib.load(ingested[s]).dataobj)) for s in ids]
    groups = sheet["group"].tolist() if "group" in sheet else [""] * len(ids)
    pairs = duplicate_scans(prints, min_correlation=min_correlation)
    bad = [(a, b, c) for a, b, c in pairs if not (groups[a] and groups[a] == groups[b])]
    if not bad:
        return len(pairs)
    a, b, corr = bad[0]
    how = (
        "identical voxels"
        if prints[a][0] == prints[b][0]
        else f"near-identical: their downsampled scans correlate {corr:.3f}, above "
        f"qc.duplicate_min_correlation {min_correlation:g}"
    )
    labels = sheet["label"].tolist()
    differ = ""
    if labels[a] != labels[b]:
        differ = f"; their labels differ ({labels[a]} and {labels[b]})"
    more = f" ({len(bad) - 1} more such pair(s) after this one)" if len(bad) > 1 else ""
    image = sheet["image"].tolist()
    raise InputError(
        f"{sheet_path}, rows {a + 2} and {b + 2}: subjects {ids[a]!r} ({image[a]}) and "
        f"{ids[b]!r} ({image[b]}) hold the same scan ({how}{differ}), so its copies could land "
        f"in training and test{more}; remove one of the two rows, or give both the same value "
        "in a `group` column so that they stay in one part"
    )

"""Cohorts of 2D slabs: a folder of class sub-folders of PNGs, as the study's authors published.

Each PNG is a transversal slab on the MNI 2 mm grid (109 rows along y, 91 columns along x), the
mean of the 5 putamen slices of a normalized scan, in the layout of
:func:`datspect.features.slab.make_slab`.
The published set holds two images per subject without subject ids, and one image under both
labels, so this module also recovers what grouping the pixels support (:func:`group_slabs`).

In the workflow a slab is stored as a NIfTI of shape (91, 109, 1) on the MNI grid, its one slice
at the centre of the putamen slices and ``n_slices`` x 2 mm thick, so viewers show it in place.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from datspect.cohorts.sheet import map_label
from datspect.errors import InputError
from datspect.space.slab_grid import SLAB_SHAPE
from datspect.vocabulary import ID_RULE, id_problem

#: Rows and columns around both striata (2 mm margin) compared by :func:`group_slabs`.
STRIATAL_WINDOW = (slice(45, 85), slice(20, 72))


def read_slab_png(path) -> np.ndarray:
    """Pixels of one slab PNG as float64 (109, 91), checked to be a 2D grey image of that size."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode not in ("L", "I;16", "I", "F"):
                raise InputError(
                    f"{path}: PNG mode {img.mode!r}, expected one grey channel (mode L); "
                    "export the slab as a greyscale PNG"
                )
            arr = np.asarray(img, dtype=np.float64)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise InputError(f"{path}: not a readable PNG image ({err}); re-export the slab") from err
    if arr.shape != SLAB_SHAPE:
        raise InputError(
            f"{path}: slab of {arr.shape[0]} rows x {arr.shape[1]} columns, expected "
            f"{SLAB_SHAPE[0]} x {SLAB_SHAPE[1]} (rows along y, columns along x of the MNI 2 mm "
            "grid, the mean of 5 putamen slices); re-create it on that grid"
        )
    if not arr.max() > 0:
        raise InputError(f"{path}: the slab is all zero; check the export")
    return arr


def list_slab_folder(folder, cohort: str) -> pd.DataFrame:
    """The images of a slab folder: one class sub-folder per label (``HC/``, ``PD/``, ...).

    Returns a table with ``subject_id`` (``<class>-<file stem>``: one id per image, since the
    set has no subject ids), ``image`` (absolute path), ``label`` (0/1) and ``class``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(
            f"cohort '{cohort}': slab folder {folder} does not exist; set "
            f"cohorts.{cohort}.slabs.folder (a relative path is relative to the config file that "
            "sets it)"
        )
    rows = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        label = map_label(sub.name, f"{sub} (class folder of cohort '{cohort}')")
        for png in sorted(sub.glob("*.png")):
            sid = f"{sub.name}-{png.stem}"
            problem = id_problem(sid)
            if problem:
                raise InputError(
                    f"{png}: its subject id {sid!r} {problem}; rename the file to {ID_RULE} "
                    "characters (the id becomes part of file names)"
                )
            rows.append(
                {
                    "subject_id": sid,
                    "image": str(png.resolve()),
                    "label": label,
                    "class": sub.name,
                }
            )
    table = pd.DataFrame(rows, columns=["subject_id", "image", "label", "class"])
    table.attrs["folder"] = folder.resolve()
    if table["label"].nunique() < 2:
        raise InputError(
            f"{folder}: found {len(table)} PNG slabs in {table['class'].nunique()} class "
            "folder(s); a slab cohort needs class sub-folders of both labels (e.g. HC/ and PD/)"
        )
    return table


def pixel_hash(pixels: np.ndarray) -> str:
    """sha256 of the pixel values (files that differ only in PNG metadata hash the same)."""
    return hashlib.sha256(np.ascontiguousarray(pixels, dtype=np.float64).tobytes()).hexdigest()


def label_conflicts(table: pd.DataFrame) -> set[str]:
    """Subject ids of images whose pixels also occur under the other label (quarantined)."""
    hashes = table["image"].map(lambda p: pixel_hash(read_slab_png(p)))
    n_labels = table.groupby(hashes)["label"].transform("nunique")
    return set(table.loc[n_labels > 1, "subject_id"])


def _similarity_features(pixels: np.ndarray) -> np.ndarray:
    """Per image: the striatal window, over the image mean, minus the cohort's mean window."""
    scaled = pixels / pixels.mean(axis=(1, 2), keepdims=True)
    window = scaled[:, STRIATAL_WINDOW[0], STRIATAL_WINDOW[1]].reshape(len(pixels), -1)
    return window - window.mean(axis=0)


def correlation_matrix(features: np.ndarray) -> np.ndarray:
    """Pearson correlation between the rows of ``features``; the diagonal is set to -inf."""
    z = features - features.mean(axis=1, keepdims=True)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    corr = z @ z.T
    np.fill_diagonal(corr, -np.inf)
    return corr


def similarity_pairs(pixels: np.ndarray, labels, null_quantile: float = 0.99) -> tuple:
    """Mutual nearest neighbours by striatal-window correlation above the null threshold.

    Returns ``(pairs, corr, threshold)``: index pairs ``(a, b)`` with ``a < b``, the correlation
    matrix and the ``null_quantile`` of the correlations between images of different labels.
    """
    labels = np.asarray(labels)
    corr = correlation_matrix(_similarity_features(pixels))
    threshold = float(np.quantile(corr[np.ix_(labels == 0, labels == 1)], null_quantile))
    nearest = corr.argmax(axis=1)
    pairs = [
        (a, int(b))
        for a, b in enumerate(nearest)
        if a < b and nearest[b] == a and corr[a, b] > threshold
    ]
    return pairs, corr, threshold


def group_slabs(table: pd.DataFrame, null_quantile: float = 0.99) -> tuple[pd.DataFrame, dict]:
    """Group the images that the pixels say belong together; quarantine label conflicts.

    1. Images with identical pixels form one group; when the copies carry different labels the
       whole group is quarantined (``group`` empty): no label can be trusted.
    2. Mutual nearest neighbours by correlation of the striatal window (reference-scaled,
       cohort mean removed, so head shape, shared by everyone, does not dominate) form a pair
       when their correlation exceeds the ``null_quantile`` of the correlations between
       images of different labels, which are different subjects: a pair more alike than 99 %
       of known different-subject pairs.

    Returns the table ``subject_id, image, label, group, reason, partner, correlation`` and a
    dict of the threshold and counts for the log and the README.
    """
    pixels = np.stack([read_slab_png(p) for p in table["image"]])
    labels = table["label"].to_numpy()
    ids = table["subject_id"].to_numpy().astype(object)
    hashes = np.array([pixel_hash(p) for p in pixels])
    copies = {h: np.flatnonzero(hashes == h) for h in np.unique(hashes)}
    group = np.array([ids[copies[h][0]] for h in hashes], dtype=object)
    reason = np.full(len(ids), "single", dtype=object)
    partner = np.full(len(ids), "", dtype=object)
    corr_out = np.full(len(ids), np.nan)
    for members in copies.values():
        if len(members) < 2:
            continue
        conflict = len(set(labels[members])) > 1
        for i in members:
            group[i] = "" if conflict else group[i]
            reason[i] = "quarantined: identical pixels under both labels" if conflict else "exact"
            partner[i] = ",".join(ids[m] for m in members if m != i)
            corr_out[i] = 1.0

    # Similarity pairs among the rest, one representative per set of identical images.
    idx = np.array([m[0] for m in copies.values() if group[m[0]] != ""])
    pairs, corr, threshold = similarity_pairs(pixels[idx], labels[idx], null_quantile)
    n_pairs = len(pairs)
    for a, b in pairs:
        first, second = copies[hashes[idx[a]]], copies[hashes[idx[b]]]
        for members, others in ((first, second), (second, first)):
            for m in members:
                group[m] = ids[first[0]]
                reason[m] = "similar" if reason[m] == "single" else "exact+similar"
                partner[m] = ",".join(filter(None, [partner[m], *ids[others]]))
                corr_out[m] = corr[a, b]
    out = pd.DataFrame(
        {
            "subject_id": ids,
            "image": table["image"].to_numpy(),
            "label": labels,
            "group": group,
            "reason": reason,
            "partner": partner,
            "correlation": np.round(corr_out, 4),
        }
    )
    info = {
        "images": len(ids),
        "quarantined": int((group == "").sum()),
        "exact_duplicate_images": int(sum(len(m) for m in copies.values() if len(m) > 1)),
        "similarity_pairs": n_pairs,
        "similarity_pairs_label_agreement": _pair_agreement(out),
        "threshold": round(threshold, 4),
        "null_quantile": null_quantile,
        "groups": int(out.loc[out["group"] != "", "group"].nunique()),
    }
    return out, info


def _pair_agreement(groups: pd.DataFrame) -> float:
    """Share of similarity pairs whose two images carry the same label (chance: ~0.5)."""
    pairs = groups[groups["reason"].str.contains("similar")]
    same = pairs.groupby("group")["label"].nunique() == 1
    return round(float(same.mean()), 4) if len(same) else float("nan")

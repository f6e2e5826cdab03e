"""Leave-one-camera-out (beyond the study): models trained on k cameras, tested on the others.

The study's open hypothesis is that one CNN serves sites with other hardware and software. Each
camera's cohort is split on its own (grouped by subject, stratified by label, as the study's
cohort is); a training set of k cameras trains on their training parts, selects on their
validation parts and is scored on their test parts (``seen``) and on every scan of each camera
outside it (``unseen``). Training sets are the N cyclic windows of k consecutive cameras, so
every camera is in k sets of each k and unseen by the other N - k (windows pair neighbours in
the configured order more often than distant cameras: the order is a choice of the config).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from datspect.errors import InputError
from datspect.evaluation.splits import make_splits, part_counts
from datspect.seeds import derive_seed
from datspect.vocabulary import INDEPENDENT_IMAGES, SBR_COLUMN, TRAINING_IMAGES

#: The images a model is tested on, seen or unseen camera alike: as acquired.
TEST_IMAGES = INDEPENDENT_IMAGES
#: Columns of results/metrics/cameras.tsv that name one test (a model on one camera).
KEYS = ["method", "setting", "k", "training_set", "training_cameras", "split", "camera", "seen"]
METRICS = ["n", "accuracy", "sensitivity", "specificity", "auc"]


def training_sets(cameras: list[str], ks: list[int]) -> list[dict]:
    """Every training set: ``training_set`` (its name, ``k<k>-<i>``), ``k`` and ``cameras``,
    the N cyclic windows ``cameras[i .. i+k-1]`` of each k (``ks`` empty: 1 .. N-1)."""
    n = len(cameras)
    ks = sorted(ks) or list(range(1, n))
    if any(not 1 <= k < n for k in ks):
        raise InputError(f"cameras.k: {ks} must lie in 1 .. {n - 1} for {n} cameras")
    return [
        {
            "training_set": f"k{k}-{i}",
            "k": k,
            "cameras": [cameras[(i + j) % n] for j in range(k)],
        }
        for k in ks
        for i in range(n)
    ]


def check_distinct_subjects(subjects: dict[str, list[str]]) -> None:
    """No subject id in two camera cohorts: one person scanned on two cameras would be trained
    on with one and tested on the other."""
    owner = {}
    for cohort, ids in subjects.items():
        for subject in ids:
            if subject in owner:
                raise InputError(
                    f"cameras.cohorts: subject '{subject}' is in cohorts '{owner[subject]}' and "
                    f"'{cohort}'; a person scanned on two cameras would straddle training and "
                    "test: keep each person in one camera's cohort."
                )
            owner[subject] = cohort


def camera_splits(
    sheets: dict[str, pd.DataFrame], *, n_splits: int, fractions, seed: int
) -> pd.DataFrame:
    """Each camera's own grouped, stratified splits (columns ``cohort, split, subject_id,
    part``); camera ``c`` is split with seed ``derive_seed(seed, "cameras", c)``, so adding a
    camera leaves the others' splits as they were."""
    check_distinct_subjects({c: list(s["subject_id"]) for c, s in sheets.items()})
    frames = []
    for cohort, sheet in sheets.items():
        columns = ["subject_id", "label"] + (["group"] if "group" in sheet else [])
        splits = make_splits(
            sheet[columns],
            n_splits=n_splits,
            fractions=tuple(fractions),
            seed=derive_seed(seed, "cameras", cohort),
        )
        labels = sheet.set_index("subject_id")["label"]
        frames.append(splits.assign(cohort=cohort, label=splits["subject_id"].map(labels)))
    columns = ["cohort", "split", "subject_id", "part", "label"]
    return pd.concat(frames, ignore_index=True)[columns]


def training_view(splits: pd.DataFrame, cameras: list[str]) -> pd.DataFrame:
    """The training cameras' splits, pooled: what a training set's model is trained, selected
    and tested (``seen``) on."""
    return splits[splits["cohort"].isin(cameras)].reset_index(drop=True)


def training_data(
    sheets: dict[str, pd.DataFrame],
    splits: pd.DataFrame,
    training_cameras: list[str],
    split: int,
    training_subjects: int | None,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What one model of a training set is trained, selected and tested (``seen``) on: the
    pooled sheet of its cameras' subjects in ``split`` (those :func:`limit_training` leaves out
    of the training part are in no part) and that split of their pooled splits."""
    limited = limit_training(splits, training_cameras, training_subjects, seed)
    view = training_view(limited[limited["split"] == split], training_cameras)
    pooled = pd.concat([sheets[c] for c in training_cameras], ignore_index=True)
    return pooled[pooled["subject_id"].isin(set(view["subject_id"]))], view


def subset_seed(seed: int, training_set: str) -> int:
    """The seed of a training set's subsample (:func:`limit_training`): one per set, so that its
    CNNs of every setting and its SBR cutoffs train on the same subjects."""
    return derive_seed(seed, "cameras", "training_subjects", training_set)


def limit_training(
    splits: pd.DataFrame, cameras: list[str], training_subjects: int | None, seed: int
) -> pd.DataFrame:
    """``splits`` (:func:`camera_splits`) without the training-part subjects of ``cameras``
    beyond a budget of ``training_subjects`` in all (None: no budget), split equally between
    the cameras and within each by label as the camera's training part is; so a set of k
    cameras trains on as many scans as a set of one, and k is the number of cameras alone.
    Validation and test parts are kept whole. ``seed``: :func:`subset_seed`."""
    if training_subjects is None:
        return splits
    quotas = part_counts(int(training_subjects), [1 / len(cameras)] * len(cameras))
    dropped = set()
    for split in sorted(splits["split"].unique()):
        for camera, quota in zip(cameras, quotas, strict=True):
            train = splits[
                (splits["split"] == split)
                & (splits["cohort"] == camera)
                & (splits["part"] == "train")
            ]
            if quota >= len(train):
                continue
            rng = np.random.default_rng(derive_seed(seed, camera, int(split)))
            shares = train["label"].value_counts(normalize=True).sort_index()
            for label, n in zip(shares.index, part_counts(quota, shares.to_numpy()), strict=True):
                ids = sorted(train.loc[train["label"] == label, "subject_id"])
                kept = set(rng.choice(ids, size=n, replace=False))
                dropped |= {(split, i) for i in ids if i not in kept}
    keys = pd.Series(list(zip(splits["split"], splits["subject_id"], strict=True)))
    return splits[~keys.isin(dropped).to_numpy()].reset_index(drop=True)


def fit_sbr_cutoff(
    table: pd.DataFrame,
    splits: pd.DataFrame,
    *,
    method: str,
    setting: str,
    split: int,
    training_cameras: list[str],
) -> tuple[float, pd.DataFrame]:
    """Youden cutoff of one SBR method on the training parts of the training cameras (their
    images of ``setting``); its calls on the test images (:data:`TEST_IMAGES`) of the training
    cameras' test parts (``part`` test) and of every scan of the other cameras (independent).
    ``splits``: :func:`camera_splits` (only the scans in it are fitted or scored)."""
    from datspect.evaluation import cutoff as cutoffs  # scikit-learn: not when planning

    column = SBR_COLUMN[method]
    this = splits.loc[splits["split"] == split, ["cohort", "subject_id", "part"]]
    # scans left out by QC are in no split, and so neither fitted nor scored
    rows = table.merge(this, on=["cohort", "subject_id"], how="inner", validate="many_to_one")
    seen = rows["cohort"].isin(training_cameras)
    train = rows[seen & (rows["part"] == "train")]
    train = train[train["image_setting"].isin(TRAINING_IMAGES[setting])]
    fit = cutoffs.youden_cutoff(train[column].to_numpy(), train["label"].to_numpy())
    tested = rows[rows["image_setting"].isin(TEST_IMAGES) & (~seen | (rows["part"] == "test"))]
    tested = tested.assign(part=tested["part"].where(seen, "independent"))
    sbr = tested[column].to_numpy()
    predictions = tested[["cohort", "subject_id", "image_setting", "label", "part"]].assign(
        score_reduced=-sbr,
        prediction=cutoffs.predict_with_cutoff(sbr, fit["cutoff"]),
        method=method,
        setting=setting,
        split=split,
    )
    return float(fit["cutoff"]), predictions.reset_index(drop=True)


def sbr_predictions(
    tables: dict[str, pd.DataFrame],
    splits: pd.DataFrame,
    sets: list[dict],
    pairs,
    n_splits: int,
    *,
    training_subjects: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Calls of the SBR cutoffs of every (method, setting) in ``pairs``, training set and split
    (:func:`fit_sbr_cutoff`, on the training subjects :func:`limit_training` keeps, ``seed``
    the global one), with column ``training_set``; ``tables``: method -> SBR table."""
    frames = [
        fit_sbr_cutoff(
            tables[method],
            limit_training(
                splits, spec["cameras"], training_subjects, subset_seed(seed, spec["training_set"])
            ),
            method=method,
            setting=setting,
            split=split,
            training_cameras=spec["cameras"],
        )[1].assign(training_set=spec["training_set"])
        for method, setting in pairs
        for spec in sets
        for split in range(n_splits)
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def camera_metrics(predictions: pd.DataFrame, sets: list[dict]) -> pd.DataFrame:
    """results/metrics/cameras.tsv: accuracy, sensitivity, specificity and AUC of each model
    (method, setting, training set, split) on each camera's test images, ``seen`` (a training
    camera's test part) or not (every scan of a camera outside the set).

    ``predictions``: the models' calls on the test (:data:`TEST_IMAGES`) rows of parts ``test``
    and ``independent``, with ``training_set``."""
    from datspect.evaluation.metrics import binary_metrics  # scikit-learn: not when planning

    by_name = {s["training_set"]: s for s in sets}
    rows = predictions[predictions["image_setting"].isin(TEST_IMAGES)]
    rows = rows[rows["part"].isin(["test", "independent"])]
    out = []
    for (method, setting, name, split, camera), group in rows.groupby(
        ["method", "setting", "training_set", "split", "cohort"], sort=False
    ):
        spec = by_name[name]
        seen = camera in spec["cameras"]
        if seen != bool((group["part"] == "test").all()):
            raise InputError(
                f"training set {name}: camera '{camera}' is scored as "
                f"{'seen' if seen else 'unseen'} but its rows are parts "
                f"{sorted(set(group['part']))}; rerun the camera experiment"
            )
        scores = binary_metrics(group["label"], group["prediction"], group["score_reduced"])
        out.append(
            {
                "method": method,
                "setting": setting,
                "k": spec["k"],
                "training_set": name,
                "training_cameras": "+".join(spec["cameras"]),
                "split": int(split),
                "camera": camera,
                "seen": seen,
            }
            | {m: scores[m] for m in METRICS}
        )
    table = pd.DataFrame(out, columns=KEYS + METRICS)
    return table.sort_values(["method", "setting", "k", "training_set", "split", "camera"])


def accuracy_by_k(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and SD of the accuracy per (method, setting, k, seen) over training sets, splits and
    cameras (each camera's accuracy counts once), with the number of those tests."""
    grouped = table.groupby(["method", "setting", "k", "seen"])["accuracy"]
    return grouped.agg(mean="mean", sd="std", n_tests="size").reset_index()


def unseen_from(table: pd.DataFrame, min_k: int) -> pd.DataFrame:
    """Per (method, setting): mean accuracy on unseen and on seen cameras of the models trained
    on at least ``min_k`` cameras, and the loss (seen - unseen)."""
    rows = table[table["k"] >= min_k]
    means = rows.groupby(["method", "setting", "seen"])["accuracy"].mean().unstack("seen")
    means = means.rename(columns={True: "seen", False: "unseen"})
    return means.assign(loss=means["seen"] - means["unseen"]).reset_index()

"""Repeated random train/validation/test splits, stratified by label and grouped by subject.

Every method and setting of the study uses the same splits, so they are made once, written to
disk and checked for leakage: all images of a subject (or of a group of subjects, e.g. images
suspected to come from one person) always fall in the same part.

Algorithm (exact fractions, unlike k-fold schemes): for split ``k`` a generator seeded with
``(seed, k)`` shuffles the groups of each label stratum, and the shuffled list is cut at the
fractions.  The part sizes come from largest-remainder rounding, so each part is within one group
of its target in every stratum.  Split ``k`` does not depend on ``n_splits``, and the result does
not depend on the row order of the input.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from datspect.errors import InputError

PARTS = ("train", "val", "test")


def part_counts(n: int, fractions) -> np.ndarray:
    """Split ``n`` items into parts of the given fractions by largest-remainder rounding.

    Remainder ties go to the earlier part, so ``part_counts(3, (0.6, 0.2, 0.2))`` is ``[2, 1, 0]``.
    """
    target = n * np.asarray(fractions, dtype=np.float64)
    counts = np.floor(target + 1e-9).astype(int)
    short = n - int(counts.sum())
    order = np.argsort(-(target - counts), kind="stable")
    counts[order[:short]] += 1
    return counts


def min_per_stratum(fractions) -> int:
    """Smallest number of groups per stratum that puts at least one group in every part."""
    n = len(fractions)
    while part_counts(n, fractions).min() < 1:
        n += 1
    return n


def _check_fractions(fractions) -> tuple[float, ...]:
    frac = tuple(float(f) for f in fractions)
    if len(frac) != len(PARTS) or min(frac) <= 0 or abs(sum(frac) - 1.0) > 1e-6:
        raise InputError(
            f"fractions: {fractions!r} must be {len(PARTS)} positive numbers for "
            f"{'/'.join(PARTS)} that sum to 1, e.g. (0.6, 0.2, 0.2)"
        )
    return frac


def _require_columns(df: pd.DataFrame, columns, what: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(
            f"{what}: missing column(s) {missing}; it has {list(df.columns)}, needs {list(columns)}"
        )


def _group_strata(subjects: pd.DataFrame) -> pd.DataFrame:
    """One row per subject with its group and the stratum (label) of that group."""
    has_group = "group" in subjects.columns
    cols = ["subject_id", "label"] + (["group"] if has_group else [])
    df = subjects[cols].drop_duplicates()
    if df[cols].isna().any().any():
        raise InputError(f"subjects: empty values in columns {cols}; fill or drop those rows")
    conflict = df["subject_id"][df["subject_id"].duplicated()]
    if len(conflict):
        raise InputError(
            f"subjects: subject {conflict.iloc[0]!r} has more than one label or group; "
            "give each subject one label (and one group)"
        )
    if not has_group:
        df = df.assign(group=df["subject_id"])
    # A group's stratum is its most frequent label; ties go to the larger label (reduced), so
    # a group holding one image under two labels still lands in one stratum.
    counts = df.groupby(["group", "label"]).size().rename("n").reset_index()
    counts = counts.sort_values(["group", "n", "label"], ascending=[True, False, False])
    stratum = counts.drop_duplicates("group").set_index("group")["label"]
    return df.assign(stratum=df["group"].map(stratum))


def make_splits(
    subjects: pd.DataFrame,
    n_splits: int = 10,
    fractions=(0.6, 0.2, 0.2),
    seed: int = 0,
) -> pd.DataFrame:
    """Make ``n_splits`` random train/val/test splits, stratified by label, grouped by subject.

    Parameters
    ----------
    subjects : pandas.DataFrame
        Columns ``subject_id`` and ``label``, optionally ``group`` (subjects of one group always
        share a part).  Repeated rows (one per image) are allowed if they agree.
    n_splits : int
        Number of random splits.
    fractions : sequence of float
        Fractions of groups for train, val and test in every label stratum.
    seed : int
        Non-negative seed; split ``k`` uses ``numpy.random.default_rng([seed, k])``.

    Returns
    -------
    pandas.DataFrame
        Columns ``split`` (0 .. n_splits-1), ``subject_id``, ``part`` (``train``/``val``/
        ``test``): every subject exactly once per split, sorted by split and subject.

    Raises
    ------
    InputError
        Missing columns, conflicting labels, bad fractions/seed, or a label with too few groups
        to put at least one in every part.
    """
    _require_columns(subjects, ("subject_id", "label"), "subjects")
    frac = _check_fractions(fractions)
    if not isinstance(n_splits, (int, np.integer)) or n_splits < 1:
        raise InputError(f"n_splits: {n_splits!r} must be a positive integer")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed: {seed!r} must be a non-negative integer")
    df = _group_strata(subjects)
    need = min_per_stratum(frac)
    strata = {}
    for label in sorted(df["stratum"].unique(), key=str):
        groups = sorted(df.loc[df["stratum"] == label, "group"].unique(), key=str)
        if len(groups) < need:
            raise InputError(
                f"subjects: label {label} has {len(groups)} subject(s)/group(s); at least "
                f"{need} are needed to place one in each of {'/'.join(PARTS)} with fractions "
                f"{frac}; add subjects of that label"
            )
        strata[label] = np.array(groups, dtype=object)
    frames = []
    for k in range(int(n_splits)):
        rng = np.random.default_rng([int(seed), k])
        part_of_group = {}
        for groups in strata.values():
            shuffled = rng.permutation(groups)
            cuts = np.cumsum(part_counts(len(groups), frac))[:-1]
            for part, chunk in zip(PARTS, np.split(shuffled, cuts), strict=True):
                part_of_group.update(dict.fromkeys(chunk, part))
        frames.append(
            pd.DataFrame(
                {"split": k, "subject_id": df["subject_id"], "part": df["group"].map(part_of_group)}
            )
        )
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["split", "subject_id"], key=_sort_key, ignore_index=True)


def _sort_key(col: pd.Series) -> pd.Series:
    return col if col.name == "split" else col.astype(str)


def check_no_leakage(splits: pd.DataFrame, images: pd.DataFrame) -> None:
    """Check that splits and images fit together and no subject or group straddles parts.

    Parameters
    ----------
    splits : pandas.DataFrame
        Output of :func:`make_splits` (columns ``split``, ``subject_id``, ``part``), e.g. read
        back from disk.
    images : pandas.DataFrame
        Columns ``image_id`` and ``subject_id``; optionally ``group``, which must then sit in a
        single part in every split.

    Raises
    ------
    InputError
        Unknown parts, a subject listed twice in one split, duplicate image ids, an image whose
        subject is missing from a split, or a group spread over several parts.
    """
    _require_columns(splits, ("split", "subject_id", "part"), "splits")
    _require_columns(images, ("image_id", "subject_id"), "images")
    bad = sorted(set(splits["part"]) - set(PARTS), key=str)
    if bad:
        raise InputError(f"splits: unknown part(s) {bad}; parts must be {list(PARTS)}")
    dup = splits[splits.duplicated(["split", "subject_id"])]
    if len(dup):
        row = dup.iloc[0]
        raise InputError(
            f"splits: subject {row['subject_id']!r} appears more than once in split "
            f"{row['split']} (leakage); regenerate the splits"
        )
    dup_img = images["image_id"][images["image_id"].duplicated()]
    if len(dup_img):
        raise InputError(f"images: image_id {dup_img.iloc[0]!r} occurs twice; make ids unique")
    cols = ["image_id", "subject_id"] + (["group"] if "group" in images.columns else [])
    for split, part_df in splits.groupby("split"):
        merged = images[cols].merge(part_df, on="subject_id", how="left")
        missing = merged.loc[merged["part"].isna(), "subject_id"].unique()
        if len(missing):
            raise InputError(
                f"splits: split {split} lacks {len(missing)} subject(s) of the images, e.g. "
                f"{list(missing[:3])}; regenerate the splits for this cohort"
            )
        if "group" in cols:
            n_parts = merged.groupby("group")["part"].nunique()
            spread = n_parts[n_parts > 1]
            if len(spread):
                raise InputError(
                    f"splits: group {spread.index[0]!r} is spread over several parts in split "
                    f"{split} (leakage); make the splits with this group column"
                )


def check_split_feasible(labels, fractions, where: str) -> None:
    """Raise :class:`InputError` unless each class can put a subject in every split part."""
    needed = min_per_stratum(fractions)
    for label, n in pd.Series(list(labels)).value_counts().items():
        if n < needed:
            name = "normal (0)" if label == 0 else "reduced (1)"
            raise InputError(
                f"{where}: only {n} {name} subjects; the split fractions "
                f"{'/'.join(f'{f:g}' for f in fractions)} need at least {needed} per class to "
                "place one in each of train/val/test. Add subjects of that class (or change "
                "splits.train/val/test)."
            )


#: ``results/qc/excluded.tsv``: one row per scan whose normalization QC flags an image.
EXCLUDED_COLUMNS = ["cohort", "subject_id", "flags", "action"]
#: Scans named in a message; the table lists them all.
LISTED = 20


def qc_exclusions(qc: pd.DataFrame, on_fail: str, *, where: str) -> pd.DataFrame:
    """The scans whose normalization QC flags any of their images, and what becomes of them.

    ``qc`` holds the rows of :func:`datspect.preprocess.qc.normalization_table` (any cohorts),
    ``on_fail`` is the config's ``qc.on_fail``. A scan is left out whole (``action``
    ``excluded``), not per image: the settings are compared on the same test subjects. ``keep``
    lists them as ``kept``.

    Raises
    ------
    InputError
        With ``stop`` and any flagged scan: one message, starting with ``where`` (the QC
        tables), that lists them.
    """
    rows = []
    flagged = qc[qc["flag"] != "ok"] if len(qc) else qc
    groups = flagged.groupby(["cohort", "subject_id"]) if len(flagged) else []
    for (cohort, subject), images in groups:
        flags = "; ".join(
            f"{r.setting} {r.flag} (template r {r.correlation:.3f})" for r in images.itertuples()
        )
        action = "kept" if on_fail == "keep" else "excluded"
        rows.append({"cohort": cohort, "subject_id": subject, "flags": flags, "action": action})
    table = pd.DataFrame(rows, columns=EXCLUDED_COLUMNS)
    if on_fail == "stop" and len(table):
        raise InputError(
            f"{where}: {len(table)} scan(s) failed normalization QC and qc.on_fail is stop: "
            f"{listing(table)}; check those scans (voxel size, field of view, striatal uptake, a "
            "complete file) and fix or remove their rows, or set qc.on_fail: exclude to leave "
            "them out of splits, cutoffs and metrics (keep: use them anyway)"
        )
    return table


def listing(excluded: pd.DataFrame) -> str:
    """``cohort/subject (flags)`` of the first :data:`LISTED` rows, and how many more."""
    named = [f"{r.cohort}/{r.subject_id} ({r.flags})" for r in excluded.head(LISTED).itertuples()]
    more = len(excluded) - LISTED
    return ", ".join(named) + (f" and {more} more" if more > 0 else "")


def _excluded_keys(excluded: pd.DataFrame) -> set[tuple[str, str]]:
    rows = excluded[excluded["action"] == "excluded"]
    return set(zip(rows["cohort"].astype(str), rows["subject_id"].astype(str), strict=True))


def drop_excluded(table: pd.DataFrame, excluded: pd.DataFrame) -> pd.DataFrame:
    """``table`` (columns ``cohort``, ``subject_id``) without the scans ``excluded`` leaves out."""
    keys = _excluded_keys(excluded)
    if not keys:
        return table
    pairs = zip(table["cohort"].astype(str), table["subject_id"].astype(str), strict=True)
    return table[[pair not in keys for pair in pairs]]


def split_subjects(
    sheet: pd.DataFrame, excluded: pd.DataFrame, fractions, *, where: str
) -> pd.DataFrame:
    """The development sheet's subjects that enter the splits: those QC did not exclude.

    Raises
    ------
    InputError
        Naming ``where`` (the excluded table) when too few subjects of a class are left.
    """
    kept = drop_excluded(sheet, excluded)
    need = min_per_stratum(tuple(fractions))
    for label in sorted(sheet["label"].unique()):
        left = int((kept["label"] == label).sum())
        if left < need:
            gone = int((sheet["label"] == label).sum()) - left
            name = "normal (0)" if label == 0 else "reduced (1)"
            raise InputError(
                f"{where}: leaving out the {gone} {name} scan(s) that failed normalization QC "
                f"(qc.on_fail: exclude) leaves {left}, fewer than the {need} the split "
                "fractions need; fix or replace those scans, add subjects of that class, or set "
                "qc.on_fail: keep to use them anyway"
            )
    return kept

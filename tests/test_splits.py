"""Grouped, stratified repeated splits and the leakage check."""

import numpy as np
import pandas as pd
import pytest

from datspect.errors import InputError
from datspect.evaluation.splits import PARTS, check_no_leakage, make_splits, part_counts


def _subjects(n0=37, n1=71):
    ids = [f"s{i:03d}" for i in range(n0 + n1)]
    return pd.DataFrame({"subject_id": ids, "label": [0] * n0 + [1] * n1})


def test_part_counts_largest_remainder():
    for n in range(4, 60):
        counts = part_counts(n, (0.6, 0.2, 0.2))
        assert counts.sum() == n
        assert np.all(np.abs(counts - n * np.array([0.6, 0.2, 0.2])) < 1)
    np.testing.assert_array_equal(part_counts(3, (0.6, 0.2, 0.2)), [2, 1, 0])


def test_every_subject_once_and_fractions_per_class():
    subjects = _subjects()
    splits = make_splits(subjects, n_splits=5, seed=3)
    assert list(splits.columns) == ["split", "subject_id", "part"]
    assert sorted(splits["split"].unique()) == list(range(5))
    assert set(splits["part"]) == set(PARTS)
    for _, df in splits.groupby("split"):
        assert sorted(df["subject_id"]) == sorted(subjects["subject_id"])
        merged = df.merge(subjects, on="subject_id")
        for label, n in ((0, 37), (1, 71)):
            got = merged[merged["label"] == label]["part"].value_counts()
            for part, frac in zip(PARTS, (0.6, 0.2, 0.2), strict=True):
                assert abs(got[part] - frac * n) < 1


def test_deterministic_and_seed_dependent():
    subjects = _subjects()
    a = make_splits(subjects, n_splits=3, seed=7)
    pd.testing.assert_frame_equal(a, make_splits(subjects, n_splits=3, seed=7))
    # row order of the input and the number of splits do not change a split
    shuffled = subjects.sample(frac=1.0, random_state=1)
    pd.testing.assert_frame_equal(a, make_splits(shuffled, n_splits=3, seed=7))
    longer = make_splits(subjects, n_splits=6, seed=7)
    pd.testing.assert_frame_equal(a, longer[longer["split"] < 3].reset_index(drop=True))
    b = make_splits(subjects, n_splits=3, seed=8)
    assert not a["part"].equals(b["part"])
    assert not a[a["split"] == 0]["part"].equals(a[a["split"] == 1]["part"].reset_index(drop=True))


def test_groups_never_straddle_parts():
    subjects = _subjects()
    # pairs of consecutive subjects form a group (e.g. suspected repeat scans of one person);
    # one group holds two labels and is stratified by its larger label
    subjects["group"] = [f"g{i // 2}" for i in range(len(subjects))]
    splits = make_splits(subjects, n_splits=10, seed=0)
    merged = splits.merge(subjects, on="subject_id")
    assert (merged.groupby(["split", "group"])["part"].nunique() == 1).all()
    images = subjects.assign(image_id=subjects["subject_id"] + "_img")
    check_no_leakage(splits, images)


def test_repeated_rows_per_image_are_accepted_conflicts_are_not():
    subjects = _subjects(10, 10)
    doubled = pd.concat([subjects, subjects], ignore_index=True)
    pd.testing.assert_frame_equal(make_splits(doubled, 2), make_splits(subjects, 2))
    bad = doubled.copy()
    bad.loc[0, "label"] = 1
    with pytest.raises(InputError, match="s000"):
        make_splits(bad)


def test_too_few_subjects_per_class():
    with pytest.raises(InputError, match="label 0 has 3 .* at least 4"):
        make_splits(_subjects(3, 20))
    make_splits(_subjects(4, 20))
    with pytest.raises(InputError, match="fractions"):
        make_splits(_subjects(), fractions=(0.5, 0.5))
    with pytest.raises(InputError, match="label"):
        make_splits(_subjects().drop(columns="label"))


def test_check_no_leakage_detects_problems():
    subjects = _subjects(10, 10)
    splits = make_splits(subjects, n_splits=2, seed=0)
    images = pd.DataFrame(
        {
            "image_id": [f"{s}_{k}" for s in subjects["subject_id"] for k in ("orig", "smooth")],
            "subject_id": np.repeat(subjects["subject_id"].to_numpy(), 2),
        }
    )
    check_no_leakage(splits, images)
    twice = pd.concat([splits, splits.iloc[[0]].assign(part="test")], ignore_index=True)
    with pytest.raises(InputError, match="more than once"):
        check_no_leakage(twice, images)
    with pytest.raises(InputError, match="lacks 1 subject"):
        check_no_leakage(splits.iloc[1:], images)
    with pytest.raises(InputError, match="occurs twice"):
        check_no_leakage(splits, pd.concat([images, images.iloc[[0]]]))
    grouped = images.assign(group="g" + images["subject_id"].str[1:3])
    with pytest.raises(InputError, match="spread over several parts"):
        check_no_leakage(splits, grouped)

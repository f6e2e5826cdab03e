"""Cohort sheets: label mapping and each bad input with its message."""

from __future__ import annotations

import pytest

from datspect.cohorts.sheet import map_label, read_sheet
from datspect.errors import InputError
from datspect.evaluation.splits import check_split_feasible


def write_sheet(folder, rows, header="subject_id\timage\tlabel\tcohort"):
    for name in ("a.nii.gz", "b.nii.gz", "c.nii.gz", "d.nii.gz"):
        (folder / name).write_bytes(b"x")
    path = folder / "cohort sheet.tsv"
    path.write_text(header + "\n" + "\n".join("\t".join(r) for r in rows) + "\n")
    return path


GOOD = [
    ("s01", "a.nii.gz", "HC", "site1"),
    ("s02", "b.nii.gz", "PD", "site1"),
    ("s03", "c.nii.gz", "0", "site1"),
    ("s04", "d.nii.gz", "Reduced", "site1"),
]


def test_reads_and_maps_labels(tmp_path):
    sheet = read_sheet(write_sheet(tmp_path, GOOD), "mine")
    assert sheet["label"].tolist() == [0, 1, 0, 1]
    assert sheet["image"].iloc[0] == str(tmp_path / "a.nii.gz")  # relative to the sheet
    assert set(sheet["cohort"]) == {"mine"}


@pytest.mark.parametrize("value, label", [("hc", 0), ("Control", 0), ("1.0", 1), ("pd", 1)])
def test_label_spellings(value, label):
    assert map_label(value, "here") == label


def test_missing_sheet(tmp_path):
    with pytest.raises(InputError, match=r"sheet .*nope.tsv does not exist.*cohorts.mine.sheet"):
        read_sheet(tmp_path / "nope.tsv", "mine")


def test_missing_column(tmp_path):
    path = write_sheet(tmp_path, [r[:3] for r in GOOD], header="subject_id\timage\tlabel")
    with pytest.raises(InputError, match=r"missing column\(s\) \['cohort'\]"):
        read_sheet(path, "mine")


def test_duplicate_subject(tmp_path):
    rows = GOOD + [("s02", "a.nii.gz", "HC", "x")]
    with pytest.raises(InputError, match=r"duplicate subject_id \['s02'\] in rows \[3, 6\]"):
        read_sheet(write_sheet(tmp_path, rows), "mine")


def test_empty_subject_id(tmp_path):
    rows = GOOD + [("", "a.nii.gz", "HC", "x")]
    with pytest.raises(InputError, match="row 6: empty subject_id"):
        read_sheet(write_sheet(tmp_path, rows), "mine")


def test_unknown_label(tmp_path):
    rows = GOOD + [("s05", "a.nii.gz", "MSA?", "x")]
    with pytest.raises(InputError, match=r"cohort sheet.tsv, row 6: unknown label 'MSA\?'"):
        read_sheet(write_sheet(tmp_path, rows), "mine")


def test_missing_image(tmp_path):
    rows = GOOD + [("s05", "scans/missing.nii.gz", "HC", "x")]
    with pytest.raises(InputError, match=r"row 6: image file .*missing.nii.gz does not exist"):
        read_sheet(write_sheet(tmp_path, rows), "mine")


def test_one_class_only(tmp_path):
    rows = [r[:2] + ("HC",) + r[3:] for r in GOOD]
    with pytest.raises(InputError, match=r"all 4 scans are normal \(0\); .*both classes"):
        read_sheet(write_sheet(tmp_path, rows), "mine")


def test_too_few_per_class_for_the_splits():
    with pytest.raises(InputError, match=r"only 3 reduced \(1\) subjects.*at least 4"):
        check_split_feasible([0] * 10 + [1] * 3, (0.6, 0.2, 0.2), "cohort 'x'")
    check_split_feasible([0] * 4 + [1] * 4, (0.6, 0.2, 0.2), "cohort 'x'")

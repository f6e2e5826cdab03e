"""Bad input that only shows once every scan is ingested or normalized: one scan under two
subject ids (leakage between parts), and scans that fail normalization QC (``qc.on_fail``).

Sheet cases ingest every scan with the workflow's ingest step and run the check of the
cohort_sheet job (scripts/cohort_sheet.py); QC cases call the steps of the qc_exclusions,
splits and fit_sbr_cutoff jobs on small tables.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from test_bad_input import HEADER, Case, assert_one_clear_message, config_case
from test_dicom import write_nm

from datspect.cohorts.sheet import read_sheet
from datspect.evaluation.leakage import check_duplicate_scans
from datspect.evaluation.splits import drop_excluded, make_splits, split_subjects
from datspect.io.tsv import read_tsv, write_tsv
from datspect.report.summary import excluded_console_line, excluded_lines
from datspect.workflow import steps

MIN_CORRELATION = 0.97  # the schema's qc.duplicate_min_correlation
FRACTIONS = (0.6, 0.2, 0.2)
AFFINE = np.diag([3.9, 3.9, 3.9, 1.0])

# ---------------------------------------------------------------------------- one scan, two ids


def scan(i: int) -> np.ndarray:
    """A distinct small scan per subject: two striata placed and scaled per subject, noise."""
    rng = np.random.default_rng(100 + i)
    grid = np.indices((24, 24, 16)).astype(float)
    image = np.full(grid.shape[1:], 5.0)
    for side in (-1, 1):
        centre = np.array([12 + 4 * side, 12, 8]) + rng.uniform(-1.5, 1.5, 3)
        image += rng.uniform(20, 60) * np.exp(
            -((grid - centre[:, None, None, None]) ** 2).sum(0) / 6
        )
    return (image + rng.normal(0, 1.0, image.shape)).astype(np.float32)


def save(data, path: Path) -> str:
    nib.save(nib.Nifti1Image(data, AFFINE), path)
    return path.name


def cohort(folder: Path, extra=(), groups=None):
    """A sheet of 8 distinct scans (s00..s07) plus ``extra`` rows ``(id, file, label)`` whose
    files the caller wrote; returns the check the cohort_sheet job makes and the sheet."""
    rows = [(f"s{i:02d}", save(scan(i), folder / f"scan {i:02d}.nii.gz"), "HC" if i % 2 else "PD")
            for i in range(8)]  # fmt: skip
    rows += list(extra)
    header = HEADER + (("group",) if groups else ())
    lines = ["\t".join(header)] + [
        "\t".join((sid, file, label, "site1") + ((groups.get(sid, ""),) if groups else ()))
        for sid, file, label in rows
    ]
    path = folder / "my cohort.tsv"
    path.write_text("\n".join(lines) + "\n")

    def check():
        sheet = read_sheet(path, "mine")
        ingested = {}
        for sid, source in zip(sheet["subject_id"], sheet["image"], strict=True):
            ingested[sid] = str(folder / "ingested" / f"{sid}.nii.gz")
            steps.ingest_scan(source=source, image=ingested[sid], cohort="mine", subject=sid)
        return check_duplicate_scans(
            sheet, ingested, sheet_path=path, min_correlation=MIN_CORRELATION
        )

    return check, path


def regzipped_copy(folder: Path):
    check, path = cohort(folder, [("s08", "copy.nii.gz", "HC")])
    nii = nib.load(folder / "scan 01.nii.gz")
    nib.save(nib.Nifti1Image(np.asarray(nii.dataobj), np.eye(4)), folder / "copy.nii.gz")
    return check, [str(path), "rows 3 and 10", "'s01'", "'s08'", "copy.nii.gz"]


def renamed_dicom(folder: Path):
    frames = (scan(11) * 50).astype(np.uint16).transpose(2, 1, 0)
    kwargs = dict(ipp=[0, 0, 0], iop=[1, 0, 0, 0, 1, 0], pixel_spacing=(3.9, 3.9), spacing=3.9)
    write_nm(folder / "first.dcm", frames, **kwargs)
    shutil.copy(folder / "first.dcm", folder / "IM0001")
    check, path = cohort(folder, [("s08", "first.dcm", "PD"), ("s09", "IM0001", "PD")])
    return check, [str(path), "rows 10 and 11", "'s08'", "'s09'", "IM0001"]


def int16_copy(folder: Path, label="PD"):
    data = scan(4)
    img = nib.Nifti1Image(data, AFFINE)
    img.set_data_dtype(np.int16)  # re-exported as integers: the voxels change a little
    nib.save(img, folder / "exported.nii.gz")
    check, path = cohort(folder, [("s08", "exported.nii.gz", label)])
    return check, [str(path), "rows 6 and 10", "'s04'", "'s08'", "exported.nii.gz"]


FIX = r"remove one of the two rows, or give both the same value in a `group` column"
CASES = [
    Case("integrity: one scan under two ids (re-gzipped copy)", regzipped_copy,
         r"hold the same scan \(identical voxels\), so its copies could land in training and test",
         FIX),
    Case("integrity: one DICOM under two ids (renamed file)", renamed_dicom,
         r"hold the same scan \(identical voxels\)", FIX),
    Case("integrity: a re-exported copy under another id (near-identical)", int16_copy,
         r"near-identical: their downsampled scans correlate (0\.9[7-9]\d|1\.000), above "
         r"qc\.duplicate_min_correlation 0\.97", FIX),
    Case("integrity: a copy under the other label", lambda f: int16_copy(f, "HC"),
         r"their labels differ \(1 and 0\)", FIX),
]  # fmt: skip


# ---------------------------------------------------------------------------- QC-failed scans


def qc_table(folder: Path, cohort_name: str, flagged: dict, n: int = 20) -> Path:
    """normalization_{cohort}.tsv as normalization_qc writes it; ``flagged``: id -> (setting,
    flag) of the images that fail."""
    rows = []
    for i in range(n):
        sid = f"s{i:02d}"
        for setting in ("original", "smoothed"):
            flag = flagged.get(sid, (None, "ok"))
            bad = flag[0] == setting
            rows.append(
                {
                    "cohort": cohort_name,
                    "subject_id": sid,
                    "setting": setting,
                    "metric": "pearson_r_template",
                    "correlation": 0.12 if bad else 0.9,
                    "striatum_dice": 0.7,
                    "striatum_label_dice": np.nan,
                    "centroid_error_mm": np.nan,
                    "flag": flag[1] if bad else "ok",
                }
            )
    path = folder / f"normalization_{cohort_name}.tsv"
    write_tsv(pd.DataFrame(rows), path)
    return path


FLAGGED = {"s03": ("original", "low_correlation"), "s06": ("smoothed", "reflected")}


def stop_policy(folder: Path):
    table = qc_table(folder, "mine", FLAGGED)

    def check():  # the qc_exclusions rule's step, its arguments as the rule names them
        steps.qc_exclusions(tables=[str(table)], excluded=str(folder / "out" / "x.tsv"),
                            on_fail="stop")  # fmt: skip

    return check, [
        str(table),
        "mine/s03",
        "mine/s06",
        "original low_correlation (template r 0.120)",
    ]


def dev_sheet(n: int = 20) -> pd.DataFrame:
    ids = [f"s{i:02d}" for i in range(n)]
    return pd.DataFrame({"subject_id": ids, "label": [i % 2 for i in range(n)], "cohort": "mine"})


def too_few_left(folder: Path):
    sheet = dev_sheet(10)  # 5 per class; 0.6/0.2/0.2 needs 4
    flagged = {"s00": ("original", "low_correlation"), "s02": ("original", "low_correlation")}
    excluded = folder / "excluded.tsv"
    steps.qc_exclusions(tables=[str(qc_table(folder, "mine", flagged, 10))],
                        excluded=str(excluded), on_fail="exclude")  # fmt: skip

    def check():  # as scripts/make_splits.py calls it
        split_subjects(sheet, read_tsv(excluded), FRACTIONS, where=str(excluded))

    return check, [str(excluded), "2 normal (0)", "leaves 3"]


CASES += [
    Case("qc: stop policy with failed scans", stop_policy,
         r"2 scan\(s\) failed normalization QC and qc\.on_fail is stop: mine/s03 .*mine/s06",
         r"fix or remove their rows, or set qc\.on_fail: exclude"),
    Case("qc: exclusion leaves too few of a class for the splits", too_few_left,
         r"fewer than the 4 the split fractions need", r"set qc\.on_fail: keep"),
    Case("qc: unknown qc.on_fail", config_case("qc:\n  on_fail: ignore\n", "qc.on_fail"),
         r"'ignore' is not one of", r"use one of: exclude, stop, keep"),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_one_clear_message(case, tmp_path):
    assert_one_clear_message(case, tmp_path)


# ---------------------------------------------------------------------------- correct behaviour


def test_distinct_scans_pass_and_copies_sharing_a_group_are_accepted(tmp_path):
    check, _ = cohort(tmp_path)
    assert check() == 0  # 8 distinct scans: no false alarm
    shutil.rmtree(tmp_path / "ingested")
    nib.save(nib.load(tmp_path / "scan 05.nii.gz"), tmp_path / "again.nii.gz")
    check, _ = cohort(tmp_path, [("s08", "again.nii.gz", "HC")], groups={"s05": "g5", "s08": "g5"})
    assert check() == 1  # one scan, declared one group: the splits keep it in one part


def _sbr_table(n_dev: int = 20, n_ind: int = 8) -> pd.DataFrame:
    rows = []
    for cohort_name, n in (("mine", n_dev), ("other", n_ind)):
        for i in range(n):
            for image in ("original", "smoothed"):
                label = i % 2
                rows.append({"cohort": cohort_name, "subject_id": f"s{i:02d}",
                             "image_setting": image, "label": label,
                             "putamen": 3.0 - 1.5 * label + 0.05 * i})  # fmt: skip
    return pd.DataFrame(rows)


def test_exclude_leaves_flagged_scans_out_of_splits_and_cutoffs(tmp_path):
    tables = [qc_table(tmp_path, "mine", FLAGGED), qc_table(tmp_path, "other", FLAGGED, 8)]
    excluded = tmp_path / "excluded.tsv"
    steps.qc_exclusions(tables=[str(t) for t in tables], excluded=str(excluded), on_fail="exclude")
    listed = read_tsv(excluded)
    assert set(zip(listed["cohort"], listed["subject_id"], listed["action"], strict=True)) == {
        (c, s, "excluded") for c in ("mine", "other") for s in FLAGGED
    }
    sheet = split_subjects(dev_sheet(), listed, FRACTIONS, where=str(excluded))
    splits = make_splits(sheet, n_splits=2, fractions=FRACTIONS, seed=0)
    assert set(splits["subject_id"]) == {f"s{i:02d}" for i in range(20)} - set(FLAGGED)
    write_tsv(splits, tmp_path / "splits.tsv")
    write_tsv(_sbr_table(), tmp_path / "sbr_aal.tsv")
    out = tmp_path / "model"
    steps.fit_sbr_cutoff(
        sbr_table=str(tmp_path / "sbr_aal.tsv"), splits=str(tmp_path / "splits.tsv"),
        excluded=str(excluded), cutoff=str(out / "cutoff.json"),
        predictions=str(out / "predictions.tsv"), development="mine", independent=["other"],
        band=None, method="sbr_aal", setting="mixed", split="0",
    )  # fmt: skip
    scored = read_tsv(out / "predictions.tsv")
    assert not set(scored["subject_id"]) & set(FLAGGED)  # neither test part nor independent
    independent = set(scored.loc[scored["cohort"] == "other", "subject_id"])
    assert independent == {f"s{i:02d}" for i in range(8)} - set(FLAGGED)
    train = splits[(splits["split"] == 0) & (splits["part"] == "train")]
    assert json.loads((out / "cutoff.json").read_text())["n_train_images"] == 2 * len(train)


def test_keep_uses_flagged_scans_and_says_so(tmp_path):
    excluded = tmp_path / "excluded.tsv"
    table = qc_table(tmp_path, "mine", FLAGGED)
    steps.qc_exclusions(tables=[str(table)], excluded=str(excluded), on_fail="keep")
    listed = read_tsv(excluded)
    assert list(listed["action"]) == ["kept", "kept"]
    assert len(drop_excluded(dev_sheet(), listed)) == 20
    assert "were used anyway (qc.on_fail: keep)" in excluded_console_line(listed)


def test_summary_and_console_list_the_excluded_scans(tmp_path):
    excluded = tmp_path / "excluded.tsv"
    steps.qc_exclusions(tables=[str(qc_table(tmp_path, "mine", FLAGGED))],
                        excluded=str(excluded), on_fail="exclude")  # fmt: skip
    listed = read_tsv(excluded)
    lines = excluded_lines(listed)
    assert "## Scans that failed normalization QC" in lines
    assert "| mine | s06 | smoothed reflected (template r 0.120) |" in lines
    line = excluded_console_line(listed)
    assert line.startswith("datspect: 2 scan(s) failed normalization QC and were left out")
    assert "mine/s03 (original low_correlation" in line and "\n" not in line
    nothing = read_tsv(_empty_exclusions(tmp_path))
    assert excluded_lines(nothing) == [] and excluded_console_line(nothing) is None


def _empty_exclusions(folder: Path) -> Path:
    path = folder / "none.tsv"
    steps.qc_exclusions(tables=[], excluded=str(path), on_fail="stop")  # nothing flagged: no stop
    return path


BEHAVIOUR_TESTS = [
    "test_distinct_scans_pass_and_copies_sharing_a_group_are_accepted",
    "test_exclude_leaves_flagged_scans_out_of_splits_and_cutoffs",
    "test_keep_uses_flagged_scans_and_says_so",
    "test_summary_and_console_list_the_excluded_scans",
]

"""Cohort sheets: reading, label mapping and validation (the design's data contract)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from datspect.errors import InputError
from datspect.vocabulary import ID_RULE, id_problem

REQUIRED_COLUMNS = ("subject_id", "image", "label", "cohort")
OPTIONAL_COLUMNS = ("site", "camera", "age", "sex", "group")

#: Accepted label spellings (case-insensitive) -> 0 normal / 1 reduced.
LABEL_SPELLINGS = {
    "0": 0,
    "normal": 0,
    "hc": 0,
    "control": 0,
    "healthy": 0,
    "healthy_control": 0,
    "nonneurodegenerative": 0,
    "non-neurodegenerative": 0,
    "swedd": 0,
    "1": 1,
    "reduced": 1,
    "abnormal": 1,
    "pd": 1,
    "parkinson": 1,
    "parkinsons": 1,
    "neurodegenerative": 1,
}


def map_label(value, where: str) -> int:
    """Map a label spelling to 0/1, or raise :class:`InputError` naming ``where``."""
    key = str(value).strip().lower().replace(" ", "_")
    if key.endswith(".0"):
        key = key[:-2]
    if key not in LABEL_SPELLINGS:
        raise InputError(
            f"{where}: unknown label {value!r}; use 0/1 or one of "
            "normal/HC/control (0) and reduced/PD/neurodegenerative (1)."
        )
    return LABEL_SPELLINGS[key]


def read_sheet(path: str | Path, cohort: str, *, check_images: bool = True) -> pd.DataFrame:
    """Read and validate a cohort sheet (TSV).

    Image paths are resolved relative to the sheet's folder. Raises :class:`InputError` naming
    the sheet, the row (1-based, header = row 1) and the fix for: a missing sheet or column,
    empty or duplicate subject ids, unknown labels, missing image files, one class only.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"cohort '{cohort}': sheet {path} does not exist; check cohorts.{cohort}.sheet "
            "(a relative path is relative to the config file that sets it)."
        )
    try:
        sheet = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not a readable TSV file ({err}).") from err
    missing = [c for c in REQUIRED_COLUMNS if c not in sheet.columns]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {missing}; add them to the header row (a cohort sheet "
            f"needs the tab-separated columns {', '.join(REQUIRED_COLUMNS)}; optional: "
            f"{', '.join(OPTIONAL_COLUMNS)})."
        )
    if sheet.empty:
        raise InputError(f"{path}: the sheet has no rows; list one scan per row.")
    sheet = sheet.copy()
    sheet["subject_id"] = sheet["subject_id"].str.strip()
    for i, sid in enumerate(sheet["subject_id"], start=2):
        if not sid:
            raise InputError(f"{path}, row {i}: empty subject_id; give every scan an id.")
        problem = id_problem(sid)
        if problem:
            raise InputError(
                f"{path}, row {i}: subject_id {sid!r} {problem}; rename it to {ID_RULE} "
                "characters (it becomes part of file names and Snakemake wildcards)."
            )
    duplicated = sheet["subject_id"].duplicated(keep=False)
    if duplicated.any():
        rows = [i + 2 for i in sheet.index[duplicated]]
        ids = sorted(set(sheet.loc[duplicated, "subject_id"]))
        raise InputError(
            f"{path}: duplicate subject_id {ids} in rows {rows}; every subject must appear once, "
            "so remove the repeated row or give it its own id."
        )
    sheet["label"] = [map_label(v, f"{path}, row {i}") for i, v in enumerate(sheet["label"], 2)]
    images = []
    for i, value in enumerate(sheet["image"], start=2):
        image = Path(value.strip())
        if not value.strip():
            raise InputError(f"{path}, row {i}: empty image path; give the scan's file or folder.")
        if not image.is_absolute():
            image = path.parent / image
        if check_images and not image.exists():
            raise InputError(
                f"{path}, row {i}: image file {image} does not exist; fix the path (relative "
                "paths are relative to the sheet's folder)."
            )
        images.append(str(image))
    sheet["image"] = images
    counts = sheet["label"].value_counts()
    if len(counts) < 2:
        only = "normal (0)" if counts.index[0] == 0 else "reduced (1)"
        raise InputError(
            f"{path}: all {len(sheet)} scans are {only}; a cohort needs both classes to fit "
            "and score a classifier, so add scans of the other class (or check the label column)."
        )
    if "age" in sheet.columns:
        age = pd.to_numeric(sheet["age"].replace("", None), errors="coerce")
        bad = sheet.index[age.isna() & (sheet["age"] != "")]
        if len(bad):
            raise InputError(
                f"{path}, row {bad[0] + 2}: age {sheet['age'][bad[0]]!r} is no number; write "
                "years as a number or leave the cell empty."
            )
    sheet["cohort"] = cohort
    return sheet


def check_changed_scans(pairs, max_voxels: int | None = None) -> None:
    """Validate, before any job runs, the scans that the run would ingest again.

    ``pairs`` holds (scan listed in the sheet, ingested copy, scan the copy was made from or
    None).  Snakemake deletes a job's previous outputs when it reruns the job, so a corrupt
    replacement scan would otherwise cost the good ingested copy.  New scans are checked by
    their ingest job: there is nothing to lose yet.  ``max_voxels``: config
    ``images.max_voxels`` (None: its default).
    """
    for scan, copy, ingested_from in pairs:
        copy = Path(copy)
        if not copy.exists():
            continue
        changed = ingested_from is not None and Path(ingested_from) != Path(scan)
        if changed or _mtime(Path(scan)) > copy.stat().st_mtime:
            from datspect.io.imageio import load_scan  # nibabel, pydicom: only when needed

            load_scan(scan, **({} if max_voxels is None else {"max_voxels": max_voxels}))


def ingested_sources(cohort_tsv) -> dict[str, str]:
    """Subject id -> the scan its ingested copy was made from, as the last cohort.tsv says."""
    path = Path(cohort_tsv)
    if not path.is_file():
        return {}
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    if "source_image" not in table.columns:
        return {}  # a simulated cohort
    return dict(zip(table["subject_id"], table["source_image"], strict=True))


def _mtime(path: Path) -> float:
    """Modification time as Snakemake compares it (a link counts when it or its target changed)."""
    return max(path.lstat().st_mtime, path.stat().st_mtime)

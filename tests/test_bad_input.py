"""The catalogue of bad inputs: each gives one message that names the file, key or row, says what
is wrong and how to fix it, and nothing is written.

Each case builds the bad input in a temporary folder and calls the check the workflow calls:
config cases merge the default config with a user file the way Snakemake does, sheet cases read
the sheet as ``rules/common.smk`` does, image cases run the ingest step.  A representative subset
also goes through ``snakemake --dry-run``.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO, snakemake
from test_dicom import write_nm, write_slices

from datspect import schema
from datspect.cohorts.sheet import check_changed_scans, read_sheet
from datspect.errors import InputError
from datspect.evaluation.splits import check_split_feasible
from datspect.workflow import config_checks as checks
from datspect.workflow import steps

FRACTIONS = (0.6, 0.2, 0.2)


@dataclass
class Case:
    """``make(folder)`` builds the input and returns (the check, the places it must name)."""

    name: str
    make: object
    problem: str  # regex: what is wrong
    fix: str  # regex: how to fix it


# ---------------------------------------------------------------------------- config


def validate_files(files):
    """The config checks of rules/common.smk on the merged ``files``."""
    from snakemake.utils import update_config, validate

    config = {}
    for file in files:
        update_config(config, checks.load_yaml(file))
    checks.check_schema(config, files=files)
    validate(config, str(schema.SCHEMA_PATH))
    checks.resolve_paths(config, files=files)
    checks.check_semantics(config, files=files)


def config_case(text: str, key: str):
    def make(folder: Path):
        path = folder / "my config.yaml"
        path.write_text(text)
        return (lambda: validate_files([REPO / "config.yaml", path])), [str(path), key]

    return make


CONFIG_CASES = [
    Case(
        "config: unknown key",
        config_case("sbr:\n  hv_volum_ml: 5\n", "hv_volum_ml"),
        r"unknown key\(s\) \['hv_volum_ml'\] under 'sbr'",
        r"fix the spelling \(allowed keys here: .*hv_volume_ml",
    ),
    Case(
        "config: wrong type",
        config_case("preprocess:\n  smooth_fwhm_mm: 18mm\n", "preprocess.smooth_fwhm_mm"),
        r"'18mm' is not of type 'number'",
        r"write a number",
    ),
    Case(
        "config: negative FWHM",
        config_case("preprocess:\n  smooth_fwhm_mm: -3\n", "preprocess.smooth_fwhm_mm"),
        r"-3 is less than or equal to the minimum of 0",
        r"use a value above 0",
    ),
    Case(
        "config: zero FWHM",
        config_case("preprocess:\n  template_fwhm_mm: 0\n", "preprocess.template_fwhm_mm"),
        r"0 is less than or equal to the minimum of 0",
        r"use a value above 0",
    ),
    Case(
        "config: fractions not summing to 1",
        config_case("splits:\n  val: 0.3\n", "splits.train + splits.val + splits.test"),
        r"= 1.1, must be 1",
        r"e\.g\. train: 0\.6, val: 0\.2, test: 0\.2",
    ),
    Case(
        "config: fewer than 2 splits",
        config_case("splits:\n  n_splits: 1\n", "splits.n_splits"),
        r"1 is less than the minimum of 2",
        r"use a value of at least 2",
    ),
    Case(
        "config: unknown method",
        config_case("methods: [sbr_aal, svm]\n", "methods.1"),
        r"'svm' is not one of",
        r"use one of: sbr_aal, sbr_hv, cnn",
    ),
    Case(
        "config: unknown setting",
        config_case("settings: [original, blurred]\n", "settings.1"),
        r"'blurred' is not one of",
        r"use one of: original, smoothed, mixed",
    ),
    Case(
        "config: mistyped physics key",
        config_case("simulation:\n  cameras:\n    ppmi:\n      fwhm_mmm: 16\n", "fwhm_mmm"),
        r"unknown key\(s\) \['fwhm_mmm'\] under 'simulation.cameras.ppmi'",
        r"fix the spelling \(allowed keys here: .*psf_fwhm_mm",
    ),
]


# ---------------------------------------------------------------------------- cohort sheet

HEADER = ("subject_id", "image", "label", "cohort")


def good_rows(n_per_class: int = 4):
    return [
        (f"s{i:02d}", f"scan {i:02d}.nii.gz", "HC" if i % 2 else "PD", "site1")
        for i in range(2 * n_per_class)
    ]


def write_sheet(folder: Path, rows, header=HEADER) -> Path:
    """A sheet and placeholder scans (the sheet checks only look for the files)."""
    for row in rows:
        (folder / row[1]).write_bytes(b"placeholder")
    path = folder / "my cohort.tsv"
    path.write_text("\t".join(header) + "\n" + "".join("\t".join(r) + "\n" for r in rows))
    return path


def sheet_case(rows, header=HEADER, *where):
    def make(folder: Path):
        path = write_sheet(folder, rows, header)
        for row in rows:
            if row[1].startswith("gone"):
                (folder / row[1]).unlink()
        return (lambda: read_sheet(path, "mine")), [str(path), *where]

    return make


def too_few_per_class(folder: Path):
    rows = good_rows(4)[:7]  # 4 reduced, 3 normal: 0.6/0.2/0.2 needs 4 per class
    path = write_sheet(folder, rows)

    def check():
        sheet = read_sheet(path, "mine")
        check_split_feasible(sheet["label"], FRACTIONS, where=str(path))  # as common.smk does

    return check, [str(path), "3 normal (0)"]


SHEET_CASES = [
    Case(
        "sheet: missing column",
        sheet_case([r[:3] for r in good_rows()], HEADER[:3]),
        r"missing column\(s\) \['cohort'\]",
        r"add them to the header row",
    ),
    Case(
        "sheet: duplicate subject id",
        sheet_case(good_rows() + [("s03", "scan x.nii.gz", "HC", "site1")], HEADER, "rows [5, 10]"),
        r"duplicate subject_id \['s03'\]",
        r"remove the repeated row or give it its own id",
    ),
    Case(
        "sheet: unknown label",
        sheet_case(good_rows() + [("s08", "scan 08.nii.gz", "MSA?", "site1")], HEADER, "row 10"),
        r"unknown label 'MSA\?'",
        r"use 0/1 or one of normal/HC/control \(0\) and reduced/PD/neurodegenerative \(1\)",
    ),
    Case(
        "sheet: one class only",
        sheet_case([r[:2] + ("PD",) + r[3:] for r in good_rows()]),
        r"all 8 scans are reduced \(1\)",
        r"add scans of the other class",
    ),
    Case(
        "sheet: missing image file",
        sheet_case(good_rows() + [("s08", "gone 08.nii.gz", "PD", "site1")], HEADER, "row 10"),
        r"image file .*gone 08\.nii\.gz does not exist",
        r"fix the path \(relative paths are relative to the sheet's folder\)",
    ),
    Case(
        "sheet: too few subjects per class for the splits",
        too_few_per_class,
        r"only 3 normal \(0\) subjects; the split fractions 0\.6/0\.2/0\.2 need at least 4",
        r"Add subjects of that class \(or change splits\.train/val/test\)",
    ),
]


# ---------------------------------------------------------------------------- images


def _scan(shape=(12, 10, 8)) -> np.ndarray:
    grid = np.indices(shape).astype(float)
    centre = (np.array(shape) - 1)[:, None, None, None] / 2
    return (100 * np.exp(-((grid - centre) ** 2).sum(0) / 8) + 1).astype(np.float32)


def image_case(write):
    """``write(folder)`` returns the bad scan; the check is the workflow's ingest step."""

    def make(folder: Path):
        scan = write(folder)
        out = folder / "out" / "ingested.nii.gz"

        def check():  # the ingest_scan rule's step, its arguments as the rule names them
            steps.ingest_scan(source=str(scan), image=str(out), cohort="mine", subject="s01")

        return check, [str(scan)]

    return make


def nifti(data, name="my scan.nii.gz"):
    def write(folder: Path) -> Path:
        path = folder / name
        nib.save(nib.Nifti1Image(data, np.diag([3.9, 3.9, 3.9, 1.0])), path)
        return path

    return write


def damaged_gz(how: str):
    def write(folder: Path) -> Path:
        noise = np.random.default_rng(0).random((40, 40, 30), dtype=np.float32)  # incompressible
        raw = nifti(noise + _scan((40, 40, 30)))(folder).read_bytes()
        path = folder / f"{how} scan.nii.gz"
        path.write_bytes(raw[: len(raw) // 2] if how == "truncated" else os.urandom(3000))
        return path

    return write


def with_value(value):
    data = _scan()
    data[2, 3, 4] = value
    return data


def ct_series(folder: Path) -> Path:
    frames = np.random.default_rng(0).integers(0, 4000, size=(7, 5, 6)).astype(np.uint16)
    iop = [1, 0, 0, 0, 1, 0]
    step = np.array([0, 0, 2.0])
    write_slices(folder / "ct", frames, ipp0=np.zeros(3), iop=iop, pixel_spacing=(2, 2), step=step,
                 modality="CT")  # fmt: skip
    return folder / "ct"


def truncated_dicom(folder: Path) -> Path:
    frames = np.random.default_rng(0).integers(0, 4000, size=(7, 5, 6)).astype(np.uint16)
    path = write_nm(folder / "scan.dcm", frames, ipp=[0, 0, 0], iop=[1, 0, 0, 0, 1, 0],
                    pixel_spacing=(2, 2), spacing=2.0)  # fmt: skip
    raw = path.read_bytes()
    path.write_bytes(raw[:-100])
    return path


def singular_affine(folder: Path) -> Path:
    """sform with a zero row and no qform (nibabel cannot save a singular affine directly)."""
    header = nib.Nifti1Header()
    header.set_data_shape((12, 10, 8))
    header.set_data_dtype(np.float32)
    header["srow_x"], header["srow_y"], header["srow_z"] = [3.9, 0, 0, 0], [0, 3.9, 0, 0], [0] * 4
    header["sform_code"], header["qform_code"] = 1, 0
    path = folder / "my scan.nii.gz"
    nib.save(nib.Nifti1Image(_scan(), None, header=header), path)
    return path


EXPORT_AGAIN = r"copy or export it again"
IMAGE_CASES = [
    Case("image: corrupt .nii.gz", image_case(damaged_gz("corrupt")),
         r"unreadable NIfTI file", EXPORT_AGAIN),
    Case("image: truncated .nii.gz", image_case(damaged_gz("truncated")),
         r"unreadable NIfTI file \(EOFError: Compressed file ended", EXPORT_AGAIN),
    Case("image: 2D", image_case(nifti(np.ones((12, 10), np.float32))),
         r"2D image of shape \(12, 10\)", r"list the full reconstructed volume"),
    Case("image: 4D", image_case(nifti(np.ones((12, 10, 8, 3), np.float32))),
         r"4D image of shape \(12, 10, 8, 3\)", r"extract the one reconstructed volume"),
    Case("image: NaN voxels", image_case(nifti(with_value(np.nan))),
         r"1 voxels are NaN or infinite", r"export the image again, or replace them with 0"),
    Case("image: Inf voxels", image_case(nifti(with_value(np.inf))),
         r"1 voxels are NaN or infinite", r"export the image again, or replace them with 0"),
    Case("image: all zero", image_case(nifti(np.zeros((12, 10, 8), np.float32))),
         r"every voxel is 0", r"list the reconstructed scan instead"),
    Case("image: singular affine", image_case(singular_affine),
         r"affine is singular", r"fix the header's sform/qform"),
    Case("image: non-NM DICOM (CT series)", image_case(ct_series),
         r"DICOM image of modality CT, not a nuclear-medicine \(NM\) image",
         r"list the reconstructed DaTscan SPECT series instead"),
    Case("image: truncated DICOM", image_case(truncated_dicom),
         r"cannot decode the DICOM pixel data|unreadable DICOM file",
         r"copy it again|" + EXPORT_AGAIN),
]  # fmt: skip

CATALOGUE = CONFIG_CASES + SHEET_CASES + IMAGE_CASES


def test_catalogue_has_at_least_60_cases():
    """This file's cases, the ``CASES`` of every ``test_bad_input_*.py`` and the behaviour
    tests they list (bad inputs whose right outcome is correct behaviour, not an error)."""
    others = [
        importlib.import_module(p.stem)
        for p in sorted(Path(__file__).parent.glob("test_bad_input_*.py"))
    ]
    cases = CATALOGUE + [case for module in others for case in module.CASES]
    behaviour = [
        (module.__name__, name)
        for module in others
        for name in getattr(module, "BEHAVIOUR_TESTS", [])
    ]
    assert all(callable(getattr(importlib.import_module(m), n)) for m, n in behaviour)
    assert len({c.name for c in cases}) == len(cases), "case names are unique"
    assert len(cases) + len(behaviour) >= 60


def assert_one_clear_message(case: Case, tmp_path: Path) -> None:
    """``case`` raises one InputError line that starts with the first place it must name, names
    the others, says what is wrong and how to fix it, and nothing is written under ``out``."""
    check, where = case.make(tmp_path)
    with pytest.raises(InputError) as err:
        check()
    message = str(err.value)
    assert "\n" not in message, "one line"
    for place in where:
        assert place in message, f"the message must name {place!r}: {message}"
    assert message.startswith(where[0]), message
    assert re.search(case.problem, message), message
    assert re.search(case.fix, message), message
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir()), "nothing is written"


@pytest.mark.parametrize("case", CATALOGUE, ids=lambda c: c.name)
def test_one_clear_message(case, tmp_path):
    assert_one_clear_message(case, tmp_path)


# ---------------------------------------------------------------------------- through Snakemake


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


DRY_RUN_CASES = [
    CONFIG_CASES[0],  # unknown key
    CONFIG_CASES[4],  # fractions
    CONFIG_CASES[6],  # unknown method
    CONFIG_CASES[8],  # mistyped physics key
    SHEET_CASES[0],  # missing column
    SHEET_CASES[2],  # unknown label
    SHEET_CASES[5],  # too few per class (checked in rules/common.smk, not in read_sheet)
]


@pytest.mark.parametrize("case", DRY_RUN_CASES, ids=lambda c: c.name)
def test_snakemake_stops_before_any_job(case, tmp_path):
    """The same message from ``snakemake --dry-run``, before any job, with nothing written."""
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    _, where = case.make(inputs)
    if case in CONFIG_CASES:
        configfiles = [REPO / "config.yaml", inputs / "my config.yaml"]
    else:
        mine = inputs / "mine.yaml"
        mine.write_text(
            "cohorts:\n  mine:\n    role: development\n    source: sheet\n"
            f"    sheet: '{inputs / 'my cohort.tsv'}'\n"
        )
        configfiles = [mine]
    workdir = tmp_path / "work dir"
    proc = snakemake("--dry-run", workdir=workdir, configfiles=configfiles, check=False)
    assert proc.returncode != 0
    output = proc.stdout + proc.stderr
    lines = [line for line in output.splitlines() if line.startswith(where[0])]
    assert len(lines) == 1, output
    assert all(place in lines[0] for place in where), lines[0]
    assert re.search(case.problem, lines[0]) and re.search(case.fix, lines[0]), lines[0]
    assert "Job stats" not in output
    assert _files(workdir) == []


# ---------------------------------------------------------------------------- a finished run


def test_only_changed_scans_are_read_before_any_job(tmp_path):
    bad = tmp_path / "bad scan.nii.gz"
    bad.write_bytes(b"not a scan")
    copy = tmp_path / "ingested.nii.gz"
    copy.write_bytes(b"the good copy")
    os.utime(bad, ns=(0, 0))  # older than its copy: unchanged, not read
    check_changed_scans([(bad, copy, str(bad))])
    check_changed_scans([(bad, tmp_path / "no copy yet.nii.gz", None)])  # its ingest job checks it
    with pytest.raises(InputError, match="bad scan.nii.gz: unreadable NIfTI"):
        check_changed_scans([(bad, copy, str(tmp_path / "another scan.nii.gz"))])  # new path
    os.utime(bad)  # newer than its copy
    with pytest.raises(InputError, match="bad scan.nii.gz: unreadable NIfTI"):
        check_changed_scans([(bad, copy, str(bad))])


TARGETS = ("results/metrics/per_split.tsv",)


def snapshot(workdir: Path) -> dict[str, tuple[str, int]]:
    """Content hash and modification time of every output (logs and .snakemake aside)."""
    return {
        str(p.relative_to(workdir)): (sha256(p), p.stat().st_mtime_ns)
        for p in _files(workdir)
        if p.relative_to(workdir).parts[0] not in ("logs", ".snakemake")
    }


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def sheet_run(tmp_path_factory):
    """A finished run on a user sheet of 8 simulated scans (file names with spaces)."""
    from datspect.cohorts.simulate import simulate_subject

    default = checks.load_yaml(REPO / "config.yaml")
    cohort = default["cohorts"]["ppmi"]["simulate"]
    physics = {k: v for k, v in default["simulation"].items() if k != "cameras"}
    physics["cameras"] = {cohort["camera"]: default["simulation"]["cameras"][cohort["camera"]]}
    root = tmp_path_factory.mktemp("sheet run")
    (root / "scans").mkdir()
    rows = ["subject_id\timage\tlabel\tcohort"]
    for i in range(8):
        label = i % 2
        img, _ = simulate_subject(f"s{i:02d}", label, cohort, physics, seed=1000 + i)
        nib.save(img, root / "scans" / f"scan {i:02d}.nii.gz")
        rows.append(f"s{i:02d}\tscans/scan {i:02d}.nii.gz\t{'PD' if label else 'HC'}\tmysite")
    sheet = root / "my cohort.tsv"
    sheet.write_text("\n".join(rows) + "\n")
    config = root / "mine.yaml"
    config.write_text(
        f"cohorts:\n  mysite:\n    role: development\n    source: sheet\n    sheet: '{sheet}'\n"
        "settings: [original]\nmethods: [sbr_aal]\nsplits:\n  n_splits: 2\n"
        "preprocess:\n  registration:\n    iterations: 30\n"
    )
    workdir = root / "work dir"
    snakemake("--quiet", "--cores", "2", *TARGETS, workdir=workdir, configfiles=[config])
    yield root, workdir, config
    shutil.rmtree(root, ignore_errors=True)


def _fails_keeping_outputs(workdir, configfiles, *args) -> str:
    before = snapshot(workdir)
    assert set(TARGETS) <= set(before)
    proc = snakemake("--keep-going", *args, "--cores", "2", *TARGETS, workdir=workdir,
                     configfiles=configfiles, check=False)  # fmt: skip
    assert proc.returncode != 0
    assert snapshot(workdir) == before, "a failing run changed finished outputs"
    return proc.stderr


@pytest.mark.workflow
def test_bad_config_after_a_finished_run_changes_nothing(sheet_run):
    root, workdir, config = sheet_run
    bad = root / "bad.yaml"
    bad.write_text("splits:\n  n_splits: 1\n")
    err = _fails_keeping_outputs(workdir, [config, bad])
    assert f"{bad}: key 'splits.n_splits' has value 1" in err


@pytest.mark.workflow
def test_bad_new_scan_after_a_finished_run_changes_nothing(sheet_run):
    """The new scan fails its ingest job; the sheet, splits and tables wait for it."""
    root, workdir, config = sheet_run
    sheet = root / "my cohort.tsv"
    original = sheet.read_text()
    bad = root / "scans" / "new scan.nii.gz"
    bad.write_bytes((root / "scans" / "scan 00.nii.gz").read_bytes()[:3000])  # truncated
    try:
        sheet.write_text(original + "s08\tscans/new scan.nii.gz\tPD\tmysite\n")
        err = _fails_keeping_outputs(workdir, [config])
    finally:
        sheet.write_text(original)
        os.utime(sheet, ns=(0, 0))  # older than every output again
    assert f"{bad}: unreadable NIfTI file" in err and "copy or export it again" in err


@pytest.mark.workflow
def test_bad_replacement_scan_after_a_finished_run_changes_nothing(sheet_run):
    """A changed scan is checked before any job, so its good ingested copy is not deleted."""
    root, workdir, config = sheet_run
    scan = root / "scans" / "scan 03.nii.gz"
    good = scan.read_bytes()
    try:
        scan.write_bytes(good[: len(good) // 2])
        err = _fails_keeping_outputs(workdir, [config])
    finally:
        scan.write_bytes(good)
        os.utime(scan, ns=(0, 0))
    assert f"{scan}: unreadable NIfTI file" in err
    assert "Job stats" not in err
    proc = snakemake("--dry-run", *TARGETS, workdir=workdir, configfiles=[config])
    assert "Nothing to be done" in proc.stdout + proc.stderr

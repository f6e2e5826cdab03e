"""Bad input of the config, of ids and of operations (issue 19, items 1, 9, 11 and 12).

Config values beyond the schema's maxima, ids that break the one id rule, YTE config files and a
second run in a busy directory each give one clear message before any job; the behaviour tests
run a few of them through ``snakemake --dry-run``.  Modules new with these checks are imported
where they are used, so that each test fails on its own on a workflow without them.
"""

from __future__ import annotations

import glob
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SMALL, snakemake
from test_bad_input import (
    HEADER,
    Case,
    assert_one_clear_message,
    config_case,
    good_rows,
    sheet_case,
    validate_files,
)

from datspect import schema
from datspect.workflow import config_checks as checks

BOUND = r"use a value of at most {} \(the schema's bound, well above any real scan or study"


def maximum_case(name, text, key, value, bound):
    return Case(
        f"config: {name}",
        config_case(text, key),
        rf"{value} is greater than the maximum of {bound}",
        BOUND.format(bound),
    )


YTE = '__use_yte__: true\nseed: ?__import__("os").getpid() * 0 + 7\n'


def yte_config(text):
    def make(folder: Path):
        path = folder / "my config.yaml"
        path.write_text(text)
        return (lambda: checks.refuse_templates([REPO / "config.yaml", path])), [str(path)]

    return make


def bad_id(sid, problem):
    rows = good_rows() + [(sid, "scan x.nii.gz", "PD", "site1")]
    return Case(
        f"sheet: subject id {sid[:12]!r}",
        sheet_case(rows, HEADER, "row 10", repr(sid)),
        rf"subject_id {re.escape(repr(sid))} {problem}",
        r"rename it to ASCII letters, digits, '\.', '_' and '-', starting with a letter or digit",
    )


def slab_file_id(folder: Path):
    from datspect.cohorts.slab_folder import list_slab_folder

    for sub, name in (("HC", "case0.png"), ("PD", "case 1.png")):
        (folder / "slabs" / sub).mkdir(parents=True, exist_ok=True)
        (folder / "slabs" / sub / name).write_bytes(b"listed, not read")
    bad = folder / "slabs" / "PD" / "case 1.png"
    return (lambda: list_slab_folder(folder / "slabs", "mine")), [str(bad), "'PD-case 1'"]


HOLD = (
    "import sys; from datspect.workflow import runlock; runlock.hold(sys.argv[1]); "
    "print(1, flush=True)"
)


def holding(workdir: Path) -> subprocess.Popen:
    """A live run's lock on ``workdir``: a process that holds it until its stdin closes."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD + "; sys.stdin.read()", str(workdir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=REPO,
        env={"PYTHONPATH": str(REPO)},
    )
    assert child.stdout.readline().strip() == b"1"
    return child


def release(child: subprocess.Popen) -> None:
    child.stdin.close()
    child.wait(10)


def another_run(folder: Path):
    workdir = folder / "work dir"

    def check():
        from datspect.workflow import runlock

        child = holding(workdir)
        try:
            runlock.refuse_if_running(workdir)
        finally:
            release(child)

    return check, [str(workdir.resolve()), "(process "]


CASES = [
    maximum_case("a million splits", "splits:\n  n_splits: 1000000\n", "splits.n_splits",
                 1000000, 100),
    maximum_case("ten million subjects",
                 "cohorts:\n  ppmi:\n    simulate:\n      n_normal: 10000000\n",
                 "cohorts.ppmi.simulate.n_normal", 10000000, 5000),
    maximum_case("a billion epochs", "cnn:\n  train:\n    epochs: 1000000000\n",
                 "cnn.train.epochs", 1000000000, 10000),
    maximum_case("a huge batch", "cnn:\n  train:\n    batch_size: 1000000\n",
                 "cnn.train.batch_size", 1000000, 4096),
    maximum_case("a million MC samples",
                 "evaluation:\n  uncertainty:\n    mc_dropout_samples: 1000000\n",
                 "evaluation.uncertainty.mc_dropout_samples", 1000000, 1000),
    maximum_case("a million calibration bins",
                 "evaluation:\n  calibration:\n    ece_bins: 1000000\n",
                 "evaluation.calibration.ece_bins", 1000000, 1000),
    maximum_case("a huge smoothing FWHM", "preprocess:\n  smooth_fwhm_mm: 1.0e+6\n",
                 "preprocess.smooth_fwhm_mm", r"1000000\.0", 100),
    maximum_case("a huge camera matrix",
                 "simulation:\n  cameras:\n    ppmi:\n      shape: [100000, 128, 64]\n",
                 "simulation.cameras.ppmi.shape.0", 100000, 256),
    maximum_case("metre-sized voxels",
                 "simulation:\n  cameras:\n    ppmi:\n      voxel_mm: [1000, 3.9, 3.9]\n",
                 "simulation.cameras.ppmi.voxel_mm.0", 1000, 20),
    Case(
        "config: fifty robustness levels",
        config_case("evaluation:\n  robustness_fwhm_mm: [" + ", ".join(map(str, range(50)))
                    + "]\n", "evaluation.robustness_fwhm_mm"),
        r"is too long",
        r"list at most 20 item\(s\) \(the schema's bound",
    ),
    Case(
        "config: cohort name beyond the id rule",
        config_case("cohorts:\n  " + "c" * 70 + ":\n    role: independent\n    source: slabs\n"
                    "    slabs: {folder: x}\n", "cohorts"),
        r"does not match",
        r"use a value that matches \^\[A-Za-z\]\[A-Za-z0-9_-\]\{0,63\}\$",
    ),
    Case(
        "config: YTE template",
        yte_config(YTE),
        r"sets __use_yte__: true, a YTE template whose Python code Snakemake ran",
        r"remove __use_yte__ and write the values out",
    ),
    Case(
        "config: YTE template behind a Python tag",  # YTE's loader takes it, plain YAML not
        yte_config(YTE + 'settings: [!!python/str "original", mixed]\n'),
        r"not plain YAML \(could not determine a constructor for the tag .*python/str",
        r"remove Python tags \(!!python/\.\.\.\) and write the values out",
    ),
    bad_id("s\u00e901", r"holds 'é' \(U\+00E9\)"),
    bad_id("\u0455\u0031", r"holds 'ѕ' \(U\+0455\)"),  # a Cyrillic look-alike of 's'
    bad_id(".s01", r"starts with '\.'"),
    bad_id("-s01", r"starts with '-'"),
    bad_id("s" * 80, r"is 80 characters long"),
    Case(
        "slabs: file name beyond the id rule",
        slab_file_id,
        r"its subject id 'PD-case 1' holds ' ' \(U\+0020\)",
        r"rename the file to ASCII letters",
    ),
    Case(
        "operations: another run in the directory",
        another_run,
        r"another run \(process \d+\) is using this directory",
        r"wait for it to finish \(or stop it\) and start again",
    ),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_one_clear_message(case, tmp_path):
    assert_one_clear_message(case, tmp_path)


# ---------------------------------------------------------------------------- behaviour


def _numbers(node, path=()):
    """(key path, sub-schema) of every number and count in the schema, list lengths included."""
    if isinstance(node, dict):
        types = node.get("type")
        types = types if isinstance(types, list) else [types]
        if {"number", "integer", "array"} & set(types):
            yield path, node
        for key, value in node.items():
            yield from _numbers(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _numbers(value, (*path, i))


def test_every_count_and_size_has_a_maximum():
    """Each number has an upper bound and each list of free length a maxItems (the seed is no
    size; settings and methods are lists of unique choices), and the shipped configs fit."""
    unbounded = [
        ".".join(map(str, path))
        for path, sub in _numbers(schema.schema())
        if not {"maximum", "exclusiveMaximum", "maxItems", "enum"} & set(sub)
        and not (sub.get("items", {}).get("enum"))
        and path != ("properties", "seed")
    ]
    assert unbounded == []
    for files in (
        SMALL,
        [REPO / "configs" / "ppmi-slabs.yaml"],
        *([REPO / "config.yaml", f] for f in glob.glob(str(REPO / "configs" / "[rs]*.yaml"))),
    ):
        validate_files(files)


def test_one_id_rule():
    """The schema's cohort names and the subject wildcard use the rule of the sheet check."""
    from datspect import vocabulary

    pattern = schema.schema()["properties"]["cohorts"]["propertyNames"]["pattern"]
    assert pattern == f"^{vocabulary.COHORT_PATTERN}$"
    common = (REPO / "rules" / "common.smk").read_text()
    assert re.search(r"^\s+subject=vocabulary\.ID_PATTERN,", common, re.M)
    for sid in ("s01", "3001", "PD-case1", "a.b_c-d", "x" * 64):
        assert vocabulary.id_problem(sid) is None, sid


def _dry_run_refuses(workdir, configfiles, start, *problem):
    proc = snakemake("--dry-run", workdir=workdir, configfiles=configfiles, check=False,
                     timeout=120)  # fmt: skip
    output = proc.stdout + proc.stderr
    lines = {line for line in output.splitlines() if line.startswith(start)}
    assert proc.returncode != 0 and len(lines) == 1, output
    assert all(re.search(p, lines.pop()) for p in problem), output
    assert "Job stats" not in output
    return output


def test_dry_run_refuses_a_million_splits_at_once(tmp_path):
    """The slip that made planning grow memory without a message is one line, quickly."""
    mine = tmp_path / "big.yaml"
    mine.write_text("splits:\n  n_splits: 1000000\n")
    _dry_run_refuses(tmp_path / "work", [*SMALL, mine], str(mine), BOUND.format(100))


def test_dry_run_refuses_a_bad_id_naming_sheet_row_and_id(tmp_path):
    rows = good_rows() + [(".s08", "scan x.nii.gz", "PD", "site1")]
    check, where = sheet_case(rows, HEADER)(tmp_path)
    mine = tmp_path / "mine.yaml"
    mine.write_text(f"cohorts:\n  mine:\n    role: development\n    source: sheet\n"
                    f"    sheet: '{where[0]}'\n")  # fmt: skip
    _dry_run_refuses(tmp_path / "work", [mine], where[0], r"row 10: subject_id '\.s08'")


def test_dry_run_refuses_a_yte_config_after_snakemake_ran_it(tmp_path):
    """Snakemake runs the template's code while loading the file (the marker file shows it);
    the workflow's first line then refuses to go on."""
    marker = tmp_path / "ran"
    mine = tmp_path / "mine.yaml"
    mine.write_text(f'__use_yte__: true\nseed: ?open("{marker}", "w").write("ran") + 7\n')
    _dry_run_refuses(tmp_path / "work", [*SMALL, mine], str(mine), "__use_yte__")
    assert marker.read_text() == "ran", "Snakemake ran the template before the workflow's check"


def test_dry_run_names_a_live_run_instead_of_rerun_incomplete(tmp_path):
    workdir = tmp_path / "work"
    child = holding(workdir)
    try:
        output = _dry_run_refuses(workdir, SMALL, str(workdir), r"another run \(process \d+\)")
    finally:
        release(child)
    assert "--rerun-incomplete" not in output.replace("--rerun-incomplete or --unlock now", "")


def test_a_killed_run_leaves_no_lock(tmp_path):
    """The lock dies with its process (even on SIGKILL), so a stale file never blocks."""
    from datspect.workflow import runlock

    workdir = tmp_path / "work"
    child = holding(workdir)
    child.send_signal(signal.SIGKILL)
    child.wait(10)
    assert (workdir / runlock.LOCK_FILE).is_file()
    runlock.refuse_if_running(workdir)


BEHAVIOUR_TESTS = [
    "test_every_count_and_size_has_a_maximum",
    "test_one_id_rule",
    "test_dry_run_refuses_a_million_splits_at_once",
    "test_dry_run_refuses_a_bad_id_naming_sheet_row_and_id",
    "test_dry_run_refuses_a_yte_config_after_snakemake_ran_it",
    "test_dry_run_names_a_live_run_instead_of_rerun_incomplete",
    "test_a_killed_run_leaves_no_lock",
]

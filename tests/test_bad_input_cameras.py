"""Bad input of the leave-one-camera-out section (issue 18 part 2): camera cohorts the
experiment cannot hold out, and training-set sizes that leave no camera unseen; each gives one
clear message naming the config file and key before any job."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO
from test_bad_input import Case, assert_one_clear_message, validate_files

from datspect.errors import InputError
from datspect.evaluation import cameras

CAMERAS = REPO / "configs" / "cameras.yaml"


def cameras_case(text: str, key: str):
    """``text`` on top of the default config and configs/cameras.yaml."""

    def make(folder: Path):
        path = folder / "my config.yaml"
        path.write_text(text)
        return (lambda: validate_files([REPO / "config.yaml", CAMERAS, path])), [str(path), key]

    return make


CASES = [
    Case(
        "cameras: the development cohort listed",
        cameras_case("cameras:\n  cohorts: [ppmi, cam_lehr_sc, cam_fanbeam]\n", "'ppmi'"),
        r"is the development cohort",
        r"list independent cohorts of 3D scans, one camera each",
    ),
    Case(
        "cameras: unknown cohort",
        cameras_case("cameras:\n  cohorts: [cam_lehr_sc, cam_fanbeem, cam_ppmi]\n", "cam_fanbeem"),
        r"is not a cohort of the config",
        r"list independent cohorts",
    ),
    Case(
        "cameras: two cameras only",
        cameras_case("cameras:\n  cohorts: [cam_lehr_sc, cam_ppmi]\n", "cameras.cohorts"),
        r"lists 2 cohort\(s\); leave-one-camera-out needs at least 3",
        r"k = 2 training cameras and one unseen",
    ),
    Case(
        "cameras: two cohorts of one camera",
        cameras_case(
            "cohorts:\n  cam_ppmi_again:\n    role: independent\n    source: simulate\n"
            "    simulate: {n_normal: 5, n_reduced: 5, camera: ppmi, age_mean: 61.0, age_sd: 10.0,"
            " age_range: [30, 85], male_fraction: 0.6, atypical_fraction: 0.0,"
            " borderline_fraction: 0.0}\n"
            "cameras:\n  cohorts: [cam_ppmi, cam_lehr_sc, cam_ppmi_again]\n",
            "cameras.cohorts",
        ),
        r"two cohorts of camera 'ppmi'",
        r"list one cohort per camera",
    ),
    Case(
        "cameras: k leaves no camera unseen",
        cameras_case("cameras:\n  k: [2, 5]\n", "cameras.k"),
        r"holds 5, but with 5 cameras at most 4 can train",
        r"use k from 1 to 4",
    ),
    Case(
        "cameras: a training budget below one subject per label and camera",
        cameras_case("cameras:\n  training_subjects: 6\n", "cameras.training_subjects"),
        r"is 6, too few for a normal and a reduced subject from each of 4 training cameras",
        r"use at least 8 \(or null\)",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_one_clear_message(case, tmp_path):
    assert_one_clear_message(case, tmp_path)


def test_a_subject_on_two_cameras_is_refused():
    with pytest.raises(InputError, match=r"subject 'p-007' is in cohorts 'a' and 'b'.*one camera"):
        cameras.check_distinct_subjects({"a": ["p-001", "p-007"], "b": ["p-007"], "c": ["p-9"]})

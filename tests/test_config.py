"""Config validation: each bad input gives one clear message before any job runs."""

from __future__ import annotations

import copy
import math
import os

import pytest
from conftest import REPO

from datspect import schema
from datspect.errors import InputError
from datspect.workflow import config_checks as checks

SCHEMA = schema.SCHEMA_PATH


def validated(config):
    """Schema check, defaults filled the way Snakemake fills them, then semantic checks."""
    from snakemake.utils import validate

    checks.check_schema(config)
    validate(config, str(SCHEMA))
    checks.check_semantics(config)
    return config


def _leaves(node, path="") -> dict:
    """{dotted key: repr(value)} of every leaf: compares keys, values and types (1 vs 1.0)."""
    if isinstance(node, dict) and node:
        return {
            key: value
            for name, child in node.items()
            for key, value in _leaves(child, f"{path}.{name}".lstrip(".")).items()
        }
    return {path: repr(node)}


def test_the_repository_schema_is_the_package_schema():
    assert (REPO / "schemas" / "config.schema.yaml").resolve() == SCHEMA
    assert SCHEMA.is_relative_to(REPO / "datspect")  # shipped as package data for `classify`


def test_config_yaml_restates_the_schema_defaults(default_config):
    """config.yaml is the schema's defaults plus its cohorts: same keys, values and types.

    The minimal config lacks every section, so this also checks that Snakemake fills every
    default down to the leaves (each section needs ``default: {}``).
    """
    from snakemake.utils import validate

    minimal = {"cohorts": copy.deepcopy(default_config["cohorts"])}
    validate(minimal, str(SCHEMA))
    assert _leaves(minimal) == _leaves(default_config)
    assert _leaves(schema.with_defaults({"cohorts": default_config["cohorts"]})) == _leaves(
        default_config
    )


def test_section_defaults_come_from_the_schema(default_config):
    arch = schema.defaults("cnn", "arch")
    assert arch == default_config["cnn"]["arch"]
    arch["channels"].append(256)  # a fresh copy per call: the schema's defaults stay as they are
    assert schema.defaults("cnn", "arch") == default_config["cnn"]["arch"]
    assert schema.defaults("simulation") == default_config["simulation"]
    cohort = {"role": "development", "source": "simulate"}
    cohort["simulate"] = {"n_normal": 5, "n_reduced": 5, "camera": "ppmi", "age_mean": 60.0}
    cohort["simulate"] |= {"age_sd": 5.0, "age_range": [40.0, 80.0]}
    filled = schema.with_defaults({"cohorts": {"mine": cohort}})
    assert filled["cohorts"]["mine"]["simulate"]["male_fraction"] == 0.6
    assert "male_fraction" not in cohort["simulate"]  # the input is left alone


def test_default_config_is_valid(default_config):
    config = validated(copy.deepcopy(default_config))
    assert config["splits"]["n_splits"] == 10
    assert checks.development_cohort(config) == "ppmi"


def test_defaults_are_filled_from_the_schema(default_config):
    config = copy.deepcopy(default_config)
    del config["sbr"]
    validated(config)
    assert config["sbr"] == {
        "reference": "brain_without_striatum",
        "combine": "min",
        "hv_volume_ml": 10.0,
        "hv_slab_area_mm2": 450.0,
        "hv_margin_mm": 6.0,
        "hv_exclude_caudate": True,
    }


def test_robustness_levels_default_from_the_schema(default_config):
    config = copy.deepcopy(default_config)
    del config["evaluation"]
    validated(config)
    assert config["evaluation"] == {
        "robustness_fwhm_mm": [0, 6, 12, 18, 24],
        "calibration": {"method": "temperature", "ece_bins": 10},
        "uncertainty": {
            "source": "mc_dropout",
            "mc_dropout_samples": 20,
            "target_caught": 0.8,
            "max_flagged": 0.1,
        },
    }


def _set(config, dotted, value):
    *parents, last = dotted.split(".")
    node = config
    for key in parents:
        node = node[key]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("sbr.hv_volum_ml", 5.0, r"unknown key\(s\) \['hv_volum_ml'\] under 'sbr'"),
        ("colour", "blue", r"unknown key\(s\) \['colour'\] under '\(top level\)'"),
        ("preprocess.smooth_fwhm_mm", "18mm", r"preprocess.smooth_fwhm_mm.*'18mm'.*number"),
        ("preprocess.smooth_fwhm_mm", -3.0, r"preprocess.smooth_fwhm_mm.*-3.0"),
        ("preprocess.smooth_fwhm_mm", 0.0, r"preprocess.smooth_fwhm_mm"),
        ("splits.n_splits", 1, r"splits.n_splits.*minimum of 2"),
        ("splits.n_splits", 2.5, r"splits.n_splits.*integer"),
        ("settings", ["original", "blurred"], r"settings.1.*'blurred'"),
        ("methods", ["sbr_aal", "svm"], r"methods.1.*'svm'"),
        ("cohorts.ppmi.role", "training", r"cohorts.ppmi.role.*'training'"),
        ("cohorts.ppmi.simulate.n_normal", KeyError, r"cohorts.ppmi.simulate.*n_normal"),
        ("evaluation.robustness_fwhm_mm", [0, -6], r"evaluation.robustness_fwhm_mm.1.*-6"),
        ("evaluation.robustness_fwhm_mm", [6, 6], r"evaluation.robustness_fwhm_mm.*unique"),
        ("evaluation.calibration.method", "isotonic", r"evaluation.calibration.method.*'isotonic'"),
        ("evaluation.calibration.ece_bins", 0, r"evaluation.calibration.ece_bins.*minimum of 1"),
        (
            "simulation.cameras.ppmi.fwhm_mmm",
            16.0,
            r"^config: unknown key\(s\) \['fwhm_mmm'\] under 'simulation.cameras.ppmi'; fix the "
            r"spelling \(allowed keys here: .*psf_fwhm_mm",
        ),
        ("simulation.tissue.gray", 1.0, r"unknown key\(s\) \['gray'\] under 'simulation.tissue'"),
        (
            "simulation.disease.patterns.typical.caudate_onst",
            0.3,
            r"unknown key\(s\) \['caudate_onst'\] under 'simulation.disease.patterns.typical'",
        ),
        ("simulation.cameras.ppmi.psf_fwhm_mm", KeyError, r"simulation.cameras.ppmi.*psf_fwhm_mm"),
        ("simulation.cameras.ppmi.orientation", "LLS", r"orientation.*'LLS'.*\[LR\]\[AP\]\[SI\]"),
        ("simulation.cameras.ppmi.shape", [128, 128], r"simulation.cameras.ppmi.shape.*at least 3"),
        ("simulation.binding.subject_cv", 1.5, r"simulation.binding.subject_cv.*at most 1"),
        ("simulation.pose.scale", [0.4, 1.0], r"simulation.pose.scale.0.*at least 0.5"),
        ("cohorts.ppmi.simulate.age_sd", KeyError, r"cohorts.ppmi.simulate.*age_sd"),
    ],
)
def test_schema_errors_name_the_key(default_config, key, value, message):
    config = copy.deepcopy(default_config)
    _set(config, key, value)
    with pytest.raises(InputError, match=message):
        validated(config)


def test_split_fractions_must_sum_to_one(default_config):
    config = copy.deepcopy(default_config)
    config["splits"]["val"] = 0.3
    with pytest.raises(InputError, match=r"splits.train \+ splits.val \+ splits.test = 1.1"):
        validated(config)


def test_exactly_one_development_cohort(default_config):
    config = copy.deepcopy(default_config)
    config["cohorts"]["clinical"]["role"] = "development"
    with pytest.raises(InputError, match="exactly one cohort must have role 'development'"):
        validated(config)


def test_unknown_camera(default_config):
    config = copy.deepcopy(default_config)
    config["cohorts"]["clinical"]["simulate"]["camera"] = "anger"
    with pytest.raises(InputError, match=r"camera is 'anger', not one of .*clinic, ppmi"):
        validated(config)


def test_sheet_cohort_needs_a_sheet(default_config):
    config = copy.deepcopy(default_config)
    config["cohorts"]["clinical"] = {"role": "independent", "source": "sheet"}
    with pytest.raises(InputError, match="cohorts.clinical.sheet"):
        validated(config)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("simulation.pose.scale", [1.1, 0.9], r"simulation.pose.scale is \[1.1, 0.9\].*swap"),
        ("cohorts.clinical.simulate.age_range", [90.0, 35.0], r"age_range is \[90.0, 35.0\]"),
        ("simulation.disease.patterns.symmetric.asymmetry", [1.0, 0.9], r"symmetric.asymmetry"),
        ("simulation.binding.age_ref", math.nan, r"'simulation.binding.age_ref' is not a finite"),
        ("simulation.cameras.clinic.head_offset_mm", [0.0, math.inf, 0.0], r"head_offset_mm.1'"),
        (
            "simulation.cameras.ppmi.penetration_fraction",
            0.8,
            r"cameras.ppmi: scatter_fraction \+ penetration_fraction = 1.1, must be < 1",
        ),
        (
            "simulation.disease.atypical_weights",
            {"symmetric": 0.0, "caudate_dominant": 0.0},
            r"atypical_weights are all 0; give at least one pattern a positive weight",
        ),
    ],
)
def test_checks_beyond_the_schema_name_the_key(default_config, key, value, message):
    config = copy.deepcopy(default_config)
    _set(config, key, value)
    with pytest.raises(InputError, match=message):
        validated(config)


def test_relative_paths_are_relative_to_the_config_file_that_sets_them(tmp_path):
    from snakemake.utils import update_config

    (tmp_path / "mine").mkdir()
    base = tmp_path / "base.yaml"
    base.write_text(
        "cohorts:\n  a: {role: development, source: sheet, sheet: sheets/a.tsv}\n"
        "  b: {role: independent, source: slabs, slabs: {folder: /data/slabs}}\n"
        "preprocess: {template: ../template.nii.gz}\n"
    )
    mine = tmp_path / "mine" / "changes.yaml"
    mine.write_text("preprocess: {template: t1.nii.gz}\ncohorts:\n  c: {sheet: ~/c.tsv}\n")
    config = {}
    for file in (base, mine):
        update_config(config, schema.load_yaml(file))
    checks.resolve_paths(config, files=[base, mine])
    assert config["cohorts"]["a"]["sheet"] == str(tmp_path / "sheets" / "a.tsv")
    assert config["cohorts"]["b"]["slabs"]["folder"] == "/data/slabs"
    assert config["cohorts"]["c"]["sheet"] == os.path.expanduser("~/c.tsv")
    assert config["preprocess"]["template"] == str(tmp_path / "mine" / "t1.nii.gz")
    with pytest.raises(InputError, match=r"preprocess.template is the relative path.*--config"):
        checks.resolve_paths({"preprocess": {"template": "t1.nii.gz"}})


def test_slab_config_finds_the_slabs_next_to_the_repository():
    """configs/ppmi-slabs.yaml, run from the repository as its header says."""
    path = REPO / "configs" / "ppmi-slabs.yaml"
    config = schema.load_yaml(path)
    checks.resolve_paths(config, files=[path])
    folder = config["cohorts"]["ppmi_slabs"]["slabs"]["folder"]
    assert folder == str(REPO.parent / "shared" / "data" / "ppmi-slabs")

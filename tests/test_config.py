"""Config validation: each bad input gives one clear message before any job runs."""

from __future__ import annotations

import copy

import pytest
from conftest import REPO

from datspect.errors import InputError
from datspect.workflow import config_checks as checks

SCHEMA = REPO / "schemas" / "config.schema.yaml"


def validated(config):
    """Schema check, defaults filled the way Snakemake fills them, then semantic checks."""
    from snakemake.utils import validate

    checks.check_schema(config, SCHEMA)
    validate(config, str(SCHEMA))
    checks.check_semantics(config)
    return config


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
    assert config["evaluation"] == {"robustness_fwhm_mm": [0, 6, 12, 18, 24]}


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


def test_config_yaml_states_the_code_defaults(default_config):
    """The documented defaults in config.yaml are the ones the package falls back to."""
    from datspect.cnn.data import DEFAULT_AUGMENT
    from datspect.cnn.model import DEFAULT_ARCH
    from datspect.cnn.train import DEFAULT_TRAIN
    from datspect.cohorts.simulate import DEFAULT_COHORTS, DEFAULT_PHYSICS

    assert default_config["simulation"] == DEFAULT_PHYSICS
    for name, cohort in DEFAULT_COHORTS.items():
        assert default_config["cohorts"][name]["simulate"] == cohort
    assert default_config["cnn"]["arch"] == DEFAULT_ARCH
    train = dict(default_config["cnn"]["train"])
    assert train.pop("augment") == DEFAULT_AUGMENT
    assert train == {k: v for k, v in DEFAULT_TRAIN.items() if k != "augment"}

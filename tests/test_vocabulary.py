"""The vocabulary: its canonical order, and the config schema that has to restate it in YAML."""

from __future__ import annotations

from conftest import REPO

from datspect import vocabulary
from datspect.workflow.config_checks import load_yaml


def test_ordered_puts_known_values_first_then_the_rest_sorted():
    values = ["mixed", "zeta", "original", "mixed", "alpha"]
    assert vocabulary.ordered(values, vocabulary.SETTINGS) == ["original", "mixed", "alpha", "zeta"]


def test_config_schema_lists_the_vocabulary():
    schema = load_yaml(REPO / "schemas" / "config.schema.yaml")["properties"]
    for key, names, default in (
        ("settings", vocabulary.SETTINGS, vocabulary.STUDY_SETTINGS),
        ("methods", vocabulary.METHODS, vocabulary.METHODS),
    ):
        assert tuple(schema[key]["items"]["enum"]) == names
        assert tuple(schema[key]["default"]) == default
    assert set(vocabulary.SBR_COLUMN) | {"cnn"} == set(vocabulary.METHODS)
    assert set(vocabulary.METHOD_NAMES) == set(vocabulary.METHODS)
    assert set(vocabulary.SBR_REGION_NAMES) == set(vocabulary.SBR_COLUMN)
    assert set(vocabulary.IMAGES_OF_SETTING) == set(vocabulary.SETTINGS)


def test_sbr_methods_skip_cnn_only_settings_and_augmented_trains_on_originals():
    pairs = vocabulary.method_settings(vocabulary.METHODS, vocabulary.SETTINGS)
    assert ("cnn", "augmented") in pairs
    assert ("sbr_aal", "augmented") not in pairs and ("sbr_hv", "augmented") not in pairs
    assert len(pairs) == len(vocabulary.METHODS) * len(vocabulary.STUDY_SETTINGS) + 1
    assert vocabulary.TRAINING_IMAGES["augmented"] == ("original",)
    assert vocabulary.IMAGES_OF_SETTING["augmented"] == vocabulary.IMAGES_OF_SETTING["mixed"]
    for setting in vocabulary.STUDY_SETTINGS:
        assert vocabulary.TRAINING_IMAGES[setting] == vocabulary.IMAGES_OF_SETTING[setting]

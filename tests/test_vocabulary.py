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
    for key, names in (("settings", vocabulary.SETTINGS), ("methods", vocabulary.METHODS)):
        assert tuple(schema[key]["items"]["enum"]) == names
        assert tuple(schema[key]["default"]) == names
    assert set(vocabulary.SBR_COLUMN) | {"cnn"} == set(vocabulary.METHODS)
    assert set(vocabulary.METHOD_NAMES) == set(vocabulary.METHODS)
    assert set(vocabulary.SBR_REGION_NAMES) == set(vocabulary.SBR_COLUMN)
    assert set(vocabulary.IMAGES_OF_SETTING) == set(vocabulary.SETTINGS)

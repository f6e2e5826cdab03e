"""The configuration schema: the one place that holds every config key, its bounds and default.

The schema ships with the package (``datspect/schemas/config.schema.yaml``; the repository's
``schemas/`` links to it), so the workflow and the installed ``classify`` command validate against
the same file.  Defaults are filled the way ``snakemake.utils.validate`` fills them: a property
missing from an object takes its ``default``, and every section defaults to ``{}``, so the
defaults of a section left out are filled down to its leaves.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import jsonschema
import yaml

from datspect.errors import InputError

SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"


def load_yaml(path: str | Path) -> dict:
    """Read a YAML file with ``yaml.safe_load`` (never the unsafe loader); empty gives ``{}``."""
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    return data if data is not None else {}


@functools.cache
def _schema() -> dict:
    return load_yaml(SCHEMA_PATH)


def schema() -> dict:
    """The config schema (a copy: callers may change it)."""
    return copy.deepcopy(_schema())


def _set_defaults(validator, properties, instance, schema):
    # A copy per insertion: the cached schema's defaults must never end up shared or changed.
    if isinstance(instance, dict):
        for key, sub in properties.items():
            if "default" in sub:
                instance.setdefault(key, copy.deepcopy(sub["default"]))
    yield from jsonschema.Draft202012Validator.VALIDATORS["properties"](
        validator, properties, instance, schema
    )


_Filling = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, {"properties": _set_defaults}
)


def first_error(config: dict) -> jsonschema.ValidationError | None:
    """The most relevant error the schema finds in ``config`` (left unchanged), or None."""
    validator = jsonschema.Draft202012Validator(_schema())
    return jsonschema.exceptions.best_match(validator.iter_errors(config))


def with_defaults(config: dict, source: str = "config") -> dict:
    """A copy of ``config``, validated, with every missing key set to the schema's default.

    Raises
    ------
    InputError
        Naming ``source`` and the first key the schema rejects.
    """
    filled = copy.deepcopy(config)
    # Defaults are filled while the validator walks the config, so walk all of it.
    error = jsonschema.exceptions.best_match(_Filling(_schema()).iter_errors(filled))
    if error is not None:
        key = ".".join(map(str, error.absolute_path)) or "(top level)"
        raise InputError(f"{source}: key '{key}': {error.message} (schema: {SCHEMA_PATH.name})")
    return filled


def defaults(*section: str) -> dict:
    """The defaults of a section, e.g. ``defaults("cnn", "arch")``; a fresh copy per call."""
    filled: dict = {}
    for _ in _Filling(_schema()).iter_errors(filled):
        pass  # an empty config lacks the required cohorts; only the filling matters here
    for key in section:
        filled = filled[key]
    return filled

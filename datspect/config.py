"""Configuration checks that give one clear message before any heavy work starts.

The JSON schema (``schemas/config.schema.yaml``) catches unknown keys and wrong types; the
checks here catch what a schema cannot express (fractions summing to 1, exactly one development
cohort, camera names that exist, a sheet for every sheet cohort).
"""

from __future__ import annotations

import math
from pathlib import Path

import jsonschema
import yaml

from datspect.errors import InputError
from datspect.splits import PARTS as SPLIT_PARTS


def load_yaml(path: str | Path) -> dict:
    """Read a YAML file with ``yaml.safe_load`` (never the unsafe loader)."""
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    return data if data is not None else {}


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def schema_message(error: jsonschema.ValidationError, source: str) -> str:
    """Turn a jsonschema error into one line naming the key, the problem and the fix."""
    key = _key_path(error)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        hint = f"allowed keys here: {', '.join(allowed)}" if allowed else "remove it"
        return f"{source}: unknown key(s) {extra} under '{key}'; fix the spelling ({hint})."
    if error.validator == "required":
        return f"{source}: '{key}' is missing a required key: {error.message}."
    if error.validator in ("type", "enum"):
        return f"{source}: key '{key}' has value {error.instance!r}: {error.message}."
    return f"{source}: key '{key}': {error.message}."


def check_schema(config: dict, schema_path: str | Path, source: str = "config") -> None:
    """Validate ``config`` against the schema; raise :class:`InputError` with the first error."""
    schema = load_yaml(schema_path)
    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is not None:
        raise InputError(schema_message(error, source))


def check_semantics(config: dict, source: str = "config") -> None:
    """Checks across keys; assumes the schema passed and defaults are filled."""
    splits = config["splits"]
    total = sum(splits[p] for p in SPLIT_PARTS)
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise InputError(
            f"{source}: splits.train + splits.val + splits.test = {total:g}, must be 1; "
            "e.g. train: 0.6, val: 0.2, test: 0.2."
        )
    roles = {name: c["role"] for name, c in config["cohorts"].items()}
    development = [name for name, role in roles.items() if role == "development"]
    if len(development) != 1:
        raise InputError(
            f"{source}: exactly one cohort must have role 'development', found "
            f"{len(development)} ({', '.join(development) or 'none'}); set role: independent "
            "on the others."
        )
    cameras = config.get("simulation", {}).get("cameras", {})
    for name, cohort in config["cohorts"].items():
        if cohort["source"] == "sheet" and not cohort.get("sheet"):
            raise InputError(
                f"{source}: cohort '{name}' has source 'sheet' but no 'sheet' path; add "
                f"cohorts.{name}.sheet: path/to/cohort.tsv."
            )
        if cohort["source"] == "slabs" and not cohort.get("slabs"):
            raise InputError(
                f"{source}: cohort '{name}' has source 'slabs' but no 'slabs' section; add "
                f"cohorts.{name}.slabs.folder: path/to/folder (with HC/ and PD/ sub-folders)."
            )
        if cohort["source"] == "slabs" and config["cnn"]["input"] != "slab":
            raise InputError(
                f"{source}: cohort '{name}' holds 2D slabs, but cnn.input is "
                f"'{config['cnn']['input']}'; set cnn.input: slab."
            )
        if cohort["source"] == "simulate":
            sim = cohort.get("simulate")
            if not sim:
                raise InputError(
                    f"{source}: cohort '{name}' has source 'simulate' but no 'simulate' "
                    f"section; add cohorts.{name}.simulate with n_normal, n_reduced, camera."
                )
            if sim["camera"] not in cameras:
                raise InputError(
                    f"{source}: cohorts.{name}.simulate.camera is '{sim['camera']}', not one of "
                    f"simulation.cameras ({', '.join(sorted(cameras)) or 'none defined'})."
                )
    if "cnn" in config["methods"] and "mixed" not in config["settings"]:
        independent = [n for n, r in roles.items() if r == "independent"]
        if independent:
            raise InputError(
                f"{source}: independent cohorts ({', '.join(independent)}) are scored with the "
                "mixed-setting models; add 'mixed' to settings."
            )


def development_cohort(config: dict) -> str:
    """Name of the (single) development cohort."""
    return next(n for n, c in config["cohorts"].items() if c["role"] == "development")

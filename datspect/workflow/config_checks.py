"""Configuration checks that give one clear message before any heavy work starts.

The JSON schema (:mod:`datspect.schema`) catches unknown keys, wrong types and values out of
bounds; the checks here catch what a schema cannot express (fractions summing to 1, exactly one
development cohort, camera names that exist, ``[low, high]`` ranges, finite numbers, a sheet for
every sheet cohort).  :func:`resolve_paths` applies the one rule for paths in a config.
"""

from __future__ import annotations

import json
import math
import os

import jsonschema
import yaml

from datspect import schema, vocabulary
from datspect.errors import InputError
from datspect.evaluation.splits import PARTS as SPLIT_PARTS
from datspect.schema import load_yaml


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


_TYPE_NAMES = {
    "number": "a number (e.g. 18.0)",
    "integer": "a whole number (e.g. 10)",
    "string": "text",
    "boolean": "true or false",
    "array": "a list (e.g. [a, b])",
    "object": "a section of keys",
    "null": "null",
}
_BOUNDS = {
    "minimum": "of at least",
    "exclusiveMinimum": "above",
    "maximum": "of at most",
    "exclusiveMaximum": "below",
}

# Why counts and sizes are bounded (a maximum of at most 1 is a share and needs no reason).
_WHY_MAXIMUM = (
    "the schema's bound, well above any real scan or study: it keeps a slip from making "
    "planning, memory or run time grow without bound"
)


def _fix(error: jsonschema.ValidationError) -> str:
    """How to repair a value the schema rejected."""
    value = error.validator_value
    if error.validator == "type":
        types = [value] if isinstance(value, str) else value
        return "write " + " or ".join(_TYPE_NAMES.get(t, t) for t in types)
    if error.validator == "enum":
        return "use one of: " + ", ".join(map(str, value))
    if error.validator == "maximum" and value > 1:
        return f"use a value of at most {value} ({_WHY_MAXIMUM})"
    if error.validator in _BOUNDS:
        return f"use a value {_BOUNDS[error.validator]} {value}"
    if error.validator == "minItems":
        return f"list at least {value} item(s)"
    if error.validator == "maxItems":
        return f"list at most {value} item(s) ({_WHY_MAXIMUM})"
    if error.validator == "uniqueItems":
        return "list each item once"
    if error.validator == "pattern":
        return f"use a value that matches {value}"
    return f"see its description in schemas/{schema.SCHEMA_PATH.name}"


def locate_key(files, path) -> str | None:
    """The last of the config ``files`` that sets the key ``path`` (later files win)."""
    for file in reversed([str(f) for f in files]):
        try:
            node = load_yaml(file)
        except (OSError, yaml.YAMLError):
            continue
        for part in path:
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and part < len(node):
                node = node[part]
            else:
                break
        else:
            return file
    return None


def schema_message(error: jsonschema.ValidationError, source: str, files=()) -> str:
    """Turn a jsonschema error into one line naming the file and key, the problem and the fix.

    ``files`` are the config files in the order Snakemake merged them; the message names the
    one that sets the offending key, else ``source``.
    """
    key = _key_path(error)
    path = list(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        where = locate_key(files, path + extra[:1]) or source
        hint = f"allowed keys here: {', '.join(allowed)}" if allowed else "remove it"
        return f"{where}: unknown key(s) {extra} under '{key}'; fix the spelling ({hint})."
    where = locate_key(files, path) or source
    if error.validator == "required":
        return (
            f"{where}: '{key}' is missing a required key: {error.message}; add it (config.yaml "
            "shows every key with an example)."
        )
    return f"{where}: key '{key}' has value {error.instance!r}: {error.message}; {_fix(error)}."


def refuse_templates(files) -> None:
    """Refuse a config file that asks Snakemake for YTE templating (``__use_yte__: true``).

    Snakemake has already run such a file's Python expressions while loading it, before the
    workflow's first line (README, "Reliability"); the workflow can only stop there, so that no
    job runs on a config that ran code.  Each file is read again as Snakemake reads it, JSON
    first (never templated), then as plain YAML: YTE's loader also takes Python tags
    (``!!python/str``) that plain YAML refuses, and a file that needs them is refused too.
    """
    for file in map(str, files):
        try:
            with open(file, encoding="utf-8") as handle:
                text = handle.read()
        except OSError:
            continue  # Snakemake could not have read it either
        try:
            json.loads(text)
            continue
        except ValueError:
            pass
        try:
            node = yaml.safe_load(text)
        except yaml.YAMLError as err:
            problem = str(err).splitlines()[0]
            raise InputError(
                f"{file}: not plain YAML ({problem}); datspect reads config files with plain "
                "YAML only: remove Python tags (!!python/...) and write the values out."
            ) from err
        if isinstance(node, dict) and node.get("__use_yte__"):
            raise InputError(
                f"{file}: sets __use_yte__: true, a YTE template whose Python code Snakemake ran "
                "while loading it (before any check of this workflow could stop it); datspect "
                "takes plain YAML only: remove __use_yte__ and write the values out (README, "
                '"Reliability").'
            )


def check_schema(config: dict, source: str = "config", files=()) -> None:
    """Validate ``config`` against the schema; raise :class:`InputError` with the first error."""
    error = schema.first_error(config)
    if error is not None:
        raise InputError(schema_message(error, source, files))


def _path_keys(node: dict, node_schema: dict, prefix=()):
    """Key paths in ``node`` that hold text and whose schema marks a path (``format: path``)."""
    for key, value in node.items():
        sub = node_schema.get("properties", {}).get(key, node_schema.get("additionalProperties"))
        if not isinstance(sub, dict):
            continue
        if sub.get("format") == "path":
            if isinstance(value, str):
                yield (*prefix, key)
        elif isinstance(value, dict):
            yield from _path_keys(value, sub, (*prefix, key))


def resolve_paths(config: dict, source: str = "config", files=()) -> None:
    """Make every path in ``config`` absolute, in place: the one rule for paths in a config.

    A relative path is relative to the folder of the config file that sets it (``~`` is the
    home folder), wherever Snakemake runs and whatever ``--directory`` says.  ``files`` as for
    :func:`schema_message`; a relative path that no file sets (``--config``) is an error.
    """
    for path in _path_keys(config, schema.schema()):
        *parents, last = path
        node = config
        for key in parents:
            node = node[key]
        value = os.path.expanduser(node[last])
        if not os.path.isabs(value):
            file = locate_key(files, path)
            if file is None:
                raise InputError(
                    f"{source}: {'.'.join(path)} is the relative path {value!r} but is set in no "
                    "config file (--config); give an absolute path."
                )
            value = os.path.join(os.path.dirname(file), value)
        node[last] = os.path.abspath(value)


def _locate_any(files, paths, source: str) -> str:
    """The last config file that sets any of ``paths``, else ``source``."""
    for file in reversed([str(f) for f in files]):
        if any(locate_key([file], path) for path in paths):
            return file
    return source


def _non_finite(node, path=()):
    """Key paths of NaN or infinite numbers (schema bounds let NaN through)."""
    if isinstance(node, float) and not math.isfinite(node):
        yield path
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _non_finite(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _non_finite(value, (*path, i))


def _ranges(config: dict):
    """The ``[low, high]`` ranges of the config: (key path, value)."""
    sim = config["simulation"]
    yield ("simulation", "pose", "scale"), sim["pose"]["scale"]
    yield ("simulation", "disease", "borderline_factor"), sim["disease"]["borderline_factor"]
    for name, pattern in sim["disease"]["patterns"].items():
        yield ("simulation", "disease", "patterns", name, "asymmetry"), pattern["asymmetry"]
    for name, cohort in config["cohorts"].items():
        if cohort.get("simulate"):
            yield ("cohorts", name, "simulate", "age_range"), cohort["simulate"]["age_range"]
    for key in ("blur_fwhm_mm", "noise_sd"):
        yield ("cnn", "degrade", key), config["cnn"]["degrade"][key]


def _dotted(path) -> str:
    return ".".join(map(str, path))


def check_semantics(config: dict, source: str = "config", files=()) -> None:
    """Checks across keys; assumes the schema passed and defaults are filled.

    ``files`` as for :func:`schema_message`: the message names the file that sets the keys.
    """
    for path in _non_finite(config):
        where = locate_key(files, path) or source
        raise InputError(f"{where}: key '{_dotted(path)}' is not a finite number; write one.")
    for path, (low, high) in _ranges(config):
        if low > high:
            where = locate_key(files, path) or source
            raise InputError(
                f"{where}: {_dotted(path)} is [{low}, {high}], not [low, high]; swap them."
            )
    if not any(w > 0 for w in config["simulation"]["disease"]["atypical_weights"].values()):
        key = ["simulation", "disease", "atypical_weights"]
        raise InputError(
            f"{locate_key(files, key) or source}: simulation.disease.atypical_weights are all "
            "0; give at least one pattern a positive weight."
        )
    splits = config["splits"]
    total = sum(splits[p] for p in SPLIT_PARTS)
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        where = _locate_any(files, [["splits", p] for p in SPLIT_PARTS], source)
        raise InputError(
            f"{where}: splits.train + splits.val + splits.test = {total:g}, must be 1; "
            "e.g. train: 0.6, val: 0.2, test: 0.2."
        )
    roles = {name: c["role"] for name, c in config["cohorts"].items()}
    development = [name for name, role in roles.items() if role == "development"]
    if len(development) != 1:
        where = _locate_any(files, [["cohorts", n, "role"] for n in roles], source)
        raise InputError(
            f"{where}: exactly one cohort must have role 'development', found "
            f"{len(development)} ({', '.join(development) or 'none'}); set role: independent "
            "on the others."
        )
    cameras = config["simulation"]["cameras"]
    for name, cam in cameras.items():
        broad = cam["scatter_fraction"] + cam["penetration_fraction"]
        if broad >= 1.0:
            key = ["simulation", "cameras", name, "penetration_fraction"]
            raise InputError(
                f"{locate_key(files, key) or source}: simulation.cameras.{name}: "
                f"scatter_fraction + penetration_fraction = {broad:g}, must be < 1 (the rest of "
                "the counts are the primary image); lower one of them."
            )
    for name, cohort in config["cohorts"].items():
        if cohort["source"] == "sheet" and not cohort.get("sheet"):
            where = _locate_any(files, [["cohorts", name]], source)
            raise InputError(
                f"{where}: cohort '{name}' has source 'sheet' but no 'sheet' path; add "
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
                where = _locate_any(files, [["cohorts", name]], source)
                raise InputError(
                    f"{where}: cohort '{name}' has source 'simulate' but no 'simulate' "
                    f"section; add cohorts.{name}.simulate with n_normal, n_reduced, camera."
                )
            if sim["camera"] not in cameras:
                where = _locate_any(files, [["cohorts", name, "simulate", "camera"]], source)
                raise InputError(
                    f"{where}: cohorts.{name}.simulate.camera is '{sim['camera']}', not one of "
                    f"simulation.cameras ({', '.join(sorted(cameras)) or 'none defined'}); use "
                    "one of those or define the camera under simulation.cameras."
                )
    cnn_only = [s for s in config["settings"] if s in vocabulary.CNN_ONLY_SETTINGS]
    if cnn_only and "cnn" not in config["methods"]:
        where = _locate_any(files, [["settings"]], source)
        raise InputError(
            f"{where}: settings lists {', '.join(cnn_only)}, a way to train the CNN, but methods "
            "has no 'cnn'; add 'cnn' to methods or remove it from settings."
        )
    if "cnn" in config["methods"] and "mixed" not in config["settings"]:
        independent = [n for n, r in roles.items() if r == "independent"]
        if independent:
            where = _locate_any(files, [["settings"]], source)
            raise InputError(
                f"{where}: independent cohorts ({', '.join(independent)}) are scored with the "
                "mixed-setting models; add 'mixed' to settings."
            )
    _check_cameras(config, source, files)


def _check_cameras(config: dict, source: str, files) -> None:
    """The leave-one-camera-out cohorts: independent volume cohorts, one camera each, and
    training-set sizes a held-out camera is left by."""
    listed = config["cameras"]["cohorts"]
    if not listed:
        return
    where = _locate_any(files, [["cameras", "cohorts"]], source)
    cohorts = config["cohorts"]
    for name in listed:
        spec = cohorts.get(name)
        problem = (
            "is not a cohort of the config"
            if spec is None
            else "is the development cohort (its models are the study's)"
            if spec["role"] == "development"
            else "holds 2D slabs; the experiment compares cameras of 3D scans"
            if spec["source"] == "slabs"
            else None
        )
        if problem:
            raise InputError(
                f"{where}: cameras.cohorts lists '{name}', which {problem}; list independent "
                "cohorts of 3D scans, one camera each."
            )
    if len(listed) < 3:
        raise InputError(
            f"{where}: cameras.cohorts lists {len(listed)} cohort(s); leave-one-camera-out "
            "needs at least 3 (k = 2 training cameras and one unseen)."
        )
    simulated = [
        cohorts[n]["simulate"]["camera"] for n in listed if cohorts[n]["source"] == "simulate"
    ]
    twice = sorted({c for c in simulated if simulated.count(c) > 1})
    if twice:
        raise InputError(
            f"{where}: cameras.cohorts holds two cohorts of camera '{twice[0]}'; a held-out "
            "camera must be one no model was trained on: list one cohort per camera."
        )
    bad_k = [k for k in config["cameras"]["k"] if k >= len(listed)]
    if bad_k:
        raise InputError(
            f"{_locate_any(files, [['cameras', 'k']], source)}: cameras.k holds {bad_k[0]}, but "
            f"with {len(listed)} cameras at most {len(listed) - 1} can train and leave one "
            f"unseen; use k from 1 to {len(listed) - 1} (or [] for all)."
        )
    budget = config["cameras"]["training_subjects"]
    largest = max(config["cameras"]["k"] or [len(listed) - 1])
    if budget is not None and budget < 2 * largest:
        raise InputError(
            f"{_locate_any(files, [['cameras', 'training_subjects']], source)}: "
            f"cameras.training_subjects is {budget}, too few for a normal and a reduced subject "
            f"from each of {largest} training cameras; use at least {2 * largest} (or null)."
        )


def development_cohort(config: dict) -> str:
    """Name of the (single) development cohort."""
    return next(n for n, c in config["cohorts"].items() if c["role"] == "development")

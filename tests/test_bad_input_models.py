"""Bad model files: the workflow's CNN checkpoints, the exported model folder ``classify`` loads,
and a CNN device the machine lacks.

Each catalogue case builds the bad input in a temporary folder and calls what the workflow or
``classify`` calls: :func:`datspect.deploy.export.load_model` on an export folder written by the
real :func:`~datspect.deploy.export.export_model` (tiny CNNs, untrained), the checkpoint loader of
the export and saliency jobs, or the checks Snakemake's ``onstart`` makes on the planned jobs
(:mod:`datspect.workflow.preflight`).  The behaviour tests run Snakemake on a finished-looking run
folder (every output present, same time stamp, tiny real checkpoints) and check that a failing
rerun keeps its outputs.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO, SMALL, snakemake
from test_bad_input import Case, assert_one_clear_message, snapshot

from datspect.cnn.checkpoint import load_checkpoint, save_checkpoint, sidecar_path
from datspect.cnn.data import make_input_spec
from datspect.cnn.model import build_model
from datspect.deploy import export
from datspect.errors import InputError
from datspect.io.tsv import write_tsv
from datspect.workflow.config_checks import load_yaml

TINY = {"channels": [2, 2, 2], "dense_units": [4]}
SLAB = (109, 91)
SPLITS = (0, 1)


def tiny_checkpoint(path: Path, seed: int = 0) -> Path:
    """A checkpoint as train_cnn writes it: weights and sidecar (sha256 of the weights)."""
    torch.manual_seed(seed)
    save_checkpoint(
        build_model(TINY, SLAB),
        path,
        arch=TINY,
        input_spec=make_input_spec("slab", SLAB),
        train_cfg={},
        seed=seed,
        metrics={"val_loss": 0.7},
    )
    return path


def write_export(folder: Path) -> Path:
    """``folder/model``: the export of two tiny CNNs and made-up SBR cutoffs, written by the
    workflow's own export function."""
    src = folder / "run"
    src.mkdir(parents=True)
    weights, calibrations, cutoffs = {}, {}, {"sbr_aal": {}, "sbr_hv": {}}
    for split in SPLITS:
        weights[split] = tiny_checkpoint(src / f"model-{split}.pt", seed=split)
        calibrations[split] = src / f"calibration-{split}.json"
        calibrations[split].write_text(
            json.dumps(
                {
                    "calibration": {"method": "temperature", "temperature": 1.5},
                    "inconclusive": {"half_width": 0.1, "source": "single_pass"},
                }
            )
        )
        for method in cutoffs:
            cutoffs[method][split] = src / f"{method}-{split}.json"
            cutoffs[method][split].write_text(
                json.dumps({"cutoff": 2.0, "youden_j": 0.8, "inconclusive": {"half_width": 0.1}})
            )
    template = src / "template.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 5, 6), np.float32), np.eye(4)), template)
    sbr = src / "sbr.tsv"
    write_tsv(
        pd.DataFrame(
            {
                "cohort": ["ppmi"] * 4,
                "subject_id": ["a", "a", "b", "b"],
                "image_setting": ["original", "smoothed"] * 2,
                "label": [0, 0, 1, 1],
                "putamen": [3.0, 2.9, 1.2, 1.1],
                "hv_putamen": [4.0, 3.8, 1.5, 1.4],
            }
        ),
        sbr,
    )
    per_split = src / "per_split.tsv"
    per_split.write_text("setting\tsplit\tauc\nmixed\t0\t0.9\nmixed\t1\t0.8\n")
    out = folder / "model"
    export.export_model(
        out_dir=out,
        weights=weights,
        calibrations=calibrations,
        cutoffs=cutoffs,
        template=template,
        sbr_table=sbr,
        per_split=per_split,
        sources=[sbr],
        config=load_yaml(REPO / "config.yaml"),
        development="ppmi",
    )
    shutil.rmtree(src)
    return out


@functools.cache
def _exported() -> Path:
    return write_export(Path(tempfile.mkdtemp(prefix="datspect-export-")))


@pytest.fixture(autouse=True, scope="module")
def _remove_export():
    yield
    if _exported.cache_info().currsize:
        shutil.rmtree(_exported().parent, ignore_errors=True)


def model_folder(folder: Path) -> Path:
    """A fresh copy of the module's export (written once) in ``folder``."""
    return Path(shutil.copytree(_exported(), folder / "model"))


def edit_manifest(model: Path, edit) -> Path:
    path = model / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))
    return path


def rehash(model: Path, rel: str) -> None:
    """Record the current sha256 of ``rel`` in the manifest: a careless or hostile re-hash."""
    digest = hashlib.sha256((model / rel).read_bytes()).hexdigest()
    edit_manifest(model, lambda m: m["files"].__setitem__(rel, digest))


WEIGHTS = "cnn/split-1.safetensors"
REEXPORT = r"re-run the export \(snakemake --directory RUN results/model/manifest\.json\)"


def manifest_case(edit, entry: str):
    """A manifest edited by ``edit(manifest, model, folder)``; the check is ``load_model``."""

    def make(folder: Path):
        model = model_folder(folder)
        manifest = json.loads((model / "manifest.json").read_text())
        edit(manifest, model, folder)
        (model / "manifest.json").write_text(json.dumps(manifest))
        return (lambda: export.load_model(model)), [str(model / "manifest.json"), entry]

    return make


def _elsewhere(manifest, model, folder):
    """The weights moved out of the folder; the manifest names them there with their hash."""
    elsewhere = folder / "elsewhere"
    elsewhere.mkdir()
    shutil.move(model / WEIGHTS, elsewhere / "split-1.safetensors")
    rel = "../../elsewhere/split-1.safetensors"
    manifest["files"][rel] = manifest["files"].pop(WEIGHTS)
    manifest["cnn"]["models"][1]["file"] = rel


def _absolute(manifest, model, folder):
    outside = folder / "template.nii.gz"
    shutil.copyfile(model / "template.nii.gz", outside)
    manifest["files"][str(outside)] = manifest["files"].pop("template.nii.gz")
    manifest["template"] = str(outside)


def _symlink(manifest, model, folder):
    """A link inside the folder to a file outside it, with the same bytes (so the same hash)."""
    outside = folder / "sbr_development.tsv"
    shutil.move(model / "sbr_development.tsv", outside)
    (model / "sbr_development.tsv").symlink_to(outside)


def _unlisted(manifest, model, folder):
    """A template inside the folder whose sha256 the manifest does not list."""
    shutil.copyfile(model / "template.nii.gz", model / "other template.nii.gz")
    manifest["template"] = "other template.nii.gz"


def _no_cnn_models(manifest, model, folder):
    del manifest["cnn"]["models"]


def _even_kernel(manifest, model, folder):
    manifest["cnn"]["arch"]["kernel_size"] = 4


def weights_case(write):
    """``write(path)`` replaces the exported weights; their sha256 is updated in the manifest
    (the hash check alone would not see them)."""

    def make(folder: Path):
        model = model_folder(folder)
        write(model / WEIGHTS)
        rehash(model, WEIGHTS)
        return (lambda: export.load_model(model)), [str(model / WEIGHTS)]

    return make


def _torch_pickle(path: Path) -> None:
    torch.save(build_model(TINY, SLAB), path)  # a whole pickled model, not safetensors


def _other_tensors(path: Path) -> None:
    from safetensors.torch import save_file

    state = build_model({"channels": [2, 2, 3], "dense_units": [4]}, SLAB).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))


MODEL_FOLDER_CASES = [
    Case(
        "model folder: weights named outside the folder (../../elsewhere)",
        manifest_case(_elsewhere, "../../elsewhere/split-1.safetensors"),
        r"is '\.\./\.\./elsewhere/split-1\.safetensors', a path with '\.\.'",
        r"may only name files inside it, each listed with its sha256 under 'files': " + REEXPORT,
    ),
    Case(
        "model folder: template by absolute path",
        manifest_case(_absolute, "template.nii.gz"),
        r"is '/.*template\.nii\.gz', an absolute path",
        REEXPORT,
    ),
    Case(
        "model folder: a file that is a link out of the folder",
        manifest_case(_symlink, "files['sbr_development.tsv']"),
        r"is 'sbr_development\.tsv', a link to .*sbr_development\.tsv",
        REEXPORT,
    ),
    Case(
        "model folder: template not listed with its sha256",
        manifest_case(_unlisted, "template"),
        r"template is 'other template\.nii\.gz', which is not listed with its sha256",
        REEXPORT,
    ),
    Case(
        "model folder: manifest without cnn.models",
        manifest_case(_no_cnn_models, "'models'"),
        r"not a complete datspect model manifest \(missing or malformed 'models'\)",
        REEXPORT,
    ),
    Case(
        "model folder: manifest architecture that is no CNN",
        manifest_case(_even_kernel, "cnn.arch"),
        r"do not describe a CNN \(InputError: cnn\.arch\.kernel_size must be odd",
        REEXPORT,
    ),
    Case(
        "model folder: weights are a torch pickle",
        weights_case(_torch_pickle),
        r"not a safetensors weights file \(SafetensorError: .*header",
        REEXPORT,
    ),
    Case(
        "model folder: weights are random bytes",
        weights_case(lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000))),
        r"not a safetensors weights file",
        REEXPORT,
    ),
    Case(
        "model folder: weights file is empty",
        weights_case(lambda p: p.write_bytes(b"")),
        r"not a safetensors weights file \(SafetensorError: .*header too small",
        REEXPORT,
    ),
    Case(
        "model folder: safetensors of another architecture",
        weights_case(_other_tensors),
        r"tensors do not fit the model's architecture: .* has shape \(3, 2, 3, 3\), the "
        r"architecture needs \(2, 2, 3, 3\)",
        REEXPORT,
    ),
]


# ---------------------------------------------------------------------------- workflow models

CHECKPOINT = "results/models/cnn/mixed/split-1/model.pt"
RETRAIN = r"train it again \(snakemake --forcerun .*model\.pt, with the run's --directory"


def planned_case(bad):
    """A checkpoint made bad by ``bad(weights)``; the check is the one Snakemake's ``onstart``
    makes on the planned jobs: an export job reads it, no planned job writes it."""

    def make(folder: Path):
        from datspect.workflow import preflight

        weights = folder / "run" / CHECKPOINT
        weights.parent.mkdir(parents=True)
        tiny_checkpoint(weights)
        place = bad(weights)
        job = preflight.PlannedJob(
            "export_model", inputs=(str(weights), str(sidecar_path(weights))), outputs=("m",)
        )
        return (lambda: preflight.check_jobs([job])), [str(place)]

    return make


def _changed(weights: Path) -> Path:
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    return weights


def _bad_sidecar(weights: Path) -> Path:
    sidecar_path(weights).write_text('{"weights_sha256": ')  # cut short
    return sidecar_path(weights)


def loaded_case(write):
    """Weights replaced by ``write(path)`` with the sidecar's sha256 updated to match (both
    files forged): the check is the loader of the export and saliency jobs."""

    def make(folder: Path):
        weights = tiny_checkpoint(folder / "model.pt")
        write(weights)
        side = sidecar_path(weights)
        meta = json.loads(side.read_text())
        meta["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
        side.write_text(json.dumps(meta))
        return (lambda: load_checkpoint(weights)), [str(weights)]

    return make


def _other_state(path: Path) -> None:
    state = build_model({"channels": [2, 2, 3], "dense_units": [4]}, SLAB).state_dict()
    with open(path, "wb") as fh:
        torch.save(state, fh)


def device_case(folder: Path):
    from datspect.workflow import preflight

    config = folder / "gpu.yaml"
    config.write_text("cnn:\n  device: cuda\n")
    jobs = [
        preflight.PlannedJob("train_cnn", params={"device": "cuda"}, outputs=(f"m{k}",))
        for k in SPLITS
    ]
    files = [str(REPO / "config.yaml"), str(config)]
    return (lambda: preflight.check_jobs(jobs, config_files=files)), [str(config), "cnn.device"]


CHECKPOINT_CASES = [
    Case(
        "checkpoint: weights changed after training (checked while planning)",
        planned_case(_changed),
        r"sha256 \w+ does not match \w+ recorded in .*model\.json",
        RETRAIN,
    ),
    Case(
        "checkpoint: sidecar not valid JSON (checked while planning)",
        planned_case(_bad_sidecar),
        r"not a valid CNN checkpoint sidecar \(a JSON object with 'weights_sha256'; "
        r"JSONDecodeError\)",
        RETRAIN,
    ),
    Case(
        "checkpoint: a pickled whole model with a matching sidecar",
        loaded_case(_torch_pickle),
        r"not a torch state_dict file \(UnpicklingError: Weights only load failed",
        RETRAIN,
    ),
    Case(
        "checkpoint: random bytes with a matching sidecar",
        loaded_case(lambda p: p.write_bytes(np.random.default_rng(0).bytes(5000))),
        r"not a torch state_dict file \(\w+",
        RETRAIN,
    ),
    Case(
        "checkpoint: state_dict of another architecture with a matching sidecar",
        loaded_case(_other_state),
        r"tensors do not fit the model's architecture: .*has shape \(3, 2, 3, 3\)",
        RETRAIN,
    ),
]
if not torch.cuda.is_available():  # the case is a machine without a CUDA device
    CHECKPOINT_CASES.append(
        Case(
            "device: cnn.device cuda without a CUDA device (checked while planning)",
            device_case,
            r"key 'cnn\.device' is 'cuda' but torch on this machine sees no CUDA device, so 2 "
            r"train_cnn job\(s\) would fail after Snakemake removed their previous outputs",
            r"set cnn\.device: auto \(CUDA when available, else CPU\) or cpu",
        )
    )

CASES = MODEL_FOLDER_CASES + CHECKPOINT_CASES


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_one_clear_message(case, tmp_path):
    assert_one_clear_message(case, tmp_path)


# ---------------------------------------------------------------------------- through Snakemake

#: Only time stamps decide what reruns: the made-up run has no Snakemake metadata.
MTIME_ONLY = ("--rerun-triggers", "mtime", "--cores", "1")
STAMP = 1_700_000_000 * 10**9


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """The small config's run folder as a finished run leaves it: every output present with one
    time stamp (nothing to do), the CNN checkpoints real (tiny, untrained), other files empty."""
    work = tmp_path_factory.mktemp("finished") / "run"
    proc = snakemake("--summary", workdir=work)
    outputs = [line.split("\t")[0] for line in proc.stdout.splitlines()[1:] if line.strip()]
    for rel in outputs:
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_bytes(b"")
    for k, weights in enumerate(sorted(work.glob("results/models/cnn/*/split-*/model.pt"))):
        tiny_checkpoint(weights, seed=k)
    for rel in outputs:
        os.utime(work / rel, ns=(STAMP, STAMP))
    shutil.rmtree(work / ".snakemake", ignore_errors=True)
    return work


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


def _one_line(output: str, start: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith(start)]
    assert len(lines) == 1, output
    return lines[0]


def test_a_changed_checkpoint_stops_the_rerun_before_any_job(run_copy):
    """A changed checkpoint would make the export, saliency and robustness jobs rerun and fail
    after Snakemake removed their outputs: the plan is checked first, and nothing changes."""
    weights = run_copy / CHECKPOINT
    before = snapshot(run_copy)
    _changed(weights)
    proc = snakemake(*MTIME_ONLY, workdir=run_copy, check=False)
    assert proc.returncode != 0
    line = _one_line(proc.stdout + proc.stderr, CHECKPOINT)
    assert re.search(r"does not match \w+ recorded in .*model\.json.*" + RETRAIN, line), line
    # the jobs that read a checkpoint, whose outputs a failing rerun would remove (README)
    assert line.endswith(
        "no job has started, so the outputs of the cnn_saliency, export_model, robustness_split "
        "jobs are kept"
    ), line
    after = snapshot(run_copy)
    assert after.pop(CHECKPOINT) != before.pop(CHECKPOINT)
    assert after == before, "a run stopped by the plan check changed outputs"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA device")
def test_cuda_without_a_gpu_stops_the_training_rerun_before_any_job(run_copy, tmp_path):
    gpu = tmp_path / "gpu config.yaml"
    gpu.write_text("cnn:\n  device: cuda\n")
    before = snapshot(run_copy)
    proc = snakemake(
        *MTIME_ONLY, "--forcerun", "train_cnn", workdir=run_copy, configfiles=[*SMALL, gpu],
        check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    line = _one_line(proc.stdout + proc.stderr, str(gpu))
    assert "key 'cnn.device' is 'cuda' but torch on this machine sees no CUDA device" in line
    assert snapshot(run_copy) == before


def test_a_forged_checkpoint_fails_only_its_job_with_one_message(run_copy):
    """The limit of the plan check: weights and sidecar replaced together pass the hash check;
    the export job then fails with one message, and Snakemake has removed that job's outputs,
    results/model/, and nothing else."""
    weights = run_copy / CHECKPOINT
    before = snapshot(run_copy)
    _torch_pickle(weights)
    meta = json.loads(sidecar_path(weights).read_text())
    meta["weights_sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    sidecar_path(weights).write_text(json.dumps(meta))
    proc = snakemake(*MTIME_ONLY, "results/model/manifest.json", workdir=run_copy, check=False)
    assert proc.returncode != 0
    line = _one_line(proc.stderr, f"{CHECKPOINT}: not a torch state_dict file")
    assert re.search(RETRAIN, line), line
    after = snapshot(run_copy)
    for rel in (CHECKPOINT, str(sidecar_path(CHECKPOINT))):
        assert after.pop(rel) != before.pop(rel)
    removed = sorted(set(before) - set(after))
    assert removed and all(rel.startswith("results/model/") for rel in removed), removed
    assert after == {k: v for k, v in before.items() if k not in removed}


def test_the_plan_check_lets_the_fix_and_cluster_jobs_through(tmp_path):
    """The retraining the message advises (a planned job writes the bad checkpoint) is not
    stopped, nor are cuda jobs a cluster runs on its GPU nodes."""
    from datspect.workflow import preflight

    weights = tiny_checkpoint(tmp_path / "model.pt")
    _changed(weights)
    export_job = preflight.PlannedJob("export_model", inputs=(str(weights),))
    train = preflight.PlannedJob("train_cnn", outputs=(str(weights),), params={"device": "cuda"})
    with pytest.raises(InputError, match="does not match"):
        preflight.check_jobs([export_job], local=False)
    preflight.check_jobs([train, export_job], local=False)


BEHAVIOUR_TESTS = [
    "test_the_plan_check_lets_the_fix_and_cluster_jobs_through",
    "test_a_changed_checkpoint_stops_the_rerun_before_any_job",
    "test_cuda_without_a_gpu_stops_the_training_rerun_before_any_job",
    "test_a_forged_checkpoint_fails_only_its_job_with_one_message",
]

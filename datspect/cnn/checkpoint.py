"""Saving and loading trained CNNs: a ``state_dict`` plus a JSON sidecar to rebuild it.

The weights file holds tensors only, so loading uses ``torch.load(weights_only=True)`` (no
pickled code runs).  The sidecar ``<weights stem>.json`` holds everything needed to rebuild and
judge the model (architecture, input spec, training config, seed, metrics, versions) and the
sha256 of the weights file, which is checked on load (and, for the checkpoints a run's jobs will
read, while the workflow plans: :mod:`datspect.workflow.preflight`).  Both files are written
atomically (:func:`datspect.io.imageio.atomic_output`), weights first, so a complete sidecar implies
complete weights.  A file that is not a state_dict of the sidecar's architecture stops the load with
one message naming it, not a torch traceback.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

import datspect
from datspect.cnn.data import resolve_degrade
from datspect.cnn.model import build_model, count_parameters, resolve_arch
from datspect.cnn.train import resolve_train_cfg
from datspect.errors import InputError
from datspect.io.checksum import (
    SHA256_KEY,
    retrain_fix,
    sha256_file,
    sidecar_path,
    verified_sidecar,
)
from datspect.io.imageio import atomic_output

FORMAT_VERSION = 1


def error_summary(exc: Exception) -> str:
    """The exception's type and first line: a library's error inside a one-line message."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()  # torch colours its messages
    first = re.split(r"\n|(?<=\.) ", text, maxsplit=1)[0][:160]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def build_or_refuse(spec: dict, problem: str, fix: str) -> torch.nn.Module:
    """The CNN of ``spec``'s ``arch`` and ``input.shape`` (a sidecar or a manifest's ``cnn``);
    one :class:`InputError` (``problem``, why, ``fix``) when they do not describe one."""
    try:
        return build_model(spec["arch"], spec["input"]["shape"])
    except (InputError, KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{problem} ({error_summary(exc)}); {fix}") from exc


def load_state(model: torch.nn.Module, state, file, fix: str) -> torch.nn.Module:
    """Load ``state`` into ``model`` after checking it has exactly the model's tensor names and
    shapes, so a state_dict of another architecture is one message naming ``file``."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"{file}: holds no state_dict of tensors; {fix}")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    problems = [f"missing {k}" for k in expected if k not in found]
    problems += [f"unexpected {k}" for k in found if k not in expected]
    problems += [
        f"{k} has shape {found[k]}, the architecture needs {shape}"
        for k, shape in expected.items()
        if k in found and found[k] != shape
    ]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise InputError(
            f"{file}: tensors do not fit the model's architecture: {'; '.join(problems[:3])}"
            f"{more}; {fix}"
        )
    model.load_state_dict(state, strict=True)
    return model


def _atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)`` then move the result onto ``path`` in one step."""
    with atomic_output(path) as tmp:
        write(tmp)


def _save_state(state: dict, path: Path) -> None:
    with open(path, "wb") as handle:
        torch.save(state, handle)


def save_checkpoint(
    model: torch.nn.Module,
    weights_path,
    *,
    arch: dict,
    input_spec: dict,
    train_cfg: dict,
    seed: int,
    metrics: dict,
    history: list | None = None,
    degrade: dict | None = None,
) -> dict:
    """Write ``weights_path`` (state_dict) and its JSON sidecar.

    Parameters
    ----------
    model : torch.nn.Module
        The trained model.
    weights_path : str or Path
        Where the weights go; the sidecar is :func:`sidecar_path` of it.
    arch : dict
        The architecture the model was built from (stored resolved).
    input_spec : dict
        Input description, from :func:`datspect.cnn.data.make_input_spec` (type, shape, axes,
        normalization).
    train_cfg : dict
        The training configuration used (stored resolved, defaults filled in).
    seed : int
        The training seed.
    metrics : dict
        Validation metrics of the selected epoch (e.g. ``best`` from ``train_model``).
    history : list of dict, optional
        Per-epoch log rows.
    degrade : dict, optional
        The degradation of the training images (the ``augmented`` setting), stored resolved
        under ``degrade``; sidecars of other models have no such key.

    Returns
    -------
    dict
        The sidecar content.
    """
    weights_path = Path(weights_path)
    state = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
    # Saved through a file object: torch names the archive's folder after a path it is given
    # (here a random temporary name), which would make equal weights unequal files.
    _atomic_write(weights_path, lambda tmp: _save_state(state, tmp))
    meta = {
        "format_version": FORMAT_VERSION,
        "weights_file": weights_path.name,
        SHA256_KEY: sha256_file(weights_path),
        "arch": resolve_arch(arch),
        "input": input_spec,
        "train": resolve_train_cfg(train_cfg),
        "seed": int(seed),
        "metrics": metrics,
        "history": history or [],
        "n_parameters": count_parameters(model),
        "torch_version": torch.__version__,
        "datspect_version": datspect.__version__,
    }
    if degrade is not None:
        meta["degrade"] = resolve_degrade(degrade)
    text = json.dumps(meta, indent=2, sort_keys=True) + "\n"
    _atomic_write(sidecar_path(weights_path), lambda tmp: tmp.write_text(text))
    return meta


def load_checkpoint(weights_path, device: str = "cpu"):
    """Rebuild a model saved by :func:`save_checkpoint`.

    Parameters
    ----------
    weights_path : str or Path
        The weights file; its sidecar must lie beside it.
    device : str
        ``map_location`` for the tensors (the model is moved there).

    Returns
    -------
    model : torch.nn.Module
        In eval mode.
    meta : dict
        The sidecar content.

    Raises
    ------
    InputError
        If a file is missing or unreadable, the weights' sha256 differs from the sidecar's, or
        the weights are not a state_dict of the sidecar's architecture (a pickled model, other
        bytes, another network).
    """
    weights_path = Path(weights_path)
    side = sidecar_path(weights_path)
    fix = retrain_fix(weights_path)
    meta = verified_sidecar(weights_path, fix)
    model = build_or_refuse(
        meta, f"{side}: no architecture and input shape to rebuild the CNN from", fix
    )
    try:  # weights_only: a pickle that would run code is refused, not run
        state = torch.load(weights_path, map_location=device, weights_only=True)
    except Exception as exc:  # any failure to decode is a file that is not a state_dict
        raise InputError(
            f"{weights_path}: not a torch state_dict file ({error_summary(exc)}); {fix}"
        ) from exc
    model = load_state(model, state, weights_path, fix)
    return model.to(device).eval(), meta

"""Saving and loading trained CNNs: a ``state_dict`` plus a JSON sidecar to rebuild it.

The weights file holds tensors only, so loading uses ``torch.load(weights_only=True)`` (no
pickled code runs).  The sidecar ``<weights stem>.json`` holds everything needed to rebuild and
judge the model (architecture, input spec, training config, seed, metrics, versions) and the
sha256 of the weights file, which is checked on load.  Both files are written atomically
(:func:`datspect.io.imageio.atomic_output`), weights first, so a complete sidecar implies complete
weights.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

import datspect
from datspect.cnn.model import build_model, count_parameters, resolve_arch
from datspect.cnn.train import resolve_train_cfg
from datspect.errors import InputError
from datspect.io.imageio import atomic_output

FORMAT_VERSION = 1


def sidecar_path(weights_path) -> Path:
    """The JSON sidecar beside ``weights_path`` (same name, suffix ``.json``)."""
    return Path(weights_path).with_suffix(".json")


def sha256_file(path) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


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
        "weights_sha256": sha256_file(weights_path),
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
        If a file is missing or unreadable, or the weights' sha256 differs from the sidecar's.
    """
    weights_path = Path(weights_path)
    side = sidecar_path(weights_path)
    for p in (weights_path, side):
        if not p.is_file():
            raise InputError(f"{p}: CNN checkpoint file is missing; rerun the training job")
    try:
        meta = json.loads(side.read_text())
        expected = meta["weights_sha256"]
        arch, shape = meta["arch"], meta["input"]["shape"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{side}: not a valid CNN checkpoint sidecar ({exc!r})") from exc
    actual = sha256_file(weights_path)
    if actual != expected:
        raise InputError(
            f"{weights_path}: sha256 {actual} does not match {expected} recorded in {side}; the "
            "weights were changed or belong to another training: rerun the training job"
        )
    state = torch.load(weights_path, map_location=device, weights_only=True)
    model = build_model(arch, shape)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), meta
